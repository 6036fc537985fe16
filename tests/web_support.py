"""Helpers for the web console tests: the console served by its real server (`ConsoleServer`, uvicorn on a free
loopback port), a signed-in HTTP client that keeps every URL it asked for and every link it was shown, and result
rows written into a real database.

Nothing here mocks the console: requests go over TCP through uvicorn to `create_app`'s application on a migrated
database.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine

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
    StructureMeasurement,
    Study,
)
from sarcoscreen.db.session import session_scope
from sarcoscreen.db.web_users import add_user
from sarcoscreen.node.config import Settings
from sarcoscreen.node.spool import Spool
from sarcoscreen.node.web import create_app
from sarcoscreen.node.web.server import ConsoleServer

__all__ = ["PASSWORD", "USER", "Browser", "add_console_user", "console_settings", "links_in", "running_console",
           "series_ids_shown", "signed_in", "write_result"]

USER = "qa.lead"
PASSWORD = "correct horse battery"
_LINK = re.compile(r'(?:href|action|src)="([^"]*)"')
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def console_settings(db_url: str, folder: Path, **web: Any) -> Settings:
    return Settings.model_validate({"database": {"url": db_url},
                                    "storage": {"data_dir": str(folder / "data"), "min_free_mb": 0},
                                    "web": {"port": 0, **web}})


@contextmanager
def running_console(settings: Settings, db: Engine) -> Iterator[str]:
    """The console of `settings` on `db`, served by `ConsoleServer` on a free loopback port; yields its base URL."""
    server = ConsoleServer(create_app(settings, db), "127.0.0.1", 0)
    server.start()
    try:
        yield server.url.rstrip("/")
    finally:
        server.stop()


def links_in(html: str) -> list[str]:
    """Every href, form action and src of a page."""
    return _LINK.findall(html)


@dataclass
class Browser:
    """An HTTP client of the console that records every URL it requested and every link it was shown."""

    base_url: str
    client: httpx.Client = field(init=False)
    requested: list[str] = field(default_factory=list)
    shown_links: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.base_url, follow_redirects=False, timeout=30)

    def _seen(self, response: httpx.Response) -> httpx.Response:
        self.requested.append(str(response.request.url))
        if "location" in response.headers:
            self.shown_links.append(response.headers["location"])
        if response.headers.get("content-type", "").startswith("text/html"):
            self.shown_links += links_in(response.text)
        return response

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self._seen(self.client.get(path, **kwargs))

    def csrf(self, path: str = "/signin") -> str:
        """The CSRF token of the form on `path`."""
        match = _CSRF.search(self.get(path).text)
        assert match, f"no CSRF field on {path}"
        return match[1]

    def post(self, path: str, data: dict[str, str], *, token_from: str | None = "/results") -> httpx.Response:
        """POST `data` with the CSRF token of the page `token_from` (``None``: no token)."""
        form = dict(data)
        if token_from is not None:
            form["csrf_token"] = self.csrf(token_from)
        return self._seen(self.client.post(path, data=form))

    def sign_in(self, name: str = USER, password: str = PASSWORD) -> httpx.Response:
        return self.post("/signin", {"name": name, "password": password}, token_from="/signin")

    def close(self) -> None:
        self.client.close()


@contextmanager
def signed_in(base_url: str) -> Iterator[Browser]:
    browser = Browser(base_url)
    try:
        response = browser.sign_in()
        assert (response.status_code, response.headers.get("location")) == (303, "/results"), response.text
        yield browser
    finally:
        browser.close()


def add_console_user(db: Engine, name: str = USER, password: str = PASSWORD) -> None:
    with session_scope(db) as session:
        add_user(session, name, password)



def write_result(db: Engine, uid: str, patient_id: str, *, state: SeriesState = SeriesState.PROCESSED,
                 status: JobStatus | None = JobStatus.DONE, engine: str = "threshold", suspected: bool = False,
                 gluteal: Completeness = Completeness.COMPLETE, uncertain: bool = False, smi: float = 7.5,
                 hours_ago: float = 1.0, study_date: str = "2026-01-02", error: str | None = None) -> int:
    """A series with (unless `status` is None) a job and its both-sides group rows, as the worker leaves them;
    returns the series id."""
    finished = datetime.now(UTC) - timedelta(hours=hours_ago)
    with session_scope(db) as session:
        series = Series(study=Study(study_instance_uid=f"{uid}.0", patient_id=patient_id,
                                    accession_number=f"ACC{uid[-3:]}",
                                    study_date=datetime.fromisoformat(study_date).date()),
                        series_instance_uid=uid, modality="CT", state=state, instance_count=3,
                        first_received_at=finished - timedelta(minutes=5), last_received_at=finished,
                        skip_reason="routing: body part HEAD" if state is SeriesState.SKIPPED else None)
        session.add(series)
        if status is not None:
            job = Job(series=series, status=status, engine_name=engine if status is JobStatus.DONE else None,
                      engine_version="1.0" if status is JobStatus.DONE else None, max_attempts=3,
                      attempts=1, error=error, finished_at=finished, created_at=finished - timedelta(minutes=1))
            if status is JobStatus.DONE:
                for group in ("gluteal", "above_knee", "all", "upper_gluteal"):
                    completeness = gluteal if group == "gluteal" else Completeness.COMPLETE
                    complete = completeness is Completeness.COMPLETE
                    job.groups.append(GroupResult(
                        muscle_group=group, side=GroupSide.BOTH, completeness=completeness,
                        reason=f"{completeness.value} (test)", height_source=HeightSource.DICOM, height_m=1.7,
                        smm_g=4000.0 if complete else None, smi_kg_m2=2 * smi if complete else None,
                        screening_smi_kg_m2=smi if complete else None, screening_side_rule="mean",
                        classification=(Classification.SUSPECTED if suspected and group == "gluteal"
                                        else Classification.NOT_CLASSIFIED)))
                job.structures.append(StructureMeasurement(
                    structure_key="gluteus_medius_left", label=4, name="Left gluteus medius", side="left",
                    voxels=10, volume_cm3=1.0, mass_g=1.04, truncated=False, uncertainty=0.2, qa_flag=uncertain,
                    density_rule="constant 1.04 g/cm3"))
            session.add(job)
        session.flush()
        return series.id


def series_ids_shown(html: str) -> list[int]:
    """The series ids of the results table's rows, in order."""
    return [int(n) for n in re.findall(r'data-series="(\d+)"', html)]


