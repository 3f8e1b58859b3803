"""litdata's ``optimize``, as its documentation recommends: a function over input items.

Each input item is a range of frames of the recording; the function yields one sample per
frame (``image``: the array, ``metadata``: its JSON text). ``chunk_bytes`` is the shard
cap and ``num_workers`` the number of worker processes.

Usage: ``python benchmarks/peer_litdata.py INPUT OUTPUT_DIR --cap BYTES --workers N``
where INPUT is an OME-TIFF file. Runs in its own environment (see peers.py).
"""

from __future__ import annotations

import argparse
import json
from functools import partial
from pathlib import Path

from litdata import optimize
from peer_common import blocks, frame_count, frame_metadata, movie_metadata, read_frames


def read_block(block: tuple[int, int], path: Path, meta: dict):
    start, stop = block
    for index, frame in enumerate(read_frames(path, start, stop), start):
        yield {
            "image": frame,
            "metadata": json.dumps(frame_metadata(meta, path, index, frame)),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--cap", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    meta = movie_metadata(args.input)
    optimize(
        fn=partial(read_block, path=args.input, meta=meta),
        inputs=blocks(frame_count(args.input)),
        output_dir=str(args.output),
        chunk_bytes=args.cap,
        num_workers=args.workers,
    )


if __name__ == "__main__":
    main()
