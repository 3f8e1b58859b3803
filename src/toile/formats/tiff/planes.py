"""Planes of TIFF files, and recordings made of them.

:class:`TiffPlanes` reads single planes (pages) of any number of TIFF files: straight
from the file into the caller's array when the page is stored as plain contiguous
strips (the IFD read directly, without a tifffile page object; a single-page file opened
and closed with a few small reads), through tifffile otherwise. :class:`PlaneGrid` is a
:class:`~toile.formats.base.Recording` whose (t, z, c) planes each live at a
:class:`PlaneRef`; every TIFF format opens its recordings as one.
"""

from __future__ import annotations

import struct
import sys
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import tifffile

from toile.errors import InputError
from toile.formats.base import Recording, Source
from toile.formats.tiff.files import (
    clean_ifd_count,
    file_size,
    input_path,
    open_binary,
    open_tiff,
)
from toile.formats.tiff.ifd import (
    BITS_PER_SAMPLE,
    COMPRESSION,
    EXTRA_SAMPLES,
    IMAGE_DEPTH,
    IMAGE_LENGTH,
    IMAGE_WIDTH,
    JPEG_OFFSET,
    PLANE_TAGS,
    SAMPLE_FORMAT,
    SAMPLES_PER_PIXEL,
    STRIP_BYTE_COUNTS,
    STRIP_OFFSETS,
    TILE_OFFSETS,
    IfdReader,
    plain_strips,
)

_NATIVE = "<" if sys.byteorder == "little" else ">"
_SAMPLE_NAMES = {3: ["R", "G", "B"], 4: ["R", "G", "B", "A"]}
_SAMPLES_PER_PIXEL = 277
#: TIFF SampleFormat -> numpy kind, and the sample sizes (bits) tifffile reads as numbers.
_SAMPLE_KINDS = {1: "u", 2: "i", 3: "f"}
_SAMPLE_BITS = {"u": (8, 16, 32, 64), "i": (8, 16, 32, 64), "f": (16, 32, 64)}
#: The tags a page's geometry and its data's end are read from, without tifffile.
_GEOMETRY_TAGS = PLANE_TAGS | {TILE_OFFSETS, JPEG_OFFSET, EXTRA_SAMPLES, IMAGE_DEPTH}
_DATA_TAGS = frozenset({STRIP_OFFSETS, STRIP_BYTE_COUNTS, COMPRESSION, TILE_OFFSETS, JPEG_OFFSET})


@dataclass(frozen=True)
class PlaneRef:
    """Where one plane is stored: a page (IFD index) of a TIFF file.

    ``uuid`` is the OME UUID of that file when known (``frame.uuid`` of multi-file
    series). ``offset``, when set, is where the plane's bytes start: a plane of an
    uncompressed contiguous stack laid out like page 0 of the file (ImageJ writes stacks
    over 4 GB with a single IFD), ``page`` then only numbers it in messages. ``sample``,
    when set, picks one sample of a page that holds several planes as its samples (a
    stack stored as planar "RGB" pages whose samples are time points or slices).
    """

    file: Path
    page: int
    uuid: str | None = None
    offset: int | None = None
    sample: int | None = None


def pixel_type_problem(page: Any) -> str | None:
    """Why the pixels of tifffile ``page`` cannot be read as a numeric array, or None."""
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


def is_raw(page: Any) -> bool:
    """tifffile ``page`` stores its samples as they are: readable straight into an array."""
    kf = page.keyframe
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


