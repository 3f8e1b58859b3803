"""Synthetic two-photon astrocyte calcium-imaging movies, streamed frame by frame.

Used for ``toile export test-frames``, for tests and for benchmarks: realistic enough that
compression ratios, value ranges and per-frame metadata behave like real recordings, yet
fully deterministic and free of any data file.

The model, in detector units (ADU, the scale of a 16-bit recording):

* a static background: smooth multi-scale texture (neuropil), uneven illumination and a
  few dark blood vessels, about 200-800 ADU;
* ``n_cells`` astrocytes: a soma with a dim nucleus, four to seven branching processes and
  a faint halo of fine processes; each has a resting fluorescence and two kinds of calcium
  transients with random onsets, a fast rise and an exponential decay: cell-wide events and
  smaller, faster events confined to one process (microdomains);
* slow photobleaching towards a floor;
* shot noise (variance proportional to the signal, with a small read noise), from a
  Gaussian approximation of the Poisson law, which is accurate at these photon counts and
  several times faster to draw;
* rounding and clipping to the output dtype (``uint8`` is the 16-bit scale divided by 16;
  ``float32`` keeps the 16-bit scale unrounded).

Channel 0 is the calcium indicator ("GCaMP"); further channels are a static structural
marker of the same cells ("tdTomato") with their own noise.

Only the background, the per-cell masks (cropped to each cell) and a few numbers per
transient process are kept in memory; the time courses are advanced one frame at a time,
so memory does not depend on the number of frames. All randomness comes from
``numpy.random.Generator(PCG64(...))`` streams seeded from ``MovieSpec.seed``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from toile.errors import ConfigError

#: Output dtypes the generator can produce.
DTYPES = ("uint16", "uint8", "float32")

#: Names of the channels, in order; channels beyond these are called ``channel{i}``.
CHANNEL_NAMES = ("GCaMP", "tdTomato")

_DTYPE_MAX = {"uint16": 65535.0, "uint8": 255.0, "float32": 65535.0}
_DTYPE_SCALE = {"uint16": 1.0, "uint8": 1.0 / 16.0, "float32": 1.0}

_GAIN = 2.0  # ADU per detected photon: the shot-noise variance is _GAIN * signal
_READ_NOISE = 4.0  # ADU
_BLEACH_FLOOR = 0.75  # fraction of the initial brightness left after long imaging
_BLEACH_TAU = (400.0, 2000.0)  # seconds: calcium indicator, structural marker
_TERRITORY_UM = 25.0  # radius of an astrocyte's territory
_BURN_IN_S = 90.0  # transients are simulated this long before the first frame
_BURN_IN_MAX_STEPS = 400

# Transient processes: (events per second, dF/F range, rise time range s, decay time range s).
_CELL_EVENTS = (1 / 30, (1.5, 5.0), (0.3, 0.8), (3.0, 8.0))
_DOMAIN_EVENTS = (1 / 15, (1.0, 3.5), (0.15, 0.4), (1.0, 3.0))

# The noise sums four uniform bytes, two added and two subtracted: standard deviation below.
_BYTE_SUM_STD = math.sqrt(4 * (256**2 - 1) / 12)


@dataclass(frozen=True)
class MovieSpec:
    """Size, timing, dtype and randomness of a synthetic recording."""

    frames: int = 300
    height: int = 256
    width: int = 256
    channels: int = 1
    dtype: str = "uint16"
    seed: int = 0
    n_cells: int = 6
    time_increment: float = 0.5  # seconds between frames
    pixel_size: float = 0.8  # µm

    def __post_init__(self) -> None:
        problems = []
        if self.frames < 1:
            problems.append(f"frames must be at least 1, got {self.frames}")
        if self.height < 8 or self.width < 8:
            problems.append(f"height and width must be at least 8, got {self.height}x{self.width}")
        if self.channels < 1:
            problems.append(f"channels must be at least 1, got {self.channels}")
        if self.dtype not in DTYPES:
            problems.append(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.seed < 0:
            problems.append(f"seed must be non-negative, got {self.seed}")
        if self.n_cells < 0:
            problems.append(f"n_cells must be non-negative, got {self.n_cells}")
        if not self.time_increment > 0:
            problems.append(f"time_increment must be positive, got {self.time_increment}")
        if not self.pixel_size > 0:
            problems.append(f"pixel_size must be positive, got {self.pixel_size}")
        if problems:
            raise ConfigError("synthetic movie: " + "; ".join(problems))


def generate_frames(spec: MovieSpec) -> Iterator[np.ndarray]:
    """Yield ``spec.frames`` new C-contiguous frames, (H, W) or (C, H, W), of ``spec.dtype``.

    Nothing is computed before the first frame is requested; the same spec always gives
    the same bytes.
    """
    movie = _Movie(spec)
    for index in range(spec.frames):
        yield movie.frame(index)


def movie_metadata(spec: MovieSpec) -> dict:
    """Movie-level metadata, with the same keys as the metadata of a real recording."""
    name = f"synthetic-seed{spec.seed}"
    return {
        "source": "synthetic",
        "_source_filename": name,
        "image_name": name,
        "scale_x": spec.pixel_size,
        "scale_y": spec.pixel_size,
        "scale_z": None,
        "scale_unit": "um",
        "t_unit": "s",
        "time_increment": spec.time_increment,
        "size_x": spec.width,
        "size_y": spec.height,
        "size_z": 1,
        "size_c": spec.channels,
        "size_t": spec.frames,
        "dtype": spec.dtype,
        "channels": [{"name": _channel_name(c)} for c in range(spec.channels)],
        "n_frames": spec.frames,
        "format": "synthetic",
        "synthetic": {"seed": spec.seed, "n_cells": spec.n_cells},
    }


def frame_metadata(spec: MovieSpec, index: int) -> dict:
    """Per-frame metadata of frame ``index`` (time in seconds from the first frame)."""
    if not 0 <= index < spec.frames:
        raise IndexError(f"frame index {index} out of range for {spec.frames} frames")
    return {"index": index, "t_index": index, "z_index": 0, "t": index * spec.time_increment}


def _channel_name(channel: int) -> str:
    return CHANNEL_NAMES[channel] if channel < len(CHANNEL_NAMES) else f"channel{channel}"


@dataclass(frozen=True)
class _Patch:
    """A cell or process mask, cropped to its bounding box in the frame."""

    rows: slice
    cols: slice
    mask: np.ndarray  # float32, 1.0 at the brightest part of the soma


class _Transients:
    """Independent calcium-transient processes, advanced one frame at a time.

    Each process is the sum of double-exponential responses (fast rise, slower decay) to
    events arriving at random; the two exponentials are two state variables, so a step
    costs a few vector operations whatever the length of the movie.
    """

    def __init__(self, rng: np.random.Generator, kinds: list[tuple], dt: float) -> None:
        self.rng = rng
        rates, lows, highs, rise, decay = [], [], [], [], []
        for rate, (amp_lo, amp_hi), rise_range, decay_range in kinds:
            rates.append(rate)
            lows.append(amp_lo)
            highs.append(amp_hi)
            rise.append(rng.uniform(*rise_range))
            decay.append(rng.uniform(*decay_range))
        tau_r, tau_d = np.array(rise), np.array(decay)
        self.p_event = -np.expm1(-np.array(rates) * dt)
        self.amp_lo = np.array(lows)
        self.amp_span = np.array(highs) - self.amp_lo
        self.fall_rise = np.exp(-dt / tau_r)
        self.fall_decay = np.exp(-dt / tau_d)
        t_peak = np.log(tau_d / tau_r) * tau_r * tau_d / (tau_d - tau_r)
        self.peak = np.exp(-t_peak / tau_d) - np.exp(-t_peak / tau_r)
        self.rise_state = np.zeros(len(kinds))
        self.decay_state = np.zeros(len(kinds))

    def step(self) -> np.ndarray:
        """Advance one frame; return each process's dF/F at that frame."""
        onset = self.rng.random(self.p_event.size) < self.p_event
        size = self.rng.random(self.p_event.size)
        kick = onset * (self.amp_lo + self.amp_span * size * size) / self.peak
        self.rise_state *= self.fall_rise
        self.decay_state *= self.fall_decay
        self.rise_state += kick
        self.decay_state += kick
        return self.decay_state - self.rise_state


