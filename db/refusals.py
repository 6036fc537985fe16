"""Refused C-STOREs, recorded so that they can be counted (``sarcoscreen_instances_refused_total``).

A refused instance leaves no ``instances`` row: a data set that cannot be parsed or whose UIDs are wrong is
quarantined, one refused for a full disk or an unavailable database is only answered with 0xA700. `record_refusal`
writes one ``store_refusals`` row per refusal in its own short transaction, apart from the index's, so a refusal is
counted whatever became of the instance. The reason is scrubbed of DICOM values like every recorded error text.
"""

from __future__ import annotations

from sqlalchemy import Engine

from sarcoscreen.db.models import StoreRefusal
from sarcoscreen.db.session import db_now, session_scope
from sarcoscreen.inference.error_text import scrub_text

__all__ = ["MAX_REASON", "record_refusal"]

MAX_REASON = 2000
"""Longest reason stored (characters); the SCP's reasons are a line."""


def record_refusal(db: Engine, *, status: int, reason: str, calling_ae_title: str) -> None:
    """Record that a C-STORE was answered with failure `status` for `reason` (scrubbed here).

    Raises `sqlalchemy.exc.SQLAlchemyError` when the database cannot record it; the caller decides what that means
    (the SCP logs it and answers all the same)."""
    with session_scope(db) as session:
        session.add(StoreRefusal(at=db_now(session), status=status, reason=scrub_text(reason)[:MAX_REASON],
                                 calling_ae_title=calling_ae_title.strip()[:16] or None))
