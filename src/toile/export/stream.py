"""One pass on this machine: pack samples on a thread pool and lay the shards out as they come.

A compressed sample's size is known only once it is deflated, so the planned path
(:mod:`toile.export.plan` then :mod:`toile.export.assemble`) deflates every sample
twice: once to measure it, once to write it. When the export runs on this machine
alone, :func:`stream_shards` deflates each sample once instead: the driver reads the
frames in order, a pool of threads maps (``--uint8``) and packs (deflates) them, and
the writer closes a shard when the next sample does not :func:`~toile.export.layout.fits`,
the rule :func:`~toile.export.layout.plan_shards` follows. The shards are therefore the
planned path's, byte for byte, and a resumed export (which takes the planned path)
continues them.

ISA-L's deflate and numpy's mapping release the GIL, so the pool keeps every core
busy while the driver thread reads and writes (and the SHA-256 runs on its own thread,
:class:`toile.storage.base.Hasher`). At most ``2 x threads + 2`` samples are in
flight, so memory stays flat however long the recording.
"""

from __future__ import annotations

import os
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from toile.errors import OutputError, ToileError
from toile.executors.base import Stopped, stopping
from toile.export.layout import FrameRange, PlannedShard, fits
from toile.export.samples import (
    ConvertOptions,
    MappingParams,
    RecordingJob,
    encoder_for,
    open_job,
    pack_frame,
)
from toile.names import frame_digits, sample_key, shard_name
from toile.shards import PackedSample, ShardContent, ShardInfo, shard_overhead
from toile.storage.base import Storage


class RecordingFailed(Exception):
    """A recording's reader failed mid-stream (``error``); the export decides whether to skip."""

    def __init__(self, recording: int, error: ToileError) -> None:
        super().__init__(str(error))
        self.recording = recording
        self.error = error


def stream_threads(workers: int | None, frames: int) -> int:
    """Threads of the pool: ``--workers`` when given, else the cores (never more than frames)."""
    threads = workers if workers is not None else (os.cpu_count() or 1)
    return max(1, min(threads, max(1, frames)))


def _in_order(futures: Iterable[Callable[[], Future]], depth: int) -> Iterator[object]:
    """Results of the futures that ``futures`` submits, in order, at most ``depth`` ahead."""
    pending: deque[Future] = deque()
    try:
        for submit in futures:
            pending.append(submit())
            while len(pending) > depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
        for future in pending:
            if not future.cancelled():
                future.exception()  # wait: its frame buffer must outlive the thread's use


def packed_samples(
    job: RecordingJob, options: ConvertOptions, pool: ThreadPoolExecutor, depth: int
) -> Iterator[PackedSample]:
    """The packed samples of ``job``, in frame order, mapped and packed on ``pool``.

    Frames are read on the calling thread (readers are not shared between threads);
    the mapping and the deflate run on the pool. A reader error is raised as
    :class:`RecordingFailed`.
    """
    try:
        recording = open_job(job)
        encoder = encoder_for(job, options)
        mapping = job.mapping.mapping() if job.mapping is not None else None
        if options.to_uint8 and mapping is None:
            raise ValueError(f"{job.label}: the uint8 mapping is missing")
        digits = frame_digits(job.n_frames)
    except ToileError as error:
        raise RecordingFailed(job.recording_index, error) from None

    def submissions() -> Iterator[Callable[[], Future]]:
        for index in range(job.n_frames):
            if index % 16 == 0 and stopping():
                raise Stopped(job.label)
            try:
                image = recording.read_frame(index)
                metadata = recording.frame_metadata(index)
            except ToileError as error:
                raise RecordingFailed(job.recording_index, error) from None
            key = sample_key(job.recording_index, index, digits)
            yield lambda key=key, image=image, metadata=metadata: pool.submit(
                pack_frame, encoder, mapping, key, image, metadata, options.compressed
            )

    yield from _in_order(submissions(), depth)  # type: ignore[misc]


