"""Paths, globs and YAML input patterns to recording sources, through the format registry.

What a pattern may be, relative patterns being relative to ``base_dir``:

- a file: TIFF (``*.tif``, ``*.tiff``, any case) or a file a format reads (a vendor's
  XML, an OME companion file); a named file that no format claims is an error;
- a directory: every non-hidden file under it, to any depth (symbolic links followed,
  each directory once), TIFF or not; it must hold at least one TIFF file;
- a glob (``*``, ``?``, ``[...]``, and ``**`` for any depth): every file it matches,
  and every file under each directory it matches, as above.

The files found make one :class:`~toile.formats.base.Candidates` set; each format of
the registry, in its fixed order, claims the groups it understands (with their
sidecars), and the plain-TIFF format takes any TIFF left. A non-TIFF file found by
walking a directory or matched by a glob that no format claims is ignored. Discovery
itself knows nothing about any one format.
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from toile.errors import InputError
from toile.formats.base import Candidates, Source

logger = logging.getLogger(__name__)

_TIFF_NAME = re.compile(r"\.tiff?$", re.IGNORECASE)
_GLOB_MAGIC = re.compile(r"[*?[]")


def is_tiff_name(path: str | Path) -> bool:
    """True for ``*.tif`` / ``*.tiff`` names in any case (``.ome.tif`` included)."""
    return _TIFF_NAME.search(Path(path).name) is not None


def discover(
    patterns: Sequence[str],
    base_dir: Path,
    options: Mapping[str, Any] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> list[Source]:
    """Sources for ``patterns`` (relative ones relative to ``base_dir``), sorted by path
    then series, each claimed by the first format of the registry that understands it.

    ``options`` (e.g. ``{"calibrated": True}``) go into every source's ``detail``, for
    the format that opens it. Raises InputError for a path that does not exist, a
    pattern that matches nothing, a directory without any TIFF file, an unreadable file
    or directory, and a named file that no format reads. ``storage_options`` are the
    fsspec options of URL patterns (endpoint, credentials, ...).
    """
    from toile.formats.registry import FORMATS

    files: set[Path] = set()
    named: set[Path] = set()
    if any("://" in str(p) for p in patterns):  # URLs: objects read with range requests
        from toile.storage.inputs import split_patterns, url_inputs

        patterns, urls = split_patterns([str(p) for p in patterns])
        remote = url_inputs(urls, storage_options)
        files.update(remote)  # type: ignore[arg-type]
        named.update(p for p in remote if str(p) in urls)  # type: ignore[misc]
    for pattern in patterns:
        found, explicit = _expand_pattern(str(pattern), Path(base_dir))
        files.update(found)
        named.update(explicit)
    candidates = Candidates(files, named)
    unique: dict[tuple[Path, int], Source] = {}
    for fmt in FORMATS:
        for source in fmt.claim(candidates):
            unique.setdefault((source.path, source.series), source)
    for path in candidates:
        if path in candidates.named:
            raise InputError(path, "not a TIFF file (expected a .tif or .tiff name)")
        logger.debug("%s: no format reads this file; ignored", path)
    sources = [unique[key] for key in sorted(unique)]
    if options:
        sources = [dataclasses.replace(s, detail={**s.detail, **options}) for s in sources]
    return sources


def absolute(path: str | Path) -> Path:
    """Absolute and normalised (``..`` folded) without resolving symlinks."""
    return Path(os.path.abspath(path))


def _expand_pattern(pattern: str, base_dir: Path) -> tuple[set[Path], set[Path]]:
    """The files of one pattern, and those of them the user named."""
    expanded = os.path.expanduser(pattern)
    full = expanded if os.path.isabs(expanded) else os.path.join(base_dir, expanded)
    if os.path.lexists(full) or not _GLOB_MAGIC.search(expanded):
        return _expand_path(absolute(full))
    if os.path.isabs(expanded):
        matches = glob.glob(expanded, recursive=True)
    else:
        matches = [
            os.path.join(base_dir, m)
            for m in glob.glob(expanded, root_dir=base_dir, recursive=True)
        ]
    if not matches:
        raise InputError(full, "matches no file or directory")
    files: set[Path] = set()
    for match in matches:
        path = absolute(match)
        if path.is_dir():
            files.update(_files_under(path, set()))
        elif path.is_file() and not path.name.startswith("."):
            files.add(path)
    if not any(is_tiff_name(p) for p in files):
        raise InputError(full, "matches no TIFF file")
    return files, set()


def _expand_path(path: Path) -> tuple[set[Path], set[Path]]:
    if not os.path.lexists(path):
        raise InputError(path, "does not exist")
    if path.is_dir():
        files = _files_under(path, set())
        if not any(is_tiff_name(p) for p in files):
            raise InputError(path, "no TIFF files found")
        return files, set()
    if not path.exists():
        raise InputError(path, "is a broken symbolic link")
    if not os.access(path, os.R_OK):
        raise InputError(path, "cannot be read (permission denied)")
    return {path}, {path}


def _list_dir(directory: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(directory) as entries:
            return sorted(entries, key=lambda e: e.name)
    except PermissionError:
        raise InputError(directory, "cannot read directory (permission denied)") from None
    except OSError as exc:
        raise InputError(directory, f"cannot read directory ({exc.strerror})") from None


def _files_under(directory: Path, visited: set[Path]) -> set[Path]:
    """Non-hidden files in ``directory`` and its sub-directories (symlink loops followed once)."""
    real = Path(os.path.realpath(directory))
    if real in visited:
        return set()
    visited.add(real)
    files: set[Path] = set()
    for entry in _list_dir(directory):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            files.update(_files_under(directory / entry.name, visited))
        elif entry.is_file():
            files.add(directory / entry.name)
    return files
