"""``sarcoscreen results --qa``: series whose latest job has a QA flag - a group with a member muscle not found
where the scan holds it (completeness ``not found``), or a structure above the engine's uncertainty threshold - on
SQLite and PostgreSQL, and how the table, CSV and JSON show it."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from sarcoscreen.db.models import (
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
from sarcoscreen.db.queries import results
from sarcoscreen.db.session import session_scope
from sarcoscreen.node.cli import build_parser
from sarcoscreen.node.results_view import format_results


def _job(session: Session, uid: str, gluteal: Completeness, *, uncertain: bool = False) -> None:
    series = Series(study=Study(study_instance_uid=f"{uid}.0", patient_id=f"P-{uid}"), series_instance_uid=uid,
                    modality="CT", state=SeriesState.PROCESSED)
    job = Job(series=series, status=JobStatus.DONE, engine_name="bayesian-unet", engine_version="1.0",
              finished_at=datetime.now(UTC))
    for side in GroupSide:
        completeness = gluteal if side is not GroupSide.RIGHT else Completeness.COMPLETE
        job.groups.append(GroupResult(muscle_group="gluteal", side=side, completeness=completeness,
                                      reason=f"{completeness.value} (test)", height_source=HeightSource.DICOM))
    job.structures.append(StructureMeasurement(
        structure_key="gluteus_medius_left", label=4, name="Left gluteus medius", side="left", voxels=10,
        volume_cm3=1.0, mass_g=1.04, truncated=False, uncertainty=0.2, qa_flag=uncertain,
        density_rule="constant 1.04 g/cm3"))
    session.add(job)


def test_results_qa_lists_the_series_with_a_muscle_not_found_or_an_uncertain_structure(engine: Engine) -> None:
    with session_scope(engine) as session:
        _job(session, "1.2.7.1", Completeness.NOT_FOUND)
        _job(session, "1.2.7.2", Completeness.COMPLETE, uncertain=True)
        _job(session, "1.2.7.3", Completeness.NOT_IN_SCAN)
    with Session(engine) as session:
        everything = {r.series_instance_uid: r for r in results(session)}
        flagged = {r.series_instance_uid: r for r in results(session, qa=True)}
    assert set(everything) == {"1.2.7.1", "1.2.7.2", "1.2.7.3"}
    assert set(flagged) == {"1.2.7.1", "1.2.7.2"}
    assert flagged["1.2.7.1"].qa_flags == ("gluteal: a muscle not found",)
    assert flagged["1.2.7.1"].groups["gluteal"].qa_flag
    assert flagged["1.2.7.2"].qa_flags == ("uncertainty above the QA threshold: Left gluteus medius",)
    assert everything["1.2.7.3"].qa_flags == ()
    rows = [flagged["1.2.7.1"], everything["1.2.7.3"]]
    table = format_results(rows, "table")
    assert "gluteal: a muscle not found" in table
    assert "QA: a group with a muscle the engine did not find" in table
    by_uid = {r["series_instance_uid"]: r for r in csv.DictReader(format_results(rows, "csv").splitlines())}
    assert by_uid["1.2.7.1"]["qa"] == "gluteal: a muscle not found"
    assert by_uid["1.2.7.1"]["gluteal_completeness"] == "not found"
    assert by_uid["1.2.7.3"]["qa"] == ""
    data = {r["series_instance_uid"]: r for r in json.loads(format_results(rows, "json"))}
    assert data["1.2.7.1"]["qa_flags"] == ["gluteal: a muscle not found"]
    assert data["1.2.7.1"]["groups"]["gluteal"]["qa_flag"] is True
    assert data["1.2.7.3"]["groups"]["gluteal"]["qa_flag"] is False


def test_the_results_command_takes_qa() -> None:
    args = build_parser().parse_args(["results", "--qa", "--format", "csv"])
    assert args.qa is True
    assert build_parser().parse_args(["results"]).qa is False
