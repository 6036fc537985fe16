"""Read-only questions QA staff and administrators ask: results per series, and the queue with its outbox.

Used by ``sarcoscreen results`` and ``sarcoscreen jobs`` and by the web console's results, queue and series pages
(`sarcoscreen.node.web`); they return plain dataclasses (no ORM rows) so the command line, the console or a
notebook can format them as they like. The patient ID is returned because QA staff need it to find the patient; it
is never logged.

`results` filters (the command line's, plus the engine and a group's completeness), sorts by one of
`RESULT_SORTS` and pages (``offset``, ``limit``); `count_results` counts the series the same filters select.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime

from sqlalchemy import ColumnElement, Row, Select, func, select
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

__all__ = [
    "RESULT_SORTS",
    "DeliveryState",
    "DestinationTotals",
    "GroupValue",
    "JobRow",
    "ResultFilters",
    "ResultRow",
    "SeriesDetail",
    "count_jobs",
    "count_results",
    "delivery_totals",
    "engine_names",
    "jobs",
    "results",
    "series_detail",
]

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
    series_id: int = 0
    """The series' database id (``series.id``): what links to a series (the console's ``/series/<id>``)."""

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


@dataclass(frozen=True)
class ResultFilters:
    """Which series `results` and `count_results` select; the filters combine with AND.

    `since`: the series' latest job finished, or (without a finished job) its last instance arrived, at or after
    this time. `flagged`: some group is ``suspected``. `state`: the series state (``processed``, ``skipped``,
    ``failed``, ``queued``, ``receiving``). `patient_id`: exactly this PatientID. `qa`: the job has a QA flag - a
    group (any side) with a member muscle not found (``not found``), or a structure whose uncertainty exceeds the
    engine's threshold (`ResultRow.qa_flags`). `engine`: the latest job was measured by this engine (its name,
    ``jobs.engine_name``). `completeness`: a group (both sides) of the latest job has this completeness
    (`Completeness` value); with `group`, that group.
    """

    since: datetime | None = None
    flagged: bool = False
    state: str | None = None
    patient_id: str | None = None
    qa: bool = False
    engine: str | None = None
    group: str | None = None
    completeness: str | None = None


def _latest_job_time() -> ColumnElement[datetime]:
    return func.coalesce(Job.finished_at, Series.last_received_at)


RESULT_SORTS: dict[str, ColumnElement[object]] = {
    "time": _latest_job_time(),
    "patient": Study.patient_id,
    "study_date": Study.study_date,
    "state": Series.state,
    "job": Job.id,
    "engine": Job.engine_name,
    "instances": Series.instance_count,
    "series": Series.series_instance_uid,
}
"""The keys `results` sorts by, with what each sorts (``time``: the latest job's end, else the last arrival)."""


def _filtered(query: Select, filters: ResultFilters) -> Select:  # type: ignore[type-arg]
    """`query` (series joined with their study and latest job) narrowed to `filters`."""
    if filters.since is not None:
        query = query.where(_latest_job_time() >= filters.since)
    if filters.state is not None:
        query = query.where(Series.state == SeriesState(filters.state))
    if filters.patient_id is not None:
        query = query.where(Study.patient_id == filters.patient_id)
    if filters.flagged:
        suspected = select(GroupResult.job_id).where(GroupResult.side == GroupSide.BOTH,
                                                     GroupResult.classification == Classification.SUSPECTED)
        query = query.where(Job.id.in_(suspected))
    if filters.qa:
        not_found = select(GroupResult.job_id).where(GroupResult.completeness == Completeness.NOT_FOUND)
        uncertain = select(StructureMeasurement.job_id).where(StructureMeasurement.qa_flag.is_(True))
        query = query.where(Job.id.in_(not_found.union(uncertain)))
    if filters.engine is not None:
        query = query.where(Job.engine_name == filters.engine)
    if filters.completeness is not None:
        with_completeness = select(GroupResult.job_id).where(
            GroupResult.side == GroupSide.BOTH, GroupResult.completeness == Completeness(filters.completeness))
        if filters.group is not None:
            with_completeness = with_completeness.where(GroupResult.muscle_group == filters.group)
        query = query.where(Job.id.in_(with_completeness))
    return query


def _series_with_latest_job(*columns: object) -> Select:  # type: ignore[type-arg]
    latest_job = (select(Job.series_id, func.max(Job.id).label("job_id")).group_by(Job.series_id).subquery())
    return (
        select(*columns)
        .select_from(Series)
        .join(Study, Study.id == Series.study_id)
        .outerjoin(latest_job, latest_job.c.series_id == Series.id)
        .outerjoin(Job, Job.id == latest_job.c.job_id)
    )


def _page_rows(session: Session, page: Sequence[Row[tuple[int, int | None]]]) -> list[tuple[Series, Study, Job | None]]:
    """The series, study and latest job of each (series id, job id) of `page`, in its order."""
    if not page:
        return []
    series = {s.id: (s, study) for s, study in session.execute(
        select(Series, Study).join(Study, Study.id == Series.study_id)
        .where(Series.id.in_([series_id for series_id, _ in page]))).all()}
    job_ids = [job_id for _, job_id in page if job_id is not None]
    jobs_by_id = ({job.id: job for job in session.execute(select(Job).where(Job.id.in_(job_ids))).scalars()}
                  if job_ids else {})
    return [(*series[series_id], jobs_by_id[job_id] if job_id is not None else None) for series_id, job_id in page]


def count_results(session: Session, filters: ResultFilters | None = None) -> int:
    """How many series `results` selects with `filters` (before paging)."""
    query = _filtered(_series_with_latest_job(func.count(Series.id)), filters or ResultFilters())
    return int(session.execute(query).scalar_one())


def results(session: Session, *, since: datetime | None = None, flagged: bool = False, state: str | None = None,
            patient_id: str | None = None, limit: int | None = None, qa: bool = False,
            filters: ResultFilters | None = None, sort: str = "time", descending: bool = True,
            offset: int = 0) -> list[ResultRow]:
    """Series, newest first, each with its latest job's results; filters combine with AND (`ResultFilters`:
    `filters`, or the keyword arguments of the same names).

    `sort`: a key of `RESULT_SORTS` (`KeyError` for any other), `descending` or not; the series id breaks ties
    (the other way round for ascending sorts: the order is total, so pages never overlap) and empty values come
    last either way. `offset` and `limit` page the sorted series.
    """
    if filters is None:
        filters = ResultFilters(since=since, flagged=flagged, state=state, patient_id=patient_id, qa=qa)
    key = RESULT_SORTS[sort]
    order = (key.desc() if descending else key.asc()).nulls_last()
    # The page's ids first, sorted on narrow rows (sorting every selected series with all its columns cost 3x as
    # much at 10,000 series, benchmarks/web_console.py); then the rows of that page only.
    query = _filtered(_series_with_latest_job(Series.id, Job.id), filters).order_by(
        order, Series.id.desc() if descending else Series.id.asc())
    if offset:
        query = query.offset(offset)
    if limit is not None:
        query = query.limit(limit)
    page = session.execute(query).all()
    rows = _page_rows(session, page)
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
            instances=series.instance_count, last_received_at=series.last_received_at, series_id=series.id)
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
    series_id: int = 0
    """The series' database id (what links to the series)."""


