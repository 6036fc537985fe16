"""The series state machine: every change of ``series.state`` (and ``series.skip_reason``) is a function here.

The states are `SeriesState` (``docs/node.md``, "Series states"); a series moves between them like this::

                          first instance (index: NEW_SERIES_STATE)
                                        |
                                        v
        +------------------------>  receiving --- idle, routing refuses (watcher: series_skipped) ---> skipped
        |                               |   |
        |                               |   +---- idle, re-runs off (watcher: back_to_job_state) ---> the state of
        |                               |         its latest job (state_after_job)
        |   idle, routing accepts: a new job (watcher: series_queued, through db.queue.enqueue),
        |   or a job not started yet takes the late instances (watcher: series_queued)
        |                               v
        |                            queued --- job done (worker: settle_after_job) ------------------> processed
        |                               |   --- job done, images miss the gluteal region (worker) ---> skipped
        |                               |   --- job failed for good, or its lease expired at the last
        |                               |       attempt (worker, watcher's reaper: settle_after_job) ---> failed
        |                               |   --- job cancelled (`jobs cancel`: settle_after_cancel) ---> skipped
        |
        |        failed, or skipped by a cancel --- `jobs retry` (settle_after_retry) ---> queued
        |
        +--- a new or resent instance of a series in any other state (index, reconcile: back_to_receiving)

Two rules protect the late instances and the latest results:

* **A newer job decides.** A job's end (`settle_after_job`) and a user's retry or cancel of a job
  (`settle_after_retry`, `settle_after_cancel`) change the series only when that job is the series' latest: an
  older job finishing after a re-run was made must not overwrite what the re-run says.
* **Receiving keeps receiving.** A job's end does not overwrite ``receiving``: instances arrived while it ran, so
  the watcher decides the series anew once it is idle (a re-run with every instance, or back to this job's state
  with ``network.rerun_on_late_instances`` off). Overwriting it would leave the late instances unanalysed.

``skip_reason`` says why a ``skipped`` series was skipped; every transition into another state clears it.

There is no ``stable`` state: the watcher decides a series idle for ``network.stable_age_s`` in the same
transaction that finds it idle (revision 0007 dropped the value nobody could observe).

Events stay with the callers that know what happened (``series.skipped``, ``series.stable``, ``job.*``), except
``series.receiving``, which needs the state the series leaves and is recorded by `back_to_receiving`. Every
function works in the caller's transaction and commits nothing.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session

from sarcoscreen.db.events import EventKind, record_event
from sarcoscreen.db.models import Job, JobStatus, Series, SeriesState

__all__ = [
    "NEW_SERIES_STATE",
    "SETTLED_STATES",
    "SeriesTransitionError",
    "back_to_job_state",
    "back_to_receiving",
    "series_queued",
    "series_skipped",
    "settle_after_cancel",
    "settle_after_job",
    "settle_after_retry",
    "state_after_job",
]

NEW_SERIES_STATE: Final = SeriesState.RECEIVING
"""The state of a series the index creates on its first instance."""

SETTLED_STATES: Final = (SeriesState.PROCESSED, SeriesState.SKIPPED, SeriesState.FAILED)
"""Decided, with no job to wait for: nothing happens to the series until an instance arrives (retention may purge
its spool files)."""

_JOB_OUTCOMES: Final = frozenset({SeriesState.PROCESSED, SeriesState.SKIPPED, SeriesState.FAILED})
"""What the end of a job can make of its series."""

_STATE_AFTER_JOB: Final = {
    JobStatus.QUEUED: SeriesState.QUEUED,
    JobStatus.RUNNING: SeriesState.QUEUED,
    JobStatus.DONE: SeriesState.PROCESSED,
    JobStatus.FAILED: SeriesState.FAILED,
    JobStatus.CANCELLED: SeriesState.SKIPPED,
}


class SeriesTransitionError(ValueError):
    """A transition the state machine does not have (a programming error, never a data problem)."""


def state_after_job(status: JobStatus) -> SeriesState:
    """The state of a series whose latest job has `status` (``done`` -> ``processed``, ``cancelled`` ->
    ``skipped``, ``queued`` and ``running`` -> ``queued``, ``failed`` -> ``failed``)."""
    return _STATE_AFTER_JOB[status]


def _write(session: Session, series_id: int, state: SeriesState, reason: str | None = None, *,
           unless_receiving: bool = False) -> None:
    """The one writer of ``series.state``: `state`, with `reason` as ``skip_reason`` when ``skipped`` (cleared
    otherwise); with `unless_receiving` a series that is ``receiving`` is left as it is."""
    if state is SeriesState.SKIPPED and not reason:
        raise SeriesTransitionError(f"series {series_id}: a skipped series needs the reason")
    statement = update(Series).where(Series.id == series_id)
    if unless_receiving:
        statement = statement.where(Series.state != SeriesState.RECEIVING)
    session.execute(statement.values(state=state, skip_reason=reason if state is SeriesState.SKIPPED else None))


def _is_latest(session: Session, job: Job) -> bool:
    """Whether no newer job of `job`'s series exists (a newer job decides the series)."""
    newer = exists().where(Job.series_id == job.series_id, Job.id > job.id)
    return not session.execute(select(newer)).scalar_one()


