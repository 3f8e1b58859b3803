"""A TIFF's first ImageDescription, read with a few small reads, or streamed in chunks.

A directory of thousands of files is grouped into recordings before anything else
happens; opening each with ``tifffile.TiffFile`` costs a millisecond or more. And the
OME-XML of a long recording is megabytes (36,000 planes: 9 MB), which
``tifffile.TiffFile`` reads and decodes whole, and keeps while the file is open: here it
is read in chunks, located from the first IFD's entry, so that memory does not grow with
the recording.
"""

from __future__ import annotations

import codecs
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from toile.formats.tiff.files import file_size, open_binary
from toile.formats.tiff.ifd import IMAGE_DESCRIPTION, IfdReader

#: Bytes read from the file at a time.
BLOCK = 1 << 16
#: Bytes of a description that :func:`description_head` keeps (at least 65,536 characters:
#: as much as :func:`toile.formats.tiff.ome_xml.is_ome` looks at).
HEAD_BYTES = 1 << 18
#: Largest description read (the ``IfdReader.text`` bound).
MAX_BYTES = 1 << 30


class DescriptionHead(str):
    """The first characters of a first ImageDescription longer than :data:`HEAD_BYTES`
    (an OME-XML of a long recording): enough to tell what a file is. ``path`` is the file;
    :meth:`chunks` streams the whole text, as :func:`first_description` reads it."""

    path: Path

    def __new__(cls, text: str, path: Path) -> DescriptionHead:
        head = super().__new__(cls, text)
        head.path = path
        return head

    def chunks(self) -> Iterator[str]:
        """The whole description, in chunks (nothing if the file changed meanwhile)."""
        try:
            with open_binary(self.path) as fh:
                found = _located(fh)
                if found is None or found[0] != 2 or found[3] is not None:
                    return
                _, start, nbytes, _ = found
                yield from decoded(_blocks(fh, start, _first_nul(fh, start, nbytes)))
        except (OSError, struct.error, UnicodeDecodeError):
            return


def first_description(path: Path) -> str | None:
    """The first ImageDescription of TIFF ``path`` up to its first NUL: '' when it has
    none, None when the file cannot be read this way (not a TIFF, unusual, unreadable,
    not UTF-8); tifffile then decides."""
    try:
        with open_binary(path) as fh:
            reader = IfdReader.open(fh)
            entries = None if reader is None else reader.first_entries()
            if reader is None or entries is None:
                return None
            entry = entries.get(IMAGE_DESCRIPTION)
            if entry is None:
                return ""
            return reader.text(entry)
    except (OSError, struct.error):
        return None


def description_head(path: Path) -> str | None:
    """:func:`first_description`, but a :class:`DescriptionHead` of it when it is longer
    than :data:`HEAD_BYTES`: the rest is read (to check it is UTF-8) and not kept."""
    try:
        with open_binary(path) as fh:
            found = _located(fh)
            if found is None:
                return None
            kind, start, nbytes, inline = found
            if kind == 0:
                return ""
            if kind != 2 or nbytes > MAX_BYTES:
                return None
            if inline is not None:
                return inline.split(b"\0", 1)[0].decode("utf-8")
            stop = _first_nul(fh, start, nbytes)
            if stop - start <= HEAD_BYTES:
                fh.seek(start)
                raw = fh.read(stop - start)
                return None if len(raw) != stop - start else raw.decode("utf-8")
            decoder = codecs.getincrementaldecoder("utf-8")()
            head: list[str] = []
            read = 0
            for block in _blocks(fh, start, stop):
                text = decoder.decode(block)
                if read < HEAD_BYTES:
                    head.append(text[: HEAD_BYTES - read])
                read += len(block)
            decoder.decode(b"", final=True)
            return DescriptionHead("".join(head), path)
    except (OSError, struct.error, UnicodeDecodeError, _Short):
        return None


