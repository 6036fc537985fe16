"""The SCP's `RefusalLog` over the node's database: one ``store_refusals`` row per refused C-STORE.

Each refusal is recorded in its own short transaction (`sarcoscreen.db.refusals.record_refusal`), apart from the
index's; a database error becomes `RefusalNotRecordedError`, which the SCP logs before answering the refusal all the
same. The error text is scrubbed (`sarcoscreen.inference.error_text`).
"""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from sarcoscreen.db.refusals import record_refusal
from sarcoscreen.inference.error_text import error_text
from sarcoscreen.node.scp import RefusalNotRecordedError

__all__ = ["SqlRefusalLog"]


class SqlRefusalLog:
    """`sarcoscreen.node.scp.RefusalLog` recording into the ``store_refusals`` table of `db`."""

    def __init__(self, db: Engine) -> None:
        self.db = db

    def record(self, status: int, reason: str, calling_ae_title: str) -> None:
        try:
            record_refusal(self.db, status=status, reason=reason, calling_ae_title=calling_ae_title)
        except SQLAlchemyError as exc:
            raise RefusalNotRecordedError((error_text(exc).splitlines() or [''])[0]) from None
