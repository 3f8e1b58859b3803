"""A real S3 API server for the tests: moto's standalone server in a subprocess.

:class:`MotoServer` starts ``python -m moto.server`` on 127.0.0.1 at a free
port, waits until it answers (with a deadline) and stops it by PID.
:class:`TcpRelay` is a plain TCP relay (another subprocess) in front of it: a
test points the client at the relay and stops the relay to make the network
refuse connections in the middle of an upload, while the server, and what it
already stores, stays up to be inspected.

Run as ``python tests/s3_server.py relay LISTEN_PORT TARGET_PORT`` for the relay.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

#: Credentials the moto server accepts (any value works while IAM is not enforced).
ACCESS_KEY = "AKIATOILETESTKEY0001"
SECRET_KEY = "toile-test-secret-never-printed"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_listening(port: int, process: subprocess.Popen, deadline: float, what: str) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode} while starting")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} in time")


def _stop(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


class MotoServer:
    """moto's S3 API server on 127.0.0.1 in a subprocess, stopped by PID."""

    def __init__(self, env: dict[str, str] | None = None, startup_timeout: float = 30.0) -> None:
        self.env = env or {}
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoServer:
        for _ in range(5):  # another process may take the free port first
            self.port = free_port()
            env = {**os.environ, **self.env}
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                self._wait_ready()
                return self
            except RuntimeError:
                _stop(self.process)
        raise RuntimeError("moto server did not start")

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        _wait_listening(self.port, self.process, deadline, "moto server")
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/data.json", timeout=2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("moto server did not answer in time")

    def reset(self) -> None:
        """Forget every bucket and object."""
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def enforce_auth(self, after_actions: int = 0) -> None:
        """From ``after_actions`` requests on, check every request against IAM."""
        request = urllib.request.Request(
            f"{self.endpoint}/moto-api/reset-auth",
            data=str(after_actions).encode(),
            headers={"Content-Type": "text/plain"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10):
            pass

    def stop(self) -> None:
        _stop(self.process)
        self.process = None

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class TcpRelay:
    """A TCP relay from a free port to ``target_port``, in a subprocess; ``stop`` cuts it."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> TcpRelay:
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__)), "relay", str(self.port), str(self.target_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_listening(self.port, self.process, time.monotonic() + 15, "relay")
        return self

    def stop(self) -> None:
        """Kill the relay: open connections drop and new ones are refused."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)
        self.process = None

    def __enter__(self) -> TcpRelay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _relay(listen_port: int, target_port: int) -> None:
    import asyncio

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(1 << 16):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# --------------------------------------------------------------------------------------
# pytest fixtures (tests/conftest.py loads this module as a plugin)


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    """One moto server for the tests of a module."""
    with MotoServer() as server:
        yield server


@dataclass
class S3:
    """A fresh bucket on the module's moto server, with the environment pointing at it."""

    server: MotoServer
    bucket: str

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}"

    def client(self, endpoint: str | None = None) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=endpoint or self.server.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
        )

    def keys(self, prefix: str = "") -> list[str]:
        """Every key in the bucket under ``prefix``, asked of the server directly."""
        pages = (
            self.client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.bucket, Prefix=prefix)
        )
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def uploads(self) -> list[str]:
        """Keys of the multipart uploads still open (neither completed nor aborted)."""
        answer = self.client().list_multipart_uploads(Bucket=self.bucket)
        return sorted(u["Key"] for u in answer.get("Uploads", []))

    def get(self, key: str) -> bytes:
        return self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def put(self, key: str, data: bytes) -> None:
        self.client().put_object(Bucket=self.bucket, Key=key, Body=data)


def point_at(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    """The standard AWS environment for ``endpoint``; fsspec's cached clients dropped."""
    import s3fs

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")  # fail fast on a refused connection
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture
def s3(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3]:
    point_at(monkeypatch, moto.endpoint)
    bucket = f"toile-{uuid.uuid4().hex[:12]}"
    found = S3(moto, bucket)
    found.client().create_bucket(Bucket=bucket)
    yield found
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "relay":
        _relay(int(sys.argv[2]), int(sys.argv[3]))
    else:
        sys.exit("usage: s3_server.py relay LISTEN_PORT TARGET_PORT")
