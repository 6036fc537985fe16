"""The results page's patient filter, kept out of every URL, the access log and the browser's storage.

The patient ID is posted with a form (with the CSRF token) and kept here, in the server's memory, under a random
key that the signed session cookie holds: the cookie (signed, not encrypted) never carries the ID, nor does any
link, query string or log line. A filter is forgotten after `max_age_s` without use, on sign-out, and when the
process restarts (the page then shows every patient again).
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field

from starlette.requests import Request

__all__ = ["PatientFilterStore"]

_SESSION_KEY = "patient_filter_key"


@dataclass
class PatientFilterStore:
    """Patient filters by session key, each with when it was last used."""

    max_age_s: float = 8 * 3600.0
    max_entries: int = 10_000
    _entries: dict[str, tuple[str, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, request: Request) -> str | None:
        """The session's patient filter, if it has one."""
        key = request.session.get(_SESSION_KEY)
        if not isinstance(key, str):
            return None
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or now - entry[1] > self.max_age_s:
                self._entries.pop(key, None)
                return None
            self._entries[key] = (entry[0], now)
            return entry[0]

    def set(self, request: Request, patient_id: str | None) -> None:
        """Filter the session's results by `patient_id` (``None`` or empty: no patient filter)."""
        key = request.session.pop(_SESSION_KEY, None)
        with self._lock:
            if isinstance(key, str):
                self._entries.pop(key, None)
            if not patient_id:
                return
            key = secrets.token_urlsafe(24)
            self._entries[key] = (patient_id, time.monotonic())
            while len(self._entries) > self.max_entries:
                self._entries.pop(next(iter(self._entries)))
        request.session[_SESSION_KEY] = key
