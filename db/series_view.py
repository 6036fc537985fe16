"""Everything the web console's series page shows about one series, read in one session: what arrived, the jobs,
the results of one job (by default the latest done one: structures, groups on every side with the screening,
engine, density rule, height, outputs with their deliveries), the timeline of what happened, and why the series
needs attention (skipped, failed, flagged, QA flags) in words.

Plain dataclasses, no ORM rows (`sarcoscreen.db.queries` style). The patient ID is returned for signed-in QA staff;
it is never logged and never put in a URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from sarcoscreen.db.models import (
    Classification,
    Completeness,
    Delivery,
    Event,
    GroupResult,
    GroupSide,
    Job,
    JobStatus,
    Output,
    Series,
    StructureMeasurement,
    Study,
)
from sarcoscreen.db.queries import JobRow, jobs
from sarcoscreen.inference.catalogue import Group

__all__ = [
    "Attention",
    "DeliveryRow",
    "GroupRow",
    "JobResults",
    "OutputRow",
    "SeriesView",
    "StructureRow",
    "TimelineEntry",
    "series_view",
]

_GROUP_ORDER = {group.value: n for n, group in enumerate(Group)}
_SIDE_ORDER = {GroupSide.BOTH: 0, GroupSide.LEFT: 1, GroupSide.RIGHT: 2}


@dataclass(frozen=True)
class StructureRow:
    """One measured structure of a job."""

    name: str
    side: str
    voxels: int
    volume_cm3: float
    mean_hu: float | None
    sd_hu: float | None
    mass_g: float | None
    uncertainty: float | None
    qa_flag: bool | None
    truncated: bool
    extent_uncertain: bool | None
    shortfall_mm: float | None
    extent_note: str | None


@dataclass(frozen=True)
class GroupRow:
    """One muscle group on one side; the screening columns are on the ``both`` row only."""

    group: str
    title: str
    side: str
    completeness: str
    reason: str
    smm_g: float | None
    smi_kg_m2: float | None
    in_scan_smm_g: float | None
    shortfall_mm: float | None
    screening_side_rule: str | None
    screening_smi_kg_m2: float | None
    classification: str | None
    classification_reason: str | None
    cutoff_kg_m2: float | None
    calibration_name: str | None
    calibration_sha256: str | None

    @property
    def flagged(self) -> bool:
        return self.classification == Classification.SUSPECTED.value


@dataclass(frozen=True)
class DeliveryRow:
    """One output to one destination."""

    destination: str
    address: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    last_attempt_at: datetime | None
    sent_at: datetime | None


@dataclass(frozen=True)
class OutputRow:
    """One DICOM object a job wrote, with its deliveries."""

    kind: str
    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str
    created_at: datetime
    purged_at: datetime | None
    deliveries: tuple[DeliveryRow, ...]


@dataclass(frozen=True)
class JobResults:
    """The results of one job."""

    job_id: int
    status: str
    finished_at: datetime | None
    engine_name: str | None
    engine_version: str | None
    density_rules: tuple[str, ...]
    """The density rule(s) that turned the structures' volumes into mass (one, unless the rows disagree)."""
    height_m: float | None
    height_source: str | None
    structures: tuple[StructureRow, ...]
    groups: tuple[GroupRow, ...]
    """Every group in `Group` order, ``both`` first, then left and right."""
    outputs: tuple[OutputRow, ...]

    @property
    def purged(self) -> bool:
        """The job's output folder was deleted at the end of its retention period."""
        return any(o.purged_at is not None for o in self.outputs)


@dataclass(frozen=True)
class TimelineEntry:
    """Something that happened to the series or one of its jobs: an event row, or a time a row records."""

    at: datetime
    kind: str
    message: str
    level: str = "INFO"
    job_id: int | None = None
    source: str = "event"
    """``event`` (the events table) or ``record`` (a time of the series, job or delivery rows)."""


@dataclass(frozen=True)
class Attention:
    """One reason the series needs a look, in words, for the top of its page."""

    kind: str
    """``skipped``, ``failed``, ``flagged``, ``qa``, ``not classified`` or ``running``."""
    text: str


