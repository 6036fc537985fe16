"""The audit trail: one `Event` row per decision or state change, in the caller's transaction.

Messages carry UIDs, counts and reasons - never patient names, identifiers or birth dates (callers build them
from UIDs and reasons only). Every kind is an `EventKind`, dotted (``series.skipped``, ``job.failed``,
``delivery.sent``...) and listed with its meaning in docs/node.md, "What is recorded" (a test holds the two
together).
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy.orm import Session

from sarcoscreen.db.models import Event, EventLevel
from sarcoscreen.inference.error_text import scrub_text

__all__ = ["EventKind", "record_event"]

_MAX_MESSAGE = 4000


class EventKind(StrEnum):
    """What an `Event` row records (stored as its value in ``events.kind``)."""

    SERIES_SKIPPED = "series.skipped"
    """The routing rules refused the series, a job found it outside the gluteal region, or a user cancelled it."""
    SERIES_RECEIVING = "series.receiving"
    """Late instances of a decided series: it is receiving again and will be decided anew."""
    SERIES_STABLE = "series.stable"
    """Stable again after late instances; the job not yet started takes them."""
    SERIES_NOT_RERUN = "series.not_rerun"
    """Late instances not analysed (``network.rerun_on_late_instances`` is off)."""
    SERIES_PURGED = "series.purged"
    """The series' spool files were deleted at the end of their retention period."""
    JOB_QUEUED = "job.queued"
    JOB_CLAIMED = "job.claimed"
    JOB_RETRY = "job.retry"
    """An attempt failed and the job is queued again (or a user retried it)."""
    JOB_FAILED = "job.failed"
    JOB_DONE = "job.done"
    JOB_CANCELLED = "job.cancelled"
    DELIVERY_SENT = "delivery.sent"
    DELIVERY_RETRY = "delivery.retry"
    DELIVERY_FAILED = "delivery.failed"
    DELIVERY_CANCELLED = "delivery.cancelled"
    OUTPUT_OMITTED = "output.omitted"
    """A DICOM output was not written (e.g. no segment for the SEG, key image disabled)."""
    OUTPUT_REPAIRED = "output.repaired"
    """Malformed source attributes repaired or left out in the outputs (names, never values)."""
    OUTPUTS_PURGED = "outputs.purged"
    """A job's output files were deleted at the end of their retention period."""
    SPOOL_RECONCILED = "spool.reconciled"
    """At start-up the index was brought in line with the spool."""
    INSTANCE_MISSING = "instance.missing"
    """Spool files of stored instances were missing when a job looked for them."""
    INSTANCE_CONFLICT = "instance.conflict"
    """A SOP Instance UID arrived under a second series (refused)."""
    ENGINE_NOTES = "engine.notes"
    """The engine's notes of a done job (for the U-Net: the model bundle, its training data and intended use)."""


def record_event(session: Session, kind: EventKind, message: str, *, level: EventLevel = EventLevel.INFO,
                 series_id: int | None = None, job_id: int | None = None) -> None:
    """Add an event to `session` (it is written when the caller's transaction commits)."""
    session.add(Event(kind=kind, message=scrub_text(message)[:_MAX_MESSAGE], level=level, series_id=series_id,
                      job_id=job_id))
