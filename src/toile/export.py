"""The export pipeline: recordings in, shards and a manifest out.

Flow: resolve inputs -> plan (open every recording's metadata, parse filename
fields, catch bad inputs before anything is written) -> convert recordings
(in this process, or in worker processes that each write a temporary segment
of packed samples) -> one :class:`~toile.shards.ShardWriter` in recording
order -> commit.

All shards are first written into a hidden staging directory inside the
output directory, next to a journal of completed shards; only when the whole
export has succeeded are they renamed into place, stale shards of an earlier
run removed and the manifest written. An interrupted export therefore never
damages earlier output, and ``resume=True`` picks up from the journal.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toile import __version__
from toile.config import ExportConfig
from toile.encode import SampleEncoder, dump_json, frame_digits, sample_key
from toile.errors import ConfigError, InputError, OutputError, ToileError
from toile.formats import Recording, Source, open_source
from toile.logs import configure_logging, logging_state
from toile.shards import PackedSample, ShardInfo, ShardWriter, pack_sample, shard_url_pattern

log = logging.getLogger(__name__)

MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_FORMAT = 1
JOURNAL_NAME = "journal.jsonl"
#: Below this many pixel bytes in all, worker processes cost more (start-up) than they save.
PARALLEL_MIN_BYTES = 64 * 1024 * 1024


def manifest_name(stem: str) -> str:
    return f"{stem}{MANIFEST_SUFFIX}"


def staging_dir(output: Path, stem: str) -> Path:
    return output / f".{stem}.staging"


# --------------------------------------------------------------------------------------
# Recordings, opened through the format registry (toile.formats)


@dataclass(frozen=True)
class ConvertOptions:
    """The options that change a recording's samples."""

    encoding: str = "npy"
    compressed: bool = False
    to_uint8: bool = False
    uint8_range: str = "max"
    channel: str | int | None = None


@dataclass
class RecordingPlan:
    """One recording to export, as found by the planning pass."""

    recording_index: int
    label: str
    source: Source
    fields: dict = field(default_factory=dict)
    n_frames: int = 0
    frame_shape: tuple[int, ...] = ()
    dtype: str = ""
    metadata: dict = field(default_factory=dict)
    #: The recording the planning pass opened, kept for the first recording so that
    #: a single-recording export parses its file once. Never sent to workers.
    opened: Recording | None = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["opened"] = None
        return state

    def close(self) -> None:
        if self.opened is not None:
            self.opened.close()
            self.opened = None


def _open(plan: RecordingPlan, channel: str | int | None) -> Recording:
    if plan.opened is not None:
        recording, plan.opened = plan.opened, None
        return recording
    return open_source(plan.source, channel=channel)


def _movie_metadata(plan: RecordingPlan, recording: Recording) -> dict:
    metadata = dict(recording.metadata)
    metadata["recording_index"] = plan.recording_index
    metadata.update(plan.fields)
    return metadata


def iter_packed(
    plan: RecordingPlan, options: ConvertOptions, start_frame: int = 0, threads: int = 1
) -> Iterator[PackedSample]:
    """Packed samples of one recording, in frame order, from ``start_frame`` on.

    With ``threads`` > 1, compressed samples are encoded (mapped to uint8 if asked, and
    deflated) on that many threads (see :func:`_encode_in_threads`), still yielded in
    frame order.
    """
    with _open(plan, options.channel) as recording:
        normalization = None
        mapping = None
        if options.to_uint8:
            from toile.normalize import RangeStats, parse_uint8_range

            shape = recording.frame_shape
            stats = RangeStats(
                parse_uint8_range(options.uint8_range),
                recording.dtype,
                shape[0] if len(shape) == 3 else 1,
                source=plan.label,
            )
            # one buffer for the whole pass, and no per-frame metadata
            scratch = np.empty(shape, recording.dtype)
            for index in range(recording.n_frames):
                stats.update(recording.read_frame(index, out=scratch))
            mapping = stats.finish()
            normalization = mapping.metadata()
        encoder = SampleEncoder(options.encoding, _movie_metadata(plan, recording), normalization)
        digits = frame_digits(recording.n_frames)
        frames = (
            (i, recording.read_frame(i), recording.frame_metadata(i))
            for i in range(start_frame, recording.n_frames)
        )

        def encode(index: int, image: np.ndarray, frame_metadata: dict) -> PackedSample:
            if mapping is not None:
                image = mapping.apply(image)
            key = sample_key(plan.recording_index, index, digits)
            return pack_sample(key, encoder.members(key, image, frame_metadata), options.compressed)

        if threads > 1 and options.compressed:
            yield from _encode_in_threads(encode, frames, threads)
        else:
            for frame in frames:
                yield encode(*frame)


