"""Patient data is private on disk: spool, quarantine, outputs, the SQLite database and the log file are created
with ``storage.file_mode`` / ``storage.dir_mode`` (0600/0700 by default, exactly, whatever the umask), and the
start-up check names every wider mode it finds with the command that fixes it."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from dicom_output_fixtures import Crafted, crafted_analysis

from sarcoscreen.db.session import create_engine_from_url, prepare_sqlite_file
from sarcoscreen.inference.file_modes import FileModes
from sarcoscreen.node.config import ConfigError, Settings, load_settings
from sarcoscreen.node.logging_setup import configure_logging
from sarcoscreen.node.service import NodeService, ServiceError
from sarcoscreen.node.spool import Spool
from sarcoscreen.node.storage_setup import check_modes
from sarcoscreen.reports.dicom_outputs import write_dicom_outputs
from sarcoscreen.reports.result_files import write_result_files

SERIES = "1.2.826.0.1.3680043.10.543.1"
SOP = "1.2.826.0.1.3680043.10.543.1.7"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _modes_below(root: Path) -> dict[str, str]:
    """Every folder and file under `root` (itself included) -> its mode in octal."""
    found = {".": f"{_mode(root):04o}"}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = f"{_mode(path):04o}"
    return found


def _expected(root: Path, modes: FileModes) -> dict[str, str]:
    found = {".": f"{modes.directory:04o}"}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = f"{modes.directory if path.is_dir() else modes.file:04o}"
    return found


@pytest.fixture
def umask() -> Iterator[None]:
    """A permissive umask, so that only the node's own modes can make the files private."""
    old = os.umask(0o002)
    yield
    os.umask(old)


@pytest.fixture(scope="module")
def crafted(tmp_path_factory: pytest.TempPathFactory) -> Crafted:
    return crafted_analysis(tmp_path_factory.mktemp("modes") / "ct")


@pytest.mark.usefixtures("umask")
def test_spool_and_quarantine_are_private_by_default(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "data" / "spool", tmp_path / "data" / "quarantine")
    spool.store(b"DICM-bytes", SERIES, SOP)
    spool.quarantine(b"junk", "not DICOM (test)")
    data = tmp_path / "data"
    assert _modes_below(data) == _expected(data, FileModes(0o600, 0o700))
    assert len(_modes_below(data)) == 9  # data, spool, .incoming, series folder, file, quarantine, day, .dcm, .json


@pytest.mark.usefixtures("umask")
def test_configured_modes_are_exact_whatever_the_umask(tmp_path: Path) -> None:
    modes = FileModes(file=0o660, directory=0o770)
    os.umask(0o077)  # would make 0600/0700 of anything created with 0660/0770 and not set afterwards
    spool = Spool(tmp_path / "data" / "spool", tmp_path / "data" / "quarantine", modes=modes)
    spool.store(b"DICM-bytes", SERIES, SOP)
    spool.quarantine(b"junk", "not DICOM (test)")
    data = tmp_path / "data"
    assert _modes_below(data) == _expected(data, modes)


@pytest.mark.usefixtures("umask")
def test_outputs_are_private(crafted: Crafted, tmp_path: Path) -> None:
    """Each writer once (the DICOM outputs take a second): the result files with the default modes, the SEG, SR and
    key image with configured ones."""
    folder = tmp_path / "outputs" / SERIES / "job-1"
    written = write_result_files(folder, crafted.volume, crafted.segmentation, crafted.report, None)
    assert len(written.files) == 3
    root = tmp_path / "outputs"
    assert _modes_below(root) == _expected(root, FileModes())
    modes = FileModes(file=0o640, directory=0o750)
    other = tmp_path / "other" / SERIES / "job-2"
    outputs = write_dicom_outputs(crafted.folder, crafted.volume, crafted.segmentation, crafted.report, other,
                                  settings_digest="modes", picture=written.picture, modes=modes)
    assert len(outputs.files) == 3
    assert _modes_below(tmp_path / "other") == _expected(tmp_path / "other", modes)


