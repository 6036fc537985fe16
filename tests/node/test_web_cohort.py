"""The console's cohort view on its real server and a real database (SQLite and PostgreSQL): counts per group and
sex of the series measured, flagged, not suspected and not classified in the period (each series once, with its
latest done job), the period filter changing them, the SMI picture as a PNG, the cut-offs of the calibration file
(or "no calibration: no cut-offs"); and a phantom classified by the real worker with a calibration file counted
as the worker classified it, its series page naming the cut-off and the calibration."""

from __future__ import annotations

import hashlib
import html
import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from node_support import decide_series, rows, spool_series
from PIL import Image
from sqlalchemy import Engine, select
from web_support import Browser, add_console_user, running_console, signed_in

from sarcoscreen.db.models import (
    Classification,
    Completeness,
    GroupResult,
    GroupSide,
    HeightSource,
    Job,
    JobStatus,
    Series,
    SeriesState,
    Study,
)
from sarcoscreen.db.session import create_engine_from_url, session_scope
from sarcoscreen.inference.phantom import PhantomParameters, make_phantom
from sarcoscreen.node.config import Settings
from sarcoscreen.node.reconcile import reconcile
from sarcoscreen.node.worker import Worker

GROUPS = ("gluteal", "above_knee", "all", "upper_gluteal")
SUSPECTED, NOT_SUSPECTED, NOT_CLASSIFIED = (Classification.SUSPECTED, Classification.NOT_SUSPECTED,
                                            Classification.NOT_CLASSIFIED)
_ROW = re.compile(r'<tr data-group="([^"]+)" data-sex="([^"]+)">\s*<td>[^<]*</td>\s*<td>[^<]*</td>\s*'
                  r'<td class="num">(\d+)</td>\s*<td class="num measured">(\d+)</td>\s*'
                  r'<td class="num flagged">(\d+)[^\n]*</td>\s*<td class="num not-suspected">(\d+)</td>\s*'
                  r'<td class="num not-classified">(\d+)</td>')


@pytest.fixture
def db(db_url: str) -> Iterator[Engine]:
    engine = create_engine_from_url(db_url)
    add_console_user(engine)
    yield engine
    engine.dispose()


def _calibration(folder: Path) -> Path:
    path = folder / "calibration.json"
    path.write_text(json.dumps({
        "format": "sarcoscreen-calibration/1", "name": "site-T test cut-offs", "side_rule": "mean",
        "primary_group": "gluteal", "cutoffs": [
            {"group": "gluteal", "sex": "F", "smi_cutoff_kg_m2": 5.0},
            {"group": "gluteal", "sex": "M", "smi_cutoff_kg_m2": 6.5},
            {"group": "above_knee", "sex": "F", "smi_cutoff_kg_m2": 1.0}]}), encoding="utf-8")
    return path


def _settings(db_url: str, folder: Path, calibration: Path | None) -> Settings:
    return Settings.model_validate({
        "database": {"url": db_url},
        "storage": {"data_dir": str(folder / "data"), "min_free_mb": 0},
        "network": {"stable_age_s": 0.001},
        "measurement": {"calibration_file": str(calibration) if calibration else None},
        "web": {"port": 0},
    })


def _job(series: Series, days_ago: float, gluteal: tuple[float | None, Classification],
         status: JobStatus = JobStatus.DONE) -> Job:
    """A job of `series` finished `days_ago` days ago; when done, the gluteal group's both-sides row has the
    screening SMI and classification `gluteal`, the other groups are truncated and not classified."""
    finished = datetime.now(UTC) - timedelta(days=days_ago)
    job = Job(series=series, status=status, finished_at=finished, created_at=finished - timedelta(minutes=1),
              attempts=1, engine_name="threshold" if status is JobStatus.DONE else None,
              engine_version="2.0" if status is JobStatus.DONE else None)
    if status is JobStatus.DONE:
        for group in GROUPS:
            smi, classification = gluteal if group == "gluteal" else (None, NOT_CLASSIFIED)
            job.groups.append(GroupResult(
                muscle_group=group, side=GroupSide.BOTH,
                completeness=Completeness.COMPLETE if smi is not None else Completeness.TRUNCATED,
                reason="test", height_source=HeightSource.DICOM, height_m=1.7, screening_smi_kg_m2=smi,
                screening_side_rule="mean", classification=classification,
                calibration_name="site-T test cut-offs" if classification is not NOT_CLASSIFIED else None))
    return job


