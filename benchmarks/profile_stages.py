"""Seconds per stage from a py-spy ``--format raw --threads`` profile (idle samples excluded).

A stage is the innermost function of toile's own code on the stack (``module.function``),
with the innermost frame below it (the library or builtin doing the work); stacks with no
toile frame are start-up (imports) or the interpreter's own. py-spy leaves out samples of
threads it judges idle, so ``count / rate`` is the time a thread ran or sat in a system
call (a write waiting for the disk counts). It misjudges some waits on locks and queues
as busy: stacks whose innermost frame is such a wait are counted apart, as waiting.
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


_PROCESSES = re.compile(r'^(?:process \d+:"[^"]*";)+')


def stage_of(stack: str) -> tuple[str, str]:
    """(thread, stage) of one raw stack line's frames.

    With ``--subprocesses`` a line starts with one ``process PID:"command"`` frame per
    level of the process tree: the thread is then named after its process (the main one,
    or a child below it).
    """
    where = ""
    processes = _PROCESSES.match(stack)
    if processes:
        depth = processes.group(0).count('";')
        where = "main " if depth == 1 else f"child{'' if depth == 2 else ' ' + str(depth - 1)} "
        stack = stack[processes.end() :]
    thread, _, rest = stack.partition(";")
    frames = _frames(rest)
    name = where + (thread.split(":", 1)[-1].strip() or thread)
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


#: Innermost frames that are a thread waiting (lock, condition, queue, selector, sleep).
_WAITS = re.compile(
    r"(^|\.)(wait|acquire|select|poll|sleep|_recv|_recv_bytes|recv_bytes|get|join)$"
    r"|^_worker$"
)


def waiting(stack: str) -> bool:
    """Whether the innermost frame of a stack is a wait that py-spy may count as busy."""
    processes = _PROCESSES.match(stack)
    rest = stack[processes.end() :] if processes else stack
    frames = _frames(rest.partition(";")[2])
    return bool(frames) and _WAITS.search(frames[-1][0]) is not None


def summary(raw: str, rate: int, top: int = 14) -> list[str]:
    """Markdown lines: CPU seconds per thread, then the ``top`` stages."""
    stages: Counter[tuple[str, str]] = Counter()
    threads: Counter[str] = Counter()
    waits = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        if waiting(stack):
            waits += int(count)
            continue
        thread, stage = stage_of(stack)
        stages[thread, stage] += int(count)
        threads[thread] += int(count)
    total = sum(threads.values())
    if not total:
        return ["(the profile has no samples)"]
    lines = [
        f"Seconds sampled busy: {total / rate:.2f} ("
        + ", ".join(f"{t}: {n / rate:.2f}" for t, n in threads.most_common())
        + f"); waits on locks and queues left out: {waits / rate:.2f}",
        "",
        "| thread | stage (innermost toile function -> innermost frame) | s | share |",
        "| --- | --- | ---: | ---: |",
    ]
    for (thread, stage), n in stages.most_common(top):
        lines.append(f"| {thread} | {stage} | {n / rate:.2f} | {100 * n / total:.0f}% |")
    rest = total - sum(n for _, n in stages.most_common(top))
    if rest:
        lines.append(f"| | everything else | {rest / rate:.2f} | {100 * rest / total:.0f}% |")
    return lines
