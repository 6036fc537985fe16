"""The probes (``/healthz``, ``/readyz``) and the Health page through a real HTTP server, and `health_report` on a
real database (SQLite and PostgreSQL) with known rows: a read-only spool (a real read-only file system) or a database
that is gone makes ``/readyz`` 503 with the reason; the probes need no sign-in, the Health page does."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from dicom_peers import free_port
from filesystems import read_only, small_filesystem
from node_support import done_job_with_outputs, queued_job
from sqlalchemy import Engine, select, update
from web_support import node_settings, running_console

from sarcoscreen.db import migrate
from sarcoscreen.db.models import DeliveryStatus, Job
from sarcoscreen.db.outbox import claim_due, record_outcome
from sarcoscreen.db.queue import claim
from sarcoscreen.db.session import create_engine_from_url, session_scope
from sarcoscreen.inference.error_text import REDACTED
from sarcoscreen.node.health import health_report
from sarcoscreen.node.spool import INCOMING_DIR


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = create_engine_from_url(db_url)
    yield engine
    engine.dispose()


# --- the probes ---------------------------------------------------------------------------------------------------


def test_the_probes_and_metrics_need_no_sign_in_and_the_health_page_does(engine: Engine, db_url: str,
                                                                         tmp_path: Path) -> None:
    settings = node_settings(db_url, tmp_path / "data", storage={"min_free_mb": 1})
    with running_console(settings, engine) as url:
        healthz = httpx.get(f"{url}/healthz")
        readyz = httpx.get(f"{url}/readyz")
        metrics = httpx.get(f"{url}/metrics")
        page = httpx.get(f"{url}/health", follow_redirects=False)
    assert (healthz.status_code, healthz.text) == (200, "ok\n")
    assert readyz.status_code == 200, readyz.text
    assert readyz.json() == {"ready": True, "checks": {
        "database": {"ok": True, "detail": "answers"},
        "spool": {"ok": True, "detail": f"{settings.storage.spool / INCOMING_DIR} is writable"},
        "spool_space": {"ok": True, "detail": readyz.json()["checks"]["spool_space"]["detail"]}}}
    assert "reserve 1 MiB (storage.min_free_mb)" in readyz.json()["checks"]["spool_space"]["detail"]
    assert list((settings.storage.spool / INCOMING_DIR).iterdir()) == []  # the probe's file is removed
    assert metrics.status_code == 200
    assert (page.status_code, page.headers["location"]) == (303, "/signin")
    for response in (healthz, readyz, metrics):
        assert response.headers["cache-control"] == "no-store"


def test_readyz_is_503_when_the_spool_is_read_only(tmp_path: Path) -> None:
    """A real read-only file system under the spool (what the kernel does to a failing disk): 503, the spool check
    says why; the database check still passes."""
    url = f"sqlite:///{tmp_path / 'db' / 'node.db'}"
    migrate.upgrade(url)
    engine = create_engine_from_url(url)
    try:
        with small_filesystem(tmp_path / "data", 1024) as data:
            settings = node_settings(url, data, web={"secret_file": str(tmp_path / "web-secret")},
                                     storage={"min_free_mb": 1})
            with running_console(settings, engine) as base:
                assert httpx.get(f"{base}/readyz").status_code == 200
                read_only(data)
                response = httpx.get(f"{base}/readyz")
                assert httpx.get(f"{base}/healthz").status_code == 200  # alive all the same
    finally:
        engine.dispose()
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert response.json()["ready"] is False
    assert checks["database"]["ok"] is True
    assert checks["spool"] == {"ok": False, "detail": f"cannot write to {settings.storage.spool / INCOMING_DIR}: "
                                                      "read-only file system"}


def test_readyz_is_503_below_the_disk_reserve(engine: Engine, db_url: str, tmp_path: Path) -> None:
    free_mb = shutil.disk_usage(tmp_path).free // 2**20
    settings = node_settings(db_url, tmp_path / "data", storage={"min_free_mb": free_mb * 2 + 1})
    with running_console(settings, engine) as url:
        response = httpx.get(f"{url}/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert (checks["database"]["ok"], checks["spool"]["ok"], checks["spool_space"]["ok"]) == (True, True, False)
    assert f"reserve {free_mb * 2 + 1} MiB (storage.min_free_mb)" in checks["spool_space"]["detail"]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_readyz_is_503_when_the_database_is_gone(tmp_path: Path, backend: str) -> None:
    """SQLite: the database's folder deleted; PostgreSQL: nothing listens at the server's address."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'db' / 'node.db'}"
        migrate.upgrade(url)
    else:
        url = f"postgresql+psycopg://node:secret@127.0.0.1:{free_port()}/sarcoscreen?connect_timeout=5"
    engine = create_engine_from_url(url)
    try:
        settings = node_settings(url, tmp_path / "data", storage={"min_free_mb": 1})
        with running_console(settings, engine) as base:
            if backend == "sqlite":
                assert httpx.get(f"{base}/readyz").status_code == 200
                shutil.rmtree(tmp_path / "db")
                engine.dispose()  # no pooled connection to the deleted file
            response = httpx.get(f"{base}/readyz", timeout=30)
            healthz = httpx.get(f"{base}/healthz")
    finally:
        engine.dispose()
    assert response.status_code == 503
    assert healthz.status_code == 200
    checks = response.json()["checks"]
    assert checks["spool"]["ok"] is True
    assert checks["database"]["ok"] is False
    assert checks["database"]["detail"].startswith("the database does not answer: OperationalError")
    assert "secret" not in response.text


