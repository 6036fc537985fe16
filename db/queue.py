"""The job queue in SQL: enqueue, claim under a lease, heartbeat, complete, fail with backoff, retry, cancel.

One table (``jobs``) on either database, no broker:

* **claim** takes the oldest due ``queued`` job and makes it ``running`` under a lease: ``lease_owner`` is a
  token unique to this claim, ``lease_expires_at`` is ``now + lease``, ``attempts`` goes up by one. On PostgreSQL
  the candidate row is read with ``SELECT ... FOR UPDATE SKIP LOCKED``, so workers on several machines never
  claim the same job and never wait for each other; on SQLite the transaction starts with ``BEGIN IMMEDIATE``
  (one writer at a time), which gives the same guarantee on one machine.
* **heartbeat** renews the lease while the worker runs; it fails (returns ``False``) once the job is no longer
  this claim's - cancelled, or reaped after the lease expired and claimed again.
* **complete** is called inside the worker's results transaction, so results, outputs, outbox rows and the job's
  ``done`` commit together or not at all; it refuses (`LeaseLostError`) when the claim is no longer valid,
  so a worker that lost its lease can never publish results twice.
* **fail** ends an attempt with its error text: back to ``queued`` after an exponential backoff
  (``backoff_s * 2**(attempt-1)``, at most ``backoff_max_s``), or ``failed`` after the last attempt.
* **reap_expired** finds ``running`` jobs whose lease expired (their worker died or hangs) and treats them like
  a failed attempt ("lease expired").
* **retry** and **cancel** are the administrator's (``sarcoscreen jobs retry|cancel``).

Time comes from the database server on PostgreSQL (one clock for every machine) and from this host on SQLite
(one machine). Every state change also writes an event (`sarcoscreen.db.events`); the job's series follows through
the transitions of `sarcoscreen.db.series_state` (a newer job decides; a ``receiving`` series keeps receiving).
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from sarcoscreen.db.events import EventKind, record_event
from sarcoscreen.db.models import (
    Delivery,
    DeliveryStatus,
    EventLevel,
    Job,
    JobStatus,
    Output,
    Series,
    SeriesState,
)
from sarcoscreen.db.series_state import (
    series_queued,
    settle_after_cancel,
    settle_after_job,
    settle_after_retry,
)
from sarcoscreen.db.session import db_now, session_scope, write_session
from sarcoscreen.inference.error_text import scrub_text

__all__ = [
    "ClaimedJob",
    "JobStateError",
    "LeaseLostError",
    "backoff_seconds",
    "cancel",
    "claim",
    "complete",
    "enqueue",
    "fail",
    "heartbeat",
    "new_lease_token",
    "reap_expired",
    "retry",
]

_MAX_ERROR = 8000


class LeaseLostError(Exception):
    """The job is no longer held by this claim (cancelled, or reaped and claimed again)."""


class JobStateError(Exception):
    """A user action that does not fit the job's state (e.g. cancelling a finished job)."""


@dataclass(frozen=True)
class ClaimedJob:
    """A job a worker holds: what it needs to process it and to prove the claim later."""

    id: int
    series_id: int
    series_instance_uid: str
    attempt: int
    max_attempts: int
    lease_token: str
    lease_expires_at: datetime


def new_lease_token() -> str:
    """A token naming this claim: host, process and a random part (unique per claim)."""
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def backoff_seconds(attempt: int, base_s: float, max_s: float) -> float:
    """Wait after failed attempt number `attempt` (1-based): ``base * 2**(attempt-1)``, at most `max_s`."""
    return min(max_s, base_s * 2 ** max(0, attempt - 1))


def enqueue(session: Session, series_id: int, *, reason: str, max_attempts: int) -> Job:
    """Add a ``queued`` job for a series (in the caller's transaction) and put the series in state ``queued``."""
    job = Job(series_id=series_id, status=JobStatus.QUEUED, attempts=0, max_attempts=max_attempts,
              next_attempt_at=db_now(session), reason=reason[:256])
    session.add(job)
    session.flush()
    series_queued(session, series_id)
    record_event(session, EventKind.JOB_QUEUED, f"job {job.id} queued: {reason}", series_id=series_id, job_id=job.id)
    return job