class _Movie:
    """The precomputed, frame-independent parts of a synthetic movie, and the frame loop."""

    def __init__(self, spec: MovieSpec) -> None:
        self.spec = spec
        streams = np.random.SeedSequence(spec.seed).spawn(3)
        structure_rng, events_rng, noise_rng = (
            np.random.Generator(np.random.PCG64(s)) for s in streams
        )
        self.noise = noise_rng.bit_generator
        shape = (spec.height, spec.width)

        self.background = _background(structure_rng, shape, spec.pixel_size)
        cells = _place_cells(structure_rng, shape, spec.n_cells, spec.pixel_size)

        # One transient process per cell (whole cell) and one per primary process.
        self.patches: list[_Patch] = []
        self.baseline: list[float] = []  # resting ADU at mask 1, or 0 for microdomains
        self.gain: list[float] = []  # ADU per unit dF/F at mask 1
        kinds = []
        structural = np.zeros(shape, np.float32)
        for whole, processes in cells:
            resting = float(structure_rng.uniform(180.0, 380.0))
            self.patches.append(whole)
            self.baseline.append(resting)
            self.gain.append(resting)
            kinds.append(_CELL_EVENTS)
            structural[whole.rows, whole.cols] += whole.mask * structure_rng.uniform(500, 900)
            for process in processes:
                self.patches.append(process)
                self.baseline.append(0.0)
                self.gain.append(resting)
                kinds.append(_DOMAIN_EVENTS)
        self.transients = _Transients(events_rng, kinds, spec.time_increment)
        for _ in range(min(_BURN_IN_MAX_STEPS, round(_BURN_IN_S / spec.time_increment))):
            self.transients.step()

        self.structural = None
        if spec.channels > 1:
            self.structural = (0.35 * self.background + structural).astype(np.float32)

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index``; the transients advance one step per call, so call in order."""
        spec = self.spec
        dff = self.transients.step()
        t = index * spec.time_increment
        out = np.empty((spec.channels, spec.height, spec.width), dtype=spec.dtype)

        clean = self.background.copy()
        for patch, base, gain, value in zip(
            self.patches, self.baseline, self.gain, dff, strict=True
        ):
            level = base + gain * value
            if level > 0.05:
                clean[patch.rows, patch.cols] += patch.mask * np.float32(level)
        clean *= np.float32(_bleaching(t, _BLEACH_TAU[0]))
        self._finish(clean, out[0])

        if self.structural is not None:
            marker = self.structural * np.float32(_bleaching(t, _BLEACH_TAU[1]))
            for channel in range(1, spec.channels):
                self._finish(
                    marker if channel == spec.channels - 1 else marker.copy(), out[channel]
                )
        return out[0] if spec.channels == 1 else out

    def _finish(self, clean: np.ndarray, out: np.ndarray) -> None:
        """Add shot and read noise to ``clean`` (in place), then scale, round and clip into ``out``."""
        dtype = self.spec.dtype
        scale = _DTYPE_SCALE[dtype]
        clean += _noise(self.noise, clean)
        if scale != 1.0:
            clean *= np.float32(scale)
        if dtype != "float32":
            clean += np.float32(0.5)  # the cast below truncates: this rounds
        np.clip(clean, 0.0, _DTYPE_MAX[dtype], out=clean)
        out[...] = clean


def _noise(bits: np.random.BitGenerator, clean: np.ndarray) -> np.ndarray:
    """Zero-mean noise with variance ``_GAIN * clean + _READ_NOISE**2``.

    Each value is a sum of four random bytes (two added, two subtracted), which is close to
    Gaussian within +-3.4 standard deviations, scaled by the local standard deviation. Drawing
    raw bits is several times faster than drawing normal or Poisson variates, and the bytes
    are taken in little-endian order so every machine gets the same values.
    """
    n = clean.size
    raw = bits.random_raw((n + 1) // 2).astype("<u8", copy=False)
    quads = raw.view(np.uint8)[: 4 * n].reshape(4, n)
    total = np.add(quads[0], quads[1], dtype=np.int16)
    total -= quads[2]
    total -= quads[3]
    std = clean * np.float32(_GAIN / _BYTE_SUM_STD**2)
    std += np.float32(_READ_NOISE**2 / _BYTE_SUM_STD**2)
    np.sqrt(std, out=std)
    std *= total.reshape(clean.shape)
    return std


def _bleaching(t: float, tau: float) -> float:
    return _BLEACH_FLOOR + (1.0 - _BLEACH_FLOOR) * math.exp(-t / tau)


def _blur(image: np.ndarray, sigma: float, periodic: bool = False) -> np.ndarray:
    """Gaussian blur by FFT; zero padding unless ``periodic`` (for seamless textures)."""
    pad = 0 if periodic else math.ceil(4 * sigma)
    padded = np.pad(image, pad) if pad else image
    fy = np.fft.fftfreq(padded.shape[0])[:, None]
    fx = np.fft.rfftfreq(padded.shape[1])[None, :]
    spectrum = np.fft.rfft2(padded)
    spectrum *= np.exp(-2.0 * math.pi**2 * sigma**2 * (fy**2 + fx**2))
    blurred = np.fft.irfft2(spectrum, s=padded.shape)
    return blurred[pad : pad + image.shape[0], pad : pad + image.shape[1]] if pad else blurred


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Periodic Gaussian-correlated noise with zero mean and unit standard deviation."""
    field = _blur(rng.standard_normal(shape), sigma, periodic=True)
    field -= field.mean()
    return field / max(float(field.std()), 1e-12)


