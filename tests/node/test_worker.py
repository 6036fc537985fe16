"""The worker in-process on real spool files and a real database (SQLite and PostgreSQL): an input problem (the
loader refuses the series) fails the job at once with its reason, a transient failure is retried after the backoff
and then failed with its error text; malformed patient and study values neither fail the job nor reach a log or
the database; a phantom series' measurements are stored as the job's measurements.json has them."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pydicom
import pytest
from ct_series_factory import CTSeries, edit_file, write_ct_series
from invalid_values import invalid_series_transform, markers, without_uids
from node_support import decide_series, deliveries_of, jobs_of, rows, spool_series
from pydicom.dataset import Dataset
from sqlalchemy import Engine, select

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
from sarcoscreen.node.worker import Worker


def _settings(db_url: str, tmp_path: Path, **sections: dict[str, object]) -> Settings:
    values: dict[str, dict[str, object]] = {
        "database": {"url": db_url},
        "storage": {"data_dir": str(tmp_path / "data"), "min_free_mb": 0},
        "network": {"stable_age_s": 0.001},
        "queue": {"max_attempts": 2, "backoff_s": 0, "backoff_max_s": 0, "lease_s": 60, "heartbeat_s": 5},
    }
    for name, section in sections.items():
        values[name] = {**values.get(name, {}), **section}
    return Settings.model_validate(values)


def _queue_series(engine: Engine, settings: Settings, series: CTSeries) -> None:
    """Put the series' files into the spool, index them and let the watcher queue the job (as `serve` would)."""
    spool = Spool(settings.storage.spool, settings.storage.quarantine)
    for path, uid in zip(series.files, series.sop_instance_uids, strict=True):
        spool.store(path.read_bytes(), series.series_instance_uid, uid)
    assert reconcile(engine, spool).indexed == len(series.files)
    assert [o.outcome for o in decide_series(engine, settings)] == ["queued"]


def _events(engine: Engine, job_id: int) -> list[str]:
    return rows(engine, select(Event.kind).where(Event.job_id == job_id).order_by(Event.id))


def _huge(ds: Dataset, _: int) -> None:
    ds.Rows = ds.Columns = 65535


# Input problems that no later attempt can change: (how the series of 5 slices is written, the start of the job's
# error).
PERMANENT: dict[str, tuple[dict[str, object], str]] = {
    "mixed pixel grid": (
        {"transform": lambda ds, n: setattr(ds, "PixelSpacing", ["0.5", "0.5"]) if n == 2 else None},
        "the series cannot be loaded: the images differ in Rows, Columns or PixelSpacing"),
    "duplicated position": (
        {"transform": lambda ds, n: setattr(ds, "ImagePositionPatient", ["-12", "-30", "100"]) if n == 3 else None},
        "the series cannot be loaded: 1 slice position(s) hold more than one image"),
    "missing pixel data": ({}, "the series cannot be loaded: PixelData (7FE0,0010) is missing"),
    "pixel spacing 0": ({"transform": lambda ds, n: setattr(ds, "PixelSpacing", ["0", "0"])},
                        "the series cannot be loaded: PixelSpacing (0028,0030) is not two positive numbers"),
    "65535 x 65535": ({"transform": _huge}, "the series cannot be loaded: Rows x Columns 65535 x 65535"),
    "beyond worker.max_volume_mb": (
        {"rows": 512, "columns": 512},
        "the series cannot be loaded: the volume of 5 slices of 512 x 512 pixels would take 2.5 MiB as int16 HU, "
        "more than the limit of 1.0 MiB (worker.max_volume_mb)"),
}


@pytest.mark.parametrize(
    ("db_url", "problem"),
    [*(("sqlite", problem) for problem in PERMANENT),
     pytest.param("postgresql", "pixel spacing 0", marks=pytest.mark.postgres)],  # the queue's part is SQL
    indirect=["db_url"],
)
def test_an_input_problem_fails_the_job_at_once_with_its_reason(db_url: str, tmp_path: Path, problem: str) -> None:
    options, reason = PERMANENT[problem]
    limit = {"worker": {"max_volume_mb": 1}} if "max_volume_mb" in problem else {}
    settings = _settings(db_url, tmp_path, queue={"max_attempts": 3}, routing={"min_slices": 2}, **limit)
    series = write_ct_series(tmp_path / "ct", 5, **options)  # type: ignore[arg-type]
    engine = create_engine_from_url(db_url)
    try:
        _queue_series(engine, settings, series)
        if problem == "missing pixel data":  # accepted and indexed, then refused by the loader
            edit_file(next(settings.storage.spool.rglob("*.dcm")), lambda ds: delattr(ds, "PixelData"))
        worker = Worker(settings, engine)
        assert worker.run_one()
        assert not worker.run_one()  # nothing left: not queued again
        (job,) = jobs_of(engine)
        state = rows(engine, select(Series.state))
        kinds = _events(engine, job.id)
    finally:
        engine.dispose()
    assert (job.status, job.attempts) == (JobStatus.FAILED, 1)
    assert job.error.startswith(reason), job.error
    assert state == [SeriesState.FAILED]
    assert kinds == ["job.queued", "job.claimed", "job.failed"]


