"""Reading real recordings: Prairie View series, OME-TIFF, ImageJ and plain TIFF, errors."""

from __future__ import annotations

import json
import logging
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import tifffile

from toile.errors import InputError
from toile.formats import Recording, Source, discover, open_source
from toile.formats.ome_tiff import count_series
from toile.writers import write_imagej_stack, write_ome_tiff, write_prairie_series

DATA = Path(__file__).parent / "data"
MM_NAMES = [
    "image_stack_tpzc_50tp_2p_5z_3c_512k_1_MMStack_2-Pos000_000.ome.tif",
    "image_stack_tpzc_50tp_2p_5z_3c_512k_1_MMStack_2-Pos001_000.ome.tif",
]


def _source(path: Path, files: list[Path] | None = None, series: int = 0) -> Source:
    """The source of series ``series`` of ``path``, with the format discovery gives it."""
    try:
        fmt = discover([str(path)], path.parent)[0].format
    except InputError:
        fmt = "tiff"
    return Source(fmt, path, tuple(files or [path]), series=series, name=path.name)


def open_recording(source: Source, channel: str | int | None = None) -> Recording:
    return open_source(source, channel)


def _frames(n: int, shape: tuple[int, ...], dtype: str = "uint16", seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.normal(size=(n, *shape)).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=(n, *shape), endpoint=True).astype(dtype)


def _read_all(source: Source, **kwargs) -> tuple[np.ndarray, list[dict], dict]:
    with open_recording(source, **kwargs) as reader:
        items = list(reader)
        assert [i for i, _, _ in items] == list(range(reader.n_frames))
        for _, image, _ in items:
            assert image.shape == reader.frame_shape and image.dtype == reader.dtype
            assert image.flags.c_contiguous
        return np.stack([im for _, im, _ in items]), [m for _, _, m in items], reader.metadata


# -- Prairie View ------------------------------------------------------------------


@pytest.fixture
def prairie(tmp_path: Path) -> tuple[list[Path], np.ndarray]:
    frames = _frames(5, (2, 16, 20))
    paths = write_prairie_series(tmp_path / "TSeries-03152024-001", iter(frames), n_channels=2)
    return paths, frames


def test_prairie_two_channels(prairie: tuple[list[Path], np.ndarray]) -> None:
    paths, frames = prairie
    source = _source(paths[0], paths)
    with open_recording(source) as reader:
        assert reader.n_frames == 5
        assert reader.frame_shape == (2, 16, 20)
        assert reader.dtype == np.uint16
        assert reader.channel_names == ["Ch1", "Ch2"]
        master_uuid = tifffile.TiffFile(paths[0]).pages[0].description.split('UUID="urn:uuid:')[1]
        assert reader.metadata["uuid"] == master_uuid[:36]
    data, frame_meta, meta = _read_all(source)
    assert np.array_equal(data, frames)
    assert meta["format"] == "prairie-view"
    assert meta["files"] == 10
    assert meta["source"] == str(paths[0])
    assert meta["_source_filename"] == paths[0].name
    assert (meta["size_x"], meta["size_y"], meta["size_c"], meta["size_t"]) == (20, 16, 2, 5)
    assert meta["n_frames"] == 5 and meta["series"] == 0
    assert meta["time_increment"] == 0.5 and meta["scale_x"] == 0.8
    assert meta["scale_unit"] == "um" and meta["t_unit"] == "s"
    assert meta["date_acquired"] == "2024-03-15T10:00:00"
    assert [c["name"] for c in meta["channels"]] == ["Ch1", "Ch2"]
    assert "recording_index" not in meta and "planes" not in meta and "tiff_data" not in meta
    assert [m["t"] for m in frame_meta] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert frame_meta[2]["t_index"] == 2 and frame_meta[2]["z_index"] == 0
    assert "c_index" not in frame_meta[2]
    uuids = [u for m in frame_meta for u in m["uuid"]]
    assert len(set(uuids)) == 10
    json.dumps(meta)
    json.dumps(frame_meta)
    assert count_series(paths[0]) == 1


