"""``sarcoscreen web`` and the console inside ``serve``, as processes: users added and changed with the password
from standard input (never printed), the console served until SIGTERM, a port in use told, ``serve`` with
``web.enabled_in_serve``; and a series analysed by the real worker shown and exported as ``sarcoscreen results``
shows it."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from pathlib import Path

import httpx
import pydicom
import pytest
from node_support import SARCOSCREEN, NodeConfig, decide_series, node_process, spool_series
from web_support import Browser, add_console_user, console_settings, running_console, series_ids_shown, signed_in

from sarcoscreen.db.migrate import upgrade
from sarcoscreen.db.session import create_engine_from_url
from sarcoscreen.node.loopback import free_port, wait_for_port
from sarcoscreen.node.reconcile import reconcile
from sarcoscreen.node.worker import Worker

SECRET = "a long enough password"


def _config(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "sarcoscreen.toml"
    config.write_text(f'[storage]\ndata_dir = "{folder / "data"}"\nmin_free_mb = 0\n\n[web]\nport = 0\n',
                      encoding="utf-8")
    return config


def _run(config: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SARCOSCREEN, "--config", str(config), *args], input=stdin, capture_output=True,
                          text=True, timeout=120, check=False)


def test_web_users_are_added_and_changed_with_the_password_from_stdin(tmp_path: Path) -> None:
    config = _config(tmp_path)
    added = _run(config, "web", "user", "add", "qa.lead", "--password-stdin", stdin=SECRET + "\n")
    assert (added.returncode, added.stdout) == (0, "web user qa.lead: added\n"), added.stderr
    twice = _run(config, "web", "user", "add", "qa.lead", "--password-stdin", stdin=SECRET + "\n")
    assert twice.returncode == 1
    assert "there is a web user 'qa.lead' already" in twice.stderr
    short = _run(config, "web", "user", "add", "other", "--password-stdin", stdin="short\n")
    assert short.returncode == 2
    assert "at least 10 characters" in short.stderr
    bad_name = _run(config, "web", "user", "add", "no spaces", "--password-stdin", stdin=SECRET + "\n")
    assert bad_name.returncode == 2
    no_terminal = _run(config, "web", "user", "add", "other", stdin=SECRET + "\n")
    assert no_terminal.returncode == 2
    assert "use --password-stdin" in no_terminal.stderr
    changed = _run(config, "web", "user", "passwd", "qa.lead", "--password-stdin", stdin="another long one\n")
    assert (changed.returncode, changed.stdout) == (0, "web user qa.lead: password changed\n")
    unknown = _run(config, "web", "user", "passwd", "nobody", "--password-stdin", stdin=SECRET + "\n")
    assert unknown.returncode == 1
    listed = _run(config, "web", "user", "list")
    assert listed.returncode == 0
    assert listed.stdout.startswith("qa.lead  added ")
    assert listed.stdout.rstrip().endswith("last signed in never")
    for result in (added, twice, short, changed, listed):
        assert SECRET not in result.stdout + result.stderr
        assert "another long one" not in result.stdout + result.stderr


def test_sarcoscreen_web_serves_until_sigterm(tmp_path: Path) -> None:
    config = _config(tmp_path)
    assert _run(config, "web", "user", "add", "qa.lead", "--password-stdin", stdin=SECRET + "\n").returncode == 0
    process = subprocess.Popen([*SARCOSCREEN, "--config", str(config), "web", "--host", "127.0.0.1"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("web console: http://127.0.0.1:"), line + (process.stderr.read() if
                                                                        process.poll() is not None else "")
        url = line.split(": ", 1)[1].strip().rstrip("/")
        browser = Browser(url)
        try:
            assert browser.sign_in("qa.lead", SECRET).status_code == 303
            assert browser.get("/results").status_code == 200
            assert browser.get("/queue").status_code == 200
        finally:
            browser.close()
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "uvicorn.access: 127.0.0.1:" in err  # uvicorn's access log, through sarcoscreen's logging
    assert " - GET /results HTTP/1.1 200" in err
    assert "web sign-in: user qa.lead from 127.0.0.1" in err
    assert SECRET not in err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = _run(config, "web", "--port", str(port))
    assert taken.returncode == 1
    assert f"sarcoscreen: web console: cannot listen on 127.0.0.1:{port}: Address already in use" in taken.stderr


def test_serve_runs_the_console_with_web_enabled_in_serve(tmp_path: Path) -> None:
    web_port = free_port()
    config = NodeConfig(tmp_path, f"sqlite:///{tmp_path / 'node.db'}",
                        sections={"web": {"enabled_in_serve": True, "host": "127.0.0.1", "port": web_port}})
    with node_process(config, "serve") as node:
        wait_for_port(web_port, timeout=30)
        with httpx.Client(base_url=f"http://127.0.0.1:{web_port}", follow_redirects=False) as client:
            assert client.get("/results").headers["location"] == "/signin"
            assert client.get("/signin").status_code == 200
        node.process.send_signal(signal.SIGTERM)
        assert node.process.wait(timeout=30) == 0, node.text()
    with socket.socket() as sock:  # stopped with the node
        assert sock.connect_ex(("127.0.0.1", web_port)) != 0
    assert "web console listening on http://127.0.0.1:" in node.text()


@pytest.mark.slow
def test_a_series_analysed_by_the_worker_is_shown_and_exported_as_sarcoscreen_results_shows_it(
        tmp_path: Path) -> None:
    from sarcoscreen.inference.phantom import PhantomParameters, make_phantom

    url_db = f"sqlite:///{tmp_path / 'node.db'}"
    upgrade(url_db)
    settings = console_settings(url_db, tmp_path).model_copy()
    settings = type(settings).model_validate({**settings.model_dump(mode="json"), "network": {"stable_age_s": 0.001},
                                              "outputs": {"key_image": "none"}})
    phantom = make_phantom(PhantomParameters(matrix=96, slice_mm=5.0, seed=3), tmp_path / "phantom")
    spool = spool_series(settings, phantom.dicom_dir)
    patient_id = str(pydicom.dcmread(next(phantom.dicom_dir.glob("*.dcm")), stop_before_pixels=True).PatientID)
    db = create_engine_from_url(url_db)
    try:
        add_console_user(db)
        reconcile(db, spool)
        assert [o.outcome for o in decide_series(db, settings)] == ["queued"]
        assert Worker(settings, db).run_one()
        with running_console(settings, db) as url, signed_in(url) as browser:
            page = browser.get("/results").text
            exported_csv = browser.get("/results.csv").text
            exported_json = browser.get("/results.json").json()
            series_page = browser.get(f"/series/{series_ids_shown(page)[0]}").text
    finally:
        db.dispose()
    assert len(series_ids_shown(page)) == 1
    assert patient_id in page
    assert '<span class="badge processed">processed</span>' in page
    assert "threshold " in page  # the engine and its version, as the worker recorded them
    assert '<span class="badge done">done</span>' in series_page
    config = tmp_path / "cli.toml"
    config.write_text(f'[database]\nurl = "{url_db}"\n', encoding="utf-8")
    cli_csv = subprocess.run([*SARCOSCREEN, "--config", str(config), "results", "--format", "csv"],
                             capture_output=True, text=True, timeout=120, check=True).stdout
    cli_json = subprocess.run([*SARCOSCREEN, "--config", str(config), "results", "--format", "json"],
                              capture_output=True, text=True, timeout=120, check=True).stdout
    assert exported_csv == cli_csv
    assert exported_json == json.loads(cli_json)
