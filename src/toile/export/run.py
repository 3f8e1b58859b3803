"""The export driver: plan, measure, lay out, assemble on an executor, commit.

Flow: open every recording (:mod:`~toile.export.plan`) -> the ``--uint8`` statistics
pass and the size measurement, as tasks -> the pure shard layout
(:mod:`~toile.export.layout`) -> one :func:`~toile.export.assemble.assemble` task
per shard on the executor, results in any order -> the manifest, written last.

Shards are written into a hidden staging directory inside the output directory,
next to a journal of completed shards (:mod:`~toile.export.journal`); only when
every planned shard is there are they renamed into place, stale shards of an
earlier run removed and the manifest written, with Ctrl-C held back for that
moment so that an interrupt either stops the run or comes after its success, never
in between. An interrupted export never damages earlier output, and
``resume=True`` re-checks the fingerprint, verifies the journaled shards and
writes only the missing ones, with any executor and worker count.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from toile import __version__
from toile.card import CARD_NAME, card_for, mixed_shapes_warning
from toile.config import ExportConfig
from toile.dryrun import DryRun, recording_summary
from toile.encode import dump_json
from toile.errors import ConfigError, InputError, OutputError, ToileError
from toile.executors import Executor, Job, TaskFailure, get_executor
from toile.executors.base import Failed, Stopped
from toile.export import samples
from toile.export.assemble import ShardDone, ShardTask, assemble
from toile.export.journal import Journal
from toile.export.layout import PlannedShard, SampleSizes, plan_shards
from toile.export.manifest import build_manifest, byte_versions, manifest_text
from toile.export.plan import (
    RecordingPlan,
    check_sample_sizes,
    frame_bytes,
    join_sizes,
    measure_chunks,
    measure_task,
    plan_of,
    plan_recordings,
    stats_task,
    uint8_mapping,
)
from toile.export.samples import ConvertOptions, RecordingJob
from toile.export.stream import (
    RecordingFailed,
    StreamedShards,
    stream_shards,
    stream_threads,
)
from toile.formats import open_source
from toile.names import (
    JOURNAL_NAME,
    is_shard_of,
    manifest_name,
    staging_name,
)
from toile.shards import ShardInfo, shard_overhead
from toile.storage.output import output_storages

log = logging.getLogger(__name__)

#: With ``--workers`` left unset, one worker per this many pixel bytes (and never
#: more workers than shards or cores): below it, starting processes costs more than
#: they save (measured: 2 workers slower than 1 for small --compressed --uint8 exports).
BYTES_PER_WORKER = 128 * 1024 * 1024


def staging_dir(output: Path, stem: str) -> Path:
    return output / staging_name(stem)


# --------------------------------------------------------------------------------------
# Results


@dataclass
class ExportResult:
    """What an export produced."""

    output: Path
    manifest_path: Path | None
    shards: list[ShardInfo]
    recordings: int
    frames: int
    bytes: int
    seconds: float
    skipped: list[dict] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.skipped

    def summary(self) -> str:
        text = (
            f"{self.recordings} recording(s), {self.frames} frame(s), {len(self.shards)} shard(s), "
            f"{self.bytes:,} bytes in {self.seconds:.1f} s"
        )
        if self.skipped:
            text += f"; {len(self.skipped)} recording(s) skipped"
        return text


class ExportInterrupted(ToileError):
    """The export was interrupted (Ctrl-C); complete shards are kept for ``--resume``."""

    def __init__(self, completed_shards: int, frames: int, staging: Path) -> None:
        self.completed_shards = completed_shards
        super().__init__(
            f"interrupted after {completed_shards} complete shard(s) ({frames} frame(s)); "
            f"they are kept in {staging}: rerun with --resume to continue"
        )


def result_as_dict(result: ExportResult) -> dict:
    data = asdict(result)
    data["output"] = str(result.output)
    data["manifest_path"] = str(result.manifest_path) if result.manifest_path else None
    return data


# --------------------------------------------------------------------------------------
# Output directory handling


def existing_outputs(output: Path, stem: str) -> list[Path]:
    """Shards and manifest of an earlier export with this stem."""
    if not output.is_dir():
        return []
    return sorted(
        p for p in output.iterdir() if p.name == manifest_name(stem) or is_shard_of(p.name, stem)
    )


def _check_output(output: Path) -> None:
    """Refuse an output that cannot be a dataset directory, before any work is done."""
    if output.exists() and not output.is_dir():
        raise OutputError(f"{output}: output path exists and is not a directory")
    existing = output
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(
            f"{output}: cannot create output directory: {existing} is not a directory"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{output}: output directory is not writable")


def _prepare_output(output: Path) -> None:
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{output}: cannot create output directory: {error.strerror}") from error
    if not os.access(output, os.W_OK | os.X_OK):
        raise OutputError(f"{output}: output directory is not writable")


def _fingerprint(config_options: dict, plans: list[RecordingPlan], skipped: list[dict]) -> str:
    files = []
    for plan in plans:
        for path in plan.source.files:
            try:
                st = path.stat()
                files.append([str(path), st.st_size, st.st_mtime_ns])
            except OSError:
                files.append([str(path), None, None])
    payload = {
        "toile": __version__,
        "options": config_options,
        "recordings": [[p.label, p.n_frames] for p in plans],
        "skipped": [s["source"] for s in skipped],
        "files": files,
    }
    return hashlib.sha256(dump_json(payload).encode()).hexdigest()


def _output_options(config: ExportConfig) -> dict:
    spec = config.filename_spec
    return {
        "inputs": list(config.inputs),
        "stem": config.stem,
        "shard_size": config.shard_size,
        "format": config.format,
        "compressed": config.compressed,
        "to_uint8": config.to_uint8,
        "uint8_range": config.uint8_range if config.to_uint8 else None,
        "channel": config.channel,
        "on_error": config.on_error,
        # only when set, so that manifests without binning keep their bytes
        **({"bin": config.bin_factor} if config.bin_factor else {}),
        **({"calibrated": True} if config.calibrated else {}),
        "filename_spec": None
        if spec is None
        else {"template": spec.template, "transforms": dict(spec.transforms)},
    }


# --------------------------------------------------------------------------------------
# Progress


class _NoProgress:
    """Stands in for the progress bar when it is off (tqdm takes 50 ms to import)."""

    def update(self, n: int = 1) -> None:
        return None

    def set_description(self, text: str, refresh: bool = True) -> None:
        return None

    def close(self) -> None:
        return None


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return _NoProgress()
    from tqdm import tqdm

    return _StartOnFirstUpdate(
        tqdm(
            total=total,
            unit="frame",
            file=sys.stderr,
            dynamic_ncols=True,
            mininterval=0.5,
            desc="export",
        )
    )


class _StartOnFirstUpdate:
    """A tqdm bar whose clock starts at the first frame done, not when it was created.

    Opening the recordings and starting workers takes seconds; counted as the time of
    the first frame, it made the first estimate hours long.
    """

    def __init__(self, bar: Any) -> None:
        self.bar = bar
        self.started = False

    def update(self, n: int = 1) -> None:
        if not self.started:
            self.started = True
            self.bar.reset(total=self.bar.total)
        self.bar.update(n)

    def set_description(self, text: str, refresh: bool = True) -> None:
        self.bar.set_description(text, refresh)

    def close(self) -> None:
        self.bar.close()


# --------------------------------------------------------------------------------------
# Executors


def choose_workers(config: ExportConfig, plans: list[RecordingPlan]) -> int:
    """``--workers`` when given; else from the plan: pixel bytes, shards and cores."""
    if config.workers is not None:
        return config.workers
    pixel_bytes = sum(p.n_frames * frame_bytes(p) for p in plans)
    shards = max(1, -(-pixel_bytes // config.shard_size))
    tasks = shards
    cores = os.cpu_count() or 1
    if config.compressed or config.to_uint8:
        tasks = max(shards, len(plans))
    else:
        # A plain shard keeps two cores busy (the copy, and its SHA-256 on a helper
        # thread): measured on 2 cores, a second process made a plain export slower.
        cores = max(1, cores // 2)
    return max(1, min(cores, tasks, pixel_bytes // BYTES_PER_WORKER))


def make_executor(config: ExportConfig, workers: int) -> Executor:
    name = config.executor or ("inline" if workers == 1 else "processes")
    if name == "dask":
        return get_executor(
            name,
            workers=workers,
            scheduler=config.scheduler,
            scheduler_file=config.scheduler_file,
        )
    return get_executor(name, workers=workers)


# --------------------------------------------------------------------------------------
# The pipeline


def dry_run(config: ExportConfig, *, executor: Executor | None = None) -> DryRun:
    """What :func:`export_frames` would write for ``config``, without writing anything.

    Recordings are found and opened, options and output checked, the ``--uint8``
    statistics and the sample sizes measured and the shards laid out, exactly as a
    real run does (so bad inputs fail the same way); see :mod:`toile.dryrun`.
    """
    return _export(config, None, executor, dry_run=True)


def export_frames(
    config: ExportConfig,
    *,
    executor: Executor | None = None,
    hold_interrupts_after_commit: bool = False,
) -> ExportResult:
    """Export every recording of ``config`` into one sharded dataset; see the module docstring.

    ``executor`` runs the tasks (default: from ``config``; it is then started and
    stopped here). ``hold_interrupts_after_commit`` keeps SIGINT held back once the
    dataset is committed, until :func:`release_interrupts`: a command line reports its
    success, never an interrupt after it.
    """
    return _export(config, None, executor, hold_interrupts_after_commit)


def _export(
    config: ExportConfig,
    plans: list[RecordingPlan] | None,
    executor: Executor | None,
    hold_after_commit: bool = False,
    dry_run: bool = False,
) -> Any:
    started = time.perf_counter()
    output = config.output
    stem = config.stem
    if isinstance(output, str):  # a URL: toile.storage checks the bucket, writes nothing
        from toile.storage.output import inspect_output

        previous, interrupted = inspect_output(output, stem, config.storage_options)
    else:
        _check_output(output)
        previous = [p.name for p in existing_outputs(output, stem)]
        interrupted = staging_dir(output, stem).is_dir()
    if previous and not (config.overwrite or config.resume):
        raise OutputError(
            f"{output}: already holds a dataset named {stem!r} ({previous[0]}, ...); "
            "use --overwrite to replace it or --stem to choose another name"
        )
    if config.resume and not interrupted:
        # Checked before planning, so that nothing (not even OUTPUT) is created.
        raise ConfigError(f"{output}: nothing to resume (no interrupted export found)")
    if interrupted and not (config.resume or config.overwrite):
        raise OutputError(
            f"{output}: holds the complete shards of an interrupted export of {stem!r} "
            f"({staging_name(stem)}); rerun with --resume to continue it, or with "
            "--overwrite to start over"
        )
    skipped: list[dict] = []
    options = ConvertOptions(
        encoding=config.format,
        compressed=config.compressed,
        to_uint8=config.to_uint8,
        uint8_range=config.uint8_range,
        channel=config.channel,
    )
    if config.to_uint8:
        from toile.normalize import parse_uint8_range

        parse_uint8_range(config.uint8_range)
    if plans is None:
        plans = plan_recordings(config, skipped)
    token = uuid.uuid4().hex[:12]
    try:
        return _Export(config, plans, options, skipped, token, hold_after_commit).run(
            executor, started, dry_run
        )
    finally:
        samples.forget(token)
        for plan in plans:
            plan.close()


class _Export:
    """One export's state while it runs (driver side)."""

    def __init__(
        self,
        config: ExportConfig,
        plans: list[RecordingPlan],
        options: ConvertOptions,
        skipped: list[dict],
        token: str,
        hold_after_commit: bool,
    ) -> None:
        self.config = config
        self.plans = plans
        self.options = options
        self.skipped = skipped
        self.token = token
        self.hold_after_commit = hold_after_commit
        self.output, self.staging = output_storages(
            config.output, config.stem, config.storage_options
        )
        self.journal = Journal(self.staging)
        self.versions = byte_versions()
        self.jobs: dict[int, RecordingJob] = {
            p.recording_index: p.job(config.channel, token) for p in plans
        }
        self.done: dict[int, ShardInfo] = {}
        self.streamed = False
        self.bar: Any = _NoProgress()
        self.log_recordings = False
        #: Frames of each recording in the shards accepted so far.
        self.written: dict[int, int] = {}

    # -- phases --------------------------------------------------------------------

    def run(self, executor: Executor | None, started: float, dry_run: bool = False) -> Any:
        config = self.config
        if not self.plans:
            raise InputError(
                ", ".join(config.inputs),
                "no recording could be read" if self.skipped else "no recordings",
            )
        check_sample_sizes(self.plans, self.options, config.shard_size)
        mixed = mixed_shapes_warning(
            [
                {"frame_shape": p.frame_shape, "dtype": "uint8" if config.to_uint8 else p.dtype}
                for p in self.plans
            ]
        )
        if mixed is not None:
            log.warning("%s", mixed)
        output_options = _output_options(config)
        self.fingerprint = _fingerprint(output_options, self.plans, self.skipped)
        journaled: dict[int, ShardInfo] = {}
        if config.resume:
            journaled = self._resume_state()
        own = executor is None
        #: One pass in this process (no measuring pass): see toile.export.stream.
        self.streamed = (
            own
            and not dry_run
            and not config.resume
            and (config.compressed or config.to_uint8)
            and config.executor in (None, "inline")
        )
        if executor is None:
            workers = 1 if self.streamed else choose_workers(config, self.plans)
            executor = make_executor(config, workers)
        log.info("running on the %s", executor.describe())
        show = config.progress if config.progress is not None else sys.stderr.isatty()
        # Without a terminal a bar's redraws would be \r-joined into the log: with
        # --verbose, one plain line per recording written instead.
        self.log_recordings = not show and log.isEnabledFor(logging.INFO)
        passes = 1 + int(config.to_uint8) + int(config.compressed and not self.streamed)
        self.bar = _progress_bar(sum(p.n_frames for p in self.plans) * passes, show)
        try:
            with executor if own else contextlib.nullcontext(executor):
                if executor.in_process and self.plans[0].opened is not None:
                    samples.adopt(self.jobs[self.plans[0].recording_index], self.plans[0].opened)
                    self.plans[0].opened = None
                if dry_run:
                    report = self._plan_only(executor)
                    self.bar.close()
                    return report
                try:
                    shards = self._write(executor, journaled)
                except BaseException:
                    self._drop_partial_files()
                    raise
            self.bar.close()
            plans = [p for p in self.plans if p.recording_index in self.jobs]
            manifest = build_manifest(
                config, output_options, plans, shards, self.skipped, self.versions
            )
            manifest_path = self._commit(shards, manifest)
        except (KeyboardInterrupt, Stopped):
            self.bar.close()
            _, done = self.journal.read()
            raise ExportInterrupted(
                len(done),
                sum(s.samples for s in done.values()),
                self.staging.url,
            ) from None
        except TaskFailure as failure:
            self.bar.close()
            self.staging.remove_all()
            raise failure.rebuild() from None
        except Exception:
            self.bar.close()
            # A failed export leaves nothing behind; only an interrupted one is kept for --resume.
            self.staging.remove_all()
            raise
        except BaseException:
            self.bar.close()
            raise
        return ExportResult(
            output=config.output,
            manifest_path=manifest_path,
            shards=shards,
            recordings=len(plans),
            frames=sum(s.samples for s in shards),
            bytes=sum(s.size for s in shards),
            seconds=time.perf_counter() - started,
            skipped=self.skipped,
        )

    def _write(self, executor: Executor, journaled: dict[int, ShardInfo]) -> list[ShardInfo]:
        if self.streamed:
            return self._stream()
        if self.options.to_uint8:
            self._stats(executor)
        sizes = self._measure(executor)
        self._prepare()
        if not self.config.resume:
            self.staging.remove_all()
        self.staging.ensure()
        self.done = journaled
        first = True
        while True:
            layout = plan_shards(
                [sizes[i] for i in sorted(sizes) if i in self.jobs],
                max_size=self.config.shard_size,
                overhead=shard_overhead(self.config.compressed),
                stem=self.config.stem,
                compressed=self.config.compressed,
            )
            self._reconcile(layout, verify=first and self.config.resume)
            if first:
                self.bar.update(sum(s.samples for s in self.done.values()))
                first = False
            if self._assemble(executor, layout):
                return [self.done[s.index] for s in layout]

    def _prepare(self) -> None:
        if isinstance(self.config.output, str):
            self.output.ensure()
        else:
            _prepare_output(self.config.output)

    def _stream(self) -> list[ShardInfo]:
        """Map, pack and write every sample in one pass on a pool of threads of this process."""
        from concurrent.futures import ThreadPoolExecutor

        threads = stream_threads(self.config.workers, sum(p.n_frames for p in self.plans))
        log.info("deflating and mapping on %d thread(s) of this process, in one pass", threads)
        with ThreadPoolExecutor(threads, thread_name_prefix="toile-pack") as pool:
            if self.options.to_uint8:
                for index, job in list(self.jobs.items()):
                    try:
                        mapping = uint8_mapping(job, self.options)
                    except ToileError as error:
                        self._skip_or_raise(RecordingFailed(job.recording_index, error))
                        continue
                    self.jobs[index] = job.with_mapping(mapping)
                    self.bar.update(job.n_frames)
            self._prepare()
            while True:
                self.staging.remove_all()
                self.staging.ensure()
                self.done, self.written = {}, {}
                self.journal.start(self.fingerprint, {})
                writer = StreamedShards(
                    self.staging,
                    stem=self.config.stem,
                    max_size=self.config.shard_size,
                    compressed=self.config.compressed,
                    on_shard=self._accept_streamed,
                )
                jobs = [self.jobs[i] for i in sorted(self.jobs)]
                try:
                    stream_shards(jobs, self.options, writer, pool, threads)
                except RecordingFailed as failure:
                    # skipped: the layout after it changes, so every shard is written again
                    self._skip_or_raise(failure)
                    continue
                return [self.done[i] for i in sorted(self.done)]

    def _skip_or_raise(self, failure: RecordingFailed) -> None:
        if not self._skip(TaskFailure.wrap(failure.error, failure.recording)):
            raise failure.error

    def _accept_streamed(self, shard: PlannedShard, info: ShardInfo) -> None:
        self.done[shard.index] = info
        self.journal.append(shard.index, info)
        self.bar.update(info.samples)
        self._log_written(shard)

    def _plan_only(self, executor: Executor) -> DryRun:
        """Everything a run does before its first shard, then the plan instead of shards."""
        if self.options.to_uint8:
            self._stats(executor)
        sizes = self._measure(executor)
        config = self.config
        layout = plan_shards(
            [sizes[i] for i in sorted(sizes) if i in self.jobs],
            max_size=config.shard_size,
            overhead=shard_overhead(config.compressed),
            stem=config.stem,
            compressed=config.compressed,
        )
        return DryRun(
            output=config.output,
            stem=config.stem,
            encoding=config.format,
            compressed=config.compressed,
            shard_size=config.shard_size,
            recordings=[
                recording_summary(p, config.to_uint8, self.jobs[p.recording_index].mapping)
                for p in self.plans
                if p.recording_index in self.jobs
            ],
            shards=[(s.name, s.samples, s.size) for s in layout],
            skipped=self.skipped,
        )

    def _stats(self, executor: Executor) -> None:
        jobs = [
            Job(f"toile-stats-{self.token}-{index}", (job, self.options, self.versions))
            for index, job in self.jobs.items()
        ]
        for job, mapping in self._results(executor, stats_task, jobs):
            recording = job.args[0]
            self.jobs[recording.recording_index] = recording.with_mapping(mapping)
            self.bar.update(recording.n_frames)

    def _measure(self, executor: Executor) -> dict[int, SampleSizes]:
        jobs = []
        for index, job in self.jobs.items():
            for start, stop in measure_chunks(job, self.options.compressed):
                jobs.append(
                    Job(
                        f"toile-measure-{self.token}-{index}-{start}",
                        (job, self.options, start, stop, self.versions),
                    )
                )
        parts: dict[int, dict[int, tuple]] = {}
        for job, runs in self._results(executor, measure_task, jobs):
            recording, _, start, stop, _ = job.args
            parts.setdefault(recording.recording_index, {})[start] = runs
            if self.options.compressed:
                self.bar.update(stop - start)
        return {
            index: join_sizes(self.jobs[index], [chunks[s] for s in sorted(chunks)])
            for index, chunks in parts.items()
            if index in self.jobs
        }

    def _assemble(self, executor: Executor, layout: list[PlannedShard]) -> bool:
        """Write the layout's missing shards; False when a recording was skipped (replan)."""
        staging = self.staging
        jobs = []
        for shard in layout:
            if shard.index in self.done:
                continue
            recordings = tuple(self.jobs[r.recording] for r in shard.ranges)
            task = ShardTask(shard, recordings, self.options, staging, self.versions)
            jobs.append(Job(f"toile-shard-{self.token}-{shard.index:06d}", (task,)))
        planned = {s.index: s for s in layout}
        for _job, done in self._results(executor, assemble, jobs, replan=True):
            if done is None:
                return False
            self._accept(planned[done.index], done)
        return True

    def _accept(self, shard: PlannedShard, done: ShardDone) -> None:
        info = done.info
        if done.versions != self.versions:
            raise OutputError(
                f"{shard.name}: written on {done.host} with {done.versions}, but the driver "
                f"runs {self.versions}: install the same versions everywhere"
            )
        if (info.name, info.size, info.samples, info.first_key, info.last_key) != (
            shard.name,
            shard.size,
            shard.samples,
            shard.first_key,
            shard.last_key,
        ):
            raise OutputError(f"{shard.name}: the shard written differs from the plan ({info})")
        earlier = self.done.get(shard.index)
        if earlier is not None:
            if earlier.sha256 != info.sha256:
                raise OutputError(
                    f"{shard.name}: two runs of the same shard gave different bytes "
                    f"({earlier.sha256} and {info.sha256})"
                )
            return
        self.done[shard.index] = info
        self.journal.append(shard.index, info)
        self.bar.update(info.samples)
        self._log_written(shard)

    def _log_written(self, shard: PlannedShard) -> None:
        """One plain log line when all of a recording's frames are in accepted shards."""
        if not self.log_recordings:
            return
        for part in shard.ranges:
            written = self.written.get(part.recording, 0) + part.count
            self.written[part.recording] = written
            job = self.jobs.get(part.recording)
            if job is not None and written == job.n_frames:
                log.info(
                    "recording %d: %s: %d frame(s) written", part.recording, job.label, written
                )

    def _results(
        self,
        executor: Executor,
        function: Callable[..., Any],
        jobs: list[Job],
        replan: bool = False,
    ) -> Iterator[tuple[Job, Any]]:
        """Results of ``jobs``; a bad recording is skipped with ``--on-error skip``.

        When ``replan``, a skipped recording ends the iteration with ``(job, None)``:
        the layout changes and the shards after it must be planned again.
        """
        results = executor.run(function, jobs)
        try:
            for job, value in results:
                if not isinstance(value, Failed):
                    yield job, value
                    continue
                error = value.error
                if isinstance(error, Stopped):
                    raise error
                if not isinstance(error, TaskFailure):
                    raise error
                if not self._skip(error):
                    raise error.rebuild()
                if replan:
                    yield job, None
                    return
        finally:
            close = getattr(results, "close", None)
            if close is not None:
                close()

    def _skip(self, failure: TaskFailure) -> bool:
        """Skip the recording ``failure`` belongs to, when it is a bad one and skipping is on."""
        index = failure.recording
        if self.config.on_error != "skip" or failure.kind != "InputError" or index is None:
            return False
        job = self.jobs.pop(index, None)
        if job is None:
            return True
        error = failure.rebuild()
        log.warning("skipped %s: %s", job.label, error)
        self.skipped.append({"source": job.label, "error": str(error)})
        self.bar.update(job.n_frames)
        if not self.jobs:
            raise InputError(", ".join(self.config.inputs), "no recording could be read")
        return True

    # -- staging and resume -----------------------------------------------------------

    def _resume_state(self) -> dict[int, ShardInfo]:
        """The journaled shards of an interrupted run with the same fingerprint (unverified)."""
        if not self.staging.is_dir():
            raise ConfigError(
                f"{self.config.output}: nothing to resume (no interrupted export found)"
            )
        recorded, shards = self.journal.read()
        if recorded is None:
            raise ConfigError(f"{self.journal.path}: the resume journal is missing or unreadable")
        if recorded != self.fingerprint:
            raise ConfigError(
                f"{self.config.output}: the interrupted export used other inputs or options; "
                "rerun it with the same ones, or start over with --overwrite"
            )
        return shards

    def _reconcile(self, layout: list[PlannedShard], verify: bool) -> None:
        """Keep the complete shards the layout still plans (checked when resuming); drop the rest."""
        planned = {s.index: s for s in layout}
        kept: dict[int, ShardInfo] = {}
        for index, info in sorted(self.done.items()):
            shard = planned.get(index)
            matches = shard is not None and (
                info.name,
                info.size,
                info.samples,
                info.first_key,
                info.last_key,
            ) == (shard.name, shard.size, shard.samples, shard.first_key, shard.last_key)
            if matches and verify:
                matches = (
                    self.staging.size(info.name) == info.size
                    and self.staging.sha256(info.name) == info.sha256
                )
                if not matches:
                    log.warning(
                        "resume: %s is damaged; it will be written again",
                        self.staging.url_of(info.name),
                    )
            if matches:
                kept[index] = info
        keep = {info.name for info in kept.values()} | {JOURNAL_NAME}
        for name in self.staging.list():
            if name not in keep:
                self.staging.remove(name)
        self.done = kept
        self.journal.start(self.fingerprint, kept)
        if verify:
            log.info(
                "resume: keeping %d complete shard(s), %d frame(s)",
                len(kept),
                sum(s.samples for s in kept.values()),
            )

    def _drop_partial_files(self) -> None:
        """Remove temporary files that stopped tasks left (complete shards stay)."""
        from toile.names import is_temporary

        for name in self.staging.list():
            if is_temporary(name):
                self.staging.remove(name)

    # -- commit -------------------------------------------------------------------------

    def _commit(self, shards: list[ShardInfo], manifest: dict) -> Path:
        """Move the staged shards into place, drop stale ones, write the manifest.

        The manifest is written (and flushed) in the staging directory first, so a
        full disk fails the export before anything in the output is replaced. SIGINT
        is held back meanwhile: the commit happens whole or not at all.
        """
        stem = self.config.stem
        name = manifest_name(stem)
        with _interrupts_held(self.hold_after_commit):
            self.staging.write_text(name, manifest_text(manifest))
            card = card_for(self.output, manifest, name)
            if card is not None:
                self.staging.write_text(CARD_NAME, card)
            new_names = {s.name for s in shards}
            for info in shards:
                self.staging.move_to(info.name, self.output)
            if card is not None:
                self.staging.move_to(CARD_NAME, self.output)
            self.staging.move_to(name, self.output)
            # Stale shards go only once the new manifest is in place (an object store
            # cannot replace both at once): at worst an unlisted shard is left over.
            for stale in self.output.list():
                if is_shard_of(stale, stem) and stale not in new_names:
                    self.output.remove(stale)
            self.staging.remove_all()
            self.output.sync()
        if isinstance(self.config.output, str):
            return self.output.url_of(name)  # type: ignore[return-value]
        return self.config.output / name