def back_to_receiving(session: Session, series_id: int, why: str) -> None:
    """A new or resent instance: the series is ``receiving`` (decided anew once idle), with a ``series.receiving``
    event when it had been decided. The row is locked first (``FOR UPDATE``), as the index's caller expects."""
    previous = session.execute(select(Series.state).where(Series.id == series_id).with_for_update()).scalar_one()
    if previous is SeriesState.RECEIVING:
        return
    _write(session, series_id, SeriesState.RECEIVING)
    record_event(session, EventKind.SERIES_RECEIVING,
                 f"{why} after the series was {previous.value}; the series will be "
                 "decided again once it is idle", series_id=series_id)


def series_queued(session: Session, series_id: int) -> None:
    """The routing rules accepted the series: a job was made (`sarcoscreen.db.queue.enqueue`), or a job that has not
    started takes its late instances."""
    _write(session, series_id, SeriesState.QUEUED)


def series_skipped(session: Session, series_id: int, reason: str) -> None:
    """The routing rules refused the series (or some of its instances were purged); `reason` says why."""
    _write(session, series_id, SeriesState.SKIPPED, reason)


def back_to_job_state(session: Session, series_id: int, job: Job) -> SeriesState:
    """Late instances that are not analysed (re-runs off): the series returns to the state of its latest `job`;
    returns that state."""
    state = state_after_job(job.status)
    _write(session, series_id, state, f"job {job.id} cancelled" if state is SeriesState.SKIPPED else None)
    return state


def settle_after_job(session: Session, job: Job, state: SeriesState, reason: str | None = None) -> None:
    """The job's own end (done, failed for good, lease expired at the last attempt): its series becomes `state` -
    ``processed``, ``failed``, or ``skipped`` with `reason` - unless a newer job of the series exists, or the series
    is ``receiving`` (instances arrived while the job ran)."""
    if state not in _JOB_OUTCOMES:
        raise SeriesTransitionError(f"job {job.id}: the end of a job cannot make its series {state.value}")
    if _is_latest(session, job):
        _write(session, job.series_id, state, reason, unless_receiving=True)


def settle_after_retry(session: Session, job: Job) -> None:
    """A user queued `job` again: its series is ``queued``, unless a newer job of the series exists."""
    if _is_latest(session, job):
        _write(session, job.series_id, SeriesState.QUEUED)


def settle_after_cancel(session: Session, job: Job) -> None:
    """A user cancelled `job` (queued or running): its series is ``skipped`` ("job N cancelled by a user"), unless a
    newer job of the series exists."""
    if _is_latest(session, job):
        _write(session, job.series_id, SeriesState.SKIPPED, f"job {job.id} cancelled by a user")
