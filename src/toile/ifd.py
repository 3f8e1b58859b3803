"""The first image directory (IFD) of a TIFF file, read with a few small reads.

Opening a file with ``tifffile.TiffFile`` costs a millisecond or more; where only a
few tags of the first image are needed (the files of a Prairie View series, the OME
links of files being grouped), reading them directly is much cheaper. Anything
unusual gives None, and the caller goes through tifffile, which reports problems
precisely.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

#: Largest number of entries accepted in an IFD.
MAX_ENTRIES = 1024


@dataclass(frozen=True)
class FirstIfd:
    """The entries of a TIFF's first IFD: tag code -> (type, count, value field)."""

    byteorder: str  # "<" or ">"
    word: str  # "I" (classic TIFF) or "Q" (BigTIFF): offsets and counts
    entries: dict[int, tuple[int, int, bytes]]

    def value(self, fh: BinaryIO, field: bytes, nbytes: int) -> bytes | None:
        """The ``nbytes`` of an entry's value: in its field, or where the field points."""
        if nbytes <= len(field):
            return field[:nbytes]
        fh.seek(struct.unpack_from(self.byteorder + self.word, field)[0])
        data = fh.read(nbytes)
        return data if len(data) == nbytes else None


def read_first_ifd(fh: BinaryIO) -> FirstIfd | None:
    """The first IFD of the TIFF open as ``fh`` (at its start), or None if unusual."""
    head = fh.read(16)
    if len(head) < 8 or head[:2] not in (b"II", b"MM"):
        return None
    order = "<" if head[:2] == b"II" else ">"
    magic = struct.unpack_from(order + "H", head, 2)[0]
    if magic == 42:
        offset = struct.unpack_from(order + "I", head, 4)[0]
        count_fmt, entry_size, word = "H", 12, "I"
    elif magic == 43 and len(head) == 16:
        offset = struct.unpack_from(order + "Q", head, 8)[0]
        count_fmt, entry_size, word = "Q", 20, "Q"
    else:
        return None
    fh.seek(offset)
    raw = fh.read(struct.calcsize(count_fmt))
    if len(raw) != struct.calcsize(count_fmt):
        return None
    count = struct.unpack(order + count_fmt, raw)[0]
    if not 0 < count < MAX_ENTRIES:
        return None
    data = fh.read(count * entry_size)
    if len(data) != count * entry_size:
        return None
    value_size = struct.calcsize(word)
    entries: dict[int, tuple[int, int, bytes]] = {}
    for i in range(count):
        base = i * entry_size
        code, kind = struct.unpack_from(order + "HH", data, base)
        n = struct.unpack_from(order + word, data, base + 4)[0]
        entries.setdefault(
            code, (kind, n, data[base + entry_size - value_size : base + entry_size])
        )
    return FirstIfd(order, word, entries)
