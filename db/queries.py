"""Read-only questions QA staff and administrators ask: results per series, and the queue with its outbox.

Used by ``sarcoscreen results`` and ``sarcoscreen jobs``; they return plain dataclasses (no ORM rows) so the
command line, a later web page or a notebook can format them as they like. The patient ID is returned because
QA staff need it to find the patient; it is never logged.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import date, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sarcoscreen.db.models import (
    Classification,
    Completeness,
    Delivery,
    DeliveryStatus,
    GroupResult,
    GroupSide,
    Job,
    JobStatus,
    Output,
    Series,
    SeriesState,
    StructureMeasurement,
    Study,
)
from sarcoscreen.inference.catalogue import Group

__all__ = ["DeliveryState", "GroupValue", "JobRow", "ResultRow", "jobs", "results"]

GROUPS = tuple(group.value for group in Group)
"""Every group's ``muscle_group`` value, in `Group` order (the reference study's first)."""


@dataclass(frozen=True)
class GroupValue:
    """One muscle group (both sides) of a job."""

    completeness: str
    smm_g: float | None
    """Both sides together; only when the group is complete."""
    smi_kg_m2: float | None
    """Both sides' mass / height squared."""
    screening_smi_kg_m2: float | None
    """The value the side rule chose (mean of the sides by default): what is compared with the cut-off."""
    screening_side_rule: str | None
    classification: str | None
    cutoff_kg_m2: float | None
    reason: str
    in_scan_smm_g: float | None = None
    """Both sides' muscle of the group inside the scan: a lower bound for a truncated or uncertain group, never its
    mass (``NULL`` in results stored before revision 0004)."""
    shortfall_mm: float | None = None
    """For a truncated group: how far the scan falls short, when known."""

    @property
    def complete(self) -> bool:
        return self.completeness == Completeness.COMPLETE.value

    @property
    def qa_flag(self) -> bool:
        """A member muscle was not found where the scan holds it (``not found``): review the segmentation."""
        return self.completeness == Completeness.NOT_FOUND.value


@dataclass(frozen=True)
class ResultRow:
    """One series with the results of its latest finished job (or why there are none)."""

    series_instance_uid: str
    study_instance_uid: str
    patient_id: str | None
    accession_number: str | None
    study_date: date | None
    series_description: str | None
    state: str
    skip_reason: str | None
    instances: int
    last_received_at: datetime
    job_id: int | None = None
    job_status: str | None = None
    job_error: str | None = None
    finished_at: datetime | None = None
    engine: str | None = None
    """``name version`` of the engine that made the job's results (``jobs.engine_name``/``engine_version``)."""
    engine_name: str | None = None
    engine_version: str | None = None
    height_m: float | None = None
    height_source: str | None = None
    groups: dict[str, GroupValue] = field(default_factory=dict)
    deliveries_sent: int = 0
    deliveries_total: int = 0
    uncertain_structures: tuple[str, ...] = ()
    """Names of the structures whose segmentation uncertainty exceeds the engine's QA threshold
    (``structure_measurements.qa_flag``)."""

    @property
    def flagged(self) -> bool:
        return any(g.classification == Classification.SUSPECTED.value for g in self.groups.values())

    @property
    def qa_flags(self) -> tuple[str, ...]:
        """What QA staff should review, in words: each group with a member muscle not found where the scan holds it
        (``gluteal: a muscle not found``), and the structures above the uncertainty threshold."""
        flags = [f"{name}: a muscle not found" for name, g in self.groups.items() if g.qa_flag]
        if self.uncertain_structures:
            flags.append("uncertainty above the QA threshold: " + ", ".join(self.uncertain_structures))
        return tuple(flags)


