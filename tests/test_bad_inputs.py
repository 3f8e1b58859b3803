"""Bad inputs and outputs through the CLI: one clear line, exit code 1, nothing written.

Each case builds a broken input (or output) with real files, runs
``toile export frames`` and checks the message (one line, naming the file and
the problem), the exit code, and that the output directory holds no shard,
manifest, staging directory or temporary file afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner, Result

from toile.cli import main
from toile.synthetic import MovieSpec, generate_frames
from toile.writers import write_ome_tiff, write_prairie_series

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _frames(n: int, seed: int = 0) -> list[np.ndarray]:
    return list(generate_frames(MovieSpec(frames=n, height=32, width=32, seed=seed)))


def _export(*args: str) -> Result:
    return CliRunner().invoke(main, ["export", "frames", *args, "--no-progress", "--workers", "1"])


def _error_line(result: Result) -> str:
    """The single error line of a failed run (stderr holds nothing else)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{result.stderr}"
    assert lines[0].startswith("Error: "), lines[0]
    return lines[0]


def _files_under(directory: Path) -> list[str]:
    if not directory.exists():
        return []
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def _ome_description(path: Path) -> str:
    with tifffile.TiffFile(path) as tif:
        return tif.pages.first.description


# --------------------------------------------------------------------------------------
# Broken inputs, one builder each: returns the input path, the file the message must
# name, and words of which one must appear in the message.


@dataclass
class Case:
    input: Path
    names: Path
    words: tuple[str, ...]


def _nonexistent(root: Path) -> Case:
    path = root / "missing_recording.ome.tif"
    return Case(path, path, ("not exist", "not found", "no such"))


def _empty_directory(root: Path) -> Case:
    path = root / "empty_session"
    path.mkdir()
    return Case(path, path, ("no tiff", "no recording", "empty"))


def _dangling_symlink(root: Path) -> Case:
    path = root / "dangling.tif"
    path.symlink_to(root / "gone.tif")
    return Case(path, path, ("broken", "dangling", "not exist", "not found"))


def _fifo(root: Path) -> Case:
    path = root / "pipe.tif"
    os.mkfifo(path)
    return Case(path, path, ("not a regular file", "not a file", "cannot read"))


def _zero_bytes(root: Path) -> Case:
    path = root / "zero.tif"
    path.write_bytes(b"")
    return Case(path, path, ("empty", "0 bytes", "zero"))


def _truncated(root: Path) -> Case:
    path = root / "truncated.ome.tif"
    write_ome_tiff(path, _frames(10))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return Case(path, path, ("truncated", "corrupt"))


def _truncated_header(root: Path) -> Case:
    path = root / "header_only.tif"
    write_ome_tiff(path, _frames(2))
    path.write_bytes(path.read_bytes()[:6])
    return Case(path, path, ("truncated", "corrupt", "not a tiff"))


def _random_bytes(root: Path) -> Case:
    path = root / "noise.ome.tif"
    path.write_bytes(np.random.default_rng(7).bytes(4096))
    return Case(path, path, ("not a tiff",))


