"""Planes of single-page TIFF files, read with as few system calls as copying them.

A Prairie View series is one TIFF file per frame and channel, so reading it is mostly
opening files and parsing their first IFD: through
:class:`~toile.formats.tiff.planes.TiffPlanes`, nine system calls and ~20 µs of IFD
parsing per file, on top of what copying the file costs. :class:`SinglePagePlanes` reads
the first page of a local file stored as plain contiguous strips with one ``open``, one
``fstat`` (a regular file), one read of the file's first :data:`HEAD_BYTES` and one read
straight into the caller's array. Where the plane lies is parsed by the one IFD reader
once per IFD: the files of a series, written alike, have byte-identical first IFDs.
Anything else (another page, a sample of a page, an IFD or strip table past those
bytes, compressed or tiled data, another shape or type, a short read) is read by
``TiffPlanes``, which also says what is wrong.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import sys
from pathlib import Path
from typing import Literal

import numpy as np

from toile.formats.tiff.ifd import (
    INTEGER_TYPES,
    PLANE_TAGS,
    TYPE_SIZES,
    IfdReader,
    plain_strips,
)
from toile.formats.tiff.planes import PlaneRef, TiffPlanes

#: Bytes read from the start of a file for its header and first IFD.
HEAD_BYTES = 4096
_NATIVE = "<" if sys.byteorder == "little" else ">"
#: O_NONBLOCK: opening a named pipe must not wait for a writer (it is then no regular file).
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
_POSITIONAL_READS = hasattr(os, "pread") and hasattr(os, "preadv")


def read_first_page(path: Path, out: np.ndarray) -> bool:
    """Read the first page of the TIFF file at ``path`` into the 2-D array ``out`` when
    it is stored as plain contiguous strips of ``out``'s shape and type; False when it
    is not, or cannot be read that way (``out`` may then hold part of it)."""
    if not _POSITIONAL_READS:
        return False
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        found = _plane_location(os.pread(fd, HEAD_BYTES, 0), out)
        if found is None:
            return False
        start, nbytes, byteorder = found
        if os.preadv(fd, [out.reshape(-1).view(np.uint8)], start) != nbytes:
            return False
    except (OSError, struct.error):
        return False
    finally:
        os.close(fd)
    if byteorder != _NATIVE and out.dtype.itemsize > 1:
        out.byteswap(inplace=True)
    return True


#: Where the plane of a first IFD lies, by that IFD's bytes (and the header's): the
#: files of a series are written alike, and parsing an IFD costs more than the rest of
#: reading a small file. Only IFDs whose plane tags hold their values in their own
#: fields are kept, so that the bytes of the key are all the location was read from.
_LOCATIONS: dict[tuple, tuple[int, int, str]] = {}
_KEPT_LOCATIONS = 64


def _plane_location(head: bytes, out: np.ndarray) -> tuple[int, int, str] | None:
    """(start, bytes, byte order) of the plain plane of ``out``'s geometry that the
    first IFD in ``head`` (a file's first bytes) describes; None if there is none."""
    ifd = _first_ifd_bytes(head)
    key = None if ifd is None else (ifd, out.shape, out.dtype.kind, out.dtype.itemsize)
    kept = None if key is None else _LOCATIONS.get(key)
    if kept is not None:
        return kept
    reader = IfdReader.open(io.BytesIO(head))
    if reader is None:
        return None
    first = reader.offset(0)
    entries = None if first is None else reader.entries(first)
    tags = None if first is None else reader.integer_tags(first, PLANE_TAGS)
    if entries is None or tags is None:
        return None
    height, width = out.shape
    found = plain_strips(tags, height, width, out.dtype.kind, out.dtype.itemsize)
    location = None if found is None else (found[0], found[1], reader.byteorder)
    if (
        location is not None
        and key is not None
        and all(
            n * TYPE_SIZES[kind] <= len(field)
            for code, (kind, n, field) in entries.items()
            if code in PLANE_TAGS and kind in INTEGER_TYPES
        )
    ):
        if len(_LOCATIONS) >= _KEPT_LOCATIONS:
            _LOCATIONS.clear()
        _LOCATIONS[key] = location
    return location


def _first_ifd_bytes(head: bytes) -> bytes | None:
    """The classic TIFF header and first IFD (its entries and next offset) in ``head``,
    or None (BigTIFF, not a TIFF, or an IFD past ``head``)."""
    if head[:4] == b"II*\0":
        order: Literal["little", "big"] = "little"
    elif head[:4] == b"MM\0*":
        order = "big"
    else:
        return None
    first = int.from_bytes(head[4:8], order)
    if first < 8 or first + 2 > len(head):
        return None
    end = first + 2 + 12 * int.from_bytes(head[first : first + 2], order) + 4
    return head[:8] + head[first:end] if end <= len(head) else None


class SinglePagePlanes(TiffPlanes):
    """:class:`TiffPlanes` that reads the first page of a local file, when it is one
    plain plane, with :func:`read_first_page`."""

    def read(self, ref: PlaneRef, out: np.ndarray, sample: int | None = None) -> None:
        if (
            ref.page == 0
            and ref.offset is None
            and ref.sample is None
            and sample is None
            and out.ndim == 2
            and out.flags.c_contiguous
            and isinstance(ref.file, Path)
            and read_first_page(ref.file, out)
        ):
            return
        super().read(ref, out, sample)