class _Handle:
    """One file kept open: a raw stream and its IFDs, and a tifffile view when needed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fh: BinaryIO | None = None
        self.ifds: IfdReader | None = None
        self.size = 0
        self.tif: tifffile.TiffFile | None = None
        self.count: int | None = None  # IFDs when checked directly, 0 when that failed
        try:
            self.fh = open_binary(path)
            self.size = file_size(self.fh)
            self.ifds = IfdReader.open(self.fh)
        except FileNotFoundError:
            self.close()
            raise InputError(path, "file not found") from None
        except OSError:
            self.close()  # tifffile opens it and says what is wrong
        except struct.error:
            self.ifds = None

    def tiff(self) -> tifffile.TiffFile:
        if self.tif is None:
            self.tif = open_tiff(self.path)
        return self.tif

    def direct(self) -> IfdReader | None:
        """The IFD reader, when the file is read without tifffile: it is not open with
        tifffile, and passes the checks :func:`open_tiff` makes (read directly)."""
        if self.tif is not None or self.ifds is None:
            return None
        if self.count is None:
            self.count = clean_ifd_count(self.ifds, self.size) or 0
        return self.ifds if self.count else None

    def close(self) -> None:
        if self.tif is not None:
            self.tif.close()
            self.tif = None
        if self.fh is not None:
            self.fh.close()
            self.fh = None


class TiffPlanes:
    """Reads planes from any number of TIFF files, a few kept open (LRU), straight from
    the strips when they are plain and contiguous, through tifffile otherwise. Every
    failure is an InputError naming the file."""

    def __init__(self, max_open: int = 8) -> None:
        self.max_open = max(1, max_open)
        self._handles: OrderedDict[Path, _Handle] = OrderedDict()

    # -- files -----------------------------------------------------------------------

    def _handle(self, file: Path) -> _Handle:
        handle = self._handles.get(file)
        if handle is not None:
            self._handles.move_to_end(file)
            return handle
        handle = _Handle(file)
        self._handles[file] = handle
        while len(self._handles) > self.max_open:
            _, old = self._handles.popitem(last=False)
            old.close()
        return handle

    def tiff(self, file: Path) -> tifffile.TiffFile:
        """The open ``tifffile.TiffFile`` of ``file`` (kept open with the others)."""
        return self._handle(input_path(file)).tiff()

    def page_count(self, file: Path) -> int:
        """Number of pages (IFDs) of ``file``, after the checks :func:`open_tiff` makes
        (an InputError naming the file), without tifffile when the file allows."""
        handle = self._handle(input_path(file))
        if handle.direct() is not None and handle.count:
            return handle.count
        return len(handle.tiff().pages)

    def _page(self, ref: PlaneRef) -> Any:
        tif = self.tiff(ref.file)
        index = 0 if ref.offset is not None else ref.page
        try:
            return tif.pages[index]
        except IndexError:
            raise InputError(
                ref.file, f"has {len(tif.pages)} pages, page {ref.page} does not exist"
            ) from None
        except Exception as exc:
            raise InputError(ref.file, f"corrupt page {ref.page} ({exc})") from exc

    # -- geometry --------------------------------------------------------------------

    def geometry(self, ref: PlaneRef) -> tuple[int, int, int, np.dtype]:
        """Height, width, samples per pixel and pixel type (native byte order) of the
        plane at ``ref``; an InputError when its pixels cannot be read as numbers."""
        direct = self._direct_geometry(ref)
        if direct is not None:
            return direct
        page = self._page(ref)
        try:
            problem = pixel_type_problem(page)
            if problem:
                raise InputError(ref.file, problem)
            kf = page.keyframe
            axes, shape = kf.axes, kf.shape
            if "Y" not in axes or "X" not in axes or set(axes) - set("YXS"):
                raise InputError(ref.file, f"unsupported page layout {axes} {shape}")
            height, width = shape[axes.index("Y")], shape[axes.index("X")]
            samples = shape[axes.index("S")] if "S" in axes else 1
            if ref.sample is not None:
                if not 0 <= ref.sample < samples:
                    raise InputError(
                        ref.file, f"page {ref.page} has {samples} samples, not {ref.sample + 1}"
                    )
                samples = 1
            dtype = np.dtype(kf.dtype).newbyteorder("=")
            raw = is_raw(kf)
        except InputError:
            raise
        except Exception as exc:  # tifffile chokes on some corrupt tag values
            raise InputError(ref.file, f"corrupt TIFF ({exc})") from exc
        if raw and page.keyframe.nbytes > page.parent.filehandle.size:
            raise InputError(
                ref.file,
                f"corrupt TIFF: an image of {width}x{height} {dtype} is larger than the file",
            )
        return height, width, samples, dtype

    def _direct_tags(self, ref: PlaneRef, codes: frozenset[int]) -> tuple[_Handle, dict] | None:
        """The handle of the file of ``ref`` and the integer tags ``codes`` of its page,
        when they are read without tifffile (see :meth:`_Handle.direct`)."""
        if ref.offset is not None or ref.sample is not None:
            return None
        handle = self._handle(input_path(ref.file))
        reader = handle.direct()
        if reader is None or not 0 <= ref.page < (handle.count or 0):
            return None
        offset = reader.offset(ref.page)
        tags = None if offset is None else reader.integer_tags(offset, codes)
        return None if tags is None else (handle, tags)

    def _direct_geometry(self, ref: PlaneRef) -> tuple[int, int, int, np.dtype] | None:
        """:meth:`geometry` of a page of one sample stored as plain contiguous strips,
        from its IFD alone (what tifffile makes of such a page); None for any other."""
        found = self._direct_tags(ref, _GEOMETRY_TAGS)
        if found is None:
            return None
        handle, tags = found
        if any(code in tags for code in (TILE_OFFSETS, JPEG_OFFSET, EXTRA_SAMPLES)):
            return None
        if tags.get(IMAGE_DEPTH, (1,))[0] != 1 or tags.get(SAMPLES_PER_PIXEL, (1,)) != (1,):
            return None
        bits = tags.get(BITS_PER_SAMPLE, (1,))
        kind = _SAMPLE_KINDS.get(tags.get(SAMPLE_FORMAT, (1,))[0])
        if kind is None or len(bits) != 1 or bits[0] not in _SAMPLE_BITS[kind]:
            return None
        height, width = tags.get(IMAGE_LENGTH, (0,))[0], tags.get(IMAGE_WIDTH, (0,))[0]
        if not height or not width:
            return None
        dtype = np.dtype(f"{kind}{bits[0] // 8}")
        if plain_strips(tags, height, width, dtype.kind, dtype.itemsize) is None:
            return None
        if height * width * dtype.itemsize > handle.size:
            raise InputError(
                ref.file,
                f"corrupt TIFF: an image of {width}x{height} {dtype} is larger than the file",
            )
        return height, width, 1, dtype

    def data_end(self, ref: PlaneRef) -> None:
        """Raise if the pixel data of the plane at ``ref`` lie beyond the end of its file
        (a cheap check, at open time, that a file was not cut short)."""
        found = self._direct_tags(ref, _DATA_TAGS)
        if found is not None:
            handle, tags = found
            offsets, counts = tags.get(STRIP_OFFSETS), tags.get(STRIP_BYTE_COUNTS)
            if (
                offsets
                and counts
                and len(offsets) == len(counts)
                and tags.get(COMPRESSION, (1,)) == (1,)
                and not {TILE_OFFSETS, JPEG_OFFSET} & tags.keys()
            ):
                end = max(o + n for o, n in zip(offsets, counts, strict=True))
                if end > handle.size:
                    raise InputError(
                        ref.file,
                        f"truncated file: pixel data end at byte {end}, "
                        f"the file has {handle.size} bytes",
                    )
                return
        tif = self.tiff(ref.file)
        try:
            if ref.offset is not None:
                kf = tif.pages.first
                end = ref.offset + kf.nbytes
            else:
                page = self._page(ref)
                end = max(
                    (o + n for o, n in zip(page.dataoffsets, page.databytecounts, strict=True)),
                    default=0,
                )
        except InputError:
            raise
        except Exception as exc:
            raise InputError(ref.file, f"corrupt or truncated TIFF ({exc})") from exc
        size = tif.filehandle.size
        if end > size:
            raise InputError(
                ref.file, f"truncated file: pixel data end at byte {end}, the file has {size} bytes"
            )

    # -- reading ---------------------------------------------------------------------

    def read(self, ref: PlaneRef, out: np.ndarray, sample: int | None = None) -> None:
        """Read the plane at ``ref`` into ``out``: (H, W) for one sample (``sample``, or
        the only one), or (S, H, W). Checks the page matches that geometry and type."""
        if ref.sample is not None:
            sample = ref.sample
        if out.ndim == 2:
            height, width = out.shape
            samples = 1 if sample is None else None
        else:
            samples, height, width = out.shape
        try:
            if samples == 1 and self._read_direct(ref, out, height, width):
                return
            self._read_page(ref, out, sample, height, width)
        except InputError:
            raise
        except Exception as exc:
            raise InputError(ref.file, f"corrupt or truncated page {ref.page} ({exc})") from exc

    def _read_direct(self, ref: PlaneRef, out: np.ndarray, height: int, width: int) -> bool:
        """Read a plain plane straight from its strips; False (nothing read) otherwise."""
        dtype = out.dtype
        if ref.offset is not None:
            handle = self._handle(ref.file)
            if handle.fh is None or handle.ifds is None:
                return False
            self._read_bytes(handle.fh, ref, ref.offset, out, handle.ifds.byteorder)
            return True
        if ref.page == 0 and ref.file not in self._handles:
            # a single-page file of a multi-file series: open, read, close
            try:
                with open_binary(ref.file) as fh:
                    reader = IfdReader.open(fh)
                    first = None if reader is None else reader.offset(0)
                    tags = None if first is None else reader.integer_tags(first, PLANE_TAGS)
                    found = (
                        None
                        if tags is None
                        else plain_strips(tags, height, width, dtype.kind, dtype.itemsize)
                    )
                    if found is None or reader is None:
                        return False
                    self._read_bytes(fh, ref, found[0], out, reader.byteorder)
            except (OSError, struct.error):
                return False
            return True
        handle = self._handle(ref.file)
        if handle.fh is None or handle.ifds is None:
            return False
        offset = handle.ifds.offset(ref.page)
        if offset is None:
            return False
        tags = handle.ifds.integer_tags(offset, PLANE_TAGS)
        if tags is None:
            return False
        length, columns = tags.get(IMAGE_LENGTH, (None,))[0], tags.get(IMAGE_WIDTH, (None,))[0]
        if (length, columns) != (height, width) and None not in (length, columns):
            raise InputError(
                ref.file,
                f"frame of shape {(length, columns)} (page {ref.page}) differs from the "
                f"series shape {(height, width)}",
            )
        found = plain_strips(tags, height, width, dtype.kind, dtype.itemsize)
        if found is None:
            return False
        self._read_bytes(handle.fh, ref, found[0], out, handle.ifds.byteorder)
        return True

    @staticmethod
    def _read_bytes(fh: BinaryIO, ref: PlaneRef, start: int, out: np.ndarray, order: str) -> None:
        nbytes = out.nbytes
        fh.seek(start)
        got = fh.readinto(out.reshape(-1).view(np.uint8))
        if got != nbytes:
            raise InputError(
                ref.file,
                f"truncated file: page {ref.page} ends {nbytes - (got or 0)} bytes past the end",
            )
        if order != _NATIVE and out.dtype.itemsize > 1:
            out.byteswap(inplace=True)

    def _read_page(
        self, ref: PlaneRef, out: np.ndarray, sample: int | None, height: int, width: int
    ) -> None:
        """Read the plane through tifffile's page: checked, decoded, copied into ``out``."""
        if ref.offset is not None:
            kf = self._page(ref)
            data = np.frombuffer(self._raw(ref, kf.nbytes), kf.dtype)
            data = data.reshape(kf.shape)
            axes = kf.axes
        else:
            page = self._page(ref)
            got = (page.imagelength, page.imagewidth)
            if got != (height, width):
                raise InputError(
                    ref.file,
                    f"frame of shape {got} (page {ref.page}) differs from the series "
                    f"shape {(height, width)}",
                )
            problem = pixel_type_problem(page)
            if problem:
                raise InputError(ref.file, problem)
            if np.dtype(page.dtype).newbyteorder("=") != out.dtype:
                raise InputError(
                    ref.file,
                    f"page {ref.page} has pixel type {page.dtype}, the series {out.dtype}",
                )
            data = page.asarray(maxworkers=1)
            axes = page.axes
        if "S" in axes:
            data = np.moveaxis(data, axes.index("S"), 0)
        else:
            data = data.reshape(1, *data.shape)
        samples = data.shape[0]
        if sample is not None:
            if not 0 <= sample < samples:
                raise InputError(
                    ref.file, f"page {ref.page} has {samples} samples, sample {sample} asked"
                )
            data = data[sample : sample + 1]
        want = out.shape if out.ndim == 3 else (1, *out.shape)
        if data.shape != want:
            raise InputError(
                ref.file, f"page {ref.page} decodes to shape {data.shape}, expected {want}"
            )
        out[...] = data.reshape(out.shape)

    def _raw(self, ref: PlaneRef, nbytes: int) -> bytes:
        handle = self._handle(ref.file)
        tif = handle.tiff()
        fh = tif.filehandle
        assert ref.offset is not None
        fh.seek(ref.offset)
        data = fh.read(nbytes)
        if len(data) != nbytes:
            raise InputError(
                ref.file,
                f"truncated file: page {ref.page} ends {nbytes - len(data)} bytes past the end",
            )
        return data

    def close(self) -> None:
        """Close every file kept open (idempotent)."""
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()


