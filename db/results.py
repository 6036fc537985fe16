"""Storing a job's results: measurements, group results, outputs and their deliveries, and the job's end.

The write side of `sarcoscreen.db.queries`. `store_results` runs inside the worker's one results transaction:
results, outputs, outbox rows and the job's ``done`` commit together or not at all (`sarcoscreen.db.queue.complete`
refuses a claim that is no longer valid). Output rows are made from the identities the DICOM writer returned
(`sarcoscreen.reports.dicom_outputs.WrittenObject`): the files are not read again.

A job whose series is superseded by a newer job of the same series keeps its results and outputs but queues no
delivery; the newest job cancels the unsent deliveries of older ones (`sarcoscreen.db.outbox.supersede`).

The seconds each step took (``jobs.step_seconds``, for the ``sarcoscreen_job_step_seconds`` histogram) are stored
with the results; the results transaction's own duration (``store``) can only be known once it committed, so
`add_step_seconds` adds it in a second, small update.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from sarcoscreen.db.events import EventKind, record_event
from sarcoscreen.db.models import EventLevel, GroupResult, Job, Output, OutputKind, SeriesState, StructureMeasurement
from sarcoscreen.db.outbox import DestinationAddress, add_deliveries, supersede
from sarcoscreen.db.queue import complete
from sarcoscreen.db.session import write_session
from sarcoscreen.inference.measure import MeasurementReport

if TYPE_CHECKING:
    from sarcoscreen.reports.dicom_outputs import WrittenObject

__all__ = ["JobResults", "add_step_seconds", "store_measurements", "store_outputs", "store_results"]

logger = logging.getLogger(__name__)

_OUTPUT_KINDS = {"seg": OutputKind.SEG, "sr": OutputKind.SR, "key_image": OutputKind.KEY_IMAGE}


@dataclass(frozen=True)
class JobResults:
    """What one finished analysis of a job leaves in the database."""

    instance_count: int
    engine_name: str
    engine_version: str
    settings_digest: str
    report: MeasurementReport | None
    """``None`` when the series was skipped (`skip_reason`)."""
    skip_reason: str | None = None
    objects: tuple[WrittenObject, ...] = ()
    """The DICOM objects written, with their UIDs."""
    omitted: tuple[tuple[str, str], ...] = ()
    """(object, reason) for each DICOM object not written."""
    repaired: tuple[str, ...] = ()
    """Malformed source attributes repaired or left out in the outputs (attribute names, never values)."""
    step_seconds: dict[str, float] = field(default_factory=dict)
    """Seconds per step of the attempt (``prepare``, ``load``, ``engine``, ...), stored as ``jobs.step_seconds``."""


def store_measurements(session: Session, job: Job, report: MeasurementReport) -> None:
    """One `StructureMeasurement` row per structure and one `GroupResult` row per group and side (with the
    screening of the ``both`` row)."""
    for s in report.structures:
        session.add(StructureMeasurement(
            job_id=job.id, structure_key=s.key, label=s.label, name=s.name, side=s.side.value, voxels=s.voxels,
            volume_cm3=s.volume_cm3, mean_hu=s.mean_hu, sd_hu=s.sd_hu, fraction_in_window=s.fraction_in_window,
            mass_g=s.mass_g, truncated=s.truncated, uncertainty=s.uncertainty, qa_flag=s.qa_flag,
            extent_uncertain=s.extent_uncertain, shortfall_mm=s.shortfall_mm, extent_note=s.extent_note or None,
            density_rule=report.density_rule[:256]))
    for g in report.groups:
        row = GroupResult(job_id=job.id, muscle_group=g.group.value, side=g.side, completeness=g.completeness.value,
                          reason=g.reason, smm_g=g.smm_g, smi_kg_m2=g.smi_kg_m2, in_scan_smm_g=g.in_scan_smm_g,
                          shortfall_mm=g.shortfall_mm, height_m=report.height_m, height_source=report.height_source)
        if g.side == "both":
            screening = report.screening_of(g.group)
            row.screening_side_rule = screening.side_rule.value
            row.screening_smi_kg_m2 = screening.smi_kg_m2
            row.classification = screening.classification.value
            row.classification_reason = screening.reason
            row.cutoff_kg_m2 = screening.cutoff_kg_m2
            row.calibration_name = screening.calibration_name
            row.calibration_sha256 = screening.calibration_sha256
        session.add(row)


def store_outputs(session: Session, job: Job, objects: Sequence[WrittenObject], outputs_root: Path) -> list[Output]:
    """One `Output` row per written object, its path relative to `outputs_root`."""
    outputs = [Output(job_id=job.id, kind=_OUTPUT_KINDS[obj.kind], sop_class_uid=obj.sop_class_uid,
                      sop_instance_uid=obj.sop_instance_uid, series_instance_uid=obj.series_instance_uid,
                      path=obj.path.relative_to(outputs_root).as_posix())
               for obj in objects]
    session.add_all(outputs)
    session.flush()
    return outputs


def store_results(session: Session, job_id: int, lease_token: str, results: JobResults, *, outputs_root: Path,
                  destinations: Sequence[DestinationAddress]) -> Job:
    """Store `results` of job `job_id` and mark it ``done`` (its series ``processed``, or ``skipped``), in the
    caller's transaction; `sarcoscreen.db.queue.LeaseLostError` when the claim `lease_token` is gone.

    Deliveries: one per output and destination, unless a newer job of the series exists (it will deliver).
    """
    job = session.get_one(Job, job_id)
    job.instance_count = results.instance_count
    job.engine_name, job.engine_version = results.engine_name, results.engine_version
    job.settings_hash = results.settings_digest
    job.step_seconds = _rounded(results.step_seconds)
    if results.report is None:
        logger.info("job %d: series skipped: %s", job_id, results.skip_reason)
        return complete(session, job_id, lease_token, series_state=SeriesState.SKIPPED,
                        skip_reason=results.skip_reason)
    store_measurements(session, job, results.report)
    if results.report.notes:  # what the engine says about this result (e.g. the model's intended use)
        record_event(session, EventKind.ENGINE_NOTES,
                     f"job {job.id}: engine {results.engine_name} {results.engine_version}: "
                     + " | ".join(results.report.notes), series_id=job.series_id, job_id=job.id)
    outputs = store_outputs(session, job, results.objects, outputs_root)
    newer = session.execute(select(Job.id).where(Job.series_id == job.series_id, Job.id > job.id)
                            .order_by(Job.id.desc()).limit(1)).scalar_one_or_none()
    if newer is None:
        queued = add_deliveries(session, outputs, destinations)
        supersede(session, job.series_id, job.id)
        note = f"{len(outputs)} outputs, {queued} deliveries to {len(destinations)} destinations"
    else:
        note = f"{len(outputs)} outputs, not sent: job {newer} of the same series supersedes this one"
    for kind, reason in results.omitted:
        record_event(session, EventKind.OUTPUT_OMITTED, f"job {job.id}: {kind} not written: {reason}",
                     level=EventLevel.WARNING, series_id=job.series_id, job_id=job.id)
    if results.repaired:
        record_event(session, EventKind.OUTPUT_REPAIRED, f"job {job.id}: malformed source attributes in the outputs: "
                     f"{'; '.join(results.repaired)}", level=EventLevel.WARNING, series_id=job.series_id,
                     job_id=job.id)
    return complete(session, job_id, lease_token, message=note)


def _rounded(step_seconds: dict[str, float]) -> dict[str, float] | None:
    """Seconds per step to the millisecond (``None`` when there are none)."""
    return {step: round(seconds, 3) for step, seconds in step_seconds.items()} or None


def add_step_seconds(db: Engine, job_id: int, step: str, seconds: float) -> None:
    """Add one step's duration to a job's ``step_seconds`` (the results transaction's own, ``store``, once it
    committed), in a transaction of its own."""
    with write_session(db) as session:
        job = session.get(Job, job_id)
        if job is not None:
            job.step_seconds = {**(job.step_seconds or {}), step: round(seconds, 3)}