# --- health_report and the Health page ------------------------------------------------------------------------


def _known_rows(engine: Engine) -> dict[str, int]:
    """A done job whose SEG was sent to pacs and refused by archive (failed for good, with a patient's name in the
    error), its SR pending for both; a running job and a queued job that has waited 300 s for a worker."""
    done, _ = done_job_with_outputs(engine, "1.2.5.1")
    running = queued_job(engine, "1.2.3.1")
    waiting = queued_job(engine, "1.2.3.2")
    assert claim(engine, lease_s=60) is not None
    with session_scope(engine) as session:
        due_at = session.execute(select(Job.next_attempt_at).where(Job.id == waiting)).scalar_one()
        session.execute(update(Job).where(Job.id == waiting).values(next_attempt_at=due_at - timedelta(seconds=300)))
    due = {(d.destination_name, d.kind): d for d in claim_due(engine, hold_s=600)}
    assert record_outcome(engine, due[("pacs", "SEG")], accepted=True, status_code=0xB000, error="", retry_s=1,
                          retry_max_s=1, max_attempts=0) is DeliveryStatus.SENT
    assert record_outcome(engine, due[("archive", "SEG")], accepted=False, status_code=0xA700,
                          error="refused: 'DOE^JOHN' born 19010203", retry_s=1, retry_max_s=1,
                          max_attempts=1) is DeliveryStatus.FAILED
    return {"done": done, "running": running, "waiting": waiting}


