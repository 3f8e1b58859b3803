"""Spatial N x N binning of frames (``--bin N``, YAML ``bin``), before any other transform.

Each output pixel is the mean of an N x N block (``skimage.measure.block_reduce``),
computed in float64 and, for integer pixel types, rounded to the nearest integer
(halves to even) in the source dtype; float frames stay in their dtype. A frame
whose height or width is not a multiple of N loses the last rows or columns at
the bottom/right edge, and the metadata says how many. The pixel size grows by
N: ``scale_x`` and ``scale_y`` are multiplied by N and ``size_x``/``size_y``
become the binned size; the ``binning`` field records the factor, the method,
the source size and the crop.

:class:`BinnedRecording` wraps any :class:`toile.formats.Recording`, so the rest of
the export (the uint8 statistics pass included: with ``--uint8`` the mapping is
computed from, and applied to, the binned frames) sees binned frames only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from toile.formats.base import Recording

#: Metadata key of the binning record.
BINNING_KEY = "binning"


def check_factor(factor: int) -> int:
    """``factor`` if it is a valid bin size (an integer >= 1), else ValueError."""
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"bin must be an integer of at least 1, got {factor!r}")
    return factor


def binned_shape(shape: tuple[int, ...], factor: int) -> tuple[int, ...]:
    """The frame shape after binning: (H // N, W // N), channels unchanged."""
    *lead, height, width = shape
    if height < factor or width < factor:
        raise ValueError(f"a {height} x {width} frame is smaller than the {factor} x {factor} bin")
    return (*lead, height // factor, width // factor)


def bin_frame(image: np.ndarray, factor: int, out: np.ndarray | None = None) -> np.ndarray:
    """The N x N block means of an (H, W) or (C, H, W) frame, in its own dtype.

    Rows and columns beyond the last whole block are dropped.
    """
    from skimage.measure import block_reduce

    if factor == 1:
        result = image if out is not None else image.copy()
    else:
        height, width = image.shape[-2] // factor * factor, image.shape[-1] // factor * factor
        cropped = image[..., :height, :width]
        block = (1,) * (image.ndim - 2) + (factor, factor)
        means = block_reduce(cropped.astype(np.float64, copy=False), block, func=np.mean)
        if np.issubdtype(image.dtype, np.integer):
            means = np.rint(means)
        result = means.astype(image.dtype)
    if out is None:
        return np.ascontiguousarray(result)
    out[...] = result
    return out


def binned_metadata(metadata: dict, shape: tuple[int, ...], factor: int) -> dict:
    """The recording metadata after binning frames of ``shape`` (H, W last) by ``factor``."""
    height, width = shape[-2], shape[-1]
    result = dict(metadata)
    record: dict[str, Any] = {
        "factor": factor,
        "method": "mean",
        "source_size_x": width,
        "source_size_y": height,
    }
    cropped_x, cropped_y = width % factor, height % factor
    if cropped_x or cropped_y:
        record["cropped_x"] = cropped_x  # columns dropped at the right edge
        record["cropped_y"] = cropped_y  # rows dropped at the bottom edge
    result[BINNING_KEY] = record
    for key in ("scale_x", "scale_y"):
        if isinstance(result.get(key), int | float) and not isinstance(result[key], bool):
            result[key] = result[key] * factor
    if "size_x" in result:
        result["size_x"] = width // factor
    if "size_y" in result:
        result["size_y"] = height // factor
    return result


class BinnedRecording(Recording):
    """A recording whose frames are binned N x N; everything else is the wrapped recording's."""

    def __init__(self, recording: Any, factor: int) -> None:
        check_factor(factor)
        self._recording = recording
        self.factor = factor
        self.source = recording.source
        self.n_frames = recording.n_frames
        self.dtype = np.dtype(recording.dtype)
        self.channel_names = recording.channel_names
        self.vendor_metadata = getattr(recording, "vendor_metadata", None)
        source_shape = tuple(recording.frame_shape)
        try:
            self.frame_shape = binned_shape(source_shape, factor)
        except ValueError as error:
            from toile.errors import InputError

            label = getattr(recording.source, "label", None) or "recording"
            raise InputError(label, f"cannot bin by {factor}: {error}") from None
        self.metadata = binned_metadata(recording.metadata, source_shape, factor)
        self._scratch: np.ndarray | None = None

    def read_frame(self, index: int, out: np.ndarray | None = None) -> np.ndarray:
        if self._scratch is None:
            self._scratch = np.empty(self._recording.frame_shape, dtype=self.dtype)
        frame = self._recording.read_frame(index, self._scratch)
        if out is not None:
            self.check_out(out)
        return bin_frame(frame, self.factor, out)

    def frame_metadata(self, index: int) -> dict:
        return self._recording.frame_metadata(index)

    def close(self) -> None:
        self._recording.close()

    def __getattr__(self, name: str) -> Any:
        # anything else a format adds (its own helpers) comes from the wrapped recording
        if name.startswith("__") or name == "_recording":
            raise AttributeError(name)
        return getattr(self._recording, name)


def maybe_binned(recording: Any, factor: int | None) -> Any:
    """``recording`` binned by ``factor``, or as it is for None or 1."""
    if factor is None or factor == 1:
        return recording
    return BinnedRecording(recording, factor)
