"""Logging for sarcoscreen processes.

Log lines carry UIDs where needed and never patient names, identifiers or birth dates: modules log UIDs, counts
and reasons only. `configure_logging` is called once by the command-line entry point.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

__all__ = ["configure_logging"]

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure_logging(level: str = "INFO", file: Path | None = None) -> None:
    """Send sarcoscreen's log records to stderr (and to `file`, rotated daily, when given)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.handlers.TimedRotatingFileHandler(file, when="midnight", backupCount=30))
    formatter = logging.Formatter(_FORMAT)
    for handler in handlers:
        handler.setFormatter(formatter)
    root = logging.getLogger("sarcoscreen")
    root.handlers[:] = handlers
    root.setLevel(level)
    root.propagate = False
    # pynetdicom logs every PDU at DEBUG and dataset summaries that may include patient names: keep it quiet.
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
