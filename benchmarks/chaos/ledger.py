"""Counting after an attack: acknowledged vs indexed vs delivered, and waiting until there is nothing left to do.

* `wait_idle`: every series decided, no job queued or running, no delivery pending (bounded by a deadline).
* `instance_ledger`: every instance the SCU saw acknowledged (0x0000) must have its ``instances`` row in state
  ``stored`` and its spool file with the size and SHA-256 recorded; one row per SOP Instance UID.
* `delivery_ledger`: for each series whose latest job is done, each output of that job must have reached the
  destination and its deliveries be ``sent``; a (series, kind) for which the destination holds more than one
  distinct object *made from the same input* (instances, engine, settings) is a duplicate: output UIDs are
  deterministic, so a re-run or a resend of the same analysis replaces an object, it never adds one. Objects of an
  earlier analysis of fewer instances (the series was decided before the rest arrived) are *superseded* results,
  counted apart; receiving the same SOP Instance UID again is a *resend* (at-least-once, harmless), counted
  apart too.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from sarcoscreen.db.models import (
    Delivery,
    DeliveryStatus,
    Instance,
    InstanceState,
    Job,
    JobStatus,
    Output,
    Series,
    SeriesState,
)

__all__ = ["DeliveryLedger", "IdleState", "InstanceLedger", "delivery_ledger", "idle_state", "instance_ledger",
           "wait_idle"]

_UNDECIDED = (SeriesState.RECEIVING,)


@dataclass(frozen=True)
class IdleState:
    undecided_series: int
    open_jobs: int
    pending_deliveries: int

    @property
    def idle(self) -> bool:
        return not (self.undecided_series or self.open_jobs or self.pending_deliveries)

    def __str__(self) -> str:
        return (f"{self.undecided_series} series undecided, {self.open_jobs} jobs queued or running, "
                f"{self.pending_deliveries} deliveries pending")


def idle_state(engine: Engine) -> IdleState:
    with Session(engine) as session:
        undecided = session.scalar(select(func.count()).select_from(Series).where(Series.state.in_(_UNDECIDED)))
        jobs = session.scalar(select(func.count()).select_from(Job).where(
            Job.status.in_((JobStatus.QUEUED, JobStatus.RUNNING))))
        deliveries = session.scalar(select(func.count()).select_from(Delivery).where(
            Delivery.status == DeliveryStatus.PENDING))
    return IdleState(int(undecided or 0), int(jobs or 0), int(deliveries or 0))


def wait_idle(engine: Engine, timeout: float, interval: float = 0.5) -> IdleState:
    """Poll until the node has nothing left to do, at most `timeout` seconds; returns the last state seen."""
    deadline = time.monotonic() + timeout
    state = idle_state(engine)
    while not state.idle and time.monotonic() < deadline:
        time.sleep(interval)
        state = idle_state(engine)
    return state


@dataclass(frozen=True)
class InstanceLedger:
    acknowledged: int
    indexed: int
    lost: list[str] = field(default_factory=list)
    """Acknowledged SOP Instance UIDs without a stored row and an intact spool file (with why)."""
    duplicated: int = 0
    """Rows beyond the first for one SOP Instance UID."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def instance_ledger(engine: Engine, spool: Path, acknowledged: set[str]) -> InstanceLedger:
    """Check every acknowledged instance against the index and the spool."""
    with Session(engine) as session:
        rows = session.execute(select(Instance.sop_instance_uid, Instance.state, Instance.spool_path,
                                      Instance.size_bytes, Instance.sha256)).all()
    per_uid = Counter(row.sop_instance_uid for row in rows)
    by_uid = {row.sop_instance_uid: row for row in rows}
    lost = []
    for uid in sorted(acknowledged):
        row = by_uid.get(uid)
        if row is None:
            lost.append(f"{uid}: no index row")
        elif row.state is not InstanceState.STORED:
            lost.append(f"{uid}: index row in state {row.state}")
        elif not (spool / row.spool_path).is_file():
            lost.append(f"{uid}: spool file missing")
        elif (spool / row.spool_path).stat().st_size != row.size_bytes or _sha256(spool / row.spool_path) != row.sha256:
            lost.append(f"{uid}: spool file differs from the one acknowledged")
    return InstanceLedger(len(acknowledged), len(rows), lost, sum(n - 1 for n in per_uid.values()))


