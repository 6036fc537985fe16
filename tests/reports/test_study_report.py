"""``sarcoscreen study`` and ``sarcoscreen calibrate`` on a cohort drawn from a documented statistical model.

The model (not patient data): women and men with height N(1.58, 0.06) / N(1.71, 0.07) m; CT mass of all
lower-extremity muscles (both sides) N(8.5, 1.4) / N(11.5, 1.8) kg x (height / mean height)^2; above-knee =
0.80 x all, gluteal = 0.17 x all, upper gluteal (sarcoscreen's own group) = 0.11 x all, each side half of it x
(1 + N(0, 0.02)); DXA leg lean mass = 1.9 + 1.05 x all + N(0, 0.6^2) kg; ALM = leg lean x 1.32 (women) / 1.36
(men). Some subjects' scans stop above the knee (no "all" group), in some the iliac crest is uncertain (no upper
gluteal group), some rows are invalid and one cannot be joined. The expected numbers are recomputed here,
independently, with SciPy and scikit-learn from the model's own values.
"""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from dicom_output_fixtures import Crafted, crafted_analysis
from scipy import stats
from sklearn.metrics import roc_auc_score

from sarcoscreen.inference.calibration import load_calibration
from sarcoscreen.inference.catalogue import Group, Side
from sarcoscreen.inference.density import DensityRule
from sarcoscreen.inference.engines.base import Landmark
from sarcoscreen.inference.height import choose_height
from sarcoscreen.inference.measure import Classification, Completeness, measure
from sarcoscreen.node.cli import main

GROUP_SHARE = {"gluteal": 0.17, "above_knee": 0.80, "all": 1.0, "upper_gluteal": 0.11}


def _model_cohort(folder: Path, *, n_women: int = 36, n_men: int = 28, synthetic: bool = True,
                  seed: int = 7) -> dict[str, dict[str, float]]:
    """Write cohort.csv and masses.csv; return the model's values per subject."""
    rng = np.random.default_rng(seed)
    truth: dict[str, dict[str, float]] = {}
    cohort_rows, mass_rows = [], []
    for i in range(n_women + n_men):
        sex = "F" if i < n_women else "M"
        height = rng.normal(1.58, 0.06) if sex == "F" else rng.normal(1.71, 0.07)
        all_kg = (rng.normal(8.5, 1.4) if sex == "F" else rng.normal(11.5, 1.8)) * (
            height / (1.58 if sex == "F" else 1.71)) ** 2
        leg = 1.9 + 1.05 * all_kg + rng.normal(0, 0.6)
        alm = leg * (1.32 if sex == "F" else 1.36)
        sid = f"M{i:03d}"
        truncated = i % 9 == 4  # scan ends above the knee
        crest_uncertain = i % 11 == 5  # no upper gluteal group
        masses: dict[str, float | None] = {}
        for group, share in GROUP_SHARE.items():
            left = round(all_kg * share / 2 * (1 + rng.normal(0, 0.02)) * 1000, 3)  # as written to the CSV
            right = round(all_kg * share / 2 * (1 + rng.normal(0, 0.02)) * 1000, 3)
            missing = (truncated and group == "all") or (crest_uncertain and group == "upper_gluteal")
            masses |= {f"{group}_left": None if missing else left, f"{group}_right": None if missing else right,
                       f"{group}_both": None if missing else round(left + right, 3)}
        truth[sid] = {"sex": sex, "height": round(height, 3), "leg": round(leg, 3), "alm": round(alm, 3),
                      **{k: v for k, v in masses.items() if v is not None}}
        cohort_rows.append([sid, sex, f"{height:.3f}", f"{leg:.3f}", f"{alm:.3f}", "true" if synthetic else "false"])
        mass_rows.append([sid, *("" if masses[f"{g}_{s}"] is None else f"{masses[f'{g}_{s}']:.3f}"
                                 for g in GROUP_SHARE for s in ("left", "right", "both"))])
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "cohort.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["subject_id", "sex", "height_m", "dxa_leg_lean_mass_kg", "dxa_appendicular_lean_mass_kg",
                    "synthetic"])
        w.writerows(cohort_rows)
        flag = "true" if synthetic else "false"
        w.writerow(["BAD1", "F", "158", "11", "14", flag])      # height in cm
        w.writerow(["BAD2", "F", "1.60", "11000", "14", flag])  # grams
        w.writerow(["LOST", "F", "1.60", "11", "14.2", flag])   # valid, but no CT
    with (folder / "masses.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["subject_id", *(f"{g}_{s}_smm_g" for g in GROUP_SHARE for s in ("left", "right", "both"))])
        w.writerows(mass_rows)
    return truth


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, float]], int, str]:
    folder = tmp_path_factory.mktemp("study")
    truth = _model_cohort(folder / "in")
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(["study", "--cohort", str(folder / "in" / "cohort.csv"), "--measurements",
                     str(folder / "in" / "masses.csv"), "--out", str(folder / "out"), "--side-rule", "mean"])
    return folder / "out", truth, code, out.getvalue()


