"""ThorImageLS capture folders: real ThorImageLS 3.2 folders (tests/data/thorimage) and
folders written by :func:`toile.writers.write_thorimage`, which imitates version 3.2."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import tifffile
import webdataset as wds
from click.testing import CliRunner

from toile.cli import main
from toile.formats import discover, open_source
from toile.synthetic import MovieSpec, generate_frames
from toile.writers import write_thorimage, write_thorimage_stream

DATA = Path(__file__).parent / "data" / "thorimage"
SERIES = "mouse_kidney_time_series_z_stack"
PREVIEW = Path("mouse_kidney_raw") / "2p" / "Untitled_001"


def _export(*args: str):
    return CliRunner().invoke(main, ["export", "frames", *args, "--no-progress", "--workers", "1"])


def _samples(out: Path) -> list[dict]:
    urls = sorted(str(p) for p in out.glob(f"{out.name}-*.tar*"))
    return sorted(
        wds.WebDataset(urls, shardshuffle=False).decode(),
        key=lambda s: (s["json"]["recording_index"], s["json"]["frame"]["index"]),
    )


def _name(channel: str, z: int, t: int) -> str:
    return f"Chan{channel}_0001_0001_{z + 1:04d}_{t + 1:04d}.tif"


def _page(path: Path) -> np.ndarray:
    """The plane tifffile reads from the file's own (first) page."""
    with tifffile.TiffFile(path) as tif:
        return tif.pages.first.asarray()


def _delta_t(path: Path) -> float:
    """The DeltaT of the file's plane, as tifffile reads its OME-XML."""
    with tifffile.TiffFile(path) as tif:
        plane = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Pixels"]["Plane"]
    return float(plane["DeltaT"])


@pytest.fixture
def capture(tmp_path: Path) -> Path:
    folder = tmp_path / SERIES
    shutil.copytree(DATA / SERIES, folder)
    return folder


@pytest.mark.parametrize("kind", ["directory", "glob", "glob-chanb", "first-file", "experiment"])
def test_real_capture_is_one_recording_with_exact_pixels_and_its_metadata(capture, tmp_path, kind):
    target = {
        "directory": capture,
        "glob": capture / "*.tif",
        "glob-chanb": capture / "ChanB_*.tif",
        "first-file": capture / _name("A", 0, 0),
        "experiment": capture / "Experiment.xml",
    }[kind]
    out = tmp_path / "out"
    result = _export(str(target), str(out))
    assert result.exit_code == 0, result.output
    assert "holds only 1 pages" not in result.output
    samples = _samples(out)
    assert len(samples) == 9  # T3 x Z3, each (2, 128, 128)
    for i, sample in enumerate(samples):
        t, z = divmod(i, 3)
        expected = np.stack([_page(capture / _name(c, z, t)) for c in "AB"])
        np.testing.assert_array_equal(sample["npy"], expected)
        frame = sample["json"]["frame"]
        assert (frame["t_index"], frame["z_index"]) == (t, z)
        assert frame["t"] == _delta_t(capture / _name("A", z, t))
    assert [s["json"]["frame"]["t"] for s in samples[::3]] == [0.0, 1.97315, 3.94218]
    meta = samples[0]["json"]
    assert meta["format"] == "thorimage"
    assert meta["source"] == str(capture / _name("A", 0, 0))
    assert meta["files"] == 18
    assert (meta["size_t"], meta["size_z"], meta["size_c"]) == (3, 3, 2)
    assert [c["name"] for c in meta["channels"]] == ["ChanA", "ChanB"]
    assert meta["date_acquired"] == "2019-11-21T10:15:18+00:00"  # uTime 1574331318
    assert meta["image_name"] == "Untitled_003"
    assert meta["scale_x"] == meta["scale_y"] == 0.593
    assert meta["scale_z"] == 15.0
    assert meta["frame_rate_hz"] == 60.087
    assert meta["frames_averaged"] == 10
    assert meta["time_increment"] == pytest.approx(3.94218 / 2)  # not the OME-XML's 0
    assert meta["dwell_time_us"] == 0.308199306062498
    assert meta["pixels_per_line"] == meta["lines_per_frame"] == 128
    assert meta["objective"] == "20X OLY"
    assert meta["pmt_gain"] == [
        {"channel": "ChanA", "value": 20.0},
        {"channel": "ChanB", "value": 30.0},
    ]
    assert meta["laser_power"] == [
        {"laser": "PowerRegulator", "value": 1.0, "unit": "%"},
        {"laser": "PowerRegulator2", "value": 1.31, "unit": "%"},
    ]


def test_skip_on_error_does_not_give_two_identical_recordings(capture, tmp_path):
    out = tmp_path / "out"
    result = _export(str(capture), str(out), "--on-error", "skip")
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "out.manifest.json").read_text())
    assert len(manifest["recordings"]) == 1
    assert manifest["recordings"][0]["frames"] == 9


