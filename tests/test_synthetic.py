"""Tests of the synthetic astrocyte movie generator, all judged from the frames it yields."""

import hashlib
import subprocess
import sys
import time
import tracemalloc
from dataclasses import replace

import numpy as np
import pytest

from toile.errors import ConfigError
from toile.synthetic import MovieSpec, frame_metadata, generate_frames, movie_metadata

SMALL = MovieSpec(frames=40, height=64, width=80, n_cells=3)


def digest(spec: MovieSpec) -> str:
    sha = hashlib.sha256()
    for frame in generate_frames(spec):
        sha.update(frame.tobytes())
    return sha.hexdigest()


def movie(spec: MovieSpec) -> np.ndarray:
    return np.stack(list(generate_frames(spec)))


@pytest.mark.parametrize("channels", [1, 2])
def test_same_spec_gives_identical_bytes(channels):
    spec = MovieSpec(frames=30, height=48, width=48, channels=channels, seed=7)
    assert digest(spec) == digest(spec)


def test_different_seed_gives_different_movie():
    first = movie(SMALL)
    other = movie(replace(SMALL, seed=1))
    assert first.shape == other.shape
    assert np.mean(first != other) > 0.5


@pytest.mark.parametrize("dtype", ["uint16", "uint8", "float32"])
@pytest.mark.parametrize("channels", [1, 2])
def test_shapes_dtypes_and_fresh_contiguous_frames(dtype, channels):
    spec = MovieSpec(frames=5, height=40, width=56, channels=channels, dtype=dtype)
    frames = list(generate_frames(spec))
    assert len(frames) == 5
    expected = (40, 56) if channels == 1 else (channels, 40, 56)
    for frame in frames:
        assert frame.shape == expected
        assert frame.dtype == np.dtype(dtype)
        assert frame.flags.c_contiguous
    assert not np.shares_memory(frames[0], frames[1])
    assert not np.array_equal(frames[0], frames[1])


def test_uint16_values_are_in_a_realistic_range():
    frames = movie(MovieSpec(frames=60, height=128, width=128))
    assert frames.min() >= 0
    assert 200 <= np.median(frames) <= 800
    assert np.percentile(frames, 99.9) > 1000  # active cells stand out
    assert frames.max() < 65535  # not saturated


def test_uint8_is_the_same_movie_scaled_down():
    wide = movie(MovieSpec(frames=20, height=48, width=48)).astype(np.float64)
    narrow = movie(MovieSpec(frames=20, height=48, width=48, dtype="uint8")).astype(np.float64)
    assert narrow.max() <= 255
    assert 10 <= np.median(narrow) <= 60
    assert np.abs(narrow - np.clip(wide / 16, 0, 255)).max() <= 1


def test_float32_is_unrounded_and_within_range():
    frames = movie(MovieSpec(frames=10, height=48, width=48, dtype="float32"))
    assert np.all(np.isfinite(frames))
    assert frames.min() >= 0
    assert frames.max() <= 65535
    assert np.mean(frames != np.round(frames)) > 0.9
    rounded = movie(MovieSpec(frames=10, height=48, width=48))
    assert np.abs(np.rint(frames) - rounded).max() <= 1


def test_cells_have_calcium_dynamics_and_the_background_does_not():
    frames = movie(MovieSpec(frames=200, height=128, width=128, channels=2, n_cells=5))
    calcium = frames[:, 0].astype(np.float64)
    marker = frames[:, 1].astype(np.float64).mean(axis=0)
    # The structural channel shows where the cells are.
    cells = marker > 3 * np.median(marker)
    background = marker < np.median(marker)
    assert 0.01 < cells.mean() < 0.4

    cell_trace = calcium[:, cells].mean(axis=1)
    background_trace = calcium[:, background].mean(axis=1)
    assert cell_trace.std() > 5 * background_trace.std()
    assert cell_trace.max() - cell_trace.min() > 100
    # Transients rise faster than they decay.
    steps = np.diff(cell_trace)
    assert steps.max() > 1.5 * -steps.min()
    # The structural marker is static apart from noise and slow bleaching.
    marker_trace = frames[:, 1].astype(np.float64)[:, cells].mean(axis=1)
    assert np.abs(np.diff(marker_trace)).max() < 0.2 * np.abs(steps).max()
    # Slow photobleaching dims the background.
    assert background_trace[:10].mean() > background_trace[-10:].mean()


