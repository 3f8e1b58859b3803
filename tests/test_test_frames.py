"""`toile export test-frames`: a synthetic dataset with the real layout, deterministic."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import webdataset as wds
from click.testing import CliRunner

from toile.cli import main
from toile.export import export_test_frames

SMALL = ["--frames", "12", "--height", "32", "--width", "40"]


def _samples(directory, pattern="*.tar*"):
    urls = sorted(str(p) for p in directory.glob(pattern) if not p.name.startswith("."))
    return list(wds.WebDataset(urls, shardshuffle=False).decode())


def test_cli_writes_shards_that_stock_webdataset_decodes(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(main, ["export", "test-frames", str(out), *SMALL])
    assert result.exit_code == 0, result.output
    assert (out / "demo-000000.tar").is_file()
    manifest = json.loads((out / "demo.manifest.json").read_text())
    assert manifest["totals"]["samples"] == 12
    samples = _samples(out)
    assert [s["__key__"] for s in samples] == [f"sample-000000-{i:03d}" for i in range(12)]
    for index, sample in enumerate(samples):
        assert sample["npy"].shape == (32, 40)
        assert sample["npy"].dtype == np.uint16
        assert isinstance(sample["json"], dict)
        assert sample["json"]["frame"]["index"] == index
        assert sample["json"]["recording_index"] == 0
        assert sample["json"]["scale_unit"] == "um"


def test_compressed_is_tar_gz_and_decodes_the_same(tmp_path):
    plain = tmp_path / "plain"
    packed = tmp_path / "packed"
    assert CliRunner().invoke(main, ["export", "test-frames", str(plain), *SMALL]).exit_code == 0
    result = CliRunner().invoke(
        main, ["export", "test-frames", str(packed), *SMALL, "--compressed", "--stem", "gz"]
    )
    assert result.exit_code == 0, result.output
    assert [p.name for p in sorted(packed.glob("*.tar.gz"))] == ["gz-000000.tar.gz"]
    a = _samples(plain)
    b = _samples(packed)
    assert len(a) == len(b) == 12
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x["npy"], y["npy"])
        assert x["json"] == y["json"]


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    first = export_test_frames(
        tmp_path / "a", stem="ds", frames=8, height=24, width=24, seed=3, progress=False
    )
    second = export_test_frames(
        tmp_path / "b", stem="ds", frames=8, height=24, width=24, seed=3, progress=False
    )
    other = export_test_frames(
        tmp_path / "c", stem="ds", frames=8, height=24, width=24, seed=4, progress=False
    )
    a = (tmp_path / "a" / "ds-000000.tar").read_bytes()
    assert a == (tmp_path / "b" / "ds-000000.tar").read_bytes()
    assert a != (tmp_path / "c" / "ds-000000.tar").read_bytes()
    assert (tmp_path / "a" / "ds.manifest.json").read_bytes() == (
        tmp_path / "b" / "ds.manifest.json"
    ).read_bytes()
    assert first.shards[0].sha256 == second.shards[0].sha256 != other.shards[0].sha256


def test_shard_size_splits_and_two_channels(tmp_path):
    result = export_test_frames(
        tmp_path / "o",
        frames=20,
        height=32,
        width=32,
        channels=2,
        shard_size=20_000,
        progress=False,
    )
    assert len(result.shards) > 1
    assert all(s.size <= 20_000 for s in result.shards)
    samples = _samples(tmp_path / "o")
    assert len(samples) == 20
    assert samples[0]["npy"].shape == (2, 32, 32)
    assert [c["name"] for c in samples[0]["json"]["channels"]] == ["GCaMP", "tdTomato"]


def test_existing_dataset_is_kept_unless_overwrite(tmp_path):
    out = tmp_path / "o"
    assert CliRunner().invoke(main, ["export", "test-frames", str(out), *SMALL]).exit_code == 0
    before = (out / "o-000000.tar").read_bytes()
    result = CliRunner().invoke(main, ["export", "test-frames", str(out), *SMALL, "--seed", "9"])
    assert result.exit_code == 1
    assert "already holds a dataset" in result.output and "--overwrite" in result.output
    assert (out / "o-000000.tar").read_bytes() == before
    result = CliRunner().invoke(
        main, ["export", "test-frames", str(out), *SMALL, "--seed", "9", "--overwrite"]
    )
    assert result.exit_code == 0, result.output
    assert (out / "o-000000.tar").read_bytes() != before


def test_overwrite_leaves_no_stale_shard(tmp_path):
    out = tmp_path / "o"
    export_test_frames(out, frames=20, height=32, width=32, shard_size=10_000, progress=False)
    many = sorted(p.name for p in out.iterdir())
    export_test_frames(out, frames=20, height=32, width=32, overwrite=True, progress=False)
    assert len(many) > 2
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "o-000000.tar", "o.manifest.json"]


def test_console_script_end_to_end(tmp_path):
    out = tmp_path / "demo"
    run = subprocess.run(
        [sys.executable, "-m", "toile.cli", "export", "test-frames", str(out), *SMALL],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "12 frame(s)" in run.stderr
    assert len(_samples(out)) == 12


def test_test_recording_layouts_export_as_real_recordings(tmp_path):
    runner = CliRunner()
    small = ["--frames", "4", "--height", "16", "--width", "24"]
    cases = [
        ("ome-tiff", tmp_path / "rec.ome.tif", ["--channels", "2"], (2, 16, 24)),
        ("prairie-view", tmp_path / "TSeries-01", ["--channels", "2"], (2, 16, 24)),
        ("imagej", tmp_path / "stack.tif", [], (16, 24)),
    ]
    for layout, path, extra, shape in cases:
        result = runner.invoke(
            main, ["export", "test-recording", str(path), "--layout", layout, *small, *extra]
        )
        assert result.exit_code == 0, result.output
        out = tmp_path / f"out-{layout}"
        result = runner.invoke(main, ["export", "frames", str(path), str(out), "--no-progress"])
        assert result.exit_code == 0, result.output
        samples = _samples(out)
        assert len(samples) == 4
        assert samples[0]["npy"].shape == shape
        assert samples[0]["json"]["format"] == layout


def test_test_recording_file_layout_needs_a_tiff_name(tmp_path):
    result = CliRunner().invoke(main, ["export", "test-recording", str(tmp_path / "rec")])
    assert result.exit_code == 2
    assert ".tif" in result.output
