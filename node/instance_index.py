"""The SCP's instance index over SQL: one transaction per received instance, before the C-STORE is answered.

`SqlInstanceIndex.add` records a stored instance (`sarcoscreen.node.scp.ReceivedInstance`): its study and series
(created on first sight, with the attributes routing and measurement need) and the instance row pointing at the
spool file. A SOP Instance UID already indexed is not recorded again (a resent instance is stored once); one
indexed under another series raises `InstanceConflictError` and records nothing but an ``instance.conflict`` event
(the SCP refuses it).

A new instance of a series that had already been decided (queued, skipped, processed, failed) puts the series
back to ``receiving`` (`sarcoscreen.db.series_state.back_to_receiving`): once it is idle again the series watcher
decides it anew, and - when ``network.rerun_on_late_instances`` is on - makes a new job, so an instance arriving
late is never lost.

Concurrency: on SQLite the transaction starts with ``BEGIN IMMEDIATE``; on PostgreSQL study, series and instance
rows are inserted with ``ON CONFLICT DO NOTHING`` and the series row is locked (``FOR UPDATE``) while its counters
change, so simultaneous associations of one study never fail on a unique constraint.

Nothing here logs patient data: the patient ID goes to the ``studies`` table only.
"""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Engine, bindparam, event, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from sarcoscreen.db.events import EventKind, record_event
from sarcoscreen.db.models import (
    EventLevel,
    Instance,
    InstanceState,
    Series,
    SeriesState,
    Study,
    UTCDateTime,
    utcnow,
)
from sarcoscreen.db.series_state import NEW_SERIES_STATE, back_to_receiving
from sarcoscreen.db.session import BEGIN_IMMEDIATE, create_engine_from_url, db_now, write_session
from sarcoscreen.node.scp import IndexUnavailableError, InstanceConflictError, ReceivedInstance

__all__ = ["SqlInstanceIndex", "index_instance", "open_index_db"]

logger = logging.getLogger(__name__)


def _study_date(text: str) -> date | None:
    try:
        return datetime.strptime(text[:8], "%Y%m%d").date() if len(text) >= 8 else None
    except ValueError:
        return None


