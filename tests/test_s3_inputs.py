"""Recordings read from a bucket: URL globs to path-like objects, planes read exactly."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tifffile
from s3_server import S3

from toile.errors import InputError
from toile.storage.inputs import open_binary, split_patterns, url_inputs


def _tiff(frames: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, frames, photometric="minisblack", metadata={"axes": "TYX"})
    return buffer.getvalue()


def test_url_globs_expand_to_objects_read_with_exact_pixels(s3: S3, tmp_path) -> None:
    rng = np.random.default_rng(5)
    movies = {
        "raw/a/rec.ome.tif": rng.integers(0, 65535, (30, 24, 20), dtype=np.uint16),
        "raw/b/c/rec2.ome.tif": rng.integers(0, 65535, (7, 24, 20), dtype=np.uint16),
    }
    for key, movie in movies.items():
        s3.put(key, _tiff(movie))
    s3.put("raw/a/notes.txt", b"not a recording")
    local, urls = split_patterns([str(tmp_path / "x.tif"), f"{s3.url}/raw/**/*.ome.tif"])
    assert local == [str(tmp_path / "x.tif")] and urls == [f"{s3.url}/raw/**/*.ome.tif"]
    paths = url_inputs(urls)
    assert [str(p) for p in paths] == [f"{s3.url}/{key}" for key in sorted(movies)]
    first = paths[0]
    assert (first.name, first.suffix, first.suffixes, first.stem) == (
        "rec.ome.tif",
        ".tif",
        [".ome", ".tif"],
        "rec.ome",
    )
    assert first.is_file() and first.stat().st_size == len(s3.get("raw/a/rec.ome.tif"))
    assert str(first.parent) == f"{s3.url}/raw/a"
    assert sorted(p.name for p in first.parent.iterdir()) == ["notes.txt", "rec.ome.tif"]
    for path, key in zip(paths, sorted(movies), strict=True):
        with open_binary(path) as handle, tifffile.TiffFile(handle) as tif:
            planes = np.stack([page.asarray() for page in tif.pages])
        np.testing.assert_array_equal(planes, movies[key])
    with open_binary(str(paths[1])) as handle:  # a URL string works too
        assert handle.read(2) in (b"II", b"MM")
    (tmp_path / "local.bin").write_bytes(b"MM")
    with open_binary(tmp_path / "local.bin") as handle:
        assert handle.read() == b"MM"
    prefix = url_inputs([f"{s3.url}/raw/a"])  # a prefix: every object below it
    assert [p.name for p in prefix] == ["notes.txt", "rec.ome.tif"]


def test_url_patterns_that_match_nothing_are_one_line(s3: S3) -> None:
    s3.put("raw/notes.txt", b"x")
    with pytest.raises(InputError) as caught:
        url_inputs([f"{s3.url}/raw/**/*.tif"])
    assert str(caught.value) == f"{s3.url}/raw/**/*.tif: matches no object"
    with pytest.raises(InputError, match=r"raw: matches no TIFF file$"):
        url_inputs([f"{s3.url}/raw"])
    with pytest.raises(InputError, match=r"missing\.tif: does not exist$"):
        url_inputs([f"{s3.url}/raw/missing.tif"])


def test_export_from_a_bucket_reads_planes_exactly_with_few_requests(s3: S3, tmp_path) -> None:
    import s3fs

    import toile
    from toile.config import make_config
    from toile.export import export_frames

    rng = np.random.default_rng(8)
    movies = {
        "raw/m1/a.ome.tif": rng.integers(0, 65535, (40, 32, 24), dtype=np.uint16),
        "raw/m2/b.ome.tif": rng.integers(0, 65535, (25, 32, 24), dtype=np.uint16),
    }
    for key, movie in movies.items():
        s3.put(key, _tiff(movie))
    calls: list[str] = []
    fs = s3fs.S3FileSystem()
    fs.s3.meta.events.register("before-call.s3", lambda event_name, **kw: calls.append(event_name))
    config = make_config([f"{s3.url}/raw/**/*.ome.tif"], tmp_path / "ds", progress=False)
    result = export_frames(config)
    assert result.frames == 65 and result.recordings == 2
    images = [frame.image for frame in toile.open(tmp_path / "ds")]
    np.testing.assert_array_equal(np.stack(images[:40]), movies["raw/m1/a.ome.tif"])
    np.testing.assert_array_equal(np.stack(images[40:]), movies["raw/m2/b.ome.tif"])
    gets = [c for c in calls if c.endswith(".GetObject")]
    assert 0 < len(gets) <= 12, calls  # a few block reads per file, not one per plane
    sources = [r["source"] for r in toile.open(tmp_path / "ds").manifest.recordings]
    assert sources == [f"{s3.url}/{key}" for key in sorted(movies)]


def test_an_object_removed_after_planning_is_named(s3: S3, tmp_path) -> None:
    """Planned (opened, measured) from the bucket, then gone before its frames are read."""
    from toile.config import make_config
    from toile.errors import InputError
    from toile.export.run import _export, plan_recordings

    rng = np.random.default_rng(9)
    for key in ("raw/a.ome.tif", "raw/b.ome.tif"):
        s3.put(key, _tiff(rng.integers(0, 4096, (10, 16, 16), dtype=np.uint16)))
    config = make_config([f"{s3.url}/raw/*.ome.tif"], tmp_path / "ds", progress=False)
    plans = plan_recordings(config, [])
    assert len(plans) == 2
    s3.client().delete_object(Bucket=s3.bucket, Key="raw/b.ome.tif")
    with pytest.raises(InputError) as caught:
        _export(config, plans, None)
    assert str(caught.value).startswith(f"{s3.url}/raw/b.ome.tif: ")
    assert "exist" in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "ds" / "ds.manifest.json").exists()
