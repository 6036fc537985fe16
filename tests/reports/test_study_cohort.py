"""The validation cohort file (row-level validation) and its join to CT measurements (files and database)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from db_support import BACKENDS, database_url

from sarcoscreen.reports.study.cohort import CohortError, read_cohort
from sarcoscreen.reports.study.join import join_cohort
from sarcoscreen.reports.study.measurements import (
    MeasuredSeries,
    MeasurementsError,
    load_from_database,
    load_measurement_files,
)

HEADER = "subject_id,sex,height_m,dxa_leg_lean_mass_kg,dxa_appendicular_lean_mass_kg,study_instance_uid\n"
UID_A = "1.2.826.0.1.3680043.8.498.1"
UID_B = "1.2.826.0.1.3680043.8.498.2"


def _cohort(tmp_path: Path, text: str, name: str = "cohort.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding=encoding)
    return path


def test_a_valid_cohort_is_read_with_computed_dxa_smi(tmp_path: Path) -> None:
    path = _cohort(tmp_path, HEADER + f"P1,F,1.58,11.2,14.9,{UID_A}\nP2,male,1.72,15.0,20.1,{UID_B}\n")
    cohort = read_cohort(path)
    assert (cohort.rows_read, len(cohort.rows), cohort.errors, cohort.synthetic) == (2, 2, (), False)
    first, second = cohort.rows
    assert (first.subject_id, first.sex, first.height_m, first.row) == ("P1", "F", 1.58, 2)
    assert first.dxa_smi_kg_m2 == pytest.approx(14.9 / 1.58**2)
    assert first.dxa_smi_source == "ALM / height^2"
    assert second.sex == "M"
    assert cohort.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert cohort.summary() == "cohort.csv: 2 rows read, 2 accepted, 0 refused"


@pytest.mark.parametrize(("row", "message"), [
    ("P1,F,158,11.2,14.9,", "height_m 158 looks like centimetres; it must be in metres; use a height_cm column"),
    ("P1,F,0.4,11.2,14.9,", "outside the plausible range 1.0-2.3 m"),
    ("P1,F,,11.2,14.9,", "height is missing"),
    ("P1,X,1.58,11.2,14.9,", "sex 'X' must be F or M"),
    ("P1,,1.58,11.2,14.9,", "sex is missing"),
    (",F,1.58,11.2,14.9,", "subject_id is missing"),
    ("P1,F,1.58,11200,14.9,", "dxa_leg_lean_mass_kg 11200 looks like grams"),
    ("P1,F,1.58,0.9,14.9,", "dxa_leg_lean_mass_kg 0.9 kg is outside the plausible range 2-40 kg"),
    ("P1,F,1.58,abc,14.9,", "dxa_leg_lean_mass_kg 'abc' is not a number"),
    ("P1,F,1.58,11.2,10.0,", "is not larger than the legs' lean mass"),
    ("P1,F,1.58,11.2,,", "DXA appendicular lean mass or DXA SMI is missing"),
    ("P1,F,1.58,11.2,14.9,1.2.03", "study_instance_uid is not a valid DICOM UID"),
    ("P1,F,1.58,11.2,14.9,,extra", "has 7 fields, the header has 6"),
    ("P1,F,1.58,nan,14.9,", "is not a finite number"),
])
def test_each_bad_row_is_refused_with_its_row_number_and_reason(tmp_path: Path, row: str, message: str) -> None:
    good = f"P0,F,1.60,11.0,14.5,{UID_A}\n"
    cohort = read_cohort(_cohort(tmp_path, HEADER + good + row + "\n"))
    assert [r.subject_id for r in cohort.rows] == ["P0"]
    assert cohort.refused_rows == (3,)
    assert any(message in e.message for e in cohort.errors), [str(e) for e in cohort.errors]
    assert all(e.row == 3 for e in cohort.errors)
    assert str(cohort.errors[0]).startswith("row 3")


def test_every_reason_of_a_row_is_reported(tmp_path: Path) -> None:
    cohort = read_cohort(_cohort(tmp_path, HEADER + "P1,Q,170,0.5,,\n"))
    messages = " | ".join(e.message for e in cohort.errors)
    for part in ("sex 'Q'", "looks like centimetres", "outside the plausible range 2-40 kg", "DXA appendicular"):
        assert part in messages
    assert cohort.rows == ()


def test_duplicates_are_refused_and_blank_lines_counted(tmp_path: Path) -> None:
    text = HEADER + f"P1,F,1.58,11.2,14.9,{UID_A}\n\nP1,F,1.60,11.0,14.5,{UID_B}\nP3,F,1.60,11.0,14.5,{UID_A}\n,,,,,\n"
    cohort = read_cohort(_cohort(tmp_path, text))
    assert [r.subject_id for r in cohort.rows] == ["P1"]
    errors = {e.row: e.message for e in cohort.errors}
    assert errors[4] == "subject_id duplicates row 2"
    assert errors[5] == "study_instance_uid duplicates row 2"
    assert cohort.blank_lines == 2
    assert cohort.rows_read == 3


def test_height_in_cm_column_dxa_smi_column_semicolons_decimal_commas_and_bom(tmp_path: Path) -> None:
    text = ("ID;Sex;height_cm;dxa_leg_lean_mass_kg;dxa_smi_kg_m2;dxa_appendicular_lean_mass_kg;notes\n"
            "A;F;158;11,2;5,3;;x\n"
            "B;M;1.72;15,0;7,1;;\n"
            "C;F;160;11,0;4,1;14,5;\n")
    cohort = read_cohort(_cohort(tmp_path, text, encoding="utf-8-sig"))
    assert [r.subject_id for r in cohort.rows] == ["A", "C"]
    a, c = cohort.rows
    assert (a.height_m, a.dxa_leg_lean_kg, a.dxa_smi_kg_m2, a.dxa_smi_source) == (1.58, 11.2, 5.3, "given")
    assert "height_cm 1.72 looks like metres" in cohort.errors[0].message
    assert cohort.ignored_columns == ("notes",)
    # ALM / height^2 = 5.66 disagrees with the given 4.1: a warning, the given value is used.
    assert c.dxa_smi_kg_m2 == 4.1
    assert "differs from ALM / height^2 = 5.66" in cohort.warnings[0].message


@pytest.mark.parametrize(("text", "message"), [
    ("", "is empty"),
    ("subject_id,sex,height_m\n", "missing column(s): dxa_leg_lean_mass_kg, dxa_appendicular_lean_mass_kg or "
                                  "dxa_smi_kg_m2"),
    ("subject_id,sex,dxa_leg_lean_mass_kg,dxa_smi_kg_m2\nP1,F,11,5\n", "missing column(s): height_m or height_cm"),
    ("subject_id,sex,sex,height_m,dxa_leg_lean_mass_kg,dxa_smi_kg_m2\n", "column(s) sex appear more than once"),
    (HEADER, "has a header but no data rows"),
])
def test_unusable_files_are_refused_as_a_whole(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(CohortError, match="cohort file .*" + message.replace("(", r"\(").replace(")", r"\)")):
        read_cohort(_cohort(tmp_path, text))


def test_missing_file_is_a_cohort_error(tmp_path: Path) -> None:
    with pytest.raises(CohortError, match="cannot be read"):
        read_cohort(tmp_path / "nope.csv")


def test_the_phantom_cohort_file_is_accepted_and_synthetic(tmp_path: Path) -> None:
    from sarcoscreen.inference.phantom.cohort import COHORT_COLUMNS

    rows = ",".join(COHORT_COLUMNS) + "\nSYN-0001,true,F,1.591,90,11.687,15.274,6.034,\n"
    cohort = read_cohort(_cohort(tmp_path, rows))
    assert cohort.synthetic
    assert cohort.rows[0].synthetic
    assert cohort.ignored_columns == ("age_years",)
    assert cohort.summary().endswith("(SYNTHETIC)")


# --- join ----------------------------------------------------------------------------------------------------


def _series(**kwargs: object) -> MeasuredSeries:
    smm = {"all_both": 9000.0, "all_left": 4500.0, "all_right": 4500.0}
    return MeasuredSeries(source="test", smm_g=smm, **kwargs)  # type: ignore[arg-type]


def test_join_by_keys_with_reasons_for_every_row_not_joined(tmp_path: Path) -> None:
    text = ("subject_id,sex,height_m,dxa_leg_lean_mass_kg,dxa_smi_kg_m2,study_instance_uid,series_instance_uid,"
            "accession_number\n"
            "S1,F,1.60,11,5.5,1.1,,\n"          # study UID, one series
            "S2,F,1.60,11,5.5,,2.2,\n"          # series UID
            "S3,F,1.60,11,5.5,,,ACC3\n"         # accession
            "S4,F,1.60,11,5.5,1.4,,\n"          # study with two measured series: ambiguous
            "S5,F,1.60,11,5.5,1.5,,\n"          # sex contradicts
            "S6,F,1.60,11,5.5,,,\n"             # no key, subject id unknown
            "S7,F,1.60,11,5.5,1.7,,\n"          # not measured
            "S8,F,1.60,11,5.5,,9.9,\n"          # its series is not measured: never replaced by its study
            "S9,F,1.60,11,5.5,,,\n")            # no key, but a table row has its subject id
    cohort = read_cohort(_cohort(tmp_path, text))
    now = datetime(2026, 1, 1, tzinfo=UTC).isoformat()
    later = (datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=1)).isoformat()
    measured = (
        _series(study_instance_uid="1.1", series_instance_uid="1.1.1", created=now),
        _series(study_instance_uid="1.1", series_instance_uid="1.1.1", created=later, engine="re-run"),
        _series(study_instance_uid="1.2", series_instance_uid="2.2"),
        _series(study_instance_uid="1.3", series_instance_uid="1.3.1", accession_number="ACC3"),
        _series(study_instance_uid="1.4", series_instance_uid="1.4.1"),
        _series(study_instance_uid="1.4", series_instance_uid="1.4.2"),
        _series(study_instance_uid="1.5", series_instance_uid="1.5.1", sex="M"),
        _series(study_instance_uid="1.9", series_instance_uid="1.9.1"),
        _series(subject_id="S9"),
    )
    result = join_cohort(cohort.rows, measured)
    joined = {j.row.subject_id: j for j in result.joined}
    assert set(joined) == {"S1", "S2", "S3", "S9"}
    assert joined["S1"].measured.engine == "re-run"  # the newest result of a series
    assert (joined["S1"].key, joined["S2"].key, joined["S3"].key, joined["S9"].key) == (
        "study_instance_uid", "series_instance_uid", "accession_number", "subject_id")
    reasons = {n.row.subject_id: n.reason for n in result.not_joined}
    assert reasons == {
        "S4": "2 measured series share this study instance uid; give series_instance_uid in the cohort file to "
              "choose one",
        "S5": "sex differs: cohort F, DICOM PatientSex M (wrong study?)",
        "S6": "no join key (series_instance_uid, study_instance_uid or accession_number) and no measurement with "
              "this subject_id",
        "S7": "no CT measurement with this study instance uid",
        "S8": "no CT measurement with this series instance uid",
    }
    assert result.summary() == "4 of 9 cohort rows joined to CT measurements, 5 not"
    assert result.unused_series == 4  # 1.4.1, 1.4.2 (ambiguous), 1.5.1 (sex) and 1.9.1 (nobody asked)


def test_a_series_is_joined_once_and_height_differences_are_warned(tmp_path: Path) -> None:
    text = ("subject_id,sex,height_m,dxa_leg_lean_mass_kg,dxa_smi_kg_m2,study_instance_uid,accession_number\n"
            "S1,F,1.60,11,5.5,1.1,\nS2,F,1.60,11,5.5,,ACC\n")
    cohort = read_cohort(_cohort(tmp_path, text))
    series = _series(study_instance_uid="1.1", series_instance_uid="1.1.1", accession_number="ACC", height_m=1.70)
    result = join_cohort(cohort.rows, (series,))
    assert [j.row.subject_id for j in result.joined] == ["S1"]
    assert result.not_joined[0].reason == "its series is already joined to row 2"
    assert "height the node used (1.70 m) differs from the cohort's (1.60 m)" in result.warnings[0]


# --- measurement files -----------------------------------------------------------------------------------------


def _measurements_json(folder: Path, study: str, series: str, *, all_complete: bool = True) -> Path:
    groups = []
    for group, mass in (("gluteal", 1400.0), ("above_knee", 7000.0), ("all", 9000.0)):
        for side, share in (("left", 0.5), ("right", 0.5), ("both", 1.0)):
            complete = all_complete or group != "all"
            groups.append({"group": group, "side": side, "completeness": "complete" if complete else "truncated",
                           "reason": "complete" if complete else "not measurable: truncated: lower-leg muscles",
                           "smm_g": mass * share if complete else None, "smi_kg_m2": None})
    data = {"format": "sarcoscreen-measurements/1", "created": "2026-01-01T00:00:00+00:00",
            "study_instance_uid": study, "series_instance_uid": series, "engine_name": "threshold",
            "engine_version": "1.0", "density_rule": "constant 1.04 g/cm3", "sex": "F", "height_m": 1.6,
            "groups": groups, "notes": []}
    folder.mkdir(parents=True)
    path = folder / "measurements.json"
    path.write_text(json.dumps(data))
    return path


def test_measurement_files_folders_and_tables(tmp_path: Path) -> None:
    _measurements_json(tmp_path / "m" / "a", "1.1", "1.1.1")
    _measurements_json(tmp_path / "m" / "b", "1.2", "1.2.1", all_complete=False)
    (tmp_path / "bad.json").write_text("{}")
    table = tmp_path / "truth.csv"
    table.write_text("subject_id,synthetic,sex,all_left_mass_g,all_right_mass_g,all_both_mass_g,truth_source\n"
                     "SYN-1,true,F,4000,4000,8000,coarse\n")
    source = load_measurement_files([tmp_path / "m", tmp_path / "bad.json", table, tmp_path / "missing"])
    assert len(source.series) == 3
    by_uid = {s.series_instance_uid: s for s in source.series}
    assert by_uid["1.1.1"].study_instance_uid == "1.1"
    assert by_uid["1.1.1"].smm_g["all_both"] == 9000.0
    assert by_uid["1.2.1"].smm_g["all_both"] is None
    assert by_uid["1.2.1"].reasons["all_both"] == "not measurable: truncated: lower-leg muscles"
    row = by_uid[""]
    assert (row.subject_id, row.synthetic, row.engine) == ("SYN-1", True, "phantom ground truth (coarse)")
    assert any("bad.json: not a sarcoscreen measurements.json" in p for p in source.problems)
    assert any("missing: no such file or folder" in p for p in source.problems)


def test_the_long_measurements_csv_of_analyze_is_read(tmp_path: Path) -> None:
    path = tmp_path / "measurements.csv"
    path.write_text("series_instance_uid,kind,key,side,smm_g,status,reason,engine,density_rule\n"
                    "1.2.3,structure,gluteus_maximus_right,right,,complete,,threshold 1.0,x\n"
                    "1.2.3,group,gluteal,left,700.5,complete,complete,threshold 1.0,x\n"
                    "1.2.3,group,all,both,,truncated,not measurable: truncated,threshold 1.0,x\n")
    (series,) = load_measurement_files([path]).series
    assert series.series_instance_uid == "1.2.3"
    assert series.smm_g == {"gluteal_left": 700.5, "all_both": None}
    assert series.reasons == {"all_both": "not measurable: truncated"}


def test_a_table_without_key_or_masses_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("sex,all_both_mass_g\nF,9000\n")
    (tmp_path / "b.csv").write_text("subject_id,mass\nP1,9000\n")
    problems = load_measurement_files([tmp_path / "a.csv", tmp_path / "b.csv"]).problems
    assert "a table of masses needs a key column" in problems[0]
    assert "no mass columns" in problems[1]


# --- the node's database ---------------------------------------------------------------------------------------


def _fingerprint(url: str) -> str:
    """The SQLite file's SHA-256, or on PostgreSQL the row counts and the newest change of every table."""
    from sarcoscreen.db.session import sqlite_file

    path = sqlite_file(url)
    if path is not None:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            counts = [connection.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
                      for t in ("studies", "series", "jobs", "group_results", "structure_measurements", "events")]
    finally:
        engine.dispose()
    return repr(counts)