def _number(text: str) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def _insert(session: Session, model: type, values: dict[str, Any], key: str) -> bool:
    """INSERT ... ON CONFLICT (key) DO NOTHING, in the dialect of the session's database; ``True`` if inserted."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # RETURNING says whether a row was inserted on both databases (rowcount is not reliable for ORM inserts).
    statement = insert(model).values(**values).on_conflict_do_nothing(index_elements=[key]).returning(model.id)
    return session.execute(statement).first() is not None


def _study_id(session: Session, instance: ReceivedInstance) -> int:
    found = session.execute(select(Study.id).where(Study.study_instance_uid == instance.study_instance_uid)
                            ).scalar_one_or_none()
    if found is not None:
        return found
    _insert(session, Study, {
        "study_instance_uid": instance.study_instance_uid,
        "patient_id": instance.patient_id[:64] or None,
        "accession_number": instance.accession_number[:64] or None,
        "study_date": _study_date(instance.study_date),
        "study_description": instance.study_description[:256] or None,
        "patient_sex": instance.patient_sex[:16] or None,
        "patient_size_recorded": _number(instance.patient_size),
    }, "study_instance_uid")
    return session.execute(select(Study.id).where(Study.study_instance_uid == instance.study_instance_uid)
                           ).scalar_one()


def _series_id(session: Session, instance: ReceivedInstance, study_id: int) -> int:
    found = session.execute(select(Series.id).where(Series.series_instance_uid == instance.series_instance_uid)
                            ).scalar_one_or_none()
    if found is not None:
        return found
    now = db_now(session)
    _insert(session, Series, {
        "study_id": study_id,
        "series_instance_uid": instance.series_instance_uid,
        "modality": instance.modality[:16] or None,
        "series_description": instance.series_description[:256] or None,
        "body_part": instance.body_part[:64] or None,
        "slice_thickness_mm": instance.slice_thickness_mm,
        "instance_count": 0,
        "first_received_at": now,
        "last_received_at": now,
        "state": NEW_SERIES_STATE,
    }, "series_instance_uid")
    return session.execute(select(Series.id).where(Series.series_instance_uid == instance.series_instance_uid)
                           ).scalar_one()


def _now(session: Session) -> Any:
    """The receive time: the database server's clock on PostgreSQL (as SQL, no round trip), this host's else."""
    if session.get_bind().dialect.name == "postgresql":
        return func.statement_timestamp()
    return utcnow()


def _resent(session: Session, instance: ReceivedInstance, series_id: int) -> None:
    """A SOP Instance UID indexed before. Under another series: `InstanceConflictError` (a SOP Instance UID
    identifies one instance, PS3.3 C.12.1.1.1; the caller's transaction is rolled back). In the same series, a
    resend whose spool file had gone missing, changed or been purged: the spool has it again, and its series is
    decided again (a purged series received anew is analysed anew)."""
    existing = session.execute(
        select(Instance).where(Instance.sop_instance_uid == instance.sop_instance_uid)).scalar_one_or_none()
    if existing is not None and existing.series_id != series_id:
        stored_series = session.execute(select(Series.series_instance_uid).where(Series.id == existing.series_id)
                                        ).scalar_one()
        raise InstanceConflictError(instance.sop_instance_uid, stored_series, instance.series_instance_uid,
                                    existing.series_id)
    if existing is not None and existing.state is not InstanceState.STORED \
            and existing.spool_path == instance.relative_path:
        previous = existing.state
        existing.state = InstanceState.STORED
        existing.sha256, existing.size_bytes = instance.sha256, instance.size
        _reopen(session, existing.series_id, f"instance {instance.sop_instance_uid} received again (it was "
                f"'{previous.value}')", count=False)


def _reopen(session: Session, series_id: int, why: str, *, count: bool) -> None:
    """Put a series back to ``receiving`` (it will be decided again once idle); `count`: one more instance."""
    back_to_receiving(session, series_id, why)
    values: dict[str, Any] = {"last_received_at": _now(session)}
    if count:
        values["instance_count"] = Series.instance_count + 1
    session.execute(update(Series).where(Series.id == series_id).values(**values)
                    .execution_options(synchronize_session=False))


@dataclass(frozen=True)
class _Statements:
    """The hot path's statements, built once per dialect: parameters are bound at execution, so SQLAlchemy
    compiles them once (building a statement per instance costs more than the database work)."""

    insert_instance: Any
    count_instance: Any
    now_in_sql: bool


@functools.cache
def _statements(dialect: str) -> _Statements:
    instances, series = Instance.__table__, Series.__table__
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    now_in_sql = dialect == "postgresql"
    now = func.statement_timestamp() if now_in_sql else bindparam("b_now", type_=UTCDateTime())
    return _Statements(
        insert_instance=insert(instances).values(received_at=now)
        .on_conflict_do_nothing(index_elements=["sop_instance_uid"]).returning(instances.c.id),
        count_instance=update(series)
        .where(series.c.id == bindparam("b_series"), series.c.state == SeriesState.RECEIVING)
        .values(instance_count=series.c.instance_count + 1, last_received_at=now),
        now_in_sql=now_in_sql,
    )


def _instance_row(instance: ReceivedInstance, series_id: int, times: dict[str, Any]) -> dict[str, Any]:
    """The bound parameters of `_Statements.insert_instance`."""
    return {
        "series_id": series_id,
        "sop_instance_uid": instance.sop_instance_uid,
        "sop_class_uid": instance.sop_class_uid,
        "transfer_syntax_uid": instance.transfer_syntax_uid,
        "spool_path": instance.relative_path,
        "size_bytes": instance.size,
        "sha256": instance.sha256,
        "calling_ae_title": instance.calling_ae_title[:16] or None,
        "frames": instance.frames,
        "image_type": "\\".join(instance.image_type)[:256] or None,
        "axial": instance.axial,
        "state": InstanceState.STORED,
        **times,
    }


def index_instance(session: Session, instance: ReceivedInstance, *,
                   ids: tuple[int, int] | None = None) -> tuple[bool, tuple[int, int]]:
    """Record `instance` in the caller's transaction.

    `ids` are the (study id, series id) of the instance's series when the caller knows them (a cache). Returns
    whether the instance was new, and the (study id, series id). The common case - a new instance of a series
    that is receiving - is one INSERT and one UPDATE.
    """
    if ids is None:
        study_id = _study_id(session, instance)
        ids = (study_id, _series_id(session, instance, study_id))
    series_id = ids[1]
    statements = _statements(session.get_bind().dialect.name)
    times = {} if statements.now_in_sql else {"b_now": utcnow()}
    inserted = session.execute(statements.insert_instance, _instance_row(instance, series_id, times)).first() \
        is not None
    if not inserted:  # indexed before (a resend), or by another association a moment ago
        _resent(session, instance, series_id)
        return False, ids
    if session.execute(statements.count_instance, {"b_series": series_id, **times}).rowcount:
        return True, ids
    # The series had been decided (queued, skipped, processed...): it receives again and will be decided anew.
    _reopen(session, series_id, f"instance {instance.sop_instance_uid} arrived", count=True)
    return True, ids


def open_index_db(url: str) -> Engine:
    """The database connection pool the SCP indexes with. On SQLite its connections use ``synchronous=NORMAL``: in
    WAL mode a commit then no longer waits for the disk (the WAL is synced at checkpoints). The instance file itself
    is fsynced in the spool before the row is written, and the start-up reconciliation indexes any spool file whose
    row a power failure lost, so no acknowledged instance can be lost; the database stays consistent either way."""
    db = create_engine_from_url(url)
    if db.dialect.name == "sqlite":

        @event.listens_for(db, "connect")
        def _normal_sync(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("PRAGMA synchronous = NORMAL")
            finally:
                cursor.close()

    return db


class SqlInstanceIndex:
    """`sarcoscreen.node.scp.InstanceIndex` over the node's database.

    Keeps the (study id, series id) of recent series in memory. The common case - a new instance of a series
    already seen that is still receiving - is one transaction on a plain connection with one INSERT and one UPDATE
    (no ORM session: its bookkeeping cost more than the database work). Anything else (a first instance of a
    series, a resend, a series already decided) rolls that back and goes through `index_instance` in a session. A
    stale cache entry (the series was deleted meanwhile) fails on the foreign key and is looked up again.
    """

    _CACHE_SIZE = 1024

    def __init__(self, db: Engine) -> None:
        self.db = db
        self._writer = db.execution_options(**{BEGIN_IMMEDIATE: True})
        self._statements = _statements(db.dialect.name)
        self._ids: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def add(self, instance: ReceivedInstance) -> None:
        key = instance.series_instance_uid
        with self._lock:
            cached = self._ids.get(key)
        try:
            if cached is not None:
                try:
                    if self._add_to_receiving_series(instance, cached[1]):
                        return
                except IntegrityError:  # the cached series is gone
                    cached = None
            try:
                with write_session(self.db) as session:
                    _, ids = index_instance(session, instance, ids=cached)
            except IntegrityError:
                if cached is None:
                    raise
                with write_session(self.db) as session:
                    _, ids = index_instance(session, instance)
        except InstanceConflictError as conflict:
            self._record_conflict(conflict, instance)
            raise
        except SQLAlchemyError as exc:
            # The driver's text may quote SQL; name the kind of error only (bound values are hidden anyway).
            raise IndexUnavailableError(f"database error ({type(exc).__name__})") from exc
        with self._lock:
            if len(self._ids) >= self._CACHE_SIZE:
                self._ids.clear()
            self._ids[key] = ids

    def _record_conflict(self, conflict: InstanceConflictError, instance: ReceivedInstance) -> None:
        """An ``instance.conflict`` event on the series that keeps the instance (its own transaction: the
        instance's was rolled back); the refusal stands when the event cannot be written."""
        message = (f"instance {conflict.sop_instance_uid} received under series {conflict.received_series_uid} "
                   f"from {instance.calling_ae_title or 'an unknown AE'}: refused, that SOP Instance UID is stored "
                   "under this series (the first copy is kept; the data set received is in the quarantine)")
        try:
            with write_session(self.db) as session:
                record_event(session, EventKind.INSTANCE_CONFLICT, message, level=EventLevel.WARNING,
                             series_id=conflict.stored_series_id)
        except SQLAlchemyError as exc:
            logger.error("the conflict of instance %s could not be recorded: database error (%s)",
                         conflict.sop_instance_uid, type(exc).__name__)

    def _add_to_receiving_series(self, instance: ReceivedInstance, series_id: int) -> bool:
        """The common case in one transaction; ``False`` (rolled back) when it is not that case."""
        statements = self._statements
        times = {} if statements.now_in_sql else {"b_now": utcnow()}
        with self._writer.connect() as connection:  # closing it rolls back whatever was not committed
            transaction = connection.begin()
            if connection.execute(statements.insert_instance,
                                  _instance_row(instance, series_id, times)).first() is None:
                return False  # indexed before: a resend
            if not connection.execute(statements.count_instance, {"b_series": series_id, **times}).rowcount:
                return False  # the series was decided meanwhile
            transaction.commit()
        return True
