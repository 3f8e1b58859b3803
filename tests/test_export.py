"""End-to-end exports of real recording layouts through the pipeline and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import atdata
import numpy as np
import pytest
import tifffile
import webdataset as wds
from click.testing import CliRunner

from toile.cli import main
from toile.config import make_config
from toile.export import export_frames
from toile.normalize import to_raw
from toile.schema import Frame, ImageSample
from toile.synthetic import MovieSpec, generate_frames
from toile.writers import write_imagej_stack, write_ome_tiff, write_prairie_series


def _movie(frames: int, seed: int = 0, channels: int = 1, side: int = 32) -> np.ndarray:
    spec = MovieSpec(frames=frames, height=side, width=side, channels=channels, seed=seed)
    return np.stack(list(generate_frames(spec)))


def _read(out: Path, stem: str | None = None) -> list[dict]:
    stem = stem or out.name
    urls = sorted(str(p) for p in out.glob(f"{stem}-*.tar*"))
    return list(wds.WebDataset(urls, shardshuffle=False).decode())


def _export(*args: str) -> object:
    result = CliRunner().invoke(main, ["export", "frames", *args, "--no-progress"])
    return result


@pytest.fixture
def tree(tmp_path: Path) -> dict:
    """A folder with a 2-channel Prairie View series, an OME-TIFF stack and an ImageJ stack."""
    root = tmp_path / "data"
    root.mkdir()
    prairie = _movie(6, seed=1, channels=2)
    write_prairie_series(root / "TSeries-03152024-001", iter(prairie), n_channels=2)
    stack = _movie(9, seed=2)
    write_ome_tiff(root / "mouse_3_slice_2_20240315.ome.tif", iter(stack))
    imagej = _movie(4, seed=3)
    write_imagej_stack(root / "plain.tif", iter(imagej))
    return {"root": root, "prairie": prairie, "stack": stack, "imagej": imagej}


def test_directory_of_mixed_recordings_in_order_with_exact_pixels(tree, tmp_path):
    out = tmp_path / "out"
    result = _export(str(tree["root"]), str(out), "--workers", "1")
    assert result.exit_code == 0, result.output
    samples = _read(out)
    assert len(samples) == 6 + 9 + 4
    # Sorted by path: "TSeries..." sorts before "mouse_3..." before "plain.tif".
    formats = [s["json"]["format"] for s in samples]
    assert list(dict.fromkeys(formats)) == ["prairie-view", "ome-tiff", "imagej"]
    assert [s["json"]["recording_index"] for s in samples] == [0] * 6 + [1] * 9 + [2] * 4
    by_rec: dict[int, list] = {}
    for sample in samples:
        by_rec.setdefault(sample["json"]["recording_index"], []).append(sample)
    assert sorted(len(v) for v in by_rec.values()) == [4, 6, 9]
    for frames in by_rec.values():
        meta = frames[0]["json"]
        expected = {
            "prairie-view": tree["prairie"],
            "ome-tiff": tree["stack"],
            "imagej": tree["imagej"],
        }[meta["format"]]
        got = np.stack([f["npy"] for f in frames])
        np.testing.assert_array_equal(got, expected)
        assert [f["json"]["frame"]["index"] for f in frames] == list(range(len(frames)))
    manifest = json.loads((out / "out.manifest.json").read_text())
    assert [r["frames"] for r in manifest["recordings"]] == [len(by_rec[i]) for i in range(3)]


def test_prairie_directory_is_one_recording_with_channel_selection(tree, tmp_path):
    series = tree["root"] / "TSeries-03152024-001"
    out = tmp_path / "ch"
    result = _export(str(series), str(out), "--channel", "Ch2", "-v")
    assert result.exit_code == 0, result.output
    assert "prairie-view" in result.output and "6 frame(s)" in result.output
    samples = _read(out)
    assert len(samples) == 6
    np.testing.assert_array_equal(np.stack([s["npy"] for s in samples]), tree["prairie"][:, 1])
    assert samples[0]["json"]["frame"]["c_index"] == 1
    assert samples[0]["json"]["format"] == "prairie-view"


def test_glob_over_series_files_collapses_to_one_recording(tree, tmp_path):
    out = tmp_path / "g"
    pattern = str(tree["root"] / "TSeries-03152024-001" / "*.ome.tif")
    result = _export(pattern, str(out))
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "g.manifest.json").read_text())
    assert manifest["totals"]["recordings"] == 1
    assert manifest["totals"]["samples"] == 6


@pytest.mark.parametrize(
    "extra", [["--uint8"], ["--compressed", "--format", "atdata"]], ids=["uint8", "gz-atdata"]
)
def test_workers_two_equal_workers_one_byte_for_byte(tree, tmp_path, extra):
    """One pass on 1 or 2 threads, and the planned path on 2 processes: the same bytes."""
    one, two, processes = tmp_path / "one", tmp_path / "two", tmp_path / "processes"
    args = ["--stem", "ds", "--shard-size", "40000", *extra]
    result = _export(str(tree["root"]), str(one), "--workers", "1", "-v", *args)
    assert result.exit_code == 0, result.output
    assert "on 1 thread(s) of this process, in one pass" in result.output
    result = _export(str(tree["root"]), str(two), "--workers", "2", "-v", *args)
    assert result.exit_code == 0, result.output
    assert "on 2 thread(s) of this process, in one pass" in result.output
    result = _export(
        str(tree["root"]), str(processes), "--workers", "2", "--executor", "processes", "-v", *args
    )
    assert result.exit_code == 0, result.output
    assert "processes executor, 2 worker(s)" in result.output
    assert "in one pass" not in result.output
    names = sorted(p.name for p in one.iterdir())
    assert len(names) > 2
    for other in (two, processes):
        assert names == sorted(p.name for p in other.iterdir())
        for name in names:
            assert (one / name).read_bytes() == (other / name).read_bytes(), (other, name)


@pytest.mark.parametrize(
    "extra",
    [[], ["--compressed"], ["--compressed", "--format", "atdata"], ["--compressed", "--uint8"]],
    ids=["plain", "gz", "gz-atdata", "gz-uint8"],
)
def test_one_recording_over_processes_equals_inline(tree, tmp_path, extra):
    """The shards of one recording are written by several processes, each its own."""
    source = str(tree["root"] / "mouse_3_slice_2_20240315.ome.tif")
    one, three = tmp_path / "one", tmp_path / "three"
    args = ["--stem", "ds", "--shard-size", "6000", *extra]
    assert _export(source, str(one), "--workers", "1", *args).exit_code == 0
    result = _export(source, str(three), "--workers", "3", "--executor", "processes", *args)
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in one.iterdir())
    assert len(names) > 2
    assert names == sorted(p.name for p in three.iterdir())
    for name in names:
        assert (one / name).read_bytes() == (three / name).read_bytes(), name


def test_on_error_skip_exports_the_rest_and_reports(tree, tmp_path):
    (tree["root"] / "broken.tif").write_bytes(b"II*\x00" + b"\x07" * 100)
    out = tmp_path / "skip"
    failed = _export(str(tree["root"]), str(out / "fail"))
    assert failed.exit_code == 1
    assert "broken.tif" in failed.output
    assert not (out / "fail").exists() or not any((out / "fail").glob("*.tar"))
    result = _export(str(tree["root"]), str(out), "--on-error", "skip")
    assert result.exit_code == 3, result.output
    assert "broken.tif" in result.output
    manifest = json.loads((out / "skip.manifest.json").read_text())
    assert manifest["totals"]["recordings"] == 3
    assert [Path(s["source"]).name for s in manifest["skipped"]] == ["broken.tif"]
    assert len(_read(out)) == 19


README_CONFIG = """
inputs:
  - "data/**/*.tif"

