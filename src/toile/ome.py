"""OME-XML to plain, JSON-serialisable dicts (metadata only, no pixel reading).

Parsing is namespace-agnostic, so documents of any OME schema year are read.
Values are converted to toile's units (lengths in µm, times in seconds,
wavelengths in nm). A value that cannot be read (bad number, unknown unit, bad
date or UUID) is logged as a warning naming the file and the field and left
out: never guessed.
"""

from __future__ import annotations

import logging
import uuid as uuidlib
from dataclasses import dataclass, field
from datetime import datetime
from xml.etree import ElementTree

logger = logging.getLogger(__name__)

#: Micrometres per unit, for every OME ``UnitsLength`` that is a real length.
_SI_PREFIX = {
    "Y": 1e24,
    "Z": 1e21,
    "E": 1e18,
    "P": 1e15,
    "T": 1e12,
    "G": 1e9,
    "M": 1e6,
    "k": 1e3,
    "h": 1e2,
    "da": 1e1,
    "": 1.0,
    "d": 1e-1,
    "c": 1e-2,
    "m": 1e-3,
    "\u00b5": 1e-6,
    "\u03bc": 1e-6,
    "u": 1e-6,
    "n": 1e-9,
    "p": 1e-12,
    "f": 1e-15,
    "a": 1e-18,
    "z": 1e-21,
    "y": 1e-24,
}
LENGTH_UNITS_UM: dict[str, float] = {f"{p}m": f * 1e6 for p, f in _SI_PREFIX.items()}
LENGTH_UNITS_UM.update(
    {
        "\u00c5": 1e-4,
        "\u212b": 1e-4,
        "angstrom": 1e-4,
        "micron": 1.0,
        "microns": 1.0,
        "thou": 25.4,
        "li": 25400.0 / 12,
        "in": 25400.0,
        "inch": 25400.0,
        "ft": 304800.0,
        "yd": 914400.0,
        "mi": 1609344e3,
        "ua": 1.495978707e17,
        "ly": 9.4607304725808e21,
        "pc": 3.0856775814913673e22,
        "pt": 25400.0 / 72,
    }
)
#: Seconds per unit, for every OME ``UnitsTime``.
TIME_UNITS_S: dict[str, float] = {f"{p}s": f for p, f in _SI_PREFIX.items()}
TIME_UNITS_S.update(
    {
        "sec": 1.0,
        "msec": 1e-3,
        "usec": 1e-6,
        "min": 60.0,
        "h": 3600.0,
        "hour": 3600.0,
        "d": 86400.0,
        "day": 86400.0,
    }
)
#: Nanometres per unit, for wavelengths.
WAVELENGTH_UNITS_NM: dict[str, float] = {u: f * 1e3 for u, f in LENGTH_UNITS_UM.items()}

#: OME PixelType -> numpy dtype name.
OME_PIXEL_TYPES: dict[str, str] = {
    "int8": "int8",
    "int16": "int16",
    "int32": "int32",
    "uint8": "uint8",
    "uint16": "uint16",
    "uint32": "uint32",
    "float": "float32",
    "double": "float64",
    "complex": "complex64",
    "double-complex": "complex128",
    "bit": "bool",
}


@dataclass(frozen=True)
class BinaryOnly:
    """A non-master file of a multi-file OME series: where the full OME-XML lives."""

    metadata_file: str | None
    uuid: str | None


@dataclass(frozen=True)
class PlaneRef:
    """Where one (c, z, t) plane is stored: a file (None: the document's own file) and IFD."""

    file_name: str | None
    uuid: str | None
    ifd: int


@dataclass
class OmeDocument:
    """A parsed OME-XML document: its own UUID, its images, or a BinaryOnly pointer."""

    uuid: str | None = None
    images: list[dict] = field(default_factory=list)
    binary_only: BinaryOnly | None = None


def _local(tag: str) -> str:
    """Tag name without its ``{namespace}``."""
    return tag.rsplit("}", 1)[-1]


def _children(element: ElementTree.Element, name: str) -> list[ElementTree.Element]:
    return [child for child in element if _local(child.tag) == name]


def _child(element: ElementTree.Element, name: str) -> ElementTree.Element | None:
    for child in element:
        if _local(child.tag) == name:
            return child
    return None


