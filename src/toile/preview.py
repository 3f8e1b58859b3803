"""``toile preview``: one picture of a dataset (or of recordings before export).

For each recording (the first few, or the ones asked for) and each channel, one
row: the first frame, the mean and the max projection, shown with robust
contrast (the 0.5th to 99.5th percentile of the pixels, not min-max, so a few
hot pixels do not wash the picture out), and the mean intensity over time, F,
with dF/F0 on a second axis (F0, the baseline, is the 10th percentile of F).
Each row is titled with the recording's name, shape, dtype, frame rate and
pixel size; a header gives the dataset's shards, frames and bytes.

Large recordings are sampled: at most ``max_frames`` frames per recording,
evenly spaced from the first to the last (the figure says how many), so a
1 GB dataset previews in seconds: uncompressed shards are read by seeking over
the members that are not needed.

matplotlib is imported only when a figure is drawn (:func:`render`); the
arrays (:func:`summarise`) need numpy and scikit-image only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toile.errors import InputError, ToileError

log = logging.getLogger(__name__)

#: Frames read per recording at most.
DEFAULT_MAX_FRAMES = 200
#: Recordings shown when none is asked for.
DEFAULT_RECORDINGS = 4
#: Percentiles of the display range.
CONTRAST_PERCENTILES = (0.5, 99.5)
#: Percentile of F taken as the baseline F0.
BASELINE_PERCENTILE = 10.0
#: Trace colours by channel: green for the first (a GCaMP-like indicator), then magenta, blue.
TRACE_COLORS = ("tab:green", "tab:purple", "tab:blue", "tab:orange")
#: Longest side of an image panel, in pixels of the source image.
THUMBNAIL_SIDE = 384


# --------------------------------------------------------------------------------------
# The numbers


def sample_indices(n_frames: int, max_frames: int = DEFAULT_MAX_FRAMES) -> list[int]:
    """At most ``max_frames`` frame indices, evenly spaced, first and last included."""
    if n_frames <= 0:
        return []
    if n_frames <= max_frames:
        return list(range(n_frames))
    return sorted({int(round(i)) for i in np.linspace(0, n_frames - 1, max_frames)})


def robust_range(image: np.ndarray) -> tuple[float, float]:
    """The display range: the CONTRAST_PERCENTILES of the finite pixels."""
    finite = image[np.isfinite(image)] if image.dtype.kind == "f" else image
    if finite.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(finite, CONTRAST_PERCENTILES)
    if high <= low:
        high = low + 1.0
    return float(low), float(high)


def display(image: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """A thumbnail of ``image`` scaled to [0, 1] with robust contrast, and the range used."""
    from skimage import exposure, transform

    image = np.asarray(image, dtype=np.float64)
    low, high = robust_range(image)
    scale = THUMBNAIL_SIDE / max(image.shape)
    if scale < 1:
        shape = tuple(max(1, int(round(n * scale))) for n in image.shape)
        image = transform.resize(image, shape, anti_aliasing=True, preserve_range=True)
    shown = exposure.rescale_intensity(image, in_range=(low, high), out_range=(0.0, 1.0))
    return shown, (low, high)


def baseline(trace: np.ndarray) -> float:
    """F0: the BASELINE_PERCENTILE of the mean-intensity trace."""
    return float(np.percentile(trace, BASELINE_PERCENTILE)) if trace.size else 0.0


def delta_f_over_f(trace: np.ndarray, f0: float) -> np.ndarray | None:
    """(F - F0) / F0, or None when F0 is zero (the ratio is meaningless)."""
    return None if f0 == 0 else (trace - f0) / f0


@dataclass
class ChannelSummary:
    """What one row of the picture shows, computed from the sampled frames of one channel."""

    name: str
    first: np.ndarray
    mean: np.ndarray
    max: np.ndarray
    trace: np.ndarray
    f0: float


@dataclass
class RecordingPreview:
    """A recording's description and its sampled frames (``frames[i]`` is frame ``indices[i]``)."""

    name: str
    n_frames: int
    frame_shape: tuple[int, ...]
    dtype: str
    channel_names: list[str]
    metadata: dict
    indices: list[int] = field(default_factory=list)
    times: list[float | None] = field(default_factory=list)
    frames: list[np.ndarray] = field(default_factory=list)

    def summarise(self) -> list[ChannelSummary]:
        return summarise(self.frames, self.channel_names)

    def title(self) -> str:
        shape = " x ".join(str(n) for n in self.frame_shape)
        parts = [self.name, f"{self.n_frames:,} frames of {shape} {self.dtype}"]
        increment = self.metadata.get("time_increment")
        if isinstance(increment, int | float) and increment > 0:
            parts.append(f"{1 / increment:.3g} Hz")
        scale = self.metadata.get("scale_x")
        if isinstance(scale, int | float):
            unit = self.metadata.get("scale_unit", "um")
            parts.append(f"{scale:.3g} {'µm' if unit == 'um' else unit}/pixel")
        return " | ".join(parts)

    def time_axis(self) -> tuple[np.ndarray, str]:
        """Seconds since the start when the frames say so, else frame indices."""
        if self.times and all(t is not None for t in self.times):
            return np.asarray(self.times, dtype=np.float64), "time (s)"
        increment = self.metadata.get("time_increment")
        if isinstance(increment, int | float) and increment > 0:
            return np.asarray(self.indices, dtype=np.float64) * increment, "time (s)"
        return np.asarray(self.indices, dtype=np.float64), "frame"