def _encode_in_threads(
    encode: Callable[..., PackedSample], frames: Iterator[tuple], threads: int
) -> Iterator[PackedSample]:
    """``encode`` each frame on ``threads`` threads; yield the samples in frame order.

    Deflate (ISA-L) and the uint8 mapping (numpy) release the GIL, so a single
    recording's CPU-heavy encoding spreads over cores; frames are read in order by the
    caller, and each frame's array is its own.
    """
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    pending: deque[Future] = deque()
    with ThreadPoolExecutor(threads, thread_name_prefix="toile-encode") as pool:
        try:
            for frame in frames:
                pending.append(pool.submit(encode, *frame))
                if len(pending) >= 2 * threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


#: In a worker process: set by the main process when the export stops (Ctrl-C, an error).
_worker_stop: Any = None


class _Stopped(Exception):
    """A worker dropped its recording because the export is stopping."""


def _write_segment(
    plan: RecordingPlan, options: ConvertOptions, path: Path, start_frame: int
) -> list[tuple[str, int, int, int]]:
    """Worker side: pack a whole recording into a segment file; return each sample's sizes."""
    rows = []
    try:
        with open(path, "wb", buffering=0) as segment:
            for sample in iter_packed(plan, options, start_frame):
                if _worker_stop is not None and _worker_stop.is_set():
                    raise _Stopped(plan.label)
                for chunk in sample.chunks:
                    _write_fully(segment, chunk)
                rows.append((sample.key, sample.size, sample.raw_size, sample.crc32))
    except OSError as error:
        raise OutputError(f"{path}: write failed: {error.strerror or error}") from error
    return rows


def _write_fully(handle: Any, chunk: Any) -> None:
    """Write all of ``chunk`` to an unbuffered file (``write`` may write only part of it)."""
    view = memoryview(chunk).cast("B")
    while view.nbytes:
        view = view[handle.write(view) :]


def _read_segment(
    path: Path, rows: list[tuple[str, int, int, int]], compressed: bool
) -> Iterator[PackedSample]:
    with open(path, "rb", buffering=0) as segment:
        for key, size, raw_size, crc in rows:
            data = bytearray(size)
            view = memoryview(data)
            got = 0
            while got < size:
                n = segment.readinto(view[got:])
                if not n:
                    raise OutputError(f"{path}: temporary segment is truncated")
                got += n
            yield PackedSample(key, [data], size, raw_size, crc, compressed)


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


# --------------------------------------------------------------------------------------
# Output directory handling


def existing_outputs(output: Path, stem: str) -> list[Path]:
    """Shards and manifest of an earlier export with this stem."""
    if not output.is_dir():
        return []
    found = [
        p
        for p in output.iterdir()
        if p.name == manifest_name(stem)
        or (
            p.name.startswith(f"{stem}-")
            and (p.name.endswith(".tar") or p.name.endswith(".tar.gz"))
            and p.name[len(stem) + 1 :].split(".")[0].isdigit()
        )
    ]
    return sorted(found)


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


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{path}: cannot write: {error.strerror or error}") from error


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------
# Journal (resume)


