"""A series whose transfer a node's restart interrupted, on SQLite and PostgreSQL (issue 11, item 9: kill -9).

Met by the kill -9 trials of the hardening campaign (``benchmarks/chaos.py``): the node is killed while a series
arrives and restarted, and the sender resends the rest.

* The watcher must not take the time the node was down for idle time: a series whose last instance arrived
  before the start is decided only once the node has listened for ``network.stable_age_s`` (the sender gets that
  long to resend), not in the first round after the start on what had arrived.
* When the series was decided on what had arrived all the same, its late instances arrive while the worker
  analyses the earlier ones. The index puts the series back to ``receiving``; the job's outcome must not
  overwrite that, or the watcher never decides the series again and the late instances are never analysed (the
  delivered results stay those of the truncated series).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from node_support import add_series, jobs_of
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from sarcoscreen.db.models import JobStatus, Series, SeriesState
from sarcoscreen.db.queue import claim, complete, fail, reap_expired
from sarcoscreen.db.session import db_now, write_session
from sarcoscreen.node.config import load_settings
from sarcoscreen.node.routing import RoutingRules
from sarcoscreen.node.series_watcher import SeriesWatcher, decide_stable_series

UID = "1.2.826.0.1.77.1"


def _state(engine: Engine) -> SeriesState:
    with Session(engine) as session:
        return session.execute(select(Series.state).where(Series.series_instance_uid == UID)).scalar_one()


def _decide(engine: Engine, rerun: bool = True) -> list[str]:
    outcomes = decide_stable_series(engine, stable_age_s=0, rules=RoutingRules(min_slices=3),
                                    rerun_on_late_instances=rerun, max_attempts=3)
    return [o.outcome for o in outcomes]


def _running_job_with_a_late_instance(engine: Engine) -> tuple[int, str]:
    """A series decided with 5 instances, its job claimed, then a 6th instance: (job id, lease token)."""
    add_series(engine, UID, 5, study_uid="1.2.826.0.1.77")
    assert _decide(engine) == ["queued"]
    claimed = claim(engine, lease_s=60)
    assert claimed is not None
    add_series(engine, UID, 1, start=6, study_uid="1.2.826.0.1.77")
    assert _state(engine) is SeriesState.RECEIVING
    return claimed.id, claimed.lease_token


@pytest.mark.parametrize("outcome", ["processed", "skipped"])
def test_a_job_done_after_a_late_instance_leaves_the_series_to_be_decided_again(engine: Engine, outcome: str) -> None:
    job_id, token = _running_job_with_a_late_instance(engine)
    with write_session(engine) as session:
        complete(session, job_id, token, series_state=SeriesState(outcome),
                 skip_reason="the images do not reach the gluteal region" if outcome == "skipped" else None)
    assert _state(engine) is SeriesState.RECEIVING
    assert _decide(engine) == ["queued"]  # a new job analyses the six instances
    jobs = jobs_of(engine)
    assert [j.status for j in jobs] == [JobStatus.DONE, JobStatus.QUEUED]
    assert (jobs[1].reason or "").startswith("late instances")


def test_a_job_failed_after_a_late_instance_leaves_the_series_to_be_decided_again(engine: Engine) -> None:
    job_id, token = _running_job_with_a_late_instance(engine)
    fail(engine, job_id, token, "the series cannot be loaded: 1 gap(s) in the slice positions", backoff_s=0,
         backoff_max_s=0, permanent=True)
    assert _state(engine) is SeriesState.RECEIVING
    assert _decide(engine) == ["queued"]  # the late instance may be the one the gap was missing


def test_a_lease_expired_after_a_late_instance_leaves_the_series_to_be_decided_again(engine: Engine) -> None:
    add_series(engine, UID, 5, study_uid="1.2.826.0.1.77")
    decide_stable_series(engine, stable_age_s=0, rules=RoutingRules(min_slices=3), rerun_on_late_instances=True,
                         max_attempts=1)
    assert claim(engine, lease_s=-1.0) is not None  # its lease already over: a worker killed at once
    add_series(engine, UID, 1, start=6, study_uid="1.2.826.0.1.77")
    assert [status for _, status in reap_expired(engine, backoff_s=0, backoff_max_s=0)] == [JobStatus.FAILED]
    assert _state(engine) is SeriesState.RECEIVING
    assert _decide(engine) == ["queued"]


def test_with_re_runs_off_the_series_returns_to_its_job_state_once_idle(engine: Engine) -> None:
    job_id, token = _running_job_with_a_late_instance(engine)
    with write_session(engine) as session:
        complete(session, job_id, token)
    assert _decide(engine, rerun=False) == ["not re-run"]
    assert _state(engine) is SeriesState.PROCESSED
    assert len(jobs_of(engine)) == 1


def _arrived_an_hour_ago(engine: Engine) -> None:
    """The series' last instance arrived an hour ago: before the node (re)started."""
    add_series(engine, UID, 5, study_uid="1.2.826.0.1.77")
    with write_session(engine) as session:
        session.execute(update(Series).values(last_received_at=db_now(session) - timedelta(hours=1)))


def test_time_the_node_was_down_is_not_idle_time(engine: Engine) -> None:
    _arrived_an_hour_ago(engine)
    with write_session(engine) as session:
        started = db_now(session)
    rules = RoutingRules(min_slices=3)
    # Listening for less than stable_age_s: the sender may still be resending what the restart interrupted.
    assert decide_stable_series(engine, stable_age_s=60, rules=rules, rerun_on_late_instances=True, max_attempts=3,
                                receiving_since=started) == []
    assert _state(engine) is SeriesState.RECEIVING
    # Once the node has listened for stable_age_s (here: it started two minutes before), the series is decided.
    outcomes = decide_stable_series(engine, stable_age_s=60, rules=rules, rerun_on_late_instances=True,
                                    max_attempts=3, receiving_since=started - timedelta(minutes=2))
    assert [o.outcome for o in outcomes] == ["queued"]


def test_the_series_watcher_waits_stable_age_after_its_start(engine: Engine, tmp_path: Path) -> None:
    _arrived_an_hour_ago(engine)
    settings = load_settings(environ={}, overrides={
        "network": {"stable_age_s": 600.0}, "routing": {"min_slices": 3},
        "storage": {"data_dir": str(tmp_path / "data")}})
    watcher = SeriesWatcher(engine, settings)
    assert watcher.run_once() == []  # just started: an hour of idleness before it does not count
    assert _state(engine) is SeriesState.RECEIVING
