"""The worker in-process on real spool files and a real database (SQLite and PostgreSQL): an attempt that fails
(here the loader refuses the series) is retried after the backoff and then failed with its error text."""

from __future__ import annotations

from pathlib import Path

from ct_series_factory import write_ct_series
from node_support import jobs_of, rows
from sqlalchemy import select

from sarcoscreen.db.models import Event, JobStatus, Series, SeriesState
from sarcoscreen.db.session import create_engine_from_url
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
