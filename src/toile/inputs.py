"""Resolve what the user pointed at (paths, globs, YAML inputs) into recordings.

A recording is one movie: a single (multi-page) TIFF or OME-TIFF series, or a
multi-file OME series such as a Bruker Prairie View T-Series directory.

What a pattern may be, relative patterns being relative to ``base_dir``:

- a TIFF file (``*.tif``, ``*.tiff``, any case, ``.ome.tif`` included);
- a directory: its TIFF files are recordings and its sub-directories are
  resolved the same way, to any depth (hidden entries are skipped, and so is
  the ``References`` folder Prairie View saves its reference images in next
  to a T-Series);
- a glob (``*``, ``?``, ``[...]``, and ``**`` for any depth): every TIFF file
  or directory it matches, as above; other files it matches are ignored.

How files become recordings:

- Bruker Prairie View writes one file per frame and channel,
  ``{prefix}_Cycle{NNNNN}_Ch{N}_{NNNNNN}.ome.tif``; the files of a directory
  that share a prefix are ONE recording, whichever of them a pattern matched.
  Its ``path`` is the first file (lowest cycle, channel and index), which
  holds the master OME-XML; its ``name`` is the prefix (e.g.
  ``TSeries-03152024-001``), so for such a directory-style recording a
  ``filename_spec`` template is matched against the series prefix.
- Other multi-file OME-TIFF series: a file whose OME-XML is ``BinaryOnly``
  belongs to the file named by its ``MetadataFile`` attribute, and files
  named in an OME-XML's ``UUID FileName`` references belong with the file
  that references them; each such group is one recording whose ``path`` is
  the first file of the group holding full OME-XML.
- Any other TIFF file is a recording named by its base name; an OME-TIFF
  holding several ``Image`` series gives one recording per series.

Recordings come back sorted by path, then series, without duplicates.
A file tifffile cannot parse is still returned as a recording (series 0):
the reader reports it when it is opened, where ``--on-error skip`` applies.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import tifffile

from toile.errors import InputError
from toile.ifd import read_first_ifd

logger = logging.getLogger(__name__)

_TIFF_NAME = re.compile(r"\.tiff?$", re.IGNORECASE)
_OME_TIFF_NAME = re.compile(r"\.ome\.tiff?$", re.IGNORECASE)
_PRAIRIE_NAME = re.compile(
    r"^(?P<prefix>.+)_Cycle(?P<cycle>\d+)_Ch(?P<channel>\d+)_(?P<index>\d+)(?:\.ome)?\.tiff?$",
    re.IGNORECASE,
)
_GLOB_MAGIC = re.compile(r"[*?[]")
_BINARY_ONLY = re.compile(r"<(?:[\w.-]+:)?BinaryOnly\b")
_UUID_FILENAME = re.compile(r"<(?:[\w.-]+:)?UUID\b[^>]*?\bFileName\s*=\s*\"([^\"]*)\"")
_PRAIRIE_REFERENCES = "References"


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


def is_tiff_name(path: str | Path) -> bool:
    """True for ``*.tif`` / ``*.tiff`` names in any case (``.ome.tif`` included)."""
    return _TIFF_NAME.search(Path(path).name) is not None


def resolve_inputs(patterns: Sequence[str], base_dir: Path) -> list[RecordingSource]:
    """Turn paths and globs into recordings; see the module docstring for the rules.

    Raises InputError for a path that does not exist, a pattern that matches
    nothing, a directory without any TIFF file, a file that is not a TIFF, an
    unreadable file or directory, or a ``BinaryOnly`` OME-TIFF whose metadata
    file is missing or not a TIFF.
    """
    files: set[Path] = set()
    for pattern in patterns:
        files.update(_expand_pattern(str(pattern), Path(base_dir)))
    return _group_recordings(files)


def _absolute(path: str | Path) -> Path:
    """Absolute and normalised (``..`` folded) without resolving symlinks."""
    return Path(os.path.abspath(path))


def _expand_pattern(pattern: str, base_dir: Path) -> set[Path]:
    expanded = os.path.expanduser(pattern)
    full = expanded if os.path.isabs(expanded) else os.path.join(base_dir, expanded)
    if os.path.lexists(full) or not _GLOB_MAGIC.search(expanded):
        return _expand_path(_absolute(full))
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
        path = _absolute(match)
        if path.is_dir():
            if not _is_prairie_references(path):
                files.update(_tiffs_under(path, set()))
        elif is_tiff_name(path) and not _is_prairie_references(path.parent):
            files.add(path)
    if not files:
        raise InputError(full, "matches no TIFF file")
    return files


def _expand_path(path: Path) -> set[Path]:
    if not os.path.lexists(path):
        raise InputError(path, "does not exist")
    if path.is_dir():
        files = _tiffs_under(path, set())
        if not files:
            raise InputError(path, "no TIFF files found")
        return files
    if not path.exists():
        raise InputError(path, "is a broken symbolic link")
    if not is_tiff_name(path):
        raise InputError(path, "not a TIFF file (expected a .tif or .tiff name)")
    if not os.access(path, os.R_OK):
        raise InputError(path, "cannot be read (permission denied)")
    return {path}


def _list_dir(directory: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(directory) as entries:
            return sorted(entries, key=lambda e: e.name)
    except PermissionError:
        raise InputError(directory, "cannot read directory (permission denied)") from None
    except OSError as exc:
        raise InputError(directory, f"cannot read directory ({exc.strerror})") from None


def _tiffs_under(directory: Path, visited: set[Path]) -> set[Path]:
    """TIFF files in ``directory`` and its sub-directories (symlink loops followed once)."""
    real = Path(os.path.realpath(directory))
    if real in visited:
        return set()
    visited.add(real)
    entries = [e for e in _list_dir(directory) if not e.name.startswith(".")]
    files = {directory / e.name for e in entries if e.is_file() and _TIFF_NAME.search(e.name)}
    has_prairie = any(_PRAIRIE_NAME.match(p.name) for p in files)
    for entry in entries:
        if not entry.is_dir():
            continue
        if has_prairie and entry.name == _PRAIRIE_REFERENCES:
            logger.info("skipping Prairie View reference images in %s", directory / entry.name)
            continue
        files.update(_tiffs_under(directory / entry.name, visited))
    return files


def _is_prairie_references(directory: Path) -> bool:
    """True for the ``References`` folder Prairie View saves next to a series."""
    if directory.name != _PRAIRIE_REFERENCES:
        return False
    try:
        return any(_PRAIRIE_NAME.match(name) for name in os.listdir(directory.parent))
    except OSError:
        return False


def _prairie_key(path: Path) -> tuple[int, int, int]:
    match = _PRAIRIE_NAME.match(path.name)
    assert match is not None
    return int(match["cycle"]), int(match["channel"]), int(match["index"])


@dataclass(frozen=True)
class _Group:
    """Files of one recording before series are counted."""

    path: Path
    files: tuple[Path, ...]
    name: str
    prairie: bool = False


def _prairie_groups(files: Iterable[Path]) -> list[_Group]:
    """One group per (directory, prefix), completed with the series' unmatched files."""
    prefixes: set[tuple[Path, str]] = set()
    for path in files:
        match = _PRAIRIE_NAME.match(path.name)
        assert match is not None
        prefixes.add((path.parent, match["prefix"]))
    groups = []
    for directory, prefix in sorted(prefixes):
        members = sorted(
            (
                directory / e.name
                for e in _list_dir(directory)
                if e.is_file()
                and (m := _PRAIRIE_NAME.match(e.name)) is not None
                and m["prefix"] == prefix
            ),
            key=_prairie_key,
        )
        groups.append(_Group(members[0], tuple(members), prefix, prairie=True))
    return groups