def _series(db: Engine, uid: str, sex: str | None, *jobs: tuple[float, tuple[float | None, Classification],
                                                                  JobStatus]) -> None:
    with session_scope(db) as session:
        series = Series(study=Study(study_instance_uid=f"{uid}.0", patient_id=f"P-{uid}", patient_sex=sex),
                        series_instance_uid=uid, modality="CT", state=SeriesState.PROCESSED, instance_count=3)
        session.add(series)
        for days_ago, gluteal, status in jobs:
            session.add(_job(series, days_ago, gluteal, status))


def _cohort_rows(db: Engine) -> None:
    done = JobStatus.DONE
    _series(db, "1.2.50.1", "F", (10, (4.2, SUSPECTED), done))
    _series(db, "1.2.50.2", "F", (20, (5.5, NOT_SUSPECTED), done))
    _series(db, "1.2.50.3", "M", (30, (6.0, SUSPECTED), done))
    _series(db, "1.2.50.4", "M", (40, (7.2, NOT_SUSPECTED), done))
    _series(db, "1.2.50.5", "M", (50, (None, NOT_CLASSIFIED), done))  # gluteal truncated: no SMI
    _series(db, "1.2.50.6", "O", (15, (5.0, NOT_CLASSIFIED), done))  # no cut-off for sex O
    _series(db, "1.2.50.7", "F", (200, (4.0, SUSPECTED), done))  # outside the last 90 days
    _series(db, "1.2.50.8", "M", (300, (8.0, NOT_SUSPECTED), done))
    # counted once, with its latest done job: the newer failed job does not hide it, the older done one is not it
    _series(db, "1.2.50.9", "F", (60, (3.0, SUSPECTED), done), (5, (6.1, NOT_SUSPECTED), done),
            (1, (None, NOT_CLASSIFIED), JobStatus.FAILED))


def _counts(page: str) -> dict[tuple[str, str], tuple[int, ...]]:
    """(group, sex) -> (series, measured, flagged, not suspected, not classified) as the table shows them."""
    return {(g, s): tuple(int(n) for n in numbers) for g, s, *numbers in _ROW.findall(page)}


def _png(response_content: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(response_content))
    image.load()
    return image


def test_counts_per_group_and_sex_with_the_period_and_the_picture(db_url: str, db: Engine, tmp_path: Path) -> None:
    _cohort_rows(db)
    today = datetime.now(UTC).date()
    with running_console(_settings(db_url, tmp_path, _calibration(tmp_path)), db) as url, signed_in(url) as browser:
        page = html.unescape(browser.get("/cohort").text)
        last_year = html.unescape(browser.get(f"/cohort?since={today - timedelta(days=365)}").text)
        narrow = html.unescape(browser.get(
            f"/cohort?since={today - timedelta(days=35)}&until={today - timedelta(days=12)}").text)
        women = html.unescape(browser.get("/cohort?group=gluteal&sex=F").text)
        src = re.search(r'<img src="([^"]+)"', page)[1]  # type: ignore[index]
        picture = browser.get(src)
        one_panel = browser.get("/cohort/smi.png?group=gluteal&sex=F")
        empty = browser.get(f"/cohort/smi.png?since={today - timedelta(days=3000)}&until="
                            f"{today - timedelta(days=2000)}")
        bad = [browser.get(f"/cohort?{q}").status_code
               for q in ("since=yesterday", "until=2026-13-01", "group=legs", "sex=X",
                         f"since={today}&until={today - timedelta(days=1)}")]
    counts = _counts(page)
    # (series, measured, flagged, not suspected, not classified)
    assert counts[("gluteal", "F")] == (3, 3, 1, 2, 0)
    assert counts[("gluteal", "M")] == (3, 2, 1, 1, 1)
    assert counts[("gluteal", "other")] == (1, 1, 0, 0, 1)
    assert counts[("above_knee", "F")] == (3, 0, 0, 0, 3)
    assert set(counts) == {(g, s) for g in GROUPS for s in ("F", "M", "other")}
    assert "<strong>7</strong> series measured" in page
    assert "cut-offs of calibration site-T test cut-offs (sha256 " in page
    assert "The stored classifications were made by: site-T test cut-offs (5 series)." in page
    # the period filter changes the counts
    year = _counts(last_year)
    assert year[("gluteal", "F")] == (4, 4, 2, 2, 0)
    assert year[("gluteal", "M")] == (4, 3, 1, 2, 1)
    assert _counts(narrow)[("gluteal", "F")] == (1, 1, 0, 1, 0)  # 12 to 35 days ago: 15, 20 and 30 days
    assert _counts(narrow)[("gluteal", "M")] == (1, 1, 1, 0, 0)
    assert _counts(narrow)[("gluteal", "other")] == (1, 1, 0, 0, 1)
    assert set(_counts(women)) == {("gluteal", "F")}
    # the picture: a PNG, one panel per group and sex, smaller for one group and sex
    assert src == f"/cohort/smi.png?since={today - timedelta(days=90)}&until={today}"
    assert picture.status_code == 200
    assert picture.headers["content-type"] == "image/png"
    full, single = _png(picture.content), _png(one_panel.content)
    assert full.format == single.format == "PNG"
    assert full.width > single.width
    assert full.height > single.height
    assert empty.status_code == 200
    assert _png(empty.content).format == "PNG"
    assert bad == [400] * 5


