"""The node's background threads (series watcher, sender, retention sweeper): one round of work at an interval.

A `BackgroundLoop` runs `run_once` on a named daemon thread until `stop`. A database error or an unexpected error
in a round is logged and the loop goes on with the next round: a node must outlive a database restart or a bug
in one round. When a round says there is more to do (`run_once` returns something true and `more_at_once` is
set), the next round starts at once instead of after the interval.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy.exc import SQLAlchemyError

from sarcoscreen.inference.error_text import error_text

__all__ = ["BackgroundLoop"]

logger = logging.getLogger(__name__)


class BackgroundLoop:
    """Subclasses give `name`, `interval_s` and `run_once` (and may change `first_delay_s`, `more_at_once`,
    `join_timeout_s`)."""

    name = "background"
    more_at_once = False
    """Start the next round at once when `run_once` returned something true (work was left)."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> object:
        raise NotImplementedError

    def interval_s(self) -> float:
        raise NotImplementedError

    def first_delay_s(self) -> float:
        """How long after `start` the first round runs (default: at once)."""
        return 0.0

    def join_timeout_s(self) -> float:
        return 30.0

    def _loop(self) -> None:
        if self._stop.wait(self.first_delay_s()):
            return
        while not self._stop.is_set():
            try:
                if self.run_once() and self.more_at_once:
                    continue
            except SQLAlchemyError as exc:
                logger.error("%s: database error (%s); retrying in %g s", self.name, type(exc).__name__,
                             self.interval_s())
            except Exception as exc:  # the text only, scrubbed: a traceback's message can quote a DICOM value
                logger.error("%s: unexpected error (%s); retrying in %g s", self.name, error_text(exc, location=True),
                             self.interval_s())
            self._stop.wait(self.interval_s())

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.join_timeout_s())
