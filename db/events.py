"""The audit trail: one `Event` row per decision or state change, in the caller's transaction.

Messages carry UIDs, counts and reasons - never patient names, identifiers or birth dates (callers build them
from UIDs and reasons only). Kinds are dotted: ``series.skipped``, ``job.failed``, ``delivery.sent``...
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from sarcoscreen.db.models import Event, EventLevel
from sarcoscreen.inference.error_text import scrub_text

__all__ = ["record_event"]

_MAX_MESSAGE = 4000


def record_event(session: Session, kind: str, message: str, *, level: EventLevel = EventLevel.INFO,
                 series_id: int | None = None, job_id: int | None = None) -> None:
    """Add an event to `session` (it is written when the caller's transaction commits)."""
    session.add(Event(kind=kind, message=scrub_text(message)[:_MAX_MESSAGE], level=level, series_id=series_id,
                      job_id=job_id))
