"""A per-muscle engine's missing muscle: "not found" (a segmentation failure, QA) against "not in the scan".

The scans here are small synthetic volumes with landmarks at levels like those of the real annotated pelvises
(`inference.muscle_extents`): iliac crest top 138 mm above the femoral head centre, head top 18 mm above the
centre, ischial tuberosity 72 mm below it. Each muscle is a block of labelled voxels on the slices it spans.
"""

from __future__ import annotations

import numpy as np
import pytest

from sarcoscreen.inference.catalogue import CATALOGUE, Group, Kind, Side, Structure
from sarcoscreen.inference.density import DensityRule
from sarcoscreen.inference.engines.base import Certainty, Landmark, Segmentation
from sarcoscreen.inference.height import Height, HeightSource
from sarcoscreen.inference.measure import (
    Absence,
    Classification,
    Completeness,
    MeasurementReport,
    StructureMeasurement,
    measure,
)
from sarcoscreen.inference.volume import SeriesInfo, SliceRef, Volume

HEIGHT = Height(1.7, HeightSource.EXPLICIT)
STEP = 3.0
CREST, HEAD_TOP, HEAD, ISCHIUM = 90.0, -30.0, -48.0, -120.0
"""Patient z (mm) of the landmarks, both sides."""
GLUTEAL = ("gluteus_maximus", "gluteus_medius", "gluteus_minimus")
EXTENT = {"gluteus_maximus": (-195.0, 54.0), "gluteus_medius": (-75.0, 84.0), "gluteus_minimus": (-42.0, 39.0)}
"""Bottom and top (patient z) of each gluteal muscle: inside the ranges of the three annotated pelvises."""
STRUCTURES: tuple[Structure, ...] = tuple(
    CATALOGUE.structure(a, s) for a in (*GLUTEAL, "hip_bone", "femur") for s in (Side.RIGHT, Side.LEFT))


def _volume(z_low: float, z_high: float) -> Volume:
    """An axial volume with slices every 3 mm from `z_low` to `z_high` (patient z, head at the last slice); right
    side columns 0-7, left side columns 8-15."""
    z = np.arange(z_low, z_high + STEP / 2, STEP)
    n = z.size
    positions = np.column_stack([np.zeros(n), np.zeros(n), z])
    return Volume(hu=np.full((n, 8, 16), 40, np.int16), spacing=(STEP, 1.0, 1.0), row_direction=(1.0, 0.0, 0.0),
                  column_direction=(0.0, 1.0, 0.0), positions=positions,
                  slices=tuple(SliceRef(f"2.25.{k + 1}", "1.2.840.10008.5.1.4.1.1.2") for k in range(n)),
                  info=SeriesInfo("2.25.100", "2.25.101", "2.25.102", patient_sex="F"))


def _labels(volume: Volume, muscles: dict[tuple[str, Side], tuple[float, float]]) -> np.ndarray:
    """Each (anatomy, side) a block on the slices whose z lies in its (bottom, top), its own rows."""
    z = volume.positions[:, 2]
    labels = np.zeros(volume.shape, np.uint8)
    for row, ((anatomy, side), (bottom, top)) in enumerate(muscles.items()):
        columns = slice(8, 16) if side is Side.LEFT else slice(0, 8)
        labels[(z >= bottom) & (z <= top), row % 8, columns] = CATALOGUE.structure(anatomy, side).label
    return labels


def _landmarks(volume: Volume, certainty: Certainty = Certainty.FOUND,
               names: tuple[str, ...] = ("iliac_crest", "femoral_head_top", "femoral_head", "ischial_tuberosity"),
               sides: tuple[Side, ...] = (Side.RIGHT, Side.LEFT)) -> tuple[Landmark, ...]:
    """The landmarks the scan holds (not on its first or last slice), as an engine reports them."""
    levels = {"iliac_crest": CREST, "femoral_head_top": HEAD_TOP, "femoral_head": HEAD, "ischial_tuberosity": ISCHIUM}
    z = volume.positions[:, 2]
    out = []
    for side in sides:
        for name in names:
            k = int(np.argmin(np.abs(z - levels[name])))
            if abs(z[k] - levels[name]) < STEP / 2 and 0 < k < z.size - 1:
                out.append(Landmark(name, k, float(z[k]), side, method="test", certainty=certainty))
    return tuple(out)


def _measure(volume: Volume, labels: np.ndarray, landmarks: tuple[Landmark, ...]) -> MeasurementReport:
    segmentation = Segmentation(labels=labels, structures=STRUCTURES, engine_name="per-muscle-test",
                                engine_version="1", landmarks=landmarks)
    return measure(volume, segmentation, DensityRule(), HEIGHT)


