"""Write realistic input recordings: OME-TIFF stacks, Prairie View T-Series, ImageJ stacks.

Used by the tests and the benchmark to build inputs that look like what
acquisition software writes. Frames are streamed one page at a time, so an
iterator of many frames is never held in memory: the metadata that depends on
the number of frames is written into the first page's ImageDescription once
all pages are on disk.
"""

from __future__ import annotations

import json
import re
import struct
import uuid as uuidlib
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
import tifffile

from toile.formats.tiff.ome_xml import OME_PIXEL_TYPES

OME_NAMESPACE = "http://www.openmicroscopy.org/Schemas/OME/2016-06"
_XML_HEADER = '<?xml version="1.0" encoding="UTF-8"?>\n'
#: Written first and replaced when the page count is known.
_PLACEHOLDER = "toile: metadata follows"

#: numpy dtype name -> OME PixelType, the inverse of the reader's table, for the pixel
#: types toile reads (not complex, not 1-bit).
_OME_TYPES = {
    dtype: ome_type
    for ome_type, dtype in OME_PIXEL_TYPES.items()
    if dtype != "bool" and "complex" not in dtype
}


def _new_uuid() -> str:
    return f"urn:uuid:{uuidlib.uuid4()}"


def _frames(frames: Iterable[np.ndarray] | np.ndarray, n_channels: int | None) -> Iterator:
    """Yield (C, H, W) frames with one shape and dtype, checking each as it comes."""
    first_shape = None
    first_dtype = None
    for frame in frames:
        frame = np.asarray(frame)
        if frame.ndim == 2:
            frame = frame[np.newaxis]
        if frame.ndim != 3:
            raise ValueError(f"a frame must be (H, W) or (C, H, W), got shape {frame.shape}")
        if first_shape is None:
            first_shape, first_dtype = frame.shape, frame.dtype
            if n_channels is not None and frame.shape[0] != n_channels:
                raise ValueError(f"frames have {frame.shape[0]} channels, expected {n_channels}")
            if frame.dtype.name not in _OME_TYPES:
                raise ValueError(f"unsupported pixel type {frame.dtype}")
        elif frame.shape != first_shape or frame.dtype != first_dtype:
            raise ValueError(
                f"frame of shape {frame.shape} {frame.dtype} differs from the first frame "
                f"{first_shape} {first_dtype}"
            )
        yield frame


def _pixels_xml(
    *,
    shape: tuple[int, int],
    dtype: np.dtype,
    channels: list[str],
    size_z: int,
    size_t: int,
    time_increment: float | None,
    physical_size: float | None,
    physical_size_z: float | None,
    tiff_data: list[str],
    position: tuple[float, float, float] | None,
) -> str:
    """The <Pixels> element of an XYCZT image, with one Plane per (c, z, t)."""
    attrs = {
        "ID": "Pixels:0",
        "DimensionOrder": "XYCZT",
        "Type": _OME_TYPES[np.dtype(dtype).name],
        "BigEndian": "false",
        "SizeX": str(shape[1]),
        "SizeY": str(shape[0]),
        "SizeZ": str(size_z),
        "SizeC": str(len(channels)),
        "SizeT": str(size_t),
    }
    if physical_size is not None:
        attrs |= {
            "PhysicalSizeX": repr(float(physical_size)),
            "PhysicalSizeXUnit": "µm",
            "PhysicalSizeY": repr(float(physical_size)),
            "PhysicalSizeYUnit": "µm",
        }
    if physical_size_z is not None:
        attrs |= {"PhysicalSizeZ": repr(float(physical_size_z)), "PhysicalSizeZUnit": "µm"}
    if time_increment is not None:
        attrs |= {"TimeIncrement": repr(float(time_increment)), "TimeIncrementUnit": "s"}
    parts = ["<Pixels " + " ".join(f"{k}={quoteattr(v)}" for k, v in attrs.items()) + ">"]
    for c, name in enumerate(channels):
        parts.append(f'<Channel ID="Channel:0:{c}" Name={quoteattr(name)} SamplesPerPixel="1"/>')
    parts.extend(tiff_data)
    for t in range(size_t):
        for z in range(size_z):
            for c in range(len(channels)):
                plane = f'<Plane TheC="{c}" TheZ="{z}" TheT="{t}"'
                if time_increment is not None:
                    plane += f' DeltaT="{t * time_increment!r}" DeltaTUnit="s"'
                if position is not None:
                    x, y, z0 = position
                    pz = z0 + z * (physical_size_z or 0.0)
                    plane += (
                        f' PositionX="{x!r}" PositionXUnit="µm" PositionY="{y!r}"'
                        f' PositionYUnit="µm" PositionZ="{pz!r}" PositionZUnit="µm"'
                    )
                parts.append(plane + "/>")
    parts.append("</Pixels>")
    return "".join(parts)


def _ome_document(root_uuid: str, image_name: str, date: str | None, pixels: str) -> str:
    date_xml = f"<AcquisitionDate>{date}</AcquisitionDate>" if date else ""
    return (
        f'{_XML_HEADER}<OME xmlns="{OME_NAMESPACE}" UUID="{root_uuid}" Creator="toile">'
        f'<Image ID="Image:0" Name={quoteattr(image_name)}>{date_xml}{pixels}</Image></OME>'
    )


def write_ome_tiff(
    path: Path,
    frames: Iterable[np.ndarray] | np.ndarray,
    *,
    channels: list[str] | None = None,
    size_z: int = 1,
    time_increment: float | None = 0.5,
    physical_size: float | None = 0.8,
    physical_size_z: float | None = None,
    compression: str | None = None,
    bigtiff: bool = False,
    date: str | None = "2024-03-15T10:00:00",
    position: tuple[float, float, float] | None = None,
) -> Path:
    """Write a single-file OME-TIFF like Bio-Formats does: one page per (c, z, t) plane.

    ``frames`` yields one (t, z) frame at a time (t-major, then z): (H, W), or
    (C, H, W) with several channels (names from ``channels``, else
    ``Ch1``, ``Ch2``...). Pages are written as they come, XYCZT order.
    """
    path = Path(path)
    n_channels = len(channels) if channels is not None else None
    count = 0
    shape = dtype = None
    plane_files: list[str] = []
    root_uuid = _new_uuid()
    with tifffile.TiffWriter(path, bigtiff=bigtiff) as writer:
        for frame in _frames(frames, n_channels):
            shape, dtype = frame.shape, frame.dtype
            for plane in frame:
                writer.write(
                    plane,
                    photometric="minisblack",
                    compression=compression,
                    metadata=None,
                    description=_PLACEHOLDER if count == 0 else None,
                )
                plane_files.append(path.name)
                count += 1
    if shape is None:
        raise ValueError(f"{path}: no frames to write")
    n_c = shape[0]
    names = channels if channels is not None else [f"Ch{c + 1}" for c in range(n_c)]
    n_frames = count // n_c
    if n_frames % size_z:
        raise ValueError(f"{n_frames} frames do not divide into size_z={size_z}")
    size_t = n_frames // size_z
    tiff_data = []
    for ifd in range(count):
        c, rest = ifd % n_c, ifd // n_c
        z, t = rest % size_z, rest // size_z
        tiff_data.append(
            f'<TiffData FirstC="{c}" FirstZ="{z}" FirstT="{t}" IFD="{ifd}" PlaneCount="1">'
            f"<UUID FileName={quoteattr(path.name)}>{root_uuid}</UUID></TiffData>"
        )
    pixels = _pixels_xml(
        shape=shape[1:],
        dtype=dtype,
        channels=names,
        size_z=size_z,
        size_t=size_t,
        time_increment=time_increment,
        physical_size=physical_size,
        physical_size_z=physical_size_z,
        tiff_data=tiff_data,
        position=position,
    )
    name = path.name.removesuffix(".tif").removesuffix(".tiff").removesuffix(".ome")
    tifffile.tiffcomment(path, comment=_ome_document(root_uuid, name, date, pixels).encode())
    return path


def prairie_file_name(prefix: str, channel: int, index: int, cycle: int = 1) -> str:
    """Prairie View's name for the file of one frame of one channel (both 1-based)."""
    return f"{prefix}_Cycle{cycle:05d}_Ch{channel}_{index:06d}.ome.tif"


def prairie_v4_file_name(prefix: str, channel: int, index: int, cycle: int = 1) -> str:
    """Prairie View 4.x's name for the file of one frame of one channel (both 1-based)."""
    return f"{prefix}_Cycle{cycle:03d}_CurrentSettings_Ch{channel}_{index:06d}.tif"


#: The acquisition state :func:`write_prairie_series` records, as Prairie View 5.4 does
#: (the values of a real T-Series; ``framePeriod``, sizes and positions are the series').
PRAIRIE_STATE = {
    "activeMode": "Galvo",
    "bitDepth": "13",
    "dwellTime": "12",
    "objectiveLens": "40X LUMPlanFL/IR",
    "objectiveLensMag": "40",
    "objectiveLensNA": "0.8",
    "opticalZoom": "1",
}
PRAIRIE_LASERS = (("Mira", "0"), ("Insight X3", "300"), ("1040nm", "0"))
PRAIRIE_PMT_GAINS = ("650", "825", "700", "600")


