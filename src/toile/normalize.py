"""Streamed uint8 normalisation with one mapping per recording and channel.

A per-frame rescale would erase the fluorescence dynamics (calcium transients), so
``--uint8`` maps every frame of a recording with the same per-channel ``low``/``high``:

    out = floor(255 * clip(x - low, 0, high - low) / (high - low))

Two streamed passes: :class:`RangeStats` sees the frames one at a time and
:meth:`RangeStats.finish` returns a :class:`Uint8Mapping`; the writing pass applies
:meth:`Uint8Mapping.apply` to each frame. Memory is constant: at most one histogram
of 65536 counts per channel, never the stack.

Methods (``--uint8-range``):

- ``max`` (default): ``low = 0``, ``high`` = the channel's maximum, so
  ``out = floor(255 * x / max)``; negative values clip to 0.
- ``minmax``: ``low``/``high`` = the channel's minimum/maximum.
- ``percentile:LOW,HIGH``: ``low``/``high`` = those percentiles of all the channel's
  pixel values, with numpy's ``method="lower"`` convention (the value of rank
  ``floor((n - 1) * q / 100)`` in the sorted values). Exact for 8- and 16-bit
  integer pixels (histogram of every possible value). For float and wider integer
  pixels it is approximate: a single-pass histogram of 65536 bins whose range
  doubles as new extremes arrive; the reported value is the lower edge of the bin
  holding the wanted rank (clipped to the exact min/max), within about
  ``2 * (max - min) / 65536`` below the exact value. Percentiles 0 and 100 are exact.

Edge cases: a channel whose ``high <= low`` (constant, or ``max <= 0`` with ``max``)
maps to 0 everywhere, with a warning naming the recording. Float statistics ignore
NaN and +/-inf (one warning per recording); in the output NaN becomes 0, -inf 0 and
+inf 255.

Integer sources of at most 16 bits are mapped through an exact lookup table; 32-bit
integers with exact int64 arithmetic; floats and 64-bit integers in float64, one frame
at a time.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from toile.errors import ConfigError

log = logging.getLogger(__name__)

METHODS = ("max", "minmax", "percentile")
FORMULA = "floor(255 * clip(x - low, 0, high - low) / (high - low))"

_CHUNK = 1 << 16  # elements per np.take call: keeps the index temporaries in cache
_BINS = 1 << 16  # bins of the approximate (float) percentile histogram


@dataclass(frozen=True)
class Uint8Range:
    """A parsed ``--uint8-range``: the method and, for ``percentile``, its two percentiles."""

    method: str
    low_pct: float | None = None
    high_pct: float | None = None


def parse_uint8_range(text: str) -> Uint8Range:
    """Parse ``max``, ``minmax`` or ``percentile:LOW,HIGH`` (0 <= LOW < HIGH <= 100)."""
    raw = text
    text = text.strip().lower()
    usage = "expected 'max', 'minmax' or 'percentile:LOW,HIGH' (e.g. percentile:0.1,99.9)"
    if text in ("max", "minmax"):
        return Uint8Range(text)
    method, sep, args = text.partition(":")
    if method.strip() != "percentile":
        raise ConfigError(f"--uint8-range: unknown value {raw!r}; {usage}")
    parts = [p.strip() for p in args.split(",")] if sep else []
    if len(parts) != 2:
        raise ConfigError(f"--uint8-range: {raw!r} needs two percentiles; {usage}")
    try:
        low, high = float(parts[0]), float(parts[1])
    except ValueError:
        raise ConfigError(
            f"--uint8-range: {raw!r} has a percentile that is not a number; {usage}"
        ) from None
    if not (math.isfinite(low) and math.isfinite(high) and 0 <= low < high <= 100):
        raise ConfigError(
            f"--uint8-range: {raw!r} needs percentiles with 0 <= LOW < HIGH <= 100; {usage}"
        )
    return Uint8Range("percentile", low, high)


def _is_small_int(dtype: np.dtype) -> bool:
    """True for integer/bool pixel types whose every value fits a 65536-entry table."""
    return dtype.kind in "uib" and dtype.itemsize <= 2


def _index_dtype(dtype: np.dtype) -> np.dtype:
    """The unsigned type whose view of ``dtype`` indexes a lookup table (bit pattern order)."""
    return np.dtype(f"u{dtype.itemsize}")


def _table_values(dtype: np.dtype) -> np.ndarray:
    """Every value of ``dtype`` as int64, in the order of its unsigned bit pattern."""
    idx = _index_dtype(dtype)
    pattern = np.arange(1 << (8 * dtype.itemsize), dtype=np.int64).astype(idx)
    if dtype.kind == "b":
        return pattern.astype(np.int64)
    return pattern.view(dtype).astype(np.int64)


def _native(frame: np.ndarray) -> np.ndarray:
    """The frame in native byte order (tifffile may hand out big-endian arrays)."""
    if frame.dtype.isnative:
        return frame
    return frame.astype(frame.dtype.newbyteorder("="))


def _rank(q: float, n: int) -> int:
    """Index in the sorted values of numpy's ``percentile(..., method="lower")``."""
    return int(np.floor((n - 1) * np.true_divide(q, 100)))


