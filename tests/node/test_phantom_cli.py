"""``sarcoscreen phantom``, ``phantom cohort`` and ``phantom crop`` end to end, and the synthetic cohort."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pydicom
import pytest
from scipy.stats import spearmanr

from sarcoscreen.inference.phantom import PhantomParameterError
from sarcoscreen.inference.phantom.cohort import COHORT_COLUMNS, make_cohort
from sarcoscreen.node.cli import main


def test_phantom_command_writes_series_labels_and_ground_truth(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ph"
    code = main(["phantom", "--out", str(out), "--fov", "legs", "--matrix", "80", "--slice-mm", "8",
                 "--sex", "M", "--height", "1.75", "--fatty-infiltration", "0.3", "--contrast", "--no-table",
                 "--offset-mm", "10", "-5", "--patient-position", "FFS", "--seed", "4", "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "SYNTHETIC phantom" in printed
    assert "gluteal" in printed
    assert "knee_joint" in printed
    gt = json.loads((out / "ground_truth.json").read_text())
    assert gt["synthetic"] is True
    params = gt["parameters"]
    assert params["sex"] == "M"
    assert params["height_m"] == 1.75
    assert params["contrast"] is True
    assert params["table"] is False
    assert params["offset_mm"] == [10.0, -5.0]
    assert (out / "labels.nii.gz").is_file()
    files = sorted((out / "dicom").glob("*.dcm"))
    assert len(files) == gt["series"]["slices"]
    ds = pydicom.dcmread(files[0])
    assert ds.PatientSex == "M"
    assert ds.PatientPosition == "FFS"
    assert ds.BodyPartExamined == "LEG"


@pytest.mark.parametrize("argv", [
    ["phantom", "--out", "X", "--height", "158"],
    ["phantom", "--out", "X", "--muscle-scale", "5"],
    ["phantom", "--out", "X", "--fatty-infiltration", "2"],
    ["phantom"],
])
def test_phantom_command_refuses_bad_arguments_with_one_message(argv: list[str], tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    argv = [str(tmp_path / a) if a == "X" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("sarcoscreen: phantom")
    assert "Traceback" not in err
    assert not (tmp_path / "X").exists()


def test_cohort_files_columns_and_synthetic_labelling(tmp_path: Path) -> None:
    result = make_cohort(24, tmp_path / "cohort", seed=7, sex="F")
    with result.cohort_csv.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 24
    assert tuple(rows[0]) == COHORT_COLUMNS
    assert all(r["synthetic"] == "true" and r["sex"] == "F" for r in rows)
    assert len({r["subject_id"] for r in rows}) == 24
    assert "SYNTHETIC" in result.readme.read_text()
    with result.truth_csv.open() as f:
        truth = list(csv.DictReader(f))
    assert [t["subject_id"] for t in truth] == [r["subject_id"] for r in rows]
    assert all(t["synthetic"] == "true" for t in truth)
    # The upper gluteal group (crest to femoral head centre) is part of the gluteal group.
    for t in truth:
        assert 0.3 * float(t["gluteal_left_mass_g"]) < float(t["upper_gluteal_left_mass_g"]) < float(
            t["gluteal_left_mass_g"])
    dxa = [float(r["dxa_leg_lean_mass_kg"]) for r in rows]
    mass = [float(t["all_both_mass_g"]) for t in truth]
    assert spearmanr(dxa, mass).statistic > 0.7
    smi = [float(r["dxa_smi_kg_m2"]) for r in rows]
    assert 4.0 < sum(smi) / len(smi) < 7.5
    # Same seed, same cohort.
    again = make_cohort(24, tmp_path / "again", seed=7, sex="F")
    assert again.cohort_csv.read_text() == result.cohort_csv.read_text()


def test_cohort_with_ct_records_the_study_uid(tmp_path: Path) -> None:
    result = make_cohort(2, tmp_path / "ct", seed=1, sex="both", with_ct=True, matrix=64, slice_mm=10.0)
    for subject in result.subjects:
        folder = tmp_path / "ct" / "subjects" / subject.subject_id
        ds = pydicom.dcmread(next((folder / "dicom").glob("*.dcm")), stop_before_pixels=True)
        assert ds.StudyInstanceUID == subject.study_instance_uid
        gt = json.loads((folder / "ground_truth.json").read_text())
        rows = {(g["group"], g["side"]): g for g in gt["groups"]}
        for group in ("all", "upper_gluteal"):
            assert subject.group_mass_g[f"{group}_both"] == rows[(group, "both")]["mass_g"]["constant_1.04"]
    with result.cohort_csv.open() as f:
        assert all(r["study_instance_uid"] for r in csv.DictReader(f))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n": 0}, "cohort size"),
    ({"n": 3, "sex": "X"}, "sex"),
    ({"n": 3, "matrix": 10}, "matrix"),
    ({"n": 3, "slice_mm": 50.0}, "slice"),
])
def test_cohort_refuses_bad_arguments(kwargs: dict, message: str, tmp_path: Path) -> None:
    n = kwargs.pop("n")
    with pytest.raises(PhantomParameterError, match=message):
        make_cohort(n, tmp_path / "bad", **kwargs)


def test_cohort_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["phantom", "cohort", "--n", "3", "--out", str(tmp_path / "c"), "--sex", "both", "--seed", "2",
                 "--no-progress"]) == 0
    assert "SYNTHETIC cohort of 3 subjects" in capsys.readouterr().out
    assert (tmp_path / "c" / "cohort.csv").is_file()
    assert main(["phantom", "cohort", "--n", "0", "--out", str(tmp_path / "d"), "--no-progress"]) == 2
    assert "cohort size" in capsys.readouterr().err


def test_analyze_with_the_phantom_labels_reproduces_the_ground_truth(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    phantom = tmp_path / "ph"
    assert main(["phantom", "--out", str(phantom), "--matrix", "96", "--slice-mm", "6", "--no-progress"]) == 0
    out = tmp_path / "analysis"
    code = main(["analyze", str(phantom / "dicom"), "--labels", str(phantom / "labels.nii.gz"), "--out", str(out),
                 "--no-progress"])
    capsys.readouterr()
    assert code == 0
    measured = json.loads((out / "measurements.json").read_text())
    gt = json.loads((phantom / "ground_truth.json").read_text())
    truth = {(g["group"], g["side"]): g["mass_g"]["constant_1.04"] for g in gt["groups"]}
    for g in measured["groups"]:
        if g["group"] == "upper_gluteal":
            # Bounded by landmarks, which a label map does not carry: the labelmap engine cannot measure it.
            assert g["completeness"] == "not produced by the engine"
            assert truth[(g["group"], g["side"])] > 0
            continue
        # measurements.json rounds to 6 decimals
        assert g["smm_g"] == pytest.approx(truth[(g["group"], g["side"])], abs=1e-3)


def test_phantom_with_two_prostheses_and_a_cut_from_the_command_line(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "ph"
    assert main(["phantom", "--out", str(source), "--fov", "abdomen", "--metal-hip", "both", "--matrix", "80",
                 "--slice-mm", "6", "--seed", "3", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "upper_gluteal" in printed
    assert json.loads((source / "ground_truth.json").read_text())["parameters"]["metal_hip"] == "both"

    cut = tmp_path / "cut"
    assert main(["phantom", "crop", str(source), "--out", str(cut), "--end-below-head-top", "-40"]) == 0
    printed = capsys.readouterr().out
    assert "cut 40 mm above the femoral head top" in printed
    assert "femoral_head_centre" in printed
    assert "outside the scan" in printed
    gt = json.loads((cut / "ground_truth.json").read_text())
    assert gt["crop"]["end_below_femoral_head_top_mm"] == -40.0
    assert gt["parameters"]["metal_hip"] == "both"
    rows = {(g["group"], g["side"]): g for g in gt["groups"]}
    assert rows[("gluteal", "both")]["completeness"] == "truncated"
    assert len(list((cut / "dicom").glob("*.dcm"))) == gt["series"]["slices"]

    assert main(["phantom", "crop", str(source), "--out", str(tmp_path / "none"), "--end-below-head-top",
                 "-500"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sarcoscreen: phantom crop: ")
    assert "keeps no slice" in err
    assert "Traceback" not in err
