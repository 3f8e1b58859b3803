"""The manifest: the dataset's table of contents, written last (the commit point).

``recordings[].source`` is the recording's main file (a path), with ``series`` in a
field of its own and ``format`` the format that read it; ``vendor_metadata`` holds
the vendor's full parsed metadata once per recording (absent when the format has
none). ``versions`` records the versions of what shapes the shards' bytes.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from toile import __version__
from toile.card import frame_shapes
from toile.names import MANIFEST_FORMAT, frame_digits, sample_key, shard_url_pattern
from toile.shards import ShardInfo

if TYPE_CHECKING:
    from toile.config import ExportConfig
    from toile.export.plan import RecordingPlan


def byte_versions() -> dict[str, str]:
    """Versions of the packages that shape a shard's bytes (deflate, npy headers, toile)."""
    import isal
    import numpy

    return {"toile": __version__, "isal": isal.__version__, "numpy": numpy.__version__}


def recording_entry(plan: RecordingPlan, to_uint8: bool) -> dict:
    source = plan.source
    entry = {
        "recording_index": plan.recording_index,
        "source": str(source.path),
        "series": source.series,
        "format": plan.metadata.get("format") or source.format,
        "name": source.name or plan.label,
        "frames": plan.n_frames,
        "frame_shape": list(plan.frame_shape),
        "dtype": "uint8" if to_uint8 else plan.dtype,
        "source_dtype": plan.dtype,
        "first_key": sample_key(plan.recording_index, 0, frame_digits(plan.n_frames)),
        "metadata": plan.metadata,
    }
    if plan.vendor_metadata is not None:
        entry["vendor_metadata"] = plan.vendor_metadata
    return entry


def build_manifest(
    config: ExportConfig,
    output_options: dict,
    plans: list[RecordingPlan],
    shards: list[ShardInfo],
    skipped: list[dict],
    versions: dict[str, str],
) -> dict:
    return {
        "toile_version": __version__,
        "manifest_format": MANIFEST_FORMAT,
        "stem": config.stem,
        "encoding": config.format,
        "compressed": config.compressed,
        "shard_size_limit": config.shard_size,
        "url_pattern": shard_url_pattern(config.stem, len(shards), config.compressed),
        "options": output_options,
        "shards": [s.to_dict() for s in shards],
        "recordings": [recording_entry(plan, config.to_uint8) for plan in plans],
        "skipped": skipped,
        "totals": {
            "shards": len(shards),
            "samples": sum(s.samples for s in shards),
            "bytes": sum(s.size for s in shards),
            "recordings": len(plans),
            "skipped": len(skipped),
        },
        "versions": versions,
        # whether every recording's frames have one shape and dtype (toile.card.frame_shapes)
        "frame_shapes": frame_shapes([recording_entry(p, config.to_uint8) for p in plans]),
    }


def _plain(value: object) -> object:
    """numpy scalars and arrays in vendor metadata, as JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"metadata value of type {type(value).__name__} is not JSON-serialisable")


def manifest_text(manifest: dict) -> str:
    return json.dumps(manifest, indent=2, sort_keys=False, default=_plain) + "\n"
