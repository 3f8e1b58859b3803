"""Bruker Prairie View folders: the real PVScan XML of Prairie View 5.4, Cycle files
written with tifffile as the XML lists them, and folders imitating 4.x and 5.4 layouts
(:func:`toile.writers.write_prairie_series`)."""

from __future__ import annotations

import gzip
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import webdataset as wds
from click.testing import CliRunner

from toile.cli import main
from toile.formats import discover, open_source
from toile.formats.prairie import acquisition_fields, layouts, merge_state, parse_pvscan
from toile.writers import write_prairie_series, write_pvscan_xml

DATA = Path(__file__).parent / "data" / "prairie-view"
TS = "TSeries-01142019-1352-1365"
SINGLE = "SingleImage-01142019-1352-387"


def _export(*args: str):
    return CliRunner().invoke(main, ["export", "frames", *args, "--no-progress", "--workers", "1"])


def _samples(out: Path) -> list[dict]:
    urls = sorted(str(p) for p in out.glob(f"{out.name}-*.tar*"))
    return sorted(
        wds.WebDataset(urls, shardshuffle=False).decode(),
        key=lambda s: (s["json"]["recording_index"], s["json"]["frame"]["index"]),
    )


def _real_folder(tmp_path: Path) -> Path:
    """The real T-Series folder (XML, .env, experiment.xml, MIP), without Cycle files,
    with a References image like Prairie View's."""
    folder = tmp_path / TS
    shutil.copytree(DATA / TS, folder)
    for packed in folder.glob("*.gz"):
        packed.with_suffix("").write_bytes(gzip.decompress(packed.read_bytes()))
        packed.unlink()
    (folder / "References").mkdir()
    tifffile.imwrite(
        folder / "References" / f"{TS}-Ch1-16bit-Reference.tif", np.zeros((16, 16), np.uint16)
    )
    return folder


def _truncate(xml: Path, frames: int) -> None:
    """Keep the first ``frames`` Frame elements of the real XML (the rest unchanged)."""
    text = xml.read_text(encoding="utf-8-sig")
    ends = [m.end() for m in re.finditer(r"</Frame>", text)]
    xml.write_text("\ufeff" + text[: ends[frames - 1]] + "\n  </Sequence>\n</PVScan>", "utf-8")


def _write_cycles(folder: Path, ome: bool = True) -> dict[str, np.ndarray]:
    """Write every Cycle file the folder's XML names: 256x256 uint16 (its
    pixelsPerLine x linesPerFrame), with tifffile's OME-XML stating a pixel size that
    contradicts the XML when ``ome``."""
    text = (folder / f"{TS}.xml").read_text(encoding="utf-8-sig")
    rng = np.random.default_rng(7)
    planes = {}
    for name in re.findall(r'filename="([^"]+)"', text):
        data = rng.integers(0, 1 << 13, (256, 256), dtype=np.uint16)
        metadata = {"axes": "YX", "PhysicalSizeX": 5.0, "PhysicalSizeY": 5.0} if ome else None
        tifffile.imwrite(folder / name, data, metadata=metadata, photometric="minisblack")
        planes[name] = tifffile.imread(folder / name)
    return planes


