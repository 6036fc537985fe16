"""The node under attack: ``sarcoscreen --config FILE run`` as a real subprocess that can be killed and restarted.

Each start is its own process group (``start_new_session``), so a kill can take the main process alone (its
worker processes then notice the parent is gone and stop after their job: the case of an OOM kill) or the whole
group (``systemctl kill``, a container stopped hard). Every start logs to its own file.

What counts as a crash: the node process ending without having been signalled, a start that does not come up, a
worker process ending on its own (the supervisor's "worker process N ended"), a fatal error of the interpreter,
or a clean stop (SIGTERM) that does not end in time or ends with a non-zero code.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from node_support import SARCOSCREEN, NodeConfig

from sarcoscreen.node.loopback import wait_for_port

__all__ = ["NodeStartError", "NodeUnderTest"]

_CRASH_LINES = re.compile(r"worker process \d+ ended|Fatal Python error|Segmentation fault|core dumped"
                          r"|Exception in thread")


class NodeStartError(RuntimeError):
    """The node did not come up (its log's tail is in the message)."""


@dataclass
class NodeUnderTest:
    """One node configuration, started as often as the campaign needs."""

    config: NodeConfig
    command: str = "run"
    arguments: tuple[str, ...] = ("--concurrency", "1")
    starts: int = 0
    crashes: list[str] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    _process: subprocess.Popen[bytes] | None = None
    _groups: list[int] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.config.port

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self, *, wait: bool = True, timeout: float = 120.0) -> None:
        """Start the node; with `wait`, return once it listens (`NodeStartError` if it ends or times out)."""
        if self._process is not None and self._process.poll() is None:
            raise RuntimeError("the node is already running")
        self.config.write()
        self.starts += 1
        log = self.config.folder / f"node-{self.starts:03d}.log"
        self.logs.append(log)
        with log.open("wb") as handle:
            self._process = subprocess.Popen(
                [*SARCOSCREEN, "--config", str(self.config.path), self.command, *self.arguments],
                stdout=handle, stderr=subprocess.STDOUT, cwd=self.config.folder, start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self._groups.append(self._process.pid)
        if wait:
            self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Return once the started node listens; `NodeStartError` (and a crash noted) when it ends first."""
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                reason = f"start {self.starts} ended with code {self._process.returncode} before listening"
                self.crashes.append(reason)
                raise NodeStartError(f"{reason}:\n{self._tail()}")
            try:
                wait_for_port(self.port, timeout=0.5)
                return
            except TimeoutError:
                continue
        self.crashes.append(f"start {self.starts} did not listen within {timeout:g} s")
        raise NodeStartError(f"the node did not listen within {timeout:g} s:\n{self._tail()}")

    def alive(self) -> bool:
        """Is the node running? An exit nobody asked for is noted as a crash."""
        if self._process is None:
            return False
        code = self._process.poll()
        if code is None:
            return True
        self.crashes.append(f"start {self.starts} ended on its own with code {code}")
        self._process = None
        return False

    def kill9(self, *, whole_group: bool) -> None:
        """SIGKILL the node's main process, or its whole process group (workers included)."""
        if not self.alive():
            raise RuntimeError("the node is not running")
        assert self._process is not None
        if whole_group:
            os.killpg(self._process.pid, signal.SIGKILL)
        else:
            self._process.kill()
        self._process.wait(timeout=30)
        self._process = None

    def stop(self, timeout: float = 90.0) -> None:
        """SIGTERM and wait: the clean stop must end in time with code 0 (a crash is noted otherwise)."""
        if not self.alive():
            return
        assert self._process is not None
        self._process.send_signal(signal.SIGTERM)
        try:
            code = self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.crashes.append(f"start {self.starts} did not stop within {timeout:g} s of SIGTERM")
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=30)
            code = 0
        if code != 0:
            self.crashes.append(f"start {self.starts} stopped with code {code} after SIGTERM")
        self._process = None

    def close(self) -> None:
        """Stop the node and SIGKILL whatever is left of the process groups this object started (workers orphaned
        by a kill of their parent that are still finishing a job)."""
        self.stop()
        for group in self._groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)

    def log_text(self) -> str:
        return "\n".join(log.read_text(encoding="utf-8", errors="replace") for log in self.logs if log.exists())

    def crash_lines(self) -> list[str]:
        """Log lines that say a process of the node died on its own (worker crash, interpreter fault)."""
        return [line.strip() for line in self.log_text().splitlines() if _CRASH_LINES.search(line)]

    def all_crashes(self) -> list[str]:
        return [*self.crashes, *self.crash_lines()]

    def _tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])
