"""The command line's one shape: every command registered with a ``run`` and working ``--help``, a user error
printed once to stderr with its exit code, the database decorator (schema, ``db`` handed in and disposed of, an
unreachable database as one line), and the exit codes of a bad configuration and of Ctrl-C."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, event, inspect

from sarcoscreen.db import migrate
from sarcoscreen.node.cli import build_parser, main
from sarcoscreen.node.commands import COMMANDS
from sarcoscreen.node.commands import inspect as inspect_command
from sarcoscreen.node.commands.database import with_database
from sarcoscreen.node.commands.errors import ExitCode, UserError
from sarcoscreen.node.config import Settings, load_settings

UNREACHABLE = "postgresql+psycopg://node:s3cret@127.0.0.1:1/none"
"""Port 1 on loopback: nothing listens there, so a connection is refused at once."""


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """`main()` points sarcoscreen's log handler at the (captured) stderr of the moment; undo that after each test."""
    logger = logging.getLogger("sarcoscreen")
    handlers, propagate, level = list(logger.handlers), logger.propagate, logger.level
    yield
    logger.handlers[:] = handlers
    logger.propagate, logger.level = propagate, level


def _sub_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices) if actions else {}


def _command_lines(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every command and sub-command (``("config", "show")``, ``("phantom",)``, ``("phantom", "crop")``, ...)."""
    for name, sub in _sub_parsers(parser).items():
        yield (*prefix, name), sub
        yield from _command_lines(sub, (*prefix, name))


ALL_COMMAND_LINES = [words for words, _ in _command_lines(build_parser())]


def test_every_command_module_registers_its_command_with_a_run() -> None:
    parser = build_parser()
    commands = _sub_parsers(parser)
    assert [module.__name__.rsplit(".", 1)[1] for module in COMMANDS] == list(commands)
    for words, sub in _command_lines(parser):
        run = sub.get_default("run")
        if run is None:  # 'config', 'db', 'heights': only their actions run, and one is required
            assert any(a.required for a in sub._actions if isinstance(a, argparse._SubParsersAction)), words
            continue
        assert callable(run), words
        assert run.__module__ == COMMANDS[list(commands).index(words[0])].__name__, words
        assert isinstance(sub.get_default("needs_settings"), bool), words


@pytest.mark.parametrize("words", ALL_COMMAND_LINES, ids=" ".join)
def test_help_works_for_every_command(words: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ended:
        main([*words, "--help"])
    assert ended.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: sarcoscreen {' '.join(words)}")


def test_a_user_error_is_one_line_on_stderr_with_its_exit_code(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no-such-series"
    assert main(["--log-level", "WARNING", "inspect", str(missing)]) == ExitCode.FAILED
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [f"sarcoscreen: cannot load {missing}: {missing} does not exist"]

    assert main(["--log-level", "WARNING", "phantom", "--out", str(tmp_path / "p"), "--crop", "hip"]) == \
        ExitCode.USAGE
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == ["sarcoscreen: phantom: --crop only applies with --anatomy DIR"]


def test_a_bad_option_value_is_a_usage_error_told_before_the_database_is_touched(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SARCOSCREEN_DATABASE__URL", f"sqlite:///{tmp_path / 'never.db'}")
    assert main(["--log-level", "WARNING", "results", "--since", "yesterday"]) == ExitCode.USAGE
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == ["sarcoscreen: --since 'yesterday': expected a date (2026-11-01), a date-time "
                                "(2026-11-01T08:00) or a duration (7d, 12h, 30m)"]
    assert not (tmp_path / "never.db").exists()


@pytest.mark.parametrize("migrate_on_start", ["true", "false"])  # MigrationError and OperationalError
@pytest.mark.parametrize("argv", [["results"], ["jobs"], ["jobs", "cancel", "1"], ["purge"]], ids=" ".join)
def test_an_unreachable_database_is_one_line_on_stderr_and_exit_failed(
        argv: list[str], migrate_on_start: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SARCOSCREEN_DATABASE__URL", UNREACHABLE)
    monkeypatch.setenv("SARCOSCREEN_DATABASE__MIGRATE_ON_START", migrate_on_start)
    monkeypatch.setenv("SARCOSCREEN_STORAGE__DATA_DIR", str(tmp_path / "data"))
    assert main(["--log-level", "WARNING", *argv]) == ExitCode.FAILED
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("sarcoscreen: database postgresql+psycopg://node:***@127.0.0.1:1/none: ")
    assert "s3cret" not in err


def _settings(tmp_path: Path, migrate_on_start: bool = True) -> Settings:
    return load_settings(environ={"SARCOSCREEN_DATABASE__URL": f"sqlite:///{tmp_path / 'node.db'}",
                                  "SARCOSCREEN_DATABASE__MIGRATE_ON_START": str(migrate_on_start).lower()})


def test_with_database_migrates_hands_in_db_and_disposes_of_it(tmp_path: Path) -> None:
    seen: list[Engine] = []
    disposed: list[Engine] = []

    @with_database
    def body(args: argparse.Namespace, settings: Settings, db: Engine) -> int:
        seen.append(db)
        event.listen(db, "engine_disposed", disposed.append)
        assert migrate.current(settings.database_url) == migrate.head()
        assert "series" in inspect(db).get_table_names()
        if args.fail:
            raise UserError("told", ExitCode.USAGE)
        return ExitCode.OK

    settings = _settings(tmp_path)
    assert body(argparse.Namespace(fail=False), settings) == ExitCode.OK
    assert disposed == seen
    with pytest.raises(UserError, match="told") as raised:
        body(argparse.Namespace(fail=True), settings)
    assert raised.value.exit_code is ExitCode.USAGE
    assert len(seen) == 2
    assert disposed == seen  # also when the command failed


def test_with_database_leaves_the_schema_alone_unless_configured(tmp_path: Path) -> None:
    @with_database
    def body(args: argparse.Namespace, settings: Settings, db: Engine) -> int:
        return ExitCode.OK if "series" in inspect(db).get_table_names() else ExitCode.FAILED

    assert body(argparse.Namespace(), _settings(tmp_path, migrate_on_start=False)) == ExitCode.FAILED
    assert body(argparse.Namespace(), _settings(tmp_path, migrate_on_start=True)) == ExitCode.OK


def test_a_bad_configuration_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "sarcoscreen.toml"
    config.write_text("[database\n", encoding="utf-8")
    assert main(["--config", str(config), "config", "show"]) == ExitCode.USAGE
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"sarcoscreen: configuration file {config} is not valid TOML")
    assert main(["--config", str(config), "config", "example"]) == ExitCode.OK  # needs no configuration


def test_ctrl_c_is_exit_130(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(args: argparse.Namespace, settings: Settings | None) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(inspect_command, "run", interrupted)
    assert main(["inspect", "anything"]) == ExitCode.INTERRUPTED == 130
    assert capsys.readouterr().err.splitlines() == ["sarcoscreen: interrupted"]
