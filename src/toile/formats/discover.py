"""Paths, globs and YAML inputs to recording sources, through the format registry.

Interim: files are found and grouped as toile 0.1 did (:mod:`toile.inputs`); the
registry decides which format opens each source.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from toile.formats.base import Candidates, Source


def discover(patterns: Sequence[str], base_dir: Path) -> list[Source]:
    """Sources for ``patterns`` (relative ones relative to ``base_dir``), sorted by path
    then series, each claimed by the first format of the registry that understands it.
    Raises InputError for a path that does not exist, a pattern that matches nothing,
    and a named file that no format reads."""
    from toile.formats.registry import FORMATS
    from toile.inputs import _expand_pattern

    files: set[Path] = set()
    for pattern in patterns:
        files.update(_expand_pattern(str(pattern), Path(base_dir)))
    candidates = Candidates(files)
    sources: list[Source] = []
    for fmt in FORMATS:
        sources.extend(fmt.claim(candidates))
    return sorted(sources, key=lambda s: (s.path, s.series))
