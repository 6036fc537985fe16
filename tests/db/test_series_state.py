"""The series state machine (`sarcoscreen.db.series_state`) on SQLite and PostgreSQL: every transition, the two
rules that protect late instances and the latest results (a newer job decides; a job's end does not overwrite
``receiving``), that no other module writes ``series.state``, and revision 0007 (no ``stable`` state).

Real databases, rows written through the node's own index and queue functions; no mocks.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest
from db_support import BACKENDS, database_url
from node_support import add_series
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sarcoscreen.db import migrate
from sarcoscreen.db.models import Event, Job, JobStatus, Series, SeriesState
from sarcoscreen.db.queue import cancel, enqueue, retry
from sarcoscreen.db.series_state import (
    NEW_SERIES_STATE,
    SETTLED_STATES,
    SeriesTransitionError,
    back_to_job_state,
    back_to_receiving,
    series_queued,
    series_skipped,
    settle_after_cancel,
    settle_after_job,
    settle_after_retry,
    state_after_job,
)
from sarcoscreen.db.session import create_engine_from_url, session_scope

UID = "1.2.826.0.1.55.1"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def db(db_url: str) -> Iterator[Engine]:
    """The node's database (migrated to head) on each backend."""
    db = create_engine_from_url(db_url)
    yield db
    db.dispose()


def _series_id(db: Engine) -> int:
    """A series of three indexed instances (``receiving``)."""
    return add_series(db, UID, 3, study_uid="1.2.826.0.1.55")


def _state(db: Engine) -> tuple[SeriesState, str | None]:
    with Session(db) as session:
        series = session.execute(select(Series).where(Series.series_instance_uid == UID)).scalar_one()
        return series.state, series.skip_reason


def _events(db: Engine, kind: str) -> list[str]:
    with Session(db) as session:
        return list(session.execute(select(Event.message).where(Event.kind == kind).order_by(Event.id)).scalars())


def _job(db: Engine, series_id: int, status: JobStatus = JobStatus.QUEUED) -> Job:
    """A job of the series made by the queue (the series becomes ``queued``), then given `status`."""
    with session_scope(db) as session:
        job = enqueue(session, series_id, reason="test", max_attempts=3)
        job.status = status
    return job


def _in_session(db: Engine, transition: object, *args: object) -> None:
    """Run a transition in its own transaction, with the job (if any) loaded in that session."""
    with session_scope(db) as session:
        loaded = [session.get_one(Job, a.id) if isinstance(a, Job) else a for a in args]
        transition(session, *loaded)  # type: ignore[operator]


# --- receiving --------------------------------------------------------------------------------------------------


def test_a_new_series_is_receiving(db: Engine) -> None:
    _series_id(db)
    assert NEW_SERIES_STATE is SeriesState.RECEIVING
    assert _state(db) == (SeriesState.RECEIVING, None)


def test_back_to_receiving_from_a_decision_records_one_event_and_clears_the_reason(db: Engine) -> None:
    series_id = _series_id(db)
    _in_session(db, series_skipped, series_id, "5 slices, fewer than the 20 required")
    assert _state(db) == (SeriesState.SKIPPED, "5 slices, fewer than the 20 required")
    _in_session(db, back_to_receiving, series_id, f"instance {UID}.4 arrived")
    assert _state(db) == (SeriesState.RECEIVING, None)
    _in_session(db, back_to_receiving, series_id, f"instance {UID}.5 arrived")  # still receiving: no event
    assert _events(db, "series.receiving") == [
        f"instance {UID}.4 arrived after the series was skipped; the series will be decided again once it is idle"]


def test_a_late_instance_puts_a_processed_series_back_to_receiving_through_the_index(db: Engine) -> None:
    series_id = _series_id(db)
    job = _job(db, series_id, JobStatus.DONE)
    _in_session(db, settle_after_job, job, SeriesState.PROCESSED)
    assert _state(db) == (SeriesState.PROCESSED, None)
    add_series(db, UID, 1, start=4, study_uid="1.2.826.0.1.55")
    assert _state(db) == (SeriesState.RECEIVING, None)
    assert len(_events(db, "series.receiving")) == 1


# --- the watcher's decisions ------------------------------------------------------------------------------------


