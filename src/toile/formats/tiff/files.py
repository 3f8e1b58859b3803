"""Opening TIFF files: every read of a TIFF by toile starts at :func:`open_binary`.

:func:`open_binary` is the one place a path becomes a binary stream, so that a
URL-capable opener can take its place; :func:`open_tiff` opens a ``tifffile.TiffFile``
on that stream, turning every failure into an :class:`~toile.errors.InputError` naming
the file, and rejects files cut short, which tifffile only logs.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import tifffile

from toile.errors import InputError
from toile.formats.tiff.ifd import TYPE_SIZES, IfdReader


class _TifffileCapture(logging.Filter):
    """Takes tifffile's log records while a thread is inside :func:`tifffile_messages`."""

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        messages = getattr(self.local, "messages", None)
        if messages is None:
            return True
        messages.append(_TIFFFILE_PREFIX.sub("", record.getMessage()).strip())
        return False


_TIFFFILE_PREFIX = re.compile(r"^<tifffile\.\w+ '[^']*'>\s*(?:\w+: )?")
_CAPTURE = _TifffileCapture()
logging.getLogger("tifffile").addFilter(_CAPTURE)


@contextmanager
def tifffile_messages() -> Iterator[list[str]]:
    """The messages tifffile logs in this block (on this thread), kept from the log:
    tifffile reports what it tolerates in a damaged file in its own words; the format
    says once, as a warning naming the file, what toile did about it."""
    outer = getattr(_CAPTURE.local, "messages", None)
    if outer is not None:
        yield outer
        return
    messages: list[str] = []
    _CAPTURE.local.messages = messages
    try:
        yield messages
    finally:
        _CAPTURE.local.messages = None


#: What a corrupt file can make tifffile (and numpy under it) raise while a recording opens.
TIFF_ERRORS: tuple[type[BaseException], ...] = (
    tifffile.TiffFileError,
    OSError,
    ValueError,
    KeyError,
    IndexError,
    RuntimeError,
    TypeError,
    ZeroDivisionError,
    OverflowError,
    MemoryError,
)


@contextmanager
def closed_on_error(resource: Any, path: Path) -> Iterator[None]:
    """Close ``resource`` if the block fails; a tifffile failure becomes an InputError
    naming ``path`` (a corrupt file can make tifffile fail in many ways)."""
    try:
        yield
    except InputError:
        resource.close()
        raise
    except TIFF_ERRORS as exc:
        resource.close()
        raise InputError(path, f"cannot read TIFF ({exc})") from exc
    except BaseException:
        resource.close()
        raise


def input_path(path: str | Path | Any) -> Any:
    """``path`` as a :class:`~pathlib.Path`; a URL input's path-like object
    (:class:`toile.storage.paths.StoragePath`, from ``toile.storage.inputs``) as it is."""
    return Path(path) if isinstance(path, str | os.PathLike) else path


def open_binary(path: Path) -> BinaryIO:
    """``path`` open for binary reading (raises OSError like ``open``, and for anything
    but a regular file: opening a named pipe would wait for a writer). A URL input is
    read through range requests and a block cache (:mod:`toile.storage.inputs`)."""
    if not isinstance(path, str | os.PathLike):
        from toile.storage.inputs import open_binary as open_remote

        return open_remote(path)
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    return open(path, "rb")  # noqa: SIM115 - the caller closes it


def file_size(fh: BinaryIO) -> int:
    """Size in bytes of the stream ``fh``."""
    try:
        return os.fstat(fh.fileno()).st_size
    except (AttributeError, OSError, ValueError):
        position = fh.tell()
        size = fh.seek(0, os.SEEK_END)
        fh.seek(position)
        return size


class OpenTiff(tifffile.TiffFile):
    """A ``tifffile.TiffFile`` that owns (and closes) the stream it reads."""

    def __init__(self, path: Path) -> None:
        self._stream = open_binary(path)
        try:
            super().__init__(self._stream, name=input_path(path).name)
        except BaseException:
            self._stream.close()
            raise

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._stream.close()