def _expected(truth: dict[str, dict[str, float]], sex: str, group: str) -> tuple[np.ndarray, ...]:
    ids = [k for k, v in truth.items() if v["sex"] == sex and f"{group}_both" in v]
    smm = np.array([truth[k][f"{group}_both"] / 1000 for k in ids])
    leg = np.array([truth[k]["leg"] for k in ids])
    h2 = np.array([truth[k]["height"] ** 2 for k in ids])
    smi = (np.array([truth[k][f"{group}_left"] for k in ids]) + np.array([truth[k][f"{group}_right"] for k in ids])
           ) / 2 / 1000 / h2
    dxa_smi = np.array([truth[k]["alm"] for k in ids]) / h2
    low = (dxa_smi < (5.4 if sex == "F" else 7.0)).astype(int)
    return smm, leg, smi, low


def test_study_numbers_match_an_independent_computation(study: tuple[Path, dict, int, str]) -> None:
    out, truth, code, _ = study
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["format"] == "sarcoscreen-study/1"
    assert results["side_rule"] == "mean"
    assert [s["stratum"] for s in results["strata"]] == ["F", "M", "all"]
    for row in results["correlations"]:
        if row["stratum"] == "all":
            continue
        smm, leg, _, _ = _expected(truth, row["stratum"], row["group"])
        assert row["n"] == len(smm)
        assert row["spearman"]["r"] == pytest.approx(stats.spearmanr(smm, leg).statistic, abs=1e-9)
        assert row["pearson"]["r"] == pytest.approx(stats.pearsonr(smm, leg).statistic, abs=1e-9)
        assert row["smm_kg"]["mean"] == pytest.approx(smm.mean(), abs=1e-6)
        assert row["smm_kg"]["sd"] == pytest.approx(smm.std(ddof=1), abs=1e-6)
    assert {r["stratum"] for r in results["roc"]} == {"F", "M"}
    for row in results["roc"]:
        _, _, smi, low = _expected(truth, row["stratum"], row["group"])
        assert (row["n"], row["n_low"]) == (len(smi), int(low.sum()))
        assert 0 < row["n_low"] < row["n"], "the model must give both classes"
        assert row["auc"] == pytest.approx(roc_auc_score(low, -smi), abs=1e-12)
        cut = row["optimal"]["cutoff"]
        assert row["optimal"]["sensitivity"] == pytest.approx((smi[low == 1] < cut).mean())
        assert row["optimal"]["specificity"] == pytest.approx((smi[low == 0] >= cut).mean())
    # Every group is analysed, sarcoscreen's own (upper gluteal) too, and marked as not the reference study's.
    assert set(GROUP_SHARE) == {g.value for g in Group}
    assert {(r["stratum"], r["group"]) for r in results["roc"]} == {(s, g.value) for s in "FM" for g in Group}
    assert {g["group"]: g["of_reference_study"] for g in results["groups"]} == {
        g.value: g.of_reference_study for g in Group}
    # Pairwise comparisons use the subjects measured in both groups; the reference study's pairs come first.
    pairs = {(p["stratum"], p["group_1"], p["group_2"]): p for p in results["auc_comparisons"]}
    assert len(pairs) == 2 * 6
    women = [(p["group_1"], p["group_2"]) for p in results["auc_comparisons"] if p["stratum"] == "F"]
    assert women[:3] == [("gluteal", "above_knee"), ("gluteal", "all"), ("above_knee", "all")]
    _, _, smi_all, _ = _expected(truth, "F", "all")
    assert pairs[("F", "gluteal", "all")]["n"] == len(smi_all)
    assert pairs[("F", "gluteal", "above_knee")]["n"] == sum(1 for v in truth.values() if v["sex"] == "F")
    _, _, smi_upper, _ = _expected(truth, "F", "upper_gluteal")
    assert pairs[("F", "gluteal", "upper_gluteal")]["n"] == len(smi_upper) < pairs[("F", "gluteal", "above_knee")]["n"]