class _GrowingHistogram:
    """Single-pass histogram of finite floats over a range that doubles as needed."""

    def __init__(self) -> None:
        self.counts = np.zeros(_BINS, dtype=np.int64)
        self.lo = 0.0
        self.width = 0.0

    def _grow(self, vmin: float, vmax: float) -> None:
        if self.width == 0.0:
            span = vmax - vmin
            self.lo = vmin
            self.width = span / (_BINS - 1) if span > 0 else max(abs(vmin) * 2.0**-30, 1e-300)
            return
        width = self.width
        if vmin >= self.lo and vmax < self.lo + _BINS * width:
            return
        # Re-anchor on the occupied bins and the new extremes, then merge bins by a
        # power of two until everything fits: the range stays under ~2x the data span.
        occupied = np.flatnonzero(self.counts)
        first, last = int(occupied[0]), int(occupied[-1])
        low_needed = min(vmin, self.lo + first * width)
        high_needed = max(vmax, self.lo + (last + 1) * width)
        k = min(first, math.floor((low_needed - self.lo) / width))
        new_lo = self.lo + k * width
        factor = 1
        while new_lo + _BINS * factor * width <= high_needed:
            factor *= 2
        edges = self.lo + np.arange(first, last + 1) * width
        targets = np.floor((edges - new_lo) / (width * factor) + 0.5 / factor).astype(np.int64)
        np.clip(targets, 0, _BINS - 1, out=targets)
        merged = np.zeros(_BINS, dtype=np.int64)
        np.add.at(merged, targets, self.counts[first : last + 1])
        self.counts = merged
        self.lo = new_lo
        self.width = width * factor

    def add(self, values: np.ndarray) -> None:
        """Count finite ``values`` (1-D float64)."""
        if values.size == 0:
            return
        self._grow(float(values.min()), float(values.max()))
        idx = ((values - self.lo) / self.width).astype(np.int64)
        np.clip(idx, 0, _BINS - 1, out=idx)
        self.counts += np.bincount(idx, minlength=_BINS)

    def value_at(self, rank: int) -> float:
        """Lower edge of the bin holding the value of ``rank`` (0-based, ascending)."""
        cum = np.cumsum(self.counts)
        b = int(np.searchsorted(cum, rank, side="right"))
        return self.lo + b * self.width


