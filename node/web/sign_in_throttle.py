"""Refused sign-ins slow down guessing: after `limit` failures within `window_s` for one user name, or from one
client address, further attempts are refused (HTTP 429) until the oldest failure leaves the window.

Kept in the process's memory for its application (`sarcoscreen.node.web.console.Console`): a restart forgets it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

__all__ = ["SignInThrottle"]


@dataclass
class SignInThrottle:
    """Failed sign-ins per key (user name, client address) within a sliding window."""

    limit: int = 5
    window_s: float = 300.0
    max_keys: int = 10_000
    """Keys remembered at most (the oldest are forgotten first), so a flood of names cannot grow memory."""
    _failures: dict[str, deque[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key, deque())
        while times and now - times[0] > self.window_s:
            times.popleft()
        return times

    def blocked(self, *keys: str) -> bool:
        """Whether any of `keys` had `limit` failures within the window."""
        now = time.monotonic()
        with self._lock:
            return any(len(self._recent(key, now)) >= self.limit for key in keys)

    def failed(self, *keys: str) -> None:
        """Count a failed sign-in against each of `keys`."""
        now = time.monotonic()
        with self._lock:
            for key in keys:
                times = self._recent(key, now)
                times.append(now)
                self._failures.pop(key, None)
                self._failures[key] = times  # most recent last
            while len(self._failures) > self.max_keys:
                self._failures.pop(next(iter(self._failures)))

    def succeeded(self, *keys: str) -> None:
        """Forget the failures of `keys` after a successful sign-in."""
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)
