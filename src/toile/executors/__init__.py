"""Executors run an export's tasks: in this process, in local processes, or on Dask.

``get_executor(name, workers=..., **options)`` builds one by its registry name; the
registry is :data:`EXECUTORS`, one line per executor module.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from toile.errors import ConfigError
from toile.executors.base import Executor, Job, TaskFailure, stopping

#: Registry name -> "module:class". Adding an executor is one module and one line here.
EXECUTORS: dict[str, str] = {
    "inline": "toile.executors.inline:InlineExecutor",
    "processes": "toile.executors.processes:ProcessesExecutor",
    "dask": "toile.executors.dask:DaskExecutor",
}


def get_executor(name: str, **options: Any) -> Executor:
    """The executor registered as ``name``, built with ``options``."""
    try:
        target = EXECUTORS[name]
    except KeyError:
        raise ConfigError(
            f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}"
        ) from None
    module, _, cls = target.partition(":")
    return getattr(import_module(module), cls)(**options)


__all__ = ["EXECUTORS", "Executor", "Job", "TaskFailure", "get_executor", "stopping"]
