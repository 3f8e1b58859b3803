"""Planning: open every recording, then measure every sample's packed size.

The planning pass opens each recording once (metadata only) and catches bad inputs
before anything is written. Measuring gives each recording's packed sample sizes:

- plain npy/atdata: from the frame geometry and the metadata JSON, without reading
  a pixel (:func:`toile.export.samples.plain_sizes`);
- ``--uint8``: after the statistics pass (one sequential pass per recording), since
  the mapping is part of every sample's metadata;
- ``--compressed``: only by deflating. On this path the samples are deflated here and
  again when their shard is assembled, so that every shard task stays independent, on
  any worker of a cluster; an export on this machine alone deflates once instead, laying
  the shards out as the samples come (:mod:`toile.export.stream`).

The measuring tasks run on the export's executor, a chunk of frames each.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from toile.binning import maybe_binned
from toile.config import ExportConfig
from toile.errors import InputError, OutputError, ToileError
from toile.executors.base import Stopped, TaskFailure, stopping
from toile.export.layout import SampleSizes, run_length
from toile.export.samples import (
    ConvertOptions,
    MappingParams,
    RecordingJob,
    iter_samples,
    open_job,
    plain_sizes,
)
from toile.formats import Recording, Source, open_source

log = logging.getLogger(__name__)

#: Pixel bytes per measuring task of a compressed export (frames are deflated in chunks).
MEASURE_CHUNK_BYTES = 64 * 1024 * 1024


@dataclass
class RecordingPlan:
    """One recording to export, as found by the planning pass (driver side)."""

    recording_index: int
    label: str
    source: Source
    fields: dict = field(default_factory=dict)
    n_frames: int = 0
    frame_shape: tuple[int, ...] = ()
    dtype: str = ""
    metadata: dict = field(default_factory=dict)
    vendor_metadata: dict | None = None
    #: ``--bin`` factor the recording is read with (None: not binned).
    binning: int | None = None
    #: The recording the planning pass opened, kept for the first recording so that
    #: a single-recording export run in this process parses its file once.
    opened: Recording | None = field(default=None, repr=False, compare=False)

    def job(self, channel: str | int | None, token: str) -> RecordingJob:
        return RecordingJob(
            recording_index=self.recording_index,
            label=self.label,
            source=self.source,
            channel=channel,
            n_frames=self.n_frames,
            frame_shape=tuple(self.frame_shape),
            dtype=self.dtype,
            metadata=self.metadata,
            token=token,
            binning=self.binning,
        )

    def close(self) -> None:
        if self.opened is not None:
            self.opened.close()
            self.opened = None


def plan_recordings(config: ExportConfig, skipped: list[dict]) -> list[RecordingPlan]:
    """Discover and open every recording of ``config`` (metadata only)."""
    from toile.formats import discover

    sources = discover(
        list(config.inputs),
        config.base_dir,
        options={"calibrated": True} if config.calibrated else None,
        storage_options=config.storage_options or None,
    )
    parser = None
    if config.filename_spec is not None:
        from toile.filenames import compile_spec

        parser = compile_spec(config.filename_spec)
    plans: list[RecordingPlan] = []
    for source in sources:
        label = source.label
        try:
            fields = dict(source.fields)
            if parser is not None:
                parsed = parser.parse(source.name, path=source.path)
                if parsed is None:
                    raise InputError(
                        source.path,
                        f"name {source.name!r} does not match the filename template "
                        f"{config.filename_spec.template!r}",  # type: ignore[union-attr]
                    )
                fields.update(parsed)
            recording = open_source(source, channel=config.channel)
            recording = maybe_binned(recording, config.bin_factor)
            plan = plan_of(recording, len(plans), label, source, fields)
            plan.binning = config.bin_factor
            if plans:
                recording.close()
            else:
                plan.opened = recording
        except ToileError as error:
            if config.on_error != "skip":
                raise
            log.warning("skipped %s: %s", label, error)
            skipped.append({"source": label, "error": str(error)})
            continue
        plans.append(plan)
        log.info(
            "recording %d: %s (%s), %d frame(s) of %s %s, channels: %s",
            plan.recording_index,
            label,
            plan.metadata.get("format", "tiff"),
            plan.n_frames,
            "x".join(str(n) for n in plan.frame_shape),
            plan.dtype,
            ", ".join(str(c.get("name")) for c in plan.metadata.get("channels") or []) or "-",
        )
    return plans


def plan_of(
    recording: Recording, index: int, label: str, source: Source, fields: dict
) -> RecordingPlan:
    metadata = dict(recording.metadata)
    metadata["recording_index"] = index
    metadata.update(fields)
    return RecordingPlan(
        recording_index=index,
        label=label,
        source=source,
        fields=fields,
        n_frames=recording.n_frames,
        frame_shape=tuple(recording.frame_shape),
        dtype=np.dtype(recording.dtype).name,
        metadata=metadata,
        vendor_metadata=recording.vendor_metadata,
    )


def check_sample_sizes(
    plans: list[RecordingPlan], options: ConvertOptions, shard_size: int
) -> None:
    """Refuse, before measuring, a frame that cannot fit in one shard even uncompressed."""
    if options.compressed:
        return
    from toile.shards import shard_overhead

    capacity = shard_size - shard_overhead(False)
    for plan in plans:
        itemsize = 1 if options.to_uint8 else np.dtype(plan.dtype).itemsize
        pixels = int(np.prod(plan.frame_shape)) if plan.frame_shape else 0
        # Two tar headers plus the pixel bytes is a lower bound of a sample's size.
        lower_bound = 2 * 512 + pixels * itemsize
        if lower_bound > capacity:
            raise OutputError(
                f"{plan.label}: frame 0 takes at least {lower_bound} bytes, more than the shard "
                f"size limit of {shard_size} bytes allows; raise --shard-size"
            )


def frame_bytes(plan: RecordingPlan | RecordingJob) -> int:
    shape = plan.frame_shape
    return (int(np.prod(shape)) if shape else 0) * np.dtype(plan.dtype).itemsize


def measure_chunks(job: RecordingJob, compressed: bool) -> list[tuple[int, int]]:
    """Frame ranges measured by one task each: whole recordings unless deflating."""
    if not compressed or job.n_frames == 0:
        return [(0, job.n_frames)]
    per_chunk = max(1, MEASURE_CHUNK_BYTES // max(1, frame_bytes(job)))
    return [(s, min(s + per_chunk, job.n_frames)) for s in range(0, job.n_frames, per_chunk)]


# --------------------------------------------------------------------------------------
# Tasks (run on the executor; plain arguments in, plain values out)


def uint8_mapping(job: RecordingJob, options: ConvertOptions) -> MappingParams:
    """The statistics pass of ``--uint8``: one sequential read of the whole recording.

    The frames are read into a ring of buffers while one thread updates the
    statistics, in frame order; a slot is read into again once the update of the
    frame it held is done. No per-frame metadata is read.
    """
    from concurrent.futures import Future, ThreadPoolExecutor

    from toile.normalize import RangeStats, parse_uint8_range

    recording = open_job(job)
    shape = recording.frame_shape
    stats = RangeStats(
        parse_uint8_range(options.uint8_range),
        recording.dtype,
        shape[0] if len(shape) == 3 else 1,
        source=job.label,
    )
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
    return MappingParams.of(stats.finish())


def stats_task(job: RecordingJob, options: ConvertOptions, versions: dict) -> MappingParams:
    """:func:`uint8_mapping` as a task."""
    from toile.export.assemble import check_versions

    check_versions(versions)
    try:
        return uint8_mapping(job, options)
    except ToileError as error:
        raise TaskFailure.wrap(error, job.recording_index) from None


def measure_task(
    job: RecordingJob, options: ConvertOptions, start: int, stop: int, versions: dict
) -> tuple[tuple[int, int], ...]:
    """Packed sizes of frames ``start`` to ``stop - 1``, run-length encoded."""
    from toile.export.assemble import check_versions

    check_versions(versions)
    try:
        if not options.compressed:
            return run_length(_polled(plain_sizes(job, options), job.label))
        sizes = (sample.size for sample in iter_samples(job, options, start, stop))
        return run_length(_polled(sizes, job.label))
    except ToileError as error:
        raise TaskFailure.wrap(error, job.recording_index) from None


def _polled(sizes, label: str):  # noqa: ANN001, ANN202 - an iterator of ints, passed through
    for number, size in enumerate(sizes):
        if number % 64 == 0 and stopping():
            raise Stopped(label)
        yield size


def join_sizes(job: RecordingJob, parts: list[tuple[tuple[int, int], ...]]) -> SampleSizes:
    """One recording's sizes from its chunks' runs (in frame order)."""
    runs: list[tuple[int, int]] = []
    for part in parts:
        for size, count in part:
            if runs and runs[-1][0] == size:
                runs[-1] = (size, runs[-1][1] + count)
            else:
                runs.append((size, count))
    return SampleSizes(job.recording_index, tuple(runs), job.label)
