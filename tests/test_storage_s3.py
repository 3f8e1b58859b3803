"""S3 behaviour of the storage seam against moto's server: multipart uploads and faults."""

from __future__ import annotations

import hashlib
import io
import json
import time

import numpy as np
import pytest
import tifffile
from s3_server import (
    ACCESS_KEY,
    S3,
    SECRET_KEY,
    MotoServer,
    TcpRelay,
    free_port,
    point_at,
)

from toile.errors import InputError, OutputError
from toile.storage import open_input, storage_for
from toile.storage.fsspec import FsspecStorage

MIB = 1024 * 1024


def _small_parts(url: str) -> FsspecStorage:
    """A storage uploading 5 MiB parts (S3's minimum), so tests stay small."""
    storage = storage_for(url)
    assert isinstance(storage, FsspecStorage)
    storage.part_size = 5 * MIB
    return storage


def _open_uploads(s3: S3, count: int) -> list[str]:
    """The open multipart uploads, once ``count`` are there (parts go up on a thread)."""
    deadline = time.monotonic() + 15
    while len(found := s3.uploads()) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return found


def test_a_multipart_shard_is_invisible_until_it_completes(s3: S3) -> None:
    storage = _small_parts(f"{s3.url}/ds")
    assert storage.direct_writes
    data = np.random.default_rng(0).bytes(11 * MIB)
    sink = storage.create("x-000000.tar")
    for start in range(0, len(data), MIB):
        sink.write([data[start : start + MIB]])
    assert _open_uploads(s3, 1) == ["ds/x-000000.tar"]
    assert s3.keys() == []  # parts uploaded, nothing visible
    committed = sink.commit()
    assert s3.keys() == ["ds/x-000000.tar"] and s3.uploads() == []
    assert (
        committed.sha256
        == hashlib.sha256(data).hexdigest()
        == hashlib.sha256(s3.get("ds/x-000000.tar")).hexdigest()
    )


def test_an_aborted_multipart_upload_is_gone(s3: S3) -> None:
    storage = _small_parts(f"{s3.url}/ds")
    sink = storage.create("x-000000.tar")
    sink.write([bytes(6 * MIB)])
    assert _open_uploads(s3, 1) == ["ds/x-000000.tar"]
    sink.abort()
    assert s3.keys() == [] and s3.uploads() == []


def test_a_dropped_sink_never_completes_its_upload(s3: S3) -> None:
    storage = _small_parts(f"{s3.url}/ds")
    sink = storage.create("x-000000.tar")
    sink.write([bytes(6 * MIB)])
    del sink
    assert s3.keys() == []


def test_missing_bucket_is_one_line(s3: S3) -> None:
    url = f"s3://{s3.bucket}-missing/ds"
    with pytest.raises(OutputError) as caught:
        storage_for(url).ensure()
    assert str(caught.value) == f"{url}: bucket '{s3.bucket}-missing' does not exist"
    sink = storage_for(url).create("x-000000.tar")
    sink.write([b"x"])
    with pytest.raises(
        OutputError, match=r"x-000000\.tar: upload failed: bucket .* does not exist"
    ):
        sink.commit()


def test_wrong_endpoint_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    point_at(monkeypatch, endpoint)
    with pytest.raises(OutputError) as caught:
        storage_for("s3://bucket/ds").ensure()
    message = str(caught.value)
    assert message.startswith("s3://bucket/ds: ")
    assert f"cannot reach the storage endpoint {endpoint}" in message
    assert "\n" not in message and SECRET_KEY not in message and ACCESS_KEY not in message
    with pytest.raises(InputError, match="cannot reach the storage endpoint"):
        open_input("s3://bucket/raw/x.tif")


def test_no_permission_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto checks every request against IAM once told to: a read-only user cannot write."""
    import boto3

    with MotoServer() as server:
        point_at(monkeypatch, server.endpoint)
        boto3.client("s3").create_bucket(Bucket="lab")
        iam = boto3.client("iam")
        iam.create_user(UserName="reader")
        key = iam.create_access_key(UserName="reader")["AccessKey"]
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": "*"}
            ],
        }
        iam.put_user_policy(UserName="reader", PolicyName="ro", PolicyDocument=json.dumps(policy))
        server.enforce_auth(0)
        options = {"key": key["AccessKeyId"], "secret": key["SecretAccessKey"]}
        storage = storage_for("s3://lab/ds", options)
        storage.ensure()  # listing is allowed
        sink = storage.create("x-000000.tar")
        sink.write([b"x" * 100])
        with pytest.raises(OutputError) as caught:
            sink.commit()
        message = str(caught.value)
        assert message.startswith("s3://lab/ds/x-000000.tar: upload failed: permission denied")
        assert key["SecretAccessKey"] not in message
        with pytest.raises(OutputError, match="cannot write: permission denied"):
            storage.write_text("x.manifest.json", "{}")
        assert storage.list() == []


def test_connection_refused_mid_upload(s3: S3, monkeypatch: pytest.MonkeyPatch) -> None:
    with TcpRelay(s3.server.port) as relay:
        point_at(monkeypatch, relay.endpoint)
        storage = _small_parts(f"{s3.url}/ds")
        sink = storage.create("x-000000.tar")
        sink.write([bytes(6 * MIB)])  # one part went through the relay
        assert _open_uploads(s3, 1) == ["ds/x-000000.tar"]
        relay.stop()
        with pytest.raises(OutputError) as caught:
            sink.write([bytes(6 * MIB)])
            sink.commit()
        sink.abort()
    assert str(caught.value).startswith("s3://")
    assert "x-000000.tar: upload failed: cannot reach the storage endpoint" in str(caught.value)
    assert s3.keys() == []  # the open upload is invisible (a bucket lifecycle rule drops it)


def _tiff(frames: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, frames, photometric="minisblack", metadata={"axes": "TYX"})
    return buffer.getvalue()


def test_inputs_read_exactly_and_an_object_gone_after_opening(s3: S3) -> None:
    frames = np.random.default_rng(2).integers(0, 4096, (20, 64, 64), dtype=np.uint16)
    s3.put("raw/rec.ome.tif", _tiff(frames))
    url = f"{s3.url}/raw/rec.ome.tif"
    with open_input(url) as handle, tifffile.TiffFile(handle) as tif:
        stack = np.stack([page.asarray() for page in tif.pages])
    np.testing.assert_array_equal(stack, frames)

    handle = open_input(url, block_size=8192)
    with tifffile.TiffFile(handle) as tif:
        first = tif.pages.first.asarray()
        np.testing.assert_array_equal(first, frames[0])
        s3.client().delete_object(Bucket=s3.bucket, Key="raw/rec.ome.tif")
        with pytest.raises(InputError) as caught:
            for page in tif.pages:
                page.asarray()
    assert str(caught.value) == f"{url}: no longer exists (removed after it was opened)"
    with pytest.raises(InputError, match=r"rec\.ome\.tif: does not exist"):
        open_input(url)
