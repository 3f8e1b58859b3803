"""Reading a dataset back: toile.dataset, `toile info`, `toile verify`."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from toile.cli import main
from toile.dataset import (
    FrameBatch,
    Manifest,
    dataset_info,
    find_manifest,
    format_info,
    open_dataset,
    verify_dataset,
)
from toile.errors import InputError, ToileError
from toile.export import export_test_frames
from toile.schema import Frame, ImageSample
from toile.shards import ShardInfo
from toile.synthetic import MovieSpec, generate_frames

FRAMES = 5
RECORDINGS = 2
SHAPE = (32, 32)
#: Four 32x32 uint16 npy samples per uncompressed shard (each sample takes 4,096 bytes).
SMALL_SHARDS = 20_000


def _export(root: Path, name: str, **options) -> Path:
    out = root / name
    export_test_frames(
        out,
        frames=FRAMES,
        height=SHAPE[0],
        width=SHAPE[1],
        recordings=RECORDINGS,
        progress=False,
        **options,
    )
    return out


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, Path]:
    """Clean datasets, written once; tests that damage one work on a copy."""
    root = tmp_path_factory.mktemp("datasets")
    return {
        "npy": _export(root, "ds", shard_size=SMALL_SHARDS),
        "npy-gz": _export(root, "gz", shard_size=SMALL_SHARDS, compressed=True),
        "atdata": _export(root, "at", shard_size=SMALL_SHARDS, format="atdata"),
        "atdata-gz": _export(root, "atgz", format="atdata", compressed=True),
    }


@pytest.fixture
def npy_copy(datasets, tmp_path) -> Path:
    return Path(shutil.copytree(datasets["npy"], tmp_path / "ds"))


def _expected_frames() -> list[np.ndarray]:
    frames: list[np.ndarray] = []
    for seed in range(RECORDINGS):
        spec = MovieSpec(frames=FRAMES, height=SHAPE[0], width=SHAPE[1], seed=seed)
        frames.extend(generate_frames(spec))
    return frames


def _expected_keys() -> list[str]:
    return [f"sample-{r:06d}-{f:03d}" for r in range(RECORDINGS) for f in range(FRAMES)]


def _invoke(*args: str):
    return CliRunner().invoke(main, list(args))


# --------------------------------------------------------------------------------------
# find_manifest / Manifest


def test_find_manifest_accepts_directory_or_file(datasets):
    directory = datasets["npy"]
    assert find_manifest(directory) == directory / "ds.manifest.json"
    assert find_manifest(directory / "ds.manifest.json") == directory / "ds.manifest.json"


def test_find_manifest_errors_name_the_path(tmp_path, datasets):
    with pytest.raises(InputError, match="no such file or directory"):
        find_manifest(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=r"empty: no toile manifest \(\*\.manifest\.json\)"):
        find_manifest(empty)
    both = tmp_path / "both"
    both.mkdir()
    for name in ("ds", "gz"):
        shutil.copy(datasets["npy"] / "ds.manifest.json", both / f"{name}.manifest.json")
    with pytest.raises(
        InputError, match=r"holds 2 datasets \(ds.manifest.json, gz.manifest.json\)"
    ):
        find_manifest(both)


def test_manifest_properties(datasets):
    directory = datasets["npy"]
    manifest = Manifest.load(directory)
    raw = json.loads((directory / "ds.manifest.json").read_text())
    assert manifest.raw == raw
    assert manifest.path == directory / "ds.manifest.json"
    assert manifest.directory == directory
    assert manifest.stem == "ds"
    assert manifest.encoding == "npy"
    assert manifest.compressed is False
    assert manifest.url_pattern == "ds-{000000..000002}.tar"
    assert manifest.url == str(directory.absolute() / "ds-{000000..000002}.tar")
    assert manifest.urls == [str(directory.absolute() / f"ds-00000{i}.tar") for i in range(3)]
    assert all(Path(url).is_file() for url in manifest.urls)
    assert all(isinstance(s, ShardInfo) for s in manifest.shards)
    assert [s.samples for s in manifest.shards] == [4, 4, 2]
    assert manifest.samples == RECORDINGS * FRAMES
    assert manifest.totals["samples"] == RECORDINGS * FRAMES
    assert [r["frames"] for r in manifest.recordings] == [FRAMES] * RECORDINGS
    assert manifest.skipped == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "not a JSON object"),
        ('{"stem": "x"}', "missing 'encoding', 'compressed', 'url_pattern', 'shards'"),
    ],
)
def test_bad_manifest_is_one_clear_error(tmp_path, content, message):
    path = tmp_path / "x.manifest.json"
    path.write_text(content)
    with pytest.raises(InputError, match=message) as caught:
        Manifest.load(tmp_path)
    assert str(caught.value).startswith(str(path))


def test_newer_manifest_format_is_refused(npy_copy):
    path = npy_copy / "ds.manifest.json"
    raw = json.loads(path.read_text())
    raw["manifest_format"] = 99
    path.write_text(json.dumps(raw))
    with pytest.raises(InputError, match="manifest format 99 is newer"):
        open_dataset(npy_copy)


# --------------------------------------------------------------------------------------
# Reading frames


@pytest.mark.parametrize("kind", ["npy", "npy-gz", "atdata", "atdata-gz"])
def test_iteration_yields_frames_in_order_with_exact_pixels(datasets, kind):
    dataset = open_dataset(datasets[kind])
    assert len(dataset) == RECORDINGS * FRAMES
    frames = list(dataset)
    expected = _expected_frames()
    assert len(frames) == len(expected)
    for index, (frame, pixels) in enumerate(zip(frames, expected, strict=True)):
        assert isinstance(frame, Frame)
        assert frame.image.dtype == np.uint16
        np.testing.assert_array_equal(frame.image, pixels)
        assert frame.metadata["recording_index"] == index // FRAMES
        assert frame.metadata["frame"]["index"] == index % FRAMES


@pytest.mark.parametrize("kind", ["npy", "atdata-gz"])
def test_frames_in_batches(datasets, kind):
    batches = list(open_dataset(datasets[kind]).frames(batch_size=4))
    assert all(isinstance(b, FrameBatch) for b in batches)
    assert [len(b) for b in batches] == [4, 4, 2]
    assert [b.images.shape for b in batches] == [(4, *SHAPE), (4, *SHAPE), (2, *SHAPE)]
    assert [k for b in batches for k in b.keys] == _expected_keys()
    np.testing.assert_array_equal(
        np.concatenate([b.images for b in batches]), np.stack(_expected_frames())
    )
    assert batches[1].metadata[1]["frame"]["index"] == 0


def test_webdataset_pipeline_shuffles_repeatably_and_batches(datasets):
    dataset = open_dataset(datasets["npy"])
    ordered = [s["__key__"] for s in dataset.webdataset()]
    assert ordered == _expected_keys()
    first = [s["__key__"] for s in dataset.webdataset(shuffle=10, seed=3)]
    again = [s["__key__"] for s in dataset.webdataset(shuffle=10, seed=3)]
    assert first == again
    assert first != ordered
    assert sorted(first) == ordered
    sample = next(iter(dataset.webdataset()))
    assert set(sample) == {"__key__", "__url__", "image", "metadata"}
    batches = list(dataset.webdataset(shuffle=10, seed=1).batched(3))
    assert [b["image"].shape for b in batches] == [(3, *SHAPE)] * 3 + [(1, *SHAPE)]
    assert sum(len(b["metadata"]) for b in batches) == RECORDINGS * FRAMES


def test_shuffled_frames_cover_the_dataset(datasets):
    frames = list(open_dataset(datasets["atdata"]).frames(shuffle=20, seed=0))
    indices = [(f.metadata["recording_index"], f.metadata["frame"]["index"]) for f in frames]
    assert sorted(indices) == [(r, f) for r in range(RECORDINGS) for f in range(FRAMES)]
    assert indices != sorted(indices)


def test_atdata_view_through_lens(datasets):
    dataset = open_dataset(datasets["atdata"])
    frames = list(dataset.atdata())
    assert len(frames) == RECORDINGS * FRAMES
    assert all(isinstance(f, Frame) for f in frames)
    batches = list(dataset.atdata(ImageSample).ordered(batch_size=4))
    assert [b.data.shape for b in batches] == [(4, *SHAPE), (4, *SHAPE), (2, *SHAPE)]
    np.testing.assert_array_equal(
        np.concatenate([b.data for b in batches]), np.stack(_expected_frames())
    )


def test_atdata_on_npy_dataset_is_a_clear_error(datasets):
    with pytest.raises(InputError, match="encoded as 'npy', not 'atdata'"):
        open_dataset(datasets["npy"]).atdata()


def test_batching_needs_a_positive_size(datasets):
    with pytest.raises(ValueError, match="batch_size"):
        open_dataset(datasets["npy"]).frames(batch_size=0)


def test_batching_mixed_shapes_is_a_clear_error(tmp_path):
    root = tmp_path / "mixed"
    for index, height in enumerate((32, 40)):
        part = tmp_path / f"part{index}"
        export_test_frames(part, stem="mixed", frames=2, height=height, width=32, progress=False)
    # Join two one-recording datasets into one whose recordings differ in shape.
    root.mkdir()
    first = json.loads((tmp_path / "part0" / "mixed.manifest.json").read_text())
    second = json.loads((tmp_path / "part1" / "mixed.manifest.json").read_text())
    shutil.copy(tmp_path / "part0" / "mixed-000000.tar", root / "mixed-000000.tar")
    with (
        tarfile.open(tmp_path / "part1" / "mixed-000000.tar") as src,
        tarfile.open(root / "mixed-000001.tar", "w", format=tarfile.USTAR_FORMAT) as dst,
    ):
        for member in src.getmembers():
            data = src.extractfile(member).read()
            member.name = member.name.replace("sample-000000-", "sample-000001-")
            dst.addfile(member, io.BytesIO(data))
    shard = dict(second["shards"][0], name="mixed-000001.tar")
    first["shards"].append(shard)
    first["url_pattern"] = "mixed-{000000..000001}.tar"
    (root / "mixed.manifest.json").write_text(json.dumps(first))
    dataset = open_dataset(root)
    assert len(list(dataset)) == 4
    with pytest.raises(ToileError, match=r"different shapes or dtypes \(32x32 <u2, 40x32 <u2\)"):
        list(dataset.frames(batch_size=4))


# --------------------------------------------------------------------------------------
# info


def test_dataset_info_fields(datasets):
    directory = datasets["npy"]
    info = dataset_info(directory)
    assert set(info) == {
        "manifest",
        "directory",
        "stem",
        "toile_version",
        "encoding",
        "compressed",
        "url_pattern",
        "shards",
        "samples",
        "recordings",
        "metadata_fields",
        "frame_shapes",
        "skipped",
    }
    assert info["manifest"] == str(directory / "ds.manifest.json")
    assert info["directory"] == str(directory)
    assert info["stem"] == "ds"
    assert (
        info["toile_version"]
        == json.loads((directory / "ds.manifest.json").read_text())["toile_version"]
    )
    assert info["encoding"] == "npy"
    assert info["compressed"] is False
    assert info["url_pattern"] == "ds-{000000..000002}.tar"
    sizes = [(directory / f"ds-00000{i}.tar").stat().st_size for i in range(3)]
    assert info["shards"] == {
        "count": 3,
        "bytes": sum(sizes),
        "min_size": min(sizes),
        "max_size": max(sizes),
        "size_limit": SMALL_SHARDS,
    }
    assert info["samples"] == RECORDINGS * FRAMES
    assert info["recordings"] == [
        {
            "recording_index": r,
            "name": f"synthetic-seed{r}",
            "source": f"synthetic-seed{r}",
            "frames": FRAMES,
            "frame_shape": list(SHAPE),
            "dtype": "uint16",
            "source_dtype": "uint16",
            "first_key": f"sample-{r:06d}-000",
        }
        for r in range(RECORDINGS)
    ]
    fields = info["metadata_fields"]
    assert fields["frame"] == ["index", "t", "t_index", "z_index"]
    assert fields["movie"] == sorted(fields["movie"])
    assert {"recording_index", "scale_x", "time_increment", "channels"} <= set(fields["movie"])
    assert "frame" not in fields["movie"]
    assert info["skipped"] == []


def test_dataset_info_of_uint8_dataset_lists_normalization(tmp_path):
    out = tmp_path / "u8"
    export_test_frames(
        out, frames=3, height=16, width=16, to_uint8=True, compressed=True, progress=False
    )
    info = dataset_info(out)
    assert "normalization" in info["metadata_fields"]["movie"]
    assert info["recordings"][0]["dtype"] == "uint8"
    assert info["recordings"][0]["source_dtype"] == "uint16"
    assert info["compressed"] is True
    assert "uint8 (from uint16)" in format_info(info)


def test_dataset_info_lists_skipped_and_survives_an_unreadable_first_shard(npy_copy):
    path = npy_copy / "ds.manifest.json"
    raw = json.loads(path.read_text())
    raw["skipped"] = [{"source": "/data/broken.tif", "error": "not a TIFF file"}]
    path.write_text(json.dumps(raw))
    (npy_copy / "ds-000000.tar").write_bytes(b"garbage")
    info = dataset_info(npy_copy)
    assert info["skipped"] == [{"source": "/data/broken.tif", "error": "not a TIFF file"}]
    assert info["metadata_fields"]["frame"] is None
    text = format_info(info)
    assert "skipped      1\n  /data/broken.tif: not a TIFF file" in text
    assert "frame: (first sample unreadable)" in text


def test_info_cli_text(datasets):
    result = _invoke("info", str(datasets["atdata-gz"]))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"dataset      {datasets['atdata-gz'] / 'atgz.manifest.json'}"
    assert "stem         atgz" in lines
    assert "encoding     atdata (.msgpack (toile.schema.Frame) per sample)" in lines
    assert "compression  gzip (.tar.gz)" in lines
    assert "samples      10" in lines
    assert "recordings   2" in lines
    assert "  [1] synthetic-seed1: 5 frame(s) of 32x32 uint16" in lines
    assert "      source: synthetic-seed1" in lines
    assert "             frame: index, t, t_index, z_index" in lines
    assert "skipped      0" in lines
    shards_line = next(line for line in lines if line.startswith("shards"))
    assert shards_line.startswith("shards       1 (atgz-000000.tar.gz), ")
    assert "cap 850,000,000" in shards_line


def test_info_cli_json_is_dataset_info(datasets):
    result = _invoke("info", str(datasets["npy"] / "ds.manifest.json"), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == dataset_info(datasets["npy"])


def test_info_cli_error_is_one_line(tmp_path):
    result = _invoke("info", str(tmp_path))
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"Error: {tmp_path}: no toile manifest (*.manifest.json) here; "
        "is this a toile dataset directory?"
    )


# --------------------------------------------------------------------------------------
# verify


@pytest.mark.parametrize("kind", ["npy", "npy-gz", "atdata", "atdata-gz"])
def test_verify_clean_dataset(datasets, kind):
    report = verify_dataset(datasets[kind])
    assert report.ok, report.problems
    assert report.problems == []
    assert report.samples == RECORDINGS * FRAMES
    assert report.shards == len(list(datasets[kind].glob("*.tar*")))
    assert report.bytes == sum(p.stat().st_size for p in datasets[kind].glob("*.tar*"))
    result = _invoke("verify", str(datasets[kind]))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [f"toile verify: {report.summary()}"]
    assert result.stdout.startswith("toile verify: OK: ")


def _verify_fails(directory: Path) -> list[str]:
    """Problems found by the function; the CLI must print the same lines and exit 1."""
    report = verify_dataset(directory)
    assert not report.ok
    result = _invoke("verify", str(directory))
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert lines[:-1] == report.problems
    assert lines[-1].startswith(f"toile verify: FAILED: {len(report.problems)} problem(s)")
    return report.problems


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_verify_flipped_pixel_byte_is_a_sha256_mismatch(npy_copy):
    # Byte 600 is pixel data of the first .npy member (header block, then the npy header).
    _flip(npy_copy / "ds-000001.tar", 512 + 600)
    problems = _verify_fails(npy_copy)
    assert len(problems) == 1
    assert problems[0].startswith("ds-000001.tar: sha256 is ")
    assert "the manifest says" in problems[0]


def _member_offset(shard: Path, name: str) -> int:
    with tarfile.open(shard) as tar:
        return tar.getmember(name).offset


def test_verify_flipped_header_byte_is_a_decode_problem(npy_copy):
    shard = npy_copy / "ds-000000.tar"
    header = _member_offset(shard, "sample-000000-000.json")
    _flip(shard, header + 5)  # a byte of the member name: the header checksum fails
    problems = _verify_fails(npy_copy)
    assert "ds-000000.tar: sample-000000-000: incomplete sample: missing .json" in problems
    assert any(
        p.startswith(f"ds-000000.tar: damaged tar header at byte {header:,} of the archive data")
        for p in problems
    )
    assert "ds-000000.tar: holds 1 sample(s), the manifest says 4" in problems


def test_verify_flipped_first_header_byte(npy_copy):
    _flip(npy_copy / "ds-000002.tar", 3)
    problems = _verify_fails(npy_copy)
    assert "ds-000002.tar: damaged or truncated archive: bad checksum" in problems


@pytest.mark.parametrize(("kind", "name"), [("npy", "ds-000001.tar"), ("atdata-gz", None)])
def test_verify_truncated_shard(datasets, tmp_path, kind, name):
    directory = Path(shutil.copytree(datasets[kind], tmp_path / "copy"))
    shard = directory / name if name else next(directory.glob("*.tar.gz"))
    size = shard.stat().st_size
    os.truncate(shard, size // 2)
    problems = _verify_fails(directory)
    assert f"{shard.name}: size is {size // 2:,} bytes, the manifest says {size:,}" in problems
    assert any(
        p.startswith(f"{shard.name}: damaged or truncated archive in sample ") for p in problems
    )


def test_verify_shard_cut_at_a_member_boundary(npy_copy):
    shard = npy_copy / "ds-000002.tar"
    os.truncate(shard, shard.stat().st_size - 1024)  # drop the end-of-archive blocks
    problems = _verify_fails(npy_copy)
    assert "ds-000002.tar: archive is truncated (no end-of-archive marker)" in problems


def test_verify_missing_shard(npy_copy):
    (npy_copy / "ds-000001.tar").unlink()
    problems = _verify_fails(npy_copy)
    assert problems[0] == "ds-000001.tar: missing (listed in the manifest, not found)"
    assert "ds.manifest.json: recording 1 (synthetic-seed1): 2 of 5 frame(s) found" in " ".join(
        problems
    )


def test_verify_stray_shards(npy_copy):
    shutil.copy(npy_copy / "ds-000002.tar", npy_copy / "ds-000003.tar")
    shutil.copy(npy_copy / "ds-000002.tar", npy_copy / "ds-000000.tar.gz")
    (npy_copy / "other-000000.tar").write_bytes(b"")  # another stem: not ours to judge
    problems = _verify_fails(npy_copy)
    assert problems == [
        "ds-000000.tar.gz: stray shard not listed in the manifest ds.manifest.json",
        "ds-000003.tar: stray shard not listed in the manifest ds.manifest.json",
    ]


def _rewrite_shard(path: Path, drop: str) -> None:
    """Rewrite a tar shard without the member named ``drop``."""
    members = []
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            if member.name != drop:
                members.append((member, tar.extractfile(member).read()))
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for member, data in members:
            tar.addfile(member, io.BytesIO(data))


def test_verify_missing_member(npy_copy):
    _rewrite_shard(npy_copy / "ds-000000.tar", "sample-000000-001.json")
    problems = _verify_fails(npy_copy)
    assert "ds-000000.tar: sample-000000-001: incomplete sample: missing .json" in problems
    assert all(p.startswith("ds-000000.tar: ") for p in problems)


def test_verify_duplicate_and_out_of_order_keys(npy_copy):
    shutil.copy(npy_copy / "ds-000000.tar", npy_copy / "ds-000001.tar")
    problems = _verify_fails(npy_copy)
    assert (
        "ds-000001.tar: sample-000000-000: duplicate key (appears more than once in the dataset)"
        in problems
    )
    assert "ds-000001.tar: sample-000000-000: key out of order" in problems
    assert (
        "ds-000001.tar: first key is sample-000000-000, the manifest says sample-000000-004"
        in problems
    )


def test_verify_undecodable_member(npy_copy):
    shard = npy_copy / "ds-000000.tar"
    data = shard.read_bytes()
    # Break the magic of the second .npy member's content: np.load must fail on it.
    offset = data.index(b"\x93NUMPY", 4096)
    _flip(shard, offset + 1)
    problems = _verify_fails(npy_copy)
    assert any(
        p.startswith("ds-000000.tar: sample-000000-001: cannot decode: ValueError")
        for p in problems
    )


def test_verify_manifest_totals_mismatch(npy_copy):
    path = npy_copy / "ds.manifest.json"
    raw = json.loads(path.read_text())
    raw["totals"]["samples"] = 11
    path.write_text(json.dumps(raw))
    problems = _verify_fails(npy_copy)
    assert problems == ["ds.manifest.json: totals.samples is 11, the lists add up to 10"]


def test_verify_without_manifest_is_an_error(tmp_path):
    with pytest.raises(InputError, match="no toile manifest"):
        verify_dataset(tmp_path)
    result = _invoke("verify", str(tmp_path))
    assert result.exit_code == 1
    assert "Error: " in result.output