def _pelvis_scan() -> Volume:
    """From 60 mm above the crest top (lumbar spine) to 174 mm below the femoral head centre (upper thigh): every
    gluteal muscle inside, none touching an end."""
    return _volume(-222.0, 150.0)


def _all_gluteal(without: tuple[tuple[str, Side], ...] = ()) -> dict[tuple[str, Side], tuple[float, float]]:
    return {(a, s): EXTENT[a] for a in GLUTEAL for s in (Side.RIGHT, Side.LEFT) if (a, s) not in without}


def _structure(report: MeasurementReport, key: str) -> StructureMeasurement:
    return next(m for m in report.structures if m.key == key)


def test_a_muscle_missing_where_the_scan_covers_it_is_not_found_with_a_qa_flag() -> None:
    volume = _pelvis_scan()
    labels = _labels(volume, _all_gluteal(without=(("gluteus_minimus", Side.LEFT),)))
    report = _measure(volume, labels, _landmarks(volume))
    minimus = _structure(report, "gluteus_minimus_left")
    assert minimus.voxels == 0
    assert minimus.absence is Absence.NOT_FOUND
    assert "the scan holds where it lies" in minimus.absence_note
    left = report.group(Group.GLUTEAL, "left")
    assert left.completeness is Completeness.NOT_FOUND
    assert left.qa_flag
    assert "Left gluteus minimus" in left.reason
    assert "not found" in left.reason
    assert left.smm_g is None
    assert left.smi_kg_m2 is None
    assert left.in_scan_smm_g is None
    both = report.group(Group.GLUTEAL, "both")
    assert both.completeness is Completeness.NOT_FOUND
    assert both.qa_flag
    # The right side has all its muscles: complete, no flag.
    right = report.group(Group.GLUTEAL, "right")
    assert right.completeness is Completeness.COMPLETE
    assert not right.qa_flag
    assert right.smm_g is not None
    # The landmark-bounded upper gluteal group lacks the same muscle.
    assert report.group(Group.UPPER_GLUTEAL, "left").completeness is Completeness.NOT_FOUND
    assert report.group(Group.UPPER_GLUTEAL, "right").completeness is Completeness.COMPLETE
    screening = report.screening_of(Group.GLUTEAL)
    assert screening.classification is Classification.NOT_CLASSIFIED
    assert "not found" in screening.reason


def test_a_not_found_member_wins_over_a_cut_member() -> None:
    """The scan cuts the gluteus maximus (it touches the first slice) and the left gluteus medius is missing where
    the scan holds it: not found, not truncated."""
    volume = _volume(-150.0, 150.0)
    muscles = _all_gluteal(without=(("gluteus_medius", Side.LEFT),))
    labels = _labels(volume, muscles)
    report = _measure(volume, labels, _landmarks(volume))
    assert _structure(report, "gluteus_maximus_left").truncated
    left = report.group(Group.GLUTEAL, "left")
    assert left.completeness is Completeness.NOT_FOUND, left.reason
    assert "Left gluteus medius" in left.reason
    assert report.group(Group.GLUTEAL, "right").completeness is Completeness.TRUNCATED


def test_the_same_muscle_missing_because_the_scan_ends_above_it_is_not_in_the_scan() -> None:
    """A scan from the lumbar spine down to 21 mm below the iliac crest top: the gluteus minimus begins 45-60 mm
    below the crest top in the references, so it is not in the scan; the gluteus medius, which begins just below
    the crest, is cut by the scan's last slice."""
    volume = _volume(CREST - 21.0, CREST + 60.0)
    muscles = {(a, s): EXTENT[a] for a in ("gluteus_maximus", "gluteus_medius") for s in (Side.RIGHT, Side.LEFT)}
    muscles[("gluteus_maximus", Side.RIGHT)] = muscles[("gluteus_maximus", Side.LEFT)] = (0.0, 0.0)  # none here
    labels = _labels(volume, muscles)
    landmarks = _landmarks(volume)
    assert {lm.name for lm in landmarks} == {"iliac_crest"}
    report = _measure(volume, labels, landmarks)
    minimus = _structure(report, "gluteus_minimus_left")
    assert minimus.voxels == 0
    assert minimus.absence is Absence.NOT_IN_SCAN, minimus.absence_note
    assert "the scan ends above where it may begin" in minimus.absence_note
    left = report.group(Group.GLUTEAL, "left")
    assert left.completeness is Completeness.TRUNCATED, left.reason
    assert "not in the scan: Left gluteus minimus" in left.reason
    assert not left.qa_flag
    assert all(not g.qa_flag and g.completeness is not Completeness.NOT_FOUND for g in report.groups)


