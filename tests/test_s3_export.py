"""Exports into a bucket on moto's S3 server: round trips, resume and faults."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from s3_server import S3, SECRET_KEY, TcpRelay, point_at

import toile
from toile.cli import main
from toile.dataset import verify_dataset
from toile.errors import OutputError
from toile.export import export_test_frames

SMALL = {"frames": 24, "height": 16, "width": 12, "shard_size": 8_000, "progress": False}


def _shards(s3: S3, prefix: str) -> dict[str, str]:
    """SHA-256 of every object directly under ``prefix`` (the staging prefix left out)."""
    return {
        key.rsplit("/", 1)[1]: hashlib.sha256(s3.get(key)).hexdigest()
        for key in s3.keys(prefix + "/")
        if "/" not in key[len(prefix) + 1 :]
    }


def _local_digests(directory: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.iterdir())
        if p.is_file()
    }


@pytest.mark.parametrize("options", [{}, {"compressed": True}, {"format": "atdata"}])
def test_export_to_a_bucket_is_byte_identical_to_a_local_export(
    s3: S3, tmp_path: Path, options: dict
) -> None:
    url = f"{s3.url}/datasets/ds"
    result = export_test_frames(url, **SMALL, **options)
    assert result.manifest_path == f"{url}/ds.manifest.json"
    export_test_frames(tmp_path / "ds", **SMALL, **options)
    local = _local_digests(tmp_path / "ds")
    assert _shards(s3, "datasets/ds") == local  # manifest included: no URL or secret in it
    assert s3.uploads() == []
    assert verify_dataset(url).ok
    remote = [(f.image, f.metadata) for f in toile.open(url)]
    expected = [(f.image, f.metadata) for f in toile.open(tmp_path / "ds")]
    assert len(remote) == 24
    for (image, metadata), (want, want_metadata) in zip(remote, expected, strict=True):
        np.testing.assert_array_equal(image, want)
        assert metadata == want_metadata


def test_overwrite_replaces_and_removes_stale_shards_after_the_manifest(s3: S3) -> None:
    url = f"{s3.url}/ds"
    export_test_frames(url, **SMALL)
    with pytest.raises(OutputError, match="already holds a dataset named 'ds'"):
        export_test_frames(url, **SMALL)
    export_test_frames(url, **{**SMALL, "frames": 6}, overwrite=True)
    keys = s3.keys("ds/")
    manifest = json.loads(s3.get("ds/ds.manifest.json"))
    listed = ["ds/ds.manifest.json", "ds/README.md"] + [
        f"ds/{s['name']}" for s in manifest["shards"]
    ]
    assert keys == sorted(listed)  # the dataset card, the manifest and its shards only
    assert verify_dataset(url).ok and len(toile.open(url)) == 6


def _tiff(path: Path, frames: int = 60) -> np.ndarray:
    movie = np.random.default_rng(3).integers(0, 4096, (frames, 32, 32), dtype=np.uint16)
    tifffile.imwrite(path, movie, photometric="minisblack", metadata={"axes": "TYX"})
    return movie


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "toile.cli", "export", "frames", *args]


def test_resume_after_an_interrupted_upload(s3: S3, tmp_path: Path) -> None:
    """Ctrl-C in the middle of an export to the bucket, then --resume: identical bytes."""
    source = tmp_path / "rec.tif"
    _tiff(source, frames=400)
    url = f"{s3.url}/ds"
    args = [str(source), url, "--shard-size", "40000"]
    process = subprocess.Popen(_cli(*args), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(s3.keys("ds/ds-")) < 3:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    if process.returncode == 0:
        pytest.skip("the export finished before it could be interrupted")
    assert process.returncode == 130, stderr
    assert "rerun with --resume" in stderr
    assert "ds/ds.manifest.json" not in s3.keys("ds/")  # not a dataset yet
    assert "ds/.ds.staging/journal.jsonl" in s3.keys("ds/")
    done = subprocess.run(_cli(*args, "--resume"), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    subprocess.run(_cli(*args[:1], str(tmp_path / "ds"), *args[2:]), check=True, timeout=120)
    assert _shards(s3, "ds") == _local_digests(tmp_path / "ds")
    assert s3.uploads() == []


def test_missing_bucket_fails_before_anything_is_written(s3: S3, tmp_path: Path) -> None:
    source = tmp_path / "rec.tif"
    _tiff(source)
    url = f"s3://{s3.bucket}-none/ds"
    result = CliRunner().invoke(main, ["export", "frames", str(source), url])
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: {url}: bucket '{s3.bucket}-none' does not exist"


def test_wrong_endpoint_is_one_line_without_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from s3_server import free_port

    source = tmp_path / "rec.tif"
    _tiff(source)
    point_at(monkeypatch, f"http://127.0.0.1:{free_port()}")
    result = CliRunner().invoke(main, ["export", "frames", str(source), "s3://bucket/ds"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the storage endpoint http://127.0.0.1:" in lines[0]
    assert SECRET_KEY not in result.output


def test_network_lost_mid_upload_keeps_the_earlier_dataset(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "rec.tif"
    _tiff(source, frames=400)
    url = f"{s3.url}/ds"
    export_test_frames(url, **SMALL)
    before = _shards(s3, "ds")
    with TcpRelay(s3.server.port) as relay:
        env = {**os.environ, "AWS_ENDPOINT_URL": relay.endpoint}
        args = [str(source), url, "--shard-size", "40000", "--overwrite"]
        process = subprocess.Popen(_cli(*args), stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(s3.keys("ds/.ds.staging/")) < 3:
            time.sleep(0.02)
        relay.stop()
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1, stderr
    error_lines = [line for line in stderr.splitlines() if line.startswith("Error: ")]
    assert len(error_lines) == 1 and "cannot reach the storage endpoint" in error_lines[0]
    assert SECRET_KEY not in stderr
    assert _shards(s3, "ds") == before  # the earlier dataset, untouched
    # What the failed run could not clean up is hidden beside it, named by no manifest.
    assert all(
        key.startswith("ds/.ds.staging/")
        for key in set(s3.keys("ds/")) - {f"ds/{name}" for name in before}
    )
    assert verify_dataset(url).ok and len(toile.open(url)) == SMALL["frames"]


def test_storage_options_from_yaml(s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The endpoint and credentials given as storage_options, none in the environment."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    source = tmp_path / "rec.tif"
    movie = _tiff(source)
    config = tmp_path / "config.yaml"
    options = {
        "endpoint_url": s3.server.endpoint,
        "key": "AKIATOILETESTKEY0001",
        "secret": SECRET_KEY,
    }
    config.write_text(
        json.dumps({"inputs": [str(source)], "storage_options": options, "shard_size": 30000})
    )
    result = CliRunner().invoke(main, ["export", "frames", str(config), f"{s3.url}/yaml"])
    assert result.exit_code == 0, result.output
    manifest = s3.get("yaml/yaml.manifest.json").decode()
    assert SECRET_KEY not in manifest and s3.server.endpoint not in manifest
    shards = [key for key in s3.keys("yaml/") if key.endswith(".tar")]
    assert len(shards) == json.loads(manifest)["totals"]["shards"] > 1
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATOILETESTKEY0001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    s3fs.S3FileSystem.clear_instance_cache()
    images = np.stack([frame.image for frame in toile.open(f"{s3.url}/yaml")])
    np.testing.assert_array_equal(images, movie)


def test_storage_options_from_yaml_read_inputs_too(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recordings in a bucket reached only through storage_options, none in the environment."""
    import s3fs

    source = tmp_path / "rec.tif"
    movie = _tiff(source)
    s3.put("raw/rec.tif", source.read_bytes())
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    s3fs.S3FileSystem.clear_instance_cache()
    options = {
        "endpoint_url": s3.server.endpoint,
        "key": "AKIATOILETESTKEY0001",
        "secret": SECRET_KEY,
    }
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"inputs": [f"{s3.url}/raw/*.tif"], "storage_options": options}))
    result = CliRunner().invoke(main, ["export", "frames", str(config), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    images = np.stack([frame.image for frame in toile.open(tmp_path / "out")])
    np.testing.assert_array_equal(images, movie)
    manifest = next((tmp_path / "out").glob("*.manifest.json")).read_text()
    assert SECRET_KEY not in manifest


def test_dask_workers_write_their_shards_to_the_bucket(s3: S3, tmp_path: Path) -> None:
    """A real LocalCluster of two worker processes uploads the shards itself."""
    url = f"{s3.url}/dask"
    options = {**SMALL, "frames": 40, "stem": "dask"}
    export_test_frames(url, executor="dask", workers=2, **options)
    export_test_frames(tmp_path / "dask", **options)
    assert _shards(s3, "dask") == _local_digests(tmp_path / "dask")
    assert verify_dataset(url).ok