def _pv_value(key: str, value: object) -> str:
    return f"    <PVStateValue key={quoteattr(key)} value={quoteattr(str(value))} />"


def _pv_table(key: str, rows: list[str], indent: str = "    ") -> list[str]:
    return [f"{indent}<PVStateValue key={quoteattr(key)}>", *rows, f"{indent}</PVStateValue>"]


def _pv_position(x: float, y: float, z: float, indent: str = "    ") -> list[str]:
    rows = []
    for axis, value in (("XAxis", x), ("YAxis", y), ("ZAxis", z)):
        rows += [
            f'{indent}  <SubindexedValues index="{axis}">',
            f'{indent}    <SubindexedValue subindex="0" value="{value!r}" />',
            f"{indent}  </SubindexedValues>",
        ]
    return _pv_table("positionCurrent", rows, indent)


def _pv_date(date: str | None) -> str:
    """Prairie View's US-style date (``3/15/2024 10:00:00 AM``) of an ISO date."""
    when = datetime.fromisoformat(date) if date else datetime(2024, 3, 15, 10, 0, 0)
    hour = when.hour % 12 or 12
    ampm = "AM" if when.hour < 12 else "PM"
    return f"{when.month}/{when.day}/{when.year} {hour}:{when:%M:%S} {ampm}"


def write_pvscan_xml(
    path: Path,
    cycles: list[list[list[str]]],
    *,
    height: int,
    width: int,
    time_increment: float,
    physical_size: float | None,
    z_step: float | None,
    position: tuple[float, float, float] | None,
    date: str | None,
    version: str = "5.4.64.500",
) -> Path:
    """Write a PVScan XML document: ``cycles[cycle][frame][channel]`` file names.

    One cycle of several frames is a T-Series (``TSeries Timed Element``); several
    cycles are the volumes of a T-Series of Z-stacks (``TSeries ZSeries Element``,
    one frame per plane, each with its Z position). A ``version`` before 5.2 writes the
    state as ``Key`` elements in every frame, as Prairie View 4.x did.
    """
    legacy = tuple(int(v) for v in version.split(".")[:2]) < (5, 2)
    n_channels = len(cycles[0][0])
    zseries = len(cycles) > 1
    x0, y0, z0 = position if position is not None else (None, None, None)
    state = dict(PRAIRIE_STATE)
    state |= {
        "framePeriod": repr(float(time_increment)),
        "linesPerFrame": str(height),
        "pixelsPerLine": str(width),
    }
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        f'<PVScan version="{version}" date="{_pv_date(date)}" notes="">',
    ]
    if not legacy:
        lines += [
            '  <SystemIDs SystemID="0000-0000-0000-0000">',
            '    <SystemID SystemID="0" Description="toile test-recording" />',
            "  </SystemIDs>",
            "  <PVStateShard>",
        ]
        lines += [_pv_value(k, v) for k, v in sorted(state.items())]
        lines += _pv_table(
            "laserPower",
            [
                f'      <IndexedValue index="{i}" value="{v}" description={quoteattr(name)} />'
                for i, (name, v) in enumerate(PRAIRIE_LASERS)
            ],
        )
        if physical_size is not None:
            lines += _pv_table(
                "micronsPerPixel",
                [
                    f'      <IndexedValue index="XAxis" value="{physical_size!r}" />',
                    f'      <IndexedValue index="YAxis" value="{physical_size!r}" />',
                    f'      <IndexedValue index="ZAxis" value="{z_step or 1.0!r}" />',
                ],
            )
        lines += _pv_table(
            "pmtGain",
            [
                f'      <IndexedValue index="{c}" value="{PRAIRIE_PMT_GAINS[c % 4]}" '
                f'description="Ch {c + 1} HV" />'
                for c in range(max(n_channels, 2))
            ],
        )
        if position is not None:
            lines += _pv_position(x0, y0, z0)
        lines.append("  </PVStateShard>")
    t0 = 0.169
    period = float(time_increment)
    for cycle, frames in enumerate(cycles, start=1):
        kind = "TSeries ZSeries Element" if zseries else "TSeries Timed Element"
        start = t0 + (cycle - 1) * len(frames) * period
        seconds = 10 * 3600 + start
        clock = f"{int(seconds // 3600):02d}:{int(seconds % 3600 // 60):02d}:{seconds % 60:010.7f}"
        lines.append(f'  <Sequence type="{kind}" cycle="{cycle}" time="{clock}">')
        if not legacy:
            lines.append("    <PVStateShard />")
        for index, names in enumerate(frames, start=1):
            relative = (index - 1) * period
            absolute = start + relative
            label = "label" if legacy else "parameterSet"
            lines.append(
                f'    <Frame relativeTime="{relative!r}" absoluteTime="{absolute!r}" '
                f'index="{index}" {label}="CurrentSettings">'
            )
            for c, name in enumerate(names):
                lines.append(
                    f'      <File channel="{c + 1}" channelName="Ch{c + 1}" '
                    f"filename={quoteattr(name)} />"
                )
            z = z0
            if z0 is not None and zseries:
                z = z0 + (index - 1) * (z_step or 0.0)
            if legacy:
                lines.append("      <PVStateShard>")
                keys = dict(state)
                if physical_size is not None:
                    keys["micronsPerPixel_XAxis"] = repr(physical_size)
                    keys["micronsPerPixel_YAxis"] = repr(physical_size)
                for c in range(n_channels):
                    keys[f"pmtGain_{c}"] = PRAIRIE_PMT_GAINS[c % 4]
                for i, (_, v) in enumerate(PRAIRIE_LASERS):
                    keys[f"laserPower_{i}"] = v
                if position is not None:
                    keys["positionCurrent_XAxis"] = repr(x0)
                    keys["positionCurrent_YAxis"] = repr(y0)
                    keys["positionCurrent_ZAxis"] = repr(z)
                lines += [
                    f'        <Key key={quoteattr(k)} permissions="Read, Write, Save" '
                    f"value={quoteattr(v)} />"
                    for k, v in keys.items()
                ]
                lines.append("      </PVStateShard>")
            else:
                lines.append('      <ExtraParameters lastGoodFrame="0" />')
                lines.append("      <PVStateShard>")
                lines.append("  " + _pv_value("framePeriod", repr(period)))
                if zseries and position is not None:
                    lines += _pv_position(x0, y0, z, indent="        ")
                lines.append("      </PVStateShard>")
            lines.append("    </Frame>")
        lines.append("  </Sequence>")
    lines.append("</PVScan>")
    path = Path(path)
    path.write_text("\ufeff" + "\n".join(lines), encoding="utf-8")
    return path


