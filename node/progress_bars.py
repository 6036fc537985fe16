"""Progress bars of the command line: tqdm on standard error, shown only on a terminal.

A command's output often goes to a log file (a service, ``cmd > log 2>&1``); a bar there would write hundreds of
carriage-return updates into it. `wanted` says whether to draw: not with ``--no-progress``, and only when standard
error is a terminal. Two shapes of callback, as the library reports progress:

* `StepBars` - ``(step, done, total)``, one bar per step (the loader's and the engines' `Progress`);
* `CountBar` - ``(done, total)``, one bar (the phantom and cohort makers).
"""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm

__all__ = ["CountBar", "StepBars", "wanted"]


def wanted(no_progress: bool, stream: TextIO | None = None) -> bool:
    """Draw bars? Not when asked not to, and only when `stream` (default standard error) is a terminal."""
    stream = sys.stderr if stream is None else stream
    return not no_progress and bool(getattr(stream, "isatty", lambda: False)())


class StepBars:
    """``(step, done, total)`` progress as one tqdm bar per step; silent when not `enabled`."""

    def __init__(self, enabled: bool, unit: str = "slice") -> None:
        self.enabled = enabled
        self.unit = unit
        self.bar: tqdm | None = None
        self.step = ""

    def __call__(self, step: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None or step != self.step:
            self.close()
            self.step = step
            self.bar = tqdm(total=total, desc=step, unit=self.unit, leave=False, file=sys.stderr)
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class CountBar:
    """``(done, total)`` progress as one tqdm bar; silent when not `enabled`."""

    def __init__(self, enabled: bool, unit: str) -> None:
        self.enabled = enabled
        self.unit = unit
        self.bar: tqdm | None = None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            self.bar = tqdm(total=total, unit=self.unit, leave=False, file=sys.stderr)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
