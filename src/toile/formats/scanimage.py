"""ScanImage (Vidrio Technologies) recordings: the 3.x ``state.*`` layout and the 2015+
``SI.*`` layout, one file or an acquisition split over files.

ScanImage writes one page per saved channel per frame, the channels interleaved; with a
stack (slow or fast z) frames form slices and volumes. A toile frame is one (t, z) plane
with its saved channels.

- ScanImage 2016 and later: a BigTIFF whose header is followed by ScanImage's block (magic
  0x07030301, version 3 or 4) holding the non-varying ``SI.*`` frame data and the ROI
  groups JSON (read with ``tifffile.read_scanimage_metadata``); each page's
  ImageDescription holds the values that vary (``frameNumbers``, ``frameTimestamps_sec``,
  ``acqTriggerTimestamps_sec``, ``epoch``). ScanImage 2015 writes classic TIFFs whose
  every ImageDescription holds both.
- ScanImage 3.x: every page's ImageDescription holds the ``state.*`` header (lines ending
  in a carriage return); its resolution tags are writer defaults (72 dpi), not a pixel
  size.

An acquisition split over files (``name_00001_00001.tif``, ``name_00001_00002.tif``, ...)
is one recording whatever file the user names; a missing file or frame numbers that do
not continue from file to file is an error naming the file.
"""

from __future__ import annotations

import logging
import math
import re
import struct
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import tifffile
from tifffile.tifffile import matlabstr2py

from toile.errors import InputError
from toile.formats import fields as F
from toile.formats.base import Candidates, Format, Recording, Source
from toile.formats.tiff.files import open_binary, open_tiff
from toile.formats.tiff.ifd import IfdReader
from toile.formats.tiff.planes import PlaneGrid, PlaneRef, TiffPlanes

logger = logging.getLogger(__name__)

#: ScanImage's header block after the BigTIFF header (2016 and later).
MAGIC = 0x07030301
#: ``{base}_{acquisition}_{file counter}.tif``, as ScanImage names the files it logs.
SPLIT_NAME = re.compile(r"^(?P<base>.+)_(?P<acq>\d{5})_(?P<file>\d{5})\.tiff?$", re.IGNORECASE)
_DESCRIPTION = 270
_TIFF_SUFFIXES = (".tif", ".tiff")


def scanimage_layout(path: Path, description: str | None) -> str | None:
    """``"si"`` (2015+), ``"state"`` (3.x) or None: which ScanImage layout ``path`` has,
    from its first ImageDescription, or without one the ScanImage block after the BigTIFF
    header."""
    if description:
        if description.startswith("state."):
            return "state"
        head = description.lstrip()[:200]
        if head.startswith(("frameNumbers", "SI.", "scanimage.SI")):
            return "si"
        return None
    try:
        with open_binary(path) as fh:
            head = fh.read(24)
    except OSError:
        return None
    if len(head) == 24 and head[:4] == b"II+\0" and struct.unpack_from("<I", head, 16)[0] == MAGIC:
        return "si"
    return None


def _jsonable(value: Any) -> Any:
    """MATLAB values as JSON values: a non-finite number becomes its MATLAB spelling."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Inf" if value > 0 else "-Inf")
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _flat(value: Any) -> list:
    """A MATLAB scalar, row or column vector as a flat list."""
    if isinstance(value, list):
        out: list = []
        for item in value:
            out.extend(_flat(item))
        return out
    return [value]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _positive(value: Any) -> float | None:
    number = _number(value)
    return number if number is not None and number > 0 else None


def _epoch_iso(epoch: Any) -> str | None:
    """ScanImage's ``epoch = [Y M D h m s.fff]`` as ISO 8601 (None if it is not one)."""
    values = _flat(epoch)
    if len(values) != 6 or not all(_number(v) is not None for v in values):
        return None
    year, month, day, hour, minute = (int(v) for v in values[:5])
    seconds = float(values[5])
    whole = int(seconds)
    micro = round((seconds - whole) * 1e6)
    try:
        stamp = datetime(year, month, day, hour, minute, whole, min(micro, 999999))
    except ValueError:
        return None
    return stamp.isoformat(timespec="milliseconds" if micro else "seconds")


