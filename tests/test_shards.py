"""The shard writer: exact size cap, filled shards, order and pixels, gzip validity."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import zlib
from pathlib import Path

import atdata
import numpy as np
import pytest
import webdataset as wds
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toile.encode import SampleEncoder, frame_digits, sample_key
from toile.errors import OutputError
from toile.schema import Frame
from toile.shards import (
    ShardWriter,
    crc32_combine,
    pack_sample,
    shard_name,
    shard_overhead,
    shard_url_pattern,
    tar_header,
)


def _frames(seed: int, count: int, max_side: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        h, w = rng.integers(1, max_side, size=2)
        dtype = rng.choice(["uint8", "uint16", "float32"])
        frames.append((rng.random((h, w)) * 200).astype(dtype))
    return frames


def _write(tmp: Path, frames, cap: int, encoding: str, compressed: bool, stem: str = "ds"):
    encoder = SampleEncoder(encoding, {"source": "test", "recording_index": 0})
    digits = frame_digits(len(frames))
    samples = []
    with ShardWriter(tmp, stem, cap, compressed=compressed) as writer:
        for index, image in enumerate(frames):
            key = sample_key(0, index, digits)
            sample = pack_sample(key, encoder.members(key, image, {"index": index}), compressed)
            samples.append(sample)
            writer.add(sample)
    return writer.shards, samples


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 10_000),
    count=st.integers(1, 30),
    cap_extra=st.integers(0, 40_000),
    encoding=st.sampled_from(["npy", "atdata"]),
    compressed=st.booleans(),
)
def test_every_shard_within_cap_filled_and_exact(
    tmp_path_factory, seed, count, cap_extra, encoding, compressed
):
    tmp = tmp_path_factory.mktemp("shards")
    frames = _frames(seed, count, 60)
    # The cap must hold the largest sample; beyond that it is random.
    probe = [
        pack_sample(
            sample_key(0, i, frame_digits(count)),
            SampleEncoder(encoding, {"source": "test", "recording_index": 0}).members(
                sample_key(0, i, frame_digits(count)), f, {"index": i}
            ),
            compressed,
        ).size
        for i, f in enumerate(frames)
    ]
    cap = max(probe) + shard_overhead(compressed) + cap_extra
    shards, samples = _write(tmp, frames, cap, encoding, compressed)

    sizes_on_disk = [os.path.getsize(tmp / s.name) for s in shards]
    assert all(size <= cap for size in sizes_on_disk)
    assert sizes_on_disk == [s.size for s in shards]
    assert sum(s.samples for s in shards) == count
    # Filled: a shard was closed only because the next sample would not fit.
    position = 0
    for shard in shards[:-1]:
        position += shard.samples
        assert shard.size + samples[position].size > cap
    # No temporary file left behind.
    assert sorted(p.name for p in tmp.iterdir()) == sorted(s.name for s in shards)

    urls = [str(tmp / s.name) for s in shards]
    if encoding == "npy":
        got = list(wds.WebDataset(urls, shardshuffle=False).decode())
        assert [g["__key__"] for g in got] == [s.key for s in samples]
        for g, frame, index in zip(got, frames, range(count), strict=True):
            assert g["npy"].dtype == frame.dtype
            np.testing.assert_array_equal(g["npy"], frame)
            assert g["json"]["frame"]["index"] == index
    else:
        pattern = str(tmp / shard_url_pattern("ds", len(shards), compressed))
        got = list(atdata.Dataset[Frame](pattern).ordered())
        assert len(got) == count
        for g, frame in zip(got, frames, strict=True):
            np.testing.assert_array_equal(g.image, frame)
            assert g.image.dtype == frame.dtype


def test_compressed_shards_are_valid_gzip_and_tar(tmp_path):
    frames = _frames(3, 12, 40)
    shards, _ = _write(tmp_path, frames, 10_000, "npy", True)
    assert len(shards) > 1
    for shard in shards:
        data = (tmp_path / shard.name).read_bytes()
        raw = gzip.decompress(data)  # checks the CRC-32 and length trailer
        with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
            members = tar.getmembers()
        assert len(members) == 2 * shard.samples
        assert all(m.mtime == 0 and m.uid == 0 and m.mode == 0o644 for m in members)
        assert shard.name.endswith(".tar.gz")


def test_uncompressed_tar_members_are_deterministic(tmp_path):
    frames = _frames(5, 4, 30)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, _ = _write(tmp_path / "a", frames, 10**6, "npy", False)
    b, _ = _write(tmp_path / "b", frames, 10**6, "npy", False)
    assert (tmp_path / "a" / a[0].name).read_bytes() == (tmp_path / "b" / b[0].name).read_bytes()
    assert a[0].sha256 == b[0].sha256
    with tarfile.open(tmp_path / "a" / a[0].name) as tar:
        names = tar.getnames()
    assert names[:2] == ["sample-000000-000.npy", "sample-000000-000.json"]


def test_sample_larger_than_cap_is_refused_before_writing(tmp_path):
    big = np.zeros((100, 100), dtype=np.uint16)
    with (
        pytest.raises(
            OutputError, match="rec.tif: frame 7.*more than the shard size limit of 5000"
        ),
        ShardWriter(tmp_path, "ds", 5000) as writer,
    ):
        writer.add(
            pack_sample("k", SampleEncoder("npy", {}).members("k", big, {}), False),
            "rec.tif: frame 7",
        )
    assert list(tmp_path.iterdir()) == []


def test_cap_smaller_than_overhead_is_an_error(tmp_path):
    with pytest.raises(OutputError, match="too small"):
        ShardWriter(tmp_path, "ds", 100)


def test_crc32_combine_matches_zlib():
    rng = np.random.default_rng(0)
    for length_a, length_b in [(0, 5), (5, 0), (1, 1), (1000, 4097), (65536, 12345)]:
        a = rng.bytes(length_a)
        b = rng.bytes(length_b)
        assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


def test_names_and_url_pattern():
    assert shard_name("ds", 3, False) == "ds-000003.tar"
    assert shard_name("ds", 3, True) == "ds-000003.tar.gz"
    assert shard_url_pattern("ds", 1, False) == "ds-000000.tar"
    assert shard_url_pattern("ds", 13, True) == "ds-{000000..000012}.tar.gz"


def test_keys_sort_in_frame_order_and_have_no_dot():
    digits = frame_digits(1500)
    keys = [sample_key(2, i, digits) for i in range(1500)]
    assert keys == sorted(keys)
    assert keys[0] == "sample-000002-0000"
    assert frame_digits(10) == 3 and sample_key(0, 7, 3) == "sample-000000-007"
    assert all("." not in k for k in keys)


@pytest.mark.parametrize("name", ["a", "sample-000000-000.npy", "x" * 100, "é" * 10, "y" * 150])
@pytest.mark.parametrize("size", [0, 1, 511, 512, 10**9, 8**11 - 1, 8**11])
def test_tar_header_is_what_tarfile_writes(name, size):
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    simple = len(name.encode()) <= 100 and size < 8**11
    expected = info.tobuf(format=tarfile.USTAR_FORMAT if simple else tarfile.PAX_FORMAT)
    assert tar_header(name, size) == expected
