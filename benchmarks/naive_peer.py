"""The hand-written conversion toile is compared with: read everything, then write every frame.

What a user writes without toile: ``tifffile.imread`` of the whole recording (for a
Prairie View series, of the master file, which follows the multi-file OME series), an
optional uint8 mapping of the whole stack in floating point, then every frame through
``webdataset.ShardWriter`` as ``{"__key__", "npy", "json"}``.

Usage: ``python benchmarks/naive_peer.py INPUT OUTPUT_DIR [--uint8] [--cap BYTES]`` where INPUT is an
OME-TIFF file or a Prairie View directory (its first ``.tif`` file by name is the master).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import tifffile
import webdataset as wds
from peer_common import movie_metadata

MAXSIZE = 850_000_000


def master_file(path: Path) -> Path:
    """The file to open: ``path`` itself, or a directory's first TIFF file by name."""
    if path.is_dir():
        tiffs = sorted(p for p in path.iterdir() if p.suffix.lower() in (".tif", ".tiff"))
        if not tiffs:
            raise SystemExit(f"{path}: no TIFF files")
        return tiffs[0]
    return path


def convert(source: Path, output: Path, to_uint8: bool, cap: int = MAXSIZE) -> int:
    """Convert one recording; return the number of frames written."""
    master = master_file(source)
    stack = tifffile.imread(master)
    meta = movie_metadata(master)
    if to_uint8:
        stack = np.floor(255 * stack.astype(float) / stack.max()).astype(np.uint8)
    stack = stack.reshape(-1, *stack.shape[-2:])
    output.mkdir(parents=True, exist_ok=True)
    stem = source.name.split(".")[0]
    dt = float(meta.get("TimeIncrement") or 0.0)
    with wds.ShardWriter(str(output / "naive-%06d.tar"), maxsize=cap, verbose=0) as sink:
        for index, frame in enumerate(stack):
            sink.write(
                {
                    "__key__": f"{stem}-{index:06d}",
                    "npy": frame,
                    "json": {
                        **meta,
                        "source": master.name,
                        "frame": index,
                        "t": index * dt,
                        "shape": list(frame.shape),
                        "dtype": str(frame.dtype),
                    },
                }
            )
    return len(stack)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--uint8", action="store_true")
    parser.add_argument("--cap", type=int, default=MAXSIZE, help="ShardWriter maxsize.")
    args = parser.parse_args()
    convert(args.input, args.output, args.uint8, args.cap)


if __name__ == "__main__":
    main()
