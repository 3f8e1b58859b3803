"""What both publish routes share: the checks, the dataset's fingerprint and summary, the sidecar.

A dataset is published as it is on disk: its shards and manifest are never rewritten.
Where it was published is kept in ``{stem}.published.json`` beside the manifest (the
sidecar), replaced atomically, so that ``toile info`` can show it and a rerun can find
the earlier publication.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from toile.dataset import Manifest, verify_dataset
from toile.errors import ToileError

log = logging.getLogger(__name__)

#: Suffix of the sidecar file that lists a dataset's publications.
SIDECAR_SUFFIX = ".published.json"
#: Version of the sidecar's layout.
SIDECAR_FORMAT = 1
#: Version of the ``toile.schema.Frame`` schema as published (bump when Frame's fields change).
FRAME_SCHEMA_VERSION = "1.0.0"


class PublishError(ToileError):
    """A dataset cannot be published: damaged, too large, refused or unreachable server."""


@dataclass
class Publication:
    """One place a dataset was published, as kept in the sidecar."""

    kind: str
    """``"index"`` (an atdata Index) or ``"pds"`` (an ATProto PDS)."""
    target: str
    """The index database file, or the PDS URL."""
    name: str
    version: str
    uri: str
    """How to load it: ``@local/NAME@VERSION`` for an index, the record's AT URI for a PDS."""
    fingerprint: str
    published_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())


def frame_schema_publisher(client: Any) -> Any:
    """atdata's ``SchemaPublisher`` for ``toile.schema.Frame``, with ``dict`` as a JSON object.

    atdata 0.7.0b1 builds no schema for a ``dict`` field (Frame's ``metadata``); it is
    written here as the JSON Schema ``{"type": "object"}``. Load such datasets with
    ``toile.schema.Frame`` as the sample type: atdata's dynamic types read an object
    field as a string.
    """
    from typing import get_origin

    from atdata.atmosphere import SchemaPublisher

    class FrameSchemaPublisher(SchemaPublisher):
        def _python_type_to_json_schema(self, python_type: Any) -> dict:
            if python_type is dict or get_origin(python_type) is dict:
                return {"type": "object"}
            return super()._python_type_to_json_schema(python_type)

    return FrameSchemaPublisher(client)


def frame_schema_record(metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``science.alt.dataset.schema`` record of ``toile.schema.Frame``."""
    from toile.schema import Frame

    record = frame_schema_publisher(None)._build_schema_record(
        Frame,
        name=None,
        version=FRAME_SCHEMA_VERSION,
        description=(Frame.__doc__ or "").strip(),
        metadata=metadata,
    )
    return record.to_record()


def load_publishable(path: str | Path) -> Manifest:
    """The manifest of a dataset that atdata can read (``--format atdata``), or a PublishError."""
    manifest = Manifest.load(path)
    if manifest.encoding != "atdata":
        raise PublishError(
            f"{manifest.path}: samples are encoded as {manifest.encoding!r}; only datasets "
            "written with --format atdata can be published (atdata reads them as "
            "toile.schema.Frame): export again with --format atdata"
        )
    if not manifest.shards:
        raise PublishError(f"{manifest.path}: the dataset has no shards")
    return manifest


def check_shards(manifest: Manifest) -> list[str]:
    """Every problem ``toile verify`` finds in the dataset (empty when it is sound)."""
    return verify_dataset(manifest.path).problems


def refuse_damaged(manifest: Manifest, problems: list[str]) -> None:
    """Raise one line summarising the damage, when there is any."""
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise PublishError(
            f"{manifest.directory}: damaged dataset, nothing published: {problems[0]}{more}; "
            f"run toile verify {manifest.directory}"
        )


def fingerprint(manifest: Manifest) -> str:
    """A SHA-256 over the shards' names, sizes, digests and sample counts: the dataset's identity.

    Two publications with the same fingerprint hold the same bytes, so a rerun is
    recognised as the same dataset and a changed dataset as a new version.
    """
    content = {
        "stem": manifest.stem,
        "encoding": manifest.encoding,
        "compressed": manifest.compressed,
        "shards": [[s.name, s.size, s.sha256, s.samples] for s in manifest.shards],
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def summary(manifest: Manifest) -> dict[str, Any]:
    """The manifest's summary as integers and strings (ATProto records allow no floats)."""
    return {
        "stem": manifest.stem,
        "encoding": manifest.encoding,
        "compressed": manifest.compressed,
        "toileVersion": str(manifest.raw.get("toile_version", "")),
        "shards": len(manifest.shards),
        "samples": manifest.samples,
        "bytes": sum(s.size for s in manifest.shards),
        "recordings": [
            {
                "name": str(r.get("name", "")),
                "frames": int(r.get("frames", 0)),
                "frameShape": [int(n) for n in r.get("frame_shape", [])],
                "dtype": str(r.get("dtype", "")),
            }
            for r in manifest.recordings
        ],
    }


def sidecar_path(manifest: Manifest) -> Path:
    return manifest.directory / f"{manifest.stem}{SIDECAR_SUFFIX}"


def read_publications(manifest: Manifest) -> list[dict[str, Any]]:
    """The publications listed in the dataset's sidecar (none when there is no sidecar)."""
    return _read_sidecar(sidecar_path(manifest))


def _read_sidecar(path: Path) -> list[dict[str, Any]]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PublishError(f"{path}: cannot read the publications sidecar: {error}") from error
    entries = raw.get("publications") if isinstance(raw, dict) else None
    if not isinstance(entries, list):
        raise PublishError(f"{path}: not a toile publications sidecar (no 'publications' list)")
    return [entry for entry in entries if isinstance(entry, dict)]


def format_publications(info: dict[str, Any]) -> list[str]:
    """The ``toile info`` lines for the publications of a local dataset (none when unpublished).

    ``info`` is :func:`toile.dataset.dataset_info`'s summary; an unreadable sidecar
    is logged, not fatal, since ``info`` summarises what it can.
    """
    manifest = str(info.get("manifest") or "")
    if not manifest or "://" in manifest:
        return []
    try:
        entries = _read_sidecar(Path(manifest).parent / f"{info.get('stem')}{SIDECAR_SUFFIX}")
    except PublishError as error:
        log.warning("%s", error)
        return []
    if not entries:
        return []
    lines = [f"published    {len(entries)}"]
    for e in entries:
        lines.append(
            f"  {e.get('kind')} {e.get('target')}: {e.get('name')} version {e.get('version')}"
        )
        lines.append(f"      {e.get('uri')}")
    return lines


def record_publication(manifest: Manifest, publication: Publication) -> Path:
    """Add (or refresh) a publication in the sidecar, written to a temporary file then renamed."""
    path = sidecar_path(manifest)
    entry = asdict(publication)
    same = ("kind", "target", "uri")
    entries = [
        e for e in read_publications(manifest) if any(e.get(k) != entry[k] for k in same)
    ] + [entry]
    text = json.dumps({"sidecar_format": SIDECAR_FORMAT, "publications": entries}, indent=2)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def next_version(versions: list[str]) -> str:
    """The version after the highest integer version in ``versions`` (``"1"`` for none)."""
    numbers = [int(v) for v in versions if v and v.isdigit()]
    return str(max(numbers, default=0) + 1)
