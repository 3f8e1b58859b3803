"""The plane layer: TiffPlanes reads pages of TIFF files, PlaneGrid makes recordings of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from toile.errors import InputError
from toile.formats.base import Source
from toile.formats.tiff.planes import PlaneGrid, PlaneRef, TiffPlanes


def _frames(n: int, shape: tuple[int, ...], dtype: str = "uint16", seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.normal(size=(n, *shape)).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=(n, *shape), endpoint=True).astype(dtype)


@pytest.mark.parametrize(
    ("byteorder", "dtype", "bigtiff", "compression"),
    [
        ("<", "uint16", False, None),
        (">", "int16", False, None),
        ("<", "uint8", True, None),
        (">", "float32", True, None),
        ("<", "uint16", False, "zlib"),
        (">", "int32", True, "lzw"),
    ],
)
def test_pages_read_like_tifffile(
    tmp_path: Path, byteorder: str, dtype: str, bigtiff: bool, compression: str | None
) -> None:
    frames = _frames(5, (9, 11), dtype)
    path = tmp_path / "stack.tif"
    tifffile.imwrite(
        path,
        frames,
        byteorder=byteorder,
        bigtiff=bigtiff,
        compression=compression,
        metadata=None,
        rowsperstrip=3,
    )
    planes = TiffPlanes()
    assert planes.geometry(PlaneRef(path, 0)) == (9, 11, 1, np.dtype(dtype))
    out = np.empty((9, 11), dtype)
    with tifffile.TiffFile(path) as tif:
        for page in (4, 0, 2, 3, 1):
            planes.read(PlaneRef(path, page), out)
            assert out.dtype.isnative
            assert np.array_equal(out, tif.pages[page].asarray())
    planes.close()
    planes.close()


def test_plain_pages_need_no_tifffile_page(tmp_path: Path, monkeypatch) -> None:
    frames = _frames(6, (8, 8))
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, frames, metadata=None)
    single = tmp_path / "single.tif"
    tifffile.imwrite(single, frames[0], byteorder=">", metadata=None)
    planes = TiffPlanes()
    calls = []
    original = tifffile.TiffPages.__getitem__

    def counted(self, key):
        calls.append(key)
        return original(self, key)

    monkeypatch.setattr(tifffile.TiffPages, "__getitem__", counted)
    out = np.empty((8, 8), "uint16")
    for page in range(6):
        planes.read(PlaneRef(path, page), out)
        assert np.array_equal(out, frames[page])
    planes.read(PlaneRef(single, 0), out)
    assert np.array_equal(out, frames[0])
    assert calls == []
    assert single not in planes._handles  # a single-page file is opened and closed
    planes.close()


def test_rgb_samples_and_one_sample(tmp_path: Path) -> None:
    data = _frames(2, (6, 7, 3), "uint8")
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, data, photometric="rgb")
    with _closing(TiffPlanes()) as planes:
        assert planes.geometry(PlaneRef(path, 1)) == (6, 7, 3, np.dtype("uint8"))
        out = np.empty((3, 6, 7), "uint8")
        planes.read(PlaneRef(path, 1), out)
        assert np.array_equal(out, np.moveaxis(data[1], -1, 0))
        green = np.empty((6, 7), "uint8")
        planes.read(PlaneRef(path, 0), green, sample=1)
        assert np.array_equal(green, data[0, ..., 1])


class _closing:
    def __init__(self, planes: TiffPlanes) -> None:
        self.planes = planes

    def __enter__(self) -> TiffPlanes:
        return self.planes

    def __exit__(self, *exc: object) -> None:
        self.planes.close()


def test_contiguous_planes_at_offsets(tmp_path: Path) -> None:
    frames = _frames(4, (5, 6), "int16")
    path = tmp_path / "ij.tif"
    tifffile.imwrite(path, frames, imagej=True, metadata={"axes": "TYX"})
    with tifffile.TiffFile(path) as tif:
        start, nbytes = tif.series[0].dataoffset, tif.pages.first.nbytes
    with _closing(TiffPlanes()) as planes:
        out = np.empty((5, 6), "int16")
        for k in (3, 1):
            ref = PlaneRef(path, k, offset=start + k * nbytes)
            planes.read(ref, out)
            assert np.array_equal(out, frames[k])
            planes.data_end(ref)
        with pytest.raises(InputError, match="ij.tif: truncated file"):
            planes.read(PlaneRef(path, 9, offset=path.stat().st_size - 10), out)


def test_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "rows.tif"
    with tifffile.TiffWriter(path) as writer:
        writer.write(np.zeros((8, 8), "uint16"), metadata=None)
        writer.write(np.zeros((4, 8), "uint16"), metadata=None, compression="zlib")
        writer.write(np.zeros((8, 8), "float32"), metadata=None)
    with _closing(TiffPlanes()) as planes:
        out = np.empty((8, 8), "uint16")
        with pytest.raises(InputError, match=r"rows.tif: frame of shape \(4, 8\) \(page 1\)"):
            planes.read(PlaneRef(path, 1), out)
        with pytest.raises(InputError, match="rows.tif: page 2 has pixel type float32"):
            planes.read(PlaneRef(path, 2), out)
        with pytest.raises(InputError, match="rows.tif: has 3 pages, page 7 does not exist"):
            planes.read(PlaneRef(path, 7), out)
        with pytest.raises(InputError, match="gone.tif: file not found"):
            planes.read(PlaneRef(tmp_path / "gone.tif", 0), out)
        cut = tmp_path / "cut.tif"
        tifffile.imwrite(cut, np.ones((64, 64), "uint16"), metadata=None)
        cut.write_bytes(cut.read_bytes()[:4000])
        with pytest.raises(InputError, match="cut.tif"):
            planes.read(PlaneRef(cut, 0), np.empty((64, 64), "uint16"))


def test_few_files_kept_open(tmp_path: Path) -> None:
    paths = []
    for i in range(5):
        paths.append(tmp_path / f"f{i}.tif")
        tifffile.imwrite(
            paths[-1], np.full((3, 4, 4), i, "uint8"), compression="zlib", photometric="minisblack"
        )
    planes = TiffPlanes(max_open=2)
    out = np.empty((4, 4), "uint8")
    for path in paths * 2:
        planes.read(PlaneRef(path, 2), out)
        assert (out == int(path.stem[1])).all()
        assert len(planes._handles) <= 2
    handles = list(planes._handles.values())
    planes.close()
    assert all(h.fh is None and h.tif is None for h in handles) and not planes._handles


def _grid(paths: list[Path], channel=None, **kwargs) -> PlaneGrid:
    # two channels in two files, 3 time points as pages
    return PlaneGrid(
        Source("tiff", paths[0], tuple(paths)),
        {"files": 2, "channels": [{"name": "GCaMP"}, {"name": "tdTom"}], "time_increment": 0.5},
        3,
        1,
        2,
        lambda t, z, c: PlaneRef(paths[c], t, uuid=f"u{c}"),
        ["GCaMP", "tdTom"],
        channel=channel,
        **kwargs,
    )


def test_plane_grid(tmp_path: Path) -> None:
    frames = _frames(3, (2, 6, 5))
    paths = [tmp_path / "a.tif", tmp_path / "b.tif"]
    for c, path in enumerate(paths):
        tifffile.imwrite(path, frames[:, c], metadata=None, photometric="minisblack")
    with _grid(paths) as grid:
        assert (grid.n_frames, grid.frame_shape, grid.dtype) == (3, (2, 6, 5), np.uint16)
        assert grid.channel_names == ["GCaMP", "tdTom"]
        assert np.array_equal(np.stack([grid.read_frame(i) for i in range(3)]), frames)
        meta = grid.metadata
        assert (meta["size_x"], meta["size_y"], meta["size_c"], meta["n_frames"]) == (5, 6, 2, 3)
        assert meta["source"] == str(paths[0]) and meta["dtype"] == "uint16"
        assert grid.frame_metadata(2) == {
            "index": 2,
            "t_index": 2,
            "z_index": 0,
            "t": 1.0,
            "uuid": ["u0", "u1"],
        }
    with _grid(paths, channel="TDTOM", plane_metadata=lambda t, z, c: {"t": 0.1 * t}) as grid:
        assert grid.frame_shape == (6, 5) and grid.channel_names == ["tdTom"]
        assert np.array_equal(grid.read_frame(1), frames[1, 1])
        assert grid.metadata["channels"] == [{"name": "tdTom"}]
        assert grid.frame_metadata(1) == {
            "index": 1,
            "t_index": 1,
            "z_index": 0,
            "c_index": 1,
            "t": 0.1,
            "uuid": "u1",
        }
    with pytest.raises(InputError, match="a.tif: no channel 'x'; channels are: GCaMP, tdTom"):
        _grid(paths, channel="x")