@pytest.fixture
def real_tseries(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    folder = _real_folder(tmp_path)
    _truncate(folder / f"{TS}.xml", 4)
    return folder, _write_cycles(folder)


def _page(path: Path) -> np.ndarray:
    """The plane tifffile reads from the file's first page."""
    with tifffile.TiffFile(path) as tif:
        return tif.pages.first.asarray()


def _cycle(channel: int, index: int) -> str:
    return f"{TS}_Cycle00001_Ch{channel}_{index:06d}.ome.tif"


@pytest.mark.parametrize("kind", ["directory", "glob", "xml", "cycle-file"])
def test_real_tseries_is_one_recording_with_exact_pixels_and_its_metadata(
    real_tseries, tmp_path, kind
):
    folder, planes = real_tseries
    target = {
        "directory": str(folder),
        "glob": str(folder / "*"),
        "xml": str(folder / f"{TS}.xml"),
        "cycle-file": str(folder / _cycle(1, 1)),
    }[kind]
    out = tmp_path / "out"
    result = _export(target, str(out))
    assert result.exit_code == 0, result.output
    samples = _samples(out)
    assert len(samples) == 4  # no MIP, no References image
    for i, sample in enumerate(samples):
        expected = np.stack([planes[_cycle(1, i + 1)], planes[_cycle(2, i + 1)]])
        np.testing.assert_array_equal(sample["npy"], expected)
    meta = samples[0]["json"]
    assert meta["format"] == "prairie-view"
    assert meta["source"] == str(folder / f"{TS}.xml")
    assert meta["files"] == 8
    assert meta["date_acquired"] == "2019-01-14T15:12:36.417499"
    # every frame overrides framePeriod: 1.00025..., not the document's 0.928...
    assert meta["time_increment"] == pytest.approx(1.00025097887275)
    assert meta["frame_rate_hz"] == pytest.approx(1 / 1.00025097887275)
    # the PVScan XML wins over the Cycle files' OME-XML (PhysicalSizeX=5.0)
    assert meta["scale_x"] == meta["scale_y"] == 1.17879356364206
    assert "scale_z" not in meta  # a T-Series: its ZAxis micronsPerPixel is no z step
    assert meta["objective"] == "40X LUMPlanFL/IR"
    assert meta["objective_na"] == 0.8
    assert meta["objective_magnification"] == 40.0
    assert meta["zoom"] == 1.0
    assert meta["dwell_time_us"] == 12.0
    assert meta["bit_depth"] == 13
    assert meta["pixels_per_line"] == meta["lines_per_frame"] == 256
    assert meta["laser_power"] == [
        {"laser": "Mira", "value": 0.0, "unit": "pockels"},
        {"laser": "Insight X3", "value": 300.0, "unit": "pockels"},
        {"laser": "1040nm", "value": 0.0, "unit": "pockels"},
    ]
    assert meta["pmt_gain"] == [
        {"channel": "Ch1", "value": 650.0},
        {"channel": "Ch2", "value": 825.0},
    ]
    assert [c["name"] for c in meta["channels"]] == ["Ch1", "Ch2"]
    times = [s["json"]["frame"]["t"] for s in samples]
    assert times == [0.0, 1.00025097887275, 2.00050195774551, 3.00075293661826]
    frame = samples[1]["json"]["frame"]
    assert frame["absolute_time_s"] == 1.16925097887262
    assert (frame["position_x"], frame["position_y"], frame["position_z"]) == (
        -157.5,
        -387.25,
        -217.82,
    )
    assert "laser_power" not in frame  # the same in every frame: recording level only


def test_vendor_metadata_is_the_parsed_pvscan_document(real_tseries):
    folder, _ = real_tseries
    (source,) = discover([str(folder)], folder)
    with open_source(source) as recording:
        vendor = recording.vendor_metadata["PVScan"]
    json.dumps(vendor)
    assert vendor["version"] == "5.4.64.500"
    assert vendor["date"] == "1/14/2019 3:12:36 PM"
    assert vendor["state"]["framePeriod"] == "0.928030691589522"
    assert vendor["state"]["pmtGain"]["1"] == {"value": "825", "description": "Ch 2 HV"}
    assert vendor["state"]["positionCurrent"]["ZAxis"] == {"0": "-217.82"}
    (sequence,) = vendor["sequences"]
    assert sequence["type"] == "TSeries Timed Element" and sequence["frames"] == 4
    assert sequence["frame_state"] == {"framePeriod": "1.00025097887275"}


def test_real_xml_parsed_whole(tmp_path):
    folder = _real_folder(tmp_path)
    scan = parse_pvscan(folder / f"{TS}.xml")
    assert len(scan.sequences) == 1
    sequence = scan.sequences[0]
    assert len(sequence.frames) == 1812
    last = sequence.frames[-1]
    assert last.index == 1812 and last.relative_time == 1811.45452273856
    assert last.files[2][0] == f"{TS}_Cycle00001_Ch2_001812.ome.tif"
    assert [(layout.sequences, layout.mode) for layout in layouts(scan)] == [((0,), "t")]
    state = merge_state(scan.state, sequence.state, last.state)
    fields = acquisition_fields(state, [(1, "Ch1"), (2, "Ch2")])
    assert fields["frame_rate_hz"] == pytest.approx(1 / 1.00025097887275)
    single = parse_pvscan(DATA / SINGLE / f"{SINGLE}.xml")
    assert single.sequences[0].type == "Single" and len(single.sequences[0].frames) == 1
    fields = acquisition_fields(single.state, [(1, "Ch1")])
    assert fields["scale_x"] == 0.147349195455257
    assert fields["pixels_per_line"] == 2048
    assert fields["frame_rate_hz"] == pytest.approx(1 / 51.4134881792032)


def test_folder_without_cycle_files_is_one_clear_error_and_never_its_references(tmp_path):
    folder = _real_folder(tmp_path)
    out = tmp_path / "out"
    result = _export(str(folder), str(out))
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert f"{TS}.xml" in lines[0] and "none of the 3624 image files" in lines[0]
    result = _export(str(folder), str(out), "--on-error", "skip")
    assert not list(out.glob("*.tar"))  # neither the MIP nor the Reference image
    assert "none of the 3624 image files" in result.output
    sources = discover([str(folder)], tmp_path)
    assert [s.format for s in sources] == ["prairie-view"]


def test_missing_file_named_by_the_xml_is_an_error_naming_it(real_tseries, tmp_path):
    folder, _ = real_tseries
    (folder / _cycle(2, 3)).unlink()
    result = _export(str(folder), str(tmp_path / "out"))
    assert result.exit_code == 1
    assert _cycle(2, 3) in result.stderr and "missing" in result.stderr


def test_prairie_4_tiffs_without_ome_xml_are_read_from_the_xml(tmp_path):
    """Prairie View 4.x: plain TIFFs named ..._Cycle001_CurrentSettings_Ch1_000001.tif,
    the state as Key elements in every Frame."""
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 4096, (5, 2, 12, 10), dtype=np.uint16)
    folder = tmp_path / "TSeries-0001"
    files = write_prairie_series(
        folder, iter(frames), n_channels=2, prefix="TSeries-0001", version="4.3.2.24"
    )
    assert files[0].name == "TSeries-0001_Cycle001_CurrentSettings_Ch1_000001.tif"
    with tifffile.TiffFile(files[0]) as tif:
        assert not tif.is_ome and not tif.pages.first.description
    assert "<Key key=" in (folder / "TSeries-0001.xml").read_text(encoding="utf-8-sig")
    (source,) = discover([str(folder)], tmp_path)
    with open_source(source) as recording:
        assert recording.n_frames == 5 and recording.frame_shape == (2, 12, 10)
        for i in range(5):
            expected = np.stack(
                [
                    tifffile.imread(
                        folder / f"TSeries-0001_Cycle001_CurrentSettings_Ch{c}_{i + 1:06d}.tif"
                    )
                    for c in (1, 2)
                ]
            )
            np.testing.assert_array_equal(recording.read_frame(i), expected)
            assert recording.frame_metadata(i)["t"] == i * 0.5
        meta = recording.metadata
        assert meta["format"] == "prairie-view"
        assert meta["scale_x"] == 0.8 and meta["time_increment"] == 0.5
        assert meta["pmt_gain"] == [
            {"channel": "Ch1", "value": 650.0},
            {"channel": "Ch2", "value": 825.0},
        ]
        assert [p["value"] for p in meta["laser_power"]] == [0.0, 300.0, 0.0]


