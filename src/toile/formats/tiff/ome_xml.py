"""OME-XML to plain, JSON-serialisable dicts (metadata only, no pixel reading).

The one OME-XML parser of toile. A document is OME when its root element is ``OME``
in an OME schema namespace, with or without a prefix (:func:`is_ome`); parsing is
namespace-agnostic, so documents of any OME schema year are read. Values are converted
to toile's units (lengths in µm, times in seconds, wavelengths in nm). A value that
cannot be read (bad number, bad date or UUID) is logged as a warning naming the file
and the field and left out: never guessed. A stage position whose unit cannot be
converted (OME's default unit is the microscope's "reference frame") keeps its value,
with its unit in ``position_unit``.
"""

from __future__ import annotations

import logging
import math
import re
import uuid as uuidlib
from array import array
from collections.abc import Iterable, Iterator, Sequence
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

#: OME's unit of a stage position stated without one.
REFERENCE_FRAME = "reference frame"

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


#: Namespaces of the OME schemas (any year), e.g. ``.../Schemas/OME/2016-06``.
OME_NAMESPACE = "http://www.openmicroscopy.org/Schemas/OME/"
_ROOT = re.compile(
    r"\A\s*(?:<\?xml[^>]*\?>\s*)?(?:<!--.*?-->\s*|<\?[^>]*\?>\s*|<!DOCTYPE[^>]*>\s*)*"
    r"<(?:(?P<prefix>[\w.-]+):)?(?P<name>[\w.-]+)(?P<attrs>[^>]*)>",
    re.DOTALL,
)
_XMLNS = re.compile(r"""\bxmlns(?::(?P<prefix>[\w.-]+))?\s*=\s*(?:"([^"]*)"|'([^']*)')""")


def is_ome(text: str | None) -> bool:
    """True when ``text`` (an ImageDescription, a companion file) is an OME-XML document:
    its root element is ``OME`` in an OME schema namespace, whatever its prefix
    (``<OME xmlns="...">``, ``<ome:OME xmlns:ome="...">``), or ``<OME>`` without any."""
    if not text:
        return False
    match = _ROOT.match(text[:65536])
    if match is None or match["name"] != "OME":
        return False
    prefix = match["prefix"]
    namespaces = {
        m["prefix"]: m[2] if m[2] is not None else m[3] for m in _XMLNS.finditer(match["attrs"])
    }
    namespace = namespaces.get(prefix)
    if namespace is None:
        return prefix is None  # an unqualified <OME>: the schema's own element name
    return namespace.startswith(OME_NAMESPACE)


@dataclass(frozen=True)
class BinaryOnly:
    """A non-master file of a multi-file OME series: where the full OME-XML lives."""

    metadata_file: str | None
    uuid: str | None


@dataclass(frozen=True)
class StoredPlane:
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


#: Stands for "absent" in an integer column of a table, by the column's item type.
_NO_INT = {"i": -(2**31), "q": -(2**63)}