def _check_file(path: Path) -> None:
    """Raise unless ``path`` is a regular file with some bytes in it."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except OSError as exc:
        raise InputError(path, f"cannot read file: {exc.strerror or exc}") from exc
    if not path.is_file():
        raise InputError(path, "not a regular file")
    if size == 0:
        raise InputError(path, "empty file (0 bytes)")


def clean_ifd_count(reader: IfdReader, size: int) -> int | None:
    """Number of IFDs of the TIFF read by ``reader`` (a file of ``size`` bytes) when it
    passes, read directly, every check :func:`open_tiff` makes; None when it does not
    or cannot be read this way (open it with :func:`open_tiff`, which reports why).

    This is how a file is checked without ``tifffile.TiffFile``, which reads and decodes
    the whole first ImageDescription (an OME-XML of megabytes) and keeps it while open.
    """
    try:
        count = reader.count(size)
        if not count:
            return None
        entries = reader.entries(reader.offset(0) or 0)
        if entries is None or not _values_inside(reader, entries, size):
            return None
        last = reader.offset(count - 1)
        if last is None or reader.entries(last) is None:
            return None
    except (OSError, struct.error):
        return None
    return count


def checked_ifd_count(path: Path) -> int:
    """Number of IFDs of TIFF ``path``, after the checks :func:`open_tiff` makes (its
    errors, naming the file), read directly when the file allows (see
    :func:`clean_ifd_count`), else through :func:`open_tiff`."""
    path = input_path(path)
    _check_file(path)
    try:
        with open_binary(path) as fh:
            reader = IfdReader.open(fh)
            count = None if reader is None else clean_ifd_count(reader, file_size(fh))
    except (OSError, struct.error):
        count = None
    if count is not None:
        return count
    with open_tiff(path) as tif:
        return len(tif.pages)


def _values_inside(reader: IfdReader, entries: dict, size: int) -> bool:
    """Whether every tag value of an IFD (``entries``) lies inside the file."""
    for kind, n, field in entries.values():
        item = TYPE_SIZES.get(kind)
        if item is None:
            continue
        nbytes = n * item
        if nbytes > len(field):
            offset = int.from_bytes(field, "little" if reader.byteorder == "<" else "big")
            if offset + nbytes > size:
                return False
    return True


def open_tiff(path: Path, check: bool = True) -> tifffile.TiffFile:
    """Open a TIFF file, turning every failure into an InputError naming it.

    With ``check``, a file whose first image or chain of images is cut short is an error.
    """
    path = input_path(path)
    _check_file(path)
    try:
        tif = OpenTiff(path)
    except PermissionError:
        raise InputError(path, "cannot be read (permission denied)") from None
    except tifffile.TiffFileError as exc:
        if "not a TIFF file" in str(exc):
            raise InputError(path, "not a TIFF file") from exc
        raise InputError(path, f"corrupt or truncated TIFF ({exc})") from exc
    except Exception as exc:
        raise InputError(path, f"corrupt or truncated TIFF ({exc})") from exc
    try:
        if len(tif.pages) == 0:
            raise InputError(path, "TIFF file holds no image")
        if check:
            check_structure(tif, path)
    except BaseException:
        tif.close()
        raise
    return tif


def check_structure(tif: tifffile.TiffFile, path: Path) -> None:
    """Raise if the file was cut short: a tag value of the first image or the chain
    of images (IFDs) points past the end of the file. tifffile only logs these."""
    fh = tif.filehandle
    size = fh.size
    try:
        reader = IfdReader.open(fh)  # type: ignore[arg-type]
        if reader is None:
            raise InputError(path, "not a TIFF file")
        first = tif.pages.first.offset
        entries = reader.entries(first)
        if entries is None:
            raise InputError(path, "truncated file: an image directory is cut short")
        field_size = 8 if reader.bigtiff else 4
        for code, (kind, n, field) in entries.items():
            item = TYPE_SIZES.get(kind)
            if item is None:
                continue
            nbytes = n * item
            if nbytes > field_size:
                offset = int.from_bytes(field, "little" if reader.byteorder == "<" else "big")
                if offset + nbytes > size:
                    raise InputError(
                        path, f"truncated file: TIFF tag {code} lies past the end of the file"
                    )
        last = tif.pages[len(tif.pages) - 1].offset
        if reader.entries(last) is None:
            raise InputError(path, "truncated file: an image directory is cut short")
        following = reader.next_ifd(last)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(path, f"corrupt or truncated TIFF ({exc})") from exc
    if following != 0:
        raise InputError(
            path,
            f"truncated or corrupt file: the chain of images breaks after image {len(tif.pages)}",
        )
