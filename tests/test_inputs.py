"""Resolving paths and globs into recordings, on real TIFF files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile

from toile.errors import InputError
from toile.formats import Source, discover, open_source
from toile.formats.discover import is_tiff_name

OME_NS = "http://www.openmicroscopy.org/Schemas/OME/2016-06"
TS1 = "TSeries-03152024-001"
TS2 = "TSeries-03152024-002"


def prairie_name(prefix: str, cycle: int, channel: int, index: int) -> str:
    return f"{prefix}_Cycle{cycle:05d}_Ch{channel}_{index:06d}.ome.tif"


def write_prairie(directory: Path, prefix: str, cycles: int, channels: int, frames: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for cycle in range(1, cycles + 1):
        for channel in range(1, channels + 1):
            for index in range(1, frames + 1):
                tifffile.imwrite(
                    directory / prairie_name(prefix, cycle, channel, index),
                    np.zeros((8, 8), np.uint16),
                )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A tree of mixed recordings.

    root/ts_one/     Prairie series, 1 channel, 3 frames (+ Prairie's XML)
    root/ts_two/     Prairie series, 2 channels, 2 cycles x 2 frames, and References/
    root/stacks/     an OME-TIFF stack, a 2-series OME-TIFF, a plain TIFF, a text file
    """
    root = tmp_path / "root"
    write_prairie(root / "ts_one", TS1, cycles=1, channels=1, frames=3)
    (root / "ts_one" / f"{TS1}.xml").write_text("<PVScan/>")
    write_prairie(root / "ts_two", TS2, cycles=2, channels=2, frames=2)
    (root / "ts_two" / "References").mkdir()
    tifffile.imwrite(
        root / "ts_two" / "References" / f"{TS2}-Cycle00001-Ch1-16bit-Reference.tif",
        np.zeros((8, 8), np.uint16),
    )
    stacks = root / "stacks"
    stacks.mkdir()
    tifffile.imwrite(
        stacks / "mouse_3_slice_2_20240315.ome.tif",
        np.zeros((3, 8, 8), np.uint16),
        metadata={"axes": "TYX"},
    )
    with tifffile.TiffWriter(stacks / "multi.ome.tif", ome=True) as writer:
        writer.write(np.zeros((2, 8, 8), np.uint8))
        writer.write(np.zeros((3, 9, 9), np.uint8))
    tifffile.imwrite(stacks / "plain.tif", np.zeros((4, 8, 8), np.uint8), photometric="minisblack")
    (stacks / "notes.txt").write_text("not a recording")
    return root


def summary(sources: list[Source], root: Path) -> list[tuple]:
    return [(str(s.path.relative_to(root)), s.series, s.name, len(s.files)) for s in sources]


def expected_tree() -> list[tuple]:
    return [
        ("stacks/mouse_3_slice_2_20240315.ome.tif", 0, "mouse_3_slice_2_20240315.ome.tif", 1),
        ("stacks/multi.ome.tif", 0, "multi.ome.tif", 1),
        ("stacks/multi.ome.tif", 1, "multi.ome.tif", 1),
        ("stacks/plain.tif", 0, "plain.tif", 1),
        (f"ts_one/{prairie_name(TS1, 1, 1, 1)}", 0, TS1, 3),
        (f"ts_two/{prairie_name(TS2, 1, 1, 1)}", 0, TS2, 8),
    ]


def test_directory_of_recordings(tree: Path) -> None:
    assert summary(discover([str(tree)], tree), tree) == expected_tree()


def test_glob_over_all_files(tree: Path) -> None:
    assert summary(discover([str(tree / "*" / "*.tif")], tree), tree) == expected_tree()


def test_recursive_glob_relative_to_base_dir(tree: Path, tmp_path: Path) -> None:
    assert summary(discover(["root/**/*.tif"], tmp_path), tree) == expected_tree()
    assert summary(discover(["**/"], tree), tree) == expected_tree()


def test_glob_of_directories(tree: Path) -> None:
    sources = discover(["ts_*/"], tree)
    assert [s.name for s in sources] == [TS1, TS2]


def test_prairie_series_files_sorted_and_master_first(tree: Path) -> None:
    (source,) = discover(["ts_two"], tree)
    names = [p.name for p in source.files]
    assert names == [
        prairie_name(TS2, cycle, channel, index)
        for cycle in (1, 2)
        for channel in (1, 2)
        for index in (1, 2)
    ]
    assert source.path == tree / "ts_two" / prairie_name(TS2, 1, 1, 1)
    assert source.series == 0 and source.name == TS2


