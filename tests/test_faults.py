"""Faults during an export, in real subprocesses: full disk, Ctrl-C, SIGKILL.

A full disk is simulated with ``RLIMIT_FSIZE`` (and SIGXFSZ ignored, so
``write`` fails with EFBIG). Ctrl-C is a SIGINT to the main process, or to the
whole process group as a terminal sends it. SIGKILL leaves no chance to clean
up: what must hold then is that no file under a final shard name is truncated.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

from toile.cli import main
from toile.dataset import verify_dataset
from toile.synthetic import MovieSpec, generate_frames
from toile.writers import write_ome_tiff

SHARD_NAME = re.compile(r"^(?P<stem>.+)-(?P<index>\d{6})\.tar(\.gz)?$")
JOURNAL = "journal.jsonl"


def _frames(n: int, seed: int, side: int = 32) -> np.ndarray:
    return np.stack(list(generate_frames(MovieSpec(frames=n, height=side, width=side, seed=seed))))


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "toile.cli", "export", "frames", *args, "--no-progress"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONFAULTHANDLER": "1"}


def _staging(output: Path, stem: str) -> Path:
    return output / f".{stem}.staging"


def _journal(staging: Path) -> dict[str, dict]:
    """Completed shards recorded in the journal, by name (a torn last line is ignored)."""
    path = staging / JOURNAL
    if not path.exists():
        return {}
    records = {}
    for line in path.read_text().splitlines()[1:]:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            break
        records[record["name"]] = record
    return records


def _decode_fully(path: Path) -> int:
    """Read every member of a tar shard; return the member count (raises if truncated)."""
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)  # raises on a truncated or damaged stream
    assert len(data) % 512 == 0 and data[-1024:] == bytes(1024), f"{path.name}: no tar end"
    count = 0
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar:
            handle = tar.extractfile(member)
            assert handle is not None
            assert len(handle.read()) == member.size
            count += 1
    return count


def _check_no_truncated_shard(output: Path, stem: str) -> int:
    """Every file under a final shard name decodes fully and matches the journal's sha256.

    A shard is renamed into place a moment before its journal line is written, and
    shards finish in any order, so staged shards may be missing from the journal;
    they must still be complete. Returns the number of staged shards in the journal.
    """
    staging = _staging(output, stem)
    journal = _journal(staging)
    staged = (
        sorted(p for p in staging.glob("*") if SHARD_NAME.match(p.name)) if staging.exists() else []
    )
    for path in staged:
        _decode_fully(path)
        record = journal.get(path.name)
        if record is None:
            continue
        assert path.stat().st_size == record["size"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == record["sha256"]
    for name in journal:
        assert (staging / name).exists(), f"journal lists {name}, which is gone"
    top = [p for p in output.glob("*") if SHARD_NAME.match(p.name)]
    assert not top, f"shards committed by an unfinished export: {top}"
    assert not list(output.glob("*.manifest.json"))
    assert not list(output.glob(".*.tmp")), "temporary file outside the staging directory"
    return len(journal)


def _session_processes(sid: int) -> list[int]:
    """Live (non-zombie) processes of session ``sid``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


def _kill_session(sid: int) -> None:
    for pid in _session_processes(sid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _wait_for(predicate: Callable[[], bool], timeout: float, poll: float = 0.005) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(poll)
    return predicate()


def _journal_lines(staging: Path) -> int:
    try:
        return len((staging / JOURNAL).read_bytes().splitlines()) - 1
    except OSError:
        return 0


# --------------------------------------------------------------------------------------
# Full disk


def _file_size_limit(limit: int) -> Callable[[], None]:
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.fixture(scope="module")
def small_inputs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("small")
    paths = []
    for index in range(3):
        path = root / f"rec{index}.ome.tif"
        write_ome_tiff(path, _frames(12, seed=index))
        paths.append(path)
    return paths


def _run_limited(args: list[str], limit: int, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        _command(*args),
        preexec_fn=_file_size_limit(limit),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=_env(),
    )


def _error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("Error: "), stderr
    return lines[0]


@pytest.mark.parametrize("on_error", ["fail", "skip"])
def test_disk_full_while_writing_shards(on_error, small_inputs, tmp_path):
    """No room for one shard: a clear error, nothing left, not taken for a bad recording."""
    output = tmp_path / "out"
    args = [*map(str, small_inputs), str(output), "--shard-size", "40000", "--on-error", on_error]
    result = _run_limited(args, 16_000, tmp_path)
    assert result.returncode == 1, result.stderr
    line = _error_line(result.stderr)
    assert "File too large" in line or "write failed" in line, line
    assert "Traceback" not in result.stderr
    left = sorted(p.name for p in output.rglob("*")) if output.exists() else []
    assert left == [], f"left behind after a failed export: {left}"


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.rglob("*") if p.is_file()}


