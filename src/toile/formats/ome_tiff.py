"""OME-TIFF: single files, multi-file series, BinaryOnly files, companions, multi-series.

A TIFF is OME when its first ImageDescription is an OME-XML document (by namespace, see
:func:`toile.formats.tiff.ome_xml.is_ome`). Files are grouped into one recording when
they are linked: a ``BinaryOnly`` file belongs to the file (or companion ``.ome`` XML
file) its ``MetadataFile`` names, and files named in a document's ``UUID FileName``
references belong with it; the recording's main file is the first file of the group
holding the full OME-XML. Each OME ``Image`` of that document is one recording (its
``series``). Planes are located from the ``TiffData`` elements, in whatever file they
are, and read through :class:`~toile.formats.tiff.planes.PlaneGrid`.

:func:`open_ome` is the reader every OME-based vendor format (Prairie View, ThorImage,
Micro-Manager) can reuse, adding its own metadata.
"""

from __future__ import annotations

import logging
import math
import re
from array import array
from collections.abc import Callable
from pathlib import Path

import tifffile

from toile.errors import InputError
from toile.formats.base import Candidates, Format, Recording, Source
from toile.formats.fields import FORMAT_OME_TIFF
from toile.formats.tiff import ome, ome_xml
from toile.formats.tiff.files import closed_on_error, input_path
from toile.formats.tiff.light import tifffile_description
from toile.formats.tiff.ome_xml import OmeDocument
from toile.formats.tiff.planes import PlaneGrid, PlaneRef, TiffPlanes

logger = logging.getLogger(__name__)

_TIFF_NAME = re.compile(r"\.tiff?$", re.IGNORECASE)

# -- discovery --------------------------------------------------------------------------


def _is_candidate(path: Path) -> bool:
    name = path.name
    return bool(_TIFF_NAME.search(name) or ome.COMPANION_NAME.search(name))


def _links(path: Path, candidates: Candidates) -> ome.Links | None:
    """The OME links of ``path``, None when it is not an OME file (or not readable as
    one: the format that takes it reports why)."""
    if not _TIFF_NAME.search(path.name):
        found = ome.companion_links(path)
        # a companion file is a recording's main file when it names TIFF files
        return found if found is not None and found.links else None
    description = candidates.description(path)
    if description is None:
        if not path.is_file():
            return None  # not a regular file: opening it says so
        try:
            with tifffile.TiffFile(path) as tif:
                description = tif.pages.first.description or ""
        except PermissionError:
            raise InputError(path, "cannot be read (permission denied)") from None
        except FileNotFoundError:
            return None
        except Exception as exc:  # tifffile raises various errors on corrupt files
            logger.debug("%s: not parsed as TIFF while resolving inputs: %s", path, exc)
            return None
    if not ome_xml.is_ome(description):
        return None
    return ome.links(path, description)


def count_series(path: Path) -> int:
    """Number of OME Images described for the OME file ``path`` (following BinaryOnly)."""
    path = input_path(path)
    if _TIFF_NAME.search(path.name):
        chunks = tifffile_description(path)
        if chunks is not None and ome.one_image(chunks):
            # A complete document with one Image: no need to parse all of it (it grows
            # with the recording); open_ome checks the file, parses it and reports any
            # other flaw.
            return 1
    found = ome.document(path)
    return 1 if found is None else len(found[1].images)


class OmeTiffFormat(Format):
    name = FORMAT_OME_TIFF

    def claim(self, candidates: Candidates) -> list[Source]:
        sources: list[Source] = []
        parent: dict[Path, Path] = {}

        def find(path: Path) -> Path:
            parent.setdefault(path, path)
            while parent[path] != path:
                parent[path] = parent[parent[path]]
                path = parent[path]
            return path

        infos: dict[Path, ome.Links] = {}
        pending = sorted((p for p in candidates if _is_candidate(p)), reverse=True)
        while pending:
            path = pending.pop()
            if path in infos:
                continue
            info = _links(path, candidates)
            if info is None:
                continue
            infos[path] = info
            find(path)
            for link in info.links:
                a, b = find(path), find(link)
                if a != b:
                    parent[max(a, b)] = min(a, b)
                pending.append(link)
        components: dict[Path, list[Path]] = {}
        for path in parent:
            components.setdefault(find(path), []).append(path)
        for members in components.values():
            members.sort()
            masters = [p for p in members if p in infos and not infos[p].binary_only]
            if not masters:
                if all(p in infos for p in members):
                    raise InputError(
                        members[0], "BinaryOnly OME-TIFF with no file holding its metadata"
                    )
                masters = [p for p in members if p not in infos]
            master = masters[0]
            candidates.claim(members)
            try:
                count = count_series(master)
            except PermissionError:
                raise InputError(master, "cannot be read (permission denied)") from None
            except Exception as exc:  # open reports it, where --on-error skip applies
                logger.debug("%s: series not counted while resolving inputs: %s", master, exc)
                count = 1
            for series in range(max(count, 1)):
                sources.append(
                    Source(self.name, master, tuple(members), series=series, name=master.name)
                )
        return sources

    def open(self, source: Source, channel: str | int | None = None) -> Recording:
        return open_ome(source, channel)


