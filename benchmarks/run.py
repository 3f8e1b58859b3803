"""Wall time and peak memory of ``toile export frames`` against a hand-written peer and ``cat``.

Run from the repository root::

    uv run python benchmarks/run.py            # full run, writes benchmarks/results.md
    uv run python benchmarks/run.py --quick    # small frames, a smoke test of this script

Inputs are written with toile's own synthetic movies and writers, cached in the work
directory keyed by their parameters. Every contender runs as a subprocess; contenders
alternate (A B C A B C ...), outputs are deleted and dirty pages flushed before each run
(outside the timed region), and the inputs are read once untimed so the page cache is warm.
See benchmarks/README.md for what each case measures.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile

from toile import __version__ as toile_version
from toile.synthetic import MovieSpec, generate_frames
from toile.writers import write_imagej_stack, write_ome_tiff, write_prairie_series

log = logging.getLogger("benchmarks")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NAIVE = HERE / "naive_peer.py"
FLOOR = HERE / "floor.py"
#: Name of the floor contender: copy + SHA-256 + fsync, no encoding (see floor.py).
FLOOR_NAME = "floor: copy + sha256 + fsync"
#: Bumped when the way inputs are generated changes, so cached inputs are rebuilt.
INPUT_VERSION = 1
MIB = 1024 * 1024
LOAD_AT_START = " ".join(f"{x:.2f}" for x in os.getloadavg())

#: Figures the naive peer was measured at before (issue), printed next to ours.
PREVIOUS_NAIVE = {
    1: "2.1x raw, 491 MiB",
    2: "3.3x raw",
    3: "7.9x raw, 4.0 GiB",
}


# --------------------------------------------------------------------------------------
# Sizes


@dataclass(frozen=True)
class Sizes:
    """Frame counts and frame size of every case."""

    frames: int = 900
    height: int = 512
    width: int = 512
    batch_recordings: int = 8
    batch_frames: int = 200
    long_frames: int = 3600
    help_runs: int = 10
    #: Case 7: frame counts and side of the small-frame recordings.
    small_frames: tuple[int, int] = (3600, 36000)
    small_side: int = 16


FULL = Sizes()
QUICK = Sizes(
    frames=60,
    height=128,
    width=128,
    batch_frames=30,
    long_frames=240,
    help_runs=4,
    small_frames=(240, 2400),
)


# --------------------------------------------------------------------------------------
# Inputs


def _frames(n: int, sizes: Sizes, seed: int) -> Iterator[np.ndarray]:
    return generate_frames(MovieSpec(frames=n, height=sizes.height, width=sizes.width, seed=seed))


def _cached(target: Path, make: Callable[[Path], object]) -> Path:
    """``target``, made by ``make(path)`` unless it exists already.

    ``make`` writes under the final name (OME-XML records file names) in a scratch
    directory, and the result is renamed into place, so an interrupted run leaves no
    half-written input behind under the cached name.
    """
    if target.exists():
        return target
    scratch = target.with_name(f".partial-{target.name}")
    remove(scratch)
    scratch.mkdir(parents=True)
    started = time.perf_counter()
    make(scratch / target.name)
    (scratch / target.name).rename(target)
    scratch.rmdir()
    log.info("generated %s in %.1f s", target.name, time.perf_counter() - started)
    return target


def ome_stack(inputs: Path, n: int, sizes: Sizes, seed: int) -> Path:
    """A single-file OME-TIFF of ``n`` synthetic frames."""
    name = f"v{INPUT_VERSION}-stack-t{n}-{sizes.height}x{sizes.width}-seed{seed}.ome.tif"

    def make(tmp: Path) -> None:
        write_ome_tiff(
            tmp, _frames(n, sizes, seed), bigtiff=2 * n * sizes.height * sizes.width > 3 * 2**30
        )

    return _cached(inputs / name, make)


def prairie_series(inputs: Path, n: int, sizes: Sizes, seed: int) -> Path:
    """A Prairie View style directory of ``n`` single-page OME-TIFF files."""
    name = f"v{INPUT_VERSION}-prairie-t{n}-{sizes.height}x{sizes.width}-seed{seed}"
    return _cached(inputs / name, lambda tmp: write_prairie_series(tmp, _frames(n, sizes, seed)))


def imagej_stack(inputs: Path, n: int, sizes: Sizes, seed: int) -> Path:
    """An ImageJ hyperstack (no OME-XML) of ``n`` synthetic frames."""
    name = f"v{INPUT_VERSION}-imagej-t{n}-{sizes.height}x{sizes.width}-seed{seed}.tif"
    return _cached(inputs / name, lambda tmp: write_imagej_stack(tmp, _frames(n, sizes, seed)))


def batch_of_stacks(inputs: Path, sizes: Sizes) -> Path:
    """A directory of several OME-TIFF recordings."""
    n, count = sizes.batch_frames, sizes.batch_recordings
    name = f"v{INPUT_VERSION}-batch-{count}x-t{n}-{sizes.height}x{sizes.width}"

    def make(tmp: Path) -> None:
        tmp.mkdir()
        for i in range(count):
            write_ome_tiff(tmp / f"recording_{i + 1:02d}.ome.tif", _frames(n, sizes, 100 + i))

    return _cached(inputs / name, make)


def input_files(path: Path) -> list[Path]:
    """The files of an input, in name order (a file is its own list)."""
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file())
    return [path]


def warm_up(paths: list[Path]) -> None:
    """Read every input file once so that the timed runs start with a warm page cache."""
    buffer = bytearray(8 * MIB)
    for path in paths:
        for file in input_files(path):
            with open(file, "rb", buffering=0) as handle:
                while handle.readinto(buffer):
                    pass


def size_of(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size if path.exists() else 0


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------
# Measuring one process (tree)


@dataclass
class Run:
    """One timed run of one contender."""

    wall: float
    cpu: float  # seconds of user + system time, the process and every child it waited for
    max_rss: int  # bytes: the largest RSS of any one process of the tree
    tree_rss: int  # bytes: the largest sampled sum of RSS over the process tree
    output_bytes: int = 0


class TreeSampler(threading.Thread):
    """Polls the summed RSS of a process and all its descendants (every ``interval`` s)."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self._done = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")

    def _tree(self, pid: int) -> list[int]:
        pids, todo = [], [pid]
        while todo:
            p = todo.pop()
            pids.append(p)
            try:
                for task in os.listdir(f"/proc/{p}/task"):
                    with open(f"/proc/{p}/task/{task}/children") as handle:
                        todo.extend(int(c) for c in handle.read().split())
            except OSError:
                continue
        return pids

    def _rss(self) -> int:
        total = 0
        for p in self._tree(self.pid):
            try:
                with open(f"/proc/{p}/statm") as handle:
                    total += int(handle.read().split()[1]) * self._page
            except (OSError, IndexError, ValueError):
                continue
        return total

    def run(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, self._rss())
            self._done.wait(self.interval)

    def stop(self) -> None:
        self._done.set()
        self.join()


