"""Retention: the spool and the outputs folder do not grow for ever.

The node keeps what it received only as long as it may need it; the PACS keeps the originals. Two periods,
configured in ``[storage]`` (0 keeps for ever):

* ``retention_days``: a series' spool files are deleted that many days after its last instance arrived, once the
  series is decided (``processed``, ``skipped`` or ``failed``) and no job of it is queued or running. Its
  ``instances`` rows stay, in state ``purged``, with an event on the series. Receiving an instance again stores it
  again (`sarcoscreen.node.instance_index`) and the series is decided anew; while some of its instances are
  purged, the series watcher skips it with the reason (the rest alone would be analysed as a truncated scan), and
  a worker refuses a job of it.
* ``outputs_retention_days``: a job's output folder (``<outputs>/<SeriesInstanceUID>/job-<id>/``: SEG, SR, key
  image and the measurement files) is deleted that many days after the job finished, once none of its deliveries
  is pending or failed; its ``outputs`` rows get ``purged_at``. The results stay in the database.

Rows change first (one transaction per batch), then the files go: a crash in between leaves files that no row
needs, never a row pointing at a file that is needed and gone. A spool or outputs folder that cannot be written
(a read-only file system) is not swept at all - its rows would say ``purged`` of files still there - and says so
in one warning per sweep. `serve` and `run` sweep every
``retention_check_s`` seconds (`RetentionSweeper`); ``sarcoscreen purge [--dry-run]`` sweeps once.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, exists, func, select
from sqlalchemy.orm import Session

from sarcoscreen.db.events import EventKind, record_event
from sarcoscreen.db.models import (
    Delivery,
    DeliveryStatus,
    Instance,
    InstanceState,
    Job,
    JobStatus,
    Output,
    Series,
)
from sarcoscreen.db.series_state import SETTLED_STATES
from sarcoscreen.db.session import db_now, session_scope, write_session
from sarcoscreen.node.background_loop import BackgroundLoop
from sarcoscreen.node.config import Settings
from sarcoscreen.node.storage_setup import unwritable_reason

__all__ = ["RetentionReport", "RetentionSweeper", "purge_expired"]

logger = logging.getLogger(__name__)

_BATCH = 50
"""Series (or jobs) purged per transaction: keeps the SQLite write lock short for the SCP's index."""

_ACTIVE_JOBS = (JobStatus.QUEUED, JobStatus.RUNNING)
_FINISHED_JOBS = (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)
_UNSENT = (DeliveryStatus.PENDING, DeliveryStatus.FAILED)
_WITH_FILE = (InstanceState.STORED, InstanceState.CHANGED_FILE)


@dataclass
class RetentionReport:
    """What one sweep purged (or, in a dry run, would purge)."""

    series: int = 0
    instances: int = 0
    jobs: int = 0
    bytes_freed: int = 0
    errors: int = 0
    dry_run: bool = False

    def summary(self) -> str:
        verb = "would purge" if self.dry_run else "purged"
        text = (f"retention: {verb} the spool files of {self.series} series ({self.instances} instances) and the "
                f"output folders of {self.jobs} jobs")
        if not self.dry_run:
            text += f"; {self.bytes_freed / 2**20:.1f} MiB freed"
        if self.errors:
            text += f"; {self.errors} files or folders could not be deleted (see the log)"
        return text


def purge_expired(db: Engine, settings: Settings, *, dry_run: bool = False) -> RetentionReport:
    """One sweep: everything whose retention period has ended (see the module docstring)."""
    report = RetentionReport(dry_run=dry_run)
    storage = settings.storage
    if storage.retention_days > 0 and _can_delete_in(storage.spool, "the spool", "files", report):
        _purge_series(db, storage.spool, storage.retention_days, report)
    if storage.outputs_retention_days > 0 and _can_delete_in(storage.outputs, "the outputs folder", "folders",
                                                             report):
        _purge_outputs(db, storage.outputs, storage.outputs_retention_days, report)
    if report.series or report.jobs or report.errors:
        logger.info(report.summary())
    return report


def _can_delete_in(folder: Path, what: str, kind: str, report: RetentionReport) -> bool:
    """Whether `folder` can be swept; when it cannot (and this is no dry run) say so once and count an error."""
    reason = unwritable_reason(folder)
    if reason is None or report.dry_run:
        return True
    logger.warning("retention: %s %s is not writable (%s): its expired %s stay until it is", what, folder, reason,
                   kind)
    report.errors += 1
    return False


def _expired_series(session: Session, days: float, limit: int | None) -> list[Series]:
    cutoff = db_now(session) - timedelta(days=days)
    active = exists().where(Job.series_id == Series.id, Job.status.in_(_ACTIVE_JOBS))
    with_files = exists().where(Instance.series_id == Series.id, Instance.state.in_(_WITH_FILE))
    query = (select(Series)
             .where(Series.state.in_(SETTLED_STATES), Series.last_received_at <= cutoff, ~active, with_files)
             .order_by(Series.last_received_at, Series.id))
    if limit is not None:
        query = query.limit(limit).with_for_update(skip_locked=True)
    return list(session.execute(query).scalars())


