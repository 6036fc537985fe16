"""The console's queue page on its real server and a real database (SQLite and PostgreSQL): jobs failed by the real
worker, retried and cancelled with the page's buttons exactly as ``sarcoscreen jobs retry|cancel`` does, with the
outcome shown; deliveries per destination."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from ct_series_factory import write_ct_series
from node_support import SARCOSCREEN, decide_series, done_job_with_outputs, jobs_of
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from web_support import add_console_user, console_settings, running_console, signed_in

from sarcoscreen.db.models import Event, Job, JobStatus, Series
from sarcoscreen.db.session import create_engine_from_url
from sarcoscreen.node.config import Settings
from sarcoscreen.node.reconcile import reconcile
from sarcoscreen.node.spool import Spool
from sarcoscreen.node.worker import Worker


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    base = console_settings(db_url, tmp_path)
    return Settings.model_validate({
        **base.model_dump(mode="json", exclude={"destinations"}),
        "network": {"stable_age_s": 0.001},
        "routing": {"min_slices": 2},
        "queue": {"max_attempts": 2, "backoff_s": 0, "backoff_max_s": 0, "lease_s": 60, "heartbeat_s": 5},
    })


@pytest.fixture
def db(db_url: str) -> Iterator[Engine]:
    engine = create_engine_from_url(db_url)
    add_console_user(engine)
    yield engine
    engine.dispose()


def _failed_jobs(db: Engine, settings: Settings, folder: Path, count: int) -> list[int]:
    """`count` series whose jobs the real worker failed: their spool files went away before it looked (retried
    once, then failed)."""
    spool = Spool(settings.storage.spool, settings.storage.quarantine)
    for n in range(count):
        series = write_ct_series(folder / f"ct{n}", 3, series_instance_uid=f"1.2.826.0.1.3680043.10.5.{n + 1}")
        for path, uid in zip(series.files, series.sop_instance_uids, strict=True):
            spool.store(path.read_bytes(), series.series_instance_uid, uid)
    reconcile(db, spool)
    assert [o.outcome for o in decide_series(db, settings)] == ["queued"] * count
    for path in settings.storage.spool.rglob("*.dcm"):
        path.unlink()
    worker = Worker(settings, db)
    while worker.run_one():
        pass
    jobs = jobs_of(db)
    assert [(j.status, j.attempts) for j in jobs] == [(JobStatus.FAILED, 2)] * count
    return [j.id for j in jobs]


def _state(db: Engine, job_id: int) -> tuple[object, ...]:
    """What a retry or cancel changes: the job, its series' state and the last event."""
    with Session(db) as session:
        job = session.get(Job, job_id)
        assert job is not None
        series_state = session.execute(select(Series.state).where(Series.id == job.series_id)).scalar_one()
        event = session.execute(select(Event.kind, Event.message).where(Event.job_id == job_id)
                                .order_by(Event.id.desc()).limit(1)).one()
        return (job.status, job.attempts, job.reason, job.finished_at is None, job.error, series_state,
                event.kind, event.message.replace(str(job_id), "N"))


def _flash(html: str) -> str:
    match = re.search(r'<p class="flash (ok|bad)" role="status">([^<]*)</p>', html)
    assert match, "no outcome shown"
    return f"{match[1]}: {match[2]}"


def _cli(settings: Settings, folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    config = folder / "cli.toml"
    config.write_text(f'[database]\nurl = "{settings.database_url}"\n\n[storage]\ndata_dir = '
                      f'"{settings.storage.data_dir}"\n', encoding="utf-8")
    return subprocess.run([*SARCOSCREEN, "--config", str(config), *args], capture_output=True, text=True,
                          timeout=120, check=False)


def test_retry_and_cancel_through_the_console_change_a_job_as_the_command_line_does(
        settings: Settings, db: Engine, tmp_path: Path) -> None:
    by_console, by_cli = _failed_jobs(db, settings, tmp_path, 2)
    with running_console(settings, db) as url, signed_in(url) as browser:
        queue = browser.get("/queue").text
        assert f'action="/queue/{by_console}/retry"' in queue
        assert f'action="/queue/{by_console}/cancel"' not in queue  # a failed job has nothing to cancel
        assert "no stored instance of the series is in the spool" in queue  # the worker's error
        retried = browser.post(f"/queue/{by_console}/retry", {"query": "status=failed"}, token_from="/queue")
        assert (retried.status_code, retried.headers["location"]) == (303, "/queue?status=failed")
        assert _flash(browser.get(retried.headers["location"]).text) == f"ok: job {by_console} (failed) queued again"
        cli = _cli(settings, tmp_path, "jobs", "retry", str(by_cli))
        assert cli.returncode == 0, cli.stderr
        assert cli.stdout == f"job {by_cli} (failed) queued again\n"
        assert _state(db, by_console) == _state(db, by_cli)
        assert _state(db, by_console)[:2] == (JobStatus.QUEUED, 0)

        queue = browser.get("/queue").text
        assert f'action="/queue/{by_console}/cancel"' in queue
        again = browser.post(f"/queue/{by_console}/retry", {}, token_from="/queue")
        assert _flash(browser.get(again.headers["location"]).text) == (
            f"bad: job {by_console} is queued: only failed, cancelled or done jobs are retried")
        cancelled = browser.post(f"/queue/{by_console}/cancel", {}, token_from="/queue")
        assert _flash(browser.get(cancelled.headers["location"]).text) == f"ok: job {by_console} (queued) cancelled"
        assert _cli(settings, tmp_path, "jobs", "cancel", str(by_cli)).stdout == f"job {by_cli} (queued) cancelled\n"
        assert _state(db, by_console) == _state(db, by_cli)
        assert _state(db, by_console)[0] is JobStatus.CANCELLED
        missing = browser.post("/queue/999999/retry", {}, token_from="/queue")
        assert _flash(browser.get(missing.headers["location"]).text) == "bad: there is no job 999999"
        assert browser.post("/queue/not-a-job/retry", {}, token_from="/queue").status_code == 404
        assert not [link for link in browser.shown_links if "CRAFTED" in link]  # the series' PatientID


def test_deliveries_per_destination_and_cancelling_and_resending_them(settings: Settings, db: Engine) -> None:
    job_id, _deliveries = done_job_with_outputs(db)
    with running_console(settings, db) as url, signed_in(url) as browser:
        queue = browser.get("/queue").text
        for name, address in (("pacs", "PACS@127.0.0.1:104"), ("archive", "ARCH@127.0.0.1:105")):
            assert re.search(rf"<td>{name}</td><td>{re.escape(address)}</td>\s*<td class=\"num\">0</td>"
                             r"<td class=\"num\">2</td>", queue), name
        assert f'action="/queue/{job_id}/cancel"' in queue
        cancelled = browser.post(f"/queue/{job_id}/cancel", {}, token_from="/queue")
        assert _flash(browser.get(cancelled.headers["location"]).text) == (
            f"ok: job {job_id} is done: 4 unsent deliveries cancelled")
        resent = browser.post(f"/queue/{job_id}/retry", {}, token_from="/queue")
        assert _flash(browser.get(resent.headers["location"]).text) == f"ok: job {job_id}: 4 deliveries due again"
        assert browser.get("/queue?status=done").text.count('<tr class="done"') == 1
        assert "No jobs." in browser.get("/queue?status=failed").text
