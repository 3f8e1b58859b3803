"""Where datasets are written and recordings read: local paths or fsspec URLs.

:func:`storage_for` gives the :class:`~toile.storage.base.Storage` of an output
(a directory, or a URL such as ``s3://bucket/prefix/dataset``). On the input
side, :func:`open_input` opens one file of a recording for random access with
range requests and a block cache, and :func:`expand_url` turns a URL glob
(``s3://bucket/raw/**/*.ome.tif``) into the URLs it matches.

Only the standard credentials and endpoints are used (see
:mod:`toile.storage.fsspec`); the S3 filesystem comes with the ``toile[s3]`` extra.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

from toile.errors import InputError, OutputError, ToileError
from toile.storage.base import Committed, ShardSink, Storage
from toile.storage.local import LocalStorage

__all__ = [
    "Committed",
    "LocalStorage",
    "ShardSink",
    "Storage",
    "expand_url",
    "is_url",
    "open_input",
    "storage_for",
    "INPUT_BLOCK_SIZE",
]

#: ``scheme://...``; one letter before ``:`` is a Windows drive, not a scheme.
_URL = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]+)://")
_GLOB_MAGIC = re.compile(r"[*?[]")

#: Block size of the cache an input file is read through: one range request per block.
#: Object stores answer in tens of milliseconds whatever the size, so blocks are large:
#: a 900-frame 118 MB OME-TIFF costs 16 GET requests at 8 MiB against 114 at 1 MiB
#: (benchmarks/s3_case.py); a TIFF with one IFD beside each frame is read twice (its
#: IFDs are walked when it is opened, its planes later), 31 requests.
INPUT_BLOCK_SIZE = 8 * 1024 * 1024
#: Blocks kept per open input file: memory is bounded by INPUT_BLOCK_SIZE times this.
INPUT_CACHE_BLOCKS = 4

#: The extra that installs each URL scheme's filesystem.
_EXTRAS = {"s3": "s3", "s3a": "s3"}


def is_url(location: str | Path) -> bool:
    """Whether ``location`` is a URL (``s3://...``, ``memory://...``) rather than a path.

    ``file://`` URLs count as URLs too; they are read through fsspec's local filesystem.
    """
    return isinstance(location, str) and _URL.match(location) is not None


def scheme_of(url: str) -> str:
    match = _URL.match(url)
    return match.group("scheme").lower() if match else ""


def _require_filesystem(url: str, kind: type[ToileError]) -> None:
    """A one-line error naming the extra when the scheme's filesystem is not installed."""
    scheme = scheme_of(url)
    try:
        from fsspec.registry import get_filesystem_class
    except ImportError:
        raise _missing(url, scheme, kind) from None
    try:
        get_filesystem_class(scheme)
    except ImportError:
        raise _missing(url, scheme, kind) from None
    except ValueError:
        raise _error(kind, url, f"unknown URL scheme {scheme!r}") from None


def _missing(url: str, scheme: str, kind: type[ToileError]) -> ToileError:
    extra = _EXTRAS.get(scheme)
    hint = (
        f"install toile[{extra}] (pip install 'toile[{extra}]')"
        if extra
        else f"install the fsspec filesystem package for {scheme}://"
    )
    return _error(kind, url, f"no filesystem for {scheme}:// URLs is installed; {hint}")


def _error(kind: type[ToileError], url: str, problem: str) -> ToileError:
    from toile.storage.fsspec import redact

    if kind is InputError:
        return InputError(redact(url), problem)
    return kind(f"{redact(url)}: {problem}")


def storage_for(
    location: str | Path,
    storage_options: Mapping[str, Any] | None = None,
    *,
    fsync: bool = True,
) -> Storage:
    """The storage of a local directory or of a URL prefix (any fsspec filesystem)."""
    if not is_url(location):
        return LocalStorage(Path(location), fsync=fsync)
    url = str(location).rstrip("/")
    _require_filesystem(url, OutputError)
    from toile.storage.fsspec import FsspecStorage

    return FsspecStorage(url, storage_options)


def _filesystem(url: str, storage_options: Mapping[str, Any] | None) -> tuple[Any, str]:
    import fsspec

    from toile.storage.fsspec import describe_error, redact

    _require_filesystem(url, InputError)
    try:
        return fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    except Exception as error:
        raise InputError(
            redact(url, storage_options), redact(describe_error(error), storage_options)
        ) from None


def open_input(
    url: str,
    storage_options: Mapping[str, Any] | None = None,
    *,
    block_size: int = INPUT_BLOCK_SIZE,
) -> BinaryIO:
    """One input file opened for random access: range requests through a block cache.

    Nothing is downloaded up front; memory is bounded by the cache
    (:data:`INPUT_BLOCK_SIZE` x :data:`INPUT_CACHE_BLOCKS`). A missing object gives
    :class:`InputError` naming it.
    """
    from toile.storage.fsspec import describe_error, redact

    fs, path = _filesystem(url, storage_options)
    try:
        return InputFile(
            fs.open(
                path,
                "rb",
                block_size=block_size,
                cache_type="blockcache",
                cache_options={"maxblocks": INPUT_CACHE_BLOCKS},
            ),
            redact(url, storage_options),
        )
    except FileNotFoundError:
        raise InputError(redact(url, storage_options), "does not exist") from None
    except Exception as error:
        raise InputError(
            redact(url, storage_options), redact(f"cannot read: {describe_error(error)}")
        ) from None


class InputFile(io.RawIOBase):
    """A remote input file: reads and seeks whose failures name the URL in one line.

    An object deleted or replaced after it was opened (between planning and
    reading) gives :class:`InputError`, not a storage library's traceback.
    """

    def __init__(self, file: Any, url: str) -> None:
        super().__init__()
        self._file = file
        self.name = url
        self.size = int(getattr(file, "size", 0) or 0)

    def _fail(self, error: Exception) -> InputError:
        from toile.storage.fsspec import describe_error

        if isinstance(error, FileNotFoundError):
            return InputError(self.name, "no longer exists (removed after it was opened)")
        return InputError(self.name, f"cannot read: {describe_error(error)}")

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._file.read(memoryview(buffer).nbytes)
        except InputError:
            raise
        except Exception as error:
            raise self._fail(error) from None
        n = len(data)
        memoryview(buffer).cast("B")[:n] = data
        return n

    def read(self, size: int = -1) -> bytes:
        try:
            return self._file.read(size)
        except Exception as error:
            raise self._fail(error) from None

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        try:
            self._file.close()
        finally:
            super().close()


def expand_url(
    pattern: str, storage_options: Mapping[str, Any] | None = None
) -> list[tuple[str, int]]:
    """``(url, size)`` of every object a URL or URL glob names (``**`` for any depth), sorted.

    A URL without glob characters that names a directory (prefix) gives every object
    below it. Raises :class:`InputError` when nothing matches.
    """
    from toile.storage.fsspec import describe_error, redact

    fs, path = _filesystem(pattern, storage_options)
    try:
        if _GLOB_MAGIC.search(path):
            found = fs.glob(path, detail=True)
        else:
            fs.invalidate_cache(path)
            info = fs.info(path)
            found = fs.find(path, detail=True) if info.get("type") == "directory" else {path: info}
    except FileNotFoundError:
        raise InputError(redact(pattern, storage_options), "does not exist") from None
    except Exception as error:
        raise InputError(
            redact(pattern, storage_options), redact(f"cannot list: {describe_error(error)}")
        ) from None
    matches = sorted(
        (fs.unstrip_protocol(name), int(info.get("size") or 0))
        for name, info in found.items()
        if info.get("type") == "file"
    )
    if not matches:
        raise InputError(redact(pattern, storage_options), "matches no object")
    return matches