def _walk(
    rng: np.random.Generator, start: np.ndarray, heading: float, length: float, wiggle: float
) -> np.ndarray:
    """Points every half pixel along a smooth random path: (n, 2) array of (row, col)."""
    steps = max(2, round(length / 0.5))
    angles = heading + np.cumsum(rng.normal(0.0, wiggle, steps))
    moves = 0.5 * np.stack([np.sin(angles), np.cos(angles)], axis=1)
    return start + np.cumsum(moves, axis=0)


def _deposit(canvas: np.ndarray, points: np.ndarray, weights: np.ndarray) -> None:
    """Add ``weights`` at the pixels nearest to ``points``, ignoring points off the canvas."""
    rows = np.rint(points[:, 0]).astype(np.intp)
    cols = np.rint(points[:, 1]).astype(np.intp)
    inside = (rows >= 0) & (rows < canvas.shape[0]) & (cols >= 0) & (cols < canvas.shape[1])
    np.add.at(canvas, (rows[inside], cols[inside]), weights[inside])


def _background(rng: np.random.Generator, shape: tuple[int, int], pixel_size: float) -> np.ndarray:
    """Static background in ADU: neuropil texture, uneven illumination, dark vessels."""
    height, width = shape
    texture = (
        430.0
        + 70.0 * _smooth_noise(rng, shape, 0.25 * min(shape))
        + 45.0 * _smooth_noise(rng, shape, max(1.0, 4.0 / pixel_size))
        + 18.0 * _smooth_noise(rng, shape, 0.8)
    )
    rows = (np.arange(height) - rng.uniform(0.3, 0.7) * height)[:, None] / height
    cols = (np.arange(width) - rng.uniform(0.3, 0.7) * width)[None, :] / width
    texture *= 1.0 - 0.6 * (rows**2 + cols**2)

    vessels = np.zeros(shape)
    for _ in range(rng.integers(1, 3)):
        if rng.random() < 0.5:
            start = np.array([rng.uniform(0, height), 0.0])
        else:
            start = np.array([0.0, rng.uniform(0, width)])
        heading = math.atan2(height / 2 - start[0], width / 2 - start[1]) + rng.uniform(-0.6, 0.6)
        path = _walk(rng, start, heading, 1.5 * (height + width), 0.02)
        _deposit(vessels, path, np.full(len(path), 0.5))
    radius = max(1.0, rng.uniform(4.0, 7.0) / pixel_size)
    vessels = _blur(vessels, radius) * (math.sqrt(2 * math.pi) * radius)
    texture *= 1.0 - 0.55 * np.clip(vessels, 0.0, 1.0)
    return np.clip(texture, 150.0, None).astype(np.float32)


