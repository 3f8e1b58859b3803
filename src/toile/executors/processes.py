"""``--workers N`` local processes, each running whole tasks (whole shards).

A small pool of its own rather than :mod:`concurrent.futures`: the driver talks to
each worker over one pipe and watches its process sentinel, so it can stop every
worker within a fraction of a second (Ctrl-C, a failure) by setting a shared stop
flag the tasks poll and then killing by PID whatever is still running, and a worker
that dies (killed, out of memory) has its job run again on a fresh one. Workers
ignore SIGINT (the driver decides) and exit on their own when the driver dies.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from toile.errors import OutputError
from toile.executors import base
from toile.executors.base import Executor, Failed, Job
from toile.logs import configure_logging, logging_state

log = logging.getLogger(__name__)

#: Seconds the workers get to drop their tasks (and temporary files) before they are killed.
STOP_GRACE = 1.0


def _worker_main(conn: Any, stop: Any, verbose: bool | None) -> None:
    """A worker process: run ``(function, args)`` messages until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if verbose is not None:
        configure_logging(verbose)
    base.set_stop_check(stop.is_set)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent.sentinel,), daemon=True).start()
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        function, args = message
        try:
            reply = ("ok", function(*args))
        except BaseException as error:  # every failure goes back to the driver
            reply = ("error", _picklable(error))
        try:
            conn.send(reply)
        except (OSError, ValueError):
            return


def _picklable(error: BaseException) -> BaseException:
    try:
        pickle.dumps(error)
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")
    return error


def _exit_with(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(1)


@dataclass
class _Worker:
    process: Any
    conn: Any
    job: Job | None = None


class ProcessesExecutor(Executor):
    name = "processes"
    #: Times a job is run again after its worker process died under it.
    retries = 2

    def __init__(self, workers: int = 2) -> None:
        super().__init__(workers)
        self._context = multiprocessing.get_context("spawn")
        self._stop: Any = None
        self._workers: list[_Worker] = []

    def start(self) -> None:
        self._stop = self._context.Event()
        for _ in range(self.workers):
            self._spawn()

    def _spawn(self) -> _Worker:
        ours, theirs = self._context.Pipe()
        process = self._context.Process(
            target=_worker_main,
            args=(theirs, self._stop, logging_state()),
            name="toile-worker",
            daemon=True,
        )
        process.start()
        theirs.close()
        worker = _Worker(process, ours)
        self._workers.append(worker)
        return worker

    def _retire(self, worker: _Worker) -> None:
        self._workers.remove(worker)
        with contextlib.suppress(OSError):
            worker.conn.close()
        if worker.process.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.process.pid, signal.SIGKILL)
        worker.process.join(timeout=5)

    def run(self, function: Callable[..., Any], jobs: Sequence[Job]) -> Iterator[tuple[Job, Any]]:
        if not self._workers:
            self.start()
        queue: deque[Job] = deque(jobs)
        deaths: dict[str, int] = {}
        remaining = len(queue)
        try:
            while remaining:
                while len(self._workers) < self.workers:
                    self._spawn()
                for worker in list(self._workers):
                    if worker.job is None and queue:
                        worker.job = queue.popleft()
                        try:
                            worker.conn.send((function, worker.job.args))
                        except (OSError, ValueError):
                            queue.appendleft(worker.job)
                            worker.job = None
                            self._retire(worker)
                busy = [w for w in self._workers if w.job is not None]
                handles = [w.conn for w in busy] + [w.process.sentinel for w in self._workers]
                ready = set(multiprocessing.connection.wait(handles))
                for worker in list(self._workers):
                    if worker.conn in ready and worker.job is not None:
                        try:
                            status, value = worker.conn.recv()
                        except (EOFError, OSError):
                            ready.add(worker.process.sentinel)
                        else:
                            job, worker.job = worker.job, None
                            remaining -= 1
                            if status != "ok" and not isinstance(value, Exception):
                                raise value
                            yield job, (value if status == "ok" else Failed(value))
                            continue
                    if worker.process.sentinel in ready:
                        job = worker.job
                        code = worker.process.exitcode
                        self._retire(worker)
                        if job is not None:
                            deaths[job.key] = deaths.get(job.key, 0) + 1
                            if deaths[job.key] > self.retries:
                                raise OutputError(
                                    f"{job.key}: its worker process died {deaths[job.key]} "
                                    f"times (last exit code {code})"
                                )
                            log.warning(
                                "%s: worker process died (exit code %s); running it again",
                                job.key,
                                code,
                            )
                            queue.appendleft(job)
        finally:
            if remaining:
                # Dropped early (an error, Ctrl-C, a replan): nothing may go on writing.
                for worker in [w for w in self._workers if w.job is not None]:
                    self._retire(worker)

    def close(self, abort: bool = False) -> None:
        if self._stop is None:
            return
        if abort:
            self._stop.set()
        for worker in self._workers:
            if worker.job is None:
                with contextlib.suppress(OSError, ValueError):
                    worker.conn.send(None)
        end = time.monotonic() + (STOP_GRACE if abort else 30.0)
        for worker in self._workers:
            worker.process.join(timeout=max(0.0, end - time.monotonic()))
        for worker in list(self._workers):
            self._retire(worker)
        self._stop = None
