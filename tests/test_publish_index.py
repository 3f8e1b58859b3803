"""`toile publish --index`: a dataset registered in a real atdata SQLite index and loaded back."""

from __future__ import annotations

import json
from pathlib import Path

import atdata
import numpy as np
import pytest
from click.testing import CliRunner

import toile
from toile.cli import main
from toile.export import export_test_frames
from toile.publish import PublishError, publish_index, read_publications
from toile.schema import Frame

SMALL = {"frames": 12, "height": 32, "width": 32, "shard_size": 16_000, "progress": False}


def _export(path: Path, **options) -> Path:
    export_test_frames(path, format="atdata", **{**SMALL, **options})
    return path


@pytest.fixture
def dataset(tmp_path) -> Path:
    return _export(tmp_path / "demo")


def _frames(dataset) -> list:
    return list(toile.open(dataset))


def _same(frames_a, frames_b) -> bool:
    return len(frames_a) == len(frames_b) and all(
        np.array_equal(a.image, b.image)
        and a.image.dtype == b.image.dtype
        and a.metadata == b.metadata
        for a, b in zip(frames_a, frames_b, strict=True)
    )


def test_index_round_trip_with_atdata_load_dataset(dataset, tmp_path):
    manifest = json.loads((dataset / "demo.manifest.json").read_text())
    assert len(manifest["shards"]) == 3
    before = {p.name: p.read_bytes() for p in dataset.iterdir()}
    index_path = tmp_path / "index.db"

    result = publish_index(dataset, index_path, description="twelve synthetic frames")

    assert result.created and result.version == "1" and result.name == "demo"
    index = atdata.Index(provider="sqlite", path=str(index_path), atmosphere=None)
    loaded = atdata.load_dataset("@local/demo", Frame, split="train", index=index)
    assert _same(list(loaded.ordered()), _frames(dataset))
    entry = index.get_dataset("demo")
    assert entry.cid == result.cid
    assert entry.metadata["samples"] == 12
    assert [s["sha256"] for s in entry.metadata["shard_checksums"]] == [
        s["sha256"] for s in manifest["shards"]
    ]
    # Publishing changed nothing but the sidecar.
    after = {p.name: p.read_bytes() for p in dataset.iterdir()}
    assert after.pop("demo.published.json")
    assert after == before
    (entry,) = read_publications(toile.dataset.Manifest.load(dataset))
    assert entry["kind"] == "index" and entry["uri"] == "@local/demo@1"


def test_republish_is_idempotent_and_a_changed_dataset_is_a_new_version(dataset, tmp_path):
    index_path = tmp_path / "index.db"
    first = publish_index(dataset, index_path)
    again = publish_index(dataset, index_path)
    assert not again.created and again.cid == first.cid and again.version == "1"

    _export(dataset, seed=5, overwrite=True)
    second = publish_index(dataset, index_path)
    assert second.created and second.version == "2" and second.cid != first.cid

    index = atdata.Index(provider="sqlite", path=str(index_path), atmosphere=None)
    assert sorted(v for n, _, v in index.list_labels() if n == "demo") == ["1", "2"]
    assert index.get_label("demo", "1").cid == first.cid  # version 1 is still there
    latest = atdata.load_dataset("@local/demo", Frame, split="train", index=index)
    assert _same(list(latest.ordered()), _frames(dataset))
    publications = read_publications(toile.dataset.Manifest.load(dataset))
    assert [p["version"] for p in publications] == ["1", "2"]


def test_dry_run_registers_nothing(dataset, tmp_path):
    index_path = tmp_path / "index.db"
    result = publish_index(dataset, index_path, dry_run=True)
    assert result.dry_run and result.created
    index = atdata.Index(provider="sqlite", path=str(index_path), atmosphere=None)
    assert index.list_labels() == []
    assert not (dataset / "demo.published.json").exists()


def test_damaged_shard_is_refused(dataset, tmp_path):
    shard = dataset / "demo-000001.tar"
    data = bytearray(shard.read_bytes())
    data[700] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(PublishError, match=r"damaged dataset, nothing published: demo-000001.tar"):
        publish_index(dataset, tmp_path / "index.db")
    assert not (dataset / "demo.published.json").exists()


def test_npy_dataset_is_refused(tmp_path):
    export_test_frames(tmp_path / "npy", **SMALL)
    with pytest.raises(PublishError, match="only datasets written with --format atdata"):
        publish_index(tmp_path / "npy", tmp_path / "index.db")


def test_cli_publish_index_and_info(dataset, tmp_path):
    runner = CliRunner()
    index_path = tmp_path / "lab.db"
    result = runner.invoke(
        main, ["publish", str(dataset), "--index", str(index_path), "--name", "lab-demo"]
    )
    assert result.exit_code == 0, result.output
    assert "registered @local/lab-demo@1" in result.output
    info = runner.invoke(main, ["info", str(dataset)])
    assert "published    1" in info.output
    assert f"index {index_path}: lab-demo version 1" in info.output
    assert "@local/lab-demo@1" in info.output
    unpublished = tmp_path / "other"
    _export(unpublished)
    assert "published" not in runner.invoke(main, ["info", str(unpublished)]).output


def test_cli_publish_needs_exactly_one_route(dataset):
    runner = CliRunner()
    neither = runner.invoke(main, ["publish", str(dataset)])
    assert neither.exit_code == 2 and "give one of --index [PATH] or --pds URL" in neither.output
    both = runner.invoke(main, ["publish", str(dataset), "--index", "x.db", "--pds", "http://x"])
    assert both.exit_code == 2
    no_handle = runner.invoke(main, ["publish", str(dataset), "--pds", "http://127.0.0.1:9"])
    assert no_handle.exit_code == 2 and "--pds needs --handle" in no_handle.output


def test_cli_error_is_one_line(tmp_path):
    export_test_frames(tmp_path / "npy", **SMALL)
    result = CliRunner().invoke(
        main, ["publish", str(tmp_path / "npy"), "--index", str(tmp_path / "i.db")]
    )
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "--format atdata" in lines[0]
