"""What every peer script shares: frames read page by page and a few metadata fields.

Imported by the peer scripts, which run in their own environments (see peers.py); it
needs only numpy and tifffile, in whatever versions those environments have.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tifffile


def movie_metadata(path: Path) -> dict:
    """A few OME-XML Pixels attributes, as a user would pick them out by hand."""
    with tifffile.TiffFile(path) as tif:
        xml = tif.ome_metadata
    if not xml:
        return {}
    image = tifffile.xml2dict(xml)["OME"]["Image"]
    image = image[0] if isinstance(image, list) else image
    pixels = image["Pixels"]
    keys = ("PhysicalSizeX", "PhysicalSizeY", "TimeIncrement", "SizeT", "SizeC", "Type")
    meta = {key: pixels[key] for key in keys if key in pixels}
    meta["image_name"] = image.get("Name")
    meta["acquisition_date"] = image.get("AcquisitionDate")
    return meta


def frame_metadata(meta: dict, source: Path, index: int, frame: np.ndarray) -> dict:
    """The JSON of one frame: the movie's fields and where the frame comes from."""
    dt = float(meta.get("TimeIncrement") or 0.0)
    return {
        **meta,
        "source": source.name,
        "frame": index,
        "t": index * dt,
        "shape": list(frame.shape),
        "dtype": str(frame.dtype),
    }


def frame_count(path: Path) -> int:
    with tifffile.TiffFile(path) as tif:
        return len(tif.pages)


def read_frames(path: Path, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
    """Pages ``start`` to ``stop`` of a TIFF file, one array each, read page by page."""
    with tifffile.TiffFile(path) as tif:
        pages = tif.pages
        for index in range(start, len(pages) if stop is None else stop):
            yield pages[index].asarray()


def blocks(count: int, parts: int = 36) -> list[tuple[int, int]]:
    """``count`` frames as about ``parts`` consecutive (start, stop) ranges."""
    size = max(1, -(-count // parts))
    return [(start, min(count, start + size)) for start in range(0, count, size)]