def results(session: Session, *, since: datetime | None = None, flagged: bool = False, state: str | None = None,
            patient_id: str | None = None, limit: int | None = None, qa: bool = False) -> list[ResultRow]:
    """Series, newest first, each with its latest job's results; filters combine with AND.

    `since`: the series' latest job finished, or (without a finished job) its last instance arrived, at or after
    this time. `flagged`: some group is ``suspected``. `state`: the series state (``processed``, ``skipped``,
    ``failed``, ``queued``, ``receiving``). `patient_id`: exactly this PatientID. `qa`: the job has a QA flag - a
    group (any side) with a member muscle not found (``not found``), or a structure whose uncertainty exceeds the
    engine's threshold (`ResultRow.qa_flags`).
    """
    latest_job = (select(Job.series_id, func.max(Job.id).label("job_id")).group_by(Job.series_id).subquery())
    query = (
        select(Series, Study, Job)
        .join(Study, Study.id == Series.study_id)
        .outerjoin(latest_job, latest_job.c.series_id == Series.id)
        .outerjoin(Job, Job.id == latest_job.c.job_id)
        .order_by(func.coalesce(Job.finished_at, Series.last_received_at).desc(), Series.id.desc())
    )
    if since is not None:
        query = query.where(func.coalesce(Job.finished_at, Series.last_received_at) >= since)
    if state is not None:
        query = query.where(Series.state == SeriesState(state))
    if patient_id is not None:
        query = query.where(Study.patient_id == patient_id)
    if flagged:
        suspected = select(GroupResult.job_id).where(GroupResult.side == GroupSide.BOTH,
                                                     GroupResult.classification == Classification.SUSPECTED)
        query = query.where(Job.id.in_(suspected))
    if qa:
        not_found = select(GroupResult.job_id).where(GroupResult.completeness == Completeness.NOT_FOUND)
        uncertain = select(StructureMeasurement.job_id).where(StructureMeasurement.qa_flag.is_(True))
        query = query.where(Job.id.in_(not_found.union(uncertain)))
    if limit is not None:
        query = query.limit(limit)
    rows = session.execute(query).all()
    job_ids = [job.id for _, _, job in rows if job is not None]
    groups: dict[int, dict[str, GroupValue]] = defaultdict(dict)
    heights: dict[int, tuple[float | None, str]] = {}
    deliveries: dict[int, tuple[int, int]] = {}
    uncertain: dict[int, list[str]] = defaultdict(list)
    if job_ids:
        for g in session.execute(select(GroupResult).where(GroupResult.job_id.in_(job_ids),
                                                           GroupResult.side == GroupSide.BOTH)).scalars():
            groups[g.job_id][g.muscle_group] = GroupValue(
                g.completeness.value, g.smm_g, g.smi_kg_m2, g.screening_smi_kg_m2, g.screening_side_rule,
                g.classification.value if g.classification else None,
                g.cutoff_kg_m2, g.classification_reason or g.reason, g.in_scan_smm_g, g.shortfall_mm)
            heights[g.job_id] = (g.height_m, g.height_source.value)
        for job_id, name in session.execute(
                select(StructureMeasurement.job_id, StructureMeasurement.name)
                .where(StructureMeasurement.job_id.in_(job_ids), StructureMeasurement.qa_flag.is_(True))
                .order_by(StructureMeasurement.job_id, StructureMeasurement.label)).all():
            uncertain[job_id].append(name)
        counts = session.execute(
            select(Output.job_id, Delivery.status, func.count(Delivery.id))
            .join(Delivery, Delivery.output_id == Output.id)
            .where(Output.job_id.in_(job_ids), Delivery.status != DeliveryStatus.CANCELLED)
            .group_by(Output.job_id, Delivery.status)
        ).all()
        for job_id, status, count in counts:
            sent, total = deliveries.get(job_id, (0, 0))
            deliveries[job_id] = (sent + (count if status is DeliveryStatus.SENT else 0), total + count)
    out = []
    for series, study, job in rows:
        row = ResultRow(
            series_instance_uid=series.series_instance_uid, study_instance_uid=study.study_instance_uid,
            patient_id=study.patient_id, accession_number=study.accession_number, study_date=study.study_date,
            series_description=series.series_description, state=series.state.value, skip_reason=series.skip_reason,
            instances=series.instance_count, last_received_at=series.last_received_at)
        if job is not None:
            height_m, height_source = heights.get(job.id, (None, None))
            sent, total = deliveries.get(job.id, (0, 0))
            row = replace(row, job_id=job.id, job_status=job.status.value, job_error=job.error,
                          finished_at=job.finished_at,
                          engine=f"{job.engine_name} {job.engine_version}" if job.engine_name else None,
                          engine_name=job.engine_name, engine_version=job.engine_version,
                          height_m=height_m, height_source=height_source, groups=dict(groups.get(job.id, {})),
                          deliveries_sent=sent, deliveries_total=total,
                          uncertain_structures=tuple(uncertain.get(job.id, ())))
        out.append(row)
    return out


