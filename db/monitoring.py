"""What the node's metrics and Health page read: counts by state, the queue, running jobs, step durations, each
destination's latest outcomes.

Read-only queries in the caller's session (one read transaction gives one consistent view on both databases). No
patient data is read: states, counts, times, job ids, lease owners (host:pid), destination names, DIMSE statuses
and the scrubbed error texts the node stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Float, case, cast, func, or_, select, true
from sqlalchemy.orm import Session

from sarcoscreen.db.models import (
    Delivery,
    DeliveryStatus,
    Instance,
    InstanceState,
    Job,
    JobStatus,
    Series,
    SeriesState,
    StoreRefusal,
)
from sarcoscreen.db.session import db_now

__all__ = [
    "DestinationOutcomes",
    "QueueStatus",
    "RunningJob",
    "StepDurations",
    "delivery_counts",
    "destination_outcomes",
    "instance_counts",
    "job_counts",
    "queue_status",
    "refusal_counts",
    "running_jobs",
    "series_counts",
    "step_durations",
]


@dataclass(frozen=True)
class QueueStatus:
    """The queue at one moment (the database's clock)."""

    now: datetime
    queued: int
    """Jobs in status ``queued``, due or waiting for their backoff."""
    due: int
    """Queued jobs whose ``next_attempt_at`` has passed: waiting for a worker."""
    oldest_due_at: datetime | None
    """The earliest ``next_attempt_at`` of a due queued job: since then it has waited for a worker."""
    oldest_due_job_id: int | None
    """That job."""
    running: int

    @property
    def oldest_waiting_s(self) -> float:
        """Seconds the longest-waiting due job has waited for a worker (0 when none is due)."""
        if self.oldest_due_at is None:
            return 0.0
        return max(0.0, (self.now - self.oldest_due_at).total_seconds())


@dataclass(frozen=True)
class StepDurations:
    """One step's durations over the done jobs, as a histogram's raw material."""

    at_most: tuple[int, ...]
    """How many durations are at most each bound asked for (cumulative, in the bounds' order)."""
    count: int
    total_s: float

    def __add__(self, other: StepDurations) -> StepDurations:
        return StepDurations(tuple(a + b for a, b in zip(self.at_most, other.at_most, strict=True)),
                             self.count + other.count, self.total_s + other.total_s)


@dataclass(frozen=True)
class RunningJob:
    """A job a worker holds, with its worker's last sign of life."""

    job_id: int
    attempt: int
    max_attempts: int
    lease_owner: str | None
    """The claim's token: host:pid:random."""
    started_at: datetime | None
    heartbeat_at: datetime | None
    lease_expires_at: datetime | None


@dataclass(frozen=True)
class DestinationOutcomes:
    """A destination's latest success and latest failure on record."""

    name: str
    last_success_at: datetime | None
    last_success_status: int | None
    last_failure_at: datetime | None
    """When the latest attempt of a delivery that is still unsent (pending or failed) failed; ``None`` when no unsent
    delivery has failed (a failure followed by a success of the same output is no longer one), or when it failed
    before revision 0009 recorded attempt times (then `last_failure_error` is still given)."""
    last_failure_status: int | None
    """The DIMSE status of that failure, when the destination answered."""
    last_failure_error: str | None
    """Its error text, as stored (scrubbed when it was recorded)."""


def _counts(session: Session, column: Any) -> dict[Any, int]:
    """Rows by the values of `column`."""
    return dict(session.execute(select(column, func.count()).group_by(column)).all())


def instance_counts(session: Session) -> dict[InstanceState, int]:
    """Instance rows by state; every state present (0 when none)."""
    counts = _counts(session, Instance.state)
    return {state: counts.get(state, 0) for state in InstanceState}


def series_counts(session: Session) -> dict[SeriesState, int]:
    """Series by state; every state present (0 when none)."""
    counts = _counts(session, Series.state)
    return {state: counts.get(state, 0) for state in SeriesState}


def job_counts(session: Session) -> dict[JobStatus, int]:
    """Jobs by status; every status present (0 when none)."""
    counts = _counts(session, Job.status)
    return {status: counts.get(status, 0) for status in JobStatus}


def refusal_counts(session: Session) -> dict[int, int]:
    """Refused C-STOREs by the DIMSE status answered (only statuses that occurred)."""
    return {int(status): count for status, count in _counts(session, StoreRefusal.status).items()}


def delivery_counts(session: Session) -> dict[str, dict[DeliveryStatus, int]]:
    """Deliveries by destination name and status; every status present for each destination on record."""
    counts: dict[str, dict[DeliveryStatus, int]] = {}
    rows = session.execute(select(Delivery.destination_name, Delivery.status, func.count())
                           .group_by(Delivery.destination_name, Delivery.status))
    for name, status, count in rows:
        counts.setdefault(name, dict.fromkeys(DeliveryStatus, 0))[status] = count
    return counts


def queue_status(session: Session) -> QueueStatus:
    """Queued, due and running jobs, and when the longest-waiting due job became due."""
    now = db_now(session)
    queued, due = session.execute(
        select(func.count(), func.count().filter(Job.next_attempt_at <= now))
        .where(Job.status == JobStatus.QUEUED)).one()
    oldest = session.execute(
        select(Job.id, Job.next_attempt_at).where(Job.status == JobStatus.QUEUED, Job.next_attempt_at <= now)
        .order_by(Job.next_attempt_at, Job.id).limit(1)).first()
    running = session.execute(select(func.count()).where(Job.status == JobStatus.RUNNING)).scalar_one()
    return QueueStatus(now=now, queued=queued, due=due, oldest_due_at=oldest[1] if oldest else None,
                       oldest_due_job_id=oldest[0] if oldest else None, running=running)


def running_jobs(session: Session) -> list[RunningJob]:
    """Running jobs, oldest claim first."""
    jobs = session.execute(select(Job).where(Job.status == JobStatus.RUNNING).order_by(Job.started_at, Job.id))
    return [RunningJob(job.id, job.attempts, job.max_attempts, job.lease_owner, job.started_at, job.heartbeat_at,
                       job.lease_expires_at) for job in jobs.scalars()]


def step_durations(session: Session, bounds: Sequence[float], *, finished_after: datetime | None = None,
                   finished_until: datetime | None = None) -> dict[str, StepDurations]:
    """The seconds per step of the done jobs (``jobs.step_seconds``; jobs done before 0009 have none) that finished
    after `finished_after` and until `finished_until` (each ``None``: no limit), aggregated by the database: per step,
    how many durations are at most each of `bounds`, how many there are and their sum.

    The JSON objects are taken apart in SQL (``json_each`` on SQLite, ``json_each_text`` on PostgreSQL): one row per
    step name comes back, however many jobs there are (the database still reads each job's JSON)."""
    json_each = func.json_each_text if session.get_bind().dialect.name == "postgresql" else func.json_each
    each = json_each(Job.step_seconds).table_valued("key", "value").alias("step")
    seconds = cast(each.c.value, Float)
    at_most = [func.sum(case((seconds <= bound, 1), else_=0)) for bound in bounds]
    query = (select(each.c.key, func.count(), func.coalesce(func.sum(seconds), 0.0), *at_most)
             .select_from(Job).join(each, true())
             .where(Job.status == JobStatus.DONE, Job.step_seconds.is_not(None))
             .group_by(each.c.key))
    if finished_after is not None:
        query = query.where(Job.finished_at > finished_after)
    if finished_until is not None:  # a done job without a finish time (written by hand) counts as finished long ago
        query = query.where(or_(Job.finished_at <= finished_until, Job.finished_at.is_(None)))
    rows = session.execute(query)
    return {str(step): StepDurations(tuple(int(n or 0) for n in counts), int(count), float(total))
            for step, count, total, *counts in rows}


def destination_outcomes(session: Session, names: list[str]) -> list[DestinationOutcomes]:
    """The latest success and the latest failure of each destination named, and of each on record, by name."""
    on_record = session.execute(select(Delivery.destination_name).distinct()).scalars()
    outcomes = []
    for name in sorted({*names, *on_record}):
        success = session.execute(
            select(Delivery.sent_at, Delivery.last_status_code)
            .where(Delivery.destination_name == name, Delivery.status == DeliveryStatus.SENT)
            .order_by(Delivery.sent_at.desc(), Delivery.id.desc()).limit(1)).first()
        failure = session.execute(
            select(Delivery.last_attempt_at, Delivery.last_status_code, Delivery.last_error)
            .where(Delivery.destination_name == name, Delivery.last_error.is_not(None),
                   Delivery.status.in_((DeliveryStatus.PENDING, DeliveryStatus.FAILED)))
            .order_by(Delivery.last_attempt_at.desc().nulls_last(), Delivery.id.desc()).limit(1)).first()
        outcomes.append(DestinationOutcomes(
            name,
            success[0] if success else None, success[1] if success else None,
            failure[0] if failure else None, failure[1] if failure else None, failure[2] if failure else None))
    return outcomes