def _trigger_iso(text: Any) -> str | None:
    """ScanImage 3.x's ``triggerTimeString`` ('3/21/2011 14:05:53.123') as ISO 8601."""
    if not isinstance(text, str):
        return None
    for fmt, spec in (("%m/%d/%Y %H:%M:%S.%f", "milliseconds"), ("%m/%d/%Y %H:%M:%S", "seconds")):
        try:
            return datetime.strptime(text.strip(), fmt).isoformat(timespec=spec)
        except ValueError:
            continue
    return None


@dataclass
class _Layout:
    """Where a recording's planes are among the pages of its files, in page order:
    volumes, then slices, then the frames of a slice, then channels."""

    channels: list[int]  # the saved channels' numbers (1-based)
    size_z: int
    frames_per_slice: int
    pages_per_volume: int

    def page(self, t: int, z: int, c: int) -> int:
        volume, f = divmod(t, self.frames_per_slice)
        n_c = len(self.channels)
        return volume * self.pages_per_volume + (z * self.frames_per_slice + f) * n_c + c


class _Files:
    """The TIFF files of a recording, opened one at a time with the raw IFD reader: their
    page counts, and any page's ImageDescription."""

    def __init__(self, files: list[Path]) -> None:
        self.files = files
        self.counts: list[int] = []
        self._open: tuple[Path, Any, IfdReader] | None = None
        self.starts: list[int] = []
        total = 0
        for path in files:
            n = self._count(path)
            self.counts.append(n)
            self.starts.append(total)
            total += n
        self.total = total
        self.bigtiff = self._reader(files[0]).bigtiff

    def _reader(self, path: Path) -> IfdReader:
        if self._open is not None and self._open[0] == path:
            return self._open[2]
        self.close()
        try:
            fh = open_binary(path)
        except FileNotFoundError:
            raise InputError(path, "file not found") from None
        except OSError as exc:
            raise InputError(path, f"cannot read file: {exc.strerror or exc}") from exc
        reader = IfdReader.open(fh)
        if reader is None:
            fh.close()
            raise InputError(path, "not a TIFF file")
        self._open = (path, fh, reader)
        return reader

    def _count(self, path: Path) -> int:
        reader = self._reader(path)
        n = 0
        while reader.offset(n) is not None:
            n += 1
        if n == 0:
            raise InputError(path, "TIFF file holds no image")
        return n

    def locate(self, page: int) -> tuple[Path, int]:
        """The file and page within it of page ``page`` of the whole recording."""
        low, high = 0, len(self.starts) - 1
        while low < high:
            mid = (low + high + 1) // 2
            if self.starts[mid] <= page:
                low = mid
            else:
                high = mid - 1
        return self.files[low], page - self.starts[low]

    def description(self, page: int) -> str | None:
        path, index = self.locate(page)
        reader = self._reader(path)
        offset = reader.offset(index)
        entries = None if offset is None else reader.entries(offset)
        entry = None if entries is None else entries.get(_DESCRIPTION)
        return None if entry is None else reader.text(entry)

    def close(self) -> None:
        if self._open is not None:
            self._open[1].close()
            self._open = None


def _frame_values(description: str | None) -> dict:
    """The per-frame values of a 2015+ page's ImageDescription."""
    if not description:
        return {}
    try:
        values = matlabstr2py(description)
    except Exception:  # noqa: BLE001 - a damaged description only loses its values
        return {}
    return values if isinstance(values, dict) else {}


def _varying(description: str | None) -> str | None:
    """The per-frame part of a description: ScanImage 2015 follows it with the whole
    header, which need not be parsed again for every frame."""
    if description is None:
        return None
    for marker in ("\nscanimage.SI.", "\nSI."):
        at = description.find(marker)
        if at >= 0:
            return description[: at + 1]
    return description