def test_tseries_of_zstacks_gives_t_z_planes(tmp_path):
    rng = np.random.default_rng(4)
    frames = rng.integers(0, 4096, (6, 12, 10), dtype=np.uint16)  # 2 volumes of 3 planes
    folder = tmp_path / "TSeries-z"
    write_prairie_series(folder, iter(frames), prefix="TSeries-z", size_z=3, z_step=2.5)
    text = (folder / "TSeries-z.xml").read_text(encoding="utf-8-sig")
    assert text.count("TSeries ZSeries Element") == 2
    out = tmp_path / "out"
    assert _export(str(folder), str(out)).exit_code == 0
    samples = _samples(out)
    assert len(samples) == 6
    for i, sample in enumerate(samples):
        t, z = divmod(i, 3)
        expected = _page(folder / f"TSeries-z_Cycle{t + 1:05d}_Ch1_{z + 1:06d}.ome.tif")
        np.testing.assert_array_equal(sample["npy"], expected)
        frame = sample["json"]["frame"]
        assert (frame["t_index"], frame["z_index"]) == (t, z)
        assert frame["position_z"] == z * 2.5
        assert frame["t"] == pytest.approx(i * 0.5)
    meta = samples[0]["json"]
    assert (meta["size_t"], meta["size_z"], meta["scale_z"]) == (2, 3, 2.5)
    assert meta["time_increment"] == pytest.approx(1.5)  # one volume every 3 frames
    assert meta["frame_rate_hz"] == 2.0