class RangeStats:
    """Statistics pass: feed every frame of one recording, then :meth:`finish`."""

    def __init__(
        self, method: Uint8Range, dtype: np.dtype, n_channels: int, source: str = ""
    ) -> None:
        if method.method not in METHODS:
            raise ValueError(f"unknown uint8 range method {method.method!r}")
        if n_channels < 1:
            raise ValueError("n_channels must be at least 1")
        self.method = method
        self.dtype = np.dtype(dtype).newbyteorder("=")
        if self.dtype.kind not in "uibf":
            raise ValueError(f"{source}: cannot map pixel type {self.dtype} to uint8")
        self.n_channels = n_channels
        self.source = source
        self._is_float = self.dtype.kind == "f"
        self._exact_hist = method.method == "percentile" and _is_small_int(self.dtype)
        self._mins: list[float] = [math.inf] * n_channels
        self._maxs: list[float] = [-math.inf] * n_channels
        self._count = [0] * n_channels
        self._warned_nonfinite = False
        self._hists: list[np.ndarray] = []
        self._ghists: list[_GrowingHistogram] = []
        if method.method == "percentile":
            if self._exact_hist:
                nbins = 1 << (8 * self.dtype.itemsize)
                self._hists = [np.zeros(nbins, dtype=np.int64) for _ in range(n_channels)]
            else:
                self._ghists = [_GrowingHistogram() for _ in range(n_channels)]

    def _channels(self, frame: np.ndarray) -> list[np.ndarray]:
        if self.n_channels == 1:
            return [frame]
        if frame.ndim < 3 or frame.shape[0] != self.n_channels:
            raise ValueError(
                f"{self.source}: expected a frame of shape ({self.n_channels}, H, W), "
                f"got {frame.shape}"
            )
        return [frame[c] for c in range(self.n_channels)]

    def update(self, frame: np.ndarray) -> None:
        """Account for one frame: (H, W) for one channel, else (C, H, W)."""
        frame = _native(np.asarray(frame))
        if frame.dtype != self.dtype:
            raise ValueError(f"{self.source}: frame dtype {frame.dtype} differs from {self.dtype}")
        need_min = self.method.method != "max" or self._is_float
        for c, plane in enumerate(self._channels(frame)):
            if plane.size == 0:
                continue
            if self._exact_hist:
                self._add_exact(c, plane)
                continue
            vmax = plane.max()
            vmin = plane.min() if need_min or self._ghists else None
            if self._is_float and not (np.isfinite(vmax) and np.isfinite(vmin)):
                self._warn_nonfinite()
                plane = plane[np.isfinite(plane)]
                if plane.size == 0:
                    continue
                vmax, vmin = plane.max(), plane.min()
            self._maxs[c] = max(self._maxs[c], float(vmax))
            if vmin is not None:
                self._mins[c] = min(self._mins[c], float(vmin))
            self._count[c] += plane.size
            if self._ghists:
                self._ghists[c].add(plane.reshape(-1).astype(np.float64))

    def _add_exact(self, c: int, plane: np.ndarray) -> None:
        flat = plane.reshape(-1).view(_index_dtype(self.dtype))
        hist = self._hists[c]
        step = 1 << 18
        for i in range(0, flat.size, step):
            hist += np.bincount(flat[i : i + step], minlength=hist.size)

    def _warn_nonfinite(self) -> None:
        if not self._warned_nonfinite:
            self._warned_nonfinite = True
            log.warning(
                "%s: NaN or infinite pixel values; ignored for the uint8 range, NaN written as 0",
                self.source or "recording",
            )

    def _channel_range(self, c: int) -> tuple[float, float]:
        method = self.method
        if self._exact_hist:
            hist = self._hists[c]
            values = _table_values(self.dtype)
            order = np.argsort(values, kind="stable")
            cum = np.cumsum(hist[order])
            n = int(cum[-1])
            if n == 0:
                return 0.0, 0.0
            sorted_values = values[order]

            def at(q: float) -> float:
                return float(sorted_values[int(np.searchsorted(cum, _rank(q, n), side="right"))])

            assert method.low_pct is not None and method.high_pct is not None
            return at(method.low_pct), at(method.high_pct)
        if self._count[c] == 0:
            return 0.0, 0.0
        vmin, vmax = self._mins[c], self._maxs[c]
        if method.method == "max":
            return 0.0, vmax
        if method.method == "minmax":
            return vmin, vmax
        assert method.low_pct is not None and method.high_pct is not None
        n = self._count[c]
        hist = self._ghists[c]

        def approx(q: float) -> float:
            rank = _rank(q, n)
            if rank >= n - 1:
                return vmax
            return min(max(hist.value_at(rank), vmin), vmax)

        return approx(method.low_pct), approx(method.high_pct)

    def finish(self) -> Uint8Mapping:
        """The fixed mapping for every frame of the recording."""
        lows: list[float] = []
        highs: list[float] = []
        for c in range(self.n_channels):
            low, high = self._channel_range(c)
            if not high > low:
                log.warning(
                    "%s: channel %d has no intensity range (low %g, high %g); "
                    "its uint8 output is all 0",
                    self.source or "recording",
                    c,
                    low,
                    high,
                )
            lows.append(low)
            highs.append(high)
        pct = None
        if self.method.method == "percentile":
            assert self.method.low_pct is not None and self.method.high_pct is not None
            pct = (self.method.low_pct, self.method.high_pct)
        return Uint8Mapping(
            method=self.method.method,
            low=tuple(lows),
            high=tuple(highs),
            source_dtype=str(self.dtype),
            percentiles=pct,
        )