# -- reading ----------------------------------------------------------------------------


def open_ome(
    source: Source,
    channel: str | int | None = None,
    *,
    document: tuple[Path, OmeDocument] | None = None,
    format_name: str | None = None,
    metadata: dict | None = None,
    plane_metadata: Callable[[int, int, int], dict] | None = None,
    vendor_metadata: dict | None = None,
    planes: TiffPlanes | None = None,
) -> PlaneGrid:
    """Open series ``source.series`` of the OME document describing ``source.path``.

    ``document`` is (the file holding the OME-XML, its parsed document) when the caller
    already has it; else it is read from ``source.path`` (following BinaryOnly).
    ``format_name`` is the ``format`` field (``ome-tiff`` by default). ``metadata`` is
    merged over the fields read from the OME-XML, ``plane_metadata(t, z, c)`` over the
    per-plane ones (``t``, positions, ``exposure_s``). Planes are read from whichever
    files the TiffData name; a missing file is an error naming it.
    """
    planes = planes if planes is not None else TiffPlanes()
    with closed_on_error(planes, source.path):
        return _open_ome(
            source,
            channel,
            document,
            format_name,
            metadata or {},
            plane_metadata,
            vendor_metadata,
            planes,
        )


def _open_ome(
    source: Source,
    channel: str | int | None,
    document: tuple[Path, OmeDocument] | None,
    format_name: str | None,
    extra: dict,
    extra_plane_metadata: Callable[[int, int, int], dict] | None,
    vendor_metadata: dict | None,
    planes: TiffPlanes,
) -> PlaneGrid:
    path = input_path(source.path)
    if document is None:
        if _TIFF_NAME.search(path.name):
            planes.page_count(path)  # the file's own flaws first
        document = ome.document(path)
        if document is None:
            raise InputError(path, "holds no OME-XML images")
    path, doc = document
    index = source.series
    if not 0 <= index < len(doc.images):
        raise InputError(path, f"has {len(doc.images)} series; series {index} does not exist")
    image = doc.images[index]
    _, sizes = ome_xml.plane_order(image)
    size_c, size_z, size_t = sizes["C"], sizes["Z"], sizes["T"]
    is_tiff = bool(_TIFF_NAME.search(path.name))
    n_pages = planes.page_count(path) if is_tiff else 0
    first_ifd = 0
    for previous in doc.images[:index]:
        _, prev_sizes = ome_xml.plane_order(previous)
        first_ifd += math.prod(prev_sizes.values())
    locations = ome_xml.plane_locations(image, ifd_count=n_pages, first_ifd=first_ifd)
    files = _resolve_files(path, doc, locations.refs)
    plane_files = [
        (files[name], uuid or (doc.uuid if files[name] == path else None))
        for name, uuid in locations.refs
    ]
    described = (
        f"SizeC={image.get('size_c', 1)} SizeZ={size_z} SizeT={size_t}: "
        f"{size_c * size_z * size_t} planes"
    )
    missing = next(iter(locations.missing()), None)
    if missing is not None:
        c, z, t = missing
        count = sum(1 for _ in locations.missing())
        raise InputError(
            path,
            f"OME-XML describes {described}, but no TiffData locates "
            f"{count} of them (first: c={c} z={z} t={t}; this file holds {n_pages} pages)",
        )
    used = set(locations.ref)
    main_refs = {r for r in used if plane_files[r][0] == path}
    in_main, last_in_main = 0, -1
    for ifd, r in zip(locations.ifd, locations.ref, strict=True):
        if r in main_refs:
            in_main += 1
            last_in_main = max(last_in_main, ifd)
    if in_main and (not is_tiff or last_in_main >= n_pages):
        raise InputError(
            path,
            f"OME-XML describes {described} ({in_main} of them in this file), "
            f"but the file holds only {n_pages} pages",
        )
    distinct = {plane_files[r][0] for r in used}
    ifd_of, ref_of = locations.ifd, locations.ref

    def plane(t: int, z: int, c: int) -> PlaneRef:
        i = (t * size_z + z) * size_c + c
        file, uuid = plane_files[ref_of[i]]
        return PlaneRef(file, ifd_of[i], uuid)

    table = image.get("planes") or ()
    rows = array("l", [-1]) * (size_c * size_z * size_t)
    for row, entry in enumerate(table):
        t, z, c = (entry.get("t_index", 0), entry.get("z_index", 0), entry.get("c_index", 0))
        if 0 <= t < size_t and 0 <= z < size_z and 0 <= c < size_c:
            i = (t * size_z + z) * size_c + c
            if rows[i] < 0:  # the first Plane element of a plane wins
                rows[i] = row

    def plane_metadata(t: int, z: int, c: int) -> dict:
        row = rows[(t * size_z + z) * size_c + c]
        out: dict = {}
        if row >= 0:
            entry = table[row]
            if "delta_t" in entry:
                out["t"] = entry["delta_t"]
            for key in ("position_x", "position_y", "position_z"):
                if key in entry:
                    out[key] = entry[key]
            if "position_unit" in entry and any(k.startswith("position_") for k in out):
                out["position_unit"] = entry["position_unit"]
            if "exposure_time" in entry:
                out["exposure_s"] = entry["exposure_time"]
        if extra_plane_metadata is not None:
            out.update(extra_plane_metadata(t, z, c) or {})
        return out

    channels = image.get("channels") or []
    names = [
        (channels[c].get("name") if c < len(channels) else None) or f"C{c}" for c in range(size_c)
    ]
    recording_files = distinct | {path}
    metadata = {k: v for k, v in image.items() if k not in ("planes", "tiff_data")}
    metadata = {
        "source": str(path),
        "_source_filename": path.name,
        **metadata,
        "format": format_name or FORMAT_OME_TIFF,
        "files": len(recording_files),
        **extra,
    }
    grid = PlaneGrid(
        source,
        metadata,
        size_t,
        size_z,
        size_c,
        plane,
        names,
        plane_metadata=plane_metadata,
        channel=channel,
        vendor_metadata=vendor_metadata,
        planes=planes,
    )
    height, width = grid.frame_shape[-2:]
    expected = (image.get("size_y"), image.get("size_x"))
    if None not in expected and expected != (height, width):
        raise InputError(
            path,
            f"OME-XML says planes are {expected[1]}x{expected[0]} (SizeX x SizeY), "
            f"but the pixel data are {width}x{height}",
        )
    ome_dtype = image.get("dtype")
    if ome_dtype is not None and ome_dtype != grid.dtype.name:
        raise InputError(
            path, f"OME-XML says pixel type {ome_dtype}, but the pixel data are {grid.dtype}"
        )
    if in_main:
        planes.data_end(PlaneRef(path, last_in_main))
    return grid


def _resolve_files(
    path: Path, doc: OmeDocument, refs: list[tuple[str | None, str | None]]
) -> dict[str | None, Path]:
    """Map each file name referenced by TiffData to a path; raise on a missing file."""
    names = {name for name, _ in refs} - {None}
    uuids = dict(refs)
    files: dict[str | None, Path] = {None: path}
    missing = []
    for name in sorted(names):
        if name == path.name or (doc.uuid is not None and uuids.get(name) == doc.uuid):
            files[name] = path
            continue
        candidate = path.parent / name
        if candidate.is_file():
            files[name] = candidate
        else:
            missing.append(name)
    document_names = {
        entry.get("file_name") for img in doc.images for entry in img.get("tiff_data", [])
    } - {None}
    if missing and len(document_names) == 1 and _TIFF_NAME.search(path.name):
        # a single-file OME-TIFF that was renamed after it was written
        logger.info(
            "%s: OME-XML names %s as its data file; reading this file instead", path, missing[0]
        )
        files[missing[0]] = path
    elif missing:
        raise InputError(
            path.parent / missing[0],
            f"file of the multi-file OME series {path.name} is missing"
            + (f" ({len(missing)} files missing)" if len(missing) > 1 else ""),
        )
    return files
