"""toile export frames against the floors of its work and against the tools users would pick.

Run from the repository root::

    uv run python benchmarks/run.py            # everything, writes benchmarks/results.md
    uv run python benchmarks/run.py --quick    # small frames, no peers: a smoke test
    uv run python benchmarks/run.py --cases ome,help --repeat 5

Inputs are written with toile's own synthetic movies and writers, cached in the work
directory keyed by their parameters. Every contender runs as a subprocess; contenders
alternate (A B C A B C ...), outputs are deleted and dirty pages flushed before each run
(outside the timed region), and the inputs are read once untimed so the page cache is warm.
The peers run in their own environments (peers.py). See benchmarks/README.md.

Adding a case: write ``def case_x(bench: Bench) -> CaseResult`` and decorate it with
``@case("x", "what it measures")``; raise ``Skip("why")`` when what it needs is missing
(``bench.toile_option("--executor")`` tells whether toile has an option yet).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import hashlib
import json
import logging
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402  (benchmarks/peers.py, next to this file)

log = logging.getLogger("benchmarks")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NAIVE = HERE / "naive_peer.py"
FLOOR = HERE / "floor.py"
#: Names of the floor contenders (see floor.py).
FLOOR_A = "floor (a): copy + sha256 + fsync"
FLOOR_B = "floor (b): copy + deflate + sha256 + fsync"
#: Bumped when the way inputs are generated changes, so cached inputs are rebuilt.
INPUT_VERSION = 1
MIB = 1024 * 1024
#: toile's default shard cap and its --pds cap.
CAP = 850_000_000
PDS_CAP = 38_000_000


# --------------------------------------------------------------------------------------
# Sizes


@dataclass(frozen=True)
class Sizes:
    """Frame counts and frame size of every case."""

    frames: int = 3600
    height: int = 512
    width: int = 512
    #: The multi-shard export of the workers case: recordings, frames each, shard cap.
    batch_recordings: int = 8
    batch_frames: int = 200
    batch_cap: int = 100_000_000
    help_runs: int = 10
    #: The memory case: frame counts and side of the small-frame recordings.
    small_frames: tuple[int, int] = (3600, 36000)
    small_side: int = 16
    #: Timed rounds of a peer (two give the byte-identity check).
    peer_rounds: int = 2


FULL = Sizes()
QUICK = Sizes(
    frames=60,
    height=128,
    width=128,
    batch_frames=30,
    batch_cap=500_000,
    help_runs=4,
    small_frames=(240, 2400),
)


# --------------------------------------------------------------------------------------
# Inputs


#: The interpreter that writes the inputs: that of the toile under test (set by main), so
#: that its own synthetic movies and writers make them (cached inputs need neither).
GENERATOR = [sys.executable]

_WRITE = """
import sys
from toile.synthetic import MovieSpec, generate_frames
from toile import writers
kind, path, n, height, width, seed, bigtiff = sys.argv[1:]
frames = generate_frames(MovieSpec(frames=int(n), height=int(height), width=int(width), seed=int(seed)))
if kind == "ome":
    writers.write_ome_tiff(path, frames, bigtiff=bigtiff == "1")
elif kind == "prairie":
    writers.write_prairie_series(path, frames)
else:
    writers.write_imagej_stack(path, frames)
"""


def _write(kind: str, path: Path, n: int, sizes: Sizes, seed: int) -> None:
    """Write ``n`` synthetic frames as ``kind`` (ome, prairie, imagej) with toile's writers."""
    bigtiff = kind == "ome" and 2 * n * sizes.height * sizes.width > 3 * 2**30
    argv = [kind, str(path), str(n), str(sizes.height), str(sizes.width), str(seed)]
    subprocess.run([*GENERATOR, "-c", _WRITE, *argv, "1" if bigtiff else "0"], check=True)


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
    return _cached(inputs / name, lambda tmp: _write("ome", tmp, n, sizes, seed))


def prairie_series(inputs: Path, n: int, sizes: Sizes, seed: int) -> Path:
    """A Prairie View T-series: ``n`` single-page OME-TIFF files and the PVScan XML."""
    # "pvscan": series written before the writer made the PVScan XML had none
    name = f"v{INPUT_VERSION}-pvscan-t{n}-{sizes.height}x{sizes.width}-seed{seed}"
    return _cached(inputs / name, lambda tmp: _write("prairie", tmp, n, sizes, seed))


def imagej_stack(inputs: Path, n: int, sizes: Sizes, seed: int) -> Path:
    """An ImageJ hyperstack (no OME-XML) of ``n`` synthetic frames."""
    name = f"v{INPUT_VERSION}-imagej-t{n}-{sizes.height}x{sizes.width}-seed{seed}.tif"
    return _cached(inputs / name, lambda tmp: _write("imagej", tmp, n, sizes, seed))


def batch_of_stacks(inputs: Path, sizes: Sizes) -> Path:
    """A directory of several OME-TIFF recordings."""
    n, count = sizes.batch_frames, sizes.batch_recordings
    name = f"v{INPUT_VERSION}-batch-{count}x-t{n}-{sizes.height}x{sizes.width}"

    def make(tmp: Path) -> None:
        tmp.mkdir()
        for i in range(count):
            _write("ome", tmp / f"recording_{i + 1:02d}.ome.tif", n, sizes, 100 + i)

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


