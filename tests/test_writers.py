"""The input writers produce what acquisition software produces, read back with tifffile."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tifffile

from toile.formats.tiff import ome_xml as ome
from toile.writers import write_imagej_stack, write_ome_tiff, write_prairie_series


def _frames(n: int, shape: tuple[int, ...], dtype: str = "uint16", seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 4000, size=(n, *shape)).astype(dtype)


def test_ome_tiff_single_channel(tmp_path: Path) -> None:
    frames = _frames(6, (12, 10))
    path = write_ome_tiff(tmp_path / "rec.ome.tif", iter(frames), size_z=2, physical_size_z=1.5)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome and len(tif.pages) == 6
        series = tif.series[0]
        assert series.axes == "TZYX" and series.shape == (3, 2, 12, 10)
        assert np.array_equal(series.asarray().reshape(6, 12, 10), frames)
        (image,) = ome.parse_ome(tif.ome_metadata, str(path))
    assert (image["size_t"], image["size_z"], image["size_c"]) == (3, 2, 1)
    assert image["time_increment"] == 0.5 and image["scale_x"] == 0.8 and image["scale_z"] == 1.5
    assert image["date_acquired"] == "2024-03-15T10:00:00"
    assert [p["delta_t"] for p in image["planes"]] == [0.0, 0.0, 0.5, 0.5, 1.0, 1.0]
    assert image["image_name"] == "rec"


def test_ome_tiff_channels_compression_bigtiff(tmp_path: Path) -> None:
    frames = _frames(4, (2, 8, 9), "int16")
    path = write_ome_tiff(
        tmp_path / "c.ome.tif",
        frames,
        channels=["GCaMP", "tdTomato"],
        compression="zstd",
        bigtiff=True,
    )
    with tifffile.TiffFile(path) as tif:
        assert tif.is_bigtiff
        assert tif.pages[0].compression == tifffile.COMPRESSION.ZSTD
        series = tif.series[0]
        assert series.axes == "TCYX"
        assert np.array_equal(series.asarray(), frames)
        (image,) = ome.parse_ome(tif.ome_metadata, str(path))
    assert [c["name"] for c in image["channels"]] == ["GCaMP", "tdTomato"]
    assert image["dtype"] == "int16"


def test_ome_tiff_rejects_inconsistent_frames(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="differs"):
        write_ome_tiff(
            tmp_path / "x.ome.tif", [np.zeros((4, 4), "uint8"), np.zeros((4, 5), "uint8")]
        )
    with pytest.raises(ValueError, match="size_z"):
        write_ome_tiff(tmp_path / "y.ome.tif", _frames(3, (4, 4)), size_z=2)


def test_prairie_series_layout(tmp_path: Path) -> None:
    frames = _frames(5, (2, 16, 20))
    paths = write_prairie_series(tmp_path, iter(frames), n_channels=2, time_increment=0.25)
    names = [p.name for p in paths]
    assert len(paths) == 10
    assert names[0] == "TSeries-03152024-001_Cycle00001_Ch1_000001.ome.tif"
    assert "TSeries-03152024-001_Cycle00001_Ch2_000005.ome.tif" in names
    master = paths[0]
    with tifffile.TiffFile(master) as tif:
        doc = ome.read_ome(tif.pages[0].description, str(master))
        series = tif.series[0]
        assert series.is_multifile
        assert series.shape == (5, 2, 16, 20)
        assert len(series.pages) == 10 and all(p is not None for p in series.pages)
        assert np.array_equal(series.asarray(), frames)
    assert doc is not None and doc.binary_only is None
    (image,) = doc.images
    assert len(image["tiff_data"]) == 10
    entry = next(td for td in image["tiff_data"] if td["first_c"] == 1 and td["first_t"] == 4)
    assert entry["file_name"] == "TSeries-03152024-001_Cycle00001_Ch2_000005.ome.tif"
    assert entry["ifd"] == 0 and entry["plane_count"] == 1
    assert [p["delta_t"] for p in image["planes"] if p["c_index"] == 0] == [
        0.0,
        0.25,
        0.5,
        0.75,
        1.0,
    ]
    # every other file points at the master
    for path in paths[1:]:
        with tifffile.TiffFile(path) as tif:
            assert len(tif.pages) == 1
            other = ome.read_ome(tif.pages[0].description, str(path))
        assert other is not None and other.images == []
        assert other.binary_only == ome.BinaryOnly(master.name, doc.uuid)
        uuid = next(td["uuid"] for td in image["tiff_data"] if td["file_name"] == path.name)
        assert other.uuid == uuid


def test_imagej_stack(tmp_path: Path) -> None:
    frames = _frames(6, (8, 9), "float32")
    path = write_imagej_stack(
        tmp_path / "ij.tif", iter(frames), finterval=0.2, spacing=2.0, size_z=3
    )
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej and not tif.is_ome
        meta = tif.imagej_metadata
        assert (meta["frames"], meta["slices"], meta["images"]) == (2, 3, 6)
        assert meta["finterval"] == 0.2 and meta["spacing"] == 2.0 and meta["unit"] == "micron"
        assert tif.pages[0].tags["XResolution"].value[0] / tif.pages[0].tags["XResolution"].value[
            1
        ] == pytest.approx(1.25)
        series = tif.series[0]
        assert series.axes == "TZYX"
        assert np.array_equal(series.asarray().reshape(6, 8, 9), frames)


def test_writers_stream_frames(tmp_path: Path) -> None:
    """200 frames from a generator are written without holding them all in memory."""
    frame_bytes = 128 * 128 * 2

    def generate() -> Iterator[np.ndarray]:
        for i in range(200):
            yield np.full((128, 128), i, dtype="uint16")

    for write in (
        lambda: write_ome_tiff(tmp_path / "s.ome.tif", generate()),
        lambda: write_imagej_stack(tmp_path / "s.tif", generate()),
    ):
        tracemalloc.start()
        try:
            write()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 20 * frame_bytes, peak
    with tifffile.TiffFile(tmp_path / "s.ome.tif") as tif:
        assert len(tif.pages) == 200
        assert int(tif.pages[199].asarray()[0, 0]) == 199
