"""Logging for sarcoscreen processes.

Log lines carry UIDs where needed and never patient names, identifiers or birth dates: modules log UIDs, counts
and reasons only. `configure_logging` is called once by the command-line entry point.

The log file is private like the rest of the node's storage: its folder and every file the daily rotation opens
are created with ``storage.dir_mode``/``file_mode`` (`sarcoscreen.inference.file_modes`); rotated files keep
their mode when renamed. A log file of an earlier run is appended to as it is.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from pathlib import Path
from typing import IO

from sarcoscreen.inference.error_text import scrub_text
from sarcoscreen.inference.file_modes import PRIVATE, FileModes

__all__ = ["PrivateRotatingFileHandler", "ScrubbingFormatter", "configure_logging"]

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class PrivateRotatingFileHandler(logging.handlers.TimedRotatingFileHandler):
    """A daily rotated log file whose every new file is created with `modes` (the handler opens a new one at each
    rotation, by name)."""

    def __init__(self, file: Path, modes: FileModes, **options: object) -> None:
        self.modes = modes
        super().__init__(file, **options)  # type: ignore[arg-type]

    def _open(self) -> IO[str]:
        def opener(path: str, flags: int) -> int:
            try:
                fd = os.open(path, flags | os.O_EXCL, self.modes.file)
            except FileExistsError:  # the log of an earlier run: left as it is (the start-up check tells its mode)
                return os.open(path, flags)
            os.fchmod(fd, self.modes.file)  # exact, whatever the umask
            return fd

        return open(self.baseFilename, self.mode, encoding=self.encoding, errors=self.errors, opener=opener)


class ScrubbingFormatter(logging.Formatter):
    """Formats a record with what can carry a DICOM value scrubbed (`scrub_text`) from the message of a record
    another library made (pydicom's warnings quote the value they complain about: ``Invalid value for VR PN:
    'DOE^JOHN'``) and from every exception's text and traceback. sarcoscreen's own messages are composed of UIDs,
    counts and reasons, and their exception texts already passed `error_text`."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        if not record.name.startswith("sarcoscreen"):
            record.message = scrub_text(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: object) -> str:  # noqa: N802 (logging's name)
        return scrub_text(super().formatException(ei))  # type: ignore[arg-type]


class UnquotedAccessLine(logging.Filter):
    """uvicorn's access line without the quotes around the request line (``client - GET /results?page=2 HTTP/1.1
    200``): the scrubbing formatter would take a quoted request line for a value and hide it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == '%s - "%s %s HTTP/%s" %d':
            record.msg = "%s - %s %s HTTP/%s %d"
        return True


def configure_logging(level: str = "INFO", file: Path | None = None, *, modes: FileModes = PRIVATE) -> None:
    """Send sarcoscreen's log records to stderr (and to `file`, rotated daily, when given: created with `modes`)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if file is not None:
        modes.make_dirs(file.parent)
        handlers.append(PrivateRotatingFileHandler(file, modes, when="midnight", backupCount=30))
    formatter = ScrubbingFormatter(_FORMAT)
    for handler in handlers:
        handler.setFormatter(formatter)
    root = logging.getLogger("sarcoscreen")
    root.handlers[:] = handlers
    root.setLevel(level)
    root.propagate = False
    # Python warnings (pydicom's about invalid values quote the value) went to stderr as they were: through the
    # same handlers now, scrubbed by the formatter.
    logging.captureWarnings(True)
    warnings_logger = logging.getLogger("py.warnings")
    warnings_logger.handlers[:] = handlers
    warnings_logger.propagate = False
    # pynetdicom logs every PDU at DEBUG and dataset summaries that may include patient names: keep it quiet.
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    # The web console's server (uvicorn: start, stop, and an access line per request - client, method, path with its
    # query string, status; the console never puts patient data into a path or query string) through the same
    # handlers, at the same level.
    uvicorn_logger = logging.getLogger("uvicorn")
    uvicorn_logger.handlers[:] = handlers
    uvicorn_logger.setLevel(level)
    uvicorn_logger.propagate = False
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, UnquotedAccessLine) for f in access.filters):
        access.addFilter(UnquotedAccessLine())
