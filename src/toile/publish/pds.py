"""Publish a dataset on an ATProto PDS: the Frame schema record, every shard as a blob, one record.

The dataset record is atdata's ``science.alt.dataset.entry`` with blob storage, each
shard's SHA-256 from the manifest, the manifest's summary as metadata and the manifest
itself as one more blob; a ``science.alt.dataset.label`` record names its version.

Resuming: a blob that no record references is dropped by the PDS, so while shards go
up they are referenced by a staging record (collection :data:`UPLOAD_COLLECTION`, key
derived from the dataset's fingerprint) that is deleted once the dataset record exists.
A blob's CID follows from its SHA-256, which the manifest holds, so a rerun asks the
PDS which blobs it holds (the staging record, ``com.atproto.sync.listBlobs``) and
uploads only the others; a dataset already published with the same fingerprint is
found among the account's records and not published twice.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from toile import __version__
from toile.dataset import Manifest
from toile.publish.common import (
    FRAME_SCHEMA_VERSION,
    Publication,
    PublishError,
    check_shards,
    fingerprint,
    frame_schema_publisher,
    load_publishable,
    next_version,
    record_publication,
    refuse_damaged,
    summary,
)
from toile.publish.remote import TIMEOUT, ToileAtmosphere

log = logging.getLogger(__name__)

#: Collection of the staging record that keeps uploaded shards alive until the dataset
#: record references them.
UPLOAD_COLLECTION = "dev.toile.upload"
#: The schema record's ``metadata`` marker naming the Python type it describes.
SCHEMA_TYPE_KEY = "pythonType"
SCHEMA_TYPE = "toile.schema.Frame"
SHARD_MIME = "application/x-tar"
MANIFEST_MIME = "application/json"
_RAW_CID_PREFIX = bytes([0x01, 0x55, 0x12, 0x20])  # CIDv1, raw codec, sha2-256, 32 bytes


def blob_cid(sha256_hex: str) -> str:
    """The CID a PDS gives a blob with this SHA-256 (CIDv1, raw, base32)."""
    import libipld

    return libipld.encode_cid(_RAW_CID_PREFIX + bytes.fromhex(sha256_hex))


def atdata_limits() -> tuple[int, int]:
    """atdata's limits for one shard and for one dataset on a PDS, in bytes."""
    from atdata.atmosphere.store import PDS_BLOB_LIMIT_BYTES, PDS_TOTAL_DATASET_LIMIT_BYTES

    return PDS_BLOB_LIMIT_BYTES, PDS_TOTAL_DATASET_LIMIT_BYTES


