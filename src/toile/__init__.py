"""toile: microscopy TIFF recordings to sharded, typed WebDataset archives.

Importing ``toile`` is cheap; heavy modules (atdata, webdataset) load on first use.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("toile")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"
