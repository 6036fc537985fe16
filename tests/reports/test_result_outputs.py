"""Truncated and uncertain groups and sarcoscreen's own upper gluteal group in every result a person or script
reads: the results table and the overlay, measurements.json/.csv (and the study reading them back), and
``sarcoscreen results`` on real rows (SQLite and PostgreSQL).

The analysis is the crafted one of the DICOM output tests (a real CT series on disk, a per-muscle label map) with
engine landmarks and extents: the right gluteus maximus reaches 35 mm beyond the scan (the gluteal group is
truncated on the right, with its in-scan mass and shortfall), and the right iliac crest is not in the scan (the
upper gluteal group is truncated on the right, complete on the left).
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dicom_output_fixtures import Crafted, calibration, crafted_analysis
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
    Study,
)
from sarcoscreen.db.queries import results
from sarcoscreen.db.session import session_scope
from sarcoscreen.inference.catalogue import Group, Side
from sarcoscreen.inference.density import DensityKind, DensityRule
from sarcoscreen.inference.engines.base import Certainty, ExtentStatus, Landmark, StructureExtent
from sarcoscreen.inference.height import choose_height
from sarcoscreen.inference.measure import measure
from sarcoscreen.inference.sides import SideRule
from sarcoscreen.node.commands.demo import comparison_table
from sarcoscreen.node.results_view import format_results
from sarcoscreen.reports.measurement_files import CSV_COLUMNS
from sarcoscreen.reports.overlay import render_overlay
from sarcoscreen.reports.result_files import write_result_files
from sarcoscreen.reports.results_table import display_groups, group_rows, results_table, table_rows
from sarcoscreen.reports.study.measurements import load_measurement_files

LANDMARKS = (
    Landmark("iliac_crest", 4, 4.0, Side.LEFT, method="top of the ilium", certainty=Certainty.CONFIRMED),
    Landmark("femoral_head", 6, 6.0, Side.LEFT, method="thickest bone ball"),
    Landmark("femoral_head", 6, 6.0, Side.RIGHT, method="thickest bone ball", certainty=Certainty.UNCERTAIN,
             note="two candidates 9 mm apart"),
)
EXTENTS = (StructureExtent("gluteus_maximus_right", ExtentStatus.TRUNCATED, shortfall_mm=35.0,
                           reason="the gluteus maximus continues below the scan"),)


@pytest.fixture(scope="module")
def crafted(tmp_path_factory: pytest.TempPathFactory) -> Crafted:
    return crafted_analysis(tmp_path_factory.mktemp("results") / "ct", landmarks=LANDMARKS, extents=EXTENTS)


def test_the_crafted_analysis_has_what_the_tests_need(crafted: Crafted) -> None:
    gluteal = crafted.report.group(Group.GLUTEAL, "right")
    assert (gluteal.completeness, gluteal.smm_g, gluteal.shortfall_mm) == (Completeness.TRUNCATED, None, 35.0)
    assert gluteal.in_scan_smm_g > 0
    upper = crafted.report.group(Group.UPPER_GLUTEAL, "right")
    assert (upper.completeness, upper.smm_g) == (Completeness.TRUNCATED, None)
    assert crafted.report.group(Group.UPPER_GLUTEAL, "left").completeness is Completeness.COMPLETE


def test_the_results_table_shows_the_reference_groups_first_and_no_partial_mass(crafted: Crafted) -> None:
    rows = group_rows(crafted.report)
    assert [r[0] for r in rows] == [g.title for g in Group if g.of_reference_study] + ["Upper gluteal *"]
    assert display_groups()[-1] is Group.UPPER_GLUTEAL
    gluteal = rows[0]
    in_scan = crafted.report.group(Group.GLUTEAL, "both").in_scan_smm_g / 1000.0
    # left complete, right and both truncated: no mass for them, the in-scan mass only as a lower bound
    assert gluteal[1:4] == (f"{crafted.report.group(Group.GLUTEAL, 'left').smm_g / 1000:.2f}", "-", "-")
    assert gluteal[-1] == f"truncated: in scan >= {in_scan:.2f} kg, 35 mm short"
    assert gluteal[4:6] == ("-", "-")  # no SMI, per side or of both sides
    upper = rows[-1]
    assert upper[-1].startswith("truncated: in scan >= ")
    assert upper[-1].endswith(" kg")  # no shortfall known for a missing landmark
    text = results_table(crafted.report)
    assert ("* Upper gluteal: Gluteal muscles from the iliac crest to the femoral head centre; sarcoscreen's own "
            "group, not one of the reference study's") in text
    assert "Upper gluteal *: not classified: not measurable: truncated: right iliac crest not found" in text


def test_the_overlay_renders_every_group(crafted: Crafted) -> None:
    picture = render_overlay(crafted.volume, crafted.segmentation, crafted.report)
    assert picture.mode == "RGB"
    assert picture.width >= 960


def test_measurement_files_carry_the_in_scan_mass_shortfall_and_landmarks(crafted: Crafted, tmp_path: Path) -> None:
    files = write_result_files(tmp_path, crafted.volume, crafted.segmentation, crafted.report, None).files
    data = json.loads(files["json"].read_text())
    groups = {(g["group"], g["side"]): g for g in data["groups"]}
    right = groups[("gluteal", "right")]
    assert (right["completeness"], right["smm_g"], right["smi_kg_m2"], right["shortfall_mm"]) == (
        "truncated", None, None, 35.0)
    assert right["in_scan_smm_g"] == pytest.approx(crafted.report.group(Group.GLUTEAL, "right").in_scan_smm_g)
    left = groups[("upper_gluteal", "left")]
    assert left["in_scan_smm_g"] == left["smm_g"] > 0
    assert {g["group"]: g["of_reference_study"] for g in data["group_definitions"]} == {
        g.value: g.of_reference_study for g in Group}
    assert data["landmarks"][2] == {"name": "femoral_head", "slice_index": 6, "z_mm": 6.0, "side": "right",
                                    "description": "", "method": "thickest bone ball", "certainty": "uncertain",
                                    "note": "two candidates 9 mm apart"}
    assert data["landmarks"][0]["certainty"] == "confirmed"
    structures = {s["key"]: s for s in data["structures"]}
    assert structures["gluteus_maximus_right"]["shortfall_mm"] == 35.0
    assert structures["gluteus_maximus_right"]["extent_note"] == "the gluteus maximus continues below the scan"
    with files["csv"].open() as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
        rows = {(r["kind"], r["key"], r["side"]): r for r in reader}
    row = rows[("group", "gluteal", "right")]
    assert (row["status"], row["smm_g"], row["smi_kg_m2"], row["shortfall_mm"]) == ("truncated", "", "", "35.0")
    assert float(row["in_scan_smm_g"]) == pytest.approx(right["in_scan_smm_g"], abs=0.005)
    structure = rows[("structure", "gluteus_maximus_right", "right")]
    assert (structure["status"], structure["shortfall_mm"]) == ("truncated", "35.0")
    assert structure["reason"] == "the gluteus maximus continues below the scan"
    assert rows[("group", "upper_gluteal", "left")]["status"] == "complete"


def test_a_bone_has_volume_and_attenuation_but_no_mass_in_the_files(crafted: Crafted, tmp_path: Path) -> None:
    """Issue 11: the femur was written with a mass at muscle density."""
    files = write_result_files(tmp_path, crafted.volume, crafted.segmentation, crafted.report, None).files
    femur = {s["key"]: s for s in json.loads(files["json"].read_text())["structures"]}["femur_left"]
    assert femur["voxels"] > 0
    assert femur["volume_cm3"] > 0
    assert femur["mean_hu"] is not None
    assert femur["mass_g"] is None
    with files["csv"].open() as handle:
        row = next(r for r in csv.DictReader(handle) if r["key"] == "femur_left")
    assert (row["mass_g"], row["volume_cm3"] != "") == ("", True)


def test_the_files_say_which_uncertainty_measure_the_values_are(crafted: Crafted, tmp_path: Path) -> None:
    """Issue 11, defect 12: the measure (predictive variance or entropy) next to the values, not in a note only."""
    files = write_result_files(tmp_path, crafted.volume, crafted.segmentation, crafted.report, None).files
    assert json.loads(files["json"].read_text())["uncertainty_measure"] == "variance"
    with files["csv"].open() as handle:
        rows = {r["key"]: r for r in csv.DictReader(handle) if r["kind"] == "structure"}
    assert (rows["gluteus_maximus_right"]["uncertainty"], rows["gluteus_maximus_right"]["uncertainty_measure"]) == (
        "0.31000", "variance")
    assert rows["femur_left"]["uncertainty_measure"] == ""  # no uncertainty for it, so no measure


def test_the_study_never_takes_the_in_scan_mass_for_the_group_mass(crafted: Crafted, tmp_path: Path) -> None:
    files = write_result_files(tmp_path, crafted.volume, crafted.segmentation, crafted.report, None).files
    for path in (files["json"], files["csv"]):
        (series,) = load_measurement_files([path]).series
        assert series.mass(Group.GLUTEAL, "right") is None, path.name
        assert "truncated" in series.reason(Group.GLUTEAL, "right")
        assert series.mass(Group.UPPER_GLUTEAL, "left") == pytest.approx(
            crafted.report.group(Group.UPPER_GLUTEAL, "left").smm_g, abs=0.005)
        assert series.mass(Group.UPPER_GLUTEAL, "right") is None


def _processed_job(engine: Engine, groups: list[GroupResult]) -> None:
    with session_scope(engine) as session:
        study = Study(study_instance_uid="1.2.826.0.1.7", patient_id="P-7", patient_sex="F")
        series = Series(study=study, series_instance_uid="1.2.826.0.1.7.1", modality="CT",
                        state=SeriesState.PROCESSED)
        job = Job(series=series, status=JobStatus.DONE, finished_at=datetime.now(UTC), engine_name="threshold",
                  engine_version="1.0")
        job.groups.extend(groups)
        session.add(job)


def _group(group: Group, completeness: Completeness, **values: object) -> GroupResult:
    return GroupResult(muscle_group=group.value, side=GroupSide.BOTH, completeness=completeness,
                       reason=f"{completeness.value} (test)", height_m=1.6, height_source=HeightSource.DICOM,
                       classification=Classification.NOT_CLASSIFIED, screening_side_rule="mean", **values)


def test_the_results_command_shows_partial_groups_apart_from_the_mass(engine: Engine) -> None:
    _processed_job(engine, [
        _group(Group.GLUTEAL, Completeness.COMPLETE, smm_g=1500.0, in_scan_smm_g=1500.0, smi_kg_m2=0.59,
               screening_smi_kg_m2=0.29),
        _group(Group.ABOVE_KNEE, Completeness.COMPLETE, smm_g=7000.0, in_scan_smm_g=7000.0, smi_kg_m2=2.73,
               screening_smi_kg_m2=1.37),
        _group(Group.ALL, Completeness.TRUNCATED, in_scan_smm_g=7400.0, shortfall_mm=40.0),
        _group(Group.UPPER_GLUTEAL, Completeness.UNCERTAIN, in_scan_smm_g=610.0),
    ])
    with session_scope(engine) as session:
        rows = results(session)
    table = format_results(rows, "table")
    header = table.splitlines()[0]
    assert header.index("gluteal SMI") < header.index("above-knee SMI") < header.index("all SMI") < header.index(
        "upper-gluteal * SMI")
    assert "all truncated >= 7.40 kg, 40 mm short; upper-gluteal * uncertain >= 0.61 kg" in table
    assert "lower bound, not the group's mass" in table
    assert "sarcoscreen's own group, not one of the reference study's" in table
    (flat,) = csv.DictReader(format_results(rows, "csv").splitlines())
    assert (flat["all_smm_kg"], flat["all_completeness"], flat["all_in_scan_lower_bound_kg"],
            flat["all_shortfall_mm"]) == ("", "truncated", "7.40", "40")
    assert (flat["gluteal_smm_kg"], flat["gluteal_in_scan_lower_bound_kg"]) == ("1.50", "")
    assert (flat["upper_gluteal_completeness"], flat["upper_gluteal_in_scan_lower_bound_kg"]) == ("uncertain", "0.61")
    (data,) = json.loads(format_results(rows, "json"))
    assert {k: data["groups"]["all"][k] for k in ("smm_g", "in_scan_smm_g", "in_scan_is_lower_bound",
                                                    "shortfall_mm", "of_reference_study")} == {
        "smm_g": None, "in_scan_smm_g": 7400.0, "in_scan_is_lower_bound": True, "shortfall_mm": 40.0,
        "of_reference_study": True}
    assert data["groups"]["gluteal"]["in_scan_is_lower_bound"] is False
    assert data["groups"]["upper_gluteal"]["of_reference_study"] is False


def test_the_demo_comparison_handles_a_group_without_ground_truth() -> None:
    truth = {"groups": [{"group": g.value, "side": "both",
                         "mass_g": {"constant_1.04": None if g is Group.UPPER_GLUTEAL else 1000.0}} for g in Group]}
    measured = {Group.GLUTEAL: (1100.0, "complete"), Group.ALL: (None, "truncated"),
                Group.UPPER_GLUTEAL: (600.0, "complete")}
    lines = comparison_table(measured, "constant 1.04 g/cm3", truth).splitlines()
    assert lines[1].startswith("Gluteal muscles")
    assert lines[1].endswith("+10.0%")
    assert lines[3].split() == ["All", "lower-extremity", "muscles", "-", "1.00", "truncated"]
    assert lines[4].startswith("Upper gluteal *")
    assert lines[4].endswith("no ground truth for this group")
    assert lines[5].startswith("* Upper gluteal: ")


# --- issue 11, defect 13: the SMI shown is per side (the side rule's), labelled so, with both sides' beside it ------

PER_SIDE_MEAN = "per side (mean of left and right)"


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> Crafted:
    """The crafted analysis without landmarks or extents: the gluteal group is complete on both sides."""
    return crafted_analysis(tmp_path_factory.mktemp("whole") / "ct")


def test_the_table_labels_the_smi_per_side_and_shows_both_sides_beside_it(whole: Crafted) -> None:
    """The results table (analyze) and the overlay (the key image) showed 'SMI kg/m2' 0.31 next to 1.54 kg for
    both sides: the mean of the sides' SMI, half the both-sides SMI, unlabelled."""
    report = whole.report
    per_side, both = report.screening_of(Group.GLUTEAL).smi_kg_m2, report.group(Group.GLUTEAL, "both").smi_kg_m2
    assert both == pytest.approx(2 * per_side)  # one height: the mean of the sides is half the both-sides SMI
    header, *rows = table_rows(report)  # what the overlay draws
    column = header.index(f"SMI kg/m2 {PER_SIDE_MEAN}")
    assert header[column + 1] == "SMI kg/m2 both sides"
    assert (rows[0][column], rows[0][column + 1]) == (f"{per_side:.2f}", f"{both:.2f}")
    assert rows == group_rows(report)
    first_line = results_table(report).splitlines()[0]
    assert f"SMI kg/m2 {PER_SIDE_MEAN}" in first_line
    assert "SMI kg/m2 both sides" in first_line
    lower = measure(whole.volume, whole.segmentation, DensityRule(DensityKind.CONSTANT, 1.04, False, (-29.0, 150.0)),
                    choose_height(1.62, None, None), side_rule=SideRule.MIN)
    assert "SMI kg/m2 per side (lower of left and right)" in table_rows(lower)[0]


