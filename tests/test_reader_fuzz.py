"""Damaged files never crash the reader: only toile's own errors come out.

Hypothesis mutates the bytes of small valid TIFF files (bit flips, truncation,
random splices) and the OME-XML of a valid OME-TIFF (attributes deleted,
duplicated or altered, random characters), then resolves the file as an input,
opens it with :func:`toile.formats.open_source` and reads every frame. Any
exception other than a :class:`toile.errors.ToileError` fails the test. Each
example runs under a hard time limit so that a hang fails instead of blocking.
"""

from __future__ import annotations

import os
import re
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toile.errors import ToileError
from toile.formats import Source, open_source
from toile.formats import discover as resolve_inputs
from toile.synthetic import MovieSpec, generate_frames
from toile.writers import write_imagej_stack, write_ome_tiff, write_prairie_series

#: Seconds one example may take before it counts as a hang.
TIME_LIMIT = 5.0
FUZZ_SETTINGS = settings(
    max_examples=int(os.environ.get("TOILE_FUZZ_EXAMPLES", "60")),
    deadline=2000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Hang(Exception):
    """An example ran past the time limit."""


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    def alarm(signum: int, frame: object) -> None:
        raise Hang(f"reading took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _frames(n: int) -> list[np.ndarray]:
    return list(generate_frames(MovieSpec(frames=n, height=16, width=16, seed=11)))


def _valid_files() -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        ome_path = Path(tmp) / "valid.ome.tif"
        write_ome_tiff(ome_path, _frames(3))
        compressed = Path(tmp) / "zlib.ome.tif"
        write_ome_tiff(compressed, _frames(3), compression="zlib")
        imagej = Path(tmp) / "imagej.tif"
        write_imagej_stack(imagej, _frames(3))
        return {
            "valid.ome.tif": ome_path.read_bytes(),
            "zlib.ome.tif": compressed.read_bytes(),
            "imagej.tif": imagej.read_bytes(),
        }


VALID = _valid_files()


def _read_everything(path: Path) -> None:
    """Resolve, open and read every frame of ``path``; toile's errors are the allowed outcome."""
    with _time_limit(TIME_LIMIT):
        try:
            sources = resolve_inputs([str(path)], path.parent)
        except ToileError:
            # what discovery rejects, each TIFF format must still reject cleanly
            sources = [
                Source(fmt, path, (path,), 0, path.name) for fmt in ("ome-tiff", "imagej", "tiff")
            ]
        for source in sources:
            try:
                with open_source(source) as recording:
                    for _index, image, metadata in recording:
                        assert image.shape == tuple(recording.frame_shape)
                        assert isinstance(metadata, dict)
            except ToileError:
                pass


@contextmanager
def _scratch_file(name: str, data: bytes) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        yield path


def test_valid_files_read_cleanly():
    """The unmutated files read without any error (else the fuzzing proves nothing)."""
    for name, data in VALID.items():
        with _scratch_file(name, data) as path:
            source = resolve_inputs([str(path)], path.parent)[0]
            with open_source(source) as recording:
                assert len([frame for frame in recording]) == 3


# --------------------------------------------------------------------------------------
# Byte mutations


@st.composite
def _byte_mutation(draw: st.DrawFn) -> tuple[str, bytes]:
    name = draw(st.sampled_from(sorted(VALID)))
    data = bytearray(VALID[name])
    n = len(data)
    # Headers and IFDs sit at the start and (for tifffile) right after each page: favour the
    # first kilobyte and the last kilobyte, where a flip breaks structure rather than pixels.
    position = st.one_of(
        st.integers(0, min(n - 1, 1023)),
        st.integers(max(0, n - 1024), n - 1),
        st.integers(0, n - 1),
    )
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "byte", "truncate", "splice", "delete", "zero"]))
        if not data:
            break
        n = len(data)
        at = min(draw(position), n - 1)
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte":
            data[at] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del data[at:]
        elif kind == "splice":
            length = draw(st.integers(1, 64))
            data[at : at + length] = draw(st.binary(min_size=0, max_size=64))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 256))]
        else:
            length = draw(st.integers(1, 16))
            data[at : at + length] = bytes(len(data[at : at + length]))
    return name, bytes(data)


@FUZZ_SETTINGS
@given(_byte_mutation())
def test_mutated_bytes_raise_only_toile_errors(mutation):
    name, data = mutation
    with _scratch_file(name, data) as path:
        _read_everything(path)


# --------------------------------------------------------------------------------------
# A damaged file inside a Prairie View series (read without tifffile when it looks plain)


def _prairie_series() -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_prairie_series(Path(tmp) / "TSeries-1", _frames(3), n_channels=1)
        return {path.name: path.read_bytes() for path in paths}


