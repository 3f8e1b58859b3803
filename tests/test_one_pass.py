"""One pass on this machine (toile.export.stream) against the planned path.

A ``--compressed`` or ``--uint8`` export on this machine deflates and maps every
sample once, on a pool of threads, laying the shards out as the samples come; the
planned path (measure, lay out, assemble tasks) deflates twice. Both must give the
same bytes, an interrupted one-pass export must resume (on the planned path) into the
same dataset, and a bad sample must fail as the planned path fails.
"""

from __future__ import annotations

import logging
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import tifffile

from toile.config import make_config
from toile.errors import OutputError
from toile.executors.inline import InlineExecutor
from toile.export import ExportInterrupted, export_frames
from toile.export import run as export_run


def _noisy_stack(path: Path, frames: int, side: int, seed: int) -> Path:
    """A real OME-TIFF whose frames deflate to different sizes (noise of varying spread)."""
    rng = np.random.default_rng(seed)
    spread = rng.integers(1, 4000, size=frames)[:, None, None]
    data = (1000 + rng.normal(0, 1, (frames, side, side)) * spread).clip(0, 65535)
    tifffile.imwrite(path, data.astype(np.uint16), ome=True, metadata={"axes": "TYX"})
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("one-pass")
    return [
        _noisy_stack(root / "a.ome.tif", 37, 48, 1),
        _noisy_stack(root / "b.ome.tif", 5, 48, 2),
        _noisy_stack(root / "c.ome.tif", 23, 48, 3),
    ]


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def _config(inputs: list[Path], output: Path, shard_size: int = 20_000, **options):
    return make_config(
        [str(p) for p in inputs],
        output,
        stem="ds",
        shard_size=shard_size,
        progress=False,
        **options,
    )


@pytest.mark.parametrize(
    "options",
    [
        {"compressed": True},
        {"compressed": True, "to_uint8": True},
        {"to_uint8": True, "uint8_range": "percentile:1,99"},
        {"compressed": True, "format": "atdata", "workers": 1},
    ],
    ids=["gz", "gz-uint8", "uint8-percentiles", "gz-atdata-1-thread"],
)
def test_one_pass_gives_the_planned_path_bytes(inputs, tmp_path, caplog, options):
    one_pass, planned = tmp_path / "one" / "out", tmp_path / "planned" / "out"
    with caplog.at_level(logging.INFO, logger="toile"):
        result = export_frames(_config(inputs, one_pass, **options))
    assert "in one pass" in caplog.text
    # an executor given by the caller runs the planned path's tasks
    planned_result = export_frames(_config(inputs, planned, **options), executor=InlineExecutor())
    assert len(result.shards) >= 3
    assert result.shards == planned_result.shards
    assert _files(one_pass) == _files(planned)


THORIMAGE = Path(__file__).parent / "data" / "thorimage" / "mouse_kidney_time_series_z_stack"


@pytest.mark.parametrize("channel", [None, "ChanB"])
def test_one_pass_on_a_real_thorimage_folder_gives_the_planned_path_bytes(tmp_path, channel):
    """Real ThorImageLS 3.2 files (tests/data/README.md), both channels and one of them."""
    one_pass, planned = tmp_path / "one" / "out", tmp_path / "planned" / "out"
    options = {"compressed": True, "to_uint8": True, "channel": channel, "shard_size": 60_000}
    result = export_frames(_config([THORIMAGE], one_pass, **options))
    planned_result = export_frames(
        _config([THORIMAGE], planned, **options), executor=InlineExecutor()
    )
    assert len(result.shards) >= 2
    assert result.shards == planned_result.shards
    assert _files(one_pass) == _files(planned)


def test_an_interrupted_one_pass_export_resumes_into_the_same_dataset(
    inputs, tmp_path, monkeypatch
):
    full, output = tmp_path / "full" / "out", tmp_path / "cut" / "out"
    export_frames(_config(inputs, full, compressed=True, to_uint8=True))

    accept = export_run._Export._accept_streamed
    accepted = []

    def interrupted_after_two(self, shard, info):
        accept(self, shard, info)
        accepted.append(info.name)
        if len(accepted) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(export_run._Export, "_accept_streamed", interrupted_after_two)
    with pytest.raises(ExportInterrupted) as stopped:
        export_frames(_config(inputs, output, compressed=True, to_uint8=True))
    assert stopped.value.completed_shards == 2
    staging = output / ".ds.staging"
    assert sorted(p.name for p in staging.iterdir() if ".tar" in p.name) == sorted(accepted)
    assert not (output / "ds.manifest.json").exists()
    monkeypatch.undo()

    resumed = export_frames(_config(inputs, output, compressed=True, to_uint8=True, resume=True))
    assert resumed.complete
    assert _files(output) == _files(full)


def test_a_sample_larger_than_a_shard_fails_naming_it_and_leaves_nothing(inputs, tmp_path):
    output = tmp_path / "out"
    config = make_config(
        [str(inputs[0])], output, stem="ds", shard_size=2_000, compressed=True, progress=False
    )
    with pytest.raises(OutputError, match=r"a\.ome\.tif: frame .*one sample takes \d+ bytes"):
        export_frames(config)
    assert not output.exists() or not any(output.rglob("*.tar.gz"))


def test_one_pass_holds_a_few_frames_however_long_the_recording(tmp_path):
    """Samples in flight are bounded: the heap grows by a few frames, not by the recording."""
    side, frames = 128, 300
    source = _noisy_stack(tmp_path / "long.ome.tif", frames, side, 4)
    frame_bytes = side * side * 2
    export_frames(_config([source], tmp_path / "warm", compressed=True, to_uint8=True))
    tracemalloc.start()
    try:
        export_frames(_config([source], tmp_path / "out", compressed=True, to_uint8=True))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 40 * frame_bytes, f"peak {peak / frame_bytes:.1f} frames"
