"""Read a dataset published on an ATProto PDS: ``toile.open("at://DID/COLLECTION/RKEY")``.

The record's DID is resolved to its PDS through the PLC directory named by
``TOILE_PLC_URL`` (default ``https://plc.directory``); ``TOILE_PDS_URL`` or ``pds=``
names the PDS directly and skips resolution. Every blob is then read from that PDS:
atdata's own helpers resolve through a hard-coded ``https://plc.directory``, so
:class:`ToileAtmosphere` (an ``atdata.atmosphere.Atmosphere`` bound to one PDS) is
what both toile and ``atdata.load_dataset(..., atmosphere=...)`` use here.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atdata.atmosphere import Atmosphere

from toile.errors import InputError

if TYPE_CHECKING:
    import atdata

    from toile.dataset import ToileDataset
    from toile.samples import Frame

log = logging.getLogger(__name__)

#: Environment variable naming the PLC directory that resolves did:plc identities.
PLC_URL_ENV = "TOILE_PLC_URL"
#: Environment variable naming the PDS to read from, skipping DID resolution.
PDS_URL_ENV = "TOILE_PDS_URL"
DEFAULT_PLC_URL = "https://plc.directory"
#: Seconds to wait for a server before giving up on a request.
TIMEOUT = 30.0
_READ_SIZE = 1 << 20
#: Blobs are asked for as stored: the reference PDS otherwise gzips them on the fly, at
#: about 45 MB/s on loopback against about 900 MB/s as stored (measured here).
_RAW = {"Accept-Encoding": "identity"}


class ToileAtmosphere(Atmosphere):
    """atdata's ``Atmosphere`` bound to one PDS: records, blobs and logins all go to it.

    atdata sends reads of other accounts' records to ``https://bsky.social`` and
    resolves blob URLs through ``https://plc.directory``; a lab PDS or a test PLC
    would then be unreachable. Logging in skips the ``app.bsky`` profile lookup,
    which a PDS without an AppView answers with an error.
    """

    def __init__(self, pds_url: str) -> None:
        self.pds_url = pds_url.rstrip("/")
        super().__init__(base_url=self.pds_url)

    @classmethod
    def connect(cls, pds_url: str, handle: str, password: str) -> ToileAtmosphere:
        instance = cls(pds_url)
        instance._login(handle, password)
        return instance

    def _login(self, handle: str, password: str) -> None:
        self._client.login(handle, password, fetch_bsky_profile=False)
        session = self._client.com.atproto.server.get_session()
        self._session = {"did": session.did, "handle": session.handle}

    def _get_appview_client(self) -> Any:
        return self._client

    def _resolve_pds_endpoint(self, did: str) -> str:
        """Used by ``atdata.load_dataset`` for blob storage: always this PDS."""
        return self.pds_url

    def get_blob_url(self, did: str, cid: str) -> str:
        return f"{self.pds_url}/xrpc/com.atproto.sync.getBlob?did={did}&cid={cid}"

    def get_blob(self, did: str, cid: str) -> bytes:
        import httpx

        response = httpx.get(self.get_blob_url(did, cid), timeout=TIMEOUT)
        response.raise_for_status()
        return response.content


# --------------------------------------------------------------------------------------
# Resolution


@dataclass(frozen=True)
class AtUri:
    """``at://AUTHORITY/COLLECTION/RKEY``, the authority a DID or a handle."""

    authority: str
    collection: str
    rkey: str

    @classmethod
    def parse(cls, uri: str) -> AtUri:
        parts = uri[len("at://") :].split("/") if uri.startswith("at://") else []
        if len(parts) != 3 or not all(parts):
            raise InputError(uri, "not an AT URI of a record (at://DID/COLLECTION/RKEY)")
        return cls(*parts)

    def __str__(self) -> str:
        return f"at://{self.authority}/{self.collection}/{self.rkey}"


def plc_url() -> str:
    return (os.environ.get(PLC_URL_ENV) or DEFAULT_PLC_URL).rstrip("/")