def test_separate_timed_sequences_are_separate_recordings(tmp_path):
    folder = tmp_path / "TSeries-two"
    folder.mkdir()
    rng = np.random.default_rng(5)
    cycles = []
    for cycle in (1, 2):
        names = []
        for index in (1, 2, 3):
            name = f"TSeries-two_Cycle{cycle:05d}_Ch1_{index:06d}.ome.tif"
            tifffile.imwrite(folder / name, rng.integers(0, 99, (8, 8), dtype=np.uint16))
            names.append([name])
        cycles.append(names)
    xml = write_pvscan_xml(
        folder / "TSeries-two.xml",
        cycles,
        height=8,
        width=8,
        time_increment=0.1,
        physical_size=1.0,
        z_step=None,
        position=(0.0, 0.0, 0.0),
        date=None,
    )
    xml.write_text(xml.read_text("utf-8").replace("ZSeries", "Timed"), "utf-8")
    sources = discover([str(folder)], tmp_path)
    assert [(s.format, s.series) for s in sources] == [("prairie-view", 0), ("prairie-view", 1)]
    for source, cycle in zip(sources, (1, 2), strict=True):
        with open_source(source) as recording:
            assert recording.n_frames == 3
            for i in range(3):
                name = f"TSeries-two_Cycle{cycle:05d}_Ch1_{i + 1:06d}.ome.tif"
                np.testing.assert_array_equal(
                    recording.read_frame(i), tifffile.imread(folder / name)
                )


def test_per_frame_state_override_is_kept_per_frame(real_tseries):
    folder, _ = real_tseries
    xml = folder / f"{TS}.xml"
    text = xml.read_text(encoding="utf-8-sig")
    override = (
        '<PVStateValue key="laserPower"><IndexedValue index="1" value="250" '
        'description="Insight X3" /></PVStateValue>'
    )
    parts = text.split('<PVStateValue key="framePeriod" value="1.00025097887275" />')
    assert len(parts) == 5
    parts[3] = override + parts[3]  # the third frame's shard
    xml.write_text(
        "\ufeff" + '<PVStateValue key="framePeriod" value="1.00025097887275" />'.join(parts),
        "utf-8",
    )
    (source,) = discover([str(folder)], folder)
    with open_source(source) as recording:
        powers = [recording.frame_metadata(i)["laser_power"][1]["value"] for i in range(4)]
        assert powers == [300.0, 300.0, 250.0, 300.0]
        assert recording.metadata["laser_power"][1]["value"] == 300.0


def test_folder_without_xml_is_read_through_the_first_files_ome_xml(tmp_path):
    rng = np.random.default_rng(6)
    frames = rng.integers(0, 4096, (4, 2, 8, 8), dtype=np.uint16)
    folder = tmp_path / "TSeries-ome"
    write_prairie_series(folder, iter(frames), n_channels=2, prefix="TSeries-ome", pvscan=False)
    assert not list(folder.glob("*.xml"))
    (source,) = discover([str(folder)], tmp_path)
    with open_source(source) as recording:
        assert recording.metadata["format"] == "prairie-view"
        for i in range(4):
            np.testing.assert_array_equal(recording.read_frame(i), frames[i])


def test_channel_selection(real_tseries, tmp_path):
    folder, planes = real_tseries
    out = tmp_path / "out"
    assert _export(str(folder), str(out), "--channel", "ch2").exit_code == 0
    samples = _samples(out)
    np.testing.assert_array_equal(samples[2]["npy"], planes[_cycle(2, 3)])
    assert samples[0]["json"]["channels"] == [{"name": "Ch2"}]
    assert samples[0]["json"]["frame"]["c_index"] == 1


