"""The worker processes of ``sarcoscreen worker --concurrency N`` and ``sarcoscreen run``.

With N > 1 the parent process starts N worker processes (``spawn``; each runs one `sarcoscreen.node.worker.Worker`)
and restarts one that dies; a worker never outlives its parent. SIGTERM/SIGINT let each worker finish its current
job and stop; a second signal stops at once (the job's lease then returns it to the queue).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType

from sarcoscreen.node.config import Settings
from sarcoscreen.node.worker import Worker

__all__ = ["WorkerPool", "run_workers", "stop_on_signals"]

logger = logging.getLogger(__name__)


def _child_main(settings: Settings, index: int, parent_pid: int) -> None:
    """Entry point of a worker process started by `WorkerPool`."""
    from sarcoscreen.node.logging_setup import configure_logging

    configure_logging(settings.logging.level, settings.logging.file, modes=settings.storage.modes)
    worker = Worker(settings)
    stop_on_signals(worker.stop)

    def watch_parent() -> None:  # a worker never outlives its parent (killed or crashed)
        while not worker.wait(2.0):
            if os.getppid() != parent_pid:
                logger.warning("worker process %d: parent gone; stopping after the current job", index)
                worker.stop()

    threading.Thread(target=watch_parent, name="parent-watch", daemon=True).start()
    logger.info("worker process %d started", index)
    worker.run()


def stop_on_signals(stop: Callable[[], None]) -> None:
    """First SIGTERM/SIGINT: `stop` (finish the current job, then end); a second one: end at once (the job's
    lease then returns it to the queue)."""
    received = {"count": 0}

    def handler(signum: int, _frame: FrameType | None) -> None:
        received["count"] += 1
        if received["count"] > 1:
            raise SystemExit(128 + signum)
        logger.info("signal %d: stopping after the current job", signum)
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


class WorkerPool:
    """N worker processes (``spawn``), restarted when one dies, stopped with SIGTERM."""

    def __init__(self, settings: Settings, concurrency: int) -> None:
        self.settings = settings
        self.concurrency = concurrency
        self._context = multiprocessing.get_context("spawn")
        self._processes: dict[int, multiprocessing.process.BaseProcess] = {}
        self._stop = threading.Event()
        self._supervisor: threading.Thread | None = None

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._processes.values() if p.pid is not None]

    def _start(self, index: int) -> None:
        process = self._context.Process(target=_child_main, args=(self.settings, index, os.getpid()),
                                        name=f"sarcoscreen-worker-{index}")
        process.start()
        self._processes[index] = process

    def _supervise(self) -> None:
        while not self._stop.wait(1.0):
            for index, process in list(self._processes.items()):
                if not process.is_alive() and not self._stop.is_set():
                    logger.error("worker process %d ended (exit code %s); starting a new one", index,
                                 process.exitcode)
                    self._start(index)

    def start(self) -> None:
        for index in range(self.concurrency):
            self._start(index)
        self._supervisor = threading.Thread(target=self._supervise, name="worker-supervisor", daemon=True)
        self._supervisor.start()
        logger.info("%d worker processes started", self.concurrency)

    def stop(self, timeout: float | None = None) -> None:
        """Ask every worker to finish its job and stop; wait (at most `timeout` s, then kill)."""
        self._stop.set()
        if self._supervisor is not None:
            self._supervisor.join(timeout=5)
        for process in self._processes.values():
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        for process in self._processes.values():
            process.join(timeout)
            if process.is_alive():
                logger.warning("worker process %s did not stop in time; killed (its job returns to the queue "
                               "when the lease expires)", process.pid)
                process.kill()
                process.join()


def run_workers(settings: Settings, concurrency: int) -> None:
    """``sarcoscreen worker``: one worker in this process, or `concurrency` supervised processes, until
    SIGTERM/SIGINT."""
    if concurrency == 1:
        worker = Worker(settings)
        stop_on_signals(worker.stop)
        worker.run()
        return
    stop = threading.Event()
    stop_on_signals(stop.set)
    pool = WorkerPool(settings, concurrency)
    pool.start()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        pool.stop()
