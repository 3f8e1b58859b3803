"""The resume journal: which planned shards are complete, keyed by shard index.

One JSON line per completed shard after a first line holding the export's
fingerprint (inputs, options, toile version). Shards finish in any order, so a
line names its shard's index; a torn last line (a crash mid-write) is ignored.
"""

from __future__ import annotations

import json

from toile.encode import dump_json
from toile.names import JOURNAL_NAME
from toile.shards import ShardInfo
from toile.storage.base import Storage


class Journal:
    """Append-only record of completed shards in the staging directory."""

    def __init__(self, staging: Storage) -> None:
        self.staging = staging
        self.name = JOURNAL_NAME

    @property
    def path(self) -> str:
        return self.staging.url_of(self.name)

    def start(self, fingerprint: str, shards: dict[int, ShardInfo] | None = None) -> None:
        """Begin (or rewrite) the journal with ``shards`` already complete."""
        lines = [dump_json({"fingerprint": fingerprint})]
        for index, info in sorted((shards or {}).items()):
            lines.append(_line(index, info))
        self.staging.write_text(self.name, "\n".join(lines) + "\n")

    def append(self, index: int, info: ShardInfo) -> None:
        self.staging.append_line(self.name, _line(index, info))

    def read(self) -> tuple[str | None, dict[int, ShardInfo]]:
        """The fingerprint and the complete shards by index (``None, {}`` when unreadable)."""
        try:
            lines = self.staging.read_text(self.name).splitlines()
        except (OSError, UnicodeDecodeError):
            return None, {}
        fingerprint = None
        shards: dict[int, ShardInfo] = {}
        for number, line in enumerate(lines):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                break  # a torn last line from a crash
            if number == 0:
                fingerprint = record.get("fingerprint") if isinstance(record, dict) else None
                continue
            try:
                index = int(record.pop("index"))
                shards[index] = ShardInfo(**record)
            except (TypeError, KeyError, ValueError, AttributeError):
                break
        return fingerprint, shards


def _line(index: int, info: ShardInfo) -> str:
    return dump_json({"index": index, **info.to_dict()})
