"""Local files: today's guarantees, unchanged.

A shard is written under a hidden temporary name (``.{name}.tmp``, or
``.{name}.{attempt}.tmp`` for one of several concurrent attempts) with ``writev``,
its dirty pages handed to the disk every 32 MiB (``sync_file_range``) so that the
closing ``fsync`` waits only for the tail, then renamed to its final name. Small
text files are written the same way (temporary name, ``fsync``, rename), and
:meth:`LocalStorage.sync` fsyncs the directory so that renames survive a crash.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from toile.errors import OutputError
from toile.storage.base import Buffer, ShardSink, Storage

#: Buffers per writev call (Linux's IOV_MAX).
IOV_MAX = 1024

#: Start writing dirty pages to disk every this many bytes, so the fsync that
#: closes a shard waits only for the tail instead of the whole shard.
WRITEBACK_CHUNK = 32 * 1024 * 1024


def _sync_file_range() -> Callable[[int, int, int], None] | None:
    """Linux ``sync_file_range(fd, offset, n, SYNC_FILE_RANGE_WRITE)``: start writeback, no wait."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    write_flag = 2  # SYNC_FILE_RANGE_WRITE

    def start_writeback(fd: int, offset: int, length: int) -> None:
        function(fd, offset, length, write_flag)  # advisory: errors surface at fsync

    return start_writeback


_START_WRITEBACK = _sync_file_range()


def temporary_name(name: str, attempt: str = "") -> str:
    """The hidden name a file is written under before it is renamed to ``name``."""
    return f".{name}.{attempt}.tmp" if attempt else f".{name}.tmp"


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries (renames, removals); best effort."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary name, fsync it and rename it over ``path``."""
    tmp = path.with_name(temporary_name(path.name))
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{path}: cannot write: {error.strerror or error}") from error


class LocalSink(ShardSink):
    """A shard file being written under its temporary name."""

    def __init__(
        self,
        final: Path,
        tmp: Path,
        fsync: bool,
        pool: ThreadPoolExecutor | None,
    ) -> None:
        super().__init__(final.name, str(final), pool)
        self.final = final
        self.tmp = tmp
        self._fsync = fsync
        self._flushed = 0
        try:
            self._fd: int | None = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as error:
            self._hasher.cancel()
            raise OutputError(f"{tmp}: cannot create shard: {error.strerror}") from error

    def _write(self, chunks: list[Buffer]) -> None:
        assert self._fd is not None
        views = [v for v in (memoryview(c).cast("B") for c in chunks) if v.nbytes]
        size = self.size + sum(v.nbytes for v in views)
        first = 0
        try:
            while first < len(views):
                written = os.writev(self._fd, views[first : first + IOV_MAX])
                while written:  # a short write: go on from where it stopped
                    if written >= views[first].nbytes:
                        written -= views[first].nbytes
                        first += 1
                    else:
                        views[first] = views[first][written:]
                        written = 0
        except OSError as error:
            raise OutputError(f"{self.tmp}: write failed: {error.strerror}") from error
        if self._fsync and _START_WRITEBACK is not None and size - self._flushed >= WRITEBACK_CHUNK:
            _START_WRITEBACK(self._fd, self._flushed, size - self._flushed)
            self._flushed = size

    def _commit(self) -> None:
        assert self._fd is not None
        try:
            if self._fsync:
                os.fsync(self._fd)
        except OSError as error:
            raise OutputError(f"{self.tmp}: flush failed: {error.strerror}") from error
        finally:
            os.close(self._fd)
            self._fd = None
        os.replace(self.tmp, self.final)

    def _abort(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.tmp.unlink(missing_ok=True)


class LocalStorage(Storage):
    """A local directory; ``fsync=False`` skips flushing (tests and benchmarks only)."""

    direct_writes = False

    def __init__(self, root: str | Path, *, fsync: bool = True) -> None:
        self.root = Path(root)
        self.url = str(self.root)
        self.fsync = fsync

    def __repr__(self) -> str:
        return f"LocalStorage({self.url!r})"

    def child(self, name: str) -> LocalStorage:
        return LocalStorage(self.root / name, fsync=self.fsync)

    def url_of(self, name: str) -> str:
        return str(self.root.absolute() / name)

    def ensure(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OutputError(
                f"{self.root}: cannot create output directory: {error.strerror}"
            ) from error
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise OutputError(f"{self.root}: output directory is not writable")

    def is_dir(self) -> bool:
        return self.root.is_dir()

    def create(
        self, name: str, *, attempt: str = "", pool: ThreadPoolExecutor | None = None
    ) -> LocalSink:
        final = self.root / name
        return LocalSink(final, final.with_name(temporary_name(name, attempt)), self.fsync, pool)

    def list(self) -> list[str]:
        try:
            return sorted(p.name for p in self.root.iterdir() if p.is_file())
        except (FileNotFoundError, NotADirectoryError):
            return []

    def remove(self, name: str) -> None:
        (self.root / name).unlink(missing_ok=True)

    def remove_all(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def write_text(self, name: str, text: str) -> None:
        write_text_atomic(self.root / name, text)

    def append_line(self, name: str, line: str) -> None:
        path = self.root / name
        try:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")
                handle.flush()
                if self.fsync:
                    os.fsync(handle.fileno())
        except OSError as error:
            raise OutputError(f"{path}: cannot write: {error.strerror or error}") from error

    def move_to(self, name: str, target: Storage) -> None:
        if not isinstance(target, LocalStorage):
            raise TypeError("a local file moves only into a local directory")
        try:
            os.replace(self.root / name, target.root / name)
        except OSError as error:
            raise OutputError(
                f"{target.root / name}: cannot move into place: {error.strerror}"
            ) from error

    def read_text(self, name: str) -> str:
        return (self.root / name).read_text(encoding="utf-8")

    def open_read(self, name: str) -> BinaryIO:
        return open(self.root / name, "rb")

    def modified_ns(self, name: str) -> int:
        try:
            return (self.root / name).stat().st_mtime_ns
        except OSError:
            return 0

    def size(self, name: str) -> int | None:
        try:
            return (self.root / name).stat().st_size
        except (FileNotFoundError, NotADirectoryError):
            return None

    def sync(self) -> None:
        fsync_dir(self.root)