def test_test_recording_writes_the_pvscan_xml(tmp_path):
    folder = tmp_path / "TSeries-03152024-001"
    result = CliRunner().invoke(
        main,
        [
            "export",
            "test-recording",
            str(folder),
            "--layout",
            "prairie-view",
            "--frames",
            "3",
            "--channels",
            "2",
            "--height",
            "16",
            "--width",
            "16",
        ],
    )
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in folder.iterdir())
    assert "TSeries-03152024-001.xml" in names and "TSeries-03152024-001.env" in names
    assert "TSeries-03152024-001_Cycle00001_Ch2_000003.ome.tif" in names
    (source,) = discover([str(folder)], tmp_path)
    with open_source(source) as recording:
        assert recording.metadata["format"] == "prairie-view"
        assert recording.metadata["source"].endswith("TSeries-03152024-001.xml")
        assert recording.n_frames == 3 and recording.frame_shape == (2, 16, 16)


def test_source_files_and_what_is_claimed(real_tseries):
    folder, _ = real_tseries
    (source,) = discover([str(folder)], folder)
    names = {p.name for p in source.files}
    assert {f"{TS}.xml", f"{TS}.env", "experiment.xml", _cycle(2, 4)} <= names
    assert len(names) == 3 + 8
    assert not any("MIP" in n or "Reference" in n for n in names)


def test_characters_xml_forbids_are_dropped_and_geometry_checked(tmp_path, caplog):
    """Some Prairie View versions write control characters XML 1.0 forbids."""
    frames = np.arange(3 * 8 * 6, dtype=np.uint16).reshape(3, 8, 6)
    folder = tmp_path / "TSeries-x"
    write_prairie_series(folder, iter(frames), prefix="TSeries-x")
    xml = folder / "TSeries-x.xml"
    text = xml.read_text(encoding="utf-8-sig")
    text = text.replace('notes=""', 'notes="bad \x01 byte"')
    text = text.replace('key="pixelsPerLine" value="6"', 'key="pixelsPerLine" value="7"')
    xml.write_text(text, encoding="utf-8")
    (source,) = discover([str(folder)], tmp_path)
    with caplog.at_level("WARNING"), open_source(source) as recording:
        assert recording.vendor_metadata["PVScan"]["notes"] == "bad  byte"
        np.testing.assert_array_equal(recording.read_frame(2), frames[2])
        assert recording.metadata["pixels_per_line"] == 7  # as the XML states it
    assert "7x8 pixels" in caplog.text and "6x8" in caplog.text


def test_pvscan_xml_without_frames_leaves_the_cycle_files_to_their_ome_xml(tmp_path):
    frames = np.arange(2 * 4 * 4, dtype=np.uint16).reshape(2, 4, 4)
    folder = tmp_path / "TSeries-e"
    write_prairie_series(folder, iter(frames), prefix="TSeries-e")
    (folder / "TSeries-e.xml").write_text('<?xml version="1.0"?><PVScan version="5.4"/>')
    (source,) = discover([str(folder)], tmp_path)
    assert source.path.name == "TSeries-e_Cycle00001_Ch1_000001.ome.tif"
    with open_source(source) as recording:
        assert recording.metadata["format"] == "prairie-view"
        np.testing.assert_array_equal(recording.read_frame(1), frames[1])


def test_broken_pvscan_xml_is_an_error_of_its_recording_only(tmp_path):
    frames = np.arange(2 * 4 * 4, dtype=np.uint16).reshape(2, 4, 4)
    folder = tmp_path / "TSeries-b"
    write_prairie_series(folder, iter(frames), prefix="TSeries-b")
    xml = folder / "TSeries-b.xml"
    xml.write_text(xml.read_text(encoding="utf-8-sig")[:-200], encoding="utf-8")
    good = tmp_path / "TSeries-g"
    write_prairie_series(good, iter(frames), prefix="TSeries-g")
    out = tmp_path / "out"
    result = _export(str(folder), str(good), str(out))
    assert result.exit_code == 1
    assert "TSeries-b.xml" in result.stderr and "not a valid PVScan XML" in result.stderr
    result = _export(str(folder), str(good), str(out), "--on-error", "skip")
    assert result.exit_code == 3, result.output  # some recordings skipped
    manifest = json.loads((out / "out.manifest.json").read_text())
    assert [r["source"] for r in manifest["recordings"]] == [str(good / "TSeries-g.xml")]