def resolve_did(handle_or_did: str, pds: str | None = None) -> str:
    """The DID of a handle: asked of ``pds`` when given, else through DNS and HTTPS."""
    if handle_or_did.startswith("did:"):
        return handle_or_did
    import httpx

    if pds:
        url = f"{pds.rstrip('/')}/xrpc/com.atproto.identity.resolveHandle"
        try:
            response = httpx.get(url, params={"handle": handle_or_did}, timeout=TIMEOUT)
        except httpx.HTTPError as error:
            raise InputError(pds, f"server unreachable ({error})") from error
        if response.status_code == 200:
            return response.json()["did"]
        raise InputError(pds, f"unknown handle {handle_or_did!r} ({_xrpc_message(response)})")
    from atproto_identity.handle.resolver import HandleResolver

    did = HandleResolver(timeout=TIMEOUT).resolve(handle_or_did)
    if did is None:
        raise InputError(handle_or_did, "handle does not resolve to a DID (DNS and HTTPS)")
    return did


def resolve_pds_url(did: str, pds: str | None = None) -> str:
    """The PDS hosting ``did``: ``pds`` or ``TOILE_PDS_URL`` if set, else from its DID document."""
    given = pds or os.environ.get(PDS_URL_ENV)
    if given:
        return given.rstrip("/")
    from atproto_identity.did.resolver import DidResolver
    from atproto_identity.exceptions import AtProtocolError

    directory = plc_url()
    try:
        document = DidResolver(plc_url=directory, timeout=TIMEOUT).resolve(did)
    except (AtProtocolError, ValueError) as error:
        where = directory if did.startswith("did:plc:") else did
        raise InputError(where, f"cannot resolve {did}: {error.__cause__ or error}") from error
    endpoint = document.get_pds_endpoint() if document is not None else None
    if not endpoint:
        raise InputError(did, f"the DID document (from {directory}) names no PDS")
    return endpoint.rstrip("/")


def _xrpc_message(response: Any) -> str:
    try:
        body = response.json()
        return f"{response.status_code} {body.get('error')}: {body.get('message')}"
    except ValueError:
        return f"HTTP {response.status_code}"


# --------------------------------------------------------------------------------------
# A published dataset


@dataclass
class RemoteShard:
    """One shard of a published dataset: its blob and the digest the record states."""

    name: str
    size: int
    sha256: str
    cid: str
    url: str