def test_disk_full_at_the_manifest_keeps_the_old_dataset(small_inputs, tmp_path):
    """Shards fit but the manifest does not: the earlier dataset stays exactly as it was."""
    output = tmp_path / "dataset"
    common = ["--shard-size", "6000", "--stem", "ds", "--workers", "1", "--no-progress"]
    runner = CliRunner()
    first = runner.invoke(main, ["export", "frames", str(small_inputs[0]), str(output), *common])
    assert first.exit_code == 0, first.output
    before = _snapshot(output)
    largest_shard = max(len(data) for name, data in before.items() if name.endswith(".tar"))

    # The full export's manifest and journal sizes, measured in a scratch directory.
    scratch = tmp_path / "scratch"
    full = runner.invoke(main, ["export", "frames", *map(str, small_inputs), str(scratch), *common])
    assert full.exit_code == 0, full.output
    manifest_size = (scratch / "ds.manifest.json").stat().st_size
    shards = json.loads((scratch / "ds.manifest.json").read_text())["shards"]
    journal_size = 200 + sum(len(json.dumps(shard)) + 40 for shard in shards)
    limit = manifest_size - 1
    assert max(largest_shard, journal_size) < limit, "test data do not separate the sizes"

    args = [*map(str, small_inputs), str(output), *common, "--overwrite"]
    result = _run_limited(args, limit, tmp_path)
    assert result.returncode == 1, result.stderr
    line = _error_line(result.stderr)
    assert "ds.manifest.json" in line and "File too large" in line, line
    assert _snapshot(output) == before
    assert sorted(p.name for p in output.iterdir()) == sorted(before)


# --------------------------------------------------------------------------------------
# Ctrl-C