GNU_TIME = Path("/usr/bin/time")


def contender_env() -> dict[str, str]:
    """The environment of every contender: ours, with Python's bytecode cache allowed.

    With ``PYTHONDONTWRITEBYTECODE`` set (some sandboxes set it) every run would compile
    every imported module again: about 0.7 s and 40 MiB per Python process here, which an
    installed package never pays.
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def measure(argv: list[str], stdout: Path | None = None, sample: bool = True) -> Run:
    """Run ``argv`` to completion; its wall time, CPU time and peak RSS.

    Fails loudly on a non-zero exit. The command runs under GNU ``time``, whose ``%M`` is
    the largest RSS of the command or any descendant it waited for. Measured from this
    (large) Python process instead, the figure would include this process's own RSS:
    Linux keeps the pre-exec high-water mark of a forked child.
    """
    out = open(stdout, "wb") if stdout is not None else subprocess.DEVNULL  # noqa: SIM115
    with tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile("r") as stats:
        use_time = GNU_TIME.exists()
        full = [str(GNU_TIME), "-f", "%M %U %S", "-o", stats.name, *argv] if use_time else argv
        started = time.perf_counter()
        proc = subprocess.Popen(full, stdout=out, stderr=err, cwd=ROOT, env=contender_env())
        sampler = TreeSampler(proc.pid) if sample else None
        if sampler is not None:
            sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        if sampler is not None:
            sampler.stop()
        proc.returncode = os.waitstatus_to_exitcode(status)
        if stdout is not None:
            out.close()  # type: ignore[union-attr]
        if proc.returncode != 0:
            err.seek(0)
            tail = err.read().decode(errors="replace")[-2000:]
            raise SystemExit(f"{' '.join(argv[:4])} ... exited {proc.returncode}:\n{tail}")
        if use_time:
            kib, user, system = stats.read().split()[-3:]
            max_rss, cpu = int(kib) * 1024, float(user) + float(system)
        else:  # ru_maxrss (KiB) includes our own RSS, see above
            max_rss, cpu = usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime
    tree = max(sampler.peak if sampler else 0, max_rss)
    return Run(wall=wall, cpu=cpu, max_rss=max_rss, tree_rss=tree)


# --------------------------------------------------------------------------------------
# Contenders and cases


@dataclass
class Contender:
    """A command to time and the output it writes (deleted before every run)."""

    name: str
    argv: list[str]
    output: Path | None = None
    stdout: Path | None = None
    runs: list[Run] = field(default_factory=list)

    def median(self) -> float:
        return statistics.median(r.wall for r in self.runs)

    def best(self) -> float:
        return min(r.wall for r in self.runs)

    def cpu(self) -> float:
        return statistics.median(r.cpu for r in self.runs)

    def max_rss(self) -> int:
        return max(r.max_rss for r in self.runs)

    def tree_rss(self) -> int:
        return max(r.tree_rss for r in self.runs)


@dataclass
class Target:
    """A goal printed next to a figure: ``value <= limit`` (or ``>=`` when ``at_least``)."""

    label: str
    value: float
    limit: float
    at_least: bool = False
    unit: str = ""

    def passed(self) -> bool:
        return self.value >= self.limit if self.at_least else self.value <= self.limit

    def row(self) -> str:
        op = ">=" if self.at_least else "<="
        verdict = "PASS" if self.passed() else "FAIL"
        return (
            f"| {self.label} | {self.value:.3g}{self.unit} | {op} {self.limit:g}{self.unit} "
            f"| {verdict} |"
        )


@dataclass
class CaseResult:
    number: int
    title: str
    contenders: list[Contender]
    targets: list[Target]
    baseline: str | None = None  # contender that ratios are taken against
    notes: list[str] = field(default_factory=list)


class Bench:
    """Everything shared by the cases: paths, executables, sizes, repeat count."""

    def __init__(self, workdir: Path, sizes: Sizes, repeat: int) -> None:
        self.workdir = workdir
        self.inputs = workdir / "inputs"
        self.out = workdir / "out"
        self.sizes = sizes
        self.repeat = repeat
        bindir = Path(sys.executable).parent
        toile = bindir / "toile"
        self.toile = str(toile) if toile.exists() else shutil.which("toile") or "toile"
        self.python = sys.executable
        self.cat = shutil.which("cat") or "/bin/cat"
        self.sh = shutil.which("sh") or "/bin/sh"

    def toile_cmd(self, name: str, inputs: Path, *flags: str) -> Contender:
        output = self.out / name
        argv = [self.toile, "export", "frames", str(inputs), str(output), "--overwrite"]
        return Contender(name, [*argv, "--no-progress", *flags], output=output)

    def naive_cmd(self, inputs: Path, *flags: str) -> Contender:
        output = self.out / "naive"
        return Contender(
            "naive peer", [self.python, str(NAIVE), str(inputs), str(output), *flags], output
        )

    def cat_cmd(self, inputs: Path) -> Contender:
        output = self.out / "cat.bin"
        argv = [self.cat, *(str(f) for f in input_files(inputs))]
        return Contender("raw cat", argv, output=output, stdout=output)

    def floor_cmd(self, inputs: Path) -> Contender:
        """The least work that keeps toile's promises: copy, SHA-256 and fsync (floor.py)."""
        output = self.out / "floor.bin"
        files = [str(f) for f in input_files(inputs)]
        return Contender(FLOOR_NAME, [self.python, str(FLOOR), str(output), *files], output=output)

    def cat_fsync_cmd(self, inputs: Path) -> Contender:
        """cat, then fsync of the copy: toile fsyncs its shards, cat and the peer do not."""
        output = self.out / "catsync.bin"
        script = 'out="$1"; shift; cat "$@" > "$out" && sync "$out"'
        files = [str(f) for f in input_files(inputs)]
        return Contender(
            "raw cat + fsync", [self.sh, "-c", script, "sh", str(output), *files], output=output
        )

    def alternate(self, contenders: list[Contender], repeat: int, sample: bool = True) -> None:
        """Run the contenders in turn, ``repeat`` rounds, fresh outputs each time."""
        self.out.mkdir(parents=True, exist_ok=True)
        for round_ in range(repeat):
            for contender in contenders:
                if contender.output is not None:
                    remove(contender.output)
                os.sync()
                run = measure(contender.argv, contender.stdout, sample=sample)
                if contender.output is not None:
                    run.output_bytes = size_of(contender.output)
                contender.runs.append(run)
                log.info(
                    "  round %d %-18s %7.3f s  %6.0f MiB",
                    round_ + 1,
                    contender.name,
                    run.wall,
                    run.max_rss / MIB,
                )
        for contender in contenders:
            if contender.output is not None:
                remove(contender.output)