class _Table(Sequence):
    """A read-only sequence of dicts stored as columns: a few bytes per row, not a dict.

    A long recording has one ``Plane`` and often one ``TiffData`` per frame; as dicts
    they would take about a kilobyte each. Each row comes back as a new dict holding
    the row's present fields (absent: NaN in a float column, the smallest value of an
    integer one, -1 in a text one), in column order. A column is stored from the first
    row that has its field (a field no row has costs nothing), integers in 4 bytes
    until one needs 8, texts as numbers into one list of the distinct texts.
    """

    #: (key, kind) per column: "i" integer, "f" float, "s" text.
    COLUMNS: tuple[tuple[str, str], ...] = ()

    def __init__(self) -> None:
        self._columns: dict[str, array | None] = dict.fromkeys(k for k, _ in self.COLUMNS)
        self._texts: list[str] = []
        self._text_ids: dict[str, int] = {}
        self._length = 0

    def _new_column(self, kind: str) -> array:
        """A column for ``kind`` values, absent in every row so far."""
        if kind == "i":
            return array("i", [_NO_INT["i"]]) * self._length
        if kind == "f":
            return array("d", [math.nan]) * self._length
        return array("i", [-1]) * self._length

    def append(self, row: dict) -> None:
        for key, kind in self.COLUMNS:
            value = row.get(key)
            column = self._columns[key]
            if column is None:
                if value is None:
                    continue
                column = self._columns[key] = self._new_column(kind)
            if kind == "i":
                if value is None:
                    column.append(_NO_INT[column.typecode])
                elif column.typecode == "i" and not _NO_INT["i"] < value < 2**31:
                    wide = array("q", (_NO_INT["q"] if v == _NO_INT["i"] else v for v in column))
                    wide.append(value)
                    self._columns[key] = wide
                else:
                    column.append(value)
            elif kind == "f":
                column.append(math.nan if value is None else value)
            elif value is None:
                column.append(-1)
            else:
                # file names and UUIDs repeat from row to row: keep one copy of each
                text_id = self._text_ids.setdefault(value, len(self._texts))
                if text_id == len(self._texts):
                    self._texts.append(value)
                column.append(text_id)
        self._length += 1

    def __len__(self) -> int:
        return self._length

    def _row(self, index: int) -> dict:
        out: dict = {}
        for key, kind in self.COLUMNS:
            column = self._columns[key]
            value = None if column is None else column[index]
            if kind == "i":
                if column is not None and value != _NO_INT[column.typecode]:
                    out[key] = value
            elif kind == "f":
                if column is not None and not math.isnan(value):
                    out[key] = value
            elif value is not None and value >= 0:
                out[key] = self._texts[value]
            elif self._keep_none(key, index):
                out[key] = None
        return out

    def _keep_none(self, key: str, index: int) -> bool:
        return False

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self._row(i) for i in range(*index.indices(self._length))]
        if index < 0:
            index += self._length
        if not 0 <= index < self._length:
            raise IndexError("table index out of range")
        return self._row(index)

    def __iter__(self) -> Iterator[dict]:
        return (self._row(i) for i in range(self._length))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str):
            return list(self) == list(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self)!r})"


class PlaneTable(_Table):
    """The ``Plane`` elements of one image (see :func:`_parse_plane` for the keys)."""

    COLUMNS = (
        ("t_index", "i"),
        ("z_index", "i"),
        ("c_index", "i"),
        ("delta_t", "f"),
        ("exposure_time", "f"),
        ("position_x", "f"),
        ("position_y", "f"),
        ("position_z", "f"),
        ("position_unit", "s"),
    )


class TiffDataTable(_Table):
    """The ``TiffData`` elements of one image (see :func:`_parse_tiff_data` for the keys)."""

    COLUMNS = (
        ("ifd", "i"),
        ("first_c", "i"),
        ("first_z", "i"),
        ("first_t", "i"),
        ("plane_count", "i"),
        ("file_name", "s"),
        ("uuid", "s"),
    )

    def __init__(self) -> None:
        super().__init__()
        self._has_ref = array("b")

    def append(self, row: dict) -> None:
        super().append(row)
        self._has_ref.append("uuid" in row or "file_name" in row)

    def _keep_none(self, key: str, index: int) -> bool:
        # a <UUID> child gives both keys, either may be None
        return bool(self._has_ref[index])

    def _row(self, index: int) -> dict:
        out = super()._row(index)
        out.setdefault("plane_count", None)  # always there, None when not known
        return out