@dataclass
class ShardUpload:
    """One shard (or the manifest) of a publication and what happened to it."""

    name: str
    size: int
    sha256: str
    cid: str
    mime: str
    uploaded: bool = False
    """True when this run sent it; False when the PDS already held it (or a dry run)."""
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Upload rate in MB/s (0 when nothing was sent)."""
        return self.size / self.seconds / 1e6 if self.uploaded and self.seconds > 0 else 0.0

    def blob_ref(self) -> dict[str, Any]:
        return {
            "$type": "blob",
            "ref": {"$link": self.cid},
            "mimeType": self.mime,
            "size": self.size,
        }


@dataclass
class PdsPublishResult:
    """What ``publish_pds`` did (or, with ``dry_run``, would do)."""

    manifest: Path
    pds_url: str
    name: str
    version: str | None
    uri: str | None
    shards: list[ShardUpload]
    created: bool
    dry_run: bool = False
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def uploaded_bytes(self) -> int:
        return sum(s.size for s in self.shards if s.uploaded)

    @property
    def upload_seconds(self) -> float:
        return sum(s.seconds for s in self.shards if s.uploaded)

    @property
    def rate(self) -> float:
        """Mean upload rate in MB/s over the blobs this run sent."""
        seconds = self.upload_seconds
        return self.uploaded_bytes / seconds / 1e6 if seconds > 0 else 0.0

    def summary(self) -> str:
        total = sum(s.size for s in self.shards)
        if self.dry_run:
            return (
                f"dry run: checks passed; would upload {len(self.shards)} blob(s), "
                f"{total:,} bytes, to {self.pds_url} as {self.name!r}"
            )
        if not self.created:
            return f"already published as {self.name!r} version {self.version}: {self.uri}"
        sent = sum(1 for s in self.shards if s.uploaded)
        return (
            f"published {self.name!r} version {self.version}: {self.uri} "
            f"({sent} of {len(self.shards)} blob(s) uploaded, {self.uploaded_bytes:,} bytes "
            f"at {self.rate:.1f} MB/s)"
        )


def plan_uploads(manifest: Manifest) -> list[ShardUpload]:
    """The blobs of a publication: every shard in manifest order, then the manifest."""
    uploads = [
        ShardUpload(s.name, s.size, s.sha256, blob_cid(s.sha256), SHARD_MIME)
        for s in manifest.shards
    ]
    data = manifest.path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    uploads.append(
        ShardUpload(manifest.path.name, len(data), digest, blob_cid(digest), MANIFEST_MIME)
    )
    return uploads


def check_limits(
    manifest: Manifest, uploads: list[ShardUpload], blob_limit: int | None, force: bool
) -> None:
    """Refuse, before anything is sent, a blob over the limit or a dataset over atdata's total."""
    per_blob, total_limit = atdata_limits()
    limit, whose = per_blob, "atdata's per-shard limit"
    if blob_limit is not None and blob_limit < per_blob:
        limit, whose = blob_limit, "the server's blob limit"
    too_big = [u for u in uploads if u.size > limit]
    if too_big:
        worst = max(too_big, key=lambda u: u.size)
        more = f" ({len(too_big)} shards are)" if len(too_big) > 1 else ""
        raise PublishError(
            f"{manifest.directory / worst.name}: {worst.size:,} bytes is over {whose} of "
            f"{limit:,} bytes{more}; nothing uploaded: export again with --pds "
            "(38,000,000-byte shards) or a smaller --shard-size"
        )
    total = sum(u.size for u in uploads)
    if total > total_limit and not force:
        raise PublishError(
            f"{manifest.directory}: {total:,} bytes is over atdata's limit of {total_limit:,} "
            "bytes for one dataset on a PDS; nothing uploaded: pass --force to publish anyway"
        )


def publish_pds(
    dataset: str | Path,
    pds_url: str,
    handle: str,
    password: str | None,
    *,
    name: str | None = None,
    description: str | None = None,
    dry_run: bool = False,
    blob_limit: int | None = None,
    force: bool = False,
    on_blob: Callable[[ShardUpload, int, int], None] | None = None,
) -> PdsPublishResult:
    """Publish a verified ``--format atdata`` dataset on the PDS at ``pds_url`` as ``handle``.

    ``blob_limit`` is the server's blob size limit when known (a PDS does not announce
    it); every blob is checked against it and atdata's own 50 MB limit before any
    upload. ``on_blob(upload, position, count)`` is called after each blob is sent or
    found on the server. A dry run checks everything and contacts no server.
    """
    started = time.perf_counter()
    pds_url = pds_url.rstrip("/")
    manifest = load_publishable(dataset)
    refuse_damaged(manifest, check_shards(manifest))
    name = name or manifest.stem
    uploads = plan_uploads(manifest)
    check_limits(manifest, uploads, blob_limit, force)
    if dry_run:
        return PdsPublishResult(manifest.path, pds_url, name, None, None, uploads, True, True)
    if not password:
        raise PublishError(f"{pds_url}: no password given for {handle} (set TOILE_PDS_PASSWORD)")

    session = _Session(pds_url, handle, password)
    fp = fingerprint(manifest)
    existing = session.dataset_records()
    versions = []
    for uri, value in existing:
        if value.get("name") != name:
            continue
        metadata = value.get("metadata") or {}
        versions.append(str(metadata.get("version", "")))
        if ((metadata.get("custom") or {}).get("toile") or {}).get("fingerprint") == fp:
            session.delete_staging(fp)
            result = PdsPublishResult(
                manifest.path, pds_url, name, str(metadata.get("version")), uri, uploads, False
            )
            _record(manifest, result, fp)
            result.seconds = time.perf_counter() - started
            return result

    schema_uri = session.frame_schema()
    session.upload_all(manifest, uploads, fp, on_blob)
    version = next_version(versions)
    uri = session.create_dataset_record(
        manifest, uploads, name, version, description, schema_uri, fp
    )
    session.label(name, uri, version, description)
    session.delete_staging(fp)
    result = PdsPublishResult(manifest.path, pds_url, name, version, uri, uploads, True)
    _record(manifest, result, fp)
    result.seconds = time.perf_counter() - started
    return result


