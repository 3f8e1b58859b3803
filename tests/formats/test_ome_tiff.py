"""OME-TIFF specifics: a companion OME-XML file describing BinaryOnly TIFF files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from toile.errors import InputError
from toile.formats import discover, open_source

NS = "http://www.openmicroscopy.org/Schemas/OME/2016-06"
UUIDS = ["0b5c3b1e-0000-4000-8000-00000000000a", "0b5c3b1e-0000-4000-8000-00000000000b"]
MASTER = "0b5c3b1e-0000-4000-8000-0000000000ff"


def _companion(names: list[str]) -> str:
    tiff_data = "".join(
        f'<TiffData FirstT="{t}" IFD="0" PlaneCount="1">'
        f'<UUID FileName="{name}">urn:uuid:{UUIDS[t]}</UUID></TiffData>'
        for t, name in enumerate(names)
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><OME xmlns="{NS}" UUID="urn:uuid:{MASTER}">'
        '<Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint16" '
        f'SizeX="6" SizeY="5" SizeZ="1" SizeC="1" SizeT="{len(names)}" TimeIncrement="2">'
        f'<Channel ID="Channel:0:0" Name="GCaMP" SamplesPerPixel="1"/>{tiff_data}'
        "</Pixels></Image></OME>"
    )


def _binary_only(uuid: str) -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><OME xmlns="{NS}" UUID="urn:uuid:{uuid}">'
        f'<BinaryOnly MetadataFile="set.companion.ome" UUID="urn:uuid:{MASTER}"/></OME>'
    )


def test_companion_file_describes_binary_only_tiffs(tmp_path: Path) -> None:
    names = ["set_t0.ome.tif", "set_t1.ome.tif"]
    data = np.arange(2 * 5 * 6, dtype="uint16").reshape(2, 5, 6)
    for t, name in enumerate(names):
        tifffile.imwrite(
            tmp_path / name, data[t], description=_binary_only(UUIDS[t]).encode(), metadata=None
        )
    (tmp_path / "set.companion.ome").write_text(_companion(names))
    for pattern in (".", "set_t1.ome.tif", "*.tif"):
        (source,) = discover([pattern], tmp_path)
        assert source.path == tmp_path / "set.companion.ome"
        assert {p.name for p in source.files} == {*names, "set.companion.ome"}
    with open_source(source) as recording:
        frames = np.stack([recording.read_frame(i) for i in range(recording.n_frames)])
        assert np.array_equal(frames, data)
        assert recording.metadata["files"] == 3 and recording.metadata["time_increment"] == 2
        assert recording.frame_metadata(1)["uuid"] == UUIDS[1]
        assert recording.frame_metadata(1)["t"] == 2.0
    (tmp_path / names[1]).unlink()
    with pytest.raises(InputError, match="set_t1.ome.tif: file of the multi-file OME series"):
        open_source(source)
