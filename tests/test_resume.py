"""``--resume`` after an export was killed: the result is byte-identical to an uninterrupted run.

Exports of several recordings (OME-TIFF, Prairie View, ImageJ) are killed with
SIGKILL at random points in a subprocess, then resumed with the CLI. Complete
shards are kept (the very same files), damaged ones rewritten, and the final
shards and manifest are compared byte for byte with an export that was never
interrupted. Resuming with other inputs or options, or with nothing to
resume, is refused with a clear message.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from toile.cli import main
from toile.synthetic import MovieSpec, generate_frames
from toile.writers import write_imagej_stack, write_ome_tiff, write_prairie_series

STEM = "ds"
OPTIONS = ["--shard-size", "50000", "--stem", STEM, "--workers", "1", "--no-progress"]


def _frames(n: int, seed: int) -> list[np.ndarray]:
    return list(generate_frames(MovieSpec(frames=n, height=64, width=64, seed=seed)))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("inputs")
    write_ome_tiff(root / "stack.ome.tif", _frames(90, seed=1))
    write_prairie_series(root / "TSeries-001", _frames(40, seed=2))
    write_imagej_stack(root / "imagej.tif", _frames(60, seed=3))
    return [str(root / "stack.ome.tif"), str(root / "TSeries-001"), str(root / "imagej.tif")]


def _export(*args: str) -> Result:
    return CliRunner().invoke(main, ["export", "frames", *args])


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


#: Option sets the SIGKILL-and-resume test runs with (besides OPTIONS).
VARIANTS = {
    "plain": [],
    "compressed-uint8": ["--compressed", "--uint8"],
}


@pytest.fixture(scope="module")
def references(inputs, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, bytes]]:
    """The datasets of exports that were never interrupted, by variant."""
    snapshots = {}
    for variant, extra in VARIANTS.items():
        output = tmp_path_factory.mktemp("reference") / "out"
        result = _export(*inputs, str(output), *OPTIONS, *extra)
        assert result.exit_code == 0, result.output
        snapshots[variant] = _snapshot(output)
        assert sum(".tar" in name for name in snapshots[variant]) >= 10
    return snapshots


@pytest.fixture(scope="module")
def reference(references) -> dict[str, bytes]:
    return references["plain"]


def _staging(output: Path) -> Path:
    return output / f".{STEM}.staging"


def _journal_count(output: Path) -> int:
    """Complete shards in the journal; -1 before the export has started writing."""
    try:
        return len((_staging(output) / "journal.jsonl").read_bytes().splitlines()) - 1
    except OSError:
        return -1


def _journal(output: Path) -> list[dict]:
    lines = (_staging(output) / "journal.jsonl").read_text().splitlines()[1:]
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return records


def _kill_export(
    inputs: list[str], output: Path, after_shards: int, delay: float, extra: tuple[str, ...] = ()
) -> None:
    """Run the export in a subprocess and SIGKILL it once the journal holds ``after_shards``."""
    command = [sys.executable, "-m", "toile.cli", "export", "frames", *inputs, str(output)]
    process = subprocess.Popen(
        [*command, *OPTIONS, *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    try:
        end = time.monotonic() + 30
        while _journal_count(output) < after_shards and time.monotonic() < end:
            if process.poll() is not None:
                break
            time.sleep(0.002)
        time.sleep(delay)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL, "the export finished before it was killed"


def _resume(inputs: list[str], output: Path, *extra: str) -> Result:
    return _export(*inputs, str(output), *OPTIONS, *extra, "--resume")


@pytest.mark.parametrize(
    "seed, variant, resume_with",
    [
        (2, "plain", ()),
        (7, "plain", ("--executor", "processes", "--workers", "2")),
        (6, "plain", ("--workers", "3")),
        (13, "compressed-uint8", ("--executor", "processes", "--workers", "2")),
        (5, "compressed-uint8", ("--executor", "dask", "--workers", "2")),
    ],
)
def test_resume_after_sigkill_is_byte_identical(
    seed, variant, resume_with, inputs, references, tmp_path
):
    """Killed with one worker, resumed with another executor or worker count: same bytes."""
    rng = random.Random(seed)
    output = tmp_path / "out"
    extra = tuple(VARIANTS[variant])
    after = rng.randint(0, 12)
    _kill_export(inputs, output, after_shards=after, delay=rng.uniform(0, 0.02), extra=extra)
    kept = {
        record["name"]: (_staging(output) / record["name"]).stat().st_ino
        for record in _journal(output)
    }

    result = _resume(inputs, output, *extra, *resume_with)
    assert result.exit_code == 0, result.output
    assert _snapshot(output) == references[variant]
    assert not _staging(output).exists()
    # Complete shards were kept as they were (the same files), not written again.
    for name, inode in kept.items():
        assert (output / name).stat().st_ino == inode, name


@pytest.fixture(scope="module")
def interrupted(inputs, reference, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An export killed after several complete shards (copy it before use)."""
    output = tmp_path_factory.mktemp("interrupted") / "out"
    _kill_export(inputs, output, after_shards=8, delay=0)
    assert len(_journal(output)) >= 8
    return output


