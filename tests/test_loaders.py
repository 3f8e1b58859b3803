"""The loaders people use: a PyTorch DataLoader-style loop, and Hugging Face ``datasets``.

torch is not installed here (its wheels pull a multi-GB CUDA stack), so the DataLoader
test does what ``DataLoader(pipeline, batch_size=None, num_workers=N)`` does with an
IterableDataset: it pickles the pipeline into N spawned worker processes and tells each
which worker it is, through the ``WORKER``/``NUM_WORKERS`` environment variables that
``webdataset.utils.pytorch_worker_info`` reads when torch's ``get_worker_info()`` is not
there (the same information ``wds.split_by_worker`` uses).
"""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest

from toile.card import dataset_card, frame_shapes, image_feature, write_dataset_card
from toile.config import make_config
from toile.dataset import open_dataset
from toile.export import export_frames, export_test_frames
from toile.synthetic import MovieSpec, generate_frames

FRAMES = 7
SHAPE = (16, 16)
#: Two 16x16 uint16 npy samples per shard: four shards of a 7-frame recording.
SMALL_SHARDS = 3 * 2048


def _export(path: Path, **options) -> Path:
    options = {"frames": FRAMES, "height": SHAPE[0], "width": SHAPE[1], **options}
    export_test_frames(path, progress=False, **options)
    return path


def _worker_keys(pipeline, worker: int, workers: int) -> list[str]:
    """One DataLoader worker: it sees its id and the worker count, and iterates its copy."""
    os.environ["WORKER"], os.environ["NUM_WORKERS"] = str(worker), str(workers)
    return [sample["__key__"] for sample in pipeline]


def _data_loader(pipeline, workers: int) -> list[list[str]]:
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        return pool.starmap(_worker_keys, [(pipeline, w, workers) for w in range(workers)])


def _stock_pipeline(dataset_dir: Path):
    """The README's stock WebDataset recipe (without shuffling, to compare keys)."""
    import webdataset as wds

    manifest = json.loads(next(dataset_dir.glob("*.manifest.json")).read_text())
    url = str(dataset_dir / manifest["url_pattern"])
    return wds.WebDataset(url, shardshuffle=False, empty_check=False).decode()


@pytest.mark.parametrize("shard_size", [None, SMALL_SHARDS], ids=["one-shard", "three-shards"])
def test_two_workers_read_every_sample_once(tmp_path, shard_size):
    out = _export(tmp_path / "ds", shard_size=shard_size)
    dataset = open_dataset(out)
    n_shards = len(dataset.manifest.shards)
    assert (n_shards == 1) == (shard_size is None) and n_shards <= 4
    expected = [f"sample-000000-{i:03d}" for i in range(FRAMES)]

    per_worker = _data_loader(dataset.webdataset(), workers=2)
    assert sorted(k for keys in per_worker for k in keys) == expected
    assert all(per_worker), "every worker gets work, even with one shard"

    stock = _data_loader(_stock_pipeline(out), workers=2)
    assert sorted(k for keys in stock for k in keys) == expected
    if n_shards == 1:
        assert [len(keys) for keys in stock] == [FRAMES, 0]


def test_more_workers_than_shards_with_shuffling(tmp_path):
    out = _export(tmp_path / "ds", shard_size=SMALL_SHARDS)
    pipeline = open_dataset(out).webdataset(shuffle=4, seed=3)
    per_worker = _data_loader(pipeline, workers=4)
    keys = [k for worker in per_worker for k in worker]
    assert sorted(keys) == [f"sample-000000-{i:03d}" for i in range(FRAMES)]


# --------------------------------------------------------------------------------------
# Hugging Face datasets


@pytest.fixture
def load_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    datasets = pytest.importorskip("datasets")
    cache = tmp_path / "hf-cache"

    def load(path: Path):
        return datasets.load_dataset(str(path), split="train", cache_dir=str(cache))

    return load


