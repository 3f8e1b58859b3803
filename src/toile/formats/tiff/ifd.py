"""The image directories (IFDs) of a TIFF file, read straight from the file.

The one raw IFD reader of toile. Opening a file with ``tifffile.TiffFile`` costs a
millisecond or more and a page object a few kilobytes; where only a few integer tags
are needed (grouping hundreds of files by their first ImageDescription, reading a
plain plane straight from its strips, checking that a file is not cut short), reading
them directly is much cheaper. Classic TIFF and BigTIFF, either byte order. Anything
unusual gives None, and the caller goes through tifffile, which reports problems
precisely.
"""

from __future__ import annotations

import struct
from array import array
from typing import BinaryIO

#: Largest number of entries accepted in an IFD.
MAX_ENTRIES = 1024
#: Largest number of values of an integer tag read (strip offsets of one plane).
MAX_VALUES = 1 << 20
#: Most entries tifffile reads in an IFD (it calls a longer tag list corrupt).
TIFFFILE_MAX_ENTRIES = 4096

#: TIFF tag type -> struct item, for the integer types.
INTEGER_TYPES = {1: "B", 3: "H", 4: "I", 6: "b", 8: "h", 9: "i", 13: "I", 16: "Q", 17: "q", 18: "Q"}
#: TIFF tag type -> bytes per value, for every type.
TYPE_SIZES = {
    1: 1,
    2: 1,
    3: 2,
    4: 4,
    5: 8,
    6: 1,
    7: 1,
    8: 2,
    9: 4,
    10: 8,
    11: 4,
    12: 8,
    13: 4,
    16: 8,
    17: 8,
    18: 8,
}

IMAGE_WIDTH, IMAGE_LENGTH, BITS_PER_SAMPLE, COMPRESSION = 256, 257, 258, 259
FILL_ORDER, IMAGE_DESCRIPTION, STRIP_OFFSETS, SAMPLES_PER_PIXEL = 266, 270, 273, 277
STRIP_BYTE_COUNTS, PLANAR_CONFIG, PREDICTOR, TILE_WIDTH, SAMPLE_FORMAT = 279, 284, 317, 322, 339
TILE_OFFSETS, TILE_BYTE_COUNTS, EXTRA_SAMPLES, IMAGE_DEPTH = 324, 325, 338, 32997
JPEG_OFFSET, JPEG_LENGTH = 513, 514

#: The tags :func:`plain_strips` looks at.
PLANE_TAGS = frozenset(
    (
        IMAGE_WIDTH,
        IMAGE_LENGTH,
        BITS_PER_SAMPLE,
        COMPRESSION,
        FILL_ORDER,
        STRIP_OFFSETS,
        SAMPLES_PER_PIXEL,
        STRIP_BYTE_COUNTS,
        PREDICTOR,
        TILE_WIDTH,
        SAMPLE_FORMAT,
    )
)

#: Entry of an IFD: (type, count, value field as stored: the value or its offset).
Entry = tuple[int, int, bytes]


