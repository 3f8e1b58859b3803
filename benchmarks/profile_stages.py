"""CPU seconds per stage from a py-spy ``--format raw --threads`` profile (idle samples excluded).

A stage is the innermost function of toile's own code on the stack (``module.function``),
with the innermost frame below it (the library or builtin doing the work); stacks with no
toile frame are start-up (imports) or the interpreter's own. py-spy leaves out samples of
idle threads, so a sample is a thread on a CPU, and ``count / rate`` is CPU seconds.
"""

from __future__ import annotations

import re
from collections import Counter

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]*)(?::\d+)?\)$")


def _frames(stack: str) -> list[tuple[str, str]]:
    out = []
    for frame in stack.split(";"):
        match = _FRAME.match(frame.strip())
        out.append((match["func"], match["file"]) if match else (frame.strip(), ""))
    return out


def stage_of(stack: str) -> tuple[str, str]:
    """(thread, stage) of one raw stack line's frames."""
    thread, _, rest = stack.partition(";")
    frames = _frames(rest)
    name = thread.split(":", 1)[-1].strip() or thread
    toile_at = [i for i, (_, file) in enumerate(frames) if file.startswith("toile/")]
    if not toile_at:
        if any("importlib" in file for _, file in frames):
            return name, "imports (no toile frame)"
        func, file = frames[-1] if frames else ("?", "")
        return name, f"{func} ({file or 'interpreter'})"
    index = toile_at[-1]
    func, file = frames[index]
    module = file.removeprefix("toile/").removesuffix(".py").replace("/", ".")
    stage = f"{module}.{func}"
    if any("importlib" in f for _, f in frames[index:]):
        return name, f"{stage} -> imports"
    if index + 1 < len(frames):
        below, where = frames[-1]
        lib = where.split("/", 1)[0].removesuffix(".py") if where else "builtin"
        stage += f" -> {below} ({lib})"
    return name, stage


def summary(raw: str, rate: int, top: int = 14) -> list[str]:
    """Markdown lines: CPU seconds per thread, then the ``top`` stages."""
    stages: Counter[tuple[str, str]] = Counter()
    threads: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        thread, stage = stage_of(stack)
        stages[thread, stage] += int(count)
        threads[thread] += int(count)
    total = sum(threads.values())
    if not total:
        return ["(the profile has no samples)"]
    lines = [
        f"CPU seconds sampled: {total / rate:.2f} ("
        + ", ".join(f"{t}: {n / rate:.2f}" for t, n in threads.most_common())
        + ")",
        "",
        "| thread | stage (innermost toile function -> innermost frame) | CPU s | share |",
        "| --- | --- | ---: | ---: |",
    ]
    for (thread, stage), n in stages.most_common(top):
        lines.append(f"| {thread} | {stage} | {n / rate:.2f} | {100 * n / total:.0f}% |")
    rest = total - sum(n for _, n in stages.most_common(top))
    if rest:
        lines.append(f"| | everything else | {rest / rate:.2f} | {100 * rest / total:.0f}% |")
    return lines
