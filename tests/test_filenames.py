"""Filename metadata: parse templates, transforms and their errors."""

from __future__ import annotations

import pytest

from toile.config import FilenameSpec
from toile.errors import ConfigError, InputError
from toile.filenames import TRANSFORMS, compile_spec


def parser(template: str, **transforms):
    return compile_spec(FilenameSpec(template=template, transforms=transforms))


def test_readme_example() -> None:
    spec = parser(
        "mouse_{mouse_id}_slice_{slice_id}_{date}.tif",
        mouse_id="int",
        slice_id="identity",
        date="date_compact",
    )
    assert spec.parse("mouse_3_slice_2_20240315.tif") == {
        "mouse_id": 3,
        "slice_id": "2",
        "date": "2024-03-15",
    }


@pytest.mark.parametrize(
    ("transform", "raw", "expected"),
    [
        ("identity", "007", "007"),
        ("str", "Ab", "Ab"),
        ("int", "007", 7),
        ("float", "2.5", 2.5),
        ("bool", "Yes", True),
        ("bool", "off", False),
        ("lower", "GCaMP", "gcamp"),
        ("upper", "ko", "KO"),
        ("date_compact", "20240315", "2024-03-15"),
        ("date", "2024-03-15", "2024-03-15"),
        ("date", "2024-03-15T10:20:30", "2024-03-15"),
        ("datetime", "2024-03-15T10:20:30", "2024-03-15T10:20:30"),
        ("time_compact", "143022", "14:30:22"),
        ("age_days", "P60", 60),
        ("age_days", "21", 21),
    ],
)
def test_each_transform(transform: str, raw: str, expected: object) -> None:
    assert parser("rec_{value}", value=transform).parse(f"rec_{raw}.tif") == {"value": expected}


def test_every_transform_is_covered_by_a_test() -> None:
    tested = {
        "identity",
        "str",
        "int",
        "float",
        "bool",
        "lower",
        "upper",
        "date_compact",
        "date",
        "datetime",
        "time_compact",
        "age_days",
        "age_sex",
    }
    assert set(TRANSFORMS) == tested


def test_age_sex_gives_two_prefixed_fields() -> None:
    spec = parser("mouse_{mouse_id}_{animal}", mouse_id="int", animal="age_sex")
    assert spec.parse("mouse_12_p60f.ome.tif") == {
        "mouse_id": 12,
        "animal_age_days": 60,
        "animal_sex": "F",
    }


@pytest.mark.parametrize(
    ("transform", "raw", "reason"),
    [
        ("int", "abc", "is not an integer"),
        ("float", "x1", "is not a number"),
        ("bool", "maybe", "is not a boolean"),
        ("date_compact", "20241315", "is not a real date"),
        ("date_compact", "2024-03-15", "is not a compact date"),
        ("date", "15/03/2024", "is not an ISO date"),
        ("time_compact", "256000", "is not a real time"),
        ("age_sex", "60M", "postnatal age and sex"),
    ],
)
def test_a_rejected_value_names_recording_field_and_value(
    transform: str, raw: str, reason: str
) -> None:
    spec = parser("rec_{value}", value=transform)
    with pytest.raises(InputError) as info:
        spec.parse(f"rec_{raw}.tif", path="/data/rec.tif")
    message = str(info.value)
    assert message.startswith("/data/rec.tif: ")
    assert "'value'" in message and repr(raw) in message and reason in message
    assert transform in message
    assert "\n" not in message


def test_error_names_the_name_when_no_path_given() -> None:
    with pytest.raises(InputError, match=r"^rec_x\.tif: "):
        parser("rec_{n}", n="int").parse("rec_x.tif")


def test_no_match_gives_none() -> None:
    spec = parser("mouse_{mouse_id}_slice_{slice_id}.tif")
    assert spec.parse("rat_3_slice_2.tif") is None
    assert spec.parse("mouse_3.tif") is None


def test_tiff_suffix_is_not_part_of_the_match() -> None:
    bare = parser("mouse_{mouse_id}", mouse_id="int")
    with_suffix = parser("mouse_{mouse_id}.tif", mouse_id="int")
    for name in ("mouse_3.tif", "mouse_3.ome.tif", "mouse_3.TIFF", "mouse_3"):
        assert bare.parse(name) == {"mouse_id": 3}, name
        assert with_suffix.parse(name) == {"mouse_id": 3}, name


def test_template_spanning_the_suffix_matches_the_full_name() -> None:
    assert parser("{stem}.{ext}").parse("rec_1.ome.tif") == {"stem": "rec_1", "ext": "ome.tif"}


def test_literals_match_any_case_values_keep_theirs() -> None:
    assert parser("Mouse_{line}").parse("MOUSE_GCaMP6f.tif") == {"line": "GCaMP6f"}


def test_prairie_prefix_and_unnamed_fields() -> None:
    spec = parser("TSeries-{date}-{run}", date="identity", run="int")
    assert spec.parse("TSeries-03152024-001") == {"date": "03152024", "run": 1}
    assert parser("{}_slice_{slice_id}").parse("whatever_slice_4.tif") == {"slice_id": "4"}


def test_format_spec_and_callable_transform() -> None:
    spec = compile_spec(FilenameSpec("rec_{n:d}_{tag}", {"tag": lambda s: s[::-1]}))
    assert spec.parse("rec_42_abc.tif") == {"n": 42, "tag": "cba"}


def test_unknown_transform_lists_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        parser("mouse_{mouse_id}", mouse_id="integer")
    message = str(info.value)
    assert "'integer'" in message and "mouse_id" in message
    for name in TRANSFORMS:
        assert name in message


def test_transform_for_a_field_the_template_does_not_name() -> None:
    with pytest.raises(ConfigError, match=r"'slice_id'.*does not name.*mouse_id"):
        parser("mouse_{mouse_id}", slice_id="int")


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("", "non-empty"),
        ("mouse_{mouse_id", "expected '}'"),
        ("mouse_{1a}", "identifier"),
        ("mouse_{a.b}", "identifier"),
        ("mouse.tif", "names no field"),
        ("mouse_{n:zz}", "zz"),
    ],
)
def test_bad_templates(template: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        parser(template)


def test_colliding_keys_are_rejected() -> None:
    with pytest.raises(ConfigError, match="animal_sex"):
        parser("{animal}_{animal_sex}", animal="age_sex")


def test_transform_of_wrong_type_is_rejected() -> None:
    with pytest.raises(ConfigError, match="must be a name"):
        compile_spec(FilenameSpec("m_{n}", {"n": 3}))  # type: ignore[dict-item]
