"""Where an export writes: the output storage and its staging area, local or object store.

:func:`output_storages` gives the two storages an export writes through:

- a local directory: the output, and its hidden ``.{stem}.staging`` directory, where
  shards are written and renamed into place at the commit (today's behaviour);
- an object-store prefix that holds no committed dataset of that stem (the usual
  case): a :class:`DirectStaging`, which sends every shard of the stem straight to
  its final key (a multipart upload, invisible until complete) and everything else
  (the journal, the manifest before the commit) under ``.{stem}.staging/``. Moving a
  shard "into place" at the commit is then nothing at all, and the manifest, copied
  from the staging prefix to its final key last, is the commit point;
- an object-store prefix that already holds a committed dataset of that stem
  (``--overwrite``): a plain staging prefix, so that the earlier dataset stays whole
  until the commit, where shards are copied into place server-side.

The choice depends only on whether the manifest exists, so a ``--resume`` makes it
the same way as the run it continues.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

from toile.errors import ToileError
from toile.storage import storage_for
from toile.storage.base import ShardSink, Storage

log = logging.getLogger(__name__)

_MANIFEST_SUFFIX = ".manifest.json"


def _staging_name(stem: str) -> str:
    return f".{stem}.staging"


def _is_shard_of(name: str, stem: str) -> bool:
    return re.fullmatch(rf"{re.escape(stem)}-\d{{6}}\.tar(\.gz)?", name) is not None


class DirectStaging(Storage):
    """A staging area whose shards live under their final keys (object stores).

    Shards of ``stem`` are written to, listed in and removed from the output
    prefix itself; any other name (the journal, the manifest before the commit)
    lives under ``.{stem}.staging/``. :meth:`move_to` of a shard into the output is
    a no-op that marks it placed, so that :meth:`remove_all` after a commit leaves
    it alone, while after a failure it removes the shards this export wrote.
    """

    direct_writes = True

    def __init__(self, output: Storage, stem: str) -> None:
        self.output = output
        self.stem = stem
        self.side = output.child(_staging_name(stem))
        self.url = self.side.url
        self._placed: set[str] = set()

    def __repr__(self) -> str:
        return f"DirectStaging({self.output.url!r}, {self.stem!r})"

    def _route(self, name: str) -> Storage:
        return self.output if _is_shard_of(name, self.stem) else self.side

    def child(self, name: str) -> Storage:
        return self.side.child(name)

    def url_of(self, name: str) -> str:
        return self._route(name).url_of(name)

    def ensure(self) -> None:
        self.output.ensure()

    def is_dir(self) -> bool:
        return bool(self.list())

    def create(
        self, name: str, *, attempt: str = "", pool: ThreadPoolExecutor | None = None
    ) -> ShardSink:
        return self._route(name).create(name, attempt=attempt, pool=pool)

    def _shards(self) -> list[str]:
        """Shards of the stem under the output prefix, except those a commit placed."""
        return [
            n for n in self.output.list() if _is_shard_of(n, self.stem) and n not in self._placed
        ]

    def list(self) -> list[str]:
        return sorted(self._shards() + self.side.list())

    def remove(self, name: str) -> None:
        self._route(name).remove(name)

    def remove_all(self) -> None:
        """Drop the staging prefix and every shard of the stem not placed by a commit."""
        self.side.remove_all()
        try:
            for name in self._shards():
                self.output.remove(name)
        except ToileError as error:  # best effort: a failure is being reported already
            log.warning("%s: shards not removed: %s", self.output.url, error)

    def write_text(self, name: str, text: str) -> None:
        self._route(name).write_text(name, text)

    def read_text(self, name: str) -> str:
        return self._route(name).read_text(name)

    def append_line(self, name: str, line: str) -> None:
        self._route(name).append_line(name, line)

    def open_read(self, name: str) -> BinaryIO:
        return self._route(name).open_read(name)

    def size(self, name: str) -> int | None:
        return self._route(name).size(name)

    def sha256(self, name: str) -> str | None:
        return self._route(name).sha256(name)

    def move_to(self, name: str, target: Storage) -> None:
        source = self._route(name)
        if source is self.output and target.url == self.output.url:
            self._placed.add(name)  # written under its final key already
            return
        source.move_to(name, target)


def output_storages(
    location: str | Path, stem: str, storage_options: Mapping[str, Any] | None = None
) -> tuple[Storage, Storage]:
    """``(output, staging)`` for an export of ``stem`` into ``location`` (see the module doc)."""
    output = storage_for(location, storage_options)
    if not output.direct_writes:
        return output, output.child(_staging_name(stem))
    output.ensure()  # the bucket exists and answers: one line otherwise, nothing written
    if output.exists(f"{stem}{_MANIFEST_SUFFIX}"):
        return output, output.child(_staging_name(stem))
    return output, DirectStaging(output, stem)


def existing_outputs(output: Storage, stem: str) -> list[str]:
    """Names of the shards and manifest of an earlier export with this stem in ``output``."""
    manifest = f"{stem}{_MANIFEST_SUFFIX}"
    return [n for n in output.list() if n == manifest or _is_shard_of(n, stem)]


def inspect_output(
    url: str, stem: str, storage_options: Mapping[str, Any] | None = None
) -> tuple[list[str], bool]:
    """Before an export into ``url``: the earlier dataset's names there, and whether an
    interrupted export left a journal to resume. Checks the bucket, writes nothing."""
    output = storage_for(url, storage_options)
    output.ensure()
    interrupted = output.child(_staging_name(stem)).exists("journal.jsonl")
    return existing_outputs(output, stem), interrupted
