"""One typed, validated configuration for an export, built from CLI flags and/or YAML."""

from __future__ import annotations

import decimal
import difflib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from toile.errors import ConfigError, ConfigFileError

if TYPE_CHECKING:
    import yaml

#: Default maximum shard size in bytes (850 MB).
DEFAULT_SHARD_SIZE = 850_000_000
#: The Bluesky PDS blob limit, selected by ``--pds``.
PDS_SHARD_SIZE = 38_000_000

Encoding = Literal["npy", "atdata"]
OnError = Literal["fail", "skip"]
ENCODINGS: tuple[str, ...] = ("npy", "atdata")
ON_ERROR_CHOICES: tuple[str, ...] = ("fail", "skip")
#: Executors an export can run on (see toile.executors; kept here so that the CLI's
#: help does not import them).
EXECUTOR_CHOICES: tuple[str, ...] = ("inline", "processes", "dask")
#: Address schemes of a Dask scheduler.
_SCHEDULER_SCHEMES = ("tcp://", "tls://", "inproc://", "ucx://", "ws://", "wss://")


@dataclass(frozen=True)
class FilenameSpec:
    """A ``parse`` template matched against each recording's name, with per-field transforms."""

    template: str
    transforms: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ExportConfig:
    """Everything ``export frames`` needs; build it with :func:`make_config`."""

    inputs: tuple[str, ...]
    #: A directory, or a URL such as ``s3://bucket/prefix/dataset`` (kept as a string).
    output: Path | str
    stem: str
    shard_size: int
    to_uint8: bool = False
    uint8_range: str = "max"
    compressed: bool = False
    format: Encoding = "npy"
    channel: str | int | None = None
    #: Apply a file's own pixel calibration (ImageJ's ``c0 + c1 * raw``): frames get the
    #: calibrated pixel type (int16 for ImageJ's signed 16-bit images, else float32).
    calibrated: bool = False
    #: Worker count; None chooses it from the plan (shards, bytes, cores).
    workers: int | None = 1
    on_error: OnError = "fail"
    overwrite: bool = False
    resume: bool = False
    verbose: bool = False
    progress: bool | None = None
    filename_spec: FilenameSpec | None = None
    #: ``--bin N``: N x N spatial binning of every frame before encoding (None: off).
    bin_factor: int | None = None
    #: Directory that relative input patterns are resolved against.
    base_dir: Path = field(default_factory=Path.cwd)
    #: inline, processes or dask; None: inline for one worker, processes otherwise.
    executor: str | None = None
    #: A running Dask scheduler (``tcp://host:port``) or its scheduler file.
    scheduler: str | None = None
    scheduler_file: Path | None = None
    #: fsspec options of URL inputs and outputs (``endpoint_url``, ``profile``, ...); never
    #: written to the manifest.
    storage_options: dict = field(default_factory=dict)

    def with_changes(self, **changes: object) -> ExportConfig:
        return replace(self, **changes)


#: Multipliers of the size units that ``--shard-size`` and ``shard_size`` accept.
SIZE_UNITS: dict[str, int] = {
    "": 1,
    "k": 10**3,
    "m": 10**6,
    "g": 10**9,
    "t": 10**12,
    "ki": 2**10,
    "mi": 2**20,
    "gi": 2**30,
    "ti": 2**40,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?)?b?\s*$", re.IGNORECASE)


def parse_byte_size(value: str | int) -> int:
    """A byte count from ``38000000``, ``38MB``, ``850M`` (SI: 10^6) or ``1GiB`` (2^30).

    The result is exact: ``1.5GB`` is 1,500,000,000; a size that is not a whole
    number of bytes is a ValueError.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _SIZE_RE.match(str(value))
    if match is None:
        raise ValueError(
            f"{value!r} is not a size in bytes: give a number of bytes, or one with a unit "
            "such as 38MB or 850M (10^6 bytes) or 1GiB (2^30 bytes)"
        )
    number = decimal.Decimal(match.group(1)) * SIZE_UNITS[(match.group(2) or "").lower()]
    if number != number.to_integral_value():
        raise ValueError(f"{value!r} is not a whole number of bytes ({number})")
    return int(number)


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


def _valid_stem(stem: str) -> bool:
    """A stem names files inside the output directory and its shards' url_pattern."""
    from toile.names import stem_problem

    return stem_problem(stem) is None


