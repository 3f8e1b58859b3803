"""Any fsspec filesystem: S3 (``s3fs``, the one tested and documented), GCS, Azure, memory...

Object stores have no rename and no fsync. There a shard is written directly
under its final key: s3fs uploads it as a multipart upload, which no reader
sees until it completes at :meth:`ShardSink.commit`; an aborted (or killed)
upload never appears. Other fsspec filesystems are written under a temporary
name and moved into place.

Credentials and endpoints are the standard ones, read by the filesystem
itself: for S3 ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (and
``AWS_SESSION_TOKEN``), ``AWS_PROFILE`` and the shared config files,
``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3``; plus fsspec ``storage_options``
(``key``, ``secret``, ``endpoint_url``, ``client_kwargs``, ...). Every message
built from a failure goes through :func:`redact`, so no secret is printed.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import threading
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from typing import Any, BinaryIO

from toile.errors import InputError, OutputError, ToileError
from toile.storage.base import Buffer, ShardSink, Storage

log = logging.getLogger(__name__)

#: fsspec protocols of object stores: no rename; uploads are invisible until complete.
OBJECT_STORE_PROTOCOLS = frozenset(
    {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oci", "oss", "r2"}
)

#: Multipart part size of a shard upload (s3fs's minimum is 5 MiB). Larger parts mean
#: fewer requests; each writer holds up to one part in memory.
PART_SIZE = 16 * 1024 * 1024

#: Write batches queued for the upload thread of one shard (each a few hundred KiB):
#: bounds what a writer holds besides the part being uploaded.
UPLOAD_QUEUE = 32

#: Option names whose values are secrets, in ``storage_options`` (any nesting).
_SECRET_OPTION = re.compile(r"secret|token|password|passwd|credential|session|key", re.I)
#: Environment variables whose values are secrets.
_SECRET_ENV = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
)
#: ``scheme://host:port`` at the start of an endpoint URL.
_ENDPOINT = re.compile(r"^[a-z][a-z0-9+.-]*://[^/?#]+", re.I)
#: ``scheme://user:password@host`` in a URL.
_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.I)


def _secret_values(options: Mapping[str, Any] | None) -> set[str]:
    values: set[str] = set()

    def walk(node: Any, secret: bool) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                walk(value, secret or bool(_SECRET_OPTION.search(str(key))))
        elif isinstance(node, list | tuple):
            for value in node:
                walk(value, secret)
        elif secret and isinstance(node, str) and len(node) >= 4:
            values.add(node)

    walk(options or {}, False)
    for name in _SECRET_ENV:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            values.add(value)
    return values


def redact(text: str, options: Mapping[str, Any] | None = None) -> str:
    """``text`` with credentials (from ``options``, the environment, URLs) replaced by ``***``."""
    text = _USERINFO.sub(r"\g<scheme>***@", text)
    for secret in sorted(_secret_values(options), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def describe_error(error: BaseException) -> str:
    """One line saying what went wrong talking to a storage service."""
    name = type(error).__name__
    text = " ".join(str(error).split()) or name
    if isinstance(error, PermissionError):
        return f"permission denied ({text})"
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return (
            "no credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "AWS_PROFILE, or storage_options"
        )
    kwargs = getattr(error, "kwargs", None) or {}
    endpoint = kwargs.get("endpoint_url")
    if endpoint:
        match = _ENDPOINT.match(str(endpoint))
        where = match.group(0) if match else str(endpoint)
        return f"cannot reach the storage endpoint {where} ({name})"
    if name in ("EndpointConnectionError", "ConnectionClosedError", "ConnectTimeoutError") or (
        isinstance(error, ConnectionError | TimeoutError)
        or "ClientConnector" in name
        or "ServerDisconnected" in name
    ):
        return f"cannot reach the storage endpoint ({text})"
    if isinstance(error, OSError) and error.strerror and not error.args[1:]:
        return text
    return f"{text}" if name in text else f"{name}: {text}"


class FsspecSink(ShardSink):
    """A shard being uploaded: straight to its final key, or to a temporary name."""

    def __init__(
        self,
        storage: FsspecStorage,
        name: str,
        attempt: str,
        pool: ThreadPoolExecutor | None,
    ) -> None:
        super().__init__(name, storage.url_of(name), pool)
        self._storage = storage
        self._final = storage.path_of(name)
        self._target = (
            self._final
            if storage.direct_writes
            else storage.path_of(f".{name}.{attempt or uuid.uuid4().hex[:12]}.tmp")
        )
        self._file: Any = None
        try:
            with storage.errors(self.url, "cannot create shard", OutputError):
                self._file = storage.fs.open(self._target, "wb", block_size=storage.part_size)
        except BaseException:
            self._hasher.cancel()
            self._done = True
            raise
        # Parts are uploaded on a thread of their own, so that packing and hashing the
        # next bytes overlaps the upload of the last part.
        self._queue: queue.Queue[list[Buffer] | None] = queue.Queue(UPLOAD_QUEUE)
        self._failure: BaseException | None = None
        self._pump = threading.Thread(target=self._upload, name="toile-upload", daemon=True)
        self._pump.start()

    def _upload(self) -> None:
        while (chunks := self._queue.get()) is not None:
            if self._failure is not None:
                continue  # drain: the writer sees the failure at its next write
            try:
                for chunk in chunks:
                    self._file.write(chunk)
            except BaseException as error:
                self._failure = error

    def _raise_failure(self) -> None:
        if self._failure is not None:
            with self._storage.errors(self.url, "upload failed", OutputError):
                raise self._failure

    def _write(self, chunks: list[Buffer]) -> None:
        self._raise_failure()
        self._queue.put(chunks)

    def _stop_pump(self) -> None:
        if self._pump.is_alive():
            self._queue.put(None)
            self._pump.join()

    def _commit(self) -> None:
        storage = self._storage
        self._stop_pump()
        self._raise_failure()
        with storage.errors(self.url, "upload failed", OutputError):
            file, self._file = self._file, None
            try:
                file.close()
            except BaseException:
                _discard(file)
                raise
            if self._target != self._final:
                storage.fs.mv(self._target, self._final)

    def _abort(self) -> None:
        self._failure = self._failure or OutputError("aborted")  # the pump stops writing
        self._stop_pump()
        file, self._file = self._file, None
        if file is not None and self._target == self._final:
            _discard(file)
        elif file is not None:
            with suppress(Exception):  # a temporary name: closing it publishes nothing
                file.close()
        if self._target != self._final:
            with suppress(Exception):  # best effort: the name is hidden and per attempt
                self._storage.fs.rm_file(self._target)

    def __del__(self) -> None:
        # A dropped sink must never let the file's own finaliser complete a partial upload.
        if getattr(self, "_file", None) is not None and self._target == self._final:
            _discard(self._file)


def _discard(file: Any) -> None:
    """Throw an unfinished upload away (an incomplete multipart upload is aborted)."""
    try:
        file.discard()
    except Exception:  # the endpoint may be gone; an incomplete upload is never visible
        pass
    finally:
        with suppress(AttributeError):
            file.closed = True


class FsspecStorage(Storage):
    """A prefix of an fsspec filesystem, e.g. ``s3://bucket/datasets/mouse``."""

    def __init__(
        self,
        url: str,
        storage_options: Mapping[str, Any] | None = None,
        *,
        fs: Any = None,
        path: str | None = None,
        part_size: int = PART_SIZE,
    ) -> None:
        import fsspec

        self.options = dict(storage_options or {})
        if fs is None:
            with self.errors(url, "cannot open", OutputError):
                fs, path = fsspec.core.url_to_fs(url, **self.options)
        assert path is not None
        self.fs = fs
        self.root = path.rstrip("/")
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        self.protocol = protocol
        self.direct_writes = protocol in OBJECT_STORE_PROTOCOLS
        self.part_size = part_size
        self.url = redact(fs.unstrip_protocol(self.root), self.options)

    def __repr__(self) -> str:
        return f"FsspecStorage({self.url!r})"

    @contextmanager
    def errors(
        self, where: str, action: str, kind: type[ToileError] = OutputError
    ) -> Iterator[None]:
        """Turn any failure of the filesystem into one redacted ``kind`` line."""
        try:
            yield
        except ToileError:
            raise
        except Exception as error:
            problem = redact(f"{action}: {self._explain(error)}", self.options)
            where = redact(where, self.options)
            if kind is InputError:
                raise InputError(where, problem) from None
            raise kind(f"{where}: {problem}") from None

    def _explain(self, error: BaseException) -> str:
        if isinstance(error, FileNotFoundError) and getattr(self, "direct_writes", False):
            bucket = self.root.split("/", 1)[0]
            if "bucket" in str(error).lower():
                return f"bucket {bucket!r} does not exist"
        return describe_error(error)

    def path_of(self, name: str) -> str:
        return f"{self.root}/{name}" if name else self.root

    def url_of(self, name: str) -> str:
        return self.fs.unstrip_protocol(self.path_of(name))

    def child(self, name: str) -> FsspecStorage:
        return FsspecStorage(
            self.url_of(name),
            self.options,
            fs=self.fs,
            path=self.path_of(name),
            part_size=self.part_size,
        )

    def ensure(self) -> None:
        if self.direct_writes:
            bucket = self.root.split("/", 1)[0]
            with self.errors(self.url, "cannot write", OutputError):
                try:
                    self.fs.invalidate_cache(bucket)
                    self.fs.ls(bucket, refresh=True)
                except FileNotFoundError:
                    raise OutputError(f"{self.url}: bucket {bucket!r} does not exist") from None
            return
        with self.errors(self.url, "cannot create output directory", OutputError):
            self.fs.makedirs(self.root, exist_ok=True)

    def is_dir(self) -> bool:
        with self.errors(self.url, "cannot list", InputError):
            self.fs.invalidate_cache(self.root)
            return bool(self.fs.isdir(self.root))

    def create(
        self, name: str, *, attempt: str = "", pool: ThreadPoolExecutor | None = None
    ) -> FsspecSink:
        return FsspecSink(self, name, attempt, pool)

    def list(self) -> list[str]:
        with self.errors(self.url, "cannot list", InputError):
            self.fs.invalidate_cache(self.root)
            try:
                entries = self.fs.ls(self.root, detail=True, refresh=True)
            except (FileNotFoundError, NotADirectoryError):
                return []
        names = []
        for entry in entries:
            if entry.get("type") != "file":
                continue
            name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
            if entry["name"].rstrip("/") != self.root:
                names.append(name)
        return sorted(names)

    def remove(self, name: str) -> None:
        with (
            self.errors(self.url_of(name), "cannot remove", OutputError),
            suppress(FileNotFoundError),
        ):
            self.fs.rm_file(self.path_of(name))

    def remove_all(self) -> None:
        """Best effort, like a local ``rmtree(ignore_errors=True)``: it runs while a failure
        is reported, which must not be replaced by this one; a leftover is logged."""
        try:
            with suppress(FileNotFoundError):
                self.fs.rm(self.root, recursive=True)
        except Exception as error:
            log.warning(
                "%s: not removed: %s", self.url, redact(describe_error(error), self.options)
            )
        self.fs.invalidate_cache(self.root)

    def write_text(self, name: str, text: str) -> None:
        data = text.encode("utf-8")
        with self.errors(self.url_of(name), "cannot write", OutputError):
            if self.direct_writes:  # one PUT: readers see the old object or the new one
                self.fs.pipe_file(self.path_of(name), data)
            else:
                tmp = self.path_of(f".{name}.{uuid.uuid4().hex[:12]}.tmp")
                self.fs.pipe_file(tmp, data)
                self.fs.mv(tmp, self.path_of(name))

    def append_line(self, name: str, line: str) -> None:
        """Object stores cannot append: the (small) object is read and written again whole."""
        try:
            text = self.read_text(name)
        except FileNotFoundError:
            text = ""
        self.write_text(name, text + line + "\n")

    def move_to(self, name: str, target: Storage) -> None:
        if not isinstance(target, FsspecStorage) or target.fs is not self.fs:
            raise TypeError("an object moves only within its own filesystem")
        with self.errors(target.url_of(name), "cannot move into place", OutputError):
            self.fs.mv(self.path_of(name), target.path_of(name))

    def read_text(self, name: str) -> str:
        try:
            data = self.fs.cat_file(self.path_of(name))
        except FileNotFoundError:
            raise
        except Exception as error:
            raise InputError(
                redact(self.url_of(name), self.options),
                redact(f"cannot read: {self._explain(error)}", self.options),
            ) from None
        return data.decode("utf-8")

    def open_read(self, name: str) -> BinaryIO:
        with self.errors(self.url_of(name), "cannot read", InputError):
            return self.fs.open(
                self.path_of(name), "rb", block_size=self.part_size, cache_type="readahead"
            )

    def modified_ns(self, name: str) -> int:
        try:
            return int(self.fs.modified(self.path_of(name)).timestamp() * 1e9)
        except Exception:  # not every filesystem records it (an input's fingerprint only)
            return 0

    def size(self, name: str) -> int | None:
        path = self.path_of(name)
        with self.errors(self.url_of(name), "cannot read", InputError):
            self.fs.invalidate_cache(path)
            try:
                info = self.fs.info(path)
            except FileNotFoundError:
                return None
        if info.get("type") == "directory":
            return None
        return int(info["size"])
