"""`toile publish --pds` against Bluesky's reference PDS and a PLC directory on 127.0.0.1.

The servers start once per session (tests/pds_server.py); each test has its own account.
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import atdata
import httpx
import numpy as np
import pds_server
import pytest
from click.testing import CliRunner

import toile
from toile.cli import main
from toile.dataset import Manifest, verify_dataset
from toile.export import export_test_frames
from toile.publish import PublishError, atmosphere_for, publish_pds, read_publications
from toile.schema import Frame

#: 64x64 uint16 frames (about 9 KB packed) in shards of at most 50 KB: 3 shards of 5 frames.
SMALL = {"frames": 15, "height": 64, "width": 64, "shard_size": 50_000, "progress": False}
pds_stack = pds_server.pds_stack
account = pds_server.account


def _export(path: Path, **options) -> Path:
    export_test_frames(path, format="atdata", **{**SMALL, **options})
    return path


@pytest.fixture
def dataset(tmp_path) -> Path:
    path = _export(tmp_path / "demo")
    assert len(Manifest.load(path).shards) == 3
    return path


def _same(frames_a, frames_b) -> bool:
    return len(frames_a) == len(frames_b) and all(
        np.array_equal(a.image, b.image)
        and a.image.dtype == b.image.dtype
        and a.metadata == b.metadata
        for a, b in zip(frames_a, frames_b, strict=True)
    )


def _records(pds_url: str, did: str, collection: str) -> list[dict]:
    response = httpx.get(
        f"{pds_url}/xrpc/com.atproto.repo.listRecords",
        params={"repo": did, "collection": collection},
    )
    response.raise_for_status()
    return response.json()["records"]


def _blobs(pds_url: str, did: str) -> list[str]:
    response = httpx.get(f"{pds_url}/xrpc/com.atproto.sync.listBlobs", params={"did": did})
    response.raise_for_status()
    return response.json()["cids"]


def _publish(dataset, pds, account, **options):
    return publish_pds(dataset, pds.url, account.handle, account.password, **options)


def test_publish_and_read_back(pds_stack, account, dataset, tmp_path, monkeypatch):
    pds = pds_stack.pds
    before = {p.name: p.read_bytes() for p in dataset.iterdir()}
    seen = []
    result = _publish(dataset, pds, account, description="demo", on_blob=lambda *a: seen.append(a))

    assert result.created and result.version == "1"
    assert result.uri.startswith(f"at://{account.did}/science.alt.dataset.entry/")
    assert [u.name for u, _, _ in seen][1:] == [
        "demo-000001.tar",
        "demo-000002.tar",
        "demo.manifest.json",
    ]
    assert all(u.uploaded for u, _, _ in seen)
    # The record names each shard's blob and the manifest's SHA-256.
    record = httpx.get(
        f"{pds.url}/xrpc/com.atproto.repo.getRecord",
        params=dict(zip(("repo", "collection", "rkey"), result.uri[5:].split("/"), strict=True)),
    ).json()["value"]
    manifest = json.loads((dataset / "demo.manifest.json").read_text())
    digests = [b["checksum"]["digest"] for b in record["storage"]["blobs"]]
    assert digests == [s["sha256"] for s in manifest["shards"]]
    assert record["schemaRef"].startswith(f"at://{account.did}/science.alt.dataset.schema/")

    # Byte-identical blobs.
    remote = toile.open(result.uri, pds=pds.url)
    for shard in remote.shards:
        assert httpx.get(shard.url).content == (dataset / shard.name).read_bytes()
    # Exact pixels and metadata, through the PLC directory (no PDS named) and by handle.
    monkeypatch.setenv("TOILE_PLC_URL", pds_stack.plc.url)
    local = list(toile.open(dataset))
    assert _same(list(toile.open(result.uri)), local)
    by_handle = result.uri.replace(account.did, account.handle)
    assert len(toile.open(by_handle, pds=pds.url)) == 15
    # atdata's own loader, bound to the PDS that hosts the DID.
    loaded = atdata.load_dataset(
        result.uri, Frame, split="train", atmosphere=atmosphere_for(result.uri)
    )
    assert _same(list(loaded.ordered()), local)
    assert _same(list(remote.atdata().ordered()), local)
    # A full copy is a sound toile dataset again.
    copy = remote.download(tmp_path / "copy")
    assert verify_dataset(tmp_path / "copy").ok
    assert _same(list(copy), local)
    # Publishing changed nothing but the sidecar.
    after = {p.name: p.read_bytes() for p in dataset.iterdir()}
    assert json.loads(after.pop("demo.published.json"))["publications"][0]["uri"] == result.uri
    assert after == before
    # Nothing staged is left behind.
    assert _records(pds.url, account.did, "dev.toile.upload") == []


def test_republish_is_idempotent_and_a_change_is_a_new_version(pds_stack, account, dataset):
    pds = pds_stack.pds
    first = _publish(dataset, pds, account)
    again = _publish(dataset, pds, account)
    assert not again.created and again.uri == first.uri and again.uploaded_bytes == 0
    assert len(_records(pds.url, account.did, "science.alt.dataset.entry")) == 1

    _export(dataset, seed=3, overwrite=True)
    second = _publish(dataset, pds, account)
    assert second.created and second.version == "2" and second.uri != first.uri
    entries = _records(pds.url, account.did, "science.alt.dataset.entry")
    assert sorted(e["value"]["metadata"]["version"] for e in entries) == ["1", "2"]
    assert len(_records(pds.url, account.did, "science.alt.dataset.schema")) == 1
    labels = _records(pds.url, account.did, "science.alt.dataset.label")
    assert sorted(label["value"]["version"] for label in labels) == ["1", "2"]
    assert [p["version"] for p in read_publications(Manifest.load(dataset))] == ["1", "2"]
    assert _same(list(toile.open(second.uri, pds=pds.url)), list(toile.open(dataset)))


def test_resume_after_the_server_stopped_mid_upload(pds_stack, dataset, tmp_path):
    pds = pds_stack.start_pds(tmp_path / "pds-resume")
    user = pds_stack.create_account(pds)

    def stop_after_first(upload, position, count):
        if position == 1:
            pds.stop()

    with pytest.raises(
        PublishError, match=r"server stopped answering while uploading demo-0000"
    ) as error:
        _publish(dataset, pds, user, on_blob=stop_after_first)
    assert "\n" not in str(error.value) and "run the same command again to resume" in str(
        error.value
    )

    restarted = pds_stack.start_pds(tmp_path / "pds-resume", port=pds.port)
    sent = []
    result = _publish(dataset, restarted, user, on_blob=lambda u, p, n: sent.append(u))
    assert [u.name for u in sent if not u.uploaded] == ["demo-000000.tar"]
    assert len([u for u in sent if u.uploaded]) == 3
    assert len(_records(restarted.url, user.did, "science.alt.dataset.entry")) == 1
    assert _same(list(toile.open(result.uri, pds=restarted.url)), list(toile.open(dataset)))
    restarted.stop()


def test_oversize_shard_is_refused_before_any_upload(pds_stack, account, dataset):
    pds = pds_stack.pds
    with pytest.raises(PublishError) as error:
        _publish(dataset, pds, account, blob_limit=20_000)
    message = str(error.value)
    assert (
        "demo-000000.tar" in message and "over the server's blob limit of 20,000 bytes" in message
    )
    assert "--pds" in message and "--shard-size" in message and "\n" not in message
    assert _blobs(pds.url, account.did) == []
    assert _records(pds.url, account.did, "dev.toile.upload") == []


def test_413_is_one_line(pds_stack, account, tmp_path):
    big = _export(tmp_path / "big", frames=20, height=256, width=256, shard_size=3_000_000)
    size = Manifest.load(big).shards[0].size
    assert size > pds_server.BLOB_LIMIT
    with pytest.raises(PublishError) as error:
        _publish(big, pds_stack.pds, account)
    message = str(error.value)
    assert f"refused big-000000.tar ({size:,} bytes) as too large (HTTP 413)" in message
    assert "PDS_BLOB_UPLOAD_LIMIT" in message and "\n" not in message


def test_damaged_shard_is_refused(pds_stack, account, dataset):
    shard = dataset / "demo-000002.tar"
    data = bytearray(shard.read_bytes())
    data[1000] ^= 0x01
    shard.write_bytes(bytes(data))
    with pytest.raises(PublishError, match="damaged dataset, nothing published: demo-000002.tar"):
        _publish(dataset, pds_stack.pds, account)
    assert _blobs(pds_stack.pds.url, account.did) == []


def test_login_failures_are_one_line(pds_stack, account, dataset):
    pds = pds_stack.pds
    with pytest.raises(PublishError, match=rf"^{pds.url}: wrong password for {account.handle}"):
        publish_pds(dataset, pds.url, account.handle, "not-the-password")
    with pytest.raises(PublishError, match=rf"^{pds.url}: unknown handle 'nobody.test'"):
        publish_pds(dataset, pds.url, "nobody.test", "x")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    closed = f"http://127.0.0.1:{port}"
    with pytest.raises(PublishError, match=rf"^{closed}: server unreachable"):
        publish_pds(dataset, closed, account.handle, account.password)


def test_dry_run_contacts_no_server(dataset):
    result = publish_pds(dataset, "http://127.0.0.1:9", "nobody.test", None, dry_run=True)
    assert result.dry_run and len(result.shards) == 4
    assert "checks passed; would upload 4 blob(s)" in result.summary()
    assert not (dataset / "demo.published.json").exists()


def test_cli_publish_pds(pds_stack, account, dataset, monkeypatch):
    pds = pds_stack.pds
    runner = CliRunner()
    args = ["publish", str(dataset), "--pds", pds.url, "--handle", account.handle]
    dry = runner.invoke(main, [*args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would upload demo-000000.tar" in dry.output
    assert _records(pds.url, account.did, "science.alt.dataset.entry") == []

    monkeypatch.setenv("TOILE_PDS_PASSWORD", account.password)
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "[4/4] demo.manifest.json" in result.output and "MB/s" in result.output
    assert account.password not in result.output
    (uri,) = [w for w in result.output.split() if w.startswith("at://")]
    info = runner.invoke(main, ["info", str(dataset)])
    assert f"pds {pds.url}: demo version 1" in info.output and uri in info.output

    monkeypatch.setenv("TOILE_PDS_PASSWORD", "hunter2-not-it")
    wrong = runner.invoke(main, args)
    assert wrong.exit_code == 1
    assert wrong.output.strip().splitlines() == [
        f"Error: {pds.url}: wrong password for {account.handle} "
        "(the server answered 401 AuthenticationRequired: Invalid identifier or password)"
    ]
    assert "hunter2" not in wrong.output


def test_open_unknown_record_is_one_line(pds_stack, account):
    uri = f"at://{account.did}/science.alt.dataset.entry/3zzzzzzzzzzzz"
    with pytest.raises(toile.errors.InputError, match="no such record") as error:
        toile.open(uri, pds=pds_stack.pds.url)
    assert "\n" not in str(error.value)


def test_readme_collaborator_example(pds_stack, account, dataset, tmp_path, monkeypatch):
    """The README's reading example runs as written against a real PDS and PLC."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Publishing") :]
    (block,) = re.findall(r"```py\n(.*?)```", section, re.DOTALL)[:1]
    result = _publish(dataset, pds_stack.pds, account)
    (example_uri,) = re.findall(r'uri = "(at://[^"]+)"', block)
    code = block.replace(example_uri, result.uri).replace("/data/mouse-123", str(tmp_path / "copy"))
    monkeypatch.setenv("TOILE_PLC_URL", pds_stack.plc.url)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    local = list(toile.open(dataset))
    assert _same([namespace["frame"]], local[:1])
    assert _same(list(namespace["copy"]), local)
    assert _same(list(namespace["frames"].ordered()), local)