def check_executor(
    executor: str | None, scheduler: str | None, scheduler_file: str | Path | None
) -> str | None:
    """The executor name, after checking it against the scheduler options."""
    if executor is not None and executor not in EXECUTOR_CHOICES:
        raise ConfigError(
            f"executor must be one of {', '.join(EXECUTOR_CHOICES)}, got {executor!r}"
        )
    if scheduler is not None and scheduler_file is not None:
        raise ConfigError("--scheduler and --scheduler-file exclude each other: give one")
    if scheduler is not None or scheduler_file is not None:
        if executor not in (None, "dask"):
            raise ConfigError(
                f"--scheduler/--scheduler-file need the dask executor, not {executor!r}"
            )
        executor = "dask"
    if scheduler is not None and not scheduler.startswith(_SCHEDULER_SCHEMES):
        raise ConfigError(
            f"--scheduler: {scheduler!r} is not a Dask scheduler address such as "
            "tcp://10.0.0.5:8786"
        )
    return executor


def _check_bin(factor: int | None) -> int | None:
    """``--bin``: None or 1 (no binning) or an integer >= 2."""
    if factor is None or factor == 1:
        return None
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ConfigError(f"bin must be an integer of at least 1, got {factor!r}")
    return factor


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
    uint8_range: str | None = None,
    compressed: bool = False,
    format: str = "npy",
    channel: str | int | None = None,
    calibrated: bool = False,
    workers: int | None = None,
    on_error: str = "fail",
    overwrite: bool = False,
    resume: bool = False,
    verbose: bool = False,
    progress: bool | None = None,
    filename_spec: FilenameSpec | None = None,
    bin_factor: int | None = None,
    base_dir: str | Path | None = None,
    executor: str | None = None,
    scheduler: str | None = None,
    scheduler_file: str | Path | None = None,
    storage_options: dict | None = None,
) -> ExportConfig:
    """Validate the options once and return an :class:`ExportConfig`."""
    if not inputs:
        raise ConfigError("no inputs given")
    output = output.rstrip("/") if _is_url(output) else Path(output)  # type: ignore[union-attr]
    if format not in ENCODINGS:
        raise ConfigError(f"format must be one of {', '.join(ENCODINGS)}, got {format!r}")
    if on_error not in ON_ERROR_CHOICES:
        raise ConfigError(
            f"on_error must be one of {', '.join(ON_ERROR_CHOICES)}, got {on_error!r}"
        )
    if workers is not None and workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    if overwrite and resume:
        raise ConfigError("--overwrite and --resume exclude each other")
    executor = check_executor(executor, scheduler, scheduler_file)
    from_directory = not stem
    stem = stem if stem else _output_name(output)
    from toile.names import stem_problem

    problem = stem_problem(stem)
    if problem is not None and from_directory:
        raise ConfigError(
            f"invalid output stem {stem!r}, taken from the output directory's name "
            f"({output}): {problem}; give a stem with --stem (stem: in YAML)"
        )
    if problem is not None:
        raise ConfigError(f"invalid output stem {stem!r}: {problem}; choose another with --stem")
    return ExportConfig(
        inputs=tuple(str(i) for i in inputs),
        output=output,
        stem=stem,
        shard_size=resolve_shard_size(shard_size, pds),
        to_uint8=to_uint8 or uint8_range is not None,  # a uint8 range implies --uint8
        uint8_range=uint8_range or "max",
        compressed=compressed,
        format=format,  # type: ignore[arg-type]
        channel=parse_channel(channel),
        calibrated=calibrated,
        workers=workers,
        on_error=on_error,  # type: ignore[arg-type]
        overwrite=overwrite,
        resume=resume,
        verbose=verbose,
        progress=progress,
        filename_spec=filename_spec,
        bin_factor=_check_bin(bin_factor),
        base_dir=Path(base_dir) if base_dir is not None else Path.cwd(),
        executor=executor,
        scheduler=scheduler,
        scheduler_file=Path(scheduler_file) if scheduler_file is not None else None,
        storage_options=dict(storage_options or {}),
    )


def _is_url(location: str | Path) -> bool:
    """``scheme://...`` (an fsspec URL such as ``s3://bucket/prefix``), not a local path."""
    return isinstance(location, str) and re.match(r"^[a-zA-Z][\w+.-]+://", location) is not None