def tifffile_description(path: Path) -> Iterator[str] | None:
    """The first ImageDescription of TIFF ``path`` as ``tifffile`` gives it
    (``TiffFile.pages.first.description``: trailing NULs dropped, UTF-8 or else cp1252,
    whitespace stripped, '' when it is not text), in chunks, without holding it whole.
    None when the file cannot be read this way: open it with tifffile."""
    try:
        with open_binary(path) as fh:
            found = _located(fh)
            if found is None:
                return None
            kind, start, nbytes, inline = found
            if kind == 0:
                return iter(())
            if kind != 2 or nbytes > MAX_BYTES:
                return None
            if inline is not None:
                text = _tifffile_text(inline)
                return iter((text,) if text else ())
            if start < 8 or start + nbytes > file_size(fh):
                return iter(())  # tifffile warns and leaves the value out
            stop = _last_non_nul(fh, start, nbytes)
            encoding = next((e for e in ("utf-8", "cp1252") if _decodes(fh, start, stop, e)), None)
    except (OSError, struct.error, _Short):
        return None
    if encoding is None:
        return iter(())
    return _stripped(path, start, stop, encoding)


class _Short(Exception):
    """The file ends before a value it points to."""


def _located(fh: BinaryIO) -> tuple[int, int, int, bytes | None] | None:
    """(type, start, bytes, value) of the first IFD's ImageDescription entry: type 0
    without one; ``value`` holds the bytes of a value stored in the entry itself."""
    reader = IfdReader.open(fh)
    entries = None if reader is None else reader.first_entries()
    if reader is None or entries is None:
        return None
    entry = entries.get(IMAGE_DESCRIPTION)
    if entry is None:
        return 0, 0, 0, None
    start, nbytes = reader.location(entry)
    return entry[0], start, nbytes, (entry[2][:nbytes] if start < 0 else None)


def _tifffile_text(raw: bytes) -> str:
    """What tifffile makes of the bytes of an ASCII description."""
    raw = raw.rstrip(b"\0")
    for encoding in ("utf-8", "cp1252"):
        try:
            return raw.decode(encoding).strip()
        except UnicodeDecodeError:
            continue
    return ""


def _blocks(fh: BinaryIO, start: int, stop: int) -> Iterator[bytes]:
    position = start
    fh.seek(start)
    while position < stop:
        block = fh.read(min(BLOCK, stop - position))
        if not block:
            raise _Short
        position += len(block)
        yield block


def _first_nul(fh: BinaryIO, start: int, nbytes: int) -> int:
    """Where the value's first NUL is (its end without one)."""
    position = start
    for block in _blocks(fh, start, start + nbytes):
        found = block.find(b"\0")
        if found >= 0:
            return position + found
        position += len(block)
    return start + nbytes


def _last_non_nul(fh: BinaryIO, start: int, nbytes: int) -> int:
    """The end of the value without its trailing NULs."""
    stop = start + nbytes
    while stop > start:
        begin = max(start, stop - BLOCK)
        fh.seek(begin)
        block = fh.read(stop - begin)
        if len(block) != stop - begin:
            raise _Short
        kept = len(block.rstrip(b"\0"))
        if kept:
            return begin + kept
        stop = begin
    return start


def decoded(
    blocks: Iterable[bytes], encoding: str = "utf-8", errors: str = "strict"
) -> Iterator[str]:
    """The text of ``blocks`` decoded as one stream, in non-empty pieces."""
    decoder = codecs.getincrementaldecoder(encoding)(errors)
    for block in blocks:
        text = decoder.decode(block)
        if text:
            yield text
    tail = decoder.decode(b"", final=True)
    if tail:
        yield tail


def _decodes(fh: BinaryIO, start: int, stop: int, encoding: str) -> bool:
    try:
        for _ in decoded(_blocks(fh, start, stop), encoding):
            pass
    except UnicodeDecodeError:
        return False
    return True


def _stripped(path: Path, start: int, stop: int, encoding: str) -> Iterator[str]:
    """The text of bytes ``start:stop`` of ``path``, whitespace stripped at both ends."""
    with open_binary(path) as fh:
        decoder = codecs.getincrementaldecoder(encoding)()
        started, pending = False, ""
        blocks = _blocks(fh, start, stop)
        while True:
            block = next(blocks, None)
            text = decoder.decode(block if block is not None else b"", final=block is None)
            if not started:
                text = text.lstrip()
                started = bool(text)
            text = pending + text
            kept = text.rstrip()
            pending = text[len(kept) :]
            if kept:
                yield kept
            if block is None:
                return