def summarise(frames: Sequence[np.ndarray], channel_names: Sequence[str]) -> list[ChannelSummary]:
    """First frame, mean and max projections and mean-intensity trace, per channel.

    ``frames`` are (H, W) or (C, H, W); the projections are computed in float64.
    """
    if not frames:
        return []
    stack = np.stack([np.asarray(f) for f in frames])
    if stack.ndim == 3:
        stack = stack[:, np.newaxis]
    summaries = []
    for c in range(stack.shape[1]):
        planes = stack[:, c].astype(np.float64)
        trace = planes.reshape(len(planes), -1).mean(axis=1)
        name = channel_names[c] if c < len(channel_names) else f"channel {c}"
        summaries.append(
            ChannelSummary(
                name=name,
                first=planes[0],
                mean=planes.mean(axis=0),
                max=planes.max(axis=0),
                trace=trace,
                f0=baseline(trace),
            )
        )
    return summaries


# --------------------------------------------------------------------------------------
# Reading: a dataset, or inputs before export


@dataclass
class PreviewSource:
    """What the picture is of: its header line and the recordings to show."""

    title: str
    header: str
    recordings: list[RecordingPreview]
    shown_of: int


def _channel_names(metadata: dict, n: int) -> list[str]:
    channels = metadata.get("channels") or []
    names = [str(c.get("name") or f"channel {i}") for i, c in enumerate(channels)]
    return names if len(names) == n else [f"channel {i}" for i in range(n)]


def _pick(count: int, recordings: Sequence[int] | None, limit: int) -> list[int]:
    if not recordings:
        return list(range(min(count, limit)))
    for index in recordings:
        if not 0 <= index < count:
            raise ToileError(
                f"--recording {index}: there are {count} recording(s), 0 to {count - 1}"
            )
    return list(dict.fromkeys(recordings))


def from_dataset(
    path: str | Path,
    recordings: Sequence[int] | None = None,
    max_frames: int = DEFAULT_MAX_FRAMES,
    limit: int = DEFAULT_RECORDINGS,
) -> PreviewSource:
    """The sampled frames of a dataset's recordings, read from its shards."""
    from toile.dataset import Manifest, _parse_key, _split_member
    from toile.samples import unpack_frame

    manifest = Manifest.load(path)
    listed = manifest.recordings
    chosen = _pick(len(listed), recordings, limit)
    previews: dict[int, RecordingPreview] = {}
    wanted: dict[int, dict[int, int]] = {}
    for position in chosen:
        r = listed[position]
        index = int(r.get("recording_index", position))
        shape = tuple(int(n) for n in r.get("frame_shape") or [])
        metadata = dict(r.get("metadata") or {})
        channels = shape[0] if len(shape) == 3 else 1
        preview = RecordingPreview(
            name=str(r.get("name")),
            n_frames=int(r.get("frames", 0)),
            frame_shape=shape,
            dtype=str(r.get("dtype")),
            channel_names=_channel_names(metadata, channels),
            metadata=metadata,
        )
        picked = sample_indices(preview.n_frames, max_frames)
        preview.indices = picked
        preview.frames = [None] * len(picked)  # type: ignore[list-item]
        preview.times = [None] * len(picked)
        previews[index] = preview
        wanted[index] = {frame: slot for slot, frame in enumerate(picked)}

    def needed(first: str, last: str) -> bool:
        a, b = _parse_key(first), _parse_key(last)
        return a is None or b is None or any(a[0] <= r <= b[0] for r in wanted)

    for info, url in zip(manifest.shards, manifest.urls, strict=True):
        if not needed(info.first_key, info.last_key):
            continue
        try:
            with _open_tar(url, manifest.compressed) as tar:
                for member in tar:
                    key, ext = _split_member(member.name)
                    parsed = _parse_key(key)
                    if parsed is None or parsed[0] not in wanted:
                        continue
                    slot = wanted[parsed[0]].get(parsed[1])
                    if slot is None:
                        continue
                    data = tar.extractfile(member).read()  # type: ignore[union-attr]
                    preview = previews[parsed[0]]
                    if ext == "npy":
                        preview.frames[slot] = np.lib.format.read_array(
                            _bytes_io(data), allow_pickle=False
                        )
                    elif ext == "json":
                        preview.times[slot] = _frame_time(json.loads(data))
                    elif ext == "msgpack":
                        image, metadata = unpack_frame(data)
                        preview.frames[slot] = image
                        preview.times[slot] = _frame_time(metadata or {})
        except (tarfile.TarError, OSError, EOFError, ValueError) as error:
            raise InputError(url, f"cannot read for the preview: {error}") from error
    for preview in previews.values():
        kept = [i for i, f in enumerate(preview.frames) if f is not None]
        if len(kept) < len(preview.frames):
            log.warning(
                "%s: %d sampled frame(s) not found in the shards",
                preview.name,
                len(preview.frames) - len(kept),
            )
        preview.indices = [preview.indices[i] for i in kept]
        preview.frames = [preview.frames[i] for i in kept]
        preview.times = [preview.times[i] for i in kept]
    total_bytes = sum(s.size for s in manifest.shards)
    header = (
        f"{manifest.stem}: {len(manifest.shards)} shard(s) ({manifest.url_pattern}), "
        f"{manifest.samples:,} frames, {total_bytes / 1e6:,.1f} MB, {len(listed)} recording(s), "
        f"{manifest.encoding} encoding{', gzip' if manifest.compressed else ''}"
    )
    return PreviewSource(
        title=str(manifest.path),
        header=header,
        recordings=list(previews.values()),
        shown_of=len(listed),
    )