@pytest.fixture(scope="module")
def large_inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enough pixels that a --compressed --uint8 export on 2 workers takes a few seconds."""
    root = tmp_path_factory.mktemp("large")
    base = _frames(32, seed=4, side=128)
    movie = np.tile(base, (20, 1, 1))[:600]
    tifffile.imwrite(root / "rec00.tif", movie, photometric="minisblack")
    for index in range(1, 12):
        shutil.copyfile(root / "rec00.tif", root / f"rec{index:02d}.tif")
    return root


def _start(inputs: Path, output: Path, pipe: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        _command(str(inputs), str(output), "--shard-size", "400000", "--stem", "ds", *extra),
        stdout=pipe,
        stderr=pipe,
        text=True,
        start_new_session=True,
        env=_env(),
    )


def _start_with_workers(inputs: Path, output: Path, pipe: int) -> subprocess.Popen:
    """An export with two worker processes."""
    return _start(
        inputs, output, pipe, "--workers", "2", "--executor", "processes", "--uint8", "--compressed"
    )


def _wait_for_workers_and_shards(process: subprocess.Popen, staging: Path, shards: int) -> None:
    seen: set[int] = set()

    def started() -> bool:
        seen.update(_session_processes(process.pid))
        return _journal_lines(staging) >= shards

    assert _wait_for(started, 40, poll=0.02), "the export wrote no shard"
    assert len(seen) >= 3, f"expected worker processes, saw {len(seen)} process(es)"


def _interrupt(process: subprocess.Popen, target: str, timeout: float = 10) -> tuple[float, str]:
    """SIGINT the export; return how long it took to end and its stderr."""
    sent = time.monotonic()
    if target == "main-process":
        os.kill(process.pid, signal.SIGINT)
    else:
        os.killpg(process.pid, signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack
        pytest.fail(f"the export did not stop:\n{process.communicate()[1][-8000:]}")
    return time.monotonic() - sent, stderr


def _check_interrupted_or_done(output: Path, returncode: int, stderr: str) -> str:
    """Either an interrupted run (130, nothing committed, whole shards kept) or a success."""
    assert "Traceback" not in stderr, stderr
    assert "Exception ignored" not in stderr, stderr
    assert not list(output.rglob("*.tmp")), list(output.rglob("*.tmp"))
    if returncode == 0:
        assert (output / "ds.manifest.json").exists(), stderr
        assert not _staging(output, "ds").exists()
        manifest = json.loads((output / "ds.manifest.json").read_text())
        on_disk = sorted(p.name for p in output.iterdir() if SHARD_NAME.match(p.name))
        assert on_disk == [shard["name"] for shard in manifest["shards"]]
        assert "interrupted after" not in stderr, stderr
        return "done"
    assert returncode == 130, stderr
    assert "toile: wrote" not in stderr, stderr
    if _staging(output, "ds").exists():
        assert re.search(r"interrupted after \d+ complete shard", stderr), stderr
        assert "--resume" in stderr
        completed = int(re.search(r"after (\d+) complete", stderr).group(1))
        assert _check_no_truncated_shard(output, "ds") == completed
    else:
        assert "interrupted" in stderr, stderr
        assert not list(output.glob("*.manifest.json"))
    return "interrupted"


@pytest.mark.parametrize("target", ["main-process", "process-group"])
def test_ctrl_c_stops_promptly_with_workers(target, large_inputs, tmp_path):
    output = tmp_path / "out"
    staging = _staging(output, "ds")
    process = _start_with_workers(large_inputs, output, subprocess.PIPE)
    try:
        _wait_for_workers_and_shards(process, staging, 2)
        assert process.poll() is None, "the export finished before it could be interrupted"
        elapsed, stderr = _interrupt(process, target)
        assert _wait_for(lambda: not _session_processes(process.pid), 3, poll=0.05), (
            "worker processes outlived the export"
        )
    finally:
        _kill_session(process.pid)
        process.kill()
        process.wait()

    assert elapsed < 4, f"took {elapsed:.1f} s to stop"
    assert _check_interrupted_or_done(output, process.returncode, stderr) == "interrupted", stderr
    assert not list(output.rglob("segment-*")), list(output.rglob("segment-*"))
    assert _check_no_truncated_shard(output, "ds") >= 2


#: (executor options, runs) of the Ctrl-C loop: 20 interrupts in all (worker processes;
#: one pass in the driver, on 2 threads and on 1).
CTRL_C_RUNS = [
    (("--workers", "2", "--executor", "processes"), 10),
    (("--workers", "2"), 5),
    (("--workers", "1"), 5),
]


def test_ctrl_c_at_random_moments_always_stops(large_inputs, tmp_path):
    """Twenty interrupts at random moments (start-up, statistics, measuring, writing, commit):
    every run ends within a few seconds, as an interrupted run or as a success."""
    rng = random.Random(20)
    outcomes = []
    started = time.monotonic()
    for options, runs in CTRL_C_RUNS:
        # The moments are drawn within the length of an uninterrupted run on this machine,
        # so that a fast machine still interrupts most runs before they finish.
        full = time.monotonic()
        reference = _start(
            large_inputs, tmp_path / "full", subprocess.PIPE, "--compressed", "--uint8", *options
        )
        _, stderr = reference.communicate(timeout=60)
        assert reference.returncode == 0, stderr
        length = time.monotonic() - full
        shutil.rmtree(tmp_path / "full")
        for run in range(runs):
            output = tmp_path / f"out-{len(outcomes)}"
            process = _start(
                large_inputs, output, subprocess.PIPE, "--compressed", "--uint8", *options
            )
            try:
                time.sleep(rng.uniform(0.3, max(0.4, 0.95 * length)))
                target = "process-group" if run % 2 else "main-process"
                if process.poll() is not None:
                    stderr = process.communicate()[1]
                    elapsed = 0.0
                else:
                    elapsed, stderr = _interrupt(process, target)
                assert _wait_for(lambda p=process.pid: not _session_processes(p), 3, poll=0.05), (
                    "worker processes outlived the export"
                )
            finally:
                _kill_session(process.pid)
                process.kill()
                process.wait()
            assert elapsed < 4, f"run {len(outcomes)}: took {elapsed:.1f} s to stop"
            outcomes.append(_check_interrupted_or_done(output, process.returncode, stderr))
            shutil.rmtree(output, ignore_errors=True)
    assert len(outcomes) >= 20
    assert outcomes.count("interrupted") >= 10, outcomes
    assert time.monotonic() - started < 90


_COMMIT_HOOK = """
import os, signal, sys
from toile.storage.local import LocalStorage
import toile.export.run as run

