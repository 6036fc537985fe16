"""The QA web console in a real browser: headless Chromium (Debian's ``chromium`` and ``chromium-driver``) driven by
Selenium, against the real console (uvicorn on a free loopback port) on a real SQLite database whose results the
real worker made from SYNTHETIC phantom series.

The database holds two phantom hip CTs analysed by the worker (the threshold engine) against a SYNTHETIC
calibration that flags the one with little muscle, and two series whose jobs the worker failed (their spool files
went away before it looked). In the browser: an anonymous visit lands on the sign-in page; signing in; filtering
the results (failed, flagged, the filter form) and sorting by a column heading; a series page with its overlay
image loaded; retrying a failed job on the queue page (the job changes in the database); downloading the CSV of a
page (the file's rows are the page's rows); the cohort view and the Health page; signing out (a page afterwards
redirects to the sign-in page).

Each page is saved as a screenshot in the test's folder; with ``SARCOSCREEN_SCREENSHOTS=DIR`` (absolute, or
relative to the project root, e.g. ``docs/screenshots``) they are copied there too as ``console-<page>.png``
(``scripts/console_screenshots.py``).

Selenium uses ``/usr/bin/chromedriver`` and ``/usr/bin/chromium`` only (the Service path given, so Selenium
Manager is never run, and ``SE_OFFLINE`` set in case it were): nothing is downloaded. The module is skipped when
they are not installed (``scripts/install-system-deps.sh`` installs them).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest
from ct_series_factory import write_ct_series
from node_support import decide_series, jobs_of
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from web_support import PASSWORD, USER, add_console_user, running_console

from sarcoscreen.db import migrate
from sarcoscreen.db.models import Job, JobStatus, Series, SeriesState
from sarcoscreen.db.queries import ResultFilters, results
from sarcoscreen.db.session import create_engine_from_url
from sarcoscreen.inference.phantom import PhantomParameters, make_phantom
from sarcoscreen.node.config import Settings
from sarcoscreen.node.reconcile import reconcile
from sarcoscreen.node.spool import Spool
from sarcoscreen.node.worker import Worker

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
PROJECT_ROOT = Path(__file__).resolve().parents[2]
WINDOW = (1400, 1000)
WAIT_S = 10.0

if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
    pytest.skip(f"headless browser tests need Debian's chromium ({CHROMIUM}) and chromium-driver ({CHROMEDRIVER}): "
                "bash scripts/install-system-deps.sh", allow_module_level=True)
pytest.importorskip("selenium", reason="selenium is in the test extra: pip install -e '.[test]'")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support.select import Select  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.slow

CALIBRATION = {
    "format": "sarcoscreen-calibration/1", "name": "SYNTHETIC browser test", "synthetic": True,
    "side_rule": "mean", "primary_group": "gluteal",
    # the 96-matrix phantoms' gluteal SMI: about 0.17 kg/m^2 at muscle scale 0.7, 0.44 at 1.2
    "cutoffs": [{"group": "gluteal", "sex": "F", "smi_cutoff_kg_m2": 0.3}],
}


@dataclass(frozen=True)
class ConsoleData:
    """The running console and what the worker made."""

    url: str
    db: Engine
    flagged: int
    """Series id of the phantom with little muscle (flagged against the calibration)."""
    not_flagged: int
    retried: int
    """Series id of a failed series the queue test retries."""
    stays_failed: int
    screenshots: Path


def _settings(db_url: str, folder: Path) -> Settings:
    calibration = folder / "calibration.json"
    calibration.write_text(json.dumps(CALIBRATION), encoding="utf-8")
    return Settings.model_validate({
        "database": {"url": db_url},
        "storage": {"data_dir": str(folder / "data"), "min_free_mb": 0},
        "network": {"stable_age_s": 0.001},
        "routing": {"min_slices": 2},
        "queue": {"max_attempts": 2, "backoff_s": 0, "backoff_max_s": 0, "lease_s": 60, "heartbeat_s": 5},
        "measurement": {"calibration_file": str(calibration)},
        "destinations": [{"name": "pacs", "ae_title": "PACS", "host": "127.0.0.1", "port": 11112}],
        "web": {"port": 0},
    })


def _series_of(db: Engine, uid: str) -> int:
    with Session(db) as session:
        return session.execute(select(Series.id).where(Series.series_instance_uid == uid)).scalar_one()


def _worker_results(settings: Settings, db: Engine, folder: Path) -> dict[str, int]:
    """Two phantoms analysed and two series failed by the real worker; the series ids by role."""
    spool = Spool(settings.storage.spool, settings.storage.quarantine)
    uids: dict[str, str] = {}
    for role, scale, seed in (("flagged", 0.7, 5), ("not_flagged", 1.2, 6)):
        phantom = make_phantom(PhantomParameters(matrix=96, slice_mm=5.0, seed=seed, muscle_scale=scale),
                               folder / role)
        for path in sorted(phantom.dicom_dir.glob("*.dcm")):
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            spool.store(path.read_bytes(), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID))
            uids[role] = str(ds.SeriesInstanceUID)
    reconcile(db, spool)
    assert [o.outcome for o in decide_series(db, settings)] == ["queued"] * 2
    worker = Worker(settings, db)
    while worker.run_one():
        pass
    for role in ("retried", "stays_failed"):  # spool files gone before the worker looks: failed after 2 attempts
        series = write_ct_series(folder / role, 3)
        for path, uid in zip(series.files, series.sop_instance_uids, strict=True):
            spool.store(path.read_bytes(), series.series_instance_uid, uid)
        uids[role] = series.series_instance_uid
    reconcile(db, spool)
    assert [o.outcome for o in decide_series(db, settings)] == ["queued"] * 2
    for role in ("retried", "stays_failed"):
        for path in (settings.storage.spool / uids[role]).rglob("*.dcm"):
            path.unlink()
    while worker.run_one():
        pass
    statuses = sorted(job.status.value for job in jobs_of(db))
    assert statuses == ["done", "done", "failed", "failed"], statuses
    return {role: _series_of(db, uid) for role, uid in uids.items()}


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleData]:
    folder = tmp_path_factory.mktemp("console")
    db_url = f"sqlite:///{folder / 'sarcoscreen.db'}"
    migrate.upgrade(db_url)
    settings = _settings(db_url, folder)
    db = create_engine_from_url(db_url)
    try:
        ids = _worker_results(settings, db, folder)
        add_console_user(db)
        with running_console(settings, db) as url:
            yield ConsoleData(url, db, screenshots=folder / "screenshots", **ids)
    finally:
        db.dispose()


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads: Path) -> Iterator[WebDriver]:
    """Headless Chromium, 1400 x 1000, downloads into `downloads` without asking."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={WINDOW[0]},{WINDOW[1]}", "--lang=en-GB"):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SE_OFFLINE", "true")  # Selenium Manager, if it ever ran, must not go online
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.set_window_size(*WINDOW)
        yield driver
    finally:
        driver.quit()


