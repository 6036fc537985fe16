"""The schema: models and migrations agree, migrations go up and down, and the database enforces the rules.

Every test runs on a SQLite file and on PostgreSQL (a fresh schema per test; skipped without
SARCOSCREEN_TEST_POSTGRES_URL). No mocks: real databases, real constraints.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from db_support import BACKENDS, database_url, done_job_on_an_older_schema
from sqlalchemy import Engine, delete, func, inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from sarcoscreen.db import migrate
from sarcoscreen.db.models import (
    Base,
    Completeness,
    Delivery,
    Event,
    GroupResult,
    GroupSide,
    Instance,
    InstanceState,
    Job,
    JobStatus,
    Output,
    OutputKind,
    Series,
    StructureMeasurement,
    Study,
)
from sarcoscreen.db.session import create_engine_from_url, session_scope
from sarcoscreen.inference.catalogue import Group

TABLES = {"studies", "series", "instances", "jobs", "structure_measurements", "group_results", "outputs",
          "deliveries", "patient_heights", "events", "web_users", "store_refusals"}


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database (no tables)."""
    with database_url(request.param, request, tmp_path) as url:
        yield url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on a database migrated to head."""
    migrate.upgrade(db_url)
    engine = create_engine_from_url(db_url)
    yield engine
    engine.dispose()


def _study(uid: str = "1.2.3", patient_id: str | None = "P-1") -> Study:
    return Study(study_instance_uid=uid, patient_id=patient_id, patient_sex="F")


def _series(study: Study, uid: str = "1.2.3.4") -> Series:
    return Series(study=study, series_instance_uid=uid, modality="CT")


def _instance(series: Series, uid: str = "1.2.3.4.5") -> Instance:
    return Instance(series=series, sop_instance_uid=uid, sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                    transfer_syntax_uid="1.2.840.10008.1.2.1", spool_path=f"1.2.3.4/{uid}.dcm", size_bytes=1024,
                    sha256="0" * 64, calling_ae_title="PACS")


# --- models and migrations agree ------------------------------------------------------------------------------


def _reflected(engine: Engine) -> dict[str, dict[str, object]]:
    """Per table: foreign keys (with ON DELETE), CHECK constraint names and indexes, as reflected."""
    inspector = inspect(engine)
    result: dict[str, dict[str, object]] = {}
    for table in TABLES:
        indexes = {
            (ix["name"], tuple(ix["column_names"]), bool(ix["unique"]))
            for ix in inspector.get_indexes(table)
            if not ix.get("duplicates_constraint")  # PostgreSQL lists unique constraints as indexes too
        }
        result[table] = {
            "fks": {(fk["name"], tuple(fk["constrained_columns"]), fk["referred_table"],
                     (fk["options"] or {}).get("ondelete")) for fk in inspector.get_foreign_keys(table)},
            "checks": {ck["name"] for ck in inspector.get_check_constraints(table)},
            "indexes": indexes,
        }
    return result


def _declared() -> dict[str, dict[str, object]]:
    from sqlalchemy import CheckConstraint

    result: dict[str, dict[str, object]] = {}
    for table in Base.metadata.sorted_tables:
        result[table.name] = {
            "fks": {(fk.name, tuple(c.name for c in fk.columns), fk.referred_table.name, fk.ondelete)
                    for fk in table.foreign_key_constraints},
            "checks": {c.name for c in table.constraints if isinstance(c, CheckConstraint)},
            "indexes": {(ix.name, tuple(c.name for c in ix.columns), bool(ix.unique)) for ix in table.indexes},
        }
    return result


def test_migrated_schema_matches_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True})
        assert compare_metadata(context, Base.metadata) == []
    assert set(inspect(engine).get_table_names()) == TABLES | {"alembic_version"}
    # What Alembic's comparison does not look at: ON DELETE rules, CHECK constraints, partial indexes.
    assert _reflected(engine) == _declared()


def test_the_comparison_notices_a_difference(engine: Engine) -> None:
    """A control for the test above: a column the migration lacks is reported."""
    from sqlalchemy import Column, Integer, MetaData

    changed = MetaData()
    for table in Base.metadata.sorted_tables:
        table.to_metadata(changed)
    changed.tables["jobs"].append_column(Column("priority", Integer))
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), changed)
    assert [entry[0] for entry in diff] == ["add_column"]


def test_upgrade_downgrade_upgrade(db_url: str) -> None:
    assert migrate.current(db_url) is None
    migrate.upgrade(db_url)
    assert migrate.current(db_url) == migrate.head()
    migrate.downgrade(db_url, "base")
    assert migrate.current(db_url) is None
    engine = create_engine_from_url(db_url)
    try:
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()
    migrate.upgrade(db_url)
    assert migrate.current(db_url) == migrate.head()
    engine = create_engine_from_url(db_url)
    try:
        assert set(inspect(engine).get_table_names()) >= TABLES
    finally:
        engine.dispose()


def test_ensure_schema_from_several_processes_at_once(db_url: str) -> None:
    """Workers starting together: one migrates, the others wait for its lock and find the schema in place."""
    errors: list[BaseException] = []

    def start() -> None:
        try:
            migrate.ensure_schema(db_url)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert migrate.current(db_url) == migrate.head()
    migrate.ensure_schema(db_url)  # already at head: nothing to do


def test_a_revision_from_a_newer_version_is_refused(engine: Engine, db_url: str) -> None:
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'ffff9999'"))
    with pytest.raises(migrate.MigrationError, match=r"ffff9999.*does not know"):
        migrate.ensure_schema(db_url)
    with pytest.raises(migrate.MigrationError, match="ffff9999"):
        migrate.upgrade(db_url)


def test_current_does_not_create_a_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "nothing" / "here.db"
    assert migrate.current(f"sqlite:///{path}") is None
    assert not path.exists()
    assert not path.parent.exists()


# --- the database enforces the rules --------------------------------------------------------------------------


def test_sqlite_connections_use_wal_foreign_keys_and_a_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "new" / "folder" / "node.db"
    engine = create_engine_from_url(f"sqlite:///{path}")
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
        assert path.is_file()
    finally:
        engine.dispose()


def test_sqlite_transactions_cover_ddl(tmp_path: Path) -> None:
    """SQLAlchemy emits BEGIN itself, so a rolled-back CREATE TABLE leaves nothing (the driver's legacy mode would)."""
    engine = create_engine_from_url(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("CREATE TABLE scratch (x INTEGER)")
            connection.rollback()
        assert "scratch" not in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_an_instance_of_a_missing_series_is_refused(engine: Engine) -> None:
    with Session(engine) as session:
        session.add(Instance(series_id=999, sop_instance_uid="1.2.3.4.5", sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                             transfer_syntax_uid="1.2.840.10008.1.2.1", spool_path="x.dcm", size_bytes=1,
                             sha256="0" * 64))
        with pytest.raises(IntegrityError, match=r"(?i)foreign key"):
            session.flush()


def test_a_sop_instance_uid_is_stored_once(engine: Engine) -> None:
    with session_scope(engine) as session:
        series = _series(_study())
        session.add(_instance(series, "1.2.3.4.5"))
    with Session(engine) as session:
        series = session.scalars(select(Series)).one()
        session.add(_instance(series, "1.2.3.4.5"))
        with pytest.raises(IntegrityError):
            session.flush()


def test_deleting_a_study_deletes_everything_below_it_but_keeps_events(engine: Engine) -> None:
    with session_scope(engine) as session:
        series = _series(_study())
        _instance(series)
        job = Job(series=series, status=JobStatus.DONE)
        job.structures.append(StructureMeasurement(
            structure_key="gluteus_maximus_right", label=1, name="gluteus maximus", side="right", voxels=10,
            volume_cm3=1.0, mean_hu=40.0, sd_hu=10.0, fraction_in_window=0.9, mass_g=1.04, truncated=False,
            density_rule="constant 1.04 g/cm3"))
        job.groups.append(GroupResult(muscle_group="gluteal", side="both", completeness="complete",
                                      reason="complete", smm_g=1000.0, height_source="dicom", height_m=1.6))
        output = Output(kind=OutputKind.SEG, sop_class_uid="1.2.840.10008.5.1.4.1.1.66.4",
                        sop_instance_uid="2.25.1", series_instance_uid="2.25.2", path="out/seg.dcm")
        output.deliveries.append(Delivery(destination_name="pacs", destination_ae_title="PACS", host="pacs",
                                          port=104))
        job.outputs.append(output)
        session.add(job)
        session.flush()
        session.add(Event(kind="job.done", message="done", series_id=series.id, job_id=job.id))
    with engine.begin() as connection:
        connection.execute(delete(Study))  # plain SQL: the database's ON DELETE rules, not the ORM, do the work
    with engine.connect() as connection:
        for model in (Series, Instance, Job, StructureMeasurement, GroupResult, Output, Delivery):
            assert connection.scalar(select(func.count()).select_from(model)) == 0, model.__tablename__
        events = connection.execute(select(Event.kind, Event.series_id, Event.job_id)).all()
    assert [tuple(e) for e in events] == [("job.done", None, None)]


def test_states_are_stored_as_their_words_and_others_are_refused(engine: Engine) -> None:
    with session_scope(engine) as session:
        instance = _instance(_series(_study()))
        instance.state = InstanceState.MISSING_FILE
        session.add(instance)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT state FROM instances")).scalar() == "missing file"
        assert connection.execute(text("SELECT state FROM series")).scalar() == "receiving"
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(text("UPDATE instances SET state = 'lost'"))


def test_timestamps_come_back_as_utc_and_naive_ones_are_refused(engine: Engine) -> None:
    local = timezone(timedelta(hours=2))
    received = datetime(2026, 3, 1, 10, 30, 15, 123456, tzinfo=local)
    with session_scope(engine) as session:
        study = Study(study_instance_uid="1.2.3", study_date=date(2026, 3, 1))
        session.add(Series(study=study, series_instance_uid="1.2.3.4", first_received_at=received,
                           last_received_at=received))
    with session_scope(engine) as session:
        series = session.scalars(select(Series)).one()
        assert series.first_received_at == received
        assert series.first_received_at.tzinfo is UTC
        assert series.first_received_at.hour == 8
        assert series.study.created_at.tzinfo is UTC
        assert abs(series.study.created_at - datetime.now(UTC)) < timedelta(minutes=5)
    with Session(engine) as session:
        series = session.scalars(select(Series)).one()
        series.last_received_at = datetime(2026, 3, 1, 10, 0)  # naive: the point of the test
        with pytest.raises(StatementError, match="naive datetime"):
            session.flush()


def test_queue_order_compares_instants_across_time_zones(engine: Engine) -> None:
    """Jobs due earlier come first whatever time zone their times were given in (SQLite compares text)."""
    early = datetime(2026, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=5)))  # 07:00 UTC
    late = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
    with session_scope(engine) as session:
        series = _series(_study())
        session.add_all([Job(series=series, next_attempt_at=late, error="late"),
                         Job(series=series, next_attempt_at=early, error="early")])
    with session_scope(engine) as session:
        due = session.scalars(
            select(Job.error).where(Job.status == JobStatus.QUEUED,
                                    Job.next_attempt_at <= datetime(2026, 1, 1, 7, 30, tzinfo=UTC))
            .order_by(Job.next_attempt_at)).all()
        order = session.scalars(select(Job.error).order_by(Job.next_attempt_at)).all()
    assert due == ["early"]
    assert order == ["early", "late"]