def _local(tag: str) -> str:
    """Tag name without its ``{namespace}``."""
    return tag.rsplit("}", 1)[-1]


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
        self._pending: list[tuple[str, str, str]] = []

    def warn(self, name: str, message: str, dropped: bool = True) -> None:
        """Note a bad field once; logged by :meth:`flush` (not for a document that fails)."""
        if name not in self._warned:
            self._warned.add(name)
            self._pending.append((name, message, "; field left out" if dropped else ""))

    def flush(self) -> None:
        for name, message, suffix in self._pending:
            logger.warning("%s: OME-XML %s: %s%s", self.source, name, message, suffix)
        self._pending.clear()

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

    def positions(self, attrs: dict[str, str], prefix: str, name: str, key: str) -> dict:
        """The X, Y, Z stage positions ``attrs[prefix + axis]``, in µm where their unit
        converts. When none converts and they share one unit (OME's default unit is the
        stage's own "reference frame"), they keep their values, with that unit in
        ``{key}unit``. A position that does not fit (a second unit, or an unconvertible
        one beside µm values) is left out with a warning."""
        values: dict[str, tuple[float, str]] = {}
        for axis in "XYZ":
            value = self.number(attrs.get(prefix + axis), name + axis)
            if value is not None:
                unit = attrs.get(prefix + axis + "Unit", REFERENCE_FRAME).strip()
                values[axis] = (value, unit)
        out: dict = {}
        converted = [a for a, (_, unit) in values.items() if unit in LENGTH_UNITS_UM]
        kept = None if converted or not values else next(iter(values.values()))[1]
        for axis, (value, unit) in values.items():
            if unit in LENGTH_UNITS_UM:
                out[f"{key}{axis.lower()}"] = value * LENGTH_UNITS_UM[unit]
            elif unit == kept:
                out[f"{key}{axis.lower()}"] = value
            else:
                self.warn(name + axis, f"unit {unit!r} cannot be converted")
        if kept is not None:
            out[f"{key}unit"] = kept
        return out

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


#: Characters of OME-XML fed to the parser at a time.
_FEED = 1 << 14


def read_ome(xml: str | Iterable[str], source: str, *, strict: bool = False) -> OmeDocument | None:
    """Parse an OME-XML document: a string, or the chunks of one (a description streamed
    from its file, see :func:`toile.formats.tiff.light.tifffile_description`).

    If it is malformed or not OME, warn (naming ``source``) and return None, or
    with ``strict`` raise :class:`OmeXmlError` for the caller to report.
    Bad values inside a well-formed document are always warnings.

    The document is parsed as a stream: each ``Plane`` and ``TiffData`` element is
    read into a compact table (:class:`PlaneTable`, :class:`TiffDataTable`) and
    dropped as soon as it ends, so memory does not grow with a full element tree of a
    recording with many thousands of planes.
    """
    fields = _Fields(source)
    doc = OmeDocument()
    try:
        problem = _stream_document(xml, fields, doc)
    except ElementTree.ParseError as exc:
        problem = f"OME-XML is malformed ({exc})"
    if problem is not None:
        if strict:
            raise OmeXmlError(problem)
        logger.warning("%s: %s; OME metadata ignored", source, problem)
        return None
    fields.flush()
    return doc


def _batches(xml: str | Iterable[str]) -> Iterator[list[tuple[str, ElementTree.Element]]]:
    """The parser's events, one batch per piece of text fed."""
    parser = ElementTree.XMLPullParser(events=("start", "end"))
    for chunk in (xml,) if isinstance(xml, str) else xml:
        for offset in range(0, len(chunk), _FEED):
            parser.feed(chunk[offset : offset + _FEED])
            yield list(parser.read_events())
    parser.close()
    yield list(parser.read_events())