def _output_name(output: Path | str) -> str:
    """The default stem: the output directory's name (a URL's last part)."""
    if isinstance(output, str):
        return output.rstrip("/").rpartition("/")[2]
    return output.resolve().name


# --- YAML config files -------------------------------------------------------

#: Every key a YAML config file may hold, with the ``make_config`` argument it
#: sets. ``output_stem`` and ``to_uint8`` are the documented names; ``stem`` and
#: ``uint8`` mirror the ``--stem`` and ``--uint8`` flags.
CONFIG_KEYS: dict[str, str] = {
    "inputs": "inputs",
    "output_stem": "stem",
    "stem": "stem",
    "shard_size": "shard_size",
    "pds": "pds",
    "to_uint8": "to_uint8",
    "uint8": "to_uint8",
    "uint8_range": "uint8_range",
    "compressed": "compressed",
    "format": "format",
    "channel": "channel",
    "calibrated": "calibrated",
    "workers": "workers",
    "on_error": "on_error",
    "overwrite": "overwrite",
    "resume": "resume",
    "verbose": "verbose",
    "progress": "progress",
    "filename_spec": "filename_spec",
    "bin": "bin_factor",
    "executor": "executor",
    "scheduler": "scheduler",
    "scheduler_file": "scheduler_file",
    "storage_options": "storage_options",
}
_BOOL_KEYS = frozenset(
    {
        "pds",
        "to_uint8",
        "compressed",
        "calibrated",
        "overwrite",
        "resume",
        "verbose",
        "progress",
    }
)
_NULLABLE_KEYS = frozenset(
    {
        "stem",
        "shard_size",
        "channel",
        "workers",
        "progress",
        "executor",
        "scheduler",
        "scheduler_file",
    }
)
_FILENAME_SPEC_KEYS = ("template", "transforms")
_YAML_STR_TAG = "tag:yaml.org,2002:str"
#: Options that exclude each other: when the command line sets one of a group,
#: the config file's values for the whole group are ignored.
_EXCLUSIVE_GROUPS: tuple[tuple[str, ...], ...] = (
    ("shard_size", "pds"),
    ("overwrite", "resume"),
    ("scheduler", "scheduler_file"),
)
_MAKE_CONFIG_OPTIONS = frozenset(CONFIG_KEYS.values()) - {"inputs"}


def _describe(value: object) -> str:
    """A value as a user wrote it in YAML, for error messages."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _suggest(key: str, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{hint}; valid keys: {', '.join(valid)}"


class _ConfigFile:
    """A parsed YAML document with the line of each key, for one-line errors."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file does not exist") from None
        except IsADirectoryError:
            raise ConfigError(f"{path}: config file is a directory") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: config file is not UTF-8 text") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
        import yaml

        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = exc.problem or exc.context or "syntax error"
            raise ConfigError(f"{path}{where}: invalid YAML: {problem}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {exc}") from None
        finally:
            loader.dispose()
        if not isinstance(node, yaml.MappingNode) or not isinstance(data, dict):
            what = "empty" if data is None else f"{_describe(data)}, not a mapping of keys"
            raise ConfigError(
                f"{path}: the top level must be a mapping of keys such as 'inputs:', "
                f"but the file is {what}"
            )
        self.data: dict = data
        self.node = node
        self.lines = self._key_lines(node)

    def _key_lines(self, node: yaml.MappingNode) -> dict[str, int]:
        import yaml

        lines: dict[str, int] = {}
        for key_node, _value in node.value:
            line = key_node.start_mark.line + 1
            key = key_node.value
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != _YAML_STR_TAG:
                raise ConfigError(f"{self.path}, line {line}: keys must be plain names")
            if key in lines:
                raise ConfigError(
                    f"{self.path}, line {line}: duplicate key {key!r} (first on line {lines[key]})"
                )
            lines[key] = line
        return lines

    def sub_lines(self, key: str) -> dict[str, int]:
        """Lines of the keys of the mapping under top-level ``key``."""
        import yaml

        for key_node, value_node in self.node.value:
            if key_node.value == key and isinstance(value_node, yaml.MappingNode):
                return {
                    str(k.value): k.start_mark.line + 1
                    for k, _v in value_node.value
                    if isinstance(k, yaml.ScalarNode)
                }
        return {}

    def error(self, key: str, problem: str, line: int | None = None) -> ConfigError:
        line = line if line is not None else self.lines.get(key)
        where = f", line {line}" if line is not None else ""
        return ConfigError(f"{self.path}{where}: {key}: {problem}")


