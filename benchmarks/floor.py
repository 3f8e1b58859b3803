"""The least work an exporter that keeps toile's shard promises must do, with no encoding.

Floor (a), the default: copies the input files, in order, into one output file, computes
the SHA-256 of what it wrote (on a second thread, overlapped with the copy, as toile does)
and fsyncs the file, starting write-back every 32 MiB along the way. Pixel data cannot
reach a shard faster than this: the SHA-256 in the manifest and the fsync before a shard
gets its final name are both required, and one shard's SHA-256 cannot be split between
cores.

Floor (b), ``--deflate THREADS``: the same, but every 1 MiB of input is deflated with
ISA-L at level 1 (toile's ``--compressed`` level) on a pool of THREADS threads (ISA-L
releases the GIL), each piece ending on a full flush, with its CRC-32 computed on the same
thread; the pieces are written in order as one valid gzip stream, and the SHA-256 is of
the compressed bytes (what a manifest records). This is the least work a compressed
exporter does with that deflate: toile deflates each sample the same way.

    python benchmarks/floor.py [--deflate THREADS] OUTPUT INPUT [INPUT ...]

Prints the hex digest. Floor (a) imports nothing beyond the standard library; floor (b)
imports ``isal`` too.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import queue
import struct
import sys
import threading
import zlib
from collections import deque
from collections.abc import Callable, Iterator

CHUNK = 1 << 20
#: Chunks the hashing thread may still hold: the queue's bound plus the one being hashed.
QUEUED = 8
RING = QUEUED + 4
WRITEBACK_CHUNK = 32 << 20
SYNC_FILE_RANGE_WRITE = 2
#: A gzip member header: magic, deflate, no flags, mtime 0, no extra flags, OS unknown.
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


def _sync_file_range() -> Callable[[int, int, int], int] | None:
    # The same binding as toile.shards', written again on purpose: the floor must not
    # import toile (or numpy), so that it measures only the copy, the hash and the fsync.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
    return lambda fd, offset, length: call(fd, offset, length, SYNC_FILE_RANGE_WRITE)


def _gf2_times(matrix: list[int], vector: int) -> int:
    result, index = 0, 0
    while vector:
        if vector & 1:
            result ^= matrix[index]
        vector >>= 1
        index += 1
    return result


def _zeros_operator(length: int) -> list[int]:
    """The GF(2) operator that advances a CRC-32 register over ``length`` zero bytes."""
    power = [0xEDB88320] + [1 << n for n in range(31)]  # one zero bit
    for _ in range(3):  # one zero byte
        power = [_gf2_times(power, column) for column in power]
    result: list[int] | None = None
    while length:
        if length & 1:
            result = power if result is None else [_gf2_times(power, c) for c in result]
        length >>= 1
        if length:
            power = [_gf2_times(power, column) for column in power]
    assert result is not None
    return result


def crc32_combine(crc1: int, crc2: int, length2: int, operators: dict[int, list[int]]) -> int:
    """CRC-32 of A+B from crc(A), crc(B) and len(B) (zlib's crc32_combine)."""
    if length2 == 0:
        return crc1
    if length2 not in operators:
        operators[length2] = _zeros_operator(length2)
    return _gf2_times(operators[length2], crc1) ^ crc2


def _read_chunks(inputs: list[str], ring: list[bytearray]) -> Iterator[memoryview]:
    """Every input's bytes, in order, in chunks of at most ``CHUNK`` bytes (ring buffers)."""
    count = 0
    for path in inputs:
        with open(path, "rb", buffering=0) as source:
            while True:
                buffer = ring[count % len(ring)]
                n = source.readinto(buffer)
                if not n:
                    break
                count += 1
                yield memoryview(buffer)[:n]


def _deflated_pieces(inputs: list[str], threads: int) -> Iterator[bytes]:
    """A gzip stream of the inputs, each chunk deflated on one of ``threads`` threads."""
    from concurrent.futures import ThreadPoolExecutor

    from isal import isal_zlib

    def deflate(chunk: memoryview) -> tuple[bytes, int, int]:
        compressor = isal_zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
        piece = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
        return piece, isal_zlib.crc32(chunk), len(chunk)

    ring = [bytearray(CHUNK) for _ in range(4 * threads + 2)]
    pending: deque = deque()
    crc, total, operators = 0, 0, {}
    yield GZIP_HEADER
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for chunk in _read_chunks(inputs, ring):
            pending.append(pool.submit(deflate, chunk))
            while len(pending) > 2 * threads:
                piece, piece_crc, length = pending.popleft().result()
                crc, total = crc32_combine(crc, piece_crc, length, operators), total + length
                yield piece
        while pending:
            piece, piece_crc, length = pending.popleft().result()
            crc, total = crc32_combine(crc, piece_crc, length, operators), total + length
            yield piece
    closing = isal_zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
    yield closing.flush(zlib.Z_FINISH)
    yield struct.pack("<II", crc, total & 0xFFFFFFFF)


def main(argv: list[str]) -> int:
    threads = 0
    if argv[:1] == ["--deflate"] and len(argv) > 1:
        threads = int(argv[1])
        argv = argv[2:]
    if len(argv) < 2 or (threads < 1 and argv[0].startswith("-")):
        print(__doc__, file=sys.stderr)
        return 2
    output, *inputs = argv
    digest = hashlib.sha256()
    chunks: queue.Queue = queue.Queue(maxsize=QUEUED)

    def hash_chunks() -> None:
        while (chunk := chunks.get()) is not None:
            digest.update(chunk)

    hasher = threading.Thread(target=hash_chunks)
    hasher.start()
    start_writeback = _sync_file_range()
    if threads:
        pieces: Iterator[memoryview | bytes] = _deflated_pieces(inputs, threads)
    else:
        pieces = _read_chunks(inputs, [bytearray(CHUNK) for _ in range(RING)])
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    written = flushed = 0
    try:
        for piece in pieces:
            view = memoryview(piece)
            chunks.put(view)
            while view.nbytes:
                view = view[os.write(fd, view) :]
            written += len(piece)
            if start_writeback and written - flushed >= WRITEBACK_CHUNK:
                start_writeback(fd, flushed, written - flushed)
                flushed = written
    finally:
        chunks.put(None)
        hasher.join()
    os.fsync(fd)
    os.close(fd)
    print(digest.hexdigest())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