def uint8_mapping(job: RecordingJob, options: ConvertOptions) -> MappingParams:
    """The statistics pass of ``--uint8`` for one recording, reading while a thread reduces.

    The statistics are updated on one thread, in frame order (the same updates as
    :func:`toile.export.plan.stats_task`, so the same mapping), while the calling
    thread reads the next frames into a ring of buffers.
    """
    from toile.normalize import RangeStats, parse_uint8_range

    try:
        recording = open_job(job)
        shape = recording.frame_shape
        stats = RangeStats(
            parse_uint8_range(options.uint8_range),
            recording.dtype,
            shape[0] if len(shape) == 3 else 1,
            source=job.label,
        )
        # one reducing thread: the updates stay in frame order; a ring slot is read
        # into again once the update of the frame it held is done
        ring = [np.empty(shape, recording.dtype) for _ in range(8)]
        updates: deque[Future] = deque()
        with ThreadPoolExecutor(1, thread_name_prefix="toile-stats") as reducer:
            try:
                for index in range(recording.n_frames):
                    if index % 16 == 0 and stopping():
                        raise Stopped(job.label)
                    if len(updates) == len(ring):
                        updates.popleft().result()
                    frame = recording.read_frame(index, out=ring[index % len(ring)])
                    updates.append(reducer.submit(stats.update, frame))
                while updates:
                    updates.popleft().result()
            finally:
                for future in updates:
                    future.cancel()
        mapping = stats.finish()
    except ToileError as error:
        raise RecordingFailed(job.recording_index, error) from None
    return MappingParams(
        method=mapping.method,
        low=tuple(mapping.low),
        high=tuple(mapping.high),
        source_dtype=mapping.source_dtype,
        percentiles=mapping.percentiles,
    )


@dataclass
class _Open:
    """The shard being written."""

    index: int
    content: ShardContent
    ranges: list[FrameRange]
    used: int = 0


class StreamedShards:
    """Writes samples into shards of at most ``max_size`` bytes as they arrive, in order.

    ``on_shard(planned, info)`` is called for every shard once it is committed in
    ``staging`` (under its final name there); the shard being written when anything
    raises is removed.
    """

    def __init__(
        self,
        staging: Storage,
        *,
        stem: str,
        max_size: int,
        compressed: bool,
        on_shard: Callable[[PlannedShard, ShardInfo], None],
    ) -> None:
        self.staging = staging
        self.stem = stem
        self.max_size = max_size
        self.compressed = compressed
        self.overhead = shard_overhead(compressed)
        self.capacity = max_size - self.overhead
        if self.capacity <= 0:
            raise OutputError(
                f"shard size {max_size} bytes is too small: a shard needs {self.overhead} "
                "bytes besides its samples"
            )
        self.on_shard = on_shard
        self._next = 0
        self._open: _Open | None = None
        self._attempt = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"

    def add(self, job: RecordingJob, frame: int, sample: PackedSample) -> None:
        if sample.size > self.capacity:
            raise OutputError(
                f"{job.label}: frame {sample.key}: one sample takes {sample.size} bytes, more "
                f"than the shard size limit of {self.max_size} bytes allows ({self.capacity} "
                "bytes for samples); raise --shard-size"
            )
        shard = self._open
        if shard is not None and not fits(shard.used, sample.size, self.capacity):
            self._finish()
            shard = None
        if shard is None:
            name = shard_name(self.stem, self._next, self.compressed)
            content = ShardContent(
                self.staging.create(name, attempt=self._attempt), self.compressed
            )
            shard = self._open = _Open(self._next, content, [])
            self._next += 1
        shard.content.add(sample)
        shard.used += sample.size
        ranges = shard.ranges
        if ranges and ranges[-1].recording == job.recording_index and ranges[-1].stop == frame:
            ranges[-1] = FrameRange(job.recording_index, ranges[-1].start, frame + 1)
        else:
            ranges.append(FrameRange(job.recording_index, frame, frame + 1))

    def close(self) -> None:
        """Commit the last shard."""
        if self._open is not None:
            self._finish()

    def abort(self) -> None:
        """Drop the shard being written."""
        if self._open is not None:
            self._open.content.abort()
            self._open = None

    def _finish(self) -> None:
        shard, self._open = self._open, None
        assert shard is not None
        content = shard.content
        try:
            content.close_archive()
            info = content.commit()
        except BaseException:
            content.abort()
            raise
        planned = PlannedShard(
            index=shard.index,
            name=info.name,
            ranges=tuple(shard.ranges),
            size=info.size,
            samples=info.samples,
            first_key=info.first_key,
            last_key=info.last_key,
        )
        self.on_shard(planned, info)


def stream_shards(
    jobs: list[RecordingJob],
    options: ConvertOptions,
    writer: StreamedShards,
    pool: ThreadPoolExecutor,
    threads: int,
) -> None:
    """Every sample of ``jobs``, in order, packed on ``pool`` and written by ``writer``."""
    depth = 2 * threads + 2
    try:
        for job in jobs:
            for frame, sample in enumerate(packed_samples(job, options, pool, depth)):
                writer.add(job, frame, sample)  # type: ignore[arg-type]
        writer.close()
    except BaseException:
        writer.abort()
        raise
