"""The node's health at a glance, for the web console's Health page: `health_report(settings, db)`.

What it holds: free disk space of the spool and outputs folders against ``storage.min_free_mb``, whether the
database answers (its error scrubbed when it does not), the queue (depth, the longest wait of a due job), the running
jobs with their worker's last heartbeat and lease expiry, and each destination's delivery counts with its latest
success and latest failure. The same sources as the metrics (`sarcoscreen.node.metrics`): the database and the disks,
read when the page is asked for. No patient data: job ids, states, times, lease owners (host:pid), destination names,
DIMSE statuses and scrubbed error texts.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from sarcoscreen.db.models import DeliveryStatus, utcnow
from sarcoscreen.db.monitoring import (
    DestinationOutcomes,
    QueueStatus,
    RunningJob,
    delivery_counts,
    destination_outcomes,
    queue_status,
    running_jobs,
)
from sarcoscreen.db.session import session_scope
from sarcoscreen.inference.error_text import error_text
from sarcoscreen.node.config import Settings

__all__ = ["DestinationHealth", "DiskSpace", "HealthReport", "health_report"]


@dataclass(frozen=True)
class DiskSpace:
    """Free space of one storage folder's file system against the reserve."""

    folder: str
    """``spool`` or ``outputs``."""
    path: Path
    free_bytes: int | None
    """``None`` when it cannot be read (`error` says why)."""
    min_free_bytes: int
    """``storage.min_free_mb`` in bytes: below it on the spool's disk every C-STORE is refused with 0xA700."""
    error: str | None = None

    @property
    def below_reserve(self) -> bool:
        return self.free_bytes is not None and self.free_bytes < self.min_free_bytes


@dataclass(frozen=True)
class DestinationHealth:
    """One destination: configured or only on record, its deliveries by status, its latest outcomes."""

    name: str
    configured: bool
    """In the current configuration (a destination removed from it may still have deliveries on record)."""
    counts: dict[DeliveryStatus, int]
    outcomes: DestinationOutcomes


@dataclass(frozen=True)
class HealthReport:
    """The node's health when `checked_at` (the database's clock, as leases are; this host's when it did not
    answer)."""

    checked_at: datetime
    database_ok: bool
    database_error: str | None
    """Why the database did not answer (scrubbed), when it did not."""
    disks: tuple[DiskSpace, ...]
    queue: QueueStatus | None
    """``None`` when the database did not answer."""
    running: tuple[RunningJob, ...]
    destinations: tuple[DestinationHealth, ...]

    @property
    def problems(self) -> tuple[str, ...]:
        """What needs attention, in words (empty when all is well)."""
        found = []
        if not self.database_ok:
            found.append(f"the database does not answer: {self.database_error}")
        for disk in self.disks:
            if disk.free_bytes is None:
                found.append(f"free space of the {disk.folder} folder unknown: {disk.error}")
            elif disk.below_reserve:
                found.append(f"the {disk.folder} folder's disk is below the reserve (storage.min_free_mb)")
        expired = [job.job_id for job in self.running
                   if job.lease_expires_at is not None and job.lease_expires_at < self.checked_at]
        if expired:
            found.append(f"running jobs whose lease expired without a heartbeat: {', '.join(map(str, expired))}")
        for destination in self.destinations:
            if destination.counts.get(DeliveryStatus.FAILED, 0):
                found.append(f"destination {destination.name}: {destination.counts[DeliveryStatus.FAILED]} "
                             "deliveries failed for good")
        return tuple(found)


def _disk(folder: str, path: Path, min_free_bytes: int) -> DiskSpace:
    try:
        return DiskSpace(folder, path, shutil.disk_usage(path).free, min_free_bytes)
    except OSError as exc:
        reason = os.strerror(exc.errno).lower() if exc.errno is not None else str(exc)
        return DiskSpace(folder, path, None, min_free_bytes, reason)


def health_report(settings: Settings, db: Engine) -> HealthReport:
    """Read the node's health now (see the module docstring); a database that does not answer is part of the
    report, never an exception."""
    storage = settings.storage
    reserve = storage.min_free_mb * 2**20
    disks = (_disk("spool", storage.spool, reserve), _disk("outputs", storage.outputs, reserve))
    configured = [destination.name for destination in settings.destinations]
    try:
        with session_scope(db) as session:
            queue = queue_status(session)
            running = tuple(running_jobs(session))
            counts = delivery_counts(session)
            outcomes = destination_outcomes(session, configured)
    except SQLAlchemyError as exc:
        error = (error_text(exc).strip().splitlines() or [""])[0]
        return HealthReport(utcnow(), False, error, disks, None, (),
                            tuple(DestinationHealth(name, True, {}, DestinationOutcomes(name, None, None, None, None,
                                                                                         None))
                                  for name in configured))
    destinations = tuple(
        DestinationHealth(outcome.name, outcome.name in configured,
                          counts.get(outcome.name, dict.fromkeys(DeliveryStatus, 0)), outcome)
        for outcome in outcomes)
    return HealthReport(queue.now, True, None, disks, queue, running, destinations)
