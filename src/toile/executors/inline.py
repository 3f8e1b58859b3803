"""Every task in the calling process, one after the other (one worker, small exports)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from toile.executors.base import Executor, Failed, Job


class InlineExecutor(Executor):
    name = "inline"
    in_process = True

    def __init__(self, workers: int = 1) -> None:
        super().__init__(1)

    def run(self, function: Callable[..., Any], jobs: Sequence[Job]) -> Iterator[tuple[Job, Any]]:
        for job in jobs:
            try:
                result = function(*job.args)
            except Exception as error:
                result = Failed(error)
            yield job, result
