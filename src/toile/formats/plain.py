"""Any TIFF no other format claimed: the fallback, read through the series tifffile finds.

A tifffile-shaped file (``{"shape": ..., "axes": ...}`` in its description) holding
several series gives one recording per series; any other file is one recording. Frames
follow the series' axes (:mod:`toile.formats.tiff.stack`). The pixel size is taken from
the resolution tags only in a centimetre, millimetre or micrometre unit (not the 72 or
96 dpi defaults of writers). A file tifffile cannot parse is still a recording: opening
it reports what is wrong, where ``--on-error skip`` applies.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from toile.errors import InputError
from toile.formats.base import Candidates, Format, Recording, Source
from toile.formats.fields import FORMAT_TIFF
from toile.formats.tiff.files import input_path, open_tiff, tifffile_messages
from toile.formats.tiff.planes import TiffPlanes
from toile.formats.tiff.stack import open_series, resolution_metadata, series_list

logger = logging.getLogger(__name__)

_TIFF_NAME = re.compile(r"\.tiff?$", re.IGNORECASE)


def count_series(path: Path) -> int:
    """Number of recordings in the plain TIFF ``path`` (series of a tifffile-shaped file)."""
    with tifffile_messages(), open_tiff(path) as tif:
        try:
            if tif.is_shaped:
                return max(1, len(series_list(tif, path)))
        except InputError:
            raise
        except Exception as exc:
            raise InputError(path, f"corrupt TIFF ({exc})") from exc
    return 1


def open_plain(source: Source, channel: str | int | None = None) -> Recording:
    """Open a TIFF without vendor metadata."""
    path = input_path(source.path)
    planes = TiffPlanes(2)
    try:
        with tifffile_messages() as messages:
            tif = planes.tiff(path)
            fields = resolution_metadata(tif.pages.first, None)
            fields.update(scale_unit="um", t_unit="s", format=FORMAT_TIFF)
            recording = open_series(source, fields, channel, planes=planes)
    except BaseException:
        planes.close()
        raise
    if messages:
        logger.warning(
            "%s: %s; reading the %d frame(s) the file holds",
            path,
            "; ".join(dict.fromkeys(messages)),
            recording.n_frames,
        )
    return recording


class PlainTiffFormat(Format):
    name = FORMAT_TIFF

    def claim(self, candidates: Candidates) -> list[Source]:
        sources = []
        files = [p for p in candidates if _TIFF_NAME.search(p.name)]
        for path in files:
            count = 1
            description = candidates.description(path)
            if description is None or description.lstrip().startswith("{"):
                try:
                    count = count_series(path)
                except PermissionError:
                    raise InputError(path, "cannot be read (permission denied)") from None
                except Exception as exc:  # opening reports it, where --on-error skip applies
                    logger.debug("%s: series not counted while resolving inputs: %s", path, exc)
            for series in range(count):
                sources.append(Source(self.name, path, (path,), series=series, name=path.name))
        candidates.claim(files)
        return sources

    def open(self, source: Source, channel: str | int | None = None) -> Recording:
        return open_plain(source, channel)
