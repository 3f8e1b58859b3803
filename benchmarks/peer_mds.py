"""mosaicml-streaming's ``MDSWriter``, as its documentation recommends, frame by frame.

Columns ``image: ndarray`` and ``metadata: json``; ``size_limit`` is the shard cap, and
``--compression zstd`` is the counterpart of toile's ``--compressed``.

Usage: ``python benchmarks/peer_mds.py INPUT OUTPUT_DIR --cap BYTES [--compression zstd]``
where INPUT is an OME-TIFF file. Runs in its own environment (see peers.py).
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

from peer_common import frame_metadata, movie_metadata, read_frames


def _import_mds_writer() -> type:
    """``streaming.MDSWriter``, even where torchvision cannot be imported.

    ``import streaming`` imports its vision datasets, hence torchvision. torchvision's
    PyPI wheels are CUDA builds that fail to import next to a CPU-only torch ("operator
    torchvision::nms does not exist"); MDSWriter never uses torchvision, so then
    ``streaming.vision`` is replaced by an empty module. torch itself is still imported,
    as ``streaming`` always does.
    """
    try:
        import torchvision  # noqa: F401
    except (ImportError, RuntimeError):
        sys.modules["streaming.vision"] = types.ModuleType("streaming.vision")
    from streaming import MDSWriter

    return MDSWriter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--cap", type=int, required=True)
    parser.add_argument("--compression", default=None)
    args = parser.parse_args()
    meta = movie_metadata(args.input)
    columns = {"image": "ndarray", "metadata": "json"}
    with _import_mds_writer()(
        out=str(args.output),
        columns=columns,
        compression=args.compression,
        size_limit=args.cap,
    ) as writer:
        for index, frame in enumerate(read_frames(args.input)):
            writer.write(
                {"image": frame, "metadata": frame_metadata(meta, args.input, index, frame)}
            )


if __name__ == "__main__":
    main()
