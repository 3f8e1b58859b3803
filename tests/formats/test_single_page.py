"""Single-page TIFF files read with few system calls (toile.formats.single_page), and
everything that reader leaves to TiffPlanes still read exactly, or reported."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
import tifffile

from toile.errors import InputError
from toile.formats import single_page
from toile.formats.single_page import SinglePagePlanes, read_first_page
from toile.formats.tiff.planes import PlaneRef


def _plane(shape: tuple[int, int], dtype: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.normal(size=shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)


@pytest.mark.parametrize(
    ("byteorder", "dtype", "rowsperstrip", "bigtiff"),
    [
        ("<", "uint16", None, False),
        (">", "int16", None, False),
        ("<", "uint8", 3, False),
        (">", "float32", 2, False),
        ("<", "uint16", None, True),
        (">", "int32", 5, True),
    ],
)
def test_plain_pages_read_straight_and_exactly(tmp_path, byteorder, dtype, rowsperstrip, bigtiff):
    plane = _plane((12, 10), dtype, 1)
    path = tmp_path / "frame.tif"
    tifffile.imwrite(path, plane, byteorder=byteorder, rowsperstrip=rowsperstrip, bigtiff=bigtiff)
    out = np.zeros_like(plane)
    assert read_first_page(path, out)
    np.testing.assert_array_equal(out, plane)
    assert out.dtype.byteorder in "=|"


def test_what_it_cannot_read_straight_is_declined(tmp_path):
    plane = _plane((12, 10), "uint16", 2)
    cases = {
        "zlib.tif": {"compression": "zlib"},
        "tiled.tif": {"tile": (16, 16)},
        "rgb.tif": {"photometric": "rgb"},
    }
    for name, options in cases.items():
        data = np.stack([plane] * 3, axis=-1) if name == "rgb.tif" else plane
        tifffile.imwrite(tmp_path / name, data, **options)
        assert not read_first_page(tmp_path / name, np.zeros_like(plane)), name
    tifffile.imwrite(tmp_path / "plain.tif", plane)
    assert not read_first_page(tmp_path / "plain.tif", np.zeros((10, 12), np.uint16))
    assert not read_first_page(tmp_path / "plain.tif", np.zeros((12, 10), np.int16))
    assert not read_first_page(tmp_path / "missing.tif", np.zeros_like(plane))
    (tmp_path / "text.tif").write_text("not a TIFF")
    assert not read_first_page(tmp_path / "text.tif", np.zeros_like(plane))


def test_declined_and_damaged_files_go_to_tiff_planes(tmp_path):
    plane = _plane((12, 10), "uint16", 3)
    planes = SinglePagePlanes()
    # compressed, and strip tables past the first 4 KiB (after a long description)
    tifffile.imwrite(tmp_path / "zlib.tif", plane, compression="zlib")
    tifffile.imwrite(
        tmp_path / "long.tif", plane, rowsperstrip=1, description="x" * 2 * single_page.HEAD_BYTES
    )
    for name in ("zlib.tif", "long.tif"):
        out = np.zeros_like(plane)
        planes.read(PlaneRef(tmp_path / name, 0), out)
        np.testing.assert_array_equal(out, plane)
    cut = tmp_path / "cut.tif"
    tifffile.imwrite(cut, plane)
    cut.write_bytes(cut.read_bytes()[:-7])
    with pytest.raises(InputError, match="truncated") as error:
        planes.read(PlaneRef(cut, 0), np.zeros_like(plane))
    assert str(cut) in str(error.value)
    planes.close()


@pytest.mark.timeout(20)
def test_a_named_pipe_is_reported_not_waited_on(tmp_path):
    fifo = tmp_path / "frame.tif"
    os.mkfifo(fifo)
    assert not read_first_page(fifo, np.zeros((4, 4), np.uint16))
    with pytest.raises(InputError) as error:
        SinglePagePlanes().read(PlaneRef(fifo, 0), np.zeros((4, 4), np.uint16))
    assert str(fifo) in str(error.value)


def _strip_table(path: Path) -> tuple[str, int]:
    """(byte order, file offset) of the StripOffsets values of the file's first IFD."""
    data = path.read_bytes()
    order = "<" if data[:2] == b"II" else ">"
    first = struct.unpack_from(order + "I", data, 4)[0]
    (count,) = struct.unpack_from(order + "H", data, first)
    for i in range(count):
        code, _kind, _n, value = struct.unpack_from(order + "HHII", data, first + 2 + 12 * i)
        if code == 273:
            return order, value
    raise AssertionError("no StripOffsets")


def test_files_written_alike_share_one_parse_but_never_a_strip_table(tmp_path):
    """Where a plane lies is kept by the bytes of its file's first IFD; when the IFD
    points to a strip table elsewhere in the file, that table is read every time."""
    single_page._LOCATIONS.clear()
    first, second = _plane((12, 10), "uint16", 4), _plane((12, 10), "uint16", 5)
    tifffile.imwrite(tmp_path / "a.tif", first)
    tifffile.imwrite(tmp_path / "b.tif", second)
    for name, plane in (("a.tif", first), ("b.tif", second)):
        out = np.zeros_like(plane)
        assert read_first_page(tmp_path / name, out)
        np.testing.assert_array_equal(out, plane)
    assert len(single_page._LOCATIONS) == 1  # one IFD layout, parsed once

    # two strips: their offsets are a table outside the IFD. c.tif is a.tif with its
    # strips copied to the end of the file and the table pointing there: the same IFD
    # bytes, other pixels.
    tifffile.imwrite(tmp_path / "a.tif", first, rowsperstrip=6)
    data = bytearray((tmp_path / "a.tif").read_bytes())
    order, table = _strip_table(tmp_path / "a.tif")
    moved = len(data)
    data += second.astype(order + "u2").tobytes()
    struct.pack_into(order + "II", data, table, moved, moved + 6 * 10 * 2)
    (tmp_path / "c.tif").write_bytes(bytes(data))
    for name, plane in (("a.tif", first), ("c.tif", second)):
        out = np.zeros_like(plane)
        assert read_first_page(tmp_path / name, out)
        np.testing.assert_array_equal(out, plane)
