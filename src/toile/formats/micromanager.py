"""Micro-Manager acquisitions: 1.4 OME-TIFF image stacks and 2.0 single-plane image files.

- **MMStack** (Micro-Manager 1.4 "image stack file", OME-TIFF): one
  ``{prefix}_MMStack_{position}.ome.tif`` per stage position, continued in
  ``..._1.ome.tif``, ``..._2.ome.tif`` when a file reaches 4 GB. A classic TIFF whose
  header is followed by Micro-Manager's blocks (the index map, display settings, comments
  and summary headers; read with tifffile's ``micromanager_metadata``); the first
  position's files hold the whole acquisition's OME-XML, every other file a
  ``BinaryOnly`` pointer to it. Each position (OME ``Image``) is a recording, whichever
  files it spans; its ``{prefix}_MMStack_{position}_metadata.txt`` (per-image JSON:
  ``ElapsedTime-ms``, ``Exposure-ms``, ``XPositionUm``, ...) fills what the OME-XML lacks.
- **Micro-Manager 2.0 separate image files**: a folder per position
  (``Pos0/img_channel000_position000_time000000000_z000.tif`` ... and ``metadata.txt``)
  is one recording.

``source`` is the file whose OME-XML describes the recording (MMStack) or its first
image file (2.0); ``series`` the position's OME ``Image`` index; ``position_name`` the
position's name.
"""

from __future__ import annotations

import json
import logging
import re
import struct
from datetime import datetime
from pathlib import Path
from typing import Any

from toile.errors import InputError
from toile.formats import fields as F
from toile.formats.base import Candidates, Format, Recording, Source
from toile.formats.tiff import ome, ome_xml
from toile.formats.tiff.files import open_binary, open_tiff
from toile.formats.tiff.ifd import IfdReader
from toile.formats.tiff.planes import PlaneGrid, PlaneRef

logger = logging.getLogger(__name__)

#: Micro-Manager's index map offset header, right after the TIFF header of an MMStack file.
INDEX_MAP_OFFSET_HEADER = 54773648
#: Micro-Manager 2.0's name of one image of a separate-image-files acquisition.
MM2_NAME = re.compile(
    r"^img_channel(?P<c>\d+)_position(?P<p>\d+)_time(?P<t>\d+)_z(?P<z>\d+)\.tiff?$",
    re.IGNORECASE,
)
_FIRST_FILE = re.compile(r"<(?:[\w.-]+:)?UUID\b[^>]*?\bFileName\s*=\s*\"([^\"]*)\"")
METADATA_TXT = "metadata.txt"
_METADATA_SUFFIX = "_metadata.txt"
POSITION_NAME = "position_name"
#: The TIFF tag holding each image's Micro-Manager JSON.
MM_METADATA_TAG = 51123


