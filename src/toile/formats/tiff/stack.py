"""A tifffile series (a stack without OME-XML) as a :class:`PlaneGrid`, following its axes.

tifffile names the axes of a series (``TZCYX`` for an ImageJ hyperstack, the ``axes``
of a tifffile-shaped file, ``IYX`` for a plain sequence of pages). T, and the generic
sequence axes I and Q, become time; Z becomes z; C the channel axis; S the samples of
RGB pages. A series whose pages hold several planes as samples of another axis (a
tifffile-shaped ``CTYX`` stack of three time points, stored as planar "RGB" pages) is
read plane by plane along that axis. Any other axis (angle, phase, tile, lifetime,
position, ...) cannot be mapped to a frame and is an error naming the file: it is never
folded into channels.
"""

from __future__ import annotations

import math
from array import array
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from toile.errors import InputError
from toile.formats.base import Source
from toile.formats.tiff.files import closed_on_error, input_path
from toile.formats.tiff.planes import PlaneGrid, PlaneRef, TiffPlanes, is_raw

#: tifffile's axis codes that are a time (or plain sequence) axis.
TIME_AXES = "TIQ"
AXIS_NAMES = {
    "A": "angle",
    "P": "phase",
    "R": "tile",
    "H": "lifetime",
    "E": "lambda",
    "L": "exposure",
    "V": "event",
    "M": "mosaic",
    "S": "sample",
    "X": "width",
    "Y": "height",
}


def series_list(tif: tifffile.TiffFile, path: Path) -> list[Any]:
    """The series tifffile finds in ``tif``; an error when there are none, or when a plain
    file holds pages of different shapes (tifffile's generic series)."""
    try:
        found = list(tif.series)  # tifffile evaluates series lazily
    except Exception as exc:
        raise InputError(path, f"corrupt TIFF ({exc})") from exc
    if not found:
        raise InputError(path, "TIFF file holds no image series")
    kinds = {s.kind for s in found}
    if not (tif.is_shaped or len(found) == 1 or "generic" not in kinds):
        shapes = ", ".join(str(s.keyframe.shape) for s in found[:4])
        raise InputError(path, f"frames of different shapes in one stack: {shapes}")
    return found


def open_series(
    source: Source,
    metadata: dict,
    channel: str | int | None = None,
    *,
    channel_names: list[str] | None = None,
    vendor_metadata: dict | None = None,
    planes: TiffPlanes | None = None,
) -> PlaneGrid:
    """Series ``source.series`` of the TIFF ``source.path`` as a recording.

    ``metadata`` holds the format's recording-level fields; the sizes, ``files`` and
    ``dtype`` are added here."""
    planes = planes if planes is not None else TiffPlanes(2)
    with closed_on_error(planes, source.path):
        return _open(source, metadata, channel, channel_names, vendor_metadata, planes)