def test_a_transient_failure_is_retried_then_failed_with_its_error(db_url: str, tmp_path: Path) -> None:
    """The spool files are gone when the worker looks (a storage mount that is away): retried after the backoff,
    failed after the last attempt."""
    settings = _settings(db_url, tmp_path, routing={"min_slices": 2})
    series = write_ct_series(tmp_path / "ct", 5)
    engine = create_engine_from_url(db_url)
    try:
        _queue_series(engine, settings, series)
        for path in settings.storage.spool.rglob("*.dcm"):
            path.unlink()
        worker = Worker(settings, engine)
        assert worker.run_one()  # attempt 1 fails, queued again (no backoff here)
        (job,) = jobs_of(engine)
        assert (job.status, job.attempts) == (JobStatus.QUEUED, 1)
        assert worker.run_one()  # attempt 2 fails: the last one
        (job,) = jobs_of(engine)
        assert not worker.run_one()  # nothing left to do
        state = rows(engine, select(Series.state))
        kinds = _events(engine, job.id)
    finally:
        engine.dispose()
    assert (job.status, job.attempts) == (JobStatus.FAILED, 2)
    assert job.error == "no stored instance of the series is in the spool"
    assert state == [SeriesState.FAILED]
    assert kinds == ["job.queued", "job.claimed", "instance.missing", "job.retry", "job.claimed", "job.failed"]