@contextlib.contextmanager
def _open_tar(url: str, compressed: bool) -> Iterator[tarfile.TarFile]:
    """A local shard opened for seeking over the members not needed; a URL (``s3://``)
    streamed through :mod:`toile.storage`."""
    if "://" not in url:
        with tarfile.open(url, mode="r:gz" if compressed else "r:") as tar:
            yield tar
        return
    from toile.dataset import _open_shard

    with _open_shard(url) as handle, tarfile.open(fileobj=handle, mode="r|*") as tar:
        yield tar


def _bytes_io(data: bytes) -> Any:
    import io

    return io.BytesIO(data)


def _frame_time(metadata: dict) -> float | None:
    frame = metadata.get("frame") if isinstance(metadata, dict) else None
    t = frame.get("t") if isinstance(frame, dict) else None
    return float(t) if isinstance(t, int | float) else None


def from_inputs(
    inputs: Sequence[str],
    recordings: Sequence[int] | None = None,
    max_frames: int = DEFAULT_MAX_FRAMES,
    limit: int = DEFAULT_RECORDINGS,
    channel: str | int | None = None,
    base_dir: Path | None = None,
) -> PreviewSource:
    """The sampled frames of recordings before export, found as ``export frames`` finds them."""
    from toile.formats import discover, open_source

    sources = discover(list(inputs), base_dir or Path.cwd())
    chosen = _pick(len(sources), recordings, limit)
    previews = []
    for position in chosen:
        with open_source(sources[position], channel) as recording:
            shape = tuple(int(n) for n in recording.frame_shape)
            preview = RecordingPreview(
                name=sources[position].name or sources[position].path.name,
                n_frames=int(recording.n_frames),
                frame_shape=shape,
                dtype=str(np.dtype(recording.dtype)),
                channel_names=list(recording.channel_names)
                if len(shape) == 3
                else list(recording.channel_names[:1] or ["channel 0"]),
                metadata=dict(recording.metadata),
            )
            preview.indices = sample_indices(preview.n_frames, max_frames)
            for index in preview.indices:
                preview.frames.append(np.array(recording.read_frame(index)))
                preview.times.append(_frame_time({"frame": recording.frame_metadata(index)}))
        previews.append(preview)
    header = f"{len(sources)} recording(s) found in {', '.join(inputs)} (before export)"
    return PreviewSource(
        title=", ".join(inputs), header=header, recordings=previews, shown_of=len(sources)
    )


# --------------------------------------------------------------------------------------
# The picture


def _rows(source: PreviewSource) -> Iterator[tuple[RecordingPreview, ChannelSummary]]:
    for recording in source.recordings:
        for summary in recording.summarise():
            yield recording, summary


def render(source: PreviewSource, output: str | Path, dpi: int = 100) -> Path:
    """Draw the picture of ``source`` into a PNG file at ``output``."""
    figure = build_figure(source, dpi)
    output = Path(output)
    figure.savefig(output, dpi=dpi)
    return output


