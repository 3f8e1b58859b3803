"""Thorlabs ThorImageLS folders: ``Experiment.xml`` and one TIFF per plane.

ThorImageLS saves a capture as ``Chan{A,B,...}_{AAAA}_{BBBB}_{ZZZZ}_{TTTT}.tif`` (one
single-page OME-TIFF per channel, z plane and time point; the first two numbers are
the region and the sub-image, 0001 unless tiling) next to ``Experiment.xml``. The
folder is ONE recording, whichever of its files an input names: the channels come
from the ``Chan`` letters (named as ``Experiment.xml``'s ``Wavelength`` entries), the
pixel size, frame rate, z step, date and detector settings from ``Experiment.xml``.
Each file's own OME-XML holds the true ``DeltaT`` of its plane (the first file's
OME-XML, which describes the whole series, says ``TimeIncrement="0"``); it is read
with a few small reads when the frame's metadata is asked for.

A streamed capture (``Streaming enable="1"``) saves its frames in
``Image_0001_0001.raw`` (little-endian uint16 planes: per time point, per z plane and
its flyback planes with fast z, per channel), read straight from the file.
``ChanA_Preview.tif``, ``ChanB_Preview.tif``, ... are the images ThorImageLS shows while
it captures (the last frame: on a real capture they equal the stream's last planes),
not the recording. They belong to the folder and are never recordings; a folder that
holds only previews is an error naming the stream ``Experiment.xml`` describes.
"""

from __future__ import annotations

import logging
import re
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from toile.errors import InputError
from toile.formats import fields as F
from toile.formats.base import Candidates, Format, Recording, Source
from toile.formats.fields import finite_float as _float
from toile.formats.tiff.files import open_binary
from toile.formats.tiff.light import first_description
from toile.formats.tiff.planes import PlaneGrid, PlaneRef

logger = logging.getLogger(__name__)

#: A plane's file: channel letter, region, sub-image, z and t (1-based).
PLANE_NAME = re.compile(
    r"^Chan(?P<channel>[A-Z])_(?P<region>\d{4})_(?P<tile>\d{4})_(?P<z>\d{4})_(?P<t>\d{4})"
    r"\.tiff?$"
)
PREVIEW_NAME = re.compile(r"^Chan[A-Z]_Preview\.tiff?$")
#: The stream of a streamed capture (``Streaming enable="1"``).
RAW_NAME = re.compile(r"^Image_\d{4}_\d{4}\.raw$")
EXPERIMENT = "Experiment.xml"
_DELTA_T = re.compile(r"<(?:\w+:)?Plane\b[^>]*?\bDeltaT\s*=\s*\"([^\"]*)\"")


@dataclass(frozen=True)
class _Plane:
    channel: str
    region: int
    tile: int
    z: int
    t: int


def _parse_name(name: str) -> _Plane | None:
    match = PLANE_NAME.match(name)
    if match is None:
        return None
    return _Plane(
        match["channel"], int(match["region"]), int(match["tile"]), int(match["z"]), int(match["t"])
    )


def _experiment_path(directory: Path, names: list[str]) -> Path | None:
    for name in names:
        if name.lower() == EXPERIMENT.lower():
            return directory / name
    return None


def parse_experiment(path: Path) -> ET.Element:
    """The root of ``Experiment.xml`` (a ``ThorImageExperiment`` element)."""
    try:
        root = ET.parse(path).getroot()
    except OSError as exc:
        raise InputError(path, f"cannot be read ({exc.strerror or exc})") from None
    except ET.ParseError as exc:
        raise InputError(path, f"not a valid XML document ({exc})") from None
    if root.tag != "ThorImageExperiment":
        raise InputError(path, f"not a ThorImageLS experiment (root element <{root.tag}>)")
    return root


def is_experiment(path: Path) -> bool:
    """True when ``path`` starts like a ThorImageLS ``Experiment.xml`` (512 bytes read)."""
    try:
        with open_binary(path) as fh:
            return b"<ThorImageExperiment" in fh.read(512)
    except OSError:
        return False


def experiment_json(root: ET.Element) -> dict:
    """``Experiment.xml`` as plain JSON: element name -> attributes (a list when the
    element repeats, children under their own names)."""

    def convert(element: ET.Element) -> dict:
        out: dict = dict(element.attrib)
        for child in element:
            value = convert(child)
            if child.tag in out:
                previous = out[child.tag]
                out[child.tag] = (
                    [*previous, value] if isinstance(previous, list) else [previous, value]
                )
            else:
                out[child.tag] = value
        return out

    return {root.tag: convert(root)}


