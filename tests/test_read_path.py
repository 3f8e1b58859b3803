"""The light read path: no atdata import to read or write, byte-compatible msgpack, damage."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

import toile
from toile.dataset import DamagedShardError, open_dataset
from toile.errors import ToileError
from toile.export import export_test_frames
from toile.samples import Frame, array_header, pack_frame, unpack_frame
from toile.synthetic import MovieSpec, generate_frames

FRAMES = 6
SHAPE = (16, 24)


def _export(path: Path, **options) -> Path:
    export_test_frames(
        path, frames=FRAMES, height=SHAPE[0], width=SHAPE[1], progress=False, **options
    )
    return path


def _expected(channels: int = 1) -> list[np.ndarray]:
    spec = MovieSpec(frames=FRAMES, height=SHAPE[0], width=SHAPE[1], channels=channels, seed=0)
    return list(generate_frames(spec))


def _python(code: str) -> str:
    """Run code in a fresh interpreter (so that sys.modules shows what it imported)."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


HEAVY = ("atdata", "pandas", "s3fs", "aiobotocore")


# --------------------------------------------------------------------------------------
# The msgpack codec is atdata's, byte for byte


@pytest.mark.parametrize(
    ("image", "metadata"),
    [
        (np.arange(6, dtype=np.uint16).reshape(2, 3), None),
        (np.zeros((2, 40, 40), np.float32), {"a": 1, "frame": {"t": 0.5, "uuid": ["x", "y"]}}),
        (np.full((300, 300), 7, np.uint8), {"source": "é.tif", "frame": {"index": 2}}),
        (np.ones((1, 1), ">i2"), {"n": None, "f": [1.5, True]}),
    ],
)
def test_packing_is_byte_identical_to_atdata(image, metadata):
    from toile.schema import Frame as AtdataFrame

    ours = b"".join(bytes(p) for p in pack_frame(image, metadata))
    assert ours == AtdataFrame(image=image, metadata=metadata).packed
    back = AtdataFrame.from_bytes(ours)
    np.testing.assert_array_equal(back.image, image)
    assert back.image.dtype == image.dtype
    assert back.metadata == metadata
    plain = Frame.from_bytes(AtdataFrame(image=image, metadata=metadata).packed)
    np.testing.assert_array_equal(plain.image, image)
    assert plain.image.dtype == image.dtype and plain.image.flags.writeable
    assert plain.metadata == metadata and plain.packed == ours


def test_unpacking_garbage_is_a_value_error():
    with pytest.raises(ValueError, match="not msgpack data|not a packed"):
        unpack_frame(b"\x93NUMPY nonsense")
    import msgpack

    short = array_header((4, 4), np.dtype(np.uint16)) + b"\x00" * 8
    with pytest.raises(ValueError, match=r"holds 29 bytes, its header \(4x4 uint16\) needs 53"):
        unpack_frame(msgpack.packb({"image": short, "metadata": {}}))


def test_atdata_export_reads_back_with_atdata_and_toile(tmp_path):
    import atdata

    from toile.schema import Frame as AtdataFrame

    out = _export(tmp_path / "at", format="atdata", channels=2)
    dataset = open_dataset(out)
    expected = _expected(channels=2)
    read = [f.image for f in atdata.Dataset[AtdataFrame](dataset.manifest.url).ordered()]
    assert len(read) == FRAMES
    for ours, theirs, pixels in zip(dataset, read, expected, strict=True):
        assert isinstance(ours, AtdataFrame)  # the plain Frame is registered as one
        np.testing.assert_array_equal(ours.image, pixels)
        np.testing.assert_array_equal(theirs, pixels)
        assert ours.image.shape == (2, *SHAPE)


# --------------------------------------------------------------------------------------
# What the read and write paths import


def test_open_and_first_frame_import_neither_atdata_nor_webdataset(tmp_path):
    out = _export(tmp_path / "ds")
    modules = _python(
        f"import sys, toile; frame = next(iter(toile.open({str(out)!r})));"
        "print(frame.image.shape); print(' '.join(sorted(sys.modules)))"
    ).splitlines()
    assert modules[0] == str(SHAPE)
    loaded = set(modules[1].split())
    assert not loaded & {*HEAVY, "webdataset", "matplotlib"}


@pytest.mark.parametrize("encoding", ["npy", "atdata"])
def test_info_does_not_import_atdata(tmp_path, encoding):
    out = _export(tmp_path / encoding, format=encoding)
    modules = _python(
        "import sys; from toile.cli import main\n"
        "try:\n"
        f"    main(['info', {str(out)!r}])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('MODULES', ' '.join(sorted(sys.modules)))"
    )
    assert "frame: c_index, index" in modules or "frame:" in modules
    loaded = set(modules.split("MODULES", 1)[1].split())
    assert not loaded & set(HEAVY)