def _with_card(out: Path) -> Path:
    manifest = next(out.glob("*.manifest.json"))
    assert write_dataset_card(out, json.loads(manifest.read_text()), manifest.name)
    return out


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("compressed", [False, True])
def test_hugging_face_loads_arrays_of_the_source_dtype_and_shape(
    tmp_path, load_dataset, channels, compressed
):
    out = _with_card(
        _export(tmp_path / "ds", channels=channels, compressed=compressed, shard_size=SMALL_SHARDS)
    )
    loaded = load_dataset(out).with_format("numpy", dtype=None)
    assert len(loaded) == FRAMES
    spec = MovieSpec(frames=FRAMES, height=SHAPE[0], width=SHAPE[1], channels=channels, seed=0)
    for row, pixels in zip(loaded, generate_frames(spec), strict=True):
        assert row["npy"].dtype == np.uint16
        assert row["npy"].shape == pixels.shape
        np.testing.assert_array_equal(row["npy"], pixels)
    assert [str(k) for k in loaded["__key__"]] == [f"sample-000000-{i:03d}" for i in range(FRAMES)]
    assert int(loaded[3]["json"]["frame"]["index"]) == 3
    batch = loaded[:4]["npy"]
    assert batch.dtype == np.uint16 and batch.shape == (4, *spec_shape(channels))


def spec_shape(channels: int) -> tuple[int, ...]:
    return SHAPE if channels == 1 else (channels, *SHAPE)


def test_hugging_face_loads_a_mix_of_one_and_two_channel_recordings(tmp_path, load_dataset):
    from toile.writers import write_ome_tiff

    inputs = tmp_path / "in"
    inputs.mkdir()
    expected = {}
    for name, channels in (("a_one.ome.tif", 1), ("b_two.ome.tif", 2)):
        spec = MovieSpec(frames=3, height=12, width=10, channels=channels, seed=channels)
        frames = list(generate_frames(spec))
        write_ome_tiff(inputs / name, frames, channels=[f"ch{i}" for i in range(channels)])
        expected[name] = frames
    out = tmp_path / "mixed"
    export_frames(make_config([str(inputs)], out, workers=1, progress=False))
    manifest = json.loads(next(out.glob("*.manifest.json")).read_text())
    assert not frame_shapes(manifest["recordings"])["uniform"]
    assert image_feature(manifest["recordings"]) == "json"
    _with_card(out)
    loaded = load_dataset(out).with_format(
        "numpy", columns=["npy"], output_all_columns=True, dtype="uint16"
    )
    rows = list(loaded)
    assert len(rows) == 6
    images = [row["npy"] for row in rows]
    for image, pixels in zip(
        images, expected["a_one.ome.tif"] + expected["b_two.ome.tif"], strict=True
    ):
        assert image.dtype == np.uint16 and image.shape == pixels.shape
        np.testing.assert_array_equal(image, pixels)
    assert rows[4]["json"]["frame"]["index"] == 1  # the metadata stays plain Python


def test_card_types_and_refuses_a_foreign_readme(tmp_path, caplog):
    out = _export(tmp_path / "ds", channels=2)
    manifest = json.loads(next(out.glob("*.manifest.json")).read_text())
    card = dataset_card(manifest, "ds.manifest.json")
    import yaml

    header = yaml.safe_load(card.split("---\n")[1])
    features = {f["name"]: f["dtype"] for f in header["dataset_info"]["features"]}
    assert features["npy"] == {"array3_d": {"shape": [2, 16, 16], "dtype": "uint16"}}
    assert features["json"] == "json"
    assert header["configs"][0]["data_files"] == [{"split": "train", "path": "ds-*.tar"}]
    (out / "README.md").write_text("my own notes\n")
    assert not write_dataset_card(out, manifest, "ds.manifest.json")
    assert (out / "README.md").read_text() == "my own notes\n"
    assert "not written by toile" in caplog.text
    (out / "README.md").unlink()
    assert write_dataset_card(out, manifest, "ds.manifest.json")
    assert write_dataset_card(out, manifest, "ds.manifest.json")  # its own card is replaced