def test_a_group_whose_missing_member_lies_below_the_scan_is_not_in_scan() -> None:
    """Gluteus maximus and medius inside the scan (touching neither end: a synthetic label map), the gluteus
    minimus missing, the scan ending 21 mm below the crest top: the group is not in scan, with no QA flag."""
    volume = _volume(CREST - 21.0, CREST + 60.0)
    muscles = {(a, s): (CREST - 15.0, CREST - 6.0) for a in ("gluteus_maximus", "gluteus_medius")
               for s in (Side.RIGHT, Side.LEFT)}
    report = _measure(volume, _labels(volume, muscles), _landmarks(volume))
    for side in ("left", "right", "both"):
        group = report.group(Group.GLUTEAL, side)
        assert group.completeness is Completeness.NOT_IN_SCAN, group.reason
        assert not group.qa_flag
        assert group.reason.startswith("not measurable: not in the scan: ")
        assert "gluteus minimus" in group.reason


def test_without_landmarks_a_missing_muscle_is_not_in_scan_and_the_reason_says_it_cannot_be_told() -> None:
    volume = _pelvis_scan()
    labels = _labels(volume, _all_gluteal(without=(("gluteus_minimus", Side.LEFT),)))
    report = _measure(volume, labels, ())
    assert _structure(report, "gluteus_minimus_left").absence is Absence.NOT_IN_SCAN_OR_NOT_FOUND
    left = report.group(Group.GLUTEAL, "left")
    assert left.completeness is Completeness.NOT_IN_SCAN
    assert not left.qa_flag
    assert left.reason == ("not measurable: not in the scan or not found: no landmarks to tell: "
                           "Left gluteus minimus")


def test_uncertain_landmarks_tell_nothing() -> None:
    volume = _pelvis_scan()
    labels = _labels(volume, _all_gluteal(without=(("gluteus_minimus", Side.LEFT),)))
    report = _measure(volume, labels, _landmarks(volume, Certainty.UNCERTAIN))
    minimus = _structure(report, "gluteus_minimus_left")
    assert minimus.absence is Absence.NOT_IN_SCAN_OR_NOT_FOUND
    assert minimus.absence_note == "the landmarks to tell are uncertain"
    assert report.group(Group.GLUTEAL, "left").completeness is Completeness.NOT_IN_SCAN


def test_the_other_sides_landmarks_place_a_muscle_when_its_own_are_missing() -> None:
    volume = _pelvis_scan()
    labels = _labels(volume, _all_gluteal(without=(("gluteus_minimus", Side.LEFT),)))
    report = _measure(volume, labels, _landmarks(volume, sides=(Side.RIGHT,)))
    assert _structure(report, "gluteus_minimus_left").absence is Absence.NOT_FOUND
    assert report.group(Group.GLUTEAL, "left").completeness is Completeness.NOT_FOUND


@pytest.mark.parametrize("missing", GLUTEAL)
def test_every_gluteal_muscle_missing_in_a_whole_pelvis_scan_is_not_found(missing: str) -> None:
    volume = _pelvis_scan()
    labels = _labels(volume, _all_gluteal(without=((missing, Side.RIGHT),)))
    report = _measure(volume, labels, _landmarks(volume))
    assert _structure(report, f"{missing}_right").absence is Absence.NOT_FOUND
    assert report.group(Group.GLUTEAL, "right").completeness is Completeness.NOT_FOUND
    assert report.group(Group.GLUTEAL, "left").completeness is Completeness.COMPLETE


def test_muscle_regions_are_not_judged_by_where_a_muscle_should_be() -> None:
    """The threshold engine's region labels keep their rule: an absent region is 'not in the scan', landmarks or
    not (its behaviour does not change)."""
    volume = _pelvis_scan()
    regions = CATALOGUE.muscles(Kind.MUSCLE_REGION)
    labels = np.zeros(volume.shape, np.uint8)
    z = volume.positions[:, 2]
    inside = (z > -150) & (z < 120)
    for side, columns in ((Side.RIGHT, slice(0, 8)), (Side.LEFT, slice(8, 16))):
        labels[inside, 0, columns] = CATALOGUE.structure("gluteal_region_muscle", side).label
        labels[inside, 1, columns] = CATALOGUE.structure("hip_thigh_muscle", side).label
    segmentation = Segmentation(labels=labels, structures=regions, engine_name="threshold", engine_version="1",
                                landmarks=_landmarks(volume))
    report = measure(volume, segmentation, DensityRule(), HEIGHT)
    assert all(m.absence is None for m in report.structures)
    group = report.group(Group.ALL, "left")
    assert group.completeness is Completeness.NOT_IN_SCAN
    assert group.reason == "not measurable: not in the scan: Left lower-leg muscles"
    assert not group.qa_flag
    assert report.group(Group.GLUTEAL, "both").completeness is Completeness.COMPLETE