@pytest.mark.parametrize(("channel", "index"), [("Ch2", 1), (0, 0), ("ch2", 1), (1, 1)])
def test_prairie_channel_selection(
    prairie: tuple[list[Path], np.ndarray], channel: str | int, index: int
) -> None:
    paths, frames = prairie
    data, frame_meta, _ = _read_all(_source(paths[0], paths), channel=channel)
    assert data.shape == (5, 16, 20)
    assert np.array_equal(data, frames[:, index])
    assert all(m["c_index"] == index for m in frame_meta)
    assert all(isinstance(m["uuid"], str) for m in frame_meta)
    with open_recording(_source(paths[0], paths), channel=channel) as reader:
        assert reader.channel_names == [f"Ch{index + 1}"]


@pytest.mark.parametrize("channel", ["Ch3", 2, "GCaMP"])
def test_unknown_channel(prairie: tuple[list[Path], np.ndarray], channel: str | int) -> None:
    paths, _ = prairie
    with pytest.raises(InputError, match="Ch1, Ch2") as info:
        open_recording(_source(paths[0], paths), channel=channel)
    assert paths[0].name in str(info.value)


def test_read_frame_into_a_reused_buffer(prairie: tuple[list[Path], np.ndarray]) -> None:
    paths, frames = prairie
    with open_recording(_source(paths[0], paths)) as reader:
        buffer = np.full(reader.frame_shape, 7, dtype=reader.dtype)
        for index in (3, 0, 4):
            assert reader.read_frame(index, out=buffer) is buffer
            assert np.array_equal(buffer, frames[index])
        with pytest.raises(ValueError, match="out must be"):
            reader.read_frame(0, out=np.empty((16, 20), dtype=reader.dtype))
        with pytest.raises(ValueError, match="out must be"):
            reader.read_frame(0, out=np.empty(reader.frame_shape, dtype="float32"))
        with pytest.raises(ValueError, match="out must be"):
            reader.read_frame(0, out=np.empty((2, 20, 16), dtype=reader.dtype).transpose(0, 2, 1))


def test_prairie_missing_file(prairie: tuple[list[Path], np.ndarray]) -> None:
    paths, _ = prairie
    missing = paths[0].parent / "TSeries-03152024-001_Cycle00001_Ch2_000003.ome.tif"
    missing.unlink()
    with pytest.raises(InputError, match="Ch2_000003.ome.tif.*missing"):
        open_recording(_source(paths[0], paths))