def test_atdata_export_does_not_import_atdata(tmp_path):
    out = tmp_path / "at"
    modules = _python(
        "import sys; from toile.export import export_test_frames\n"
        f"export_test_frames({str(out)!r}, frames=3, height=16, width=16, format='atdata',"
        " progress=False)\n"
        "print(' '.join(sorted(sys.modules)))"
    )
    assert not set(modules.split()) & set(HEAVY)
    assert len(open_dataset(out)) == 3


# --------------------------------------------------------------------------------------
# Damaged shards met while reading


def _rewrite(shard: Path, change) -> None:
    """Rewrite a shard's members through ``change(name, data) -> data | None`` (None drops)."""
    with tarfile.open(shard) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar if m.isfile()]
    with tarfile.open(shard, "w") as tar:
        for name, data in members:
            new = change(name, data)
            if new is None:
                continue
            info = tarfile.TarInfo(name)
            info.size = len(new)
            tar.addfile(info, io.BytesIO(new))


def _shard(out: Path) -> Path:
    return next(out.glob("*-000000.tar"))


def test_missing_member_names_the_shard_and_key(tmp_path):
    out = _export(tmp_path / "ds")
    shard = _shard(out)
    _rewrite(shard, lambda name, data: None if name == "sample-000000-002.json" else data)
    dataset = open_dataset(out)
    for read in (lambda: list(dataset), lambda: list(dataset.webdataset())):
        with pytest.raises(DamagedShardError) as caught:
            read()
        message = str(caught.value)
        assert message.startswith(str(shard)), message
        assert "sample-000000-002: incomplete sample: missing .json" in message
        assert "\n" not in message
        assert isinstance(caught.value, ToileError)
        assert caught.value.key == "sample-000000-002"


def test_skip_leaves_the_damaged_sample_out_with_a_warning(tmp_path, caplog):
    out = _export(tmp_path / "ds")
    _rewrite(
        _shard(out),
        lambda name, data: b"garbage" if name == "sample-000000-003.npy" else data,
    )
    expected = [f"sample-000000-{i:03d}" for i in range(FRAMES) if i != 3]
    dataset = open_dataset(out, on_error="skip")
    with caplog.at_level(logging.WARNING, logger="toile.dataset"):
        frames = list(dataset)
        keys = [s["__key__"] for s in dataset.webdataset()]
    assert [f"sample-000000-{f.metadata['frame']['index']:03d}" for f in frames] == expected
    assert keys == expected
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert all("sample-000000-003: cannot decode" in w for w in warnings)
    with pytest.raises(DamagedShardError, match="sample-000000-003: cannot decode"):
        list(open_dataset(out).frames(batch_size=2))


def test_truncated_shard_raises_or_keeps_what_came_before(tmp_path, caplog):
    out = _export(tmp_path / "ds", shard_size=4 * 2048)
    shards = sorted(out.glob("*.tar"))
    assert len(shards) >= 2
    data = shards[0].read_bytes()
    shards[0].write_bytes(data[: len(data) // 2 + 100])
    with pytest.raises(DamagedShardError, match=r"damaged or truncated archive") as caught:
        list(open_dataset(out))
    assert str(shards[0]) in str(caught.value)
    with pytest.raises(DamagedShardError, match="damaged or truncated"):
        list(open_dataset(out).webdataset())
    with caplog.at_level(logging.WARNING, logger="toile.dataset"):
        kept = [f.metadata["frame"]["index"] for f in open_dataset(out, on_error="skip")]
    # the first shard's complete samples, then every sample of the later shards
    assert kept == sorted(kept) and kept[-1] == FRAMES - 1 and 0 < len(kept) < FRAMES
    assert any("truncated" in r.getMessage() for r in caplog.records)


def test_on_error_is_checked(tmp_path):
    out = _export(tmp_path / "ds")
    with pytest.raises(ValueError, match="on_error must be one of fail, skip, got 'ignore'"):
        open_dataset(out, on_error="ignore")
    with pytest.raises(ValueError, match="on_error must be one of"):
        open_dataset(out).frames(on_error="warn")


def test_frames_iterate_again_and_in_order(tmp_path):
    out = _export(tmp_path / "ds", shard_size=4 * 2048)
    dataset = toile.open(out)
    frames = dataset.frames()
    first = [f.metadata["frame"]["index"] for f in frames]
    assert first == list(range(FRAMES))
    assert [f.metadata["frame"]["index"] for f in frames] == first
    for frame, pixels in zip(dataset, _expected(), strict=True):
        np.testing.assert_array_equal(frame.image, pixels)
        assert frame.image.flags.writeable
    shuffled = [f.metadata["frame"]["index"] for f in dataset.frames(shuffle=4, seed=1)]
    assert sorted(shuffled) == first and shuffled != first
    assert shuffled == [f.metadata["frame"]["index"] for f in dataset.frames(shuffle=4, seed=1)]
    json.dumps([f.metadata for f in dataset])  # plain JSON data