def _date(root: ET.Element, path: Path) -> str | None:
    """The capture's start: ``Date uTime`` (Unix seconds) as UTC, else ``Date date``
    (local time, ``MM/DD/YYYY HH:MM:SS``)."""
    element = root.find("Date")
    if element is None:
        return None
    utime = _float(element.get("uTime"))
    if utime is not None and utime > 0:
        return datetime.fromtimestamp(utime, UTC).isoformat()
    text = element.get("date", "")
    try:
        return datetime.strptime(text, "%m/%d/%Y %H:%M:%S").isoformat()
    except ValueError:
        if text:
            logger.warning("%s: Date %r not understood; date_acquired left out", path, text)
        return None


def experiment_fields(root: ET.Element, path: Path, letters: list[str], size_z: int) -> dict:
    """The normalised recording fields ``Experiment.xml`` states."""
    out: dict = {}
    name = root.find("Name")
    if name is not None and name.get("name"):
        out[F.IMAGE_NAME] = name.get("name")
    date = _date(root, path)
    if date is not None:
        out[F.DATE_ACQUIRED] = date
    lsm = root.find("LSM")
    if lsm is not None:
        size = _float(lsm.get("pixelSizeUM"))
        if size is not None and size > 0:
            out[F.SCALE_X] = out[F.SCALE_Y] = size
            out[F.SCALE_UNIT] = F.UM
        rate = _float(lsm.get("frameRate"))
        if rate is not None and rate > 0:
            out[F.FRAME_RATE_HZ] = rate
        dwell = _float(lsm.get("dwellTime"))
        if dwell is not None and dwell > 0:
            out[F.DWELL_TIME_US] = dwell
        for key, field_ in (("pixelX", F.PIXELS_PER_LINE), ("pixelY", F.LINES_PER_FRAME)):
            value = _float(lsm.get(key))
            if value is not None and value == int(value) and value > 0:
                out[field_] = int(value)
        if lsm.get("averageMode") == "1":
            count = _float(lsm.get("averageNum"))
            if count is not None and count >= 1:
                out["frames_averaged"] = int(count)
    zstage = root.find("ZStage")
    if zstage is not None and size_z > 1:
        step = _float(zstage.get("stepSizeUM"))
        if step is not None and step != 0:
            out[F.SCALE_Z] = abs(step)
            out[F.SCALE_UNIT] = F.UM
    magnification = root.find("Magnification")
    if magnification is not None:
        if magnification.get("name"):
            out[F.OBJECTIVE] = magnification.get("name")
        mag = _float(magnification.get("mag"))
        if mag is not None and mag > 0:
            out[F.OBJECTIVE_MAGNIFICATION] = mag
    pmt = root.find("PMT")
    if pmt is not None:
        gains = []
        for letter in letters:
            gain = _float(pmt.get(f"gain{letter}"))
            if gain is not None and pmt.get(f"enable{letter}", "1") != "0":
                gains.append({"channel": f"Chan{letter}", "value": gain})
        if gains:
            out[F.PMT_GAIN] = gains
    lasers = []
    for i, regulator in enumerate(
        e for e in root if e.tag.startswith("PowerRegulator") and e.get("enable") == "1"
    ):
        value = _float(regulator.get("start"))
        if value is not None:
            entry = {"laser": regulator.tag if i else "PowerRegulator", "value": value, "unit": "%"}
            stop = _float(regulator.get("stop"))
            if stop is not None and stop != value:
                entry["value_last_z"] = stop
            lasers.append(entry)
    for i, pockels in enumerate(root.findall("Pockels")):
        start, stop = _float(pockels.get("start")), _float(pockels.get("stop"))
        if start is not None and (start or stop):
            entry = {"laser": f"Pockels{i + 1}", "value": start, "unit": "%"}
            if stop is not None and stop != start:
                entry["value_last_z"] = stop
            lasers.append(entry)
    if lasers:
        out[F.LASER_POWER] = lasers
    return out


def _channel_names(root: ET.Element | None, letters: list[str]) -> list[str]:
    """``ChanA``, ``ChanB``, ...: the names ``Wavelength`` entries give the channels."""
    named = set()
    if root is not None:
        wavelengths = root.find("Wavelengths")
        if wavelengths is not None:
            named = {w.get("name") for w in wavelengths.findall("Wavelength")}
    names = []
    for letter in letters:
        name = f"Chan{letter}"
        if named and name not in named:
            logger.info("%s is not among Experiment.xml's Wavelength entries", name)
        names.append(name)
    return names