def test_prairie_truncated_middle_file(prairie: tuple[list[Path], np.ndarray]) -> None:
    paths, _ = prairie
    middle = paths[0].parent / "TSeries-03152024-001_Cycle00001_Ch1_000003.ome.tif"
    middle.write_bytes(middle.read_bytes()[: middle.stat().st_size // 2])
    with open_recording(_source(paths[0], paths)) as reader:
        reader.read_frame(1)
        with pytest.raises(InputError, match="Ch1_000003.ome.tif"):
            reader.read_frame(2)


def test_prairie_frame_of_another_shape(prairie: tuple[list[Path], np.ndarray]) -> None:
    paths, _ = prairie
    other = paths[0].parent / "TSeries-03152024-001_Cycle00001_Ch2_000004.ome.tif"
    with tifffile.TiffFile(other) as tif:
        description = tif.pages[0].description
    tifffile.imwrite(other, np.zeros((16, 18), "uint16"), description=description, metadata=None)
    reader = open_recording(_source(paths[0], paths))
    with reader, pytest.raises(InputError, match="Ch2_000004.ome.tif.*shape"):
        list(reader)


def test_opening_a_binary_only_file_reads_the_series(
    prairie: tuple[list[Path], np.ndarray],
) -> None:
    paths, frames = prairie
    data, _, meta = _read_all(_source(paths[3], paths))
    assert np.array_equal(data, frames)
    assert meta["source"] == str(paths[0])


# -- real OME-XML documents embedded in TIFF files ---------------------------------


def _mmstack(tmp_path: Path) -> list[np.ndarray]:
    """The two position files of the Micro-Manager MMStack document, 30 XYCZT pages each."""
    xml = (DATA / "MMStack.ome.xml").read_text(encoding="utf-8")
    stacks = []
    for position, name in enumerate(MM_NAMES):
        data = ((np.arange(30 * 256 * 256) * (position + 3)) % 65521).astype("uint16")
        data = data.reshape(30, 256, 256)
        tifffile.imwrite(tmp_path / name, data, description=xml.encode(), metadata=None)
        stacks.append(data)
    return stacks


def test_mmstack(tmp_path: Path) -> None:
    stacks = _mmstack(tmp_path)
    path = tmp_path / MM_NAMES[0]
    assert count_series(path) == 2
    with open_recording(_source(path)) as reader:
        assert reader.n_frames == 10  # 5 z x 2 t
        assert reader.frame_shape == (3, 256, 256)
        assert reader.channel_names == ["Cy5", "DAPI", "FITC"]
        # frame index = t * size_z + z; XYCZT pages: c + 3 * (z + 5 * t)
        assert np.array_equal(reader.read_frame(7), stacks[0][21:24])
        meta = reader.metadata
        first, second, seventh = (reader.frame_metadata(i) for i in (0, 1, 7))
    assert meta["time_increment"] == pytest.approx(0.001)  # TimeIncrement="1.0" ms
    assert meta["scale_x"] == 2.0 and meta["scale_z"] == 1.75
    assert meta["stage_label"]["name"] == "2-Pos000_000"
    assert meta["format"] == "ome-tiff" and meta["files"] == 1
    assert "uuid" not in meta  # the document has no root UUID
    assert first["t"] == pytest.approx(0.117)  # DeltaT="117.0" ms
    assert (first["position_z"], second["position_z"]) == (-4.0, -2.25)
    assert (seventh["t_index"], seventh["z_index"]) == (1, 2)
    assert "uuid" not in first  # a single-file series


def test_mmstack_second_position_and_channel(tmp_path: Path) -> None:
    stacks = _mmstack(tmp_path)
    path = tmp_path / MM_NAMES[0]
    data, frame_meta, meta = _read_all(_source(path, series=1), channel="DAPI")
    assert np.array_equal(data, stacks[1][1::3])
    assert meta["series"] == 1 and meta["stage_label"]["x"] == 256.0
    assert frame_meta[0]["c_index"] == 1
    (tmp_path / MM_NAMES[1]).unlink()
    assert open_recording(_source(path)).n_frames == 10
    with pytest.raises(InputError, match="Pos001_000.ome.tif.*missing"):
        open_recording(_source(path, series=1))
    with pytest.raises(InputError, match="series 2 does not exist"):
        open_recording(_source(path, series=2))


def test_renamed_single_file_ome_tiff(tmp_path: Path) -> None:
    xml = (DATA / "MMStack.ome.xml").read_text(encoding="utf-8")
    start = xml.index('<Image ID="Image:1"')
    xml = xml[:start] + xml[xml.index("</Image>", start) + len("</Image>") :]
    data = np.arange(30 * 256 * 256, dtype="uint32").astype("uint16").reshape(30, 256, 256)
    path = tmp_path / "renamed.ome.tif"
    tifffile.imwrite(path, data, description=xml.encode(), metadata=None)
    assert np.array_equal(_read_all(_source(path))[0], data.reshape(10, 3, 256, 256))


def test_alternate_units_document(tmp_path: Path) -> None:
    xml = (DATA / "instrument-units-alternate.ome.xml").read_text(encoding="utf-8")
    pixels = np.arange(24, dtype="uint8").reshape(4, 6)
    path = tmp_path / "swatch.ome.tif"
    tifffile.imwrite(path, pixels, description=xml.encode(), metadata=None)
    data, _, meta = _read_all(_source(path))
    assert np.array_equal(data, pixels[np.newaxis])
    assert meta["scale_x"] == pytest.approx(10000.0)  # 1 cm
    assert meta["channels"][0]["excitation_wavelength"] == pytest.approx(610.5)
    assert meta["date_acquired"] == "2010-02-23T12:51:30"


def test_bad_document_is_a_clear_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    xml = (DATA / "bad.ome.xml").read_text(encoding="utf-8")
    path = tmp_path / "bad.ome.tif"
    tifffile.imwrite(
        path,
        np.zeros((3, 8, 8), "uint16"),
        description=xml.encode(),
        metadata=None,
        photometric="minisblack",
    )
    with caplog.at_level(logging.WARNING), pytest.raises(InputError, match="bad.ome.tif") as info:
        open_recording(_source(path))
    assert "SizeC=3" in str(info.value) or "14799" in str(info.value)
    assert any("bad.ome.tif" in r.getMessage() for r in caplog.records)


def test_malformed_ome_xml_is_a_clear_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_ome_tiff(tmp_path / "broken.ome.tif", _frames(4, (8, 9)))
    with tifffile.TiffFile(path) as tif:
        xml = tif.ome_metadata
    tifffile.tiffcomment(path, comment=xml[: len(xml) // 2].encode())
    with caplog.at_level(logging.WARNING, logger="toile.formats.tiff.ome_xml"):
        with pytest.raises(InputError, match="broken.ome.tif: malformed OME-XML"):
            open_recording(_source(path))
        with pytest.raises(InputError, match="broken.ome.tif: malformed OME-XML"):
            count_series(path)
    assert not caplog.records  # one clear error, no warnings besides


def test_ome_page_of_another_shape(tmp_path: Path) -> None:
    frames = _frames(4, (32, 32))
    path = write_ome_tiff(tmp_path / "rows.ome.tif", frames)
    with tifffile.TiffFile(path) as tif:
        xml = tif.ome_metadata
    with tifffile.TiffWriter(path) as writer:
        for index, frame in enumerate(frames):
            page = frame[:16] if index == 2 else frame
            writer.write(page, description=xml.encode() if index == 0 else None, metadata=None)
    with open_recording(_source(path)) as reader:
        assert np.array_equal(reader.read_frame(1), frames[1])
        with pytest.raises(InputError, match=r"rows.ome.tif: frame of shape \(16, 32\)"):
            reader.read_frame(2)


@pytest.mark.parametrize(
    ("byteorder", "dtype", "bigtiff"),
    [("<", "uint16", False), (">", "int16", False), ("<", "uint8", True), (">", "float32", True)],
)
def test_ome_stack_planes_are_read_from_their_ifds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, byteorder: str, dtype: str, bigtiff: bool
) -> None:
    # Plain strips of the main file are read straight from each IFD's tags, without a
    # tifffile page object per frame; the pixels must be the same.
    frames = _frames(12, (9, 11), dtype)
    path = tmp_path / "plain.ome.tif"
    tifffile.imwrite(
        path, frames, ome=True, byteorder=byteorder, bigtiff=bigtiff, metadata={"axes": "TYX"}
    )
    with open_recording(_source(path)) as reader:
        calls = []
        original = tifffile.TiffPages.__getitem__

        def counted(self, key):
            calls.append(key)
            return original(self, key)

        monkeypatch.setattr(tifffile.TiffPages, "__getitem__", counted)
        data = np.stack([reader.read_frame(i) for i in range(reader.n_frames)])
    assert data.dtype == np.dtype(dtype) and data.dtype.isnative
    assert np.array_equal(data, frames)
    assert calls == []


def test_ome_size_contradicts_pages(tmp_path: Path) -> None:
    path = write_ome_tiff(tmp_path / "short.ome.tif", _frames(10, (8, 8)))
    with tifffile.TiffFile(path) as tif:
        xml = tif.ome_metadata
    tifffile.tiffcomment(path, comment=xml.replace('SizeT="10"', 'SizeT="900"').encode())
    with pytest.raises(InputError, match=r"short.ome.tif.*SizeT=900.*10 pages"):
        open_recording(_source(path))
    # one TiffData for "the whole file" and an explicit IFD beyond the end
    start, end = xml.index("<TiffData"), xml.rindex("</TiffData>") + len("</TiffData>")
    for tiff_data in ("<TiffData/>", '<TiffData IFD="0" PlaneCount="900"/>'):
        changed = xml[:start] + tiff_data + xml[end:]
        tifffile.tiffcomment(path, comment=changed.replace('SizeT="10"', 'SizeT="900"').encode())
        with pytest.raises(InputError, match=r"short.ome.tif.*900.*10 pages"):
            open_recording(_source(path))


def test_ome_shape_contradicts_pixels(tmp_path: Path) -> None:
    path = write_ome_tiff(tmp_path / "wide.ome.tif", _frames(2, (8, 8)))
    with tifffile.TiffFile(path) as tif:
        xml = tif.ome_metadata
    tifffile.tiffcomment(path, comment=xml.replace('SizeX="8"', 'SizeX="512"').encode())
    with pytest.raises(InputError, match=r"wide.ome.tif.*512x8.*8x8"):
        open_recording(_source(path))


# -- OME-TIFF written by other writers ---------------------------------------------


@pytest.mark.parametrize("axes", ["CTZYX", "TZCYX", "ZTCYX"])
def test_any_dimension_order(tmp_path: Path, axes: str) -> None:
    sizes = {"T": 3, "Z": 2, "C": 2, "Y": 6, "X": 7}
    data = _frames(1, tuple(sizes[a] for a in axes))[0]
    path = tmp_path / "order.ome.tif"
    tifffile.imwrite(path, data, ome=True, metadata={"axes": axes})
    tzc = np.transpose(data, [axes.index(a) for a in "TZCYX"])
    result, frame_meta, meta = _read_all(_source(path))
    assert np.array_equal(result, tzc.reshape(6, 2, 6, 7))
    assert (meta["size_t"], meta["size_z"], meta["size_c"]) == (3, 2, 2)
    assert [(m["t_index"], m["z_index"]) for m in frame_meta][:3] == [(0, 0), (0, 1), (1, 0)]


def test_multi_series_ome_file(tmp_path: Path) -> None:
    first, second = _frames(4, (8, 9)), _frames(3, (5, 6), "uint8", seed=1)
    path = tmp_path / "two.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as writer:
        writer.write(first, metadata={"axes": "TYX", "Name": "a"})
        writer.write(second, metadata={"axes": "TYX", "Name": "b"})
    assert count_series(path) == 2
    data, _, meta = _read_all(_source(path, series=1))
    assert np.array_equal(data, second)
    assert meta["image_name"] == "b" and meta["series"] == 1 and meta["dtype"] == "uint8"
    assert np.array_equal(_read_all(_source(path))[0], first)


@pytest.mark.parametrize("compression", ["lzw", "zstd", "zlib", None])
def test_compression_and_bigtiff(tmp_path: Path, compression: str | None) -> None:
    frames = _frames(4, (2, 20, 24))
    path = write_ome_tiff(
        tmp_path / "c.ome.tif",
        frames,
        channels=["a", "b"],
        compression=compression,
        bigtiff=compression is None,
    )
    data, _, _ = _read_all(_source(path))
    assert np.array_equal(data, frames)


@pytest.mark.parametrize("dtype", ["uint8", "int16", "float32", "uint16"])
def test_pixel_types(tmp_path: Path, dtype: str) -> None:
    frames = _frames(3, (10, 12), dtype)
    path = write_ome_tiff(tmp_path / f"{dtype}.ome.tif", iter(frames))
    data, _, meta = _read_all(_source(path))
    assert data.dtype == np.dtype(dtype)
    assert np.array_equal(data, frames)
    assert meta["dtype"] == dtype


@pytest.mark.parametrize("layout", ["imagej", "compressed"])
def test_long_stack_without_ome_is_read_in_bounded_memory(tmp_path: Path, layout: str) -> None:
    # A tifffile page object per plane would take several kilobytes each; planes are kept
    # as positions, and pages are made or read one at a time.
    frames = _frames(10_000, (8, 8))
    path = tmp_path / "long.tif"
    if layout == "imagej":
        tifffile.imwrite(path, frames, imagej=True, metadata={"axes": "TYX"})
    else:
        tifffile.imwrite(path, frames, compression="zlib", metadata=None)
    tracemalloc.start()
    try:
        with open_recording(_source(path)) as reader:
            assert reader.n_frames == len(frames)
            for index in (0, 4321, len(frames) - 1):
                assert np.array_equal(reader.read_frame(index), frames[index])
            _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, f"opening and reading peaked at {peak / 2**20:.1f} MiB"


def test_big_endian_file(tmp_path: Path) -> None:
    frames = _frames(5, (10, 12), "int16")
    path = tmp_path / "be.tif"
    tifffile.imwrite(path, frames, byteorder=">", metadata=None)
    data, _, _ = _read_all(_source(path))
    assert data.dtype == np.dtype("int16") and data.dtype.isnative
    assert np.array_equal(data, frames)


@pytest.mark.parametrize(
    ("data", "problem"),
    [(np.zeros((2, 8, 8), "complex64"), "complex64"), (np.zeros((2, 8, 8), bool), "1-bit")],
)
def test_unsupported_pixel_types(tmp_path: Path, data: np.ndarray, problem: str) -> None:
    path = tmp_path / "odd.tif"
    tifffile.imwrite(path, data, metadata=None)
    with pytest.raises(InputError, match=f"odd.tif.*{problem}"):
        open_recording(_source(path))


# -- ImageJ and plain TIFF ---------------------------------------------------------


def test_imagej_stack(tmp_path: Path) -> None:
    frames = _frames(6, (8, 9))
    path = write_imagej_stack(
        tmp_path / "ij.tif", iter(frames), finterval=0.2, spacing=2.0, size_z=3
    )
    data, frame_meta, meta = _read_all(_source(path))
    assert np.array_equal(data, frames)
    assert meta["format"] == "imagej"
    assert (meta["size_t"], meta["size_z"], meta["size_c"]) == (2, 3, 1)
    assert meta["scale_z"] == 2.0 and meta["time_increment"] == pytest.approx(0.2)
    assert meta["scale_x"] == pytest.approx(0.8) and meta["scale_y"] == pytest.approx(0.8)
    assert [(m["t_index"], m["z_index"]) for m in frame_meta] == [
        (t, z) for t in range(2) for z in range(3)
    ]
    assert frame_meta[4]["t"] == pytest.approx(0.2)


def test_imagej_hyperstack_with_channels(tmp_path: Path) -> None:
    data = _frames(3, (2, 8, 9))
    path = tmp_path / "hyper.tif"
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TCYX", "unit": "um"})
    result, _, meta = _read_all(_source(path))
    assert np.array_equal(result, data)
    assert meta["size_c"] == 2
    one, _, _ = _read_all(_source(path), channel=1)
    assert np.array_equal(one, data[:, 1])


def test_plain_tiff_with_resolution(tmp_path: Path) -> None:
    frames = _frames(7, (8, 9))
    path = tmp_path / "plain.tif"
    tifffile.imwrite(
        path, frames, metadata=None, resolution=(2.0, 4.0), resolutionunit="CENTIMETER"
    )
    data, frame_meta, meta = _read_all(_source(path))
    assert np.array_equal(data, frames)
    assert meta["format"] == "tiff" and meta["n_frames"] == 7
    assert meta["scale_x"] == pytest.approx(5000.0) and meta["scale_y"] == pytest.approx(2500.0)
    assert "time_increment" not in meta and "t" not in frame_meta[3]
    assert "channels" not in meta and "uuid" not in meta


def test_tifffile_shaped_stack(tmp_path: Path) -> None:
    frames = _frames(5, (8, 9), "float32")
    path = tmp_path / "shaped.tif"
    tifffile.imwrite(path, frames)
    assert np.array_equal(_read_all(_source(path))[0], frames)


def test_rgb_pages_are_channels(tmp_path: Path) -> None:
    data = _frames(2, (6, 7, 3), "uint8")
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, data, photometric="rgb")
    result, _, _ = _read_all(_source(path))
    assert np.array_equal(result, np.moveaxis(data, -1, 1))
    green, _, _ = _read_all(_source(path), channel="G")
    assert np.array_equal(green, data[..., 1])


# -- broken files ------------------------------------------------------------------


def test_missing_empty_and_non_tiff_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nothere.tif: file not found"):
        open_recording(_source(tmp_path / "nothere.tif"))
    empty = tmp_path / "empty.tif"
    empty.touch()
    with pytest.raises(InputError, match="empty.tif: empty file"):
        open_recording(_source(empty))
    text = tmp_path / "notes.tif"
    text.write_text("these are my notes, not an image\n")
    with pytest.raises(InputError, match="notes.tif: not a TIFF file"):
        open_recording(_source(text))
    with pytest.raises(InputError, match="notes.tif"):
        count_series(text)


@pytest.mark.parametrize("writer", ["ome", "imagej", "plain"])
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_files(tmp_path: Path, writer: str, keep: float) -> None:
    frames = _frames(10, (32, 32))
    path = tmp_path / "cut.tif"
    if writer == "ome":
        write_ome_tiff(path, frames)
    elif writer == "imagej":
        write_imagej_stack(path, frames)
    else:
        tifffile.imwrite(path, frames, metadata=None)
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])
    with pytest.raises(InputError, match="cut.tif"), open_recording(_source(path)) as reader:
        list(reader)


