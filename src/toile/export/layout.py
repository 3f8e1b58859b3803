"""The shard layout: where every shard begins and ends, decided before anything is written.

Every packed sample's bytes depend on that sample alone (per-sample tar framing,
per-sample raw deflate ending with a full flush), so shard boundaries are a pure
running sum over the samples' sizes: a shard takes samples while they fit under
the cap, end-of-archive bytes included (:func:`fits`). :func:`plan_shards` is the
only place that decides boundaries; :class:`toile.shards.ShardWriter` asks
:func:`fits` too.

Sizes come run-length encoded (``(size, count)`` runs per recording): plain npy
samples of one recording mostly share a size, so the layout of 10^8 frames costs
one step per run and per shard, never one per frame, and each shard is described
by a few frame ranges.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from toile.errors import OutputError
from toile.names import frame_digits, sample_key, shard_name


def fits(used: int, size: int, capacity: int) -> bool:
    """Whether a sample of ``size`` bytes joins a shard whose samples already take ``used``.

    ``capacity`` is the cap minus the shard's fixed bytes (end-of-archive blocks, gzip
    header and trailer). An empty shard takes any sample that fits in ``capacity``.
    """
    return used + size <= capacity


@dataclass(frozen=True)
class SampleSizes:
    """The packed sizes of one recording's samples, as ``(size, count)`` runs in frame order."""

    recording_index: int
    runs: tuple[tuple[int, int], ...]
    #: How messages name the recording.
    label: str = ""

    @property
    def n_frames(self) -> int:
        return sum(count for _, count in self.runs)

    @property
    def total(self) -> int:
        return sum(size * count for size, count in self.runs)


def run_length(sizes: Iterable[int]) -> tuple[tuple[int, int], ...]:
    """``(size, count)`` runs of consecutive equal sizes."""
    runs: list[list[int]] = []
    for size in sizes:
        if runs and runs[-1][0] == size:
            runs[-1][1] += 1
        else:
            runs.append([size, 1])
    return tuple((size, count) for size, count in runs)


@dataclass(frozen=True)
class FrameRange:
    """Frames ``start`` to ``stop - 1`` of recording ``recording`` (its recording index)."""

    recording: int
    start: int
    stop: int

    @property
    def count(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class PlannedShard:
    """One shard of the layout: what it holds and what it must come out as."""

    index: int
    name: str
    ranges: tuple[FrameRange, ...]
    #: Bytes of the shard file, fixed bytes included.
    size: int
    samples: int
    first_key: str
    last_key: str


def plan_shards(
    recordings: Sequence[SampleSizes],
    *,
    max_size: int,
    overhead: int,
    stem: str,
    compressed: bool,
) -> list[PlannedShard]:
    """The shards that the samples of ``recordings``, in order, fill under ``max_size``.

    ``overhead`` is a shard's fixed bytes (:func:`toile.shards.shard_overhead`). Raises
    :class:`OutputError` naming the recording and frame of a sample too large for any
    shard, before anything is written.
    """
    capacity = max_size - overhead
    if capacity <= 0:
        raise OutputError(
            f"shard size {max_size} bytes is too small: a shard needs {overhead} bytes "
            "besides its samples"
        )
    shards: list[PlannedShard] = []
    ranges: list[FrameRange] = []
    used = 0
    count = 0
    first: tuple[int, int, int] | None = None  # recording, frame, digits of the first sample
    last: tuple[int, int, int] | None = None

    def close() -> None:
        nonlocal ranges, used, count, first
        assert first is not None and last is not None
        index = len(shards)
        shards.append(
            PlannedShard(
                index=index,
                name=shard_name(stem, index, compressed),
                ranges=tuple(ranges),
                size=used + overhead,
                samples=count,
                first_key=sample_key(*first),
                last_key=sample_key(*last),
            )
        )
        ranges, used, count, first = [], 0, 0, None

    for recording in recordings:
        digits = frame_digits(recording.n_frames)
        frame = 0
        for size, run in recording.runs:
            if size > capacity:
                key = sample_key(recording.recording_index, frame, digits)
                raise OutputError(
                    f"{recording.label}: frame {key}: one sample takes {size} bytes, more "
                    f"than the shard size limit of {max_size} bytes allows ({capacity} bytes "
                    "for samples); raise --shard-size"
                )
            left = run
            while left:
                room = (capacity - used) // size if size else left
                take = min(left, room)
                if take == 0:
                    close()
                    continue
                if ranges and ranges[-1].recording == recording.recording_index:
                    ranges[-1] = FrameRange(
                        recording.recording_index, ranges[-1].start, frame + take
                    )
                else:
                    ranges.append(FrameRange(recording.recording_index, frame, frame + take))
                if first is None:
                    first = (recording.recording_index, frame, digits)
                last = (recording.recording_index, frame + take - 1, digits)
                used += take * size
                count += take
                frame += take
                left -= take
    if count:
        close()
    return shards