@dataclass(frozen=True)
class DeliveryState:
    """The outbox state of one job's outputs at one destination."""

    destination: str
    address: str
    total: int
    by_status: dict[str, int]
    attempts: int
    """Most attempts of any of these deliveries."""
    next_attempt_at: datetime | None
    """Earliest next attempt of a pending delivery."""
    last_status_code: int | None
    last_error: str | None


@dataclass(frozen=True)
class JobRow:
    id: int
    series_instance_uid: str
    status: str
    reason: str | None
    attempts: int
    max_attempts: int
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    next_attempt_at: datetime
    lease_owner: str | None
    lease_expires_at: datetime | None
    heartbeat_at: datetime | None
    instance_count: int | None
    engine: str | None
    deliveries: tuple[DeliveryState, ...]


def jobs(session: Session, *, status: str | None = None, job_id: int | None = None, limit: int = 50) -> list[JobRow]:
    """Jobs, newest first, with the state of their deliveries per destination."""
    query = select(Job, Series.series_instance_uid).join(Series, Series.id == Job.series_id).order_by(Job.id.desc())
    if status is not None:
        query = query.where(Job.status == JobStatus(status))
    if job_id is not None:
        query = query.where(Job.id == job_id)
    rows = session.execute(query.limit(limit)).all()
    ids = [job.id for job, _ in rows]
    per_job: dict[int, dict[str, list[Delivery]]] = defaultdict(lambda: defaultdict(list))
    if ids:
        for delivery, job_of in session.execute(
                select(Delivery, Output.job_id).join(Output, Output.id == Delivery.output_id)
                .where(Output.job_id.in_(ids)).order_by(Delivery.id)).all():
            per_job[job_of][delivery.destination_name].append(delivery)
    out = []
    for job, series_uid in rows:
        states = []
        for name, deliveries in per_job.get(job.id, {}).items():
            by_status: dict[str, int] = defaultdict(int)
            for d in deliveries:
                by_status[d.status.value] += 1
            pending = [d.next_attempt_at for d in deliveries if d.status is DeliveryStatus.PENDING]
            latest = max(deliveries, key=lambda d: (d.attempts, d.id))
            unsent = [d for d in deliveries if d.status is not DeliveryStatus.SENT]
            first = deliveries[0]
            states.append(DeliveryState(
                name, f"{first.destination_ae_title}@{first.host}:{first.port}", len(deliveries), dict(by_status),
                latest.attempts, min(pending) if pending else None,
                (unsent[-1] if unsent else latest).last_status_code,
                unsent[-1].last_error if unsent else None))
        engine = f"{job.engine_name} {job.engine_version}" if job.engine_name else None
        out.append(JobRow(job.id, series_uid, job.status.value, job.reason, job.attempts, job.max_attempts,
                          job.error, job.created_at, job.started_at, job.finished_at, job.next_attempt_at,
                          job.lease_owner, job.lease_expires_at, job.heartbeat_at, job.instance_count, engine,
                          tuple(states)))
    return out
