"""`toile preview`: the arrays against numpy, the sampled frames, and the PNG."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from toile.cli import main
from toile.export import export_test_frames
from toile.preview import (
    BASELINE_PERCENTILE,
    THUMBNAIL_SIDE,
    build_figure,
    delta_f_over_f,
    display,
    from_dataset,
    robust_range,
    sample_indices,
    summarise,
)
from toile.synthetic import MovieSpec, generate_frames

FRAMES = 12
SHAPE = (20, 24)


def _export(path: Path, **options) -> Path:
    options = {"frames": FRAMES, "height": SHAPE[0], "width": SHAPE[1], **options}
    export_test_frames(path, progress=False, **options)
    return path


def _png_size(path: Path) -> tuple[int, int]:
    import matplotlib.image

    height, width = matplotlib.image.imread(path).shape[:2]
    return width, height


def test_sample_indices_are_bounded_evenly_spaced_and_keep_the_ends():
    assert sample_indices(5, 200) == [0, 1, 2, 3, 4]
    assert sample_indices(0) == []
    picked = sample_indices(36_000, 200)
    assert len(picked) == 200 and picked[0] == 0 and picked[-1] == 35_999
    steps = np.diff(picked)
    assert steps.min() >= 180 and steps.max() <= 181


def test_summaries_match_numpy_per_channel():
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 4000, size=(2, 6, 5), dtype=np.uint16) for _ in range(7)]
    stack = np.stack(frames).astype(np.float64)
    summaries = summarise(frames, ["GCaMP", "tdTomato"])
    assert [s.name for s in summaries] == ["GCaMP", "tdTomato"]
    for c, summary in enumerate(summaries):
        np.testing.assert_array_equal(summary.first, stack[0, c])
        np.testing.assert_allclose(summary.mean, stack[:, c].mean(axis=0))
        np.testing.assert_array_equal(summary.max, stack[:, c].max(axis=0))
        trace = stack[:, c].mean(axis=(1, 2))
        np.testing.assert_allclose(summary.trace, trace)
        assert summary.f0 == pytest.approx(np.percentile(trace, BASELINE_PERCENTILE))
        np.testing.assert_allclose(
            delta_f_over_f(summary.trace, summary.f0), (trace - summary.f0) / summary.f0
        )
    assert delta_f_over_f(np.zeros(3), 0.0) is None


def test_contrast_is_robust_to_hot_pixels_and_thumbnails_are_bounded():
    image = np.tile(np.arange(100, dtype=np.float64), (100, 1))
    image[0, 0] = 1e6  # one hot pixel
    low, high = robust_range(image)
    assert low == pytest.approx(np.percentile(image, 0.5))
    assert high < 100 and high == pytest.approx(np.percentile(image, 99.5))
    shown, _ = display(image)
    assert shown.min() == 0.0 and shown.max() == 1.0
    big = np.zeros((1000, 500))
    big[:, 250:] = 10
    thumb, _ = display(big)
    assert thumb.shape == (THUMBNAIL_SIDE, THUMBNAIL_SIDE // 2)
    assert display(np.full((4, 4), 7.0))[1] == (7.0, 8.0)  # a constant image still shows


@pytest.mark.parametrize("options", [{}, {"format": "atdata", "compressed": True}])
def test_dataset_frames_are_sampled_exactly(tmp_path, options):
    out = _export(tmp_path / "ds", channels=2, shard_size=40_000, **options)
    source = from_dataset(out, max_frames=4)
    [recording] = source.recordings
    assert recording.indices == sample_indices(FRAMES, 4) == [0, 4, 7, 11]
    expected = list(generate_frames(MovieSpec(FRAMES, *SHAPE, channels=2, seed=0)))
    for index, frame in zip(recording.indices, recording.frames, strict=True):
        np.testing.assert_array_equal(frame, expected[index])
    times, unit = recording.time_axis()
    assert unit == "time (s)" and list(times) == [i * 0.5 for i in recording.indices]
    assert recording.channel_names == ["GCaMP", "tdTomato"]
    assert "2 Hz" in recording.title() and "0.8 µm/pixel" in recording.title()
    assert f"{FRAMES:,} frames" in source.header and "shard(s)" in source.header


def test_cli_writes_a_png_with_a_row_per_recording_and_channel(tmp_path):
    out = _export(tmp_path / "ds", recordings=2)
    figure = build_figure(from_dataset(out))
    images = [a for a in figure.axes if a.images]
    traces = [a for a in figure.axes if a.lines and not a.images]
    assert len(images) == 6 and len(traces) == 2
    assert "F0 = " in traces[0].get_title(loc="left")
    png = tmp_path / "preview.png"
    result = CliRunner().invoke(main, ["preview", str(out), "-o", str(png), "--recording", "1"])
    assert result.exit_code == 0, result.output
    assert _png_size(png) == (1600, int(100 * (0.9 + 3.4 * 1)))
    bad = CliRunner().invoke(main, ["preview", str(out), "-o", str(png), "--recording", "5"])
    assert bad.exit_code == 1
    assert "--recording 5: there are 2 recording(s), 0 to 1" in bad.output


def test_preview_of_an_input_before_export(tmp_path):
    from toile.writers import write_ome_tiff

    frames = list(generate_frames(MovieSpec(FRAMES, *SHAPE, seed=3)))
    tif = write_ome_tiff(tmp_path / "rec.ome.tif", frames)
    png = tmp_path / "before.png"
    result = CliRunner().invoke(main, ["preview", str(tif), "-o", str(png), "--frames", "5"])
    assert result.exit_code == 0, result.output
    assert _png_size(png) == (1600, int(100 * (0.9 + 3.4)))
    from toile.preview import from_inputs

    [recording] = from_inputs([str(tif)], max_frames=5).recordings
    assert len(recording.frames) == 5
    np.testing.assert_array_equal(recording.frames[-1], frames[-1])


def test_matplotlib_is_imported_only_by_preview(tmp_path):
    out = _export(tmp_path / "ds")
    code = (
        "import sys; from toile.cli import main\n"
        f"for args in (['info', {str(out)!r}], ['verify', {str(out)!r}]):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('matplotlib' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "False"


def test_preview_of_a_dataset_in_a_bucket(s3, tmp_path):
    out = _export(tmp_path / "ds", compressed=True)
    for path in sorted(out.iterdir()):
        s3.put(f"data/ds/{path.name}", path.read_bytes())
    png = tmp_path / "p.png"
    result = CliRunner().invoke(main, ["preview", f"{s3.url}/data/ds", "-o", str(png)])
    assert result.exit_code == 0, result.output
    assert _png_size(png) == (1600, int(100 * (0.9 + 3.4)))
    source = from_dataset(f"{s3.url}/data/ds", max_frames=3)
    [recording] = source.recordings
    expected = list(generate_frames(MovieSpec(FRAMES, *SHAPE, seed=0)))
    for index, frame in zip(recording.indices, recording.frames, strict=True):
        np.testing.assert_array_equal(frame, expected[index])
