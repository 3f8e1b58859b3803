"""A TIFF's first ImageDescription, read with a few small reads.

A directory of thousands of files is grouped into recordings before anything else
happens; opening each with ``tifffile.TiffFile`` costs a millisecond or more.
"""

from __future__ import annotations

import struct
from pathlib import Path

from toile.formats.tiff.files import open_binary
from toile.formats.tiff.ifd import IMAGE_DESCRIPTION, IfdReader


def first_description(path: Path) -> str | None:
    """The first ImageDescription of TIFF ``path``: '' when it has none, None when the file
    cannot be read this way (not a TIFF, unusual, unreadable); tifffile then decides."""
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
