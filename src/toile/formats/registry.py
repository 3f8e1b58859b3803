"""The formats toile reads, in the order they claim files.

Adding a format is one module with a :class:`toile.formats.base.Format` subclass and
one line here. Earlier formats claim first: vendor layouts recognised by their
sidecars or names, then OME-TIFF, then ImageJ, then any TIFF left (the fallback).
The order, once every format is in: synthetic, prairie, thorimage, scanimage,
micromanager, ome_tiff, imagej, plain.
"""

from __future__ import annotations

from toile.formats.base import Format
from toile.formats.imagej import ImageJFormat
from toile.formats.micromanager import MicroManagerFormat
from toile.formats.ome_tiff import OmeTiffFormat
from toile.formats.plain import PlainTiffFormat
from toile.formats.prairie import PrairieFormat
from toile.formats.scanimage import ScanImageFormat
from toile.formats.synthetic import SyntheticFormat
from toile.formats.thorimage import ThorImageFormat

FORMATS: tuple[Format, ...] = (
    SyntheticFormat(),
    PrairieFormat(),
    ThorImageFormat(),
    ScanImageFormat(),
    MicroManagerFormat(),
    OmeTiffFormat(),
    ImageJFormat(),
    PlainTiffFormat(),
)


def get_format(name: str) -> Format:
    """The registered format called ``name``."""
    for fmt in FORMATS:
        if fmt.name == name:
            return fmt
    raise KeyError(f"no format named {name!r}; known: {', '.join(f.name for f in FORMATS)}")
