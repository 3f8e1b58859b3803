"""toile: microscopy TIFF recordings to sharded, typed WebDataset archives.

Importing ``toile`` is cheap; heavy modules (atdata, webdataset) load on first use.
``toile.open(path)`` opens an exported dataset (see :func:`toile.dataset.open_dataset`).
"""

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in ("open", "open_dataset"):
        from toile.dataset import open_dataset

        return open_dataset
    raise AttributeError(f"module 'toile' has no attribute {name!r}")