def _place_cells(
    rng: np.random.Generator, shape: tuple[int, int], n_cells: int, pixel_size: float
) -> list[tuple[_Patch, list[_Patch]]]:
    """Spread ``n_cells`` astrocytes over the frame; return each cell's mask and process masks."""
    height, width = shape
    territory = min(_TERRITORY_UM / pixel_size, min(shape) / (2.0 * math.sqrt(max(n_cells, 1))))
    territory = max(territory, 3.0)
    centres: list[np.ndarray] = []
    for _ in range(n_cells):
        candidates = rng.uniform(0.08, 0.92, (32, 2)) * (height, width)
        if centres:
            taken = np.array(centres)
            distance = np.linalg.norm(candidates[:, None, :] - taken[None, :, :], axis=2).min(1)
            centres.append(candidates[int(np.argmax(distance))])
        else:
            centres.append(candidates[0])
    cells = []
    for centre in centres:
        whole, processes = _render_cell(rng, territory * rng.uniform(0.8, 1.15), pixel_size)
        half = whole.shape[0] // 2
        top, left = round(centre[0]) - half, round(centre[1]) - half
        placed = _clip_patch(whole, top, left, shape)
        if placed is None:
            continue
        parts = (_clip_patch(mask, top, left, shape) for mask in processes)
        cells.append((placed, [part for part in parts if part is not None]))
    return cells