class Journal:
    """Append-only record of completed shards in the staging directory."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def start(self, fingerprint: str) -> None:
        _atomic_write_text(self.path, dump_json({"fingerprint": fingerprint}) + "\n")

    def append(self, info: ShardInfo, samples_before: int) -> None:
        line = dump_json({**info.to_dict(), "samples_before": samples_before}) + "\n"
        try:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as error:
            raise OutputError(f"{self.path}: cannot write: {error.strerror or error}") from error

    def read(self) -> tuple[str | None, list[ShardInfo]]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except OSError:
            return None, []
        fingerprint = None
        shards: list[ShardInfo] = []
        for number, line in enumerate(lines):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                break  # a torn last line from a crash
            if number == 0:
                fingerprint = record.get("fingerprint")
                continue
            record.pop("samples_before", None)
            try:
                shards.append(ShardInfo(**record))
            except TypeError:
                break
        return fingerprint, shards


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _fingerprint(config_options: dict, plans: list[RecordingPlan], skipped: list[dict]) -> str:
    files = []
    for plan in plans:
        if plan.source is None:
            continue
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


# --------------------------------------------------------------------------------------
# The pipeline


@dataclass
class _Run:
    """Shared state of one export while it writes."""

    output: Path
    stem: str
    staging: Path
    options: ConvertOptions
    shard_size: int
    workers: int
    progress: Callable[[int], None]
    journal: Journal
    #: Called with (position, count) when a recording starts being written.
    recording: Callable[[int, int], None] = lambda position, count: None
    samples_written: int = 0
    #: Threads that deflate samples of the recording being written (``--compressed``).
    threads: int = 1


def _write_all(
    run: _Run,
    plans: list[RecordingPlan],
    skip_samples: int,
    start_shard: int,
    on_error: str,
    skipped: list[dict],
) -> list[ShardInfo]:
    """Convert every recording in order into shards in the staging directory."""

    def on_shard(info: ShardInfo) -> None:
        run.journal.append(info, run.samples_written - info.samples)

    writer = ShardWriter(
        run.staging,
        run.stem,
        run.shard_size,
        compressed=run.options.compressed,
        start_index=start_shard,
        on_shard=on_shard,
    )
    run.samples_written = skip_samples
    # Which frame of which recording each plan starts at, after the resume skip.
    starts: list[int] = []
    remaining = skip_samples
    for plan in plans:
        start = min(remaining, plan.n_frames)
        starts.append(start)
        remaining -= start
    todo = [
        (plan, start) for plan, start in zip(plans, starts, strict=True) if start < plan.n_frames
    ]
    run.progress(sum(starts))

    pixel_bytes = sum(
        (plan.n_frames - start) * int(np.prod(plan.frame_shape)) * np.dtype(plan.dtype).itemsize
        for plan, start in todo
    )
    # Workers pay off where encoding costs CPU (deflate, the uint8 statistics pass). A plain
    # export is a copy bounded by the disk and the shard's SHA-256, which the main process
    # already overlaps on a second thread: passing the bytes through workers only adds work.
    cpu_heavy = run.options.compressed or run.options.to_uint8
    parallel = run.workers > 1 and len(todo) > 1 and cpu_heavy and pixel_bytes >= PARALLEL_MIN_BYTES
    if not parallel:
        # One process; deflating still spreads over threads (one long recording). The uint8
        # mapping alone does not pay for them: measured slower on 2 cores.
        run.threads = run.workers if run.options.compressed else 1
        run.workers = 1
    use_segments = on_error == "skip" or parallel
    failed: list[RecordingPlan] = []
    try:
        if not use_segments:
            for position, (plan, start) in enumerate(todo):
                run.recording(position, len(todo))
                for sample in iter_packed(plan, run.options, start, run.threads):
                    writer.add(sample, f"{plan.label}: frame {sample.key}")
                    run.samples_written += 1
                    run.progress(1)
        else:
            _write_via_segments(run, writer, todo, on_error, skipped, failed)
        shards = writer.close()
    except BaseException:
        writer.abort()
        raise
    for plan in failed:
        plans.remove(plan)
    return shards


def _write_via_segments(
    run: _Run,
    writer: ShardWriter,
    todo: list[tuple[RecordingPlan, int]],
    on_error: str,
    skipped: list[dict],
    failed: list[RecordingPlan],
) -> None:
    workers = min(run.workers, len(todo))
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn") if workers > 1 else None
    stop = context.Event() if context else None
    pool = (
        ProcessPoolExecutor(
            max_workers=workers,
            mp_context=context,
            initializer=_worker_init,
            initargs=(stop, logging_state()),
        )
        if context
        else None
    )
    pending: list[tuple[RecordingPlan, Path, Future | None, int]] = []

    def submit(plan: RecordingPlan, start: int) -> None:
        path = run.staging / f"segment-{plan.recording_index:06d}.bin"
        future = pool.submit(_write_segment, plan, run.options, path, start) if pool else None
        pending.append((plan, path, future, start))

    queue = list(todo)
    try:
        while queue or pending:
            while queue and len(pending) < workers + 1:
                submit(*queue.pop(0))
            plan, path, future, start = pending.pop(0)
            run.recording(len(todo) - len(queue) - len(pending) - 1, len(todo))
            try:
                rows = (
                    future.result()
                    if future is not None
                    else _write_segment(plan, run.options, path, start)
                )
            except ToileError as error:
                path.unlink(missing_ok=True)
                # Only a bad recording is skipped; a write failure (disk full) stops the export.
                if on_error != "skip" or not isinstance(error, InputError):
                    raise
                log.warning("skipped %s: %s", plan.label, error)
                skipped.append({"source": plan.label, "error": str(error)})
                failed.append(plan)
                run.progress(plan.n_frames - start)
                continue
            for sample in _read_segment(path, rows, run.options.compressed):
                writer.add(sample, f"{plan.label}: frame {sample.key}")
                run.samples_written += 1
                run.progress(1)
            path.unlink(missing_ok=True)
    except BaseException:
        if stop is not None:
            stop.set()  # the workers drop their recordings at the next frame
        raise
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        for path in run.staging.glob("segment-*.bin"):
            path.unlink(missing_ok=True)


def _worker_init(stop: Any, verbose: bool | None) -> None:
    """Set up a worker process.

    Logging is configured as in the main process (``verbose`` is None when it
    was left alone). Ctrl-C is left to the main process, which stops the
    workers through ``stop`` (terminating them could cut a result message in
    half and hang the pool). A worker whose main process was killed exits at once.
    """
    global _worker_stop
    if verbose is not None:
        configure_logging(verbose)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker_stop = stop
    import multiprocessing

    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent.sentinel,), daemon=True).start()


def _exit_with(sentinel: int) -> None:
    import multiprocessing.connection

    multiprocessing.connection.wait([sentinel])
    os._exit(1)


def _plan_recordings(
    config: ExportConfig, on_error: str, skipped: list[dict]
) -> list[RecordingPlan]:
    from toile.formats import discover

    sources = discover(list(config.inputs), config.base_dir)
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
            plan = RecordingPlan(
                recording_index=len(plans),
                label=label,
                source=source,
                fields=fields,
                n_frames=recording.n_frames,
                frame_shape=tuple(recording.frame_shape),
                dtype=np.dtype(recording.dtype).name,
                metadata=dict(recording.metadata),
            )
            if plans:
                recording.close()
            else:
                plan.opened = recording
        except ToileError as error:
            if on_error != "skip":
                raise
            log.warning("skipped %s: %s", label, error)
            skipped.append({"source": label, "error": str(error)})
            continue
        plan.metadata["recording_index"] = plan.recording_index
        plan.metadata.update(plan.fields)
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


def _check_sample_sizes(
    plans: list[RecordingPlan], config_options: ConvertOptions, shard_size: int
) -> None:
    """Refuse, before writing, a frame that cannot fit in one shard even uncompressed."""
    if config_options.compressed:
        return
    from toile.shards import shard_overhead

    capacity = shard_size - shard_overhead(False)
    for plan in plans:
        itemsize = 1 if config_options.to_uint8 else np.dtype(plan.dtype).itemsize
        pixels = int(np.prod(plan.frame_shape)) if plan.frame_shape else 0
        # Two tar headers plus the pixel bytes is a lower bound of a sample's size.
        lower_bound = 2 * 512 + pixels * itemsize
        if lower_bound > capacity:
            raise OutputError(
                f"{plan.label}: frame 0 takes at least {lower_bound} bytes, more than the shard "
                f"size limit of {shard_size} bytes allows; raise --shard-size"
            )


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
        "filename_spec": None
        if spec is None
        else {"template": spec.template, "transforms": dict(spec.transforms)},
    }


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

    return tqdm(
        total=total,
        unit="frame",
        file=sys.stderr,
        dynamic_ncols=True,
        mininterval=0.5,
        desc="export",
    )


def export_frames(config: ExportConfig) -> ExportResult:
    """Export every recording of ``config`` into one sharded dataset; see the module docstring."""
    return _export(config, plans=None)


def _export(config: ExportConfig, plans: list[RecordingPlan] | None) -> ExportResult:
    started = time.perf_counter()
    output = config.output
    stem = config.stem
    _check_output(output)
    staging = staging_dir(output, stem)
    previous = existing_outputs(output, stem)
    if previous and not (config.overwrite or config.resume):
        raise OutputError(
            f"{output}: already holds a dataset named {stem!r} ({previous[0].name}, ...); "
            "use --overwrite to replace it or --stem to choose another name"
        )
    if config.resume and not staging.is_dir():
        # Checked before planning, so that nothing (not even OUTPUT) is created.
        raise ConfigError(f"{output}: nothing to resume (no interrupted export found)")

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
        plans = _plan_recordings(config, config.on_error, skipped)
    try:
        return _export_planned(config, plans, options, skipped, started)
    finally:
        for plan in plans:
            plan.close()


def _export_planned(
    config: ExportConfig,
    plans: list[RecordingPlan],
    options: ConvertOptions,
    skipped: list[dict],
    started: float,
) -> ExportResult:
    output = config.output
    stem = config.stem
    staging = staging_dir(output, stem)
    if not plans:
        raise InputError(
            ", ".join(config.inputs), "no recording could be read" if skipped else "no recordings"
        )
    _check_sample_sizes(plans, options, config.shard_size)
    _prepare_output(output)

    output_options = _output_options(config)
    fingerprint = _fingerprint(output_options, plans, skipped)
    journal = Journal(staging / JOURNAL_NAME)
    kept: list[ShardInfo] = []
    if config.resume:
        kept = _resume_state(staging, journal, fingerprint, config.compressed)
    else:
        shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True, exist_ok=True)
    if not kept:
        journal.start(fingerprint)
    skip_samples = sum(s.samples for s in kept)

    total_frames = sum(p.n_frames for p in plans)
    show = (
        config.progress if config.progress is not None else (sys.stderr.isatty() or config.verbose)
    )
    bar = _progress_bar(total_frames, show)
    run = _Run(
        output=output,
        stem=stem,
        staging=staging,
        options=options,
        shard_size=config.shard_size,
        workers=config.workers,
        progress=bar.update,
        recording=lambda position, count: bar.set_description(
            f"recording {position + 1}/{count}", refresh=False
        ),
        journal=journal,
    )
    try:
        new = _write_all(run, plans, skip_samples, len(kept), config.on_error, skipped)
        bar.close()
        shards = kept + new
        manifest = _manifest(config, output_options, plans, shards, skipped)
        manifest_path = _commit(output, stem, staging, shards, manifest)
    except KeyboardInterrupt:
        bar.close()
        _, done = journal.read()
        raise ExportInterrupted(len(done), sum(s.samples for s in done), staging) from None
    except Exception:
        bar.close()
        # A failed export leaves nothing behind; only an interrupted one is kept for --resume.
        shutil.rmtree(staging, ignore_errors=True)
        raise
    except BaseException:
        bar.close()
        raise
    return ExportResult(
        output=output,
        manifest_path=manifest_path,
        shards=shards,
        recordings=len(plans),
        frames=sum(s.samples for s in shards),
        bytes=sum(s.size for s in shards),
        seconds=time.perf_counter() - started,
        skipped=skipped,
    )


def _resume_state(
    staging: Path, journal: Journal, fingerprint: str, compressed: bool
) -> list[ShardInfo]:
    """Complete shards of an interrupted run that are still intact, in order."""
    if not staging.is_dir():
        raise ConfigError(f"{staging.parent}: nothing to resume (no interrupted export found)")
    recorded, shards = journal.read()
    if recorded is None:
        raise ConfigError(f"{journal.path}: the resume journal is missing or unreadable")
    if recorded != fingerprint:
        raise ConfigError(
            f"{staging.parent}: the interrupted export used other inputs or options; "
            "rerun it with the same ones, or start over with --overwrite"
        )
    kept: list[ShardInfo] = []
    for info in shards:
        path = staging / info.name
        try:
            intact = path.stat().st_size == info.size and _sha256_file(path) == info.sha256
        except OSError:
            intact = False
        if not intact:
            log.warning("resume: %s is damaged; it will be written again", path)
            break
        kept.append(info)
    keep = {s.name for s in kept} | {JOURNAL_NAME}
    for path in staging.iterdir():
        if path.name not in keep:
            path.unlink(missing_ok=True)
    # Rewrite the journal to what is kept, so a torn or stale tail cannot come back.
    journal.start(fingerprint)
    before = 0
    for info in kept:
        journal.append(info, before)
        before += info.samples
    log.info("resume: keeping %d complete shard(s), %d frame(s)", len(kept), before)
    return kept


def _manifest(
    config: ExportConfig,
    output_options: dict,
    plans: list[RecordingPlan],
    shards: list[ShardInfo],
    skipped: list[dict],
) -> dict:
    recordings = []
    for plan in plans:
        digits = frame_digits(plan.n_frames)
        recordings.append(
            {
                "recording_index": plan.recording_index,
                "source": plan.label,
                "name": plan.source.name or plan.label,
                "frames": plan.n_frames,
                "frame_shape": list(plan.frame_shape),
                "dtype": "uint8" if config.to_uint8 else plan.dtype,
                "source_dtype": plan.dtype,
                "first_key": sample_key(plan.recording_index, 0, digits),
                "metadata": plan.metadata,
            }
        )
    return {
        "toile_version": __version__,
        "manifest_format": MANIFEST_FORMAT,
        "stem": config.stem,
        "encoding": config.format,
        "compressed": config.compressed,
        "shard_size_limit": config.shard_size,
        "url_pattern": shard_url_pattern(config.stem, len(shards), config.compressed),
        "options": output_options,
        "shards": [s.to_dict() for s in shards],
        "recordings": recordings,
        "skipped": skipped,
        "totals": {
            "shards": len(shards),
            "samples": sum(s.samples for s in shards),
            "bytes": sum(s.size for s in shards),
            "recordings": len(plans),
            "skipped": len(skipped),
        },
    }


def _commit(
    output: Path, stem: str, staging: Path, shards: list[ShardInfo], manifest: dict
) -> Path:
    """Move the staged shards into place, drop stale ones, write the manifest.

    The manifest is written (and flushed) in the staging directory first, so a
    full disk fails the export before anything in ``output`` is replaced.
    """
    staged_manifest = staging / manifest_name(stem)
    _atomic_write_text(staged_manifest, json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    new_names = {s.name for s in shards}
    for info in shards:
        os.replace(staging / info.name, output / info.name)
    for path in existing_outputs(output, stem):
        if path.name not in new_names and path.name != manifest_name(stem):
            path.unlink(missing_ok=True)
    manifest_path = output / manifest_name(stem)
    os.replace(staged_manifest, manifest_path)
    shutil.rmtree(staging, ignore_errors=True)
    _fsync_dir(output)
    return manifest_path


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
        workers=1,
        progress=progress,
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
            plan = RecordingPlan(
                recording_index=index,
                label=source.name,
                source=source,
                n_frames=recording.n_frames,
                frame_shape=recording.frame_shape,
                dtype=recording.dtype.name,
                metadata=dict(recording.metadata),
            )
        plan.metadata["recording_index"] = index
        plans.append(plan)
    return _export(config, plans=plans)


def result_as_dict(result: ExportResult) -> dict:
    data = asdict(result)
    data["output"] = str(result.output)
    data["manifest_path"] = str(result.manifest_path) if result.manifest_path else None
    return data
