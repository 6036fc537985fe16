"""The series watcher: a series idle for ``stable_age`` seconds is complete; routing turns it into a job or a skip.

Runs in the ``serve``/``run`` process, in its own thread (never on an association's thread). Every
``queue.poll_s`` seconds it takes the series in state ``receiving`` whose last instance arrived at least
``network.stable_age_s`` ago and, in one transaction per round:

1. summarises each series from its indexed instances (`sarcoscreen.node.routing.SeriesSummary`: modality, SOP
   classes, slices, image types, orientation, thickness, body part, descriptions - no pixel data, no patient
   data);
2. applies the routing rules (`sarcoscreen.node.routing.decide`): refused series become ``skipped`` with every
   reason stored in ``series.skip_reason`` and an event; the anatomical rule (the images reach the gluteal
   region) needs the images and is checked by the worker;
3. accepted series get a job (`sarcoscreen.db.queue.enqueue`) - unless the series already has a job that has not
   started yet (it will load every instance when it starts). A series that had been decided before and
   received late instances gets a new job when ``network.rerun_on_late_instances`` is on; when it is off, the
   series goes back to the state of its latest job and an event says the late instances were not analysed.

Time before the node started is not idle time: a series whose transfer a stop or a crash of the node interrupted
is decided only once the node has listened for ``stable_age_s`` (the sender resends meanwhile), not in the
first round on what had arrived.

The round's read and writes are one transaction (``BEGIN IMMEDIATE`` on SQLite, ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL), so an instance indexed meanwhile either is seen by the round or puts the series back to
``receiving`` after it. The watcher also returns jobs whose worker died to the queue (`reap_expired`). Every
change of a series' state is a transition of `sarcoscreen.db.series_state`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, case, func, select
from sqlalchemy.orm import Session

from sarcoscreen.db.events import EventKind, record_event
from sarcoscreen.db.models import (
    EventLevel,
    Instance,
    InstanceState,
    Job,
    JobStatus,
    Series,
    SeriesState,
    Study,
)
from sarcoscreen.db.queue import enqueue, reap_expired
from sarcoscreen.db.series_state import back_to_job_state, series_queued, series_skipped
from sarcoscreen.db.session import db_now, write_session
from sarcoscreen.node.background_loop import BackgroundLoop
from sarcoscreen.node.config import Settings
from sarcoscreen.node.routing import Decision, RoutingRules, SeriesSummary, decide

__all__ = ["SeriesWatcher", "StabilityOutcome", "decide_stable_series", "routing_rules_from", "summarise"]

logger = logging.getLogger(__name__)

_ROUND_LIMIT = 50
"""Series decided per round (keeps one transaction short)."""


@dataclass(frozen=True)
class StabilityOutcome:
    """What one round did with one series."""

    series_instance_uid: str
    outcome: str
    """``queued``, ``skipped``, ``kept`` (a not yet started job will include it) or ``not re-run``."""
    detail: str


def routing_rules_from(settings: Settings) -> RoutingRules:
    r = settings.routing
    return RoutingRules(min_slices=r.min_slices, max_slice_thickness_mm=r.max_slice_thickness_mm,
                        include_body_parts=tuple(r.include_body_parts), exclude_body_parts=tuple(r.exclude_body_parts),
                        include_descriptions=tuple(r.include_descriptions),
                        exclude_descriptions=tuple(r.exclude_descriptions))


def summarise(session: Session, series: Series) -> SeriesSummary:
    """The routing summary of a series from its stored instances' rows."""
    stored = (Instance.series_id == series.id, Instance.state == InstanceState.STORED)
    count, frames, axial = session.execute(
        select(func.count(), func.coalesce(func.sum(Instance.frames), 0),
               func.coalesce(func.sum(case((Instance.axial, 1), else_=0)), 0))
        .where(*stored)
    ).one()
    classes = frozenset(session.execute(select(Instance.sop_class_uid).where(*stored).distinct()).scalars())
    image_types: set[str] = set()
    for value in session.execute(select(Instance.image_type).where(*stored).distinct()).scalars():
        image_types.update(v.strip().upper() for v in (value or "").split("\\") if v.strip())
    study_description = session.execute(select(Study.study_description).where(Study.id == series.study_id)
                                        ).scalar_one_or_none()
    return SeriesSummary(
        series_instance_uid=series.series_instance_uid, modality=series.modality or "", sop_class_uids=classes,
        instances=int(count), frames=int(frames), image_types=frozenset(image_types),
        axial=int(axial) * 2 > int(count) if count else True, slice_thickness_mm=series.slice_thickness_mm,
        body_part=series.body_part or "", study_description=study_description or "",
        series_description=series.series_description or "",
    )


def _skip(session: Session, series: Series, decision: Decision) -> StabilityOutcome:
    reason = "; ".join(decision.reasons)
    series_skipped(session, series.id, reason)
    record_event(session, EventKind.SERIES_SKIPPED, f"skipped by the routing rules: {reason}", level=EventLevel.WARNING,
                 series_id=series.id)
    return StabilityOutcome(series.series_instance_uid, "skipped", reason)


