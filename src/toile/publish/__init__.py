"""Share a dataset: register it in an atdata index, or publish it on an ATProto PDS.

- :func:`publish_index` registers a ``--format atdata`` dataset in an atdata
  ``Index`` (SQLite), found again with ``atdata.load_dataset("@local/NAME", ...)``.
- :func:`publish_pds` uploads its shards as blobs to a PDS and creates atdata's
  dataset record; ``toile.open("at://...")`` (:func:`open_remote`) reads it back.

Both verify every shard against the manifest first and never change the dataset's
files; where a dataset was published is kept in its ``{stem}.published.json`` sidecar.
The submodules load on first use, so ``toile info`` does not import the ATProto client.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "SIDECAR_SUFFIX": "common",
    "Publication": "common",
    "PublishError": "common",
    "read_publications": "common",
    "IndexPublishResult": "index",
    "publish_index": "index",
    "PdsPublishResult": "pds",
    "ShardUpload": "pds",
    "publish_pds": "pds",
    "RemoteDataset": "remote",
    "ToileAtmosphere": "remote",
    "atmosphere_for": "remote",
    "open_remote": "remote",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f"toile.publish.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'toile.publish' has no attribute {name!r}")
