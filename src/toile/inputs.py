"""Resolve what the user pointed at (paths, globs, YAML inputs) into recordings.

A recording is one movie: a single (multi-page) TIFF or OME-TIFF series, or a
multi-file OME series such as a Bruker Prairie View T-Series directory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class RecordingSource:
    """Where one recording lives on disk.

    ``path`` is the recording's main file: the stack file itself, or for a
    multi-file OME series the file holding the full OME-XML (for Prairie View,
    the first file of the series). ``files`` lists every file that belongs to
    the recording (just ``(path,)`` for a single file). ``series`` selects one
    OME ``Image`` / tifffile series inside ``path``. ``name`` is what a
    ``filename_spec`` template is matched against. ``fields`` holds the values
    parsed from the name (filled in by the batch layer, empty otherwise).
    """

    path: Path
    files: tuple[Path, ...]
    series: int = 0
    name: str = ""
    fields: dict = field(default_factory=dict, compare=False, hash=False)