def _fill_database(url: str) -> None:
    from sarcoscreen.db import models as m
    from sarcoscreen.db.migrate import upgrade
    from sarcoscreen.db.session import create_engine_from_url, session_scope

    upgrade(url)
    engine = create_engine_from_url(url)
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    with session_scope(engine) as session:
        study = m.Study(study_instance_uid="1.1", accession_number="ACC1", patient_sex="F")
        series = m.Series(study=study, series_instance_uid="1.1.1")
        for finished, mass, status in ((t0, 8000.0, m.JobStatus.DONE), (t0 + timedelta(hours=1), 9000.0,
                                                                          m.JobStatus.DONE),
                                       (t0 + timedelta(hours=2), 1.0, m.JobStatus.FAILED)):
            job = m.Job(series=series, status=status, finished_at=finished, engine_name="threshold",
                        engine_version="1.0")
            for side, share in (("left", 0.5), ("right", 0.5), ("both", 1.0)):
                job.groups.append(m.GroupResult(
                    muscle_group="all", side=m.GroupSide(side), completeness=m.Completeness.COMPLETE,
                    reason="complete", smm_g=mass * share, smi_kg_m2=None, height_m=1.6,
                    height_source=m.HeightSource.DICOM))
            job.groups.append(m.GroupResult(
                muscle_group="gluteal", side=m.GroupSide.BOTH, completeness=m.Completeness.TRUNCATED,
                reason="not measurable: truncated", smm_g=None, smi_kg_m2=None, height_m=1.6,
                height_source=m.HeightSource.DICOM))
            session.add(job)
    engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_results_are_read_from_the_node_database_read_only(backend: str, request: pytest.FixtureRequest,
                                                           tmp_path: Path) -> None:
    with database_url(backend, request, tmp_path) as url:
        _fill_database(url)
        before = _fingerprint(url)
        source = load_from_database(url)
        assert _fingerprint(url) == before
    (series,) = source.series
    assert (series.series_instance_uid, series.study_instance_uid, series.accession_number, series.sex) == (
        "1.1.1", "1.1", "ACC1", "F")
    assert series.smm_g["all_both"] == 9000.0  # the latest finished (done) job
    assert series.smm_g["gluteal_both"] is None
    assert series.reasons["gluteal_both"] == "not measurable: truncated"
    assert series.engine == "threshold 1.0"
    cohort = read_cohort(_cohort(tmp_path, "subject_id,sex,height_m,dxa_leg_lean_mass_kg,dxa_smi_kg_m2,"
                                           "accession_number\nP1,F,1.6,11,5.2,ACC1\n"))
    assert [j.key for j in join_cohort(cohort.rows, source.series).joined] == ["accession_number"]


