"""A recording's packed samples, in any process: what a task is given and how it reads.

A :class:`RecordingJob` is everything a task needs to read one recording again,
wherever it runs: the :class:`~toile.formats.Source` the planning pass found, the
metadata it already parsed (written into every sample without being derived again),
the frame geometry it promised, and the uint8 mapping once the statistics pass has
computed it. Opened recordings are kept in a small per-process cache, so that the
consecutive shards of one recording that a process assembles read it as one stream
(and parse its metadata once per process, not once per shard).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from toile.encode import SampleEncoder
from toile.errors import InputError
from toile.formats import Recording, Source, open_source
from toile.names import frame_digits, sample_key
from toile.shards import PackedSample, pack_sample, raw_sample_size


@dataclass(frozen=True)
class ConvertOptions:
    """The options that change a recording's samples."""

    encoding: str = "npy"
    compressed: bool = False
    to_uint8: bool = False
    uint8_range: str = "max"
    channel: str | int | None = None


@dataclass(frozen=True)
class MappingParams:
    """A :class:`toile.normalize.Uint8Mapping` as plain values, to ship to tasks."""

    method: str
    low: tuple[float, ...]
    high: tuple[float, ...]
    source_dtype: str
    percentiles: tuple[float, float] | None = None

    @classmethod
    def of(cls, mapping: Any) -> MappingParams:
        """The values of a :class:`toile.normalize.Uint8Mapping`."""
        return cls(
            method=mapping.method,
            low=tuple(mapping.low),
            high=tuple(mapping.high),
            source_dtype=mapping.source_dtype,
            percentiles=mapping.percentiles,
        )

    def mapping(self):  # noqa: ANN201 - a Uint8Mapping (normalize is imported lazily)
        from toile.normalize import Uint8Mapping

        return Uint8Mapping(
            method=self.method,
            low=self.low,
            high=self.high,
            source_dtype=self.source_dtype,
            percentiles=self.percentiles,
        )


@dataclass(frozen=True)
class RecordingJob:
    """One recording as tasks see it (picklable; no open file)."""

    recording_index: int
    label: str
    source: Source
    channel: str | int | None
    n_frames: int
    frame_shape: tuple[int, ...]
    dtype: str
    #: The recording-level metadata of every sample (recording index and filename fields included).
    metadata: dict = field(compare=False)
    mapping: MappingParams | None = None
    #: Distinguishes one export's opened recordings from another's in a long-lived worker.
    token: str = ""
    #: ``--bin`` factor (None: frames as the source has them).
    binning: int | None = None

    def with_mapping(self, mapping: MappingParams) -> RecordingJob:
        return replace(self, mapping=mapping)


#: Opened recordings of this process, most recently used last.
_OPEN: OrderedDict[tuple, Recording] = OrderedDict()
#: Recordings kept open per process.
MAX_OPEN = 4


def _cache_key(job: RecordingJob) -> tuple:
    return (job.token, job.source, job.channel)


def adopt(job: RecordingJob, recording: Recording) -> None:
    """Keep ``recording``, opened by the planning pass, for the tasks of this process."""
    _remember(_cache_key(job), recording)


def _remember(key: tuple, recording: Recording) -> None:
    _OPEN[key] = recording
    _OPEN.move_to_end(key)
    while len(_OPEN) > MAX_OPEN:
        _, old = _OPEN.popitem(last=False)
        old.close()


def open_job(job: RecordingJob) -> Recording:
    """The job's recording, opened once per process and checked against the plan."""
    key = _cache_key(job)
    recording = _OPEN.get(key)
    if recording is not None:
        _OPEN.move_to_end(key)
        return recording
    from toile.binning import maybe_binned

    recording = maybe_binned(open_source(job.source, channel=job.channel), job.binning)
    found = (recording.n_frames, tuple(recording.frame_shape), np.dtype(recording.dtype).name)
    planned = (job.n_frames, tuple(job.frame_shape), job.dtype)
    if found != planned:
        recording.close()
        raise InputError(
            job.label,
            f"changed since it was planned ({planned[0]} frames of {planned[1]} {planned[2]}, "
            f"now {found[0]} of {found[1]} {found[2]})",
        )
    _remember(key, recording)
    return recording


def forget(token: str) -> None:
    """Close the recordings one export opened in this process."""
    for key in [k for k in _OPEN if k[0] == token]:
        _OPEN.pop(key).close()


def close_all() -> None:
    while _OPEN:
        _OPEN.popitem()[1].close()


def encoder_for(job: RecordingJob, options: ConvertOptions) -> SampleEncoder:
    normalization = job.mapping.mapping().metadata() if job.mapping is not None else None
    return SampleEncoder(options.encoding, job.metadata, normalization)


def packing(
    job: RecordingJob, options: ConvertOptions
) -> tuple[Recording, SampleEncoder, Any, int]:
    """What packing ``job``'s frames takes: its recording, encoder, uint8 mapping (or
    None) and the digits of its sample keys."""
    recording = open_job(job)
    encoder = encoder_for(job, options)
    mapping = job.mapping.mapping() if job.mapping is not None else None
    if options.to_uint8 and mapping is None:
        raise ValueError(f"{job.label}: the uint8 mapping is missing")
    return recording, encoder, mapping, frame_digits(job.n_frames)


def iter_samples(
    job: RecordingJob, options: ConvertOptions, start: int, stop: int
) -> Iterator[PackedSample]:
    """Packed samples of frames ``start`` to ``stop - 1``, in order."""
    recording, encoder, mapping, digits = packing(job, options)
    for index in range(start, stop):
        key = sample_key(job.recording_index, index, digits)
        yield pack_frame(
            encoder,
            mapping,
            key,
            recording.read_frame(index),
            recording.frame_metadata(index),
            options.compressed,
        )


def pack_frame(
    encoder: SampleEncoder,
    mapping: Any,
    key: str,
    image: np.ndarray,
    frame_metadata: dict,
    compressed: bool,
) -> PackedSample:
    """One frame's packed sample: mapped to uint8 by ``mapping`` (when given), encoded, packed.

    Safe to call on several threads at once (the encoder and the mapping are not changed).
    """
    if mapping is not None:
        image = mapping.apply(image)
    return pack_sample(key, encoder.members(key, image, frame_metadata), compressed)


def plain_sizes(job: RecordingJob, options: ConvertOptions) -> Iterator[int]:
    """Packed sizes of every uncompressed sample, from the metadata alone (no pixel read).

    A sample's size depends on its array's shape and type, not its values: the
    members are laid out around one scratch frame of the output type.
    """
    recording = open_job(job)
    encoder = encoder_for(job, options)
    dtype = np.dtype(np.uint8) if options.to_uint8 else np.dtype(recording.dtype)
    scratch = np.zeros(job.frame_shape, dtype)
    digits = frame_digits(job.n_frames)
    for index in range(job.n_frames):
        key = sample_key(job.recording_index, index, digits)
        yield raw_sample_size(encoder.members(key, scratch, recording.frame_metadata(index)))
