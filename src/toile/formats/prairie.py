"""Bruker Prairie View folders: the PVScan XML, one TIFF per frame and channel, sidecars.

A T-Series (or SingleImage, ZSeries, ...) folder holds ``{name}.xml`` (the PVScan
document: ``PVStateShard`` state, then one ``Sequence`` per cycle with its ``Frame``
elements, each naming its channels' files), ``{name}.env`` (the microscope's
environment), the Cycle TIFFs, and ``MIP/`` and ``References/`` images. The folder is
one recording, or one per sequence when its sequences are separate acquisitions; a
T-Series of Z-stacks (several ``ZSeries`` cycles of as many frames, at one stage
position) is one recording of (t, z) planes.

The PVScan XML is the record of the acquisition, and it wins over the Cycle files'
OME-XML, which is not read when the XML is there: Prairie View writes that OME-XML
from the same state, the XML also holds what the OME-XML cannot (per-frame state
overrides, the laser and PMT settings, both clocks), and the first Cycle file's OME-XML
of a long series is megabytes long. Each plane's geometry is still checked against the
first one when it is read. Versions before 5.2 wrote ``Key`` elements instead of
``PVStateValue`` ones, and TIFFs without OME-XML: they are read from the XML alone.
Without a PVScan XML, the Cycle files of a folder that share a prefix are one recording
described by the OME-XML of its first file, as an OME-TIFF series.
"""

from __future__ import annotations

import io
import logging
import os
import re
import threading
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from toile.errors import InputError
from toile.formats import fields as F
from toile.formats.base import Candidates, Format, Recording, Source
from toile.formats.fields import finite_float as _float
from toile.formats.single_page import SinglePagePlanes
from toile.formats.tiff.files import open_binary
from toile.formats.tiff.planes import PlaneGrid, PlaneRef

logger = logging.getLogger(__name__)

#: A Cycle file: ``{prefix}_Cycle00001_Ch1_000001.ome.tif`` (5.x) or
#: ``{prefix}_Cycle001_CurrentSettings_Ch1_000001.tif`` (4.x).
CYCLE_NAME = re.compile(
    r"^(?P<prefix>.+?)_Cycle(?P<cycle>\d+)(?:_[A-Za-z][\w-]*?)?_Ch(?P<channel>\d+)"
    r"_(?P<index>\d+)(?:\.ome)?\.tiff?$",
    re.IGNORECASE,
)
#: Folders of images Prairie View saves next to a series; never recordings.
SIDE_FOLDERS = ("MIP", "References")
_XML_INVALID = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_DATE_FORMATS = ("%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M:%S", "%d.%m.%Y %H:%M:%S")

#: A parsed state: key -> {"value", "description"} (a plain value), or a table
#: index -> such a dict (IndexedValue), or index -> subindex -> such a dict
#: (SubindexedValues).
State = dict[str, Any]


@dataclass
class PVFrame:
    """One ``Frame``: its clocks, the file of each channel, its state overrides."""

    index: int
    relative_time: float | None
    absolute_time: float | None
    files: dict[int, tuple[str, str | None, int]]  # channel -> (file name, channel name, page)
    state: State
    attrs: dict[str, str]


@dataclass
class PVSequence:
    """One ``Sequence`` (a cycle): its type, its state overrides, its frames."""

    type: str
    cycle: int
    attrs: dict[str, str]
    state: State
    frames: list[PVFrame] = field(default_factory=list)

    @property
    def is_z(self) -> bool:
        """Frames are the planes of one volume (a ZSeries), not time points."""
        return "zseries" in self.type.replace(" ", "").lower()


@dataclass
class PVScan:
    """A parsed PVScan document."""

    path: Path
    attrs: dict[str, str]
    system_ids: list[dict[str, str]]
    state: State
    sequences: list[PVSequence]


# -- parsing the XML ----------------------------------------------------------------


def is_pvscan(path: Path) -> bool:
    """True when ``path`` starts like a PVScan document (a few hundred bytes read)."""
    try:
        with open_binary(path) as fh:
            head = fh.read(512)
    except OSError:
        return False
    return b"<PVScan" in head


def _leaf(element: ET.Element, value: str | None) -> dict:
    leaf: dict = {"value": value}
    description = element.get("description")
    if description is not None:
        leaf["description"] = description
    return leaf