#: The SIGINT handler to put back by :func:`release_interrupts` (None: nothing held).
_held_previous: Any = None


@contextlib.contextmanager
def _interrupts_held(keep_after: bool) -> Iterator[None]:
    """Hold SIGINT back while the block runs (main thread only); log one that arrived.

    With ``keep_after``, SIGINT stays held after a successful block, until
    :func:`release_interrupts`: the command line reports its success first.
    """
    global _held_previous
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []

    def hold(signum: int, frame: object) -> None:
        arrived.append(signum)

    previous = signal.signal(signal.SIGINT, hold)
    succeeded = False
    try:
        yield
        succeeded = True
    finally:
        if succeeded and keep_after:
            _held_previous = previous
        else:
            signal.signal(signal.SIGINT, previous)
        if arrived:
            log.warning(
                "interrupted while the dataset was committed; the commit %s",
                "completed: the export succeeded" if succeeded else "failed",
            )


def release_interrupts(ignore: bool = False) -> None:
    """End the hold of ``export_frames(..., hold_interrupts_after_commit=True)``.

    SIGINT gets its handler back, or with ``ignore`` is ignored from now on: a program
    that is about to exit after its success (Python resets its own handlers while it
    shuts down, so a late Ctrl-C would otherwise still kill it).
    """
    global _held_previous
    if _held_previous is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN if ignore else _held_previous)
    _held_previous = None


