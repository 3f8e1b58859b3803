"""Recordings in object storage: URL inputs as path-like objects read with range requests.

The entry points for input discovery (:mod:`toile.formats.discover`) and the TIFF
layer's file opener (:func:`toile.formats.tiff.files.open_binary`):

- :func:`split_patterns` separates URL patterns from local ones;
- :func:`url_inputs` expands URL patterns (a URL, a prefix, or a glob with ``**``)
  into :class:`~toile.storage.paths.StoragePath` objects, one per object, with one
  line naming the pattern when nothing matches;
- :func:`open_binary` opens a local path with ``open`` and a StoragePath (or URL)
  with :func:`toile.storage.open_input`: range requests through a bounded block
  cache, never a whole-file download.

A StoragePath has the ``pathlib`` attributes discovery and the formats use
(``name``, ``suffix``, ``suffixes``, ``stem``, ``parent``, ``/``, ``stat``,
``is_file``, ``exists``, ``iterdir``, ``open``); its ``str()`` is the URL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from toile.errors import InputError
from toile.storage import expand_url, is_url, open_input, storage_for
from toile.storage.paths import StoragePath

_TIFF_NAME = re.compile(r"\.tiff?$", re.IGNORECASE)


def split_patterns(patterns: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(local, urls)``: the input patterns that are paths, and those that are URLs."""
    local = [p for p in patterns if not is_url(p)]
    return local, [p for p in patterns if is_url(p)]


def url_inputs(
    patterns: Sequence[str], storage_options: Mapping[str, Any] | None = None
) -> list[StoragePath]:
    """Every object the URL patterns name, as StoragePaths, sorted and without duplicates.

    A pattern that names no TIFF object is an :class:`InputError` naming it; objects
    that are not TIFFs are kept (a format may claim a sidecar) when another TIFF matched.
    """
    found: dict[str, StoragePath] = {}
    for pattern in patterns:
        matches = expand_url(pattern, storage_options)
        if not any(_TIFF_NAME.search(url) for url, _ in matches):
            raise InputError(pattern, "matches no TIFF file")
        for url, _size in matches:
            found.setdefault(url, _storage_path(url, storage_options))
    return [found[url] for url in sorted(found)]


def _storage_path(url: str, storage_options: Mapping[str, Any] | None) -> StoragePath:
    base, _, name = url.rpartition("/")
    return StoragePath(storage_for(base, storage_options), name)


def open_binary(path: str | Path | StoragePath) -> BinaryIO:
    """A recording's file opened for reading: local with ``open``, remote with range requests."""
    if isinstance(path, StoragePath):
        options = getattr(path.storage, "options", None)
        return open_input(str(path), options)
    if is_url(path):
        return open_input(str(path))
    return open(path, "rb")  # noqa: SIM115 - the caller closes it
