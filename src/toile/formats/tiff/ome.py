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
from dataclasses import dataclass
from pathlib import Path

import tifffile

from toile.errors import InputError
from toile.formats.tiff import ome_xml
from toile.formats.tiff.files import input_path, open_binary, open_tiff

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


def links(path: Path, description: str) -> Links:
    """The OME links of ``path``, whose first ImageDescription is the OME-XML
    ``description``. A BinaryOnly file whose metadata file is missing, or names none,
    is an error naming it."""
    binary = _BINARY_ONLY.search(description)
    if binary is not None:
        found = _METADATA_FILE.search(binary.group(0))
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
    names = dict.fromkeys(_UUID_FILENAME.findall(description))
    found_links = [absolute(path.parent / name) for name in names]
    return Links(
        False,
        tuple(p for p in found_links if p != path and _TIFF_NAME.search(p.name) and p.is_file()),
    )


def one_image(description: str) -> bool:
    """A complete OME document with one ``Image`` and no BinaryOnly (no need to parse it
    to count its series: it grows with the recording)."""
    return (
        description.rstrip().endswith("OME>")
        and len(_IMAGE_TAG.findall(description)) == 1
        and not _BINARY_ONLY.search(description)
    )


def first_description(tif: tifffile.TiffFile) -> str | None:
    """The first ImageDescription of ``tif`` when it is OME-XML, else None."""
    try:
        description = tif.pages.first.description
    except Exception:
        return None
    return description if ome_xml.is_ome(description) else None


def parse(xml: str, path: Path, what: str = "") -> ome_xml.OmeDocument:
    """The OME document ``xml`` of ``path``; malformed OME-XML is an error naming it."""
    try:
        doc = ome_xml.read_ome(xml, str(path), strict=True)
    except ome_xml.OmeXmlError as exc:
        # reading the pages without their OME layout would mix up channels, z and t
        raise InputError(path, f"malformed OME-XML{what}: {exc}") from exc
    assert doc is not None
    return doc


def read_companion(path: Path) -> ome_xml.OmeDocument:
    """The OME document of a companion OME-XML file."""
    try:
        with open_binary(path) as fh:
            text = fh.read().decode("utf-8")
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except OSError as exc:
        raise InputError(path, f"cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise InputError(path, "companion OME-XML file is not UTF-8 text") from None
    if not ome_xml.is_ome(text):
        raise InputError(path, "not an OME-XML document")
    return parse(text, path)


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
    own = tif if tif is not None else open_tiff(path)
    try:
        xml = first_description(own)
    finally:
        if tif is None:
            own.close()
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
        with open_tiff(master) as master_tif:
            master_xml = first_description(master_tif)
        master_doc = (
            None if master_xml is None else parse(master_xml, master, " in the ImageDescription")
        )
    if master_doc is None or master_doc.binary_only is not None or not master_doc.images:
        raise InputError(path, f"its OME metadata file {name} holds no OME-XML images")
    return master, master_doc