def _check_value(config: _ConfigFile, key: str, value: object) -> object:
    """The validated value of one top-level key (after ``CONFIG_KEYS`` renaming)."""
    option = CONFIG_KEYS[key]
    if value is None and option in _NULLABLE_KEYS:
        return None
    if option in _BOOL_KEYS:
        if not isinstance(value, bool):
            raise config.error(key, f"expected true or false, got {_describe(value)}")
        return value
    if option == "shard_size" and isinstance(value, str):
        try:
            value = parse_byte_size(value)
        except ValueError:
            raise config.error(
                key,
                "expected an integer or a size with a unit such as 38MB, 850M or 1GiB, "
                f"got {_describe(value)}",
            ) from None
    if option in ("shard_size", "workers", "bin_factor"):
        if not _is_int(value):
            raise config.error(key, f"expected an integer, got {_describe(value)}")
        if value < 1:  # type: ignore[operator]
            raise config.error(key, f"must be at least 1, got {value}")
        return value
    if option == "stem":
        if not isinstance(value, str) or not _valid_stem(value):
            raise config.error(
                key,
                "expected a file name stem (no '/', not starting with '.'), "
                f"got {_describe(value)}",
            )
        return value
    if option == "uint8_range":
        if not isinstance(value, str):
            raise config.error(key, f"expected a string such as 'max', got {_describe(value)}")
        return value
    if option in ("scheduler", "scheduler_file"):
        if not isinstance(value, str) or not value:
            raise config.error(key, f"expected an address or a path, got {_describe(value)}")
        if option == "scheduler_file":
            path = Path(value)
            return str(path if path.is_absolute() else config.path.parent / path)
        return value
    if option in ("format", "on_error", "executor"):
        choices = {"format": ENCODINGS, "on_error": ON_ERROR_CHOICES}.get(option, EXECUTOR_CHOICES)
        if value not in choices:
            raise config.error(key, f"expected one of {', '.join(choices)}, got {_describe(value)}")
        return value
    if option == "channel":
        if not (_is_int(value) or isinstance(value, str)):
            raise config.error(key, f"expected a channel index or name, got {_describe(value)}")
        return parse_channel(value)  # type: ignore[arg-type]
    if option == "storage_options":
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise config.error(
                key,
                "expected a mapping of fsspec options (endpoint_url, profile, ...), "
                f"got {_describe(value)}",
            )
        return value
    if option == "inputs":
        return _check_inputs(config, value)
    return _check_filename_spec(config, value)


def _check_inputs(config: _ConfigFile, value: object) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
        raise config.error(
            "inputs", f"expected a path or glob, or a list of them, got {_describe(value)}"
        )
    if not items:
        raise config.error("inputs", "the list is empty: name at least one path or glob")
    return items


def _check_filename_spec(config: _ConfigFile, value: object) -> FilenameSpec:
    from toile.filenames import TRANSFORMS, compile_spec

    key = "filename_spec"
    if isinstance(value, str):
        value = {"template": value}
    if not isinstance(value, dict):
        raise config.error(
            key, f"expected a mapping with 'template' and 'transforms', got {_describe(value)}"
        )
    lines = config.sub_lines(key)
    for sub in value:
        if sub not in _FILENAME_SPEC_KEYS:
            raise config.error(
                key,
                f"unknown key {sub!r}{_suggest(str(sub), _FILENAME_SPEC_KEYS)}",
                lines.get(str(sub)),
            )
    template = value.get("template")
    if not isinstance(template, str) or not template:
        raise config.error(
            key,
            f"'template' must be a non-empty string, got {_describe(template)}",
            lines.get("template"),
        )
    transforms = value.get("transforms") or {}
    if not isinstance(transforms, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in transforms.items()
    ):
        raise config.error(
            key,
            f"'transforms' must map field names to transform names ({', '.join(TRANSFORMS)})",
            lines.get("transforms"),
        )
    spec = FilenameSpec(template=template, transforms=dict(transforms))
    try:
        compile_spec(spec)
    except ConfigError as exc:
        line = config.lines.get(key)
        raise ConfigError(f"{config.path}, line {line}: {exc}") from None
    return spec


