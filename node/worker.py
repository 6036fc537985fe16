"""The worker: claim a job, run the analysis pipeline on its series, store everything in ONE transaction.

``sarcoscreen worker`` (and the workers of ``sarcoscreen run``; several processes: `sarcoscreen.node.worker_pool`).
Each worker loops:

1. return jobs whose lease expired to the queue (`sarcoscreen.db.queue.reap_expired`);
2. claim the next due job under a lease (`claim`); a heartbeat thread renews the lease every
   ``queue.heartbeat_s`` seconds and notices when the claim is lost (job cancelled, or reaped after a stall);
3. gather the spool files of the series' ``stored`` instances (missing ones are marked) and the registry height
   of its patient;
4. run the analysis pipeline (`sarcoscreen.node.analysis.run_analysis`: load, segment with the engine created
   once per process, the gluteal-coverage rule, measure, result files, DICOM-SEG / TID 1500 SR / key image with
   deterministic UIDs) into ``<outputs>/<SeriesInstanceUID>/job-<id>/``;
5. store results, outputs, outbox rows and the job's end in one transaction (`sarcoscreen.db.results`), with the
   seconds each step took (``jobs.step_seconds``; the store step's own is added once it committed).

Any exception in 3-4 fails the attempt with its text, scrubbed of anything that could be a DICOM value
(`sarcoscreen.inference.error_text`). A problem of the input - the loader refuses the series, the engine refuses
its images, the source cannot be referenced, instances were purged - fails the job at once (``failed``: the next
attempt would meet the same files); anything else is retried after a backoff and ``failed`` after the last attempt
(`fail`; the table is in docs/node.md, "Failed attempts"). Malformed patient or study values do not fail a job:
the outputs carry them repaired or leave them out, and an ``output.repaired`` event names the attributes. The
engine's notes of a result (`Segmentation.notes`: e.g. the model bundle's training data and intended use) are
kept as an ``engine.notes`` event of the job, besides ``measurements.json``, the SR and the key image. A worker
killed mid-job leaves its job ``running``; when the lease expires the job goes back to the queue and another worker
runs it - the deterministic output UIDs make the second run's objects the same ones.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError

from sarcoscreen.db.events import EventKind, record_event
from sarcoscreen.db.heights import registry_height
from sarcoscreen.db.models import EventLevel, Instance, InstanceState, Series, Study
from sarcoscreen.db.queue import ClaimedJob, LeaseLostError, claim, fail, heartbeat, reap_expired
from sarcoscreen.db.results import JobResults, add_step_seconds, store_results
from sarcoscreen.db.session import create_engine_from_url, write_session
from sarcoscreen.inference.engines import Engine as Segmenter
from sarcoscreen.inference.engines import EngineError
from sarcoscreen.inference.error_text import error_text
from sarcoscreen.node.analysis import (
    AnalysisError,
    AnalysisInputError,
    AnalysisOptions,
    AnalysisOutcome,
    engine_from,
    run_analysis,
)
from sarcoscreen.node.config import Settings

__all__ = ["AttemptFailedError", "Worker"]

logger = logging.getLogger(__name__)


class AttemptFailedError(Exception):
    """An attempt failed for a reason stated in words (stored as the job's error). `permanent`: a problem of the
    input that every later attempt would meet again, so the job fails at once instead of being retried."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class _Heartbeat:
    """Renews a job's lease in the background; `lost` is set once the claim is gone."""

    def __init__(self, db: Engine, claimed: ClaimedJob, lease_s: float, interval_s: float) -> None:
        self.db, self.claimed, self.lease_s, self.interval_s = db, claimed, lease_s, interval_s
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{claimed.id}", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                if not heartbeat(self.db, self.claimed.id, self.claimed.lease_token, self.lease_s):
                    logger.warning("job %d: lease lost (cancelled or taken over); abandoning it", self.claimed.id)
                    self.lost.set()
                    return
            except SQLAlchemyError as exc:  # the lease may still be valid: keep trying until it expires
                logger.warning("job %d: heartbeat failed (%s)", self.claimed.id, type(exc).__name__)

    def check(self) -> None:
        if self.lost.is_set():
            raise LeaseLostError(f"job {self.claimed.id}: lease lost")

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class Worker:
    """One worker process: claims and runs jobs one at a time until `stop` is called."""

    def __init__(self, settings: Settings, db: Engine | None = None) -> None:
        self.settings = settings
        self.db = db or create_engine_from_url(settings.database_url)
        self._owns_db = db is None
        self._segmenter: Segmenter | None = None
        self._options: AnalysisOptions | None = None
        self._stop = threading.Event()

    # --- the loop ------------------------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    def wait(self, timeout: float) -> bool:
        """Wait until stopped (``True``) or `timeout` seconds passed (``False``)."""
        return self._stop.wait(timeout)

    def run(self) -> None:
        """Claim and run jobs until `stop`; database outages are waited out."""
        logger.info("worker started (engine %s)", self.settings.engine.name)
        while not self._stop.is_set():
            try:
                worked = self.run_one()
            except SQLAlchemyError as exc:
                logger.error("worker: database error (%s); retrying", type(exc).__name__)
                worked = False
            if not worked:
                self._stop.wait(self.settings.queue.poll_s)
        if self._owns_db:
            self.db.dispose()
        logger.info("worker stopped")

    def run_one(self) -> bool:
        """Reap expired leases, claim one job and run it; ``False`` when no job was due."""
        queue = self.settings.queue
        for job_id, status in reap_expired(self.db, backoff_s=queue.backoff_s, backoff_max_s=queue.backoff_max_s):
            logger.warning("job %d: lease expired (worker gone); now %s", job_id, status.value)
        claimed = claim(self.db, queue.lease_s)
        if claimed is None:
            return False
        logger.info("job %d: attempt %d of %d, series %s", claimed.id, claimed.attempt, claimed.max_attempts,
                    claimed.series_instance_uid)
        self.process(claimed)
        return True

    def process(self, claimed: ClaimedJob) -> None:
        """Run one claimed job to its end: done, or the attempt failed (retry or failed)."""
        queue = self.settings.queue
        started = time.monotonic()
        with _Heartbeat(self.db, claimed, queue.lease_s, queue.heartbeat_s) as beat:
            try:
                steps = self._attempt(claimed, beat)
            except LeaseLostError as exc:
                logger.warning("job %d: results discarded: %s", claimed.id, exc)
                return
            except Exception as exc:
                error = str(exc) if isinstance(exc, AttemptFailedError) else _describe_unexpected(exc)
                permanent = isinstance(exc, AttemptFailedError) and exc.permanent
                try:
                    status = fail(self.db, claimed.id, claimed.lease_token, error, backoff_s=queue.backoff_s,
                                  backoff_max_s=queue.backoff_max_s, permanent=permanent)
                except LeaseLostError:
                    logger.warning("job %d: attempt failed after the lease was lost: %s", claimed.id, error)
                    return
                logger.error("job %d: attempt %d failed (%s now): %s", claimed.id, claimed.attempt, status.value,
                             error)
                return
        logger.info("job %d: done in %.1f s (%s)", claimed.id, time.monotonic() - started,
                    ", ".join(f"{name} {seconds:.1f} s" for name, seconds in steps.items()))

    # --- one attempt ----------------------------------------------------------------------------------------

    def _attempt(self, claimed: ClaimedJob, beat: _Heartbeat) -> dict[str, float]:
        """Gather, analyse, store; returns the seconds per step."""
        started = time.monotonic()
        files, registry_m = self._source_files(claimed)
        segmenter, options = self._segmenter_for_jobs(), self._options_for_jobs()
        folder = self.settings.storage.outputs / claimed.series_instance_uid / f"job-{claimed.id}"
        steps = {"prepare": time.monotonic() - started}
        try:
            outcome = run_analysis(files, segmenter, options, folder, dicom_out=folder,
                                   registry_height_m=registry_m, series_uid=claimed.series_instance_uid,
                                   check=beat.check)
        except AnalysisInputError as exc:  # the same files fail the same way
            raise AttemptFailedError(str(exc), permanent=True) from None
        if outcome.dicom_error is not None:  # the source cannot be referenced (no UIDs, instances missing)
            raise AttemptFailedError(f"DICOM outputs not written: {outcome.dicom_error}", permanent=True)
        steps.update(outcome.steps)
        beat.check()
        stored = time.monotonic()
        with write_session(self.db) as session:
            store_results(session, claimed.id, claimed.lease_token, self._results(outcome, len(files), steps),
                          outputs_root=self.settings.storage.outputs, destinations=self.settings.destinations)
        steps["store"] = time.monotonic() - stored
        try:  # the job is done: a duration that cannot be added is only missing from the histogram
            add_step_seconds(self.db, claimed.id, "store", steps["store"])
        except SQLAlchemyError as exc:
            logger.warning("job %d: the store step's duration not recorded (%s)", claimed.id, type(exc).__name__)
        return steps

    def _results(self, outcome: AnalysisOutcome, instance_count: int, steps: dict[str, float]) -> JobResults:
        segmenter, options = self._segmenter_for_jobs(), self._options_for_jobs()
        dicom = outcome.dicom
        return JobResults(
            instance_count=instance_count, engine_name=segmenter.name, engine_version=segmenter.version,
            settings_digest=options.settings_digest, report=outcome.report, skip_reason=outcome.skip_reason,
            objects=dicom.objects if dicom else (), omitted=dicom.omitted if dicom else (),
            repaired=dicom.notes if dicom else (), step_seconds=dict(steps))

    def _segmenter_for_jobs(self) -> Segmenter:
        if self._segmenter is None:
            try:
                self._segmenter = engine_from(self.settings)
            except EngineError as exc:
                raise AttemptFailedError(f"the engine cannot be created: {error_text(exc)}") from None
        return self._segmenter

    def _options_for_jobs(self) -> AnalysisOptions:
        if self._options is None:
            try:
                self._options = AnalysisOptions.from_settings(self.settings)
            except AnalysisError as exc:
                raise AttemptFailedError(str(exc)) from None
        return self._options

    def _source_files(self, claimed: ClaimedJob) -> tuple[list[Path], float | None]:
        """Spool files of the series' stored instances (missing ones are marked), and the registry height."""
        spool = self.settings.storage.spool
        with write_session(self.db) as session:
            rows = session.execute(
                select(Instance).where(Instance.series_id == claimed.series_id,
                                       Instance.state == InstanceState.STORED).order_by(Instance.id)
            ).scalars().all()
            purged = session.execute(select(func.count()).where(
                Instance.series_id == claimed.series_id, Instance.state == InstanceState.PURGED)).scalar_one()
            if purged:
                raise AttemptFailedError(f"{purged} instances of the series were purged by retention "
                                         "(storage.retention_days): send the whole series again to analyse it",
                                         permanent=True)
            files, missing = [], 0
            for row in rows:
                path = spool / row.spool_path
                if path.is_file():
                    files.append(path)
                else:
                    row.state = InstanceState.MISSING_FILE
                    missing += 1
            if missing:
                record_event(session, EventKind.INSTANCE_MISSING, f"job {claimed.id}: {missing} spool files missing; "
                             "analysed without them", level=EventLevel.WARNING, series_id=claimed.series_id,
                             job_id=claimed.id)
            patient_id = session.execute(
                select(Study.patient_id).join(Series, Series.study_id == Study.id)
                .where(Series.id == claimed.series_id)).scalar_one_or_none()
            height = registry_height(session, patient_id) if patient_id else None
        if not files:
            raise AttemptFailedError("no stored instance of the series is in the spool")
        return files, height


def _describe_unexpected(exc: BaseException) -> str:
    """An unexpected exception as error text: its type, scrubbed message and where it happened."""
    return f"internal error: {error_text(exc, location=True)}"