class _Fields:
    """Reads attributes of one document, warning (once per field) about bad values."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._warned: set[str] = set()

    def warn(self, name: str, message: str, dropped: bool = True) -> None:
        if name not in self._warned:
            self._warned.add(name)
            suffix = "; field left out" if dropped else ""
            logger.warning("%s: OME-XML %s: %s%s", self.source, name, message, suffix)

    def number(self, value: str | None, name: str, kind: type = float) -> float | int | None:
        if value is None:
            return None
        try:
            return kind(value.strip())
        except ValueError:
            self.warn(name, f"not a number: {value!r}")
            return None

    def quantity(
        self,
        attrs: dict[str, str],
        key: str,
        table: dict[str, float],
        default_unit: str,
        name: str,
    ) -> float | None:
        """``attrs[key]`` converted by ``attrs[key + 'Unit']`` (or ``default_unit``)."""
        value = self.number(attrs.get(key), name)
        if value is None:
            return None
        unit = attrs.get(key + "Unit", default_unit).strip()
        factor = table.get(unit)
        if factor is None:
            self.warn(name, f"unit {unit!r} cannot be converted")
            return None
        return value * factor

    def uuid(self, value: str | None, name: str) -> str | None:
        if value is None:
            return None
        text = value.strip()
        if text.lower().startswith("urn:uuid:"):
            text = text[len("urn:uuid:") :]
        try:
            return str(uuidlib.UUID(text))
        except ValueError:
            self.warn(name, f"not a UUID: {value!r}")
            return None

    def date(self, value: str | None, name: str) -> str | None:
        if value is None:
            return None
        text = value.strip()
        try:
            return datetime.fromisoformat(text).isoformat()
        except ValueError:
            self.warn(name, f"not an ISO 8601 date: {value!r}")
            return None


class OmeXmlError(ValueError):
    """The document is not OME-XML at all (raised by ``read_ome(..., strict=True)``)."""


def read_ome(xml: str, source: str, *, strict: bool = False) -> OmeDocument | None:
    """Parse an OME-XML document.

    If it is malformed or not OME, warn (naming ``source``) and return None, or
    with ``strict`` raise :class:`OmeXmlError` for the caller to report.
    Bad values inside a well-formed document are always warnings.
    """
    problem = None
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as exc:
        problem = f"OME-XML is malformed ({exc})"
    else:
        if _local(root.tag) != "OME":
            problem = f"OME-XML root element is <{_local(root.tag)}>, not <OME>"
    if problem is not None:
        if strict:
            raise OmeXmlError(problem)
        logger.warning("%s: %s; OME metadata ignored", source, problem)
        return None
    fields = _Fields(source)
    doc = OmeDocument(uuid=fields.uuid(root.attrib.get("UUID"), "UUID"))
    binary = _child(root, "BinaryOnly")
    if binary is not None:
        doc.binary_only = BinaryOnly(
            metadata_file=binary.attrib.get("MetadataFile"),
            uuid=fields.uuid(binary.attrib.get("UUID"), "BinaryOnly UUID"),
        )
    for index, image in enumerate(_children(root, "Image")):
        parsed = _parse_image(image, index, fields)
        if parsed is not None:
            if doc.uuid is not None:
                parsed["uuid"] = doc.uuid
            doc.images.append(parsed)
    return doc


def parse_ome(xml: str, source: str) -> list[dict]:
    """One dict of movie-level metadata per OME ``Image``, with its ``planes`` and ``tiff_data``.

    Returns an empty list for a malformed document or a BinaryOnly one (see
    :func:`read_ome` for the latter's pointer to its metadata file).
    """
    doc = read_ome(xml, source)
    return [] if doc is None else doc.images


def _parse_image(image: ElementTree.Element, index: int, fields: _Fields) -> dict | None:
    pixels = _child(image, "Pixels")
    if pixels is None:
        fields.warn(f"Image {index}", "has no Pixels element")
        return None
    out: dict = {}
    name = image.attrib.get("Name")
    if name is not None:
        out["image_name"] = name
    date = _child(image, "AcquisitionDate")
    if date is not None and date.text:
        value = fields.date(date.text, "AcquisitionDate")
        if value is not None:
            out["date_acquired"] = value
    attrs = pixels.attrib
    for axis in "XYZ":
        value = fields.quantity(
            attrs, f"PhysicalSize{axis}", LENGTH_UNITS_UM, "µm", f"PhysicalSize{axis}"
        )
        if value is not None:
            out[f"scale_{axis.lower()}"] = value
    out["scale_unit"] = "um"
    out["t_unit"] = "s"
    increment = fields.quantity(attrs, "TimeIncrement", TIME_UNITS_S, "s", "TimeIncrement")
    if increment is not None:
        out["time_increment"] = increment
    for axis in "XYZCT":
        size = fields.number(attrs.get(f"Size{axis}"), f"Size{axis}", int)
        if size is not None:
            if size < 1:
                fields.warn(f"Size{axis}", f"must be at least 1, got {size}")
            else:
                out[f"size_{axis.lower()}"] = size
    pixel_type = attrs.get("Type", attrs.get("PixelType"))
    if pixel_type is not None:
        dtype = OME_PIXEL_TYPES.get(pixel_type.strip().lower())
        if dtype is None:
            fields.warn("Pixels Type", f"unknown pixel type {pixel_type!r}")
        else:
            out["dtype"] = dtype
    order = attrs.get("DimensionOrder")
    if order is not None:
        order = order.strip().upper()
        if sorted(order) == sorted("XYZCT") and order.startswith("XY"):
            out["dimension_order"] = order
        else:
            fields.warn("DimensionOrder", f"invalid {order!r}")
    out["channels"] = [_parse_channel(ch, fields) for ch in _children(pixels, "Channel")]
    if "size_c" in out and out["channels"]:
        samples = sum(ch.get("samples_per_pixel", 1) for ch in out["channels"])
        if samples != out["size_c"]:
            fields.warn(
                "Channel",
                f"{len(out['channels'])} Channel elements ({samples} samples) for SizeC={out['size_c']}",
                dropped=False,
            )
    stage = _child(image, "StageLabel")
    if stage is not None:
        label: dict = {}
        if "Name" in stage.attrib:
            label["name"] = stage.attrib["Name"]
        for axis in "XYZ":
            value = fields.quantity(
                stage.attrib, axis, LENGTH_UNITS_UM, "reference frame", f"StageLabel {axis}"
            )
            if value is not None:
                label[axis.lower()] = value
        out["stage_label"] = label
    out["planes"] = [_parse_plane(plane, fields) for plane in _children(pixels, "Plane")]
    out["tiff_data"] = [_parse_tiff_data(td, fields) for td in _children(pixels, "TiffData")]
    return out


def _parse_channel(channel: ElementTree.Element, fields: _Fields) -> dict:
    attrs = channel.attrib
    out: dict = {"name": attrs.get("Name", attrs.get("ID"))}
    if "ID" in attrs:
        out["id"] = attrs["ID"]
    for key, attr in (
        ("emission_wavelength", "EmissionWavelength"),
        ("excitation_wavelength", "ExcitationWavelength"),
    ):
        value = fields.quantity(attrs, attr, WAVELENGTH_UNITS_NM, "nm", attr)
        if value is not None:
            out[key] = value
    if "Fluor" in attrs:
        out["fluor"] = attrs["Fluor"]
    spp = fields.number(attrs.get("SamplesPerPixel"), "SamplesPerPixel", int)
    if spp is not None:
        out["samples_per_pixel"] = spp
    for key, attr in (
        ("illumination_type", "IlluminationType"),
        ("acquisition_mode", "AcquisitionMode"),
        ("contrast_method", "ContrastMethod"),
    ):
        if attr in attrs:
            out[key] = attrs[attr]
    return out


def _parse_plane(plane: ElementTree.Element, fields: _Fields) -> dict:
    attrs = plane.attrib
    out: dict = {}
    for key, attr in (("t_index", "TheT"), ("z_index", "TheZ"), ("c_index", "TheC")):
        value = fields.number(attrs.get(attr, "0"), f"Plane {attr}", int)
        if value is not None:
            out[key] = value
    delta = fields.quantity(attrs, "DeltaT", TIME_UNITS_S, "s", "Plane DeltaT")
    if delta is not None:
        out["delta_t"] = delta
    exposure = fields.quantity(attrs, "ExposureTime", TIME_UNITS_S, "s", "Plane ExposureTime")
    if exposure is not None:
        out["exposure_time"] = exposure
    for axis in "XYZ":
        value = fields.quantity(
            attrs, f"Position{axis}", LENGTH_UNITS_UM, "reference frame", f"Plane Position{axis}"
        )
        if value is not None:
            out[f"position_{axis.lower()}"] = value
    return out


def _parse_tiff_data(tiff_data: ElementTree.Element, fields: _Fields) -> dict:
    attrs = tiff_data.attrib
    out: dict = {}
    for key, attr in (
        ("ifd", "IFD"),
        ("first_c", "FirstC"),
        ("first_z", "FirstZ"),
        ("first_t", "FirstT"),
    ):
        out[key] = fields.number(attrs.get(attr, "0"), f"TiffData {attr}", int) or 0
    count = attrs.get("PlaneCount", attrs.get("NumPlanes"))
    if count is not None:
        out["plane_count"] = fields.number(count, "TiffData PlaneCount", int)
    elif "IFD" in attrs:
        out["plane_count"] = 1
    else:
        out["plane_count"] = None
    ref = _child(tiff_data, "UUID")
    if ref is not None:
        out["file_name"] = ref.attrib.get("FileName")
        out["uuid"] = fields.uuid(ref.text, "TiffData UUID") if ref.text else None
    return out


def plane_order(image: dict) -> tuple[str, dict[str, int]]:
    """The non-XY dimension order (fastest first, e.g. ``"CZT"``) and the sizes (SizeC in planes)."""
    order = image.get("dimension_order", "XYCZT")[2:]
    size_c = image.get("size_c", 1)
    spp = max(1, (image.get("channels") or [{}])[0].get("samples_per_pixel", 1))
    if spp > 1 and size_c % spp == 0:
        size_c //= spp
    sizes = {"C": size_c, "Z": image.get("size_z", 1), "T": image.get("size_t", 1)}
    return order, sizes


def plane_map(
    image: dict, ifd_count: int | None = None, first_ifd: int = 0
) -> dict[tuple[int, int, int], PlaneRef]:
    """Map each (c, z, t) plane of ``image`` to the file and IFD holding it.

    Follows the OME-TIFF rules: a TiffData covers ``PlaneCount`` consecutive
    IFDs from ``IFD`` and consecutive planes (in DimensionOrder) from
    (FirstC, FirstZ, FirstT); a TiffData with neither IFD nor PlaneCount covers
    the rest of its file (``ifd_count`` IFDs in the document's own file). With
    no TiffData at all, planes are the IFDs of the document's file from
    ``first_ifd``, in DimensionOrder. ``file_name`` None means the document's file.
    """
    order, sizes = plane_order(image)
    total = sizes["C"] * sizes["Z"] * sizes["T"]

    def coords(linear: int) -> tuple[int, int, int]:
        pos = {}
        for dim in order:
            pos[dim] = linear % sizes[dim]
            linear //= sizes[dim]
        return pos["C"], pos["Z"], pos["T"]

    def linear_index(c: int, z: int, t: int) -> int:
        pos = {"C": c, "Z": z, "T": t}
        index = 0
        for dim in reversed(order):
            index = index * sizes[dim] + pos[dim]
        return index

    result: dict[tuple[int, int, int], PlaneRef] = {}
    tiff_data = image.get("tiff_data") or []
    if not tiff_data:
        for linear in range(total):
            result[coords(linear)] = PlaneRef(None, None, first_ifd + linear)
        return result
    for entry in tiff_data:
        start = linear_index(entry["first_c"], entry["first_z"], entry["first_t"])
        count = entry.get("plane_count")
        if count is None:
            count = total - start
            if ifd_count is not None and entry.get("file_name") is None:
                count = min(count, ifd_count - entry["ifd"])
        for k in range(max(0, count)):
            if start + k >= total:
                break
            result[coords(start + k)] = PlaneRef(
                entry.get("file_name"), entry.get("uuid"), entry["ifd"] + k
            )
    return result