@pytest.fixture
def parses(monkeypatch) -> list[Path]:
    """The PVScan documents parsed while the test runs (the parser's own calls)."""
    from toile.formats import prairie

    seen: list[Path] = []
    parse = prairie._parse

    def counted(path: Path, data: bytes):
        seen.append(Path(path))
        return parse(path, data)

    monkeypatch.setattr(prairie, "_parse", counted)
    return seen


def test_pvscan_xml_parsed_once_per_document_from_discovery_to_the_last_frame(tmp_path, parses):
    rng = np.random.default_rng(8)
    first, second = tmp_path / "TSeries-p1", tmp_path / "TSeries-p2"
    for folder in (first, second):
        write_prairie_series(
            folder, iter(rng.integers(0, 4096, (3, 8, 8), dtype=np.uint16)), prefix=folder.name
        )
    (source,) = discover([str(first)], tmp_path)
    with open_source(source) as recording:
        for i in range(3):
            recording.read_frame(i)
            recording.frame_metadata(i)
    assert parses == [first / "TSeries-p1.xml"]
    parses.clear()
    # an export of two recordings: discovery, planning, then each recording's shards
    out = tmp_path / "out"
    result = _export(str(first), str(second), str(out), "--shard-size", "6000")
    assert result.exit_code == 0, result.output
    assert len(_samples(out)) == 6
    # the first document is still the one parsed above: only the second one is read
    assert parses == [second / "TSeries-p2.xml"]


def test_separate_sequences_of_one_xml_share_its_parse(tmp_path, parses):
    folder = tmp_path / "TSeries-two"
    folder.mkdir()
    cycles = []
    for cycle in (1, 2):
        name = f"TSeries-two_Cycle{cycle:05d}_Ch1_000001.ome.tif"
        tifffile.imwrite(folder / name, np.full((4, 4), cycle, np.uint16))
        cycles.append([[name]])
    xml = write_pvscan_xml(
        folder / "TSeries-two.xml",
        cycles,
        height=4,
        width=4,
        time_increment=0.1,
        physical_size=1.0,
        z_step=None,
        position=None,
        date=None,
    )
    xml.write_text(xml.read_text("utf-8").replace("ZSeries", "Timed"), "utf-8")
    sources = discover([str(folder)], tmp_path)
    assert len(sources) == 2
    for cycle, source in enumerate(sources, 1):
        with open_source(source) as recording:
            assert recording.read_frame(0)[0, 0] == cycle
    assert parses == [xml]


def test_pvscan_xml_changed_after_discovery_is_read_again(tmp_path, parses):
    rng = np.random.default_rng(9)
    folder = tmp_path / "TSeries-c"
    write_prairie_series(
        folder, iter(rng.integers(0, 4096, (4, 8, 8), dtype=np.uint16)), prefix="TSeries-c"
    )
    xml = folder / "TSeries-c.xml"
    (source,) = discover([str(folder)], tmp_path)
    text = xml.read_text(encoding="utf-8-sig")
    ends = [m.end() for m in re.finditer(r"</Frame>", text)]
    xml.write_text("\ufeff" + text[: ends[1]] + "\n  </Sequence>\n</PVScan>", "utf-8")
    with open_source(source) as recording:
        assert recording.n_frames == 2
    assert parses == [xml, xml]