def test_the_screening_reason_says_which_smi(whole: Crafted) -> None:
    report = measure(whole.volume, whole.segmentation, DensityRule(DensityKind.CONSTANT, 1.04, False, (-29.0, 150.0)),
                     choose_height(1.62, None, None), calibration=calibration())
    gluteal = report.screening_of(Group.GLUTEAL)
    both = report.group(Group.GLUTEAL, "both").smi_kg_m2
    assert gluteal.reason.startswith(f"SMI per side (lower of left and right) {gluteal.smi_kg_m2:.2f} kg/m2 below")
    assert f"(both sides {both:.2f} kg/m2)" in gluteal.reason


def test_the_files_label_the_screening_smi_and_carry_both_sides_beside_it(whole: Crafted, tmp_path: Path) -> None:
    report = whole.report
    files = write_result_files(tmp_path, whole.volume, whole.segmentation, report, None).files
    screening = {s["group"]: s for s in json.loads(files["json"].read_text())["screening"]}["gluteal"]
    assert (screening["side_rule"], screening["smi_basis"]) == ("mean", PER_SIDE_MEAN)
    # (the JSON keeps 6 decimals; the crafted muscles are small)
    assert screening["smi_kg_m2"] == pytest.approx(report.screening_of(Group.GLUTEAL).smi_kg_m2, abs=1e-6)
    assert screening["bilateral_smi_kg_m2"] == pytest.approx(report.group(Group.GLUTEAL, "both").smi_kg_m2,
                                                             abs=1e-6)
    with files["csv"].open() as handle:
        rows = {(r["kind"], r["key"], r["side"]): r for r in csv.DictReader(handle)}
    row = rows[("screening", "gluteal", "mean")]
    assert row["smi_basis"] == PER_SIDE_MEAN
    assert float(row["smi_both_sides_kg_m2"]) == pytest.approx(report.group(Group.GLUTEAL, "both").smi_kg_m2,
                                                               abs=1e-4)
    assert {rows[("group", "gluteal", side)]["smi_basis"] for side in ("left", "right", "both")} == {
        "left side", "right side", "both sides"}