@dataclass
class _OmeInfo:
    """What the first page of an OME-TIFF says about the files it belongs with."""

    binary_only: bool
    links: list[Path]


#: The ImageDescription tag, where OME-TIFF keeps its OME-XML.
_IMAGE_DESCRIPTION = 270


def _light_description(path: Path) -> str | None:
    """The ImageDescription of the first image of TIFF ``path``, read with a few small reads.

    A directory of thousands of recordings is grouped before anything else happens.
    None when anything is unusual: tifffile then reads the file (and decides whether
    it is a TIFF at all).
    """
    with open(path, "rb") as fh:
        ifd = read_first_ifd(fh)
        if ifd is None:
            return None
        entry = ifd.entries.get(_IMAGE_DESCRIPTION)
        if entry is None:
            return ""
        kind, n, field = entry
        if kind != 2 or n > 1 << 30:  # an ImageDescription is ASCII
            return None
        value = ifd.value(fh, field, n)
    if value is None:
        return None
    try:
        return value.split(b"\0", 1)[0].decode("utf-8")
    except UnicodeDecodeError:
        return None


def _read_ome_info(path: Path) -> _OmeInfo | None:
    """The OME links of ``path``, or None when it cannot be parsed as a TIFF."""
    try:
        description = _light_description(path)
        if description is None:
            with tifffile.TiffFile(path) as tif:
                description = tif.pages.first.description or ""
    except PermissionError:
        raise InputError(path, "cannot be read (permission denied)") from None
    except FileNotFoundError:
        return _OmeInfo(binary_only=False, links=[])
    except OSError as exc:
        raise InputError(path, f"cannot be read ({exc.strerror or exc})") from None
    except Exception as exc:  # tifffile raises various errors on corrupt files
        logger.debug("%s: not parsed as TIFF while resolving inputs: %s", path, exc)
        return None
    if _BINARY_ONLY.search(description):
        target = _binary_only_target(path, description)
        return _OmeInfo(binary_only=True, links=[target])
    # A single-file recording names itself once per plane: look at each name once.
    names = dict.fromkeys(_UUID_FILENAME.findall(description))
    links = [_absolute(path.parent / name) for name in names]
    return _OmeInfo(
        binary_only=False,
        links=[p for p in links if p != path and is_tiff_name(p) and p.is_file()],
    )


