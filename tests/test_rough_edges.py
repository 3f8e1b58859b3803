"""Rough edges a new user meets: messages, option forms, and what `toile info` says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from toile.cli import main
from toile.config import make_config
from toile.dataset import dataset_info, format_info
from toile.export import export_frames, export_test_frames


def _cli(*args: str):
    return CliRunner().invoke(main, list(args))


def _small(path: Path, **options) -> Path:
    export_test_frames(path, frames=3, height=16, width=16, progress=False, **options)
    return path


# --------------------------------------------------------------------------------------
# toile info


def test_info_on_a_shard_says_a_dataset_was_expected(tmp_path):
    out = _small(tmp_path / "ds")
    result = _cli("info", str(out / "ds-000000.tar"))
    assert result.exit_code == 1
    line = result.output.strip()
    assert line == (
        f"Error: {out / 'ds-000000.tar'}: is a shard, not a dataset: expected a dataset "
        "directory or its *.manifest.json file (the directory that holds this shard)"
    )
    other = tmp_path / "notes.txt"
    other.write_bytes(b"\x93\x00 binary")
    result = _cli("info", str(other))
    assert "not a toile manifest (not JSON): expected a dataset directory" in result.output


def test_info_says_whether_frame_shapes_are_uniform(tmp_path):
    info = dataset_info(_small(tmp_path / "one", channels=2))
    assert info["frame_shapes"] == {
        "uniform": True,
        "shapes": [{"shape": [2, 16, 16], "dtype": "uint16", "recordings": 1}],
    }
    assert "frames       uniform: every frame is 2x16x16 uint16" in format_info(info)


def test_info_on_mixed_shapes_and_skipped_recordings_names_each_path_once(tmp_path):
    from toile.writers import write_imagej_stack, write_ome_tiff

    inputs = tmp_path / "in"
    inputs.mkdir()
    import numpy as np

    write_ome_tiff(inputs / "a.ome.tif", np.zeros((2, 8, 8), np.uint16))
    write_imagej_stack(inputs / "b.tif", np.zeros((2, 10, 8), np.uint16))
    bad = inputs / "c.tif"
    bad.write_bytes(b"not a tiff at all")
    out = tmp_path / "mixed"
    export_frames(make_config([str(inputs)], out, on_error="skip", workers=1, progress=False))
    info = dataset_info(out)
    assert info["frame_shapes"]["uniform"] is False
    text = format_info(info)
    assert "frames       mixed shapes or dtypes (8x8 uint16, 10x8 uint16)" in text
    skipped = [line for line in text.splitlines() if str(bad) in line]
    assert len(skipped) == 1 and skipped[0].count(str(bad)) == 1, skipped
    raw = json.loads(next(out.glob("*.manifest.json")).read_text())
    assert raw["skipped"][0]["source"] == str(bad)
    assert str(bad) not in info["skipped"][0]["error"]


@pytest.mark.parametrize("name", ["ds.manifest.json"])
def test_info_on_a_broken_manifest_still_says_json(tmp_path, name):
    out = _small(tmp_path / "ds")
    (out / name).write_text("{not json")
    result = _cli("info", str(out / name))
    assert result.exit_code == 1 and "not valid JSON" in result.output


# --------------------------------------------------------------------------------------
# Options


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("38MB", 38_000_000),
        ("850M", 850_000_000),
        ("1GiB", 2**30),
        ("1.5GB", 1_500_000_000),
        ("64 KiB", 65_536),
        ("38000000", 38_000_000),
        ("2mb", 2_000_000),
    ],
)
def test_byte_sizes_are_exact(text, size):
    from toile.config import parse_byte_size

    assert parse_byte_size(text) == size


def test_shard_size_with_a_unit_on_the_command_line_and_in_yaml(tmp_path):
    out = tmp_path / "ds"
    result = _cli(
        "export", "test-frames", str(out), "--frames", "2", "--height", "8", "--width", "8",
        "--shard-size", "38MB",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "ds.manifest.json").read_text())
    assert manifest["shard_size_limit"] == 38_000_000
    bad = _cli("export", "test-frames", str(tmp_path / "x"), "--shard-size", "38 furlongs")
    assert bad.exit_code == 2
    assert "'38 furlongs' is not a size in bytes" in bad.output
    assert (
        "not a whole number of bytes"
        in _cli("export", "test-frames", str(tmp_path / "x"), "--shard-size", "0.5B").output
    )

    from toile.config import build_config
    from toile.errors import ConfigFileError

    config_file = tmp_path / "c.yaml"
    config_file.write_text("inputs: [a.tif]\nshard_size: 1GiB\n")
    assert build_config([], tmp_path / "o", {}, config_file).shard_size == 2**30
    config_file.write_text("inputs: [a.tif]\nshard_size: lots\n")
    with pytest.raises(
        ConfigFileError,
        match=r"line 2: shard_size: expected an integer or a size with a unit such as 38MB",
    ):
        build_config([], tmp_path / "o", {}, config_file)


def test_uint8_range_implies_uint8_and_contradicting_yaml_is_refused(tmp_path):
    from toile.config import build_config
    from toile.errors import ConfigFileError

    config = build_config(["a.tif"], tmp_path / "o", {"uint8_range": "minmax"})
    assert config.to_uint8 and config.uint8_range == "minmax"
    plain = build_config(["a.tif"], tmp_path / "o", {})
    assert not plain.to_uint8 and plain.uint8_range == "max"
    config_file = tmp_path / "c.yaml"
    config_file.write_text("inputs: [a.tif]\nto_uint8: false\nuint8_range: minmax\n")
    with pytest.raises(ConfigFileError, match="to_uint8 is false: remove one of them"):
        build_config([], tmp_path / "o", {}, config_file)
    config_file.write_text("inputs: [a.tif]\nuint8_range: 'percentile:1,99'\n")
    assert build_config([], tmp_path / "o", {}, config_file).to_uint8


# --------------------------------------------------------------------------------------
# Command-line messages


def test_a_forgotten_output_says_output_is_missing(tmp_path):
    result = _cli("export", "frames", str(tmp_path / "rec.ome.tif"))
    assert result.exit_code == 2
    assert "Missing argument 'OUTPUT': only one path was given" in result.output
    assert "INPUT..." not in result.output.splitlines()[-1]
    assert "Missing argument 'OUTPUT'" in _cli("export", "frames").output


def test_export_help_has_examples():
    result = _cli("export", "--help")
    assert result.exit_code == 0
    assert "Examples:" in result.output and "toile export test-frames /tmp/demo" in result.output


def test_skipped_recordings_name_their_path_once_on_stderr(tmp_path):
    import numpy as np

    from toile.writers import write_ome_tiff

    inputs = tmp_path / "in"
    inputs.mkdir()
    write_ome_tiff(inputs / "a.ome.tif", np.zeros((2, 8, 8), np.uint16))
    bad = inputs / "b.tif"
    bad.write_bytes(b"not a tiff")
    out = tmp_path / "o1"
    result = CliRunner().invoke(
        main, ["export", "frames", str(inputs), str(out), "--on-error", "skip", "--no-progress"]
    )
    assert result.exit_code == 3, result.output
    lines = result.output.strip().splitlines()
    skipped = [line for line in lines if line.startswith("toile: skipped")]
    assert len(skipped) == 1 and skipped[0].count(str(bad)) == 1, skipped
    wrote = [line for line in lines if line.startswith("toile: wrote")]
    assert wrote[0].startswith(f"toile: wrote {out / 'o1.manifest.json'}: ")
    assert wrote[0].endswith("1 recording(s) skipped"), wrote


def test_test_recording_refuses_an_existing_output_and_overwrite_replaces_it_whole(tmp_path):
    series = tmp_path / "TSeries-001"
    common = ["export", "test-recording", str(series), "--layout", "prairie-view"]
    small = ["--height", "8", "--width", "8"]
    assert _cli(*common, *small, "--frames", "4").exit_code == 0
    before = sorted(p.name for p in series.iterdir())
    refused = _cli(*common, *small, "--frames", "2")
    assert refused.exit_code == 1
    assert f"Error: {series}: exists and is not empty; give --overwrite" in refused.output
    assert sorted(p.name for p in series.iterdir()) == before
    assert _cli(*common, *small, "--frames", "2", "--overwrite").exit_code == 0
    after = sorted(p.name for p in series.iterdir())
    assert len([n for n in after if n.endswith(".ome.tif")]) == 2 < len(before)
    stack = tmp_path / "rec.ome.tif"
    assert _cli("export", "test-recording", str(stack), *small).exit_code == 0
    assert _cli("export", "test-recording", str(stack), *small).exit_code == 1
    assert _cli("export", "test-recording", str(stack), *small, "--overwrite").exit_code == 0
    (tmp_path / "data" / "sub").mkdir(parents=True)
    kept = _cli(*common[:2], str(tmp_path / "data"), "--layout", "prairie-view", "--overwrite")
    assert kept.exit_code == 1 and "holds directories" in kept.output


# --------------------------------------------------------------------------------------
# Progress and logging, reruns


def test_progress_clock_starts_at_the_first_frame():
    import io
    import time

    from tqdm import tqdm

    from toile.export.run import _StartOnFirstUpdate

    bar = _StartOnFirstUpdate(tqdm(total=100, file=io.StringIO(), mininterval=0))
    time.sleep(0.3)  # start-up: opening recordings, starting workers
    bar.update(1)
    assert bar.bar.n == 1 and bar.bar.format_dict["elapsed"] < 0.2
    bar.update(1)
    assert bar.bar.n == 2
    bar.close()


def test_verbose_without_a_terminal_logs_plain_lines(tmp_path):
    out = tmp_path / "ds"
    result = _cli(
        "export", "test-frames", str(out), "--frames", "3", "--height", "8", "--width", "8",
        "--verbose",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "\r" not in result.output
    lines = result.output.splitlines()
    assert any(
        "recording 0: synthetic-seed0 (synthetic), 3 frame(s) of 8x8 uint16" in x for x in lines
    )
    assert any("recording 0: synthetic-seed0: 3 frame(s) written" in x for x in lines)


def test_a_rerun_after_an_interrupt_needs_resume_or_overwrite(tmp_path):
    out = tmp_path / "ds"
    staged = out / ".ds.staging"  # what an interrupted first export leaves
    staged.mkdir(parents=True)
    (staged / "ds-000000.tar").write_bytes(b"a complete shard")
    args = ["export", "test-frames", str(out), "--frames", "3", "--height", "16", "--width", "16"]
    result = _cli(*args)
    assert result.exit_code == 1
    assert "holds the complete shards of an interrupted export of 'ds' (.ds.staging); " in (
        result.output
    )
    assert "--resume to continue it, or with --overwrite to start over" in result.output
    assert (staged / "ds-000000.tar").read_bytes() == b"a complete shard"
    again = _cli(*args, "--overwrite")
    assert again.exit_code == 0, again.output
    assert not staged.exists() and (out / "ds.manifest.json").is_file()


# --------------------------------------------------------------------------------------
# --dry-run


def _two_recordings(root: Path) -> Path:
    import numpy as np

    from toile.writers import write_ome_tiff

    inputs = root / "in"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    write_ome_tiff(inputs / "a.ome.tif", rng.integers(0, 4000, (6, 16, 16), dtype=np.uint16))
    write_ome_tiff(inputs / "b.ome.tif", rng.integers(0, 4000, (4, 16, 16), dtype=np.uint16))
    return inputs


@pytest.mark.parametrize("extra", [[], ["--uint8", "--compressed"]])
def test_dry_run_reports_the_plan_of_a_real_run_and_writes_nothing(tmp_path, extra):
    inputs = _two_recordings(tmp_path)
    out = tmp_path / "ds"
    args = ["export", "frames", str(inputs), str(out), "--shard-size", "8KB", *extra]
    result = _cli(*args, "--dry-run")
    assert result.exit_code == 0, result.output
    assert not out.exists()
    text = result.output
    assert text.startswith(f"dry run: nothing written; {out} would receive ds-*")
    assert f"[0] {inputs / 'a.ome.tif'} (ome-tiff): 6 frame(s) of 16x16" in text
    assert f"[1] {inputs / 'b.ome.tif'} (ome-tiff): 4 frame(s) of 16x16" in text
    if extra:
        assert "uint8 (from uint16)" in text and "normalization={method: max" in text
    real = _cli(*args, "--no-progress")
    assert real.exit_code == 0, real.output
    manifest = json.loads((out / "ds.manifest.json").read_text())
    totals = manifest["totals"]
    assert (
        f"shards: 2 recording(s), 10 frame(s), {totals['shards']} shard(s), "
        f"{totals['bytes']:,} bytes" in text
    )
    for shard in manifest["shards"]:
        assert f"  {shard['name']}: {shard['samples']} sample(s), {shard['size']:,} bytes" in text


def test_dry_run_fails_on_bad_inputs_as_a_real_run_does(tmp_path):
    inputs = _two_recordings(tmp_path)
    (inputs / "c.tif").write_bytes(b"not a tiff")
    out = tmp_path / "ds"
    dry = _cli("export", "frames", str(inputs), str(out), "--dry-run")
    real = _cli("export", "frames", str(inputs), str(out), "--no-progress")
    assert dry.exit_code == real.exit_code == 1
    assert dry.output == real.output and dry.output.startswith(f"Error: {inputs / 'c.tif'}: ")
    skip = _cli("export", "frames", str(inputs), str(out), "--dry-run", "--on-error", "skip")
    assert skip.exit_code == 0 and f"would skip {inputs / 'c.tif'}: " in skip.output
    assert not out.exists()


def test_a_hidden_output_directory_says_the_stem_came_from_its_name(tmp_path):
    result = _cli("export", "test-frames", str(tmp_path / ".hid"), "--frames", "2")
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert "invalid output stem '.hid', taken from the output directory's name" in message
    assert "give a stem with --stem" in message
    assert _cli("export", "test-frames", str(tmp_path / ".hid"), "--frames", "2", "--height",
                "8", "--width", "8", "--stem", "ok").exit_code == 0  # fmt: skip


def test_mixed_frame_shapes_warn_once_and_the_manifest_says_so(tmp_path, caplog):
    import logging

    import numpy as np

    from toile.writers import write_ome_tiff

    inputs = tmp_path / "in"
    inputs.mkdir()
    write_ome_tiff(inputs / "a.ome.tif", np.zeros((2, 8, 8), np.uint16))
    write_ome_tiff(inputs / "b.ome.tif", np.zeros((2, 2, 8, 8), np.uint16), channels=["x", "y"])
    write_ome_tiff(inputs / "c.ome.tif", np.zeros((2, 8, 8), np.uint16))
    out = tmp_path / "ds"
    with caplog.at_level(logging.WARNING):
        export_frames(make_config([str(inputs)], out, workers=1, progress=False))
    warnings = [r.getMessage() for r in caplog.records if "differ in shape" in r.getMessage()]
    assert len(warnings) == 1
    assert "8x8 uint16 (2 recording(s)); 2x8x8 uint16 (1 recording(s))" in warnings[0]
    manifest = json.loads((out / "ds.manifest.json").read_text())
    assert manifest["frame_shapes"]["uniform"] is False
    assert (out / "README.md").read_text().count("json") >= 2  # the card types npy as Json


def test_test_recording_file_layouts_name_the_layout(tmp_path):
    result = _cli("export", "test-recording", str(tmp_path / "rec"), "--layout", "ome-tiff")
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "--layout ome-tiff writes one file, whose name must end in .tif or .tiff" in text
    assert "a ome-tiff" not in text
