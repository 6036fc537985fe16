"""The worker: claim a job, analyse its series, store results + outputs + outbox rows in ONE transaction.

``sarcoscreen worker [--concurrency N]`` (and the workers of ``sarcoscreen run``). Each worker process loops:

1. return jobs whose lease expired to the queue (`sarcoscreen.db.queue.reap_expired`);
2. claim the next due job under a lease (`claim`); a heartbeat thread renews the lease every
   ``queue.heartbeat_s`` seconds and notices when the claim is lost (job cancelled, or reaped after a stall);
3. load the series from the spool files of its ``stored`` instances (`inference.series_loader.load_series`), run
   the configured engine (created once per process: a model bundle is loaded once), measure and screen
   (`inference.measure`), with the height from the command-free precedence DICOM PatientSize > registry;
4. when ``routing.require_gluteal_region`` is on and the segmentation has no gluteal muscle voxel at all, the
   series does not reach the gluteal region: the job is done, the series ``skipped`` with that reason, and no
   outputs are written;
5. otherwise write ``measurements.json``, ``measurements.csv``, ``overlay.png`` and the DICOM SEG, TID 1500 SR and
   key image (`reports.dicom_outputs`, deterministic UIDs) into ``<outputs>/<SeriesInstanceUID>/job-<id>/``;
6. in one transaction: check the claim (`complete` refuses a lost lease), store every structure and group
   result, the outputs and one outbox row per output and ``[[destinations]]`` entry, cancel unsent deliveries of
   older jobs of the series (superseded), mark the job ``done`` and the series ``processed``.

Any exception in 3-5 fails the attempt with its text, scrubbed of anything that could be a DICOM value
(`sarcoscreen.inference.error_text`). A problem of the input - the loader refuses the series, the engine refuses
its images, the source cannot be referenced, instances were purged - fails the job at once (``failed``: the next
attempt would meet the same files); anything else is retried after a backoff and ``failed`` after the last attempt
(`fail`; the table is in docs/node.md, "Failed attempts"). Malformed patient or study values do not fail a job:
the outputs carry them repaired or leave them out, and an ``output.repaired`` event names the attributes. The
engine's notes of a result (`Segmentation.notes`: e.g. the model bundle's training data and intended use) are
kept as an ``engine.notes`` event of the job, besides ``measurements.json``, the SR and the key image. A worker
killed mid-job leaves its job ``running``; when the lease expires the job goes back to the
queue and another worker runs it - the deterministic output UIDs make the second run's objects the same ones.

With ``--concurrency N`` (N > 1) the parent process starts N worker processes (``spawn``) and restarts one that
dies; SIGTERM/SIGINT let each finish its current job and stop (a second signal stops at once; the lease then
returns the job to the queue).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from pydicom.filereader import read_file_meta_info
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from sarcoscreen.db.events import record_event
from sarcoscreen.db.heights import registry_height
from sarcoscreen.db.models import (
    EventLevel,
    GroupResult,
    Instance,
    InstanceState,
    Job,
    Output,
    OutputKind,
    Series,
    SeriesState,
    StructureMeasurement,
    Study,
)
from sarcoscreen.db.outbox import add_deliveries, supersede
from sarcoscreen.db.queue import (
    ClaimedJob,
    LeaseLostError,
    claim,
    complete,
    fail,
    heartbeat,
    reap_expired,
)
from sarcoscreen.db.session import create_engine_from_url, write_session
from sarcoscreen.inference.calibration import Calibration, CalibrationError
from sarcoscreen.inference.catalogue import CATALOGUE, Group
from sarcoscreen.inference.engines import Engine as Segmenter
from sarcoscreen.inference.engines import EngineError
from sarcoscreen.inference.engines.base import Segmentation
from sarcoscreen.inference.error_text import error_text
from sarcoscreen.inference.height import choose_height
from sarcoscreen.inference.measure import MeasurementReport, measure
from sarcoscreen.inference.series_loader import SeriesLoadError, VolumeTooLargeError, load_series
from sarcoscreen.node.analyze_command import (
    calibration_from,
    density_rule_from,
    dicom_options_from,
    engine_from,
    settings_digest,
)
from sarcoscreen.node.config import Settings

__all__ = ["AttemptFailedError", "Worker", "WorkerPool", "gluteal_coverage", "run_workers", "stop_on_signals"]

logger = logging.getLogger(__name__)


class AttemptFailedError(Exception):
    """An attempt failed for a reason stated in words (stored as the job's error). `permanent`: a problem of the
    input that every later attempt would meet again, so the job fails at once instead of being retried."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class _Analysis:
    report: MeasurementReport | None
    folder: Path | None
    files: dict[str, Path]
    instance_count: int
    skip_reason: str | None = None
    omitted: tuple[tuple[str, str], ...] = ()
    repaired: tuple[str, ...] = ()
    """What was done to malformed source attributes in the outputs (attribute names, never values)."""
    steps: dict[str, float] = field(default_factory=dict)
    """Seconds per step (logged when the job is done)."""


def gluteal_coverage(segmentation: Segmentation) -> str | None:
    """``None`` when the segmentation holds gluteal muscle; otherwise why the scan does not reach the region.

    Engines that produce no structure of the gluteal group cannot tell, and are not judged (``None``).
    """
    members = CATALOGUE.group_members(Group.GLUTEAL, None)
    produced = {s.key for s in segmentation.structures}
    labels = [s.label for s in members if s.key in produced]
    if not labels:
        return None
    import numpy as np

    present = np.isin(segmentation.labels, np.asarray(labels, dtype=segmentation.labels.dtype))
    if present.any():
        return None
    return "the images do not reach the gluteal region (no gluteal muscle found)"


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
        self._calibration: Calibration | None = None
        self._calibration_loaded = False
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
                analysis = self._analyse(claimed, beat)
                beat.check()
                stored = time.monotonic()
                self._store(claimed, analysis)
                analysis.steps["store"] = time.monotonic() - stored
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
                    ", ".join(f"{name} {seconds:.1f} s" for name, seconds in analysis.steps.items()))

    # --- the pipeline --------------------------------------------------------------------------------------

    def _segmenter_for_jobs(self) -> Segmenter:
        if self._segmenter is None:
            try:
                self._segmenter = engine_from(self.settings)
            except EngineError as exc:
                raise AttemptFailedError(f"the engine cannot be created: {error_text(exc)}") from None
        return self._segmenter

    def _calibration_for_jobs(self) -> Calibration | None:
        if not self._calibration_loaded:
            try:
                self._calibration = calibration_from(self.settings)
            except CalibrationError as exc:
                raise AttemptFailedError(f"the calibration file cannot be used: {error_text(exc)}") from None
            self._calibration_loaded = True
        return self._calibration

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
                record_event(session, "instance.missing", f"job {claimed.id}: {missing} spool files missing; "
                             "analysed without them", level=EventLevel.WARNING, series_id=claimed.series_id,
                             job_id=claimed.id)
            patient_id = session.execute(
                select(Study.patient_id).join(Series, Series.study_id == Study.id)
                .where(Series.id == claimed.series_id)).scalar_one_or_none()
            height = registry_height(session, patient_id) if patient_id else None
        if not files:
            raise AttemptFailedError("no stored instance of the series is in the spool")
        return files, height

    def _analyse(self, claimed: ClaimedJob, beat: _Heartbeat) -> _Analysis:
        from sarcoscreen.reports.dicom_outputs import DicomOutputError, write_dicom_outputs
        from sarcoscreen.reports.result_files import write_result_files

        settings = self.settings
        steps: dict[str, float] = {}
        clock = time.monotonic()

        def step(name: str) -> None:
            nonlocal clock
            now = time.monotonic()
            steps[name] = now - clock
            clock = now

        files, registry_m = self._source_files(claimed)
        segmenter = self._segmenter_for_jobs()
        calibration = self._calibration_for_jobs()
        step("prepare")
        try:
            volume = load_series(files, series_instance_uid=claimed.series_instance_uid,
                                 max_volume_bytes=settings.worker.max_volume_mb << 20)
        except SeriesLoadError as exc:  # a problem of the input: the same files fail the same way
            limit = " (worker.max_volume_mb)" if isinstance(exc, VolumeTooLargeError) else ""
            raise AttemptFailedError(f"the series cannot be loaded: {error_text(exc)}{limit}", permanent=True) from None
        step("load")
        beat.check()
        try:
            segmentation = segmenter.segment(volume)
        except EngineError as exc:  # the engine refuses these images (e.g. not axial): the same every time
            raise AttemptFailedError(f"engine {segmenter.name} {segmenter.version}: {error_text(exc)}",
                                     permanent=True) from None
        step("engine")
        beat.check()
        if settings.routing.require_gluteal_region:
            reason = gluteal_coverage(segmentation)
            if reason is not None:
                return _Analysis(None, None, {}, len(files), skip_reason=reason, steps=steps)
        height = choose_height(None, volume.info.patient_size_m, registry_m)
        report = measure(volume, segmentation, density_rule_from(settings), height, calibration=calibration,
                         side_rule=settings.measurement.side_rule)
        step("measure")
        folder = settings.storage.outputs / claimed.series_instance_uid / f"job-{claimed.id}"
        written = write_result_files(folder, volume, segmentation, report, calibration, modes=settings.storage.modes)
        result_files, picture = written.files, written.picture
        step("files")
        beat.check()
        try:
            outputs = write_dicom_outputs(files, volume, segmentation, report, folder,
                                          settings_digest=settings_digest(settings, calibration),
                                          options=dicom_options_from(settings), picture=picture,
                                          modes=settings.storage.modes)
        except DicomOutputError as exc:  # the source cannot be referenced (no UIDs, instances missing)
            raise AttemptFailedError(f"DICOM outputs not written: {error_text(exc)}", permanent=True) from None
        for kind, path in (("seg", outputs.seg), ("sr", outputs.sr), ("key_image", outputs.key_image)):
            if path is not None:
                result_files[kind] = path
        step("dicom outputs")
        return _Analysis(report, folder, result_files, len(files), omitted=outputs.omitted,
                         repaired=outputs.notes, steps=steps)

    def _store(self, claimed: ClaimedJob, analysis: _Analysis) -> None:
        """Results, outputs, outbox rows and the job's end: one transaction (or nothing)."""
        outputs_root = self.settings.storage.outputs
        with write_session(self.db) as session:
            job = session.get_one(Job, claimed.id)
            job.instance_count = analysis.instance_count
            segmenter = self._segmenter_for_jobs()
            job.engine_name, job.engine_version = segmenter.name, segmenter.version
            job.settings_hash = settings_digest(self.settings, self._calibration)
            if analysis.report is None:
                complete(session, claimed.id, claimed.lease_token, series_state=SeriesState.SKIPPED,
                         skip_reason=analysis.skip_reason)
                logger.info("job %d: series skipped: %s", claimed.id, analysis.skip_reason)
                return
            _store_report(session, job, analysis.report)
            if analysis.report.notes:  # what the engine says about this result (e.g. the model's intended use)
                record_event(session, "engine.notes", f"job {job.id}: engine {segmenter.name} {segmenter.version}: "
                             + " | ".join(analysis.report.notes), series_id=claimed.series_id, job_id=job.id)
            outputs = _store_outputs(session, job, analysis.files, outputs_root)
            newer = session.execute(select(Job.id).where(Job.series_id == claimed.series_id, Job.id > claimed.id)
                                    .order_by(Job.id.desc()).limit(1)).scalar_one_or_none()
            destinations = self.settings.destinations
            if newer is None:
                queued = add_deliveries(session, outputs, destinations)
                supersede(session, claimed.series_id, claimed.id)
                note = f"{len(outputs)} outputs, {queued} deliveries to {len(destinations)} destinations"
            else:
                note = f"{len(outputs)} outputs, not sent: job {newer} of the same series supersedes this one"
            for kind, reason in analysis.omitted:
                record_event(session, "output.omitted", f"job {job.id}: {kind} not written: {reason}",
                             level=EventLevel.WARNING, series_id=claimed.series_id, job_id=job.id)
            if analysis.repaired:
                record_event(session, "output.repaired", f"job {job.id}: malformed source attributes in the "
                             f"outputs: {'; '.join(analysis.repaired)}", level=EventLevel.WARNING,
                             series_id=claimed.series_id, job_id=job.id)
            complete(session, claimed.id, claimed.lease_token, message=note)