def test_frame_states_give_each_frame_its_own_fields(real_tseries, tmp_path):
    """Frames that state a position or a laser power keep theirs; the others take their
    sequence's, also where two frames state the same thing, in a T-series and in a
    T-series of Z-stacks whose second volume changes the laser power."""
    folder, _ = real_tseries
    xml = folder / f"{TS}.xml"
    text = xml.read_text(encoding="utf-8-sig")
    period = '<PVStateValue key="framePeriod" value="1.00025097887275" />'
    parts = text.split(period)
    power = (
        '<PVStateValue key="laserPower"><IndexedValue index="1" value="250" '
        'description="Insight X3" /></PVStateValue>'
    )
    focus = (
        '<PVStateValue key="positionCurrent"><SubindexedValues index="ZAxis">'
        '<SubindexedValue subindex="0" value="12.5" /></SubindexedValues></PVStateValue>'
    )
    parts[2], parts[4] = power + focus + parts[2], power + parts[4]
    xml.write_text("\ufeff" + period.join(parts), "utf-8")
    (source,) = discover([str(folder)], folder)
    with open_source(source) as recording:
        frames = [recording.frame_metadata(i) for i in range(4)]
    assert [f["laser_power"][1]["value"] for f in frames] == [300.0, 250.0, 300.0, 250.0]
    assert [f["position_z"] for f in frames] == [-217.82, 12.5, -217.82, -217.82]
    assert [f["position_x"] for f in frames] == [-157.5] * 4

    volumes = tmp_path / "TSeries-zp"
    rng = np.random.default_rng(10)
    write_prairie_series(
        volumes,
        iter(rng.integers(0, 99, (6, 4, 4), dtype=np.uint16)),
        prefix="TSeries-zp",
        size_z=3,
    )
    xml = volumes / "TSeries-zp.xml"
    text = xml.read_text(encoding="utf-8-sig")
    head, first, rest = text.split("<PVStateShard />", 2)
    xml.write_text(
        "\ufeff"
        + head
        + "<PVStateShard />"
        + first
        + f"<PVStateShard>{power}</PVStateShard>"
        + rest,
        "utf-8",
    )
    (source,) = discover([str(volumes)], tmp_path)
    with open_source(source) as recording:
        frames = [recording.frame_metadata(i) for i in range(6)]
        assert recording.metadata["laser_power"][1]["value"] == 300.0
    assert [f["laser_power"][1]["value"] for f in frames] == [300.0] * 3 + [250.0] * 3
    assert [f["position_z"] for f in frames] == [0.0, 2.0, 4.0] * 2


def _scribble(value) -> None:
    """Change every dict and list reachable from ``value``, in place."""
    if isinstance(value, dict):
        for item in list(value.values()):
            _scribble(item)
        value["scribbled"] = True
    elif isinstance(value, list):
        for item in value:
            _scribble(item)
        value.append("scribbled")


def test_what_a_recording_gives_is_its_own_not_the_shared_parse(real_tseries):
    """The parsed document is shared by every opening of it: what a recording hands
    out (its metadata, vendor metadata and frame metadata) can be changed freely."""
    import copy

    folder, _ = real_tseries
    (source,) = discover([str(folder)], folder)

    def given() -> list:
        with open_source(source) as recording:
            return [
                recording.metadata,
                recording.vendor_metadata,
                *(recording.frame_metadata(i) for i in range(4)),
            ]

    first = given()
    expected = copy.deepcopy(first)
    _scribble(first)
    assert given() == expected


def test_parsed_documents_kept_are_bounded(tmp_path, parses, monkeypatch):
    """Documents are kept up to a number of documents and of frames: past either, the
    oldest is dropped (parsed again when opened), and one too long is not kept."""
    from toile.formats import prairie

    monkeypatch.setattr(prairie, "_CACHED_FRAMES", 5)
    monkeypatch.setattr(prairie, "_CACHED_DOCUMENTS", 2)
    rng = np.random.default_rng(12)
    for name, frames in (("TSeries-b1", 2), ("TSeries-b2", 2), ("TSeries-b3", 6)):
        write_prairie_series(
            tmp_path / name,
            iter(rng.integers(0, 99, (frames, 4, 4), dtype=np.uint16)),
            prefix=name,
        )
    xml = {n: tmp_path / n / f"{n}.xml" for n in ("TSeries-b1", "TSeries-b2", "TSeries-b3")}

    def opened(*names: str) -> None:
        for name in names:
            (source,) = discover([str(tmp_path / name)], tmp_path)
            open_source(source).close()

    opened("TSeries-b1", "TSeries-b2")
    assert parses == [xml["TSeries-b1"], xml["TSeries-b2"]]
    parses.clear()
    opened("TSeries-b3")  # 6 frames: more than the 5 kept, parsed at discovery and open
    assert parses == [xml["TSeries-b3"]] * 2
    parses.clear()
    opened("TSeries-b1", "TSeries-b2")  # both still kept
    assert parses == []
    write_prairie_series(
        tmp_path / "TSeries-b4",
        iter(rng.integers(0, 99, (2, 4, 4), dtype=np.uint16)),
        prefix="TSeries-b4",
    )
    opened("TSeries-b4", "TSeries-b1")  # two documents kept: b1 was the oldest
    assert parses == [tmp_path / "TSeries-b4" / "TSeries-b4.xml", xml["TSeries-b1"]]