def test_any_file_of_a_prairie_series_gives_the_whole_series(tree: Path) -> None:
    (source,) = discover([f"ts_two/{prairie_name(TS2, 2, 2, 2)}"], tree)
    assert source.path.name == prairie_name(TS2, 1, 1, 1)
    assert len(source.files) == 8


def test_duplicates_removed_and_pattern_order_irrelevant(tree: Path) -> None:
    patterns = [str(tree), "stacks/plain.tif", "**/*.tif", f"ts_one/{prairie_name(TS1, 1, 1, 2)}"]
    assert summary(discover(patterns, tree), tree) == expected_tree()
    assert discover(patterns[::-1], tree) == discover(patterns, tree)


def test_single_files_any_case(tmp_path: Path) -> None:
    for name in ("a.TIF", "b.tiff", "c.OME.TIFF"):
        tifffile.imwrite(tmp_path / name, np.zeros((8, 8), np.uint8))
        (source,) = discover([name], tmp_path)
        fmt = "ome-tiff" if ".OME." in name else "tiff"  # tifffile writes OME-XML there
        assert source == Source(fmt, tmp_path / name, (tmp_path / name,), 0, name)
    assert is_tiff_name("x.ome.tif") and not is_tiff_name("x.tif.txt")


def test_nested_directories_any_depth(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b" / "c"
    write_prairie(deep / "ts", TS1, 1, 1, 2)
    tifffile.imwrite(tmp_path / "a" / "top.tif", np.zeros((8, 8), np.uint8))
    sources = discover(["a"], tmp_path)
    assert [s.name for s in sources] == [TS1, "top.tif"]


def test_hidden_files_and_symlink_loops(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "rec.tif", np.zeros((8, 8), np.uint8))
    (tmp_path / "._rec.tif").write_bytes(b"\0\5\x16\7AppleDouble")
    (tmp_path / "loop").symlink_to(tmp_path)
    assert [s.name for s in discover(["."], tmp_path)] == ["rec.tif"]


def test_literal_path_with_glob_characters(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "rec[1].tif", np.zeros((8, 8), np.uint8))
    (source,) = discover(["rec[1].tif"], tmp_path)
    assert source.name == "rec[1].tif"


def test_corrupt_tiff_is_left_for_the_reader(tmp_path: Path) -> None:
    (tmp_path / "broken.ome.tif").write_bytes(b"not a tiff at all")
    (tmp_path / "broken.tif").write_bytes(b"II*\0garbage")
    sources = discover(["."], tmp_path)
    assert [(s.name, s.series) for s in sources] == [("broken.ome.tif", 0), ("broken.tif", 0)]


# --- multi-file OME series other than Prairie View ---------------------------


def ome_xml(uuid: str, files: list[tuple[str, str]]) -> str:
    tiffdata = "".join(
        f'<TiffData FirstT="{t}" IFD="0" PlaneCount="1">'
        f'<UUID FileName="{name}">{file_uuid}</UUID></TiffData>'
        for t, (name, file_uuid) in enumerate(files)
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><OME xmlns="{OME_NS}" UUID="{uuid}">'
        '<Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint8" '
        f'SizeX="8" SizeY="8" SizeC="1" SizeZ="1" SizeT="{len(files)}">'
        '<Channel ID="Channel:0:0" SamplesPerPixel="1"/>'
        f"{tiffdata}</Pixels></Image></OME>"
    )


def binary_only_xml(uuid: str, metadata_file: str, master_uuid: str) -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><OME xmlns="{OME_NS}" UUID="{uuid}">'
        f'<BinaryOnly MetadataFile="{metadata_file}" UUID="{master_uuid}"/></OME>'
    )


def write_described(path: Path, description: str, value: int) -> None:
    tifffile.imwrite(path, np.full((8, 8), value, np.uint8), description=description, metadata=None)


@pytest.fixture
def binary_only_series(tmp_path: Path) -> Path:
    files = [("a.ome.tif", "urn:uuid:a"), ("b.ome.tif", "urn:uuid:b")]
    write_described(tmp_path / "a.ome.tif", ome_xml("urn:uuid:a", files), 1)
    write_described(
        tmp_path / "b.ome.tif", binary_only_xml("urn:uuid:b", "a.ome.tif", "urn:uuid:a"), 2
    )
    return tmp_path


