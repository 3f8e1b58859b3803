"""The README's training examples, run against real exported datasets.

Each example is a self-contained snippet that only needs ``dataset_dir`` (a
dataset directory written by ``toile export``); the tests ``exec`` them and
check what they computed.
"""

from __future__ import annotations

import numpy as np
import pytest

from toile.export import export_test_frames

#: (a) A training loop with stock webdataset: shuffle, decode, batch.
WEBDATASET_EXAMPLE = """
import json
from pathlib import Path

import numpy as np
import webdataset as wds

manifest_path = next(Path(dataset_dir).glob("*.manifest.json"))
manifest = json.loads(manifest_path.read_text())
url = str(Path(dataset_dir) / manifest["url_pattern"])  # e.g. .../ds-{000000..000002}.tar

dataset = (
    wds.WebDataset(url, shardshuffle=100)  # shuffle the shard order
    .shuffle(100)  # and samples within a 100-sample buffer
    .decode()  # .npy -> numpy array, .json -> dict
    .to_tuple("npy", "json")
    .batched(16)  # images stacked to (B, H, W), metadata as a list of dicts
)

batch_shapes = []
seen = set()
for images, metadata in dataset:  # one epoch
    x = images.astype(np.float32) / np.iinfo(images.dtype).max  # the model's input
    t = np.array([m["frame"]["t"] for m in metadata])  # seconds since recording start
    batch_shapes.append(x.shape)
    seen.update((m["recording_index"], m["frame"]["index"]) for m in metadata)
"""

#: (b) atdata: typed samples, viewed through a lens as bare images.
ATDATA_EXAMPLE = """
import json
from pathlib import Path

import atdata
import toile.schema

manifest_path = next(Path(dataset_dir).glob("*.manifest.json"))
manifest = json.loads(manifest_path.read_text())
url = str(Path(dataset_dir) / manifest["url_pattern"])

frames = atdata.Dataset[toile.schema.Frame](url)  # image + metadata per sample
images = frames.as_type(toile.schema.ImageSample)  # the Frame -> ImageSample lens

# In order, with metadata: batch.image is (B, H, W), batch.metadata a list of dicts.
first_times = []
for batch in frames.ordered(batch_size=8):
    first_times.append(batch.metadata[0]["frame"]["t"])

# Shuffled, images only, for training: batch.data is (B, H, W).
batch_shapes = []
for batch in images.shuffled(buffer_samples=100, batch_size=8):
    batch_shapes.append(batch.data.shape)
"""

FRAMES = 20
RECORDINGS = 2
HEIGHT, WIDTH = 24, 32


def _dataset(tmp_path, **options) -> str:
    out = tmp_path / "ds"
    export_test_frames(
        out,
        frames=FRAMES,
        height=HEIGHT,
        width=WIDTH,
        recordings=RECORDINGS,
        shard_size=30_000,
        progress=False,
        **options,
    )
    return str(out)


def _run(example: str, dataset_dir: str) -> dict:
    namespace: dict = {"dataset_dir": dataset_dir}
    exec(compile(example, "<example>", "exec"), namespace)
    return namespace


@pytest.mark.parametrize("compressed", [False, True])
def test_webdataset_training_loop(tmp_path, compressed):
    dataset_dir = _dataset(tmp_path, compressed=compressed)
    result = _run(WEBDATASET_EXAMPLE, dataset_dir)
    assert result["manifest"]["totals"]["shards"] > 1
    shapes = result["batch_shapes"]
    assert shapes == [(16, HEIGHT, WIDTH)] * 2 + [(8, HEIGHT, WIDTH)]
    assert result["seen"] == {(r, f) for r in range(RECORDINGS) for f in range(FRAMES)}
    x = result["x"]
    assert x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert result["t"].shape == (8,)


def test_atdata_with_lenses(tmp_path):
    dataset_dir = _dataset(tmp_path, format="atdata")
    result = _run(ATDATA_EXAMPLE, dataset_dir)
    assert result["manifest"]["totals"]["shards"] > 1
    # 40 frames in order: batches start at frames 0, 8, 16 of recording 0, then 4, 12 of recording 1.
    increment = result["manifest"]["recordings"][0]["metadata"]["time_increment"]
    assert result["first_times"] == pytest.approx([i * increment for i in (0, 8, 16, 4, 12)])
    assert result["batch_shapes"] == [(8, HEIGHT, WIDTH)] * 5