class IfdReader:
    """The IFDs of one TIFF open as ``fh`` (a seekable binary stream).

    Build with :meth:`open`, which reads the header. IFD offsets are found by following
    the chain, as far as asked and no further (:meth:`offset`), and kept in a compact
    array: a file of 100,000 pages costs 800 kB, not a page object per IFD.
    """

    def __init__(self, fh: BinaryIO, byteorder: str, bigtiff: bool, first: int) -> None:
        self.fh = fh
        self.byteorder = byteorder
        self.bigtiff = bigtiff
        self.word = "Q" if bigtiff else "I"
        self._count_fmt = byteorder + ("Q" if bigtiff else "H")
        self._count_size = 8 if bigtiff else 2
        self._entry_size = 20 if bigtiff else 12
        self._offsets = array("q")
        self._next = first  # offset of the first IFD not yet in _offsets (0: chain ended)
        self._clean: bool | None = None  # whether the chain ended with a 0 offset

    @classmethod
    def open(cls, fh: BinaryIO) -> IfdReader | None:
        """The reader of the TIFF open as ``fh`` (read from its start), None if not a TIFF."""
        fh.seek(0)
        head = fh.read(16)
        if len(head) < 8 or head[:2] not in (b"II", b"MM"):
            return None
        order = "<" if head[:2] == b"II" else ">"
        magic = struct.unpack_from(order + "H", head, 2)[0]
        if magic == 42:
            return cls(fh, order, False, struct.unpack_from(order + "I", head, 4)[0])
        if magic == 43 and len(head) == 16:
            return cls(fh, order, True, struct.unpack_from(order + "Q", head, 8)[0])
        return None

    def entries(self, offset: int) -> dict[int, Entry] | None:
        """The entries of the IFD at ``offset`` by tag code (the first of duplicates wins)."""
        fh = self.fh
        fh.seek(offset)
        raw = fh.read(self._count_size)
        if len(raw) != self._count_size:
            return None
        count = struct.unpack(self._count_fmt, raw)[0]
        if not 0 < count < MAX_ENTRIES:
            return None
        size = self._entry_size
        data = fh.read(count * size)
        if len(data) != count * size:
            return None
        order, word = self.byteorder, self.word
        field_size = 8 if self.bigtiff else 4
        entries: dict[int, Entry] = {}
        for i in range(count):
            base = i * size
            code, kind = struct.unpack_from(order + "HH", data, base)
            n = struct.unpack_from(order + word, data, base + 4)[0]
            entries.setdefault(code, (kind, n, data[base + size - field_size : base + size]))
        return entries

    def location(self, entry: Entry) -> tuple[int, int]:
        """(start, bytes) of an entry's value in the file; start -1 when it lies in the
        entry's own field (:meth:`value` reads it)."""
        kind, n, field = entry
        nbytes = n * TYPE_SIZES.get(kind, 1)
        if nbytes <= len(field):
            return -1, nbytes
        return struct.unpack_from(self.byteorder + self.word, field)[0], nbytes

    def value(self, entry: Entry) -> bytes | None:
        """The raw bytes of an entry's value: in its field, or where the field points."""
        kind, n, field = entry
        nbytes = n * TYPE_SIZES.get(kind, 1)
        if nbytes <= len(field):
            return field[:nbytes]
        self.fh.seek(struct.unpack_from(self.byteorder + self.word, field)[0])
        data = self.fh.read(nbytes)
        return data if len(data) == nbytes else None

    def integers(self, entry: Entry) -> tuple[int, ...] | None:
        """The values of an integer entry, None for another type or an unreadable value."""
        kind, n, _ = entry
        item = INTEGER_TYPES.get(kind)
        if item is None or not 0 < n <= MAX_VALUES:
            return None
        raw = self.value(entry)
        if raw is None:
            return None
        return struct.unpack_from(f"{self.byteorder}{n}{item}", raw)

    def integer_tags(
        self, offset: int, codes: frozenset[int] | None = None
    ) -> dict[int, tuple[int, ...]] | None:
        """The integer tags ``codes`` (default: the SHORT, LONG and LONG8 ones) of the IFD
        at ``offset``; None when the IFD or one of those values cannot be read."""
        entries = self.entries(offset)
        if entries is None:
            return None
        tags = {}
        for code, entry in entries.items():
            if codes is None:
                if entry[0] not in (3, 4, 16):
                    continue
            elif code not in codes or entry[0] not in INTEGER_TYPES:
                continue
            values = self.integers(entry)
            if values is None:
                return None
            tags[code] = values
        return tags

    def text(self, entry: Entry) -> str | None:
        """An ASCII entry's text up to its first NUL, None if not ASCII or not UTF-8."""
        if entry[0] != 2 or entry[1] > 1 << 30:
            return None
        raw = self.value(entry)
        if raw is None:
            return None
        try:
            return raw.split(b"\0", 1)[0].decode("utf-8")
        except UnicodeDecodeError:
            return None

    def next_ifd(self, offset: int) -> int | None:
        """Offset of the IFD after the one at ``offset`` (0 at the end), None if unreadable."""
        fh = self.fh
        fh.seek(offset)
        raw = fh.read(self._count_size)
        if len(raw) != self._count_size:
            return None
        count = struct.unpack(self._count_fmt, raw)[0]
        fh.seek(offset + self._count_size + count * self._entry_size)
        raw = fh.read(8 if self.bigtiff else 4)
        if len(raw) != (8 if self.bigtiff else 4):
            return None
        return struct.unpack(self.byteorder + self.word, raw)[0]

    def offset(self, index: int) -> int | None:
        """Offset of IFD ``index`` (0 the first), None when the chain is shorter or breaks."""
        offsets = self._offsets
        while len(offsets) <= index and self._next:
            current = self._next
            offsets.append(current)
            following = self.next_ifd(current)
            if following is None or following == current or following < 8:
                self._next = 0  # a broken or looping chain ends here
            else:
                self._next = following
        return offsets[index] if index < len(offsets) else None

    def count(self, size: int) -> int | None:
        """Number of IFDs when the chain reads cleanly in a file of ``size`` bytes: each
        IFD after the one before it and inside the file, with a tag count tifffile
        accepts, the last one pointing to 0. None otherwise (a chain that breaks, loops or
        goes back), for tifffile to follow and report."""
        if self._clean is None:
            self._clean = self._walk(size)
        return len(self._offsets) if self._clean else None

    def _walk(self, size: int) -> bool:
        offsets = self._offsets
        if not offsets:
            if not 8 <= self._next < size:
                return False
            offsets.append(self._next)
        word = 8 if self.bigtiff else 4
        fh = self.fh
        while True:
            current = offsets[-1]
            fh.seek(current)
            raw = fh.read(self._count_size)
            if len(raw) != self._count_size:
                self._next = 0
                return False
            entries = struct.unpack(self._count_fmt, raw)[0]
            fh.seek(current + self._count_size + entries * self._entry_size)
            raw = fh.read(word)
            if len(raw) != word:
                self._next = 0
                return False
            following = struct.unpack(self.byteorder + self.word, raw)[0]
            if entries > TIFFFILE_MAX_ENTRIES:
                self._next = following if following >= 8 and following != current else 0
                return False
            if following == 0:
                self._next = 0
                return True
            if not current < following < size:
                self._next = following if following >= 8 and following != current else 0
                return False
            offsets.append(following)

    def first_entries(self) -> dict[int, Entry] | None:
        """The entries of the first IFD."""
        first = self.offset(0)
        return None if first is None else self.entries(first)


