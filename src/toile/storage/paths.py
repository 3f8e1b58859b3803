"""A ``pathlib``-like view of a storage location, so the read side treats URLs as paths.

:func:`as_path` gives a :class:`pathlib.Path` for a local path and a
:class:`StoragePath` for a URL (``s3://bucket/prefix/dataset``). A StoragePath
has the few methods the dataset reader uses (``name``, ``parent``, ``/``,
``exists``, ``is_file``, ``is_dir``, ``iterdir``, ``glob``, ``stat``,
``read_text``, ``open``), each one request or so through the storage seam, and
its ``str()`` is the full URL (which stock webdataset opens once
:func:`register_webdataset_opener` has run).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from toile.storage import is_url, scheme_of, storage_for
from toile.storage.base import Storage


@dataclass(frozen=True)
class StatResult:
    st_size: int
    #: Last modification, in ns since the epoch (0 when the store does not say).
    st_mtime_ns: int = 0


class StoragePath:
    """``relative`` (``a/b`` or ``""`` for the root) below a :class:`Storage` root."""

    def __init__(self, storage: Storage, relative: str = "") -> None:
        self.storage = storage
        self.relative = relative.strip("/")

    @classmethod
    def from_url(cls, url: str, storage_options: Mapping[str, Any] | None = None) -> StoragePath:
        """The entry ``url`` names, seen from the storage of its parent (one listing away)."""
        url = url.rstrip("/")
        base, _, name = url.rpartition("/")
        if base.endswith(":/") or not name:  # a bucket (or filesystem) root
            return cls(storage_for(url, storage_options))
        return cls(storage_for(base, storage_options), name)

    def _split(self) -> tuple[Storage, str]:
        """The storage of the parent directory and this entry's name in it."""
        directory, _, name = self.relative.rpartition("/")
        return (self.storage.child(directory) if directory else self.storage), name

    def __str__(self) -> str:
        return self.storage.url_of(self.relative) if self.relative else self.storage.url

    def __repr__(self) -> str:
        return f"StoragePath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StoragePath) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    # Ordered by URL, also against local paths (a discovery mixing both sorts them).
    def __lt__(self, other: object) -> bool:
        return str(self) < str(other)

    def __gt__(self, other: object) -> bool:
        return str(self) > str(other)

    def __le__(self, other: object) -> bool:
        return str(self) <= str(other)

    def __ge__(self, other: object) -> bool:
        return str(self) >= str(other)

    def __truediv__(self, name: str) -> StoragePath:
        joined = f"{self.relative}/{name}" if self.relative else str(name)
        return StoragePath(self.storage, joined)

    @property
    def name(self) -> str:
        if self.relative:
            return self.relative.rpartition("/")[2]
        return str(self).rstrip("/").rpartition("/")[2]

    @property
    def parent(self) -> StoragePath:
        if self.relative:
            return StoragePath(self.storage, self.relative.rpartition("/")[0])
        return self

    @property
    def suffixes(self) -> list[str]:
        name = self.name
        return ["." + part for part in name.lstrip(".").split(".")[1:]]

    @property
    def suffix(self) -> str:
        suffixes = self.suffixes
        return suffixes[-1] if suffixes else ""

    @property
    def stem(self) -> str:
        return self.name[: len(self.name) - len(self.suffix)] if self.suffix else self.name

    def with_name(self, name: str) -> StoragePath:
        return self.parent / name

    def absolute(self) -> StoragePath:
        return self

    def _directory(self) -> Storage:
        return self.storage.child(self.relative) if self.relative else self.storage

    def is_file(self) -> bool:
        if not self.relative:
            return False
        directory, name = self._split()
        return directory.exists(name)

    def is_dir(self) -> bool:
        return self._directory().is_dir()

    def exists(self) -> bool:
        return self.is_file() or self.is_dir()

    def stat(self) -> StatResult:
        directory, name = self._split()
        size = directory.size(name)
        if size is None:
            raise FileNotFoundError(str(self))
        return StatResult(size, directory.modified_ns(name))

    def iterdir(self) -> Iterator[StoragePath]:
        """The files directly below this directory (object stores have no real directories)."""
        for name in self._directory().list():
            yield self / name

    def glob(self, pattern: str) -> Iterator[StoragePath]:
        for path in self.iterdir():
            if fnmatch.fnmatchcase(path.name, pattern):
                yield path

    def read_text(self, encoding: str = "utf-8") -> str:
        directory, name = self._split()
        return directory.read_text(name)

    def open(self, mode: str = "rb") -> BinaryIO:
        if mode != "rb":
            raise ValueError(f"{self}: only mode 'rb' is supported, not {mode!r}")
        directory, name = self._split()
        return directory.open_read(name)


def as_path(location: str | Path) -> Path | StoragePath:
    """A local path as :class:`~pathlib.Path`; a URL as :class:`StoragePath`."""
    if isinstance(location, StoragePath):
        return location
    if is_url(location):
        return StoragePath.from_url(str(location))
    return Path(location)


def open_location(location: str | Path | StoragePath) -> BinaryIO:
    """A local file or a URL opened for streaming reads."""
    if isinstance(location, StoragePath):
        return location.open("rb")
    if is_url(location):
        base, _, name = str(location).rpartition("/")
        return storage_for(base).open_read(name)
    return open(location, "rb")


def _gopen_fsspec(url: str, mode: str = "rb", bufsize: int = 8192, **kw: Any) -> BinaryIO:
    """webdataset's ``gopen`` handler for fsspec URLs (``s3://...``): a streaming reader."""
    if mode != "rb":
        raise ValueError(f"{url}: toile opens shards for reading only")
    return open_location(url)


def register_webdataset_opener(urls: list[str] | str) -> None:
    """Let stock webdataset open these URLs' schemes through fsspec (webdataset has no s3://).

    Adds an entry to ``webdataset.gopen.gopen_schemes`` (webdataset's table of URL
    handlers) for each scheme it does not handle already; local paths need none.
    """
    schemes = {scheme_of(u) for u in ([urls] if isinstance(urls, str) else urls)} - {""}
    if not schemes:
        return
    from webdataset.gopen import gopen_schemes

    for scheme in schemes:
        gopen_schemes.setdefault(scheme, _gopen_fsspec)
