"""Every name toile puts on disk, made and parsed here and nowhere else.

A dataset directory holds ``{stem}-NNNNNN.tar`` (``.tar.gz`` when compressed)
shards and ``{stem}.manifest.json``; an export in progress writes into the hidden
``.{stem}.staging`` directory next to them, with its ``journal.jsonl``, and each
file is first written under a hidden temporary name. Samples are keyed
``sample-{recording:06d}-{frame}``. This module imports nothing heavy, so that the
read side (:mod:`toile.dataset`) can use it without the export machinery.
"""

from __future__ import annotations

import re

#: Suffix of a dataset's manifest file, and the version of its format.
MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_FORMAT = 1
#: The resume journal in the staging directory.
JOURNAL_NAME = "journal.jsonl"
#: Digits of a shard's index in its name.
SHARD_DIGITS = 6
#: Format of every sample key: ``sample-{recording:06d}-{frame}``, frame zero-padded.
KEY_PREFIX = "sample"
#: Minimum number of digits of the frame part of a key.
MIN_FRAME_DIGITS = 3

_SHARD = re.compile(r"^(?P<stem>.+)-(?P<index>\d{6})\.tar(?P<gz>\.gz)?$")
#: Characters a stem may not hold: stock WebDataset expands braces in a URL pattern,
#: splits URLs on ``::`` and whitespace, and parses ``?``, ``#`` and ``%`` as parts of
#: a URL; glob characters would make a shell or fsspec expand the name.
_STEM_FORBIDDEN = re.compile(r"[{}\[\]*?#%:,;\\\"'<>|\s\x00-\x1f\x7f]")


def manifest_name(stem: str) -> str:
    """``{stem}.manifest.json``."""
    return f"{stem}{MANIFEST_SUFFIX}"


def staging_name(stem: str) -> str:
    """The hidden directory an export writes into before it commits."""
    return f".{stem}.staging"


def shard_suffix(compressed: bool) -> str:
    return ".tar.gz" if compressed else ".tar"


def shard_name(stem: str, index: int, compressed: bool) -> str:
    """``{stem}-000000.tar`` (``.tar.gz`` when compressed)."""
    return f"{stem}-{index:0{SHARD_DIGITS}d}{shard_suffix(compressed)}"


def parse_shard_name(name: str) -> tuple[str, int, bool] | None:
    """``(stem, index, compressed)`` of a shard file name, or None for any other name."""
    match = _SHARD.match(name)
    if match is None:
        return None
    return match["stem"], int(match["index"]), match["gz"] is not None


def is_shard_of(name: str, stem: str) -> bool:
    """Whether ``name`` is a shard of the dataset named ``stem`` (either compression)."""
    parsed = parse_shard_name(name)
    return parsed is not None and parsed[0] == stem


def shard_url_pattern(stem: str, count: int, compressed: bool) -> str:
    """The WebDataset brace pattern naming ``count`` shards."""
    suffix = shard_suffix(compressed)
    if count <= 1:
        return f"{stem}-{0:0{SHARD_DIGITS}d}{suffix}"
    return f"{stem}-{{{0:0{SHARD_DIGITS}d}..{count - 1:0{SHARD_DIGITS}d}}}{suffix}"


def temporary_name(name: str, attempt: str = "") -> str:
    """The hidden name a file is written under before it is renamed to ``name``.

    ``attempt`` keeps concurrent attempts at the same shard (a retried or duplicated
    task) from writing into one file.
    """
    return f".{name}.{attempt}.tmp" if attempt else f".{name}.tmp"


def is_temporary(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


def stem_problem(stem: str) -> str | None:
    """Why ``stem`` cannot name a dataset, or None when it can.

    A stem names files inside the output directory and appears verbatim in the
    manifest's ``url_pattern``, so it must survive brace expansion and URL parsing
    unchanged: ``x{1..2}`` would make WebDataset look for ``x1-...`` and ``x2-...``.
    """
    if not stem:
        return "it is empty"
    if "/" in stem:
        return "it holds a '/'"
    if stem.startswith("."):
        return "it starts with '.'"
    bad = _STEM_FORBIDDEN.search(stem)
    if bad is not None:
        char = bad.group()
        shown = repr(char) if char.isprintable() and not char.isspace() else f"{ord(char):#04x}"
        return (
            f"it holds {shown}, which brace expansion or URL parsing would change in the "
            "shards' url_pattern"
        )
    return None


def frame_digits(n_frames: int) -> int:
    """Digits of the frame index so that keys of one recording sort in frame order."""
    return max(MIN_FRAME_DIGITS, len(str(max(n_frames - 1, 0))))


def sample_key(recording_index: int, frame_index: int, digits: int = MIN_FRAME_DIGITS) -> str:
    """The deterministic key of a frame; never contains a dot."""
    return f"{KEY_PREFIX}-{recording_index:06d}-{frame_index:0{digits}d}"