TINY = Sizes(frames=8, height=64, width=64, batch_recordings=2, batch_frames=8)


def prime(bench: Bench) -> None:
    """Run every kind of command once on tiny inputs, untimed.

    This writes the bytecode caches of every module the timed runs import and warms the
    executables, so the first timed round pays no more than the others.
    """
    stack = ome_stack(bench.inputs, TINY.frames, TINY, seed=1)
    series = prairie_series(bench.inputs, TINY.frames, TINY, seed=1)
    batch = batch_of_stacks(bench.inputs, TINY)
    commands = [
        bench.toile_cmd("prime", stack),
        bench.toile_cmd("prime", series, "--uint8"),
        bench.toile_cmd("prime", batch, "--workers", "2"),
        bench.naive_cmd(stack, "--uint8"),
        bench.naive_cmd(series),
        Contender("prime", [bench.toile, "--help"]),
    ]
    bench.out.mkdir(parents=True, exist_ok=True)
    for command in commands:
        measure(command.argv, command.stdout, sample=False)
        if command.output is not None:
            remove(command.output)


def _ratio(result: CaseResult, contender: str, baseline: str) -> float:
    """Ratio of the best (fastest) runs.

    Targets are judged on best runs: on this machine the kernel's writeback of
    earlier runs' dirty pages now and then stalls a run by a second or more (seen on
    ``cat`` as often as on toile), which moves medians of a few runs by up to 8x; the
    fastest run of each contender is the one least disturbed. Medians are in the tables.
    """
    by_name = {c.name: c for c in result.contenders}
    return by_name[contender].best() / by_name[baseline].best()


