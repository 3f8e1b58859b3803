"""Micro-Manager acquisitions. The OME-XML of a real Micro-Manager MMStack acquisition
(tests/data/MMStack.ome.xml: 2 positions, 3 channels, 5 z, 2 t) is embedded in MMStack
files whose pixels match it; the files follow Micro-Manager 1.4's MultipageTiffWriter
layout (:func:`toile.writers.write_micromanager`: the header blocks after the TIFF header,
tag 51123 per image, the full OME-XML in the first position's files and a BinaryOnly
pointer in the others, ``*_metadata.txt`` per position), which tifffile reads as
Micro-Manager (``is_micromanager``, ``micromanager_metadata``). The Micro-Manager 2.0
layout (``Pos0/img_channel000_position000_time000000000_z000.tif`` + ``metadata.txt``) is
written by :func:`toile.writers.write_micromanager2`. Pixels are compared with tifffile's
own reading of the same planes."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import tifffile
import webdataset as wds
from click.testing import CliRunner

from toile.cli import main
from toile.errors import InputError
from toile.formats import discover, open_source
from toile.writers import mm2_file_name, write_micromanager, write_micromanager2

DATA = Path(__file__).parent / "data"
PREFIX = "image_stack_tpzc_50tp_2p_5z_3c_512k_1"
POSITIONS = ("2-Pos000_000", "2-Pos001_000")


def _export(*args: str):
    return CliRunner().invoke(main, ["export", "frames", *args, "--no-progress", "--workers", "1"])


def _samples(out: Path) -> list[dict]:
    urls = sorted(str(p) for p in out.glob(f"{out.name}-*.tar*"))
    return sorted(
        wds.WebDataset(urls, shardshuffle=False).decode(),
        key=lambda s: (s["json"]["recording_index"], s["json"]["frame"]["index"]),
    )


@pytest.fixture(scope="module")
def real_xml_acquisition(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """The real OME-XML in two MMStack files of 30 planes of 256x256 uint16 each."""
    folder = tmp_path_factory.mktemp("mm") / "acq"
    rng = np.random.default_rng(0)
    positions = [
        [rng.integers(0, 4096, (3, 256, 256), dtype=np.uint16) for _ in range(10)]
        for _ in POSITIONS
    ]
    paths = write_micromanager(
        folder,
        positions,
        prefix=PREFIX,
        channels=("Cy5", "DAPI", "FITC"),
        size_z=5,
        position_names=POSITIONS,
        stage_positions=[(-256.0, -256.0), (256.0, -256.0)],
        ome_xml=(DATA / "MMStack.ome.xml").read_text(encoding="utf-8"),
    )
    return folder, paths


def test_real_mmstack_positions_are_recordings(real_xml_acquisition) -> None:
    folder, paths = real_xml_acquisition
    master, second = paths[0], paths[1]
    with tifffile.TiffFile(master) as tif:
        assert tif.is_micromanager and tif.is_mmstack
        assert tif.micromanager_metadata["Summary"]["Prefix"] == PREFIX
        # tifffile's Micro-Manager series: positions, time, z, channels, y, x
        expected = tif.series[0].asarray()
    assert expected.shape == (2, 2, 5, 3, 256, 256)
    for pattern in (str(folder), str(folder / "*.ome.tif"), str(master)):
        sources = discover([pattern], folder)
        assert [(s.format, s.path, s.series) for s in sources] == [
            ("micro-manager", master, 0),
            ("micro-manager", master, 1),
        ], pattern
    assert [(s.path, s.series) for s in discover([str(second)], folder)] == [(master, 1)]

    out = folder.parent / "out"
    result = _export(str(folder), str(out))
    assert result.exit_code == 0, result.output
    samples = _samples(out)
    assert len(samples) == 20
    for sample in samples:
        meta = sample["json"]
        p = meta["recording_index"]
        t, z = meta["frame"]["t_index"], meta["frame"]["z_index"]
        np.testing.assert_array_equal(sample["npy"], expected[p, t, z])
    first, other = samples[0]["json"], samples[10]["json"]
    for meta, p in ((first, 0), (other, 1)):
        assert meta["format"] == "micro-manager"
        assert meta["source"] == str(master) and meta["series"] == p
        assert meta["position_name"] == POSITIONS[p]
        assert meta["scale_x"] == 2.0 and meta["scale_z"] == 1.75
        assert meta["time_increment"] == pytest.approx(0.001)  # TimeIncrement 1.0 ms
        assert [c["name"] for c in meta["channels"]] == ["Cy5", "DAPI", "FITC"]
        # the OME-XML has no AcquisitionDate: the summary's StartTime gives it
        assert meta["date_acquired"] == "2013-11-05T16:17:05-08:00"
    assert first["files"] == 1 and "uuid" not in first["frame"]
    # position 1's planes are in the second file, its metadata in the first
    assert other["files"] == 2
    assert other["frame"]["uuid"] == "a10f1945-00d9-456f-89a5-fe3a9959c369"
    assert other["frame"]["t"] == pytest.approx(0.768)  # the Plane's DeltaT, in ms
    assert other["frame"]["exposure_s"] == pytest.approx(0.001)
    assert (other["frame"]["position_x"], other["frame"]["position_y"]) == (256.0, -256.0)
    assert other["frame"]["position_z"] == -4.0
    manifest = json.loads((out / "out.manifest.json").read_text())
    entries = manifest["recordings"]
    assert [(r["source"], r["series"]) for r in entries] == [(str(master), 0), (str(master), 1)]
    assert entries[1]["vendor_metadata"]["Summary"]["Prefix"] == PREFIX


def test_mmstack_split_files_and_metadata_txt(tmp_path: Path) -> None:
    """A position continued in ``_1`` and ``_2`` files (Micro-Manager splits at 4 GB) is
    one recording; without DeltaT in the OME-XML, metadata.txt's ElapsedTime-ms gives
    frame.t."""
    rng = np.random.default_rng(1)
    positions = [
        [rng.integers(0, 60000, (2, 16, 20), dtype=np.uint16) for _ in range(6)] for _ in range(2)
    ]
    paths = write_micromanager(
        tmp_path / "acq",
        positions,
        channels=("GFP", "RFP"),
        size_z=2,
        planes_per_file=5,
        ome_delta_t=False,
    )
    names = [p.name for p in paths]
    assert names[:3] == [
        "astro_MMStack_Pos0.ome.tif",
        "astro_MMStack_Pos0_1.ome.tif",
        "astro_MMStack_Pos0_2.ome.tif",
    ]
    sources = discover([str(tmp_path / "acq")], tmp_path)
    assert [(s.series, len(s.files)) for s in sources] == [(0, 4), (1, 5)]
    for source in sources:
        files = [f for f in source.files if f.name.endswith(".ome.tif")]
        planes = []
        for f in files if source.series == 0 else files[1:]:
            with tifffile.TiffFile(f) as tif:
                planes.extend(page.asarray() for page in tif.pages)
        with open_source(source) as rec:
            assert rec.metadata["files"] == 3 if source.series == 0 else 4
            assert rec.metadata["position_name"] == f"Pos{source.series}"
            for i in range(6):
                np.testing.assert_array_equal(
                    rec.read_frame(i), np.stack(planes[2 * i : 2 * i + 2])
                )
                np.testing.assert_array_equal(rec.read_frame(i), positions[source.series][i])
            txt = json.loads(source.files[-1].read_text())
            for i in range(6):
                t, z = divmod(i, 2)
                frame = rec.frame_metadata(i)
                tags = txt[f"FrameKey-{t}-0-{z}"]
                assert frame["t"] == pytest.approx(tags["ElapsedTime-ms"] / 1000)
                assert frame["position_z"] == tags["ZPositionUm"]
            uuids = [rec.frame_metadata(i)["uuid"] for i in range(6)]
            # 5 planes per file: frame 2 has its channels in two files
            assert isinstance(uuids[2], list) and len(set(uuids[2])) == 2
            assert len({u for x in uuids for u in (x if isinstance(x, list) else [x])}) == 3
            assert rec.vendor_metadata["Summary"]["Prefix"] == "astro"


def test_mmstack_without_metadata_txt_reads_each_image_json(tmp_path: Path) -> None:
    """Without metadata.txt, each image's own JSON (tag 51123) gives its elapsed time."""
    frames = [[np.full((1, 8, 8), i, np.uint16) for i in range(3)]]
    paths = write_micromanager(tmp_path, frames, ome_delta_t=False, metadata_txt=False)
    (source,) = discover([str(tmp_path)], tmp_path)
    assert source.files == tuple(paths)
    with tifffile.TiffFile(paths[0]) as tif:
        elapsed = [p.tags[51123].value["ElapsedTime-ms"] for p in tif.pages]
    with open_source(source) as rec:
        assert [rec.frame_metadata(i)["t"] for i in range(3)] == pytest.approx(
            [e / 1000 for e in elapsed]
        )
        assert rec.frame_metadata(2)["t"] != 2 * rec.metadata["time_increment"]