def test_errors_do_not_show_patient_identifiers(engine: Engine) -> None:
    """A constraint error quotes neither bound values nor PostgreSQL's DETAIL line (it names the key's value)."""
    with session_scope(engine) as session:
        session.add(_study("1.2.3", patient_id="SECRET-PID-77"))
    with pytest.raises(IntegrityError) as raised, engine.begin() as connection:
        connection.execute(text("INSERT INTO patient_heights (patient_id, height_m, imported_at) "
                                "VALUES (:patient_id, -1, CURRENT_TIMESTAMP)"), {"patient_id": "SECRET-PID-77"})
    assert "SECRET-PID-77" not in str(raised.value)
    with Session(engine) as session:
        session.add(_study("1.2.3", patient_id="SECRET-PID-77"))
        with pytest.raises(IntegrityError) as raised:
            session.flush()
    assert "SECRET-PID-77" not in str(raised.value)
    assert "1.2.3" not in str(raised.value).split("[SQL")[0]


def test_a_sqlite_batch_migration_keeps_the_rows_of_child_tables(tmp_path: Path) -> None:
    """SQLite batch mode copies a table and drops the old one; with foreign keys on, that DROP would cascade.

    Migrations therefore run with foreign keys off (checked with ``PRAGMA foreign_key_check`` before commit).
    """
    from alembic.operations import Operations

    url = f"sqlite:///{tmp_path / 'node.db'}"
    migrate.upgrade(url)
    engine = create_engine_from_url(url)
    try:
        with session_scope(engine) as session:
            session.add(_study("9.9"))
            session.add(_instance(_series(_study("1.2.3.9"), "1.2.3.9.4"), "1.2.3.9.4.5"))

        def recreate_studies(config: object) -> None:
            connection = config.attributes["connection"]  # type: ignore[attr-defined]
            operations = Operations(MigrationContext.configure(connection, opts={"render_as_batch": True}))
            with operations.batch_alter_table("studies", recreate="always"):
                pass

        migrate._run_locked(url, recreate_studies)
        with engine.connect() as connection:
            assert connection.scalar(select(func.count()).select_from(Series)) == 1
            assert connection.scalar(select(func.count()).select_from(Instance)) == 1
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()


