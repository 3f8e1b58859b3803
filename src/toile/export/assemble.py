"""One task per planned shard: read its frame ranges, pack them, write the shard.

:func:`assemble` opens only the recordings the shard holds (a process keeps them
open for its next shard, :mod:`toile.export.samples`), writes the shard under a
temporary name of its own attempt, flushes it and renames it, and fails loudly if
what it wrote differs from the plan. Whichever process or machine runs it, and
however often, the bytes are the same: before writing, it refuses to run with other
versions of the packages that shape the bytes than the driver's.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass

from toile.errors import OutputError, ToileError
from toile.executors.base import Stopped, TaskFailure, stopping
from toile.export.layout import PlannedShard
from toile.export.manifest import byte_versions
from toile.export.samples import ConvertOptions, RecordingJob, iter_samples
from toile.shards import ShardContent, ShardInfo
from toile.storage.base import Storage


@dataclass(frozen=True)
class ShardTask:
    """Everything one shard needs, parsed once by the planning pass."""

    shard: PlannedShard
    #: The recordings of ``shard.ranges``, by recording index.
    recordings: tuple[RecordingJob, ...]
    options: ConvertOptions
    staging: Storage
    #: The driver's :func:`~toile.export.manifest.byte_versions`.
    versions: dict


@dataclass(frozen=True)
class ShardDone:
    """What a finished task reports: the shard as written, and where and with what."""

    index: int
    info: ShardInfo
    versions: dict
    host: str
    pid: int


def check_versions(expected: dict) -> dict:
    """This process's byte-shaping versions; a task refuses to run when they differ."""
    found = byte_versions()
    if found != expected:
        differ = ", ".join(
            f"{name} {found.get(name)} here, {expected.get(name)} on the driver"
            for name in sorted(set(found) | set(expected))
            if found.get(name) != expected.get(name)
        )
        raise TaskFailure(
            "OutputError",
            (
                f"{socket.gethostname()}: version skew ({differ}); the shards would differ "
                "from byte to byte: install the same versions on every machine",
            ),
        )
    return found


def assemble(task: ShardTask) -> ShardDone:
    """Write the planned shard ``task.shard`` into the staging directory."""
    versions = check_versions(task.versions)
    shard = task.shard
    jobs = {job.recording_index: job for job in task.recordings}
    attempt = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    current = None
    try:
        content = ShardContent(
            task.staging.create(shard.name, attempt=attempt), task.options.compressed
        )
        try:
            for frames in shard.ranges:
                current = frames.recording
                job = jobs[frames.recording]
                for number, sample in enumerate(
                    iter_samples(job, task.options, frames.start, frames.stop)
                ):
                    if number % 16 == 0 and stopping():
                        raise Stopped(shard.name)
                    content.add(sample)
            current = None
            content.close_archive()
            _check(shard, content)
            info = content.commit()
        except BaseException:
            content.abort()
            raise
    except ToileError as error:
        raise TaskFailure.wrap(error, current) from None
    return ShardDone(shard.index, info, versions, socket.gethostname(), os.getpid())


def _check(shard: PlannedShard, content: ShardContent) -> None:
    wrote = (content.size, content.samples, content.first_key, content.last_key)
    planned = (shard.size, shard.samples, shard.first_key, shard.last_key)
    if wrote != planned:
        raise OutputError(
            f"{shard.name}: the shard came out as {wrote[0]} bytes, {wrote[1]} sample(s) "
            f"({wrote[2]}..{wrote[3]}) but was planned as {planned[0]} bytes, {planned[1]} "
            f"sample(s) ({planned[2]}..{planned[3]}); a recording changed while it was "
            "exported, or its reader is not deterministic"
        )