def _stream_document(xml: str | Iterable[str], fields: _Fields, doc: OmeDocument) -> str | None:
    """Fill ``doc`` from ``xml``; the problem if it is not an OME document.

    Elements are dropped once read: the children of ``Pixels`` (planes, TiffData,
    channels) as each ends, and everything outside ``Image`` elements (annotations,
    instruments, ...), which toile does not read. The rest of an ``Image`` is small
    and is read when the ``Image`` ends.
    """
    path: list[str] = []  # local names of the open elements, root first
    open_elements: list[ElementTree.Element] = []
    # per open element: how many of its first children ended and were dropped
    dropped: list[int] = []
    image_count = 0
    planes, tiff_data, channels = PlaneTable(), TiffDataTable(), []
    for batch in _batches(xml):
        for event, element in batch:
            if event == "start":
                name = _local(element.tag)
                if not path:
                    if name != "OME":
                        return f"OME-XML root element is <{name}>, not <OME>"
                    doc.uuid = fields.uuid(element.attrib.get("UUID"), "UUID")
                elif name == "Pixels" and path == ["OME", "Image"]:
                    planes, tiff_data, channels = PlaneTable(), TiffDataTable(), []
                path.append(name)
                open_elements.append(element)
                dropped.append(0)
                continue
            name = path.pop()
            open_elements.pop()
            dropped.pop()
            in_image = len(path) >= 2 and path[1] == "Image"
            if path == ["OME", "Image", "Pixels"]:
                if name == "Plane":
                    planes.append(_parse_plane(element, fields))
                elif name == "TiffData":
                    tiff_data.append(_parse_tiff_data(element, fields))
                elif name == "Channel":
                    channels.append(_parse_channel(element, fields))
            elif path == ["OME"] and name == "Image":
                parsed = _parse_image(element, image_count, fields, channels, planes, tiff_data)
                image_count += 1
                planes, tiff_data, channels = PlaneTable(), TiffDataTable(), []
                if parsed is not None:
                    if doc.uuid is not None:
                        parsed["uuid"] = doc.uuid
                    doc.images.append(parsed)
            elif path == ["OME"] and name == "BinaryOnly" and doc.binary_only is None:
                doc.binary_only = BinaryOnly(
                    metadata_file=element.attrib.get("MetadataFile"),
                    uuid=fields.uuid(element.attrib.get("UUID"), "BinaryOnly UUID"),
                )
            elif in_image:
                continue  # part of an Image (or of a Pixels child): read when that ends
            # Done with this element: free its subtree now, and unlink it from its parent
            # after the batch (it is among the parent's first children: the siblings that
            # follow it started after it ended).
            element.clear()
            if dropped:
                dropped[-1] += 1
        for parent, count in zip(open_elements, dropped, strict=True):
            if count:
                del parent[:count]
        dropped = [0] * len(dropped)
    return None


def parse_ome(xml: str, source: str) -> list[dict]:
    """One dict of movie-level metadata per OME ``Image``, with its ``planes`` and ``tiff_data``.

    Returns an empty list for a malformed document or a BinaryOnly one (see
    :func:`read_ome` for the latter's pointer to its metadata file).
    """
    doc = read_ome(xml, source)
    return [] if doc is None else doc.images


def _parse_image(
    image: ElementTree.Element,
    index: int,
    fields: _Fields,
    channels: list[dict],
    planes: PlaneTable,
    tiff_data: TiffDataTable,
) -> dict | None:
    """One image's metadata; its channels, planes and TiffData were read while streaming."""
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
    out["channels"] = channels
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
        label.update(fields.positions(stage.attrib, "", "StageLabel ", ""))
        out["stage_label"] = label
    out["planes"] = planes
    out["tiff_data"] = tiff_data
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
    out.update(fields.positions(attrs, "Position", "Plane Position", "position_"))
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


