"""The export pipeline: recordings in, shards and a manifest out.

The jobs live in their own modules: :mod:`~toile.export.plan` (open recordings,
measure packed sizes), :mod:`~toile.export.layout` (the pure shard layout),
:mod:`~toile.export.assemble` (one task per shard), :mod:`~toile.export.journal`
(resume), :mod:`~toile.export.manifest` and :mod:`~toile.export.run` (the driver);
every file is written through :mod:`toile.storage`. Names are imported on first
use, so that ``import toile.export.layout`` stays light.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from toile.names import MANIFEST_FORMAT, MANIFEST_SUFFIX, manifest_name

_LAZY = {
    "ExportInterrupted": "toile.export.run",
    "ExportResult": "toile.export.run",
    "existing_outputs": "toile.export.run",
    "export_frames": "toile.export.run",
    "export_test_frames": "toile.export.run",
    "dry_run": "toile.export.run",
    "release_interrupts": "toile.export.run",
    "result_as_dict": "toile.export.run",
    "staging_dir": "toile.export.run",
    "ConvertOptions": "toile.export.samples",
    "RecordingPlan": "toile.export.plan",
    "ShardInfo": "toile.shards",
}

__all__ = ["MANIFEST_FORMAT", "MANIFEST_SUFFIX", "manifest_name", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'toile.export' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