def test_binary_only_file_belongs_to_its_metadata_file(binary_only_series: Path) -> None:
    a, b = binary_only_series / "a.ome.tif", binary_only_series / "b.ome.tif"
    for patterns in (["."], ["*.ome.tif"], ["b.ome.tif"], ["a.ome.tif"]):
        (source,) = discover(patterns, binary_only_series)
        assert (source.path, source.files, source.name) == (a, (a, b), "a.ome.tif"), patterns
    with tifffile.TiffFile(a) as tif:  # the grouping agrees with what tifffile reads
        assert len(tif.series) == 1
        assert (
            tif.series[0].asarray().tolist()
            == np.stack([np.full((8, 8), 1), np.full((8, 8), 2)]).tolist()
        )


def test_full_metadata_in_every_file_is_still_one_recording(tmp_path: Path) -> None:
    files = [("p0.ome.tif", "urn:uuid:0"), ("p1.ome.tif", "urn:uuid:1")]
    write_described(tmp_path / "p0.ome.tif", ome_xml("urn:uuid:0", files), 1)
    write_described(tmp_path / "p1.ome.tif", ome_xml("urn:uuid:1", files), 2)
    (source,) = discover(["p1.ome.tif"], tmp_path)
    assert source.path.name == "p0.ome.tif"
    assert [p.name for p in source.files] == ["p0.ome.tif", "p1.ome.tif"]


def test_binary_only_with_missing_metadata_file(tmp_path: Path) -> None:
    write_described(tmp_path / "b.ome.tif", binary_only_xml("urn:uuid:b", "gone.ome.tif", "u"), 2)
    with pytest.raises(InputError, match=r"b\.ome\.tif: .*'gone\.ome\.tif'.*not found"):
        discover(["."], tmp_path)


def test_binary_only_with_an_empty_companion_file(tmp_path: Path) -> None:
    (tmp_path / "set.companion.ome").write_text("<OME/>")
    write_described(
        tmp_path / "b.ome.tif", binary_only_xml("urn:uuid:b", "set.companion.ome", "u"), 2
    )
    (source,) = discover(["b.ome.tif"], tmp_path)
    assert source.path == tmp_path / "set.companion.ome"
    assert source.files == (tmp_path / "b.ome.tif", tmp_path / "set.companion.ome")
    with pytest.raises(InputError, match=r"set\.companion\.ome: holds no OME-XML images"):
        open_source(source)


# --- errors ------------------------------------------------------------------


def test_nonexistent_path(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        discover(["missing_dir"], tmp_path)
    assert str(info.value) == f"{tmp_path / 'missing_dir'}: does not exist"


def test_glob_matching_nothing(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        discover(["exp_*/*.tif"], tmp_path)
    assert str(info.value) == f"{tmp_path / 'exp_*/*.tif'}: matches no file or directory"


def test_glob_matching_only_other_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="matches no TIFF file"):
        discover(["*"], tmp_path)


def test_directory_without_tiffs(tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "notes.txt").write_text("x")
    with pytest.raises(InputError) as info:
        discover(["empty"], tmp_path)
    assert str(info.value) == f"{tmp_path / 'empty'}: no TIFF files found"


def test_file_that_is_not_a_tiff(tmp_path: Path) -> None:
    (tmp_path / "movie.avi").write_bytes(b"RIFF")
    with pytest.raises(InputError, match=r"movie\.avi: not a TIFF file"):
        discover(["movie.avi"], tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_directory_and_file(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    tifffile.imwrite(tmp_path / "secret.tif", np.zeros((8, 8), np.uint8))
    (tmp_path / "secret.tif").chmod(0)
    locked.chmod(0)
    try:
        with pytest.raises(InputError, match=r"locked: cannot read directory"):
            discover(["locked"], tmp_path)
        with pytest.raises(InputError, match=r"secret\.tif: cannot be read"):
            discover(["secret.tif"], tmp_path)
    finally:
        locked.chmod(0o755)


@pytest.mark.parametrize("bigtiff", [False, True])
@pytest.mark.parametrize("byteorder", ["<", ">"])
@pytest.mark.parametrize("description", ["", "ab", "<OME>µm</OME>" * 50])
def test_light_description_reads_what_tifffile_reads(
    tmp_path: Path, bigtiff: bool, byteorder: str, description: str
) -> None:
    from toile.formats.tiff.light import first_description as _light_description

    path = tmp_path / "d.tif"
    tifffile.imwrite(
        path,
        np.zeros((2, 4, 4), np.uint16),
        bigtiff=bigtiff,
        byteorder=byteorder,
        description=description.encode() or None,
        metadata=None,
    )
    with tifffile.TiffFile(path) as tif:
        expected = tif.pages.first.description or ""
    assert _light_description(path) == expected
    (tmp_path / "not.tif").write_bytes(b"GIF89a" + bytes(100))
    assert _light_description(tmp_path / "not.tif") is None