def delta_t(path: Path) -> float | None:
    """The DeltaT (s) of the plane a ThorImageLS TIFF holds, from its own OME-XML."""
    description = first_description(path)
    if not description:
        return None
    match = _DELTA_T.search(description)
    return _float(match[1]) if match else None


class ThorImageFormat(Format):
    """ThorImageLS capture folders (see the module docstring)."""

    name = F.FORMAT_THORIMAGE

    def claim(self, candidates: Candidates) -> list[Source]:
        sources: list[Source] = []
        for directory, _ in sorted(candidates.by_directory().items()):
            names = candidates.listdir(directory)
            experiment = _experiment_path(directory, names)
            if experiment is not None and not is_experiment(experiment):
                experiment = None
            planes = {n: p for n in names if (p := _parse_name(n)) is not None}
            previews = [directory / n for n in names if PREVIEW_NAME.match(n)]
            raws = [n for n in names if RAW_NAME.match(n)] if experiment is not None else []
            if not planes and not raws and not (experiment is not None and previews):
                continue
            sidecars = [experiment] if experiment is not None else []
            groups: dict[tuple[int, int], list[str]] = {}
            for name, plane in planes.items():
                groups.setdefault((plane.region, plane.tile), []).append(name)
            for series, ((region, tile), members) in enumerate(sorted(groups.items())):
                files = [directory / n for n in members]
                sources.append(
                    Source(
                        self.name,
                        files[0],
                        (*sidecars, *files, *previews),
                        series=series,
                        name=directory.name,
                        detail={
                            "experiment": str(experiment) if experiment else None,
                            "region": region,
                            "tile": tile,
                            "files": members,
                        },
                    )
                )
            for series, raw in enumerate(raws, start=len(groups)):
                sources.append(
                    Source(
                        self.name,
                        directory / raw,
                        (*sidecars, directory / raw, *previews),
                        series=series,
                        name=directory.name,
                        detail={"experiment": str(experiment), "raw": raw},
                    )
                )
            candidates.claim(directory / n for n in raws)
            if not groups and not raws:
                assert experiment is not None
                sources.append(
                    Source(
                        self.name,
                        experiment,
                        (experiment, *previews),
                        name=directory.name,
                        detail={"experiment": str(experiment), "files": []},
                    )
                )
            candidates.claim(sidecars)
            candidates.claim(previews)
            candidates.claim(directory / n for n in planes)
        return sources

    def open(self, source: Source, channel: str | int | None = None) -> Recording:
        if source.detail.get("raw"):
            return ThorImageRawRecording(source, channel)
        return ThorImageRecording(source, channel)


