"""Where an export writes on each storage: staging, direct writes and the commit order."""

from __future__ import annotations

import hashlib
import pickle
import uuid
from pathlib import Path

import pytest
from s3_server import S3

from toile.storage.base import Storage
from toile.storage.output import DirectStaging, existing_outputs, output_storages


def _location(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if kind == "local":
        return str(tmp_path / "out")
    if kind == "memory":
        return f"memory://toile-{uuid.uuid4().hex[:8]}/out"
    bucket: S3 = request.getfixturevalue("s3")
    return f"{bucket.url}/datasets/out"


def _write(staging: Storage, names: list[str], content: bytes) -> None:
    for name in names:
        with staging.create(name, attempt="a1") as sink:
            sink.write([content, name.encode()])
            sink.commit()
        staging.append_line("journal.jsonl", name)


def _commit(output: Storage, staging: Storage, stem: str, names: list[str]) -> None:
    """The export's commit: manifest staged, shards placed, manifest placed, stale removed."""
    manifest = f"{stem}.manifest.json"
    staging.write_text(manifest, " ".join(names))
    for name in names:
        staging.move_to(name, output)
    staging.move_to(manifest, output)
    for name in existing_outputs(output, stem):
        if name not in names and name != manifest:
            output.remove(name)
    staging.remove_all()
    output.sync()


def _digests(output: Storage) -> dict[str, str]:
    digests = {}
    for name in output.list():
        with output.open_read(name) as handle:
            digests[name] = hashlib.sha256(handle.read()).hexdigest()
    return digests


@pytest.mark.parametrize("kind", ["local", "memory", "s3"])
def test_a_fresh_export_commits_with_the_manifest_last(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    output, staging = output_storages(_location(kind, request, tmp_path), "ds")
    assert isinstance(staging, DirectStaging) == (kind == "s3")
    staging.ensure()
    names = ["ds-000000.tar", "ds-000001.tar"]
    _write(staging, names, b"new")
    if kind == "s3":  # under their final keys already, the journal beside them
        assert output.list() == names
        assert staging.url_of("journal.jsonl").endswith("/datasets/out/.ds.staging/journal.jsonl")
    else:
        assert output.list() == []
    assert staging.read_text("journal.jsonl").split() == names
    assert "ds.manifest.json" not in output.list()
    _commit(output, staging, "ds", names)
    assert output.list() == [*names, "ds.manifest.json"]
    assert output.read_text("ds.manifest.json") == " ".join(names)
    assert staging.list() == []


@pytest.mark.parametrize("kind", ["local", "memory", "s3"])
def test_a_failed_export_leaves_nothing_and_keeps_the_earlier_dataset(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    location = _location(kind, request, tmp_path)
    output, staging = output_storages(location, "ds")
    staging.ensure()
    old = ["ds-000000.tar", "ds-000001.tar", "ds-000002.tar"]
    _write(staging, old, b"old")
    _commit(output, staging, "ds", old)
    before = _digests(output)

    output, staging = output_storages(location, "ds")  # --overwrite: a dataset is there
    assert not isinstance(staging, DirectStaging)
    staging.ensure()
    _write(staging, ["ds-000000.tar"], b"new")
    staging.remove_all()  # the export failed
    assert _digests(output) == before

    output, staging = output_storages(location, "ds")
    staging.ensure()
    _write(staging, ["ds-000000.tar"], b"new")
    _commit(output, staging, "ds", ["ds-000000.tar"])
    assert output.list() == ["ds-000000.tar", "ds.manifest.json"]  # stale shards removed
    assert _digests(output)["ds-000000.tar"] != before["ds-000000.tar"]


def test_direct_staging_after_a_failure_removes_what_it_wrote(s3: S3) -> None:
    output, staging = output_storages(f"{s3.url}/ds", "ds")
    assert isinstance(staging, DirectStaging)
    _write(staging, ["ds-000000.tar", "ds-000001.tar"], b"x")
    assert s3.keys() == ["ds/.ds.staging/journal.jsonl", "ds/ds-000000.tar", "ds/ds-000001.tar"]
    copy = pickle.loads(pickle.dumps(staging))  # what a worker process receives
    with copy.create("ds-000002.tar") as sink:
        sink.write([b"y"])
        sink.commit()
    assert sorted(staging.list()) == [
        "ds-000000.tar",
        "ds-000001.tar",
        "ds-000002.tar",
        "journal.jsonl",
    ]
    staging.remove_all()
    assert s3.keys() == [] and s3.uploads() == []