def _render_cell(
    rng: np.random.Generator, radius: float, pixel_size: float
) -> tuple[np.ndarray, list[np.ndarray]]:
    """One astrocyte on a square canvas centred on its soma: whole-cell mask, process masks."""
    blur = min(max(1.1 / pixel_size, 0.6), 3.0)
    half = math.ceil(1.15 * radius + 3 * blur + 2)
    size = 2 * half + 1
    rows, cols = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)

    soma_a = max(radius * rng.uniform(0.16, 0.22), 1.5)
    soma_b = soma_a * rng.uniform(0.7, 1.0)
    tilt = rng.uniform(0, math.pi)
    along = cols * math.cos(tilt) + rows * math.sin(tilt)
    across = -cols * math.sin(tilt) + rows * math.cos(tilt)
    d = np.sqrt((along / soma_a) ** 2 + (across / soma_b) ** 2)
    soma = np.clip((1.0 - d) * soma_a / 1.5 + 0.5, 0.0, 1.0)
    soma *= 1.0 - 0.35 * np.clip((0.55 - d) / 0.15, 0.0, 1.0)  # dimmer nucleus

    centre = np.array([half, half], dtype=np.float64)
    n_primary = int(rng.integers(4, 8))
    processes = []
    for i in range(n_primary):
        heading = 2 * math.pi * (i + rng.uniform(-0.3, 0.3)) / n_primary
        start = centre + 0.8 * soma_b * np.array([math.sin(heading), math.cos(heading)])
        length = radius * rng.uniform(0.6, 1.0)
        trunk = _walk(rng, start, heading, length, 0.08)
        strength = np.linspace(rng.uniform(0.6, 0.9), 0.15, len(trunk))
        canvas = np.zeros((size, size))
        _deposit(canvas, trunk, 0.5 * strength)
        for _ in range(rng.integers(1, 4)):
            k = int(rng.uniform(0.25, 0.8) * len(trunk))
            side = rng.choice([-1.0, 1.0])
            direction = trunk[k] - trunk[k - 1]
            angle = math.atan2(direction[0], direction[1]) + side * rng.uniform(0.4, 1.1)
            branch = _walk(
                rng, trunk[k], angle, (len(trunk) - k) * 0.5 * rng.uniform(0.3, 0.7), 0.1
            )
            _deposit(canvas, branch, 0.5 * np.linspace(0.7 * strength[k], 0.1, len(branch)))
        processes.append(_blur(canvas, blur) * (math.sqrt(2 * math.pi) * blur))

    radial = np.hypot(rows, cols) / radius
    halo = np.clip(_blur(rng.standard_normal((size, size)), 1.2), 0.0, None)
    halo *= 0.35 / max(float(halo.max()), 1e-12) * np.exp(-(radial**4)) * (d > 1.0)
    whole = np.clip(soma + sum(processes) + halo, 0.0, 1.2)
    return whole.astype(np.float32), [np.clip(p, 0.0, 1.0).astype(np.float32) for p in processes]


def _clip_patch(mask: np.ndarray, top: int, left: int, shape: tuple[int, int]) -> _Patch | None:
    """Place ``mask`` with its corner at (top, left), keep only its visible, non-faint part."""
    visible = np.zeros(mask.shape, dtype=bool)
    r0, c0 = max(0, -top), max(0, -left)
    r1 = min(mask.shape[0], shape[0] - top)
    c1 = min(mask.shape[1], shape[1] - left)
    if r0 >= r1 or c0 >= c1:
        return None
    visible[r0:r1, c0:c1] = mask[r0:r1, c0:c1] > 0.02
    if not visible.any():
        return None
    used_rows = np.flatnonzero(visible.any(axis=1))
    used_cols = np.flatnonzero(visible.any(axis=0))
    r0, r1 = int(used_rows[0]), int(used_rows[-1]) + 1
    c0, c1 = int(used_cols[0]), int(used_cols[-1]) + 1
    crop = np.where(visible[r0:r1, c0:c1], mask[r0:r1, c0:c1], 0.0).astype(np.float32)
    return _Patch(slice(top + r0, top + r1), slice(left + c0, left + c1), crop)