class ThorImageRecording(PlaneGrid):
    """One ThorImageLS capture: planes at ``Chan{X}_..._{Z}_{T}.tif``."""

    def __init__(self, source: Source, channel: str | int | None = None) -> None:
        experiment = source.detail.get("experiment")
        root = parse_experiment(Path(experiment)) if experiment else None
        members: list[str] = list(source.detail.get("files", []))
        directory = Path(experiment).parent if experiment else Path(source.path).parent
        if not members:
            raise InputError(source.path, _no_planes(root, directory))
        planes = {}
        for name in members:
            plane = _parse_name(name)
            if plane is not None:
                planes[(plane.t, plane.z, plane.channel)] = directory / name
        letters = sorted({c for _, _, c in planes})
        ts = sorted({t for t, _, _ in planes})
        zs = sorted({z for _, z, _ in planes})
        missing = [
            f"Chan{c}_{_members_prefix(members)}_{z:04d}_{t:04d}.tif"
            for t in ts
            for z in zs
            for c in letters
            if (t, z, c) not in planes
        ]
        if missing:
            raise InputError(
                directory / missing[0],
                f"missing: the capture has {len(ts)} time points, {len(zs)} planes and "
                f"channels {', '.join(letters)}"
                + (f" ({len(missing)} files missing)" if len(missing) > 1 else ""),
            )
        self._declared(root, experiment, len(ts), len(zs))
        refs = [[[PlaneRef(planes[(t, z, c)], 0) for c in letters] for z in zs] for t in ts]
        metadata: dict = {F.FORMAT: F.FORMAT_THORIMAGE}
        if root is not None:
            metadata.update(experiment_fields(root, Path(experiment), letters, len(zs)))
        names = _channel_names(root, letters)
        metadata[F.CHANNELS] = [{"name": n} for n in names]
        metadata[F.FILES] = len(members)
        self._refs = refs
        self._delta: dict[Path, float | None] = {}
        if len(ts) > 1:
            first, last = self._delta_t(refs[0][0][0].file), self._delta_t(refs[-1][0][0].file)
            if first is not None and last is not None and last > first:
                metadata[F.TIME_INCREMENT] = (last - first) / (len(ts) - 1)
                metadata[F.T_UNIT] = F.SECONDS
        super().__init__(
            source,
            metadata,
            len(ts),
            len(zs),
            len(letters),
            lambda t, z, c: refs[t][z][c],
            names,
            plane_metadata=self._plane_fields,
            channel=channel,
            vendor_metadata=experiment_json(root) if root is not None else None,
        )

    @staticmethod
    def _declared(
        root: ET.Element | None, experiment: str | None, size_t: int, size_z: int
    ) -> None:
        """Warn when the files found are fewer than ``Experiment.xml`` announces (a capture
        stopped early keeps the planes it saved)."""
        if root is None:
            return
        timelapse, zstage = root.find("Timelapse"), root.find("ZStage")
        want_t = _float(timelapse.get("timepoints")) if timelapse is not None else None
        want_z = _float(zstage.get("steps")) if zstage is not None else None
        if (want_t is not None and want_t != size_t) or (
            want_z is not None and size_z > 1 and want_z != size_z
        ):
            logger.warning(
                "%s: announces %s time points and %s planes, the folder holds %d and %d",
                experiment,
                None if want_t is None else int(want_t),
                None if want_z is None else int(want_z),
                size_t,
                size_z,
            )

    def _delta_t(self, file: Path) -> float | None:
        if file not in self._delta:
            self._delta[file] = delta_t(file)
        return self._delta[file]

    def _plane_fields(self, t: int, z: int, c: int) -> dict:
        value = self._delta_t(self._refs[t][z][c].file)
        return {} if value is None else {F.T: value}


def _members_prefix(members: list[str]) -> str:
    """The region and sub-image part (``0001_0001``) of a capture's file names."""
    plane = _parse_name(members[0])
    assert plane is not None
    return f"{plane.region:04d}_{plane.tile:04d}"


def _no_planes(root: ET.Element | None, directory: Path) -> str:
    """Why a folder with previews only has no recording to read."""
    streaming = root.find("Streaming") if root is not None else None
    if streaming is not None and streaming.get("enable") == "1":
        where = "its frames were saved to a raw stream (Image_0001_0001.raw), not found"
        return f"ThorImageLS streamed capture: {where}; ChanX_Preview.tif images are previews"
    return "no ChanX_..._ZZZZ_TTTT.tif planes: the ChanX_Preview.tif images are previews"


