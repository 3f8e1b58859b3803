"""Reading datasets from a bucket: toile.open, info, verify and stock webdataset, on moto."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from s3_server import S3

import toile
from toile.cli import main
from toile.dataset import dataset_info, verify_dataset
from toile.errors import InputError


def _local_dataset(tmp_path: Path, **options: object) -> Path:
    from toile.export import export_test_frames

    out = tmp_path / "ds"
    export_test_frames(out, frames=12, height=16, width=12, shard_size=8_000, **options)
    return out


def _upload(s3: S3, directory: Path, prefix: str) -> str:
    for path in sorted(directory.iterdir()):
        if path.is_file():
            s3.put(f"{prefix}/{path.name}", path.read_bytes())
    return f"{s3.url}/{prefix}"


def _frames(dataset: toile.dataset.ToileDataset) -> list[tuple[np.ndarray, dict]]:
    return [(frame.image, frame.metadata) for frame in dataset]


@pytest.mark.parametrize("options", [{}, {"compressed": True}, {"format": "atdata"}])
def test_open_info_verify_from_a_bucket(s3: S3, tmp_path: Path, options: dict) -> None:
    local = _local_dataset(tmp_path, **options)
    url = _upload(s3, local, "datasets/ds")
    remote = toile.open(url)
    assert len(remote) == 12 and len(remote.manifest.shards) > 1
    expected = _frames(toile.open(local))
    got = _frames(remote)
    assert len(got) == len(expected)
    for (image, metadata), (want_image, want_metadata) in zip(got, expected, strict=True):
        np.testing.assert_array_equal(image, want_image)
        assert image.dtype == want_image.dtype and metadata == want_metadata
    assert toile.open(f"{url}/ds.manifest.json").manifest.urls == remote.manifest.urls
    suffix = ".tar.gz" if options.get("compressed") else ".tar"
    assert remote.manifest.urls[0] == f"{url}/ds-000000{suffix}"
    report = verify_dataset(url)
    assert report.ok, report.problems
    assert report.shards == len(remote.manifest.shards) and report.samples == 12
    info = dataset_info(url)
    assert info["samples"] == 12 and info["directory"] == url
    assert info["metadata_fields"]["frame"]  # the first sample was read from the bucket


def test_dataset_webdataset_streams_from_the_bucket(s3: S3, tmp_path: Path) -> None:
    local = _local_dataset(tmp_path)
    url = _upload(s3, local, "ds")
    samples = list(toile.open(url).webdataset())
    expected = list(toile.open(local).webdataset())
    assert [s["__key__"] for s in samples] == [s["__key__"] for s in expected]
    assert len(samples) == 12
    for sample, want in zip(samples, expected, strict=True):
        np.testing.assert_array_equal(sample["image"], want["image"])
        assert sample["metadata"] == want["metadata"]
    assert all(s["__url__"].startswith(f"{url}/ds-") for s in samples)


def test_stock_webdataset_recipe_from_the_readme(s3: S3, tmp_path: Path) -> None:
    """The README's recipe: an fsspec opener in webdataset's gopen table, then stock WebDataset."""
    import fsspec
    import webdataset as wds

    local = _local_dataset(tmp_path)
    url = _upload(s3, local, "ds")
    manifest = json.loads(fsspec.open(f"{url}/ds.manifest.json", "rb").open().read())

    def gopen_fsspec(url: str, mode: str = "rb", bufsize: int = 8192, **kw: object) -> object:
        return fsspec.open(url, mode).open()

    wds.gopen_schemes["s3"] = gopen_fsspec
    try:
        pipeline = wds.WebDataset(f"{url}/{manifest['url_pattern']}", shardshuffle=False).decode()
        images = [sample["npy"] for sample in pipeline]
    finally:
        del wds.gopen_schemes["s3"]
    expected = [frame.image for frame in toile.open(local)]
    assert len(images) == len(expected) == 12
    for image, want in zip(images, expected, strict=True):
        np.testing.assert_array_equal(image, want)


def test_verify_names_a_damaged_and_a_missing_object(s3: S3, tmp_path: Path) -> None:
    local = _local_dataset(tmp_path)
    url = _upload(s3, local, "ds")
    first = s3.get("ds/ds-000000.tar")
    s3.put("ds/ds-000000.tar", first[:-1024] + bytes(1024 - 1) + b"\x01")
    s3.client().delete_object(Bucket=s3.bucket, Key="ds/ds-000001.tar")
    s3.put("ds/ds-000099.tar", first)
    report = verify_dataset(url)
    assert not report.ok
    text = "\n".join(report.problems)
    assert "ds-000000.tar: sha256 is" in text
    assert "ds-000001.tar: missing (listed in the manifest, not found)" in text
    assert "ds-000099.tar: stray shard not listed in the manifest ds.manifest.json" in text
    result = CliRunner().invoke(main, ["verify", url])
    assert result.exit_code == 1 and "FAILED" in result.output


def test_a_prefix_without_its_manifest_is_not_a_dataset(s3: S3, tmp_path: Path) -> None:
    local = _local_dataset(tmp_path)
    url = _upload(s3, local, "ds")
    s3.client().delete_object(Bucket=s3.bucket, Key="ds/ds.manifest.json")
    with pytest.raises(InputError) as caught:
        toile.open(url)
    assert str(caught.value).startswith(f"{url}: no toile manifest (*.manifest.json) here")
    result = CliRunner().invoke(main, ["info", url])
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0 and result.output.startswith("Error: ")
    with pytest.raises(InputError, match="no such file or directory"):
        toile.open(f"{s3.url}/nothing-here")


def test_cli_info_and_verify_on_a_url(s3: S3, tmp_path: Path) -> None:
    url = _upload(s3, _local_dataset(tmp_path), "ds")
    result = CliRunner().invoke(main, ["info", url, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["manifest"] == f"{url}/ds.manifest.json"
    result = CliRunner().invoke(main, ["verify", url])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("toile verify: OK: ")