# --- helpers -------------------------------------------------------------------------------------------------------


def _wait(driver: WebDriver, condition: Callable[[WebDriver], Any], what: str) -> Any:
    return WebDriverWait(driver, WAIT_S).until(condition, message=f"waited {WAIT_S:g} s for {what}")


def _path(driver: WebDriver) -> str:
    """The current URL without the scheme and host."""
    url = driver.current_url
    return url[url.index("/", len("http://")):]


def _click_and_load(driver: WebDriver, element: WebElement) -> None:
    """Click `element` and wait until the page it leads to has replaced this one."""
    html = driver.find_element(By.TAG_NAME, "html")
    element.click()
    _wait(driver, lambda d: _stale(html) and d.execute_script("return document.readyState") == "complete",
          "the next page")


def _stale(element: WebElement) -> bool:
    try:
        element.is_enabled()
    except Exception:  # StaleElementReferenceException: the page was replaced
        return True
    return False


def _screenshot(driver: WebDriver, data: ConsoleData, name: str) -> Path:
    """The page as ``NAME.png`` in the test's folder (and in ``SARCOSCREEN_SCREENSHOTS`` when set)."""
    data.screenshots.mkdir(exist_ok=True)
    path = data.screenshots / f"{name}.png"
    assert driver.save_screenshot(str(path)), name
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    target = os.environ.get("SARCOSCREEN_SCREENSHOTS")
    if target:
        folder = Path(target) if Path(target).is_absolute() else PROJECT_ROOT / target
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, folder / f"console-{name}.png")
    return path


def _sign_in(driver: WebDriver, data: ConsoleData) -> None:
    driver.delete_all_cookies()
    driver.get(f"{data.url}/signin")
    driver.find_element(By.NAME, "name").send_keys(USER)
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    _click_and_load(driver, driver.find_element(By.CSS_SELECTOR, "form.signin button[type=submit]"))
    assert _path(driver) == "/results"


def _rows(driver: WebDriver) -> list[int]:
    """The series ids of the results table, in order."""
    return [int(str(row.get_attribute("data-series")))
            for row in driver.find_elements(By.CSS_SELECTOR, "table.results tbody tr[data-series]")]


def _expected(data: ConsoleData, **filters: Any) -> list[int]:
    """What ``sarcoscreen results`` selects with `filters`, newest first (the page's default order)."""
    with Session(data.db) as session:
        return [row.series_id for row in results(session, **filters)]


