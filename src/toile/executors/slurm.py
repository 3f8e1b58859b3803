"""``toile export frames`` across one SLURM allocation, with dask-jobqueue's ``SLURMRunner``.

Every task of the job step runs the same command::

    srun python -m toile.executors.slurm export frames INPUT... OUTPUT [OPTIONS]

SLURM task 0 becomes the Dask scheduler, task 1 runs the export (with ``--scheduler``
set to that scheduler), every other task is a single-threaded Dask worker; they find
each other through a scheduler file in the current directory
(``scheduler-{job_id}.json``, or ``$TOILE_SCHEDULER_FILE``), which must be on a file
system every node sees, like OUTPUT. ``$TOILE_SLURM_HOST`` pins the address the
scheduler and workers listen on (default: every interface). The exit status of the
job step is the export's.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        from dask_jobqueue.slurm import SLURMRunner
        from distributed import Client
    except ImportError:
        sys.exit("Error: SLURM runs need the toile[dask] extra: pip install 'toile[dask]'")
    host = os.environ.get("TOILE_SLURM_HOST") or None
    scheduler_options = {"port": 0, "dashboard": False, "dashboard_address": f"{host or ''}:0"}
    worker_options = {"nthreads": 1}
    if host is not None:
        scheduler_options["host"] = host
        worker_options["host"] = host
    scheduler_file = os.environ.get("TOILE_SCHEDULER_FILE", "scheduler-{job_id}.json")
    # Only the client task gets past the runner: task 0 serves as the scheduler and the
    # others as workers until the export ends, then they exit.
    with (
        SLURMRunner(
            scheduler_file=scheduler_file,
            scheduler_options=scheduler_options,
            worker_options=worker_options,
        ) as runner,
        Client(runner) as client,
    ):
        client.wait_for_workers(runner.n_workers)
        from toile.cli import main as cli

        cli([*args, "--scheduler", client.scheduler.address], prog_name="toile")


if __name__ == "__main__":
    main()