def node_settings(db_url: str, data_dir: Path, **sections: dict[str, object]) -> Settings:
    """Node settings on `db_url` with everything under `data_dir` (spool and outputs made), three destinations
    that are never reached, a quick watcher and queue, and a 7 MB disk reserve; `sections` override by section."""
    values: dict[str, dict[str, object] | list[dict[str, object]]] = {
        "database": {"url": db_url},
        "storage": {"data_dir": str(data_dir), "min_free_mb": 7},
        "network": {"stable_age_s": 0.001},
        "queue": {"max_attempts": 2, "backoff_s": 0, "backoff_max_s": 0, "lease_s": 60, "heartbeat_s": 5},
        "destinations": [{"name": "pacs", "ae_title": "PACS", "host": "127.0.0.1", "port": 104},
                         {"name": "archive", "ae_title": "ARCH", "host": "127.0.0.1", "port": 105},
                         {"name": "viewer", "ae_title": "VIEW", "host": "127.0.0.1", "port": 106}],
    }
    for name, section in sections.items():
        values[name] = {**values.get(name, {}), **section}  # type: ignore[dict-item]
    settings = Settings.model_validate(values)
    Spool(settings.storage.spool, settings.storage.quarantine)
    settings.storage.outputs.mkdir(parents=True, exist_ok=True)
    return settings
