"""Regression tests of defects found on real and hand-made files (OME-TIFF, ImageJ, plain).

Each test failed with toile 0.1's reader (``toile.reader`` / ``toile.inputs``) and
passes on the format modules.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import tifffile

from toile.errors import InputError
from toile.formats import discover, open_source

NS = "http://www.openmicroscopy.org/Schemas/OME/2016-06"
DATA = Path(__file__).parent.parent / "data"


def _frames(shape: tuple[int, ...], dtype: str = "uint16", seed: int = 0) -> np.ndarray:
    info = np.iinfo(dtype)
    rng = np.random.default_rng(seed)
    return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)


def _read(path: Path, channel=None, **options) -> tuple[np.ndarray, list[dict], dict]:
    (source,) = discover([str(path)], path.parent, options=options or None)
    with open_source(source, channel) as recording:
        frames = np.stack([recording.read_frame(i) for i in range(recording.n_frames)])
        meta = [recording.frame_metadata(i) for i in range(recording.n_frames)]
        assert frames.shape[1:] == recording.frame_shape and frames.dtype == recording.dtype
        return frames, meta, recording.metadata


# -- OME-XML with a namespace prefix, one file per channel (Bio-Formats) -------------------


def _prefixed_xml(uuid: str, uuids: list[str], size_t: int) -> str:
    tiff_data = "".join(
        f'<ome:TiffData FirstC="{c}" FirstT="{t}" FirstZ="0" IFD="{t}" PlaneCount="1">'
        f'<ome:UUID FileName="ch{c}.ome.tif">urn:uuid:{uuids[c]}</ome:UUID></ome:TiffData>'
        for c in range(len(uuids))
        for t in range(size_t)
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><ome:OME xmlns:ome="{NS}" '
        f'UUID="urn:uuid:{uuid}"><ome:Image ID="Image:0" Name="per-channel">'
        '<ome:Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint16" SizeX="5" SizeY="4" '
        f'SizeZ="1" SizeC="{len(uuids)}" SizeT="{size_t}" PhysicalSizeX="0.5">'
        '<ome:Channel ID="Channel:0:0" Name="GFP" SamplesPerPixel="1"/>'
        '<ome:Channel ID="Channel:0:1" Name="RFP" SamplesPerPixel="1"/>'
        f"{tiff_data}</ome:Pixels></ome:Image></ome:OME>"
    )


def test_namespace_prefixed_ome_one_file_per_channel(tmp_path: Path) -> None:
    uuids = ["a1b2c3d4-0000-4000-8000-000000000000", "a1b2c3d4-0000-4000-8000-000000000001"]
    data = _frames((3, 2, 4, 5))  # t, c, y, x
    for c, uuid in enumerate(uuids):
        with tifffile.TiffWriter(tmp_path / f"ch{c}.ome.tif") as writer:
            for t in range(3):
                description = _prefixed_xml(uuid, uuids, 3).encode() if t == 0 else None
                writer.write(data[t, c], description=description, metadata=None)
    for pattern in (tmp_path, tmp_path / "ch1.ome.tif"):
        (source,) = discover([str(pattern)], tmp_path)
        assert source.format == "ome-tiff" and source.path == tmp_path / "ch0.ome.tif"
    frames, meta, recording = _read(tmp_path / "ch0.ome.tif")
    assert np.array_equal(frames, data)  # each channel's own plane
    assert recording["format"] == "ome-tiff" and recording["files"] == 2
    assert recording["scale_x"] == 0.5 and recording["image_name"] == "per-channel"
    assert [c["name"] for c in recording["channels"]] == ["GFP", "RFP"]
    assert meta[1]["uuid"] == uuids


# -- axes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("axes", "shape", "to_tzc"),
    [
        ("CTYX", (2, 3, 4, 5), (1, None, 0)),
        ("TCYX", (3, 2, 4, 5), (0, None, 1)),
        ("ZTYX", (3, 2, 4, 5), (1, 0, None)),
        ("QCYX", (4, 2, 5, 6), (0, None, 1)),
    ],
)
def test_stack_axes_are_followed(tmp_path: Path, axes: str, shape, to_tzc) -> None:
    data = _frames(shape)
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, data, metadata={"axes": axes})
    t_axis, z_axis, c_axis = to_tzc
    order = [a for a in (t_axis, z_axis, c_axis) if a is not None] + [2, 3]
    expected = np.transpose(data, order)
    size_t = shape[t_axis]
    size_z = 1 if z_axis is None else shape[z_axis]
    expected = expected.reshape(size_t * size_z, *expected.shape[1 + (z_axis is not None) :])
    frames, meta, recording = _read(path)
    assert frames.shape == expected.shape
    assert np.array_equal(frames, expected)
    assert (recording["size_t"], recording["size_z"]) == (size_t, size_z)
    assert recording["size_c"] == (1 if c_axis is None else shape[c_axis])
    assert [(m["t_index"], m["z_index"]) for m in meta][:2] == (
        [(0, 0), (0, 1)] if size_z > 1 else [(0, 0), (1, 0)]
    )


def test_ctyx_stack_is_three_frames_of_two_channels(tmp_path: Path) -> None:
    data = _frames((2, 3, 4, 5))
    path = tmp_path / "ctyx.tif"
    tifffile.imwrite(path, data, metadata={"axes": "CTYX"})
    frames, _, _ = _read(path)
    assert frames.shape == (3, 2, 4, 5)
    assert np.array_equal(frames[1], data[:, 1])
    one, _, _ = _read(path, channel=1)
    assert np.array_equal(one, data[1])


def test_an_axis_that_is_not_time_z_or_channel_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "angles.tif"
    tifffile.imwrite(path, _frames((2, 2, 4, 5)), metadata={"axes": "ATYX"})
    (source,) = discover([str(path)], tmp_path)
    with pytest.raises(InputError, match=r"angles.tif: .*angle axis \(A, size 2\)"):
        open_source(source)


# -- pixel sizes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resolution", "unit"),
    [((72.0, 72.0), "INCH"), ((96.0, 96.0), "INCH"), ((72 / 2.54, 72 / 2.54), "CENTIMETER")],
)
def test_writer_default_resolution_is_no_pixel_size(tmp_path: Path, resolution, unit) -> None:
    path = tmp_path / "dpi.tif"
    tifffile.imwrite(
        path, _frames((2, 4, 5)), metadata=None, resolution=resolution, resolutionunit=unit
    )
    _, _, recording = _read(path)
    assert "scale_x" not in recording and "scale_y" not in recording


def test_imagej_without_a_length_unit_has_no_pixel_size(tmp_path: Path) -> None:
    path = tmp_path / "ij.tif"
    tifffile.imwrite(
        path,
        _frames((2, 4, 5)),
        imagej=True,
        resolution=(72.0, 72.0),
        resolutionunit="INCH",
        metadata={"axes": "TYX"},
    )
    _, _, recording = _read(path)
    assert recording["format"] == "imagej" and "scale_x" not in recording


# -- positions without a unit --------------------------------------------------------------


def test_plane_position_without_unit_is_kept_in_the_reference_frame(tmp_path: Path) -> None:
    xml = (
        f'<?xml version="1.0" encoding="UTF-8"?><OME xmlns="{NS}"><Image ID="Image:0">'
        '<Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint8" SizeX="5" SizeY="4" '
        'SizeZ="1" SizeC="1" SizeT="2"><Channel ID="Channel:0:0" SamplesPerPixel="1"/>'
        '<TiffData/><Plane TheT="0" PositionX="12.5" PositionY="-3"/>'
        '<Plane TheT="1" PositionX="13.5" PositionY="-3" PositionXUnit="reference frame" '
        'PositionYUnit="reference frame"/></Pixels></Image></OME>'
    )
    path = tmp_path / "stage.ome.tif"
    tifffile.imwrite(path, _frames((2, 4, 5), "uint8"), description=xml.encode(), metadata=None)
    _, meta, _ = _read(path)
    assert (meta[0]["position_x"], meta[0]["position_y"]) == (12.5, -3.0)
    assert meta[1]["position_x"] == 13.5
    assert all(m["position_unit"] == "reference frame" for m in meta)


# -- ImageJ --------------------------------------------------------------------------------


def _signed_imagej(path: Path) -> np.ndarray:
    values = np.arange(-5, 15, dtype=np.int16).reshape(4, 5)
    true = np.stack([values, values + 1, values - 1])
    raw = (true.astype(np.int32) + 32768).astype(np.uint16)
    tifffile.imwrite(
        path,
        raw,
        imagej=True,
        metadata={"axes": "TYX", "cf": 0, "c0": -32768.0, "c1": 1.0, "vunit": "Gray Value"},
    )
    return true


def test_imagej_signed_calibration_is_recorded_and_applied_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "signed.tif"
    true = _signed_imagej(path)
    raw, _, recording = _read(path)
    assert raw.dtype == np.uint16 and np.array_equal(raw.astype(np.int32) - 32768, true)
    assert recording["calibration"] == {
        "function": "straight line",
        "coefficients": [-32768.0, 1.0],
        "unit": "Gray Value",
        "applied": False,
    }
    calibrated, _, recording = _read(path, calibrated=True)
    assert calibrated.dtype == np.int16 and np.array_equal(calibrated, true)
    assert recording["dtype"] == "int16" and recording["calibration"]["applied"] is True
    assert int(calibrated.min()) == -6 and int(calibrated.max()) == 15


def test_imagej_float_calibration(tmp_path: Path) -> None:
    path = tmp_path / "scaled.tif"
    raw = _frames((2, 4, 5), "uint8")
    tifffile.imwrite(
        path, raw, imagej=True, metadata={"axes": "TYX", "cf": 0, "c0": 1.5, "c1": 0.25}
    )
    calibrated, _, _ = _read(path, calibrated=True)
    assert calibrated.dtype == np.float32
    assert np.array_equal(calibrated, (1.5 + 0.25 * raw.astype(np.float32)).astype(np.float32))


def test_imagej_labels_are_channel_names(tmp_path: Path) -> None:
    path = tmp_path / "composite.tif"
    data = _frames((3, 4, 5))
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        metadata={"axes": "CYX", "mode": "composite", "Labels": ["DAPI", "GFP", "mCherry"]},
    )
    frames, _, recording = _read(path)
    assert np.array_equal(frames[0], data)
    assert recording["channels"] == [{"name": "DAPI"}, {"name": "GFP"}, {"name": "mCherry"}]
    one, meta, recording = _read(path, channel="gfp")
    assert np.array_equal(one[0], data[1]) and meta[0]["c_index"] == 1
    assert recording["channels"] == [{"name": "GFP"}]


def test_tifffile_log_lines_become_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # one image, a header that claims ten: tifffile logs an error and reads the one page
    path = tmp_path / "0.tif"
    frames = _frames((1, 4, 5))
    tifffile.imwrite(path, frames[0], imagej=True)
    with tifffile.TiffFile(path) as tif:
        description = tif.pages.first.description
    claimed = description.replace("images=1", "images=10\nframes=10")
    tifffile.tiffcomment(path, claimed.encode())
    with caplog.at_level(logging.DEBUG):
        got, _, _ = _read(path)
    assert np.array_equal(got, frames)
    assert not [r for r in caplog.records if r.name.startswith("tifffile")]
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and warnings[0].name.startswith("toile")
    assert str(path) in warnings[0].getMessage() and "1 frame(s)" in warnings[0].getMessage()


# -- channel selection --------------------------------------------------------------------


def test_selected_channel_never_gets_another_channels_entry(tmp_path: Path) -> None:
    xml = (
        f'<?xml version="1.0" encoding="UTF-8"?><OME xmlns="{NS}"><Image ID="Image:0">'
        '<Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint16" SizeX="5" SizeY="4" '
        'SizeZ="1" SizeC="2" SizeT="1"><Channel ID="Channel:0:0" Name="GCaMP" '
        'SamplesPerPixel="1"/><TiffData/></Pixels></Image></OME>'
    )
    path = tmp_path / "one-entry.ome.tif"
    data = _frames((2, 4, 5))
    tifffile.imwrite(path, data, description=xml.encode(), metadata=None)
    second, _, recording = _read(path, channel=1)
    assert np.array_equal(second[0], data[1])
    assert "channels" not in recording
    first, _, recording = _read(path, channel=0)
    assert recording["channels"][0]["name"] == "GCaMP" and len(recording["channels"]) == 1


# -- multi-position OME-TIFF ----------------------------------------------------------------


def test_positions_in_other_files_say_so(tmp_path: Path) -> None:
    xml = (DATA / "MMStack.ome.xml").read_text(encoding="utf-8")
    names = [
        "image_stack_tpzc_50tp_2p_5z_3c_512k_1_MMStack_2-Pos000_000.ome.tif",
        "image_stack_tpzc_50tp_2p_5z_3c_512k_1_MMStack_2-Pos001_000.ome.tif",
    ]
    for position, name in enumerate(names):
        data = np.full((30, 256, 256), position + 1, "uint16")
        tifffile.imwrite(tmp_path / name, data, description=xml.encode(), metadata=None)
    sources = discover([str(tmp_path)], tmp_path)
    assert [s.series for s in sources] == [0, 1]
    with open_source(sources[1]) as recording:
        assert recording.metadata["files"] == 2
        assert int(recording.read_frame(0)[0, 0, 0]) == 2
        assert recording.frame_metadata(0)["uuid"] == "a10f1945-00d9-456f-89a5-fe3a9959c369"
    with open_source(sources[0]) as recording:
        assert recording.metadata["files"] == 1 and "uuid" not in recording.frame_metadata(0)


def test_calibrated_option_from_yaml_and_command_line(tmp_path: Path) -> None:
    from toile.config import build_config

    path = tmp_path / "config.yaml"
    path.write_text("inputs: [a.tif]\ncalibrated: true\n")
    assert build_config([], tmp_path / "out", {}, config_path=path).calibrated is True
    assert build_config(["a.tif"], tmp_path / "out", {"calibrated": True}).calibrated is True
    assert build_config(["a.tif"], tmp_path / "out", {}).calibrated is False
    path.write_text("inputs: [a.tif]\ncalibrated: 3\n")
    with pytest.raises(Exception, match="calibrated"):
        build_config([], tmp_path / "out", {}, config_path=path)


def test_export_with_calibrated_writes_the_true_signed_values(tmp_path: Path) -> None:
    from toile.config import make_config
    from toile.dataset import open_dataset
    from toile.export import export_frames

    path = tmp_path / "signed.tif"
    true = _signed_imagej(path)
    for calibrated, name in ((True, "cal"), (False, "raw")):
        export_frames(make_config([str(path)], tmp_path / name, calibrated=calibrated))
    calibrated_ds, raw_ds = open_dataset(tmp_path / "cal"), open_dataset(tmp_path / "raw")
    images = np.stack([frame.image for frame in calibrated_ds])
    assert images.dtype == np.int16 and np.array_equal(images, true)
    assert calibrated_ds.manifest.raw["options"]["calibrated"] is True
    assert "calibrated" not in raw_ds.manifest.raw["options"]
    raw_images = np.stack([frame.image for frame in raw_ds])
    assert raw_images.dtype == np.uint16
    assert np.array_equal(raw_images.astype(np.int32) - 32768, true)