class PlaneGrid(Recording):
    """A recording whose planes (t, z, c) each live at a PlaneRef. Handles channel
    selection (by index, name, or case-insensitive name), frame shape, dtype, the
    `channels` metadata entry of the selected channel, frame.t from per-plane times or
    t_index * time_increment, positions, frame.uuid for multi-file recordings.

    The first plane fixes the frame geometry; a plane of another shape or pixel type is
    an error naming its file when it is read. With several samples per pixel (RGB), each
    sample is a channel (``R``, ``G``, ``B``, prefixed by the plane channel's name when
    there are several). ``metadata`` gets ``source``, ``_source_filename``, ``series``,
    ``files`` (1 unless given), ``n_frames``, ``dtype``, ``size_*`` when absent; a
    ``frame.uuid`` is written when ``files`` > 1 and the plane's PlaneRef has one.
    ``plane_metadata(t, z, c)`` gives the per-plane fields (``t`` in seconds,
    ``position_x/y/z``, ``position_unit``, ``exposure_s``, vendor values), taken from
    the first selected channel (or the first channel that has any).
    """

    def __init__(
        self,
        source: Source,
        metadata: dict,
        size_t: int,
        size_z: int,
        size_c: int,
        plane: Callable[[int, int, int], PlaneRef],
        channel_names: Sequence[str],
        plane_metadata: Callable[[int, int, int], dict] | None = None,
        channel: str | int | None = None,
        vendor_metadata: dict | None = None,
        planes: TiffPlanes | None = None,
    ) -> None:
        self.source = source
        self._plane = plane
        self._plane_metadata = plane_metadata
        self._size_t, self._size_z, self._size_c = size_t, size_z, size_c
        self.vendor_metadata = vendor_metadata
        self.planes = planes if planes is not None else TiffPlanes(min(8, size_c + 1))
        try:
            self._open(metadata, list(channel_names), channel)
        except BaseException:
            self.planes.close()
            raise

    def _open(self, metadata: dict, plane_names: list[str], channel: str | int | None) -> None:
        if min(self._size_t, self._size_z, self._size_c) < 1:
            raise InputError(
                self.source.path,
                f"no planes to read (SizeT={self._size_t} SizeZ={self._size_z} "
                f"SizeC={self._size_c})",
            )
        first = self._plane(0, 0, 0)
        height, width, samples, dtype = self.planes.geometry(first)
        self._height, self._width, self._samples, self._dtype = height, width, samples, dtype
        names: list[str] = []
        for c in range(self._size_c):
            name = plane_names[c] if c < len(plane_names) and plane_names[c] else f"C{c}"
            if samples == 1:
                names.append(name)
            else:
                sample_names = _SAMPLE_NAMES.get(samples, [f"S{s}" for s in range(samples)])
                prefix = f"{name}:" if self._size_c > 1 else ""
                names.extend(prefix + s for s in sample_names)
        if channel is None:
            self._selected: int | None = None
            self._channels = list(range(len(names)))
        else:
            self._selected = self._channel_index(channel, names)
            self._channels = [self._selected]
        self.channel_names = [names[c] for c in self._channels]
        self.n_frames = self._size_t * self._size_z
        self.dtype = dtype
        hw = (height, width)
        self.frame_shape = hw if len(self._channels) == 1 else (len(self._channels), *hw)
        path = self.source.path
        meta = {"source": str(path), "_source_filename": input_path(path).name, **metadata}
        meta.setdefault("files", 1)
        for key, value in (
            ("size_x", width),
            ("size_y", height),
            ("size_z", self._size_z),
            ("size_c", self._size_c * samples),
            ("size_t", self._size_t),
        ):
            meta.setdefault(key, value)
        meta["dtype"] = dtype.name
        meta["n_frames"] = self.n_frames
        meta["series"] = self.source.series
        if self._selected is not None and "channels" in meta:
            entries = meta["channels"] or []
            c = self._selected // samples
            if c < len(entries):
                meta["channels"] = [entries[c]]
            else:
                del meta["channels"]  # no entry of its own describes the selected channel
        self.metadata = meta
        self._multifile = meta["files"] > 1
        self._time_increment = meta.get("time_increment")

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

    def _check_index(self, index: int) -> tuple[int, int]:
        if not 0 <= index < self.n_frames:
            raise IndexError(f"frame {index} out of range (0..{self.n_frames - 1})")
        return index // self._size_z, index % self._size_z

    def plane_ref(self, t: int, z: int, c: int) -> PlaneRef:
        """Where plane (t, z, c) is stored (c counts planes, not samples)."""
        return self._plane(t, z, c)

    def read_frame(self, index: int, out: np.ndarray | None = None) -> np.ndarray:
        t, z = self._check_index(index)
        if out is None:
            try:
                out = np.empty(self.frame_shape, dtype=self._dtype)
            except MemoryError:
                raise InputError(
                    self.source.path,
                    f"a frame of {self.frame_shape} {self._dtype} does not fit in memory",
                ) from None
        else:
            self.check_out(out)
        planes = out.reshape(len(self._channels), self._height, self._width)
        samples = self._samples
        if samples == 1:
            for i, c in enumerate(self._channels):
                self.planes.read(self._plane(t, z, c), planes[i])
        elif self._selected is not None:
            c, s = divmod(self._selected, samples)
            self.planes.read(self._plane(t, z, c), planes[0], s)
        else:
            for c in range(self._size_c):
                self.planes.read(self._plane(t, z, c), planes[c * samples : (c + 1) * samples])
        return out

    def frame_metadata(self, index: int) -> dict:
        t, z = self._check_index(index)
        meta: dict = {"index": index, "t_index": t, "z_index": z}
        samples = self._samples
        plane_cs = sorted({c // samples for c in self._channels})
        if self._selected is not None:
            meta["c_index"] = self._selected
        extra: dict = {}
        if self._plane_metadata is not None:
            extra = self._plane_metadata(t, z, plane_cs[0]) or {}
            if not extra:
                for c in range(self._size_c):
                    extra = self._plane_metadata(t, z, c) or {}
                    if extra:
                        break
        if "t" not in extra and self._time_increment is not None:
            meta["t"] = t * self._time_increment
        meta.update(extra)
        if self._multifile:
            uuids = [self._plane(t, z, c).uuid for c in plane_cs]
            if len(set(uuids)) == 1:
                if uuids[0] is not None:
                    meta["uuid"] = uuids[0]
            else:
                meta["uuid"] = uuids
        return meta

    def close(self) -> None:
        self.planes.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self.source.path)!r}, series={self.source.series}, "
            f"n_frames={self.n_frames}, frame_shape={self.frame_shape}, dtype={self.dtype})"
        )
