"""Which files an OME-TIFF belongs with, and the OME document that describes it.

One resolver for every format that reads OME-TIFF files (OME-TIFF itself, Prairie View,
ThorImage, Micro-Manager): :func:`links` tells discovery, from a file's first
ImageDescription alone, which other files it is grouped with (a ``BinaryOnly`` file
with its metadata file, files named by ``UUID FileName``); :func:`document` parses the
OME-XML that describes a file, following ``BinaryOnly`` to the file that holds it (an
OME-TIFF or a companion ``.ome`` XML file).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import tifffile

from toile.errors import InputError
from toile.formats.tiff import ome_xml
from toile.formats.tiff.files import checked_ifd_count, input_path, open_binary, open_tiff
from toile.formats.tiff.light import BLOCK, DescriptionHead, decoded, tifffile_description

_BINARY_ONLY = re.compile(r"<(?:[\w.-]+:)?BinaryOnly\b[^>]*")
_METADATA_FILE = re.compile(r"""\bMetadataFile\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_UUID_FILENAME = re.compile(r"<(?:[\w.-]+:)?UUID\b[^>]*?\bFileName\s*=\s*\"([^\"]*)\"")
_IMAGE_TAG = re.compile(r"<(?:[\w.-]+:)?Image[\s/>]")
_TIFF_NAME = re.compile(r"\.tiff?$", re.IGNORECASE)
#: Names of companion OME-XML files (``*.companion.ome``, ``*.ome.xml``, ``*.ome``).
COMPANION_NAME = re.compile(r"\.(?:companion\.ome|ome\.xml|ome)$", re.IGNORECASE)


def absolute(path: str | Path) -> Path:
    """Absolute and normalised (``..`` folded) without resolving symlinks."""
    return Path(os.path.abspath(path))


@dataclass(frozen=True)
class Links:
    """What a file's OME-XML says about the files it belongs with."""

    #: The file is ``BinaryOnly``: its metadata is in ``links[0]``.
    binary_only: bool
    #: Other existing files: the metadata file, or the files its TiffData name.
    links: tuple[Path, ...]


#: Characters of a streamed description searched again with the next chunk: longer than
#: any tag the patterns above match.
_OVERLAP = 1 << 16


class _Scan:
    """Matches of a few patterns in a text given in chunks, each pattern searched as
    ``finditer`` searches the whole text (for matches shorter than :data:`_OVERLAP`), and
    whether the text ends with a suffix once stripped. Nothing of the text is kept but
    the last two chunks' worth, and each distinct match once."""

    def __init__(self, patterns: dict[str, tuple[re.Pattern, int, int]], suffix: str) -> None:
        # name -> (pattern, the group kept, most matches wanted or 0 for all)
        self._patterns = patterns
        self.found: dict[str, dict[str, None]] = {name: {} for name in patterns}
        self.counts = dict.fromkeys(patterns, 0)
        self._resume = dict.fromkeys(patterns, 0)  # where each search goes on, in _buffer
        self._buffer = ""
        self._suffix = suffix
        self._end, self._trailing_space = "", False

    def feed(self, chunk: str, final: bool = False) -> None:
        self._track_end(chunk)
        buffer = self._buffer + chunk
        if not final and len(buffer) < 2 * _OVERLAP:
            self._buffer = buffer
            return
        limit = len(buffer) if final else len(buffer) - _OVERLAP
        for name, (pattern, group, most) in self._patterns.items():
            found = self.found[name]
            position = self._resume[name]
            while not most or self.counts[name] < most:
                match = pattern.search(buffer, position)
                if match is None or match.start() >= limit:
                    break
                found.setdefault(match.group(group))
                self.counts[name] += 1
                position = max(match.end(), match.start() + 1)
            # a pattern with all the matches it wants keeps nothing of the text
            done = most and self.counts[name] >= most
            self._resume[name] = limit if done else max(position, limit)
        keep = min(self._resume.values(), default=limit)
        self._buffer = buffer[keep:]
        self._resume = {name: at - keep for name, at in self._resume.items()}

    def _track_end(self, chunk: str) -> None:
        text = chunk.rstrip()
        if not text:
            self._trailing_space = self._trailing_space or bool(chunk)
            return
        before = self._end + (" " if self._trailing_space else "")
        self._end = (before + text)[-len(self._suffix) - 1 :]
        self._trailing_space = len(text) < len(chunk)

    @property
    def ends_with_suffix(self) -> bool:
        return self._end.endswith(self._suffix)