def _si_key(key: str) -> str:
    """ScanImage 2015's ``scanimage.SI.`` prefix spelled as 2016's ``SI.``."""
    return "SI." + key[len("scanimage.SI.") :] if key.startswith("scanimage.SI.") else key


class _ClassicPlanes(TiffPlanes):
    """Planes of classic (non-BigTIFF) ScanImage files. tifffile reads their pages as
    "virtual frames" laid out like page 0 and, when the file ends right after the last
    page, leaves that page out; toile counts pages along the chain of IFDs itself, so
    tifffile's page count is not checked against that chain here."""

    def tiff(self, file: Path) -> tifffile.TiffFile:
        handle = self._handle(Path(file))
        if handle.tif is None:
            handle.tif = open_tiff(handle.path, check=False)
        return handle.tif


class ScanImageRecording(PlaneGrid):
    """A ScanImage recording; per-frame times and frame numbers are read from each frame's
    first page as the frame's metadata is asked for."""

    def __init__(self, source: Source, channel: str | int | None = None) -> None:
        tiffs = [p for p in source.files if p.suffix.lower() in _TIFF_SUFFIXES] or [source.path]
        self._files = _Files(tiffs)
        try:
            self._setup(source, channel)
        except BaseException:
            self._files.close()
            raise

    def _setup(self, source: Source, channel: str | int | None) -> None:
        files = self._files
        first_description = files.description(0) or ""
        layout_kind = source.detail.get("layout") or scanimage_layout(
            source.path, first_description
        )
        if layout_kind == "state":
            header = _frame_values(first_description)
            layout, metadata, names = self._state_layout(source.path, header)
            vendor = {"state": _jsonable(header)}
        else:
            header, vendor = self._si_header(source.path, first_description)
            layout, metadata, names = self._si_layout(source.path, header)
        self._layout = layout
        self._timestamps = layout_kind != "state"
        n_c = len(layout.channels)
        size_t = (files.total // layout.pages_per_volume) * layout.frames_per_slice
        if size_t == 0:
            raise InputError(
                source.path,
                f"holds {files.total} pages, fewer than one volume of ScanImage frames "
                f"({layout.pages_per_volume} pages)",
            )
        left = files.total % layout.pages_per_volume
        if left:
            logger.warning(
                "%s: the last %d pages do not make a whole volume (%d pages) and are left out",
                files.files[-1],
                left,
                layout.pages_per_volume,
            )
        if len(files.files) > 1:
            self._check_frame_numbers(n_c)
        metadata["format"] = F.FORMAT_SCANIMAGE
        metadata["files"] = len(files.files)
        self._t0: float | None = None
        super().__init__(
            source,
            metadata,
            size_t,
            layout.size_z,
            n_c,
            self._plane,
            names,
            plane_metadata=self._plane_values if self._timestamps else None,
            channel=channel,
            vendor_metadata=vendor,
            planes=TiffPlanes(2) if files.bigtiff else _ClassicPlanes(2),
        )

    # -- headers ---------------------------------------------------------------------

    def _si_header(self, path: Path, description: str) -> tuple[dict, dict]:
        """The non-varying ``SI.*`` header: from ScanImage's block after the BigTIFF header
        (2016+), else from the first ImageDescription (2015)."""
        with open_binary(path) as fh:
            try:
                frame_data, roi_data, version = tifffile.read_scanimage_metadata(fh)
            except ValueError:
                frame_data, roi_data, version = None, {}, None
        if frame_data is None:
            values = _frame_values(description)
            frame_data = {
                _si_key(k): v for k, v in values.items() if k.startswith(("SI.", "scanimage.SI."))
            }
        if not any(k.startswith("SI.") for k in frame_data):
            raise InputError(path, "ScanImage file without its SI header")
        vendor: dict = {"FrameData": _jsonable(frame_data)}
        if version is not None:
            vendor["version"] = version
        vendor.update(_jsonable(roi_data))
        return frame_data, vendor

    def _si_layout(self, path: Path, h: dict) -> tuple[_Layout, dict, list[str]]:
        saved = [int(c) for c in _flat(h.get("SI.hChannels.channelSave", 1)) if _number(c)]
        if not saved:
            raise InputError(path, "SI.hChannels.channelSave names no saved channel")
        all_names = _flat(h.get("SI.hChannels.channelName", []))
        names = [
            str(all_names[c - 1]) if 0 < c <= len(all_names) else f"Channel {c}" for c in saved
        ]
        n_c = len(saved)
        stack_enable = h.get("SI.hStackManager.enable")
        fast = bool(h.get("SI.hFastZ.enable")) or h.get("SI.hStackManager.stackMode") == "fast"
        slices = h.get("SI.hStackManager.actualNumSlices", h.get("SI.hStackManager.numSlices", 1))
        slices = int(slices) if _number(slices) and slices >= 1 else 1
        if stack_enable is False or (stack_enable is None and not fast and slices <= 1):
            slices = 1
        average = _positive(h.get("SI.hScan2D.logAverageFactor")) or 1.0
        per_slice = 1
        if slices > 1 and not fast:
            fps = _positive(h.get("SI.hStackManager.framesPerSlice")) or 1.0
            per_slice = max(1, int(fps // average)) if fps % average == 0 else int(fps)
        flyback = 0
        if fast and slices > 1 and h.get("SI.hFastZ.discardFlybackFrames") is False:
            flyback = int(_positive(h.get("SI.hFastZ.numDiscardFlybackFrames")) or 0)
        layout = _Layout(saved, slices, per_slice, (slices * per_slice + flyback) * n_c)

        meta: dict = {F.SCALE_UNIT: F.UM, F.T_UNIT: F.SECONDS}
        rate = _positive(h.get("SI.hRoiManager.scanFrameRate"))
        period = _positive(h.get("SI.hRoiManager.scanFramePeriod"))
        if period is None and rate is not None:
            period = 1.0 / rate
        if rate is not None:
            meta[F.FRAME_RATE_HZ] = rate
        if slices == 1 or per_slice > 1:
            if period is not None:
                meta[F.TIME_INCREMENT] = period * average
        elif fast:
            volume_rate = _positive(h.get("SI.hRoiManager.scanVolumeRate"))
            if volume_rate is not None:
                meta[F.TIME_INCREMENT] = 1.0 / volume_rate
        zoom = _positive(h.get("SI.hRoiManager.scanZoomFactor"))
        if zoom is not None:
            meta[F.ZOOM] = zoom
        lines = _positive(h.get("SI.hRoiManager.linesPerFrame"))
        pixels = _positive(h.get("SI.hRoiManager.pixelsPerLine"))
        if lines is not None:
            meta[F.LINES_PER_FRAME] = int(lines)
        if pixels is not None:
            meta[F.PIXELS_PER_LINE] = int(pixels)
        dwell = _positive(h.get("SI.hScan2D.scanPixelTimeMean"))
        if dwell is not None:
            meta[F.DWELL_TIME_US] = dwell * 1e6
        fov = h.get("SI.hRoiManager.imagingFovUm")
        if not h.get("SI.hRoiManager.mroiEnable") and lines and pixels:
            corners = fov if isinstance(fov, list) and len(fov) == 4 else None
            if corners and all(isinstance(p, list) and len(p) == 2 for p in corners):
                xs = [_number(p[0]) for p in corners]
                ys = [_number(p[1]) for p in corners]
                if None not in xs and None not in ys:
                    width, height = max(xs) - min(xs), max(ys) - min(ys)  # type: ignore[type-var, operator]
                    if width > 0 and height > 0:
                        meta[F.SCALE_X] = width / pixels
                        meta[F.SCALE_Y] = height / lines
        if slices > 1:
            step = _positive(h.get("SI.hStackManager.actualStackZStepSize"))
            step = step or _positive(h.get("SI.hStackManager.stackZStepSize"))
            if step is not None:
                meta[F.SCALE_Z] = step
        powers = [_number(p) for p in _flat(h.get("SI.hBeams.powers", []))]
        beams = _flat(h.get("SI.hBeams.displayNames", h.get("SI.hBeams.names", [])))
        if powers and None not in powers:
            meta[F.LASER_POWER] = [
                {
                    "laser": str(beams[i]) if i < len(beams) else None,
                    "value": value,
                    "unit": "%",
                }
                for i, value in enumerate(powers)
            ]
        gains = [_number(g) for g in _flat(h.get("SI.hPmts.gains", []))]
        pmt = [
            {"channel": name, "value": gains[c - 1]}
            for c, name in zip(saved, names, strict=True)
            if c <= len(gains) and gains[c - 1] is not None
        ]
        if pmt:
            meta[F.PMT_GAIN] = pmt
        adc = _flat(h.get("SI.hChannels.channelAdcResolution", []))
        bits = {_number(adc[c - 1]) if c <= len(adc) else None for c in saved}
        depth = bits.pop() if len(bits) == 1 else None
        if depth is not None:
            meta[F.BIT_DEPTH] = int(depth)
        meta[F.CHANNELS] = [{"name": name} for name in names]
        date = _epoch_iso(_frame_values(self._files.description(0)).get("epoch"))
        if date is not None:
            meta[F.DATE_ACQUIRED] = date
        return layout, meta, names

    def _state_layout(self, path: Path, h: dict) -> tuple[_Layout, dict, list[str]]:
        saved = [c for c in range(1, 17) if h.get(f"state.acq.savingChannel{c}") == 1]
        stated = h.get("state.acq.numberOfChannelsSave")
        if not saved or (_number(stated) is not None and int(stated) != len(saved)):
            raise InputError(
                path,
                f"state.acq.numberOfChannelsSave={stated} does not match the saved channels "
                f"{saved} (state.acq.savingChannelN)",
            )
        names = [f"Channel {c}" for c in saved]
        slices = int(_positive(h.get("state.acq.numberOfZSlices")) or 1)
        frames = int(_positive(h.get("state.acq.numberOfFrames")) or 1)
        averaging = h.get("state.acq.averaging") == 1
        per_slice = 1 if averaging else frames
        n_c = len(saved)
        if slices == 1:
            layout = _Layout(saved, 1, 1, n_c)
        else:
            layout = _Layout(saved, slices, per_slice, slices * per_slice * n_c)
        meta: dict = {F.SCALE_UNIT: F.UM, F.T_UNIT: F.SECONDS}
        rate = _positive(h.get("state.acq.frameRate"))
        if rate is not None:
            meta[F.FRAME_RATE_HZ] = rate
            if not averaging and (slices == 1 or per_slice > 1):
                meta[F.TIME_INCREMENT] = 1.0 / rate
        for key, field, kind in (
            ("state.acq.zoomFactor", F.ZOOM, float),
            ("state.acq.linesPerFrame", F.LINES_PER_FRAME, int),
            ("state.acq.pixelsPerLine", F.PIXELS_PER_LINE, int),
        ):
            value = _positive(h.get(key))
            if value is not None:
                meta[field] = kind(value)
        dwell = _positive(h.get("state.acq.pixelTime"))
        if dwell is not None:
            meta[F.DWELL_TIME_US] = dwell * 1e6
        if slices > 1:
            step = _positive(h.get("state.acq.zStepSize"))
            if step is not None:
                meta[F.SCALE_Z] = step
        meta[F.CHANNELS] = [{"name": name} for name in names]
        date = _trigger_iso(h.get("state.internal.triggerTimeString"))
        if date is not None:
            meta[F.DATE_ACQUIRED] = date
        return layout, meta, names

    # -- planes ----------------------------------------------------------------------

    def _plane(self, t: int, z: int, c: int) -> PlaneRef:
        path, page = self._files.locate(self._layout.page(t, z, c))
        return PlaneRef(path, page)

    def _plane_values(self, t: int, z: int, c: int) -> dict:
        values = _frame_values(_varying(self._files.description(self._layout.page(t, z, 0))))
        out: dict = {}
        stamp = _number(values.get("frameTimestamps_sec"))
        if stamp is not None:
            if self._t0 is None:
                first = _frame_values(self._files.description(0))
                self._t0 = _number(first.get("frameTimestamps_sec"))
            if self._t0 is not None:
                out[F.T] = stamp - self._t0
            out[F.TIMESTAMP_S] = stamp
        number = values.get("frameNumbers")
        if isinstance(number, int) and not isinstance(number, bool):
            out[F.FRAME_NUMBER] = number
        trigger = _number(values.get("acqTriggerTimestamps_sec"))
        if trigger is not None:
            out["acq_trigger_timestamp_s"] = trigger
        return out

    def _check_frame_numbers(self, n_c: int) -> None:
        """Each file's first frame number continues the previous file's."""
        files = self._files
        first = _frame_values(files.description(0)).get("frameNumbers")
        if not isinstance(first, int):
            return
        for path, start in zip(files.files[1:], files.starts[1:], strict=True):
            got = _frame_values(files.description(start)).get("frameNumbers")
            expected = first + start // n_c
            if isinstance(got, int) and got != expected:
                raise InputError(
                    path,
                    f"ScanImage frame numbers start at {got}, expected {expected} after the "
                    "previous files of the acquisition: a file is missing or does not belong",
                )

    def close(self) -> None:
        super().close()
        self._files.close()


class ScanImageFormat(Format):
    """ScanImage TIFFs, alone or as the files of one split acquisition."""

    name = F.FORMAT_SCANIMAGE

    def claim(self, candidates: Candidates) -> list[Source]:
        sources: list[Source] = []
        taken: set[Path] = set()
        for path in candidates:
            if path in taken or path.suffix.lower() not in _TIFF_SUFFIXES:
                continue
            layout = scanimage_layout(path, candidates.description(path))
            if layout is None:
                continue
            files = self._acquisition(path, candidates)
            taken.update(files)
            sources.append(
                Source(
                    self.name,
                    files[0],
                    tuple(files),
                    name=files[0].name,
                    detail={"layout": layout},
                )
            )
        candidates.claim(taken)
        return sources

    @staticmethod
    def _acquisition(path: Path, candidates: Candidates) -> list[Path]:
        """The files of ``path``'s acquisition in logging order (file counter 1, 2, ...);
        a gap in the counters is an error naming the missing file."""
        match = SPLIT_NAME.match(path.name)
        if match is None:
            return [path]
        base, acq = match["base"], match["acq"]
        counters: dict[int, Path] = {}
        for name in candidates.listdir(path.parent):
            other = SPLIT_NAME.match(name)
            if other and other["base"] == base and other["acq"] == acq:
                counters[int(other["file"])] = path.parent / name
        numbers = sorted(counters)
        expected = list(range(numbers[0], numbers[0] + len(numbers)))
        if numbers != expected:
            missing = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
            raise InputError(
                path.parent / f"{base}_{acq}_{missing[0]:05d}{path.suffix}",
                f"file of the ScanImage acquisition {base}_{acq} is missing",
            )
        if numbers[0] != 1:
            logger.warning(
                "%s: the acquisition's files start at counter %05d, not 00001",
                counters[numbers[0]],
                numbers[0],
            )
        return [counters[n] for n in numbers]

    def open(self, source: Source, channel: str | int | None = None) -> Recording:
        return ScanImageRecording(source, channel)
