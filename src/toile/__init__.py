"""toile: microscopy TIFF recordings to sharded, typed WebDataset archives.

Importing ``toile`` is cheap; heavy modules (atdata, webdataset) load on first use.
"""

__version__ = "0.1.0"