def is_mmstack(path: Path) -> bool:
    """Whether ``path`` starts like a Micro-Manager 1.4 stack file (a few bytes read)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
    except OSError:
        return False
    if len(head) < 12 or head[:2] not in (b"II", b"MM"):
        return False
    order = "<" if head[:2] == b"II" else ">"
    return struct.unpack_from(order + "I", head, 8)[0] == INDEX_MAP_OFFSET_HEADER


def _stack_stem(name: str) -> str:
    """``x_MMStack_Pos0.ome.tif`` -> ``x_MMStack_Pos0``."""
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _read_json(path: Path) -> dict | None:
    """A metadata.txt file's JSON object; a warning naming it when it cannot be read."""
    try:
        with open_binary(path) as fh:
            value = json.loads(fh.read().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        logger.warning("%s: cannot read Micro-Manager metadata (%s); ignored", path, exc)
        return None
    if not isinstance(value, dict):
        logger.warning("%s: Micro-Manager metadata is not a JSON object; ignored", path)
        return None
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _date(text: Any) -> str | None:
    """Micro-Manager's ``StartTime`` (``2013-11-05 16:17:05 -0800``, milliseconds
    optional) or ``Time`` (Java's ``Tue Nov 05 16:17:05 PST 2013``, whose zone name is
    left out) as ISO 8601."""
    if not isinstance(text, str):
        return None
    text = text.strip()
    for fmt, spec in (
        ("%Y-%m-%d %H:%M:%S.%f %z", "milliseconds"),
        ("%Y-%m-%d %H:%M:%S %z", "seconds"),
        ("%Y-%m-%d %H:%M:%S.%f", "milliseconds"),
        ("%Y-%m-%d %H:%M:%S", "seconds"),
    ):
        try:
            return datetime.strptime(text, fmt).isoformat(timespec=spec)
        except ValueError:
            continue
    parts = text.split()
    if len(parts) == 6:
        try:
            stamp = datetime.strptime(" ".join(parts[:4] + parts[5:]), "%a %b %d %H:%M:%S %Y")
        except ValueError:
            return None
        return stamp.isoformat(timespec="seconds")
    return None


def _image_values(tags: dict) -> dict:
    """Per-plane fields from a Micro-Manager image's JSON."""
    out: dict = {}
    elapsed = _number(tags.get("ElapsedTime-ms"))
    if elapsed is not None:
        out[F.T] = elapsed / 1000.0
    exposure = _number(tags.get("Exposure-ms"))
    if exposure is not None:
        out[F.EXPOSURE_S] = exposure / 1000.0
    for key, axis in (("XPositionUm", "x"), ("YPositionUm", "y"), ("ZPositionUm", "z")):
        value = _number(tags.get(key))
        if value is not None:
            out[f"position_{axis}"] = value
    return out


def _summary_fields(summary: dict, size_z: int) -> dict:
    """Recording-level fields a Micro-Manager summary states."""
    out: dict = {}
    pixel = _number(summary.get("PixelSize_um"))
    if pixel is not None and pixel > 0:
        out[F.SCALE_X] = out[F.SCALE_Y] = pixel
    step = _number(summary.get("z-step_um"))
    if step is not None and step > 0 and size_z > 1:
        out[F.SCALE_Z] = step
    interval = _number(summary.get("Interval_ms"))
    if interval is not None and interval > 0:
        out[F.TIME_INCREMENT] = interval / 1000.0
    date = _date(summary.get("StartTime")) or _date(summary.get("Time"))
    if date is not None:
        out[F.DATE_ACQUIRED] = date
    depth = summary.get("BitDepth")
    if isinstance(depth, int) and not isinstance(depth, bool) and depth > 0:
        out[F.BIT_DEPTH] = depth
    return out


class MMStackRecording(PlaneGrid):
    """One position of a Micro-Manager 1.4 OME-TIFF stack acquisition."""

    def __init__(self, source: Source, channel: str | int | None = None) -> None:
        found = ome.document(source.path)
        if found is None:
            raise InputError(source.path, "Micro-Manager stack file without OME-XML images")
        master, doc = found
        if not 0 <= source.series < len(doc.images):
            raise InputError(
                master, f"has {len(doc.images)} positions, position {source.series} asked"
            )
        image = doc.images[source.series]
        locations = ome_xml.plane_locations(image)
        size_c, size_z, size_t = locations.size_c, locations.size_z, locations.size_t
        missing = next(locations.missing(), None)
        if missing is not None:
            c, z, t = missing
            raise InputError(master, f"its OME-XML locates no plane for C={c} Z={z} T={t}")
        paths: list[Path] = []
        for name, _uuid in locations.refs:
            path = master if name is None else master.parent / name
            if name is not None and not path.is_file():
                raise InputError(
                    path, f"file of the Micro-Manager position {source.series} is missing"
                )
            paths.append(path)
        used = {locations.ref[i] for i in range(len(locations.ifd))}
        self._refs = [PlaneRef(paths[k], 0, uuid) for k, (_name, uuid) in enumerate(locations.refs)]
        self._locations = locations
        # the file holding the OME-XML is read too, even when it holds none of the planes
        files = sorted({paths[k] for k in used} | {master})

        self._tag_file: tuple[Path, Any, IfdReader] | None = None
        txt = source.detail.get("metadata_txt")
        document = _read_json(Path(txt)) if txt else None
        self._image_tags = {}
        if document is not None:
            for key, value in document.items():
                if key.startswith("FrameKey-") and isinstance(value, dict):
                    parts = key.split("-")[1:]
                    if len(parts) == 3 and all(p.isdigit() for p in parts):
                        t, c, z = (int(p) for p in parts)
                        self._image_tags[(t, z, c)] = value
        summary = self._summary(paths[locations.ref[0]])
        if summary is None and document is not None and isinstance(document.get("Summary"), dict):
            summary = document["Summary"]

        rows: dict[tuple[int, int, int], int] = {}
        table = image.get("planes") or ()
        for row, plane in enumerate(table):
            key = (plane.get("t_index", 0), plane.get("z_index", 0), plane.get("c_index", 0))
            rows.setdefault(key, row)
        self._table, self._rows = table, rows
        self._stage = image.get("stage_label") or {}

        metadata = {
            k: v
            for k, v in image.items()
            if k not in ("planes", "tiff_data", "stage_label", "dimension_order")
        }
        for key, value in _summary_fields(summary or {}, size_z).items():
            metadata.setdefault(key, value)
        metadata[F.FORMAT] = F.FORMAT_MICROMANAGER
        metadata[F.FILES] = len(files)
        if doc.uuid is not None:
            metadata[F.UUID] = doc.uuid
        name = self._stage.get("name")
        if name is None:
            first = self._image_tags.get((0, 0, 0), {})
            name = first.get("PositionName")
        if isinstance(name, str):
            metadata[POSITION_NAME] = name
        vendor: dict = {}
        if summary is not None:
            vendor["Summary"] = summary
        names = [ch.get("name") or f"C{c}" for c, ch in enumerate(metadata.get("channels") or [])]
        super().__init__(
            source,
            metadata,
            size_t,
            size_z,
            size_c,
            self._plane,
            names,
            plane_metadata=self._plane_values,
            channel=channel,
            vendor_metadata=vendor or None,
        )

    @staticmethod
    def _summary(path: Path) -> dict | None:
        """The summary block of an MMStack file, through tifffile."""
        with open_tiff(path, check=False) as tif:
            try:
                meta = tif.micromanager_metadata
            except Exception:  # noqa: BLE001 - a damaged block only loses the summary
                return None
        summary = None if meta is None else meta.get("Summary")
        return summary if isinstance(summary, dict) else None

    def _page_tags(self, ref: PlaneRef) -> dict:
        """The image's own JSON (tag 51123), read from its IFD when metadata.txt has no
        entry for it (Micro-Manager writes metadata.txt only when asked to)."""
        if self._tag_file is None or self._tag_file[0] != ref.file:
            self._close_tags()
            try:
                fh = open_binary(ref.file)
            except OSError:
                return {}
            reader = IfdReader.open(fh)
            if reader is None:
                fh.close()
                return {}
            self._tag_file = (ref.file, fh, reader)
        reader = self._tag_file[2]
        offset = reader.offset(ref.page)
        entries = None if offset is None else reader.entries(offset)
        entry = None if entries is None else entries.get(MM_METADATA_TAG)
        text = None if entry is None else reader.text(entry)
        try:
            value = json.loads(text) if text else {}
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def _close_tags(self) -> None:
        if self._tag_file is not None:
            self._tag_file[1].close()
            self._tag_file = None

    def close(self) -> None:
        super().close()
        self._close_tags()

    def _plane(self, t: int, z: int, c: int) -> PlaneRef:
        i = self._locations.index(c, z, t)
        ref = self._refs[self._locations.ref[i]]
        return PlaneRef(ref.file, self._locations.ifd[i], ref.uuid)

    def _plane_values(self, t: int, z: int, c: int) -> dict:
        out: dict = {}
        row = self._rows.get((t, z, c))
        plane = self._table[row] if row is not None else {}
        if "delta_t" in plane:
            out[F.T] = plane["delta_t"]
        if "exposure_time" in plane:
            out[F.EXPOSURE_S] = plane["exposure_time"]
        for key in (F.POSITION_X, F.POSITION_Y, F.POSITION_Z, F.POSITION_UNIT):
            if key in plane:
                out[key] = plane[key]
        tags = self._image_tags.get((t, z, c))
        if tags is None:
            tags = self._page_tags(self._plane(t, z, c))
        for key, value in _image_values(tags).items():
            out.setdefault(key, value)
        for axis in "xy":
            if f"position_{axis}" not in out and axis in self._stage:
                out[f"position_{axis}"] = self._stage[axis]
        return out


class MM2Recording(PlaneGrid):
    """One position of a Micro-Manager 2.0 separate-image-files acquisition."""

    def __init__(self, source: Source, channel: str | int | None = None) -> None:
        grid: dict[tuple[int, int, int], Path] = {}
        for path in source.files:
            match = MM2_NAME.match(path.name)
            if match:
                grid[(int(match["t"]), int(match["z"]), int(match["c"]))] = path
        size_t = 1 + max(t for t, _, _ in grid)
        size_z = 1 + max(z for _, z, _ in grid)
        size_c = 1 + max(c for _, _, c in grid)
        position = int(MM2_NAME.match(source.path.name)["p"])  # type: ignore[index]
        for t in range(size_t):
            for z in range(size_z):
                for c in range(size_c):
                    if (t, z, c) not in grid:
                        name = f"img_channel{c:03d}_position{position:03d}_time{t:09d}_z{z:03d}.tif"
                        raise InputError(
                            source.path.parent / name,
                            "image of the Micro-Manager acquisition is missing",
                        )
        self._grid = grid
        txt = source.detail.get("metadata_txt")
        document = _read_json(Path(txt)) if txt else None
        summary: dict = {}
        self._tags: dict[str, dict] = {}
        if document is not None:
            if isinstance(document.get("Summary"), dict):
                summary = document["Summary"]
            for key, value in document.items():
                if key.startswith("Metadata-") and isinstance(value, dict):
                    self._tags[key.rsplit("/", 1)[-1].removeprefix("Metadata-")] = value
        names = summary.get("ChNames")
        if not (isinstance(names, list) and len(names) == size_c):
            names = [f"C{c}" for c in range(size_c)]
        names = [str(n) for n in names]
        metadata: dict = {F.SCALE_UNIT: F.UM, F.T_UNIT: F.SECONDS}
        metadata.update(_summary_fields(summary, size_z))
        if F.SCALE_X not in metadata:
            pixel = _number(self._tags.get(source.path.name, {}).get("PixelSizeUm"))
            if pixel is not None and pixel > 0:
                metadata[F.SCALE_X] = metadata[F.SCALE_Y] = pixel
        prefix = summary.get("Prefix")
        if isinstance(prefix, str):
            metadata[F.IMAGE_NAME] = prefix
        metadata[F.CHANNELS] = [{"name": n} for n in names]
        metadata[F.FORMAT] = F.FORMAT_MICROMANAGER
        metadata[F.FILES] = len(grid)
        first = self._tags.get(source.path.name, {})
        position_name = first.get("PositionName")
        metadata[POSITION_NAME] = (
            position_name if isinstance(position_name, str) else source.path.parent.name
        )
        super().__init__(
            source,
            metadata,
            size_t,
            size_z,
            size_c,
            lambda t, z, c: PlaneRef(self._grid[(t, z, c)], 0),
            names,
            plane_metadata=self._plane_values,
            channel=channel,
            vendor_metadata={"Summary": summary} if summary else None,
        )

    def _plane_values(self, t: int, z: int, c: int) -> dict:
        return _image_values(self._tags.get(self._grid[(t, z, c)].name, {}))


class MicroManagerFormat(Format):
    """Micro-Manager 1.4 OME-TIFF stacks (one recording per position) and 2.0 separate
    image files (one recording per position folder)."""

    name = F.FORMAT_MICROMANAGER

    def claim(self, candidates: Candidates) -> list[Source]:
        sources = self._claim_mm2(candidates)
        sources.extend(self._claim_stacks(candidates))
        return sources

    # -- 2.0 separate image files ----------------------------------------------------

    def _claim_mm2(self, candidates: Candidates) -> list[Source]:
        sources = []
        for directory, paths in candidates.by_directory().items():
            images = [p for p in paths if MM2_NAME.match(p.name)]
            if not images:
                continue
            listing = candidates.listdir(directory)
            txt = directory / METADATA_TXT if METADATA_TXT in listing else None
            by_position: dict[int, list[Path]] = {}
            for name in listing:
                match = MM2_NAME.match(name)
                if match:
                    by_position.setdefault(int(match["p"]), []).append(directory / name)
            named_positions = {int(MM2_NAME.match(p.name)["p"]) for p in images}  # type: ignore[index]
            for position in sorted(named_positions):
                files = sorted(
                    by_position[position],
                    key=lambda p: tuple(
                        int(MM2_NAME.match(p.name)[k])  # type: ignore[index]
                        for k in ("t", "z", "c")
                    ),
                )
                all_files = (*files, txt) if txt is not None else tuple(files)
                sources.append(
                    Source(
                        self.name,
                        files[0],
                        all_files,
                        name=directory.name,
                        detail={"layout": "mm2", "metadata_txt": str(txt) if txt else None},
                    )
                )
                candidates.claim(all_files)
        return sources

    # -- 1.4 stacks --------------------------------------------------------------------

    def _claim_stacks(self, candidates: Candidates) -> list[Source]:
        masters: dict[Path, set[Path]] = {}  # master -> the candidate files that led to it
        for path in list(candidates):
            if path.suffix.lower() not in (".tif", ".tiff"):
                continue
            description = candidates.description(path)
            if not ome_xml.is_ome(description) or not is_mmstack(path):
                continue
            links = ome.links(path, description or "")
            master = links.links[0] if links.binary_only else ome.absolute(path)
            masters.setdefault(self._canonical(master, candidates), set()).add(ome.absolute(path))
        sources: list[Source] = []
        for master, named in sorted(masters.items()):
            found = ome.document(master)
            if found is None:
                continue
            master, doc = found
            for index, image in enumerate(doc.images):
                files = self._image_files(master, image)
                if master not in named and not named & set(files):
                    continue
                listing = candidates.listdir(master.parent)
                txt = None
                stem = _stack_stem(files[0].name) if files else None
                if stem is not None and stem + _METADATA_SUFFIX in listing:
                    txt = master.parent / (stem + _METADATA_SUFFIX)
                all_files = tuple(dict.fromkeys([master, *files, *([txt] if txt else [])]))
                sources.append(
                    Source(
                        self.name,
                        master,
                        all_files,
                        series=index,
                        name=master.name,
                        detail={"layout": "mmstack", "metadata_txt": str(txt) if txt else None},
                    )
                )
                candidates.claim(all_files)
            candidates.claim(named)
        return sources

    @staticmethod
    def _canonical(master: Path, candidates: Candidates) -> Path:
        """The first file the acquisition's OME-XML names, when it holds that OME-XML too:
        Micro-Manager writes the whole document into every file of the first position, so
        the files of one acquisition lead to one master whichever of them are found."""
        found = _FIRST_FILE.search(candidates.description(master) or "")
        if found is None:
            return master
        first = ome.absolute(master.parent / found.group(1))
        if first == master or not first.is_file():
            return master
        description = candidates.description(first)
        if ome_xml.is_ome(description) and not ome.links(first, description or "").binary_only:
            return first
        return master

    @staticmethod
    def _image_files(master: Path, image: dict) -> list[Path]:
        """The files holding an OME image's planes, in the order TiffData first names them."""
        names: dict[str, None] = {}
        for entry in image.get("tiff_data") or ():
            name = entry.get("file_name")
            names.setdefault(name or master.name, None)
        return [master.parent / name for name in names] or [master]

    def open(self, source: Source, channel: str | int | None = None) -> Recording:
        if source.detail.get("layout") == "mm2":
            return MM2Recording(source, channel)
        return MMStackRecording(source, channel)