def test_without_a_calibration_there_are_no_cut_offs(db_url: str, db: Engine, tmp_path: Path) -> None:
    _cohort_rows(db)
    with running_console(_settings(db_url, tmp_path, None), db) as url, signed_in(url) as browser:
        page = browser.get("/cohort").text
        picture = browser.get("/cohort/smi.png")
    assert "no calibration: no cut-offs." in page
    assert _counts(html.unescape(page))[("gluteal", "F")] == (3, 3, 1, 2, 0)  # as stored when measured
    assert picture.status_code == 200
    assert picture.content.startswith(b"\x89PNG")


def test_anonymous_requests_are_refused(db_url: str, db: Engine, tmp_path: Path) -> None:
    with running_console(_settings(db_url, tmp_path, None), db) as url:
        browser = Browser(url)
        try:
            page, picture = browser.get("/cohort"), browser.get("/cohort/smi.png")
        finally:
            browser.close()
    assert (page.status_code, page.headers["location"]) == (303, "/signin")
    assert picture.status_code == 401


def test_a_phantom_classified_by_the_worker_is_counted_as_classified(db_url: str, db: Engine, tmp_path: Path) -> None:
    """The worker classifies a woman's phantom with the calibration file: gluteal below its cut-off (the phantom's
    muscles are small), above-knee above it, the other groups without a cut-off."""
    calibration = _calibration(tmp_path)
    settings = _settings(db_url, tmp_path, calibration)
    phantom = make_phantom(PhantomParameters(matrix=96, slice_mm=5.0, seed=7, sex="F"), tmp_path / "phantom")
    spool = spool_series(settings, phantom.dicom_dir)
    reconcile(db, spool)
    assert [o.outcome for o in decide_series(db, settings)] == ["queued"]
    assert Worker(settings, db).run_one()
    (job,) = rows(db, select(Job))
    assert job.status is JobStatus.DONE, job.error
    stored = {g.muscle_group: g for g in rows(db, select(GroupResult).where(GroupResult.side == GroupSide.BOTH))}
    assert stored["gluteal"].classification is SUSPECTED
    assert stored["above_knee"].classification is NOT_SUSPECTED
    with running_console(settings, db) as url, signed_in(url) as browser:
        counts = _counts(html.unescape(browser.get("/cohort").text))
        series_page = html.unescape(browser.get(f"/series/{job.series_id}").text)
    assert counts[("gluteal", "F")] == (1, 1, 1, 0, 0)
    assert counts[("above_knee", "F")] == (1, 1, 0, 1, 0)
    assert counts[("upper_gluteal", "F")][4] + counts[("all", "F")][4] == 2  # no cut-off: not classified
    assert counts[("gluteal", "M")] == (0, 0, 0, 0, 0)
    # the series page: the flag with its reason at the top, the cut-off and the calibration's name and sha256
    top = series_page.split('<ul class="attention"', 1)[1].split("</ul>", 1)[0]
    assert f"Gluteal muscles: sarcopenia suspected - {stored['gluteal'].classification_reason}" in top
    assert "cut-off 5.00" in series_page
    assert "site-T test cut-offs" in series_page
    assert hashlib.sha256(calibration.read_bytes()).hexdigest() in series_page
    assert stored["gluteal"].calibration_sha256 == hashlib.sha256(calibration.read_bytes()).hexdigest()