def test_mmstack_damaged_metadata_txt_is_a_warning(tmp_path: Path, caplog) -> None:
    frames = [[np.full((1, 8, 8), i, np.uint16) for i in range(2)]]
    paths = write_micromanager(tmp_path, frames, ome_delta_t=False)
    txt = next(p for p in paths if p.name.endswith("_metadata.txt"))
    txt.write_text("{ not json")
    (source,) = discover([str(tmp_path)], tmp_path)
    with caplog.at_level(logging.WARNING), open_source(source) as rec:
        assert rec.n_frames == 2
        # the image's own JSON (tag 51123) still gives its elapsed time
        with tifffile.TiffFile(paths[0]) as tif:
            elapsed = tif.pages[1].tags[51123].value["ElapsedTime-ms"]
        assert rec.frame_metadata(1)["t"] == pytest.approx(elapsed / 1000)
    assert any(str(txt) in r.getMessage() for r in caplog.records)


def test_mmstack_missing_position_file_is_an_error(tmp_path: Path) -> None:
    frames = [[np.zeros((1, 8, 8), np.uint16)] for _ in range(2)]
    paths = write_micromanager(tmp_path, frames)
    paths[1].unlink()  # astro_MMStack_Pos1.ome.tif
    sources = discover([str(tmp_path)], tmp_path)
    assert [s.series for s in sources] == [0, 1]
    with pytest.raises(InputError, match=r"astro_MMStack_Pos1\.ome\.tif: file of the Micro"):
        open_source(sources[1])


