"""OME-XML parsing: real documents, unit conversions, bad values, TiffData plane maps."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from toile.formats.tiff import ome_xml as ome

DATA = Path(__file__).parent / "data"
NS = "http://www.openmicroscopy.org/Schemas/OME/2016-06"


def _doc(pixels_attrs: str = "", inner: str = "", root_attrs: str = "", image: str = "") -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><OME xmlns="{NS}" {root_attrs}>'
        f'<Image ID="Image:0" Name="img">{image}<Pixels ID="Pixels:0" DimensionOrder="XYCZT" '
        f'Type="uint16" SizeX="4" SizeY="3" SizeZ="1" SizeC="1" SizeT="2" {pixels_attrs}>'
        f'<Channel ID="Channel:0:0" Name="GCaMP"/>{inner}</Pixels></Image></OME>'
    )


def test_mmstack_document() -> None:
    images = ome.parse_ome((DATA / "MMStack.ome.xml").read_text(encoding="utf-8"), "MMStack")
    assert len(images) == 2
    image = images[0]
    assert image["image_name"] == "image_stack_tpzc_50tp_2p_5z_3c_512k_1_MMStack_2-Pos000_000"
    assert (image["size_x"], image["size_y"], image["size_z"]) == (256, 256, 5)
    assert (image["size_c"], image["size_t"]) == (3, 2)
    assert image["dtype"] == "uint16"
    assert image["dimension_order"] == "XYCZT"
    assert image["scale_x"] == image["scale_y"] == 2.0
    assert image["scale_z"] == 1.75
    assert image["scale_unit"] == "um" and image["t_unit"] == "s"
    assert image["time_increment"] == pytest.approx(0.001)  # 1.0 ms
    assert [c["name"] for c in image["channels"]] == ["Cy5", "DAPI", "FITC"]
    assert image["channels"][0]["id"] == "Channel:0:0"
    assert image["stage_label"] == {"name": "2-Pos000_000", "x": -256.0, "y": -256.0}
    assert "uuid" not in image and "date_acquired" not in image
    assert len(image["planes"]) == 30
    first = image["planes"][0]
    assert (first["t_index"], first["z_index"], first["c_index"]) == (0, 0, 0)
    assert first["delta_t"] == pytest.approx(0.117)
    assert first["exposure_time"] == pytest.approx(0.001)
    assert (first["position_x"], first["position_z"]) == (-256.0, -4.0)
    assert len(image["tiff_data"]) == 30
    assert image["tiff_data"][0]["uuid"] == "659dc8f0-3839-4594-bd3e-41625b4736ef"
    assert images[1]["stage_label"]["x"] == 256.0
    # planes and tiff_data are compact tables of dict rows; everything is plain JSON
    assert isinstance(image["planes"], ome.PlaneTable)
    json.dumps(
        [{**i, "planes": list(i["planes"]), "tiff_data": list(i["tiff_data"])} for i in images]
    )


def test_mmstack_plane_map_follows_tiffdata() -> None:
    image = ome.parse_ome((DATA / "MMStack.ome.xml").read_text(encoding="utf-8"), "MMStack")[1]
    refs = ome.plane_map(image)
    assert len(refs) == 30
    name = "image_stack_tpzc_50tp_2p_5z_3c_512k_1_MMStack_2-Pos001_000.ome.tif"
    # XYCZT: c fastest, then z, then t
    assert refs[(0, 0, 0)] == ome.StoredPlane(name, "a10f1945-00d9-456f-89a5-fe3a9959c369", 0)
    assert refs[(1, 0, 0)].ifd == 1
    assert refs[(0, 1, 0)].ifd == 3
    assert refs[(0, 0, 1)].ifd == 15
    assert refs[(2, 4, 1)].ifd == 29


def test_alternate_units_are_converted() -> None:
    xml = (DATA / "instrument-units-alternate.ome.xml").read_text(encoding="utf-8")
    (image,) = ome.parse_ome(xml, "alt")
    assert image["scale_x"] == pytest.approx(10000.0)  # 1 cm
    assert image["scale_y"] == pytest.approx(10000.0)
    assert image["date_acquired"] == "2010-02-23T12:51:30"
    (channel,) = image["channels"]
    assert channel["emission_wavelength"] == pytest.approx(488.6)  # 488600 pm
    assert channel["excitation_wavelength"] == pytest.approx(610.5)
    assert (image["size_x"], image["size_y"], image["dtype"]) == (6, 4, "uint8")


@pytest.mark.parametrize(
    ("name", "checks"),
    [
        ("no-date.ome.xml", {"scale_x": 10000.0, "size_t": 1}),
        ("single-image.ome.xml", {"date_acquired": "2010-02-23T12:51:30", "size_c": 1}),
        ("time-series.ome.xml", {"size_t": 5, "dtype": "uint8", "dimension_order": "XYZCT"}),
        ("multi-channel-time-series.ome.xml", {"size_c": 2, "size_t": 5}),
    ],
)
def test_sample_documents(name: str, checks: dict) -> None:
    (image,) = ome.parse_ome((DATA / name).read_text(encoding="utf-8"), name)
    for key, value in checks.items():
        assert image[key] == value
    if name == "no-date.ome.xml":
        assert "date_acquired" not in image
    if name.startswith("multi-channel"):
        assert [c["name"] for c in image["channels"]] == ["Channel:0", "Channel:1"]


def test_bad_document_warns_and_keeps_what_it_can(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="toile.formats.tiff.ome_xml"):
        (image,) = ome.parse_ome((DATA / "bad.ome.xml").read_text(encoding="utf-8"), "bad.ome.xml")
    assert image["uuid"] == "64ab19c6-e378-43dc-9c9d-d57f0e776d20"
    assert image["size_c"] == 3 and len(image["channels"]) == 1
    assert any(
        "bad.ome.xml" in r.getMessage() and "SizeC=3" in r.getMessage() for r in caplog.records
    )


def test_malformed_xml_warns_and_returns_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="toile.formats.tiff.ome_xml"):
        assert ome.parse_ome("<OME><Image></OME>", "broken.tif") == []
        assert ome.parse_ome("<NotOME/>", "other.tif") == []
    messages = [r.getMessage() for r in caplog.records]
    assert any("broken.tif" in m and "malformed" in m for m in messages)
    assert any("other.tif" in m for m in messages)


def test_bad_date_uuid_and_numbers_are_left_out(caplog: pytest.LogCaptureFixture) -> None:
    xml = _doc(
        pixels_attrs='PhysicalSizeX="abc" PhysicalSizeY="0.5" PhysicalSizeYUnit="furlong" '
        'TimeIncrement="2"',
        root_attrs='UUID="urn:uuid:not-a-uuid"',
        image="<AcquisitionDate>last tuesday</AcquisitionDate>",
    )
    with caplog.at_level(logging.WARNING, logger="toile.formats.tiff.ome_xml"):
        (image,) = ome.parse_ome(xml, "rec.ome.tif")
    for key in ("uuid", "date_acquired", "scale_x", "scale_y"):
        assert key not in image
    assert image["time_increment"] == 2.0  # default unit: seconds
    text = "\n".join(r.getMessage() for r in caplog.records)
    for field in ("UUID", "AcquisitionDate", "PhysicalSizeX", "PhysicalSizeY"):
        assert f"rec.ome.tif: OME-XML {field}" in text


@pytest.mark.parametrize(
    ("unit", "value", "um"),
    [
        ("nm", "250", 0.25),
        ("mm", "0.002", 2.0),
        ("m", "1e-6", 1.0),
        ("cm", "1e-4", 1.0),
        ("µm", "0.8", 0.8),  # U+00B5 MICRO SIGN
        ("μm", "0.8", 0.8),  # U+03BC GREEK SMALL LETTER MU
        ("um", "0.8", 0.8),
        ("Å", "5000", 0.5),
        ("pm", "500000", 0.5),
    ],
)
def test_length_units(unit: str, value: str, um: float) -> None:
    xml = _doc(pixels_attrs=f'PhysicalSizeX="{value}" PhysicalSizeXUnit="{unit}"')
    (image,) = ome.parse_ome(xml, "x")
    assert image["scale_x"] == pytest.approx(um)


@pytest.mark.parametrize(
    ("unit", "value", "seconds"),
    [
        ("ms", "250", 0.25),
        ("µs", "500", 0.0005),
        ("min", "2", 120.0),
        ("h", "1", 3600.0),
        ("s", "3", 3.0),
    ],
)
def test_time_units(unit: str, value: str, seconds: float) -> None:
    plane = f'<Plane TheT="1" DeltaT="{value}" DeltaTUnit="{unit}"/>'
    xml = _doc(pixels_attrs=f'TimeIncrement="{value}" TimeIncrementUnit="{unit}"', inner=plane)
    (image,) = ome.parse_ome(xml, "x")
    assert image["time_increment"] == pytest.approx(seconds)
    assert image["planes"][0]["delta_t"] == pytest.approx(seconds)
    assert image["planes"][0]["t_index"] == 1


def test_plane_position_units() -> None:
    plane = (
        '<Plane PositionX="1500" PositionXUnit="nm" PositionY="2" PositionYUnit="mm" '
        'PositionZ="3"/>'
    )
    (image,) = ome.parse_ome(_doc(inner=plane), "x")
    (p,) = image["planes"]
    assert p["position_x"] == pytest.approx(1.5)
    assert p["position_y"] == pytest.approx(2000.0)
    assert "position_z" not in p  # no unit: OME's default "reference frame" is not a length


@pytest.mark.parametrize(
    "namespace",
    [
        "http://www.openmicroscopy.org/Schemas/OME/2013-06",
        "http://www.openmicroscopy.org/Schemas/OME/2008-09",
        None,
    ],
)
def test_any_schema_year(namespace: str | None) -> None:
    xml = _doc(
        pixels_attrs='PhysicalSizeX="0.5"',
        root_attrs='UUID="urn:uuid:0C0C7A2D-59FE-4A4C-9C3F-1C8B0E2F3A4B"',
    )
    xml = xml.replace(f' xmlns="{NS}"', "" if namespace is None else f' xmlns="{namespace}"')
    (image,) = ome.parse_ome(xml, "x")
    assert image["scale_x"] == 0.5
    assert image["uuid"] == "0c0c7a2d-59fe-4a4c-9c3f-1c8b0e2f3a4b"
    assert image["channels"] == [{"name": "GCaMP", "id": "Channel:0:0"}]


def test_binary_only_document() -> None:
    xml = (
        f'<OME xmlns="{NS}" UUID="urn:uuid:11111111-2222-3333-4444-555555555555">'
        '<BinaryOnly MetadataFile="master.ome.tif" '
        'UUID="urn:uuid:AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE"/></OME>'
    )
    doc = ome.read_ome(xml, "frame2.ome.tif")
    assert doc is not None and doc.images == []
    assert doc.uuid == "11111111-2222-3333-4444-555555555555"
    assert doc.binary_only == ome.BinaryOnly(
        "master.ome.tif", "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
    )
    assert ome.parse_ome(xml, "frame2.ome.tif") == []


def test_plane_map_rules() -> None:
    # one TiffData with neither IFD nor PlaneCount covers the rest of the file
    xml = _doc(inner="<TiffData/>").replace('SizeT="2"', 'SizeT="5"')
    (image,) = ome.parse_ome(xml, "x")
    refs = ome.plane_map(image, ifd_count=3)
    assert sorted(refs) == [(0, 0, 0), (0, 0, 1), (0, 0, 2)]
    assert refs[(0, 0, 2)] == ome.StoredPlane(None, None, 2)
    # no TiffData: planes follow the IFDs in DimensionOrder, from first_ifd
    xml = _doc().replace('DimensionOrder="XYCZT"', 'DimensionOrder="XYTCZ"')
    xml = xml.replace('SizeC="1"', 'SizeC="2"')
    (image,) = ome.parse_ome(xml, "x")
    refs = ome.plane_map(image, first_ifd=10)
    assert refs[(0, 0, 1)].ifd == 11  # T fastest
    assert refs[(1, 0, 0)].ifd == 12
    # FirstT and PlaneCount place a block of planes
    xml = _doc(inner='<TiffData FirstT="1" IFD="7" PlaneCount="1"/><TiffData IFD="3"/>')
    (image,) = ome.parse_ome(xml, "x")
    refs = ome.plane_map(image)
    assert refs == {
        (0, 0, 1): ome.StoredPlane(None, None, 7),
        (0, 0, 0): ome.StoredPlane(None, None, 3),
    }


# --- streaming parse and compact tables -------------------------------------------------


def test_table_rows_keep_exactly_the_fields_present() -> None:
    uuid = "urn:uuid:659dc8f0-3839-4594-bd3e-41625b4736ef"
    inner = (
        '<TiffData IFD="3" PlaneCount="2"><UUID FileName="a.ome.tif">' + uuid + "</UUID></TiffData>"
        '<TiffData FirstT="1"><UUID>' + uuid + "</UUID></TiffData>"
        "<TiffData/>"
        '<Plane TheT="0" TheZ="0" TheC="0" DeltaT="2" DeltaTUnit="ms" PositionX="1.5" PositionXUnit="nm"/>'
        '<Plane TheT="1" DeltaT="oops"/>'
    )
    (image,) = ome.parse_ome(_doc(inner=inner), "x")
    assert list(image["tiff_data"]) == [
        {
            "ifd": 3,
            "first_c": 0,
            "first_z": 0,
            "first_t": 0,
            "plane_count": 2,
            "file_name": "a.ome.tif",
            "uuid": "659dc8f0-3839-4594-bd3e-41625b4736ef",
        },
        {
            "ifd": 0,
            "first_c": 0,
            "first_z": 0,
            "first_t": 1,
            "plane_count": None,
            "file_name": None,
            "uuid": "659dc8f0-3839-4594-bd3e-41625b4736ef",
        },
        {"ifd": 0, "first_c": 0, "first_z": 0, "first_t": 0, "plane_count": None},
    ]
    planes = image["planes"]
    assert planes[0] == {
        "t_index": 0,
        "z_index": 0,
        "c_index": 0,
        "delta_t": pytest.approx(0.002),
        "position_x": pytest.approx(0.0015),
    }
    assert planes[-1] == {"t_index": 1, "z_index": 0, "c_index": 0}  # bad DeltaT left out
    assert planes[1:] == [planes[1]] and len(planes) == 2
    with pytest.raises(IndexError):
        planes[2]


def _long_document(planes: int) -> str:
    uuid = "urn:uuid:659dc8f0-3839-4594-bd3e-41625b4736ef"
    tiff_data = "".join(
        f'<TiffData FirstT="{t}" IFD="{t}" PlaneCount="1">'
        f'<UUID FileName="rec.ome.tif">{uuid}</UUID></TiffData>'
        for t in range(planes)
    )
    plane = "".join(
        f'<Plane TheT="{t}" TheZ="0" TheC="0" DeltaT="{t * 0.5}" PositionX="1.0" '
        'PositionY="2.0" PositionZ="3.0" ExposureTime="0.01"/>'
        for t in range(planes)
    )
    annotations = "".join(
        f'<MapAnnotation ID="Annotation:{i}"><Value><M K="k">{i}</M></Value></MapAnnotation>'
        for i in range(planes)
    )
    return (
        f'<OME xmlns="{NS}" UUID="{uuid}"><Image ID="Image:0"><Pixels ID="Pixels:0" '
        f'DimensionOrder="XYCZT" Type="uint16" SizeX="4" SizeY="3" SizeZ="1" SizeC="1" '
        f'SizeT="{planes}"><Channel ID="Channel:0:0"/>{tiff_data}{plane}</Pixels></Image>'
        f"<StructuredAnnotations>{annotations}</StructuredAnnotations></OME>"
    )


def test_a_long_document_is_parsed_in_bounded_memory() -> None:
    # A whole element tree of this document takes about 60 MB; streaming keeps a few.
    import tracemalloc

    planes = 20_000
    xml = _long_document(planes)
    tracemalloc.start()
    try:
        (image,) = ome.parse_ome(xml, "long")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(image["planes"]) == planes and len(image["tiff_data"]) == planes
    assert image["planes"][planes - 1]["delta_t"] == (planes - 1) * 0.5
    assert image["tiff_data"][123]["ifd"] == 123
    assert peak < 12 * 2**20, f"parsing peaked at {peak / 2**20:.1f} MiB"
    locations = ome.plane_locations(image)
    assert locations.get(0, 0, planes - 1) == ome.StoredPlane(
        "rec.ome.tif", "659dc8f0-3839-4594-bd3e-41625b4736ef", planes - 1
    )
    assert next(locations.missing(), None) is None


def test_no_field_warnings_for_a_document_that_fails(caplog: pytest.LogCaptureFixture) -> None:
    broken = _doc(inner='<Plane TheT="0" DeltaT="oops"/>').replace("</Image>", "")
    with caplog.at_level(logging.WARNING, logger="toile.formats.tiff.ome_xml"):
        assert ome.parse_ome(broken, "broken.tif") == []
    assert len(caplog.records) == 1
    assert "malformed" in caplog.records[0].getMessage()
