"""Metadata from recording names: a ``parse`` template plus per-field transforms.

A ``filename_spec`` such as::

    template: "mouse_{mouse_id}_slice_{slice_id}_{date}.tif"
    transforms: {mouse_id: int, slice_id: identity, date: date_compact}

turns ``mouse_3_slice_2_20240315.tif`` into
``{"mouse_id": 3, "slice_id": "2", "date": "2024-03-15"}``.

Matching rules:

- The template uses ``parse`` syntax (the inverse of ``str.format``) and must
  match the *whole* name. Literal text matches case-insensitively; captured
  values keep their case. ``{}`` (an unnamed field) matches anything and is
  not stored; named fields must be Python identifiers.
- The TIFF suffix (``.tif``, ``.tiff``, ``.ome.tif``, ``.ome.tiff``, any case)
  is not part of the match: it is removed from both the template and the name
  before matching, so ``mouse_{mouse_id}`` and ``mouse_{mouse_id}.tif`` both
  match ``mouse_3.tif`` and ``mouse_3.ome.tif`` alike. Only when that fails is
  the template matched, as written, against the full name (so a template that
  spells out a suffix field, such as ``{stem}.{ext}``, still works).
- The name is the recording's name: a stack file's base name, or the prefix of
  a Prairie View series; each format names its sources (:mod:`toile.formats`).
- Fields without a transform are kept as the matched text (``identity``).
  Values are JSON-friendly: dates are ISO strings, not ``date`` objects.
- A transform that returns a mapping contributes one field per key, named
  ``<field>_<key>``: ``age_sex`` on a field ``animal`` with value ``P60M``
  gives ``animal_age_days: 60`` and ``animal_sex: "M"``.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import parse as parselib

from toile.errors import ConfigError, InputError

if TYPE_CHECKING:
    from toile.config import FilenameSpec

Transform = Callable[[str], object]

_TIFF_SUFFIX = re.compile(r"(\.ome)?\.tiff?$", re.IGNORECASE)
_TRUE = frozenset({"true", "yes", "y", "on", "1"})
_FALSE = frozenset({"false", "no", "n", "off", "0"})
_AGE_SEX = re.compile(r"^P(\d+)([MFU])$", re.IGNORECASE)
_AGE_DAYS = re.compile(r"^P?(\d+)$", re.IGNORECASE)


def _identity(value: str) -> str:
    return value


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError("is not an integer") from None


def _float(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ValueError("is not a number") from None


def _bool(value: str) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("is not a boolean (true/false, yes/no, on/off, 1/0)")


def _date_compact(value: str) -> str:
    if not re.fullmatch(r"\d{8}", value):
        raise ValueError("is not a compact date YYYYMMDD")
    try:
        return date(int(value[:4]), int(value[4:6]), int(value[6:])).isoformat()
    except ValueError as exc:
        raise ValueError(f"is not a real date ({exc})") from None


def _date(value: str) -> str:
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value).date().isoformat()
    except ValueError:
        raise ValueError("is not an ISO date (YYYY-MM-DD)") from None


def _datetime(value: str) -> str:
    try:
        return datetime.fromisoformat(value).isoformat()
    except ValueError:
        raise ValueError("is not an ISO date-time (YYYY-MM-DDTHH:MM:SS)") from None


def _time_compact(value: str) -> str:
    if not re.fullmatch(r"\d{6}", value):
        raise ValueError("is not a compact time HHMMSS")
    hours, minutes, seconds = int(value[:2]), int(value[2:4]), int(value[4:])
    if hours > 23 or minutes > 59 or seconds > 59:
        raise ValueError("is not a real time of day")
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}"


def _age_sex(value: str) -> dict[str, object]:
    match = _AGE_SEX.fullmatch(value)
    if match is None:
        raise ValueError("is not a postnatal age and sex such as P60M (sex M, F or U)")
    return {"age_days": int(match.group(1)), "sex": match.group(2).upper()}


def _age_days(value: str) -> int:
    match = _AGE_DAYS.fullmatch(value)
    if match is None:
        raise ValueError("is not a postnatal age in days such as P60 or 60")
    return int(match.group(1))


#: Every transform a ``filename_spec`` can name, with what it does. The one
#: source of truth for transform names (the CLI and error messages list these).
TRANSFORMS: dict[str, Transform] = {
    "identity": _identity,  # the matched text, unchanged
    "str": _identity,  # alias of identity
    "int": _int,  # "007" -> 7
    "float": _float,  # "1.5" -> 1.5
    "bool": _bool,  # true/false, yes/no, on/off, 1/0 (any case) -> True/False
    "lower": str.lower,  # "GCaMP" -> "gcamp"
    "upper": str.upper,  # "ko" -> "KO"
    "date_compact": _date_compact,  # "20240315" -> "2024-03-15" (a real calendar date)
    "date": _date,  # "2024-03-15" or any ISO date/date-time -> "2024-03-15"
    "datetime": _datetime,  # "2024-03-15T14:30:22" -> "2024-03-15T14:30:22"
    "time_compact": _time_compact,  # "143022" -> "14:30:22"
    "age_days": _age_days,  # "P60" or "60" -> 60
    "age_sex": _age_sex,  # "P60M" -> <field>_age_days: 60, <field>_sex: "M"
}

#: Keys that transforms returning a mapping add (as ``<field>_<key>``), for
#: checking at compile time that no two fields collide.
_EXPANDED_KEYS: dict[str, tuple[str, ...]] = {"age_sex": ("age_days", "sex")}


def _strip_tiff_suffix(name: str) -> str:
    return _TIFF_SUFFIX.sub("", name)


def _template_fields(template: str) -> list[str]:
    """Named fields of ``template`` in order; raises ConfigError on bad syntax or names."""
    names: list[str] = []
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(f"filename_spec template {template!r}: {exc}") from None
    for _literal, name, _spec, _conversion in parts:
        if name is None or name == "":
            continue
        if not name.isidentifier():
            raise ConfigError(
                f"filename_spec template {template!r}: field name {name!r} must be a plain "
                "identifier (letters, digits, underscores)"
            )
        if name not in names:
            names.append(name)
    return names


@dataclass(frozen=True)
class FilenameParser:
    """A compiled, validated ``filename_spec``; build it with :func:`compile_spec`."""

    template: str
    fields: tuple[str, ...]
    transforms: Mapping[str, Transform]
    transform_names: Mapping[str, str]
    _stem_parser: parselib.Parser
    _full_parser: parselib.Parser

    def parse(self, name: str, *, path: str | Path | None = None) -> dict | None:
        """The fields parsed from ``name`` after transforms, or None when it does not match.

        ``path`` (default: ``name``) is what an error names when a transform
        rejects a value.
        """
        result = self._stem_parser.parse(_strip_tiff_suffix(name))
        if result is None:
            result = self._full_parser.parse(name)
        if result is None:
            return None
        values: dict[str, object] = {}
        for field_name in self.fields:
            raw = result.named[field_name]
            transform = self.transforms.get(field_name)
            if transform is None:
                values[field_name] = raw
                continue
            try:
                value = transform(raw if isinstance(raw, str) else str(raw))
            except (ValueError, TypeError) as exc:
                label = self.transform_names[field_name]
                raise InputError(
                    path if path is not None else name,
                    f"filename field {field_name!r} value {raw!r} {exc} "
                    f"(transform {label!r}, template {self.template!r})",
                ) from None
            if isinstance(value, Mapping):
                for key, item in value.items():
                    values[f"{field_name}_{key}"] = item
            else:
                values[field_name] = value
        return values


def _transform_label(transform: object) -> str:
    return getattr(transform, "__name__", repr(transform))


def compile_spec(spec: FilenameSpec) -> FilenameParser:
    """Validate ``spec`` once and compile it.

    Raises ConfigError for an empty or malformed template, a template that
    names no field, an unknown transform name (listing the known ones), a
    transform for a field the template does not name, or two fields that
    would produce the same metadata key. Transforms are names from
    :data:`TRANSFORMS` or, from Python, any callable taking the matched text.
    """
    template = spec.template
    if not isinstance(template, str) or not template.strip():
        raise ConfigError("filename_spec template must be a non-empty string")
    fields = _template_fields(template)
    if not fields:
        raise ConfigError(
            f"filename_spec template {template!r} names no field: write fields as {{name}}"
        )
    transforms: dict[str, Transform] = {}
    labels: dict[str, str] = {}
    for field_name, transform in (spec.transforms or {}).items():
        if field_name not in fields:
            raise ConfigError(
                f"filename_spec transform for {field_name!r}, a field the template "
                f"{template!r} does not name (its fields: {', '.join(fields)})"
            )
        if isinstance(transform, str):
            if transform not in TRANSFORMS:
                raise ConfigError(
                    f"filename_spec field {field_name!r}: unknown transform {transform!r}; "
                    f"known transforms: {', '.join(TRANSFORMS)}"
                )
            transforms[field_name] = TRANSFORMS[transform]
            labels[field_name] = transform
        elif callable(transform):
            transforms[field_name] = transform
            labels[field_name] = _transform_label(transform)
        else:
            raise ConfigError(
                f"filename_spec field {field_name!r}: a transform must be a name "
                f"({', '.join(TRANSFORMS)}), got {transform!r}"
            )
    keys: dict[str, str] = {}
    for field_name in fields:
        expanded = _EXPANDED_KEYS.get(labels.get(field_name, ""))
        produced = [f"{field_name}_{key}" for key in expanded] if expanded else [field_name]
        for key in produced:
            if key in keys:
                raise ConfigError(
                    f"filename_spec fields {keys[key]!r} and {field_name!r} both produce "
                    f"the metadata key {key!r}"
                )
            keys[key] = field_name
    stem_template = _strip_tiff_suffix(template)
    try:
        stem_parser = parselib.compile(stem_template)
        full_parser = parselib.compile(template)
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"filename_spec template {template!r}: {exc}") from None
    return FilenameParser(
        template=template,
        fields=tuple(fields),
        transforms=transforms,
        transform_names=labels,
        _stem_parser=stem_parser,
        _full_parser=full_parser,
    )