def test_vendor_metadata_is_the_parsed_experiment(capture):
    (source,) = discover([str(capture)], capture)
    with open_source(source) as recording:
        vendor = recording.vendor_metadata["ThorImageExperiment"]
    json.dumps(vendor)
    assert vendor["LSM"]["pixelSizeUM"] == "0.593"
    assert vendor["ZStage"]["stepSizeUM"] == "15"
    assert len(vendor["Pockels"]) == 4
    assert [w["name"] for w in vendor["Wavelengths"]["Wavelength"]] == ["ChanA", "ChanB"]


def test_channel_selection(capture, tmp_path):
    out = tmp_path / "out"
    assert _export(str(capture), str(out), "--channel", "ChanB").exit_code == 0
    samples = _samples(out)
    np.testing.assert_array_equal(samples[4]["npy"], _page(capture / _name("B", 1, 1)))
    assert samples[0]["json"]["channels"] == [{"name": "ChanB"}]
    assert samples[4]["json"]["frame"]["t"] == _delta_t(capture / _name("B", 1, 1))


def test_missing_plane_is_an_error_naming_it(capture, tmp_path):
    (capture / _name("B", 1, 1)).unlink()
    result = _export(str(capture), str(tmp_path / "out"))
    assert result.exit_code == 1
    assert _name("B", 1, 1) in result.stderr and "missing" in result.stderr


def test_preview_folder_is_not_a_recording(tmp_path):
    """ChanA_Preview.tif / ChanB_Preview.tif are the images ThorImageLS shows while it
    streams to Image_0001_0001.raw (Streaming enable="1" rawData="1"), which this
    folder lacks: one clear error, never the previews as recordings."""
    folder = tmp_path / "Untitled_001"
    shutil.copytree(DATA / PREVIEW, folder)
    out = tmp_path / "out"
    result = _export(str(folder), str(out))
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Experiment.xml" in lines[0] and "Image_0001_0001.raw" in lines[0]
    assert "preview" in lines[0]
    _export(str(folder), str(out), "--on-error", "skip")
    assert not list(out.glob("*.tar"))
    assert [s.format for s in discover([str(folder / "ChanA_Preview.tif")], tmp_path)] == [
        "thorimage"
    ]


def test_test_recording_thorimage_layout(tmp_path):
    folder = tmp_path / "Untitled_004"
    args = ["--frames", "3", "--channels", "2", "--height", "16", "--width", "24", "--seed", "2"]
    result = CliRunner().invoke(
        main, ["export", "test-recording", str(folder), "--layout", "thorimage", *args]
    )
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in folder.iterdir())
    assert names == [
        "ChanA_0001_0001_0001_0001.tif",
        "ChanA_0001_0001_0001_0002.tif",
        "ChanA_0001_0001_0001_0003.tif",
        "ChanB_0001_0001_0001_0001.tif",
        "ChanB_0001_0001_0001_0002.tif",
        "ChanB_0001_0001_0001_0003.tif",
        "Experiment.xml",
    ]
    # the structure of a real Experiment.xml: the same elements, in the same order
    real = [e.tag for e in ET.parse(DATA / SERIES / "Experiment.xml").getroot()]
    written = [e.tag for e in ET.parse(folder / "Experiment.xml").getroot()]
    assert [tag for tag in real if tag in written] == written
    assert {"Name", "Date", "Wavelengths", "ZStage", "Timelapse", "LSM", "PMT"} <= set(written)
    with tifffile.TiffFile(folder / names[0]) as tif:
        assert tif.pages.first.compression == 5  # LZW, as ThorImageLS writes
    spec = MovieSpec(frames=3, height=16, width=24, channels=2, seed=2)
    expected = np.stack(list(generate_frames(spec)))
    out = tmp_path / "out"
    assert _export(str(folder), str(out)).exit_code == 0
    samples = _samples(out)
    np.testing.assert_array_equal(np.stack([s["npy"] for s in samples]), expected)
    meta = samples[0]["json"]
    assert meta["format"] == "thorimage" and meta["image_name"] == "Untitled_004"
    assert meta["time_increment"] == pytest.approx(0.5)
    assert [s["json"]["frame"]["t"] for s in samples] == [0.0, 0.5, 1.0]


def test_written_z_stack_gives_t_z_planes(tmp_path):
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 1 << 14, (4, 8, 8), dtype=np.uint16)  # 2 time points x 2 planes
    folder = tmp_path / "Untitled_005"
    write_thorimage(folder, iter(frames), size_z=2, z_step=3.0, compression=None)
    (source,) = discover([str(folder)], tmp_path)
    with open_source(source) as recording:
        assert recording.n_frames == 4 and recording.frame_shape == (8, 8)
        for i in range(4):
            t, z = divmod(i, 2)
            np.testing.assert_array_equal(recording.read_frame(i), _page(folder / _name("A", z, t)))
            assert recording.frame_metadata(i)["t"] == _delta_t(folder / _name("A", z, t))
        assert recording.metadata["scale_z"] == 3.0
        assert recording.metadata["size_z"] == 2