@dataclass(frozen=True)
class Uint8Mapping:
    """The per-channel ``low``/``high`` (source units) applied to every frame of a recording."""

    method: str
    low: tuple[float, ...]
    high: tuple[float, ...]
    source_dtype: str
    percentiles: tuple[float, float] | None = None
    _luts: dict[str, np.ndarray] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    # int32 scratch planes of the arithmetic mapping, one set per thread
    _work: threading.local = field(
        default_factory=threading.local, init=False, repr=False, compare=False
    )

    @property
    def n_channels(self) -> int:
        return len(self.low)

    def _lut(self, dtype: np.dtype) -> np.ndarray:
        """(C, 2**bits) uint8 tables indexed by the unsigned bit pattern of ``dtype``."""
        key = dtype.str
        lut = self._luts.get(key)
        if lut is None:
            values = _table_values(dtype)
            lut = np.stack(
                [_map_int(values, lo, hi) for lo, hi in zip(self.low, self.high, strict=True)]
            )
            self._luts[key] = lut
        return lut

    def apply(self, frame: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Map one frame to uint8 (same shape, C-contiguous); ``out`` may be a reused buffer."""
        frame = _native(np.asarray(frame))
        if (
            out is None
            or out.shape != frame.shape
            or out.dtype != np.uint8
            or not out.flags.c_contiguous
        ):
            out = np.empty(frame.shape, dtype=np.uint8)
        if self.n_channels == 1:
            planes = [(frame, out)]
        else:
            if frame.ndim < 3 or frame.shape[0] != self.n_channels:
                raise ValueError(
                    f"expected a frame of shape ({self.n_channels}, H, W), got {frame.shape}"
                )
            planes = [(frame[c], out[c]) for c in range(self.n_channels)]
        if _is_small_int(frame.dtype):
            lut = None
            for c, (src, dst) in enumerate(planes):
                src = np.ascontiguousarray(src)
                if self._map_in_range(src, c, dst):
                    continue
                if lut is None:
                    lut = self._lut(frame.dtype)
                _take(lut[c], src.view(_index_dtype(frame.dtype)), dst)
        else:
            for c, (src, dst) in enumerate(planes):
                dst[...] = _map_wide(src, self.low[c], self.high[c])
        return out

    def _map_in_range(self, src: np.ndarray, c: int, dst: np.ndarray) -> bool:
        """Map a plane of <= 16-bit integers by arithmetic when it needs no clipping.

        ``floor(255 * (x - low) / (high - low))`` in int32 is exact here and gives the
        lookup table's values; numpy divides by a constant with a multiply and shift, and
        the whole takes about half the time of a table lookup per pixel. Planes with
        values outside ``[low, high]`` (checking costs a min and a max) return False and
        go through the table, which clips.
        """
        low, high = self.low[c], self.high[c]
        if src.dtype.kind not in "ui" or not (high > low and _whole(low) and _whole(high)):
            return False
        lo, hi = int(low), int(high)
        info = np.iinfo(src.dtype)
        if (
            src.size == 0
            or (hi < info.max and src.max() > hi)
            or (lo > info.min and src.min() < lo)
        ):
            return False
        buffers = self._work.__dict__.setdefault("buffers", {})
        work = buffers.get(src.shape)
        if work is None:
            work = buffers[src.shape] = np.empty(src.shape, dtype=np.int32)
        if lo == 0:
            np.multiply(src, 255, out=work, dtype=np.int32)
        else:
            np.subtract(src, lo, out=work, dtype=np.int32)
            work *= 255
        work //= hi - lo
        np.copyto(dst, work, casting="unsafe")
        return True

    def metadata(self) -> dict[str, Any]:
        """JSON-ready description, stored under each frame's ``normalization`` key."""
        meta: dict[str, Any] = {
            "method": self.method,
            "low": [float(v) for v in self.low],
            "high": [float(v) for v in self.high],
            "source_dtype": self.source_dtype,
        }
        if self.percentiles is not None:
            meta["percentiles"] = [float(self.percentiles[0]), float(self.percentiles[1])]
        meta["formula"] = FORMULA
        return meta


def _whole(value: float) -> bool:
    return math.isfinite(value) and float(value).is_integer()


def _take(lut: np.ndarray, src: np.ndarray, dst: np.ndarray) -> None:
    """``dst[...] = lut[src]`` in cache-sized chunks (about twice as fast as one call)."""
    flat = src.reshape(-1)
    target = dst.reshape(-1)
    for i in range(0, flat.size, _CHUNK):
        np.take(lut, flat[i : i + _CHUNK], out=target[i : i + _CHUNK])


def _map_int(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Exact integer mapping of int64 ``values`` (low/high are whole numbers here)."""
    if not high > low:
        return np.zeros(values.shape, dtype=np.uint8)
    if not (float(low).is_integer() and float(high).is_integer()):
        return _map_wide(values, low, high)
    lo, hi = int(low), int(high)
    span = hi - lo
    return ((np.clip(values, lo, hi) - lo) * 255 // span).astype(np.uint8)


def _map_wide(src: np.ndarray, low: float, high: float) -> np.ndarray:
    """Mapping for floats and >16-bit integers, one plane at a time."""
    if not high > low:
        return np.zeros(src.shape, dtype=np.uint8)
    whole = float(low).is_integer() and float(high).is_integer()
    if src.dtype.kind in "iub" and src.dtype.itemsize <= 4 and whole:
        lo, hi = int(low), int(high)
        x = src.astype(np.int64)
        np.clip(x, lo, hi, out=x)
        x -= lo
        x *= 255
        x //= hi - lo
        return x.astype(np.uint8)
    span = high - low
    x = src.astype(np.float64)
    x -= low
    np.clip(x, 0.0, span, out=x)
    np.nan_to_num(x, copy=False, nan=0.0)
    x *= 255.0
    x /= span
    np.floor(x, out=x)
    return x.astype(np.uint8)


def to_raw(values_uint8: np.ndarray, normalization: dict, channel: int = 0) -> np.ndarray:
    """Approximate source intensities of uint8 values: the lower edge of each grey level's bin.

    ``normalization`` is a frame's ``normalization`` metadata; the result is float64 and
    within ``(high - low) / 255`` below the source value for sources in ``[low, high]``.
    """
    low = float(normalization["low"][channel])
    high = float(normalization["high"][channel])
    g = np.asarray(values_uint8, dtype=np.float64)
    if not high > low:
        return np.full(g.shape, low)
    return low + g * (high - low) / 255.0