class _HashingReader(io.RawIOBase):
    """A read-only stream over an HTTP response's chunks that hashes and counts them."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        super().__init__()
        self._chunks = chunks
        self._chunk = memoryview(b"")
        self._offset = 0
        self.sha256 = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while self._offset >= len(self._chunk):
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._chunk, self._offset = memoryview(chunk), 0
            self.sha256.update(chunk)
            self.size += len(chunk)
        n = min(len(buffer), len(self._chunk) - self._offset)
        buffer[:n] = self._chunk[self._offset : self._offset + n]
        self._offset += n
        return n

    def drain(self) -> None:
        while self.read(_READ_SIZE):
            pass


class RemoteDataset:
    """A dataset record on a PDS, its shards streamed from that PDS; see :func:`open_remote`."""

    def __init__(self, uri: AtUri, pds_url: str, record: dict[str, Any]) -> None:
        self.uri = uri
        self.did = uri.authority
        self.pds_url = pds_url
        self.record = record
        toile = (record.get("contentMetadata") or {}).get("toile") or {}
        blobs = (record.get("storage") or {}).get("blobs") or []
        names = toile.get("shardNames") or [f"shard-{i:06d}.tar" for i in range(len(blobs))]
        self.shards: list[RemoteShard] = []
        for name, entry in zip(names, blobs, strict=False):
            blob = entry.get("blob", entry)
            cid = _link(blob)
            self.shards.append(
                RemoteShard(
                    name=name,
                    size=int(blob.get("size", 0)),
                    sha256=(entry.get("checksum") or {}).get("digest", ""),
                    cid=cid,
                    url=self._blob_url(cid),
                )
            )
        self._manifest_blob = toile.get("manifest")
        self._manifest_sha256 = toile.get("manifestSha256", "")
        self._manifest: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"RemoteDataset({str(self.uri)!r}, pds={self.pds_url!r}, shards={len(self.shards)})"

    def _blob_url(self, cid: str) -> str:
        return f"{self.pds_url}/xrpc/com.atproto.sync.getBlob?did={self.did}&cid={cid}"

    @property
    def name(self) -> str:
        return self.record.get("name", "")

    @property
    def version(self) -> str | None:
        return (self.record.get("metadata") or {}).get("version")

    @property
    def manifest(self) -> dict[str, Any]:
        """The dataset's ``{stem}.manifest.json`` as published (fetched once, checked)."""
        if self._manifest is None:
            if not self._manifest_blob:
                raise InputError(str(self.uri), "the record carries no toile manifest")
            data = self._fetch(_link(self._manifest_blob))
            digest = hashlib.sha256(data).hexdigest()
            if self._manifest_sha256 and digest != self._manifest_sha256:
                raise InputError(
                    str(self.uri),
                    f"manifest blob sha256 is {digest}, the record says {self._manifest_sha256}",
                )
            self._manifest = json.loads(data)
        return self._manifest

    def __len__(self) -> int:
        """Number of samples (frames), from the record."""
        size = self.record.get("size") or {}
        if "samples" in size:
            return int(size["samples"])
        return sum(int(s.get("samples", 0)) for s in self.manifest["shards"])

    def __iter__(self) -> Iterator[Frame]:
        return self.frames()

    def frames(self) -> Iterator[Frame]:
        """Every frame in key order, each shard streamed and checked against its SHA-256.

        The frames are ``toile.samples.Frame``, as ``toile.open`` gives for a local dataset.
        """
        from toile.samples import Frame

        for shard in self.shards:
            for data in self._stream_samples(shard):
                yield Frame.from_bytes(data)

    def _stream_samples(self, shard: RemoteShard) -> Iterator[bytes]:
        import httpx

        try:
            with httpx.stream("GET", shard.url, headers=_RAW, timeout=TIMEOUT) as response:
                if response.status_code != 200:
                    raise InputError(
                        shard.url, f"shard {shard.name}: {_xrpc_message_stream(response)}"
                    )
                reader = _HashingReader(response.iter_bytes(_READ_SIZE))
                with tarfile.open(fileobj=reader, mode="r|*", bufsize=_READ_SIZE) as tar:
                    for member in tar:
                        tar.members.clear()
                        if member.isfile() and member.name.endswith(".msgpack"):
                            extracted = tar.extractfile(member)
                            if extracted is not None:
                                yield extracted.read()
                reader.drain()
        except httpx.HTTPError as error:
            raise InputError(shard.url, f"shard {shard.name}: {error}") from error
        except tarfile.TarError as error:
            raise InputError(shard.url, f"shard {shard.name}: damaged archive: {error}") from error
        _check(shard, reader.size, reader.sha256.hexdigest())

    def _fetch(self, cid: str) -> bytes:
        import httpx

        url = self._blob_url(cid)
        try:
            response = httpx.get(url, headers=_RAW, timeout=TIMEOUT)
        except httpx.HTTPError as error:
            raise InputError(url, f"cannot fetch blob: {error}") from error
        if response.status_code != 200:
            raise InputError(url, f"cannot fetch blob: {_xrpc_message(response)}")
        return response.content

    def download(self, directory: str | Path) -> ToileDataset:
        """Copy the shards and manifest into ``directory``, each checked, and open it there.

        Each file is written under a temporary name and renamed once its SHA-256
        matches, the manifest last, so an interrupted download leaves no partial
        dataset under final names.
        """
        import httpx

        from toile.dataset import open_dataset

        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        manifest = self.manifest
        for shard in self.shards:
            final = target / shard.name
            partial = target / f".{shard.name}.partial"
            digest = hashlib.sha256()
            size = 0
            try:
                with httpx.stream("GET", shard.url, headers=_RAW, timeout=TIMEOUT) as response:
                    if response.status_code != 200:
                        raise InputError(shard.url, _xrpc_message_stream(response))
                    with open(partial, "wb") as out:
                        for chunk in response.iter_bytes(_READ_SIZE):
                            digest.update(chunk)
                            size += len(chunk)
                            out.write(chunk)
                        out.flush()
                        os.fsync(out.fileno())
                _check(shard, size, digest.hexdigest())
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
            os.replace(partial, final)
        name = f"{manifest['stem']}.manifest.json"
        partial = target / f".{name}.partial"
        partial.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        os.replace(partial, target / name)
        return open_dataset(target / name)

    def atdata(self, sample_type: type | None = None) -> atdata.Dataset:
        """An ``atdata.Dataset[Frame]`` streaming the blobs from this PDS (viewed through a lens)."""
        import atdata
        from atdata._sources import BlobSource

        from toile.schema import Frame

        source = BlobSource(
            blob_refs=[{"did": self.did, "cid": s.cid} for s in self.shards],
            pds_endpoint=self.pds_url,
        )
        dataset = atdata.Dataset[Frame](source)
        if sample_type is None or sample_type is Frame:
            return dataset
        return dataset.as_type(sample_type)