def test_micromanager2_single_plane_positions(tmp_path: Path) -> None:
    """Micro-Manager 2.0 "separate image files": one recording per position folder."""
    rng = np.random.default_rng(2)
    positions = [
        [rng.integers(0, 4096, (2, 12, 14), dtype=np.uint16) for _ in range(6)] for _ in range(2)
    ]
    root = tmp_path / "acq_1"
    write_micromanager2(root, positions, channels=("DAPI", "GFP"), size_z=2)
    for pattern, expected in (
        (str(root), [0, 1]),
        (str(root / "Pos1"), [1]),
        (str(root / "Pos0" / "*.tif"), [0]),
        (str(root / "Pos0" / mm2_file_name(0, 0, 0, 0)), [0]),
    ):
        sources = discover([pattern], tmp_path)
        assert [s.path for s in sources] == [
            root / f"Pos{p}" / mm2_file_name(0, p, 0, 0) for p in expected
        ], pattern
        assert all(s.format == "micro-manager" and len(s.files) == 13 for s in sources)
    out = tmp_path / "out"
    result = _export(str(root), str(out))
    assert result.exit_code == 0, result.output
    samples = _samples(out)
    assert len(samples) == 12
    for sample in samples:
        meta = sample["json"]
        p, t, z = meta["recording_index"], meta["frame"]["t_index"], meta["frame"]["z_index"]
        folder = root / f"Pos{p}"
        expected = np.stack([tifffile.imread(folder / mm2_file_name(c, p, t, z)) for c in (0, 1)])
        np.testing.assert_array_equal(sample["npy"], expected)
        tags = json.loads((folder / "metadata.txt").read_text())
        image = tags[f"Metadata-Pos{p}/{mm2_file_name(0, p, t, z)}"]
        assert meta["frame"]["t"] == pytest.approx(image["ElapsedTime-ms"] / 1000)
        assert meta["frame"]["exposure_s"] == pytest.approx(0.02)
        assert meta["frame"]["position_x"] == image["XPositionUm"]
        assert meta["position_name"] == f"Pos{p}"
        assert meta["format"] == "micro-manager" and meta["files"] == 12
        assert [c["name"] for c in meta["channels"]] == ["DAPI", "GFP"]
        assert meta["scale_x"] == 0.65 and meta["scale_z"] == 1.5
        assert meta["time_increment"] == 0.5
        assert meta["date_acquired"] == "2020-06-01T09:30:12.250+02:00"


def test_micromanager2_missing_image_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "acq"
    write_micromanager2(
        root, [[np.zeros((2, 8, 8), np.uint16) for _ in range(2)]], channels=("A", "B")
    )
    (root / "Pos0" / mm2_file_name(1, 0, 1, 0)).unlink()
    (source,) = discover([str(root)], tmp_path)
    with pytest.raises(InputError, match=r"img_channel001_position000_time000000001_z000\.tif"):
        open_source(source)