def shard_files(path: Path) -> list[Path]:
    """The data files of an output: every file but the JSON indexes and manifests."""
    if not path.is_dir():
        return [path] if path.exists() else []
    return sorted(f for f in path.rglob("*") if f.is_file() and f.suffix != ".json")


def tree_digest(path: Path) -> str:
    """SHA-256 over every file's relative name and bytes: equal for byte-identical outputs."""
    total = hashlib.sha256()
    files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
    buffer = bytearray(8 * MIB)
    for file in files:
        total.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        one = hashlib.sha256()
        with open(file, "rb", buffering=0) as handle:
            while n := handle.readinto(buffer):
                one.update(memoryview(buffer)[:n])
        total.update(one.digest())
    return total.hexdigest()


# --------------------------------------------------------------------------------------
# Measuring one process tree


@dataclass
class Run:
    """One timed run of one contender."""

    wall: float
    cpu: float  # seconds of user + system time of the whole process tree
    max_rss: int  # bytes: the largest RSS of any one process of the tree
    tree_rss: int  # bytes: the largest sampled sum of RSS over the process tree
    output_bytes: int = 0
    files: int = 0
    largest: int = 0  # bytes of the largest data file
    digest: str = ""


def _make_subreaper() -> None:
    """Become the parent of orphans of the contenders, so their tree stays ours to see.

    Some peers (Ray) start daemons whose parent exits; as a child subreaper this process
    adopts them, so the sampler still counts them and stray ones can be ended by PID.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def descendants(pid: int) -> list[int]:
    """Every descendant of ``pid`` (not ``pid`` itself), from /proc."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as handle:
                    children = [int(c) for c in handle.read().split()]
                found.extend(children)
                todo.extend(children)
        except OSError:
            continue
    return found