PRAIRIE = _prairie_series()
PRAIRIE_MIDDLE = sorted(PRAIRIE)[1]


@st.composite
def _prairie_mutation(draw: st.DrawFn) -> bytes:
    data = bytearray(PRAIRIE[PRAIRIE_MIDDLE])
    # The header and the first IFD are in the first few hundred bytes.
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, min(len(data) - 1, 511)))
        kind = draw(st.sampled_from(["flip", "byte", "truncate"]))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte":
            data[at] = draw(st.integers(0, 255))
        else:
            del data[draw(st.integers(0, len(data) - 1)) :]
        if not data:
            break
    return bytes(data)


@FUZZ_SETTINGS
@given(_prairie_mutation())
def test_mutated_prairie_file_raises_only_toile_errors(data):
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "TSeries-1"
        directory.mkdir()
        for name, content in PRAIRIE.items():
            (directory / name).write_bytes(data if name == PRAIRIE_MIDDLE else content)
        _read_everything(directory)


# --------------------------------------------------------------------------------------
# OME-XML mutations

_ATTRIBUTE = re.compile(r'\s([A-Za-z:]+)="([^"]*)"')
_INTERESTING_VALUES = [
    "",
    "0",
    "-1",
    "1",
    "2",
    "3",
    "900",
    "4294967296",
    "99999999999999999999",
    "1e309",
    "NaN",
    "-inf",
    "abc",
    "XYZCT",
    "XYCTZ",
    "uint64",
    "double",
    "bit",
    "true",
    "valid.ome.tif",
    "other.ome.tif",
    "Image:1",
    "Pixels:0",
    "urn:uuid:00000000-0000-0000-0000-000000000000",
    "µm",
    "&amp;",
]


def _valid_ome_xml() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "valid.ome.tif"
        path.write_bytes(VALID["valid.ome.tif"])
        with tifffile.TiffFile(path) as tif:
            return tif.pages.first.description


VALID_XML = _valid_ome_xml()


@st.composite
def _xml_mutation(draw: st.DrawFn) -> str:
    text = VALID_XML
    for _ in range(draw(st.integers(1, 3))):
        attributes = list(_ATTRIBUTE.finditer(text))
        kind = draw(st.sampled_from(["delete", "duplicate", "alter", "insert", "cut", "element"]))
        if kind in ("delete", "duplicate", "alter") and attributes:
            match = draw(st.sampled_from(attributes))
            start, end = match.span()
            if kind == "delete":
                text = text[:start] + text[end:]
            elif kind == "duplicate":
                text = text[:end] + match.group(0) + text[end:]
            else:
                value = draw(
                    st.one_of(
                        st.sampled_from(_INTERESTING_VALUES),
                        st.text(max_size=12).filter(lambda v: '"' not in v),
                    )
                )
                replacement = f' {match.group(1)}="{value}"'
                text = text[:start] + replacement + text[end:]
        elif kind == "insert":
            at = draw(st.integers(0, len(text)))
            text = text[:at] + draw(st.text(min_size=1, max_size=8)) + text[at:]
        elif kind == "cut":
            at = draw(st.integers(0, len(text)))
            text = text[:at] + text[at + draw(st.integers(1, 200)) :]
        else:
            # Drop or repeat one whole element (a Plane, TiffData, Channel...).
            elements = list(re.finditer(r"<(Plane|TiffData|Channel|UUID)\b[^>]*/?>", text))
            if elements:
                match = draw(st.sampled_from(elements))
                start, end = match.span()
                repeat = draw(st.booleans())
                text = (
                    text[:end] + match.group(0) + text[end:]
                    if repeat
                    else text[:start] + text[end:]
                )
    return text


@FUZZ_SETTINGS
@given(_xml_mutation())
def test_mutated_ome_xml_raises_only_toile_errors(xml):
    with _scratch_file("valid.ome.tif", VALID["valid.ome.tif"]) as path:
        tifffile.tiffcomment(path, comment=xml.encode("utf-8", "surrogatepass"))
        _read_everything(path)


@pytest.mark.parametrize(
    "old, new",
    [
        ('SizeT="3"', 'SizeT="900"'),
        ('SizeX="16"', 'SizeX="32"'),
        ('Type="uint16"', 'Type="uint8"'),
        ('DimensionOrder="XYCZT"', 'DimensionOrder="XYZCT" DimensionOrder="XYCZT"'),
        ('IFD="2"', 'IFD="7"'),
    ],
)
def test_contradicting_ome_xml_examples(old, new):
    """A few fixed edits worth keeping whatever Hypothesis draws."""
    assert old in VALID_XML
    with _scratch_file("valid.ome.tif", VALID["valid.ome.tif"]) as path:
        tifffile.tiffcomment(path, comment=VALID_XML.replace(old, new).encode())
        _read_everything(path)