@dataclass
class PlaneLocations:
    """Where each (c, z, t) plane of an image is stored, as compact arrays.

    Plane (c, z, t) is entry ``(t * size_z + z) * size_c + c``: ``ifd`` holds its IFD
    (-1 where no TiffData locates it) and ``refs[ref[i]]`` the ``(file_name, uuid)`` of
    its file (file_name None: the document's own file). A few bytes per plane, where a
    dict of :class:`StoredPlane` would take a few hundred.
    """

    size_c: int
    size_z: int
    size_t: int
    ifd: array
    ref: array
    refs: list[tuple[str | None, str | None]]

    def index(self, c: int, z: int, t: int) -> int:
        return (t * self.size_z + z) * self.size_c + c

    def get(self, c: int, z: int, t: int) -> StoredPlane | None:
        i = self.index(c, z, t)
        if self.ifd[i] < 0:
            return None
        file_name, uuid = self.refs[self.ref[i]]
        return StoredPlane(file_name, uuid, self.ifd[i])

    def missing(self) -> Iterator[tuple[int, int, int]]:
        """The (c, z, t) planes no TiffData locates, in (t, z, c) order."""
        for i, value in enumerate(self.ifd):
            if value < 0:
                rest, c = divmod(i, self.size_c)
                t, z = divmod(rest, self.size_z)
                yield c, z, t


def plane_locations(
    image: dict, ifd_count: int | None = None, first_ifd: int = 0
) -> PlaneLocations:
    """Locate each (c, z, t) plane of ``image``: the file and IFD holding it.

    Follows the OME-TIFF rules: a TiffData covers ``PlaneCount`` consecutive
    IFDs from ``IFD`` and consecutive planes (in DimensionOrder) from
    (FirstC, FirstZ, FirstT); a TiffData with neither IFD nor PlaneCount covers
    the rest of its file (``ifd_count`` IFDs in the document's own file). With
    no TiffData at all, planes are the IFDs of the document's file from
    ``first_ifd``, in DimensionOrder. A later TiffData wins over an earlier one.
    """
    order, sizes = plane_order(image)
    size_c, size_z, size_t = sizes["C"], sizes["Z"], sizes["T"]
    total = size_c * size_z * size_t
    # DimensionOrder position -> storage index, dimension by dimension (fastest first)
    strides = {"C": 1, "Z": size_c, "T": size_c * size_z}
    dims = [(sizes[d], strides[d]) for d in order]

    def storage(linear: int) -> int:
        index = 0
        for size, stride in dims:
            linear, position = divmod(linear, size)
            index += position * stride
        return index

    def linear_index(c: int, z: int, t: int) -> int:
        pos = {"C": c, "Z": z, "T": t}
        index = 0
        for dim in reversed(order):
            index = index * sizes[dim] + pos[dim]
        return index

    ifd = array("q", [-1]) * total
    ref = array("l", [0]) * total
    refs: list[tuple[str | None, str | None]] = [(None, None)]
    ref_ids = {refs[0]: 0}
    tiff_data = image.get("tiff_data") or []
    if not tiff_data:
        for linear in range(total):
            ifd[storage(linear)] = first_ifd + linear
    for entry in tiff_data:
        start = linear_index(entry["first_c"], entry["first_z"], entry["first_t"])
        count = entry.get("plane_count")
        file_name = entry.get("file_name")
        if count is None:
            count = total - start
            if ifd_count is not None and file_name is None:
                count = min(count, ifd_count - entry["ifd"])
        key = (file_name, entry.get("uuid"))
        ref_id = ref_ids.setdefault(key, len(refs))
        if ref_id == len(refs):
            refs.append(key)
        for k in range(max(0, min(count, total - start))):
            i = storage(start + k)
            ifd[i] = entry["ifd"] + k
            ref[i] = ref_id
    return PlaneLocations(size_c, size_z, size_t, ifd, ref, refs)


def plane_map(
    image: dict, ifd_count: int | None = None, first_ifd: int = 0
) -> dict[tuple[int, int, int], StoredPlane]:
    """:func:`plane_locations` as a dict from (c, z, t) to :class:`StoredPlane` (small images)."""
    locations = plane_locations(image, ifd_count, first_ifd)
    result: dict[tuple[int, int, int], StoredPlane] = {}
    for t in range(locations.size_t):
        for z in range(locations.size_z):
            for c in range(locations.size_c):
                found = locations.get(c, z, t)
                if found is not None:
                    result[(c, z, t)] = found
    return result