def _decide_one(session: Session, series: Series, rules: RoutingRules, rerun_on_late_instances: bool,
                max_attempts: int) -> StabilityOutcome:
    summary = summarise(session, series)
    purged = session.execute(select(func.count()).where(Instance.series_id == series.id,
                                                        Instance.state == InstanceState.PURGED)).scalar_one()
    if purged:  # what is left would be analysed as a truncated scan
        return _skip(session, series, Decision(False, (
            f"{purged} of its {purged + summary.instances} instances were purged by retention "
            "(storage.retention_days); send the whole series again to analyse it",)))
    decision = decide(summary, rules)
    if not decision.analyse:
        return _skip(session, series, decision)
    latest = session.execute(select(Job).where(Job.series_id == series.id).order_by(Job.id.desc()).limit(1)
                             ).scalar_one_or_none()
    uid = series.series_instance_uid
    if latest is None:
        job = enqueue(session, series.id, reason=f"series stable ({summary.instances} instances, {summary.frames} "
                      "slices)", max_attempts=max_attempts)
        return StabilityOutcome(uid, "queued", f"job {job.id}")
    if latest.status is JobStatus.QUEUED:
        series_queued(session, series.id)
        record_event(session, EventKind.SERIES_STABLE,
                     f"stable again with {summary.instances} instances; job {latest.id} "
                     "has not started and will load them all", series_id=series.id, job_id=latest.id)
        return StabilityOutcome(uid, "kept", f"job {latest.id} not started yet")
    analysed = latest.instance_count
    if rerun_on_late_instances:
        late = f"{summary.instances - analysed} instances" if analysed is not None else "instances"
        job = enqueue(session, series.id, reason=f"late instances: {late} more than job {latest.id} "
                      f"({latest.status.value}) analysed", max_attempts=max_attempts)
        return StabilityOutcome(uid, "queued", f"job {job.id} (re-run after job {latest.id})")
    back_to_job_state(session, series.id, latest)
    record_event(session, EventKind.SERIES_NOT_RERUN, f"{summary.instances} instances now; late instances not analysed "
                 f"(network.rerun_on_late_instances is off); latest job {latest.id} is {latest.status.value}",
                 level=EventLevel.WARNING, series_id=series.id, job_id=latest.id)
    return StabilityOutcome(uid, "not re-run", f"job {latest.id} stays the latest")


def decide_stable_series(db: Engine, *, stable_age_s: float, rules: RoutingRules, rerun_on_late_instances: bool,
                         max_attempts: int, receiving_since: datetime | None = None) -> list[StabilityOutcome]:
    """One round: decide every series idle for `stable_age_s` seconds (at most a batch per round).

    `receiving_since` is when the node started to listen (database clock): time before it is not idle time - a
    transfer the node's stop or crash interrupted is resent after the start - so nothing is decided until the
    node has listened for `stable_age_s`.
    """
    with write_session(db) as session:
        cutoff = db_now(session) - timedelta(seconds=stable_age_s)
        if receiving_since is not None and receiving_since > cutoff:
            return []
        candidates = session.execute(
            select(Series)
            .where(Series.state == SeriesState.RECEIVING, Series.last_received_at <= cutoff)
            .order_by(Series.last_received_at, Series.id)
            .limit(_ROUND_LIMIT)
            .with_for_update(skip_locked=True)
        ).scalars().all()
        outcomes = [_decide_one(session, series, rules, rerun_on_late_instances, max_attempts)
                    for series in candidates]
    for outcome in outcomes:
        logger.info("series %s: %s (%s)", outcome.series_instance_uid, outcome.outcome, outcome.detail)
    return outcomes


class SeriesWatcher(BackgroundLoop):
    """The background thread running `decide_stable_series` (and `reap_expired`) every ``queue.poll_s``."""

    name = "series-watcher"

    def __init__(self, db: Engine, settings: Settings) -> None:
        super().__init__()
        self.db = db
        self.settings = settings
        self.rules = routing_rules_from(settings)
        self.started_at: datetime | None = None
        """When the watcher's first round ran (database clock): idle time counts from then at the earliest."""

    def interval_s(self) -> float:
        return min(self.settings.queue.poll_s, self.settings.network.stable_age_s)

    def run_once(self) -> list[StabilityOutcome]:
        queue = self.settings.queue
        if self.started_at is None:
            with Session(self.db) as session:
                self.started_at = db_now(session)
        for job_id, status in reap_expired(self.db, backoff_s=queue.backoff_s, backoff_max_s=queue.backoff_max_s):
            logger.warning("job %d: lease expired (worker gone); now %s", job_id, status.value)
        return decide_stable_series(self.db, stable_age_s=self.settings.network.stable_age_s, rules=self.rules,
                                    rerun_on_late_instances=self.settings.network.rerun_on_late_instances,
                                    max_attempts=queue.max_attempts, receiving_since=self.started_at)