def _malformed_ome_xml(root: Path) -> Case:
    path = root / "malformed.ome.tif"
    write_ome_tiff(path, _frames(10))
    xml = _ome_description(path)
    tifffile.tiffcomment(path, comment=xml[: len(xml) // 2].encode())
    return Case(path, path, ("ome-xml", "malformed", "xml"))


def _ome_size_t_contradicts_pixels(root: Path) -> Case:
    path = root / "sizet.ome.tif"
    write_ome_tiff(path, _frames(10))
    xml = _ome_description(path)
    assert 'SizeT="10"' in xml
    tifffile.tiffcomment(path, comment=xml.replace('SizeT="10"', 'SizeT="900"').encode())
    return Case(path, path, ("900", "sizet", "planes"))


def _prairie_missing_middle_file(root: Path) -> Case:
    files = write_prairie_series(root / "TSeries-001", _frames(6))
    files[3].unlink()
    return Case(root / "TSeries-001", files[3], ("missing", "not found", "not exist"))


def _prairie_truncated_middle_file(root: Path) -> Case:
    files = write_prairie_series(root / "TSeries-002", _frames(6))
    data = files[3].read_bytes()
    files[3].write_bytes(data[: len(data) - 700])
    return Case(root / "TSeries-002", files[3], ("truncated", "corrupt"))


def _prairie_frame_of_another_shape(root: Path) -> Case:
    files = write_prairie_series(root / "TSeries-003", _frames(5))
    description = _ome_description(files[2])
    tifffile.imwrite(
        files[2], np.zeros((16, 16), np.uint16), description=description, metadata=None
    )
    return Case(root / "TSeries-003", files[2], ("shape",))


def _ome_stack_page_of_another_shape(root: Path) -> Case:
    path = root / "shapes.ome.tif"
    frames = _frames(4)
    write_ome_tiff(path, frames)
    xml = _ome_description(path)
    with tifffile.TiffWriter(path) as writer:
        for index, frame in enumerate(frames):
            page = frame[:16] if index == 2 else frame
            writer.write(page, description=xml.encode() if index == 0 else None, metadata=None)
    return Case(path, path, ("shape",))


def _complex_pixels(root: Path) -> Case:
    path = root / "complex.tif"
    tifffile.imwrite(path, np.zeros((3, 8, 8), np.complex64), photometric="minisblack")
    return Case(path, path, ("unsupported", "complex"))


def _bilevel_pixels(root: Path) -> Case:
    path = root / "bilevel.tif"
    tifffile.imwrite(path, np.zeros((8, 8), bool))
    return Case(path, path, ("unsupported", "1-bit", "bilevel"))


CASES: dict[str, Callable[[Path], Case]] = {
    "nonexistent": _nonexistent,
    "empty-directory": _empty_directory,
    "dangling-symlink": _dangling_symlink,
    "fifo": _fifo,
    "zero-bytes": _zero_bytes,
    "truncated": _truncated,
    "truncated-header": _truncated_header,
    "random-bytes": _random_bytes,
    "malformed-ome-xml": _malformed_ome_xml,
    "ome-sizet-900-for-10": _ome_size_t_contradicts_pixels,
    "prairie-missing-middle": _prairie_missing_middle_file,
    "prairie-truncated-middle": _prairie_truncated_middle_file,
    "prairie-frame-shape": _prairie_frame_of_another_shape,
    "ome-page-shape": _ome_stack_page_of_another_shape,
    "complex64": _complex_pixels,
    "bilevel": _bilevel_pixels,
}


def _check_failure(result: Result, case: Case, output: Path) -> None:
    assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
    line = _error_line(result)
    assert case.names.name in line, line
    assert any(word in line.lower() for word in case.words), line
    assert _files_under(output) == [], _files_under(output)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_clear_line_and_writes_nothing(name, tmp_path):
    case = CASES[name](tmp_path)
    output = tmp_path / "out"
    result = _export(str(case.input), str(output))
    _check_failure(result, case, output)


@pytest.mark.parametrize("name", ["truncated", "prairie-truncated-middle", "prairie-frame-shape"])
def test_bad_input_among_good_ones_writes_nothing(name, tmp_path):
    """The bad recording comes last, after good ones were converted: still nothing written."""
    good = tmp_path / "a_good.ome.tif"
    write_ome_tiff(good, _frames(20, seed=3))
    case = CASES[name](tmp_path)
    output = tmp_path / "out"
    result = _export(str(good), str(case.input), str(output), "--shard-size", "20000")
    _check_failure(result, case, output)


def test_unreadable_file(tmp_path):
    if IS_ROOT:
        pytest.skip("root reads files whatever their permissions (FIFO and symlink cases cover it)")
    path = tmp_path / "locked.ome.tif"
    write_ome_tiff(path, _frames(3))
    path.chmod(0)
    output = tmp_path / "out"
    result = _export(str(path), str(output))
    _check_failure(result, Case(path, path, ("permission", "cannot read", "unreadable")), output)


def test_unlistable_directory(tmp_path):
    if IS_ROOT:
        pytest.skip("root lists directories whatever their permissions")
    directory = tmp_path / "locked"
    directory.mkdir()
    write_ome_tiff(directory / "a.ome.tif", _frames(3))
    directory.chmod(0)
    output = tmp_path / "out"
    try:
        result = _export(str(directory), str(output))
    finally:
        directory.chmod(0o755)
    case = Case(directory, directory, ("permission", "cannot read", "unreadable"))
    _check_failure(result, case, output)


# --------------------------------------------------------------------------------------
# Bad outputs and config files


@pytest.fixture
def good_input(tmp_path: Path) -> Path:
    path = tmp_path / "good.ome.tif"
    write_ome_tiff(path, _frames(4))
    return path


def test_output_path_is_a_file(good_input, tmp_path):
    output = tmp_path / "dataset"
    output.write_bytes(b"not a directory")
    result = _export(str(good_input), str(output))
    assert result.exit_code == 1
    line = _error_line(result)
    assert "dataset" in line and "not a directory" in line.lower()
    assert output.read_bytes() == b"not a directory"


def test_output_parent_is_a_file(good_input, tmp_path):
    parent = tmp_path / "parent"
    parent.write_bytes(b"x")
    output = parent / "dataset"
    result = _export(str(good_input), str(output))
    assert result.exit_code == 1
    line = _error_line(result)
    assert "parent" in line and "not a directory" in line.lower()
    assert parent.read_bytes() == b"x"


def test_output_directory_not_writable(good_input, tmp_path):
    if IS_ROOT:
        pytest.skip("root writes into directories whatever their permissions")
    output = tmp_path / "readonly"
    output.mkdir()
    output.chmod(0o555)
    try:
        result = _export(str(good_input), str(output))
    finally:
        output.chmod(0o755)
    assert result.exit_code == 1
    line = _error_line(result)
    assert "readonly" in line and "writable" in line.lower()
    assert _files_under(output) == []


@pytest.mark.parametrize(
    "text, kind", [("- a.tif\n- b.tif\n", "list"), ("just a string\n", "str"), ("42\n", "int")]
)
def test_yaml_config_that_is_not_a_mapping(text, kind, good_input, tmp_path):
    """A config file of the wrong shape is a bad input: exit 1, one line naming the file."""
    config = tmp_path / "config.yaml"
    config.write_text(text)
    output = tmp_path / "out"
    result = CliRunner().invoke(main, ["export", "frames", str(config), str(output)])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert "config.yaml" in errors[0] and "mapping" in errors[0].lower()
    assert _files_under(output) == []


# --------------------------------------------------------------------------------------
# An earlier dataset survives a failed --overwrite


@pytest.mark.parametrize(
    "name", ["random-bytes", "ome-sizet-900-for-10", "prairie-truncated-middle"]
)
def test_failed_overwrite_leaves_the_existing_dataset_untouched(name, tmp_path):
    output = tmp_path / "dataset"
    first = tmp_path / "first.ome.tif"
    write_ome_tiff(first, _frames(12, seed=5))
    result = _export(str(first), str(output), "--shard-size", "20000")
    assert result.exit_code == 0, result.output
    before = _snapshot(output)
    assert len(before) >= 3  # several shards and the manifest

    good = tmp_path / "a_good.ome.tif"
    write_ome_tiff(good, _frames(30, seed=6))
    case = CASES[name](tmp_path)
    result = _export(
        str(good), str(case.input), str(output), "--overwrite", "--shard-size", "20000"
    )
    assert result.exit_code == 1, result.output
    assert case.names.name in _error_line(result)
    assert _snapshot(output) == before
    assert _files_under(output) == sorted(before)
