"""Size-capped, atomic, deterministic tar shard writing.

Every sample is first *packed*: its tar members (512-byte header, data,
padding) are laid out as bytes whose length is known before anything is
written, so the writer checks ``size + sample + trailer <= cap`` *before*
adding a sample and a shard file never exceeds its cap, end-of-archive blocks
included.

Compressed shards are one gzip stream per shard. Each sample is deflated on
its own (raw deflate, ending with a full flush on a byte boundary), so its
compressed size is known in advance and does not depend on its neighbours;
the writer concatenates the pieces between a fixed gzip header and a fixed
final block, and combines the samples' CRC-32s for the gzip trailer. Stock
``gzip``, ``tarfile`` and ``webdataset`` read the result as ordinary
``.tar.gz`` files. Deflate is ISA-L's (``isal``): its output is fixed for a
given ``isal`` version (locked in ``uv.lock``), and the decompressed bytes are
the same everywhere.

Where shard boundaries fall is decided by :func:`toile.export.layout.fits` alone,
before anything is written; :class:`ShardContent` writes the samples of one shard
through a :class:`~toile.storage.base.ShardSink` (hidden temporary name, ``fsync``,
rename). :class:`ShardWriter` streams samples into consecutive shards with the same
decision, for callers that pack as they go.
"""

from __future__ import annotations

import struct
import tarfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from toile.errors import OutputError
from toile.names import shard_name, shard_url_pattern

if TYPE_CHECKING:
    from toile.storage.base import ShardSink, Storage

__all__ = ["shard_name", "shard_url_pattern"]

BLOCK = 512
#: Two zero blocks end a tar archive.
END_OF_ARCHIVE = bytes(2 * BLOCK)
#: Deflate level of every compressed piece (changing it changes the output bytes). ISA-L's
#: level 1 compresses noisy 16-bit microscopy frames as well as zlib's level 6 (ratio ~1.5)
#: at about 270 MB/s instead of 10 MB/s.
DEFLATE_LEVEL = 1
#: Fixed gzip member header: no file name, mtime 0, OS "unknown", for deterministic bytes.
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"

Buffer = bytes | bytearray | memoryview

#: Samples are written (and hashed) in batches of at least this many bytes: one system
#: call and one hashing task per batch instead of per sample, which matters for small
#: frames. Up to ``_Hasher.MAX_PENDING`` batches wait for their hash, so this also bounds
#: the bytes an export holds (tests/test_streaming.py).
WRITE_BATCH = 256 * 1024


def _nbytes(buffer: Buffer) -> int:
    return buffer.nbytes if isinstance(buffer, memoryview) else len(buffer)


def _tarfile_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    simple = len(name.encode()) <= 100 and size <= _MAX_USTAR_SIZE
    fmt = tarfile.USTAR_FORMAT if simple else tarfile.PAX_FORMAT
    return info.tobuf(format=fmt, encoding="utf-8", errors="strict")


#: The fixed fields of a ustar header after the name (mode 0644, owner 0, mtime 0).
_USTAR_MODE_OWNER = b"0000644\x000000000\x000000000\x00"
_USTAR_MTIME = b"00000000000\x00"
_USTAR_TAIL = (
    b"0"  # regular file
    + bytes(100)  # link name
    + b"ustar\x0000"
    + bytes(64)  # owner and group names
    + bytes(16 + 155 + 12)  # device numbers (unused), prefix and padding
)
_MAX_USTAR_SIZE = 8**11 - 1


def tar_header(name: str, size: int) -> bytes:
    """A regular-file tar header with fixed mtime, owner and mode (deterministic).

    Byte-identical to what :mod:`tarfile` writes for the same member; built
    directly because ``TarInfo.tobuf`` costs about 0.1 ms per member.
    """
    encoded = name.encode("utf-8")
    if len(encoded) > 100 or size > _MAX_USTAR_SIZE:
        return _tarfile_header(name, size)
    head = encoded.ljust(100, b"\x00") + _USTAR_MODE_OWNER + b"%011o\x00" % size + _USTAR_MTIME
    checksum = sum(head) + 8 * 0x20 + sum(_USTAR_TAIL)
    return head + b"%06o\x00 " % checksum + _USTAR_TAIL


@dataclass
class PackedSample:
    """A sample's bytes as they go into a shard, with everything the writer needs to place it."""

    key: str
    chunks: list[Buffer]
    #: Bytes this sample occupies in the shard file (compressed size when compressed).
    size: int
    #: Uncompressed tar bytes and their CRC-32 (used for the gzip trailer).
    raw_size: int
    crc32: int
    compressed: bool


def _isal_zlib():  # noqa: ANN202 - the isal_zlib module
    """ISA-L's zlib, imported on first use so that reading a dataset never loads it."""
    from isal import isal_zlib

    return isal_zlib