def _purge_series(db: Engine, spool: Path, days: float, report: RetentionReport) -> None:
    if report.dry_run:
        with session_scope(db) as session:
            for series in _expired_series(session, days, None):
                report.series += 1
                report.instances += session.execute(select(func.count()).where(
                    Instance.series_id == series.id, Instance.state.in_(_WITH_FILE))).scalar_one()
        return
    while True:
        files: list[Path] = []
        with write_session(db) as session:
            batch = _expired_series(session, days, _BATCH)
            for series in batch:
                rows = session.execute(select(Instance).where(
                    Instance.series_id == series.id, Instance.state.in_(_WITH_FILE))).scalars().all()
                for row in rows:
                    row.state = InstanceState.PURGED
                    files.append(spool / row.spool_path)
                record_event(session, EventKind.SERIES_PURGED,
                             f"retention ({days:g} days after the last instance) ended: "
                             f"{len(rows)} spool files deleted; receive the series again to analyse it again",
                             series_id=series.id)
                report.series += 1
                report.instances += len(rows)
        if not batch:
            return
        for path in files:
            _delete(path, report)
        for folder in {path.parent for path in files}:
            with contextlib.suppress(OSError):  # the series folder, once empty (a file received meanwhile keeps it)
                folder.rmdir()


def _expired_jobs(session: Session, days: float, limit: int | None) -> list[tuple[Job, list[Output]]]:
    cutoff = db_now(session) - timedelta(days=days)
    unsent = exists().where(Delivery.output_id == Output.id, Delivery.status.in_(_UNSENT))
    job_ids = select(Output.job_id).join(Job, Job.id == Output.job_id).where(
        Output.purged_at.is_(None), Job.status.in_(_FINISHED_JOBS), Job.finished_at <= cutoff).distinct()
    blocked = select(Output.job_id).where(unsent)
    query = select(Job).where(Job.id.in_(job_ids), Job.id.not_in(blocked)).order_by(Job.finished_at, Job.id)
    if limit is not None:
        query = query.limit(limit).with_for_update(skip_locked=True)
    jobs = session.execute(query).scalars().all()
    return [(job, list(session.execute(select(Output).where(Output.job_id == job.id, Output.purged_at.is_(None))
                                       ).scalars())) for job in jobs]


def _purge_outputs(db: Engine, outputs_root: Path, days: float, report: RetentionReport) -> None:
    if report.dry_run:
        with session_scope(db) as session:
            report.jobs += len(_expired_jobs(session, days, None))
        return
    while True:
        folders: list[Path] = []
        with write_session(db) as session:
            batch = _expired_jobs(session, days, _BATCH)
            now = db_now(session)
            for job, outputs in batch:
                for output in outputs:
                    output.purged_at = now
                folders.extend({(outputs_root / output.path).parent for output in outputs})
                record_event(session, EventKind.OUTPUTS_PURGED,
                             f"retention ({days:g} days after the job finished) ended: "
                             f"job {job.id}'s output folder deleted ({len(outputs)} DICOM objects, all delivered); "
                             "the results stay", series_id=job.series_id, job_id=job.id)
                report.jobs += 1
        if not batch:
            return
        for folder in folders:
            if folder.is_dir():
                size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
                try:
                    shutil.rmtree(folder)
                    report.bytes_freed += size
                except OSError as exc:
                    report.errors += 1
                    logger.error("retention: cannot delete output folder %s: %s", folder, exc.strerror)


def _delete(path: Path, report: RetentionReport) -> None:
    try:
        size = path.stat().st_size
        path.unlink()
        report.bytes_freed += size
    except FileNotFoundError:
        pass
    except OSError as exc:
        report.errors += 1
        logger.error("retention: cannot delete spool file %s: %s", path.name, exc.strerror)


class RetentionSweeper(BackgroundLoop):
    """The background thread running `purge_expired` every ``storage.retention_check_s`` (first after a minute,
    so that a starting node first reconciles and receives); not started when both periods are 0."""

    name = "retention"

    def __init__(self, db: Engine, settings: Settings) -> None:
        super().__init__()
        self.db = db
        self.settings = settings

    def run_once(self) -> RetentionReport:
        return purge_expired(self.db, self.settings)

    def interval_s(self) -> float:
        return self.settings.storage.retention_check_s

    def first_delay_s(self) -> float:
        return min(60.0, self.interval_s())

    def start(self) -> None:
        storage = self.settings.storage
        if storage.retention_days <= 0 and storage.outputs_retention_days <= 0:
            logger.info("retention: off (storage.retention_days and outputs_retention_days are 0)")
            return
        super().start()