def test_health_report_on_known_rows(engine: Engine, db_url: str, tmp_path: Path) -> None:
    settings = node_settings(db_url, tmp_path / "data", storage={"min_free_mb": 3})
    jobs = _known_rows(engine)
    report = health_report(settings, engine)
    assert report.database_ok
    assert report.database_error is None
    assert [(d.folder, d.min_free_bytes, d.below_reserve, d.error) for d in report.disks] == [
        ("spool", 3 * 2**20, False, None), ("outputs", 3 * 2**20, False, None)]
    assert report.disks[0].free_bytes == pytest.approx(shutil.disk_usage(settings.storage.spool).free, rel=0.05)
    queue = report.queue
    assert queue is not None
    assert (queue.queued, queue.due, queue.running, queue.oldest_due_job_id) == (1, 1, 1, jobs["waiting"])
    assert 300 <= queue.oldest_waiting_s < 360
    (running,) = report.running
    assert (running.job_id, running.attempt, running.max_attempts) == (jobs["running"], 1, 3)
    assert running.heartbeat_at is not None
    assert running.lease_expires_at is not None
    assert running.lease_expires_at - running.heartbeat_at == timedelta(seconds=60)
    assert running.lease_owner
    assert ":" in running.lease_owner
    by_name = {d.name: d for d in report.destinations}
    assert list(by_name) == ["archive", "pacs", "viewer"]
    pacs, archive, viewer = by_name["pacs"], by_name["archive"], by_name["viewer"]
    assert (pacs.counts[DeliveryStatus.SENT], pacs.counts[DeliveryStatus.PENDING]) == (1, 1)
    assert pacs.outcomes.last_success_status == 0xB000
    assert pacs.outcomes.last_success_at is not None
    assert pacs.outcomes.last_failure_at is None
    assert (archive.counts[DeliveryStatus.FAILED], archive.counts[DeliveryStatus.PENDING]) == (1, 1)
    assert archive.outcomes.last_success_at is None
    assert archive.outcomes.last_failure_status == 0xA700
    assert archive.outcomes.last_failure_at is not None
    assert archive.outcomes.last_failure_error == f"refused: {REDACTED} born {REDACTED}"
    assert viewer.configured
    assert sum(viewer.counts.values()) == 0
    assert viewer.outcomes.last_failure_at is None
    assert report.problems == ("destination archive: 1 deliveries failed for good",)


def test_a_running_job_whose_lease_expired_is_a_problem(engine: Engine, db_url: str, tmp_path: Path) -> None:
    job = queued_job(engine, "1.2.3.1")
    assert claim(engine, lease_s=60) is not None
    with session_scope(engine) as session:
        expires = session.execute(select(Job.lease_expires_at).where(Job.id == job)).scalar_one()
        session.execute(update(Job).where(Job.id == job).values(lease_expires_at=expires - timedelta(seconds=120)))
    report = health_report(node_settings(db_url, tmp_path / "data", storage={"min_free_mb": 1}), engine)
    assert report.problems == (f"running jobs whose lease expired without a heartbeat: {job}",)


def test_health_report_when_the_database_is_gone(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db' / 'node.db'}"
    migrate.upgrade(url)
    engine = create_engine_from_url(url)
    settings = node_settings(url, tmp_path / "data", storage={"min_free_mb": 1})
    shutil.rmtree(tmp_path / "db")
    try:
        report = health_report(settings, engine)
    finally:
        engine.dispose()
    assert not report.database_ok
    assert report.database_error is not None
    assert report.database_error.startswith("OperationalError: (sqlite3.OperationalError) unable to open database")
    assert (report.queue, report.running) == (None, ())
    assert [d.name for d in report.destinations] == ["pacs", "archive", "viewer"]
    assert report.problems[0].startswith("the database does not answer: OperationalError")
    assert [d.free_bytes is not None for d in report.disks] == [True, True]


def test_the_health_page_shows_the_report_to_a_signed_in_user(engine: Engine, db_url: str, tmp_path: Path) -> None:
    """Signed in through a reverse proxy's header (web.trusted_user_header): the page shows the queue, the running
    job and each destination with its last success and failure - the error scrubbed. Without the header: 401."""
    settings = node_settings(db_url, tmp_path / "data", web={"trusted_user_header": "X-Remote-User"},
                             storage={"min_free_mb": 1})
    jobs = _known_rows(engine)
    with running_console(settings, engine) as url:
        anonymous = httpx.get(f"{url}/health")
        response = httpx.get(f"{url}/health", headers={"X-Remote-User": "qa.lead"})
    assert anonymous.status_code == 401
    assert response.status_code == 200, response.text
    page = response.text
    assert "<h1>Health</h1>" in page
    assert "qa.lead" in page
    assert "No problem found" not in page
    assert "destination archive: 1 deliveries failed for good" in page
    assert f"(job {jobs['waiting']}, due since" in page
    assert f'<td class="num">{jobs["running"]}</td>' in page
    assert "0xB000" in page
    assert "0xA700" in page
    assert "refused: &lt;value&gt; born &lt;value&gt;" in page
    assert "DOE" not in page
    assert "19010203" not in page
