"""Every TIFF layout toile 0.1 read (OME-TIFF, Prairie View, ImageJ, plain), behind the seam.

Interim: discovery and reading are still :mod:`toile.inputs` and :mod:`toile.reader`;
they are being split into one module per vendor.
"""

from __future__ import annotations

from toile.formats.base import Candidates, Format, Recording, Source


class LegacyTiffFormat(Format):
    name = "tiff"

    def claim(self, candidates: Candidates) -> list[Source]:
        from toile.inputs import _group_recordings

        files = {p for p in candidates if p.suffix.lower() in (".tif", ".tiff")}
        found = _group_recordings(files)
        candidates.claim(files)
        return [
            Source(self.name, s.path, s.files, series=s.series, name=s.name, fields=s.fields)
            for s in found
        ]

    def open(self, source: Source, channel: str | int | None = None) -> Recording:
        from toile.reader import open_recording

        return open_recording(source, channel=channel)