def test_frame_shapes_summarises_recordings():
    recordings = [
        {"frame_shape": [4, 4], "dtype": "uint16"},
        {"frame_shape": [2, 4, 4], "dtype": "uint16"},
        {"frame_shape": [4, 4], "dtype": "uint16"},
    ]
    assert frame_shapes(recordings) == {
        "uniform": False,
        "shapes": [
            {"shape": [4, 4], "dtype": "uint16", "recordings": 2},
            {"shape": [2, 4, 4], "dtype": "uint16", "recordings": 1},
        ],
    }
    assert frame_shapes(recordings[:1])["uniform"]
    assert image_feature(recordings[:1]) == {"array2_d": {"shape": [4, 4], "dtype": "uint16"}}
    varying_height = [
        {"frame_shape": [4, 4], "dtype": "uint8"},
        {"frame_shape": [6, 4], "dtype": "uint8"},
    ]
    assert image_feature(varying_height) == {"array2_d": {"shape": [None, 4], "dtype": "uint8"}}


# --------------------------------------------------------------------------------------
# The README's examples (fenced as ``py``: torch is not installed, and test_readme runs
# every ``python`` block as it stands)

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_block(marker: str) -> str:
    import re

    blocks = re.findall(r"```py\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
    [block] = [b for b in blocks if marker in b]
    return block


def _worker_items(pipeline, worker: int, workers: int) -> list:
    os.environ["WORKER"], os.environ["NUM_WORKERS"] = str(worker), str(workers)
    return list(pipeline)


class StandInDataLoader:
    """What ``DataLoader(iterable, batch_size=None, num_workers=N)`` does, without torch:
    the iterable is pickled into N spawned workers, each told its id, and their items are
    interleaved."""

    def __init__(self, dataset, batch_size=None, num_workers: int = 0) -> None:
        assert batch_size is None
        self.dataset, self.num_workers = dataset, max(num_workers, 1)

    def __iter__(self):
        with multiprocessing.get_context("spawn").Pool(self.num_workers) as pool:
            arguments = [(self.dataset, w, self.num_workers) for w in range(self.num_workers)]
            per_worker = pool.starmap(_worker_items, arguments)
        longest = max(len(items) for items in per_worker)
        for index in range(longest):
            for items in per_worker:
                if index < len(items):
                    yield items[index]


def test_readme_pytorch_example_runs_with_workers(tmp_path):
    out = _export(tmp_path / "demo", frames=40)
    code = _readme_block("DataLoader(").replace("/tmp/demo", str(out))
    code = code.replace("from torch.utils.data import DataLoader\n", "")
    namespace: dict = {"DataLoader": StandInDataLoader}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["images"].dtype == np.uint16
    seen = []
    for batch in namespace["loader"]:
        seen.extend(m["frame"]["index"] for m in batch["metadata"])
        assert batch["image"].shape == (len(batch["metadata"]), *SHAPE)
    assert sorted(seen) == list(range(40))


def test_readme_hugging_face_example_runs(tmp_path, load_dataset, monkeypatch):
    import datasets

    out = _export(tmp_path / "demo")
    if not (out / "README.md").exists():  # the export writes the card; older layouts did not
        _with_card(out)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    code = _readme_block('load_dataset("/tmp/demo"').replace("/tmp/demo", str(out))
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["image"].dtype == np.uint16 and namespace["image"].shape == SHAPE
    assert namespace["batch"].shape == (FRAMES, *SHAPE)
    assert int(namespace["metadata"]["frame"]["index"]) == 0


def test_hugging_face_loads_an_atdata_dataset_as_binary_samples(tmp_path, load_dataset):
    from toile.samples import unpack_frame

    out = _export(tmp_path / "at", format="atdata")
    assert (out / "README.md").is_file()  # written by the export
    loaded = load_dataset(out)
    assert len(loaded) == FRAMES and set(loaded.features) == {"__key__", "msgpack", "__url__"}
    image, metadata = unpack_frame(loaded[2]["msgpack"])
    expected = list(generate_frames(MovieSpec(FRAMES, *SHAPE, seed=0)))
    np.testing.assert_array_equal(image, expected[2])
    assert metadata["frame"]["index"] == 2
