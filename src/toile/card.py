"""The dataset card: a ``README.md`` beside the shards that Hugging Face ``datasets`` reads.

``datasets.load_dataset(DATASET_DIR, split="train")`` reads the card's YAML
header: ``configs`` points its webdataset builder at the shards, and
``dataset_info.features`` types the columns, so that the builder does not
infer them from the first samples (which gives nested lists of Python ints,
and fails on a dataset mixing 1- and 2-channel recordings). What datasets 5.2
honours, checked against its webdataset builder and numpy formatter:

* frames of one shape and dtype: ``npy`` is an ``ArrayND(shape, dtype)``
  column (first dimension ``null`` when only it varies). The numpy formatter
  casts every integer array to int64 and every float array to float32 unless
  told otherwise, so ``.with_format("numpy", dtype=None)`` gives the images in
  their source dtype and shape;
* frames of several shapes (different channel counts, sizes or dtypes): no
  Arrow array type holds them all, so ``npy`` is a ``Json`` column (nested
  lists; slower); ``.with_format("numpy", columns=["npy"],
  output_all_columns=True, dtype=DTYPE)`` gives each image in its own shape
  and, for one source dtype, that dtype;
* ``json`` (the metadata) is a ``Json`` column: recordings with different
  metadata fields load together; ``msgpack`` (``--format atdata``) is binary.

The card is written by the export after the manifest, from the manifest alone.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: File name of the card in the dataset directory.
CARD_NAME = "README.md"
#: First line of the card's body; a README.md without it is the user's and is left alone.
CARD_MARKER = "<!-- written by toile from {manifest}; rewritten on every export -->"
#: ``datasets`` feature names of the ArrayND types, by number of dimensions.
_ARRAY_TYPES = {2: "array2_d", 3: "array3_d", 4: "array4_d", 5: "array5_d"}


def frame_shapes(recordings: list[dict[str, Any]]) -> dict[str, Any]:
    """Whether every recording has the same frame shape and dtype, and the distinct ones.

    ``{"uniform": bool, "shapes": [{"shape": [...], "dtype": str, "recordings": n}]}``,
    shapes in order of first appearance; the form of the manifest's ``frame_shapes``.
    """
    groups: dict[tuple[tuple[int, ...], str], int] = {}
    for recording in recordings:
        key = (tuple(int(n) for n in recording.get("frame_shape") or []), str(recording["dtype"]))
        groups[key] = groups.get(key, 0) + 1
    return {
        "uniform": len(groups) <= 1,
        "shapes": [
            {"shape": list(shape), "dtype": dtype, "recordings": count}
            for (shape, dtype), count in groups.items()
        ],
    }


def mixed_shapes_warning(recordings: list[dict[str, Any]]) -> str | None:
    """The one warning an export gives when its frames do not all share a shape and dtype."""
    shapes = frame_shapes(recordings)
    if shapes["uniform"]:
        return None
    found = "; ".join(
        f"{'x'.join(map(str, s['shape']))} {s['dtype']} ({s['recordings']} recording(s))"
        for s in shapes["shapes"]
    )
    return (
        f"the recordings' frames differ in shape or dtype ({found}): batching frames across "
        "recordings will fail downstream; export them separately, or use --channel to match them"
    )


def image_feature(recordings: list[dict[str, Any]]) -> dict[str, Any] | str:
    """The ``datasets`` feature (as card YAML) of the ``npy`` column."""
    shapes = frame_shapes(recordings)["shapes"]
    if not shapes:
        return "json"
    dims = {len(s["shape"]) for s in shapes}
    dtypes = {s["dtype"] for s in shapes}
    tails = {tuple(s["shape"][1:]) for s in shapes}
    if len(dims) == 1 and len(dtypes) == 1 and len(tails) == 1 and next(iter(dims)) in _ARRAY_TYPES:
        shape: list[int | None] = list(shapes[0]["shape"])
        if len(shapes) > 1:
            shape[0] = None
        return {_ARRAY_TYPES[len(shape)]: {"shape": shape, "dtype": next(iter(dtypes))}}
    return "json"


def _load_hint(feature: dict[str, Any] | str, recordings: list[dict[str, Any]]) -> str:
    if feature != "json":
        return 'dataset = load_dataset(DATASET_DIR, split="train").with_format("numpy", dtype=None)'
    dtypes = {str(r["dtype"]) for r in recordings}
    dtype = next(iter(dtypes)) if len(dtypes) == 1 else "None"
    dtype = f'"{dtype}"' if dtype != "None" else dtype
    return (
        'dataset = load_dataset(DATASET_DIR, split="train").with_format(\n'
        f'    "numpy", columns=["npy"], output_all_columns=True, dtype={dtype}\n)'
    )


def dataset_card(manifest: dict[str, Any], manifest_name: str) -> str:
    """The card's text for a manifest (as written to ``{stem}.manifest.json``)."""
    import yaml

    recordings = list(manifest.get("recordings", []))
    stem = manifest["stem"]
    suffix = ".tar.gz" if manifest.get("compressed") else ".tar"
    if manifest["encoding"] == "atdata":
        features: list[dict[str, Any]] = [{"name": "msgpack", "dtype": "binary"}]
        feature: dict[str, Any] | str = "binary"
    else:
        feature = image_feature(recordings)
        features = [{"name": "npy", "dtype": feature}, {"name": "json", "dtype": "json"}]
    header = {
        "dataset_info": {
            "features": [
                {"name": "__key__", "dtype": "string"},
                *features,
                {"name": "__url__", "dtype": "string"},
            ]
        },
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": "train", "path": f"{stem}-*{suffix}"}],
            }
        ],
        "tags": ["microscopy", "webdataset", "toile"],
    }
    totals = manifest.get("totals", {})
    lines = [
        "---",
        yaml.safe_dump(header, sort_keys=False).rstrip(),
        "---",
        CARD_MARKER.format(manifest=manifest_name),
        "",
        f"# {stem}",
        "",
        f"{totals.get('samples', sum(r.get('frames', 0) for r in recordings)):,} frames of "
        f"{len(recordings)} recording(s) in {totals.get('shards', len(manifest['shards']))} "
        f"WebDataset shard(s) (`{manifest['url_pattern']}`), one sample per frame, written by "
        f"toile {manifest.get('toile_version', '')}. `{manifest_name}` lists every shard "
        "with its size and sha256 and every recording with its metadata.",
        "",
        "| recording | frames | frame shape | dtype |",
        "| --- | ---: | --- | --- |",
    ]
    for r in recordings:
        shape = "x".join(str(n) for n in r.get("frame_shape") or [])
        lines.append(f"| {r.get('name')} | {r.get('frames')} | {shape} | {r.get('dtype')} |")
    lines += ["", "## Loading", ""]
    if manifest["encoding"] == "atdata":
        lines += [
            "Samples are packed `toile.schema.Frame`s (`.msgpack`): read them with",
            "`toile.open(DATASET_DIR)` or `atdata.Dataset[toile.schema.Frame](url)`;",
            "Hugging Face `datasets` sees each as one binary `msgpack` column.",
        ]
    else:
        uniform = frame_shapes(recordings)["uniform"]
        lines += [
            "```python",
            "from datasets import load_dataset",
            "",
            _load_hint(feature, recordings),
            'image, metadata = dataset[0]["npy"], dataset[0]["json"]',
            "```",
            "",
            "or with toile: `toile.open(DATASET_DIR)` iterates frames with their metadata.",
        ]
        if not uniform:
            lines += [
                "",
                "The frames differ in shape or dtype between recordings: batch them per "
                "recording (`metadata['recording_index']`).",
            ]
    return "\n".join(lines) + "\n"


