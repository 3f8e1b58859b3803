"""YAML config files and their merge with command-line flags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from toile.config import (
    DEFAULT_SHARD_SIZE,
    PDS_SHARD_SIZE,
    FilenameSpec,
    build_config,
    load_config_file,
    make_config,
)
from toile.errors import ConfigError
from toile.formats import discover as resolve_inputs

README_CONFIG = """\
# config.yaml
inputs:
  - "/data/experiment1/**/*.tif"
  - "/data/experiment2/**/*.tif"

output_stem: "astrocyte_dataset"
shard_size: 38000000  # 38MB for PDS compatibility
to_uint8: true

# Optional: Extract metadata from filenames
filename_spec:
  template: "mouse_{mouse_id}_slice_{slice_id}_{date}.tif"
  transforms:
    mouse_id: int
    slice_id: identity
    date: date_compact
"""


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_readme_config_loads(tmp_path: Path) -> None:
    path = write(tmp_path, README_CONFIG)
    assert load_config_file(path) == {
        "inputs": ["/data/experiment1/**/*.tif", "/data/experiment2/**/*.tif"],
        "stem": "astrocyte_dataset",
        "shard_size": 38_000_000,
        "to_uint8": True,
        "filename_spec": FilenameSpec(
            template="mouse_{mouse_id}_slice_{slice_id}_{date}.tif",
            transforms={"mouse_id": "int", "slice_id": "identity", "date": "date_compact"},
        ),
        "base_dir": tmp_path,
    }


def test_yaml_input_gives_the_config(tmp_path: Path) -> None:
    path = write(tmp_path, README_CONFIG)
    config = build_config([str(path)], tmp_path / "out", {})
    assert config.inputs == ("/data/experiment1/**/*.tif", "/data/experiment2/**/*.tif")
    assert config.stem == "astrocyte_dataset"
    assert config.shard_size == 38_000_000
    assert config.to_uint8 is True
    assert config.filename_spec is not None
    assert config.filename_spec.transforms["date"] == "date_compact"
    assert config.base_dir == tmp_path
    assert config.output == tmp_path / "out"


def test_other_options_by_their_flag_names(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "inputs: rec.tif\nstem: exp\npds: true\nuint8: true\nuint8_range: minmax\n"
        "compressed: true\nformat: atdata\nchannel: GCaMP\nworkers: 3\non_error: skip\n"
        "resume: true\nverbose: true\nprogress: false\n",
    )
    config = build_config([], tmp_path / "out", {}, config_path=path)
    assert config.inputs == ("rec.tif",)
    assert (config.stem, config.shard_size, config.to_uint8) == ("exp", PDS_SHARD_SIZE, True)
    assert (config.uint8_range, config.compressed, config.format) == ("minmax", True, "atdata")
    assert (config.channel, config.workers, config.on_error) == ("GCaMP", 3, "skip")
    assert (config.resume, config.verbose, config.progress) == (True, True, False)


def test_channel_index_and_null_workers(tmp_path: Path) -> None:
    path = write(tmp_path, "inputs: [a.tif]\nchannel: 1\nworkers: null\n")
    config = build_config([], tmp_path / "out", {}, config_path=path)
    assert config.channel == 1
    assert config.workers is None  # chosen from the shard plan when the export runs


def test_cli_options_override_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, README_CONFIG)
    cli = {"stem": "from_cli", "shard_size": 1000, "to_uint8": False, "workers": None}
    config = build_config([str(path)], tmp_path / "out", cli)
    assert (config.stem, config.shard_size, config.to_uint8) == ("from_cli", 1000, False)
    assert config.filename_spec is not None


def test_cli_pds_replaces_the_file_shard_size(tmp_path: Path) -> None:
    path = write(tmp_path, "inputs: a.tif\nshard_size: 5000\noverwrite: true\n")
    config = build_config([str(path)], tmp_path / "out", {"pds": True, "resume": True})
    assert config.shard_size == PDS_SHARD_SIZE
    assert (config.resume, config.overwrite) == (True, False)
    config = build_config([str(path)], tmp_path / "out", {"pds": False})
    assert config.shard_size == 5000


def test_without_a_file_cli_options_are_make_config_arguments(tmp_path: Path) -> None:
    config = build_config(["a", "b"], tmp_path / "out", {"stem": "s", "pds": None})
    assert config.inputs == ("a", "b")
    assert (config.stem, config.shard_size) == ("s", DEFAULT_SHARD_SIZE)
    assert config.base_dir == Path.cwd()


def test_cli_inputs_win_over_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "inputs: a.tif\nstem: x\n")
    monkeypatch.chdir(tmp_path.parent)
    config = build_config(["b.tif"], tmp_path / "out", {}, config_path=path)
    assert config.inputs == ("b.tif",)
    assert config.base_dir == tmp_path.parent
    assert config.stem == "x"


def test_relative_inputs_resolve_against_the_config_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    tifffile.imwrite(project / "data" / "mouse_7.tif", np.zeros((8, 8), np.uint8))
    path = write(project, "inputs: data/*.tif\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = build_config(["../project/config.yaml"], elsewhere / "out", {})
    assert config.base_dir == project
    (source,) = resolve_inputs(config.inputs, config.base_dir)
    assert source.path == project / "data" / "mouse_7.tif"
    assert path.exists()


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        (
            "inputs: a.tif\nshard_sise: 5\n",
            ["line 2", "unknown key", "did you mean 'shard_size'?", "valid keys: inputs"],
        ),
        ('inputs: a.tif\nshard_size: "big"\n', ["line 2", "shard_size", "expected an integer"]),
        ("inputs: a.tif\nshard_size: true\n", ["expected an integer", "boolean true"]),
        ("inputs: a.tif\nshard_size: 0\n", ["shard_size", "at least 1"]),
        ("inputs: a.tif\nworkers: 2.5\n", ["workers", "expected an integer"]),
        ('inputs: a.tif\nto_uint8: "yes"\n', ["to_uint8", "expected true or false", "'yes'"]),
        ("inputs: a.tif\nverbose: 1\n", ["verbose", "expected true or false"]),
        ("inputs: a.tif\nformat: png\n", ["format", "expected one of npy, atdata"]),
        ("inputs: a.tif\non_error: ignore\n", ["on_error", "expected one of fail, skip"]),
        ("inputs: a.tif\nchannel: [1, 2]\n", ["channel", "channel index or name"]),
        ("inputs: a.tif\noutput_stem: a/b\n", ["output_stem", "file name stem"]),
        ("inputs: a.tif\nstem: a\noutput_stem: b\n", ["line 3", "same option as 'stem'"]),
        ("inputs: a.tif\npds: true\nshard_size: 5\n", ["shard_size", "give only one"]),
        ("inputs: a.tif\noverwrite: true\nresume: true\n", ["exclude each other"]),
        ("inputs: a.tif\ninputs: b.tif\n", ["line 2", "duplicate key 'inputs'"]),
        ("inputs: []\n", ["inputs", "empty"]),
        ("inputs: 5\n", ["inputs", "expected a path or glob"]),
        ("inputs: [a.tif\nstem: x\n", ["invalid YAML", "line", "column"]),
        ("inputs: a.tif\n  bad: indent\n", ["invalid YAML", "line 2, column 6"]),
        ("- a.tif\n- b.tif\n", ["top level must be a mapping", "a list"]),
        ("just text\n", ["top level must be a mapping", "the string 'just text'"]),
        ("", ["top level must be a mapping", "empty"]),
        ("inputs: a.tif\n1: x\n", ["line 2", "plain names"]),
        (
            "inputs: a.tif\nfilename_spec:\n  template: m_{m}\n  transfroms: {m: int}\n",
            ["line 4", "filename_spec", "'transfroms'", "did you mean 'transforms'?"],
        ),
        (
            "inputs: a.tif\nfilename_spec:\n  template: m_{m}\n  transforms: {m: integer}\n",
            ["filename_spec", "unknown transform 'integer'", "date_compact"],
        ),
        (
            "inputs: a.tif\nfilename_spec:\n  template: m_{m}\n  transforms: {x: int}\n",
            ["filename_spec", "'x'", "does not name"],
        ),
        ("inputs: a.tif\nfilename_spec:\n  transforms: {m: int}\n", ["'template' must be"]),
        ("inputs: a.tif\nfilename_spec: [1]\n", ["filename_spec", "expected a mapping"]),
        (
            "inputs: a.tif\nfilename_spec:\n  template: m_{m}\n  transforms: [int]\n",
            ["line 4", "'transforms' must map field names"],
        ),
    ],
)
def test_every_mistake_is_one_line_naming_the_file(
    tmp_path: Path, text: str, fragments: list[str]
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config_file(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_missing_inputs(tmp_path: Path) -> None:
    path = write(tmp_path, "stem: x\n")
    with pytest.raises(ConfigError, match=r"config\.yaml: missing key 'inputs'"):
        build_config([str(path)], tmp_path / "out", {})


def test_missing_or_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: config file does not exist"):
        build_config([str(tmp_path / "nope.yaml")], tmp_path / "out", {})
    (tmp_path / "dir.yml").mkdir()
    with pytest.raises(ConfigError, match=r"dir\.yml: config file is a directory"):
        load_config_file(tmp_path / "dir.yml")
    (tmp_path / "bin.yaml").write_bytes(b"inputs: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config_file(tmp_path / "bin.yaml")


def test_yaml_must_be_the_only_input(tmp_path: Path) -> None:
    path = write(tmp_path, "inputs: a.tif\n")
    with pytest.raises(ConfigError, match="only INPUT"):
        build_config([str(path), "other/"], tmp_path / "out", {})


def test_unknown_cli_option_is_a_programming_error(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="shardsize"):
        build_config(["a"], tmp_path / "out", {"shardsize": 3})


def test_make_config_unchanged(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid output stem"):
        make_config(["a"], tmp_path / "out", stem=".hidden")
    assert make_config(["a"], tmp_path / "ds").stem == "ds"