def plain_strips(
    tags: dict[int, tuple[int, ...]], height: int, width: int, dtype_kind: str, itemsize: int
) -> tuple[int, int] | None:
    """(start, bytes) of a plane stored as plain contiguous strips of one sample, or None.

    None unless ``tags`` (an IFD's integer tags) describe uncompressed, unpredicted,
    untiled strips of ``height`` x ``width`` single samples of the given kind
    (``u``/``i``/``f``) and size, that follow each other in the file and hold the whole
    plane; the caller then reads the plane through tifffile, which decodes it or says
    what is wrong.
    """

    def one(code: int, default: int | None = None) -> int | None:
        value = tags.get(code)
        return value[0] if value else default

    offsets = tags.get(STRIP_OFFSETS)
    counts = tags.get(STRIP_BYTE_COUNTS)
    kinds = {1: "u", 2: "i", 3: "f"}
    nbytes = height * width * itemsize
    if (
        one(IMAGE_WIDTH) != width
        or one(IMAGE_LENGTH) != height
        or one(SAMPLES_PER_PIXEL, 1) != 1
        or one(COMPRESSION, 1) != 1
        or one(FILL_ORDER, 1) != 1
        or one(PREDICTOR, 1) != 1
        or TILE_WIDTH in tags
        or one(BITS_PER_SAMPLE, 1) != itemsize * 8
        or kinds.get(one(SAMPLE_FORMAT, 1) or 1) != dtype_kind
        or not offsets
        or not counts
        or len(offsets) != len(counts)
        or sum(counts) < nbytes
    ):
        return None
    for i in range(1, len(offsets)):
        if offsets[i] != offsets[i - 1] + counts[i - 1]:
            return None
    return offsets[0], nbytes
