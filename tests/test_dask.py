"""The Dask executor on real local clusters: same bytes, a killed worker, SLURM job scripts.

A ``distributed.LocalCluster`` of 2 worker processes on 127.0.0.1 (a free port, no
dashboard) serves the module; the export connects to it with ``--scheduler`` or
``--scheduler-file``, or starts its own with ``--executor dask``. Every cluster is
closed by the test that started it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_executors import SHARD_SIZE, VARIANTS, inputs, references, snapshot  # noqa: F401

from toile.cli import main
from toile.config import make_config
from toile.export import export_frames

distributed = pytest.importorskip("distributed")


def _local_cluster(workers: int = 2) -> distributed.LocalCluster:
    return distributed.LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        scheduler_port=0,
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
    )


@pytest.fixture(scope="module")
def cluster():
    with _local_cluster() as running:
        yield running


def _export(sources: list[str], output: Path, *args: str) -> str:
    result = CliRunner().invoke(
        main, ["export", "frames", *sources, str(output), "--stem", "ds", "--no-progress", *args]
    )
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_a_dask_cluster_gives_the_inline_bytes(variant, cluster, inputs, references, tmp_path):  # noqa: F811
    output = tmp_path / variant
    log = _export(
        inputs,
        output,
        "--shard-size",
        SHARD_SIZE[variant],
        "--scheduler",
        cluster.scheduler_address,
        "-v",
        *VARIANTS[variant],
    )
    assert f"dask executor at {cluster.scheduler_address}" in log
    assert snapshot(output) == references[variant]


def test_scheduler_file(cluster, inputs, references, tmp_path):  # noqa: F811
    # What `dask scheduler --scheduler-file` and SLURMRunner write (and Client reads).
    scheduler_file = tmp_path / "scheduler.json"
    scheduler_file.write_text(
        json.dumps({"type": "Scheduler", "address": cluster.scheduler_address})
    )
    output = tmp_path / "out"
    _export(inputs, output, "--shard-size", SHARD_SIZE["compressed"], "--compressed")
    via_file = tmp_path / "via-file"
    _export(
        inputs,
        via_file,
        "--shard-size",
        SHARD_SIZE["compressed"],
        "--compressed",
        "--scheduler-file",
        str(scheduler_file),
    )
    assert snapshot(via_file) == snapshot(output) == references["compressed"]


def test_executor_dask_starts_and_stops_a_local_cluster(inputs, references, tmp_path):  # noqa: F811
    output = tmp_path / "out"
    before = _dask_processes()
    log = _export(
        inputs,
        output,
        "--shard-size",
        SHARD_SIZE["uint8"],
        "--uint8",
        "--executor",
        "dask",
        "--workers",
        "2",
        "-v",
    )
    assert "local cluster of 2 worker process(es)" in log
    assert snapshot(output) == references["uint8"]
    deadline = time.monotonic() + 10
    while _dask_processes() - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _dask_processes() - before, "the local cluster's workers outlived the export"


def _dask_processes() -> set[int]:
    """PIDs of this process's children (a local cluster's nannies and workers)."""
    found = set()
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == me and stat[0] != "Z":
                found.add(int(entry.name))
    return found


def test_a_worker_killed_mid_run_changes_nothing(inputs, tmp_path):  # noqa: F811
    """SIGKILL one worker process while shards are being written: Dask reruns its tasks."""
    reference = tmp_path / "reference"
    args = dict(stem="ds", shard_size=4000, compressed=True, progress=False)
    export_frames(make_config(inputs, reference, **args))
    with _local_cluster() as cluster:
        with distributed.Client(cluster) as client:
            pids = sorted(client.run(os.getpid).values())
        output = tmp_path / "out"
        config = make_config(inputs, output, scheduler=cluster.scheduler_address, **args)
        journal = output / ".ds.staging" / "journal.jsonl"
        killed = threading.Event()

        def kill_when_started() -> None:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if journal.exists() and len(journal.read_text().splitlines()) > 3:
                    os.kill(pids[0], signal.SIGKILL)
                    killed.set()
                    return
                time.sleep(0.001)

        killer = threading.Thread(target=kill_when_started)
        killer.start()
        result = export_frames(config)
        killer.join()
        assert killed.is_set(), "the export finished before a worker could be killed"
        assert result.frames == 100
        assert os.getpid() not in pids
        assert snapshot(output) == snapshot(reference)


def test_missing_extra_is_one_line_naming_it(inputs, tmp_path):  # noqa: F811
    """Without distributed installed (hidden from the import system), a clear error."""
    code = (
        "import sys; sys.modules['distributed'] = None\n"
        "from toile.cli import main\n"
        f"main(['export', 'frames', {inputs[0]!r}, {str(tmp_path / 'out')!r}, '--executor', "
        "'dask'])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(lines) == 1, result.stderr
    assert "toile[dask]" in lines[0]
    assert "Traceback" not in result.stderr


def test_slurm_cluster_job_script():
    """The job script dask-jobqueue writes for the cluster toile asks for (no SLURM here)."""
    from toile.executors.dask import slurm_cluster

    cluster = slurm_cluster(
        cores=8,
        memory="32GB",
        walltime="02:00:00",
        queue="compute",
        account="imaging-lab",
        python="/opt/toile/bin/python",
        job_extra_directives=["--constraint=avx2"],
        scheduler_options={"host": "127.0.0.1", "port": 0, "dashboard_address": None},
    )
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    lines = script.splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    for directive in [
        "#SBATCH -p compute",
        "#SBATCH -A imaging-lab",
        "#SBATCH -n 1",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH -t 02:00:00",
        "#SBATCH --constraint=avx2",
    ]:
        assert directive in lines, (directive, script)
    assert any(line.startswith("#SBATCH --mem=") for line in lines), script
    command = next(line for line in lines if "distributed.cli.dask_worker" in line)
    assert command.startswith("/opt/toile/bin/python -m distributed.cli.dask_worker tcp://")
    assert "--nthreads 1" in command and "--nworkers 8" in command
    assert "--memory-limit 3.73GiB" in command or "--memory-limit 4.00GB" in command, command


def test_export_result_json_is_the_same_on_dask(cluster, inputs, tmp_path):  # noqa: F811
    """Progress and summary count the same shards and frames as futures finish."""
    one = tmp_path / "one"
    two = tmp_path / "two"
    inline = CliRunner().invoke(
        main, ["export", "frames", *inputs, str(one), "--shard-size", "6000", "--progress"]
    )
    dask = CliRunner().invoke(
        main,
        ["export", "frames", *inputs, str(two), "--shard-size", "6000", "--progress"]
        + ["--scheduler", cluster.scheduler_address],
    )
    assert inline.exit_code == dask.exit_code == 0

    def summary(output: str) -> str:
        line = next(line for line in output.splitlines() if line.startswith("toile: wrote"))
        return line.split(" in ")[0]

    assert summary(inline.output) == summary(dask.output).replace("two", "one")
    assert "100/100" in inline.output and "100/100" in dask.output
    manifest = json.loads((two / "two.manifest.json").read_text())
    assert manifest["totals"]["samples"] == 100


@pytest.mark.parametrize("delay", [0.8, 3.0])
def test_ctrl_c_stops_a_dask_export_promptly(delay, tmp_path):
    """SIGINT while a local cluster starts or runs: 130 within seconds, no worker left."""
    from test_faults import _check_interrupted_or_done, _env, _session_processes

    output = tmp_path / "out"
    command = [sys.executable, "-m", "toile.cli", "export", "test-frames", str(output)]
    command += ["--frames", "3000", "--height", "64", "--width", "64", "--recordings", "4"]
    command += ["--shard-size", "100000", "--stem", "ds", "--compressed", "--no-progress"]
    command += ["--executor", "dask", "--workers", "2"]
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=_env(),
    )
    try:
        time.sleep(delay)
        assert process.poll() is None, process.communicate()[1]
        sent = time.monotonic()
        os.kill(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=20)
        elapsed = time.monotonic() - sent
        deadline = time.monotonic() + 5
        while _session_processes(process.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = _session_processes(process.pid)
    finally:
        for pid in _session_processes(process.pid):
            os.kill(pid, signal.SIGKILL)
        process.kill()
        process.wait()
    assert not left, "Dask processes outlived the export"
    assert elapsed < 8, f"took {elapsed:.1f} s to stop"  # a starting cluster finishes first
    assert _check_interrupted_or_done(output, process.returncode, stderr) == "interrupted"


def test_slurm_runner_job_step_emulated(inputs, references, tmp_path):  # noqa: F811
    """`srun python -m toile.executors.slurm export frames ...` as SLURM would start it:
    four tasks with SLURM_PROCID 0..3 (scheduler, export, two workers) on 127.0.0.1."""
    output = tmp_path / "out"
    command = [sys.executable, "-m", "toile.executors.slurm", "export", "frames", *inputs]
    command += [str(output), "--stem", "ds", "--shard-size", SHARD_SIZE["plain"], "--no-progress"]
    tasks = []
    for rank in range(4):
        env = {
            **os.environ,
            "SLURM_PROCID": str(rank),
            "SLURM_NTASKS": "4",
            "SLURM_JOB_ID": "4242",
            "TOILE_SLURM_HOST": "127.0.0.1",
        }
        tasks.append(
            subprocess.Popen(
                command,
                cwd=tmp_path,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
        )
    try:
        errors = [task.communicate(timeout=90)[1] for task in tasks]
    finally:
        for task in tasks:
            if task.poll() is None:
                os.killpg(task.pid, signal.SIGKILL)
                task.wait()
    assert tasks[1].returncode == 0, errors[1][-3000:]
    assert "toile: wrote" in errors[1]
    assert all(task.returncode is not None for task in tasks)
    assert snapshot(output) == references["plain"]