def case_single(bench: Bench, number: int) -> CaseResult:
    """Cases 1-3: one recording, toile vs the naive peer vs cat."""
    sizes = bench.sizes
    n = sizes.frames
    if number == 2:
        source = prairie_series(bench.inputs, n, sizes, seed=1)
        title = f"Prairie View series of {n} single-page {sizes.height}x{sizes.width} uint16 files"
    else:
        source = ome_stack(bench.inputs, n, sizes, seed=1)
        title = f"OME-TIFF stack {n}x{sizes.height}x{sizes.width} uint16"
    flags = ("--uint8",) if number == 3 else ()
    title += ", --uint8" if number == 3 else ", default encoding"
    warm_up([source])
    contenders = [
        bench.toile_cmd("toile", source, *flags),
        bench.naive_cmd(source, *flags),
        bench.cat_cmd(source),
        bench.cat_fsync_cmd(source),
    ]
    if number != 3:
        contenders.append(bench.floor_cmd(source))
    bench.alternate(contenders, bench.repeat)
    result = CaseResult(number, title, contenders, [], baseline="raw cat")
    limit = {1: 1.5, 2: 2.0, 3: 2.5}[number]
    result.targets = [
        Target(
            f"case {number}: toile / raw cat", _ratio(result, "toile", "raw cat"), limit, unit="x"
        ),
        Target(f"case {number}: toile peak RSS", contenders[0].max_rss() / MIB, 200, unit=" MiB"),
    ]
    result.notes.append(
        f"toile / raw cat + fsync: {_ratio(result, 'toile', 'raw cat + fsync'):.2f}x (bests). "
        f"Naive peer measured before: {PREVIOUS_NAIVE[number]}; now "
        f"{_ratio(result, 'naive peer', 'raw cat'):.2f}x raw, "
        f"{contenders[1].max_rss() / MIB:.0f} MiB"
    )
    if number != 3:
        result.notes.append(
            f"The floor (copy + SHA-256 + fsync, no encoding, see floor.py) is "
            f"{_ratio(result, FLOOR_NAME, 'raw cat'):.2f}x raw cat; toile is "
            f"{_ratio(result, 'toile', FLOOR_NAME):.2f}x the floor (bests)."
        )
    return result