def test_corrupt_header(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.tif"
    path.write_bytes(b"II*\x00" + b"\xff\xff\xff\x7f" + bytes(64))
    with pytest.raises(InputError, match="corrupt.tif"):
        open_recording(_source(path))


def test_frames_of_different_shapes(tmp_path: Path) -> None:
    path = tmp_path / "mixed.tif"
    with tifffile.TiffWriter(path) as writer:
        writer.write(np.zeros((8, 9), "uint8"), metadata=None)
        writer.write(np.zeros((8, 10), "uint8"), metadata=None)
    with pytest.raises(InputError, match="mixed.tif: frames of different shapes"):
        open_recording(_source(path))


# -- streaming -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ome", "imagej", "prairie"])
def test_iteration_streams_frames(tmp_path: Path, kind: str) -> None:
    """Iterating 200 frames keeps only a few frames in memory, and can be repeated."""
    shape = (256, 256)
    frame_bytes = 256 * 256 * 2

    def generate():
        for i in range(200):
            yield np.full(shape, i, dtype="uint16")

    if kind == "ome":
        path = write_ome_tiff(tmp_path / "long.ome.tif", generate())
        source = _source(path)
    elif kind == "imagej":
        path = write_imagej_stack(tmp_path / "long.tif", generate())
        source = _source(path)
    else:
        paths = write_prairie_series(tmp_path / "pv", generate())
        source = _source(paths[0], paths)
    with open_recording(source) as reader:
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            total = 0
            for index, image, _ in reader:
                assert int(image[0, 0]) == index
                total += 1
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
        assert total == 200
        assert peak < 6 * frame_bytes, peak
        again = [int(image[5, 5]) for _, image, _ in reader]
        assert again == list(range(200))
        assert int(reader.read_frame(150)[0, 0]) == 150


def test_close_releases_file_handles(tmp_path: Path) -> None:
    # Compressed files are read through tifffile, which keeps a few of them open.
    frames = _frames(5, (2, 16, 20))
    paths = write_prairie_series(
        tmp_path / "TSeries-03152024-001", iter(frames), n_channels=2, compression="zlib"
    )
    reader = open_recording(_source(paths[0], paths))
    list(reader)
    handles = list(reader.planes._handles.values())
    tiffs = [h.tif for h in handles if h.tif is not None]
    assert len(handles) > 1 and tiffs and not any(t._stream.closed for t in tiffs)
    reader.close()
    assert all(t._stream.closed for t in tiffs)
    assert all(h.fh is None and h.tif is None for h in handles) and not reader.planes._handles
    reader.close()


@pytest.mark.parametrize("dtype", ["uint8", "int16", "float32"])
@pytest.mark.parametrize("compression", [None, "zlib"])
def test_prairie_files_read_directly_or_through_tifffile_alike(tmp_path, dtype, compression):
    frames = _frames(4, (2, 12, 10), dtype=dtype, seed=3)
    paths = write_prairie_series(
        tmp_path / "TSeries-1", iter(frames), n_channels=2, compression=compression
    )
    with open_recording(_source(paths[0], paths)) as reader:
        got = np.stack([image for _, image, _ in reader])
    np.testing.assert_array_equal(got, frames)
    assert got.dtype == frames.dtype


def test_prairie_file_of_another_pixel_type_is_an_error(tmp_path):
    frames = _frames(3, (12, 10), seed=4)
    paths = write_prairie_series(tmp_path / "TSeries-1", iter(frames))
    # Replace a middle file's pixels by float32 ones of the same shape.
    tifffile.imwrite(paths[1], frames[1].astype(np.float32), photometric="minisblack")
    with open_recording(_source(paths[0], paths)) as reader, pytest.raises(InputError) as error:
        list(reader)
    assert paths[1].name in str(error.value)
