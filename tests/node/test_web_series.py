"""The console's series page and overlay route on its real server and a real database (SQLite and PostgreSQL), for
a phantom series analysed by the real worker and sent by the real sender (to dcmtk's storescp, and to a port where
nothing listens): its structures, groups, engine, landmarks, the timeline of its events in order, the outputs'
UIDs as the database has them, the overlay as the file holds it; anonymous requests refused; the overlay gone
(404) once retention deleted the job's folder; why a failed or skipped series needs a look, at the top."""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote_plus

import pytest
from dicom_peers import dcmtk_storescp
from node_support import decide_series, rows, spool_series
from sqlalchemy import Engine, or_, select
from web_support import Browser, add_console_user, running_console, signed_in, write_result

from sarcoscreen.db.models import (
    Delivery,
    DeliveryStatus,
    Event,
    GroupResult,
    Job,
    JobStatus,
    Output,
    Series,
    SeriesState,
    StructureMeasurement,
    Study,
)
from sarcoscreen.db.session import create_engine_from_url
from sarcoscreen.inference.phantom import PhantomParameters, make_phantom
from sarcoscreen.node.config import Settings
from sarcoscreen.node.delivery import Sender
from sarcoscreen.node.loopback import free_port
from sarcoscreen.node.reconcile import reconcile
from sarcoscreen.node.retention import purge_expired
from sarcoscreen.node.worker import Worker

_KIND = re.compile(r'<tr class="[^"]*" data-kind="([^"]+)">\s*<td>([^<]+)</td>')


@pytest.fixture
def db(db_url: str) -> Iterator[Engine]:
    engine = create_engine_from_url(db_url)
    add_console_user(engine)
    yield engine
    engine.dispose()


def _settings(db_url: str, folder: Path, destinations: list[dict[str, object]], **storage: object) -> Settings:
    return Settings.model_validate({
        "database": {"url": db_url},
        "storage": {"data_dir": str(folder / "data"), "min_free_mb": 0, **storage},
        "network": {"stable_age_s": 0.001},
        "delivery": {"timeout_s": 10, "retry_s": 60},
        "destinations": destinations,
        "web": {"port": 0},
    })


def _analyse(settings: Settings, db: Engine, folder: Path) -> tuple[int, int]:
    """A phantom hip series into the spool, decided and analysed by the real worker; (series id, job id)."""
    phantom = make_phantom(PhantomParameters(matrix=96, slice_mm=5.0, seed=7), folder / "phantom")
    spool = spool_series(settings, phantom.dicom_dir)
    reconcile(db, spool)
    assert [o.outcome for o in decide_series(db, settings)] == ["queued"]
    assert Worker(settings, db).run_one()
    (job,) = rows(db, select(Job))
    assert job.status is JobStatus.DONE, job.error
    return job.series_id, job.id


def _timeline(page: str) -> list[tuple[str, str]]:
    """The timeline's (kind, time) pairs, in the order shown."""
    table = page.split('<table class="timeline">', 1)[1].split("</table>", 1)[0]
    return [(kind, when) for kind, when in _KIND.findall(table)]


def test_the_series_page_shows_what_the_worker_and_the_sender_did(db_url: str, db: Engine, tmp_path: Path) -> None:
    with dcmtk_storescp(tmp_path / "pacs-received", ae_title="PACS") as pacs:
        settings = _settings(db_url, tmp_path, [
            {"name": "pacs", "ae_title": "PACS", "host": "127.0.0.1", "port": pacs.port},
            {"name": "down", "ae_title": "DOWN", "host": "127.0.0.1", "port": free_port()}])
        series_id, job_id = _analyse(settings, db, tmp_path)
        Sender(db, settings).run_once()
    outputs = rows(db, select(Output).where(Output.job_id == job_id).order_by(Output.id))
    structures = rows(db, select(StructureMeasurement).where(StructureMeasurement.job_id == job_id))
    groups = rows(db, select(GroupResult).where(GroupResult.job_id == job_id))
    job = rows(db, select(Job))[0]
    events = rows(db, select(Event.kind).where(or_(Event.series_id == series_id, Event.job_id == job_id))
                  .order_by(Event.occurred_at, Event.id))
    patient_id = rows(db, select(Study.patient_id))[0]
    folder = settings.storage.outputs / rows(db, select(Series.series_instance_uid))[0] / f"job-{job_id}"
    measured = json.loads((folder / "measurements.json").read_text())

    with running_console(settings, db) as url, signed_in(url) as browser:
        response = browser.get(f"/series/{series_id}")
        assert response.status_code == 200, response.text
        page = html.unescape(response.text)
        overlay = browser.get(f"/jobs/{job_id}/overlay.png")
        assert browser.get(f"/series/{series_id}?job={job_id}").status_code == 200
        assert browser.get(f"/series/{series_id}?job={job_id + 1}").status_code == 404
        assert browser.get(f"/series/{series_id}?job=first").status_code == 400
        assert browser.get(f"/series/{series_id + 1}").status_code == 404
        assert browser.get(f"/jobs/{job_id + 1}/overlay.png").status_code == 404

    # the overlay: the file, byte for byte, linked from the page
    assert overlay.status_code == 200
    assert overlay.headers["content-type"] == "image/png"
    assert overlay.content == (folder / "overlay.png").read_bytes()
    assert f'<img src="/jobs/{job_id}/overlay.png"' in page
    # structures, groups on every side with the screening, engine, density rule, height, landmarks
    assert len(structures) > 5
    for s in structures:
        assert f"<td>{s.name}</td>" in page, s.name
    for g in groups:
        assert f'data-group="{g.muscle_group}" data-side="{g.side.value}"' in page
    both = [g for g in groups if g.side.value == "both"]
    for g in both:
        assert f"side rule: {g.screening_side_rule}" in page
        assert g.classification_reason
        assert g.classification_reason in page
    assert f"{job.engine_name} {job.engine_version}" in page
    assert structures[0].density_rule in page
    assert f"(source: {both[0].height_source.value})" in page
    assert measured["landmarks"]
    for landmark in measured["landmarks"]:
        assert f"<td>{landmark['name'].replace('_', ' ')}</td>" in page
    # the outputs: exactly the database's rows, in order, with their UIDs
    assert re.findall(r'data-sop-instance="([^"]+)"', page) == [o.sop_instance_uid for o in outputs]
    for o in outputs:
        assert o.series_instance_uid in page
        assert o.sop_class_uid in page
    # the timeline: every event of the series, oldest first, with the arrivals and the deliveries' state
    shown = _timeline(page)
    times = [when for _, when in shown]
    assert times == sorted(times)
    assert [kind for kind, _ in shown if kind not in ("series.received", "delivery.state")] == events
    assert shown[0][0] == "series.received"
    kinds = [kind for kind, _ in shown]
    assert kinds.index("job.queued") < kinds.index("job.claimed") < kinds.index("job.done") \
        < kinds.index("delivery.sent")
    assert kinds.count("delivery.sent") == len(outputs)
    assert kinds.count("delivery.retry") == len(outputs)
    assert f"job {job_id} to pacs (PACS@127.0.0.1:{pacs.port}): {len(outputs)} sent" in page
    assert f"job {job_id} to down (DOWN@127.0.0.1:" in page
    assert f"): {len(outputs)} pending" in page
    assert rows(db, select(Delivery.status).where(Delivery.destination_name == "down")) == [
        DeliveryStatus.PENDING] * len(outputs)
    # the patient ID is on the page, never in a link
    assert patient_id
    assert f"<dd>{patient_id}</dd>" in page
    assert not [u for u in browser.shown_links + browser.requested if patient_id in unquote_plus(u)]