def _copy(interrupted: Path, tmp_path: Path) -> Path:
    output = tmp_path / "out"
    shutil.copytree(interrupted, output)
    return output


def test_damaged_staged_shard_is_rewritten(inputs, reference, interrupted, tmp_path):
    output = _copy(interrupted, tmp_path)
    journal = _journal(output)
    first, damaged = (
        (_staging(output) / journal[0]["name"]),
        (_staging(output) / journal[1]["name"]),
    )
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0x01
    damaged.write_bytes(bytes(data))
    first_inode, damaged_inode = first.stat().st_ino, damaged.stat().st_ino

    result = _resume(inputs, output)
    assert result.exit_code == 0, result.output
    assert _snapshot(output) == reference
    assert (output / journal[0]["name"]).stat().st_ino == first_inode
    assert (output / journal[1]["name"]).stat().st_ino != damaged_inode


def test_missing_staged_shard_and_torn_journal_line(inputs, reference, interrupted, tmp_path):
    output = _copy(interrupted, tmp_path)
    journal = _journal(output)
    (_staging(output) / journal[-1]["name"]).unlink()
    with open(_staging(output) / "journal.jsonl", "a") as handle:
        handle.write('{"name": "ds-0000')
    (_staging(output) / f".{STEM}-999999.tar.tmp").write_bytes(b"partial")

    result = _resume(inputs, output)
    assert result.exit_code == 0, result.output
    assert _snapshot(output) == reference


@pytest.mark.parametrize(
    "change",
    [
        ["--shard-size", "60000"],
        ["--compressed"],
        ["--format", "atdata"],
        ["--uint8"],
        ["--stem", "other"],
    ],
    ids=lambda c: c[0],
)
def test_resume_with_other_options_is_refused(change, inputs, interrupted, tmp_path):
    output = _copy(interrupted, tmp_path)
    before = _snapshot(output)
    options = OPTIONS + change  # a later option wins
    result = _export(*inputs, str(output), *options, "--resume")
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert "resume" in errors[0].lower() or "interrupted" in errors[0].lower(), errors[0]
    assert str(output) in errors[0] or output.name in errors[0]
    assert _snapshot(output) == before


def test_resume_with_other_inputs_is_refused(inputs, reference, interrupted, tmp_path):
    output = _copy(interrupted, tmp_path)
    before = _snapshot(output)
    result = _resume(inputs[:2], output)
    assert result.exit_code == 2, result.output
    assert "other inputs or options" in result.stderr
    assert _snapshot(output) == before
    # The refusal destroyed nothing: resuming with the right inputs still works.
    result = _resume(inputs, output)
    assert result.exit_code == 0, result.output
    assert _snapshot(output) == reference


def test_resume_after_an_input_file_changed_is_refused(inputs, interrupted, tmp_path):
    output = _copy(interrupted, tmp_path)
    path = Path(inputs[2])
    stat = path.stat()
    try:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        result = _resume(inputs, output)
    finally:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert result.exit_code == 2, result.output
    assert "other inputs or options" in result.stderr


@pytest.mark.parametrize("state", ["missing", "empty", "complete"])
def test_resume_with_nothing_interrupted_is_a_clear_error(state, inputs, reference, tmp_path):
    output = tmp_path / "out"
    if state == "empty":
        output.mkdir()
    elif state == "complete":
        result = _export(*inputs, str(output), *OPTIONS)
        assert result.exit_code == 0, result.output
    before = _snapshot(output) if output.exists() else None

    result = _resume(inputs, output)
    assert result.exit_code in (1, 2), result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert "nothing to resume" in errors[0], errors[0]
    assert (_snapshot(output) if output.exists() else None) == before
