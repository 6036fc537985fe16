"""``sarcoscreen db upgrade/current/downgrade`` through the real command line, URLs and password masking."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from db_support import BACKENDS, database_url
from sqlalchemy import inspect

from sarcoscreen.db import migrate
from sarcoscreen.db.session import create_engine_from_url, mask_url
from sarcoscreen.node.cli import main
from sarcoscreen.node.config import load_settings
from sarcoscreen.node.config_text import effective_toml


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database."""
    with database_url(request.param, request, tmp_path) as url:
        yield url


def test_db_commands_with_the_url_from_the_environment(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SARCOSCREEN_DATABASE__URL", db_url)
    head = migrate.head()

    assert main(["db", "current"]) == 0
    assert f"revision (empty) (head is {head}" in capsys.readouterr().out
    assert main(["db", "upgrade"]) == 0
    assert f"at revision {head}" in capsys.readouterr().out
    assert main(["db", "current"]) == 0
    assert f"revision {head} (up to date)" in capsys.readouterr().out
    engine = create_engine_from_url(db_url)
    try:
        assert "jobs" in inspect(engine).get_table_names()
    finally:
        engine.dispose()
    assert main(["db", "downgrade", "base"]) == 0
    assert migrate.current(db_url) is None


def test_db_upgrade_with_the_url_from_a_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "node.toml"
    database = tmp_path / "var" / "node.db"
    config.write_text(f'[database]\nurl = "sqlite:///{database}"\n', encoding="utf-8")
    assert main(["--config", str(config), "db", "upgrade"]) == 0
    assert database.is_file()
    assert migrate.current(f"sqlite:///{database}") == migrate.head()
    assert str(database) in capsys.readouterr().out


def test_the_embedded_default_database_is_created_under_the_data_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SARCOSCREEN_DATABASE__URL", raising=False)
    monkeypatch.delenv("SARCOSCREEN_CONFIG", raising=False)
    assert main(["db", "upgrade"]) == 0
    assert (tmp_path / "sarcoscreen-data" / "sarcoscreen.db").is_file()


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql+psycopg://node:s3cr%40t@db:5432/sarcoscreen", "postgresql+psycopg://node:***@db:5432/sarcoscreen"),
        ("postgresql://node@db/sarcoscreen?password=s3cr%40t&sslmode=require",
         "postgresql://node@db/sarcoscreen?password=***&sslmode=require"),
        ("postgresql+psycopg://node@db/sarcoscreen", "postgresql+psycopg://node@db/sarcoscreen"),
        ("sqlite:////var/lib/sarcoscreen/node.db", "sqlite:////var/lib/sarcoscreen/node.db"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked
    assert "s3cr" not in mask_url(url)


def test_config_show_masks_the_database_password(tmp_path: Path) -> None:
    settings = load_settings(environ={"SARCOSCREEN_DATABASE__URL": "postgresql+psycopg://node:hunter2@db/x"},
                             config_file=None)
    text = effective_toml(settings)
    assert "hunter2" not in text
    assert "node:***@db/x" in text


def test_engine_urls(tmp_path: Path) -> None:
    engine = create_engine_from_url("postgresql://node@127.0.0.1:1/x")
    try:
        assert engine.dialect.driver == "psycopg"  # psycopg 3, whatever the URL says
    finally:
        engine.dispose()
    for bad in ("postgresql+psycopg2://node@db/x", "mysql://node@db/x", "sqlite+pysqlcipher:///x.db", "not a url"):
        with pytest.raises(ValueError, match=r"supported|not a valid"):
            create_engine_from_url(bad)


def test_an_unreachable_database_is_one_clear_error_without_the_password() -> None:
    url = "postgresql+psycopg://node:hunter2@127.0.0.1:1/sarcoscreen"  # nothing listens on port 1
    for action in (migrate.current, migrate.upgrade, migrate.ensure_schema):
        with pytest.raises(migrate.MigrationError, match=r"node:\*\*\*@127\.0\.0\.1:1") as raised:
            action(url)
        assert "hunter2" not in str(raised.value)


def test_an_unreachable_database_is_one_clear_message_with_the_password_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    # Port 1 on loopback: nothing listens there, so the connection is refused at once.
    monkeypatch.setenv("SARCOSCREEN_DATABASE__URL", "postgresql+psycopg://node:s3cret@127.0.0.1:1/none")
    assert main(["db", "upgrade"]) == 1
    err = capsys.readouterr().err
    assert "Connection refused" in err or "connection failed" in err
    assert "s3cret" not in err
    assert "Traceback" not in err


def test_downgrade_to_base_says_the_database_is_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SARCOSCREEN_DATABASE__URL", f"sqlite:///{tmp_path / 'q.db'}")
    assert main(["db", "upgrade"]) == 0
    assert main(["db", "downgrade", "base"]) == 0
    assert "at revision (empty)" in capsys.readouterr().out
