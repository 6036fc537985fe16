"""The SQL job queue and the outbox on SQLite and PostgreSQL: claims, leases, heartbeats, backoff, fencing,
concurrent claimers, retry/cancel, and the outbox's claims and outcomes. Real databases, no mocks."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from db_support import database_url
from node_support import done_job_with_outputs, jobs_of, queued_job
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from sarcoscreen.db import migrate
from sarcoscreen.db.models import (
    Delivery,
    DeliveryStatus,
    Event,
    Job,
    JobStatus,
    Series,
    SeriesState,
)
from sarcoscreen.db.outbox import claim_due, record_outcome, supersede
from sarcoscreen.db.queue import (
    JobStateError,
    LeaseLostError,
    backoff_seconds,
    cancel,
    claim,
    complete,
    db_now,
    enqueue,
    fail,
    heartbeat,
    reap_expired,
    retry,
    write_session,
)
from sarcoscreen.db.session import create_engine_from_url, session_scope


def _job(engine: Engine, job_id: int) -> Job:
    with Session(engine) as session:
        return session.get_one(Job, job_id)


def test_claim_heartbeat_complete(engine: Engine) -> None:
    job_id = queued_job(engine)
    claimed = claim(engine, lease_s=60)
    assert claimed is not None
    assert (claimed.id, claimed.attempt, claimed.series_instance_uid) == (job_id, 1, "1.2.3.1")
    assert claim(engine, lease_s=60) is None  # nothing else is due
    job = _job(engine, job_id)
    assert job.status is JobStatus.RUNNING
    assert job.lease_owner == claimed.lease_token
    assert heartbeat(engine, job_id, claimed.lease_token, lease_s=120)
    assert _job(engine, job_id).lease_expires_at > job.lease_expires_at
    assert not heartbeat(engine, job_id, "someone-else", lease_s=120)
    with write_session(engine) as session:
        complete(session, job_id, claimed.lease_token)
    job = _job(engine, job_id)
    assert job.status is JobStatus.DONE
    assert job.lease_owner is None
    assert job.finished_at is not None
    with Session(engine) as session:
        assert session.get_one(Series, job.series_id).state is SeriesState.PROCESSED
        kinds = list(session.execute(select(Event.kind).where(Event.job_id == job_id).order_by(Event.id)).scalars())
    assert kinds == ["job.queued", "job.claimed", "job.done"]


def test_failed_attempts_back_off_then_fail_for_good(engine: Engine) -> None:
    job_id = queued_job(engine, max_attempts=2)
    first = claim(engine, lease_s=60)
    assert first is not None
    status = fail(engine, job_id, first.lease_token, "engine threshold 1.0: boom", backoff_s=3600, backoff_max_s=7200)
    assert status is JobStatus.QUEUED
    job = _job(engine, job_id)
    with Session(engine) as session:
        wait = (job.next_attempt_at - db_now(session)).total_seconds()
    assert 3500 < wait <= 3600  # backoff_s * 2**0
    assert claim(engine, lease_s=60) is None  # not due yet
    with session_scope(engine) as session:  # let the backoff pass
        session.get_one(Job, job_id).next_attempt_at = db_now(session) - timedelta(seconds=1)
    second = claim(engine, lease_s=60)
    assert second is not None
    assert second.attempt == 2
    # The first claim's token no longer holds the job: it can neither fail nor complete it.
    with pytest.raises(LeaseLostError):
        fail(engine, job_id, first.lease_token, "late", backoff_s=0, backoff_max_s=0)
    status = fail(engine, job_id, second.lease_token, "engine threshold 1.0: boom again", backoff_s=0,
                  backoff_max_s=0)
    assert status is JobStatus.FAILED
    job = _job(engine, job_id)
    assert job.error == "engine threshold 1.0: boom again"
    assert job.attempts == 2
    with Session(engine) as session:
        assert session.get_one(Series, job.series_id).state is SeriesState.FAILED


def test_backoff_doubles_up_to_the_maximum() -> None:
    assert [backoff_seconds(n, 30, 100) for n in (1, 2, 3, 4)] == [30, 60, 100, 100]


def test_an_expired_lease_returns_the_job_and_fences_the_old_worker(engine: Engine) -> None:
    job_id = queued_job(engine, max_attempts=2)
    dead = claim(engine, lease_s=-1)  # a lease that has already expired: its worker "died"
    assert dead is not None
    assert reap_expired(engine, backoff_s=0, backoff_max_s=0) == [(job_id, JobStatus.QUEUED)]
    assert "lease of" in (_job(engine, job_id).error or "")
    alive = claim(engine, lease_s=60)
    assert alive is not None
    assert alive.attempt == 2
    # The dead worker comes back to life: its heartbeat and its results are refused.
    assert not heartbeat(engine, job_id, dead.lease_token, lease_s=60)
    with pytest.raises(LeaseLostError), write_session(engine) as session:
        complete(session, job_id, dead.lease_token)
    with write_session(engine) as session:
        complete(session, job_id, alive.lease_token)
    assert _job(engine, job_id).status is JobStatus.DONE
    # A lease that expires on the last attempt fails the job with the reason.
    other = queued_job(engine, "1.2.3.2", max_attempts=1)
    assert claim(engine, lease_s=-1) is not None
    assert reap_expired(engine, backoff_s=0, backoff_max_s=0) == [(other, JobStatus.FAILED)]
    assert "without a heartbeat" in (_job(engine, other).error or "")


def test_concurrent_claimers_never_share_a_job(engine: Engine) -> None:
    job_ids = {queued_job(engine, f"1.2.3.{n}") for n in range(1, 13)}
    claimed: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            while (job := claim(engine, lease_s=60)) is not None:
                with lock:
                    claimed.append(job.id)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(claimed) == sorted(job_ids)  # every job claimed exactly once
    assert {j.attempts for j in jobs_of(engine)} == {1}


@pytest.mark.postgres
def test_skip_locked_lets_a_second_worker_pass_a_locked_job(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """PostgreSQL: a job row locked by one transaction is skipped by another claimer, which takes the next job
    at once instead of waiting."""
    with database_url("postgresql", request, tmp_path) as url:
        migrate.upgrade(url)
        engine = create_engine_from_url(url)
        try:
            first, second = queued_job(engine, "1.2.4.1"), queued_job(engine, "1.2.4.2")
            with engine.connect() as holder:
                holder.execute(text("SELECT id FROM jobs WHERE id = :id FOR UPDATE"), {"id": first})
                claimed = claim(engine, lease_s=60)  # would block without SKIP LOCKED
                assert claimed is not None
                assert claimed.id == second
                holder.rollback()
            again = claim(engine, lease_s=60)
            assert again is not None
            assert again.id == first
        finally:
            engine.dispose()


def test_cancel_and_retry(engine: Engine) -> None:
    job_id = queued_job(engine)
    running = claim(engine, lease_s=60)
    assert running is not None
    assert cancel(engine, job_id) == f"job {job_id} (running) cancelled"
    assert not heartbeat(engine, job_id, running.lease_token, lease_s=60)  # the worker notices
    job = _job(engine, job_id)
    with Session(engine) as session:
        series = session.get_one(Series, job.series_id)
    assert job.status is JobStatus.CANCELLED
    assert (series.state, series.skip_reason) == (SeriesState.SKIPPED, f"job {job_id} cancelled by a user")
    with pytest.raises(JobStateError, match="nothing to cancel"):
        cancel(engine, job_id)
    assert retry(engine, job_id) == f"job {job_id} (cancelled) queued again"
    job = _job(engine, job_id)
    assert (job.status, job.attempts, job.reason) == (JobStatus.QUEUED, 0, "retry by user")
    with pytest.raises(JobStateError, match="only failed, cancelled or done"):
        retry(engine, job_id)
    with pytest.raises(JobStateError, match="there is no job"):
        retry(engine, 999)


def test_outbox_claims_backs_off_and_records(engine: Engine) -> None:
    job_id, _ = done_job_with_outputs(engine)
    due = claim_due(engine, hold_s=300)
    assert len(due) == 4
    assert {d.attempts for d in due} == {1}
    assert claim_due(engine, hold_s=300) == []  # held by the first claim
    pacs = [d for d in due if d.destination_name == "pacs"]
    archive = [d for d in due if d.destination_name == "archive"]
    for delivery in pacs:
        assert record_outcome(engine, delivery, accepted=True, status_code=0, error="", retry_s=1, retry_max_s=1,
                              max_attempts=0) is DeliveryStatus.SENT
    for delivery in archive:
        assert record_outcome(engine, delivery, accepted=False, status_code=0xA700, error="status 0xA700",
                              retry_s=3600, retry_max_s=3600, max_attempts=2) is DeliveryStatus.PENDING
    with session_scope(engine) as session:  # the backoff has passed
        for row in session.execute(select(Delivery).where(Delivery.status == DeliveryStatus.PENDING)).scalars():
            row.next_attempt_at = db_now(session) - timedelta(seconds=1)
    again = claim_due(engine, hold_s=300)
    assert {(d.destination_name, d.attempts) for d in again} == {("archive", 2)}
    for delivery in again:
        assert record_outcome(engine, delivery, accepted=False, status_code=None, error="association rejected",
                              retry_s=1, retry_max_s=1, max_attempts=2) is DeliveryStatus.FAILED
    # An administrator's retry makes the failed deliveries due again.
    assert retry(engine, job_id) == f"job {job_id}: 2 deliveries due again"
    assert {d.destination_name for d in claim_due(engine, hold_s=300)} == {"archive"}


def test_newer_job_supersedes_unsent_deliveries(engine: Engine) -> None:
    old_job, _ = done_job_with_outputs(engine, "1.2.6.1")
    with Session(engine) as session:
        series_id = session.get_one(Job, old_job).series_id
    with session_scope(engine) as session:
        newer = enqueue(session, series_id, reason="late instances", max_attempts=3).id
        assert supersede(session, series_id, newer) == 4
    with Session(engine) as session:
        statuses = {tuple(row) for row in session.execute(select(Delivery.status, Delivery.last_error))}
    assert statuses == {(DeliveryStatus.CANCELLED, f"superseded by job {newer}")}
    assert claim_due(engine, hold_s=300) == []


def test_delivery_status_constraint_takes_cancelled_and_refuses_others(engine: Engine) -> None:
    done_job_with_outputs(engine, "1.2.7.1")
    with session_scope(engine) as session:
        session.execute(text("UPDATE deliveries SET status = 'cancelled'"))
    with pytest.raises((IntegrityError, StatementError)), session_scope(engine) as session:
        session.execute(text("UPDATE deliveries SET status = 'lost'"))
