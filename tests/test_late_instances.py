"""Instances that arrive while their series' job is running, on SQLite and PostgreSQL.

Found by the kill -9 trials of the hardening campaign (``benchmarks/chaos.py``): a node killed while a series
arrives is restarted, the sender resends the rest, and the series - already decided on what had arrived - gets
its late instances while the worker analyses the earlier ones. The index puts the series back to ``receiving``;
the job's outcome must not overwrite that, or the watcher never decides the series again and the late instances
are never analysed (the delivered results stay those of the truncated series).
"""

from __future__ import annotations

import pytest
from node_support import add_series, jobs_of
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from sarcoscreen.db.models import JobStatus, Series, SeriesState
from sarcoscreen.db.queue import claim, complete, fail, reap_expired, write_session
from sarcoscreen.node.routing import RoutingRules
from sarcoscreen.node.stability import decide_stable_series

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
