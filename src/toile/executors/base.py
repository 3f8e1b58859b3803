"""The executor interface: run one function over many jobs, anywhere, results as they finish.

An export hands an executor whole tasks (measure a recording, assemble one shard),
each a module-level function and plain, picklable arguments. Results come back in
whatever order the tasks finish; the export does not care. A new executor (Ray, a
job array) is one module with one :class:`Executor` subclass and one line in
:data:`toile.executors.EXECUTORS`.

Errors cross process and machine boundaries as :class:`TaskFailure` (toile's own
error types do not all survive pickling); the driver turns them back into the
original error with :meth:`TaskFailure.rebuild`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from toile import errors
from toile.errors import ToileError


@dataclass(frozen=True)
class Job:
    """One task: a unique ``key`` (names it to a cluster scheduler) and its arguments."""

    key: str
    args: tuple


@dataclass(frozen=True)
class Failed:
    """What :meth:`Executor.run` yields for a job that raised (after any retries)."""

    error: BaseException


class TaskFailure(Exception):
    """A :class:`ToileError` raised by a task, as plain values that pickle anywhere.

    ``recording`` is the recording index the error belongs to, when it is a bad
    recording (for ``--on-error skip``).
    """

    def __init__(self, kind: str, values: tuple, recording: int | None = None) -> None:
        super().__init__(kind, values, recording)
        self.kind = kind
        self.values = values
        self.recording = recording

    @classmethod
    def wrap(cls, error: ToileError, recording: int | None = None) -> TaskFailure:
        if isinstance(error, errors.InputError):
            return cls("InputError", (error.path, error.problem), recording)
        return cls(type(error).__name__, (str(error),), recording)

    def rebuild(self) -> ToileError:
        kind = getattr(errors, self.kind, None)
        if isinstance(kind, type) and issubclass(kind, ToileError):
            try:
                return kind(*self.values)
            except TypeError:
                pass
        return ToileError(*self.values[:1])

    def __str__(self) -> str:
        return str(self.rebuild())


def _never() -> bool:
    return False


#: Polled by long tasks: True once the export is stopping (set in worker processes).
_stop_check: Callable[[], bool] = _never


def set_stop_check(check: Callable[[], bool]) -> None:
    global _stop_check
    _stop_check = check


def stopping() -> bool:
    """Whether the task should drop what it is doing (the export was interrupted)."""
    return _stop_check()


class Stopped(Exception):
    """A task gave up because the export is stopping."""


class Executor(ABC):
    """Runs jobs; a context manager that starts its workers and always stops them."""

    name: ClassVar[str]
    #: True when tasks run in the caller's process (they may reuse what it has opened).
    in_process: ClassVar[bool] = False

    def __init__(self, workers: int = 1) -> None:
        self.workers = max(1, int(workers))

    def __enter__(self) -> Executor:
        try:
            self.start()
        except BaseException:
            self.close(abort=True)  # whatever did start (an interrupted start-up) stops
            raise
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close(abort=exc_type is not None)

    def start(self) -> None:  # noqa: B027 - an executor without workers starts nothing
        """Start the workers (or connect to them)."""

    @abstractmethod
    def run(self, function: Callable[..., Any], jobs: Sequence[Job]) -> Iterator[tuple[Job, Any]]:
        """``function(*job.args)`` for every job; yield ``(job, result)`` as each finishes.

        A job that raises an ``Exception`` (after the executor's own retries) yields
        ``(job, Failed(error))``; the caller decides what follows. Closing the iterator
        early drops the jobs not yet finished.
        """

    def close(self, abort: bool = False) -> None:  # noqa: B027 - nothing to stop by default
        """Stop the workers; with ``abort``, at once (Ctrl-C, a failure)."""

    def describe(self) -> str:
        return f"{self.name} executor, {self.workers} worker(s)"