def test_without_cells_there_are_no_transients():
    frames = movie(MovieSpec(frames=60, height=64, width=64, n_cells=0)).astype(np.float64)
    mean = frames.mean(axis=(1, 2))
    assert np.abs(np.diff(mean)).max() < 0.01 * mean.mean()


def test_noise_variance_grows_with_brightness_like_shot_noise():
    frames = movie(MovieSpec(frames=40, height=96, width=96, n_cells=0)).astype(np.float64)
    variance = np.diff(frames, axis=0).var(axis=0) / 2  # static scene: differences are noise
    mean = frames.mean(axis=0)
    assert mean.max() > 1.5 * mean.min()
    slope, _ = np.polyfit(mean.ravel(), variance.ravel(), 1)
    assert 1.5 < slope < 2.5  # two ADU per photon


def test_generation_is_lazy_and_streamed():
    spec = MovieSpec(frames=100_000, height=64, width=64, channels=2)
    tracemalloc.start()
    try:
        start = time.perf_counter()
        frames = generate_frames(spec)
        first = next(frames)
        for _ in range(50):
            next(frames)
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert first.shape == (2, 64, 64)
    assert elapsed < 2.0
    assert peak < 4_000_000  # the whole movie would be 1.6 GB


def test_import_is_light():
    code = "import sys, toile.synthetic; print(sorted({'scipy', 'skimage'} & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_default_movie_is_fast():
    start = time.perf_counter()
    count = sum(1 for _ in generate_frames(MovieSpec()))
    assert count == 300
    assert time.perf_counter() - start < 4.0


def test_movie_metadata_matches_spec():
    spec = MovieSpec(frames=12, height=30, width=50, channels=2, dtype="uint8", seed=5, n_cells=2)
    metadata = movie_metadata(spec)
    assert metadata == {
        "source": "synthetic",
        "_source_filename": "synthetic-seed5",
        "image_name": "synthetic-seed5",
        "scale_x": 0.8,
        "scale_y": 0.8,
        "scale_z": None,
        "scale_unit": "um",
        "t_unit": "s",
        "time_increment": 0.5,
        "size_x": 50,
        "size_y": 30,
        "size_z": 1,
        "size_c": 2,
        "size_t": 12,
        "dtype": "uint8",
        "channels": [{"name": "GCaMP"}, {"name": "tdTomato"}],
        "n_frames": 12,
        "format": "synthetic",
        "synthetic": {"seed": 5, "n_cells": 2},
    }
    first = next(generate_frames(spec))
    assert first.shape == (metadata["size_c"], metadata["size_y"], metadata["size_x"])
    assert first.dtype == np.dtype(metadata["dtype"])
    assert movie_metadata(MovieSpec())["channels"] == [{"name": "GCaMP"}]


def test_frame_metadata():
    spec = MovieSpec(frames=10, time_increment=0.25)
    assert frame_metadata(spec, 0) == {"index": 0, "t_index": 0, "z_index": 0, "t": 0.0}
    assert frame_metadata(spec, 9) == {"index": 9, "t_index": 9, "z_index": 0, "t": 2.25}
    with pytest.raises(IndexError):
        frame_metadata(spec, 10)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("frames", 0),
        ("height", 2),
        ("channels", 0),
        ("dtype", "int32"),
        ("n_cells", -1),
        ("time_increment", 0.0),
        ("pixel_size", -1.0),
    ],
)
def test_invalid_spec_is_a_config_error(field, value):
    with pytest.raises(ConfigError, match=field):
        MovieSpec(**{field: value})