def _link(blob: dict[str, Any]) -> str:
    ref = blob.get("ref", {})
    return ref.get("$link", "") if isinstance(ref, dict) else str(ref)


def _xrpc_message_stream(response: Any) -> str:
    response.read()
    return _xrpc_message(response)


def _check(shard: RemoteShard, size: int, digest: str) -> None:
    if shard.size and size != shard.size:
        raise InputError(
            shard.url, f"shard {shard.name}: {size:,} bytes, the record says {shard.size:,}"
        )
    if shard.sha256 and digest != shard.sha256:
        raise InputError(
            shard.url, f"shard {shard.name}: sha256 is {digest}, the record says {shard.sha256}"
        )


def atmosphere_for(uri: str, pds: str | None = None) -> ToileAtmosphere:
    """An anonymous ``Atmosphere`` bound to the PDS that hosts ``uri``, for atdata's loader.

    ``atdata.load_dataset(uri, toile.schema.Frame, split="train",
    atmosphere=atmosphere_for(uri))`` then reads the blobs from that PDS.
    """
    parsed = AtUri.parse(uri)
    did = resolve_did(parsed.authority, pds or os.environ.get(PDS_URL_ENV))
    return ToileAtmosphere(resolve_pds_url(did, pds))


def open_remote(uri: str, pds: str | None = None) -> RemoteDataset:
    """Open the dataset record at ``uri`` (``at://DID-or-handle/COLLECTION/RKEY``)."""
    from atdata.atmosphere import DatasetLoader
    from atproto_client.exceptions import AtProtocolError, BadRequestError, NetworkError

    parsed = AtUri.parse(uri)
    did = resolve_did(parsed.authority, pds or os.environ.get(PDS_URL_ENV))
    pds_url = resolve_pds_url(did, pds)
    resolved = AtUri(did, parsed.collection, parsed.rkey)
    try:
        record = DatasetLoader(ToileAtmosphere(pds_url)).get(str(resolved))
    except BadRequestError as error:
        raise InputError(uri, f"no such record on {pds_url} ({error})") from error
    except NetworkError as error:
        raise InputError(pds_url, f"server unreachable ({error.__cause__ or error})") from error
    except AtProtocolError as error:
        raise InputError(uri, f"{pds_url} answered {error}") from error
    except ValueError as error:  # not a dataset record
        raise InputError(uri, str(error)) from error
    log.info("opened %s on %s", resolved, pds_url)
    return RemoteDataset(resolved, pds_url, record)
