"""Synthetic astrocyte movies (:mod:`toile.synthetic`) as a format like the others.

``toile export test-frames`` makes one :class:`~toile.formats.base.Source` per movie,
with its :class:`~toile.synthetic.MovieSpec` in ``detail["spec"]``; nothing on disk is
claimed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toile.formats.base import Candidates, Format, Recording, Source


def synthetic_source(spec: object) -> Source:
    """The source of one synthetic movie (a :class:`toile.synthetic.MovieSpec`)."""
    from toile import synthetic

    name = synthetic.movie_metadata(spec)["_source_filename"]  # type: ignore[arg-type]
    return Source(SyntheticFormat.name, Path(name), (), name=name, detail={"spec": spec})


class SyntheticRecording(Recording):
    """A synthetic movie. Frames are simulated in order (the calcium transients are a
    process in time): reading frame ``i`` after frame ``i - 1`` costs one frame, any other
    order restarts the simulation from the first frame."""

    def __init__(self, source: Source) -> None:
        from toile import synthetic

        spec = source.detail["spec"]
        self.source = source
        self._spec = spec
        self._synthetic = synthetic
        self.metadata = synthetic.movie_metadata(spec)
        self.n_frames = spec.frames
        self.frame_shape = (
            (spec.height, spec.width)
            if spec.channels == 1
            else (spec.channels, spec.height, spec.width)
        )
        self.dtype = np.dtype(spec.dtype)
        self.channel_names = [c["name"] for c in self.metadata.get("channels", [])]
        self._frames = None
        self._next = 0

    def read_frame(self, index: int, out: np.ndarray | None = None) -> np.ndarray:
        if not 0 <= index < self.n_frames:
            raise IndexError(f"frame {index} out of range (0..{self.n_frames - 1})")
        if self._frames is None or index < self._next:
            self._frames = self._synthetic.generate_frames(self._spec)
            self._next = 0
        while True:
            frame = next(self._frames)
            self._next += 1
            if self._next > index:
                break
        if out is None:
            return frame
        self.check_out(out)[...] = frame
        return out

    def frame_metadata(self, index: int) -> dict:
        return self._synthetic.frame_metadata(self._spec, index)

    def close(self) -> None:
        self._frames = None
        self._next = 0


class SyntheticFormat(Format):
    name = "synthetic"

    def claim(self, candidates: Candidates) -> list[Source]:
        return []

    def open(self, source: Source, channel: str | int | None = None) -> Recording:
        return SyntheticRecording(source)