def load_config_file(path: Path) -> dict:
    """Read and validate a YAML config file.

    Returns the values the file sets, keyed like :func:`make_config`'s
    arguments (``output_stem`` -> ``stem``, ``uint8`` -> ``to_uint8``), plus
    ``inputs`` (a list) when the file has it and ``base_dir``: the file's
    directory, against which relative inputs resolve. Every problem is one
    ConfigError line naming the file and the key or line.
    """
    try:
        return _load_config_file(Path(path))
    except ConfigFileError:
        raise
    except ConfigError as error:
        raise ConfigFileError(str(error)) from None


def _load_config_file(path: Path) -> dict:
    config = _ConfigFile(path)
    values: dict = {}
    given_by: dict[str, str] = {}
    for key, value in config.data.items():
        if key not in CONFIG_KEYS:
            raise config.error(key, f"unknown key{_suggest(key, list(CONFIG_KEYS))}")
        option = CONFIG_KEYS[key]
        if option in given_by:
            raise config.error(
                key, f"sets the same option as {given_by[option]!r}: give only one of them"
            )
        given_by[option] = key
        values[option] = _check_value(config, key, value)
    if values.get("pds") and values.get("shard_size") not in (None, PDS_SHARD_SIZE):
        raise config.error(
            "shard_size",
            f"pds: true sets the shard size to {PDS_SHARD_SIZE} bytes: give only one of them",
        )
    if values.get("overwrite") and values.get("resume"):
        raise config.error("resume", "overwrite and resume exclude each other")
    if values.get("to_uint8") is False and values.get("uint8_range") is not None:
        raise config.error(
            "uint8_range", "sets a uint8 mapping, but to_uint8 is false: remove one of them"
        )
    values["base_dir"] = Path(os.path.abspath(path)).parent
    return values


def _is_yaml_name(name: str) -> bool:
    return name.lower().endswith((".yaml", ".yml"))


def build_config(
    inputs: Sequence[str],
    output: Path,
    cli_options: dict,
    config_path: Path | None = None,
) -> ExportConfig:
    """Merge a YAML config file (if any) with command-line flags into an ExportConfig.

    ``cli_options`` holds :func:`make_config` arguments the user actually gave
    (a None value counts as not given); they override the file. When the
    command line sets ``shard_size`` or ``pds`` (or ``overwrite`` or
    ``resume``), the file's values for that pair are ignored, so a flag never
    conflicts with the file. The config file is ``config_path`` or, when that
    is None, a single ``.yaml``/``.yml`` INPUT. Inputs given on the command
    line win over the file's and resolve against the current directory; the
    file's resolve against its own directory.
    """
    inputs = [str(i) for i in inputs]
    if config_path is None and any(_is_yaml_name(i) for i in inputs):
        if len(inputs) != 1:
            raise ConfigError(
                f"a YAML config file must be the only INPUT, got {len(inputs)} inputs"
            )
        config_path, inputs = Path(inputs[0]), []
    unknown = set(cli_options) - _MAKE_CONFIG_OPTIONS - {"uint8", "output_stem"}
    if unknown:
        raise TypeError(f"build_config: unknown options {sorted(unknown)}")
    given = {
        CONFIG_KEYS.get(key, key): value for key, value in cli_options.items() if value is not None
    }
    file_values = load_config_file(config_path) if config_path is not None else {}
    for group in _EXCLUSIVE_GROUPS:
        if any(given.get(key) not in (None, False) for key in group):
            for key in group:
                file_values.pop(key, None)
    file_inputs = file_values.pop("inputs", None)
    file_base_dir = file_values.pop("base_dir", None)
    if inputs:
        base_dir = Path.cwd()
    elif file_inputs is not None:
        inputs, base_dir = file_inputs, file_base_dir
    elif config_path is not None:
        raise ConfigError(
            f"{config_path}: missing key 'inputs': list the recordings' paths or globs"
        )
    else:
        raise ConfigError("no inputs given")
    options = {**file_values, **given}
    return make_config(inputs, output, base_dir=base_dir, **options)
