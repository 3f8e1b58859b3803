"""A long OME-XML is streamed from its file, never held whole: claiming, counting series,
opening and reading stay far below the size of the document, and give what the whole
text gives."""

from __future__ import annotations

import random
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import tifffile

from toile.formats import discover, open_source, registry
from toile.formats.base import Candidates
from toile.formats.tiff import ome, ome_xml
from toile.formats.tiff.files import checked_ifd_count
from toile.formats.tiff.ifd import IfdReader
from toile.formats.tiff.light import HEAD_BYTES, DescriptionHead, tifffile_description
from toile.formats.tiff.planes import PlaneRef, TiffPlanes

NS = "http://www.openmicroscopy.org/Schemas/OME/2016-06"
UUID = "5a1c2e3f-0000-4000-8000-000000000001"
OTHER_UUID = "5a1c2e3f-0000-4000-8000-000000000002"
MASTER_UUID = "5a1c2e3f-0000-4000-8000-0000000000ff"
#: Characters of padding: the document is about this long (8 MB in memory as text and
#: again as bytes, were it read whole).
PADDING = 4_000_000
#: Every format imported before memory is measured.
FORMATS = registry.FORMATS


def _xml(
    name: str,
    planes: int,
    *,
    pad: int = PADDING,
    before: int = 100,
    images: int = 1,
    other: str | None = None,
    root_uuid: str = UUID,
) -> str:
    """An OME-XML of ``images`` Images of ``planes`` 6x5 uint16 planes each, with an Image
    Description of ``before`` characters (before the TiffData) and about ``pad``
    characters of small annotations after the Images; ``other`` is a second file holding
    the last plane."""
    body = []
    for index in range(images):
        tiff_data = "".join(
            f'<TiffData FirstT="{t}" IFD="{index * planes + t if other is None else 0}" '
            f'PlaneCount="1"><UUID FileName="{other if other and t == planes - 1 else name}">'
            f"urn:uuid:{OTHER_UUID if other and t == planes - 1 else UUID}</UUID></TiffData>"
            for t in range(planes)
        )
        plane = "".join(
            f'<Plane TheC="0" TheZ="0" TheT="{t}" DeltaT="{t * 0.25}" DeltaTUnit="s"/>'
            for t in range(planes)
        )
        body.append(
            f'<Image ID="Image:{index}" Name="long {index}">'
            f"<Description>{'d' * before}</Description>"
            f'<Pixels ID="Pixels:{index}" DimensionOrder="XYCZT" Type="uint16" SizeX="6" '
            f'SizeY="5" SizeZ="1" SizeC="1" SizeT="{planes}" TimeIncrement="0.25">'
            f'<Channel ID="Channel:{index}:0" Name="GCaMP" SamplesPerPixel="1"/>'
            f"{tiff_data}{plane}</Pixels></Image>"
        )
    note = '<CommentAnnotation ID="Annotation:{}"><Value>a note on the recording</Value></CommentAnnotation>'
    notes = "".join(note.format(i) for i in range(pad // len(note)))
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<OME xmlns="{NS}" UUID="urn:uuid:{root_uuid}">'
        + "".join(body)
        + f"<StructuredAnnotations>{notes}</StructuredAnnotations></OME>\n"
    )


def _write(path: Path, xml: str, frames: np.ndarray) -> None:
    with tifffile.TiffWriter(path) as tif:
        for i, frame in enumerate(frames):
            tif.write(frame, description=xml.encode() if i == 0 else None, metadata=None)


def _peak(fn):
    """``fn()`` and the peak of memory allocated while it ran (bytes)."""
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.fixture
def long_ome(tmp_path: Path) -> tuple[Path, str, np.ndarray]:
    path = tmp_path / "long.ome.tif"
    frames = np.arange(4 * 5 * 6, dtype="uint16").reshape(4, 5, 6)
    xml = _xml(path.name, 4)
    _write(path, xml, frames)
    return path, xml, frames


def test_claiming_keeps_a_head_of_a_long_description(long_ome) -> None:
    path, xml, _ = long_ome
    candidates = Candidates([path])
    head, peak = _peak(lambda: candidates.description(path))
    assert isinstance(head, DescriptionHead)
    assert xml.startswith(head) and 65536 <= len(head) <= HEAD_BYTES
    assert "".join(head.chunks()) == xml
    assert peak < 2 * HEAD_BYTES + (1 << 20)
    # discovering the file (every format looks at it) stays far below the text's size
    sources, peak = _peak(lambda: discover([str(path)], path.parent))
    assert [(s.format, s.path, s.series) for s in sources] == [("ome-tiff", path, 0)]
    assert peak < len(xml) / 4


def test_opening_and_reading_stay_below_the_description(long_ome) -> None:
    path, xml, frames = long_ome
    (source,) = discover([str(path)], path.parent)

    def read():
        with open_source(source) as recording:
            got = np.stack([recording.read_frame(i) for i in range(recording.n_frames)])
            return got, [recording.frame_metadata(i)["t"] for i in range(recording.n_frames)]

    (got, times), peak = _peak(read)
    assert np.array_equal(got, frames)
    assert times == [0.0, 0.25, 0.5, 0.75]
    assert peak < len(xml) / 4


def test_series_counted_from_the_streamed_description(tmp_path: Path) -> None:
    path = tmp_path / "two.ome.tif"
    frames = np.arange(2 * 3 * 5 * 6, dtype="uint16").reshape(6, 5, 6)
    _write(path, _xml(path.name, 3, before=HEAD_BYTES, images=2), frames)
    sources = discover([str(path)], tmp_path)
    assert [s.series for s in sources] == [0, 1]
    with open_source(sources[1]) as recording:
        got = np.stack([recording.read_frame(i) for i in range(recording.n_frames)])
        assert np.array_equal(got, frames[3:])
        assert recording.metadata["image_name"] == "long 1"


def test_files_named_past_the_head_are_linked(tmp_path: Path) -> None:
    """The second file is named only after the head (a long Image Description first)."""
    main, other = tmp_path / "a.ome.tif", tmp_path / "b.ome.tif"
    frames = np.arange(3 * 5 * 6, dtype="uint16").reshape(3, 5, 6)
    xml = _xml(main.name, 3, before=HEAD_BYTES, other=other.name)
    assert xml.index(other.name) > HEAD_BYTES
    # the main file holds planes 0 and 1 as IFDs 0 and 1 of its own
    xml = xml.replace('FirstT="1" IFD="0"', 'FirstT="1" IFD="1"')
    _write(main, xml, frames[:2])
    tifffile.imwrite(other, frames[2], metadata=None)
    for pattern in (main.name, "."):
        (source,) = discover([pattern], tmp_path)
        assert source.path == main and set(source.files) == {main, other}
    with open_source(source) as recording:
        got = np.stack([recording.read_frame(i) for i in range(recording.n_frames)])
        assert np.array_equal(got, frames)
        assert recording.metadata["files"] == 2
        assert recording.frame_metadata(2)["uuid"] == OTHER_UUID


def test_companion_file_is_read_in_chunks(tmp_path: Path) -> None:
    """A long companion OME-XML describing BinaryOnly TIFF files: claimed and opened
    without holding it."""
    names = ["c_t0.ome.tif", "c_t1.ome.tif"]
    companion = tmp_path / "c.companion.ome"
    xml = _xml(names[0], 2, other=names[1], root_uuid=MASTER_UUID)
    companion.write_text(xml)
    frames = np.arange(2 * 5 * 6, dtype="uint16").reshape(2, 5, 6)
    for uuid, name, frame in zip((UUID, OTHER_UUID), names, frames, strict=True):
        binary_only = (
            f'<?xml version="1.0" encoding="UTF-8"?><OME xmlns="{NS}" UUID="urn:uuid:{uuid}">'
            f'<BinaryOnly MetadataFile="{companion.name}" UUID="urn:uuid:{MASTER_UUID}"/></OME>'
        )
        tifffile.imwrite(tmp_path / name, frame, description=binary_only.encode(), metadata=None)
    (source,), peak = _peak(lambda: discover([names[1]], tmp_path))
    assert source.path == companion and len(source.files) == 3
    assert peak < len(xml) / 4

    def read():
        with open_source(source) as recording:
            return np.stack([recording.read_frame(i) for i in range(recording.n_frames)])

    got, peak = _peak(read)
    assert np.array_equal(got, frames)
    assert peak < len(xml) / 4


@pytest.mark.parametrize(
    "raw",
    [
        b"  \n<OME/>  \t\n",
        b"<OME>caf\xc3\xa9</OME>\0\0\0",
        b"<OME>caf\xe9 in cp1252</OME>",
        b"\x81\x8d not text either way",
        b"abc",
        b"",
    ],
)
def test_streamed_description_is_what_tifffile_gives(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "d.tif"
    tifffile.imwrite(path, np.zeros((2, 2), "uint8"), description=raw, metadata=None)
    chunks = tifffile_description(path)
    assert chunks is not None
    with tifffile.TiffFile(path) as tif:
        assert "".join(chunks) == tif.pages.first.description


def test_text_split_anywhere_reads_as_the_whole(long_ome) -> None:
    _, xml, _ = long_ome
    small = _xml("s.ome.tif", 5, pad=3000, before=10, images=2)
    rng = random.Random(1)
    for text in (small, xml[:3000] + xml[-2000:], small.replace("<Image ", "<Imagery ", 1)):
        cuts = sorted(rng.sample(range(1, len(text)), 40))
        chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        assert ome.one_image(iter(chunks)) == ome.one_image(text)
        whole, streamed = ome_xml.read_ome(text, "x"), ome_xml.read_ome(iter(chunks), "x")
        assert (whole is None) == (streamed is None)
        if whole is not None and streamed is not None:
            assert streamed.images == whole.images
    assert ome.one_image(iter([xml[: len(xml) // 2], xml[len(xml) // 2 :]]))


def test_chain_counted_only_when_it_reads_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "chain.tif"
    tifffile.imwrite(path, np.zeros((3, 4, 5), "uint8"), photometric="minisblack", metadata=None)
    with tifffile.TiffFile(path) as tif:
        offsets = [page.offset for page in tif.pages]
    assert checked_ifd_count(path) == 3
    with open(path, "rb") as fh:
        reader = IfdReader.open(fh)
        assert reader is not None and reader.count(path.stat().st_size) == 3
    # the last IFD pointing back to the first: a loop, left to tifffile
    data = bytearray(path.read_bytes())
    with open(path, "rb") as fh:
        reader = IfdReader.open(fh)
        assert reader is not None
        next_at = offsets[2] + 2 + 12 * len(reader.entries(offsets[2]) or {})
    data[next_at : next_at + 4] = offsets[0].to_bytes(4, "little")
    looped = tmp_path / "looped.tif"
    looped.write_bytes(bytes(data))
    with open(looped, "rb") as fh:
        reader = IfdReader.open(fh)
        assert reader is not None and reader.count(len(data)) is None


@pytest.mark.parametrize("dtype", ["uint8", ">i2", "<u4", "float32", ">f8"])
def test_direct_geometry_is_tifffiles(tmp_path: Path, dtype: str) -> None:
    path = tmp_path / "g.tif"
    data = np.arange(2 * 5 * 7).astype(dtype).reshape(2, 5, 7)
    tifffile.imwrite(path, data, photometric="minisblack", metadata=None, rowsperstrip=2)
    direct, through = TiffPlanes(), TiffPlanes()
    through.tiff(path)  # a file open with tifffile is read through it
    for page in (0, 1):
        ref = PlaneRef(path, page)
        assert (
            direct.geometry(ref) == through.geometry(ref) == (5, 7, 1, data.dtype.newbyteorder("="))
        )
        direct.data_end(ref)
    assert direct.page_count(path) == 2
    assert all(handle.tif is None for handle in direct._handles.values())
    direct.close()
    through.close()
