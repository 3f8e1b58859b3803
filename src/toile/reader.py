"""Open one recording and stream its frames, one (t, z) plane at a time.

A frame is one (t, z) plane of a series: (H, W) with a single channel, or
(C, H, W) with several (unless one channel is selected). Frames are ordered
t-major then z (``index = t * size_z + z``). Pixels are read one page at a
time, straight from the file into the output array when the page is stored
uncompressed and contiguous, so a recording is never loaded as a whole.

Three kinds of input are read:

* OME-TIFF (one file, or a multi-file series such as a Bruker Prairie View
  T-Series, where the first file holds the OME-XML of all files and the others
  a ``BinaryOnly`` pointer to it). Planes are located from the OME-XML
  ``TiffData`` elements (:func:`toile.ome.plane_map`), files are opened only
  when one of their planes is read. A file whose OME-XML does not parse is an
  error: its pages cannot be mapped to channels, z and t.
* ImageJ hyperstacks and other TIFF files without OME-XML, through the series
  tifffile finds in them, with whatever metadata the file holds.

Every problem with a file is raised as :class:`toile.errors.InputError`
naming the file: at open time when it is cheap to detect (missing or empty
file, not a TIFF, OME-XML that contradicts the pixel data, unsupported pixel
type), else when the frame is read (truncated or corrupt page data).
"""

from __future__ import annotations

import itertools
import logging
import math
import re
import struct
import sys
from array import array
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from toile import ome
from toile.errors import InputError
from toile.formats.base import Recording, Source
from toile.ifd import read_first_ifd

logger = logging.getLogger(__name__)

#: How many files of a multi-file series are kept open at once (besides the main file).
MAX_OPEN_FILES = 8

FORMAT_PRAIRIE = "prairie-view"
FORMAT_OME = "ome-tiff"
FORMAT_IMAGEJ = "imagej"
FORMAT_TIFF = "tiff"

_PRAIRIE_NAME = re.compile(r"_Cycle\d+_Ch\d+_\d+\.ome\.tiff?$", re.IGNORECASE)
_SAMPLE_NAMES = {3: ["R", "G", "B"], 4: ["R", "G", "B", "A"]}
_NATIVE = "<" if sys.byteorder == "little" else ">"


@dataclass(frozen=True)
class _Plane:
    """One stored plane: the file holding it and its IFD, or an already located page."""

    file: Path
    ifd: int
    uuid: str | None = None
    page: Any = None


