"""ScanImage recordings. No ScanImage file is shipped with the project: the fixtures are
written by :func:`toile.writers.write_scanimage` (ScanImage 2016b-2018, BigTIFF with the
header block of version 3; and a later release's version 4 header with
``SI.hStackManager.actualNumSlices``) and :func:`toile.writers.write_scanimage3`
(ScanImage 3.8 ``state.*`` descriptions, 72 dpi resolution defaults), following the layout
tifffile's ``read_scanimage_metadata`` and ``is_scanimage`` accept. Pixels are compared
with tifffile's own reading of the same pages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import webdataset as wds
from click.testing import CliRunner

from toile.cli import main
from toile.errors import InputError
from toile.formats import discover, open_source
from toile.writers import scanimage_file_name, write_scanimage, write_scanimage3


def _frames(n: int, channels: int = 2, shape: tuple[int, int] = (12, 10), seed: int = 0):
    rng = np.random.default_rng(seed)
    return [rng.integers(-200, 3000, (channels, *shape), dtype=np.int16) for _ in range(n)]


def _export(*args: str):
    return CliRunner().invoke(main, ["export", "frames", *args, "--no-progress", "--workers", "1"])


def _samples(out: Path) -> list[dict]:
    urls = sorted(str(p) for p in out.glob(f"{out.name}-*.tar*"))
    return sorted(
        wds.WebDataset(urls, shardshuffle=False).decode(),
        key=lambda s: (s["json"]["recording_index"], s["json"]["frame"]["index"]),
    )


def _pages(paths: list[Path], **flags: bool) -> list[np.ndarray]:
    """Every page of ``paths`` in order, as tifffile reads them."""
    pages = []
    for path in paths:
        with tifffile.TiffFile(path, **flags) as tif:
            pages.extend(page.asarray() for page in tif.pages)
    return pages


def test_scanimage_2016_file_pixels_and_metadata(tmp_path: Path) -> None:
    """ScanImage 2016b, header v3: two saved channels interleaved page by page."""
    path = tmp_path / "astro_00001_00001.tif"
    frames = _frames(5)
    write_scanimage(path, frames, frame_rate=15.0, zoom=3.0, fov_um=400.0)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_scanimage and tif.scanimage_metadata["version"] == 3
    pages = _pages([path])
    (source,) = discover([str(path)], tmp_path)
    assert source.format == "scanimage"
    with open_source(source) as rec:
        assert rec.n_frames == 5 and rec.frame_shape == (2, 12, 10) and rec.dtype == np.int16
        for i in range(5):
            np.testing.assert_array_equal(rec.read_frame(i), np.stack(pages[2 * i : 2 * i + 2]))
        meta = rec.metadata
        assert meta["format"] == "scanimage" and meta["files"] == 1
        assert meta["frame_rate_hz"] == 15.0
        assert meta["time_increment"] == pytest.approx(1 / 15)
        assert meta["zoom"] == 3.0
        assert meta["lines_per_frame"] == 12 and meta["pixels_per_line"] == 10
        assert meta["scale_x"] == pytest.approx(40.0) and meta["scale_y"] == pytest.approx(40.0)
        assert "scale_z" not in meta
        assert meta["dwell_time_us"] == pytest.approx(0.5 / 15 / 120 * 1e6)
        assert meta["laser_power"] == [{"laser": None, "value": 12.5, "unit": "%"}]
        assert meta["pmt_gain"] == [
            {"channel": "Channel 1", "value": 600.0},
            {"channel": "Channel 2", "value": 650.0},
        ]
        assert meta["bit_depth"] == 14
        assert [c["name"] for c in meta["channels"]] == ["Channel 1", "Channel 2"]
        assert meta["date_acquired"] == "2016-11-03T15:02:08.613"
        vendor = rec.vendor_metadata
        assert vendor["version"] == 3
        assert vendor["FrameData"]["SI.hRoiManager.scanZoomFactor"] == 3.0
        assert vendor["FrameData"]["SI.hScan2D.logFramesPerFile"] == "Inf"  # JSON-safe
        assert "imagingRoiGroup" in vendor["RoiGroups"]
        json.dumps(vendor, allow_nan=False)
        with tifffile.TiffFile(path) as tif:
            stamps = [
                tifffile.tifffile.scanimage_description_metadata(p.description)[
                    "frameTimestamps_sec"
                ]
                for p in tif.pages[::2]
            ]
        for i in range(5):
            frame = rec.frame_metadata(i)
            assert frame["t"] == pytest.approx(stamps[i] - stamps[0], abs=1e-9)
            assert frame["timestamp_s"] == stamps[i] and frame["frame_number"] == i + 1
        assert rec.frame_metadata(3)["t"] != pytest.approx(3 / 15, abs=1e-7)  # not nominal


def test_scanimage_split_acquisition_is_one_recording(tmp_path: Path) -> None:
    """A later ScanImage release (header v4): a fast-z acquisition of 3 slices plus one
    flyback frame per volume that is logged (discardFlybackFrames false), split over
    files; directory, glob, the first file and a later file each give one recording."""
    folder = tmp_path / "mouse1"
    frames = _frames(12, seed=1)  # 4 volumes of 3 slices
    paths = write_scanimage(
        folder,
        frames,
        frames_per_file=5,
        version=4,
        num_slices=3,
        fast_z=True,
        flyback_frames=1,
        discard_flyback=False,
        z_step=2.5,
    )
    assert [p.name for p in paths] == [scanimage_file_name("mouse1", 1, n) for n in (1, 2, 3, 4)]
    (tmp_path / "mouse1" / "notes.txt").write_text("not a recording")
    for pattern in (str(folder), str(folder / "*.tif"), str(paths[0]), str(paths[2])):
        sources = discover([pattern], tmp_path)
        assert [(s.format, s.path, s.files) for s in sources] == [
            ("scanimage", paths[0], tuple(paths))
        ], pattern
    pages = _pages(paths)
    assert len(pages) == 4 * 4 * 2  # flyback frames are in the files
    out = tmp_path / "out"
    result = _export(str(folder), str(out))
    assert result.exit_code == 0, result.output
    samples = _samples(out)
    assert len(samples) == 12
    for i, sample in enumerate(samples):
        t, z = divmod(i, 3)
        page = (t * 4 + z) * 2
        np.testing.assert_array_equal(sample["npy"], np.stack(pages[page : page + 2]))
        np.testing.assert_array_equal(sample["npy"], frames[i])
        meta = sample["json"]
        assert (meta["frame"]["t_index"], meta["frame"]["z_index"]) == (t, z)
        assert meta["frame"]["frame_number"] == t * 4 + z + 1  # numbering goes on across files
    meta = samples[0]["json"]
    assert meta["format"] == "scanimage" and meta["files"] == 4
    assert (meta["size_t"], meta["size_z"], meta["size_c"]) == (4, 3, 2)
    assert meta["scale_z"] == 2.5
    assert meta["time_increment"] == pytest.approx(4 / 30)  # the volume rate
    assert meta["frame_rate_hz"] == 30.0
    assert samples[4]["json"]["frame"]["t"] == pytest.approx(5 / 30, abs=1e-5)
    (entry,) = json.loads((out / "out.manifest.json").read_text())["recordings"]
    assert entry["source"] == str(paths[0]) and entry["format"] == "scanimage"
    vendor = entry["vendor_metadata"]  # the SI header, once per recording
    assert vendor["version"] == 4
    assert vendor["FrameData"]["SI.hStackManager.actualNumSlices"] == 3
    assert "vendor_metadata" not in samples[0]["json"]


def test_scanimage_2015_classic_descriptions(tmp_path: Path) -> None:
    """ScanImage 2015: classic TIFFs, the ``scanimage.SI.`` header in every description."""
    folder = tmp_path / "run"
    frames = _frames(5, seed=11)
    paths = write_scanimage(folder, frames, frames_per_file=3, classic=True, zoom=1.5)
    with tifffile.TiffFile(paths[0]) as tif:
        assert tif.is_scanimage and not tif.is_bigtiff
    pages = _pages(paths, is_scanimage=False)
    (source,) = discover([str(folder / "*.tif")], tmp_path)
    assert source.files == tuple(paths)
    with open_source(source) as rec:
        assert (rec.n_frames, rec.frame_shape) == (5, (2, 12, 10))
        for i in range(5):
            np.testing.assert_array_equal(rec.read_frame(i), np.stack(pages[2 * i : 2 * i + 2]))
        assert rec.metadata["zoom"] == 1.5 and rec.metadata["files"] == 2
        assert rec.metadata["date_acquired"] == "2016-11-03T15:02:08.613"
        assert rec.frame_metadata(4)["frame_number"] == 5
        assert "version" not in rec.vendor_metadata
        assert rec.vendor_metadata["FrameData"]["SI.hRoiManager.scanZoomFactor"] == 1.5


def test_scanimage_slow_stack_frames_per_slice(tmp_path: Path) -> None:
    """ScanImage 2016b slow stack: 2 slices, 3 frames logged per slice, slice by slice."""
    path = tmp_path / "stack.tif"
    frames = _frames(6, channels=1, seed=2)  # t-major: (t0 z0) (t0 z1) (t1 z0) ...
    write_scanimage(path, frames, num_slices=2, frames_per_slice=3, z_step=4.0)
    pages = _pages([path])
    (source,) = discover([str(path)], tmp_path)
    with open_source(source) as rec:
        assert (rec.n_frames, rec.frame_shape) == (6, (12, 10))
        assert (rec.metadata["size_t"], rec.metadata["size_z"]) == (3, 2)
        assert rec.metadata["scale_z"] == 4.0
        for i in range(6):
            t, z = divmod(i, 2)
            np.testing.assert_array_equal(rec.read_frame(i), pages[z * 3 + t])
            np.testing.assert_array_equal(rec.read_frame(i), frames[i][0])


def test_scanimage_channel_selection(tmp_path: Path) -> None:
    path = tmp_path / "two.tif"
    frames = _frames(3, seed=3)
    write_scanimage(path, frames)
    (source,) = discover([str(path)], tmp_path)
    with open_source(source, channel="channel 2") as rec:
        assert rec.frame_shape == (12, 10)
        np.testing.assert_array_equal(rec.read_frame(2), frames[2][1])
        assert rec.metadata["channels"] == [{"name": "Channel 2"}]
        assert rec.frame_metadata(2)["c_index"] == 1


def test_scanimage_missing_or_foreign_file_is_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "acq"
    paths = write_scanimage(folder, _frames(6, seed=4), frames_per_file=2)
    paths[1].unlink()
    with pytest.raises(InputError, match=r"acq_00001_00002\.tif: file of the ScanImage"):
        discover([str(folder)], tmp_path)
    # a file from another acquisition in its place: the frame numbers do not continue
    other = write_scanimage(tmp_path / "other", _frames(6, seed=5), frames_per_file=2)
    paths[1].write_bytes(other[2].read_bytes())
    (source,) = discover([str(folder)], tmp_path)
    with pytest.raises(
        InputError, match=r"acq_00001_00002\.tif: ScanImage frame numbers start at 5"
    ):
        open_source(source)


def test_scanimage_separate_acquisitions_are_separate_recordings(tmp_path: Path) -> None:
    folder = tmp_path / "day"
    folder.mkdir()
    first = write_scanimage(folder / scanimage_file_name("cell", 1), _frames(2, seed=6))
    second = write_scanimage(folder / scanimage_file_name("cell", 2), _frames(3, seed=7))
    sources = discover([str(folder)], tmp_path)
    assert [(s.path, s.files) for s in sources] == [
        (first[0], (first[0],)),
        (second[0], (second[0],)),
    ]


def test_scanimage_3_state_header(tmp_path: Path) -> None:
    """ScanImage 3.8: ``state.*`` lines in every ImageDescription, 72 dpi defaults."""
    path = tmp_path / "cell001.tif"
    frames = _frames(4, seed=8)
    write_scanimage3(path, frames, frame_rate=7.8125, zoom=2.5)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_scanimage
        assert tif.pages[0].tags["XResolution"].value == (72, 1)
    # tifffile's ScanImage reading computes pages from page 0 ("virtual frames"); read
    # every page as a plain TIFF to have all of them
    pages = _pages([path], is_scanimage=False)
    assert len(pages) == 8
    (source,) = discover([str(path)], tmp_path)
    assert source.format == "scanimage"
    with open_source(source) as rec:
        assert (rec.n_frames, rec.frame_shape) == (4, (2, 12, 10))
        for i in range(4):
            np.testing.assert_array_equal(rec.read_frame(i), np.stack(pages[2 * i : 2 * i + 2]))
        meta = rec.metadata
        for key in ("scale_x", "scale_y", "scale_z"):
            assert key not in meta  # the 72 dpi of the resolution tags is no pixel size
        assert meta["frame_rate_hz"] == 7.8125
        assert meta["time_increment"] == pytest.approx(0.128)
        assert meta["zoom"] == 2.5
        assert meta["dwell_time_us"] == pytest.approx(3.2)
        assert (meta["lines_per_frame"], meta["pixels_per_line"]) == (12, 10)
        assert meta["date_acquired"] == "2011-03-21T14:05:53.123"
        assert [c["name"] for c in meta["channels"]] == ["Channel 1", "Channel 2"]
        assert rec.vendor_metadata["state"]["state.software.version"] == 3.8
        assert rec.frame_metadata(3)["t"] == pytest.approx(3 * 0.128)


def test_scanimage_3_stack(tmp_path: Path) -> None:
    """ScanImage 3.8 slow stack: 2 slices of 2 frames, one channel, slice by slice."""
    path = tmp_path / "zstack.tif"
    frames = _frames(4, channels=1, seed=9)
    write_scanimage3(path, frames, num_slices=2, z_step=1.5)
    pages = _pages([path], is_scanimage=False)
    (source,) = discover([str(path)], tmp_path)
    with open_source(source) as rec:
        assert (rec.metadata["size_t"], rec.metadata["size_z"]) == (2, 2)
        assert rec.metadata["scale_z"] == 1.5
        for i in range(4):
            t, z = divmod(i, 2)
            np.testing.assert_array_equal(rec.read_frame(i), pages[z * 2 + t])


def test_scanimage_3_inconsistent_channels_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.tif"
    write_scanimage3(path, _frames(2, seed=10))
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tag = tif.pages[0].tags["ImageDescription"]
        text = tag.value.replace("numberOfChannelsSave=2", "numberOfChannelsSave=3")
        tag.overwrite(text)
    (source,) = discover([str(path)], tmp_path)
    with pytest.raises(InputError, match=r"bad\.tif: state\.acq\.numberOfChannelsSave=3"):
        open_source(source)


@pytest.mark.parametrize("as_directory", [False, True])
def test_test_recording_scanimage_layout(tmp_path: Path, as_directory: bool) -> None:
    target = tmp_path / ("acq" if as_directory else "rec.tif")
    result = CliRunner().invoke(
        main,
        [
            "export",
            "test-recording",
            str(target),
            "--layout",
            "scanimage",
            "--frames",
            "7",
            "--channels",
            "2",
            "--height",
            "16",
            "--width",
            "16",
        ],
    )
    assert result.exit_code == 0, result.output
    files = sorted(target.glob("*.tif")) if as_directory else [target]
    assert len(files) == (3 if as_directory else 1)
    pages = _pages(files)
    out = tmp_path / "out"
    result = _export(str(target), str(out))
    assert result.exit_code == 0, result.output
    samples = _samples(out)
    assert len(samples) == 7
    for i, sample in enumerate(samples):
        np.testing.assert_array_equal(sample["npy"], np.stack(pages[2 * i : 2 * i + 2]))
    meta = samples[0]["json"]
    assert meta["format"] == "scanimage" and meta["files"] == len(files)
    assert meta["time_increment"] == pytest.approx(0.5)
    assert meta["scale_x"] == pytest.approx(0.8)
