"""Register a dataset in an atdata ``Index`` (SQLite), so ``atdata.load_dataset`` finds it.

The entry points at the shards where they are (the manifest's brace pattern), names
the ``toile.schema.Frame`` schema and carries the manifest's summary, the shards'
digests and toile's fingerprint as metadata. Each distinct content of a name is one
version (a label ``NAME@N``); publishing the same content again changes nothing.

``Index.insert_dataset`` derives an entry's CID from its schema and URLs alone, so a
dataset changed in place would get its earlier version's CID and overwrite that entry.
Here the CID also covers the shards' SHA-256, through atdata's own ``generate_cid``,
and the entry and its label are stored through the index's provider. (``insert_dataset``
would also fail on Frame's ``dict`` field, for which atdata builds no schema; the schema
stored here is the same JSON Schema record toile publishes on a PDS.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from toile.publish.common import (
    FRAME_SCHEMA_VERSION,
    Publication,
    PublishError,
    check_shards,
    fingerprint,
    frame_schema_record,
    load_publishable,
    next_version,
    record_publication,
    refuse_damaged,
    summary,
)

#: Metadata key holding toile's fingerprint of the published content.
FINGERPRINT_KEY = "toile_fingerprint"


@dataclass
class IndexPublishResult:
    """What ``publish_index`` did (or, with ``dry_run``, would do)."""

    manifest: Path
    index_path: Path
    name: str
    version: str
    cid: str
    data_url: str
    created: bool
    dry_run: bool = False

    @property
    def ref(self) -> str:
        """The reference ``atdata.load_dataset`` takes: ``@local/NAME@VERSION``."""
        return f"@local/{self.name}@{self.version}"

    def summary(self) -> str:
        if self.dry_run:
            verb = "would register" if self.created else "is already registered as"
        else:
            verb = "registered" if self.created else "already registered as"
        return f"{verb} {self.ref} (entry {self.cid}) in {self.index_path}"


def default_index_path() -> Path:
    """atdata's default SQLite index, ``~/.atdata/index.db``."""
    return Path.home() / ".atdata" / "index.db"


def publish_index(
    dataset: str | Path,
    index_path: str | Path | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    dry_run: bool = False,
) -> IndexPublishResult:
    """Register a verified ``--format atdata`` dataset in an atdata SQLite index.

    ``index_path`` defaults to atdata's own default index. ``name`` defaults to the
    dataset's stem. Load it back with
    ``atdata.load_dataset("@local/NAME", toile.schema.Frame, split="train", index=index)``.
    """
    import atdata
    from atdata._cid import generate_cid
    from atdata.local import LocalDatasetEntry

    from toile.schema import Frame

    manifest = load_publishable(dataset)
    refuse_damaged(manifest, check_shards(manifest))
    name = name or manifest.stem
    path = Path(index_path).expanduser() if index_path else default_index_path()
    if path.is_dir():
        raise PublishError(f"{path}: is a directory; --index takes the SQLite file to use")
    fp = fingerprint(manifest)
    try:
        index = atdata.Index(provider="sqlite", path=str(path), atmosphere=None)
    except Exception as error:  # sqlite3 or OS errors opening the database
        raise PublishError(f"{path}: cannot open the atdata index: {error}") from error
    provider = index.provider

    labels = [(cid, version or "") for n, cid, version in provider.iter_labels() if n == name]
    for cid, version in labels:
        try:
            entry = provider.get_entry_by_cid(cid)
        except KeyError:
            continue
        if (entry.metadata or {}).get(FINGERPRINT_KEY) == fp:
            result = IndexPublishResult(
                manifest.path, path, name, version, cid, manifest.url, False, dry_run
            )
            if not dry_run:
                _record(manifest, result, fp)
            return result

    version = next_version([v for _, v in labels])
    schema_ref = f"atdata://local/schema/{Frame.__name__}@{FRAME_SCHEMA_VERSION}"
    if not dry_run and provider.get_schema_json(Frame.__name__, FRAME_SCHEMA_VERSION) is None:
        schema = json.dumps(frame_schema_record())
        provider.store_schema(Frame.__name__, FRAME_SCHEMA_VERSION, schema)
    shards = [
        {"name": s.name, "size": s.size, "sha256": s.sha256, "samples": s.samples}
        for s in manifest.shards
    ]
    data_urls = [manifest.url]
    cid = generate_cid(
        {
            "schema_ref": schema_ref,
            "data_urls": data_urls,
            "shards": [s.sha256 for s in manifest.shards],
        }
    )
    result = IndexPublishResult(
        manifest.path, path, name, version, cid, manifest.url, True, dry_run
    )
    if dry_run:
        return result
    metadata = {
        **summary(manifest),
        "version": version,
        "description": description or "",
        "manifest": str(manifest.path),
        "shard_checksums": shards,
        FINGERPRINT_KEY: fp,
    }
    entry = LocalDatasetEntry(
        name=name, schema_ref=schema_ref, data_urls=data_urls, metadata=metadata, _cid=cid
    )
    provider.store_entry(entry)
    provider.store_label(name=name, cid=cid, version=version, description=description)
    _record(manifest, result, fp)
    return result


def _record(manifest, result: IndexPublishResult, fp: str) -> None:
    record_publication(
        manifest,
        Publication(
            kind="index",
            target=str(result.index_path),
            name=result.name,
            version=result.version,
            uri=result.ref,
            fingerprint=fp,
        ),
    )
