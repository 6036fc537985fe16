"""Retention on SQLite and PostgreSQL: which spool and output files go, which stay, and what a purged series does
when it is received again. Real spool files, real rows written by the node's own index; the clock is moved by
dating the rows back (the database's own time decides, as in the node)."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest
from filesystems import read_only, small_filesystem
from node_support import SARCOSCREEN, add_series, received, rows
from sqlalchemy import Engine, select, update

from sarcoscreen.db.models import (
    Delivery,
    DeliveryStatus,
    Event,
    Instance,
    InstanceState,
    Job,
    JobStatus,
    Output,
    OutputKind,
    Series,
    SeriesState,
    utcnow,
)
from sarcoscreen.db.queue import JobStateError, retry
from sarcoscreen.db.session import session_scope
from sarcoscreen.node.config import Settings
from sarcoscreen.node.instance_index import SqlInstanceIndex
from sarcoscreen.node.reconcile import reconcile
from sarcoscreen.node.retention import purge_expired
from sarcoscreen.node.series_watcher import SeriesWatcher
from sarcoscreen.node.spool import Spool

SLICES = 4
PAYLOAD = b"\0" * 128 + b"DICM" + b"x" * 2000
"""Spool file content: retention never reads the files, it deletes them."""


def _settings(tmp_path: Path, db_url: str, **storage: float) -> Settings:
    return Settings.model_validate({
        "database": {"url": db_url},
        "storage": {"data_dir": str(tmp_path / "data"), "min_free_mb": 0, "retention_days": 30,
                    "outputs_retention_days": 30, **storage},
        "network": {"stable_age_s": 0.001},
        "routing": {"min_slices": SLICES},
    })


def _series(engine: Engine, spool: Spool, uid: str, *, age_days: float, state: SeriesState = SeriesState.PROCESSED,
            job: JobStatus | None = JobStatus.DONE) -> int:
    """A series of `SLICES` spool files and rows, decided `age_days` ago, with a job in state `job`."""
    for number in range(1, SLICES + 1):
        spool.store(PAYLOAD, uid, f"{uid}.{number}")
    series_id = add_series(engine, uid, SLICES)
    then = utcnow() - timedelta(days=age_days)
    with session_scope(engine) as session:
        session.execute(update(Series).where(Series.id == series_id).values(state=state, last_received_at=then))
        if job is not None:
            session.add(Job(series_id=series_id, status=job, attempts=1, max_attempts=3, next_attempt_at=then,
                            finished_at=then if job is not JobStatus.QUEUED else None))
    return series_id


def _job_with_outputs(engine: Engine, outputs_root: Path, uid: str, *, age_days: float,
                      deliveries: tuple[DeliveryStatus, ...]) -> tuple[int, Path]:
    """A finished job of a new series with a SEG and an SR on disk and the given deliveries of each."""
    with session_scope(engine) as session:
        series_id = add_series(engine, uid, 1)
        then = utcnow() - timedelta(days=age_days)
        job = Job(series_id=series_id, status=JobStatus.DONE, attempts=1, max_attempts=3, next_attempt_at=then,
                  finished_at=then)
        session.add(job)
        session.flush()
        folder = outputs_root / uid / f"job-{job.id}"
        folder.mkdir(parents=True)
        (folder / "measurements.json").write_text("{}")
        for kind in (OutputKind.SEG, OutputKind.SR):
            (folder / f"{kind.value}.dcm").write_bytes(PAYLOAD)
            output = Output(job_id=job.id, kind=kind, sop_class_uid="1.2.3", sop_instance_uid=f"{uid}.9{len(kind)}",
                            series_instance_uid=f"{uid}.9", path=f"{uid}/job-{job.id}/{kind.value}.dcm",
                            created_at=then)
            session.add(output)
            for number, status in enumerate(deliveries):
                session.add(Delivery(output=output, destination_name=f"pacs{number}", destination_ae_title="PACS",
                                     host="127.0.0.1", port=104, status=status, attempts=1, next_attempt_at=then))
        return job.id, folder


def _states(engine: Engine, series_id: int) -> set[InstanceState]:
    return set(rows(engine, select(Instance.state).where(Instance.series_id == series_id)))


def test_only_decided_series_past_their_retention_lose_their_spool_files(db_url: str, engine: Engine,
                                                                        tmp_path: Path) -> None:
    settings = _settings(tmp_path, db_url, outputs_retention_days=0)
    spool = Spool(settings.storage.spool, settings.storage.quarantine)
    expired = _series(engine, spool, "1.2.826.0.1.40", age_days=40)
    skipped = _series(engine, spool, "1.2.826.0.1.41", age_days=40, state=SeriesState.SKIPPED, job=None)
    recent = _series(engine, spool, "1.2.826.0.1.10", age_days=10)
    receiving = _series(engine, spool, "1.2.826.0.1.42", age_days=40, state=SeriesState.RECEIVING, job=None)
    # Decided, but a job of it is queued again (a user's retry): its files are needed.
    running = _series(engine, spool, "1.2.826.0.1.43", age_days=40, job=JobStatus.QUEUED)

    dry = purge_expired(engine, settings, dry_run=True)
    assert (dry.series, dry.instances, dry.bytes_freed) == (2, 2 * SLICES, 0)
    assert len(list(spool.walk())) == 5 * SLICES  # a dry run deletes nothing
    assert _states(engine, expired) == {InstanceState.STORED}

    report = purge_expired(engine, settings)
    assert (report.series, report.instances, report.errors) == (2, 2 * SLICES, 0)
    assert report.bytes_freed == 2 * SLICES * len(PAYLOAD)
    left = {series_uid for series_uid, _, _ in spool.walk()}
    assert left == {"1.2.826.0.1.10", "1.2.826.0.1.42", "1.2.826.0.1.43"}
    assert not (settings.storage.spool / "1.2.826.0.1.40").exists()  # the empty series folder went too
    assert _states(engine, expired) == _states(engine, skipped) == {InstanceState.PURGED}
    for kept in (recent, receiving, running):
        assert _states(engine, kept) == {InstanceState.STORED}
    events = rows(engine, select(Event.message).where(Event.kind == "series.purged", Event.series_id == expired))
    assert events == [f"retention (30 days after the last instance) ended: {SLICES} spool files deleted; receive "
                      "the series again to analyse it again"]
    assert purge_expired(engine, settings).series == 0  # nothing left to do
    # The start-up reconciliation knows purged rows have no file on purpose:
    assert reconcile(engine, spool).missing == 0
    assert _states(engine, expired) == {InstanceState.PURGED}


def test_a_purged_series_is_skipped_until_it_is_received_again_whole(db_url: str, engine: Engine,
                                                                     tmp_path: Path) -> None:
    settings = _settings(tmp_path, db_url)
    spool = Spool(settings.storage.spool, settings.storage.quarantine)
    uid = "1.2.826.0.1.50"
    series_id = _series(engine, spool, uid, age_days=40)
    purge_expired(engine, settings)
    index, watcher = SqlInstanceIndex(engine), SeriesWatcher(engine, settings)
    # The node starts listening before the series comes back: the watcher decides nothing until it has listened for
    # stable_age_s, so a first round right at the receive would find nothing (a race on a fast machine).
    assert watcher.run_once() == []

    def receive(number: int) -> None:  # as the SCP does: spool, then index
        stored = spool.store(PAYLOAD, uid, f"{uid}.{number}")
        index.add(received(uid, number, relative_path=stored.relative_path, size=stored.size,
                           sha256=stored.sha256))

    receive(1)  # one instance again: the series is decided anew, and skipped with the reason
    assert rows(engine, select(Series.state).where(Series.id == series_id)) == [SeriesState.RECEIVING]
    (outcome,) = watcher.run_once()
    assert outcome.outcome == "skipped"
    assert outcome.detail == (f"{SLICES - 1} of its {SLICES} instances were purged by retention "
                              "(storage.retention_days); send the whole series again to analyse it")
    for number in range(2, SLICES + 1):  # the rest: the whole series is back and analysed again
        receive(number)
    assert _states(engine, series_id) == {InstanceState.STORED}
    (outcome,) = watcher.run_once()
    assert outcome.outcome == "queued"
    assert [job.status for job in rows(engine, select(Job).where(Job.series_id == series_id).order_by(Job.id))] == [
        JobStatus.DONE, JobStatus.QUEUED]


def test_output_folders_go_only_when_every_delivery_is_sent_or_cancelled(db_url: str, engine: Engine,
                                                                          tmp_path: Path) -> None:
    settings = _settings(tmp_path, db_url, retention_days=0)
    outputs = settings.storage.outputs
    delivered, gone = _job_with_outputs(engine, outputs, "1.2.826.0.2.1", age_days=40,
                                        deliveries=(DeliveryStatus.SENT, DeliveryStatus.CANCELLED))
    _, pending = _job_with_outputs(engine, outputs, "1.2.826.0.2.2", age_days=40,
                                   deliveries=(DeliveryStatus.SENT, DeliveryStatus.PENDING))
    failed_job, failed = _job_with_outputs(engine, outputs, "1.2.826.0.2.3", age_days=40,
                                           deliveries=(DeliveryStatus.FAILED,))
    _, recent = _job_with_outputs(engine, outputs, "1.2.826.0.2.4", age_days=5, deliveries=(DeliveryStatus.SENT,))
    _, undelivered = _job_with_outputs(engine, outputs, "1.2.826.0.2.5", age_days=40, deliveries=())

    assert purge_expired(engine, settings, dry_run=True).jobs == 2
    assert gone.is_dir()
    report = purge_expired(engine, settings)
    assert (report.jobs, report.series, report.errors) == (2, 0, 0)
    assert report.bytes_freed == 2 * (2 * len(PAYLOAD) + 2)  # two DICOM objects and measurements.json, twice
    assert not gone.exists()
    assert not undelivered.exists()  # no destination configured: nothing to wait for
    assert pending.is_dir()
    assert failed.is_dir()
    assert recent.is_dir()
    purged = rows(engine, select(Output.job_id).where(Output.purged_at.is_not(None)).distinct())
    assert delivered in purged
    assert failed_job not in purged
    with pytest.raises(JobStateError, match="outputs were deleted at the end of their retention period"):
        retry(engine, delivered)
    assert "deliveries due again" in retry(engine, failed_job)  # its files are still there


def test_retention_off_keeps_everything_and_purge_says_so(db_url: str, engine: Engine, tmp_path: Path) -> None:
    import subprocess

    settings = _settings(tmp_path, db_url, retention_days=0, outputs_retention_days=0)
    spool = Spool(settings.storage.spool, settings.storage.quarantine)
    _series(engine, spool, "1.2.826.0.1.60", age_days=4000)
    report = purge_expired(engine, settings)
    assert (report.series, report.jobs) == (0, 0)
    assert len(list(spool.walk())) == SLICES
    config = tmp_path / "node.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n[storage]\ndata_dir = "{tmp_path / "data"}"\n'
                      'retention_days = 0\noutputs_retention_days = 0\n', encoding="utf-8")
    out = subprocess.run([*SARCOSCREEN, "--config", str(config), "purge"], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    assert "retention is off" in out
    config.write_text(f'[database]\nurl = "{db_url}"\n[storage]\ndata_dir = "{tmp_path / "data"}"\n'
                      'retention_days = 1\n', encoding="utf-8")
    out = subprocess.run([*SARCOSCREEN, "--config", str(config), "purge", "--dry-run"], capture_output=True,
                         text=True, check=True, timeout=120).stdout
    assert f"would purge the spool files of 1 series ({SLICES} instances)" in out
    assert len(list(spool.walk())) == SLICES


def test_the_sweeper_thread_purges_on_its_own(db_url: str, engine: Engine, tmp_path: Path) -> None:
    from node_support import wait_for

    from sarcoscreen.node.retention import RetentionSweeper

    settings = _settings(tmp_path, db_url, retention_check_s=0.2)
    spool = Spool(settings.storage.spool, settings.storage.quarantine)
    series_id = _series(engine, spool, "1.2.826.0.1.70", age_days=31)
    sweeper = RetentionSweeper(engine, settings)
    sweeper.start()
    try:
        wait_for("the sweeper's purge", lambda: _states(engine, series_id) == {InstanceState.PURGED}, timeout=30)
    finally:
        sweeper.stop()
    assert list(spool.walk()) == []


def test_a_read_only_disk_is_not_purged_and_the_rows_stay(db_url: str, engine: Engine, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """Rows change before files go: on a disk that cannot delete, no row may say 'purged' for a file still there
    (and one warning per folder, not one error per file)."""
    with small_filesystem(tmp_path / "data", 1024) as data:
        settings = _settings(tmp_path, db_url)
        spool = Spool(settings.storage.spool, settings.storage.quarantine)
        series_id = _series(engine, spool, "1.2.826.0.1.80", age_days=40)
        job_id, folder = _job_with_outputs(engine, settings.storage.outputs, "1.2.826.0.1.81", age_days=40,
                                           deliveries=(DeliveryStatus.SENT,))
        read_only(data)
        with caplog.at_level(logging.WARNING, logger="sarcoscreen"):
            report = purge_expired(engine, settings)
        assert (report.series, report.jobs, report.errors) == (0, 0, 2)
        assert _states(engine, series_id) == {InstanceState.STORED}
        assert rows(engine, select(Output.purged_at).where(Output.job_id == job_id)) == [None, None]
        assert len(list(spool.walk())) == SLICES
        assert folder.is_dir()
        assert [r.getMessage() for r in caplog.records] == [
            f"retention: the spool {settings.storage.spool} is not writable (read-only file system): its expired "
            "files stay until it is",
            f"retention: the outputs folder {settings.storage.outputs} is not writable (read-only file system): its "
            "expired folders stay until it is"]