def _open(
    source: Source,
    metadata: dict,
    channel: str | int | None,
    channel_names: list[str] | None,
    vendor_metadata: dict | None,
    planes: TiffPlanes,
) -> PlaneGrid:
    path = input_path(source.path)
    tif = planes.tiff(path)
    found = series_list(tif, path)
    if not 0 <= source.series < len(found):
        raise InputError(path, f"has {len(found)} series; series {source.series} does not exist")
    series = found[source.series]
    kf = series.keyframe
    try:
        n_pages = len(series.pages)
        page_axes = kf.axes
    except Exception as exc:
        raise InputError(path, f"corrupt TIFF ({exc})") from exc
    page_ndim = len(kf.shape)
    shape, axes = tuple(series.shape), series.axes
    lead_axes, lead_shape = axes[: len(axes) - page_ndim], shape[: len(shape) - page_ndim]
    if shape[len(shape) - page_ndim :] != tuple(kf.shape):
        lead_axes, lead_shape = "I", (n_pages,)
    n_pages_needed = math.prod(lead_shape)
    # the page's sample axis may be another axis of the series (planar pages of a stack)
    sample_axis = None
    if "S" in page_axes:
        named = axes[len(axes) - page_ndim + page_axes.index("S")]
        if named != "S" and lead_axes != "I":
            sample_axis = named
    dims = list(zip(lead_axes, lead_shape, strict=True))
    if sample_axis is not None:
        dims.append((sample_axis, kf.shape[page_axes.index("S")]))
    for axis, size in dims:
        if axis not in TIME_AXES + "ZC" and size > 1:
            name = AXIS_NAMES.get(axis, "unknown")
            raise InputError(
                path,
                f"the {axes} stack has a {name} axis ({axis}, size {size}) that is neither "
                "time, z nor channel; toile cannot map it to frames",
            )
    letters = [a for a, _ in dims]
    if len([a for a in letters if a == "Z"]) > 1 or len([a for a in letters if a == "C"]) > 1:
        raise InputError(path, f"the {axes} stack has repeated axes")
    size_z = next((n for a, n in dims if a == "Z"), 1)
    size_c = next((n for a, n in dims if a == "C"), 1)
    time_dims = [(i, n) for i, (a, n) in enumerate(dims) if a not in "ZC"]
    size_t = math.prod(n for _, n in time_dims)
    n_lead = len(lead_axes)
    lead_sizes = tuple(lead_shape)

    # Planes are kept as positions, not tifffile page objects (a few kilobytes each): a
    # contiguous uncompressed series is located by arithmetic, any other by the IFD index
    # of each of its pages.
    offset = series.dataoffset
    contiguous: tuple[int, int] | None = None
    ifds: array | None = None
    if (
        offset is not None
        and n_pages
        and sample_axis is None
        and (n_pages_needed != n_pages or is_raw(kf))
    ):
        # tifffile describes a contiguous uncompressed series by its first page (an
        # ImageJ file over 4 GB has only that one); plane k is at offset + k * nbytes
        if n_pages_needed != n_pages and n_pages != 1:
            raise InputError(
                path, f"cannot map the {n_pages} pages of the file to its {n_pages_needed} images"
            )
        contiguous = (offset, kf.nbytes)
    elif n_pages_needed != n_pages:
        raise InputError(
            path, f"cannot map the {n_pages} pages of the file to its {n_pages_needed} images"
        )
    else:
        ifds = array("q")
        try:
            for page in series.pages:  # one at a time: none is kept
                ifds.append(-1 if page is None else page.index)
        except Exception as exc:
            raise InputError(path, f"corrupt TIFF ({exc})") from exc
        present = sum(1 for ifd in ifds if ifd >= 0)
        if not n_pages or present < n_pages:
            raise InputError(
                path, f"the file holds {present} of the {n_pages} images its metadata describes"
            )

    def plane(t: int, z: int, c: int) -> PlaneRef:
        index = [0] * len(dims)
        rest = t
        for i, n in reversed(time_dims):
            index[i] = rest % n
            rest //= n
        for i, (a, _) in enumerate(dims):
            if a == "Z":
                index[i] = z
            elif a == "C":
                index[i] = c
        k = 0
        for i in range(n_lead):
            k = k * lead_sizes[i] + index[i]
        sample = index[n_lead] if sample_axis is not None else None
        if contiguous is not None:
            start, nbytes = contiguous
            return PlaneRef(path, k, offset=start + k * nbytes)
        assert ifds is not None
        return PlaneRef(path, ifds[k], sample=sample)

    meta = {"files": 1, **metadata}
    grid = PlaneGrid(
        source,
        meta,
        size_t,
        size_z,
        size_c,
        plane,
        channel_names or [f"C{c}" for c in range(size_c)],
        channel=channel,
        vendor_metadata=vendor_metadata,
        planes=planes,
    )
    planes.data_end(plane(size_t - 1, size_z - 1, size_c - 1))
    return grid


def resolution_metadata(page: Any, unit_um: float | None) -> dict:
    """scale_x/scale_y (µm) from the X/YResolution tags of tifffile ``page``.

    ``unit_um`` is the length of the unit the file's own metadata gives the resolution
    in (ImageJ's ``unit``). Without it, a resolution is a pixel size only in a
    centimetre, millimetre or micrometre ResolutionUnit, and not at the 72 or 96 dots
    per inch that writers put by default: a resolution in inches, or without a unit, is
    a print resolution, not a pixel size.
    """
    default_dpi = False
    if unit_um is None:
        resolution_unit = page.resolutionunit
        if resolution_unit == tifffile.RESUNIT.CENTIMETER:
            unit_um = 1e4
        elif resolution_unit == tifffile.RESUNIT.MILLIMETER:
            unit_um = 1e3
        elif resolution_unit == tifffile.RESUNIT.MICROMETER:
            unit_um = 1.0
        else:
            return {}
        default_dpi = True
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
        if not (per_unit > 0 and math.isfinite(per_unit)):
            continue
        if default_dpi:
            dpi = per_unit * 25400.0 / unit_um
            if any(abs(dpi - d) < 1e-3 * d for d in (72.0, 96.0)) or per_unit == 1:
                return {}
        out[key] = unit_um / per_unit
    return out


def calibrated_dtype(dtype: np.dtype, offset: float, slope: float) -> np.dtype:
    """The pixel type of ``offset + slope * raw`` for raw pixels of ``dtype``: the signed
    integer type of the same size when ImageJ's signed-16-bit calibration (raw - 32768)
    is meant, else float32 (float64 for 32-bit raw values)."""
    if slope == 1 and dtype == np.uint16 and offset == -32768:
        return np.dtype(np.int16)
    if slope == 1 and dtype == np.uint8 and offset == -128:
        return np.dtype(np.int8)
    return np.dtype(np.float64 if dtype.itemsize >= 4 else np.float32)