def test_study_reports_refused_and_unjoined_rows_and_marks_synthetic(study: tuple[Path, dict, int, str]) -> None:
    out, truth, _, printed = study
    results = json.loads((out / "results.json").read_text())
    assert results["synthetic"] is True
    assert results["cohort"]["rows_read"] == len(truth) + 3
    assert results["cohort"]["rows_refused"] == 2
    assert results["join"]["reasons"] == [{"row": len(truth) + 4, "subject_id": "LOST",
                                           "reason": "no join key (series_instance_uid, study_instance_uid or "
                                                     "accession_number) and no measurement with this subject_id"}]
    assert "SYNTHETIC DATA - not patient data" in printed
    assert f"{len(truth)} of {len(truth) + 1} cohort rows joined" in printed
    report = (out / "report.md").read_text()
    assert report.startswith("# SYNTHETIC - Validation study")
    assert "height_m 158 looks like centimetres" in report
    assert "dxa_leg_lean_mass_kg 11000 looks like grams" in report
    assert "| LOST |" in report
    women_leg = np.array([v["leg"] for v in truth.values() if v["sex"] == "F"])
    assert (f"DXA lean mass of the lower extremities {women_leg.mean():.2f} ± {women_leg.std(ddof=1):.2f} kg "
            f"(n = {women_leg.size})") in report
    html = (out / "report.html").read_text()
    assert "SYNTHETIC DATA - NOT PATIENT DATA" in html
    assert "<table>" in html
    assert "not measurable" in report or "no value in the table" in report  # the truncated scans' reason
    for name in ("correlations", "roc", "auc_comparisons", "subjects", "join", "cohort_issues"):
        with (out / f"{name}.csv").open() as f:
            rows = list(csv.DictReader(f))
        assert rows, name
        assert {r["synthetic"] for r in rows} == {"true"}, name
    for stem in ("scatter_smm_dxa", "roc_smi"):
        assert (out / "figures" / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        svg = (out / "figures" / f"{stem}.svg").read_text()
        assert "<svg" in svg
        assert "SYNTHETIC DATA" in svg


def test_calibrate_writes_what_the_node_reads(study: tuple[Path, dict, int, str], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out, truth, _, _ = study
    target = tmp_path / "site.json"
    assert main(["calibrate", "--study", str(out), "--out", str(target), "--name", "model site 2026"]) == 0
    printed = capsys.readouterr().out
    calibration = load_calibration(target)
    assert calibration.name == "model site 2026"
    assert calibration.synthetic is True
    assert "SYNTHETIC calibration" in printed
    assert calibration.side_rule.value == "mean"
    assert calibration.primary_group.value == "all"
    assert calibration.reference_standard.startswith("AWGS 2019")
    results = json.loads((out / "results.json").read_text())
    by_key = {(r["group"], r["stratum"]): r for r in results["roc"]}
    assert {(c.group.value, c.sex) for c in calibration.cutoffs} == set(by_key)
    for cutoff in calibration.cutoffs:
        row = by_key[(cutoff.group.value, cutoff.sex)]
        assert cutoff.smi_cutoff_kg_m2 == row["optimal"]["cutoff"]
        assert (cutoff.n, cutoff.n_low_muscle_mass) == (row["n"], row["n_low"])
        assert cutoff.auc == pytest.approx(row["auc"], abs=1e-4)
        assert cutoff.auc_ci95 == (pytest.approx(row["auc_ci"][0], abs=1e-4), pytest.approx(row["auc_ci"][1],
                                                                                             abs=1e-4))
    provenance = calibration.extra["provenance"]
    assert provenance["cohort_rows_read"] == len(truth) + 3
    assert provenance["joined_to_ct"] == len(truth)
    assert provenance["cohort_sha256"] == results["cohort"]["sha256"]
    assert "Chen L-K" in provenance["reference_standard_citation"]


def test_calibrate_refuses_a_side_rule_mismatch_and_small_classes(study: tuple[Path, dict, int, str],
                                                                   tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = study[0]
    assert main(["calibrate", "--study", str(out), "--out", str(tmp_path / "c.json"), "--side-rule", "min"]) == 1
    assert "side rule 'mean'" in capsys.readouterr().err
    assert not (tmp_path / "c.json").exists()
    assert main(["calibrate", "--study", str(out), "--out", str(tmp_path / "c.json"), "--min-per-class", "1000"]) == 1
    assert "no usable cut-off" in capsys.readouterr().err
    assert main(["calibrate", "--study", str(tmp_path), "--out", str(tmp_path / "c.json")]) == 1
    assert "cannot be read" in capsys.readouterr().err


def test_ewgsop2_without_synthetic_marks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _model_cohort(tmp_path / "in", n_women=14, n_men=0, synthetic=False, seed=3)
    assert main(["study", "--cohort", str(tmp_path / "in" / "cohort.csv"), "--measurements",
                 str(tmp_path / "in" / "masses.csv"), "--out", str(tmp_path / "out"),
                 "--definition", "ewgsop2"]) == 0
    capsys.readouterr()
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["synthetic"] is False
    assert results["reference_standard"]["name"] == "EWGSOP2"
    assert [s["stratum"] for s in results["strata"]] == ["F"]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "SYNTHETIC" not in report
    assert "< 5.5 kg/m2 (women)" in report


def test_study_refuses_an_unusable_cohort_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "c.csv").write_text("subject_id,sex\n")
    (tmp_path / "m.csv").write_text("subject_id,all_both_smm_g\n")
    assert main(["study", "--cohort", str(tmp_path / "c.csv"), "--measurements", str(tmp_path / "m.csv"), "--out",
                 str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("sarcoscreen: study: cohort file")
    assert "missing column(s): dxa_leg_lean_mass_kg, height_m or height_cm" in err
    assert "Traceback" not in err


def _crafted_with_landmarks(folder: Path) -> Crafted:
    """A small real CT series with the three gluteal muscles; both sides' iliac crest (slice 4) and femoral head
    centre (slice 6) in the scan: the upper gluteal group is complete."""
    landmarks = tuple(Landmark(name, k, float(k), side) for side in (Side.LEFT, Side.RIGHT)
                      for name, k in (("iliac_crest", 4), ("femoral_head", 6)))
    return crafted_analysis(folder, landmarks=landmarks)


def test_the_upper_gluteal_group_is_calibrated_like_the_reference_groups(
        study: tuple[Path, dict, int, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`calibrate --primary-group upper_gluteal`: its cut-offs are in the file, marked as sarcoscreen's own, and the
    node screens the group (and reports it first) with them."""
    out = study[0]
    target = tmp_path / "upper.json"
    assert main(["calibrate", "--study", str(out), "--out", str(target), "--primary-group", "upper_gluteal"]) == 0
    printed = capsys.readouterr().out
    assert "primary group upper_gluteal" in printed
    assert "upper_gluteal F: suspected when SMI <" in printed
    assert "(sarcoscreen's own group, not the reference study's)" in printed
    calibration = load_calibration(target)
    assert calibration.primary_group is Group.UPPER_GLUTEAL
    assert {c.group for c in calibration.cutoffs} == set(Group)
    written = json.loads(target.read_text())
    assert {c["group"]: c["of_reference_study"] for c in written["cutoffs"]} == {
        g.value: g.of_reference_study for g in Group}
    # The node screens the group against its own cut-off (the crafted SMI is far below any cohort's). The model
    # cohort's masses come from a table, so the provenance's engine ("table") is dropped to apply the cut-offs to
    # the crafted engine's result.
    crafted = _crafted_with_landmarks(tmp_path / "ct")
    report = measure(crafted.volume, crafted.segmentation, DensityRule(), choose_height(1.62, None, None),
                     calibration=replace(calibration, extra={}))
    screening = report.screening_of(Group.UPPER_GLUTEAL)
    assert report.group(Group.UPPER_GLUTEAL, "both").completeness is Completeness.COMPLETE
    assert screening.classification is Classification.SUSPECTED, screening.reason
    assert screening.cutoff_kg_m2 == calibration.cutoff(Group.UPPER_GLUTEAL, "F").smi_cutoff_kg_m2
    assert report.primary_group is Group.UPPER_GLUTEAL


def test_a_calibration_without_the_upper_gluteal_group_still_loads(tmp_path: Path) -> None:
    """A file written before the upper gluteal group existed: read as before; that group is not classified."""
    path = tmp_path / "old.json"
    path.write_text(json.dumps({
        "format": "sarcoscreen-calibration/1", "name": "site 2026-11", "side_rule": "mean", "primary_group": "all",
        "reference_standard": "AWGS 2019", "synthetic": False,
        "cutoffs": [{"group": "gluteal", "sex": "F", "smi_cutoff_kg_m2": 0.31, "n": 60, "n_low_muscle_mass": 18,
                     "auc": 0.93, "auc_ci95": [0.86, 0.99], "sensitivity": 0.89, "specificity": 0.88},
                    {"group": "all", "sex": "F", "smi_cutoff_kg_m2": 1.9}],
    }))
    calibration = load_calibration(path)
    assert {c.group for c in calibration.cutoffs} == {Group.GLUTEAL, Group.ALL}
    assert calibration.cutoff(Group.UPPER_GLUTEAL, "F") is None
    crafted = _crafted_with_landmarks(tmp_path / "ct")
    report = measure(crafted.volume, crafted.segmentation, DensityRule(), choose_height(1.62, None, None),
                     calibration=calibration)
    assert report.screening_of(Group.UPPER_GLUTEAL).reason == (
        "not classified: calibration site 2026-11 has no cut-off for upper_gluteal, sex F")
    assert report.screening_of(Group.GLUTEAL).classification is Classification.SUSPECTED


def test_the_report_and_figures_keep_the_reference_study_apart_from_the_own_group(
        study: tuple[Path, dict, int, str]) -> None:
    out = study[0]
    report = (out / "report.md").read_text()
    own = f"{Group.UPPER_GLUTEAL.title[0].lower()}{Group.UPPER_GLUTEAL.title[1:]} (sarcoscreen's own group)"
    (women,) = [line for line in report.splitlines() if line.startswith("Women: CT SMM")]
    reference_part, own_part = women.split(" Not in the reference study: ")
    assert "gluteal muscles, n =" in reference_part
    assert "iliac crest" not in reference_part
    assert own_part.startswith(own)
    assert (f"{Group.UPPER_GLUTEAL.title}: sarcoscreen's own group, not one of the reference study's. It is "
            "analysed like the reference study's groups, but the reference study published no results") in report
    assert f"| women | {own} |" in report
    with (out / "roc.csv").open() as handle:
        flags = {(r["group"], r["of_reference_study"]) for r in csv.DictReader(handle)}
    assert flags == {(g.value, "true" if g.of_reference_study else "false") for g in Group}
    for stem in ("scatter_smm_dxa", "roc_smi"):
        svg = (out / "figures" / f"{stem}.svg").read_text()
        assert "The reference study's groups" in svg
        assert "sarcoscreen's own group" in svg
        assert "(not one of the reference study's)" in svg
        assert svg.count(">Gluteal muscles from the iliac crest<") == 1  # the fourth panel's (wrapped) title