def claim(db: Engine, lease_s: float, token: str | None = None) -> ClaimedJob | None:
    """Claim the next due job under a lease of `lease_s` seconds; ``None`` when nothing is due."""
    token = token or new_lease_token()
    with write_session(db) as session:
        now = db_now(session)
        job = session.execute(
            select(Job)
            .where(Job.status == JobStatus.QUEUED, Job.next_attempt_at <= now)
            .order_by(Job.next_attempt_at, Job.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        ).scalar_one_or_none()
        if job is None:
            return None
        expires = now + timedelta(seconds=lease_s)
        job.status = JobStatus.RUNNING
        job.lease_owner = token
        job.lease_expires_at = expires
        job.heartbeat_at = now
        job.attempts += 1
        job.started_at = now
        series_uid = session.execute(
            select(Series.series_instance_uid).where(Series.id == job.series_id)).scalar_one()
        record_event(session, EventKind.JOB_CLAIMED,
                     f"job {job.id} attempt {job.attempts} of {job.max_attempts} claimed "
                     f"by {token}", series_id=job.series_id, job_id=job.id)
        return ClaimedJob(job.id, job.series_id, series_uid, job.attempts, job.max_attempts, token, expires)


def heartbeat(db: Engine, job_id: int, token: str, lease_s: float) -> bool:
    """Renew the lease; ``False`` when the job is no longer this claim's (stop working on it)."""
    with session_scope(db) as session:
        now = db_now(session)
        result = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.lease_owner == token, Job.status == JobStatus.RUNNING)
            .values(heartbeat_at=now, lease_expires_at=now + timedelta(seconds=lease_s))
        )
        return bool(result.rowcount)


def _held(session: Session, job_id: int, token: str) -> Job:
    """The job, locked, if this claim still holds it; `LeaseLostError` otherwise."""
    job = session.execute(select(Job).where(Job.id == job_id).with_for_update()).scalar_one_or_none()
    if job is None or job.status is not JobStatus.RUNNING or job.lease_owner != token:
        state = "deleted" if job is None else f"{job.status.value}, held by {job.lease_owner or 'nobody'}"
        raise LeaseLostError(f"job {job_id} is no longer this worker's ({state})")
    return job


def complete(session: Session, job_id: int, token: str, *, series_state: SeriesState = SeriesState.PROCESSED,
             skip_reason: str | None = None, message: str = "") -> Job:
    """Mark the job ``done`` inside the caller's (results) transaction; `LeaseLostError` if the claim is gone.

    `series_state` is what the job found: ``processed``, or ``skipped`` with `skip_reason` (e.g. the images do not
    reach the gluteal region).
    """
    job = _held(session, job_id, token)
    now = db_now(session)
    job.status = JobStatus.DONE
    job.finished_at = now
    job.lease_owner = None
    job.lease_expires_at = None
    job.error = None
    settle_after_job(session, job, series_state, skip_reason)
    if series_state is SeriesState.SKIPPED:
        record_event(session, EventKind.SERIES_SKIPPED,
                     f"job {job.id}: skipped: {skip_reason}", level=EventLevel.WARNING,
                     series_id=job.series_id, job_id=job.id)
    record_event(session, EventKind.JOB_DONE,
                 f"job {job.id} done in attempt {job.attempts}" + (f": {message}" if message
                 else ""), series_id=job.series_id, job_id=job.id)
    return job


def _end_attempt(session: Session, job: Job, error: str, now: datetime, backoff_s: float, backoff_max_s: float,
                 permanent: bool) -> JobStatus:
    error = scrub_text(error)
    job.error = error[:_MAX_ERROR]
    job.lease_owner = None
    job.lease_expires_at = None
    if permanent or job.attempts >= job.max_attempts:
        job.status = JobStatus.FAILED
        job.finished_at = now
        settle_after_job(session, job, SeriesState.FAILED)
        record_event(session, EventKind.JOB_FAILED, f"job {job.id} failed after attempt {job.attempts} of "
                     f"{job.max_attempts}: {error}", level=EventLevel.ERROR, series_id=job.series_id, job_id=job.id)
        return JobStatus.FAILED
    wait = backoff_seconds(job.attempts, backoff_s, backoff_max_s)
    job.status = JobStatus.QUEUED
    job.next_attempt_at = now + timedelta(seconds=wait)
    record_event(session, EventKind.JOB_RETRY,
                 f"job {job.id} attempt {job.attempts} of {job.max_attempts} failed, next in "
                 f"{wait:g} s: {error}", level=EventLevel.WARNING, series_id=job.series_id, job_id=job.id)
    return JobStatus.QUEUED


def fail(db: Engine, job_id: int, token: str, error: str, *, backoff_s: float, backoff_max_s: float,
         permanent: bool = False) -> JobStatus:
    """End the current attempt with `error`: ``queued`` again after the backoff, or ``failed`` after the last
    attempt (or at once when `permanent`). Returns the new status; `LeaseLostError` if the claim is gone."""
    with write_session(db) as session:
        job = _held(session, job_id, token)
        return _end_attempt(session, job, error, db_now(session), backoff_s, backoff_max_s, permanent)


