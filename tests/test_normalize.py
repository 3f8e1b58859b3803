"""Streamed uint8 normalisation: one mapping per recording and channel, checked against numpy."""

from __future__ import annotations

import json
import logging
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st

from toile.errors import ConfigError
from toile.normalize import (
    FORMULA,
    RangeStats,
    Uint8Mapping,
    Uint8Range,
    parse_uint8_range,
    to_raw,
)

MAX = Uint8Range("max")
MINMAX = Uint8Range("minmax")


def run(
    stack: np.ndarray, method: Uint8Range, n_channels: int = 1
) -> tuple[Uint8Mapping, np.ndarray]:
    """Both passes over ``stack`` (frames along axis 0), one frame at a time."""
    stats = RangeStats(method, stack.dtype, n_channels, source="rec.tif")
    for frame in stack:
        stats.update(frame)
    mapping = stats.finish()
    return mapping, np.stack([mapping.apply(frame) for frame in stack])


def reference(stack: np.ndarray, low: float, high: float) -> np.ndarray:
    """The documented formula evaluated in float64 on the whole stack."""
    x = np.clip(stack.astype(np.float64) - low, 0, high - low)
    return np.floor(255 * x / (high - low)).astype(np.uint8)


def random_stack(dtype: str, shape=(6, 9, 11), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


# --- parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("max", Uint8Range("max")),
        (" MinMax ", Uint8Range("minmax")),
        ("percentile:0.1,99.9", Uint8Range("percentile", 0.1, 99.9)),
        ("percentile: 0 , 100", Uint8Range("percentile", 0.0, 100.0)),
    ],
)
def test_parse_uint8_range(text: str, expected: Uint8Range) -> None:
    assert parse_uint8_range(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "foo",
        "",
        "percentile",
        "percentile:",
        "percentile:1",
        "percentile:1,2,3",
        "percentile:abc,99",
        "percentile:99,1",
        "percentile:5,5",
        "percentile:-1,50",
        "percentile:1,101",
        "percentile:nan,50",
        "max:1,2",
    ],
)
def test_parse_uint8_range_rejects(text: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_uint8_range(text)
    message = str(err.value)
    assert "\n" not in message
    assert repr(text) in message and "--uint8-range" in message


# --- exact mappings -----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_max_is_floor_255_x_over_max(dtype: str) -> None:
    stack = random_stack(dtype) // 3  # max below the dtype max, so the scale matters
    mapping, out = run(stack, MAX)
    expected = np.floor(255 * stack.astype(float) / stack.max()).astype(np.uint8)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)
    assert mapping.low == (0.0,) and mapping.high == (float(stack.max()),)
    assert out.max() == 255


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "int8", "int32", "uint32"])
def test_minmax_matches_numpy(dtype: str) -> None:
    stack = random_stack(dtype)
    mapping, out = run(stack, MINMAX)
    lo, hi = stack.min(), stack.max()
    assert mapping.low == (float(lo),) and mapping.high == (float(hi),)
    expected = np.floor(255 * (stack.astype(float) - lo) / (float(hi) - float(lo)))
    np.testing.assert_array_equal(out, expected.astype(np.uint8))
    assert out.min() == 0 and out.max() == 255


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("method", [MAX, MINMAX])
def test_float_max_and_minmax_match_numpy(dtype: str, method: Uint8Range) -> None:
    rng = np.random.default_rng(3)
    stack = (rng.random((5, 8, 7)) * 1000 + 10).astype(dtype)
    mapping, out = run(stack, method)
    if method.method == "max":
        expected = np.floor(255 * stack.astype(float) / stack.max())
    else:
        expected = np.floor(255 * (stack.astype(float) - stack.min()) / (stack.max() - stack.min()))
    np.testing.assert_array_equal(out, expected.astype(np.uint8))


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16"])
@pytest.mark.parametrize("pct", [(0.1, 99.9), (2.0, 98.0), (0.0, 100.0), (37.5, 50.0)])
def test_percentile_exact_for_integers(dtype: str, pct: tuple[float, float]) -> None:
    rng = np.random.default_rng(7)
    info = np.iinfo(dtype)
    # a skewed distribution with repeated values, spanning part of the type's range
    base = rng.gamma(2.0, 0.05 * (int(info.max) - int(info.min)), size=(8, 13, 17))
    stack = np.clip(base + int(info.min) // 2, info.min, info.max).astype(dtype)
    mapping, out = run(stack, Uint8Range("percentile", *pct))
    lo, hi = np.percentile(stack, pct, method="lower")
    assert mapping.low == (float(lo),) and mapping.high == (float(hi),)
    np.testing.assert_array_equal(out, reference(stack, float(lo), float(hi)))
    assert (out[stack <= lo] == 0).all() and (out[stack >= hi] == 255).all()


def test_percentile_with_few_values() -> None:
    stack = np.array([[[5, 9]], [[1, 7]]], dtype=np.uint16)  # 4 values, ranks matter
    for pct in [(0.0, 100.0), (25.0, 75.0), (33.4, 66.7), (10.0, 90.0)]:
        mapping, _ = run(stack, Uint8Range("percentile", *pct))
        lo, hi = np.percentile(stack, pct, method="lower")
        assert mapping.low == (float(lo),) and mapping.high == (float(hi),), pct


def test_percentile_float_is_close_to_numpy() -> None:
    rng = np.random.default_rng(11)
    # the range widens and the baseline drifts down over time (bleaching), so the
    # streamed histogram must grow and re-anchor
    frames = [
        (rng.standard_normal((16, 16)) * (1 + i) + 100 - 4 * i).astype(np.float32)
        for i in range(25)
    ]
    frames[0][:] = 100.0  # a constant first frame
    stack = np.stack(frames)
    pct = (0.5, 99.5)
    mapping, out = run(stack, Uint8Range("percentile", *pct))
    lo, hi = np.percentile(stack, pct, method="lower")
    tolerance = 2.5 * (float(stack.max()) - float(stack.min())) / 65536
    assert mapping.low[0] == pytest.approx(lo, abs=tolerance)
    assert mapping.high[0] == pytest.approx(hi, abs=tolerance)
    assert mapping.low[0] != mapping.high[0]
    np.testing.assert_array_equal(out, reference(stack, mapping.low[0], mapping.high[0]))
    extremes, _ = run(stack, Uint8Range("percentile", 0, 100))
    assert extremes.low == (float(stack.min()),) and extremes.high == (float(stack.max()),)


def test_multichannel_each_channel_has_its_own_range() -> None:
    rng = np.random.default_rng(5)
    stack = np.empty((4, 3, 6, 5), dtype=np.uint16)  # (T, C, H, W)
    stack[:, 0] = rng.integers(0, 100, (4, 6, 5))
    stack[:, 1] = rng.integers(1000, 60000, (4, 6, 5))
    stack[:, 2] = 42  # constant channel
    mapping, out = run(stack, MINMAX, n_channels=3)
    assert out.shape == stack.shape and out.dtype == np.uint8
    for c in range(2):
        lo, hi = stack[:, c].min(), stack[:, c].max()
        assert (mapping.low[c], mapping.high[c]) == (float(lo), float(hi))
        np.testing.assert_array_equal(out[:, c], reference(stack[:, c], float(lo), float(hi)))
    assert (out[:, 2] == 0).all()
    max_mapping, max_out = run(stack, MAX, n_channels=3)
    assert max_mapping.high == tuple(float(stack[:, c].max()) for c in range(3))
    np.testing.assert_array_equal(
        max_out[:, 1], np.floor(255 * stack[:, 1].astype(float) / stack[:, 1].max())
    )
    assert (max_out[:, 2] == 255).all()


def test_multichannel_percentile_per_channel() -> None:
    rng = np.random.default_rng(9)
    stack = np.stack(
        [rng.integers(0, 50, (5, 2, 8, 8)), rng.integers(200, 4000, (5, 2, 8, 8))], axis=0
    )[:, :, 0].transpose(1, 0, 2, 3)  # (T=5, C=2, 8, 8)
    stack = np.ascontiguousarray(stack).astype(np.uint16)
    mapping, out = run(stack, Uint8Range("percentile", 1, 99), n_channels=2)
    for c in range(2):
        lo, hi = np.percentile(stack[:, c], [1, 99], method="lower")
        assert (mapping.low[c], mapping.high[c]) == (float(lo), float(hi))
        np.testing.assert_array_equal(out[:, c], reference(stack[:, c], float(lo), float(hi)))


@given(
    data=st.lists(st.integers(0, 65535), min_size=1, max_size=40),
    method=st.sampled_from(["max", "minmax"]),
)
@settings(max_examples=60, deadline=None)
def test_lookup_table_equals_formula(data: list[int], method: str) -> None:
    stack = np.array(data, dtype=np.uint16).reshape(len(data), 1, 1)
    mapping, out = run(stack, Uint8Range(method))
    low = 0.0 if method == "max" else float(stack.min())
    high = float(stack.max())
    if high > low:
        np.testing.assert_array_equal(out, reference(stack, low, high))
    else:
        assert (out == 0).all()


@given(
    dtype=st.sampled_from(["uint8", "int8", "uint16", "int16"]),
    bounds=st.tuples(st.floats(0, 1), st.floats(0, 1)),
    seed=st.integers(0, 2**32 - 1),
)
@settings(max_examples=150, deadline=None)
def test_arithmetic_and_table_paths_equal_the_formula(
    dtype: str, bounds: tuple[float, float], seed: int
) -> None:
    # Frames inside [low, high] are mapped by arithmetic, the others through the table;
    # both must give the formula's values.
    info = np.iinfo(dtype)
    span = int(info.max) - int(info.min)
    low, high = sorted(int(info.min) + round(b * span) for b in bounds)
    if high == low:
        return
    mapping = Uint8Mapping("minmax", (float(low),), (float(high),), dtype)
    rng = np.random.default_rng(seed)
    inside = rng.integers(low, high, size=(7, 13), endpoint=True).astype(dtype)
    anywhere = random_stack(dtype, shape=(7, 13), seed=seed)
    for frame in (inside, anywhere):
        np.testing.assert_array_equal(mapping.apply(frame), reference(frame, low, high))


# --- edge cases ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", [MAX, MINMAX, Uint8Range("percentile", 1, 99)])
@pytest.mark.parametrize(("dtype", "value"), [("uint16", 1234), ("float32", 3.5), ("uint8", 0)])
def test_constant_stack_maps_to_zero_with_warning(
    method: Uint8Range, dtype: str, value: float, caplog: pytest.LogCaptureFixture
) -> None:
    stack = np.full((3, 4, 5), value, dtype=dtype)
    with caplog.at_level(logging.WARNING, logger="toile.normalize"):
        mapping, out = run(stack, method)
    constant = method.method != "max" or value == 0
    if constant:
        assert (out == 0).all()
        assert "rec.tif" in caplog.text and "all 0" in caplog.text
        assert (to_raw(out[0], mapping.metadata()) == mapping.low[0]).all()
    else:  # max of a constant positive image: every pixel is the maximum
        assert (out == 255).all()
        assert "all 0" not in caplog.text


def test_int16_with_negatives() -> None:
    stack = np.array([[[-300, -1, 0]], [[10, 200, 1000]]], dtype=np.int16)
    _, out = run(stack, MAX)
    expected = np.floor(255 * np.clip(stack.astype(float), 0, None) / 1000)
    np.testing.assert_array_equal(out, expected.astype(np.uint8))
    assert out[0].tolist() == [[0, 0, 0]]
    mapping, out = run(stack, MINMAX)
    assert mapping.low == (-300.0,) and mapping.high == (1000.0,)
    np.testing.assert_array_equal(out, reference(stack, -300, 1000))
    negative = np.full((2, 3, 3), -5, dtype=np.int16)
    negative[1, 0, 0] = -100
    _, out = run(negative, MAX)  # max <= 0: no range, all 0
    assert (out == 0).all()


@pytest.mark.filterwarnings("error")  # no invalid casts of NaN
def test_float_nan_and_inf(caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(2)
    stack = (rng.random((4, 6, 6)) * 50 + 5).astype(np.float32)
    stack[0, 0, 0] = np.nan
    stack[1, 1, 1] = np.inf
    stack[2, 2, 2] = -np.inf
    stack[3, 3, :] = np.nan
    finite = stack[np.isfinite(stack)]
    for method in (MAX, MINMAX, Uint8Range("percentile", 0, 100)):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="toile.normalize"):
            mapping, out = run(stack, method)
        warnings = [r for r in caplog.records if "NaN" in r.getMessage()]
        assert len(warnings) == 1 and "rec.tif" in warnings[0].getMessage()
        assert mapping.high == (float(finite.max()),)
        if method.method != "max":
            assert mapping.low == (float(finite.min()),)
        assert out.dtype == np.uint8
        assert out[0, 0, 0] == 0 and (out[3, 3] == 0).all()
        assert out[1, 1, 1] == 255 and out[2, 2, 2] == 0
        ok = np.isfinite(stack)
        expected = reference(stack[ok], mapping.low[0], mapping.high[0])
        np.testing.assert_array_equal(out[ok], expected)
        json.dumps(mapping.metadata(), allow_nan=False)


def test_all_nan_recording() -> None:
    stack = np.full((2, 3, 3), np.nan, dtype=np.float32)
    mapping, out = run(stack, MINMAX)
    assert (out == 0).all()
    json.dumps(mapping.metadata(), allow_nan=False)


def test_empty_recording_gives_zero_mapping() -> None:
    stats = RangeStats(MAX, np.dtype("uint16"), 1, source="empty.tif")
    mapping = stats.finish()
    assert mapping.low == (0.0,) and mapping.high == (0.0,)
    assert (mapping.apply(np.array([[7, 9]], dtype=np.uint16)) == 0).all()


def test_big_endian_frames() -> None:
    stack = random_stack("uint16", seed=4) // 2
    big = stack.astype(">u2")
    _, out = run(big, MINMAX)
    np.testing.assert_array_equal(out, run(stack, MINMAX)[1])
    _, out = run(stack.astype(">i2"), MAX)
    np.testing.assert_array_equal(out, run(stack.astype("int16"), MAX)[1])


def test_bool_frames() -> None:
    stack = np.array([[[True, False]], [[False, False]]])
    _, out = run(stack, MAX)
    assert out.tolist() == [[[255, 0]], [[0, 0]]]


# --- dynamics, round trip, metadata, buffers ----------------------------------------------


def test_dynamics_preserved_across_frames() -> None:
    rng = np.random.default_rng(1)
    dim = rng.integers(100, 15000, (12, 10), dtype=np.uint16)
    stack = np.stack([dim, dim * 2, dim // 2 + 1])
    _, out = run(stack, MAX)
    a, b = out[0].astype(int), out[1].astype(int)
    assert np.abs(b - 2 * a).max() <= 1
    assert out[1].mean() > 1.9 * out[0].mean()  # a per-frame rescale would make them equal
    assert out[2].mean() < 0.6 * out[0].mean()


@pytest.mark.parametrize(
    ("dtype", "method"),
    [
        ("uint16", MAX),
        ("uint16", Uint8Range("percentile", 0, 100)),
        ("int16", MINMAX),
        ("uint8", MINMAX),
        ("float32", MINMAX),
    ],
)
def test_to_raw_within_one_grey_level(dtype: str, method: Uint8Range) -> None:
    if dtype == "float32":
        stack = (np.random.default_rng(6).random((4, 9, 9)) * 300 - 50).astype(dtype)
    else:
        stack = random_stack(dtype, seed=6)
    mapping, out = run(stack, method)
    meta = json.loads(json.dumps(mapping.metadata()))
    raw = to_raw(out, meta)
    level = (mapping.high[0] - mapping.low[0]) / 255
    inside = (stack >= mapping.low[0]) & (stack <= mapping.high[0])
    source = stack.astype(np.float64)
    assert inside.mean() > 0.9
    error = source[inside] - raw[inside]
    assert error.min() >= -1e-9 * max(1.0, abs(mapping.high[0]))  # lower edge of the bin
    assert error.max() <= level * (1 + 1e-9)


def test_to_raw_second_channel() -> None:
    meta = {"low": [0.0, 100.0], "high": [255.0, 355.0]}
    assert to_raw(np.array([0, 10, 255], np.uint8), meta, channel=1).tolist() == [100, 110, 355]


def test_metadata_is_json_and_complete() -> None:
    stack = random_stack("uint16", (2, 2, 3, 3), seed=8)
    mapping, _ = run(stack, Uint8Range("percentile", 0.1, 99.9), n_channels=2)
    meta = json.loads(json.dumps(mapping.metadata()))
    assert meta["method"] == "percentile" and meta["percentiles"] == [0.1, 99.9]
    assert meta["source_dtype"] == "uint16" and meta["formula"] == FORMULA
    assert len(meta["low"]) == 2 and len(meta["high"]) == 2
    assert "percentiles" not in run(stack, MAX, n_channels=2)[0].metadata()


def test_apply_output_buffer_and_layout() -> None:
    stack = random_stack("uint16", (3, 2, 5, 4), seed=12)
    mapping, expected = run(stack, MINMAX, n_channels=2)
    buf = np.empty((2, 5, 4), dtype=np.uint8)
    for t in range(3):
        got = mapping.apply(stack[t], out=buf)
        assert got is buf
        np.testing.assert_array_equal(got, expected[t])
    strided = mapping.apply(stack[:, :, ::2].transpose(1, 0, 2, 3)[:, 0])
    assert strided.flags.c_contiguous and strided.dtype == np.uint8
    np.testing.assert_array_equal(strided, expected[0, :, ::2])
    with pytest.raises(ValueError):
        mapping.apply(stack[0, 0])


# --- streaming --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "method"),
    [("uint16", Uint8Range("percentile", 1, 99)), ("float32", Uint8Range("percentile", 1, 99))],
)
def test_stats_do_not_keep_frames(dtype: str, method: Uint8Range) -> None:
    frame_shape = (96, 96)
    n_frames = 300  # 5.5 MB of uint16, 11 MB of float32 if anything kept them
    rng = np.random.default_rng(0)
    template = rng.integers(0, 4000, frame_shape).astype(dtype)
    stats = RangeStats(method, np.dtype(dtype), 1)
    tracemalloc.start()
    try:
        for i in range(n_frames):
            stats.update(template + i)
        stats.finish()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    total = n_frames * template.nbytes
    assert peak < 2_500_000 < total / 2


def test_two_passes_over_a_tiff_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(13)
    stack = rng.integers(0, 3000, (10, 2, 12, 14), dtype=np.uint16)  # (T, C, Y, X)
    path = tmp_path / "rec.ome.tif"
    tifffile.imwrite(path, stack, metadata={"axes": "TCYX"})
    with tifffile.TiffFile(path) as tif:
        pages = tif.series[0].pages
        stats = RangeStats(Uint8Range("percentile", 0.5, 99.5), np.dtype("uint16"), 2, str(path))
        for t in range(10):
            stats.update(np.stack([pages[2 * t + c].asarray() for c in range(2)]))
        mapping = stats.finish()
        out = [
            mapping.apply(np.stack([pages[2 * t + c].asarray() for c in range(2)]))
            for t in range(10)
        ]
    out = np.stack(out)
    for c in range(2):
        lo, hi = np.percentile(stack[:, c], [0.5, 99.5], method="lower")
        np.testing.assert_array_equal(out[:, c], reference(stack[:, c], float(lo), float(hi)))


def test_apply_from_several_threads_at_once() -> None:
    # The arithmetic mapping keeps scratch planes per thread.
    from concurrent.futures import ThreadPoolExecutor

    frames = [random_stack("uint16", shape=(256, 256), seed=s) for s in range(32)]
    mapping = Uint8Mapping("minmax", (100.0,), (60000.0,), "uint16")
    inside = [np.clip(f, 100, 60000) for f in frames]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(mapping.apply, inside))
    for frame, got in zip(inside, results, strict=True):
        np.testing.assert_array_equal(got, reference(frame, 100.0, 60000.0))