def case_workers(bench: Bench) -> CaseResult:
    """Case 4: several recordings, one worker against two."""
    sizes = bench.sizes
    source = batch_of_stacks(bench.inputs, sizes)
    warm_up([source])
    # The case is the default encoding; toile uses worker processes only where the
    # encoding costs CPU, so the same comparison is also made with --uint8 and --compressed.
    variants = {"": (), " --uint8": ("--uint8",), " --compressed": ("--compressed",)}
    contenders = [
        bench.toile_cmd(f"toile{name} --workers {workers}", source, *flags, "--workers", workers)
        for name, flags in variants.items()
        for workers in ("1", "2")
    ]
    contenders.append(bench.cat_cmd(source))
    contenders.append(bench.floor_cmd(source))
    bench.alternate(contenders, bench.repeat)
    title = (
        f"{sizes.batch_recordings} OME-TIFF recordings of {sizes.batch_frames}x"
        f"{sizes.height}x{sizes.width} uint16"
    )
    result = CaseResult(4, title, contenders, [], baseline="raw cat")
    result.targets = [
        Target(
            f"case 4{name}: speed-up of --workers 2 over 1",
            _ratio(result, f"toile{name} --workers 1", f"toile{name} --workers 2"),
            1.6,
            at_least=True,
            unit="x",
        )
        for name in variants
    ]
    # With the default encoding one process already runs at the floor's pace or near it;
    # no number of workers can beat the floor (one shard's SHA-256 is sequential).
    result.notes.append(
        "Largest speed-up any number of workers could give the default encoding "
        f"(toile --workers 1 / floor, bests): "
        f"{_ratio(result, 'toile --workers 1', FLOOR_NAME):.2f}x."
    )
    # Workers add no CPU capacity beyond the machine's cores: a run needs at least its CPU
    # time divided by the cores, whatever the schedule.
    by_name = {c.name: c for c in contenders}
    cores = os.cpu_count() or 1
    for name in variants:
        one, two = by_name[f"toile{name} --workers 1"], by_name[f"toile{name} --workers 2"]
        least = min(one.cpu(), two.cpu()) / cores
        result.notes.append(
            f"toile{name}: --workers 1 uses {one.cpu():.2f} CPU s (median), {one.best():.2f} s "
            f"wall (best); --workers 2 uses {two.cpu():.2f} CPU s; on {cores} cores no schedule of that "
            f"work takes less than {least:.2f} s, a speed-up of at most "
            f"{one.best() / least:.2f}x."
        )
    return result


