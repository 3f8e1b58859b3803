"""Every Python example in the README runs as written, on datasets made in a temporary directory."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from toile.export import export_test_frames

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
FRAMES, RECORDINGS, SIDE = 20, 2, 32


@pytest.fixture(scope="module", params=[False, True], ids=["tar", "tar.gz"])
def demo_dirs(request, tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("readme")
    small = {
        "frames": FRAMES,
        "recordings": RECORDINGS,
        "height": SIDE,
        "width": SIDE,
        "shard_size": 30_000,
        "compressed": request.param,
        "progress": False,
    }
    export_test_frames(root / "demo", **small)
    export_test_frames(root / "demo-atdata", format="atdata", **small)
    # Longest path first, so "/tmp/demo" does not replace inside "/tmp/demo-atdata".
    return {"/tmp/demo-atdata": str(root / "demo-atdata"), "/tmp/demo": str(root / "demo")}


def _block(marker: str) -> str:
    matches = [block for block in BLOCKS if marker in block]
    assert len(matches) == 1, f"expected one README python block containing {marker!r}"
    return matches[0]


def _run(code: str, demo_dirs: dict[str, str]) -> dict:
    for original, replacement in demo_dirs.items():
        code = code.replace(original, replacement)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    return namespace


def test_every_python_block_runs(demo_dirs):
    assert len(BLOCKS) >= 3
    for block in BLOCKS:
        _run(block, demo_dirs)


def test_toile_api_example(demo_dirs):
    result = _run(_block("toile.open("), demo_dirs)
    assert len(result["dataset"]) == FRAMES * RECORDINGS
    assert result["image"].shape == (SIDE, SIDE)
    assert result["metadata"]["frame"]["index"] == 0
    assert len(result["times"]) == (FRAMES * RECORDINGS) % 32


def test_webdataset_training_loop_example(demo_dirs):
    result = _run(_block("wds.WebDataset(url"), demo_dirs)
    assert result["manifest"]["totals"]["shards"] > 1
    x = result["x"]
    assert x.dtype == np.float32 and x.min() >= 0.0 and x.max() <= 1.0
    # 40 frames in batches of 16: the last batch of an epoch holds 8.
    assert x.shape == (8, SIDE, SIDE)
    assert result["t"].shape == (8,)


def test_atdata_lens_example(demo_dirs):
    result = _run(_block("atdata.Dataset[toile.schema.Frame]"), demo_dirs)
    increment = result["manifest"]["recordings"][0]["metadata"]["time_increment"]
    # In order, the last batch of 8 starts at frame 12 of recording 1.
    assert result["first_time"] == pytest.approx(12 * increment)
    assert result["x"].shape == (8, SIDE, SIDE)