def _scanned(
    description: str | Iterable[str], patterns: dict[str, tuple[re.Pattern, int, int]], suffix: str
) -> _Scan:
    scan = _Scan(patterns, suffix)
    chunks = description.chunks() if isinstance(description, DescriptionHead) else description
    for chunk in (chunks,) if isinstance(chunks, str) else chunks:
        scan.feed(chunk)
    scan.feed("", final=True)
    return scan


def links(path: Path, description: str | Iterable[str]) -> Links:
    """The OME links of ``path``, whose first ImageDescription is the OME-XML
    ``description`` (the whole text, its chunks, or a :class:`DescriptionHead` of it,
    whose whole text is then read in chunks). A BinaryOnly file whose metadata file is
    missing, or names none, is an error naming it."""
    if isinstance(description, DescriptionHead) or not isinstance(description, str):
        patterns = {"binary": (_BINARY_ONLY, 0, 1), "file": (_UUID_FILENAME, 1, 0)}
        scan = _scanned(description, patterns, "")
        binary_only = next(iter(scan.found["binary"]), None)
        file_names: Iterable[str] = scan.found["file"]
    else:
        binary = _BINARY_ONLY.search(description)
        binary_only = None if binary is None else binary.group(0)
        file_names = _UUID_FILENAME.findall(description)
    if binary_only is not None:
        found = _METADATA_FILE.search(binary_only)
        name = None if found is None else found.group(1) or found.group(2)
        if not name:
            raise InputError(path, "BinaryOnly OME-TIFF without a MetadataFile attribute")
        target = absolute(path.parent / name)
        if not target.is_file():
            raise InputError(
                path, f"its OME metadata file {name!r} (BinaryOnly MetadataFile) not found"
            )
        if not (_TIFF_NAME.search(target.name) or COMPANION_NAME.search(target.name)):
            raise InputError(
                path, f"its OME metadata file {name!r} is neither a TIFF nor an OME-XML file"
            )
        return Links(True, (target,))
    # A single-file recording names itself once per plane: look at each name once.
    names = dict.fromkeys(file_names)
    found_links = [absolute(path.parent / name) for name in names]
    return Links(
        False,
        tuple(p for p in found_links if p != path and _TIFF_NAME.search(p.name) and p.is_file()),
    )


def one_image(description: str | Iterable[str]) -> bool:
    """A complete OME document with one ``Image`` and no BinaryOnly (no need to parse it
    to count its series: it grows with the recording). ``description`` is the text, or
    its chunks."""
    if isinstance(description, str) and not isinstance(description, DescriptionHead):
        return (
            description.rstrip().endswith("OME>")
            and len(_IMAGE_TAG.findall(description)) == 1
            and not _BINARY_ONLY.search(description)
        )
    patterns = {"image": (_IMAGE_TAG, 0, 2), "binary": (_BINARY_ONLY, 0, 1)}
    scan = _scanned(description, patterns, "OME>")
    return scan.ends_with_suffix and scan.counts["image"] == 1 and not scan.counts["binary"]


def first_description(tif: tifffile.TiffFile) -> str | None:
    """The first ImageDescription of ``tif`` when it is OME-XML, else None."""
    try:
        description = tif.pages.first.description
    except Exception:
        return None
    return description if ome_xml.is_ome(description) else None


def _ome_description(path: Path) -> str | Iterable[str] | None:
    """:func:`first_description` of TIFF ``path`` opened with :func:`open_tiff` (its
    checks, its errors), without tifffile holding the description: when the file
    allows, it is checked directly and the description streamed from it in chunks."""
    checked_ifd_count(path)
    chunks = tifffile_description(path)
    if chunks is None:
        with open_tiff(path) as tif:
            return first_description(tif)
    head, text = _with_head(chunks)
    return text if ome_xml.is_ome(head) else None