def write_prairie_series(
    directory: Path,
    frames: Iterable[np.ndarray],
    *,
    n_channels: int = 1,
    prefix: str = "TSeries-03152024-001",
    time_increment: float = 0.5,
    physical_size: float | None = 0.8,
    date: str | None = "2024-03-15T10:00:00",
    compression: str | None = None,
    position: tuple[float, float, float] | None = (0.0, 0.0, 0.0),
    size_z: int = 1,
    z_step: float = 2.0,
    pvscan: bool = True,
    version: str = "5.4.64.500",
) -> list[Path]:
    """Write a Bruker Prairie View T-Series: one single-page TIFF per frame and channel.

    Files are ``{prefix}_Cycle00001_Ch{c}_{i:06d}.ome.tif``; with ``size_z`` > 1,
    each volume is a cycle and ``i`` its plane (a T-Series of Z-stacks). The first
    file (Ch1, frame 1) holds the OME-XML of the whole series, one TiffData per plane
    naming its file and UUID; every other file holds a BinaryOnly OME-XML that points
    at the first one. With ``pvscan``, ``{prefix}.xml`` (the PVScan document) and
    ``{prefix}.env`` are written too. A ``version`` before 5.2 imitates Prairie View
    4.x: plain TIFFs without OME-XML named ``{prefix}_Cycle001_CurrentSettings_Ch1_
    000001.tif``, described by the PVScan XML alone. Returns the image files, sorted
    by name (master first).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    legacy = tuple(int(v) for v in version.split(".")[:2]) < (5, 2)
    file_name = prairie_v4_file_name if legacy else prairie_file_name
    master_name = file_name(prefix, 1, 1)
    master_uuid = _new_uuid()
    tiff_data: list[str] = []
    paths: list[Path] = []
    cycles: list[list[list[str]]] = []
    shape = dtype = None
    n_frames = 0
    for number, frame in enumerate(_frames(frames, n_channels)):
        shape, dtype = frame.shape, frame.dtype
        n_frames = number + 1
        t, z = divmod(number, size_z)
        cycle, index = (t + 1, z + 1) if size_z > 1 else (1, t + 1)
        if index == 1 and (size_z > 1 or not cycles):
            cycles.append([])
        names = []
        for c, plane in enumerate(frame):
            name = file_name(prefix, c + 1, index, cycle)
            names.append(name)
            file_uuid = master_uuid if name == master_name else _new_uuid()
            if legacy:
                description = None
            elif name == master_name:
                description = _PLACEHOLDER
            else:
                description = (
                    f'{_XML_HEADER}<OME xmlns="{OME_NAMESPACE}" UUID="{file_uuid}">'
                    f"<BinaryOnly MetadataFile={quoteattr(master_name)} UUID="
                    f'"{master_uuid}"/></OME>'
                )
            path = directory / name
            tifffile.imwrite(
                path,
                plane,
                photometric="minisblack",
                compression=compression,
                metadata=None,
                description=description,
            )
            paths.append(path)
            tiff_data.append(
                f'<TiffData FirstC="{c}" FirstZ="{z}" FirstT="{t}" IFD="0" PlaneCount="1">'
                f"<UUID FileName={quoteattr(name)}>{file_uuid}</UUID></TiffData>"
            )
        cycles[-1].append(names)
    if shape is None:
        raise ValueError(f"{directory}: no frames to write")
    if n_frames % size_z:
        raise ValueError(f"{n_frames} frames do not divide into size_z={size_z}")
    if not legacy:
        pixels = _pixels_xml(
            shape=shape[1:],
            dtype=dtype,
            channels=[f"Ch{c + 1}" for c in range(n_channels)],
            size_z=size_z,
            size_t=n_frames // size_z,
            time_increment=time_increment * size_z,
            physical_size=physical_size,
            physical_size_z=z_step if size_z > 1 else None,
            tiff_data=tiff_data,
            position=position,
        )
        document = _ome_document(master_uuid, f"{prefix}", date, pixels)
        tifffile.tiffcomment(directory / master_name, comment=document.encode())
    if pvscan or legacy:
        write_pvscan_xml(
            directory / f"{prefix}.xml",
            cycles,
            height=shape[1],
            width=shape[2],
            time_increment=time_increment,
            physical_size=physical_size,
            z_step=z_step if size_z > 1 else None,
            position=position,
            date=date,
            version=version,
        )
        (directory / f"{prefix}.env").write_text(
            '\ufeff<?xml version="1.0" encoding="utf-8"?>\n'
            f'<Environment version="{version}" date="{_pv_date(date)}">\n</Environment>',
            encoding="utf-8",
        )
    return sorted(paths)


#: ``Experiment.xml`` as ThorImageLS 3.2 writes it (the structure and fixed values of a
#: real capture; the fields in braces are the recording's).
_THOR_EXPERIMENT = """<?xml version="1.0"?>
<ThorImageExperiment>
  <Name name="{name}" />
  <Date date="{date}" uTime="{utime}" />
  <User name="user" />
  <Computer name="USER-PC" />
  <Software version="3.2.2018.4241" />
  <Camera name="None" width="4096" height="4096" pixelSizeUM="6.45" binning="2" gain="0" lightmode="0" left="0" right="4096" top="0" bottom="4096" binningX="1" binningY="1" tdiWidth="0" tdiHeight="0" readoutSpeedIndex="0" bitsPerPixel="14" />
  <Magnification mag="22.2222222222222" indexOfRefraction="1.3" name="20X OLY" />
  <Wavelengths nyquistExWavelengthNM="488" nyquistEmWavelengthNM="488">
{wavelengths}
    <ChannelEnable Set="{channel_set}" />
  </Wavelengths>
  <ZStage name="ThorZPiezo" steps="{size_z}" stepSizeUM="{z_step}" startPos="0" zStreamFrames="1" zStreamMode="0" setupPositionMM="0.03" enable="1" />
  <Timelapse timepoints="{size_t}" intervalSec="0" triggerMode="0" />
  <Comments text="" />
  <LSM name="ResonanceGalvo" scanMode="1" areaMode="0" channel="{channel_set}" fieldSize="21" pixelX="{width}" pixelY="{height}" offsetX="0" offsetY="0" averageMode="{average}" averageNum="10" clockSource="1" inputRange1="10" inputRange2="11" twoWayAlignment="4" extClockRate="80000000" inputRange3="10" inputRange4="10" flybackCycles="4" minimizeFlybackCycles="1" pixelSizeUM="{pixel_size}" horizontalFlip="0" verticalFlip="0" polarity1="0" polarity2="0" polarity3="0" polarity4="0" interleave="0" dwellTime="0.308199306062498" areaAngle="0" widthUM="{width_um}" heightUM="{height_um}" frameRate="{frame_rate}" fineOffsetX="0" fineOffsetY="0" fineScaleX="0" fineScaleY="0" chan1DigOffset="0" chan2DigOffset="0" chan3DigOffset="0" chan4DigOffset="0" pulseMultiplexing="0" pulseMultiplexingPhase="1" />
  <PMT {pmt} offsetAVolts="-0.022" offsetBVolts="-0.022" offsetCVolts="0" offsetDVolts="0" />
  <MCLS enable1="0" power1="0" enable2="0" power2="0" enable3="0" power3="0" enable4="0" power4="0" power1percent="0" power2percent="0" power3percent="0" power4percent="0" />
  <PinholeWheel position="0" micrometers="25" adu="1.764" />
  <Pockels type="0" pockelsBlankPercentage="0" maskEnable="0" maskInvert="0" maskPath="" pockelsMinV="0" pockelsMaxV="1" start="0" stop="0" path="" />
  <Pockels type="0" pockelsBlankPercentage="0" pockelsMinV="0" pockelsMaxV="1" start="0" stop="0" path="" />
  <Pockels type="0" pockelsBlankPercentage="0" pockelsMinV="0" pockelsMaxV="1" start="0" stop="0" path="" />
  <Pockels type="0" pockelsBlankPercentage="0" pockelsMinV="0" pockelsMaxV="0" start="0" stop="0" path="" />
  <Streaming enable="{stream}" frames="{stream_frames}" dmaFrames="64" rawData="{stream}" triggerMode="1" storageMode="0" displayImage="1" zFastEnable="{fast_z}" zFastMode="1" flybackFrames="{flyback}" flybackLines="4" flybackTimeAdjustMS="0" volumeTimeAdjustMS="0" stepTimeAdjustMS="0" previewIndex="1" stimulusTriggering="0" stimulusMaxFrames="0" useReferenceVoltageForFastZPockels="0" />
  <PowerRegulator enable="1" type="0" start="1" stop="1" path="C:\\Users\\user\\Documents\\ThorImageLS 3.2\\Application Settings\\powerramps\\Exponential.txt" offset="118" />
  <MultiPhotonLaser enable="1" pos="0" seqEnable="0" seqPos1="0" seqPos2="0" />
  <CaptureMode mode="{stream}" />
  <LightPath GalvoGalvo="1" GalvoResonance="1" Camera="0" />
  <Modality name="Multiphoton" primaryDetectorType="1" />
  <ExperimentStatus value="Complete" />
  <ExperimentNotes text="" />
  <RawData onlyEnabledChannels="1" />
</ThorImageExperiment>
"""
_THOR_OME = "http://www.openmicroscopy.org/Schemas/OME/2010-06"
#: PMT gains of the channels ThorImageLS names A, B, C, D.
THOR_PMT_GAINS = (20, 30, 40, 50)


def thorimage_file_name(channel: int, z: int, t: int) -> str:
    """ThorImageLS's name for the plane of channel ``channel`` (0 is A), z and t (1-based)."""
    return f"Chan{chr(ord('A') + channel)}_0001_0001_{z:04d}_{t:04d}.tif"


def _thor_ome(
    shape: tuple[int, ...],
    sizes: tuple[int, int, int],
    scale: tuple[float, float],
    plane: str,
    tiff_data: str,
    date: str,
) -> str:
    """The OME-XML (2010-06) ThorImageLS writes in each plane's file."""
    size_c, size_z, size_t = sizes
    return (
        f'<?xml version="1.0"?><OME xmlns="{_THOR_OME}" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'xsi:schemaLocation="{_THOR_OME} {_THOR_OME}/ome.xsd">'
        f'<Image ID="Image:0" AcquiredDate="{date}"><Pixels DimensionOrder="XYCZT" '
        f'ID="Pixels:0" PhysicalSizeX="{scale[0]!r}" PhysicalSizeY="{scale[0]!r}" '
        f'PhysicalSizeZ="{scale[1]!r}" SizeC="{size_c}" SizeT="{size_t}" SizeX="{shape[1]}" '
        f'SizeY="{shape[0]}" SizeZ="{size_z}" TimeIncrement="0" Type="uint16">'
        '<Channel ID="Channel:0:0" SamplesPerPixel="1"><LightPath/></Channel>'
        '<BinData BigEndian="false" Length = "0" '
        'xmlns="http://www.openmicroscopy.org/Schemas/BinaryFile/2010-06"/>'
        f"{plane}{tiff_data}</Pixels></Image>"
        '<StructuredAnnotations xmlns="http://www.openmicroscopy.org/Schemas/SA/2010-06"/></OME>'
    )


