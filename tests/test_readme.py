"""Every Python example in the README runs as written (on datasets made in a temporary directory)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from toile.export import export_test_frames

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)


@pytest.fixture(scope="module")
def demo_dirs(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("readme")
    small = {"frames": 40, "height": 32, "width": 32, "shard_size": 30_000, "progress": False}
    export_test_frames(root / "demo", **small)
    export_test_frames(root / "demo-atdata", format="atdata", **small)
    return {"/tmp/demo-atdata": str(root / "demo-atdata"), "/tmp/demo": str(root / "demo")}


def test_readme_has_python_examples():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_example_runs(index, demo_dirs):
    code = BLOCKS[index]
    for original, replacement in demo_dirs.items():  # longest path first
        code = code.replace(original, replacement)
    namespace: dict = {}
    exec(compile(code, f"README.md python block {index}", "exec"), namespace)
    if "dataset" in namespace and hasattr(namespace["dataset"], "manifest"):
        assert len(namespace["dataset"]) == 40
    if "x" in namespace:
        assert namespace["x"].ndim == 3