def reap_expired(db: Engine, *, backoff_s: float, backoff_max_s: float) -> list[tuple[int, JobStatus]]:
    """Running jobs whose lease expired (their worker died or hangs): a failed attempt each. Returns
    ``(job id, new status)`` pairs."""
    outcomes: list[tuple[int, JobStatus]] = []
    with write_session(db) as session:
        now = db_now(session)
        expired = session.execute(
            select(Job)
            .where(Job.status == JobStatus.RUNNING, Job.lease_expires_at < now)
            .order_by(Job.id)
            .with_for_update(skip_locked=True)
        ).scalars().all()
        for job in expired:
            error = (f"lease of {job.lease_owner} expired at {job.lease_expires_at:%Y-%m-%dT%H:%M:%SZ} without a "
                     f"heartbeat (worker stopped or killed during attempt {job.attempts})")
            outcomes.append((job.id, _end_attempt(session, job, error, now, backoff_s, backoff_max_s, False)))
    return outcomes


def _deliveries_of(session: Session, job_id: int, statuses: tuple[DeliveryStatus, ...]) -> list[Delivery]:
    return list(session.execute(
        select(Delivery).join(Output, Output.id == Delivery.output_id)
        .where(Output.job_id == job_id, Delivery.status.in_(statuses))
    ).scalars())


def retry(db: Engine, job_id: int) -> str:
    """An administrator's retry: a ``failed`` or ``cancelled`` job is queued again with fresh attempts; for a
    ``done`` job, its failed or cancelled deliveries are due again. Returns what was done, in words."""
    with write_session(db) as session:
        job = session.execute(select(Job).where(Job.id == job_id).with_for_update()).scalar_one_or_none()
        if job is None:
            raise JobStateError(f"there is no job {job_id}")
        now = db_now(session)
        if job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
            previous = job.status.value
            job.status = JobStatus.QUEUED
            job.attempts = 0
            job.next_attempt_at = now
            job.finished_at = None
            job.reason = "retry by user"
            settle_after_retry(session, job)
            record_event(session, EventKind.JOB_RETRY, f"job {job.id} ({previous}) queued again by a user",
                         series_id=job.series_id, job_id=job.id)
            return f"job {job_id} ({previous}) queued again"
        if job.status is JobStatus.DONE:
            purged = session.execute(select(func.count()).where(Output.job_id == job_id,
                                                                Output.purged_at.is_not(None))).scalar_one()
            if purged:
                raise JobStateError(f"job {job_id}'s outputs were deleted at the end of their retention period "
                                    "(storage.outputs_retention_days): send the series again to analyse it anew")
            deliveries = _deliveries_of(session, job_id, (DeliveryStatus.FAILED, DeliveryStatus.CANCELLED,
                                                          DeliveryStatus.PENDING))
            for delivery in deliveries:
                delivery.status = DeliveryStatus.PENDING
                delivery.next_attempt_at = now
                delivery.attempts = 0
            if not deliveries:
                raise JobStateError(f"job {job_id} is done and every delivery was sent: nothing to retry")
            record_event(session, EventKind.DELIVERY_RETRY, f"job {job.id}: {len(deliveries)} deliveries due again "
                         "(user)", series_id=job.series_id, job_id=job.id)
            return f"job {job_id}: {len(deliveries)} deliveries due again"
        raise JobStateError(f"job {job_id} is {job.status.value}: only failed, cancelled or done jobs are retried")


def cancel(db: Engine, job_id: int) -> str:
    """An administrator's cancel: a ``queued`` or ``running`` job is ``cancelled`` (a running worker notices at
    its next heartbeat and its results are discarded); unsent deliveries of a job are cancelled too."""
    with write_session(db) as session:
        job = session.execute(select(Job).where(Job.id == job_id).with_for_update()).scalar_one_or_none()
        if job is None:
            raise JobStateError(f"there is no job {job_id}")
        now = db_now(session)
        deliveries = _deliveries_of(session, job_id, (DeliveryStatus.PENDING, DeliveryStatus.FAILED))
        for delivery in deliveries:
            delivery.status = DeliveryStatus.CANCELLED
            delivery.last_error = "cancelled by a user"
        if job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
            previous = job.status.value
            job.status = JobStatus.CANCELLED
            job.finished_at = now
            job.lease_owner = None
            job.lease_expires_at = None
            settle_after_cancel(session, job)
            record_event(session, EventKind.JOB_CANCELLED, f"job {job.id} ({previous}) cancelled by a user",
                         level=EventLevel.WARNING, series_id=job.series_id, job_id=job.id)
            return f"job {job_id} ({previous}) cancelled"
        if deliveries:
            record_event(session, EventKind.DELIVERY_CANCELLED, f"job {job.id}: {len(deliveries)} unsent deliveries "
                         "cancelled by a user", level=EventLevel.WARNING, series_id=job.series_id, job_id=job.id)
            return f"job {job_id} is {job.status.value}: {len(deliveries)} unsent deliveries cancelled"
        raise JobStateError(f"job {job_id} is {job.status.value} with nothing unsent: nothing to cancel")