def test_anonymous_requests_are_refused(db_url: str, db: Engine, tmp_path: Path) -> None:
    series_id = write_result(db, "1.2.41.1", "PAT-41")
    with running_console(_settings(db_url, tmp_path, []), db) as url:
        browser = Browser(url)
        try:
            page = browser.get(f"/series/{series_id}")
            overlay = browser.get("/jobs/1/overlay.png")
        finally:
            browser.close()
    assert (page.status_code, page.headers["location"]) == (303, "/signin")
    assert overlay.status_code == 401
    assert "PAT-41" not in page.text + overlay.text


def test_the_overlay_is_gone_once_retention_deleted_the_job_folder(db_url: str, db: Engine, tmp_path: Path) -> None:
    with dcmtk_storescp(tmp_path / "pacs-received", ae_title="PACS") as pacs:
        settings = _settings(db_url, tmp_path, [
            {"name": "pacs", "ae_title": "PACS", "host": "127.0.0.1", "port": pacs.port}],
            outputs_retention_days=1e-6, retention_days=0)  # 0.09 s
        series_id, job_id = _analyse(settings, db, tmp_path)
        assert Sender(db, settings).run_once() > 0
    names = rows(db, select(StructureMeasurement.name).where(StructureMeasurement.job_id == job_id))
    with running_console(settings, db) as url, signed_in(url) as browser:
        assert browser.get(f"/jobs/{job_id}/overlay.png").status_code == 200
        time.sleep(0.2)
        report = purge_expired(db, settings)
        assert report.jobs == 1, report.summary()
        gone = browser.get(f"/jobs/{job_id}/overlay.png")
        page = html.unescape(browser.get(f"/series/{series_id}").text)
    assert gone.status_code == 404
    assert "deleted by retention" in gone.text
    assert f"output files of job {job_id} were deleted at the end of their retention period" in page
    assert "<img" not in page
    assert "file deleted" in page
    assert "outputs.purged" in page
    for name in names:  # the results stay
        assert f"<td>{name}</td>" in page
    assert "deleted by retention, or not written" in page  # the landmarks were in measurements.json only


def test_why_a_failed_or_skipped_series_needs_a_look_is_at_the_top(db_url: str, db: Engine, tmp_path: Path) -> None:
    failed = write_result(db, "1.2.42.1", "PAT-42", state=SeriesState.FAILED, status=JobStatus.FAILED,
                          error="the series cannot be loaded: gantry tilt")
    skipped = write_result(db, "1.2.42.2", "PAT-43", state=SeriesState.SKIPPED, status=None)
    flagged = write_result(db, "1.2.42.3", "PAT-44", suspected=True, smi=5.1)
    with running_console(_settings(db_url, tmp_path, []), db) as url, signed_in(url) as browser:
        pages = {name: html.unescape(browser.get(f"/series/{i}").text)
                 for name, i in (("failed", failed), ("skipped", skipped), ("flagged", flagged))}
        results = browser.get("/results").text
    assert 'href="/results?flagged=1"' in results
    assert 'href="/results?state=failed"' in results

    def top(page: str) -> str:
        return page.split('<ul class="attention"', 1)[1].split("</ul>", 1)[0]

    assert "failed after 1 of 3 attempts: the series cannot be loaded: gantry tilt" in top(pages["failed"])
    assert "skipped: routing: body part HEAD" in top(pages["skipped"])
    assert "Gluteal muscles: sarcopenia suspected" in top(pages["flagged"])
    assert "No job of this series has finished with results." in pages["failed"]
