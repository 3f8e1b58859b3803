"""The pure shard layout: today's boundaries, the writer's boundaries, and no per-frame lists.

The reference datasets in tests/data/reference-4f90a06.json were written by the code at
commit 4f90a06, before shards were planned; the planned layout and the assembled shards
must give the very same bytes.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toile.errors import OutputError
from toile.export import export_test_frames
from toile.export.layout import SampleSizes, fits, plan_shards, run_length
from toile.names import frame_digits, sample_key, shard_name
from toile.shards import PackedSample, ShardWriter, shard_overhead

REFERENCE = json.loads((Path(__file__).parent / "data" / "reference-4f90a06.json").read_text())

#: Manifest fields added on purpose since 4f90a06 (the formats seam and version records).
NEW_TOP_LEVEL = {"versions", "frame_shapes"}
NEW_RECORDING_FIELDS = {"series", "format", "vendor_metadata"}


def _without_new_fields(manifest: dict) -> dict:
    manifest = {k: v for k, v in manifest.items() if k not in NEW_TOP_LEVEL}
    manifest["recordings"] = [
        {k: v for k, v in r.items() if k not in NEW_RECORDING_FIELDS}
        for r in manifest["recordings"]
    ]
    return manifest


@pytest.mark.parametrize("case", sorted(REFERENCE["cases"]))
def test_same_bytes_as_the_code_before_planning(case, tmp_path):
    reference = REFERENCE["cases"][case]
    out = tmp_path / "ref"
    export_test_frames(out, stem="ref", progress=False, **reference["kwargs"])
    shards = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.iterdir())
        if p.name.endswith((".tar", ".tar.gz"))
    }
    assert shards == reference["shards"]
    manifest = json.loads((out / "ref.manifest.json").read_text())
    assert _without_new_fields(manifest) == reference["manifest"]
    assert set(manifest["versions"]) == {"toile", "isal", "numpy"}
    assert [r["series"] for r in manifest["recordings"]] == [0] * len(manifest["recordings"])
    # The fields kept their order; the new ones come last.
    assert list(manifest)[:-2] == [
        "toile_version",
        "manifest_format",
        "stem",
        "encoding",
        "compressed",
        "shard_size_limit",
        "url_pattern",
        "options",
        "shards",
        "recordings",
        "skipped",
        "totals",
    ]


def _writer_boundaries(tmp: Path, sizes: list[int], cap: int, compressed: bool) -> list[tuple]:
    """(first, last, bytes) of every shard the streaming writer makes of these sample sizes."""
    shards = []
    with ShardWriter(tmp, "w", cap, compressed=compressed, fsync=False) as writer:
        for index, size in enumerate(sizes):
            key = sample_key(0, index, frame_digits(len(sizes)))
            writer.add(PackedSample(key, [bytes(size)], size, size, 0, compressed))
    for info in writer.shards:
        shards.append((info.first_key, info.last_key, info.size, info.samples))
    return shards


@st.composite
def _cases(draw: st.DrawFn) -> tuple[int, list[int]]:
    capacity = draw(st.integers(1, 5000))
    special = st.sampled_from(
        [capacity, capacity - 1, max(1, capacity // 2), max(1, capacity // 3), 1]
    ).filter(lambda s: s >= 1)
    size = st.one_of(special, st.integers(1, capacity))
    sizes = draw(st.lists(size, min_size=1, max_size=60))
    # Runs of equal sizes, as plain samples of one recording give.
    if draw(st.booleans()):
        sizes = [s for s in sizes for _ in range(draw(st.integers(1, 4)))]
    return capacity, sizes


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=_cases(), compressed=st.booleans(), split=st.integers(0, 60))
def test_layout_matches_the_writer(tmp_path_factory, case, compressed, split):
    capacity, sizes = case
    overhead = shard_overhead(compressed)
    cap = capacity + overhead
    tmp = tmp_path_factory.mktemp("w")
    expected = _writer_boundaries(tmp, sizes, cap, compressed)
    # The same samples as two recordings (any split) lay out the same way around the keys.
    split = min(split, len(sizes))
    recordings = [SampleSizes(0, run_length(sizes), "rec")]
    planned = plan_shards(
        recordings, max_size=cap, overhead=overhead, stem="w", compressed=compressed
    )
    got = [(s.first_key, s.last_key, s.size, s.samples) for s in planned]
    assert got == expected
    assert [s.name for s in planned] == [shard_name("w", i, compressed) for i in range(len(got))]
    assert all(s.size <= cap for s in planned)
    two = [
        SampleSizes(0, run_length(sizes[:split]), "a"),
        SampleSizes(1, run_length(sizes[split:]), "b"),
    ]
    planned_two = plan_shards(two, max_size=cap, overhead=overhead, stem="w", compressed=compressed)
    assert [(s.size, s.samples) for s in planned_two] == [(s.size, s.samples) for s in planned]
    covered = [
        (r.recording, f) for s in planned_two for r in s.ranges for f in range(r.start, r.stop)
    ]
    assert covered == [(0, f) for f in range(split)] + [(1, f) for f in range(len(sizes) - split)]


def test_exact_fit_and_one_byte_over():
    overhead = shard_overhead(False)
    cap = 3000 + overhead
    exact = plan_shards(
        [SampleSizes(0, ((1000, 6),))], max_size=cap, overhead=overhead, stem="s", compressed=False
    )
    assert [s.samples for s in exact] == [3, 3] and exact[0].size == cap
    over = plan_shards(
        [SampleSizes(0, ((1000, 2), (1001, 1)))],
        max_size=cap,
        overhead=overhead,
        stem="s",
        compressed=False,
    )
    assert [s.samples for s in over] == [2, 1]
    assert fits(2000, 1000, 3000) and not fits(2000, 1001, 3000)


def test_a_hundred_million_frames_make_a_few_ranges_not_a_list():
    overhead = shard_overhead(False)
    started = time.perf_counter()
    shards = plan_shards(
        [SampleSizes(0, ((2048, 60_000_000), (2560, 40_000_000)), "long")],
        max_size=850_000_000,
        overhead=overhead,
        stem="big",
        compressed=False,
    )
    assert time.perf_counter() - started < 5
    assert sum(s.samples for s in shards) == 100_000_000
    assert all(len(s.ranges) == 1 for s in shards)
    assert shards[-1].last_key == sample_key(0, 99_999_999, 8)
    total = 60_000_000 * 2048 + 40_000_000 * 2560
    assert total // (850_000_000 - overhead) <= len(shards) <= total // (850_000_000 - overhead) + 2


def test_a_sample_larger_than_any_shard_names_recording_and_frame():
    overhead = shard_overhead(True)
    with pytest.raises(OutputError, match=r"rec\.tif: frame sample-000002-001: .*--shard-size"):
        plan_shards(
            [SampleSizes(2, ((100, 1), (5000, 1)), "rec.tif")],
            max_size=1000 + overhead,
            overhead=overhead,
            stem="s",
            compressed=True,
        )


def test_reading_a_dataset_does_not_load_the_export_machinery():
    import subprocess
    import sys

    code = (
        "import sys, toile.dataset\n"
        "heavy = ('toile.export', 'toile.formats', 'toile.executors', 'tifffile', 'isal')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tifffile', 'isal')"
        " or m.startswith(heavy)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
