"""Tasks on a Dask cluster (``dask.distributed``): a running scheduler, or a local cluster.

``--scheduler tcp://host:8786`` or ``--scheduler-file PATH`` connects to a running
cluster (one started by ``dask scheduler``/``dask worker``, by dask-jobqueue's
``SLURMCluster``, or by ``SLURMRunner`` inside one allocation); without either, a
``LocalCluster`` of ``--workers`` single-threaded worker processes is started and
stopped here. Every task is submitted under an explicit key (Dask would merge calls
with identical arguments otherwise) with retries; results are taken as they finish.
The staging directory must be on a file system every worker sees (the shards are
written there by the workers).

Ctrl-C sets a cluster-wide :class:`distributed.Event` that running tasks poll (at
most every half second), so they drop their shard and its temporary file; the
futures are cancelled and a local cluster is closed.

Needs the ``toile[dask]`` extra (``distributed``, ``dask-jobqueue``).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from toile.errors import ConfigError, OutputError
from toile.executors import base
from toile.executors.base import Executor, Failed, Job

log = logging.getLogger(__name__)

EXTRA_HINT = "pip install 'toile[dask]'"
#: Seconds to wait for a scheduler to answer.
CONNECT_TIMEOUT = "20s"
#: Seconds between two looks at the stop event from a running task.
STOP_POLL = 0.5


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ConfigError(
            f"--executor dask needs the toile[dask] extra (distributed is not installed): "
            f"{EXTRA_HINT}"
        ) from None
    return distributed


def _run_task(function: Callable[..., Any], args: tuple, stop_event: str) -> Any:
    """Worker side: run ``function(*args)`` with the stop event as the tasks' stop check."""
    from distributed import Event, get_client

    event = Event(stop_event, client=get_client())
    state = {"checked": 0.0, "set": False}

    def check() -> bool:
        now = time.monotonic()
        if not state["set"] and now - state["checked"] >= STOP_POLL:
            state["checked"] = now
            try:
                state["set"] = bool(event.is_set())
            except Exception:  # the scheduler went away: the driver is gone
                state["set"] = True
        return state["set"]

    base.set_stop_check(check)
    try:
        return function(*args)
    finally:
        base.set_stop_check(base._never)


@contextlib.contextmanager
def _interrupt_after() -> Iterator[None]:
    """Hold Ctrl-C while a local cluster starts, then raise it: a cluster interrupted
    half-way cannot be closed (distributed fails on it at exit)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: arrived.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if arrived:
        raise KeyboardInterrupt


class DaskExecutor(Executor):
    name = "dask"
    #: Times Dask runs a failed task again (a lost worker is rescheduled by Dask itself).
    retries = 2

    def __init__(
        self,
        workers: int = 2,
        scheduler: str | None = None,
        scheduler_file: str | Path | None = None,
    ) -> None:
        super().__init__(workers)
        self.scheduler = scheduler
        self.scheduler_file = Path(scheduler_file) if scheduler_file is not None else None
        self.client: Any = None
        self.cluster: Any = None
        self._stop: Any = None

    def describe(self) -> str:
        if self.scheduler:
            return f"dask executor at {self.scheduler}"
        if self.scheduler_file:
            return f"dask executor of {self.scheduler_file}"
        return f"dask executor, local cluster of {self.workers} worker process(es)"

    def start(self) -> None:
        distributed = _distributed()
        try:
            if self.scheduler is not None:
                self.client = distributed.Client(self.scheduler, timeout=CONNECT_TIMEOUT)
            elif self.scheduler_file is not None:
                if not self.scheduler_file.is_file():
                    raise ConfigError(f"{self.scheduler_file}: no such Dask scheduler file")
                self.client = distributed.Client(
                    scheduler_file=str(self.scheduler_file), timeout=CONNECT_TIMEOUT
                )
            else:
                with _interrupt_after():
                    self.cluster = self._local_cluster(distributed)
                self.client = distributed.Client(self.cluster)
        except (OSError, TimeoutError) as error:
            where = self.scheduler or self.scheduler_file or "a local cluster"
            self.close(abort=True)
            raise OutputError(f"{where}: cannot reach the Dask scheduler: {error}") from None
        import uuid

        self._stop = f"toile-stop-{uuid.uuid4().hex[:12]}"

    def _local_cluster(self, distributed: Any) -> Any:
        return distributed.LocalCluster(
            n_workers=self.workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            scheduler_port=0,
            dashboard_address=None,
            # no dashboard; its HTTP routes on a free local port, not 8787
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            silence_logs=logging.ERROR,
        )

    def run(self, function: Callable[..., Any], jobs: Sequence[Job]) -> Iterator[tuple[Job, Any]]:
        distributed = _distributed()
        if self.client is None:
            self.start()
        by_key: dict[str, Job] = {}
        futures = []
        for job in jobs:
            future = self.client.submit(
                _run_task,
                function,
                job.args,
                self._stop,
                key=job.key,
                retries=self.retries,
                pure=False,
            )
            by_key[future.key] = job
            futures.append(future)
        pending = set(futures)
        try:
            for future in distributed.as_completed(futures):
                pending.discard(future)
                job = by_key[future.key]
                if future.status == "error":
                    yield job, Failed(future.exception())
                elif future.status == "cancelled":
                    raise OutputError(f"{job.key}: the Dask task was cancelled")
                else:
                    yield job, future.result()
                future.release()
        finally:
            if pending:
                self.client.cancel(list(pending), force=True)

    def close(self, abort: bool = False) -> None:
        client, self.client = self.client, None
        cluster, self.cluster = self.cluster, None
        if client is not None:
            if abort and self._stop is not None:
                try:
                    _distributed().Event(self._stop, client=client).set()
                except Exception as error:  # the scheduler may be gone already
                    log.debug("could not signal the Dask workers to stop: %s", error)
            try:
                client.close(timeout=5 if abort else 30)
            except Exception as error:
                log.debug("closing the Dask client: %s", error)
        if cluster is not None:
            try:
                cluster.close(timeout=5 if abort else 30)
            except Exception as error:
                log.debug("closing the local Dask cluster: %s", error)


def slurm_cluster(
    *,
    cores: int,
    memory: str,
    walltime: str = "01:00:00",
    queue: str | None = None,
    account: str | None = None,
    python: str | None = None,
    job_extra_directives: Sequence[str] = (),
    **options: Any,
) -> Any:
    """A dask-jobqueue ``SLURMCluster`` whose jobs run one single-threaded worker per core.

    Each SLURM job gets ``cores`` CPUs and ``memory``; toile's tasks are whole shards,
    CPU-bound in single threads, so a job runs ``cores`` worker processes of one
    thread each. Scale it with ``cluster.scale(jobs=N)`` and pass
    ``cluster.scheduler_address`` to ``--scheduler`` (or :func:`toile.export.export_frames`
    through ``make_config(..., scheduler=...)``).
    """
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise ConfigError(
            f"SLURM clusters need the toile[dask] extra (dask-jobqueue is not installed): "
            f"{EXTRA_HINT}"
        ) from None
    return SLURMCluster(
        cores=cores,
        processes=cores,
        memory=memory,
        walltime=walltime,
        queue=queue,
        account=account,
        python=python,
        job_extra_directives=list(job_extra_directives),
        **options,
    )