def test_the_results_command_labels_the_smi_per_side_and_shows_both_sides(engine: Engine) -> None:
    _processed_job(engine, [
        _group(Group.GLUTEAL, Completeness.COMPLETE, smm_g=1540.0, in_scan_smm_g=1540.0, smi_kg_m2=0.62,
               screening_smi_kg_m2=0.31),
    ])
    with session_scope(engine) as session:
        rows = results(session)
    table = format_results(rows, "table").splitlines()
    header, values = table[0], table[2]
    per_side, both = f"gluteal SMI {PER_SIDE_MEAN}", "gluteal SMI both sides"
    assert header.index(per_side) < header.index(both)
    assert values[header.index(per_side):].split()[0] == "0.31"
    assert values[header.index(both):].split()[0] == "0.62"
    (flat,) = csv.DictReader(format_results(rows, "csv").splitlines())
    assert (flat["gluteal_smi_per_side_kg_m2"], flat["gluteal_smi_side_rule"], flat["gluteal_smi_both_sides_kg_m2"]) \
        == ("0.31", "mean", "0.62")
    assert "gluteal_smi_kg_m2" not in flat
    (data,) = json.loads(format_results(rows, "json"))
    gluteal = data["groups"]["gluteal"]
    assert (gluteal["screening_smi_kg_m2"], gluteal["screening_smi_basis"], gluteal["smi_kg_m2"]) == (
        0.31, PER_SIDE_MEAN, 0.62)