def raw_sample_size(members: Iterable[tuple[str, list[Buffer]]]) -> int:
    """The uncompressed tar bytes of one sample (headers, data, padding), nothing packed."""
    total = 0
    for name, parts in members:
        size = sum(_nbytes(p) for p in parts)
        total += len(tar_header(name, size)) + size + (-size % BLOCK)
    return total


def pack_sample(
    key: str, members: Iterable[tuple[str, list[Buffer]]], compressed: bool
) -> PackedSample:
    """Lay out the tar members of one sample (and deflate them when ``compressed``)."""
    raw: list[Buffer] = []
    raw_size = 0
    for name, parts in members:
        size = sum(_nbytes(p) for p in parts)
        header = tar_header(name, size)
        raw.append(header)
        raw.extend(p for p in parts if _nbytes(p))
        padding = -size % BLOCK
        if padding:
            raw.append(bytes(padding))
        raw_size += len(header) + size + padding
    if not compressed:
        return PackedSample(key, raw, raw_size, raw_size, 0, False)
    isal_zlib = _isal_zlib()
    compressor = isal_zlib.compressobj(DEFLATE_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    out: list[Buffer] = []
    crc = 0
    for chunk in raw:
        crc = isal_zlib.crc32(chunk, crc)
        piece = compressor.compress(chunk)
        if piece:
            out.append(piece)
    out.append(compressor.flush(zlib.Z_FULL_FLUSH))
    return PackedSample(key, out, sum(len(p) for p in out), raw_size, crc, True)


@lru_cache(maxsize=1)
def _gzip_final_block() -> bytes:
    compressor = _isal_zlib().compressobj(DEFLATE_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(END_OF_ARCHIVE) + compressor.flush(zlib.Z_FINISH)


def shard_overhead(compressed: bool) -> int:
    """Bytes a shard holds besides its samples (end-of-archive, gzip header and trailer)."""
    if compressed:
        return len(GZIP_HEADER) + len(_gzip_final_block()) + 8
    return len(END_OF_ARCHIVE)


# CRC-32 combination (zlib's crc32_combine), over GF(2) 32x32 matrices stored as columns.


def _gf2_times(matrix: tuple[int, ...], vector: int) -> int:
    result = 0
    index = 0
    while vector:
        if vector & 1:
            result ^= matrix[index]
        vector >>= 1
        index += 1
    return result


def _gf2_product(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(_gf2_times(a, column) for column in b)


@lru_cache(maxsize=1)
def _zero_byte_operator() -> tuple[int, ...]:
    one_bit = (0xEDB88320,) + tuple(1 << n for n in range(31))
    op = one_bit
    for _ in range(3):
        op = _gf2_product(op, op)
    return op


@lru_cache(maxsize=256)
def _zeros_operator(length: int) -> tuple[int, ...]:
    """The operator that advances a CRC-32 register over ``length`` zero bytes."""
    result: tuple[int, ...] | None = None
    power = _zero_byte_operator()
    while length:
        if length & 1:
            result = power if result is None else _gf2_product(power, result)
        length >>= 1
        if length:
            power = _gf2_product(power, power)
    assert result is not None
    return result


def crc32_combine(crc1: int, crc2: int, length2: int) -> int:
    """CRC-32 of A+B from crc(A), crc(B) and len(B)."""
    if length2 == 0:
        return crc1
    return _gf2_times(_zeros_operator(length2), crc1) ^ crc2


@dataclass(frozen=True)
class ShardInfo:
    """A finished shard as listed in the manifest and the resume journal."""

    name: str
    size: int
    samples: int
    sha256: str
    first_key: str
    last_key: str

    def to_dict(self) -> dict:
        return asdict(self)


class ShardContent:
    """The bytes of one shard, written in batches into a :class:`ShardFile`.

    Adds the gzip header first and, at :meth:`finish`, the end-of-archive blocks (and,
    when compressed, the final deflate block and the gzip trailer, whose CRC-32 is
    combined from the samples'). Deciding which samples belong here is not its job.
    """

    def __init__(self, file: ShardSink, compressed: bool) -> None:
        self.file = file
        self.compressed = compressed
        self.size = 0
        self.samples = 0
        self.first_key = ""
        self.last_key = ""
        self._crc = 0
        self._raw_size = 0
        self._batch: list[Buffer] = []
        self._batch_size = 0
        if compressed:
            self._write([GZIP_HEADER], len(GZIP_HEADER))

    def add(self, sample: PackedSample) -> None:
        if sample.compressed != self.compressed:
            raise ValueError("sample compression does not match the shard")
        self._write(sample.chunks, sample.size)
        if self.compressed:
            self._crc = crc32_combine(self._crc, sample.crc32, sample.raw_size)
            self._raw_size += sample.raw_size
        if not self.samples:
            self.first_key = sample.key
        self.last_key = sample.key
        self.samples += 1

    def _write(self, chunks: list[Buffer], size: int) -> None:
        self._batch.extend(chunks)
        self._batch_size += size
        self.size += size
        if self._batch_size >= WRITE_BATCH:
            self._flush()

    def _flush(self) -> None:
        chunks, self._batch, self._batch_size = self._batch, [], 0
        if chunks:
            self.file.write(chunks)

    def close_archive(self) -> None:
        """Write the closing bytes and flush the last batch (the file stays uncommitted)."""
        if self.compressed:
            trailer = _gzip_final_block()
            crc = zlib.crc32(END_OF_ARCHIVE, self._crc)
            raw_size = self._raw_size + len(END_OF_ARCHIVE)
            self._write([trailer, struct.pack("<II", crc, raw_size & 0xFFFFFFFF)], len(trailer) + 8)
        else:
            self._write([END_OF_ARCHIVE], len(END_OF_ARCHIVE))
        self._flush()

    def commit(self) -> ShardInfo:
        """Make the shard visible under its final name; its :class:`ShardInfo`."""
        committed = self.file.commit()
        return ShardInfo(
            name=committed.name,
            size=committed.size,
            samples=self.samples,
            sha256=committed.sha256,
            first_key=self.first_key,
            last_key=self.last_key,
        )

    def abort(self) -> None:
        self._batch, self._batch_size = [], 0
        self.file.abort()

    def finish(self) -> ShardInfo:
        """:meth:`close_archive` then :meth:`commit`; the shard is dropped if either fails."""
        try:
            self.close_archive()
            return self.commit()
        except BaseException:
            self.abort()
            raise


class ShardWriter:
    """Writes packed samples into ``{stem}-NNNNNN.tar[.gz]`` files of at most ``max_size`` bytes.

    Boundaries follow :func:`toile.export.layout.fits`, the same rule the export's
    shard plan uses. ``directory`` is a local directory, or a
    :class:`~toile.storage.base.Storage` (an export's staging area) to write into.
    Use as a context manager: leaving the block normally closes the last shard;
    leaving it with an exception removes the shard being written.
    """

    def __init__(
        self,
        directory: Path | Storage,
        stem: str,
        max_size: int,
        *,
        compressed: bool = False,
        start_index: int = 0,
        on_shard: Callable[[ShardInfo], None] | None = None,
        fsync: bool = True,
    ) -> None:
        from toile.storage.base import Storage
        from toile.storage.local import LocalStorage

        overhead = shard_overhead(compressed)
        if max_size <= overhead:
            raise OutputError(
                f"shard size {max_size} bytes is too small: a shard needs {overhead} bytes "
                "besides its samples"
            )
        self.sink = (
            directory
            if isinstance(directory, Storage)
            else LocalStorage(Path(directory), fsync=fsync)
        )
        self.stem = stem
        self.max_size = max_size
        self.compressed = compressed
        self.overhead = overhead
        self.on_shard = on_shard
        self.shards: list[ShardInfo] = []
        self._index = start_index
        self._content: ShardContent | None = None
        self._used = 0

    @property
    def capacity(self) -> int:
        """The largest packed sample a shard can hold."""
        return self.max_size - self.overhead

    def fits(self, sample: PackedSample) -> bool:
        """Whether ``sample`` fits in the shard being written."""
        from toile.export.layout import fits

        return self._content is not None and fits(self._used, sample.size, self.capacity)

    def add(self, sample: PackedSample, label: str = "") -> None:
        """Append a sample, first closing the current shard if the sample would not fit."""
        if sample.compressed != self.compressed:
            raise ValueError("sample compression does not match the writer")
        if sample.size > self.capacity:
            raise OutputError(
                f"{label or sample.key}: one sample takes {sample.size} bytes, more than the "
                f"shard size limit of {self.max_size} bytes allows ({self.capacity} bytes for "
                "samples); raise --shard-size"
            )
        if self._content is not None and not self.fits(sample):
            self._finish_shard()
        if self._content is None:
            name = shard_name(self.stem, self._index, self.compressed)
            self._content = ShardContent(self.sink.create(name), self.compressed)
            self._used = 0
        self._content.add(sample)
        self._used += sample.size

    def close(self) -> list[ShardInfo]:
        """Finish the last shard and return every shard written."""
        if self._content is not None:
            self._finish_shard()
        return self.shards

    def abort(self) -> None:
        """Drop the shard being written (its temporary file is removed)."""
        if self._content is not None:
            self._content.abort()
            self._content = None

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _finish_shard(self) -> None:
        assert self._content is not None
        content, self._content = self._content, None
        info = content.finish()
        self.shards.append(info)
        self._index += 1
        if self.on_shard is not None:
            self.on_shard(info)