def _parse_shard(shard: ET.Element) -> State:
    """The key/value state of one ``PVStateShard`` (5.2+ ``PVStateValue`` or older
    ``Key`` elements, whose ``name_index`` keys and comma lists become tables)."""
    state: State = {}
    for element in shard:
        if element.tag == "PVStateValue":
            key = element.get("key")
            if key is None:
                continue
            if element.get("value") is not None:
                state[key] = _leaf(element, element.get("value"))
                continue
            table: dict = {}
            for child in element:
                index = child.get("index")
                if index is None:
                    continue
                if child.tag == "IndexedValue":
                    table[index] = _leaf(child, child.get("value"))
                elif child.tag == "SubindexedValues":
                    table[index] = {
                        sub.get("subindex", str(i)): _leaf(sub, sub.get("value"))
                        for i, sub in enumerate(child)
                        if sub.tag == "SubindexedValue"
                    }
            state[key] = table
        elif element.tag == "Key":
            key, value = element.get("key"), element.get("value")
            if key is None:
                continue
            name, _, index = key.partition("_")
            if not index:
                state[key] = {"value": value}
                continue
            table = state.setdefault(name, {})
            if not isinstance(table, dict) or "value" in table:
                continue
            tokens = (value or "").split(",")
            if len(tokens) == 1:
                table[index] = {"value": value}
            else:
                table[index] = {str(i): {"value": v.strip()} for i, v in enumerate(tokens)}
    return state


def _int(text: str | None) -> int | None:
    value = _float(text)
    return int(value) if value is not None and value == int(value) else None


def _events(data: bytes) -> Iterator[tuple[str, ET.Element]]:
    yield from ET.iterparse(io.BytesIO(data), events=("start", "end"))


def parse_pvscan(path: Path) -> PVScan:
    """Parse the PVScan XML at ``path`` (streamed: frames are dropped once read).

    Some Prairie View versions write characters XML 1.0 does not allow; they are
    removed and the document parsed again. Raises InputError naming the file.
    """
    return _parse_document(path, _read_document(path)[1])


def _read_document(path: Path) -> tuple[tuple[int, ...], bytes]:
    """The bytes of the file at ``path``, and what identifies this version of it."""
    try:
        with open(path, "rb") as fh:
            version = _version(os.fstat(fh.fileno()))
            data = fh.read()
    except OSError as exc:
        raise InputError(path, f"cannot be read ({exc.strerror or exc})") from None
    return version, data