def _job_of(data: ConsoleData, series_id: int) -> tuple[int, JobStatus, int, str | None]:
    with Session(data.db) as session:
        job = session.execute(select(Job).where(Job.series_id == series_id).order_by(Job.id.desc())).scalars().first()
        assert job is not None
        return job.id, job.status, job.attempts, job.reason


# --- the tests -----------------------------------------------------------------------------------------------------


def test_an_anonymous_visit_lands_on_the_sign_in_page_and_signing_in_shows_the_results(
        browser: WebDriver, console: ConsoleData) -> None:
    browser.delete_all_cookies()
    browser.get(f"{console.url}/results?state=failed")
    assert _path(browser) == "/signin"
    assert browser.find_element(By.TAG_NAME, "h1").text == "Sign in"
    assert not browser.find_elements(By.CSS_SELECTOR, "table.results")
    _screenshot(browser, console, "signin")
    browser.find_element(By.NAME, "name").send_keys(USER)
    browser.find_element(By.NAME, "password").send_keys("not the password")
    _click_and_load(browser, browser.find_element(By.CSS_SELECTOR, "form.signin button[type=submit]"))
    assert browser.find_element(By.CSS_SELECTOR, "p.flash.bad").text == "Wrong user name or password."
    _sign_in(browser, console)
    assert browser.find_element(By.TAG_NAME, "h1").text == "Results"
    assert sorted(_rows(browser)) == sorted([console.flagged, console.not_flagged, console.retried,
                                             console.stays_failed])


def test_filtering_and_sorting_the_results(browser: WebDriver, console: ConsoleData) -> None:
    _sign_in(browser, console)
    # the quick filters
    _click_and_load(browser, browser.find_element(By.LINK_TEXT, "Flagged"))
    assert _path(browser) == "/results?flagged=1"
    assert _rows(browser) == [console.flagged]
    flagged_row = browser.find_element(By.CSS_SELECTOR, f'tr[data-series="{console.flagged}"]')
    assert "flagged" in str(flagged_row.get_attribute("class"))
    assert flagged_row.find_element(By.CSS_SELECTOR, ".badge.flagged").is_displayed()
    _click_and_load(browser, browser.find_element(By.LINK_TEXT, "Failed"))
    failed = _expected(console, state="failed")
    assert console.stays_failed in failed
    assert _rows(browser) == failed
    assert "no stored instance of the series is in the spool" in browser.find_element(
        By.CSS_SELECTOR, f'tr[data-series="{console.stays_failed}"]').text
    # the filter form: state processed, engine threshold
    _click_and_load(browser, browser.find_element(By.LINK_TEXT, "All"))
    Select(browser.find_element(By.NAME, "state")).select_by_visible_text("processed")
    Select(browser.find_element(By.NAME, "engine")).select_by_visible_text("threshold")
    _click_and_load(browser, browser.find_element(By.CSS_SELECTOR, "form.filters button[type=submit]"))
    assert "state=processed" in _path(browser)
    assert "engine=threshold" in _path(browser)
    processed = ResultFilters(state="processed", engine="threshold")
    assert sorted(_rows(browser)) == sorted([console.flagged, console.not_flagged])
    assert _rows(browser) == _expected(console, filters=processed)
    # sorting by a column heading: descending first (the default order), then the other way round
    by_job = _expected(console, filters=processed, sort="job")
    _click_and_load(browser, browser.find_element(By.CSS_SELECTOR, "table.results thead a[href*='sort=job']"))
    assert "sort=job" in _path(browser)
    assert "state=processed" in _path(browser)  # the filters stay
    assert _rows(browser) == by_job
    heading = browser.find_element(By.CSS_SELECTOR, "table.results thead a[href*='sort=job']")
    assert heading.text == "job ▼"
    _click_and_load(browser, heading)
    assert "order=asc" in _path(browser)
    assert _rows(browser) == by_job[::-1]
    assert browser.find_element(By.CSS_SELECTOR, "table.results thead a[href*='sort=job']").text == "job ▲"
    _click_and_load(browser, browser.find_element(By.LINK_TEXT, "All"))
    _screenshot(browser, console, "results")


def test_a_series_page_shows_its_overlay_image(browser: WebDriver, console: ConsoleData) -> None:
    _sign_in(browser, console)
    _click_and_load(browser, browser.find_element(By.CSS_SELECTOR,
                                                  f'tr[data-series="{console.flagged}"] a[href^="/series/"]'))
    assert _path(browser) == f"/series/{console.flagged}"
    overlay = browser.find_element(By.CSS_SELECTOR, "main figure.overlay img")
    _wait(browser, lambda d: d.execute_script("return arguments[0].complete", overlay), "the overlay to load")
    _screenshot(browser, console, "series")
    assert browser.execute_script("return arguments[0].naturalWidth", overlay) > 0
    assert overlay.is_displayed()
    assert "sarcopenia suspected" in browser.find_element(By.TAG_NAME, "main").text