# --- revision 0004: truncated and uncertain groups, the upper gluteal group ------------------------------------


def _group_row(job_id: int, group: str, completeness: str) -> dict[str, object]:
    return {"job_id": job_id, "muscle_group": group, "side": "both", "completeness": completeness,
            "reason": "test", "height_source": "dicom"}


def test_0004_keeps_rows_adds_the_extent_columns_and_goes_back(db_url: str) -> None:
    """0003 rows survive 0004 with empty new columns; 0004 takes 'uncertain', the in-scan mass, the shortfall and
    the upper gluteal group; the downgrade turns 'uncertain' into 'truncated', deletes the upper gluteal rows (the
    older version does not know the group) and refuses 'uncertain' again."""
    migrate.upgrade(db_url, "0003")
    engine = create_engine_from_url(db_url)
    insert_group = text("INSERT INTO group_results (job_id, muscle_group, side, completeness, reason, "
                        "height_source) VALUES (:job_id, :muscle_group, :side, :completeness, :reason, "
                        ":height_source)")
    try:
        job_id = done_job_on_an_older_schema(engine)
        with engine.begin() as connection:
            connection.execute(insert_group, _group_row(job_id, "gluteal", "truncated"))
        with pytest.raises(IntegrityError), engine.begin() as connection:
            connection.execute(insert_group, _group_row(job_id, "all", "uncertain"))
        migrate.upgrade(db_url)
        engine.dispose()
        with session_scope(engine) as session:
            old = session.scalars(select(GroupResult)).one()
            assert (old.muscle_group, old.completeness, old.in_scan_smm_g, old.shortfall_mm) == (
                "gluteal", Completeness.TRUNCATED, None, None)
            old.in_scan_smm_g, old.shortfall_mm = 812.5, 35.0
            session.add(GroupResult(job_id=job_id, muscle_group=Group.UPPER_GLUTEAL.value, side="both",
                                    completeness=Completeness.UNCERTAIN, reason="left iliac crest uncertain",
                                    in_scan_smm_g=640.0, height_source="dicom"))
            session.add(GroupResult(job_id=job_id, muscle_group=Group.ALL.value, side="both",
                                    completeness=Completeness.UNCERTAIN, reason="the ankle is uncertain",
                                    in_scan_smm_g=9000.0, height_source="dicom"))
            session.add(StructureMeasurement(
                job_id=job_id, structure_key="gluteus_maximus_right", label=1, name="Right gluteus maximus",
                side="right", voxels=10, volume_cm3=1.0, mass_g=1.04, truncated=True, shortfall_mm=35.0,
                extent_uncertain=False, extent_note="continues below the scan", density_rule="constant 1.04 g/cm3"))
        with engine.connect() as connection:
            stored = connection.execute(text(
                "SELECT muscle_group, completeness, in_scan_smm_g, shortfall_mm FROM group_results ORDER BY id")).all()
            structure = connection.execute(text(
                "SELECT extent_uncertain, shortfall_mm, extent_note FROM structure_measurements")).one()
        assert [tuple(r) for r in stored] == [("gluteal", "truncated", 812.5, 35.0),
                                              ("upper_gluteal", "uncertain", 640.0, None),
                                              ("all", "uncertain", 9000.0, None)]
        assert (bool(structure[0]), structure[1], structure[2]) == (False, 35.0, "continues below the scan")
        migrate.downgrade(db_url, "0003")
        engine.dispose()
        assert migrate.current(db_url) == "0003"
        with engine.connect() as connection:
            rows_after = connection.execute(text(
                "SELECT muscle_group, completeness, reason FROM group_results ORDER BY id")).all()
        assert [tuple(r) for r in rows_after] == [("gluteal", "truncated", "test"),
                                                  ("all", "truncated", "the ankle is uncertain")]
        columns = {c["name"] for c in inspect(engine).get_columns("group_results")}
        assert not columns & {"in_scan_smm_g", "shortfall_mm"}
        columns = {c["name"] for c in inspect(engine).get_columns("structure_measurements")}
        assert not columns & {"extent_uncertain", "shortfall_mm", "extent_note"}
        with pytest.raises(IntegrityError), engine.begin() as connection:
            connection.execute(insert_group, _group_row(job_id, "above_knee", "uncertain"))
        migrate.upgrade(db_url)
        assert migrate.current(db_url) == migrate.head()
    finally:
        engine.dispose()


def test_every_completeness_is_accepted_and_others_are_refused(engine: Engine) -> None:
    with session_scope(engine) as session:
        job = Job(series=_series(_study()), status=JobStatus.DONE)
        for n, completeness in enumerate(Completeness):
            job.groups.append(GroupResult(muscle_group=list(Group)[n % len(Group)], side=list(GroupSide)[n // 4],
                                          completeness=completeness, reason=completeness.value,
                                          height_source="unknown"))
        session.add(job)
    with engine.connect() as connection:
        stored = set(connection.execute(text("SELECT completeness FROM group_results")).scalars())
    assert stored == {c.value for c in Completeness}
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(text("UPDATE group_results SET completeness = 'partial'"))