@dataclass(frozen=True)
class SeriesView:
    """One series for its page."""

    id: int
    series_instance_uid: str
    study_instance_uid: str
    patient_id: str | None
    patient_sex: str | None
    accession_number: str | None
    study_date: date | None
    modality: str | None
    series_description: str | None
    state: str
    skip_reason: str | None
    instances: int
    first_received_at: datetime
    last_received_at: datetime
    jobs: tuple[JobRow, ...]
    """Newest first."""
    results: JobResults | None
    """The shown job's results: the job asked for, else the latest done job; ``None`` when there is none."""
    timeline: tuple[TimelineEntry, ...]
    """Oldest first."""
    attention: tuple[Attention, ...]


def _structures(session: Session, job_id: int) -> list[StructureMeasurement]:
    return list(session.execute(select(StructureMeasurement).where(StructureMeasurement.job_id == job_id)
                                .order_by(StructureMeasurement.label)).scalars())


def _group_row(g: GroupResult) -> GroupRow:
    title = Group(g.muscle_group).title if g.muscle_group in _GROUP_ORDER else g.muscle_group
    return GroupRow(g.muscle_group, title, g.side.value, g.completeness.value, g.reason, g.smm_g, g.smi_kg_m2,
                    g.in_scan_smm_g, g.shortfall_mm, g.screening_side_rule, g.screening_smi_kg_m2,
                    g.classification.value if g.classification else None, g.classification_reason, g.cutoff_kg_m2,
                    g.calibration_name, g.calibration_sha256)


def _outputs(session: Session, job_id: int) -> tuple[OutputRow, ...]:
    outputs = list(session.execute(select(Output).where(Output.job_id == job_id).order_by(Output.id)).scalars())
    per_output: dict[int, list[DeliveryRow]] = {o.id: [] for o in outputs}
    if outputs:
        for d in session.execute(select(Delivery).where(Delivery.output_id.in_(per_output))
                                 .order_by(Delivery.destination_name, Delivery.id)).scalars():
            per_output[d.output_id].append(DeliveryRow(
                d.destination_name, f"{d.destination_ae_title}@{d.host}:{d.port}", d.status.value, d.attempts,
                d.last_status_code, d.last_error, d.last_attempt_at, d.sent_at))
    return tuple(OutputRow(o.kind.value, o.sop_class_uid, o.sop_instance_uid, o.series_instance_uid, o.created_at,
                           o.purged_at, tuple(per_output[o.id])) for o in outputs)


def _results(session: Session, job: Job, outputs: tuple[OutputRow, ...]) -> JobResults:
    structures = _structures(session, job.id)
    groups = sorted(session.execute(select(GroupResult).where(GroupResult.job_id == job.id)).scalars(),
                    key=lambda g: (_GROUP_ORDER.get(g.muscle_group, len(_GROUP_ORDER)), _SIDE_ORDER[g.side]))
    both = [g for g in groups if g.side is GroupSide.BOTH]
    return JobResults(
        job.id, job.status.value, job.finished_at, job.engine_name, job.engine_version,
        tuple(dict.fromkeys(s.density_rule for s in structures)),
        both[0].height_m if both else None, both[0].height_source.value if both else None,
        tuple(StructureRow(s.name, s.side.value, s.voxels, s.volume_cm3, s.mean_hu, s.sd_hu, s.mass_g,
                           s.uncertainty, s.qa_flag, s.truncated, s.extent_uncertain, s.shortfall_mm, s.extent_note)
              for s in structures),
        tuple(_group_row(g) for g in groups), outputs)