def case_memory(bench: Bench) -> CaseResult:
    """Case 5: does peak memory grow with the number of frames?"""
    sizes = bench.sizes
    short = ome_stack(bench.inputs, sizes.frames, sizes, seed=1)
    long = ome_stack(bench.inputs, sizes.long_frames, sizes, seed=1)
    warm_up([short, long])
    contenders = [
        bench.toile_cmd(f"toile {sizes.frames} frames", short),
        bench.toile_cmd(f"toile {sizes.long_frames} frames", long),
    ]
    bench.alternate(contenders, bench.repeat)
    title = (
        f"peak RSS, OME-TIFF stack of {sizes.frames} against {sizes.long_frames} frames "
        f"({sizes.height}x{sizes.width} uint16)"
    )
    result = CaseResult(5, title, contenders, [], baseline=contenders[0].name)
    growth = contenders[1].max_rss() / contenders[0].max_rss()
    result.targets = [Target("case 5: peak RSS long / short", growth, 1.15, unit="x")]
    return result


def case_small_frames(bench: Bench) -> CaseResult:
    """Case 7 (beyond the issue): peak memory of long recordings of small frames.

    With small frames, what toile keeps per frame (plane tables, page locations) shows
    before the pixel buffers do; 10x the frames should not mean much more memory.
    """
    sizes = bench.sizes
    small = Sizes(height=sizes.small_side, width=sizes.small_side)
    short_n, long_n = sizes.small_frames
    inputs = {("OME-TIFF", n): ome_stack(bench.inputs, n, small, seed=1) for n in (short_n, long_n)}
    inputs.update(
        {("ImageJ", n): imagej_stack(bench.inputs, n, small, seed=1) for n in (short_n, long_n)}
    )
    warm_up(list(inputs.values()))
    contenders = [
        bench.toile_cmd(f"toile {kind} {n} frames", path) for (kind, n), path in inputs.items()
    ]
    bench.alternate(contenders, min(bench.repeat, 3))
    title = (
        f"peak RSS, {short_n} against {long_n} frames of {sizes.small_side}x"
        f"{sizes.small_side} uint16 (beyond the issue: no target)"
    )
    result = CaseResult(7, title, contenders, [], baseline=contenders[0].name)
    by_name = {c.name: c for c in contenders}
    for kind in ("OME-TIFF", "ImageJ"):
        short = by_name[f"toile {kind} {short_n} frames"]
        long = by_name[f"toile {kind} {long_n} frames"]
        result.notes.append(
            f"{kind}: {long.max_rss() / MIB:.0f} MiB for {long_n} frames against "
            f"{short.max_rss() / MIB:.0f} MiB for {short_n} "
            f"({long.max_rss() / short.max_rss():.2f}x)."
        )
    return result


def case_startup(bench: Bench) -> CaseResult:
    """Case 6: start-up time of ``toile --help``."""
    contenders = [
        Contender("toile --help", [bench.toile, "--help"]),
        Contender("python -c pass", [bench.python, "-c", "pass"]),
    ]
    bench.alternate(contenders, bench.sizes.help_runs, sample=False)
    result = CaseResult(6, "start-up: toile --help", contenders, [], baseline="python -c pass")
    result.targets = [Target("case 6: toile --help", contenders[0].median(), 0.3, unit=" s")]
    return result


CASES: dict[int, Callable[[Bench], CaseResult]] = {
    1: lambda b: case_single(b, 1),
    2: lambda b: case_single(b, 2),
    3: lambda b: case_single(b, 3),
    4: case_workers,
    5: case_memory,
    6: case_startup,
    7: case_small_frames,
}


# --------------------------------------------------------------------------------------
# Report


def machine() -> list[str]:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = 0
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                ram = int(line.split()[1]) * 1024
    import webdataset

    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return [
        f"- CPU: {cpu}, {os.cpu_count()} cores; RAM: {ram / 2**30:.1f} GiB",
        f"- OS: {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}, numpy {np.__version__}, "
        f"tifffile {tifffile.__version__}, webdataset {getattr(webdataset, '__version__', '?')}",
        f"- toile {toile_version} (git {commit or 'unknown'})",
        f"- load average at the start: {LOAD_AT_START}",
    ]


def _mib(value: int) -> str:
    return f"{value / MIB:.0f}"