@dataclass(frozen=True)
class DeliveryLedger:
    series: int
    processed: int
    outputs: int
    """Outputs of the latest done job of every processed series: what must be at the destination."""
    delivered: int
    undelivered: list[str] = field(default_factory=list)
    duplicated: int = 0
    duplicates: list[str] = field(default_factory=list)
    """What the duplicates are (series, kind, the distinct SOP Instance UIDs, or an object no output has)."""
    resends: int = 0
    unreadable: int = 0
    incomplete_analyses: list[str] = field(default_factory=list)
    """Processed series whose latest analysis did not load every instance the node holds of them."""
    superseded: list[str] = field(default_factory=list)
    """Series whose destination also holds the objects of an earlier analysis of fewer instances (decided before
    the rest arrived, e.g. when a restart took longer than ``stable_age_s``): not duplicates, older results."""


def delivery_ledger(engine: Engine, received: Mapping[str, int], unreadable: int = 0,
                    expected_instances: Mapping[str, int] | None = None) -> DeliveryLedger:
    """Outputs vs what the destination received (`received`: SOP Instance UID -> times)."""
    with Session(engine) as session:
        series = {s.id: s for s in session.execute(select(Series)).scalars()}
        jobs = session.execute(select(Job).order_by(Job.id)).scalars().all()
        outputs = session.execute(select(Output)).scalars().all()
        deliveries = session.execute(select(Delivery)).scalars().all()
        latest: dict[int, Job] = {}
        for job in jobs:
            latest[job.series_id] = job
        job_of = {job.id: job for job in jobs}
        outputs_of: dict[int, list[Output]] = defaultdict(list)
        for output in outputs:
            outputs_of[output.job_id].append(output)
        deliveries_of: dict[int, list[Delivery]] = defaultdict(list)
        for delivery in deliveries:
            deliveries_of[delivery.output_id].append(delivery)
        stored_instances = dict(session.execute(
            select(Instance.series_id, func.count()).group_by(Instance.series_id)).all())
        processed = expected = delivered = 0
        undelivered: list[str] = []
        incomplete: list[str] = []
        for series_id, row in series.items():
            job = latest.get(series_id)
            if row.state is not SeriesState.PROCESSED or job is None or job.status is not JobStatus.DONE:
                continue
            processed += 1
            wanted = expected_instances.get(row.series_instance_uid) if expected_instances else None
            held = stored_instances.get(series_id, 0)
            if job.instance_count != held or (wanted is not None and held != wanted):
                incomplete.append(f"series {row.series_instance_uid}: job {job.id} loaded {job.instance_count} of "
                                  f"{held} indexed instances ({wanted if wanted is not None else '?'} sent)")
            for output in outputs_of[job.id]:
                expected += 1
                states = [d.status for d in deliveries_of[output.id]]
                if received.get(output.sop_instance_uid) and all(s is DeliveryStatus.SENT for s in states):
                    delivered += 1
                else:
                    undelivered.append(f"{output.kind} {output.sop_instance_uid} of job {job.id}: received "
                                       f"{received.get(output.sop_instance_uid, 0)} times, deliveries "
                                       f"{[str(s) for s in states]}")
        # At the destination, per (source series, kind): distinct objects made from the same input (the same
        # instances, engine and settings) are duplicates; objects of analyses of fewer instances are superseded.
        made: dict[tuple[int, str], dict[str, set[tuple[object, ...]]]] = defaultdict(lambda: defaultdict(set))
        known: set[str] = set()
        for output in outputs:
            known.add(output.sop_instance_uid)
            job = job_of[output.job_id]
            if output.sop_instance_uid in received:
                made[(job.series_id, str(output.kind))][output.sop_instance_uid].add(
                    (job.instance_count, job.engine_name, job.engine_version, job.settings_hash))
    duplicates: list[str] = []
    superseded: list[str] = []
    for (series_id, kind), by_uid in sorted(made.items()):
        uids_of_input: dict[tuple[object, ...], set[str]] = defaultdict(set)
        for uid, keys in by_uid.items():
            for key in keys:
                uids_of_input[key].add(uid)
        if any(len(uids) > 1 for uids in uids_of_input.values()):
            duplicates.append(f"series id {series_id}: {len(by_uid)} distinct {kind} objects at the destination made "
                              f"from the same input: {sorted(by_uid)}")
        elif len(by_uid) > 1:
            counts = sorted({int(key[0] or 0) for key in uids_of_input})
            superseded.append(f"series id {series_id}: {kind} of analyses of {counts} instances")
    duplicates += [f"{uid}: at the destination but no output of the node" for uid in sorted(received)
                   if uid not in known]
    duplicated = len(duplicates)
    resends = sum(n - 1 for n in received.values())
    return DeliveryLedger(len(series), processed, expected, delivered, undelivered, duplicated, duplicates, resends,
                          unreadable, incomplete, superseded)
