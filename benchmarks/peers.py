"""The environments the peer scripts run in, made on demand and cached outside the repository.

Every peer gets its own virtual environment, never toile's lock file: mosaicml-streaming
pins an older numpy than toile's, and the peers that need torch would otherwise pull a
multi-GB CUDA build. Where torch is involved the environment is made with Python 3.11's
``venv`` and ``pip``, with ``torch==2.13.0`` as a constraint: on this kind of machine pip
finds a CPU-only wheel of that version on disk, while a resolver left alone picks a newer
CUDA torch from PyPI. The others are made with ``uv``.

An environment is made once, in ``~/.cache/toile-benchmarks/envs/NAME-HASH`` (or under
``$TOILE_BENCH_ENVS``), where HASH changes with its recipe; a stamp file records how long
it took and the versions installed. A peer whose environment cannot be made is skipped,
with the reason (the installer's last lines).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("benchmarks")

STAMP = "toile-bench-env.json"
#: What pip gets besides the requirements where torch is involved (see the module doc).
TORCH_PIN = "torch==2.13.0"


@dataclass(frozen=True)
class Recipe:
    """How to make one peer's environment."""

    name: str
    requirements: tuple[str, ...]
    #: "pip": ``python -m venv`` + pip (used where torch is involved); "uv": ``uv venv``.
    installer: str
    #: The interpreter: a path or a name found on PATH.
    python: str
    constraints: tuple[str, ...] = ()
    #: Distributions whose versions the report lists.
    show: tuple[str, ...] = ()

    def key(self) -> str:
        text = json.dumps([self.requirements, self.installer, self.python, self.constraints])
        return hashlib.sha256(text.encode()).hexdigest()[:10]


@dataclass
class Env:
    """A peer environment: its Python, or why there is none."""

    recipe: Recipe
    python: Path | None = None
    seconds: float = 0.0  # how long making it took (when it was made, possibly earlier)
    made_now: bool = False
    made_at: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    reason: str = ""  # why it is missing

    def describe(self) -> str:
        if self.python is None:
            return f"{self.recipe.name}: not available: {self.reason}"
        when = "made in this run" if self.made_now else f"cached, made {self.made_at}"
        versions = ", ".join(f"{k} {v}" for k, v in self.versions.items())
        return (
            f"{self.recipe.name}: {self.recipe.installer} environment, {when} in "
            f"{self.seconds:.0f} s; {versions}"
        )


def _python311() -> str:
    for candidate in ("/usr/bin/python3.11", shutil.which("python3.11")):
        if candidate and Path(candidate).exists():
            return candidate
    return "python3.11"


def _uv() -> str:
    return os.environ.get("UV") or shutil.which("uv") or "uv"


def recipes() -> dict[str, Recipe]:
    """Every peer environment, keyed by the name the cases use."""
    from importlib.metadata import version

    py311 = _python311()
    # The webdataset script gets toile's Python and the versions toile's environment has,
    # so that it differs from toile only in what it does.
    same = tuple(f"{d}=={version(d)}" for d in ("numpy", "tifffile", "webdataset"))
    return {
        "webdataset": Recipe(
            "webdataset", same, "uv", sys.executable, show=("numpy", "tifffile", "webdataset")
        ),
        "streaming": Recipe(
            "streaming",
            (TORCH_PIN, "mosaicml-streaming", "tifffile"),
            "pip",
            py311,
            constraints=(TORCH_PIN,),
            show=("mosaicml-streaming", "torch", "numpy", "tifffile", "zstd"),
        ),
        "litdata": Recipe(
            "litdata",
            (TORCH_PIN, "litdata", "tifffile"),
            "pip",
            py311,
            constraints=(TORCH_PIN,),
            show=("litdata", "torch", "numpy", "tifffile"),
        ),
        "ray": Recipe(
            "ray",
            ("ray[data]", "tifffile"),
            "uv",
            sys.executable,
            show=("ray", "pyarrow", "numpy", "tifffile"),
        ),
        # Not a peer: the sampling profiler that shows where toile's time goes.
        "py-spy": Recipe("py-spy", ("py-spy",), "uv", sys.executable, show=("py-spy",)),
    }


def envs_root() -> Path:
    default = Path.home() / ".cache" / "toile-benchmarks" / "envs"
    return Path(os.environ.get("TOILE_BENCH_ENVS", default))


def _run(argv: list[str], log_file: Path) -> None:
    with open(log_file, "ab") as sink:
        sink.write(f"$ {' '.join(argv)}\n".encode())
        sink.flush()
        subprocess.run(argv, stdout=sink, stderr=subprocess.STDOUT, check=True, timeout=1800)


def _versions(python: Path, names: tuple[str, ...]) -> dict[str, str]:
    code = (
        "import json, sys\nfrom importlib.metadata import version\nout = {}\n"
        "for n in sys.argv[1:]:\n    try: out[n] = version(n)\n    except Exception: pass\n"
        "print(json.dumps(out))"
    )
    done = subprocess.run(
        [str(python), "-c", code, *names], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def _make(recipe: Recipe, where: Path, log_file: Path) -> None:
    """Create the virtual environment and install the requirements (pip or uv)."""
    python = where / "bin" / "python"
    if recipe.installer == "uv":
        _run([_uv(), "venv", "-q", "--python", recipe.python, str(where)], log_file)
        argv = [_uv(), "pip", "install", "-q", "--python", str(python)]
    else:  # pip reads the machine's configuration (find-links, extra indexes) as usual
        _run([recipe.python, "-m", "venv", str(where)], log_file)
        argv = [str(python), "-m", "pip", "install", "-q"]
    if recipe.constraints:
        constraints = where / "constraints.txt"
        constraints.write_text("\n".join(recipe.constraints) + "\n")
        argv += ["--constraint", str(constraints)]
    _run([*argv, *recipe.requirements], log_file)


def ensure(recipe: Recipe, root: Path | None = None) -> Env:
    """The environment of ``recipe``: cached, or made now; or why it cannot be made."""
    root = root or envs_root()
    where = root / f"{recipe.name}-{recipe.key()}"
    stamp = where / STAMP
    if stamp.exists():
        data = json.loads(stamp.read_text())
        return Env(
            recipe,
            where / "bin" / "python",
            seconds=data["seconds"],
            made_at=data["made_at"],
            versions=data["versions"],
        )
    root.mkdir(parents=True, exist_ok=True)
    log_file = root / f"{recipe.name}-{recipe.key()}.log"
    log_file.unlink(missing_ok=True)
    if where.exists():
        shutil.rmtree(where)
    log.info("making the %s environment in %s (log: %s)", recipe.name, where, log_file)
    started = time.perf_counter()
    try:
        _make(recipe, where, log_file)
        versions = _versions(where / "bin" / "python", recipe.show)
    except (OSError, subprocess.SubprocessError) as error:
        shutil.rmtree(where, ignore_errors=True)
        tail = (
            log_file.read_text(errors="replace").strip().splitlines()[-3:]
            if log_file.exists()
            else []
        )
        reason = f"{type(error).__name__}: {error}" + (f" ({' / '.join(tail)})" if tail else "")
        return Env(recipe, reason=reason[-600:])
    seconds = time.perf_counter() - started
    made_at = f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC"
    stamp.write_text(
        json.dumps({"seconds": seconds, "made_at": made_at, "versions": versions}, indent=1)
    )
    return Env(recipe, where / "bin" / "python", seconds, True, made_at, versions)
