"""The storage seam: where shards, manifests and journals are written and read.

A :class:`Storage` is rooted at one directory (a local path) or one prefix (an
object-store URL). Names passed to it are relative to that root and use ``/``.

Writing a shard goes through a :class:`ShardSink`: bytes are appended and hashed
(SHA-256, on a helper thread) in the process that writes them; :meth:`ShardSink.commit`
makes the shard visible under its final name and returns its size and digest;
:meth:`ShardSink.abort` drops it. No reader ever sees a partial shard under its
final name:

- local files: written under a hidden per-attempt temporary name, flushed with
  ``fsync``, then renamed (:mod:`toile.storage.local`);
- object stores (S3 and the like): written directly under the final key as a
  multipart upload, which stays invisible until it completes
  (:attr:`Storage.direct_writes` is True), because they have no rename;
- other fsspec filesystems (``memory://``, ...): temporary name and ``mv``.

Small text objects (a manifest, a journal entry) are written atomically with
:meth:`Storage.write_text`.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

from toile.errors import ToileError

Buffer = bytes | bytearray | memoryview


@dataclass(frozen=True)
class Committed:
    """A shard made visible under its final name: its size in bytes and SHA-256."""

    name: str
    size: int
    sha256: str


class Hasher:
    """SHA-256 computed on a helper thread (hashlib releases the GIL on large buffers).

    At most :attr:`MAX_PENDING` batches wait for their hash, which bounds the bytes
    a writer holds while it goes on writing.
    """

    MAX_PENDING = 8

    def __init__(self, pool: ThreadPoolExecutor | None = None) -> None:
        self._own_pool = pool is None
        self._pool = pool or ThreadPoolExecutor(max_workers=1, thread_name_prefix="toile-sha256")
        self._hash = hashlib.sha256()
        self._pending: deque[Future] = deque()

    def update(self, chunks: list[Buffer]) -> None:
        self._pending.append(self._pool.submit(self._update, chunks))
        while len(self._pending) > self.MAX_PENDING:
            self._pending.popleft().result()

    def _update(self, chunks: list[Buffer]) -> None:
        for chunk in chunks:
            self._hash.update(chunk)

    def hexdigest(self) -> str:
        while self._pending:
            self._pending.popleft().result()
        if self._own_pool:
            self._pool.shutdown()
        return self._hash.hexdigest()

    def cancel(self) -> None:
        """Stop hashing (the shard is dropped)."""
        for future in self._pending:
            future.cancel()
        self._pending.clear()
        if self._own_pool:
            self._pool.shutdown(wait=True, cancel_futures=True)


class ShardSink(ABC):
    """A shard being written: ``write`` batches of bytes, then ``commit`` or ``abort``.

    As a context manager it aborts when the block raises and otherwise leaves the
    decision to the caller (an unfinished sink is aborted, never committed).
    """

    def __init__(self, name: str, url: str, pool: ThreadPoolExecutor | None = None) -> None:
        self.name = name
        #: The shard's final location, for messages.
        self.url = url
        self.size = 0
        self._hasher = Hasher(pool)
        self._done = False

    def write(self, chunks: list[Buffer]) -> None:
        """Append ``chunks`` (hashed on the helper thread while they are written)."""
        self._hasher.update(chunks)
        self._write(chunks)
        self.size += sum(memoryview(c).nbytes for c in chunks)

    def commit(self) -> Committed:
        """Make the shard visible under its final name; return its size and SHA-256."""
        digest = self._hasher.hexdigest()
        self._commit()
        self._done = True
        return Committed(self.name, self.size, digest)

    def abort(self) -> None:
        """Drop the shard: nothing of it remains, under its final name or any other."""
        if self._done:
            return
        self._done = True
        self._hasher.cancel()
        self._abort()

    def __enter__(self) -> ShardSink:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if not self._done:
            self.abort()

    @abstractmethod
    def _write(self, chunks: list[Buffer]) -> None: ...

    @abstractmethod
    def _commit(self) -> None: ...

    @abstractmethod
    def _abort(self) -> None: ...


class Storage(ABC):
    """A directory or object-store prefix holding a dataset (or a staging area)."""

    #: True where a shard is written straight under its final key (object stores:
    #: a multipart upload is invisible until it completes; there is no rename).
    direct_writes: bool = False

    #: Where this storage is, for messages (never holds a secret).
    url: str

    @abstractmethod
    def child(self, name: str) -> Storage:
        """The storage rooted at ``name`` below this one (a staging directory)."""

    @abstractmethod
    def url_of(self, name: str) -> str:
        """A location of ``name`` that readers accept: a local path or a full URL."""

    @abstractmethod
    def ensure(self) -> None:
        """Make sure the root can be written (create a directory; check a bucket exists)."""

    @abstractmethod
    def is_dir(self) -> bool:
        """Whether the root exists as a directory (for an object store: any key under it)."""

    @abstractmethod
    def create(
        self, name: str, *, attempt: str = "", pool: ThreadPoolExecutor | None = None
    ) -> ShardSink:
        """Start writing shard ``name``; ``attempt`` keeps concurrent attempts' temporary names apart."""

    @abstractmethod
    def list(self) -> list[str]:
        """Names of the files (objects) directly under the root, sorted; [] if there is none."""

    @abstractmethod
    def remove(self, name: str) -> None:
        """Remove ``name``; a missing one is not an error."""

    @abstractmethod
    def remove_all(self) -> None:
        """Remove the root and everything under it (a staging area); missing is fine."""

    @abstractmethod
    def write_text(self, name: str, text: str) -> None:
        """Write a small text file atomically: readers see the old text or the new, whole."""

    @abstractmethod
    def read_text(self, name: str) -> str:
        """The text of ``name`` (UTF-8); ``FileNotFoundError`` when it is missing."""

    @abstractmethod
    def open_read(self, name: str) -> BinaryIO:
        """``name`` opened for reading in binary mode (seekable)."""

    @abstractmethod
    def size(self, name: str) -> int | None:
        """The size of ``name`` in bytes, or None when it does not exist."""

    @abstractmethod
    def append_line(self, name: str, line: str) -> None:
        """Append one line durably (object stores rewrite the small object whole)."""

    @abstractmethod
    def move_to(self, name: str, target: Storage) -> None:
        """Move ``name`` into ``target`` under the same name (a rename, or copy and delete)."""

    def modified_ns(self, name: str) -> int:
        """When ``name`` was last modified, in ns since the epoch; 0 when unknown."""
        return 0

    def exists(self, name: str) -> bool:
        return self.size(name) is not None

    def sha256(self, name: str) -> str | None:
        """SHA-256 of ``name`` read back whole, or None when it cannot be read."""
        digest = hashlib.sha256()
        try:
            with self.open_read(name) as handle:
                while chunk := handle.read(1 << 22):
                    digest.update(chunk)
        except (OSError, ToileError):
            return None
        return digest.hexdigest()

    def sync(self) -> None:
        """Make renames and removals under the root durable (a directory fsync locally)."""
        return None