def _store_report(session: Session, job: Job, report: MeasurementReport) -> None:
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


_KINDS = {"seg": OutputKind.SEG, "sr": OutputKind.SR, "key_image": OutputKind.KEY_IMAGE}


def _store_outputs(session: Session, job: Job, files: dict[str, Path], outputs_root: Path) -> list[Output]:
    from pydicom import dcmread

    outputs = []
    for name, kind in _KINDS.items():
        path = files.get(name)
        if path is None:
            continue
        meta = read_file_meta_info(path)
        series_uid = str(dcmread(path, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"]
                                 ).SeriesInstanceUID)
        output = Output(job_id=job.id, kind=kind, sop_class_uid=str(meta.MediaStorageSOPClassUID),
                        sop_instance_uid=str(meta.MediaStorageSOPInstanceUID), series_instance_uid=series_uid,
                        path=path.relative_to(outputs_root).as_posix())
        session.add(output)
        outputs.append(output)
    session.flush()
    return outputs


def _describe_unexpected(exc: BaseException) -> str:
    """An unexpected exception as error text: its type, scrubbed message and where it happened."""
    return f"internal error: {error_text(exc, location=True)}"


# --- processes -------------------------------------------------------------------------------------------------


def _child_main(settings: Settings, index: int, parent_pid: int) -> None:
    """Entry point of a worker process started by `WorkerPool`."""
    from sarcoscreen.node.logging_setup import configure_logging

    configure_logging(settings.logging.level, settings.logging.file, modes=settings.storage.modes)
    worker = Worker(settings)
    stop_on_signals(worker.stop)

    def watch_parent() -> None:  # a worker never outlives its parent (killed or crashed)
        while not worker.wait(2.0):
            if os.getppid() != parent_pid:
                logger.warning("worker process %d: parent gone; stopping after the current job", index)
                worker.stop()

    threading.Thread(target=watch_parent, name="parent-watch", daemon=True).start()
    logger.info("worker process %d started", index)
    worker.run()