def _chain(head: list[str], rest: Iterable[str]) -> Iterator[str]:
    yield from head
    yield from rest


def parse(xml: str | Iterable[str], path: Path, what: str = "") -> ome_xml.OmeDocument:
    """The OME document ``xml`` of ``path``; malformed OME-XML is an error naming it."""
    try:
        doc = ome_xml.read_ome(xml, str(path), strict=True)
    except ome_xml.OmeXmlError as exc:
        # reading the pages without their OME layout would mix up channels, z and t
        raise InputError(path, f"malformed OME-XML{what}: {exc}") from exc
    assert doc is not None
    return doc


def _file_text(path: Path, limit: int | None = None, errors: str = "strict") -> Iterator[str]:
    """The text of file ``path`` (UTF-8; its first ``limit`` bytes), in chunks."""

    def blocks() -> Iterator[bytes]:
        left = limit
        with open_binary(path) as fh:
            while left is None or left > 0:
                block = fh.read(BLOCK if left is None else min(BLOCK, left))
                if not block:
                    return
                if left is not None:
                    left -= len(block)
                yield block

    yield from decoded(blocks(), errors=errors)


def _with_head(chunks: Iterator[str]) -> tuple[str, Iterable[str]]:
    """The first 65,536 characters or more of a text in ``chunks`` (as much as
    :func:`~toile.formats.tiff.ome_xml.is_ome` looks at), and the whole text again."""
    head: list[str] = []
    length = 0
    for chunk in chunks:
        head.append(chunk)
        length += len(chunk)
        if length >= 65536:
            break
    return "".join(head), _chain(head, chunks)


def companion_links(path: Path) -> Links | None:
    """The OME links of the companion OME-XML file ``path`` (read from its first 64 MB,
    in chunks), None when it is not OME-XML or cannot be read."""
    try:
        head, text = _with_head(_file_text(path, 1 << 26, errors="replace"))
        if not ome_xml.is_ome(head):
            return None
        return links(path, text)
    except OSError:
        return None


def read_companion(path: Path) -> ome_xml.OmeDocument:
    """The OME document of a companion OME-XML file (read in chunks, never whole)."""
    try:
        for _ in _file_text(path):  # UTF-8 throughout, before any of it is parsed
            pass
        head, text = _with_head(_file_text(path))
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except OSError as exc:
        raise InputError(path, f"cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise InputError(path, "companion OME-XML file is not UTF-8 text") from None
    if not ome_xml.is_ome(head):
        raise InputError(path, "not an OME-XML document")
    try:
        return parse(text, path)
    except OSError as exc:
        raise InputError(path, f"cannot be read ({exc.strerror or exc})") from None


def document(
    path: Path, tif: tifffile.TiffFile | None = None
) -> tuple[Path, ome_xml.OmeDocument] | None:
    """The OME document describing ``path`` and the file holding it (following
    BinaryOnly), or None when ``path`` holds no OME-XML with images. ``tif`` is
    ``path`` already open, if it is."""
    path = input_path(path)
    if COMPANION_NAME.search(path.name) and not _TIFF_NAME.search(path.name):
        doc = read_companion(path)
        return (path, doc) if doc.images else None
    xml = first_description(tif) if tif is not None else _ome_description(path)
    if xml is None:
        return None
    doc = parse(xml, path, " in the ImageDescription, pages cannot be mapped")
    if doc.binary_only is None:
        return (path, doc) if doc.images else None
    name = doc.binary_only.metadata_file
    if not name:
        raise InputError(path, "BinaryOnly OME-TIFF that names no metadata file")
    master = path.parent / name
    if master == path:
        raise InputError(path, "BinaryOnly OME-TIFF that names itself as its metadata file")
    if COMPANION_NAME.search(master.name) and not _TIFF_NAME.search(master.name):
        master_doc = read_companion(master)
    else:
        master_xml = _ome_description(master)
        master_doc = (
            None if master_xml is None else parse(master_xml, master, " in the ImageDescription")
        )
    if master_doc is None or master_doc.binary_only is not None or not master_doc.images:
        raise InputError(path, f"its OME metadata file {name} holds no OME-XML images")
    return master, master_doc
