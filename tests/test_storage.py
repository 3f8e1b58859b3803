"""The storage seam on local files, fsspec's memory:// and a real S3 API server (moto)."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import tifffile
from s3_server import S3

from toile.errors import InputError, OutputError, ToileError
from toile.storage import (
    LocalStorage,
    Storage,
    expand_url,
    is_url,
    open_input,
    storage_for,
)
from toile.storage.fsspec import FsspecStorage, redact
from toile.storage.local import temporary_name


@pytest.fixture(params=["local", "memory", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return storage_for(tmp_path / "out")
    if request.param == "memory":
        return storage_for(f"memory://toile-{uuid.uuid4().hex[:8]}/out")
    bucket: S3 = request.getfixturevalue("s3")
    return storage_for(f"{bucket.url}/datasets/out")


def _visible(storage: Storage) -> list[str]:
    return [n for n in storage.list() if not n.startswith(".")]


def test_storage_for_picks_the_backend(tmp_path: Path) -> None:
    assert isinstance(storage_for(tmp_path), LocalStorage)
    assert isinstance(storage_for(str(tmp_path)), LocalStorage)
    assert isinstance(storage_for("memory://b/x"), FsspecStorage)
    assert is_url("s3://bucket/x") and not is_url("C:/data") and not is_url(Path("s3:/x"))
    assert storage_for("memory://b/x").direct_writes is False


def test_a_shard_appears_whole_with_its_hash_and_size(storage: Storage) -> None:
    storage.ensure()
    chunks = [b"a" * 1000, bytearray(b"b" * 3), memoryview(np.arange(10, dtype=np.uint16))]
    expected = b"".join(bytes(c) for c in chunks)
    sink = storage.create("x-000000.tar")
    sink.write(chunks[:2])
    assert "x-000000.tar" not in storage.list()
    sink.write(chunks[2:])
    assert storage.size("x-000000.tar") is None
    committed = sink.commit()
    assert committed.size == len(expected)
    assert committed.sha256 == hashlib.sha256(expected).hexdigest()
    assert _visible(storage) == ["x-000000.tar"]
    assert storage.list() == ["x-000000.tar"]  # no temporary name left either
    assert storage.size("x-000000.tar") == len(expected)
    with storage.open_read("x-000000.tar") as handle:
        assert handle.read() == expected
        handle.seek(1000)
        assert handle.read(3) == b"bbb"


def test_an_aborted_shard_leaves_nothing(storage: Storage) -> None:
    storage.ensure()
    with pytest.raises(RuntimeError), storage.create("x-000001.tar") as sink:
        sink.write([b"z" * 10_000])
        raise RuntimeError("stop")
    assert storage.list() == []
    sink = storage.create("x-000002.tar")
    sink.write([b"z"])
    sink.abort()
    sink.abort()  # idempotent
    assert storage.list() == []


def test_text_objects_are_replaced_whole(storage: Storage) -> None:
    storage.ensure()
    storage.write_text("m.manifest.json", '{"a": 1}\n')
    storage.write_text("m.manifest.json", '{"a": 2}\n')
    assert storage.read_text("m.manifest.json") == '{"a": 2}\n'
    assert storage.list() == ["m.manifest.json"]
    with pytest.raises(FileNotFoundError):
        storage.read_text("missing.json")


def test_remove_child_and_urls(storage: Storage) -> None:
    storage.ensure()
    staging = storage.child(".x.staging")
    staging.ensure()
    staging.write_text("journal.jsonl", "{}\n")
    storage.write_text("keep.json", "{}")
    assert staging.list() == ["journal.jsonl"]
    assert storage.list() == ["keep.json"]
    assert staging.url_of("journal.jsonl").endswith("/out/.x.staging/journal.jsonl")
    staging.remove_all()
    staging.remove_all()
    assert staging.list() == []
    storage.remove("keep.json")
    storage.remove("keep.json")
    assert storage.list() == [] and not storage.exists("keep.json")


def test_local_keeps_temporary_names_modes_and_renames(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    sink = storage.create("x-000000.tar")
    sink.write([b"data"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [".x-000000.tar.tmp"]
    sink.commit()
    assert stat.S_IMODE((tmp_path / "x-000000.tar").stat().st_mode) == 0o644 & ~_umask()
    other = storage.create("x-000001.tar", attempt="a7")
    assert (tmp_path / temporary_name("x-000001.tar", "a7")).name == ".x-000001.tar.a7.tmp"
    assert (tmp_path / ".x-000001.tar.a7.tmp").exists()
    other.abort()
    storage.write_text("m.json", "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "x-000000.tar"]
    storage.sync()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_local_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match=r"\.x-000000\.tar\.tmp: cannot create shard"):
        LocalStorage(tmp_path / "missing").create("x-000000.tar")
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="cannot create output directory"):
        LocalStorage(tmp_path / "file" / "sub").ensure()


def test_unknown_scheme_and_missing_filesystem_are_one_line() -> None:
    with pytest.raises(OutputError, match=r"^nosuch://b/x: unknown URL scheme 'nosuch'$"):
        storage_for("nosuch://b/x")
    # s3fs made unimportable in a fresh interpreter: the message names the extra.
    code = (
        "import sys; sys.modules['s3fs'] = None\n"
        "from toile.storage import storage_for\n"
        "try:\n    storage_for('s3://bucket/x')\n"
        "except Exception as e:\n    print(type(e).__name__, e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == (
        "OutputError s3://bucket/x: no filesystem for s3:// URLs is installed; "
        "install toile[s3] (pip install 'toile[s3]')"
    )


def test_redact_hides_secrets_from_options_environment_and_urls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "envsecret123")
    text = "failed with envsecret123 and optsecret456 at s3://user:pw@bucket/x"
    options = {"key": "AKIA1", "client_kwargs": {"aws_secret_access_key": "optsecret456"}}
    assert redact(text, options) == "failed with *** and *** at s3://***@bucket/x"


def _tiff_bytes(frames: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, frames, photometric="minisblack", metadata={"axes": "TYX"})
    return buffer.getvalue()


def test_open_input_reads_tiff_planes_exactly_from_memory() -> None:
    frames = np.random.default_rng(1).integers(0, 65535, (12, 40, 30), dtype=np.uint16)
    root = f"memory://toile-{uuid.uuid4().hex[:8]}"
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe_file(f"{root}/raw/a/rec.ome.tif", _tiff_bytes(frames))
    fs.pipe_file(f"{root}/raw/b/c/rec2.ome.tif", _tiff_bytes(frames[:3]))
    fs.pipe_file(f"{root}/raw/notes.txt", b"x")
    with open_input(f"{root}/raw/a/rec.ome.tif") as handle, tifffile.TiffFile(handle) as tif:
        assert len(tif.pages) == 12
        for index, page in enumerate(tif.pages):
            np.testing.assert_array_equal(page.asarray(), frames[index])
    urls = [url for url, _ in expand_url(f"{root}/raw/**/*.ome.tif")]
    assert [u.rsplit("/raw/", 1)[1] for u in urls] == ["a/rec.ome.tif", "b/c/rec2.ome.tif"]
    assert len(expand_url(f"{root}/raw")) == 3
    with pytest.raises(InputError, match=r"raw/\*\*/\*\.nd2: matches no object"):
        expand_url(f"{root}/raw/**/*.nd2")
    with pytest.raises(InputError, match=r"nothing\.tif: does not exist"):
        open_input(f"{root}/raw/nothing.tif")


def test_errors_are_toile_errors() -> None:
    assert issubclass(InputError, ToileError) and issubclass(OutputError, ToileError)


def test_journal_lines_moves_and_hashes(storage: Storage) -> None:
    storage.ensure()
    staging = storage.child(".x.staging")
    staging.ensure()
    staging.append_line("journal.jsonl", '{"fingerprint": "f"}')
    staging.append_line("journal.jsonl", '{"name": "x-000000.tar"}')
    assert staging.read_text("journal.jsonl").splitlines() == [
        '{"fingerprint": "f"}',
        '{"name": "x-000000.tar"}',
    ]
    with staging.create("x-000000.tar") as sink:
        sink.write([b"shard bytes"])
        committed = sink.commit()
    assert staging.sha256("x-000000.tar") == committed.sha256
    assert staging.sha256("missing.tar") is None
    staging.move_to("x-000000.tar", storage)
    assert storage.list() == ["x-000000.tar"]
    assert staging.list() == ["journal.jsonl"]
    assert storage.sha256("x-000000.tar") == hashlib.sha256(b"shard bytes").hexdigest()
