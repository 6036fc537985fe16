"""The console's results page on its real server and a real database (SQLite and PostgreSQL): the command line's
filters plus engine and group completeness, sorting by column, paging, CSV and JSON exports that hold exactly the
rows shown, flagged and failed series at a glance, and patient IDs that never reach a URL, a link or the access
log."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote_plus

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from web_support import (
    Browser,
    add_console_user,
    console_settings,
    running_console,
    series_ids_shown,
    signed_in,
    write_result,
)

from sarcoscreen.db.models import Completeness, JobStatus, SeriesState
from sarcoscreen.db.queries import results
from sarcoscreen.db.session import create_engine_from_url
from sarcoscreen.node.results_view import format_results

PATIENTS = ("PAT-0001", "PAT-0002", "PAT-0003", "PAT-0004", "PAT-0005", "PAT-0006", "PAT-0007")


@pytest.fixture
def db(db_url: str) -> Iterator[Engine]:
    engine = create_engine_from_url(db_url)
    add_console_user(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def ids(db: Engine) -> dict[str, int]:
    """Seven series, newest first by their job's end: processed (one flagged, one with a muscle not found, one
    truncated, one by the U-Net with an uncertain structure), failed, skipped, receiving."""
    made = {
        "flagged": write_result(db, "1.2.40.1", PATIENTS[0], suspected=True, smi=5.1, hours_ago=1,
                                study_date="2026-03-01"),
        "failed": write_result(db, "1.2.40.2", PATIENTS[1], state=SeriesState.FAILED, status=JobStatus.FAILED,
                               error="the series cannot be loaded: gantry tilt", hours_ago=2,
                               study_date="2026-01-15"),
        "not_found": write_result(db, "1.2.40.3", PATIENTS[2], engine="bayesian-unet",
                                  gluteal=Completeness.NOT_FOUND, hours_ago=3, study_date="2026-02-10"),
        "plain": write_result(db, "1.2.40.4", PATIENTS[3], smi=8.2, hours_ago=4, study_date="2025-12-24"),
        "truncated": write_result(db, "1.2.40.5", PATIENTS[4], gluteal=Completeness.TRUNCATED, hours_ago=50,
                                  study_date="2026-02-11"),
        "skipped": write_result(db, "1.2.40.6", PATIENTS[5], state=SeriesState.SKIPPED, status=None,
                                hours_ago=60, study_date="2026-02-12"),
        "uncertain": write_result(db, "1.2.40.7", PATIENTS[6], engine="bayesian-unet", uncertain=True,
                                  hours_ago=70, study_date="2026-02-13"),
    }
    return made


@pytest.fixture
def console(db_url: str, tmp_path: Path, db: Engine) -> Iterator[str]:
    with running_console(console_settings(db_url, tmp_path), db) as url:
        yield url


def _shown(browser: Browser, query: str) -> list[int]:
    response = browser.get(f"/results?{query}" if query else "/results")
    assert response.status_code == 200, response.text
    return series_ids_shown(response.text)


def test_filters_as_the_command_line_plus_engine_and_completeness(console: str, ids: dict[str, int]) -> None:
    newest_first = [ids[k] for k in ("flagged", "failed", "not_found", "plain", "truncated", "skipped",
                                      "uncertain")]
    with signed_in(console) as browser:
        assert _shown(browser, "") == newest_first
        assert _shown(browser, "flagged=1") == [ids["flagged"]]
        assert _shown(browser, "state=failed") == [ids["failed"]]
        assert _shown(browser, "state=skipped") == [ids["skipped"]]
        assert _shown(browser, "qa=1") == [ids["not_found"], ids["uncertain"]]
        assert _shown(browser, "engine=bayesian-unet") == [ids["not_found"], ids["uncertain"]]
        assert _shown(browser, "completeness=truncated") == [ids["truncated"]]
        assert _shown(browser, "group=gluteal&completeness=not+found") == [ids["not_found"]]
        assert _shown(browser, "group=above_knee&completeness=not+found") == []
        assert _shown(browser, "since=24h") == newest_first[:4]
        assert _shown(browser, "since=24h&engine=threshold&flagged=1") == [ids["flagged"]]
        for bad in ("state=lost", "since=yesterday", "per_page=201", "page=0", "sort=patient_id", "order=up",
                    "group=gluteal", "completeness=partly"):
            assert browser.get(f"/results?{bad}").status_code == 400, bad


def test_flagged_and_failed_series_stand_out(console: str, ids: dict[str, int]) -> None:
    with signed_in(console) as browser:
        page = browser.get("/results").text
        assert 'href="/results?flagged=1"' in page
        assert 'href="/results?state=failed"' in page
        assert 'href="/results?qa=1"' in page
        assert f'class="flagged" data-series="{ids["flagged"]}"' in page
        assert f'class="failed" data-series="{ids["failed"]}"' in page
        assert '<span class="badge flagged"' in page
        assert "gantry tilt" in page
        assert "gluteal: a muscle not found" in page
        assert "uncertainty above the QA threshold: Left gluteus medius" in page


def test_sorting_by_a_column_and_paging(console: str, ids: dict[str, int]) -> None:
    by_patient = [ids[k] for k in ("flagged", "failed", "not_found", "plain", "truncated", "skipped", "uncertain")]
    by_study_date = [ids[k] for k in ("plain", "failed", "not_found", "truncated", "skipped", "uncertain",
                                      "flagged")]
    with signed_in(console) as browser:
        assert _shown(browser, "sort=patient&order=asc") == by_patient
        assert _shown(browser, "sort=patient&order=desc") == by_patient[::-1]
        assert _shown(browser, "sort=study_date&order=asc") == by_study_date
        # no job: last either way
        assert _shown(browser, "sort=job&order=asc")[-1] == ids["skipped"]
        assert _shown(browser, "sort=job&order=desc")[-1] == ids["skipped"]
        pages = [_shown(browser, f"sort=patient&order=asc&per_page=3&page={n}") for n in (1, 2, 3, 4)]
        assert pages == [by_patient[:3], by_patient[3:6], by_patient[6:], []]
        first = browser.get("/results?sort=patient&order=asc&per_page=3").text
        assert "1-3 of 7 series" in first
        assert 'href="/results?sort=patient&amp;order=asc&amp;page=2&amp;per_page=3" rel="next"' in first
        # a heading sorts by its column, the other way round when it is the sort already
        # (descending is the default order, so the link leaves it out)
        assert '<a href="/results?sort=patient&amp;per_page=3">patient ▲</a>' in first
        assert '<a href="/results?sort=study_date&amp;per_page=3">study date</a>' in first


def _csv_uids(text: str) -> list[str]:
    return [row["series_instance_uid"] for row in csv.DictReader(io.StringIO(text))]


def test_the_exports_hold_exactly_the_rows_shown(console: str, db: Engine, ids: dict[str, int]) -> None:
    uid_of = {series_id: f"1.2.40.{n}" for n, series_id in enumerate(sorted(ids.values()), 1)}
    with signed_in(console) as browser:
        for query in ("", "sort=patient&order=desc&per_page=2&page=2", "qa=1", "sort=study_date&order=asc",
                      "since=24h&per_page=3&page=2", "engine=bayesian-unet&sort=series&order=asc"):
            page = browser.get(f"/results?{query}").text
            shown = [uid_of[i] for i in series_ids_shown(page)]
            assert shown or "page=2" not in query
            links = {fmt: html.unescape(re.search(rf'href="(/results\.{fmt}[^"]*)"', page)[1])  # type: ignore[index]
                     for fmt in ("csv", "json")}
            csv_export = browser.get(links["csv"])
            assert csv_export.status_code == 200
            assert csv_export.headers["content-type"].startswith("text/csv")
            assert 'filename="sarcoscreen-results.csv"' in csv_export.headers["content-disposition"]
            assert _csv_uids(csv_export.text) == shown, query
            json_export = browser.get(links["json"])
            assert [r["series_instance_uid"] for r in json_export.json()] == shown, query
        # the same text as `sarcoscreen results --format csv|json` for the same filters
        with Session(db) as session:
            cli_rows = results(session, qa=True)
        assert browser.get("/results.csv?qa=1").text == format_results(cli_rows, "csv")
        assert json.loads(browser.get("/results.json?qa=1").text) == json.loads(format_results(cli_rows, "json"))
        assert browser.get("/results.csv?per_page=500").status_code == 400


def test_the_patient_filter_is_posted_and_no_patient_id_reaches_a_url(
        console: str, ids: dict[str, int], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="uvicorn.access"), signed_in(console) as browser:
        chosen = browser.post("/results/patient", {"patient_id": PATIENTS[2], "query": "qa=1&sort=patient"})
        assert chosen.status_code == 303
        assert chosen.headers["location"] == "/results?qa=1&sort=patient"
        page = browser.get(chosen.headers["location"]).text
        assert series_ids_shown(page) == [ids["not_found"]]
        assert f'value="{PATIENTS[2]}"' in page  # the filter's field shows it
        assert _csv_uids(browser.get("/results.csv?qa=1&sort=patient").text) == ["1.2.40.3"]
        assert _shown(browser, "") == [ids["not_found"]]  # kept for the session, whatever the query
        # a patient not on the first page, then cleared
        browser.post("/results/patient", {"patient_id": PATIENTS[6], "query": ""})
        assert _shown(browser, "") == [ids["uncertain"]]
        cleared = browser.post("/results/patient", {"patient_id": "", "query": "state=failed"})
        assert cleared.headers["location"] == "/results?state=failed"
        assert _shown(browser, "") == list(ids.values())
        # every page and every link on it
        for path in ("/results", "/results?sort=patient", "/results?per_page=2&page=2", "/queue",
                     *(f"/series/{i}" for i in ids.values())):
            assert browser.get(path).status_code == 200, path
        cookie = browser.client.cookies["sarcoscreen_session"]
    urls = [unquote_plus(u) for u in browser.requested + browser.shown_links]
    assert any("/series/" in u for u in urls)
    access_log = [record.getMessage() for record in caplog.records if record.name == "uvicorn.access"]
    assert any("/results" in line for line in access_log)
    for patient in PATIENTS:
        assert not [u for u in urls if patient in u], patient
        assert not [line for line in access_log if patient in line], patient
        assert patient not in unquote_plus(cookie)
    payload = cookie.split(".")[0]
    assert "PAT-" not in base64.b64decode(payload + "=" * (-len(payload) % 4)).decode()
