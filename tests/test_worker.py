"""The worker in-process on real spool files and a real database (SQLite and PostgreSQL): an attempt that fails
(here the loader refuses the series) is retried after the backoff and then failed with its error text; a phantom
series' measurements are stored as the job's measurements.json has them."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from ct_series_factory import write_ct_series
from node_support import jobs_of, rows
from sqlalchemy import select

from sarcoscreen.db.models import (
    Completeness,
    Event,
    GroupResult,
    JobStatus,
    Series,
    SeriesState,
    StructureMeasurement,
)
from sarcoscreen.db.session import create_engine_from_url
from sarcoscreen.inference.catalogue import Group
from sarcoscreen.inference.phantom import PhantomParameters, make_phantom
from sarcoscreen.node.config import Settings
from sarcoscreen.node.reconcile import reconcile
from sarcoscreen.node.spool import Spool
from sarcoscreen.node.stability import SeriesWatcher
from sarcoscreen.node.worker import Worker


def test_a_failing_attempt_is_retried_then_failed_with_its_error(db_url: str, tmp_path: Path) -> None:
    settings = Settings.model_validate({
        "database": {"url": db_url},
        "storage": {"data_dir": str(tmp_path / "data"), "min_free_mb": 0},
        "network": {"stable_age_s": 0.001},
        "queue": {"max_attempts": 2, "backoff_s": 0, "backoff_max_s": 0, "lease_s": 60, "heartbeat_s": 5},
    })
    # 25 slices, one with another pixel spacing: routing accepts the series, the loader refuses it.
    series = write_ct_series(tmp_path / "ct", 25, Modality="CT",
                             transform=lambda ds, n: setattr(ds, "PixelSpacing", ["0.5", "0.5"]) if n == 7 else None)
    spool = Spool(settings.storage.spool, settings.storage.quarantine)
    for path, uid in zip(series.files, series.sop_instance_uids, strict=True):
        spool.store(path.read_bytes(), series.series_instance_uid, uid)
    engine = create_engine_from_url(db_url)
    try:
        assert reconcile(engine, spool).indexed == 25
        assert [o.outcome for o in SeriesWatcher(engine, settings).run_once()] == ["queued"]
        worker = Worker(settings, engine)
        assert worker.run_one()  # attempt 1 fails, queued again (no backoff here)
        (job,) = jobs_of(engine)
        assert (job.status, job.attempts) == (JobStatus.QUEUED, 1)
        assert worker.run_one()  # attempt 2 fails: the last one
        (job,) = jobs_of(engine)
        assert not worker.run_one()  # nothing left to do
        state = rows(engine, select(Series.state))
        kinds = rows(engine, select(Event.kind).where(Event.job_id == job.id).order_by(Event.id))
    finally:
        engine.dispose()
    assert (job.status, job.attempts) == (JobStatus.FAILED, 2)
    assert job.error.startswith("the series cannot be loaded: the images differ in Rows, Columns or PixelSpacing")
    assert state == [SeriesState.FAILED]
    assert kinds == ["job.queued", "job.claimed", "job.retry", "job.claimed", "job.failed"]


def _approx(value: float | None) -> object:
    """`value` as measurements.json rounds it (6 decimals), or ``None``."""
    return None if value is None else pytest.approx(value, abs=1e-6)


def test_the_worker_stores_every_group_with_its_in_scan_mass_as_measured(db_url: str, tmp_path: Path) -> None:
    """A phantom hip series through the worker: every group of `Group` (the upper gluteal group too) is stored per
    side with completeness, in-scan mass and shortfall as the job's measurements.json has them, and every
    structure with its extent verdict."""
    settings = Settings.model_validate({
        "database": {"url": db_url},
        "storage": {"data_dir": str(tmp_path / "data"), "min_free_mb": 0},
        "network": {"stable_age_s": 0.001},
        "outputs": {"key_image": "none"},
    })
    phantom = make_phantom(PhantomParameters(matrix=96, slice_mm=5.0, seed=21), tmp_path / "phantom")
    spool = Spool(settings.storage.spool, settings.storage.quarantine)
    for path in sorted(phantom.dicom_dir.glob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        spool.store(path.read_bytes(), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID))
    engine = create_engine_from_url(db_url)
    try:
        reconcile(engine, spool)
        assert [o.outcome for o in SeriesWatcher(engine, settings).run_once()] == ["queued"]
        assert Worker(settings, engine).run_one()
        (job,) = jobs_of(engine)
        groups = rows(engine, select(GroupResult).where(GroupResult.job_id == job.id))
        structures = rows(engine, select(StructureMeasurement).where(StructureMeasurement.job_id == job.id))
    finally:
        engine.dispose()
    assert job.status is JobStatus.DONE, job.error
    (written,) = settings.storage.outputs.rglob("measurements.json")
    measured = json.loads(written.read_text())
    assert {(g.muscle_group, g.side.value) for g in groups} == {(g.value, s) for g in Group
                                                                 for s in ("left", "right", "both")}
    stored = {(g.muscle_group, g.side.value): g for g in groups}
    for m in measured["groups"]:
        row = stored[(m["group"], m["side"])]
        assert row.completeness.value == m["completeness"]
        assert row.reason == m["reason"]
        for column in ("smm_g", "smi_kg_m2", "in_scan_smm_g", "shortfall_mm"):
            assert getattr(row, column) == _approx(m[column]), column
        if row.completeness is Completeness.COMPLETE:
            assert row.in_scan_smm_g == row.smm_g
    by_key = {s.structure_key: s for s in structures}
    for m in measured["structures"]:
        row = by_key[m["key"]]
        assert (row.truncated, row.extent_uncertain, row.shortfall_mm, row.extent_note or "") == (
            m["truncated"], m["extent_uncertain"], m["shortfall_mm"], m["extent_note"])