def build_figure(source: PreviewSource, dpi: int = 100) -> Any:
    """The matplotlib figure: one row per recording and channel, four panels per row.

    A bare ``matplotlib.figure.Figure``: no pyplot, so no backend or global state is touched.
    """
    from matplotlib.figure import Figure

    rows = list(_rows(source))
    if not rows:
        raise ToileError(f"{source.title}: nothing to preview (no frames)")
    n = len(rows)
    figure = Figure(figsize=(16, 0.9 + 3.4 * n), dpi=dpi, layout="constrained")
    grid = figure.add_gridspec(n, 4, width_ratios=[1, 1, 1, 2.2])
    sampled = {len(r.indices) for r in source.recordings}
    totals = {r.n_frames for r in source.recordings}
    sampling = (
        "every frame"
        if all(len(r.indices) == r.n_frames for r in source.recordings)
        else f"{', '.join(map(str, sorted(sampled)))} evenly spaced frames of "
        f"{', '.join(f'{t:,}' for t in sorted(totals))}"
    )
    shown = (
        f"; recordings shown: {len(source.recordings)} of {source.shown_of}"
        if len(source.recordings) < source.shown_of
        else ""
    )
    figure.suptitle(
        f"{source.header}\nprojections and traces from {sampling} per recording{shown}; "
        f"contrast {CONTRAST_PERCENTILES[0]}-{CONTRAST_PERCENTILES[1]} percentile",
        fontsize=11,
    )
    for row, (recording, summary) in enumerate(rows):
        channel = len(recording.frame_shape) == 3
        label = recording.title() + (f" | {summary.name}" if channel else "")
        short = recording.name if len(recording.name) <= 28 else recording.name[:26] + "…"
        for column, (name, image) in enumerate(
            (
                (f"frame {recording.indices[0]}", summary.first),
                ("mean projection", summary.mean),
                ("max projection", summary.max),
            )
        ):
            axes = figure.add_subplot(grid[row, column])
            shown_image, (low, high) = display(image)
            axes.imshow(shown_image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            axes.set_title(f"{name}\nshown {low:.4g} to {high:.4g}", fontsize=9)
            axes.set_xticks([])
            axes.set_yticks([])
            if column == 0:
                axes.set_ylabel(short + (f"\n{summary.name}" if channel else ""), fontsize=9)
        axes = figure.add_subplot(grid[row, 3])
        times, unit = recording.time_axis()
        color = TRACE_COLORS[recording.channel_names.index(summary.name) % len(TRACE_COLORS)]
        axes.plot(times, summary.trace, color=color, linewidth=1.2)
        axes.axhline(summary.f0, color="0.5", linestyle="--", linewidth=0.8)
        axes.set_xlabel(unit, fontsize=9)
        axes.set_ylabel("mean intensity F", fontsize=9)
        axes.tick_params(labelsize=8)
        f0 = summary.f0
        if f0 != 0:
            secondary = axes.secondary_yaxis(
                "right", functions=(lambda f, f0=f0: (f - f0) / f0, lambda d, f0=f0: d * f0 + f0)
            )
            secondary.set_ylabel("dF/F0", fontsize=9)
            secondary.tick_params(labelsize=8)
        ratio = delta_f_over_f(summary.trace, f0)
        text = f"F0 = {f0:.4g} (dashed; {BASELINE_PERCENTILE:g}th percentile of F)"
        if ratio is not None and ratio.size:
            text += f", peak dF/F0 = {ratio.max():.3g}"
        axes.set_title(f"{label}\n{text}", fontsize=9, loc="left")
    return figure


def is_dataset(path: str | Path) -> bool:
    """Whether ``path`` is a dataset directory or manifest (else it is taken as an input)."""
    if "://" in str(path):
        from toile.dataset import find_manifest

        try:
            find_manifest(str(path))
        except ToileError:
            return False
        return True
    path = Path(path)
    if path.is_file():
        return path.name.endswith(".manifest.json")
    return path.is_dir() and any(path.glob("*.manifest.json"))


def preview(
    targets: Iterable[str],
    output: str | Path = "preview.png",
    recordings: Sequence[int] | None = None,
    max_frames: int = DEFAULT_MAX_FRAMES,
    limit: int = DEFAULT_RECORDINGS,
) -> Path:
    """Write the preview PNG of a dataset, or of input recordings before export."""
    targets = list(targets)
    if max_frames < 1:
        raise ToileError(f"max_frames must be at least 1, got {max_frames}")
    if len(targets) == 1 and is_dataset(targets[0]):
        source = from_dataset(targets[0], recordings, max_frames, limit)
    else:
        source = from_inputs(targets, recordings, max_frames, limit)
    return render(source, output)