def test_an_unusable_database_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MeasurementsError, match="no database file"):
        load_from_database(f"sqlite:///{tmp_path / 'absent.db'}")
    empty = tmp_path / "empty.db"
    import sqlite3

    sqlite3.connect(empty).close()
    with pytest.raises(MeasurementsError, match="cannot read the results"):
        load_from_database(f"sqlite:///{empty}")
    with pytest.raises(MeasurementsError, match="not supported"):
        load_from_database("mysql://x@y/z")


def test_study_command_reads_the_configured_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from sarcoscreen.node.cli import main

    url = f"sqlite:///{tmp_path / 'node.db'}"
    _fill_database(url)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SARCOSCREEN_CONFIG", raising=False)
    monkeypatch.setenv("SARCOSCREEN_DATABASE__URL", url)
    cohort = _cohort(tmp_path, "subject_id,sex,height_m,dxa_leg_lean_mass_kg,dxa_smi_kg_m2,accession_number\n"
                               "P1,F,1.6,11,5.2,ACC1\nP2,F,1.6,11,5.9,ACC2\n")
    assert main(["study", "--cohort", str(cohort), "--db", "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "1 of 2 cohort rows joined" in printed
    assert "not joined (1): no CT measurement with this accession number" in printed
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["measurements"]["source"] == f"database {url}"
    assert results["measurements"]["engines"] == ["threshold 1.0"]
    # One subject: no ROC, and the report says why instead of inventing numbers.
    assert all(r["auc"] is None for r in results["roc"])
    assert "every patient has low muscle mass by DXA: no ROC analysis" in (tmp_path / "out" / "report.md").read_text()