def stop_on_signals(stop: Callable[[], None]) -> None:
    """First SIGTERM/SIGINT: `stop` (finish the current job, then end); a second one: end at once (the job's
    lease then returns it to the queue)."""
    received = {"count": 0}

    def handler(signum: int, _frame: FrameType | None) -> None:
        received["count"] += 1
        if received["count"] > 1:
            raise SystemExit(128 + signum)
        logger.info("signal %d: stopping after the current job", signum)
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


class WorkerPool:
    """N worker processes (``spawn``), restarted when one dies, stopped with SIGTERM."""

    def __init__(self, settings: Settings, concurrency: int) -> None:
        self.settings = settings
        self.concurrency = concurrency
        self._context = multiprocessing.get_context("spawn")
        self._processes: dict[int, multiprocessing.process.BaseProcess] = {}
        self._stop = threading.Event()
        self._supervisor: threading.Thread | None = None

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._processes.values() if p.pid is not None]

    def _start(self, index: int) -> None:
        process = self._context.Process(target=_child_main, args=(self.settings, index, os.getpid()),
                                        name=f"sarcoscreen-worker-{index}")
        process.start()
        self._processes[index] = process

    def _supervise(self) -> None:
        while not self._stop.wait(1.0):
            for index, process in list(self._processes.items()):
                if not process.is_alive() and not self._stop.is_set():
                    logger.error("worker process %d ended (exit code %s); starting a new one", index,
                                 process.exitcode)
                    self._start(index)

    def start(self) -> None:
        for index in range(self.concurrency):
            self._start(index)
        self._supervisor = threading.Thread(target=self._supervise, name="worker-supervisor", daemon=True)
        self._supervisor.start()
        logger.info("%d worker processes started", self.concurrency)

    def stop(self, timeout: float | None = None) -> None:
        """Ask every worker to finish its job and stop; wait (at most `timeout` s, then kill)."""
        self._stop.set()
        if self._supervisor is not None:
            self._supervisor.join(timeout=5)
        for process in self._processes.values():
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        for process in self._processes.values():
            process.join(timeout)
            if process.is_alive():
                logger.warning("worker process %s did not stop in time; killed (its job returns to the queue "
                               "when the lease expires)", process.pid)
                process.kill()
                process.join()


def run_workers(settings: Settings, concurrency: int) -> None:
    """``sarcoscreen worker``: one worker in this process, or `concurrency` supervised processes, until
    SIGTERM/SIGINT."""
    if concurrency == 1:
        worker = Worker(settings)
        stop_on_signals(worker.stop)
        worker.run()
        return
    stop = threading.Event()
    stop_on_signals(stop.set)
    pool = WorkerPool(settings, concurrency)
    pool.start()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        pool.stop()
