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
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from toile.errors import ToileError
from toile.executors.base import Stopped, stopping
from toile.export.layout import FrameRange, PlannedShard
from toile.export.samples import ConvertOptions, RecordingJob, pack_frame, packing
from toile.names import sample_key
from toile.shards import PackedSample, ShardInfo, ShardWriter
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
        recording, encoder, mapping, digits = packing(job, options)
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


class StreamedShards:
    """Writes samples into shards of at most ``max_size`` bytes as they arrive, in order.

    A :class:`toile.shards.ShardWriter` into ``staging`` decides the boundaries; this
    records which frames each shard holds. ``on_shard(planned, info)`` is called for
    every shard once it is committed in ``staging`` (under its final name there); the
    shard being written when anything raises is removed.
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
        self.on_shard = on_shard
        self._ranges: list[FrameRange] = []
        self._writer = ShardWriter(
            staging, stem, max_size, compressed=compressed, on_shard=self._committed
        )

    def add(self, job: RecordingJob, frame: int, sample: PackedSample) -> None:
        # a shard closed by this sample is reported before the sample joins the next one
        self._writer.add(sample, label=f"{job.label}: frame {sample.key}")
        ranges = self._ranges
        if ranges and ranges[-1].recording == job.recording_index and ranges[-1].stop == frame:
            ranges[-1] = FrameRange(job.recording_index, ranges[-1].start, frame + 1)
        else:
            ranges.append(FrameRange(job.recording_index, frame, frame + 1))

    def close(self) -> None:
        """Commit the last shard."""
        self._writer.close()

    def abort(self) -> None:
        """Drop the shard being written."""
        self._writer.abort()

    def _committed(self, info: ShardInfo) -> None:
        planned = PlannedShard(
            index=len(self._writer.shards) - 1,
            name=info.name,
            ranges=tuple(self._ranges),
            size=info.size,
            samples=info.samples,
            first_key=info.first_key,
            last_key=info.last_key,
        )
        self._ranges = []
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