def _version(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


#: PVScan documents parsed lately (path -> file version, document): discovery parses a
#: document to find its recordings, and opening them in the same process reuses it while
#: the file is unchanged. At most ``_CACHED_DOCUMENTS`` documents of ``_CACHED_FRAMES``
#: frames in all (a parsed frame takes about 1.5 kB); threads share it under a lock.
_CACHE: OrderedDict[str, tuple[tuple[int, ...], PVScan]] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHED_DOCUMENTS = 4
_CACHED_FRAMES = 100_000


def _frame_count(scan: PVScan) -> int:
    return sum(len(sequence.frames) for sequence in scan.sequences)


def read_pvscan(path: Path) -> PVScan:
    """The PVScan document at ``path``, parsed once while its file is unchanged (same
    device, inode, size, modification and change times); shared, not to be changed."""
    key = os.fspath(path)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
    if cached is not None:
        try:
            unchanged = cached[0] == _version(os.stat(path))
        except OSError:
            unchanged = False
        if unchanged:
            with _CACHE_LOCK:
                if key in _CACHE:
                    _CACHE.move_to_end(key)
            return cached[1]
    version, data = _read_document(path)
    scan = _parse_document(path, data)
    with _CACHE_LOCK:
        _CACHE.pop(key, None)
        if _frame_count(scan) <= _CACHED_FRAMES:
            _CACHE[key] = (version, scan)
            while len(_CACHE) > _CACHED_DOCUMENTS or (
                sum(_frame_count(s) for _, s in _CACHE.values()) > _CACHED_FRAMES
            ):
                _CACHE.popitem(last=False)
    return scan


def _parse_document(path: Path, data: bytes) -> PVScan:
    try:
        return _parse(path, data)
    except ET.ParseError:
        pass
    text = data.decode("utf-8-sig", errors="replace")
    cleaned = _XML_INVALID.sub("", text).encode()
    try:
        return _parse(path, cleaned)
    except ET.ParseError as exc:
        raise InputError(path, f"not a valid PVScan XML document ({exc})") from None


def _parse(path: Path, data: bytes) -> PVScan:
    root: ET.Element | None = None
    stack: list[str] = []
    scan = PVScan(Path(path), {}, [], {}, [])
    sequence: PVSequence | None = None
    frame: PVFrame | None = None
    for event, element in _events(data):
        tag = element.tag
        if event == "start":
            stack.append(tag)
            if root is None:
                root = element
                if tag != "PVScan":
                    raise InputError(path, f"not a PVScan XML document (root element <{tag}>)")
                scan.attrs = dict(element.attrib)
            elif tag == "Sequence":
                cycle = _int(element.get("cycle"))
                sequence = PVSequence(
                    element.get("type", ""),
                    cycle if cycle is not None else len(scan.sequences) + 1,
                    dict(element.attrib),
                    {},
                )
            elif tag == "Frame" and sequence is not None:
                index = _int(element.get("index"))
                frame = PVFrame(
                    index if index is not None else len(sequence.frames) + 1,
                    _float(element.get("relativeTime")),
                    _float(element.get("absoluteTime")),
                    {},
                    {},
                    dict(element.attrib),
                )
            continue
        stack.pop()
        parent = stack[-1] if stack else None
        if tag == "PVStateShard":
            state = _parse_shard(element)
            if parent == "Frame" and frame is not None:
                frame.state = state
            elif parent == "Sequence" and sequence is not None:
                sequence.state = state
            elif parent == "PVScan":
                scan.state = state
            element.clear()
        elif tag == "File" and parent == "Frame" and frame is not None:
            channel = _int(element.get("channel"))
            name = element.get("filename")
            if channel is not None and name:
                page = _int(element.get("page"))
                frame.files[channel] = (
                    name,
                    element.get("channelName"),
                    page - 1 if page is not None and page > 0 else 0,
                )
        elif tag == "Frame" and frame is not None and sequence is not None:
            sequence.frames.append(frame)
            frame = None
            element.clear()
        elif tag == "Sequence" and sequence is not None:
            scan.sequences.append(sequence)
            sequence = None
            element.clear()
        elif tag == "SystemID" and parent == "SystemIDs":
            scan.system_ids.append(dict(element.attrib))
    if root is None:
        raise InputError(path, "empty PVScan XML document")
    return scan


# -- reading values from a state ------------------------------------------------------


def merge_state(*states: State) -> State:
    """Later states override earlier ones, table entries one by one."""
    merged: State = {}
    for state in states:
        for key, value in state.items():
            old = merged.get(key)
            if isinstance(old, dict) and "value" not in old and "value" not in value:
                merged[key] = {**old, **value}
            else:
                merged[key] = value
    return merged


def _scalar(state: State, key: str) -> str | None:
    entry = state.get(key)
    return entry.get("value") if isinstance(entry, dict) and "value" in entry else None


def _table(state: State, key: str) -> dict:
    entry = state.get(key)
    return entry if isinstance(entry, dict) and "value" not in entry else {}


def _values(entry: Any) -> list[dict]:
    """The leaves of one table entry: itself, or its subindexed values in order."""
    if not isinstance(entry, dict):
        return []
    if "value" in entry:
        return [entry]
    return [v for v in entry.values() if isinstance(v, dict) and "value" in v]


def _axis(state: State, key: str, axis: str) -> float | None:
    leaves = _values(_table(state, key).get(axis))
    return _float(leaves[0]["value"]) if leaves else None


def acquisition_fields(state: State, channels: list[tuple[int, str]]) -> dict:
    """The normalised acquisition fields a state states (``channels``: number, name)."""
    out: dict = {}
    period = _float(_scalar(state, "framePeriod"))
    if period is not None and period > 0:
        out[F.FRAME_RATE_HZ] = 1.0 / period
    for key, name in (("opticalZoom", F.ZOOM), ("objectiveLensNA", F.OBJECTIVE_NA)):
        value = _float(_scalar(state, key))
        if value is not None:
            out[name] = value
    magnification = _float(_scalar(state, "objectiveLensMag"))
    if magnification is not None:
        out[F.OBJECTIVE_MAGNIFICATION] = magnification
    objective = _scalar(state, "objectiveLens")
    if objective:
        out[F.OBJECTIVE] = objective
    dwell = _float(_scalar(state, "dwellTime"))
    if dwell is not None:
        out[F.DWELL_TIME_US] = dwell
    for key, name in (
        ("bitDepth", F.BIT_DEPTH),
        ("linesPerFrame", F.LINES_PER_FRAME),
        ("pixelsPerLine", F.PIXELS_PER_LINE),
    ):
        value = _int(_scalar(state, key))
        if value is not None:
            out[name] = value
    for axis, name in (("XAxis", F.SCALE_X), ("YAxis", F.SCALE_Y)):
        value = _axis(state, "micronsPerPixel", axis)
        if value is not None and value > 0:
            out[name] = value
    lasers = []
    for index, entry in _table(state, "laserPower").items():
        for leaf in _values(entry):
            value = _float(leaf["value"])
            if value is not None:
                lasers.append(
                    {
                        "laser": leaf.get("description") or str(index),
                        "value": value,
                        "unit": "pockels",
                    }
                )
    if lasers:
        out[F.LASER_POWER] = lasers
    wavelengths = [
        _float(leaf["value"])
        for entry in _table(state, "laserWavelength").values()
        for leaf in _values(entry)
    ]
    wavelengths = [w for w in wavelengths if w is not None and w > 0]
    if wavelengths:
        out[F.LASER_WAVELENGTH_NM] = wavelengths[0]
    gains = _table(state, "pmtGain")
    pmt = []
    for number, name in channels:
        leaves = _values(gains.get(str(number - 1)))
        value = _float(leaves[0]["value"]) if leaves else None
        if value is not None:
            pmt.append({"channel": name, "value": value})
    if pmt:
        out[F.PMT_GAIN] = pmt
    return out


def positions(state: State) -> dict:
    """The stage position a state gives (``positionCurrent``, µm): ``position_x/y/z``,
    and every Z device when several move the focus (e.g. a motor and a piezo)."""
    out: dict = {}
    table = _table(state, "positionCurrent")
    for axis, name in (("XAxis", F.POSITION_X), ("YAxis", F.POSITION_Y), ("ZAxis", F.POSITION_Z)):
        leaves = _values(table.get(axis))
        value = _float(leaves[0]["value"]) if leaves else None
        if value is not None:
            out[name] = value
        if axis == "ZAxis" and len(leaves) > 1:
            out["position_z_devices"] = [
                {"device": leaf.get("description"), "value": _float(leaf["value"])}
                for leaf in leaves
            ]
    return out


def parse_date(scan: PVScan) -> str | None:
    """When the acquisition started, ISO 8601 local time: the PVScan ``date``, to the
    sub-second with the first sequence's ``time`` (the next day if it is earlier)."""
    text = scan.attrs.get("date", "").strip()
    started = None
    for pattern in _DATE_FORMATS:
        try:
            started = datetime.strptime(text, pattern)
            break
        except ValueError:
            continue
    if started is None:
        if text:
            logger.warning(
                "%s: PVScan date %r not understood; date_acquired left out", scan.path, text
            )
        return None
    time = scan.sequences[0].attrs.get("time") if scan.sequences else None
    match = re.fullmatch(r"(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d+))?", time or "")
    if match:
        hours, minutes, seconds = (int(match[i]) for i in (1, 2, 3))
        micro = int((match[4] or "0")[:6].ljust(6, "0"))
        if hours < 24 and minutes < 60 and seconds < 60:
            start = started.replace(hour=hours, minute=minutes, second=seconds, microsecond=micro)
            if start < started - timedelta(hours=12):
                start += timedelta(days=1)
            started = start
    return started.isoformat()


def state_json(state: State) -> dict:
    """A state as plain JSON: leaves without a description become their value."""

    def simplify(entry: Any) -> Any:
        if isinstance(entry, dict) and "value" in entry:
            return entry["value"] if len(entry) == 1 else dict(entry)
        if isinstance(entry, dict):
            return {k: simplify(v) for k, v in entry.items()}
        return entry

    return {key: simplify(value) for key, value in state.items()}


# -- recordings in a document -----------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """Which sequences make one recording, and how: ``t`` (frames are time points),
    ``z`` (frames are the planes of one volume) or ``tz`` (each sequence a volume)."""

    sequences: tuple[int, ...]
    mode: str


def _same_xy(scan: PVScan) -> bool:
    """The sequences' first frames are at one XY stage position (or none is stated)."""
    seen = set()
    for sequence in scan.sequences:
        if sequence.frames:
            state = merge_state(scan.state, sequence.state, sequence.frames[0].state)
            where = positions(state)
            seen.add((where.get(F.POSITION_X), where.get(F.POSITION_Y)))
    return len(seen) <= 1


def layouts(scan: PVScan) -> list[_Layout]:
    """The recordings of a PVScan document, in order."""
    sequences = [i for i, s in enumerate(scan.sequences) if s.frames]
    if not sequences:
        return []
    volumes = [scan.sequences[i] for i in sequences]
    if (
        len(volumes) > 1
        and all(s.is_z for s in volumes)
        and len({len(s.frames) for s in volumes}) == 1
        and _same_xy(scan)
    ):
        return [_Layout(tuple(sequences), "tz")]
    return [_Layout((i,), "z" if scan.sequences[i].is_z else "t") for i in sequences]


def _channels(scan: PVScan, layout: _Layout) -> list[tuple[int, str]]:
    """The recording's channels (number, name), from its first frame's files."""
    first = scan.sequences[layout.sequences[0]].frames[0]
    return [(number, first.files[number][1] or f"Ch{number}") for number in sorted(first.files)]


def _frames(scan: PVScan, layout: _Layout) -> list[list[PVFrame]]:
    """The recording's frames as [t][z]."""
    sequences = [scan.sequences[i] for i in layout.sequences]
    if layout.mode == "tz":
        return [list(s.frames) for s in sequences]
    if layout.mode == "z":
        return [list(sequences[0].frames)]
    return [[f] for f in sequences[0].frames]


def _named_files(scan: PVScan, layouts_: list[_Layout]) -> list[str]:
    names: dict[str, None] = {}
    for layout in layouts_:
        for sequence in layout.sequences:
            for frame in scan.sequences[sequence].frames:
                for name, _, _ in frame.files.values():
                    names[name] = None
    return list(names)


# -- the format -----------------------------------------------------------------------


def _sidecars(directory: Path, stem: str, names: list[str]) -> list[Path]:
    """The metadata files of a Prairie folder: its ``.env`` (``.cfg`` before 5.2),
    voltage recordings and ``experiment.xml`` (the PVScan XML is the caller's)."""
    return [
        directory / name
        for name in names
        if name.lower() == "experiment.xml"
        or (
            name.startswith(stem)
            and name.lower().endswith((".xml", ".env", ".cfg", ".csv"))
            and name.lower() != f"{stem.lower()}.xml"
        )
    ]


def _side_images(directory: Path, names: list[str]) -> list[Path]:
    """The ``MIP/`` and ``References/`` images of a Prairie folder: never recordings,
    and not needed to read the series."""
    out = []
    for name in names:
        if name in SIDE_FOLDERS and (directory / name).is_dir():
            for root, _, files in os.walk(directory / name):
                out.extend(Path(root) / f for f in files)
    return out


def _by_directory(candidates: Candidates) -> dict[Path, dict[str, Path]]:
    """The candidate files by directory, then by name: the candidates' own path objects.

    A directory's parent is found once, not once per file: in a series of thousands of
    files, making and hashing a new path for each of them costs more than the rest of
    discovery.
    """
    groups: dict[Path, dict[str, Path]] = {}
    parents: dict[str, Path] = {}
    for path in candidates:
        if isinstance(path, Path):
            head, name = os.path.split(str(path))
            parent = parents.get(head)
            if parent is None:
                parent = parents[head] = path.parent
        else:  # a URL input's path-like object
            parent, name = path.parent, path.name
        groups.setdefault(parent, {})[name] = path
    return groups


def _paths(directory: Path, group: dict[str, Path], names: list[str]) -> list[Path]:
    """The files ``names`` of ``directory``: a candidate's own path when it is one."""
    out = []
    for name in names:
        path = group.get(name)
        out.append(directory / name if path is None else path)
    return out


class PrairieFormat(Format):
    """Bruker Prairie View folders (PVScan XML + Cycle TIFFs), see the module docstring."""

    name = F.FORMAT_PRAIRIE

    def claim(self, candidates: Candidates) -> list[Source]:
        groups = _by_directory(candidates)
        directories = set(groups)
        for parent in groups:
            if parent.name in SIDE_FOLDERS:
                directories.add(parent.parent)
            elif parent.parent.name in SIDE_FOLDERS:
                directories.add(parent.parent.parent)
        sources: list[Source] = []
        for directory in sorted(directories):
            names = candidates.listdir(directory)
            group = groups.get(directory, {})
            xmls = [
                n
                for n in names
                if n.lower().endswith(".xml")
                and n.lower() != "experiment.xml"
                and is_pvscan(directory / n)
            ]
            described = False
            for xml in xmls:
                found = self._claim_xml(candidates, directory / xml, names, group)
                described = described or bool(found)
                sources.extend(found)
            if not described:
                sources.extend(self._claim_cycles(candidates, directory, names, group))
            if xmls or any(CYCLE_NAME.match(n) for n in names):
                candidates.claim(_side_images(directory, names))
        return sources

    def _claim_xml(
        self, candidates: Candidates, xml: Path, names: list[str], group: dict[str, Path]
    ) -> list[Source]:
        """The recordings of one PVScan XML: none when it lists no frame (the folder's
        Cycle files, if any, are then read without it)."""
        candidates.claim([xml])
        directory = xml.parent
        try:
            scan = read_pvscan(xml)
        except InputError as exc:
            # reported when the recording is opened, where --on-error skip applies; the
            # folder's Cycle files are not recordings of their own meanwhile
            stem = xml.name[: -len(".xml")]
            images = _paths(directory, group, [n for n in names if CYCLE_NAME.match(n)])
            candidates.claim(images)
            return [
                Source(
                    self.name,
                    xml,
                    (xml, *images),
                    name=stem,
                    detail={"xml": str(xml), "error": exc.problem},
                )
            ]
        found = layouts(scan)
        if not found:
            logger.info("%s: a PVScan XML without frames; the folder is read without it", xml)
            return []
        present = set(names)
        stem = xml.name[: -len(".xml")]
        sidecars = _sidecars(directory, stem, names)
        sources = []
        for series, layout in enumerate(found):
            named = [n for n in _named_files(scan, [layout]) if n in present]
            sources.append(
                Source(
                    self.name,
                    xml,
                    (xml, *sidecars, *_paths(directory, group, named)),
                    series=series,
                    name=stem,
                    detail={"xml": str(xml), "sequences": layout.sequences, "mode": layout.mode},
                )
            )
        candidates.claim(sidecars)
        # a file that is no candidate cannot be claimed: only candidates are looked up
        candidates.claim(group[n] for n in _named_files(scan, found) if n in group)
        return sources

    def _claim_cycles(
        self, candidates: Candidates, directory: Path, names: list[str], group: dict[str, Path]
    ) -> list[Source]:
        """Cycle files without a PVScan XML: one recording per prefix, read through the
        OME-XML of its first file."""
        keys: dict[str, tuple[str, tuple[int, int, int]]] = {}
        for name in names:
            match = CYCLE_NAME.match(name)
            if match:
                key = (int(match["cycle"]), int(match["channel"]), int(match["index"]))
                keys[name] = (match["prefix"], key)
        named = {keys[n][0] for n in keys if n in group and group[n] in candidates}
        sources = []
        for prefix in sorted(named):
            members = sorted((key, n) for n, (p, key) in keys.items() if p == prefix)
            files = _paths(directory, group, [n for _, n in members])
            sources.append(
                Source(self.name, files[0], tuple(files), name=prefix, detail={"xml": None})
            )
            candidates.claim(files)
        return sources

    def open(self, source: Source, channel: str | int | None = None) -> Recording:
        xml = source.detail.get("xml")
        if xml is None:
            return _open_without_xml(source, channel)
        if source.detail.get("error"):
            raise InputError(xml, source.detail["error"])
        scan = read_pvscan(Path(xml))
        layout = _Layout(tuple(source.detail["sequences"]), source.detail["mode"])
        if max(layout.sequences, default=-1) >= len(scan.sequences):
            raise InputError(xml, f"has no sequence {max(layout.sequences) + 1} any more")
        return PrairieRecording(source, scan, layout, channel)


def _open_without_xml(source: Source, channel: str | int | None) -> Recording:
    """A folder of Cycle files without its XML: the OME-XML of the first file."""
    from toile.formats.registry import FORMATS

    fallback = next((f for f in FORMATS if f.name == F.FORMAT_OME_TIFF), None)
    if fallback is None:
        fallback = next(f for f in FORMATS if f.name == F.FORMAT_TIFF)
    files = tuple(p for p in source.files if CYCLE_NAME.match(p.name))
    series = Source(fallback.name, source.path, files, name=source.name, fields=source.fields)
    if fallback.name == F.FORMAT_OME_TIFF:
        from toile.formats.ome_tiff import open_ome

        # what OmeTiffFormat.open does, with the planes read as single-page files
        recording: Recording = open_ome(series, channel, planes=SinglePagePlanes())
    else:
        recording = fallback.open(series, channel)
    recording.source = source
    recording.metadata[F.FORMAT] = F.FORMAT_PRAIRIE
    return recording


class PrairieRecording(PlaneGrid):
    """One recording of a PVScan document: its planes at the files the XML names."""

    def __init__(
        self, source: Source, scan: PVScan, layout: _Layout, channel: str | int | None
    ) -> None:
        xml = scan.path
        directory = xml.parent
        frames = _frames(scan, layout)
        size_t, size_z = len(frames), len(frames[0])
        if any(len(volume) != size_z for volume in frames):
            raise InputError(xml, "its Z-series cycles do not have the same number of frames")
        channels = _channels(scan, layout)
        numbers = [n for n, _ in channels]
        refs: list[list[list[PlaneRef]]] = []
        missing: list[str] = []
        present = set(os.listdir(directory)) if directory.is_dir() else set()
        # the source's own paths of this folder (made and hashed once, at discovery)
        folder = str(directory)
        known = {
            path.name: path
            for path in source.files
            if isinstance(path, Path) and os.path.dirname(str(path)) == folder
        }
        named = 0
        for volume in frames:
            row = []
            for frame in volume:
                planes = []
                for number in numbers:
                    entry = frame.files.get(number)
                    if entry is None:
                        raise InputError(
                            xml,
                            f"frame {frame.index} names no file for channel {number} "
                            f"(the first frame has channels {', '.join(map(str, numbers))})",
                        )
                    name, _, page = entry
                    named += 1
                    if name not in present:
                        missing.append(name)
                    path = known.get(name)
                    planes.append(PlaneRef(directory / name if path is None else path, page))
                row.append(planes)
            refs.append(row)
        if missing and len(missing) == named:
            raise InputError(
                xml,
                f"none of the {named} image files it names is in {directory} "
                f"(first: {missing[0]}); the folder holds only the metadata"
                + (
                    " and MIP/Reference images"
                    if any((directory / d).is_dir() for d in SIDE_FOLDERS)
                    else ""
                ),
            )
        if missing:
            raise InputError(
                directory / missing[0],
                f"missing: named by {xml.name} but not found"
                + (
                    f" ({len(missing)} of its {named} files are missing)"
                    if len(missing) > 1
                    else ""
                ),
            )
        self._scan, self._frames_tz = scan, frames
        base = [merge_state(scan.state, scan.sequences[i].state) for i in layout.sequences]
        self._base = base
        self._base_positions = [positions(state) for state in base]
        self._mode = layout.mode
        first_state = self._state(0, 0)
        metadata = self._recording_metadata(scan, layout, frames, channels, first_state)
        self._t0 = frames[0][0].absolute_time if layout.mode == "tz" else None
        self._varying = self._varying_fields(channels, metadata)
        self._channels_pv = channels
        super().__init__(
            source,
            metadata,
            size_t,
            size_z,
            len(numbers),
            lambda t, z, c: refs[t][z][c],
            [name for _, name in channels],
            plane_metadata=self._plane_fields,
            channel=channel,
            vendor_metadata=self._vendor(scan, layout),
            planes=SinglePagePlanes(min(8, len(numbers) + 1)),
        )
        self.planes.data_end(refs[0][0][0])
        stated = (metadata.get(F.PIXELS_PER_LINE), metadata.get(F.LINES_PER_FRAME))
        found = (self.metadata[F.SIZE_X], self.metadata[F.SIZE_Y])
        if None not in stated and stated != found:
            logger.warning(
                "%s: says %dx%d pixels (pixelsPerLine x linesPerFrame), %s holds %dx%d",
                xml,
                *stated,
                refs[0][0][0].file.name,
                *found,
            )

    def _state(self, t: int, z: int) -> State:
        base = self._base[t] if self._mode == "tz" else self._base[0]
        return merge_state(base, self._frames_tz[t][z].state)

    def _recording_metadata(
        self,
        scan: PVScan,
        layout: _Layout,
        frames: list[list[PVFrame]],
        channels: list[tuple[int, str]],
        state: State,
    ) -> dict:
        metadata: dict = {F.FORMAT: F.FORMAT_PRAIRIE, F.IMAGE_NAME: scan.path.stem}
        date = parse_date(scan)
        if date is not None:
            metadata[F.DATE_ACQUIRED] = date
        fields = acquisition_fields(state, channels)
        if layout.mode == "t" and F.FRAME_RATE_HZ in fields:
            metadata[F.TIME_INCREMENT] = 1.0 / fields[F.FRAME_RATE_HZ]
            metadata[F.T_UNIT] = F.SECONDS
        if layout.mode == "tz" and len(frames) > 1:
            first, last = frames[0][0].absolute_time, frames[-1][0].absolute_time
            if first is not None and last is not None and last > first:
                metadata[F.TIME_INCREMENT] = (last - first) / (len(frames) - 1)
                metadata[F.T_UNIT] = F.SECONDS
        if F.SCALE_X in fields or F.SCALE_Y in fields:
            metadata[F.SCALE_UNIT] = F.UM
        if len(frames[0]) > 1:
            step = _axis(state, "micronsPerPixel", "ZAxis")
            if step is not None and step > 0:
                metadata[F.SCALE_Z] = step
                metadata[F.SCALE_UNIT] = F.UM
        metadata.update(fields)
        metadata[F.CHANNELS] = [{"name": name} for _, name in channels]
        distinct = {
            ref for volume in frames for frame in volume for ref, _, _ in frame.files.values()
        }
        metadata[F.FILES] = len(distinct)
        return metadata

    def _varying_fields(self, channels: list[tuple[int, str]], metadata: dict) -> set[str]:
        """The acquisition fields some frame's own state changes (kept per frame)."""
        varying: set[str] = set()
        seen: set[tuple[int, str]] = set()  # frames of one state give the same fields
        for t, volume in enumerate(self._frames_tz):
            for z, frame in enumerate(volume):
                if not frame.state and not (self._mode == "tz" and z == 0 and t):
                    continue
                key = (t if self._mode == "tz" else 0, repr(frame.state))
                if key in seen:
                    continue
                seen.add(key)
                fields = acquisition_fields(self._state(t, z), channels)
                for key, value in fields.items():
                    if metadata.get(key) != value:
                        varying.add(key)
        return varying

    def _plane_fields(self, t: int, z: int, c: int) -> dict:
        frame = self._frames_tz[t][z]
        out: dict = {}
        if self._mode == "tz" and self._t0 is not None and frame.absolute_time is not None:
            out[F.T] = frame.absolute_time - self._t0
        elif frame.relative_time is not None:
            out[F.T] = frame.relative_time
        if frame.absolute_time is not None:
            out["absolute_time_s"] = frame.absolute_time
        state: State | None = None
        if "positionCurrent" in frame.state:
            state = self._state(t, z)
            out.update(positions(state))
        else:  # the position its sequence's state gives
            out.update(self._base_positions[t if self._mode == "tz" else 0])
        if self._varying:
            if state is None:
                state = self._state(t, z)
            fields = acquisition_fields(state, self._channels_pv)
            out.update({k: v for k, v in fields.items() if k in self._varying})
        return out

    @staticmethod
    def _vendor(scan: PVScan, layout: _Layout) -> dict:
        sequences = []
        for i in layout.sequences:
            sequence = scan.sequences[i]
            shared: State | None = None
            for frame in sequence.frames:
                if shared is None:
                    shared = dict(frame.state)
                else:
                    shared = {k: v for k, v in shared.items() if frame.state.get(k) == v}
            varying = sorted(
                {k for frame in sequence.frames for k in frame.state} - set(shared or {})
            )
            sequences.append(
                {
                    **sequence.attrs,
                    "state": state_json(sequence.state),
                    "frames": len(sequence.frames),
                    "frame_state": state_json(shared or {}),
                    "frame_state_varying": varying,
                }
            )
        return {
            "PVScan": {
                **scan.attrs,
                "SystemIDs": [dict(system) for system in scan.system_ids],
                "state": state_json(scan.state),
                "sequences": sequences,
            }
        }