where = sys.argv.pop(1)
if where == "during-commit":
    original = LocalStorage.move_to

    def move_to(self, name, target):
        if name.endswith(".manifest.json"):
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, name, target)

    LocalStorage.move_to = move_to
else:
    original = run.build_manifest

    def build_manifest(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return original(*args, **kwargs)

    run.build_manifest = build_manifest
from toile.cli import main
main()
"""


@pytest.mark.parametrize("where", ["before-commit", "during-commit"])
def test_sigint_around_the_commit_is_one_outcome(where, small_inputs, tmp_path):
    """SIGINT just before the commit stops the run (130, nothing committed); one that
    arrives while the shards and manifest are being moved into place lets the commit
    finish, and the run reports success (0), never both."""
    output = tmp_path / "out"
    args = [*map(str, small_inputs), str(output), "--shard-size", "6000", "--stem", "ds"]
    result = subprocess.run(
        [sys.executable, "-c", _COMMIT_HOOK, where, "export", "frames", *args, "--no-progress"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )
    outcome = _check_interrupted_or_done(output, result.returncode, result.stderr)
    if where == "before-commit":
        assert outcome == "interrupted"
        assert _check_no_truncated_shard(output, "ds") > 3
    else:
        assert outcome == "done"
        assert "interrupted while the dataset was committed" in result.stderr
        assert verify_dataset(output).ok


# --------------------------------------------------------------------------------------
# SIGKILL


@pytest.fixture(scope="module")
def medium_inputs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("medium")
    paths = []
    for index in range(3):
        path = root / f"rec{index}.ome.tif"
        write_ome_tiff(path, _frames(120, seed=index, side=64))
        paths.append(path)
    return paths


@pytest.mark.parametrize("seed", [2, 5, 7])
def test_sigkill_never_leaves_a_truncated_shard(seed, medium_inputs, tmp_path):
    rng = random.Random(seed)
    output = tmp_path / "out"
    staging = _staging(output, "ds")
    after_shards = rng.randint(0, 25)
    delay = rng.uniform(0, 0.02)
    process = subprocess.Popen(
        _command(*map(str, medium_inputs), str(output), "--shard-size", "50000", "--stem", "ds"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env=_env(),
    )
    try:
        assert _wait_for(
            lambda: staging.exists() and _journal_lines(staging) >= after_shards, 30, poll=0.002
        )
        time.sleep(delay)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        _kill_session(process.pid)
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL, "the export finished before the kill"
    _check_no_truncated_shard(output, "ds")
    # A rerun with --overwrite completes the dataset.
    rerun = subprocess.run(
        _command(*map(str, medium_inputs), str(output), "--shard-size", "50000", "--stem", "ds")
        + ["--overwrite"],
        capture_output=True,
        text=True,
        env=_env(),
    )
    assert rerun.returncode == 0, rerun.stderr
    report = verify_dataset(output)
    assert report.ok, report.problems
    assert report.samples == 3 * 120


def test_sigkill_of_the_main_process_ends_its_workers(large_inputs, tmp_path):
    """``kill -9`` of the main process: the workers notice and exit; staged shards are whole."""
    output = tmp_path / "out"
    staging = _staging(output, "ds")
    process = _start_with_workers(large_inputs, output, subprocess.DEVNULL)
    try:
        _wait_for_workers_and_shards(process, staging, 1)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        assert _wait_for(lambda: not _session_processes(process.pid), 5, poll=0.05), (
            "worker processes outlived their killed main process"
        )
    finally:
        _kill_session(process.pid)
    assert process.returncode == -signal.SIGKILL
    assert _check_no_truncated_shard(output, "ds") >= 1