def test_skipped_needs_a_reason(db: Engine) -> None:
    series_id = _series_id(db)
    with pytest.raises(SeriesTransitionError, match="needs the reason"):
        _in_session(db, series_skipped, series_id, "")
    assert _state(db) == (SeriesState.RECEIVING, None)


def test_queued_clears_an_earlier_skip_reason(db: Engine) -> None:
    series_id = _series_id(db)
    _in_session(db, series_skipped, series_id, "not axial")
    _in_session(db, series_queued, series_id)
    assert _state(db) == (SeriesState.QUEUED, None)


@pytest.mark.parametrize("status", list(JobStatus))
def test_back_to_job_state_is_the_state_after_the_job(db: Engine, status: JobStatus) -> None:
    series_id = _series_id(db)
    job = _job(db, series_id, status)
    _in_session(db, back_to_receiving, series_id, "a late instance")
    with session_scope(db) as session:
        returned = back_to_job_state(session, series_id, session.get_one(Job, job.id))
    expected = {JobStatus.QUEUED: SeriesState.QUEUED, JobStatus.RUNNING: SeriesState.QUEUED,
                JobStatus.DONE: SeriesState.PROCESSED, JobStatus.FAILED: SeriesState.FAILED,
                JobStatus.CANCELLED: SeriesState.SKIPPED}[status]
    assert returned is expected is state_after_job(status)
    reason = f"job {job.id} cancelled" if status is JobStatus.CANCELLED else None
    assert _state(db) == (expected, reason)


# --- a job's end --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("outcome", "reason"), [(SeriesState.PROCESSED, None), (SeriesState.FAILED, None),
                                                 (SeriesState.SKIPPED, "the images do not reach the gluteal region")])
def test_a_job_s_end_settles_its_series(db: Engine, outcome: SeriesState, reason: str | None) -> None:
    job = _job(db, _series_id(db), JobStatus.RUNNING)
    assert _state(db) == (SeriesState.QUEUED, None)
    _in_session(db, settle_after_job, job, outcome, reason)
    assert _state(db) == (outcome, reason)


@pytest.mark.parametrize("state", [SeriesState.RECEIVING, SeriesState.QUEUED])
def test_a_job_s_end_cannot_make_its_series_receiving_or_queued(db: Engine, state: SeriesState) -> None:
    job = _job(db, _series_id(db), JobStatus.RUNNING)
    with pytest.raises(SeriesTransitionError, match="cannot make its series"):
        _in_session(db, settle_after_job, job, state)
    assert _state(db) == (SeriesState.QUEUED, None)


def test_a_job_s_end_does_not_overwrite_receiving(db: Engine) -> None:
    series_id = _series_id(db)
    job = _job(db, series_id, JobStatus.RUNNING)
    _in_session(db, back_to_receiving, series_id, "a late instance")  # arrived while the job ran
    for outcome, reason in ((SeriesState.PROCESSED, None), (SeriesState.FAILED, None),
                            (SeriesState.SKIPPED, "the images do not reach the gluteal region")):
        _in_session(db, settle_after_job, job, outcome, reason)
        assert _state(db) == (SeriesState.RECEIVING, None)


def test_a_newer_job_decides(db: Engine) -> None:
    series_id = _series_id(db)
    older = _job(db, series_id, JobStatus.RUNNING)
    _job(db, series_id, JobStatus.QUEUED)  # a re-run after late instances
    _in_session(db, settle_after_job, older, SeriesState.PROCESSED)
    assert _state(db) == (SeriesState.QUEUED, None)
    _in_session(db, settle_after_job, older, SeriesState.FAILED)
    _in_session(db, settle_after_cancel, older)
    assert _state(db) == (SeriesState.QUEUED, None)
    _in_session(db, series_skipped, series_id, "cancelled elsewhere")
    _in_session(db, settle_after_retry, older)
    assert _state(db) == (SeriesState.SKIPPED, "cancelled elsewhere")


# --- the user's retry and cancel -----------------------------------------------------------------------------------


def test_cancel_skips_and_retry_queues_with_no_stale_reason(db: Engine) -> None:
    job = _job(db, _series_id(db), JobStatus.QUEUED)
    cancel(db, job.id)
    assert _state(db) == (SeriesState.SKIPPED, f"job {job.id} cancelled by a user")
    retry(db, job.id)
    assert _state(db) == (SeriesState.QUEUED, None)


