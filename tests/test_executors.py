"""Whatever runs the shard tasks, and in whatever order, the dataset is the same bytes.

Real exports of real TIFFs with dozens of shards (tiny frames, a small cap), through
the inline executor, 2 and 3 local worker processes, and an executor of the test's own
that shuffles the tasks, runs some twice and has one fail halfway through writing its
shard (through a storage whose writes fail after a few bytes, on the real file system).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from toile.cli import main
from toile.config import make_config
from toile.errors import OutputError
from toile.executors import Executor, Job, TaskFailure, get_executor
from toile.export import export_frames
from toile.export.assemble import ShardTask, assemble
from toile.export.manifest import byte_versions
from toile.export.run import choose_workers
from toile.storage.local import LocalSink, LocalStorage
from toile.synthetic import MovieSpec, generate_frames
from toile.writers import write_imagej_stack, write_ome_tiff

VARIANTS = {
    "plain": [],
    "uint8": ["--uint8"],
    "compressed": ["--compressed"],
    "atdata": ["--format", "atdata"],
}
#: A cap that gives each variant dozens of shards of these 16x16 frames.
SHARD_SIZE = {"plain": "6000", "uint8": "5000", "compressed": "4000", "atdata": "6000"}


def _frames(n: int, seed: int) -> np.ndarray:
    return np.stack(list(generate_frames(MovieSpec(frames=n, height=16, width=16, seed=seed))))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("inputs")
    write_ome_tiff(root / "a.ome.tif", _frames(40, seed=1))
    write_imagej_stack(root / "b.tif", _frames(25, seed=2))
    write_ome_tiff(root / "c.ome.tif", _frames(35, seed=3))
    return [str(root / name) for name in ("a.ome.tif", "b.tif", "c.ome.tif")]


def _export(inputs: list[str], output: Path, *args: str) -> str:
    result = CliRunner().invoke(
        main, ["export", "frames", *inputs, str(output), "--stem", "ds", "--no-progress", *args]
    )
    assert result.exit_code == 0, result.output
    return result.output


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.fixture(scope="module")
def references(inputs, tmp_path_factory) -> dict[str, dict[str, bytes]]:
    """Every variant written by the inline executor."""
    found = {}
    for variant, extra in VARIANTS.items():
        output = tmp_path_factory.mktemp("inline") / variant
        _export(inputs, output, "--shard-size", SHARD_SIZE[variant], "--workers", "1", *extra)
        found[variant] = snapshot(output)
        shards = [name for name in found[variant] if ".tar" in name]
        assert len(shards) >= 24, (variant, len(shards))
    return found


@pytest.mark.parametrize("workers", [2, 3])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_processes_give_the_inline_bytes(variant, workers, inputs, references, tmp_path):
    output = tmp_path / variant
    log = _export(
        inputs,
        output,
        "--shard-size",
        SHARD_SIZE[variant],
        "--executor",
        "processes",
        "--workers",
        str(workers),
        "-v",
        *VARIANTS[variant],
    )
    assert f"processes executor, {workers} worker(s)" in log
    assert snapshot(output) == references[variant]


class _FailingSink(LocalSink):
    """A shard whose write fails once half of its bytes are on disk (a disk that fills up)."""

    def _write(self, chunks: list) -> None:
        super()._write(chunks[: len(chunks) // 2])
        assert self.tmp.stat().st_size > 0
        raise OutputError(f"{self.tmp}: write failed: No space left on device")


class _FailingStorage(LocalStorage):
    def create(self, name: str, *, attempt: str = "", pool: Any = None) -> LocalSink:
        final = self.root / name
        return _FailingSink(final, final.with_name(f".{name}.{attempt}.tmp"), self.fsync, pool)


class ChaosExecutor(Executor):
    """Runs the tasks in this process in a shuffled (or reversed) order, some twice; the
    first shard task fails halfway through writing before it is run again."""

    name = "chaos"
    in_process = True

    def __init__(self, seed: int, reverse: bool = False) -> None:
        super().__init__(1)
        self.rng = random.Random(seed)
        self.reverse = reverse
        self.failed: list[str] = []
        self.twice: list[str] = []

    def run(self, function: Callable[..., Any], jobs: Sequence[Job]) -> Iterator[tuple[Job, Any]]:
        order = list(jobs)
        if self.reverse:
            order.reverse()
        else:
            self.rng.shuffle(order)
        for job in order:
            if function is assemble and not self.failed:
                task: ShardTask = job.args[0]
                broken = replace(task, staging=_FailingStorage(task.staging.root, fsync=False))
                with pytest.raises(TaskFailure, match="No space left"):
                    function(broken)
                leftovers = [p.name for p in task.staging.root.iterdir() if p.suffix == ".tmp"]
                assert leftovers == [], leftovers
                self.failed.append(job.key)
            yield job, function(*job.args)
            if self.rng.random() < 0.3:
                self.twice.append(job.key)
                yield job, function(*job.args)


@pytest.mark.parametrize(
    ("variant", "seed", "reverse"),
    [("plain", 1, False), ("compressed", 2, True), ("uint8", 3, False), ("atdata", 4, False)],
)
def test_shuffled_repeated_and_failed_tasks_give_the_same_bytes(
    variant, seed, reverse, inputs, references, tmp_path
):
    output = tmp_path / variant
    extra = VARIANTS[variant]
    config = make_config(
        inputs,
        output,
        stem="ds",
        shard_size=int(SHARD_SIZE[variant]),
        to_uint8="--uint8" in extra,
        compressed="--compressed" in extra,
        format="atdata" if "atdata" in extra else "npy",
        progress=False,
    )
    chaos = ChaosExecutor(seed, reverse)
    result = export_frames(config, executor=chaos)
    assert chaos.failed and chaos.twice
    assert result.frames == 100
    assert snapshot(output) == references[variant]


def test_manifest_records_the_byte_versions(references):
    manifest = json.loads(references["plain"]["ds.manifest.json"])
    assert manifest["versions"] == byte_versions()
    assert [r["format"] for r in manifest["recordings"]] == ["ome-tiff", "imagej", "ome-tiff"]
    assert all(isinstance(r["source"], str) and r["series"] == 0 for r in manifest["recordings"])


def test_a_task_with_other_versions_refuses_to_write(inputs, tmp_path):
    calls: list[ShardTask] = []

    class Recorder(Executor):
        name = "recorder"
        in_process = True

        def run(self, function, jobs):
            for job in jobs:
                if function is assemble:
                    calls.append(job.args[0])
                yield job, function(*job.args)

    config = make_config(inputs[:1], tmp_path / "out", stem="ds", shard_size=6000, progress=False)
    export_frames(config, executor=Recorder())
    task = replace(calls[0], versions={**calls[0].versions, "numpy": "0.0.1"})
    staging = tmp_path / "staging"
    staging.mkdir()
    task = replace(task, staging=LocalStorage(staging))
    with pytest.raises(TaskFailure, match=r"version skew \(numpy .* here, 0\.0\.1 on the driver\)"):
        assemble(task)
    assert list(staging.iterdir()) == []


@pytest.mark.parametrize("stem", ["x{1..2}", "a,b", "a:b", "x?y", "x#1", "a b", "x[1]", "50%"])
def test_stems_that_brace_expansion_or_url_parsing_change_are_refused(stem, inputs, tmp_path):
    result = CliRunner().invoke(
        main, ["export", "frames", inputs[0], str(tmp_path / "out"), "--stem", stem]
    )
    assert result.exit_code == 2, result.output
    assert "invalid output stem" in result.output and "url_pattern" in result.output
    assert not (tmp_path / "out").exists()


def test_a_yaml_stem_with_braces_is_refused(inputs, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(f"inputs: [{inputs[0]}]\noutput_stem: 'x{{1..2}}'\n")
    result = CliRunner().invoke(main, ["export", "frames", str(config), str(tmp_path / "out")])
    assert result.exit_code != 0
    assert "c.yaml" in result.output and "output_stem" in result.output


def test_workers_default_comes_from_the_plan(inputs, tmp_path):
    # A small --compressed --uint8 export runs in one process (measured faster than two).
    log = _export(inputs, tmp_path / "small", "--compressed", "--uint8", "-v")
    assert "inline executor, 1 worker(s)" in log
    from toile.export.plan import RecordingPlan
    from toile.formats import Source

    def plan(frames: int) -> RecordingPlan:
        return RecordingPlan(
            0, "big", Source("tiff", Path("big.tif")), {}, frames, (512, 512), "uint16"
        )

    big = make_config(["big.tif"], tmp_path / "o", workers=None, compressed=True)
    assert choose_workers(big, [plan(10)]) == 1
    import os

    cores = os.cpu_count() or 1
    many = 20_000 * 512 * 512 * 2 // (128 << 20)
    assert choose_workers(big, [plan(20_000)]) == min(cores, many)
    # A plain export: each process keeps two cores busy (copy, and SHA-256 on a thread).
    plain = big.with_changes(compressed=False)
    assert choose_workers(plain, [plan(20_000)]) == min(max(1, cores // 2), many)
    assert choose_workers(big.with_changes(workers=3), [plan(10)]) == 3


def test_unknown_executor_and_scheduler_mistakes_are_one_line(inputs, tmp_path):
    with pytest.raises(Exception, match="unknown executor 'ray'"):
        get_executor("ray")
    for args, message in [
        (["--executor", "processes", "--scheduler", "tcp://127.0.0.1:1"], "need the dask executor"),
        (["--scheduler", "127.0.0.1:8786"], "not a Dask scheduler address"),
        (["--scheduler", "tcp://a:1", "--scheduler-file", "s.json"], "exclude each other"),
    ]:
        result = CliRunner().invoke(
            main, ["export", "frames", inputs[0], str(tmp_path / "out"), *args]
        )
        assert result.exit_code == 2, result.output
        assert message in result.output


@pytest.fixture(scope="module")
def with_bad_frame(inputs, tmp_path_factory) -> list[str]:
    """The inputs, with a recording in the middle whose 21st frame cannot be decoded."""
    import tifffile

    bad = tmp_path_factory.mktemp("bad") / "b-bad.tif"
    tifffile.imwrite(bad, _frames(30, seed=9), compression="zlib", photometric="minisblack")
    with tifffile.TiffFile(bad) as tiff:
        offset, count = tiff.pages[20].dataoffsets[0], tiff.pages[20].databytecounts[0]
    data = bytearray(bad.read_bytes())
    data[offset : offset + count] = bytes(count)
    bad.write_bytes(bytes(data))
    return [inputs[0], str(bad), inputs[2]]


@pytest.mark.parametrize(
    "executor",
    [
        ["--workers", "1"],
        ["--executor", "processes", "--workers", "2"],
        # one pass in the driver: failing while deflating, and in the statistics pass
        ["--compressed", "--workers", "2"],
        ["--uint8", "--compressed", "--workers", "1"],
    ],
    ids=["inline", "processes", "one-pass", "one-pass-uint8"],
)
def test_a_recording_failing_mid_way_is_skipped_and_the_rest_replanned(
    executor, with_bad_frame, tmp_path
):
    output = tmp_path / "out"
    args = [*with_bad_frame, str(output), "--stem", "ds", "--shard-size", "6000", "--no-progress"]
    failed = CliRunner().invoke(main, ["export", "frames", *args, *executor])
    assert failed.exit_code == 1
    assert "b-bad.tif" in failed.output and "page 20" in failed.output
    assert not output.exists() or not any(output.iterdir())
    result = CliRunner().invoke(main, ["export", "frames", *args, *executor, "--on-error", "skip"])
    assert result.exit_code == 3, result.output
    manifest = json.loads((output / "ds.manifest.json").read_text())
    assert [Path(s["source"]).name for s in manifest["skipped"]] == ["b-bad.tif"]
    kept = [Path(r["source"]).name for r in manifest["recordings"]]
    assert kept == ["a.ome.tif", "c.ome.tif"]
    assert manifest["totals"]["samples"] == 75
    from toile.dataset import verify_dataset

    assert verify_dataset(output).ok
    shards = sorted(p.name for p in output.iterdir() if ".tar" in p.name)
    assert shards == [s["name"] for s in manifest["shards"]]
    assert not (output / ".ds.staging").exists()


def test_manifest_holds_each_recordings_vendor_metadata_once(tmp_path):
    from toile.formats import discover, open_source
    from toile.writers import write_prairie_series

    series = tmp_path / "TSeries-001"
    write_prairie_series(series, iter(_frames(4, seed=5)))
    stack = tmp_path / "plain.tif"
    write_imagej_stack(stack, iter(_frames(3, seed=6)))
    output = tmp_path / "out"
    _export([str(series), str(stack)], output)
    manifest = json.loads((output / "ds.manifest.json").read_text())
    by_source = {Path(r["source"]).name: r for r in manifest["recordings"]}
    for source in discover([str(series), str(stack)], tmp_path):
        with open_source(source) as recording:
            entry = by_source[source.path.name]
            assert entry["format"] == recording.metadata.get("format", source.format)
            if recording.vendor_metadata is None:
                assert "vendor_metadata" not in entry
            else:
                assert entry["vendor_metadata"] == json.loads(json.dumps(recording.vendor_metadata))
    samples = [json.loads(m) for m in _json_members(output)]
    assert samples and all("vendor_metadata" not in s for s in samples)


def _json_members(output: Path) -> list[bytes]:
    import tarfile

    found = []
    for shard in sorted(output.glob("*.tar")):
        with tarfile.open(shard) as tar:
            found += [tar.extractfile(m).read() for m in tar if m.name.endswith(".json")]
    return found
