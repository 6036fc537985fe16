"""The height registry: CSV import with row-level errors, upserts, the latest height, and the series look-up.

Runs on a SQLite file and on PostgreSQL (a fresh schema per test; skipped without SARCOSCREEN_TEST_POSTGRES_URL).
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sarcoscreen.db.heights import import_heights_csv, registry_height
from sarcoscreen.db.models import PatientHeight
from sarcoscreen.db.session import create_engine_from_url, session_scope
from sarcoscreen.node.cli import main
from sarcoscreen.node.config import Settings
from sarcoscreen.node.height_registry import patient_id_of_series, registry_height_for_series

# Row numbers as in a spreadsheet: the header is row 1.
MIXED_CSV = """\
patient_id,height_m,height_cm,measured_on
P001,1.72,,2024-01-10
P002,,165,
,1.70,,
P003,abc,,
P004,172,,
P005,,1.65,
P006,1.60,,2024-13-01
P001,1.72,,2024-01-10
P007,1.80,,2020-05-05
P007,1.82,,2020-05-05
P008,1.75,176,
P009,1.75,175.2,
P010,1.70

P011,1.90,,2999-01-01
P012, 1.66 ,,
"""

EXPECTED_ERRORS = {
    4: "patient_id is empty",
    5: "'abc' is not a number",
    6: "looks like centimetres",
    7: "outside the plausible range",
    8: "is not a date",
    9: "duplicate of row 2",
    10: "different height",
    11: "different height",
    12: "disagree",
    14: "has 2 fields, the header has 4",
    16: "in the future",
}


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_text(text, encoding=encoding, newline="")
    return path


def _stored(engine: Engine) -> dict[tuple[str, date | None], float]:
    with Session(engine) as session:
        return {(h.patient_id, h.measured_on): h.height_m for h in session.scalars(select(PatientHeight))}


def test_good_rows_are_stored_and_every_bad_row_is_reported(engine: Engine, tmp_path: Path) -> None:
    path = _write(tmp_path / "heights.csv", MIXED_CSV)
    with session_scope(engine) as session:
        report = import_heights_csv(session, path)

    assert _stored(engine) == {
        ("P001", date(2024, 1, 10)): pytest.approx(1.72),
        ("P002", None): pytest.approx(1.65),
        ("P009", None): pytest.approx(1.75),
        ("P012", None): pytest.approx(1.66),
    }
    by_row: dict[int, str] = {}
    for error in report.errors:
        number = int(error.split(":", 1)[0].removeprefix("row "))
        assert number not in by_row, f"row {number} reported twice"
        by_row[number] = error
    assert set(by_row) == set(EXPECTED_ERRORS)
    for number, reason in EXPECTED_ERRORS.items():
        assert reason in by_row[number], by_row[number]
    # Nothing silently dropped: every data row is stored or refused.
    assert (report.rows, report.inserted, report.refused, report.blank_lines) == (15, 4, 11, 1)
    assert report.rows == report.stored + report.refused
    assert report.summary() == "heights.csv: 15 rows read: 4 new, 0 updated, 0 unchanged, 11 refused; " \
                               "1 blank line skipped"
    # Rows are named by number; patient identifiers never appear in messages.
    assert not any(f"P0{n:02d}" in error for error in report.errors for n in range(13))


def test_a_second_import_updates_keeps_and_adds(engine: Engine, tmp_path: Path) -> None:
    with session_scope(engine) as session:
        import_heights_csv(session, _write(tmp_path / "a.csv", "patient_id,height_m\nP1,1.70\nP2,1.60\n"))
    with session_scope(engine) as session:
        report = import_heights_csv(
            session, _write(tmp_path / "b.csv", "patient_id,height_cm\nP1,172\nP2,160\nP3,181\n"))
    assert (report.inserted, report.updated, report.unchanged, report.refused, report.errors) == (1, 1, 1, 0, [])
    assert _stored(engine) == {("P1", None): pytest.approx(1.72), ("P2", None): pytest.approx(1.60),
                               ("P3", None): pytest.approx(1.81)}
    with Session(engine) as session:
        updated = session.scalars(select(PatientHeight).where(PatientHeight.patient_id == "P1")).one()
        kept = session.scalars(select(PatientHeight).where(PatientHeight.patient_id == "P2")).one()
    assert updated.source_file == str((tmp_path / "b.csv").resolve())
    assert kept.source_file == str((tmp_path / "a.csv").resolve())
    assert updated.imported_at.tzinfo is UTC


def test_a_file_without_the_needed_columns_imports_nothing_and_says_why(engine: Engine, tmp_path: Path) -> None:
    with session_scope(engine) as session:
        report = import_heights_csv(session, _write(tmp_path / "h.csv", "patient,height_m\nP1,1.7\nP2,1.8\n"))
    assert report.errors == ["row 1 (header): missing column patient_id; nothing imported"]
    assert (report.rows, report.refused, report.stored) == (2, 2, 0)
    with session_scope(engine) as session:
        report = import_heights_csv(session, _write(tmp_path / "w.csv", "patient_id,weight_kg\nP1,70\n"))
    assert report.errors == ["row 1 (header): missing column height_m or height_cm; nothing imported"]
    assert _stored(engine) == {}


def test_spreadsheet_exports_are_read(engine: Engine, tmp_path: Path) -> None:
    """A byte-order mark, upper-case headers, CRLF line ends and a quoted field with a comma."""
    text = '\ufeffPatient_ID,Height_CM,Measured_On\r\n"P,1",170,2025-02-03\r\nP2,158.5,\r\n'
    with session_scope(engine) as session:
        report = import_heights_csv(session, _write(tmp_path / "excel.csv", text))
    assert report.errors == []
    assert _stored(engine) == {("P,1", date(2025, 2, 3)): pytest.approx(1.70), ("P2", None): pytest.approx(1.585)}


def test_unreadable_files_are_reported(engine: Engine, tmp_path: Path) -> None:
    with session_scope(engine) as session:
        missing = import_heights_csv(session, tmp_path / "absent.csv")
        latin1 = import_heights_csv(session, _write(tmp_path / "l.csv", "patient_id,height_m\nJosé,1.7\n",
                                                    encoding="latin-1"))
        empty = import_heights_csv(session, _write(tmp_path / "e.csv", ""))
    assert "no such file" in missing.errors[0]
    assert "not UTF-8" in latin1.errors[0]
    assert "empty file" in empty.errors[0]
    assert _stored(engine) == {}


def test_the_latest_measurement_is_the_registry_height(engine: Engine, tmp_path: Path) -> None:
    text = "patient_id,height_m,measured_on\nA,1.70,2020-01-01\nA,1.68,2023-06-01\nA,1.71,2019-01-01\nB,1.80,\n"
    with session_scope(engine) as session:
        import_heights_csv(session, _write(tmp_path / "h.csv", text))
    with session_scope(engine) as session:
        assert registry_height(session, "A") == pytest.approx(1.68)
        assert registry_height(session, "B") == pytest.approx(1.80)
        assert registry_height(session, "C") is None
        # An undated entry counts as measured on its import day: newer than any earlier date.
        session.add(PatientHeight(patient_id="A", height_m=1.66, imported_at=datetime.now(UTC)))
        session.flush()
        assert registry_height(session, "A") == pytest.approx(1.66)
        session.add(PatientHeight(patient_id="A", height_m=1.65, measured_on=date.today() + timedelta(days=1)))
        session.flush()
        assert registry_height(session, "A") == pytest.approx(1.65)


@pytest.mark.parametrize("measured_on", [None, date(2024, 1, 1)])
def test_one_height_per_patient_and_date_in_the_database(engine: Engine, measured_on: date | None) -> None:
    """Also for undated heights (a partial unique index: NULLs are distinct in a unique constraint)."""
    with Session(engine) as session:
        session.add(PatientHeight(patient_id="A", height_m=1.7, measured_on=measured_on))
        session.flush()
        session.add(PatientHeight(patient_id="A", height_m=1.8, measured_on=measured_on))
        with pytest.raises(IntegrityError):
            session.flush()


def test_cli_heights_import_reports_rows_and_fails_on_errors(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SARCOSCREEN_DATABASE__URL", db_url)
    assert main(["heights", "import", str(_write(tmp_path / "mixed.csv", MIXED_CSV))]) == 1
    out, err = capsys.readouterr()
    assert "15 rows read: 4 new" in out
    assert "row 4: patient_id is empty" in err
    assert "row 16: measured_on 2999-01-01 is in the future" in err
    assert main(["heights", "import", str(_write(tmp_path / "good.csv", "patient_id,height_m\nQ1,1.61\n"))]) == 0
    assert "1 new" in capsys.readouterr().out


# --- the registry height of a series folder -------------------------------------------------------------------


def _dicom_file(path: Path, patient_id: str) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientID = patient_id
    ds.Modality = "CT"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def series_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "series"
    folder.mkdir()
    (folder / "000_notes.txt").write_text("not DICOM", encoding="utf-8")
    _dicom_file(folder / "sub" / "IM0001", "PAT-HEIGHT-42")
    _dicom_file(folder / "sub" / "IM0002", "PAT-HEIGHT-42")
    return folder


def test_the_patient_id_comes_from_the_first_dicom_file(series_dir: Path, tmp_path: Path) -> None:
    assert patient_id_of_series(series_dir) == "PAT-HEIGHT-42"
    assert patient_id_of_series(series_dir / "sub" / "IM0002") == "PAT-HEIGHT-42"
    assert patient_id_of_series(tmp_path / "nowhere") is None
    assert patient_id_of_series(_dicom_file(tmp_path / "anon" / "IM1", "").parent) is None


def test_registry_height_for_series(db_url: str, engine: Engine, series_dir: Path, tmp_path: Path) -> None:
    settings = Settings.model_validate({"database": {"url": db_url}})
    assert registry_height_for_series(settings, series_dir) is None  # not in the registry
    with session_scope(engine) as session:
        import_heights_csv(session, _write(tmp_path / "h.csv", "patient_id,height_m\nPAT-HEIGHT-42,1.63\n"))
    assert registry_height_for_series(settings, series_dir) == pytest.approx(1.63)


def test_a_lookup_never_creates_a_database(series_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "data" / "sarcoscreen.db"
    settings = Settings.model_validate({"database": {"url": f"sqlite:///{path}"}})
    assert registry_height_for_series(settings, series_dir) is None
    assert not path.exists()
    assert not path.parent.exists()


def test_an_unmigrated_database_gives_no_height_and_logs_no_patient_id(
    series_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "empty.db"
    engine = create_engine_from_url(f"sqlite:///{path}")
    with engine.connect() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")  # a database without the registry table
        connection.commit()
    engine.dispose()
    settings = Settings.model_validate({"database": {"url": f"sqlite:///{path}"}})
    logger = logging.getLogger("sarcoscreen.node.height_registry")
    logger.addHandler(caplog.handler)  # the CLI's logging setup may stop propagation to the root logger
    try:
        with caplog.at_level(logging.DEBUG, logger="sarcoscreen"):
            assert registry_height_for_series(settings, series_dir) is None
    finally:
        logger.removeHandler(caplog.handler)
    assert "height registry not consulted" in caplog.text
    assert "PAT-HEIGHT-42" not in caplog.text
    assert str(series_dir) not in caplog.text


def test_an_unreachable_registry_gives_no_height(series_dir: Path) -> None:
    settings = Settings.model_validate({"database": {"url": "postgresql+psycopg://node:pw@127.0.0.1:1/x"}})
    assert registry_height_for_series(settings, series_dir) is None