def test_retrying_a_failed_job_on_the_queue_page(browser: WebDriver, console: ConsoleData) -> None:
    _sign_in(browser, console)
    job_id, status, attempts, _ = _job_of(console, console.retried)
    assert (status, attempts) == (JobStatus.FAILED, 2)
    _click_and_load(browser, browser.find_element(By.CSS_SELECTOR, "header nav a[href='/queue']"))
    assert _path(browser) == "/queue"
    row = browser.find_element(By.ID, f"job-{job_id}")
    assert "failed" in row.text
    assert not row.find_elements(By.XPATH, ".//button[text()='Cancel']")  # a failed job has nothing to cancel
    _screenshot(browser, console, "queue")
    _click_and_load(browser, row.find_element(By.XPATH, ".//button[text()='Retry']"))
    assert browser.find_element(By.CSS_SELECTOR, "p.flash.ok").text == f"job {job_id} (failed) queued again"
    assert _job_of(console, console.retried) == (job_id, JobStatus.QUEUED, 0, "retry by user")
    with Session(console.db) as session:
        assert session.get(Series, console.retried).state is SeriesState.QUEUED  # type: ignore[union-attr]
    row = browser.find_element(By.ID, f"job-{job_id}")
    assert "queued" in row.find_element(By.CSS_SELECTOR, ".badge").text
    assert row.find_elements(By.XPATH, ".//button[text()='Cancel']")


def test_the_csv_download_holds_the_rows_of_the_page(browser: WebDriver, console: ConsoleData,
                                                     downloads: Path) -> None:
    _sign_in(browser, console)
    browser.get(f"{console.url}/results?sort=patient&order=asc&per_page=3&page=1")
    shown = _rows(browser)
    assert len(shown) == 3
    uids = [browser.find_element(By.CSS_SELECTOR, f'tr[data-series="{i}"] td.uid').text for i in shown]
    patients = [browser.find_element(By.CSS_SELECTOR, f'tr[data-series="{i}"] td').text for i in shown]
    for old in downloads.iterdir():
        old.unlink()
    browser.find_element(By.LINK_TEXT, "CSV").click()
    target = downloads / "sarcoscreen-results.csv"
    _wait(browser, lambda _: target.is_file() and not list(downloads.glob("*.crdownload")), "the CSV download")
    rows = list(csv.DictReader(io.StringIO(target.read_text(encoding="utf-8"))))
    assert [r["series_instance_uid"] for r in rows] == uids
    assert [r["patient_id"] for r in rows] == patients


def test_the_cohort_and_health_pages(browser: WebDriver, console: ConsoleData) -> None:
    _sign_in(browser, console)
    _click_and_load(browser, browser.find_element(By.CSS_SELECTOR, "header nav a[href='/cohort']"))
    assert browser.find_element(By.TAG_NAME, "h1").text == "Cohort"
    figure = browser.find_element(By.CSS_SELECTOR, "main img")
    _wait(browser, lambda d: d.execute_script("return arguments[0].complete", figure), "the cohort figure to load")
    assert browser.execute_script("return arguments[0].naturalWidth", figure) > 0
    assert "2 series measured" in browser.find_element(By.TAG_NAME, "main").text  # the two analysed phantoms
    _screenshot(browser, console, "cohort")
    _click_and_load(browser, browser.find_element(By.CSS_SELECTOR, "header nav a[href='/health']"))
    assert browser.find_element(By.TAG_NAME, "h1").text == "Health"
    assert browser.find_element(By.XPATH, "//dt[text()='Reachable']/following-sibling::dd[1]").text == "yes"
    _screenshot(browser, console, "health")


def test_signing_out_and_pages_afterwards_redirect_to_the_sign_in_page(browser: WebDriver,
                                                                       console: ConsoleData) -> None:
    _sign_in(browser, console)
    _click_and_load(browser, browser.find_element(By.XPATH, "//header//button[text()='Sign out']"))
    assert _path(browser) == "/signin"
    assert not browser.find_elements(By.XPATH, "//header//button[text()='Sign out']")
    for page in ("/results", "/queue", f"/series/{console.flagged}", "/cohort", "/health"):
        browser.get(f"{console.url}{page}")
        assert _path(browser) == "/signin", page
        assert browser.find_element(By.TAG_NAME, "h1").text == "Sign in", page
