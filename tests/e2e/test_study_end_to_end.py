"""End to end on a SYNTHETIC cohort: phantom CTs -> the threshold engine -> study -> calibrate -> a new phantom
is flagged against that calibration by the measurement the worker runs (``analyze`` with
``measurement.calibration_file``).

Twelve phantom women with CT (128 matrix, 5 mm slices) and SYNTHETIC DXA values (`inference.phantom.cohort`); the
CT masses are the threshold engine's measurements of the written series, not the phantoms' ground truth.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sarcoscreen.inference.calibration import load_calibration
from sarcoscreen.inference.engines.threshold import ThresholdEngine
from sarcoscreen.inference.phantom.cohort import make_cohort
from sarcoscreen.node.analysis import analyze_series
from sarcoscreen.node.cli import main
from sarcoscreen.node.config import load_settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("e2e")
    cohort = make_cohort(12, root / "cohort", seed=3, with_ct=True, matrix=128, slice_mm=5.0)
    settings = load_settings(environ={})
    for subject in cohort.subjects:
        analyze_series(root / "cohort" / "subjects" / subject.subject_id / "dicom",
                       root / "measurements" / subject.subject_id, settings)
    return {"root": root, "cohort_csv": cohort.cohort_csv, "measurements": root / "measurements"}


def test_synthetic_cohort_study_calibration_and_flagging(pipeline: dict[str, Path],
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    root = pipeline["root"]
    monkeypatch.chdir(root)  # no sarcoscreen.toml of the checkout
    for name in ("SARCOSCREEN_CONFIG", "SARCOSCREEN_MEASUREMENT__CALIBRATION_FILE"):
        monkeypatch.delenv(name, raising=False)

    # 1. The study: joined by Study Instance UID from the measurements.json files.
    assert main(["study", "--cohort", str(pipeline["cohort_csv"]), "--measurements", str(pipeline["measurements"]),
                 "--out", str(root / "study")]) == 0
    printed = capsys.readouterr().out
    assert "SYNTHETIC DATA - not patient data" in printed
    assert "12 of 12 cohort rows joined" in printed
    results = json.loads((root / "study" / "results.json").read_text())
    assert results["synthetic"] is True
    assert results["measurements"]["engines"] == [f"threshold {ThresholdEngine.version}"]
    assert {r["stratum"] for r in results["roc"]} == {"F"}
    assert all(r["auc"] is not None for r in results["roc"])
    for stem in ("report.md", "report.html", "figures/roc_smi.png", "figures/roc_smi.svg",
                 "figures/scatter_smm_dxa.png", "figures/scatter_smm_dxa.svg", "roc.csv", "correlations.csv"):
        assert (root / "study" / stem).is_file(), stem
    assert (root / "study" / "report.md").read_text().startswith("# SYNTHETIC")

    # 2. The calibration.
    calibration_file = root / "calibration.json"
    assert main(["calibrate", "--study", str(root / "study"), "--out", str(calibration_file),
                 "--name", "SYNTHETIC e2e"]) == 0
    capsys.readouterr()
    calibration = load_calibration(calibration_file)
    assert calibration.synthetic is True
    assert calibration.extra["provenance"]["engines"] == [f"threshold {ThresholdEngine.version}"]
    cutoff = calibration.cutoff(calibration.primary_group, "F")
    assert cutoff is not None

    # 3. Phantoms with little and much muscle, analysed as the worker does, flagged against that calibration.
    monkeypatch.setenv("SARCOSCREEN_MEASUREMENT__CALIBRATION_FILE", str(calibration_file))
    verdicts = {}
    for scale in ("0.7", "1.25"):
        phantom = root / f"phantom-{scale}"
        assert main(["phantom", "--out", str(phantom), "--matrix", "128", "--slice-mm", "5", "--muscle-scale", scale,
                     "--seed", "99", "--no-progress"]) == 0
        assert main(["analyze", str(phantom / "dicom"), "--out", str(root / f"analysis-{scale}"),
                     "--no-progress"]) == 0
        capsys.readouterr()
        data = json.loads((root / f"analysis-{scale}" / "measurements.json").read_text())
        screening = {s["group"]: s for s in data["screening"]}[calibration.primary_group.value]
        assert screening["calibration_name"] == "SYNTHETIC e2e"
        assert screening["calibration_sha256"] == calibration.sha256
        assert screening["side_rule"] == calibration.side_rule.value
        assert screening["cutoff_kg_m2"] == pytest.approx(cutoff.smi_cutoff_kg_m2, abs=1e-6)
        expected = "suspected" if screening["smi_kg_m2"] < cutoff.smi_cutoff_kg_m2 else "not suspected"
        assert screening["classification"] == expected
        assert "SYNTHETIC e2e" in screening["reason"]
        verdicts[scale] = screening["classification"]
    # The cohort's muscle scale is N(0.95, 0.11): far below it is flagged, far above it is not.
    assert verdicts == {"0.7": "suspected", "1.25": "not suspected"}
