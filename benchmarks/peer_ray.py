"""Ray Data's ``write_webdataset``, as its documentation recommends: rows, then a sink.

Ranges of frames become rows of ``{"__key__", "npy": frame, "json": metadata}`` in a
``flat_map``; ``write_webdataset`` writes the tar files. It has no byte cap (its files
follow Ray's blocks), so ``--cap`` is only recorded.

Usage: ``python benchmarks/peer_ray.py INPUT OUTPUT_DIR --cap BYTES`` where INPUT is an
OME-TIFF file. Runs in its own environment (see peers.py).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

# Ray starts its workers with ``uv run`` when it finds ``uv run`` among the driver's
# ancestors (the benchmark runs under it); they would then run in toile's project, which
# has no Ray. This peer has its own environment, which the workers must use.
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

import ray  # noqa: E402
from peer_common import (  # noqa: E402
    blocks,
    frame_count,
    frame_metadata,
    movie_metadata,
    read_frames,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--cap", type=int, required=True)
    args = parser.parse_args()
    path = args.input.resolve()
    meta = movie_metadata(path)
    stem = path.name.split(".")[0]

    def rows(item: dict) -> list[dict]:
        return [
            {
                "__key__": f"{stem}-{index:06d}",
                "npy": frame,
                "json": frame_metadata(meta, path, index, frame),
            }
            for index, frame in enumerate(
                read_frames(path, item["start"], item["stop"]), item["start"]
            )
        ]

    ray.init(
        num_cpus=os.cpu_count(),
        include_dashboard=False,
        logging_level=logging.WARNING,
        log_to_driver=False,
    )
    items = [{"start": start, "stop": stop} for start, stop in blocks(frame_count(path))]
    ray.data.from_items(items).flat_map(rows).write_webdataset(str(args.output.resolve()))
    ray.shutdown()


if __name__ == "__main__":
    main()
