"""Exports stream: memory stays at a few frames, whatever the length of the recording.

The Python heap (``tracemalloc``, which also sees numpy's pixel buffers) is measured
while a recording of 200 frames is exported in this process. Reading the whole series
at once would hold at least 200 frames; a streaming export holds a handful, plus a
fixed amount of metadata. A first, short export runs beforehand so that lazy imports
and one-time caches are not counted.
"""

from __future__ import annotations

import tarfile
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from toile.config import make_config
from toile.export import export_frames
from toile.synthetic import MovieSpec, generate_frames
from toile.writers import write_ome_tiff, write_prairie_series

FRAMES = 200
SIDE = 256
FRAME_BYTES = SIDE * SIDE * np.dtype(np.uint16).itemsize
#: Peak heap growth allowed during the export, in frames' worth of bytes (measured: 10-16).
MAX_FRAMES_HELD = 25


def _spec(frames: int) -> MovieSpec:
    return MovieSpec(frames=frames, height=SIDE, width=SIDE, seed=3)


def _write(kind: str, directory: Path, frames: int) -> Path:
    if kind == "prairie":
        series = directory / f"TSeries-{frames}"
        write_prairie_series(series, generate_frames(_spec(frames)))
        return series
    directory.mkdir(parents=True, exist_ok=True)
    return write_ome_tiff(directory / f"stack-{frames}.ome.tif", generate_frames(_spec(frames)))


def _export(source: Path, output: Path, to_uint8: bool) -> int:
    config = make_config([str(source)], output, workers=1, progress=False, to_uint8=to_uint8)
    return export_frames(config).frames


def _peak_during(action) -> tuple[int, object]:
    """Peak bytes allocated above the starting level while ``action()`` runs, and its result."""
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        result = action()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        if started:
            tracemalloc.stop()
    return peak - base, result


@pytest.mark.parametrize(
    ("kind", "to_uint8"),
    [("stack", False), ("prairie", False), ("stack", True)],
    ids=["ome-stack", "prairie-series", "ome-stack-uint8"],
)
def test_export_holds_a_few_frames_not_the_recording(
    tmp_path: Path, kind: str, to_uint8: bool
) -> None:
    warm = _write(kind, tmp_path / "warm", 4)
    assert _export(warm, tmp_path / "warm-out", to_uint8) == 4
    source = _write(kind, tmp_path / "in", FRAMES)

    peak, exported = _peak_during(lambda: _export(source, tmp_path / "out", to_uint8))

    assert exported == FRAMES
    with tarfile.open(next((tmp_path / "out").glob("*.tar"))) as tar:
        assert sum(name.endswith(".npy") for name in tar.getnames()) == FRAMES
    assert peak < MAX_FRAMES_HELD * FRAME_BYTES, (
        f"export of {FRAMES} frames of {FRAME_BYTES} bytes peaked at {peak} bytes "
        f"({peak / FRAME_BYTES:.1f} frames)"
    )