def test_a_cancel_overrides_receiving(db: Engine) -> None:
    """Only a job's own end keeps a ``receiving`` series; a user's cancel is a decision and skips it."""
    series_id = _series_id(db)
    job = _job(db, series_id, JobStatus.RUNNING)
    _in_session(db, back_to_receiving, series_id, "a late instance")
    _in_session(db, settle_after_cancel, job)
    assert _state(db) == (SeriesState.SKIPPED, f"job {job.id} cancelled by a user")


# --- retention's settled states ------------------------------------------------------------------------------------


def test_settled_states_are_those_without_a_pending_decision_or_job() -> None:
    assert set(SETTLED_STATES) == set(SeriesState) - {SeriesState.RECEIVING, SeriesState.QUEUED}


# --- one writer -------------------------------------------------------------------------------------------------


def _series_state_writes(source: str, where: str) -> list[str]:
    """Places in `source` that write a series state: ``<...series...>.state = ...``, or ``state=`` / ``"state":``
    with a `SeriesState` value (reads - comparisons - are fine)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Attribute) and target.attr == "state" \
                        and ("series" in ast.unparse(target.value).lower() or "SeriesState" in ast.unparse(node)):
                    found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.keyword) and node.arg == "state" and "SeriesState" in ast.unparse(node.value):
            found.append(f"{where}:{node.value.lineno}: state={ast.unparse(node.value)}")
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "state" and "SeriesState" in ast.unparse(value):
                    found.append(f"{where}:{value.lineno}: 'state': {ast.unparse(value)}")
    return found


def test_the_scan_finds_writes_and_passes_reads() -> None:
    writes = ("series.state = SeriesState.QUEUED\n"
              "session.execute(update(Series).values(state=SeriesState.SKIPPED))\n"
              "insert(Series).values(**{'state': SeriesState.RECEIVING})\n"
              "row.state = SeriesState.FAILED\n")
    assert len(_series_state_writes(writes, "sample")) == 4
    reads = ("select(Series).where(Series.state == SeriesState.RECEIVING)\n"
             "row.state = InstanceState.PURGED\n"
             "complete(session, 1, 't', series_state=SeriesState.SKIPPED)\n")
    assert _series_state_writes(reads, "sample") == []


def test_only_series_state_writes_the_series_state() -> None:
    allowed = {ROOT / "db" / "series_state.py", ROOT / "db" / "models.py"}
    writes: list[str] = []
    for package in ("db", "node", "inference", "reports"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path in allowed or "migrations" in path.parts:
                continue
            writes += _series_state_writes(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert writes == []


# --- revision 0007: no stable state ------------------------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(request.param, request, tmp_path) as url:
        yield url


def test_0007_turns_stable_into_receiving_refuses_it_and_goes_back(empty_url: str) -> None:
    migrate.upgrade(empty_url, "0006")
    db = create_engine_from_url(empty_url)
    insert = text("INSERT INTO series (study_id, series_instance_uid, instance_count, first_received_at, "
                  "last_received_at, state) VALUES (1, :uid, 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, :state)")
    try:
        with db.begin() as connection:
            connection.execute(text("INSERT INTO studies (study_instance_uid, created_at) "
                                    "VALUES ('1.2.826.0.1.55', CURRENT_TIMESTAMP)"))
            connection.execute(insert, {"uid": "1.2.826.0.1.55.1", "state": "stable"})
            connection.execute(insert, {"uid": "1.2.826.0.1.55.2", "state": "processed"})
        migrate.upgrade(empty_url)
        db.dispose()
        assert migrate.current(empty_url) == migrate.head()
        states = "SELECT series_instance_uid, state FROM series ORDER BY series_instance_uid"
        with db.connect() as connection:
            assert [tuple(r) for r in connection.execute(text(states))] == [
                ("1.2.826.0.1.55.1", "receiving"), ("1.2.826.0.1.55.2", "processed")]
        with pytest.raises(IntegrityError), db.begin() as connection:
            connection.execute(insert, {"uid": "1.2.826.0.1.55.3", "state": "stable"})
        migrate.downgrade(empty_url, "0006")
        db.dispose()
        with db.begin() as connection:
            connection.execute(insert, {"uid": "1.2.826.0.1.55.3", "state": "stable"})
            assert len(connection.execute(text(states)).all()) == 3
    finally:
        db.dispose()
