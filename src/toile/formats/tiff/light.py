"""A TIFF's first ImageDescription, read with a few small reads.

A directory of thousands of files is grouped into recordings before anything else
happens; opening each with ``tifffile.TiffFile`` costs a millisecond or more.
"""

from __future__ import annotations

from pathlib import Path

from toile.ifd import read_first_ifd

#: The ImageDescription tag, where OME-TIFF keeps its OME-XML and ScanImage its header.
IMAGE_DESCRIPTION = 270


def first_description(path: Path) -> str | None:
    """The first ImageDescription of TIFF ``path``: '' when it has none, None when the file
    cannot be read this way (not a TIFF, unusual, unreadable); tifffile then decides."""
    try:
        with open(path, "rb") as fh:
            ifd = read_first_ifd(fh)
            if ifd is None:
                return None
            entry = ifd.entries.get(IMAGE_DESCRIPTION)
            if entry is None:
                return ""
            kind, n, field = entry
            if kind != 2 or n > 1 << 30:  # an ImageDescription is ASCII
                return None
            value = ifd.value(fh, field, n)
    except OSError:
        return None
    if value is None:
        return None
    try:
        return value.split(b"\0", 1)[0].decode("utf-8")
    except UnicodeDecodeError:
        return None