def _open_tiff(path: Path) -> tifffile.TiffFile:
    """Open a TIFF file, turning every failure into an InputError naming it."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except OSError as exc:
        raise InputError(path, f"cannot read file: {exc.strerror or exc}") from exc
    if not path.is_file():
        raise InputError(path, "not a regular file")
    if size == 0:
        raise InputError(path, "empty file (0 bytes)")
    try:
        tif = tifffile.TiffFile(path)
    except tifffile.TiffFileError as exc:
        if "not a TIFF file" in str(exc):
            raise InputError(path, "not a TIFF file") from exc
        raise InputError(path, f"corrupt or truncated TIFF ({exc})") from exc
    except Exception as exc:
        raise InputError(path, f"corrupt or truncated TIFF ({exc})") from exc
    try:
        if len(tif.pages) == 0:
            raise InputError(path, "TIFF file holds no image")
        _check_structure(tif, path)
    except BaseException:
        tif.close()
        raise
    return tif


def _check_structure(tif: tifffile.TiffFile, path: Path) -> None:
    """Raise if the file was cut short: a tag value of the first image or the chain
    of images (IFDs) points past the end of the file. tifffile only logs these."""
    fmt = tif.tiff
    fh = tif.filehandle
    size = fh.size

    def entries(offset: int) -> tuple[int, bytes]:
        fh.seek(offset)
        count = struct.unpack(fmt.tagnoformat, fh.read(fmt.tagnosize))[0]
        data = fh.read(count * fmt.tagsize)
        if len(data) != count * fmt.tagsize:
            raise InputError(path, "truncated file: an image directory is cut short")
        return count, data

    try:
        count, data = entries(tif.pages.first.offset)
        for i in range(count):
            code, dtype = struct.unpack_from(fmt.tagformat1, data, i * fmt.tagsize)
            n, value = struct.unpack_from(fmt.tagformat2, data, i * fmt.tagsize + 4)
            item = tifffile.TIFF.DATA_FORMATS.get(dtype)
            if item is None:
                continue
            nbytes = n * struct.calcsize(item)
            if nbytes > fmt.tagoffsetthreshold:
                offset = struct.unpack(fmt.offsetformat, value[: fmt.offsetsize])[0]
                if offset + nbytes > size:
                    raise InputError(
                        path, f"truncated file: TIFF tag {code} lies past the end of the file"
                    )
        last = tif.pages[len(tif.pages) - 1]
        count, _ = entries(last.offset)
        fh.seek(last.offset + fmt.tagnosize + count * fmt.tagsize)
        raw = fh.read(fmt.offsetsize)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(path, f"corrupt or truncated TIFF ({exc})") from exc
    if len(raw) != fmt.offsetsize or struct.unpack(fmt.offsetformat, raw)[0] != 0:
        raise InputError(
            path,
            f"truncated or corrupt file: the chain of images breaks after image {len(tif.pages)}",
        )


def _first_description(tif: tifffile.TiffFile) -> str | None:
    try:
        description = tif.pages.first.description
    except Exception:
        return None
    if description and description.lstrip().startswith("<") and "<OME" in description[:8192]:
        return description
    return None


def _ome_document(tif: tifffile.TiffFile, path: Path) -> tuple[Path, ome.OmeDocument] | None:
    """The OME document describing ``path`` and the file holding it (following BinaryOnly)."""
    xml = _first_description(tif)
    if xml is None:
        return None
    try:
        doc = ome.read_ome(xml, str(path), strict=True)
    except ome.OmeXmlError as exc:
        # reading the pages without their OME layout would mix up channels, z and t
        raise InputError(
            path, f"malformed OME-XML in the ImageDescription, pages cannot be mapped: {exc}"
        ) from exc
    assert doc is not None
    if doc.binary_only is None:
        return (path, doc) if doc.images else None
    name = doc.binary_only.metadata_file
    if not name:
        raise InputError(path, "BinaryOnly OME-TIFF that names no metadata file")
    master = path.parent / name
    if master == path:
        raise InputError(path, "BinaryOnly OME-TIFF that names itself as its metadata file")
    with _open_tiff(master) as master_tif:
        master_xml = _first_description(master_tif)
    try:
        master_doc = (
            None if master_xml is None else ome.read_ome(master_xml, str(master), strict=True)
        )
    except ome.OmeXmlError as exc:
        raise InputError(master, f"malformed OME-XML in the ImageDescription: {exc}") from exc
    if master_doc is None or master_doc.binary_only is not None or not master_doc.images:
        raise InputError(path, f"its OME metadata file {name} holds no OME-XML images")
    return master, master_doc


#: An OME ``Image`` or ``BinaryOnly`` start tag, with or without a namespace prefix.
_IMAGE_TAG = re.compile(r"<(?:[\w.-]+:)?Image[\s/>]")
_BINARY_ONLY_TAG = re.compile(r"<(?:[\w.-]+:)?BinaryOnly[\s/>]")


def count_series(path: Path) -> int:
    """Number of recordings (OME Images, or tifffile series) in the TIFF file ``path``."""
    path = Path(path)
    with _open_tiff(path) as tif:
        xml = _first_description(tif)
        one_image = (
            xml is not None
            and xml.rstrip().endswith("OME>")
            and len(_IMAGE_TAG.findall(xml)) == 1
            and not _BINARY_ONLY_TAG.search(xml)
        )
        if one_image:
            # A complete document with one Image: no need to parse all of it (it grows with
            # the recording); open_recording parses it and reports any other flaw.
            return 1
        found = _ome_document(tif, path)
        if found is not None:
            return len(found[1].images)
        try:
            if tif.is_shaped:
                return max(1, len(tif.series))
        except Exception as exc:
            raise InputError(path, f"corrupt TIFF ({exc})") from exc
        return 1


def open_recording(source: Source, channel: str | int | None = None) -> RecordingReader:
    """Open the recording ``source`` (cheap: reads metadata, no pixels)."""
    return RecordingReader(source, channel)


def _read_tags(tif: tifffile.TiffFile, offset: int, codes: tuple[int, ...]) -> dict:
    """Values of the tags ``codes`` of the IFD at ``offset``, read straight from the file."""
    fmt = tif.tiff
    fh = tif.filehandle
    fh.seek(offset)
    count = struct.unpack(fmt.tagnoformat, fh.read(fmt.tagnosize))[0]
    data = fh.read(count * fmt.tagsize)
    out = {}
    for i in range(len(data) // fmt.tagsize):
        code, dtype = struct.unpack_from(fmt.tagformat1, data, i * fmt.tagsize)
        if code not in codes:
            continue
        n, value = struct.unpack_from(fmt.tagformat2, data, i * fmt.tagsize + 4)
        item = tifffile.TIFF.DATA_FORMATS.get(dtype)
        if item is None or item[-1] not in "BHIQbhiq":
            continue
        nbytes = n * struct.calcsize(item)
        if nbytes > fmt.tagoffsetthreshold:
            fh.seek(struct.unpack(fmt.offsetformat, value[: fmt.offsetsize])[0])
            value = fh.read(nbytes)
        if len(value) >= nbytes:
            out[code] = struct.unpack_from(f"{fmt.byteorder}{n * int(item[:-1])}{item[-1]}", value)
    return out


def _ifd_offsets(tif: tifffile.TiffFile, limit: int) -> array | None:
    """Offsets of the first ``limit`` IFDs of ``tif``, following the chain; None if shorter."""
    fmt = tif.tiff
    fh = tif.filehandle
    size = fh.size
    offsets = array("q")
    offset = tif.pages.first.offset
    while offset and len(offsets) < limit:
        if offset + fmt.tagnosize > size:
            return None
        offsets.append(offset)
        fh.seek(offset)
        count = struct.unpack(fmt.tagnoformat, fh.read(fmt.tagnosize))[0]
        fh.seek(offset + fmt.tagnosize + count * fmt.tagsize)
        raw = fh.read(fmt.offsetsize)
        if len(raw) < fmt.offsetsize:
            break
        offset = struct.unpack(fmt.offsetformat, raw)[0]
    return offsets if len(offsets) == limit else None


def _is_raw(kf: Any) -> bool:
    """Pages like ``kf`` store their samples as is: readable straight into an array."""
    return (
        kf.compression == 1
        and kf.fillorder == 1
        and kf.predictor == 1
        and not kf.is_tiled
        and not kf.is_subsampled
        and kf.sampleformat != 5
        and kf.dtype is not None
        and kf.bitspersample == kf.dtype.itemsize * 8
    )


def _contiguous(offsets: tuple[int, ...], counts: tuple[int, ...]) -> bool:
    """The strips at ``offsets`` follow each other in the file."""
    if not offsets or len(offsets) != len(counts):
        return False
    if len(offsets) == 1:
        return True
    start = np.asarray(offsets, dtype=np.int64)
    size = np.asarray(counts, dtype=np.int64)
    return bool(np.all(start[1:] == start[:-1] + size[:-1]))


#: TIFF tags read by :func:`_single_raw_page`.
_IMAGE_WIDTH, _IMAGE_LENGTH, _BITS_PER_SAMPLE, _COMPRESSION = 256, 257, 258, 259
_STRIP_OFFSETS, _SAMPLES_PER_PIXEL, _STRIP_BYTE_COUNTS = 273, 277, 279
_FILL_ORDER, _PREDICTOR, _TILE_WIDTH, _SAMPLE_FORMAT = 266, 317, 322, 339
_TAG_TYPES = {3: "H", 4: "I", 16: "Q"}  # SHORT, LONG, LONG8
_SAMPLE_FORMAT_KINDS = {1: "u", 2: "i", 3: "f"}
#: Tags a plane of the main file is checked against before it is read directly.
_RAW_TAGS = frozenset(
    (
        _IMAGE_WIDTH,
        _IMAGE_LENGTH,
        _BITS_PER_SAMPLE,
        _COMPRESSION,
        _STRIP_OFFSETS,
        _SAMPLES_PER_PIXEL,
        _STRIP_BYTE_COUNTS,
        _FILL_ORDER,
        _PREDICTOR,
        _TILE_WIDTH,
        _SAMPLE_FORMAT,
    )
)


def _first_ifd_tags(fh: Any) -> tuple[str, dict[int, tuple[int, ...]]] | None:
    """Byte order and integer tags of the first image (IFD) of the TIFF open as ``fh``.

    A Prairie View series holds hundreds of single-page files; opening each
    with ``tifffile.TiffFile`` costs about 1 ms, reading these few tags about
    0.1 ms. None when anything is unusual: the caller then takes tifffile's
    path, which reports problems precisely.
    """
    ifd = read_first_ifd(fh)
    if ifd is None:
        return None
    tags: dict[int, tuple[int, ...]] = {}
    for code, (kind, n, field) in ifd.entries.items():
        item = _TAG_TYPES.get(kind)
        if item is None:
            continue
        if not 0 < n < 1 << 20:
            return None
        value = ifd.value(fh, field, n * struct.calcsize(item))
        if value is None:
            return None
        tags[code] = struct.unpack_from(f"{ifd.byteorder}{n}{item}", value)
    return ifd.byteorder, tags


def _pixel_type_problem(page: Any) -> str | None:
    """Why the pixels of ``page`` cannot be read as a numeric array, or None."""
    kf = page.keyframe
    bits = kf.bitspersample
    if bits == 1:
        return "unsupported pixel type: 1-bit (bilevel) pixels"
    dtype = kf.dtype
    if dtype is None:
        return f"unsupported pixel type: {bits} bits per sample, sample format {kf.sampleformat}"
    if dtype.kind == "c":
        return f"unsupported pixel type: {dtype.name}"
    if dtype.kind not in "uif" or bits != dtype.itemsize * 8:
        return f"unsupported pixel type: bit-packed {bits}-bit samples"
    return None


class RecordingReader(Recording):
    """One opened recording: movie metadata, and its frames read one at a time.

    Use as a context manager (or call :meth:`close`) to release the file handles.
    """

    source: Source
    metadata: dict
    n_frames: int
    frame_shape: tuple[int, ...]
    dtype: np.dtype
    channel_names: list[str]

    def __init__(self, source: Source, channel: str | int | None = None) -> None:
        self.source = source
        self._files: OrderedDict[Path, tifffile.TiffFile] = OrderedDict()
        self._main: tifffile.TiffFile | None = None
        # Where each plane is, by storage index (t * size_z + z) * size_c + c: its position
        # in the tifffile series (a stack without OME-XML) or an IFD and a (file, UUID).
        self._pages: Sequence[int] | None = None
        self._contiguous: tuple[int, int] | None = None
        self._series_ifds: Sequence[int] = ()
        self._keyframe: Any = None
        self._plane_ifd: Sequence[int] = ()
        self._plane_ref: Sequence[int] = ()
        self._plane_files: list[tuple[Path, str | None]] = []
        # The OME Plane metadata, and the row of it that describes each plane (-1: none).
        self._plane_table: Sequence[dict] = ()
        self._plane_rows: Sequence[int] = ()
        self._uuids_multifile = False
        # IFD offsets of the main file, when its planes can be read without tifffile pages
        self._main_ifds: array | None = None
        try:
            self._open(channel)
        except (
            tifffile.TiffFileError,
            OSError,
            ValueError,
            KeyError,
            IndexError,
            struct.error,
            RuntimeError,
            TypeError,
            ZeroDivisionError,
            OverflowError,
            MemoryError,
        ) as exc:
            # a corrupt file can make tifffile fail in many ways
            self.close()
            raise InputError(source.path, f"cannot read TIFF ({exc})") from exc
        except BaseException:
            self.close()
            raise

    # -- opening -------------------------------------------------------------------

    def _open(self, channel: str | int | None) -> None:
        path = Path(self.source.path)
        self._path = path
        tif = _open_tiff(path)
        self._main = tif
        found = _ome_document(tif, path)
        if found is not None and found[0] != path:
            master, doc = found
            tif.close()
            self._path = path = master
            tif = _open_tiff(master)
            self._main = tif
        if found is not None:
            self._open_ome(tif, path, found[1])
        else:
            self._open_series(tif, path)
        self._select_channel(channel)
        self.metadata["n_frames"] = self.n_frames
        self.metadata["series"] = self.source.series

    def _series_index(self, count: int) -> int:
        index = self.source.series
        if not 0 <= index < count:
            raise InputError(self._path, f"has {count} series; series {index} does not exist")
        return index

    def _open_ome(self, tif: tifffile.TiffFile, path: Path, doc: ome.OmeDocument) -> None:
        index = self._series_index(len(doc.images))
        image = doc.images[index]
        order, sizes = ome.plane_order(image)
        size_c, size_z, size_t = sizes["C"], sizes["Z"], sizes["T"]
        n_pages = len(tif.pages)
        first_ifd = 0
        for previous in doc.images[:index]:
            _, prev_sizes = ome.plane_order(previous)
            first_ifd += math.prod(prev_sizes.values())
        locations = ome.plane_locations(image, ifd_count=n_pages, first_ifd=first_ifd)
        files = self._resolve_files(path, doc, locations.refs)
        self._plane_files = [
            (files[name], uuid or (doc.uuid if files[name] == path else None))
            for name, uuid in locations.refs
        ]
        self._plane_ifd, self._plane_ref = locations.ifd, locations.ref
        self._size_c_planes, self._size_z, self._size_t = size_c, size_z, size_t
        described = (
            f"SizeC={image.get('size_c', 1)} SizeZ={size_z} SizeT={size_t}: "
            f"{size_c * size_z * size_t} planes"
        )
        missing = list(itertools.islice(locations.missing(), 1))
        if missing:
            c, z, t = missing[0]
            count = sum(1 for _ in locations.missing())
            raise InputError(
                path,
                f"OME-XML describes {described}, but no TiffData locates "
                f"{count} of them (first: c={c} z={z} t={t}; "
                f"this file holds {n_pages} pages)",
            )
        used = set(locations.ref)
        main_refs = {r for r in used if self._plane_files[r][0] == path}
        in_main, last_in_main = 0, -1
        for ifd, r in zip(locations.ifd, locations.ref, strict=True):
            if r in main_refs:
                in_main += 1
                last_in_main = max(last_in_main, ifd)
        if last_in_main >= n_pages:
            raise InputError(
                path,
                f"OME-XML describes {described} ({in_main} in this file), "
                f"but the file holds only {n_pages} pages",
            )
        distinct = {self._plane_files[r][0] for r in used}
        self._uuids_multifile = len(distinct) > 1
        first_plane = self._plane_at(0, 0, 0)
        # the first plane fixes the frame geometry; check it against the OME-XML
        first = self._page(first_plane)
        self._set_geometry(first, first_plane.file)
        if first_plane.file == path:
            # the other pages of the main file are read as light TiffFrames of this keyframe
            try:
                tif.pages.useframes = True
                tif.pages.set_keyframe(first_plane.ifd)
            except Exception as exc:
                raise InputError(path, f"corrupt TIFF ({exc})") from exc
            if self._samples == 1 and _is_raw(first.keyframe):
                # plain strips: each plane is read from its IFD's tags, without a tifffile
                # page object per frame
                self._main_ifds = _ifd_offsets(tif, n_pages)
        expected = (image.get("size_y"), image.get("size_x"))
        if None not in expected and expected != (self._height, self._width):
            raise InputError(
                path,
                f"OME-XML says planes are {expected[1]}x{expected[0]} (SizeX x SizeY), "
                f"but the pixel data are {self._width}x{self._height}",
            )
        ome_dtype = image.get("dtype")
        if ome_dtype is not None and ome_dtype != self._dtype.name:
            raise InputError(
                path, f"OME-XML says pixel type {ome_dtype}, but the pixel data are {self._dtype}"
            )
        if in_main:
            self._check_data_end(tif, path, last_in_main)
        table = image.get("planes") or ()
        rows = array("l", [-1]) * (size_c * size_z * size_t)
        for row, plane in enumerate(table):
            t, z, c = (plane.get("t_index", 0), plane.get("z_index", 0), plane.get("c_index", 0))
            if 0 <= t < size_t and 0 <= z < size_z and 0 <= c < size_c:
                i = (t * size_z + z) * size_c + c
                if rows[i] < 0:  # the first Plane element of a plane wins
                    rows[i] = row
        self._plane_table, self._plane_rows = table, rows
        names = []
        channels = image.get("channels") or []
        for c in range(size_c):
            name = channels[c].get("name") if c < len(channels) else None
            names.append(name or f"C{c}")
        self._plane_channel_names = names
        multifile_prairie = len(distinct) > 1 and all(
            _PRAIRIE_NAME.search(f.name) for f in distinct
        )
        metadata = {k: v for k, v in image.items() if k not in ("planes", "tiff_data")}
        metadata["dtype"] = self._dtype.name
        self._time_increment = metadata.get("time_increment")
        self.metadata = {
            "source": str(path),
            "_source_filename": path.name,
            **metadata,
            "format": FORMAT_PRAIRIE if multifile_prairie else FORMAT_OME,
            "files": len(distinct),
        }

    def _resolve_files(
        self, path: Path, doc: ome.OmeDocument, refs: list[tuple[str | None, str | None]]
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
        if missing and len(document_names) == 1:
            # a single-file OME-TIFF that was renamed after it was written
            logger.info(
                "%s: OME-XML names %s as its data file; reading this file instead",
                path,
                missing[0],
            )
            files[missing[0]] = path
        elif missing:
            raise InputError(
                path.parent / missing[0],
                f"file of the multi-file OME series {path.name} is missing"
                + (f" ({len(missing)} files missing)" if len(missing) > 1 else ""),
            )
        return files

    def _open_series(self, tif: tifffile.TiffFile, path: Path) -> None:
        try:
            all_series = list(tif.series)  # tifffile evaluates series lazily
        except Exception as exc:
            raise InputError(path, f"corrupt TIFF ({exc})") from exc
        if not all_series:
            raise InputError(path, "TIFF file holds no image series")
        kinds = {s.kind for s in all_series}
        if tif.is_shaped or len(all_series) == 1 or "generic" not in kinds:
            series = all_series[self._series_index(len(all_series))]
        else:
            shapes = ", ".join(str(s.keyframe.shape) for s in all_series[:4])
            raise InputError(path, f"frames of different shapes in one stack: {shapes}")
        kf = series.keyframe
        try:
            n_pages = len(series.pages)
        except Exception as exc:
            raise InputError(path, f"corrupt TIFF ({exc})") from exc
        page_ndim = len(kf.shape)
        shape, axes = tuple(series.shape), series.axes
        lead_axes, lead_shape = axes[: len(axes) - page_ndim], shape[: len(shape) - page_ndim]
        n_planes = math.prod(lead_shape)
        if shape[len(shape) - page_ndim :] != tuple(kf.shape):
            lead_axes, lead_shape, n_planes = "I", (n_pages,), n_pages
        # Planes are kept as positions in the series, not as tifffile page objects (a few
        # kilobytes each): a contiguous uncompressed series is located by arithmetic, any
        # other by the IFD index of each of its pages.
        offset = series.dataoffset
        if offset is not None and n_pages and (n_planes != n_pages or _is_raw(kf)):
            # tifffile describes a contiguous uncompressed series by its first page (an
            # ImageJ file over 4 GB has only that one); plane k is at offset + k * nbytes
            if n_planes != n_pages and n_pages != 1:
                raise InputError(
                    path, f"cannot map the {n_pages} pages of the file to its {n_planes} images"
                )
            self._contiguous: tuple[int, int] | None = (offset, kf.nbytes)
        elif n_planes != n_pages:
            raise InputError(
                path, f"cannot map the {n_pages} pages of the file to its {n_planes} images"
            )
        else:
            self._contiguous = None
            ifds = array("q")
            try:
                for page in series.pages:  # one at a time: none is kept
                    ifds.append(-1 if page is None else page.index)
            except Exception as exc:
                raise InputError(path, f"corrupt TIFF ({exc})") from exc
            present = sum(1 for ifd in ifds if ifd >= 0)
            if not n_pages or present < n_pages:
                raise InputError(
                    path,
                    f"the file holds {present} of the {n_pages} images its metadata describes",
                )
            self._series_ifds = ifds
        self._keyframe = kf
        size_z = lead_shape[lead_axes.index("Z")] if "Z" in lead_axes else 1
        size_c = lead_shape[lead_axes.index("C")] if "C" in lead_axes else 1
        time_dims = [
            (i, n)
            for i, (a, n) in enumerate(zip(lead_axes, lead_shape, strict=True))
            if a not in "ZC"
        ]
        size_t = math.prod(n for _, n in time_dims)
        order = array("q")
        for t in range(size_t):
            index = [0] * len(lead_axes)
            rest = t
            for i, n in reversed(time_dims):
                index[i] = rest % n
                rest //= n
            for z in range(size_z):
                for c in range(size_c):
                    if "Z" in lead_axes:
                        index[lead_axes.index("Z")] = z
                    if "C" in lead_axes:
                        index[lead_axes.index("C")] = c
                    k = int(np.ravel_multi_index(index, lead_shape)) if lead_axes else 0
                    order.append(k)
        self._pages = order
        self._size_c_planes, self._size_z, self._size_t = size_c, size_z, size_t
        self._set_geometry(self._series_page(0), path)
        self._check_data_end(tif, path, None, self._series_page(n_planes - 1))
        self._plane_channel_names = [f"C{c}" for c in range(size_c)]
        metadata: dict = {}
        fmt = FORMAT_TIFF
        if tif.is_imagej:
            fmt = FORMAT_IMAGEJ
            metadata.update(_imagej_metadata(tif.imagej_metadata or {}, path))
        metadata.update(_resolution_metadata(kf, metadata.pop("_unit", None)))
        metadata["scale_unit"] = "um"
        metadata["t_unit"] = "s"
        samples = self._samples
        metadata.update(
            size_x=self._width,
            size_y=self._height,
            size_z=size_z,
            size_c=size_c * samples,
            size_t=size_t,
            dtype=self._dtype.name,
        )
        self._time_increment = metadata.get("time_increment")
        self.metadata = {
            "source": str(self.source.path),
            "_source_filename": Path(self.source.path).name,
            **metadata,
            "format": fmt,
            "files": 1,
        }

    def _set_geometry(self, page: Any, file: Path) -> None:
        """Frame geometry and pixel type from the first plane's page; reject what cannot be read."""
        problem = _pixel_type_problem(page)
        if problem:
            raise InputError(file, problem)
        kf = page.keyframe
        axes, shape = kf.axes, kf.shape
        if "Y" not in axes or "X" not in axes or set(axes) - set("YXS"):
            raise InputError(file, f"unsupported page layout {axes} {shape}")
        self._height = shape[axes.index("Y")]
        self._width = shape[axes.index("X")]
        self._samples = shape[axes.index("S")] if "S" in axes else 1
        self._dtype = np.dtype(kf.dtype).newbyteorder("=")
        plane_bytes = self._height * self._width * self._samples * self._dtype.itemsize
        try:
            raw = _is_raw(kf)
        except Exception as exc:  # tifffile chokes on some corrupt tag values
            raise InputError(file, f"corrupt TIFF ({exc})") from exc
        if raw and plane_bytes > page.parent.filehandle.size:
            raise InputError(
                file,
                f"corrupt TIFF: an image of {self._width}x{self._height} {self._dtype} "
                f"is larger than the file",
            )

    def _check_data_end(
        self, tif: tifffile.TiffFile, path: Path, ifd: int | None, page: Any = None
    ) -> None:
        """Raise if the pixel data of the last plane lie beyond the end of the file."""
        try:
            if page is None:
                page = tif.pages[ifd]
            end = max(o + n for o, n in zip(page.dataoffsets, page.databytecounts, strict=True))
        except InputError:
            raise
        except Exception as exc:
            raise InputError(path, f"corrupt or truncated TIFF ({exc})") from exc
        size = tif.filehandle.size
        if end > size:
            raise InputError(
                path, f"truncated file: pixel data end at byte {end}, the file has {size} bytes"
            )

    def _select_channel(self, channel: str | int | None) -> None:
        samples = self._samples
        names = []
        for name in self._plane_channel_names:
            if samples == 1:
                names.append(name)
            else:
                sample_names = _SAMPLE_NAMES.get(samples, [f"S{s}" for s in range(samples)])
                prefix = f"{name}:" if len(self._plane_channel_names) > 1 else ""
                names.extend(prefix + s for s in sample_names)
        self._all_channel_names = names
        if channel is None:
            self._selected: int | None = None
            self._channels = list(range(len(names)))
        else:
            self._selected = self._channel_index(channel, names)
            self._channels = [self._selected]
        self.channel_names = [names[c] for c in self._channels]
        self.n_frames = self._size_t * self._size_z
        self.dtype = self._dtype
        hw = (self._height, self._width)
        self.frame_shape = hw if len(self._channels) == 1 else (len(self._channels), *hw)

    def _channel_index(self, channel: str | int, names: list[str]) -> int:
        if isinstance(channel, int | np.integer) and not isinstance(channel, bool):
            if 0 <= channel < len(names):
                return int(channel)
        elif isinstance(channel, str):
            if channel in names:
                return names.index(channel)
            folded = [n.casefold() for n in names]
            if folded.count(channel.casefold()) == 1:
                return folded.index(channel.casefold())
            if channel.isdigit() and int(channel) < len(names):
                return int(channel)
        raise InputError(
            self.source.path,
            f"no channel {channel!r}; channels are: {', '.join(names)} "
            f"(or an index 0..{len(names) - 1})",
        )

    # -- reading -------------------------------------------------------------------

    def _tiff(self, file: Path) -> tifffile.TiffFile:
        """The open TiffFile of ``file``: the main file, or one of a few kept open."""
        if file == self._path and self._main is not None:
            return self._main
        tif = self._files.get(file)
        if tif is not None:
            self._files.move_to_end(file)
            return tif
        tif = _open_tiff(file)
        self._files[file] = tif
        while len(self._files) > min(MAX_OPEN_FILES, self._size_c_planes + 1):
            _, old = self._files.popitem(last=False)
            old.close()
        return tif

    def _plane_at(self, c: int, z: int, t: int) -> _Plane:
        """Where plane (c, z, t) is stored."""
        i = (t * self._size_z + z) * self._size_c_planes + c
        if self._pages is not None:
            page = self._series_page(self._pages[i])
            return _Plane(self._path, page.index, None, page)
        file, uuid = self._plane_files[self._plane_ref[i]]
        return _Plane(file, self._plane_ifd[i], uuid)

    def _series_page(self, k: int) -> Any:
        """Page ``k`` of a series without OME-XML: made from the layout or read from its IFD."""
        assert self._main is not None
        if self._contiguous is not None:
            offset, nbytes = self._contiguous
            return tifffile.TiffFrame(
                self._main,
                index=k,
                keyframe=self._keyframe,
                dataoffsets=(offset + k * nbytes,),
                databytecounts=(nbytes,),
            )
        return self._main.pages[self._series_ifds[k]]

    def _plane_meta(self, t: int, z: int, c: int) -> dict | None:
        """The OME Plane metadata of plane (c, z, t), if the document has it."""
        if not self._plane_rows:
            return None
        row = self._plane_rows[(t * self._size_z + z) * self._size_c_planes + c]
        return None if row < 0 else self._plane_table[row]

    def _page(self, plane: _Plane) -> Any:
        if plane.page is not None:
            return plane.page
        tif = self._tiff(plane.file)
        try:
            return tif.pages[plane.ifd]
        except IndexError:
            raise InputError(
                plane.file, f"has {len(tif.pages)} pages, the OME-XML needs page {plane.ifd}"
            ) from None
        except Exception as exc:
            raise InputError(plane.file, f"corrupt page {plane.ifd} ({exc})") from exc

    def _read_plane(self, plane: _Plane, out: np.ndarray, sample: int | None) -> None:
        """Read one plane into ``out`` ((S, H, W), or (H, W) for one sample)."""
        if plane.page is None and self._samples == 1:
            if plane.file == self._path:
                if self._main_ifds is not None and self._read_main_raw(plane, out):
                    return
            elif plane.ifd == 0 and self._read_single_raw(plane.file, out):
                return
        page = self._page(plane)
        try:
            self._read_page(page, plane, out, sample)
        except InputError:
            raise
        except Exception as exc:
            raise InputError(plane.file, f"cannot read page {plane.ifd} ({exc})") from exc

    def _read_main_raw(self, plane: _Plane, out: np.ndarray) -> bool:
        """Read a plane of the main file straight from the strips its IFD lists.

        False (nothing read) when its IFD is anything but a plain strip image of the
        series' shape and pixel type; tifffile's page then reads it, or reports what is
        wrong.
        """
        assert self._main_ifds is not None and self._main is not None
        if not 0 <= plane.ifd < len(self._main_ifds):
            return False
        tif = self._main
        nbytes = out.nbytes
        start = self._plain_strips(_read_tags(tif, self._main_ifds[plane.ifd], _RAW_TAGS), nbytes)
        if start is None:
            return False
        fh = tif.filehandle
        fh.seek(start)
        got = fh.readinto(out.reshape(-1).view(np.uint8))
        if got != nbytes:
            raise InputError(
                plane.file,
                f"truncated file: page {plane.ifd} ends {nbytes - got} bytes past the end",
            )
        if tif.byteorder != _NATIVE and out.dtype.itemsize > 1:
            out.byteswap(inplace=True)
        return True

    def _plain_strips(self, tags: dict[int, tuple[int, ...]], nbytes: int) -> int | None:
        """Where a plane's pixels start, or None.

        None unless ``tags`` (its IFD's integer tags) describe plain contiguous strips of
        the series' shape and pixel type, holding at least ``nbytes``.
        """

        def one(code: int, default: int | None = None) -> int | None:
            value = tags.get(code)
            return value[0] if value else default

        dtype = self._dtype
        offsets = tags.get(_STRIP_OFFSETS)
        counts = tags.get(_STRIP_BYTE_COUNTS)
        if (
            one(_IMAGE_WIDTH) != self._width
            or one(_IMAGE_LENGTH) != self._height
            or one(_SAMPLES_PER_PIXEL, 1) != 1
            or one(_COMPRESSION, 1) != 1
            or one(_FILL_ORDER, 1) != 1
            or one(_PREDICTOR, 1) != 1
            or _TILE_WIDTH in tags
            or one(_BITS_PER_SAMPLE, 1) != dtype.itemsize * 8
            or _SAMPLE_FORMAT_KINDS.get(one(_SAMPLE_FORMAT, 1) or 1) != dtype.kind
            or not offsets
            or not counts
            or not _contiguous(offsets, counts)
            or sum(counts) < nbytes
        ):
            return None
        return offsets[0]

    def _read_single_raw(self, file: Path, out: np.ndarray) -> bool:
        """Read the only plane of an uncompressed single-plane file of a multi-file series.

        False (nothing read) when the file is anything but a plain strip image of the
        series' shape and pixel type; tifffile then reads it, or reports what is wrong.
        """
        try:
            with open(file, "rb", buffering=0) as fh:
                found = _first_ifd_tags(fh)
                if found is None:
                    return False
                order, tags = found
                start = self._plain_strips(tags, out.nbytes)
                if start is None:
                    return False
                fh.seek(start)
                if fh.readinto(out.reshape(-1).view(np.uint8)) != out.nbytes:
                    return False
        except (OSError, struct.error):
            return False
        if order != _NATIVE and out.dtype.itemsize > 1:
            out.byteswap(inplace=True)
        return True

    def _read_page(self, page: Any, plane: _Plane, out: np.ndarray, sample: int | None) -> None:
        expected = (self._height, self._width)
        counts = page.databytecounts
        if isinstance(page, tifffile.TiffFrame):
            if page.offset:
                # a TiffFrame takes its shape (and, if contiguous, its byte counts) from the
                # keyframe: read the frame's own ImageLength and StripByteCounts
                tags = _read_tags(page.parent, page.offset, (257, 279, 325))
                length = tags.get(257, (self._height,))[0]
                if length != self._height:
                    raise InputError(
                        plane.file,
                        f"frame of shape {(length, self._width)} (page {plane.ifd}) differs "
                        f"from the series shape {expected}",
                    )
                counts = tags.get(279) or tags.get(325) or counts
        else:
            # a page parsed from its own IFD: check it matches the series
            got = (page.imagelength, page.imagewidth)
            if got != expected or page.samplesperpixel != self._samples:
                raise InputError(
                    plane.file,
                    f"frame of shape {got} (page {plane.ifd}) differs from the series "
                    f"shape {expected}",
                )
            problem = _pixel_type_problem(page)
            if problem:
                raise InputError(plane.file, problem)
            if np.dtype(page.dtype) != self._dtype:
                raise InputError(
                    plane.file,
                    f"page {plane.ifd} has pixel type {page.dtype}, the series {self._dtype}",
                )
        offsets = page.dataoffsets
        if self._samples == 1 and _is_raw(page.keyframe) and _contiguous(offsets, counts):
            nbytes = out.nbytes
            if sum(counts) < nbytes:
                raise InputError(
                    plane.file,
                    f"page {plane.ifd} holds {sum(counts)} bytes of pixel data, "
                    f"{nbytes} expected (truncated or a different shape)",
                )
            fh = page.parent.filehandle
            fh.seek(offsets[0])
            got = fh.readinto(out.reshape(-1).view(np.uint8))
            if got != nbytes:
                raise InputError(
                    plane.file,
                    f"truncated file: page {plane.ifd} ends {nbytes - got} bytes past the end",
                )
            if page.parent.byteorder != _NATIVE and out.dtype.itemsize > 1:
                out.byteswap(inplace=True)
            return
        data = page.asarray(maxworkers=1)
        axes = page.keyframe.axes
        if "S" in axes:
            data = np.moveaxis(data, axes.index("S"), 0)
        else:
            data = data.reshape(1, *data.shape)
        if data.shape != (self._samples, self._height, self._width):
            raise InputError(
                plane.file,
                f"page {plane.ifd} decodes to shape {data.shape}, expected "
                f"{(self._samples, self._height, self._width)}",
            )
        if sample is not None:
            out[...] = data[sample]
        else:
            out[...] = data.reshape(out.shape)

    def _check_index(self, index: int) -> tuple[int, int]:
        if not 0 <= index < self.n_frames:
            raise IndexError(f"frame {index} out of range (0..{self.n_frames - 1})")
        return index // self._size_z, index % self._size_z

    def read_frame(self, index: int, out: np.ndarray | None = None) -> np.ndarray:
        """Frame ``index`` as a C-contiguous array of ``frame_shape`` and ``dtype``.

        The frame is read into ``out`` when given (a C-contiguous array of that shape and
        type, e.g. a buffer reused from frame to frame), else into a new array.
        """
        t, z = self._check_index(index)
        if out is not None:
            if (
                out.shape != tuple(self.frame_shape)
                or out.dtype != self._dtype
                or not out.flags.c_contiguous
                or not out.flags.writeable
            ):
                raise ValueError(
                    f"out must be a writeable C-contiguous {self.frame_shape} {self._dtype} "
                    f"array, got {out.shape} {out.dtype}"
                )
        else:
            try:
                out = np.empty(self.frame_shape, dtype=self._dtype)
            except MemoryError:
                raise InputError(
                    self._path,
                    f"a frame of {self.frame_shape} {self._dtype} does not fit in memory",
                ) from None
        planes = out.reshape(len(self._channels), self._height, self._width)
        samples = self._samples
        if samples == 1:
            for i, c in enumerate(self._channels):
                self._read_plane(self._plane_at(c, z, t), planes[i], None)
        elif self._selected is not None:
            c, s = divmod(self._selected, samples)
            self._read_plane(self._plane_at(c, z, t), planes[0], s)
        else:
            for c in range(self._size_c_planes):
                view = planes[c * samples : (c + 1) * samples]
                self._read_plane(self._plane_at(c, z, t), view, None)
        return out

    def frame_metadata(self, index: int) -> dict:
        """The per-frame metadata: indices, time since start (s), stage position (µm), file UUID."""
        t, z = self._check_index(index)
        meta: dict = {"index": index, "t_index": t, "z_index": z}
        plane_cs = sorted({c // self._samples for c in self._channels})
        if self._selected is not None:
            meta["c_index"] = self._selected
        plane = self._plane_meta(t, z, plane_cs[0])
        if plane is None:
            plane = next(
                (
                    found
                    for c in range(self._size_c_planes)
                    if (found := self._plane_meta(t, z, c)) is not None
                ),
                {},
            )
        if "delta_t" in plane:
            meta["t"] = plane["delta_t"]
        elif self._time_increment is not None:
            meta["t"] = t * self._time_increment
        for key in ("position_x", "position_y", "position_z"):
            if key in plane:
                meta[key] = plane[key]
        if self._uuids_multifile:
            uuids = [self._plane_at(c, z, t).uuid for c in plane_cs]
            if len(set(uuids)) == 1:
                if uuids[0] is not None:
                    meta["uuid"] = uuids[0]
            else:
                meta["uuid"] = uuids
        return meta

    def __iter__(self) -> Iterator[tuple[int, np.ndarray, dict]]:
        for index in range(self.n_frames):
            yield index, self.read_frame(index), self.frame_metadata(index)

    def __len__(self) -> int:
        return self.n_frames

    def close(self) -> None:
        """Release every file handle (idempotent)."""
        for tif in self._files.values():
            tif.close()
        self._files.clear()
        if self._main is not None:
            self._main.close()
            self._main = None

    def __enter__(self) -> RecordingReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"RecordingReader({str(self.source.path)!r}, series={self.source.series}, "
            f"n_frames={self.n_frames}, frame_shape={self.frame_shape}, dtype={self.dtype})"
        )


def _imagej_metadata(ij: dict, path: Path) -> dict:
    """scale_z, time_increment (s) and the length unit from ImageJ's description."""
    out: dict = {}
    unit = ij.get("unit")
    factor = None
    if isinstance(unit, str):
        unit = unit.replace("\\u00B5", "µ").replace("\\u00b5", "µ").strip()
        factor = ome.LENGTH_UNITS_UM.get(unit)
        if factor is None and unit.lower() not in ("pixel", "pixels", ""):
            logger.warning("%s: ImageJ unit %r cannot be converted; scales left out", path, unit)
    out["_unit"] = factor
    spacing = ij.get("spacing")
    if factor is not None and isinstance(spacing, int | float):
        out["scale_z"] = float(spacing) * factor
    finterval = ij.get("finterval")
    if isinstance(finterval, int | float) and finterval > 0:
        tunit = str(ij.get("tunit", "s")).strip().replace("\\u00B5", "µ")
        tfactor = ome.TIME_UNITS_S.get(tunit)
        if tfactor is None:
            logger.warning("%s: ImageJ time unit %r cannot be converted", path, tunit)
        else:
            out["time_increment"] = float(finterval) * tfactor
    return out


def _resolution_metadata(page: Any, unit_um: float | None) -> dict:
    """scale_x/scale_y (µm) from the X/YResolution tags, when their unit is known."""
    if unit_um is None:
        resolution_unit = page.resolutionunit
        if resolution_unit == tifffile.RESUNIT.CENTIMETER:
            unit_um = 1e4
        elif resolution_unit == tifffile.RESUNIT.INCH:
            unit_um = 25400.0
        elif resolution_unit == tifffile.RESUNIT.MILLIMETER:
            unit_um = 1e3
        elif resolution_unit == tifffile.RESUNIT.MICROMETER:
            unit_um = 1.0
        else:
            return {}
    out = {}
    for key, code in (("scale_x", 282), ("scale_y", 283)):
        tag = page.tags.get(code)
        if tag is None:
            continue
        try:
            numerator, denominator = tag.value
            per_unit = numerator / denominator
        except (TypeError, ValueError, ZeroDivisionError):
            continue
        if per_unit > 0 and math.isfinite(per_unit):
            out[key] = unit_um / per_unit
    return out
