"""The outbox: one ``deliveries`` row per output and destination, sent by C-STORE until accepted.

* `add_deliveries` runs in the worker's results transaction: a measured series is never forgotten, and nothing
  is sent for results that did not commit.
* `claim_due` takes ``pending`` rows whose ``next_attempt_at`` has passed and pushes ``next_attempt_at`` forward
  by a hold time (on PostgreSQL under ``FOR UPDATE SKIP LOCKED``): two senders never send the same row at once,
  and a row held by a sender that died is due again when the hold ends. ``attempts`` counts these claims.
* `record_outcome` stores what the destination said, and when (``last_attempt_at``): ``sent`` on success or
  warning (PS3.4 Annex B: 0x0000, 0xB000, 0xB007, 0xB006), otherwise ``pending`` again after an exponential
  backoff, or ``failed`` once ``max_attempts`` (when not 0) is reached.
* `supersede` cancels the unsent deliveries of older jobs of a series when a newer job's results arrive.

Output SOP Instance UIDs are deterministic, so sending an object twice (a retry after a lost response) leaves
one copy in the destination.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from sarcoscreen.db.events import EventKind, record_event
from sarcoscreen.db.models import Delivery, DeliveryStatus, EventLevel, Job, Output
from sarcoscreen.db.queue import backoff_seconds
from sarcoscreen.db.session import db_now, write_session
from sarcoscreen.inference.error_text import scrub_text

__all__ = ["DestinationAddress", "DueDelivery", "add_deliveries", "claim_due", "record_outcome", "supersede"]

_MAX_ERROR = 4000


class DestinationAddress(Protocol):
    """What the outbox stores of a destination (the node's `DestinationSettings` fits)."""

    name: str
    ae_title: str
    host: str
    port: int


@dataclass(frozen=True)
class DueDelivery:
    """A delivery claimed for sending."""

    id: int
    destination_name: str
    ae_title: str
    host: str
    port: int
    path: str
    """The output file, relative to the outputs folder."""
    sop_instance_uid: str
    kind: str
    attempts: int
    job_id: int
    series_id: int


def add_deliveries(session: Session, outputs: Iterable[Output], destinations: Sequence[DestinationAddress]) -> int:
    """One ``pending`` delivery per output and destination, due now; returns how many."""
    now = db_now(session)
    count = 0
    for output in outputs:
        for destination in destinations:
            session.add(Delivery(output=output, destination_name=destination.name,
                                 destination_ae_title=destination.ae_title, host=destination.host,
                                 port=destination.port, status=DeliveryStatus.PENDING, attempts=0,
                                 next_attempt_at=now))
            count += 1
    return count


def claim_due(db: Engine, *, hold_s: float, limit: int = 100) -> list[DueDelivery]:
    """Pending deliveries that are due, held for `hold_s` seconds by this sender."""
    with write_session(db) as session:
        now = db_now(session)
        rows = session.execute(
            select(Delivery)
            .where(Delivery.status == DeliveryStatus.PENDING, Delivery.next_attempt_at <= now)
            .order_by(Delivery.next_attempt_at, Delivery.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).scalars().all()
        due: list[DueDelivery] = []
        for delivery in rows:
            delivery.attempts += 1
            delivery.next_attempt_at = now + timedelta(seconds=hold_s)
            output = delivery.output
            job = session.get_one(Job, output.job_id)
            due.append(DueDelivery(delivery.id, delivery.destination_name, delivery.destination_ae_title,
                                   delivery.host, delivery.port, output.path, output.sop_instance_uid,
                                   output.kind.value, delivery.attempts, job.id, job.series_id))
        return due


def record_outcome(db: Engine, delivery: DueDelivery, *, accepted: bool, status_code: int | None, error: str,
                   retry_s: float, retry_max_s: float, max_attempts: int) -> DeliveryStatus:
    """Store one attempt's outcome; returns the delivery's new status."""
    with write_session(db) as session:
        row = session.execute(select(Delivery).where(Delivery.id == delivery.id).with_for_update()
                              ).scalar_one_or_none()
        if row is None or row.status is not DeliveryStatus.PENDING:
            return row.status if row is not None else DeliveryStatus.CANCELLED  # cancelled meanwhile
        now = db_now(session)
        row.last_status_code = status_code
        row.last_attempt_at = now
        where = f"{delivery.kind} {delivery.sop_instance_uid} to {delivery.destination_name}"
        if accepted:
            row.status = DeliveryStatus.SENT
            row.sent_at = now
            row.last_error = None
            record_event(session, EventKind.DELIVERY_SENT,
                         f"{where} accepted (status 0x{status_code or 0:04X}) in attempt "
                         f"{row.attempts}", series_id=delivery.series_id, job_id=delivery.job_id)
            return row.status
        row.last_error = scrub_text(error)[:_MAX_ERROR]
        if max_attempts and row.attempts >= max_attempts:
            row.status = DeliveryStatus.FAILED
            record_event(session, EventKind.DELIVERY_FAILED, f"{where} failed for good after {row.attempts} attempts: "
                         f"{error}", level=EventLevel.ERROR, series_id=delivery.series_id, job_id=delivery.job_id)
            return row.status
        wait = backoff_seconds(row.attempts, retry_s, retry_max_s)
        row.next_attempt_at = now + timedelta(seconds=wait)
        record_event(session, EventKind.DELIVERY_RETRY, f"{where}: attempt {row.attempts} failed, next in {wait:g} s: "
                     f"{error}", level=EventLevel.WARNING, series_id=delivery.series_id, job_id=delivery.job_id)
        return row.status


def supersede(session: Session, series_id: int, job_id: int) -> int:
    """Cancel the unsent deliveries of the series' jobs older than `job_id`; returns how many."""
    older_outputs = select(Output.id).join(Job, Job.id == Output.job_id).where(
        Job.series_id == series_id, Job.id < job_id)
    result = session.execute(
        update(Delivery)
        .where(Delivery.output_id.in_(older_outputs),
               Delivery.status.in_((DeliveryStatus.PENDING, DeliveryStatus.FAILED)))
        .values(status=DeliveryStatus.CANCELLED, last_error=f"superseded by job {job_id}")
        .execution_options(synchronize_session=False)
    )
    count = int(result.rowcount or 0)
    if count:
        record_event(session, EventKind.DELIVERY_CANCELLED,
                     f"{count} unsent deliveries of older jobs superseded by job "
                     f"{job_id}", series_id=series_id, job_id=job_id)
    return count
