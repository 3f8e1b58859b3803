"""The benchmark still runs, and its floors and helpers do what they say.

A smoke test on tiny inputs without the peers (their timings are not checked), plus the
floors' outputs, the profile summary and the case registry's skip and option checks.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


@pytest.fixture(scope="module")
def run_module():
    spec = importlib.util.spec_from_file_location("toile_benchmark_run", BENCH / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def test_benchmark_quick_run_writes_a_report(tmp_path):
    report = tmp_path / "results.md"
    run = subprocess.run(
        [
            sys.executable,
            str(BENCH / "run.py"),
            "--quick",
            "--no-peers",
            "--cases",
            "ome,compressed,help",
            "--repeat",
            "1",
            "--workdir",
            str(tmp_path / "work"),
            "--results",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    text = report.read_text()
    for row in [
        "| toile |",
        "| raw cat |",
        "| floor (a): copy + sha256 + fsync |",
        "| toile --compressed |",
        "| floor (b): copy + deflate + sha256 + fsync |",
        "| toile --help |",
    ]:
        assert row in text
    assert "| ome: toile / floor (a) |" in text
    assert "| compressed: toile --compressed / floor (b) |" in text
    assert "| help: toile --help (median) |" in text
    # toile writes the same bytes twice (the ome case runs every contender at least twice).
    toile_row = next(line for line in text.splitlines() if line.startswith("| toile |"))
    assert toile_row.rstrip().endswith("| yes |"), toile_row


def _inputs(tmp_path: Path) -> tuple[list[str], bytes]:
    parts = [os.urandom(n) for n in (0, 1, 3 << 20, 12345)] + [bytes(2 << 20)]
    inputs = []
    for i, data in enumerate(parts):
        path = tmp_path / f"in{i}.bin"
        path.write_bytes(data)
        inputs.append(str(path))
    return inputs, b"".join(parts)


def test_floor_copies_the_inputs_and_prints_their_sha256(tmp_path):
    inputs, whole = _inputs(tmp_path)
    output = tmp_path / "out.bin"
    run = subprocess.run(
        [sys.executable, str(BENCH / "floor.py"), str(output), *inputs],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert output.read_bytes() == whole
    assert run.stdout.strip() == hashlib.sha256(whole).hexdigest()


@pytest.mark.parametrize("threads", [1, 2])
def test_floor_b_writes_one_valid_gzip_stream_and_its_sha256(tmp_path, threads):
    inputs, whole = _inputs(tmp_path)
    output = tmp_path / "out.gz"
    run = subprocess.run(
        [sys.executable, str(BENCH / "floor.py"), "--deflate", str(threads), str(output), *inputs],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    data = output.read_bytes()
    assert gzip.decompress(data) == whole  # checks the combined CRC-32 and the length too
    assert len(data) < len(whole)  # the zero bytes compress
    assert run.stdout.strip() == hashlib.sha256(data).hexdigest()


def test_profile_summary_groups_samples_by_toile_function():
    sys.path.insert(0, str(BENCH))
    try:
        import profile_stages
    finally:
        sys.path.remove(str(BENCH))
    raw = "\n".join(
        [
            "thread (1): MainThread;<module> (toile:10);main (toile/cli.py:5);"
            "_write (toile/shards.py:300);write (builtin) 30",
            "thread (2): toile-sha256_0;run (threading.py:1);_update (toile/shards.py:90) 20",
            "thread (1): MainThread;<module> (toile:10);_find_and_load "
            "(<frozen importlib._bootstrap>:1) 10",
            'process 7:"python toile";process 8:"python -c spawn";thread (8): MainThread;'
            "_worker_main (toile/executors/processes.py:49);Condition.wait (threading.py:1) 40",
        ]
    )
    lines = profile_stages.summary(raw, rate=100)
    assert lines[0].startswith("Seconds sampled busy: 0.60")
    assert lines[0].endswith("waits on locks and queues left out: 0.40")
    text = "\n".join(lines)
    assert "| MainThread | shards._write -> write (builtin) | 0.30 | 50% |" in text
    assert "| toile-sha256_0 | shards._update | 0.20 | 33% |" in text
    assert "imports (no toile frame)" in text


def test_a_case_that_cannot_run_yet_is_reported_as_skipped(run_module, tmp_path):
    bench = run_module.Bench(tmp_path, run_module.QUICK, 1, with_peers=False)
    assert bench.toile_option("--overwrite")
    assert not bench.toile_option("--no-such-option")

    @run_module.case("test-skip", "a case whose feature is missing")
    def needs_a_feature(bench):
        raise run_module.Skip("`toile export frames --help` has no --no-such-option yet")

    try:
        result = run_module.run_case(bench, "test-skip", profile=False)
    finally:
        del run_module.CASES["test-skip"]
    assert result.skipped.startswith("`toile export frames --help` has no")
    table = "\n".join(run_module.case_table(result))
    assert "Skipped: `toile export frames --help` has no --no-such-option yet" in table
    target = run_module.Target("x", None, 1.0, skipped="why")
    assert target.verdict() == "SKIP"
    assert run_module.Target("y", 1.3, 1.2).verdict() == "FAIL"
    assert run_module.Target("z", 1.7, 1.6, at_least=True).verdict() == "PASS"