def _record(manifest: Manifest, result: PdsPublishResult, fp: str) -> None:
    assert result.uri is not None and result.version is not None
    record_publication(
        manifest,
        Publication(
            kind="pds",
            target=result.pds_url,
            name=result.name,
            version=result.version,
            uri=result.uri,
            fingerprint=fp,
        ),
    )


class _Session:
    """A logged-in account on one PDS, with every failure turned into one line."""

    def __init__(self, pds_url: str, handle: str, password: str) -> None:
        from atproto_client.exceptions import AtProtocolError, UnauthorizedError

        self.url = pds_url
        self.handle = handle
        self.atmo = ToileAtmosphere(pds_url)
        self._errors = (AtProtocolError,)
        if not handle.startswith("did:"):
            self._call(
                "resolve the handle",
                lambda: self.atmo._client.com.atproto.identity.resolve_handle({"handle": handle}),
                unknown=f"unknown handle {handle!r}: the server does not know it",
            )
        try:
            self.atmo._login(handle, password)
        except UnauthorizedError as error:
            raise PublishError(
                f"{pds_url}: wrong password for {handle} (the server answered {error})"
            ) from None
        except AtProtocolError as error:
            raise self._failure("log in", error) from None
        self.did = self.atmo.did

    @property
    def repo(self) -> Any:
        return self.atmo._client.com.atproto.repo

    def _failure(self, doing: str, error: Exception) -> PublishError:
        response = getattr(error, "response", None)
        if response is None:
            cause = error.__cause__ or error
            return PublishError(f"{self.url}: server unreachable while trying to {doing} ({cause})")
        return PublishError(f"{self.url}: could not {doing}: the server answered {error}")

    def _call(self, doing: str, action: Callable[[], Any], unknown: str | None = None) -> Any:
        from atproto_client.exceptions import AtProtocolError, BadRequestError

        try:
            return action()
        except BadRequestError as error:
            if unknown is not None:
                raise PublishError(f"{self.url}: {unknown} ({error})") from None
            raise self._failure(doing, error) from None
        except AtProtocolError as error:
            raise self._failure(doing, error) from None

    def _list(self, collection: str) -> list[tuple[str, dict[str, Any]]]:
        from atdata.atmosphere.client import _value_to_dict

        found: list[tuple[str, dict[str, Any]]] = []
        cursor = None
        while True:
            params = {"repo": self.did, "collection": collection, "limit": 100, "cursor": cursor}
            page = self._call(
                f"list {collection} records", lambda p=params: self.repo.list_records(params=p)
            )
            found.extend((r.uri, _value_to_dict(r.value)) for r in page.records)
            cursor = page.cursor
            if not cursor or not page.records:
                return found

    def dataset_records(self) -> list[tuple[str, dict[str, Any]]]:
        from atdata.atmosphere import LEXICON_NAMESPACE

        return self._list(f"{LEXICON_NAMESPACE}.entry")

    def frame_schema(self) -> str:
        """The AT URI of the account's Frame schema record, published the first time."""
        from atdata.atmosphere import LEXICON_NAMESPACE

        for uri, value in self._list(f"{LEXICON_NAMESPACE}.schema"):
            marker = (value.get("metadata") or {}).get(SCHEMA_TYPE_KEY)
            if marker == SCHEMA_TYPE and value.get("version") == FRAME_SCHEMA_VERSION:
                return uri
        from toile.schema import Frame

        publisher = frame_schema_publisher(self.atmo)
        uri = self._call(
            "publish the Frame schema record",
            lambda: publisher.publish(
                Frame,
                version=FRAME_SCHEMA_VERSION,
                description=(Frame.__doc__ or "").strip(),
                metadata={SCHEMA_TYPE_KEY: SCHEMA_TYPE},
            ),
        )
        return str(uri)

    def _staging_rkey(self, fp: str) -> str:
        return fp[:32]

    def staging_blobs(self, fp: str) -> set[str]:
        from atproto_client.exceptions import BadRequestError

        try:
            record = self.repo.get_record(
                params={
                    "repo": self.did,
                    "collection": UPLOAD_COLLECTION,
                    "rkey": self._staging_rkey(fp),
                }
            )
        except BadRequestError:
            return set()
        except self._errors as error:
            raise self._failure("read the upload record", error) from None
        from atdata.atmosphere.client import _value_to_dict

        value = _value_to_dict(record.value)
        return {b["ref"]["$link"] for b in value.get("blobs", []) if isinstance(b, dict)}

    def held_blobs(self) -> set[str]:
        """CIDs of the blobs the account's records already reference."""
        sync = self.atmo._client.com.atproto.sync
        cids: set[str] = set()
        cursor = None
        while True:
            params = {"did": self.did, "limit": 1000, "cursor": cursor}
            page = self._call(
                "list the account's blobs", lambda p=params: sync.list_blobs(params=p)
            )
            cids.update(page.cids)
            cursor = page.cursor
            if not cursor or not page.cids:
                return cids

    def upload_all(
        self,
        manifest: Manifest,
        uploads: list[ShardUpload],
        fp: str,
        on_blob: Callable[[ShardUpload, int, int], None] | None,
    ) -> None:
        """Send every blob the PDS does not hold, the largest first (so a 413 comes first)."""
        held = self.staging_blobs(fp) | self.held_blobs()
        staged = [u for u in uploads if u.cid in held]
        largest = max(range(len(uploads)), key=lambda i: uploads[i].size)
        order = [largest] + [i for i in range(len(uploads)) if i != largest]
        for position, i in enumerate(order, start=1):
            upload = uploads[i]
            if upload.cid not in held:
                self._upload(manifest, upload, uploads)
                staged.append(upload)
                held.add(upload.cid)
                self._stage(fp, staged)
            else:
                log.info("%s: already on %s", upload.name, self.url)
            if on_blob is not None:
                on_blob(upload, position, len(uploads))

    def _upload(self, manifest: Manifest, upload: ShardUpload, uploads: list[ShardUpload]) -> None:
        from atproto_client.exceptions import AtProtocolError

        path = manifest.directory / upload.name
        try:
            data = path.read_bytes()
        except OSError as error:
            raise PublishError(f"{path}: cannot read: {error.strerror}") from None
        if len(data) != upload.size or hashlib.sha256(data).hexdigest() != upload.sha256:
            raise PublishError(f"{path}: changed since it was verified; run toile verify")
        timeout = max(60.0, TIMEOUT + len(data) / 1e6)
        started = time.perf_counter()
        try:
            # The atproto client would encode a body sent as plain "application/json" as a
            # model; with a parameter it sends the bytes (the PDS stores the bare type).
            content_type = (
                f"{upload.mime}; charset=utf-8" if upload.mime == MANIFEST_MIME else upload.mime
            )
            response = self.repo.upload_blob(
                data, headers={"Content-Type": content_type}, timeout=timeout
            )
        except AtProtocolError as error:
            raise self._upload_failure(path, upload, uploads, error) from None
        upload.seconds = time.perf_counter() - started
        upload.uploaded = True
        cid = (
            response.blob.ref.link if hasattr(response.blob.ref, "link") else str(response.blob.ref)
        )
        if cid != upload.cid:
            raise PublishError(
                f"{self.url}: stored {upload.name} under CID {cid}, expected {upload.cid}"
            )
        log.info(
            "%s: %s bytes uploaded in %.2f s (%.1f MB/s)",
            upload.name,
            f"{upload.size:,}",
            upload.seconds,
            upload.rate,
        )

    def _upload_failure(
        self, path: Path, upload: ShardUpload, uploads: list[ShardUpload], error: Exception
    ) -> PublishError:
        response = getattr(error, "response", None)
        held = sum(1 for u in uploads if u.uploaded)
        if response is not None and response.status_code == 413:
            return PublishError(
                f"{self.url}: refused {path.name} ({upload.size:,} bytes) as too large (HTTP 413): "
                "the server's blob limit is lower; export again with a smaller --shard-size, "
                "or raise the server's PDS_BLOB_UPLOAD_LIMIT"
            )
        if response is None:
            return PublishError(
                f"{self.url}: server stopped answering while uploading {path.name} "
                f"({held} blob(s) sent before it were kept); run the same command again to resume"
            )
        return PublishError(f"{self.url}: refused {path.name}: the server answered {error}")

    def _stage(self, fp: str, staged: list[ShardUpload]) -> None:
        record = {
            "$type": UPLOAD_COLLECTION,
            "fingerprint": fp,
            "blobs": [u.blob_ref() for u in staged],
            "createdAt": datetime.now(UTC).isoformat(),
        }
        data = {
            "repo": self.did,
            "collection": UPLOAD_COLLECTION,
            "rkey": self._staging_rkey(fp),
            "record": record,
            "validate": False,
        }
        self._call("record the uploaded blobs", lambda: self.repo.put_record(data=data))

    def delete_staging(self, fp: str) -> None:
        from atproto_client.exceptions import AtProtocolError

        data = {"repo": self.did, "collection": UPLOAD_COLLECTION, "rkey": self._staging_rkey(fp)}
        try:
            self.repo.delete_record(data=data)
        except AtProtocolError as error:
            log.warning("%s: could not delete the upload record: %s", self.url, error)

    def create_dataset_record(
        self,
        manifest: Manifest,
        uploads: list[ShardUpload],
        name: str,
        version: str,
        description: str | None,
        schema_uri: str,
        fp: str,
    ) -> str:
        from atdata.atmosphere import (
            LEXICON_NAMESPACE,
            BlobEntry,
            DatasetMetadata,
            DatasetSize,
            LexDatasetEntry,
            ShardChecksum,
            StorageBlobs,
        )

        shards, manifest_blob = uploads[:-1], uploads[-1]
        about = summary(manifest)
        entry = LexDatasetEntry(
            name=name,
            schema_ref=schema_uri,
            storage=StorageBlobs(
                blobs=[
                    BlobEntry(blob=u.blob_ref(), checksum=ShardChecksum("sha256", u.sha256))
                    for u in shards
                ]
            ),
            description=description,
            metadata=DatasetMetadata(
                created_by=f"toile {__version__}",
                version=version,
                custom={"toile": {"fingerprint": fp, **about}},
            ),
            size=DatasetSize(samples=about["samples"], bytes_=about["bytes"], shards=len(shards)),
            content_metadata={
                "toile": {
                    "manifest": manifest_blob.blob_ref(),
                    "manifestSha256": manifest_blob.sha256,
                    "shardNames": [u.name for u in shards],
                }
            },
        )
        from atproto_client.exceptions import AtProtocolError

        try:
            uri = self.atmo.create_record(
                collection=f"{LEXICON_NAMESPACE}.entry", record=entry.to_record(), validate=False
            )
        except AtProtocolError as error:
            if getattr(error, "response", None) is None:
                raise self._failure("create the dataset record", error) from None
            raise PublishError(
                f"{self.url}: the server rejected the dataset record: {error}"
            ) from None
        return str(uri)

    def label(self, name: str, uri: str, version: str, description: str | None) -> None:
        from atdata.atmosphere import LabelPublisher

        publisher = LabelPublisher(self.atmo)
        self._call(
            "create the label record",
            lambda: publisher.publish(name, uri, version=version, description=description),
        )
