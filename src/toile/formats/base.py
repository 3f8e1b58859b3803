"""The format seam: what export needs from a recording, and how formats claim files.

Discovery (:mod:`toile.formats.discover`) turns the user's paths and globs into a
:class:`Candidates` set of files. Each :class:`Format` of the registry
(:mod:`toile.formats.registry`), in its fixed order, claims the groups of files it
understands (a Prairie View folder, a ScanImage acquisition split over files, an
OME-TIFF with its companions, ...) and returns one :class:`Source` per recording;
the plain-TIFF format comes last and takes any TIFF left. ``Format.open`` turns a
claimed source into a :class:`Recording`, the one interface export reads frames
through, whatever the vendor.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np


@dataclass(frozen=True)
class Source:
    """One recording found by discovery, and what is needed to open it again anywhere.

    ``format`` is the registry name of the format that claimed it. ``path`` is the
    recording's main file (the file named by the ``source`` metadata field), ``files``
    every file that belongs to it, sidecars included. ``series`` selects one series (an
    OME ``Image``, a tifffile series, a stage position) when one file holds several.
    ``name`` is what a ``filename_spec`` template is matched against, ``fields`` the
    values parsed from it. ``detail`` is the claiming format's own data (plain, picklable
    values: a movie spec, a sidecar path, a position), so that a worker process opens the
    recording without discovering it again.
    """

    format: str
    path: Path
    files: tuple[Path, ...] = ()
    series: int = 0
    name: str = ""
    fields: dict = field(default_factory=dict, compare=False, hash=False)
    detail: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def label(self) -> str:
        """How messages name the recording: its path, and its series when not the first."""
        return str(self.path) if self.series == 0 else f"{self.path} (series {self.series})"


class Recording(ABC):
    """One opened recording: its metadata, and its frames read one at a time.

    A frame is one (t, z) plane: (H, W) with one channel, (C, H, W) with several (or
    (H, W) for the channel chosen when opening), t-major (``index = t * size_z + z``).
    ``metadata`` holds the normalised recording-level fields that go to the top level
    of every frame's metadata; ``vendor_metadata`` the vendor's full parsed metadata,
    written once per recording in the manifest (``None`` when the format has none).
    """

    source: Source
    metadata: dict
    n_frames: int
    frame_shape: tuple[int, ...]
    dtype: np.dtype
    channel_names: list[str]
    vendor_metadata: dict | None = None

    @abstractmethod
    def read_frame(self, index: int, out: np.ndarray | None = None) -> np.ndarray:
        """Frame ``index`` as a C-contiguous array of ``frame_shape`` and ``dtype``.

        Read into ``out`` when given (a writeable C-contiguous array of that shape and
        type, e.g. a buffer reused from frame to frame), else into a new array.
        """

    @abstractmethod
    def frame_metadata(self, index: int) -> dict:
        """The frame's own metadata (``index``, ``t_index``, ``z_index``, ``t``, ...)."""

    def close(self) -> None:  # noqa: B027 - formats without open handles keep this no-op
        """Release file handles (idempotent)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self.n_frames

    def __iter__(self) -> Iterator[tuple[int, np.ndarray, dict]]:
        for index in range(self.n_frames):
            yield index, self.read_frame(index), self.frame_metadata(index)

    def check_out(self, out: np.ndarray | None) -> np.ndarray:
        """``out`` checked against the frame geometry, or a new frame buffer."""
        if out is None:
            return np.empty(self.frame_shape, dtype=self.dtype)
        if (
            out.shape != tuple(self.frame_shape)
            or out.dtype != self.dtype
            or not out.flags.c_contiguous
            or not out.flags.writeable
        ):
            raise ValueError(
                f"out must be a writeable C-contiguous {self.frame_shape} {self.dtype} "
                f"array, got {out.shape} {out.dtype}"
            )
        return out


class Candidates:
    """The files found under the user's inputs that no format has claimed yet.

    ``named`` are the files the user named themselves (a path), as opposed to files
    found by walking a directory or matched by a glob: a non-TIFF file left unclaimed is
    an error only when it was named. Formats look at a file's first ImageDescription
    through :meth:`description`, read once per file with a few small reads (and only
    its head kept when it is long).
    """

    def __init__(self, files: Iterable[Path], named: Iterable[Path] = ()) -> None:
        self._unclaimed: set[Path] = set(files)
        self.named: frozenset[Path] = frozenset(named)
        self._descriptions: dict[Path, str | None] = {}
        self._listings: dict[Path, list[str]] = {}

    def __iter__(self) -> Iterator[Path]:
        return iter(sorted(self._unclaimed))

    def __len__(self) -> int:
        return len(self._unclaimed)

    def __contains__(self, path: object) -> bool:
        return path in self._unclaimed

    def claim(self, paths: Iterable[Path]) -> None:
        """Take ``paths`` out of the set: they belong to a source (or are ignored by it)."""
        self._unclaimed.difference_update(paths)

    def by_directory(self) -> dict[Path, list[Path]]:
        """Unclaimed files grouped by their directory, each list sorted by name."""
        groups: dict[Path, list[Path]] = {}
        for path in sorted(self._unclaimed):
            groups.setdefault(path.parent, []).append(path)
        return groups

    def listdir(self, directory: Path) -> list[str]:
        """Names in ``directory`` (sorted, hidden ones left out), whether found or not."""
        names = self._listings.get(directory)
        if names is None:
            try:
                listed = (
                    os.listdir(directory)
                    if isinstance(directory, str | os.PathLike)
                    else [p.name for p in directory.iterdir()]  # a URL input's prefix
                )
                names = sorted(n for n in listed if not n.startswith("."))
            except OSError:
                names = []
            self._listings[directory] = names
        return names

    def description(self, path: Path) -> str | None:
        """The first ImageDescription of TIFF ``path`` ('' without one; None if unreadable).

        A description longer than 256 kB (the OME-XML of a long recording, megabytes) is
        not kept whole: what comes back is then a
        :class:`~toile.formats.tiff.light.DescriptionHead`, its first 256 kB (enough to
        tell what the file is; its ``chunks()`` stream the rest, and
        :func:`toile.formats.tiff.ome.links` reads them).
        """
        if path not in self._descriptions:
            from toile.formats.tiff.light import description_head

            self._descriptions[path] = description_head(path)
        return self._descriptions[path]


class Format(ABC):
    """One vendor format: which files it claims, and how it opens what it claimed."""

    #: Registry name, also the ``format`` metadata value of its recordings.
    name: ClassVar[str]

    @abstractmethod
    def claim(self, candidates: Candidates) -> list[Source]:
        """Sources for the groups of ``candidates`` this format understands.

        Claim (:meth:`Candidates.claim`) every file a source uses and every file the
        format knows to ignore (sidecars, projections, reference images).
        """

    @abstractmethod
    def open(self, source: Source, channel: str | int | None = None) -> Recording:
        """Open ``source`` (cheap: metadata, no pixels), optionally one channel only."""