def test_each_sub_image_is_a_recording_of_its_own(capture):
    """Planes of a second sub-image (``_0001_0002_``, a tiled capture) are another series."""
    for path in sorted(capture.glob("Chan?_0001_0001_*_0001.tif")):
        shutil.copy(path, path.with_name(path.name.replace("_0001_0001_", "_0001_0002_", 1)))
    sources = discover([str(capture)], capture)
    assert [(s.series, len([f for f in s.files if f.suffix == ".tif"])) for s in sources] == [
        (0, 18),
        (1, 6),
    ]
    with open_source(sources[1]) as recording:
        assert (recording.n_frames, recording.frame_shape) == (3, (2, 128, 128))
        np.testing.assert_array_equal(
            recording.read_frame(2)[1], _page(capture / "ChanB_0001_0002_0003_0001.tif")
        )


def test_streamed_capture_is_read_from_its_raw_stream(tmp_path):
    """ThorImageLS 3.2 streaming (``Streaming enable="1"``): Image_0001_0001.raw holds,
    per time point, one plane per channel. This layout, checked on the real stream of
    the tests/data/thorimage/mouse_kidney_raw capture (in utils2p's test data; 1.3 MB,
    not kept here), puts that capture's previews exactly at its last frame."""
    rng = np.random.default_rng(8)
    frames = rng.integers(0, 1 << 14, (5, 2, 12, 16), dtype=np.uint16)
    folder = tmp_path / "Untitled_001"
    raw = write_thorimage_stream(folder, iter(frames), n_channels=2)
    out = tmp_path / "out"
    result = _export(str(folder), str(out))
    assert result.exit_code == 0, result.output
    samples = _samples(out)
    assert len(samples) == 5  # the previews are not recordings
    stream = np.fromfile(raw, "<u2").reshape(5, 2, 12, 16)
    for t, sample in enumerate(samples):
        np.testing.assert_array_equal(sample["npy"], stream[t])
        np.testing.assert_array_equal(sample["npy"], frames[t])
        assert sample["json"]["frame"]["t"] == pytest.approx(t / 1.426)
    for c, letter in enumerate("AB"):
        preview = tifffile.imread(folder / f"Chan{letter}_Preview.tif")
        np.testing.assert_array_equal(samples[-1]["npy"][c], preview)
    meta = samples[0]["json"]
    assert meta["format"] == "thorimage" and meta["source"] == str(raw)
    assert (meta["size_t"], meta["size_z"], meta["size_c"]) == (5, 1, 2)
    assert meta["frame_rate_hz"] == 1.426
    assert meta["time_increment"] == pytest.approx(1 / 1.426)
    assert [c["name"] for c in meta["channels"]] == ["ChanA", "ChanB"]


def test_fast_z_stream_leaves_the_flyback_planes_out(tmp_path):
    rng = np.random.default_rng(9)
    frames = rng.integers(1, 1 << 14, (6, 8, 8), dtype=np.uint16)  # 2 volumes of 3 planes
    folder = tmp_path / "Untitled_002"
    raw = write_thorimage_stream(folder, iter(frames), size_z=3, flyback_frames=2)
    stream = np.fromfile(raw, "<u2").reshape(2, 5, 8, 8)  # 3 planes + 2 flyback
    assert not stream[:, 3:].any()
    (source,) = discover([str(folder)], tmp_path)
    with open_source(source) as recording:
        assert recording.n_frames == 6
        for i in range(6):
            t, z = divmod(i, 3)
            np.testing.assert_array_equal(recording.read_frame(i), stream[t, z])
            assert recording.frame_metadata(i)["z_index"] == z
        assert recording.metadata["scale_z"] == 10.0
        assert recording.metadata["time_increment"] == pytest.approx(5 / 1.426)


def test_stream_of_the_wrong_size_is_an_error_naming_it(tmp_path):
    folder = tmp_path / "Untitled_003"
    raw = write_thorimage_stream(folder, iter(np.zeros((3, 2, 8, 8), np.uint16)), n_channels=2)
    raw.write_bytes(raw.read_bytes()[:-10])
    result = _export(str(folder), str(tmp_path / "out"))
    assert result.exit_code == 1
    assert "Image_0001_0001.raw" in result.stderr and "not a whole number" in result.stderr


def test_stream_without_previews_named_alone(tmp_path):
    frames = np.arange(3 * 8 * 8, dtype=np.uint16).reshape(3, 8, 8)
    folder = tmp_path / "Untitled_006"
    raw = write_thorimage_stream(folder, iter(frames))
    (folder / "ChanA_Preview.tif").unlink()
    (source,) = discover([str(raw)], tmp_path)
    assert source.format == "thorimage" and source.path == raw
    with open_source(source) as recording:
        np.testing.assert_array_equal(recording.read_frame(2), frames[2])
