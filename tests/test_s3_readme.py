"""The README's object-storage examples run as written, against moto's S3 server."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from s3_server import S3

from toile.config import load_config_file
from toile.export import export_test_frames

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
SECTION = README.split("## Object storage", 1)[1].split("\n## ", 1)[0]


def _block(language: str, marker: str) -> str:
    blocks = [b for b in re.findall(rf"```{language}\n(.*?)```", SECTION, re.DOTALL) if marker in b]
    assert len(blocks) == 1, f"expected one {language} block with {marker!r}"
    return blocks[0]


def test_stock_webdataset_example_streams_from_the_bucket(s3: S3) -> None:
    import webdataset as wds

    base = f"{s3.url}/datasets/mouse_123"
    export_test_frames(base, frames=40, height=16, width=16, shard_size=20_000, progress=False)
    code = _block("py", "gopen_schemes").replace("s3://lab-data/datasets/mouse_123", base)
    code = code.replace("    pass  # train", "    seen.append(images)")
    namespace: dict = {"seen": []}
    try:
        exec(compile(code, "README.md", "exec"), namespace)
    finally:
        wds.gopen_schemes.pop("s3", None)
    images = np.concatenate(namespace["seen"])
    assert images.shape == (40, 16, 16) and images.dtype == np.uint16


def test_yaml_example_is_a_valid_config(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(_block("yaml", "storage_options"))
    values = load_config_file(path)
    assert values["storage_options"] == {
        "endpoint_url": "https://s3.lab.example.org",
        "profile": "lab",
    }


def test_shell_example_uses_only_existing_commands() -> None:
    commands = [
        line for line in _block("sh", "toile verify").splitlines() if line.startswith("toile")
    ]
    assert [c.split()[1] for c in commands] == ["export", "export", "info", "verify"]