def _timeline(session: Session, series: Series, job_ids: list[int],
              deliveries: dict[int, tuple[OutputRow, ...]]) -> tuple[TimelineEntry, ...]:
    """The events of the series and its jobs, with the series' first and last arrival and, per job and
    destination, the deliveries' latest outcome; oldest first (ties in the order the rows were written)."""
    entries = [(series.first_received_at, 0, TimelineEntry(series.first_received_at, "series.received",
                                                           "first instance received", source="record"))]
    if series.last_received_at != series.first_received_at:
        entries.append((series.last_received_at, 0, TimelineEntry(
            series.last_received_at, "series.received", f"last instance received ({series.instance_count} "
            "instances indexed)", source="record")))
    where = Event.series_id == series.id
    if job_ids:
        where = or_(where, Event.job_id.in_(job_ids))
    for event in session.execute(select(Event).where(where).order_by(Event.occurred_at, Event.id)).scalars():
        entries.append((event.occurred_at, 1 + event.id, TimelineEntry(
            event.occurred_at, event.kind, event.message, event.level.value, event.job_id)))
    for job_id, outputs in deliveries.items():
        per_destination: dict[str, list[DeliveryRow]] = {}
        for output in outputs:
            for d in output.deliveries:
                per_destination.setdefault(d.destination, []).append(d)
        for name, rows in per_destination.items():
            times = [t for d in rows for t in (d.sent_at, d.last_attempt_at) if t is not None]
            if not times:
                continue
            by_status: dict[str, int] = {}
            for d in rows:
                by_status[d.status] = by_status.get(d.status, 0) + 1
            summary = ", ".join(f"{n} {status}" for status, n in sorted(by_status.items()))
            entries.append((max(times), 1 << 62, TimelineEntry(
                max(times), "delivery.state", f"job {job_id} to {name} ({rows[0].address}): {summary}",
                job_id=job_id, source="record")))
    return tuple(entry for _, _, entry in sorted(entries, key=lambda e: (e[0], e[1])))


def _attention(series: Series, latest: JobRow | None, results: JobResults | None) -> tuple[Attention, ...]:
    found: list[Attention] = []
    if series.skip_reason:
        found.append(Attention("skipped", f"skipped: {series.skip_reason}"))
    if latest is not None and latest.status == JobStatus.FAILED.value:
        found.append(Attention("failed", f"job {latest.id} failed after {latest.attempts} of {latest.max_attempts} "
                                         f"attempts: {latest.error or 'no error recorded'}"))
    elif latest is not None and latest.error and latest.status in (JobStatus.QUEUED.value, JobStatus.RUNNING.value):
        found.append(Attention("failed", f"job {latest.id}, attempt {latest.attempts} failed: {latest.error}"))
    if results is None:
        return tuple(found)
    for g in results.groups:
        if g.side != GroupSide.BOTH.value:
            continue
        if g.flagged:
            found.append(Attention("flagged", f"{g.title}: sarcopenia suspected - {g.classification_reason or ''}"))
        if g.completeness == Completeness.NOT_FOUND.value:
            found.append(Attention("qa", f"{g.title}: a muscle not found - {g.reason}"))
    uncertain = [s.name for s in results.structures if s.qa_flag]
    if uncertain:
        found.append(Attention("qa", "uncertainty above the QA threshold: " + ", ".join(uncertain)))
    if not any(a.kind == "flagged" for a in found):
        reasons = dict.fromkeys(g.classification_reason for g in results.groups
                                if g.side == GroupSide.BOTH.value and g.classification_reason
                                and g.classification == Classification.NOT_CLASSIFIED.value)
        for reason in reasons:
            found.append(Attention("not classified", f"{reason}"))
    return tuple(found)


def series_view(session: Session, series_id: int, job_id: int | None = None) -> SeriesView | None:
    """The series with database id `series_id`, showing the results of its job `job_id` (``None``: the latest
    done job); ``None`` when there is no such series, or `job_id` is not one of its jobs."""
    row = session.execute(select(Series, Study).join(Study, Study.id == Series.study_id)
                          .where(Series.id == series_id)).one_or_none()
    if row is None:
        return None
    series, study = row
    job_rows = tuple(jobs(session, series_id=series_id, limit=1000))
    if job_id is not None and job_id not in {j.id for j in job_rows}:
        return None
    shown_id = job_id if job_id is not None else next(
        (j.id for j in job_rows if j.status == JobStatus.DONE.value), None)
    deliveries = {j.id: _outputs(session, j.id) for j in job_rows}
    shown = session.get(Job, shown_id) if shown_id is not None else None
    results = _results(session, shown, deliveries[shown.id]) if shown is not None else None
    timeline = _timeline(session, series, [j.id for j in job_rows], deliveries)
    return SeriesView(
        series.id, series.series_instance_uid, study.study_instance_uid, study.patient_id, study.patient_sex,
        study.accession_number, study.study_date, series.modality, series.series_description, series.state.value,
        series.skip_reason, series.instance_count, series.first_received_at, series.last_received_at, job_rows,
        results, timeline, _attention(series, job_rows[0] if job_rows else None, results))
