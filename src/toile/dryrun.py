"""``export frames --dry-run``: what an export would write, found without writing anything.

The dry run does everything a real run does before its first shard: it finds and
opens every recording, checks every option and the output, runs the ``--uint8``
statistics pass and measures every sample (deflating them with ``--compressed``),
and lays the shards out, so bad inputs fail exactly as in a real run. Then it
reports the recordings and the shard plan (:class:`DryRun`) instead of writing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Recording metadata fields shown in the report, when the recording has them.
SHOWN_FIELDS = (
    "scale_x",
    "scale_y",
    "scale_z",
    "time_increment",
    "date_acquired",
    "binning",
    "normalization",
)


@dataclass
class DryRun:
    """The plan of an export: its recordings and shards, and the recordings it would skip."""

    output: Any
    stem: str
    encoding: str
    compressed: bool
    shard_size: int
    recordings: list[dict[str, Any]]
    #: (name, samples, bytes) of every planned shard, in order.
    shards: list[tuple[str, int, int]]
    skipped: list[dict] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(size for _, _, size in self.shards)

    @property
    def frames(self) -> int:
        return sum(samples for _, samples, _ in self.shards)

    def summary(self) -> str:
        text = (
            f"{len(self.recordings)} recording(s), {self.frames} frame(s), "
            f"{len(self.shards)} shard(s), {self.bytes:,} bytes"
        )
        if self.skipped:
            text += f"; {len(self.skipped)} recording(s) would be skipped"
        return text

    def format(self) -> str:
        """The report printed by ``--dry-run``: one block per recording, then the shards."""
        suffix = ".tar.gz" if self.compressed else ".tar"
        lines = [
            f"dry run: nothing written; {self.output} would receive {self.stem}-*{suffix} "
            f"({self.encoding} samples, shards of at most {self.shard_size:,} bytes)",
        ]
        for r in self.recordings:
            shape = "x".join(str(n) for n in r["frame_shape"])
            dtype = (
                r["dtype"]
                if r["dtype"] == r["source_dtype"]
                else (f"{r['dtype']} (from {r['source_dtype']})")
            )
            channels = ", ".join(r["channels"]) or "-"
            lines.append(
                f"  [{r['recording_index']}] {r['label']} ({r['format']}): {r['frames']} frame(s) "
                f"of {shape} {dtype}, channels: {channels}"
            )
            shown = {k: r["metadata"][k] for k in SHOWN_FIELDS if r["metadata"].get(k) is not None}
            if shown:
                lines.append("      " + ", ".join(f"{k}={_short(v)}" for k, v in shown.items()))
        lines.append(f"shards: {self.summary()}")
        for name, samples, size in self.shards:
            lines.append(f"  {name}: {samples} sample(s), {size:,} bytes")
        for entry in self.skipped:
            lines.append(f"would skip {entry['source']}: {entry['error']}")
        return "\n".join(lines)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    return str(value)


def recording_summary(plan: Any, to_uint8: bool, mapping: Any = None) -> dict[str, Any]:
    """What the report says of one planned recording (a ``toile.export.plan.RecordingPlan``),
    with the ``--uint8`` mapping the statistics pass found (``MappingParams``), if any."""
    metadata = dict(plan.metadata)
    if mapping is not None:
        metadata["normalization"] = {
            "method": mapping.method,
            "low": list(mapping.low),
            "high": list(mapping.high),
        }
    return {
        "recording_index": plan.recording_index,
        "label": plan.label,
        "format": metadata.get("format") or plan.source.format,
        "frames": plan.n_frames,
        "frame_shape": list(plan.frame_shape),
        "dtype": "uint8" if to_uint8 else plan.dtype,
        "source_dtype": plan.dtype,
        "channels": [str(c.get("name")) for c in metadata.get("channels") or []],
        "metadata": metadata,
    }
