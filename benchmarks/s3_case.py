"""Benchmark case: object storage, on a local S3 API server (moto's, on 127.0.0.1).

Measured in one run, against the same server:

* **upload floor**: ``s3fs`` ``put_file`` of the input OME-TIFF (a plain multipart upload);
* **export to the bucket**: ``toile export frames INPUT s3://bench/ds`` of that file
  (shards uploaded straight under their final keys, hashed while written), as MB/s of
  shard bytes and as a ratio of the upload floor;
* **reading inputs from the bucket**: the requests and bytes it costs to read a
  900-frame OME-TIFF through :func:`toile.storage.open_input` (range requests, block
  cache), for tifffile's own layout and for one IFD per frame next to its pixels, at a
  few block sizes; and ``toile export frames s3://bench/raw/rec.ome.tif OUT`` when the
  input side is wired.

Requests are counted on the client side with botocore's event hooks on the s3fs
client (every S3 API call, including retries' first attempts), bytes from the
``ContentLength`` of each ``GetObject`` answer. ``run(workdir)`` returns the figures;
``python benchmarks/s3_case.py [WORKDIR] [--frames N]`` prints them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from s3_server import ACCESS_KEY, SECRET_KEY, MotoServer  # noqa: E402

MB = 1e6
MIB = 1024 * 1024
BLOCK_SIZES = (1 * MIB, 4 * MIB, 8 * MIB, 16 * MIB)
#: Alternating runs of the upload floor and the export; medians are reported.
RUNS = 3


class Counting:
    """Counts S3 API calls and downloaded bytes of one s3fs filesystem's client."""

    def __init__(self, fs: Any) -> None:
        self.calls: Counter[str] = Counter()
        self.bytes = 0
        client = fs.s3
        client.meta.events.register("before-call.s3", self._before)
        client.meta.events.register("after-call.s3", self._after)

    def _before(self, event_name: str, **kw: Any) -> None:
        self.calls[event_name.rsplit(".", 1)[1]] += 1

    def _after(self, event_name: str, parsed: dict, **kw: Any) -> None:
        if event_name.endswith(".GetObject"):
            self.bytes += int(parsed.get("ContentLength") or 0)

    def reset(self) -> None:
        self.calls.clear()
        self.bytes = 0

    def snapshot(self) -> dict:
        return {
            "requests": sum(self.calls.values()),
            "by_call": dict(self.calls),
            "bytes": self.bytes,
        }


def _write_inputs(workdir: Path, frames: int, size: int) -> dict[str, Path]:
    """The same movie twice: tifffile's layout, and one IFD per frame beside its pixels."""
    rng = np.random.default_rng(0)
    movie = rng.integers(0, 4096, (frames, size, size), dtype=np.uint16)
    paths = {"tifffile": workdir / "rec.ome.tif", "ifd-per-frame": workdir / "pages.tif"}
    tifffile.imwrite(paths["tifffile"], movie, photometric="minisblack", ome=True)
    with tifffile.TiffWriter(paths["ifd-per-frame"]) as tif:
        for frame in movie:
            tif.write(frame, photometric="minisblack", contiguous=False)
    return paths


def _read_cost(url: str, count: Counting, block_size: int, expected: int) -> dict:
    """Requests and bytes to walk every IFD, then to read every plane, through open_input."""
    from toile.storage import open_input

    count.reset()
    started = time.perf_counter()
    with open_input(url, block_size=block_size) as handle, tifffile.TiffFile(handle) as tif:
        offsets = [page.offset for page in tif.pages]
        walk = {**count.snapshot(), "seconds": time.perf_counter() - started}
        for page in tif.pages:
            page.asarray()
    assert len(offsets) == expected
    total = {**count.snapshot(), "seconds": time.perf_counter() - started}
    return {"block_size": block_size, "ifd_walk": walk, "all_frames": total}


def _export(inputs: list[str], output: str) -> dict:
    from toile.config import make_config
    from toile.export import export_frames

    config = make_config(inputs, output, overwrite=True, progress=False)
    started = time.perf_counter()
    result = export_frames(config)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "bytes": result.bytes, "shards": len(result.shards)}


