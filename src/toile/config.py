"""One typed, validated configuration for an export, built from CLI flags and/or YAML."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from toile.errors import ConfigError

#: Default maximum shard size in bytes (850 MB).
DEFAULT_SHARD_SIZE = 850_000_000
#: The Bluesky PDS blob limit, selected by ``--pds``.
PDS_SHARD_SIZE = 38_000_000

Encoding = Literal["npy", "atdata"]
OnError = Literal["fail", "skip"]
ENCODINGS: tuple[str, ...] = ("npy", "atdata")
ON_ERROR_CHOICES: tuple[str, ...] = ("fail", "skip")


@dataclass(frozen=True)
class FilenameSpec:
    """A ``parse`` template matched against each recording's name, with per-field transforms."""

    template: str
    transforms: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ExportConfig:
    """Everything ``export frames`` needs; build it with :func:`make_config`."""

    inputs: tuple[str, ...]
    output: Path
    stem: str
    shard_size: int
    to_uint8: bool = False
    uint8_range: str = "max"
    compressed: bool = False
    format: Encoding = "npy"
    channel: str | int | None = None
    workers: int = 1
    on_error: OnError = "fail"
    overwrite: bool = False
    resume: bool = False
    verbose: bool = False
    progress: bool | None = None
    filename_spec: FilenameSpec | None = None
    #: Directory that relative input patterns are resolved against.
    base_dir: Path = field(default_factory=Path.cwd)

    def with_changes(self, **changes: object) -> ExportConfig:
        return replace(self, **changes)


def resolve_shard_size(shard_size: int | None, pds: bool) -> int:
    """The shard cap: an explicit size wins; ``--pds`` gives 38 MB; else 850 MB."""
    if shard_size is not None:
        if pds and shard_size != PDS_SHARD_SIZE:
            raise ConfigError(
                f"--pds sets the shard size to {PDS_SHARD_SIZE} bytes but --shard-size/shard_size "
                f"asks for {shard_size}: give only one of them"
            )
        if shard_size <= 0:
            raise ConfigError(f"shard size must be a positive number of bytes, got {shard_size}")
        return shard_size
    return PDS_SHARD_SIZE if pds else DEFAULT_SHARD_SIZE


def parse_channel(value: str | int | None) -> str | int | None:
    """``--channel`` takes an index (``0``) or a channel name (``GCaMP``)."""
    if value is None or isinstance(value, int):
        return value
    text = str(value).strip()
    return int(text) if text.isdigit() else text


def make_config(
    inputs: list[str] | tuple[str, ...],
    output: str | Path,
    *,
    stem: str | None = None,
    shard_size: int | None = None,
    pds: bool = False,
    to_uint8: bool = False,
    uint8_range: str = "max",
    compressed: bool = False,
    format: str = "npy",
    channel: str | int | None = None,
    workers: int | None = None,
    on_error: str = "fail",
    overwrite: bool = False,
    resume: bool = False,
    verbose: bool = False,
    progress: bool | None = None,
    filename_spec: FilenameSpec | None = None,
    base_dir: str | Path | None = None,
) -> ExportConfig:
    """Validate the options once and return an :class:`ExportConfig`."""
    if not inputs:
        raise ConfigError("no inputs given")
    output = Path(output)
    if format not in ENCODINGS:
        raise ConfigError(f"format must be one of {', '.join(ENCODINGS)}, got {format!r}")
    if on_error not in ON_ERROR_CHOICES:
        raise ConfigError(f"on_error must be one of {', '.join(ON_ERROR_CHOICES)}, got {on_error!r}")
    if workers is None:
        workers = os.cpu_count() or 1
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    if overwrite and resume:
        raise ConfigError("--overwrite and --resume exclude each other")
    stem = stem if stem else output.resolve().name
    if not stem or "/" in stem or stem.startswith("."):
        raise ConfigError(f"invalid output stem {stem!r}")
    return ExportConfig(
        inputs=tuple(str(i) for i in inputs),
        output=output,
        stem=stem,
        shard_size=resolve_shard_size(shard_size, pds),
        to_uint8=to_uint8,
        uint8_range=uint8_range,
        compressed=compressed,
        format=format,  # type: ignore[arg-type]
        channel=parse_channel(channel),
        workers=workers,
        on_error=on_error,  # type: ignore[arg-type]
        overwrite=overwrite,
        resume=resume,
        verbose=verbose,
        progress=progress,
        filename_spec=filename_spec,
        base_dir=Path(base_dir) if base_dir is not None else Path.cwd(),
    )