@pytest.mark.usefixtures("umask")
def test_the_sqlite_database_and_its_journal_files_are_private(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db' / 'sarcoscreen.db'}"
    engine = create_engine_from_url(url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
            connection.exec_driver_sql("INSERT INTO t VALUES (1)")
        with engine.connect() as connection:  # -wal and -shm exist while a connection is open
            assert sorted(p.name for p in (tmp_path / "db").iterdir()) == [
                "sarcoscreen.db", "sarcoscreen.db-shm", "sarcoscreen.db-wal"]
            assert _modes_below(tmp_path / "db") == _expected(tmp_path / "db", FileModes())
    finally:
        engine.dispose()
    # The node creates the file with the configured modes before the first engine opens it.
    modes = FileModes(file=0o640, directory=0o750)
    other = f"sqlite:///{tmp_path / 'other' / 'sarcoscreen.db'}"
    prepare_sqlite_file(other, modes)
    engine = create_engine_from_url(other)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        with engine.connect():
            assert _modes_below(tmp_path / "other") == _expected(tmp_path / "other", modes)
    finally:
        engine.dispose()


@pytest.mark.usefixtures("umask")
def test_the_log_file_is_private_and_stays_so_after_rotation(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "node.log"
    logger = logging.getLogger("sarcoscreen")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    try:
        configure_logging("INFO", log_file)
        logging.getLogger("sarcoscreen.test").info("first line")
        handler = next(h for h in logger.handlers if isinstance(h, logging.FileHandler))
        handler.doRollover()  # what midnight does: the file is renamed and a new one opened
        logging.getLogger("sarcoscreen.test").info("second line")
        assert len(list(log_file.parent.iterdir())) == 2
        assert _modes_below(log_file.parent) == _expected(log_file.parent, FileModes())
    finally:
        for handler in logger.handlers:
            handler.close()
        logger.handlers[:], logger.level, logger.propagate = saved


def test_modes_are_configured_as_octal_text() -> None:
    settings = load_settings(environ={"SARCOSCREEN_STORAGE__FILE_MODE": "0640",
                                      "SARCOSCREEN_STORAGE__DIR_MODE": "0750"})
    assert settings.storage.modes == FileModes(file=0o640, directory=0o750)
    assert Settings().storage.modes == FileModes(file=0o600, directory=0o700)
    for key, value, reason in (("file_mode", "0400", "the owner must be able to read and write"),
                               ("dir_mode", "0600", "the owner must be able to read, write and enter"),
                               ("file_mode", "0986", "octal"),
                               ("file_mode", "010600", "at most 0777")):
        with pytest.raises(ConfigError, match=f"storage.{key}: .*{reason}"):
            load_settings(environ={f"SARCOSCREEN_STORAGE__{key.upper()}": value})
    # A bare number is ambiguous (600 from the environment is a TOML integer, decimal 600): text only.
    with pytest.raises(ConfigError, match=r'storage\.file_mode: .*quoted octal text such as "0600"'):
        load_settings(environ={"SARCOSCREEN_STORAGE__FILE_MODE": "600"})


def _settings(tmp_path: Path, **storage: object) -> Settings:
    return Settings.model_validate({
        "storage": {"data_dir": str(tmp_path / "data"), **storage},
        "database": {"url": f"sqlite:///{tmp_path / 'data' / 'sarcoscreen.db'}"},
        "logging": {"file": str(tmp_path / "logs" / "node.log")},
    })


def _wide_storage(tmp_path: Path) -> list[Path]:
    """Folders and files as an older node (or a copy without -p) left them: 0755 and 0644."""
    series = tmp_path / "data" / "spool" / SERIES
    series.mkdir(parents=True)
    (series / f"{SOP}.dcm").write_bytes(b"DICM")
    outputs = tmp_path / "data" / "outputs"
    outputs.mkdir()
    (tmp_path / "data" / "sarcoscreen.db").write_bytes(b"")
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "node.log").write_text("old log\n", encoding="utf-8")
    (tmp_path / "logs").chmod(0o755)  # like /var/log: the folder of a configured file is not the node's
    wide = [tmp_path / "data", tmp_path / "data" / "spool", series, outputs, tmp_path / "data" / "sarcoscreen.db",
            tmp_path / "logs" / "node.log"]
    for path in wide:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return wide


def test_the_start_up_check_names_each_wider_mode_and_its_fix(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    wide = _wide_storage(tmp_path)
    (tmp_path / "data" / "spool" / SERIES / f"{SOP}.dcm").chmod(0o600)  # below the roots' children: not walked
    findings = check_modes(_settings(tmp_path))
    assert {f.path for f in findings} == set(wide) - {tmp_path / "data" / "spool" / SERIES / f"{SOP}.dcm"}
    by_path = {f.path: f for f in findings}
    spool = by_path[tmp_path / "data" / "spool"]
    assert (spool.mode, spool.allowed) == (0o755, 0o700)
    assert spool.fix == f"chmod 0700 {tmp_path / 'data' / 'spool'}"
    assert by_path[tmp_path / "logs" / "node.log"].fix == f"chmod 0600 {tmp_path / 'logs' / 'node.log'}"
    # Nothing wider once fixed; modes narrower than configured are the operator's choice and pass.
    for finding in findings:
        finding.path.chmod(finding.allowed)
    (tmp_path / "data" / "outputs").chmod(0o500)
    assert check_modes(_settings(tmp_path)) == []
    # The node logs every finding at start-up and starts; with storage.strict_modes it refuses to.
    for finding in findings:
        finding.path.chmod(finding.mode)
    (tmp_path / "data" / "outputs").chmod(0o755)
    strict = _settings(tmp_path, strict_modes=True)
    with caplog.at_level(logging.WARNING, logger="sarcoscreen"), pytest.raises(ServiceError) as refused:
        NodeService(strict).start()
    assert "storage.strict_modes" in str(refused.value)
    text = caplog.text
    for path in wide:
        assert f"{path} has mode {_mode(path):04o}" in text
    assert f"chmod 0700 {tmp_path / 'data' / 'spool'}" in text