def _binary_only_target(path: Path, description: str) -> Path:
    metadata_file = None
    try:
        root = ET.fromstring(description)
    except ET.ParseError:
        root = None
    if root is not None:
        for element in root.iter():
            if element.tag.rsplit("}", 1)[-1] == "BinaryOnly":
                metadata_file = element.get("MetadataFile")
                break
    if not metadata_file:
        raise InputError(path, "BinaryOnly OME-TIFF without a MetadataFile attribute")
    target = _absolute(path.parent / metadata_file)
    if not target.is_file():
        raise InputError(
            path, f"its OME metadata file {metadata_file!r} (BinaryOnly MetadataFile) not found"
        )
    if not is_tiff_name(target):
        raise InputError(
            path,
            f"its OME metadata file {metadata_file!r} is not a TIFF; "
            "companion OME-XML files are not supported",
        )
    return target


def _ome_groups(files: Iterable[Path]) -> list[_Group]:
    """Group OME-TIFF files linked by BinaryOnly or UUID FileName references."""
    parent: dict[Path, Path] = {}

    def find(path: Path) -> Path:
        parent.setdefault(path, path)
        while parent[path] != path:
            parent[path] = parent[parent[path]]
            path = parent[path]
        return path

    infos: dict[Path, _OmeInfo | None] = {}
    pending = sorted(files)
    while pending:
        path = pending.pop()
        if path in infos:
            continue
        info = infos[path] = _read_ome_info(path) if _OME_TIFF_NAME.search(path.name) else None
        find(path)
        for link in info.links if info is not None else []:
            if _PRAIRIE_NAME.match(link.name):
                continue
            a, b = find(path), find(link)
            if a != b:
                parent[max(a, b)] = min(a, b)
            pending.append(link)

    components: dict[Path, list[Path]] = {}
    for path in infos:
        components.setdefault(find(path), []).append(path)
    groups = []
    for members in components.values():
        members.sort()
        masters = [p for p in members if (info := infos[p]) is None or not info.binary_only]
        if not masters:
            raise InputError(members[0], "BinaryOnly OME-TIFF with no file holding its metadata")
        master = masters[0]
        groups.append(_Group(master, tuple(members), master.name))
    return groups


def _count_series(path: Path) -> int:
    """How many series (OME ``Image`` elements) ``path`` holds; 1 when it cannot tell."""
    try:
        from toile.reader import count_series
    except ModuleNotFoundError as exc:
        if exc.name != "toile.reader":
            raise
        count_series = None
    try:
        if count_series is not None:
            count = count_series(path)
        else:
            with tifffile.TiffFile(path) as tif:
                count = len(tif.series)
    except PermissionError:
        raise InputError(path, "cannot be read (permission denied)") from None
    except Exception as exc:  # the reader reports it when it opens the file
        logger.debug("%s: series not counted while resolving inputs: %s", path, exc)
        return 1
    return max(int(count), 1)


def _group_recordings(files: set[Path]) -> list[RecordingSource]:
    prairie = {p for p in files if _PRAIRIE_NAME.match(p.name)}
    groups = _prairie_groups(prairie) + _ome_groups(files - prairie)
    unique: dict[tuple[Path, int], RecordingSource] = {}
    for group in groups:
        if group.prairie:
            if not os.access(group.path, os.R_OK):
                raise InputError(group.path, "cannot be read (permission denied)")
            count = 1
        else:
            count = _count_series(group.path)
        for series in range(count):
            unique.setdefault(
                (group.path, series),
                RecordingSource(group.path, group.files, series=series, name=group.name),
            )
    return [unique[key] for key in sorted(unique)]