def case_table(result: CaseResult) -> list[str]:
    base_name = result.baseline or "-"
    lines = [
        f"### Case {result.number}: {result.title}",
        "",
        f"| contender | runs | median s | min-max s | x {base_name} (medians) "
        f"| x {base_name} (bests) | CPU s | peak RSS MiB (one process) "
        "| peak RSS MiB (tree, sampled) | output MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    base = next((c for c in result.contenders if c.name == result.baseline), None)
    for c in result.contenders:
        walls = [r.wall for r in c.runs]
        ratio = f"{c.median() / base.median():.2f}" if base else "-"
        best = f"{c.best() / base.best():.2f}" if base else "-"
        lines.append(
            f"| {c.name} | {len(c.runs)} | {c.median():.3f} | {min(walls):.3f}-{max(walls):.3f} "
            f"| {ratio} | {best} | {c.cpu():.2f} | {_mib(c.max_rss())} | {_mib(c.tree_rss())} "
            f"| {c.runs[0].output_bytes / 1e6:.0f} |"
        )
    lines.append("")
    lines.extend(f"{note}" for note in result.notes)
    if result.notes:
        lines.append("")
    return lines


def report(results: list[CaseResult], command: str, seconds: float) -> str:
    lines = [
        "# toile benchmark results",
        "",
        f"Date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}  ",
        f"Command: `{command}`  ",
        f"Total time: {seconds:.0f} s",
        "",
        *machine(),
        "",
        "## Targets",
        "",
        "| target | measured | goal | verdict |",
        "| --- | ---: | ---: | --- |",
    ]
    for result in results:
        lines.extend(t.row() for t in result.targets)
    lines += ["", "## Cases", ""]
    for result in results:
        lines.extend(case_table(result))
    lines += [
        "## Raw runs (wall seconds, in the order they ran)",
        "",
    ]
    for result in results:
        for c in result.contenders:
            walls = ", ".join(f"{r.wall:.3f}" for r in c.runs)
            lines.append(f"- case {result.number}, {c.name}: {walls}")
    lines.append("")
    return "\n".join(lines)


def parse_cases(text: str) -> list[int]:
    try:
        cases = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected case numbers such as 1,3, got {text!r}"
        ) from None
    unknown = [c for c in cases if c not in CASES]
    if unknown or not cases:
        raise argparse.ArgumentTypeError(f"cases are 1-{max(CASES)}, got {text!r}")
    return cases


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Benchmark toile export frames.")
    parser.add_argument("--quick", action="store_true", help="Small frames: a smoke test.")
    parser.add_argument("--cases", type=parse_cases, default=sorted(CASES), help="e.g. 1,3")
    parser.add_argument("--repeat", type=int, default=3, help="Timed runs per contender.")
    parser.add_argument("--workdir", type=Path, default=HERE / "work", help="Inputs and outputs.")
    parser.add_argument(
        "--results",
        type=Path,
        help="Markdown report (default: benchmarks/results.md, or WORKDIR/results-quick.md "
        "with --quick).",
    )
    parser.add_argument(
        "--clean-inputs", action="store_true", help="Delete the generated inputs at the end."
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if not GNU_TIME.exists():
        log.warning(
            "%s is missing (apt-get install -y time): peak RSS figures include this "
            "script's own RSS",
            GNU_TIME,
        )
    sizes = QUICK if args.quick else FULL
    bench = Bench(args.workdir.resolve(), sizes, args.repeat)
    results_path = args.results or (
        bench.workdir / "results-quick.md" if args.quick else HERE / "results.md"
    )
    command = "uv run python benchmarks/run.py" + (
        " " + " ".join(argv if argv is not None else sys.argv[1:])
        if (argv if argv is not None else sys.argv[1:])
        else ""
    )
    started = time.perf_counter()
    results = []
    try:
        prime(bench)
        for number in args.cases:
            log.info("case %d", number)
            results.append(CASES[number](bench))
    finally:
        remove(bench.out)
        if args.clean_inputs:
            remove(bench.inputs)
    text = report(results, command, time.perf_counter() - started)
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(text, encoding="utf-8")
    print(text)
    log.info("wrote %s", results_path)


if __name__ == "__main__":
    main()