def test_malformed_patient_and_study_values_neither_fail_the_job_nor_reach_a_log(
        db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 11: PatientBirthDate 1901-02-03 failed the job three times and put the date in the log, jobs.error
    and `sarcoscreen jobs`. Now every copied attribute may be malformed: the job is done, its SR and key image
    are written, and no malformed value is in a log record or any text of the database."""
    settings = _settings(db_url, tmp_path, routing={"require_gluteal_region": False, "min_slices": 2})
    series = write_ct_series(tmp_path / "ct", 5, 16, 16, transform=invalid_series_transform())
    caplog.clear()  # pydicom warns, with the values, while the test writes them
    engine = create_engine_from_url(db_url)
    try:
        with caplog.at_level(logging.DEBUG):
            _queue_series(engine, settings, series)
            assert Worker(settings, engine).run_one()
        (job,) = jobs_of(engine)
        texts = [*rows(engine, select(Event.message)), job.error or "", *rows(engine, select(Series.skip_reason))]
        kinds = _events(engine, job.id)
    finally:
        engine.dispose()
    assert job.status is JobStatus.DONE, job.error
    assert "output.repaired" in kinds
    assert sorted(p.name for p in settings.storage.outputs.rglob("*.dcm")) == ["key_image.dcm", "sr.dcm"]
    recorded = without_uids("\n".join([caplog.text, *(t or "" for t in texts)]))
    assert [m for m in markers() if m in recorded] == []


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
    spool = spool_series(settings, phantom.dicom_dir)
    engine = create_engine_from_url(db_url)
    try:
        reconcile(engine, spool)
        assert [o.outcome for o in decide_series(engine, settings)] == ["queued"]
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


def test_the_worker_success_path_stores_outputs_by_the_uids_written_and_queues_one_delivery_each(
        db_url: str, tmp_path: Path) -> None:
    """The whole success path in this process: a phantom hip series is analysed by the one pipeline, and its SEG,
    SR and key image are stored with the SOP class, instance and series UIDs the files hold (the writer's UIDs,
    not read back), one pending delivery per output and destination, the job done with its engine and settings
    digest, the series processed, and the measurements the same as `sarcoscreen analyze` gives for the series."""
    from sarcoscreen.db.models import DeliveryStatus, Job, Output
    from sarcoscreen.node.analysis import AnalysisOptions, analyze_series

    settings = Settings.model_validate({
        "database": {"url": db_url},
        "storage": {"data_dir": str(tmp_path / "data"), "min_free_mb": 0},
        "network": {"stable_age_s": 0.001},
        "destinations": [{"name": "pacs", "ae_title": "PACS", "host": "127.0.0.1", "port": 11112},
                         {"name": "viewer", "ae_title": "VIEW", "host": "127.0.0.1", "port": 11113}],
    })
    phantom = make_phantom(PhantomParameters(matrix=96, slice_mm=5.0, seed=5), tmp_path / "phantom")
    spool_series(settings, phantom.dicom_dir)
    engine = create_engine_from_url(db_url)
    try:
        reconcile(engine, spool=Spool(settings.storage.spool, settings.storage.quarantine))
        assert [o.outcome for o in decide_series(engine, settings)] == ["queued"]
        assert Worker(settings, engine).run_one()
        (job,) = jobs_of(engine)
        outputs = rows(engine, select(Output).where(Output.job_id == job.id).order_by(Output.id))
        deliveries = deliveries_of(engine)
        state = rows(engine, select(Series.state))
        kinds = _events(engine, job.id)
        stored_job = rows(engine, select(Job))[0]
    finally:
        engine.dispose()
    assert job.status is JobStatus.DONE, job.error
    assert state == [SeriesState.PROCESSED]
    instances = len(list(phantom.dicom_dir.glob("*.dcm")))
    assert (stored_job.engine_name, stored_job.instance_count) == ("threshold", instances)
    assert stored_job.settings_hash == AnalysisOptions.from_settings(settings).settings_digest
    assert [o.kind.value for o in outputs] == ["SEG", "SR", "KEY_IMAGE"]
    for output in outputs:
        written = pydicom.dcmread(settings.storage.outputs / output.path, stop_before_pixels=True)
        assert (output.sop_class_uid, output.sop_instance_uid, output.series_instance_uid) == (
            written.SOPClassUID, written.SOPInstanceUID, written.SeriesInstanceUID)
    assert sorted((o.kind.value, d.destination_name) for d, o in deliveries) == sorted(
        (o.kind.value, name) for o in outputs for name in ("pacs", "viewer"))
    assert {d.status for d, _ in deliveries} == {DeliveryStatus.PENDING}
    assert kinds[-1] == "job.done"

    analyzed = analyze_series(phantom.dicom_dir, tmp_path / "analyze", settings)
    (from_worker,) = settings.storage.outputs.rglob("measurements.json")
    worker_values = json.loads(from_worker.read_text())
    analyze_values = json.loads((tmp_path / "analyze" / "measurements.json").read_text())
    assert analyzed.report is not None
    for key in ("structures", "groups", "screening"):
        assert worker_values[key] == analyze_values[key], key


def test_a_series_short_of_the_gluteal_region_is_skipped_by_the_worker_and_by_analyze(
        db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The coverage rule lives with the measurement (`gluteal_region_missed`) and the one pipeline applies it: a
    legs-only series is skipped by the worker (series skipped with the reason, no outputs) and `analyze` says the
    same and exits 1; with routing.require_gluteal_region off it is measured."""
    from sarcoscreen.inference.phantom import Fov
    from sarcoscreen.node.analysis import analyze_series
    from sarcoscreen.node.cli import main

    routing: dict[str, object] = {"min_slices": 2}
    settings = _settings(db_url, tmp_path, routing=routing)
    phantom = make_phantom(PhantomParameters(matrix=128, slice_mm=5.0, fov=Fov.LEGS, seed=14), tmp_path / "legs")
    spool_series(settings, phantom.dicom_dir)
    engine = create_engine_from_url(db_url)
    try:
        reconcile(engine, Spool(settings.storage.spool, settings.storage.quarantine))
        assert [o.outcome for o in decide_series(engine, settings)] == ["queued"]
        assert Worker(settings, engine).run_one()
        (job,) = jobs_of(engine)
        (series,) = rows(engine, select(Series))
    finally:
        engine.dispose()
    reason = "the images do not reach the gluteal region (no gluteal muscle found)"
    assert (job.status, series.state, series.skip_reason) == (JobStatus.DONE, SeriesState.SKIPPED, reason)
    assert not list(settings.storage.outputs.rglob("*.dcm"))

    capsys.readouterr()
    code = main(["analyze", str(phantom.dicom_dir), "--out", str(tmp_path / "out"), "--no-progress"])
    assert code == 1
    assert reason in capsys.readouterr().err
    assert not (tmp_path / "out" / "measurements.json").exists()

    measured = analyze_series(phantom.dicom_dir, tmp_path / "anyway",
                              _settings(db_url, tmp_path, routing={**routing, "require_gluteal_region": False}))
    assert measured.report is not None
    assert measured.skip_reason is None
