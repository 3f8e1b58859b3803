"""The least work an exporter that keeps toile's shard promises must do, with no encoding.

Copies the input files, in order, into one output file, computes the SHA-256 of what it
wrote (on a second thread, overlapped with the copy, as toile does) and fsyncs the file,
starting write-back every 32 MiB along the way. Pixel data cannot reach a shard faster
than this: the SHA-256 in the manifest and the fsync before a shard gets its final name
are both required, and one shard's SHA-256 cannot be split between cores.

    python benchmarks/floor.py OUTPUT INPUT [INPUT ...]

Prints the hex digest. Imports nothing beyond the standard library.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import queue
import sys
import threading

CHUNK = 1 << 20
#: Chunks the hashing thread may still hold: the queue's bound plus the one being hashed.
QUEUED = 8
RING = QUEUED + 4
WRITEBACK_CHUNK = 32 << 20
SYNC_FILE_RANGE_WRITE = 2


def _sync_file_range():
    # The same binding as toile.shards', written again on purpose: the floor must not
    # import toile (or numpy), so that it measures only the copy, the hash and the fsync.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
    return lambda fd, offset, length: call(fd, offset, length, SYNC_FILE_RANGE_WRITE)


def main(argv: list[str]) -> int:
    if len(argv) < 2:
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
    ring = [bytearray(CHUNK) for _ in range(RING)]
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    written = flushed = count = 0
    try:
        for path in inputs:
            with open(path, "rb", buffering=0) as source:
                while True:
                    buffer = ring[count % RING]
                    n = source.readinto(buffer)
                    if not n:
                        break
                    count += 1
                    view = memoryview(buffer)[:n]
                    chunks.put(view)
                    while view.nbytes:
                        view = view[os.write(fd, view) :]
                    written += n
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