class TreeSampler(threading.Thread):
    """Polls the summed RSS and the CPU time of every process below this one.

    Only one contender runs at a time, so this script's descendants are the contender's
    tree (with GNU time at its root), orphans adopted by the subreaper included. CPU
    time is the last seen user + system time of each process, summed: it also counts
    processes that their parent never waited for, which GNU time's figure leaves out.
    """

    def __init__(self, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.peak = 0
        self.cpu_ticks: dict[int, int] = {}
        self._done = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._hz = os.sysconf("SC_CLK_TCK")

    def sample(self) -> None:
        total = 0
        for p in descendants(os.getpid()):
            try:
                with open(f"/proc/{p}/statm") as handle:
                    total += int(handle.read().split()[1]) * self._page
                with open(f"/proc/{p}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
                self.cpu_ticks[p] = int(fields[11]) + int(fields[12])
            except (OSError, IndexError, ValueError):
                continue
        self.peak = max(self.peak, total)

    def cpu(self) -> float:
        return sum(self.cpu_ticks.values()) / self._hz

    def run(self) -> None:
        while not self._done.is_set():
            self.sample()
            self._done.wait(self.interval)

    def stop(self) -> None:
        self._done.set()
        self.join()


GNU_TIME = Path("/usr/bin/time")
#: Seconds after which a contender is ended and reported as failed.
TIMEOUT = 900.0


def contender_env() -> dict[str, str]:
    """The environment of every contender: ours, with Python's bytecode cache allowed.

    With ``PYTHONDONTWRITEBYTECODE`` set (some sandboxes set it) every run would compile
    every imported module again: about 0.7 s and 40 MiB per Python process here, which an
    installed package never pays. ``VIRTUAL_ENV`` and ``PYTHONPATH`` are dropped so a
    peer's interpreter sees only its own environment.
    """
    env = dict(os.environ)
    for name in ("PYTHONDONTWRITEBYTECODE", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"):
        env.pop(name, None)
    return env


def _end_strays(grace: float = 5.0) -> None:
    """End, by PID, processes a contender left behind (daemons it did not stop)."""
    deadline = time.monotonic() + grace
    while (left := descendants(os.getpid())) and time.monotonic() < deadline:
        _reap()
        time.sleep(0.1)
    for pid in left:
        log.warning("ending process %d that the last contender left running", pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
    _reap()


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


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
        proc = subprocess.Popen(
            full, stdout=out, stderr=err, cwd=ROOT, env=contender_env(), start_new_session=True
        )
        sampler = TreeSampler() if sample else None
        if sampler is not None:
            sampler.start()
        # A contender that hangs is ended (its own process group) after TIMEOUT seconds.
        timer = threading.Timer(TIMEOUT, os.killpg, (proc.pid, 9))
        timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        timer.cancel()
        if sampler is not None:
            sampler.stop()
        proc.returncode = os.waitstatus_to_exitcode(status)
        if stdout is not None:
            out.close()  # type: ignore[union-attr]
        _end_strays()
        if proc.returncode != 0:
            err.seek(0)
            tail = err.read().decode(errors="replace")[-2000:]
            raise ContenderFailed(f"{' '.join(argv[:4])} ... exited {proc.returncode}:\n{tail}")
        if use_time:
            kib, user, system = stats.read().split()[-3:]
            max_rss, cpu = int(kib) * 1024, float(user) + float(system)
        else:  # ru_maxrss (KiB) includes our own RSS, see above
            max_rss, cpu = usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime
    tree = max(sampler.peak if sampler else 0, max_rss)
    cpu = max(cpu, sampler.cpu() if sampler else 0.0)
    return Run(wall=wall, cpu=cpu, max_rss=max_rss, tree_rss=tree)


class ContenderFailed(RuntimeError):
    """A contender exited with an error: its case reports it instead of its figures."""


class Skip(Exception):  # noqa: N818  (a signal, not an error)
    """Raised by a case that cannot run here yet; the message says why."""


# --------------------------------------------------------------------------------------
# Contenders and results


@dataclass
class Contender:
    """A command to time and the output it writes (deleted before every run)."""

    name: str
    argv: list[str]
    output: Path | None = None
    stdout: Path | None = None
    #: Timed rounds at most (peers run fewer than toile and the floors); None: all.
    rounds: int | None = None
    #: The shard cap it was given (for the largest-file column), if any.
    cap: int | None = None
    #: Digest the output of the first two runs (byte-identity across runs).
    check_identical: bool = False
    runs: list[Run] = field(default_factory=list)
    failed: str = ""

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

    def identical(self) -> str:
        digests = [r.digest for r in self.runs if r.digest]
        if len(digests) < 2:
            return "-"
        return "yes" if len(set(digests)) == 1 else "no"


@dataclass
class Target:
    """A goal judged from the run: ``value <= limit`` (or ``>=`` when ``at_least``)."""

    label: str
    value: float | None
    limit: float
    at_least: bool = False
    unit: str = ""
    skipped: str = ""  # why it could not be measured

    def verdict(self) -> str:
        if self.value is None:
            return "SKIP"
        ok = self.value >= self.limit if self.at_least else self.value <= self.limit
        return "PASS" if ok else "FAIL"

    def row(self) -> str:
        op = ">=" if self.at_least else "<="
        value = f"{self.value:.3g}{self.unit}" if self.value is not None else "-"
        verdict = self.verdict() + (f" ({self.skipped})" if self.skipped else "")
        return f"| {self.label} | {value} | {op} {self.limit:g}{self.unit} | {verdict} |"


@dataclass
class CaseResult:
    name: str
    title: str
    contenders: list[Contender] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    #: Contender that ratios are taken against (and a second one for a second column).
    baseline: str | None = None
    second: str | None = None
    notes: list[str] = field(default_factory=list)
    skipped: str = ""
    #: Where the time goes, when a target failed: a Markdown block.
    profile: list[str] = field(default_factory=list)

    def by_name(self) -> dict[str, Contender]:
        return {c.name: c for c in self.contenders}

    def ratio(self, contender: str, baseline: str) -> float | None:
        """Ratio of the best (fastest) runs; None when either has no runs.

        Targets are judged on best runs: on this machine the kernel's writeback of
        earlier runs' dirty pages now and then stalls a run by a second or more (seen on
        ``cat`` as often as on toile), which moves medians of a few runs by several times;
        the fastest run of each contender is the one least disturbed. Medians are in the
        tables.
        """
        by = self.by_name()
        a, b = by.get(contender), by.get(baseline)
        if a is None or b is None or not a.runs or not b.runs:
            return None
        return a.best() / b.best()


def toile_checkout(rev: str, workdir: Path) -> tuple[Path, str]:
    """The ``toile`` executable of commit ``rev``, in its own checkout and environment.

    ``git archive`` of the commit (the working tree and the index are not touched) into
    ``WORKDIR/toile-SHA``, then ``uv sync --frozen --all-extras`` there. Other changes in the
    working tree, finished or not, then do not reach the measured toile.
    """
    sha = subprocess.run(
        ["git", "rev-parse", "--verify", f"{rev}^{{commit}}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    dest = workdir / f"toile-{sha[:12]}"
    toile = dest / ".venv" / "bin" / "toile"
    if not dest.exists():
        partial = dest.with_name(f".partial-{dest.name}")
        remove(partial)
        partial.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", sha], cwd=ROOT, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(partial)], input=archive.stdout, check=True)
        partial.rename(dest)
    uv = os.environ.get("UV") or shutil.which("uv") or "uv"
    started = time.perf_counter()
    # Every extra and the dev group: the case scripts use the S3 server and Dask too.
    subprocess.run(
        [uv, "sync", "--frozen", "--all-extras", "--quiet"],
        cwd=dest,
        check=True,
        env={k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"},
    )
    log.info("toile %s installed in %s in %.1f s", sha[:12], dest, time.perf_counter() - started)
    return toile, sha[:12]


# --------------------------------------------------------------------------------------
# The bench: shared paths, executables and the contender factories


class Bench:
    """Everything shared by the cases: paths, executables, sizes, repeat count, peers."""

    def __init__(
        self,
        workdir: Path,
        sizes: Sizes,
        repeat: int,
        with_peers: bool,
        toile: Path | None = None,
        commit: str = "",
    ) -> None:
        self.workdir = workdir
        self.inputs = workdir / "inputs"
        self.out = workdir / "out"
        self.sizes = sizes
        self.repeat = repeat
        self.with_peers = with_peers
        if toile is None:
            toile = Path(sys.executable).parent / "toile"
            if not toile.exists():
                toile = Path(shutil.which("toile") or "toile")
        self.toile = str(toile)
        #: The interpreter of the toile under test (the floors run with it too).
        self.python = (
            str(toile.parent / "python") if (toile.parent / "python").exists() else sys.executable
        )
        self.commit = commit or git_commit()
        self.cat = shutil.which("cat") or "/bin/cat"
        self.envs: dict[str, peers.Env] = {}
        self._help: dict[tuple[str, ...], str] = {}

    # -- what toile offers (so that cases can skip until a feature lands)

    def toile_help(self, *command: str) -> str:
        if command not in self._help:
            done = subprocess.run(
                [self.toile, *command, "--help"], capture_output=True, text=True, cwd=ROOT
            )
            self._help[command] = done.stdout
        return self._help[command]

    def toile_option(self, option: str, *command: str) -> bool:
        """Whether ``toile COMMAND --help`` lists ``option`` (default: export frames)."""
        text = self.toile_help(*(command or ("export", "frames")))
        return re.search(rf"(^|\s){re.escape(option)}[\s=\[,]", text, re.MULTILINE) is not None

    def toile_choices(self, option: str, *command: str) -> list[str]:
        """The ``[a|b|c]`` choices the help text shows for ``option``."""
        text = self.toile_help(*(command or ("export", "frames")))
        found = re.search(rf"{re.escape(option)}\s+\[([^\]]+)\]", text)
        return found.group(1).split("|") if found else []

    # -- peers

    def env(self, name: str) -> peers.Env | None:
        """The peer environment ``name`` (made now if need be), or None without peers."""
        if not self.with_peers:
            return None
        if name not in self.envs:
            self.envs[name] = peers.ensure(peers.recipes()[name])
            log.info("%s", self.envs[name].describe())
        return self.envs[name]

    def peer(
        self, env: str, name: str, script: str, inputs: Path, cap: int, *flags: str
    ) -> Contender | None:
        """A peer script run in its own environment; None (noted) when unavailable."""
        made = self.env(env)
        if made is None or made.python is None:
            return None
        output = self.out / re.sub(r"\W+", "-", name).strip("-")
        argv = [str(made.python), str(HERE / script), str(inputs), str(output)]
        return Contender(
            name,
            [*argv, "--cap", str(cap), *flags],
            output=output,
            rounds=self.sizes.peer_rounds,
            cap=cap,
            check_identical=True,
        )

    def peers_for(self, source: Path, cap: int) -> tuple[list[Contender], list[str]]:
        """Every peer on one OME-TIFF at one cap, and notes on those that are missing."""
        wanted = [
            ("webdataset", "tifffile + webdataset.ShardWriter", "naive_peer.py", ()),
            ("streaming", "streaming.MDSWriter", "peer_mds.py", ()),
            ("litdata", "litdata.optimize, 1 worker", "peer_litdata.py", ("--workers", "1")),
            ("litdata", "litdata.optimize, 2 workers", "peer_litdata.py", ("--workers", "2")),
            ("ray", "ray.data write_webdataset", "peer_ray.py", ()),
        ]
        found, notes = [], []
        for env, name, script, flags in wanted:
            contender = self.peer(env, name, script, source, cap, *flags)
            if contender is not None:
                found.append(contender)
            elif self.with_peers:
                notes.append(f"{name}: skipped, {self.envs[env].reason}")
        return found, notes

    # -- toile, floors, cat

    def toile_cmd(self, name: str, inputs: Path, *flags: str, cap: int = CAP) -> Contender:
        output = self.out / re.sub(r"\W+", "-", name).strip("-")
        argv = [self.toile, "export", "frames", str(inputs), str(output), "--overwrite"]
        return Contender(
            name, [*argv, "--no-progress", *flags], output=output, cap=cap, check_identical=True
        )

    def cat_cmd(self, inputs: Path) -> Contender:
        output = self.out / "cat.bin"
        argv = [self.cat, *(str(f) for f in input_files(inputs))]
        return Contender("raw cat", argv, output=output, stdout=output)

    def floor_cmd(self, inputs: Path, deflate_threads: int = 0) -> Contender:
        """Floor (a), or floor (b) with ``deflate_threads`` (see floor.py)."""
        output = self.out / ("floor-b.gz" if deflate_threads else "floor-a.bin")
        files = [str(f) for f in input_files(inputs)]
        flags = ["--deflate", str(deflate_threads)] if deflate_threads else []
        name = FLOOR_B if deflate_threads else FLOOR_A
        return Contender(name, [self.python, str(FLOOR), *flags, str(output), *files], output)

    def alternate(self, contenders: list[Contender], repeat: int, sample: bool = True) -> None:
        """Run the contenders in turn, ``repeat`` rounds, fresh outputs each time.

        A contender that fails is reported as failed and left out of later rounds.
        """
        self.out.mkdir(parents=True, exist_ok=True)
        for round_ in range(repeat):
            for contender in contenders:
                if contender.failed or (
                    contender.rounds is not None and round_ >= contender.rounds
                ):
                    continue
                if contender.output is not None:
                    remove(contender.output)
                os.sync()
                try:
                    run = measure(contender.argv, contender.stdout, sample=sample)
                except ContenderFailed as error:
                    contender.failed = str(error).splitlines()[0] + " " + str(error)[-300:]
                    log.warning("%s failed: %s", contender.name, error)
                    continue
                if contender.output is not None:
                    run.output_bytes = size_of(contender.output)
                    data = shard_files(contender.output)
                    run.files = len(data)
                    run.largest = max((f.stat().st_size for f in data), default=0)
                    if contender.check_identical and round_ < 2:
                        run.digest = tree_digest(contender.output)
                contender.runs.append(run)
                log.info(
                    "  round %d %-42s %7.3f s  %6.0f MiB",
                    round_ + 1,
                    contender.name,
                    run.wall,
                    run.tree_rss / MIB,
                )
        for contender in contenders:
            if contender.output is not None:
                remove(contender.output)


TINY = Sizes(frames=8, height=64, width=64, batch_recordings=2, batch_frames=8)


def prime(bench: Bench) -> None:
    """Run toile and the floors once on tiny inputs, untimed.

    This writes the bytecode caches of every module the timed runs import and warms the
    executables, so the first timed round pays no more than the others. (Peers are primed
    by a first, untimed run of their own in each case.)
    """
    stack = ome_stack(bench.inputs, TINY.frames, TINY, seed=1)
    series = prairie_series(bench.inputs, TINY.frames, TINY, seed=1)
    commands = [
        bench.toile_cmd("prime", stack),
        bench.toile_cmd("prime", series, "--uint8"),
        bench.toile_cmd("prime", stack, "--compressed"),
        bench.floor_cmd(stack),
        bench.floor_cmd(stack, 2),
        Contender("prime", [bench.toile, "--help"]),
    ]
    bench.out.mkdir(parents=True, exist_ok=True)
    for command in commands:
        measure(command.argv, command.stdout, sample=False)
        if command.output is not None:
            remove(command.output)


def prime_peers(bench: Bench, contenders: list[Contender], tiny: Path) -> None:
    """One untimed run of every peer on a tiny input: bytecode caches, warm libraries."""
    bench.out.mkdir(parents=True, exist_ok=True)
    for contender in contenders:
        if contender.rounds is None:
            continue
        scratch = bench.out / "prime-peer"
        argv = [*contender.argv[:2], str(tiny), str(scratch), *contender.argv[4:]]
        try:
            measure(argv, sample=False)
        except ContenderFailed as error:
            contender.failed = str(error)[-400:]
            log.warning("%s failed on a tiny input: %s", contender.name, error)
        remove(scratch)


# --------------------------------------------------------------------------------------
# Cases: one function each, registered with @case

CASES: dict[str, tuple[Callable[[Bench], CaseResult], str]] = {}


def case(name: str, about: str) -> Callable:
    """Register a case function under ``name`` (the order of registration is the order run)."""

    def register(func: Callable[[Bench], CaseResult]) -> Callable[[Bench], CaseResult]:
        CASES[name] = (func, about)
        return func

    return register


def _floor_target(result: CaseResult, label: str, toile: str, floor: str, limit: float) -> Target:
    return Target(label, result.ratio(toile, floor), limit, unit="x")


def _peer_case(bench: Bench, name: str, cap: int) -> CaseResult:
    """The OME-TIFF stack against floor (a), cat and every peer, at one shard cap."""
    sizes = bench.sizes
    source = ome_stack(bench.inputs, sizes.frames, sizes, seed=1)
    warm_up([source])
    flags = ("--pds",) if cap == PDS_CAP else ()
    contenders = [
        bench.toile_cmd("toile", source, *flags, cap=cap),
        bench.floor_cmd(source),
        bench.cat_cmd(source),
    ]
    found, missing = bench.peers_for(source, cap)
    prime_peers(bench, found, ome_stack(bench.inputs, TINY.frames, TINY, seed=1))
    contenders += found
    bench.alternate(contenders, max(bench.repeat, sizes.peer_rounds))
    title = (
        f"OME-TIFF stack {sizes.frames}x{sizes.height}x{sizes.width} uint16 "
        f"({size_of(source) / 1e9:.2g} GB), shard cap {cap:,} bytes"
    )
    result = CaseResult(name, title, contenders, baseline="toile", second=FLOOR_A)
    result.notes += missing
    return result


@case("ome", "OME-TIFF stack 3,600 x 512 x 512: toile against floor (a) and every peer")
def case_ome(bench: Bench) -> CaseResult:
    result = _peer_case(bench, "ome", CAP)
    result.targets = [
        _floor_target(result, "ome: toile / floor (a)", "toile", FLOOR_A, 1.15),
    ]
    return result


@case("pds", "the same stack at the 38 MB cap (--pds): every peer's largest shard")
def case_pds(bench: Bench) -> CaseResult:
    result = _peer_case(bench, "pds", PDS_CAP)
    result.notes.append("No target: the figures show each contender against the 38 MB cap.")
    return result


@case("prairie", "Prairie View series of 3,600 single-page files: toile against floor (a)")
def case_prairie(bench: Bench) -> CaseResult:
    sizes = bench.sizes
    source = prairie_series(bench.inputs, sizes.frames, sizes, seed=1)
    warm_up([source])
    contenders = [bench.toile_cmd("toile", source), bench.floor_cmd(source), bench.cat_cmd(source)]
    bench.alternate(contenders, bench.repeat)
    title = (
        f"Prairie View series of {sizes.frames} single-page {sizes.height}x{sizes.width} "
        f"uint16 files ({size_of(source) / 1e9:.2g} GB)"
    )
    result = CaseResult("prairie", title, contenders, baseline=FLOOR_A)
    result.targets = [_floor_target(result, "prairie: toile / floor (a)", "toile", FLOOR_A, 1.3)]
    return result


@case("uint8", "--uint8 on the OME-TIFF stack (two passes over the input): against floor (a)")
def case_uint8(bench: Bench) -> CaseResult:
    sizes = bench.sizes
    source = ome_stack(bench.inputs, sizes.frames, sizes, seed=1)
    warm_up([source])
    contenders = [
        bench.toile_cmd("toile --uint8", source, "--uint8"),
        bench.floor_cmd(source),
        bench.cat_cmd(source),
    ]
    bench.alternate(contenders, bench.repeat)
    title = f"OME-TIFF stack {sizes.frames}x{sizes.height}x{sizes.width} uint16, --uint8"
    result = CaseResult("uint8", title, contenders, baseline=FLOOR_A)
    result.targets = [
        _floor_target(result, "uint8: toile --uint8 / floor (a)", "toile --uint8", FLOOR_A, 1.35)
    ]
    result.notes.append(
        "The hand-written peer is left out here: its whole-stack float mapping of 3,600 "
        "frames needs about 16 GB (4.0 GiB for 900 frames in earlier runs)."
    )
    return result


@case("compressed", "--compressed on the OME-TIFF stack: against floor (b) and MDS zstd")
def case_compressed(bench: Bench) -> CaseResult:
    sizes = bench.sizes
    source = ome_stack(bench.inputs, sizes.frames, sizes, seed=1)
    warm_up([source])
    threads = os.cpu_count() or 1  # toile's --workers default: its deflate threads
    contenders = [
        bench.toile_cmd("toile --compressed", source, "--compressed"),
        bench.floor_cmd(source, threads),
        bench.cat_cmd(source),
    ]
    mds = bench.peer(
        "streaming", "streaming.MDSWriter zstd", "peer_mds.py", source, CAP, "--compression", "zstd"
    )
    if mds is not None:
        prime_peers(bench, [mds], ome_stack(bench.inputs, TINY.frames, TINY, seed=1))
        contenders.append(mds)
    bench.alternate(contenders, max(bench.repeat, sizes.peer_rounds if mds else 1))
    title = (
        f"OME-TIFF stack {sizes.frames}x{sizes.height}x{sizes.width} uint16, --compressed "
        f"(floor (b) deflates on {threads} threads, toile's default --workers)"
    )
    result = CaseResult("compressed", title, contenders, baseline="toile --compressed")
    result.second = FLOOR_B
    if mds is None and bench.with_peers:
        reason = bench.envs["streaming"].reason
        result.notes.append(f"streaming.MDSWriter zstd: skipped, {reason}")
    result.targets = [
        _floor_target(
            result, "compressed: toile --compressed / floor (b)", "toile --compressed", FLOOR_B, 1.2
        )
    ]
    return result


@case("memory", "peak RSS, 3,600 against 36,000 frames of 16 x 16 (OME-TIFF and ImageJ)")
def case_memory(bench: Bench) -> CaseResult:
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
        f"{sizes.small_side} uint16"
    )
    result = CaseResult("memory", title, contenders, baseline=contenders[0].name)
    by = result.by_name()
    for kind in ("OME-TIFF", "ImageJ"):
        short, long = by[f"toile {kind} {short_n} frames"], by[f"toile {kind} {long_n} frames"]
        growth = long.max_rss() / short.max_rss()
        result.notes.append(
            f"{kind}: {long.max_rss() / MIB:.0f} MiB for {long_n} frames against "
            f"{short.max_rss() / MIB:.0f} MiB for {short_n} ({growth:.2f}x)."
        )
        result.targets.append(
            Target(f"memory: {kind} peak RSS {long_n} / {short_n} frames", growth, 1.2, unit="x")
        )
    return result


_SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[1])
module = __import__(sys.argv[2])
print(json.dumps(module.run(__import__("pathlib").Path(sys.argv[3])), default=str))
"""


def script_case(bench: Bench, script: str) -> dict:
    """``run(workdir)`` of a case script in benchmarks/ (its figures as a dict).

    It runs in the interpreter of the toile under test; a script that is missing or that
    fails with that toile makes the case a SKIP with the script's last line of error.
    """
    if not (HERE / f"{script}.py").exists():
        raise Skip(f"benchmarks/{script}.py is not there yet")
    workdir = bench.out / script
    bench.out.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [bench.python, "-c", _SCRIPT, str(HERE), script, str(workdir)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=contender_env(),
        timeout=3 * TIMEOUT,
    )
    remove(workdir)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise Skip(f"{script}.py fails with this toile: {last[:200]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _flat(figures: dict, prefix: str = "") -> list[str]:
    lines = []
    for name, value in figures.items():
        if isinstance(value, dict):
            lines += _flat(value, f"{prefix}{name}.")
        else:
            shown = f"{value:.3g}" if isinstance(value, float) else str(value)
            lines.append(f"{prefix}{name}: {shown[:300]}")
    return lines


@case("read", "start-up of open/info/atdata export and read throughput (read_case.py)")
def case_read(bench: Bench) -> CaseResult:
    """read_case.run(): its targets, judged here."""
    figures = script_case(bench, "read_case")
    result = CaseResult("read", "start-up and read throughput (benchmarks/read_case.py)")
    for name, limit in figures.get("targets", {}).items():
        ratio = name.endswith("_ratio")
        unit = "" if ratio else " s"
        result.targets.append(Target(f"read: {name}", figures[name], limit, ratio, unit))
    shown = {k: v for k, v in figures.items() if k not in ("targets", "verdicts", "passed")}
    result.notes += _flat({k: v for k, v in shown.items() if k not in figures.get("targets", {})})
    return result


@case("workers", "2 workers against 1, processes and dask executors (exec_case.py)")
def case_workers(bench: Bench) -> CaseResult:
    """exec_case.run(): speed-ups of 2 workers over 1 next to the CPU bound."""
    figures = script_case(bench, "exec_case")
    title = "multi-shard exports, 2 workers against 1 (benchmarks/exec_case.py)"
    result = CaseResult("workers", title)
    for name, value in figures.items():
        if isinstance(value, dict) and "speedup" in value:
            label = f"workers: {name.replace('_', ' ')} speed-up of 2 over 1"
            if value["target"] is not None:
                result.targets.append(Target(label, value["speedup"], value["target"], True, "x"))
            result.notes.append(
                f"{name}: 1 worker {value['wall_1_s']} s ({value['cpu_1_s']} CPU s), 2 workers "
                f"{value['wall_2_s']} s: {value['speedup']}x; CPU bound {value['cpu_bound']}x"
                + ("." if value["target"] is not None else " (no target: see exec_case.py).")
            )
    result.notes += _flat({k: v for k, v in figures.items() if "speedup" not in str(v)})
    return result


@case("s3", "export to a local S3 API server against an s3fs put (s3_case.py)")
def case_s3(bench: Bench) -> CaseResult:
    """s3_case.run(): no target of its own; its figures are reported."""
    figures = script_case(bench, "s3_case")
    result = CaseResult("s3", "object storage on a local S3 API server (benchmarks/s3_case.py)")
    ratio = figures.get("export_to_s3", {}).get("ratio_to_put")
    if isinstance(ratio, int | float):
        result.notes.append(f"export to S3 at {ratio:.2f}x the MB/s of an s3fs put of the input.")
    result.notes += _flat(figures)
    return result


@case("help", "start-up: toile --help")
def case_help(bench: Bench) -> CaseResult:
    contenders = [
        Contender("toile --help", [bench.toile, "--help"]),
        Contender("python -c pass", [bench.python, "-c", "pass"]),
    ]
    bench.alternate(contenders, bench.sizes.help_runs, sample=False)
    result = CaseResult("help", "start-up: toile --help", contenders, baseline="python -c pass")
    result.targets = [
        Target("help: toile --help (median)", contenders[0].median(), 0.15, unit=" s")
    ]
    return result


# --------------------------------------------------------------------------------------
# Profiles of failed targets


def profile_toile(bench: Bench, contender: Contender) -> list[str]:
    """CPU seconds per stage of one toile run (py-spy, every thread), as Markdown lines."""
    import profile_stages

    spy = bench.env("py-spy") if bench.with_peers else None
    if spy is None or spy.python is None:
        return [
            "(no profile: py-spy's environment is not available"
            + (f": {spy.reason})" if spy is not None else ", run without --no-peers)")
        ]
    if contender.output is not None:
        remove(contender.output)
    raw = bench.out / "profile.txt"
    bench.out.mkdir(parents=True, exist_ok=True)
    py_spy = spy.python.parent / "py-spy"
    argv = [str(py_spy), "record", "--format", "raw", "--rate", "250", "--threads"]
    argv += ["--subprocesses", "--nonblocking"]
    argv += ["--output", str(raw), "--", *contender.argv]
    try:
        measure(argv, sample=False)
    except ContenderFailed as error:
        return [f"(no profile: py-spy failed: {str(error)[-300:]})"]
    finally:
        if contender.output is not None:
            remove(contender.output)
    return profile_stages.summary(raw.read_text(), rate=250)


# --------------------------------------------------------------------------------------
# Report


def machine(toile: str, commit: str) -> list[str]:
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

    toile_version = subprocess.run(
        [toile, "--version"], capture_output=True, text=True
    ).stdout.strip().split()[-1:] or ["?"]
    toile_version = toile_version[0]
    return [
        f"- CPU: {cpu}, {os.cpu_count()} cores; RAM: {ram / 2**30:.1f} GiB",
        f"- OS: {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}, numpy {np.__version__}, "
        f"tifffile {tifffile.__version__}, webdataset {getattr(webdataset, '__version__', '?')}",
        f"- toile {toile_version} (git {commit})",
    ]


def git_commit() -> str:
    done = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True
    )
    return done.stdout.strip() or "unknown"


def _mib(value: int) -> str:
    return f"{value / MIB:.0f}"


def _cap_cell(c: Contender) -> str:
    if c.cap is None or not c.runs:
        return "-"
    largest = max(r.largest for r in c.runs)
    over = "over" if largest > c.cap else "within"
    return f"{largest / 1e6:,.1f} MB ({largest / c.cap:.3f}x, {over})"


def case_table(result: CaseResult) -> list[str]:
    lines = [f"### {result.name}: {result.title}", ""]
    if result.skipped:
        return [*lines, f"Skipped: {result.skipped}", ""]
    if not result.contenders:
        return [*lines, *(f"{note}  " for note in result.notes), ""]
    base = result.baseline
    second = result.second
    head = "| contender | runs | median s | best s |"
    rule = "| --- | ---: | ---: | ---: |"
    if base:
        head += f" x {base} (bests) |"
        rule += " ---: |"
    if second:
        head += f" x {second} (bests) |"
        rule += " ---: |"
    head += (
        " CPU s | peak RSS MiB (tree) | peak RSS MiB (one process) | output MB | files "
        "| largest file (x cap) | identical across runs |"
    )
    rule += " ---: | ---: | ---: | ---: | ---: | --- | --- |"
    lines += [head, rule]
    for c in result.contenders:
        if not c.runs:
            lines.append(f"| {c.name} | failed: {c.failed[:200].replace('|', '/')} |")
            continue
        row = f"| {c.name} | {len(c.runs)} | {c.median():.2f} | {c.best():.2f} |"
        for ref in (base, second):
            if ref:
                ratio = result.ratio(c.name, ref)
                row += f" {ratio:.2f} |" if ratio is not None else " - |"
        files = c.runs[0].files if c.output is not None else "-"
        row += (
            f" {c.cpu():.2f} | {_mib(c.tree_rss())} | {_mib(c.max_rss())} "
            f"| {c.runs[0].output_bytes / 1e6:,.0f} | {files} | {_cap_cell(c)} "
            f"| {c.identical() if c.check_identical else '-'} |"
        )
        lines.append(row)
    lines.append("")
    lines.extend(f"{note}  " for note in result.notes)
    if result.notes:
        lines.append("")
    if result.profile:
        lines += ["Where the time goes (one profiled run):", "", *result.profile, ""]
    return lines


def report(
    results: list[CaseResult], command: str, seconds: float, bench: Bench, load: tuple[str, str]
) -> str:
    lines = [
        "# toile benchmark results",
        "",
        f"Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC  ",
        f"Command: `{command}`  ",
        f"Total time: {seconds:.0f} s",
        "",
        *machine(bench.toile, bench.commit),
        f"- load average at the start: {load[0]}; at the end: {load[1]}",
        "",
    ]
    if bench.envs:
        lines += ["Peer environments (each its own, outside toile's lock; see peers.py):", ""]
        lines += [f"- {env.describe()}" for env in bench.envs.values()]
        lines.append("")
    lines += [
        "## Targets",
        "",
        "| target | measured | goal | verdict |",
        "| --- | ---: | ---: | --- |",
    ]
    for result in results:
        if result.skipped:
            lines.append(f"| {result.name} | - | - | SKIP ({result.skipped}) |")
        lines.extend(t.row() for t in result.targets)
    lines += ["", "## Cases", ""]
    for result in results:
        lines.extend(case_table(result))
    lines += ["## Raw runs (wall seconds, in the order they ran)", ""]
    for result in results:
        for c in result.contenders:
            walls = ", ".join(f"{r.wall:.3f}" for r in c.runs)
            lines.append(f"- {result.name}, {c.name}: {walls}")
    lines.append("")
    return "\n".join(lines)


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def parse_cases(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in CASES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"cases are {', '.join(CASES)}; got {text!r}")
    return [n for n in CASES if n in names]


def run_case(bench: Bench, name: str, profile: bool) -> CaseResult:
    func, about = CASES[name]
    load = _load()
    log.info("case %s: %s (load average %s)", name, about, load)
    try:
        result = func(bench)
    except Skip as why:
        log.info("  skipped: %s", why)
        return CaseResult(name, about, skipped=str(why))
    result.notes.append(f"Load average when the case started: {load}.")
    failed = [t for t in result.targets if t.verdict() == "FAIL"]
    toile = next((c for c in result.contenders if c.name.startswith("toile") and c.runs), None)
    if profile and failed and toile is not None and name not in ("memory", "help"):
        log.info("  profiling %s", toile.name)
        result.profile = profile_toile(bench, toile)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Benchmark toile export frames.")
    parser.add_argument("--quick", action="store_true", help="Small frames, no peers.")
    parser.add_argument(
        "--cases", type=parse_cases, default=list(CASES), help=f"of {','.join(CASES)}"
    )
    parser.add_argument("--repeat", type=int, default=3, help="Timed runs of toile and floors.")
    parser.add_argument(
        "--peers",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Run the peers (default: yes, but not with --quick).",
    )
    parser.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Profile toile where a target fails (default: with peers).",
    )
    parser.add_argument("--workdir", type=Path, default=HERE / "work", help="Inputs and outputs.")
    parser.add_argument(
        "--toile",
        metavar="REV",
        help="Measure the toile of this commit (checked out and installed under WORKDIR) "
        "instead of the working tree's.",
    )
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
    with_peers = args.peers if args.peers is not None else not args.quick
    profile = args.profile if args.profile is not None else with_peers
    _make_subreaper()
    sizes = QUICK if args.quick else FULL
    workdir = args.workdir.resolve()
    toile, commit = toile_checkout(args.toile, workdir) if args.toile else (None, "")
    bench = Bench(workdir, sizes, args.repeat, with_peers, toile, commit)
    GENERATOR[:] = [bench.python]
    results_path = args.results or (
        bench.workdir / "results-quick.md" if args.quick else HERE / "results.md"
    )
    given = argv if argv is not None else sys.argv[1:]
    command = "uv run python benchmarks/run.py" + (" " + " ".join(given) if given else "")
    load_start = _load()
    started = time.perf_counter()
    results = []
    try:
        prime(bench)
        for name in args.cases:
            results.append(run_case(bench, name, profile))
    finally:
        remove(bench.out)
        if args.clean_inputs:
            remove(bench.inputs)
    text = report(results, command, time.perf_counter() - started, bench, (load_start, _load()))
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(text, encoding="utf-8")
    print(text)
    log.info("wrote %s", results_path)


if __name__ == "__main__":
    main()