#: What every card written by toile contains (the start of CARD_MARKER).
_MARKER_PREFIX = "<!-- written by toile from "


def card_for(output: Any, manifest: dict[str, Any], manifest_name: str) -> str | None:
    """The card to write into ``output`` (a :class:`toile.storage.base.Storage`).

    None, with a warning, when ``output`` holds a ``README.md`` that toile did not write.
    """
    if output.exists(CARD_NAME):
        try:
            existing = output.read_text(CARD_NAME)
        except (OSError, UnicodeDecodeError):
            existing = ""
        if _MARKER_PREFIX not in existing:
            log.warning(
                "%s exists and was not written by toile: no dataset card written",
                output.url_of(CARD_NAME),
            )
            return None
    return dataset_card(manifest, manifest_name)


def write_dataset_card(directory: str | Path, manifest: dict[str, Any], manifest_name: str) -> bool:
    """Write ``README.md`` into the dataset directory; False (and a warning) if one is the user's.

    A card written earlier by toile is replaced; any other ``README.md`` is kept.
    """
    path = Path(directory) / CARD_NAME
    if path.exists():
        try:
            existing = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            existing = ""
        if _MARKER_PREFIX not in existing:
            log.warning("%s exists and was not written by toile: no dataset card written", path)
            return False
    temporary = path.with_name(f".{CARD_NAME}.tmp")
    temporary.write_text(dataset_card(manifest, manifest_name), encoding="utf-8")
    temporary.replace(path)
    return True
