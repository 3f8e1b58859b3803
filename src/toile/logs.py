"""Logging set-up shared by the CLI and its worker processes."""

from __future__ import annotations

import logging
import sys


class _OncePerMessage(logging.Filter):
    """Drop a message already shown (a file's warning recurs each time it is opened)."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[tuple[int, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.levelno, record.getMessage())
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


def configure_logging(verbose: bool) -> None:
    """``toile: LEVEL: message`` lines on stderr; INFO with ``verbose``, else WARNING."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("toile: %(levelname)s: %(message)s"))
    handler.addFilter(_OncePerMessage())
    logger = logging.getLogger("toile")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
    logger.propagate = False
    # tifffile logs what it tolerates in damaged files; toile reports what matters itself.
    tifffile_logger = logging.getLogger("tifffile")
    tifffile_logger.handlers[:] = [handler] if verbose else [logging.NullHandler()]
    tifffile_logger.propagate = False


def logging_state() -> bool | None:
    """How this process was configured (``verbose``), or None when toile's logging is untouched."""
    logger = logging.getLogger("toile")
    if not logger.handlers:
        return None
    return logger.level <= logging.INFO
