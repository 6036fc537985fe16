"""Issue 10 acceptance on the phantom: the threshold engine with hip prostheses on cut abdomen-pelvis series.

Prosthesis {left, right, both} x cut {whole series, ending 130, 100, 80 and 60 mm below the top of the femoral
head, ending 40 mm above it} - the cuts of the real-CT benchmark, made with `crop_phantom` from one phantom per
prosthesis variant (matrix 144, 4 mm slices, seed 11). Per side:

* the engine's gluteal completeness equals the ground truth's; complete: mass within 10 % of the ground truth;
  truncated: its in-scan mass within 12 % of the ground truth's in-scan mass (`IN_SCAN_TOLERANCE`);
* the upper gluteal group (iliac crest to femoral head centre) complete and within 10 % at every cut from the whole
  series down to 60 mm below the head top;
* 40 mm above the head top the issue asks for the gluteal group "not in scan". NOTE: the phantom's ground truth
  says "truncated" there - the series still holds the gluteal muscles from the iliac crest down to the cut (about
  90 g per side of the 740 g) - so for that cut this test checks the issue's "not in scan" instead of equality with
  the ground truth; the two cannot both hold;
* a note or landmark of the engine names the implant and its side (where the series holds it: the cups reach 5 mm
  above the femoral head top, so the series ending 40 mm above it holds no metal).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from sarcoscreen.inference.catalogue import Group
from sarcoscreen.inference.density import DensityRule
from sarcoscreen.inference.engines.base import Segmentation
from sarcoscreen.inference.engines.threshold import ThresholdEngine
from sarcoscreen.inference.height import choose_height
from sarcoscreen.inference.measure import Completeness, MeasurementReport, measure
from sarcoscreen.inference.phantom import PhantomParameters, PhantomResult, crop_phantom, make_phantom
from sarcoscreen.inference.series_loader import load_series

TOLERANCE = 0.10
IN_SCAN_TOLERANCE = 0.12
"""A truncated series is compared in-scan with in-scan. The engine's gluteal region ends 30 mm below the ischial
tuberosity while the gluteus maximus goes on, thin, to about 80 mm below it: a cut between the two holds all of the
region but not all of the muscle, so the in-scan ratio there is the whole series' ratio plus the muscle below the cut
(about 2 % of the group)."""
BASE: dict[str, Any] = {"matrix": 144, "slice_mm": 4.0, "seed": 11}
PROSTHESES = ("left", "right", "both")
CUTS: dict[str, float | None] = {"whole": None, "130 below": 130.0, "100 below": 100.0, "80 below": 80.0,
                                 "60 below": 60.0, "40 above": -40.0}
_IMPLANT = re.compile(r"prosthe|implant|arthroplast|metal", re.IGNORECASE)

Case = tuple[MeasurementReport, dict[str, Any], Segmentation]


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], Case]:
    """(prosthesis, cut) -> (report, ground truth, segmentation); each phantom is generated once and cut."""
    phantoms: dict[str, PhantomResult] = {}
    cases: dict[tuple[str, str], Case] = {}

    def get(prosthesis: str, cut: str) -> Case:
        if (prosthesis, cut) not in cases:
            if prosthesis not in phantoms:
                phantoms[prosthesis] = make_phantom(PhantomParameters(metal_hip=prosthesis, **BASE),
                                                    tmp_path_factory.mktemp(f"metal-{prosthesis}"))
            result = phantoms[prosthesis]
            mm = CUTS[cut]
            if mm is not None:
                result = crop_phantom(result.out_dir, tmp_path_factory.mktemp(f"metal-{prosthesis}-cut"), mm)
            volume = load_series(result.dicom_dir)
            segmentation = ThresholdEngine().segment(volume)
            height = choose_height(None, volume.info.patient_size_m, None)
            cases[(prosthesis, cut)] = (measure(volume, segmentation, DensityRule(), height), result.ground_truth,
                                        segmentation)
        return cases[(prosthesis, cut)]

    return get


def _truth(ground_truth: dict[str, Any], group: Group, side: str) -> dict[str, Any]:
    return next(g for g in ground_truth["groups"] if g["group"] == group.value and g["side"] == side)


def _mentions_implant(segmentation: Segmentation, side: str) -> bool:
    texts = list(segmentation.notes)
    texts += [f"{lm.side.value if lm.side else ''} {lm.name} {lm.description} {lm.method} {lm.note}"
              for lm in segmentation.landmarks]
    return any(_IMPLANT.search(text) and re.search(rf"\b{side}\b", text, re.IGNORECASE) for text in texts)


@pytest.mark.slow
@pytest.mark.parametrize("cut", list(CUTS))
@pytest.mark.parametrize("prosthesis", PROSTHESES)
def test_gluteal_groups_with_prostheses_on_cut_series(prosthesis: str, cut: str,
                                                      analysed: Callable[[str, str], Case]) -> None:
    report, ground_truth, segmentation = analysed(prosthesis, cut)
    problems: list[str] = []
    for side in ("left", "right"):
        measured = report.group(Group.GLUTEAL, side)
        truth = _truth(ground_truth, Group.GLUTEAL, side)
        expected = Completeness.NOT_IN_SCAN if cut == "40 above" else Completeness(truth["completeness"])
        if measured.completeness is not expected:
            problems.append(f"gluteal {side}: {measured.completeness.value} (expected {expected.value}; ground "
                            f"truth {truth['completeness']}, {truth['in_scan_mass_g']['constant_1.04']:.0f} g in "
                            f"scan): {measured.reason}")
        elif expected is Completeness.COMPLETE:
            error = measured.smm_g / truth["mass_g"]["constant_1.04"] - 1.0
            if abs(error) > TOLERANCE:
                problems.append(f"gluteal {side}: {measured.smm_g:.0f} g, {error:+.1%} of "
                                f"{truth['mass_g']['constant_1.04']:.0f} g")
        elif expected is Completeness.TRUNCATED:
            in_scan = truth["in_scan_mass_g"]["constant_1.04"]
            if measured.in_scan_smm_g is None or abs(measured.in_scan_smm_g / in_scan - 1.0) > IN_SCAN_TOLERANCE:
                problems.append(f"gluteal {side}: in-scan {measured.in_scan_smm_g} g against {in_scan:.0f} g")
        if cut != "40 above":
            upper = report.group(Group.UPPER_GLUTEAL, side)
            reference = _truth(ground_truth, Group.UPPER_GLUTEAL, side)["mass_g"]["constant_1.04"]
            if upper.completeness is not Completeness.COMPLETE:
                problems.append(f"upper gluteal {side}: {upper.completeness.value}: {upper.reason}")
            elif abs(upper.smm_g / reference - 1.0) > TOLERANCE:
                problems.append(f"upper gluteal {side}: {upper.smm_g:.0f} g, {upper.smm_g / reference - 1:+.1%} of "
                                f"{reference:.0f} g")
    # The cups reach 5 mm above the femoral head top: a series ending 40 mm above it holds no metal to name.
    for side in PhantomParameters(metal_hip=prosthesis).metal_hip.sides if cut != "40 above" else ():
        if not _mentions_implant(segmentation, side):
            problems.append(f"no note or landmark names the {side} implant (notes: {list(segmentation.notes)})")
    assert not problems, f"{prosthesis} prosthesis, {cut}:\n  " + "\n  ".join(problems)