def jobs(session: Session, *, status: str | None = None, job_id: int | None = None, limit: int = 50,
         series_id: int | None = None, offset: int = 0) -> list[JobRow]:
    """Jobs, newest first, with the state of their deliveries per destination; `offset` and `limit` page them."""
    query = select(Job, Series.series_instance_uid).join(Series, Series.id == Job.series_id).order_by(Job.id.desc())
    if status is not None:
        query = query.where(Job.status == JobStatus(status))
    if job_id is not None:
        query = query.where(Job.id == job_id)
    if series_id is not None:
        query = query.where(Job.series_id == series_id)
    rows = session.execute(query.offset(offset).limit(limit)).all()
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
                          tuple(states), job.series_id))
    return out


def count_jobs(session: Session, *, status: str | None = None) -> int:
    """How many jobs `jobs` lists with `status` (before paging)."""
    query = select(func.count(Job.id))
    if status is not None:
        query = query.where(Job.status == JobStatus(status))
    return int(session.execute(query).scalar_one())


@dataclass(frozen=True)
class DestinationTotals:
    """The outbox of one destination: deliveries by status, over every job."""

    destination: str
    address: str
    by_status: dict[str, int]
    next_attempt_at: datetime | None
    """Earliest next attempt of a pending delivery."""


def delivery_totals(session: Session) -> list[DestinationTotals]:
    """Deliveries per destination (by name) and status, with the earliest next attempt of the pending ones."""
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for name, status, count in session.execute(
            select(Delivery.destination_name, Delivery.status, func.count(Delivery.id))
            .group_by(Delivery.destination_name, Delivery.status)).all():
        counts[name][status.value] = count
    out = []
    for name in sorted(counts):
        ae_title, host, port = session.execute(
            select(Delivery.destination_ae_title, Delivery.host, Delivery.port)
            .where(Delivery.destination_name == name).order_by(Delivery.id.desc()).limit(1)).one()
        due = session.execute(select(func.min(Delivery.next_attempt_at)).where(
            Delivery.destination_name == name, Delivery.status == DeliveryStatus.PENDING)).scalar_one()
        out.append(DestinationTotals(name, f"{ae_title}@{host}:{port}", counts[name], due))
    return out


def engine_names(session: Session) -> list[str]:
    """The engines that measured some job (``jobs.engine_name``), by name."""
    return list(session.execute(select(Job.engine_name).where(Job.engine_name.is_not(None)).distinct()
                                .order_by(Job.engine_name)).scalars())


@dataclass(frozen=True)
class SeriesDetail:
    """One series with its jobs (newest first)."""

    id: int
    series_instance_uid: str
    state: str
    skip_reason: str | None
    instances: int
    jobs: tuple[JobRow, ...]


def series_detail(session: Session, series_id: int) -> SeriesDetail | None:
    """The series with database id `series_id` and its jobs; ``None`` when there is none."""
    series = session.get(Series, series_id)
    if series is None:
        return None
    return SeriesDetail(series.id, series.series_instance_uid, series.state.value, series.skip_reason,
                        series.instance_count, tuple(jobs(session, series_id=series_id, limit=1000)))