output_stem: "astrocyte_dataset"
shard_size: 38000000  # 38MB for PDS compatibility
to_uint8: true

filename_spec:
  template: "mouse_{mouse_id}_slice_{slice_id}_{date}.tif"
  transforms:
    mouse_id: int
    slice_id: identity
    date: date_compact
"""


def test_readme_config_with_filename_fields_and_cli_override(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write_ome_tiff(data / "mouse_3_slice_2_20240315.tif", iter(_movie(5, seed=4)))
    write_ome_tiff(data / "mouse_12_slice_b_20240401.tif", iter(_movie(3, seed=5)))
    config = tmp_path / "config.yaml"
    config.write_text(README_CONFIG)
    out = tmp_path / "out"
    result = _export(str(config), str(out))
    assert result.exit_code == 0, result.output
    samples = _read(out, "astrocyte_dataset")
    assert len(samples) == 8
    first = samples[0]["json"]  # mouse_12... sorts first
    assert (first["mouse_id"], first["slice_id"], first["date"]) == (12, "b", "2024-04-01")
    assert samples[-1]["json"]["mouse_id"] == 3
    assert samples[0]["npy"].dtype == np.uint8
    # A flag overrides the file.
    result = _export(str(config), str(tmp_path / "o2"), "--stem", "other")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o2" / "other-000000.tar").exists()
    # The lens to SliceRecordingFrame works on these frames.
    from toile.schema import frame_to_slice_recording

    frame = Frame(image=samples[0]["npy"], metadata=samples[0]["json"])
    assert frame_to_slice_recording(frame).mouse_id == 12


def test_uint8_maps_back_to_raw_within_one_grey_level(tmp_path):
    movie = _movie(12, seed=6)
    stack = tmp_path / "rec.ome.tif"
    write_ome_tiff(stack, iter(movie))
    for method in ["max", "minmax", "percentile:1,99"]:
        out = tmp_path / method.replace(":", "_").replace(",", "_")
        result = _export(str(stack), str(out), "--uint8", "--uint8-range", method)
        assert result.exit_code == 0, result.output
        samples = _read(out)
        normalization = samples[0]["json"]["normalization"]
        assert all(s["json"]["normalization"] == normalization for s in samples)
        low, high = normalization["low"][0], normalization["high"][0]
        step = (high - low) / 255
        for sample, raw in zip(samples, movie, strict=True):
            assert sample["npy"].dtype == np.uint8
            back = to_raw(sample["npy"], normalization)
            clipped = np.clip(raw.astype(float), low, high)
            assert np.all(np.abs(back - clipped) <= step + 1e-9)
        if method == "max":
            expected = np.floor(255 * movie.astype(float) / movie.max()).astype(np.uint8)
            np.testing.assert_array_equal(np.stack([s["npy"] for s in samples]), expected)


def test_atdata_format_reads_with_atdata_and_lenses(tmp_path):
    movie = _movie(7, seed=7)
    stack = tmp_path / "rec.ome.tif"
    write_ome_tiff(stack, iter(movie))
    out = tmp_path / "at"
    result = _export(str(stack), str(out), "--format", "atdata", "--compressed")
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "at.manifest.json").read_text())
    url = str(out / manifest["url_pattern"])
    frames = list(atdata.Dataset[Frame](url).ordered())
    assert len(frames) == 7
    np.testing.assert_array_equal(np.stack([f.image for f in frames]), movie)
    assert frames[3].metadata["frame"]["index"] == 3
    images = list(atdata.Dataset[Frame](url).as_type(ImageSample).ordered())
    np.testing.assert_array_equal(images[2].data, movie[2])


def test_python_api_export(tmp_path):
    stack = tmp_path / "rec.tif"
    tifffile.imwrite(stack, _movie(5, seed=8))
    config = make_config([str(stack)], tmp_path / "api", workers=1, progress=False)
    result = export_frames(config)
    assert result.frames == 5 and result.recordings == 1
    assert result.manifest_path == tmp_path / "api" / "api.manifest.json"


def test_nothing_matches_is_a_clear_error(tmp_path):
    result = _export(str(tmp_path / "nope*.tif"), str(tmp_path / "out"))
    assert result.exit_code == 1
    assert "nope*.tif" in result.output and "matches no" in result.output
    assert not (tmp_path / "out").exists()


def test_a_files_warning_is_shown_once(tmp_path):
    stack = tmp_path / "rec.ome.tif"
    write_ome_tiff(stack, iter(_movie(3, seed=9)), date="yesterday at noon")
    result = _export(str(stack), str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if "WARNING" in line]
    assert len(warnings) == 1, result.output
    assert "rec.ome.tif" in warnings[0] and "date" in warnings[0].lower()
    assert "date_acquired" not in _read(tmp_path / "out")[0]["json"]


def test_frame_larger_than_the_shard_cap_fails_before_writing(tmp_path):
    stack = tmp_path / "rec.ome.tif"
    write_ome_tiff(stack, iter(_movie(3, seed=10, side=64)))
    out = tmp_path / "out"
    result = _export(str(stack), str(out), "--shard-size", "5000")
    assert result.exit_code == 1
    assert "rec.ome.tif" in result.output and "frame 0" in result.output
    assert "--shard-size" in result.output
    assert not out.exists()
