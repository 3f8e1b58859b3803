"""Error types that toile raises for problems a user can fix.

Every error carries one readable line; the CLI prints it as ``Error: <line>``
and exits with code 1. Anything else escaping toile is a bug.
"""

from __future__ import annotations

from pathlib import Path


class ToileError(Exception):
    """Base class: a problem with the inputs, the options or the output."""


class InputError(ToileError):
    """An input file or directory is missing, unreadable, not a TIFF, or corrupt."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class ConfigError(ToileError):
    """The options are inconsistent or invalid (a usage error: exit code 2)."""


class ConfigFileError(ConfigError):
    """A YAML config file is unreadable or invalid (a bad input: exit code 1)."""


class OutputError(ToileError):
    """The output cannot be written (exists, not writable, sample too large, disk full)."""
