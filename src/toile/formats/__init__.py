"""Recording formats: discovery, the registry and the one :class:`Recording` interface.

>>> sources = discover(["/data/TSeries-001/"], Path.cwd())  # doctest: +SKIP
>>> with open_source(sources[0]) as recording:  # doctest: +SKIP
...     frame = recording.read_frame(0)
"""

from __future__ import annotations

from toile.formats.base import Candidates, Format, Recording, Source
from toile.formats.discover import discover


def open_source(source: Source, channel: str | int | None = None) -> Recording:
    """Open ``source`` with the format that claimed it."""
    from toile.formats.registry import get_format

    return get_format(source.format).open(source, channel)


__all__ = ["Candidates", "Format", "Recording", "Source", "discover", "open_source"]