def write_thorimage(
    directory: Path,
    frames: Iterable[np.ndarray],
    *,
    n_channels: int = 1,
    size_z: int = 1,
    time_increment: float = 0.5,
    physical_size: float = 0.593,
    z_step: float = 15.0,
    date: str = "2019-11-21T11:15:18",
    name: str = "Untitled_001",
    compression: str | None = "lzw",
) -> list[Path]:
    """Write a ThorImageLS 3.2 capture folder: ``Experiment.xml`` and one single-page
    OME-TIFF per plane, ``Chan{A,B,...}_0001_0001_{z:04d}_{t:04d}.tif`` (LZW).

    ``frames`` yields (t, z) frames, t-major (uint16, as ThorImageLS saves). Each file's
    OME-XML holds its plane's ``DeltaT`` (time point ``t`` at ``t * time_increment``, its
    planes spread over that interval); the first file's also describes the whole series,
    with ``TimeIncrement="0"`` and a ``DeltaT`` of 0, as ThorImageLS writes it. Returns
    the TIFF files sorted by name (the first file first).
    """
    from datetime import timedelta

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    start = datetime.fromisoformat(date)
    planes: list[tuple[Path, int, int, int, float]] = []
    shape: tuple[int, ...] | None = None
    n_frames = 0
    for number, frame in enumerate(_frames(frames, n_channels)):
        if frame.dtype != np.uint16:
            raise ValueError(f"ThorImageLS saves uint16 planes, got {frame.dtype}")
        shape, n_frames = frame.shape[1:], number + 1
        t, z = divmod(number, size_z)
        for c, plane in enumerate(frame):
            path = directory / thorimage_file_name(c, z + 1, t + 1)
            tifffile.imwrite(
                path,
                plane,
                photometric="minisblack",
                compression=compression,
                metadata=None,
                description=_PLACEHOLDER,
            )
            step = time_increment / (2 * size_z * n_channels)
            delta = round(t * time_increment + (z * n_channels + c) * step, 5)
            planes.append((path, c, z, t, delta))
    if shape is None:
        raise ValueError(f"{directory}: no frames to write")
    if n_frames % size_z:
        raise ValueError(f"{n_frames} frames do not divide into size_z={size_z}")
    size_t = n_frames // size_z
    sizes = (n_channels, size_z, size_t)
    uuids = {path: f"urn:uuid:{str(uuidlib.uuid4()).upper()}" for path, *_ in planes}
    tiff_data = "".join(
        f'<TiffData FirstT="{t}" FirstZ="{z}" FirstC="{c}"><UUID FileName="{path.name}">'
        f"{uuids[path]}</UUID></TiffData>"
        for path, c, z, t, _ in planes
    )
    for i, (path, c, z, t, delta) in enumerate(planes):
        acquired = (start + timedelta(seconds=delta)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
        own = f'<Plane DeltaT="{0 if i == 0 else delta}" TheC="{c}" TheZ="{z}" TheT="{t}"/>'
        xml = _thor_ome(
            shape,
            sizes,
            (physical_size, z_step),
            own,
            tiff_data if i == 0 else "",
            acquired + "-00:00",
        )
        tifffile.tiffcomment(path, comment=xml.encode())
    _thor_experiment(
        directory,
        name=name,
        start=start,
        n_channels=n_channels,
        sizes=(size_z, size_t),
        shape=shape,
        physical_size=physical_size,
        z_step=z_step,
    )
    return sorted(path for path, *_ in planes)


def _thor_experiment(
    directory: Path,
    *,
    name: str,
    start: datetime,
    n_channels: int,
    sizes: tuple[int, int],
    shape: tuple[int, ...],
    physical_size: float,
    z_step: float,
    frame_rate: float = 60.087,
    stream_frames: int | None = None,
    flyback: int = 0,
) -> Path:
    """Write ``Experiment.xml`` (``stream_frames``: a streamed capture of that many)."""
    size_z, size_t = sizes
    letters = [chr(ord("A") + c) for c in range(n_channels)]
    pmt = " ".join(
        f'enable{x}="{int(i < n_channels)}" gain{x}="{THOR_PMT_GAINS[i] if i < n_channels else 0}" '
        f'bandwidth{x}Hz="{80000000 if i < n_channels else 0}"'
        for i, x in enumerate("ABCD")
    )
    stream = stream_frames is not None
    experiment = _THOR_EXPERIMENT.format(
        stream=int(stream),
        stream_frames=stream_frames if stream else 12000,
        fast_z=int(size_z > 1),
        flyback=flyback if stream else 3,
        average=0 if stream else 1,
        frame_rate=repr(frame_rate),
        name=name,
        date=start.strftime("%m/%d/%Y %H:%M:%S"),
        utime=int(start.timestamp()),
        wavelengths="\n".join(
            f'    <Wavelength name="Chan{x}" exposureTimeMS="0" />' for x in letters
        ),
        channel_set=(1 << n_channels) - 1,
        size_z=size_z,
        z_step=repr(z_step),
        size_t=size_t,
        width=shape[1],
        height=shape[0],
        pixel_size=repr(physical_size),
        width_um=round(shape[1] * physical_size, 2),
        height_um=round(shape[0] * physical_size, 2),
        pmt=pmt,
    )
    path = Path(directory) / "Experiment.xml"
    path.write_text(experiment, encoding="utf-8")
    return path


def write_thorimage_stream(
    directory: Path,
    frames: Iterable[np.ndarray],
    *,
    n_channels: int = 1,
    size_z: int = 1,
    flyback_frames: int = 0,
    frame_rate: float = 1.426,
    physical_size: float = 2.345,
    z_step: float = 10.0,
    date: str = "2020-05-05T17:14:26",
    name: str = "Untitled_001",
) -> Path:
    """Write a streamed ThorImageLS 3.2 capture: ``Image_0001_0001.raw`` (little-endian
    uint16 planes: per time point, per z plane and then ``flyback_frames`` flyback
    planes when ``size_z`` > 1 (fast z), per channel), ``ChanA_Preview.tif`` ... (the
    last frame, the image ThorImageLS leaves on screen) and ``Experiment.xml``.
    Returns the raw file."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    raw = directory / "Image_0001_0001.raw"
    shape: tuple[int, ...] | None = None
    last = None
    n_frames = 0
    with open(raw, "wb") as fh:
        for number, frame in enumerate(_frames(frames, n_channels)):
            if frame.dtype != np.uint16:
                raise ValueError(f"ThorImageLS saves uint16 planes, got {frame.dtype}")
            shape, n_frames, last = frame.shape[1:], number + 1, frame
            fh.write(frame.astype("<u2").tobytes())
            if size_z > 1 and (number + 1) % size_z == 0:
                fh.write(bytes(flyback_frames * frame.nbytes))
    if shape is None or last is None:
        raise ValueError(f"{directory}: no frames to write")
    if n_frames % size_z:
        raise ValueError(f"{n_frames} frames do not divide into size_z={size_z}")
    for c, plane in enumerate(last):
        tifffile.imwrite(
            directory / f"Chan{chr(ord('A') + c)}_Preview.tif",
            plane,
            photometric="minisblack",
            metadata=None,
        )
    size_t = n_frames // size_z
    _thor_experiment(
        directory,
        name=name,
        start=datetime.fromisoformat(date),
        n_channels=n_channels,
        sizes=(size_z, size_t),
        shape=shape,
        physical_size=physical_size,
        z_step=z_step,
        frame_rate=frame_rate,
        stream_frames=n_frames,
        flyback=flyback_frames,
    )
    return raw


def write_imagej_stack(
    path: Path,
    frames: Iterable[np.ndarray] | np.ndarray,
    *,
    finterval: float | None = 0.5,
    spacing: float | None = None,
    resolution_um: float | None = 0.8,
    size_z: int = 1,
    unit: str = "micron",
) -> Path:
    """Write an uncompressed ImageJ hyperstack (no OME-XML), as ImageJ's "Save As Tiff".

    ``frames`` yields (H, W) frames, t-major then z. ``resolution_um`` is the
    pixel size (stored as XResolution/YResolution in pixels per ``unit``),
    ``finterval`` the frame interval in seconds, ``spacing`` the z step.
    """
    path = Path(path)
    count = 0
    shape = None
    resolution = None if resolution_um is None else (1 / resolution_um, 1 / resolution_um)
    with tifffile.TiffWriter(path) as writer:
        for frame in _frames(frames, 1):
            shape = frame.shape[1:]
            writer.write(
                frame[0],
                photometric="minisblack",
                contiguous=True,
                metadata=None,
                resolution=resolution,
                description=_PLACEHOLDER if count == 0 else None,
            )
            count += 1
    if shape is None:
        raise ValueError(f"{path}: no frames to write")
    if count % size_z:
        raise ValueError(f"{count} frames do not divide into size_z={size_z}")
    metadata: dict = {}
    if finterval is not None:
        metadata["finterval"] = finterval
    if spacing is not None:
        metadata["spacing"] = spacing
    if resolution_um is not None or spacing is not None:
        metadata["unit"] = unit
    description = tifffile.imagej_description(
        (count // size_z, size_z, *shape), axes="TZYX", **metadata
    )
    tifffile.tiffcomment(path, comment=description.encode())
    return path


#: ScanImage's BigTIFF header block: magic, then the header version (3 or 4).
SCANIMAGE_MAGIC = 0x07030301


def scanimage_file_name(basename: str, acquisition: int = 1, file: int = 1) -> str:
    """ScanImage's name for file ``file`` of acquisition ``acquisition`` (both 1-based)."""
    return f"{basename}_{acquisition:05d}_{file:05d}.tif"


def _matlab(value: object) -> str:
    """A value the way ScanImage prints it in its headers (MATLAB syntax)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, tuple):  # a column vector
        return "[" + ";".join(_matlab(v) for v in value) + "]"
    if isinstance(value, list):
        if value and isinstance(value[0], str):
            return "{" + " ".join(_matlab(v) for v in value) + "}"
        if value and isinstance(value[0], list):
            return "[" + ";".join(" ".join(_matlab(v) for v in row) for row in value) + "]"
        return "[" + " ".join(_matlab(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value) if value != int(value) else str(int(value))
    return str(value)


def _fov_corners(width: float, height: float) -> list[list[float]]:
    """ScanImage's ``imagingFovUm``: the field's corners in µm, centred on the axis."""
    x, y = width / 2, height / 2
    return [[-x, -y], [x, -y], [x, y], [-x, y]]


def scanimage_header(
    *,
    version: int = 3,
    channel_save: Sequence[int] = (1,),
    frame_rate: float = 30.0,
    zoom: float = 2.0,
    lines: int = 256,
    pixels: int = 256,
    num_slices: int = 1,
    num_volumes: int = 1,
    frames_per_slice: int = 1,
    fast_z: bool = False,
    flyback_frames: int = 0,
    discard_flyback: bool = True,
    z_step: float = 2.0,
    fov_um: float | None = 500.0,
    frames_per_file: int | None = None,
) -> dict[str, object]:
    """The non-varying ``SI.*`` header of a ScanImage acquisition, as a dict of MATLAB values.

    ``version`` 3 imitates ScanImage 2016b-2018 (``SI.hFastZ.enable``,
    ``SI.hStackManager.numSlices``); 4 a later release that also writes
    ``SI.hStackManager.enable``, ``stackMode``, ``actualNumSlices`` and ``actualNumVolumes``.
    ``fov_um`` is the width of the field of view (square pixels), None for none stated.
    """
    volume_frames = num_slices + (flyback_frames if fast_z else 0)
    header: dict[str, object] = {
        "SI.LINE_FORMAT_VERSION": 1,
        "SI.TIFF_FORMAT_VERSION": version,
        "SI.VERSION_MAJOR": "2016b" if version == 3 else "2020",
        "SI.VERSION_MINOR": "0",
        "SI.acqsPerLoop": 1,
        "SI.hBeams.powerLimits": [100],
        "SI.hBeams.powers": [12.5],
        "SI.hChannels.channelAdcResolution": [14, 14, 14, 14],
        "SI.hChannels.channelName": ["Channel 1", "Channel 2", "Channel 3", "Channel 4"],
        "SI.hChannels.channelSave": tuple(channel_save)
        if len(channel_save) > 1
        else channel_save[0],
        "SI.hChannels.channelsActive": tuple(channel_save)
        if len(channel_save) > 1
        else channel_save[0],
        "SI.hFastZ.discardFlybackFrames": discard_flyback,
        "SI.hFastZ.enable": fast_z,
        "SI.hFastZ.numDiscardFlybackFrames": flyback_frames,
        "SI.hFastZ.numVolumes": num_volumes,
        "SI.hPmts.gains": [600, 650, 0, 0],
        "SI.hPmts.names": ["PMT1", "PMT2", "PMT3", "PMT4"],
        "SI.hRoiManager.imagingFovUm": _fov_corners(fov_um, fov_um * lines / pixels)
        if fov_um is not None
        else [],
        "SI.hRoiManager.linesPerFrame": lines,
        "SI.hRoiManager.mroiEnable": False,
        "SI.hRoiManager.pixelsPerLine": pixels,
        "SI.hRoiManager.scanFramePeriod": 1 / frame_rate,
        "SI.hRoiManager.scanFrameRate": frame_rate,
        "SI.hRoiManager.scanVolumeRate": frame_rate / volume_frames,
        "SI.hRoiManager.scanZoomFactor": zoom,
        "SI.hScan2D.logAverageFactor": 1,
        "SI.hScan2D.logFramesPerFile": frames_per_file if frames_per_file else "Inf",
        "SI.hScan2D.scanPixelTimeMean": 0.5 / frame_rate / lines / pixels,
        "SI.hScan2D.scannerType": "Resonant",
        "SI.hStackManager.framesPerSlice": frames_per_slice,
        "SI.hStackManager.numSlices": num_slices,
        "SI.hStackManager.stackZStepSize": z_step,
        "SI.objectiveResolution": 15,
    }
    if version >= 4:
        header["SI.hStackManager.enable"] = num_slices > 1
        header["SI.hStackManager.stackMode"] = "fast" if fast_z else "slow"
        header["SI.hStackManager.actualNumSlices"] = num_slices
        header["SI.hStackManager.actualNumVolumes"] = num_volumes
        header["SI.hStackManager.actualStackZStepSize"] = z_step
    if header["SI.hScan2D.logFramesPerFile"] == "Inf":
        header["SI.hScan2D.logFramesPerFile"] = float("inf")
    return header


def _scanimage_text(header: dict[str, object]) -> str:
    lines = []
    for key, value in header.items():
        text = "Inf" if value == float("inf") else _matlab(value)
        lines.append(f"{key} = {text}")
    return "\n".join(lines) + "\n"


def scanimage_pixels(frame: np.ndarray) -> np.ndarray:
    """A frame as ScanImage stores it: int16 (unsigned 16-bit values clipped to 32767)."""
    frame = np.asarray(frame)
    if frame.dtype == np.uint16:
        return np.minimum(frame, 32767).astype(np.int16)
    return frame


def write_scanimage(
    path: Path,
    frames: Iterable[np.ndarray],
    *,
    frames_per_file: int | None = None,
    acquisition: int = 1,
    version: int = 3,
    channel_save: Sequence[int] | None = None,
    frame_rate: float = 30.0,
    zoom: float = 2.0,
    num_slices: int = 1,
    frames_per_slice: int = 1,
    fast_z: bool = False,
    flyback_frames: int = 0,
    discard_flyback: bool = True,
    z_step: float = 2.0,
    fov_um: float | None = 500.0,
    epoch: tuple[int, int, int, int, int, float] = (2016, 11, 3, 15, 2, 8.613),
    classic: bool = False,
) -> list[Path]:
    """Write a ScanImage (2016b or later) recording: BigTIFF files with ScanImage's header.

    ``path`` is a file (``frames_per_file`` None: one file) or a directory that receives
    an acquisition split over files named ``{directory name}_{acquisition:05d}_{n:05d}.tif``,
    ``frames_per_file`` frames each, like ScanImage's ``logFramesPerFile``.

    Each file starts with ScanImage's block after the BigTIFF header (the magic
    0x07030301, the header version 3 or 4, the sizes of the two blocks), the non-varying
    ``SI.*`` frame data and the ROI group JSON; every page then holds one channel of one
    frame (channels interleaved, ``SI.hChannels.channelSave``), the per-frame values
    (``frameNumbers``, ``frameTimestamps_sec``, ``acqTriggerTimestamps_sec``, ``epoch``)
    in its ImageDescription, the ``SI.*`` header in Software and the ROI JSON in Artist.

    ``frames`` yields (t, z) frames, t-major: (H, W) or (C, H, W) with one entry per
    saved channel. With ``num_slices`` > 1 frames form volumes; with ``fast_z`` and
    ``discard_flyback`` False, ``flyback_frames`` extra frames (value -1) end every
    volume as ScanImage logs them. ``frames_per_slice`` > 1 (a slow stack) repeats each
    slice, frames of one slice together. Frame timestamps are the nominal frame times
    plus a few microseconds of jitter, as a real clock gives.

    ``classic`` writes ScanImage 2015's layout instead: classic TIFF files without the
    header block, every ImageDescription holding the per-frame values followed by the
    header with ScanImage 2015's ``scanimage.SI.`` prefix (no Software or Artist tag).
    """
    path = Path(path)
    split = frames_per_file is not None
    if split:
        path.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    roi = {
        "RoiGroups": {
            "imagingRoiGroup": {
                "ver": 1,
                "classname": "scanimage.mroi.RoiGroup",
                "name": "Default Imaging ROI Group",
                "rois": {
                    "ver": 1,
                    "classname": "scanimage.mroi.Roi",
                    "name": "Default Imaging Roi",
                },
            }
        }
    }
    roi_text = json.dumps(roi, indent=2)
    writer = None
    handle = None
    file_frames = 0
    header_text = ""
    period = 1.0 / frame_rate
    flyback_add = flyback_frames if fast_z and not discard_flyback else 0
    frame_number = 0
    shape = None

    def logged() -> Iterator[np.ndarray]:
        """Frames in the order ScanImage logs them, flyback frames included."""
        nonlocal shape
        buffer: list[np.ndarray] = []
        per_volume = num_slices * frames_per_slice
        for frame in _frames(frames, None):
            shape = frame.shape
            buffer.append(frame)
            if len(buffer) < per_volume:
                continue
            # buffer holds one volume, t-major: (repeat f, slice z) -> slice-major order
            for z in range(num_slices):
                for f in range(frames_per_slice):
                    yield buffer[f * num_slices + z]
            for _ in range(flyback_add):
                yield np.full_like(buffer[0], -1)
            buffer = []
        if buffer:
            raise ValueError(
                f"{len(buffer)} frames left over: frames must fill whole volumes of "
                f"{num_slices} slices x {frames_per_slice} frames"
            )

    try:
        for frame in logged():
            if writer is None or (split and file_frames == frames_per_file):
                if writer is not None:
                    writer.close()
                    handle.close()
                if split:
                    target = path / scanimage_file_name(path.name, acquisition, len(paths) + 1)
                else:
                    target = path
                n_channels = frame.shape[0]
                saved = list(channel_save) if channel_save else list(range(1, n_channels + 1))
                if len(saved) != n_channels:
                    raise ValueError(f"{n_channels} channels per frame for channelSave {saved}")
                header_text = _scanimage_text(
                    scanimage_header(
                        version=version,
                        channel_save=saved,
                        frame_rate=frame_rate,
                        zoom=zoom,
                        lines=frame.shape[1],
                        pixels=frame.shape[2],
                        num_slices=num_slices,
                        frames_per_slice=frames_per_slice,
                        fast_z=fast_z,
                        flyback_frames=flyback_frames,
                        discard_flyback=discard_flyback,
                        z_step=z_step,
                        fov_um=fov_um,
                        frames_per_file=frames_per_file,
                    )
                )
                classic_header = "".join(
                    f"scanimage.{line}\n" for line in header_text.splitlines() if line
                )
                handle = open(target, "wb")  # noqa: SIM115 - closed with the writer
                writer = tifffile.TiffWriter(handle, bigtiff=not classic)
                if not classic:
                    # ScanImage's block goes between the BigTIFF header and the first IFD;
                    # tifffile places each IFD where the file position is.
                    frame_data = header_text.encode() + b"\0"
                    roi_data = roi_text.encode() + b"\0"
                    handle.write(
                        struct.pack(
                            "<IIII", SCANIMAGE_MAGIC, version, len(frame_data), len(roi_data)
                        )
                        + frame_data
                        + roi_data
                    )
                paths.append(target)
                file_frames = 0
            frame_number += 1
            file_frames += 1
            jitter = 1e-6 * ((frame_number * 7) % 5)
            description = (
                "\n".join(
                    [
                        f"frameNumbers = {frame_number}",
                        "acquisitionNumbers = 1",
                        f"frameNumberAcquisition = {frame_number}",
                        f"frameTimestamps_sec = {(frame_number - 1) * period + jitter:.6f}",
                        "acqTriggerTimestamps_sec = 0.000000",
                        "nextFileMarkerTimestamps_sec = -1.000000",
                        "endOfAcquisition = 0",
                        "endOfAcquisitionMode = 0",
                        "dcOverVoltage = 0",
                        f"epoch = {_matlab(list(epoch))}",
                        "auxTrigger0 = []",
                        "auxTrigger1 = []",
                        "auxTrigger2 = []",
                        "auxTrigger3 = []",
                        "I2CData = {}",
                    ]
                )
                + "\n"
            )
            for plane in frame:
                writer.write(
                    plane,
                    photometric="minisblack",
                    metadata=None,
                    description=description + classic_header if classic else description,
                    software=None if classic else header_text,
                    extratags=[] if classic else [(315, "s", 0, roi_text, True)],
                )
    finally:
        if writer is not None:
            writer.close()
            handle.close()
    if shape is None:
        raise ValueError(f"{path}: no frames to write")
    return paths


def write_scanimage3(
    path: Path,
    frames: Sequence[np.ndarray] | np.ndarray,
    *,
    frame_rate: float = 7.8125,
    zoom: float = 2.0,
    num_slices: int = 1,
    z_step: float = 1.0,
    trigger_time: str = "3/21/2011 14:05:53.123",
) -> Path:
    """Write a ScanImage 3.8 TIFF: a classic TIFF whose every page carries the ``state.*``
    header (each line ending in a carriage return) and the 72 dpi resolution defaults.

    ``frames`` holds (t, z) frames (H, W) or (C, H, W), t-major; ScanImage 3.x logs a
    stack slice by slice, ``state.acq.numberOfFrames`` frames per slice, the saved
    channels interleaved page by page.
    """
    path = Path(path)
    stack = [f if f.ndim == 3 else f[np.newaxis] for f in _frames(frames, None)]
    if not stack:
        raise ValueError(f"{path}: no frames to write")
    if len(stack) % num_slices:
        raise ValueError(f"{len(stack)} frames do not divide into {num_slices} slices")
    n_t = len(stack) // num_slices
    n_channels, lines, pixels = stack[0].shape
    state = {
        "state.configPath": "C:\\ScanImage\\configs",
        "state.configName": "astro_2ch",
        "state.software.version": 3.8,
        "state.software.minorRev": 0,
        "state.acq.externallyTriggered": 0,
        "state.acq.numberOfZSlices": num_slices,
        "state.acq.zStepSize": z_step,
        "state.acq.numAvgFramesSave": 1,
        "state.acq.averaging": 0,
        "state.acq.numberOfFrames": n_t,
        "state.acq.linesPerFrame": lines,
        "state.acq.pixelsPerLine": pixels,
        "state.acq.pixelTime": 3.2e-06,
        "state.acq.frameRate": frame_rate,
        "state.acq.zoomFactor": zoom,
        "state.acq.numberOfChannelsSave": n_channels,
        "state.acq.numberOfChannelsAcquire": n_channels,
        **{f"state.acq.savingChannel{c}": int(c <= n_channels) for c in range(1, 5)},
        **{f"state.acq.acquiringChannel{c}": int(c <= n_channels) for c in range(1, 5)},
        "state.init.eom.maxPower1": 20,
        "state.motor.absXPosition": 1520.5,
        "state.motor.absYPosition": -310.25,
        "state.motor.absZPosition": 45.0,
        "state.internal.triggerTimeString": trigger_time,
    }
    text = "".join(f"{key}={_matlab(value)}\r" for key, value in state.items())
    with tifffile.TiffWriter(path) as writer:
        for z in range(num_slices):
            for t in range(n_t):
                for plane in stack[t * num_slices + z]:
                    writer.write(
                        plane,
                        photometric="minisblack",
                        metadata=None,
                        resolution=(72, 72),
                        resolutionunit="INCH",
                        description=text,
                    )
    return path


# Micro-Manager 1.4 MMStack: the header block between the TIFF header and the first IFD.
_MM_INDEX_MAP_OFFSET_HEADER = 54773648
_MM_INDEX_MAP_HEADER = 3453623
_MM_DISPLAY_OFFSET_HEADER = 483765892
_MM_DISPLAY_HEADER = 347834724
_MM_COMMENTS_OFFSET_HEADER = 99384722
_MM_COMMENTS_HEADER = 84720485
_MM_SUMMARY_HEADER = 2355492
#: The TIFF tag of the per-image Micro-Manager JSON.
MM_METADATA_TAG = 51123


def _mm_entry(tag: int, kind: int, count: int, value: int | bytes) -> bytes:
    """One little-endian classic TIFF IFD entry; SHORT values are left-justified."""
    if isinstance(value, bytes):
        field = value.ljust(4, b"\0")
    elif kind == 3 and count == 1:
        field = struct.pack("<HH", value, 0)
    else:
        field = struct.pack("<I", value)
    return struct.pack("<HHI", tag, kind, count) + field


def _mm_page(offset: int, plane: np.ndarray, tags: dict, description: str | None) -> bytes:
    """One image as Micro-Manager's MultipageTiffWriter writes it at ``offset``: the IFD
    (13 entries, 14 with an ImageDescription), the pixels right after it, then the
    resolution rationals, the image's JSON (tag 51123) and the description. The next-IFD
    field is 0, patched when another image follows."""
    plane = np.ascontiguousarray(plane, dtype=plane.dtype.newbyteorder("<"))
    height, width = plane.shape
    n_entries = 13 + (description is not None)
    pixels_at = offset + 2 + 12 * n_entries + 4
    values_at = pixels_at + plane.nbytes
    resolution = struct.pack("<IIII", 1, 1, 1, 1)
    md = json.dumps(tags).encode() + b"\0"
    text = b"" if description is None else description.encode() + b"\0"
    md_at = values_at + len(resolution)
    text_at = md_at + len(md)
    sample_format = {"u": 1, "i": 2, "f": 3}[plane.dtype.kind]
    entries = [
        _mm_entry(256, 4, 1, width),
        _mm_entry(257, 4, 1, height),
        _mm_entry(258, 3, 1, 8 * plane.dtype.itemsize),
        _mm_entry(259, 3, 1, 1),
        _mm_entry(262, 3, 1, 1),
    ]
    if description is not None:
        entries.append(_mm_entry(270, 2, len(text), text_at))
    entries += [
        _mm_entry(273, 4, 1, pixels_at),
        _mm_entry(277, 3, 1, 1),
        _mm_entry(278, 3, 1, height),
        _mm_entry(279, 4, 1, plane.nbytes),
        _mm_entry(282, 5, 1, values_at),
        _mm_entry(283, 5, 1, values_at + 8),
        _mm_entry(296, 3, 1, 1),
    ]
    if sample_format != 1:
        raise ValueError("Micro-Manager stacks hold unsigned 8- or 16-bit images")
    entries.append(_mm_entry(MM_METADATA_TAG, 2, len(md), md_at))
    data = (
        struct.pack("<H", n_entries)
        + b"".join(entries)
        + b"\0\0\0\0"
        + plane.tobytes()
        + resolution
        + md
        + text
    )
    return data + b"\0" * (len(data) % 2)


def write_mmstack_file(
    path: Path,
    planes: Sequence[np.ndarray],
    *,
    summary: dict,
    image_tags: Sequence[dict],
    description: str | None,
    comments: dict | None = None,
) -> Path:
    """Write one Micro-Manager 1.4 MMStack file (``*_MMStack_*.ome.tif``) byte by byte as
    ``MultipageTiffWriter`` lays it out (tifffile's Micro-Manager reader relies on it: each
    image's pixels start 162 bytes after its IFD): a little-endian classic TIFF whose header
    is followed by the index map offset, display settings offset, comments offset and
    summary headers and the summary JSON, then the index map (``channel, slice, frame,
    position, IFD offset`` per image), then the images, each with its own JSON in tag
    51123, and last the display settings and comments. ``description`` (OME-XML, or None)
    goes in the first image. ``image_tags[i]`` is image ``i``'s JSON, with
    ``ChannelIndex``, ``SliceIndex``, ``FrameIndex`` and ``PositionIndex``.
    """
    path = Path(path)
    summary_bytes = json.dumps(summary).encode()
    count = len(planes)
    index_at = 40 + len(summary_bytes)
    first_ifd = index_at + 8 + 20 * count
    first_ifd += first_ifd % 2
    display = json.dumps(
        [{"Color": -1, "Gamma": 1.0, "Min": 0, "Max": 65535} for _ in summary.get("ChNames", [0])]
    ).encode()
    comment_bytes = json.dumps(comments or {"Summary": ""}).encode()
    offsets: list[int] = []
    with open(path, "wb") as handle:
        handle.write(b"II" + struct.pack("<HI", 42, first_ifd))
        handle.write(struct.pack("<II", _MM_INDEX_MAP_OFFSET_HEADER, index_at))
        handle.write(b"\0" * 16)  # display settings and comments offsets, written last
        handle.write(struct.pack("<II", _MM_SUMMARY_HEADER, len(summary_bytes)) + summary_bytes)
        handle.write(b"\0" * (first_ifd - handle.tell()))
        next_field = 0  # where the previous IFD keeps the offset of the next one
        for i, (plane, tags) in enumerate(zip(planes, image_tags, strict=True)):
            offset = handle.tell()
            if offsets:
                handle.seek(next_field)
                handle.write(struct.pack("<I", offset))
                handle.seek(offset)
            page = _mm_page(offset, np.asarray(plane), tags, description if i == 0 else None)
            next_field = offset + 2 + 12 * struct.unpack_from("<H", page)[0]
            handle.write(page)
            offsets.append(offset)
        display_at = handle.tell()
        handle.write(struct.pack("<II", _MM_DISPLAY_HEADER, len(display)) + display)
        comments_at = handle.tell()
        handle.write(struct.pack("<II", _MM_COMMENTS_HEADER, len(comment_bytes)) + comment_bytes)
        handle.seek(index_at)
        handle.write(struct.pack("<II", _MM_INDEX_MAP_HEADER, count))
        for tags, offset in zip(image_tags, offsets, strict=True):
            handle.write(
                struct.pack(
                    "<IIIII",
                    tags["ChannelIndex"],
                    tags["SliceIndex"],
                    tags["FrameIndex"],
                    tags["PositionIndex"],
                    offset,
                )
            )
        handle.seek(16)
        handle.write(
            struct.pack(
                "<IIII",
                _MM_DISPLAY_OFFSET_HEADER,
                display_at,
                _MM_COMMENTS_OFFSET_HEADER,
                comments_at,
            )
        )
    return path


def mmstack_file_name(prefix: str, position: str, part: int = 0) -> str:
    """Micro-Manager 1.4's name for part ``part`` (0: the first) of a position's stack."""
    return f"{prefix}_MMStack_{position}" + (f"_{part}" if part else "") + ".ome.tif"


def write_micromanager(
    directory: Path,
    positions: Sequence[Sequence[np.ndarray]],
    *,
    prefix: str = "astro",
    channels: Sequence[str] = ("GFP",),
    size_z: int = 1,
    position_names: Sequence[str] | None = None,
    stage_positions: Sequence[tuple[float, float]] | None = None,
    planes_per_file: int | None = None,
    interval_ms: float = 500.0,
    exposure_ms: float = 20.0,
    pixel_size_um: float | None = 0.65,
    z_step_um: float = 1.5,
    start_time: str = "2013-11-05 16:17:05 -0800",
    ome_xml: str | None = None,
    ome_delta_t: bool = True,
    metadata_txt: bool = True,
) -> list[Path]:
    """Write a Micro-Manager 1.4 multi-position acquisition saved as OME-TIFF image stacks:
    one ``{prefix}_MMStack_{position}.ome.tif`` per position, split into ``..._1.ome.tif``,
    ``..._2.ome.tif`` after ``planes_per_file`` images (Micro-Manager splits at 4 GB), and a
    ``{prefix}_MMStack_{position}_metadata.txt`` per position (``Summary`` and one
    ``FrameKey-t-c-z`` JSON per image).

    ``positions[p]`` holds position ``p``'s (t, z) frames, t-major: (H, W) or (C, H, W).
    Micro-Manager writes the full OME-XML into the files of the first position and a
    ``BinaryOnly`` pointer to its first file into the others; ``ome_xml`` replaces the
    generated document (to embed a real one whose file names match). ``ome_delta_t`` False
    leaves the planes' DeltaT out of the OME-XML (the elapsed times are then only in
    ``metadata.txt`` and the images' own JSON).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    names = list(position_names or [f"Pos{p}" for p in range(len(positions))])
    stages = list(stage_positions or [(100.0 * p, -50.0 * p) for p in range(len(positions))])
    stacks = [
        [f if f.ndim == 3 else f[np.newaxis] for f in _frames(frames, len(channels))]
        for frames in positions
    ]
    height, width = stacks[0][0].shape[1:]
    dtype = stacks[0][0].dtype
    size_t = len(stacks[0]) // size_z
    summary = {
        "Prefix": prefix,
        "Positions": len(positions),
        "Channels": len(channels),
        "Slices": size_z,
        "Frames": size_t,
        "ChNames": list(channels),
        "ChColors": [-16711936] * len(channels),
        "Width": width,
        "Height": height,
        "PixelType": "GRAY16" if dtype.itemsize == 2 else "GRAY8",
        "BitDepth": 8 * dtype.itemsize,
        "IJType": 1 if dtype.itemsize == 2 else 0,
        "z-step_um": z_step_um,
        "Interval_ms": interval_ms,
        "SlicesFirst": True,
        "TimeFirst": False,
        "MicroManagerVersion": "1.4.16 20131104",
        "MetadataVersion": 10,
        "StartTime": start_time,
        "Source": "Micro-Manager",
        "Directory": str(directory.parent),
        "ComputerName": "scope-1",
        "UserName": "imaging",
    }
    if pixel_size_um is not None:
        summary["PixelSize_um"] = pixel_size_um
    # plan the files: (position, part) -> list of (t, z, c, plane)
    files: list[tuple[int, str, list[tuple[int, int, int, np.ndarray]]]] = []
    for p, stack in enumerate(stacks):
        entries = [
            (i // size_z, i % size_z, c, plane)
            for i, frame in enumerate(stack)
            for c, plane in enumerate(frame)
        ]
        step = planes_per_file or len(entries)
        for part, begin in enumerate(range(0, len(entries), step)):
            files.append(
                (p, mmstack_file_name(prefix, names[p], part), entries[begin : begin + step])
            )
    uuids = {name: _new_uuid() for _, name, _ in files}
    elapsed = {}
    for p, _, entries in files:
        for t, z, c, _plane in entries:
            elapsed[(p, t, z, c)] = round(t * interval_ms + (z * len(channels) + c) * 31.0 + 7.0, 1)

    def tags(p: int, t: int, z: int, c: int, file_name: str) -> dict:
        x, y = stages[p]
        return {
            "ChannelIndex": c,
            "SliceIndex": z,
            "FrameIndex": t,
            "PositionIndex": p,
            "Channel": channels[c],
            "PositionName": names[p],
            "ElapsedTime-ms": elapsed[(p, t, z, c)],
            "Exposure-ms": exposure_ms,
            "XPositionUm": x,
            "YPositionUm": y,
            "ZPositionUm": -4.0 + z * z_step_um,
            "Width": width,
            "Height": height,
            "PixelType": summary["PixelType"],
            "Binning": 1,
            "Camera": "Camera",
            "FileName": file_name,
            **({"PixelSizeUm": pixel_size_um} if pixel_size_um is not None else {}),
        }

    if ome_xml is None:
        images = []
        for p in range(len(stacks)):
            tiff_data = []
            planes_xml = []
            for _, name, entries in (f for f in files if f[0] == p):
                for ifd, (t, z, c, _plane) in enumerate(entries):
                    tiff_data.append(
                        f'<TiffData FirstC="{c}" FirstT="{t}" FirstZ="{z}" IFD="{ifd}" '
                        f'PlaneCount="1"><UUID FileName={quoteattr(name)}>{uuids[name]}</UUID>'
                        "</TiffData>"
                    )
                    x, y = stages[p]
                    delta = (
                        f' DeltaT="{elapsed[(p, t, z, c)]!r}" DeltaTUnit="ms"'
                        if ome_delta_t
                        else ""
                    )
                    planes_xml.append(
                        f'<Plane{delta} ExposureTime="{exposure_ms!r}" ExposureTimeUnit="ms"'
                        f' PositionX="{x!r}" PositionXUnit="µm" PositionY="{y!r}"'
                        f' PositionYUnit="µm" TheC="{c}" TheT="{t}" TheZ="{z}"/>'
                    )
            size = (
                f' PhysicalSizeX="{pixel_size_um!r}" PhysicalSizeXUnit="µm"'
                f' PhysicalSizeY="{pixel_size_um!r}" PhysicalSizeYUnit="µm"'
                if pixel_size_um is not None
                else ""
            )
            channels_xml = "".join(
                f'<Channel ID="Channel:{p}:{c}" Name={quoteattr(n)} SamplesPerPixel="1"/>'
                for c, n in enumerate(channels)
            )
            x, y = stages[p]
            images.append(
                f'<Image ID="Image:{p}" Name={quoteattr(f"{prefix}_MMStack_{names[p]}")}>'
                f'<StageLabel Name={quoteattr(names[p])} X="{x!r}" XUnit="µm" Y="{y!r}" YUnit="µm"/>'
                f'<Pixels BigEndian="false" DimensionOrder="XYCZT" ID="Pixels:{p}"{size}'
                f' PhysicalSizeZ="{z_step_um!r}" PhysicalSizeZUnit="µm" SizeC="{len(channels)}"'
                f' SizeT="{size_t}" SizeX="{width}" SizeY="{height}" SizeZ="{size_z}"'
                f' Type="{_OME_TYPES[dtype.name]}">{channels_xml}{"".join(tiff_data)}'
                f"{''.join(planes_xml)}</Pixels></Image>"
            )
        ome_xml = f'{_XML_HEADER}<OME xmlns="{OME_NAMESPACE}">{"".join(images)}</OME>'
    master = files[0][1]
    # a given document names each file's UUID: the pointers of BinaryOnly files use them
    for file_name, file_uuid in re.findall(r'<UUID FileName="([^"]+)">([^<]+)</UUID>', ome_xml):
        uuids[file_name] = file_uuid
    paths = []
    for p, name, entries in files:
        if p == 0:
            description = ome_xml
        else:
            description = (
                f'{_XML_HEADER}<OME xmlns="{OME_NAMESPACE}" UUID="{uuids[name]}">'
                f'<BinaryOnly MetadataFile={quoteattr(master)} UUID="{uuids[master]}"/></OME>'
            )
        paths.append(
            write_mmstack_file(
                directory / name,
                [plane for *_, plane in entries],
                summary=summary,
                image_tags=[tags(p, t, z, c, name) for t, z, c, _ in entries],
                description=description,
            )
        )
    if metadata_txt:
        for p in range(len(stacks)):
            document: dict = {"Summary": summary}
            for _, name, entries in (f for f in files if f[0] == p):
                for t, z, c, _plane in entries:
                    document[f"FrameKey-{t}-{c}-{z}"] = tags(p, t, z, c, name)
            target = directory / f"{prefix}_MMStack_{names[p]}_metadata.txt"
            target.write_text(json.dumps(document, indent=2))
            paths.append(target)
    return paths


def mm2_file_name(channel: int, position: int, time: int, z: int) -> str:
    """Micro-Manager 2.0's name for one image of a single-plane TIFF series."""
    return f"img_channel{channel:03d}_position{position:03d}_time{time:09d}_z{z:03d}.tif"


def write_micromanager2(
    directory: Path,
    positions: Sequence[Sequence[np.ndarray]],
    *,
    channels: Sequence[str] = ("GFP",),
    size_z: int = 1,
    interval_ms: float = 500.0,
    exposure_ms: float = 20.0,
    pixel_size_um: float | None = 0.65,
    z_step_um: float = 1.5,
    start_time: str = "2020-06-01 09:30:12.250 +0200",
) -> list[Path]:
    """Write a Micro-Manager 2.0 acquisition saved as separate image files: a ``Pos{p}``
    folder per position with one single-page TIFF per image
    (``img_channel000_position000_time000000000_z000.tif``) and a ``metadata.txt``
    (``Summary``, then ``Coords-`` and ``Metadata-`` entries per image, keyed by the
    image's path relative to the acquisition folder)."""
    directory = Path(directory)
    paths = []
    stacks = [
        [f if f.ndim == 3 else f[np.newaxis] for f in _frames(frames, len(channels))]
        for frames in positions
    ]
    height, width = stacks[0][0].shape[1:]
    size_t = len(stacks[0]) // size_z
    for p, stack in enumerate(stacks):
        folder = directory / f"Pos{p}"
        folder.mkdir(parents=True, exist_ok=True)
        summary = {
            "Prefix": directory.name,
            "ChNames": list(channels),
            "IntendedDimensions": {
                "time": size_t,
                "position": len(stacks),
                "z": size_z,
                "channel": len(channels),
            },
            "AxisOrder": ["position", "time", "z", "channel"],
            "Width": width,
            "Height": height,
            "z-step_um": z_step_um,
            "Interval_ms": interval_ms,
            "StartTime": start_time,
            "MicroManagerVersion": "2.0.0",
            "UserName": "imaging",
        }
        if pixel_size_um is not None:
            summary["PixelSize_um"] = pixel_size_um
        document: dict = {"Summary": summary}
        for i, frame in enumerate(stack):
            t, z = divmod(i, size_z)
            for c, plane in enumerate(frame):
                name = mm2_file_name(c, p, t, z)
                tifffile.imwrite(folder / name, plane, photometric="minisblack", metadata=None)
                paths.append(folder / name)
                key = f"Pos{p}/{name}"
                document[f"Coords-{key}"] = {"channel": c, "position": p, "time": t, "z": z}
                document[f"Metadata-{key}"] = {
                    "Camera": "Camera",
                    "ElapsedTime-ms": round(
                        t * interval_ms + (z * len(channels) + c) * 12.5 + 3.0, 3
                    ),
                    "Exposure-ms": exposure_ms,
                    "PositionName": f"Pos{p}",
                    "XPositionUm": 10.0 + 200.0 * p,
                    "YPositionUm": 20.0,
                    "ZPositionUm": 5.0 + z * z_step_um,
                    "FileName": key,
                    **({"PixelSizeUm": pixel_size_um} if pixel_size_um is not None else {}),
                }
        (folder / "metadata.txt").write_text(json.dumps(document, indent=2))
        paths.append(folder / "metadata.txt")
    return paths
