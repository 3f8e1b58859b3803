"""ImageJ hyperstacks: a TIFF whose first ImageDescription starts with ``ImageJ=``.

ImageJ's header gives the hyperstack's frames, slices and channels (read by tifffile
as the series axes ``TZCYX``), the pixel size in its ``unit`` (``scale_x``/``scale_y``
from the resolution tags, ``spacing`` as ``scale_z``), ``finterval`` in ``tunit`` as
``time_increment``, slice ``Labels`` as channel names, and a calibration function
(``cf``, ``c0``, ``c1``, ``vunit``). ImageJ saves signed 16-bit images as unsigned
values with a straight-line calibration ``c0=-32768``: the calibration is recorded in the
``calibration`` field, and applied to the pixels only when asked (``calibrated``):
frames then have the calibrated pixel type (int16 for that case, float32 otherwise).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from toile.errors import InputError
from toile.formats.base import Candidates, Format, Recording, Source
from toile.formats.fields import FORMAT_IMAGEJ
from toile.formats.tiff.files import input_path, tifffile_messages
from toile.formats.tiff.ome_xml import LENGTH_UNITS_UM, TIME_UNITS_S
from toile.formats.tiff.planes import PlaneGrid, TiffPlanes
from toile.formats.tiff.stack import calibrated_dtype, open_series, resolution_metadata

logger = logging.getLogger(__name__)

#: ImageJ's calibration functions (``ij.measure.Calibration``), by their ``cf`` code.
CALIBRATION_FUNCTIONS = {
    0: "straight line",
    1: "poly2",
    2: "exponential",
    3: "poly3",
    4: "poly4",
    5: "power",
    6: "log",
    7: "rodbard",
    8: "gamma variate",
    9: "log2",
    10: "rodbard2",
    11: "exp with offset",
    12: "gaussian",
    13: "exp recovery",
    20: "uncalibrated OD",
    21: "custom",
}


def _unit(text: object) -> str | None:
    if not isinstance(text, str):
        return None
    return text.replace("\\u00B5", "µ").replace("\\u00b5", "µ").strip()


def imagej_fields(ij: dict, path: Path) -> tuple[dict, float | None]:
    """The recording-level fields of ImageJ's metadata, and the length of its unit in µm."""
    out: dict = {}
    unit = _unit(ij.get("unit"))
    factor = None
    if unit is not None:
        factor = LENGTH_UNITS_UM.get(unit)
        if factor is None and unit.lower() not in ("pixel", "pixels", ""):
            logger.warning("%s: ImageJ unit %r cannot be converted; scales left out", path, unit)
    spacing = ij.get("spacing")
    if factor is not None and isinstance(spacing, int | float):
        out["scale_z"] = float(spacing) * factor
    finterval = ij.get("finterval")
    if isinstance(finterval, int | float) and finterval > 0:
        tunit = _unit(ij.get("tunit")) or "s"
        tfactor = TIME_UNITS_S.get(tunit)
        if tfactor is None:
            logger.warning("%s: ImageJ time unit %r cannot be converted", path, tunit)
        else:
            out["time_increment"] = float(finterval) * tfactor
    calibration = _calibration(ij)
    if calibration is not None:
        out["calibration"] = calibration
    return out, factor


def _calibration(ij: dict) -> dict | None:
    """ImageJ's calibration function, or None when there is none."""
    cf = ij.get("cf")
    if not isinstance(cf, int | float):
        return None
    coefficients = []
    for i in range(8):
        value = ij.get(f"c{i}")
        if not isinstance(value, int | float):
            break
        coefficients.append(float(value))
    out: dict = {
        "function": CALIBRATION_FUNCTIONS.get(int(cf), f"cf={int(cf)}"),
        "coefficients": coefficients,
        "applied": False,
    }
    unit = _unit(ij.get("vunit"))
    if unit:
        out["unit"] = unit
    return out


def channel_labels(ij: dict, size_c: int, planes_per_channel: int) -> list[str] | None:
    """Channel names from ImageJ's slice ``Labels``: the labels of the first (t, z)
    when every (t, z) repeats them, or when there is only one (t, z)."""
    labels = ij.get("Labels")
    if not isinstance(labels, list) or len(labels) < size_c or size_c < 1:
        return None
    names = [str(label).strip() for label in labels[:size_c]]
    if not all(names):
        return None
    if planes_per_channel > 1:
        if len(labels) != size_c * planes_per_channel:
            return None
        for k in range(planes_per_channel):
            if [str(x).strip() for x in labels[k * size_c : (k + 1) * size_c]] != names:
                return None
    return names