# --------------------------------------------------------------------------------------
# Synthetic datasets


def export_test_frames(
    output: str | Path,
    *,
    stem: str | None = None,
    compressed: bool = False,
    frames: int = 300,
    height: int = 256,
    width: int = 256,
    channels: int = 1,
    dtype: str = "uint16",
    seed: int = 0,
    recordings: int = 1,
    shard_size: int | None = None,
    pds: bool = False,
    format: str = "npy",
    to_uint8: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
    workers: int | None = 1,
    executor: str | None = None,
    scheduler: str | None = None,
    scheduler_file: str | None = None,
) -> ExportResult:
    """Write a synthetic calcium-imaging dataset with the same layout as ``export frames``."""
    from toile.config import make_config
    from toile.formats.synthetic import synthetic_source
    from toile.synthetic import MovieSpec

    config = make_config(
        [f"synthetic:seed={seed}"],
        output,
        stem=stem,
        shard_size=shard_size,
        pds=pds,
        compressed=compressed,
        format=format,
        to_uint8=to_uint8,
        overwrite=overwrite,
        workers=workers,
        progress=progress,
        executor=executor,
        scheduler=scheduler,
        scheduler_file=scheduler_file,
    )
    plans = []
    for index in range(recordings):
        spec = MovieSpec(
            frames=frames,
            height=height,
            width=width,
            channels=channels,
            dtype=dtype,
            seed=seed + index,
        )
        source = synthetic_source(spec)
        with open_source(source) as recording:
            plans.append(plan_of(recording, index, source.name, source, {}))
        log.info(
            "recording %d: %s (synthetic), %d frame(s) of %s %s",
            index,
            source.name,
            frames,
            "x".join(str(n) for n in recording.frame_shape),
            dtype,
        )
    return _export(config, plans, None)