def run(workdir: Path, frames: int = 900, size: int = 256) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    paths = _write_inputs(workdir, frames, size)
    figures: dict[str, Any] = {
        "frames": frames,
        "frame": f"{size}x{size} uint16",
        "input_bytes": paths["tifffile"].stat().st_size,
    }
    with MotoServer() as server:
        os.environ.update(
            AWS_ACCESS_KEY_ID=ACCESS_KEY,
            AWS_SECRET_ACCESS_KEY=SECRET_KEY,
            AWS_ENDPOINT_URL=server.endpoint,
            AWS_DEFAULT_REGION="us-east-1",
        )
        import s3fs

        fs = s3fs.S3FileSystem()
        fs.mkdir("bench")
        count = Counting(fs)

        fs.put_file(str(paths["tifffile"]), "bench/raw/rec.ome.tif")
        fs.put_file(str(paths["ifd-per-frame"]), "bench/raw/pages.tif")
        puts, exports = [], []
        try:
            for run_index in range(RUNS):  # alternating, medians reported
                started = time.perf_counter()
                fs.put_file(str(paths["tifffile"]), f"bench/put-{run_index}/rec.ome.tif")
                puts.append(time.perf_counter() - started)
                exports.append(_export([str(paths["tifffile"])], f"s3://bench/ds-{run_index}"))
        except Exception as error:  # reported, not fatal: the case also measures inputs
            figures["export_to_s3"] = {"error": f"{type(error).__name__}: {error}"}
        put = statistics.median(puts)
        figures["put"] = {"seconds": put, "mb_per_s": figures["input_bytes"] / put / MB}
        if exports:
            export = dict(exports[0])
            export["seconds"] = statistics.median(e["seconds"] for e in exports)
            export["mb_per_s"] = export["bytes"] / export["seconds"] / MB
            export["ratio_to_put"] = export["mb_per_s"] / figures["put"]["mb_per_s"]
            figures["export_to_s3"] = export

        figures["read"] = {
            layout: [
                _read_cost(f"s3://bench/raw/{name}", count, block, frames) for block in BLOCK_SIZES
            ]
            for layout, name in (("tifffile", "rec.ome.tif"), ("ifd-per-frame", "pages.tif"))
        }
        count.reset()
        try:
            with tempfile.TemporaryDirectory(dir=workdir) as out:
                export = _export(["s3://bench/raw/rec.ome.tif"], str(Path(out) / "ds"))
            figures["export_from_s3"] = {**export, **count.snapshot()}
        except Exception as error:
            figures["export_from_s3"] = {"error": f"{type(error).__name__}: {error}"}
    return figures


def report(figures: dict) -> str:
    lines = [
        f"input: {figures['frames']} frames of {figures['frame']}, "
        f"{figures['input_bytes'] / MB:.1f} MB OME-TIFF",
        f"s3fs put_file (upload floor, median of {RUNS}): {figures['put']['seconds']:.2f} s, "
        f"{figures['put']['mb_per_s']:.0f} MB/s",
    ]
    export = figures["export_to_s3"]
    if "error" in export:
        lines.append(f"export to s3://: not measured ({export['error']})")
    else:
        lines.append(
            f"export to s3:// (median of {RUNS}): {export['seconds']:.2f} s, "
            f"{export['bytes'] / MB:.1f} MB in "
            f"{export['shards']} shard(s), {export['mb_per_s']:.0f} MB/s = "
            f"{export['ratio_to_put']:.2f}x the upload floor"
        )
    lines.append("reading the OME-TIFF from the bucket (open_input, block cache):")
    lines.append("  layout          block   IFD walk: req  MB     all frames: req  MB      s")
    for layout, rows in figures["read"].items():
        for row in rows:
            walk, total = row["ifd_walk"], row["all_frames"]
            lines.append(
                f"  {layout:<14} {row['block_size'] // MIB:>3} MiB  {walk['requests']:>13} "
                f"{walk['bytes'] / MB:>5.1f}  {total['requests']:>15} {total['bytes'] / MB:>6.1f} "
                f"{total['seconds']:>6.2f}"
            )
    export = figures["export_from_s3"]
    if "error" in export:
        lines.append(f"export from s3://: not measured ({export['error']})")
    else:
        lines.append(
            f"export from s3://: {export['seconds']:.2f} s, {export['requests']} request(s) "
            f"{export['by_call']}, {export['bytes'] / MB:.1f} MB downloaded "
            f"({export['bytes'] / figures['input_bytes']:.2f}x the file)"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdir", nargs="?", type=Path)
    parser.add_argument("--frames", type=int, default=900)
    parser.add_argument("--size", type=int, default=256, help="frame height and width")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        figures = run(args.workdir or Path(scratch), args.frames, args.size)
    print(report(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