class CalibratedRecording(Recording):
    """A recording whose pixels are ImageJ's straight-line calibration of the raw ones:
    ``c0 + c1 * raw``, in the pixel type of :func:`calibrated_dtype`."""

    def __init__(self, raw: PlaneGrid, offset: float, slope: float) -> None:
        self._raw = raw
        self.source = raw.source
        self.n_frames = raw.n_frames
        self.frame_shape = raw.frame_shape
        self.channel_names = raw.channel_names
        self.vendor_metadata = raw.vendor_metadata
        self.dtype = calibrated_dtype(raw.dtype, offset, slope)
        self._offset, self._slope = offset, slope
        self._buffer = np.empty(raw.frame_shape, raw.dtype)
        self.metadata = dict(raw.metadata)
        self.metadata["dtype"] = self.dtype.name
        self.metadata["calibration"] = {**self.metadata["calibration"], "applied": True}

    def read_frame(self, index: int, out: np.ndarray | None = None) -> np.ndarray:
        out = self.check_out(out)
        raw = self._raw.read_frame(index, self._buffer)
        if self.dtype.kind == "i" and self.dtype.itemsize == raw.dtype.itemsize:
            # raw - 2**(bits - 1) is the raw value with its top bit flipped, read as signed
            np.bitwise_xor(raw, 1 << (8 * raw.dtype.itemsize - 1), out=raw)
            out[...] = raw.view(self.dtype)
        else:
            np.multiply(raw, self._slope, out=out, casting="unsafe")
            out += self._offset
        return out

    def frame_metadata(self, index: int) -> dict:
        return self._raw.frame_metadata(index)

    def close(self) -> None:
        self._raw.close()


def open_imagej(
    source: Source, channel: str | int | None = None, calibrated: bool = False
) -> Recording:
    """Open the ImageJ hyperstack ``source``, its calibration applied with ``calibrated``."""
    path = input_path(source.path)
    planes = TiffPlanes(2)
    try:
        with tifffile_messages() as messages:
            tif = planes.tiff(path)
            ij = tif.imagej_metadata or {}
            fields, unit_um = imagej_fields(ij, path)
            fields.update(resolution_metadata(tif.pages.first, unit_um))
            fields.update(scale_unit="um", t_unit="s", format=FORMAT_IMAGEJ)
            size_c = int(ij.get("channels", 1) or 1)
            per_channel = int(ij.get("images", size_c) or size_c) // max(size_c, 1)
            names = channel_labels(ij, size_c, per_channel)
            if names is not None:
                fields["channels"] = [{"name": name} for name in names]
            recording = open_series(source, fields, channel, channel_names=names, planes=planes)
    except BaseException:
        planes.close()
        raise
    if messages:
        logger.warning(
            "%s: %s; reading the %d frame(s) of %s the file holds",
            path,
            "; ".join(dict.fromkeys(messages)),
            recording.n_frames,
            "x".join(str(n) for n in recording.frame_shape),
        )
    calibration = recording.metadata.get("calibration")
    if not calibrated or calibration is None:
        return recording
    coefficients = calibration["coefficients"]
    if calibration["function"] != "straight line" or len(coefficients) < 2:
        recording.close()
        raise InputError(
            path,
            f"ImageJ calibration {calibration['function']!r} cannot be applied "
            "(only a straight line can); export without calibrated to keep the raw values",
        )
    return CalibratedRecording(recording, coefficients[0], coefficients[1])


class ImageJFormat(Format):
    name = FORMAT_IMAGEJ

    def claim(self, candidates: Candidates) -> list[Source]:
        sources = []
        for path in candidates:
            if not path.name.lower().endswith((".tif", ".tiff")):
                continue
            description = candidates.description(path)
            if description is not None and description.startswith("ImageJ="):
                sources.append(Source(self.name, path, (path,), name=path.name))
        candidates.claim(s.path for s in sources)
        return sources

    def open(self, source: Source, channel: str | int | None = None) -> Recording:
        return open_imagej(source, channel, calibrated=bool(source.detail.get("calibrated")))
