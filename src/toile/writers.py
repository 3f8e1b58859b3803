"""Write realistic input recordings: OME-TIFF stacks, Prairie View T-Series, ImageJ stacks.

Used by the tests and the benchmark to build inputs that look like what
acquisition software writes. Frames are streamed one page at a time, so an
iterator of many frames is never held in memory: the metadata that depends on
the number of frames is written into the first page's ImageDescription once
all pages are on disk.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
import tifffile

from toile.ome import OME_PIXEL_TYPES

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
) -> list[Path]:
    """Write a Bruker Prairie View T-Series: one single-page OME-TIFF per frame and channel.

    Files are ``{prefix}_Cycle00001_Ch{c}_{i:06d}.ome.tif``. The first file (Ch1,
    frame 1) holds the OME-XML of the whole series, one TiffData per plane
    naming its file and UUID; every other file holds a BinaryOnly OME-XML that
    points at the first one. Returns the files, sorted by name (master first).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    master_name = prairie_file_name(prefix, 1, 1)
    master_uuid = _new_uuid()
    tiff_data: list[str] = []
    paths: list[Path] = []
    shape = dtype = None
    n_frames = 0
    for index, frame in enumerate(_frames(frames, n_channels), start=1):
        shape, dtype = frame.shape, frame.dtype
        n_frames = index
        for c, plane in enumerate(frame):
            name = prairie_file_name(prefix, c + 1, index)
            file_uuid = master_uuid if name == master_name else _new_uuid()
            if name == master_name:
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
                f'<TiffData FirstC="{c}" FirstZ="0" FirstT="{index - 1}" IFD="0" PlaneCount="1">'
                f"<UUID FileName={quoteattr(name)}>{file_uuid}</UUID></TiffData>"
            )
    if shape is None:
        raise ValueError(f"{directory}: no frames to write")
    pixels = _pixels_xml(
        shape=shape[1:],
        dtype=dtype,
        channels=[f"Ch{c + 1}" for c in range(n_channels)],
        size_z=1,
        size_t=n_frames,
        time_increment=time_increment,
        physical_size=physical_size,
        physical_size_z=None,
        tiff_data=tiff_data,
        position=position,
    )
    document = _ome_document(master_uuid, f"{prefix}", date, pixels)
    tifffile.tiffcomment(directory / master_name, comment=document.encode())
    return sorted(paths)


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
