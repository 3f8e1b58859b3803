"""The benchmark script still runs (a smoke test on tiny inputs; its timings are not checked)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_quick_run_writes_a_report(tmp_path):
    report = tmp_path / "results.md"
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run.py"),
            "--quick",
            "--cases",
            "1,6",
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
        "| naive peer |",
        "| raw cat |",
        "| floor: copy + sha256 + fsync |",
        "| toile --help |",
    ]:
        assert row in text
    assert "case 1: toile peak RSS" in text


def test_floor_copies_the_inputs_and_prints_their_sha256(tmp_path):
    parts = [os.urandom(n) for n in (0, 1, 3 << 20, 12345)]
    inputs = []
    for i, data in enumerate(parts):
        path = tmp_path / f"in{i}.bin"
        path.write_bytes(data)
        inputs.append(str(path))
    output = tmp_path / "out.bin"
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "floor.py"), str(output), *inputs],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    whole = b"".join(parts)
    assert output.read_bytes() == whole
    assert run.stdout.strip() == hashlib.sha256(whole).hexdigest()
