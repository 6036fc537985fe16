"""The QA web console's access rules, on its real server (uvicorn on a free port) and a real database (SQLite and
PostgreSQL): pages need a sign-in (redirect), exports and actions answer 401, a wrong password fails and the right
one works, every POST needs the session's CSRF token, the session key file is made 0600, a reverse proxy's user
header signs requests in when configured, and a signed-in module cannot publish an unguarded route."""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from web_support import (
    PASSWORD,
    USER,
    Browser,
    add_console_user,
    console_settings,
    running_console,
    signed_in,
    write_result,
)

from sarcoscreen.db.models import Job, JobStatus, SeriesState, WebUser
from sarcoscreen.db.session import create_engine_from_url
from sarcoscreen.node.config import Settings
from sarcoscreen.node.web.app import UnguardedRouteError, _signed_in_routes
from sarcoscreen.node.web.auth import page


@pytest.fixture
def db(db_url: str) -> Iterator[Engine]:
    engine = create_engine_from_url(db_url)
    add_console_user(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return console_settings(db_url, tmp_path)


@pytest.fixture
def console(settings: Settings, db: Engine) -> Iterator[str]:
    with running_console(settings, db) as url:
        yield url


def test_without_a_sign_in_pages_redirect_and_exports_and_actions_are_refused(console: str, db: Engine) -> None:
    series_id = write_result(db, "1.2.9.1", "PAT-A", state=SeriesState.FAILED, status=JobStatus.FAILED,
                             error="boom")
    with httpx.Client(base_url=console, follow_redirects=False) as client:
        for path in ("/", "/results", "/results?state=failed", "/queue", f"/series/{series_id}"):
            response = client.get(path)
            assert response.status_code == 303, path
            assert response.headers["location"] in ("/signin", "/results"), path
        assert client.get("/results").headers["location"] == "/signin"
        for path in ("/results.csv", "/results.json"):
            response = client.get(path)
            assert response.status_code == 401, path
            assert "PAT-A" not in response.text
        assert client.post("/queue/1/retry", data={}).status_code == 401
        assert client.post("/results/patient", data={"patient_id": "PAT-A"}).status_code == 401
        assert client.post("/signout", data={}).status_code == 401
        signin = client.get("/signin")
        assert signin.status_code == 200
        assert 'name="password"' in signin.text
        style = client.get("/static/style.css")
        assert style.status_code == 200
        assert style.headers["content-type"].startswith("text/css")
        assert signin.headers["cache-control"] == "no-store"
        assert "frame-ancestors 'none'" in signin.headers["content-security-policy"]


def test_a_wrong_password_fails_and_the_right_one_signs_in_until_sign_out(
        console: str, db: Engine, caplog: pytest.LogCaptureFixture) -> None:
    browser = Browser(console)
    try:
        with caplog.at_level(logging.INFO):
            wrong = browser.sign_in(USER, "not the password")
            unknown = browser.sign_in("nobody", PASSWORD)
        assert wrong.status_code == 401
        assert "Wrong user name or password" in wrong.text
        assert unknown.status_code == 401
        assert browser.get("/results").status_code == 303  # still signed out
        failures = [r.getMessage() for r in caplog.records if "sign-in failed" in r.getMessage()]
        assert failures == [f"web sign-in failed for user {USER} from 127.0.0.1",
                            "web sign-in failed for user nobody from 127.0.0.1"]
        assert not any("not the password" in r.getMessage() or PASSWORD in r.getMessage() for r in caplog.records)

        right = browser.sign_in()
        assert (right.status_code, right.headers["location"]) == (303, "/results")
        page_ = browser.get("/results")
        assert page_.status_code == 200
        assert USER in page_.text
        for title in ("Results", "Queue", "Cohort", "Health"):
            assert f">{title}</a>" in page_.text
        with Session(db) as session:
            assert session.execute(select(WebUser.last_sign_in_at).where(WebUser.name == USER)).scalar_one()

        out = browser.post("/signout", {})
        assert (out.status_code, out.headers["location"]) == (303, "/signin")
        assert browser.get("/results").status_code == 303
    finally:
        browser.close()


def test_repeated_failures_are_refused_for_a_while(console: str) -> None:
    browser = Browser(console)
    try:
        assert [browser.sign_in(USER, f"guess {n}").status_code for n in range(5)] == [401] * 5
        blocked = browser.sign_in()  # even the right password, while the window lasts
        assert blocked.status_code == 429
        assert browser.get("/results").status_code == 303
    finally:
        browser.close()


def test_a_post_without_the_sessions_csrf_token_is_refused(console: str, db: Engine) -> None:
    write_result(db, "1.2.9.2", "PAT-B", state=SeriesState.FAILED, status=JobStatus.FAILED, error="boom")
    with Session(db) as session:
        job_id = session.execute(select(Job.id)).scalar_one()
    anonymous = Browser(console)
    try:  # the sign-in form itself is a POST
        assert anonymous.post("/signin", {"name": USER, "password": PASSWORD}, token_from=None).status_code == 403
        assert anonymous.get("/results").status_code == 303
    finally:
        anonymous.close()
    with signed_in(console) as browser:
        for data in ({}, {"csrf_token": "forged"}):
            refused = browser.post(f"/queue/{job_id}/retry", data, token_from=None)
            assert refused.status_code == 403
            assert browser.post("/results/patient", {**data, "patient_id": "PAT-B"}, token_from=None
                                ).status_code == 403
            assert browser.post("/signout", data, token_from=None).status_code == 403
        with Session(db) as session:
            assert session.get(Job, job_id).status is JobStatus.FAILED  # nothing was done
        assert browser.get("/results").status_code == 200  # still signed in
        other = Browser(console)
        try:  # another session's token does not fit this session
            assert other.sign_in().status_code == 303
            token = other.csrf("/results")
        finally:
            other.close()
        assert browser.post(f"/queue/{job_id}/retry", {"csrf_token": token}, token_from=None).status_code == 403


def test_the_session_key_file_is_made_private_and_kept_across_restarts(settings: Settings, db: Engine) -> None:
    secret = settings.web_secret_file
    assert not secret.exists()
    with running_console(settings, db) as url, signed_in(url) as browser:
        cookies = browser.client.cookies
        assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
        key = secret.read_text()
        assert "sarcoscreen_session" in cookies
        jar = httpx.Cookies(cookies)
    with running_console(settings, db) as url, httpx.Client(base_url=url, cookies=jar) as client:
        assert client.get("/results").status_code == 200  # the same key: the sign-in holds
    assert secret.read_text() == key
    secret.write_text("x" * 64)  # a new key: every sign-in ends
    with running_console(settings, db) as url, httpx.Client(base_url=url, cookies=jar) as client:
        assert client.get("/results", follow_redirects=False).status_code == 303


def _session_cookie(key: str, values: dict[str, object]) -> str:
    """A session cookie as Starlette's SessionMiddleware signs it, with `key`."""
    from base64 import b64encode

    from itsdangerous import TimestampSigner

    return TimestampSigner(key).sign(b64encode(json.dumps(values).encode())).decode()


def test_a_sign_in_lasts_session_max_age_s_from_the_sign_in(db_url: str, tmp_path: Path, db: Engine) -> None:
    """The sign-in time is in the signed cookie; a cookie kept alive by activity still ends when the sign-in is
    older than ``web.session_max_age_s``; a cookie signed with another key is no sign-in."""
    settings = console_settings(db_url, tmp_path, session_max_age_s=3600)
    with running_console(settings, db) as url:
        key = settings.web_secret_file.read_text().strip()
        for signing_key, age_s, status in ((key, 60, 200), (key, 3500, 200), (key, 3700, 303), (key, 86400, 303),
                                           ("another key of at least thirty-two characters", 60, 303)):
            cookie = _session_cookie(signing_key, {"user": USER, "signed_in_at": int(time.time()) - age_s})
            with httpx.Client(base_url=url, cookies={"sarcoscreen_session": cookie}) as client:
                assert client.get("/results", follow_redirects=False).status_code == status, (signing_key, age_s)


def test_a_trusted_proxy_header_signs_requests_in(db_url: str, tmp_path: Path, db: Engine) -> None:
    settings = console_settings(db_url, tmp_path, trusted_user_header="X-Remote-User")
    with running_console(settings, db) as url, httpx.Client(base_url=url, follow_redirects=False) as client:
        assert client.get("/results").status_code == 401
        assert client.get("/results.csv").status_code == 401
        assert client.get("/signin").status_code == 401
        assert client.post("/signin", data={"name": USER, "password": PASSWORD}).status_code == 401
        shown = client.get("/results", headers={"X-Remote-User": "ward.nurse"})
        assert shown.status_code == 200
        assert "ward.nurse" in shown.text
        assert 'action="/signout"' not in shown.text
        assert client.get("/signin", headers={"X-Remote-User": "ward.nurse"}).status_code == 303


def test_a_signed_in_module_cannot_publish_an_unguarded_route() -> None:
    guarded = ModuleType("guarded")
    guarded.routes = lambda: [page("/fine", lambda request: PlainTextResponse("ok"))]  # type: ignore[attr-defined]
    assert [route.path for route in _signed_in_routes([guarded])] == ["/fine"]
    careless = ModuleType("careless")
    careless.routes = lambda: [Route("/open", lambda request: PlainTextResponse("data"))]  # type: ignore[attr-defined]
    with pytest.raises(UnguardedRouteError, match="careless: route '/open' has no sign-in guard"):
        _signed_in_routes([guarded, careless])


def test_the_series_page_shows_the_series_and_its_jobs(console: str, db: Engine) -> None:
    series_id = write_result(db, "1.2.9.3", "PAT-C", state=SeriesState.FAILED, status=JobStatus.FAILED,
                             error="the series cannot be loaded: gantry tilt")
    with signed_in(console) as browser:
        shown = browser.get(f"/series/{series_id}")
        assert shown.status_code == 200
        assert "1.2.9.3" in shown.text
        assert "gantry tilt" in shown.text
        assert '<span class="badge failed">failed</span>' in shown.text
        assert browser.get("/series/999999").status_code == 404
        assert browser.get("/series/PAT-C").status_code == 404


def test_the_web_settings(tmp_path: Path) -> None:
    from sarcoscreen.node.config import ConfigError, load_settings

    defaults = load_settings(environ={})
    assert (defaults.web.host, defaults.web.port, defaults.web.enabled_in_serve) == ("127.0.0.1", 8080, False)
    assert defaults.web.trusted_user_header is None
    assert defaults.web.session_max_age_s == 8 * 3600
    assert defaults.web_secret_file == defaults.storage.data_dir / "web-secret"
    config = tmp_path / "node.toml"
    config.write_text('[web]\nsecret_file = "keys/web-secret"\ntrusted_user_header = "X-Remote-User"\n',
                      encoding="utf-8")
    settings = load_settings(config, environ={"SARCOSCREEN_WEB__PORT": "9090"})
    assert settings.web_secret_file == tmp_path / "keys" / "web-secret"  # relative to the file's folder
    assert (settings.web.port, settings.web.trusted_user_header) == (9090, "X-Remote-User")
    for key, value in (("trusted_user_header", "X Remote User"), ("session_max_age_s", "10"), ("port", "70000")):
        with pytest.raises(ConfigError, match=f"web.{key}"):
            load_settings(environ={f"SARCOSCREEN_WEB__{key.upper()}": value})