class ThorImageRawRecording(Recording):
    """A streamed ThorImageLS capture: ``Image_0001_0001.raw``, little-endian uint16
    planes, for each time point each z plane (fast z: then ``Streaming flybackFrames``
    flyback planes, left out), for each plane each channel (one per ``Wavelength``).

    The number of time points is what the file holds (a capture stopped early keeps the
    frames it streamed); a file that is not a whole number of them is an error."""

    def __init__(self, source: Source, channel: str | int | None = None) -> None:
        experiment = Path(source.detail["experiment"])
        root = parse_experiment(experiment)
        self.source = source
        self.vendor_metadata = experiment_json(root)
        path = Path(source.path)
        lsm, streaming = root.find("LSM"), root.find("Streaming")
        wavelengths = root.find("Wavelengths")
        width = _float(lsm.get("pixelX")) if lsm is not None else None
        height = _float(lsm.get("pixelY")) if lsm is not None else None
        if not width or not height or width != int(width) or height != int(height):
            raise InputError(experiment, "LSM pixelX / pixelY missing: the raw frames' size")
        self._height, self._width = int(height), int(width)
        names = [
            w.get("name") or f"Chan{chr(65 + i)}"
            for i, w in enumerate(
                wavelengths.findall("Wavelength") if wavelengths is not None else []
            )
        ]
        if not names:
            raise InputError(experiment, "no Wavelength entries: the raw stream's channels")
        zstage = root.find("ZStage")
        steps = _float(zstage.get("steps")) if zstage is not None else None
        fast_z = streaming is not None and streaming.get("zFastEnable") == "1"
        size_z = int(steps) if fast_z and steps and steps > 1 else 1
        flyback = (
            _float(streaming.get("flybackFrames")) if size_z > 1 and streaming is not None else 0
        )
        self._stored_z = size_z + int(flyback or 0)
        self._plane_bytes = self._height * self._width * 2
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise InputError(path, f"cannot be read ({exc.strerror or exc})") from None
        per_t = self._plane_bytes * len(names) * self._stored_z
        if size == 0 or size % per_t:
            raise InputError(
                path,
                f"holds {size} bytes, not a whole number of time points of {len(names)} "
                f"channel(s) x {self._stored_z} plane(s) of {self._width}x{self._height} "
                "uint16 (as Experiment.xml describes)",
            )
        size_t = size // per_t
        announced = _float(streaming.get("frames")) if streaming is not None else None
        if announced and size_z == 1 and announced != size_t:
            logger.warning(
                "%s: Experiment.xml announces %d frames, the stream holds %d",
                path,
                announced,
                size_t,
            )
        self._size_z = size_z
        if channel is None:
            self._channels = list(range(len(names)))
        else:
            self._channels = [_channel_index(path, channel, names)]
        self.channel_names = [names[c] for c in self._channels]
        self.n_frames = size_t * size_z
        self.dtype = np.dtype("uint16")
        hw = (self._height, self._width)
        self.frame_shape = hw if len(self._channels) == 1 else (len(self._channels), *hw)
        metadata: dict = {
            F.SOURCE: str(path),
            F.SOURCE_FILENAME: path.name,
            F.FORMAT: F.FORMAT_THORIMAGE,
        }
        metadata.update(experiment_fields(root, experiment, [n[-1] for n in names], size_z))
        rate = metadata.get(F.FRAME_RATE_HZ)
        if rate and lsm.get("averageMode") != "1":
            metadata[F.TIME_INCREMENT] = self._stored_z / rate
            metadata[F.T_UNIT] = F.SECONDS
        metadata[F.CHANNELS] = [{"name": names[c]} for c in self._channels]
        metadata.update(
            {
                F.FILES: 1,
                F.SIZE_X: self._width,
                F.SIZE_Y: self._height,
                F.SIZE_Z: size_z,
                F.SIZE_C: len(names),
                F.SIZE_T: size_t,
                F.DTYPE: "uint16",
                F.N_FRAMES: self.n_frames,
                F.SERIES: source.series,
            }
        )
        self.metadata = metadata
        self._n_channels = len(names)
        self._fh = None

    def read_frame(self, index: int, out: np.ndarray | None = None) -> np.ndarray:
        if not 0 <= index < self.n_frames:
            raise IndexError(f"frame {index} out of range (0..{self.n_frames - 1})")
        out = self.check_out(out)
        t, z = divmod(index, self._size_z)
        if self._fh is None:
            try:
                self._fh = open(self.source.path, "rb")  # noqa: SIM115 - closed by close()
            except OSError as exc:
                raise InputError(
                    self.source.path, f"cannot be read ({exc.strerror or exc})"
                ) from None
        planes = out.reshape(len(self._channels), self._height, self._width)
        for i, c in enumerate(self._channels):
            plane = (t * self._stored_z + z) * self._n_channels + c
            self._fh.seek(plane * self._plane_bytes)
            view = planes[i].reshape(-1).view(np.uint8)
            if self._fh.readinto(view) != self._plane_bytes:
                raise InputError(self.source.path, f"truncated file: frame {index} is cut short")
            if sys.byteorder != "little":
                planes[i].byteswap(inplace=True)
        return out

    def frame_metadata(self, index: int) -> dict:
        if not 0 <= index < self.n_frames:
            raise IndexError(f"frame {index} out of range (0..{self.n_frames - 1})")
        t, z = divmod(index, self._size_z)
        meta: dict = {F.INDEX: index, F.T_INDEX: t, F.Z_INDEX: z}
        if len(self._channels) == 1 and self._n_channels > 1:
            meta[F.C_INDEX] = self._channels[0]
        increment = self.metadata.get(F.TIME_INCREMENT)
        if increment is not None:
            meta[F.T] = t * increment
        return meta

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _channel_index(path: Path, channel: str | int, names: list[str]) -> int:
    if isinstance(channel, int) and 0 <= channel < len(names):
        return channel
    if isinstance(channel, str):
        folded = [n.casefold() for n in names]
        if channel.casefold() in folded:
            return folded.index(channel.casefold())
        if channel.isdigit() and int(channel) < len(names):
            return int(channel)
    raise InputError(
        path,
        f"no channel {channel!r}; channels are: {', '.join(names)} (or an index 0..{len(names) - 1})",
    )
