"""Measurement: structure statistics, group completeness, SMI, height and calibration-based screening."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sarcoscreen.inference.calibration import CalibrationError, load_calibration, parse_calibration
from sarcoscreen.inference.catalogue import CATALOGUE, Group, Kind, Side
from sarcoscreen.inference.density import DensityKind, DensityRule
from sarcoscreen.inference.engines.base import Certainty, ExtentStatus, Landmark, Segmentation, StructureExtent
from sarcoscreen.inference.height import Height, HeightSource, choose_height
from sarcoscreen.inference.measure import Classification, Completeness, measure, measure_structures
from sarcoscreen.inference.sides import SideRule
from sarcoscreen.inference.volume import SeriesInfo, SliceRef, Volume

REGIONS = CATALOGUE.muscles(Kind.MUSCLE_REGION)
TALL = Height(1.6, HeightSource.DICOM)


def _volume(hu: np.ndarray, spacing: tuple[float, float, float] = (2.0, 1.0, 1.0), sex: str | None = "F") -> Volume:
    n = hu.shape[0]
    positions = np.array([[0.0, 0.0, -spacing[0] * k] for k in range(n)])
    return Volume(
        hu=hu, spacing=spacing, row_direction=(1.0, 0.0, 0.0), column_direction=(0.0, 1.0, 0.0),
        positions=positions,
        slices=tuple(SliceRef(f"1.2.3.{k}", "1.2.840.10008.5.1.4.1.1.2") for k in range(n)),
        info=SeriesInfo("1.2.3", "1.2.3.4", "1.2.3.5", patient_sex=sex),
    )


def _region_phantom(extent: slice = slice(1, 9)) -> tuple[np.ndarray, np.ndarray]:
    """10 slices; each region label a block per side inside slices `extent`, muscle-like HU 20..80."""
    rng = np.random.default_rng(1)
    hu = np.full((10, 12, 12), -1000, np.int16)
    labels = np.zeros(hu.shape, np.uint8)
    for col, anatomy in enumerate(("gluteal_region_muscle", "hip_thigh_muscle", "lower_leg_muscle")):
        for side, row in ((Side.RIGHT, 1), (Side.LEFT, 6)):
            label = CATALOGUE.structure(anatomy, side).label
            block = (extent, slice(row, row + 4), slice(col * 4, col * 4 + 3))
            labels[block] = label
            hu[block] = rng.integers(20, 80, size=hu[block].shape)
    return hu, labels


def _segmentation(labels: np.ndarray, structures: tuple = REGIONS, **kwargs: object) -> Segmentation:
    return Segmentation(labels=labels, structures=structures, engine_name="test", engine_version="1", **kwargs)


def test_structure_statistics_match_a_direct_computation() -> None:
    hu, labels = _region_phantom()
    hu[labels == labels.max()] = -50  # some voxels outside the window
    volume = _volume(hu)
    rule = DensityRule(DensityKind.HU_LINEAR)
    results = {m.key: m for m in measure_structures(volume, _segmentation(labels), rule)}
    for structure in REGIONS:
        values = hu[labels == structure.label].astype(np.float64)
        m = results[structure.key]
        assert m.voxels == values.size
        assert m.volume_cm3 == pytest.approx(values.size * 2.0 / 1000)
        assert m.mean_hu == pytest.approx(values.mean())
        assert m.sd_hu == pytest.approx(values.std(), rel=1e-6)
        assert m.fraction_in_window == pytest.approx(np.mean((values >= -29) & (values <= 150)))
        assert m.mass_g == pytest.approx(rule.mass_g(values, 2.0))
        assert not m.truncated


@pytest.mark.parametrize("exclude", [False, True])
@pytest.mark.parametrize("kind", list(DensityKind))
def test_slab_accumulation_equals_the_density_rule_on_all_voxels(kind: DensityKind, exclude: bool) -> None:
    rng = np.random.default_rng(7)
    hu = rng.integers(-200, 200, size=(70, 16, 16)).astype(np.int16)  # more slices than one slab
    labels = np.zeros(hu.shape, np.uint8)
    structure = CATALOGUE.by_key("gluteal_region_muscle_left")
    labels[3:60, 2:10, 2:10] = structure.label
    rule = DensityRule(kind, 1.06, exclude_outside_window=exclude)
    (result,) = measure_structures(_volume(hu), _segmentation(labels, (structure,)), rule)
    assert result.mass_g == pytest.approx(rule.mass_g(hu[labels == structure.label], 2.0))


def test_complete_groups_give_mass_and_smi_per_side() -> None:
    hu, labels = _region_phantom()
    volume = _volume(hu)
    rule = DensityRule()
    report = measure(volume, _segmentation(labels), rule, Height(1.6, HeightSource.DICOM))
    by_key = {m.key: m.mass_g for m in report.structures}
    left_all = sum(by_key[f"{a}_left"] for a in ("gluteal_region_muscle", "hip_thigh_muscle", "lower_leg_muscle"))
    group = report.group(Group.ALL, "left")
    assert group.completeness is Completeness.COMPLETE
    assert group.smm_g == pytest.approx(left_all)
    assert group.smi_kg_m2 == pytest.approx(left_all / 1000 / 1.6**2)
    gluteal_both = report.group(Group.GLUTEAL, "both")
    assert gluteal_both.smm_g == pytest.approx(by_key["gluteal_region_muscle_left"]
                                               + by_key["gluteal_region_muscle_right"])
    # Without a calibration nothing is classified, and the reason says so.
    for screening in report.screening:
        assert screening.classification is Classification.NOT_CLASSIFIED
        if screening.group is Group.UPPER_GLUTEAL:  # landmark-bounded: this segmentation has no landmarks
            assert "reports no landmarks" in screening.reason
            continue
        assert screening.reason == "not classified: no calibrated cut-off"
        assert screening.smi_kg_m2 is not None


def test_a_structure_touching_the_last_slice_makes_its_groups_not_measurable() -> None:
    hu, labels = _region_phantom(extent=slice(1, 10))  # reaches the last slice
    report = measure(_volume(hu), _segmentation(labels), DensityRule(), Height(1.6, HeightSource.DICOM))
    group = report.group(Group.GLUTEAL, "right")
    assert group.completeness is Completeness.TRUNCATED
    assert "Right gluteal region muscles" in group.reason
    assert group.smm_g is None
    assert report.screening_of(Group.GLUTEAL).reason.startswith("not classified: not measurable: truncated")


def test_a_structure_absent_from_the_scan_makes_its_groups_not_measurable() -> None:
    hu, labels = _region_phantom()
    for side in Side.LEFT, Side.RIGHT:
        labels[labels == CATALOGUE.structure("lower_leg_muscle", side).label] = 0
    report = measure(_volume(hu), _segmentation(labels), DensityRule(), Height(1.6, HeightSource.DICOM))
    assert report.group(Group.ALL, "both").completeness is Completeness.NOT_IN_SCAN
    assert report.group(Group.ABOVE_KNEE, "both").completeness is Completeness.COMPLETE


def test_a_group_cut_by_the_scan_is_truncated_even_when_other_members_are_beyond_the_cut() -> None:
    # A scan of the lower legs: the thigh muscles cross the first slice, the gluteal region is not in the scan.
    hu, labels = _region_phantom()
    for side in Side.LEFT, Side.RIGHT:
        labels[labels == CATALOGUE.structure("gluteal_region_muscle", side).label] = 0
        thigh = labels == CATALOGUE.structure("hip_thigh_muscle", side).label
        labels[0][thigh.any(axis=0)] = CATALOGUE.structure("hip_thigh_muscle", side).label
    report = measure(_volume(hu), _segmentation(labels), DensityRule(), Height(1.6, HeightSource.DICOM))
    assert report.group(Group.GLUTEAL, "both").completeness is Completeness.NOT_IN_SCAN
    above_knee = report.group(Group.ABOVE_KNEE, "both")
    assert above_knee.completeness is Completeness.TRUNCATED
    assert "Right hip and thigh muscles outside the gluteal region" in above_knee.reason
    assert "not in the scan: " in above_knee.reason
    assert report.group(Group.ALL, "left").completeness is Completeness.TRUNCATED


def test_unknown_height_gives_mass_but_no_smi() -> None:
    hu, labels = _region_phantom()
    height = choose_height(None, 160.0, None)
    report = measure(_volume(hu), _segmentation(labels), DensityRule(), height)
    group = report.group(Group.ALL, "both")
    assert group.smm_g is not None
    assert group.smi_kg_m2 is None
    assert "looks like centimetres" in group.reason
    assert "looks like centimetres" in report.screening_of(Group.ALL).reason


@pytest.mark.parametrize(
    ("explicit", "dicom", "registry", "metres", "source"),
    [
        (1.7, 1.6, 1.5, 1.7, HeightSource.EXPLICIT),
        (None, 1.6, 1.5, 1.6, HeightSource.DICOM),
        (None, 0.0, 1.5, 1.5, HeightSource.REGISTRY),
        (None, 158.0, 1.5, 1.5, HeightSource.REGISTRY),
        (None, 2.6, None, None, HeightSource.UNKNOWN),
        (None, None, None, None, HeightSource.UNKNOWN),
    ],
)
def test_height_precedence_and_plausibility(explicit: float | None, dicom: float | None, registry: float | None,
                                            metres: float | None, source: HeightSource) -> None:
    height = choose_height(explicit, dicom, registry)
    assert height.metres == metres
    assert height.source is source
    if dicom in (0.0, 158.0, 2.6):
        assert "PatientSize" in height.note


def _calibration(tmp_path: Path, **changes: object) -> Path:
    data = {
        "format": "sarcoscreen-calibration/1", "name": "test-site", "side_rule": "min", "primary_group": "all",
        "cutoffs": [{"group": g, "sex": "F", "smi_cutoff_kg_m2": 1.0} for g in ("gluteal", "above_knee", "all")],
    }
    data.update(changes)
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_screening_against_a_calibration(tmp_path: Path) -> None:
    hu, labels = _region_phantom()
    calibration = load_calibration(_calibration(tmp_path))
    tiny = measure(_volume(hu), _segmentation(labels), DensityRule(), Height(1.6, HeightSource.DICOM),
                   calibration=calibration)
    gluteal = tiny.screening_of(Group.GLUTEAL)
    # A 12x12 toy has far less muscle than 1 kg/m^2: suspected, by the calibration's side rule (min).
    assert gluteal.classification is Classification.SUSPECTED
    assert gluteal.side_rule is SideRule.MIN
    left = tiny.group(Group.GLUTEAL, "left").smi_kg_m2
    right = tiny.group(Group.GLUTEAL, "right").smi_kg_m2
    assert gluteal.smi_kg_m2 == pytest.approx(min(left, right))
    assert gluteal.calibration_sha256 == calibration.sha256
    assert "below the cut-off 1.00" in gluteal.reason
    high = load_calibration(_calibration(tmp_path, cutoffs=[
        {"group": "gluteal", "sex": "F", "smi_cutoff_kg_m2": 0.6}]))
    gluteal_high = measure(_volume(hu * 0 + 50), _segmentation(labels), DensityRule(), Height(1.0, HeightSource.DICOM),
                           calibration=high)
    assert gluteal_high.screening_of(Group.GLUTEAL).classification is Classification.SUSPECTED
    assert gluteal_high.screening_of(Group.ALL).reason.startswith("not classified: calibration test-site has no cut")
    men = measure(_volume(hu, sex="M"), _segmentation(labels), DensityRule(), Height(1.6, HeightSource.DICOM),
                  calibration=calibration)
    assert "has no cut-off for gluteal, sex M" in men.screening_of(Group.GLUTEAL).reason
    unknown_sex = measure(_volume(hu, sex=None), _segmentation(labels), DensityRule(),
                          Height(1.6, HeightSource.DICOM), calibration=calibration)
    assert "sex unknown" in unknown_sex.screening_of(Group.GLUTEAL).reason


def test_a_calibration_applies_only_to_the_engine_and_density_rule_that_made_it(tmp_path: Path) -> None:
    hu, labels = _region_phantom()
    provenance = {"engines": ["test 1"], "density_rules": ["constant 1.04 g/cm3"]}
    calibration = load_calibration(_calibration(tmp_path, provenance=provenance))
    height = Height(1.6, HeightSource.DICOM)
    same = measure(_volume(hu), _segmentation(labels), DensityRule(), height, calibration=calibration)
    assert same.screening_of(Group.GLUTEAL).classification is Classification.SUSPECTED
    other_engine = Segmentation(labels=labels, structures=REGIONS, engine_name="threshold", engine_version="1.0")
    report = measure(_volume(hu), other_engine, DensityRule(), height, calibration=calibration)
    screening = report.screening_of(Group.GLUTEAL)
    assert screening.classification is Classification.NOT_CLASSIFIED
    assert screening.reason == ("not classified: calibration test-site was made with test 1, this result with "
                                "threshold 1.0")
    assert screening.calibration_sha256 == calibration.sha256
    other_rule = measure(_volume(hu), _segmentation(labels), DensityRule(DensityKind.HU_LINEAR), height,
                         calibration=calibration)
    assert "made with density rule constant 1.04 g/cm3, this result with HU-linear" in \
        other_rule.screening_of(Group.ALL).reason


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"format": "other"}, "not a sarcoscreen calibration"),
        ({"side_rule": "both"}, "'both' is not a valid SideRule"),
        ({"cutoffs": []}, "no cut-offs"),
        ({"cutoffs": [{"group": "all", "sex": "X", "smi_cutoff_kg_m2": 5}]}, "sex must be 'F' or 'M'"),
        ({"cutoffs": [{"group": "all", "sex": "F", "smi_cutoff_kg_m2": 540}]}, "not a plausible SMI"),
        ({"cutoffs": [{"group": "all", "sex": "F"}]}, "missing field 'smi_cutoff_kg_m2'"),
        ({"cutoffs": [{"group": "legs", "sex": "F", "smi_cutoff_kg_m2": 5}]}, "'legs' is not a valid Group"),
    ],
)
def test_bad_calibration_files_are_refused_with_the_reason(tmp_path: Path, changes: dict, message: str) -> None:
    with pytest.raises(CalibrationError, match=message):
        load_calibration(_calibration(tmp_path, **changes))
    with pytest.raises(CalibrationError, match="not valid JSON"):
        parse_calibration(b"{", "x.json")


def test_an_engine_that_labels_only_some_muscles_of_a_group_cannot_measure_the_group() -> None:
    # A per-muscle engine (e.g. a model bundle trained on a few muscles) labels the gluteal muscles only.
    hu = np.full((10, 12, 12), 40, np.int16)
    labels = np.zeros(hu.shape, np.uint8)
    produced = []
    for row, anatomy in enumerate(("gluteus_maximus", "gluteus_medius", "gluteus_minimus")):
        for side, col in ((Side.RIGHT, 0), (Side.LEFT, 6)):
            structure = CATALOGUE.structure(anatomy, side)
            labels[2:8, row * 4:row * 4 + 3, col:col + 5] = structure.label
            produced.append(structure)
    report = measure(_volume(hu), _segmentation(labels, tuple(produced)), DensityRule(),
                     Height(1.6, HeightSource.DICOM))
    assert report.group(Group.GLUTEAL, "both").completeness is Completeness.COMPLETE
    above_knee = report.group(Group.ABOVE_KNEE, "left")
    assert above_knee.completeness is Completeness.NOT_PRODUCED
    assert above_knee.smm_g is None
    assert "the engine does not produce Left iliacus" in above_knee.reason


def _landmarks(crest: int, head: int, certainty: Certainty = Certainty.FOUND) -> tuple[Landmark, ...]:
    return tuple(Landmark(name, k, -2.0 * k, side, certainty=certainty)
                 for side in (Side.LEFT, Side.RIGHT) for name, k in (("iliac_crest", crest), ("femoral_head", head)))


def test_the_upper_gluteal_group_is_the_gluteal_muscle_between_crest_and_femoral_head_centre() -> None:
    # Slice 0 is the head end here (positions descend): crest at slice 2, femoral head centre at slice 5.
    hu, labels = _region_phantom()
    volume = _volume(hu)
    rule = DensityRule()
    report = measure(volume, _segmentation(labels, landmarks=_landmarks(2, 5)), rule, Height(1.6, HeightSource.DICOM))
    for side in Side.LEFT, Side.RIGHT:
        label = CATALOGUE.structure("gluteal_region_muscle", side).label
        expected = rule.mass_g(hu[2:6][labels[2:6] == label], volume.voxel_volume_mm3)
        group = report.group(Group.UPPER_GLUTEAL, side.value)
        assert group.completeness is Completeness.COMPLETE, group.reason
        assert group.smm_g == pytest.approx(expected)
        assert group.smm_g < report.group(Group.GLUTEAL, side.value).smm_g
    both = report.group(Group.UPPER_GLUTEAL, "both")
    assert both.smm_g == pytest.approx(report.group(Group.UPPER_GLUTEAL, "left").smm_g
                                       + report.group(Group.UPPER_GLUTEAL, "right").smm_g)
    assert report.screening_of(Group.UPPER_GLUTEAL).smi_kg_m2 is not None


def test_the_upper_gluteal_group_is_truncated_without_the_crest_and_uncertain_with_an_unsure_landmark() -> None:
    hu, labels = _region_phantom()
    volume = _volume(hu)
    without_crest = tuple(lm for lm in _landmarks(2, 5) if lm.name != "iliac_crest")
    report = measure(volume, _segmentation(labels, landmarks=without_crest), DensityRule(), TALL)
    group = report.group(Group.UPPER_GLUTEAL, "left")
    assert group.completeness is Completeness.TRUNCATED
    assert "left iliac crest not found" in group.reason
    assert group.smm_g is None
    # From the femoral head centre to the scan's head end (slice 0 here): slices 0-5.
    label = CATALOGUE.structure("gluteal_region_muscle", Side.LEFT).label
    assert group.in_scan_smm_g == pytest.approx(DensityRule().mass_g(hu[:6][labels[:6] == label],
                                                                     volume.voxel_volume_mm3))
    unsure = measure(volume, _segmentation(labels, landmarks=_landmarks(2, 5, Certainty.UNCERTAIN)), DensityRule(),
                     Height(1.6, HeightSource.DICOM))
    assert unsure.group(Group.UPPER_GLUTEAL, "both").completeness is Completeness.UNCERTAIN
    assert unsure.group(Group.UPPER_GLUTEAL, "both").smm_g is None
    assert unsure.screening_of(Group.UPPER_GLUTEAL).classification is Classification.NOT_CLASSIFIED


def test_an_engine_extent_beyond_the_scan_truncates_the_group_with_its_in_scan_mass_and_shortfall() -> None:
    hu, labels = _region_phantom()  # no label touches the first or last slice
    extents = tuple(StructureExtent(CATALOGUE.structure("gluteal_region_muscle", side).key, ExtentStatus.TRUNCATED,
                                    shortfall_mm=35.0, reason="the gluteus maximus continues below the scan")
                    for side in (Side.LEFT, Side.RIGHT))
    report = measure(_volume(hu), _segmentation(labels, extents=extents), DensityRule(), TALL)
    by_key = {m.key: m for m in report.structures}
    group = report.group(Group.GLUTEAL, "right")
    assert group.completeness is Completeness.TRUNCATED
    assert group.smm_g is None
    assert group.smi_kg_m2 is None
    assert group.in_scan_smm_g == pytest.approx(by_key["gluteal_region_muscle_right"].mass_g)
    assert group.shortfall_mm == 35.0
    assert "continues below the scan" in group.reason
    assert "35 mm short" in group.reason
    assert by_key["gluteal_region_muscle_right"].truncated
    assert report.group(Group.ALL, "both").completeness is Completeness.TRUNCATED


def test_an_uncertain_extent_never_gives_a_complete_group() -> None:
    hu, labels = _region_phantom()
    key = CATALOGUE.structure("lower_leg_muscle", Side.LEFT).key
    extents = (StructureExtent(key, ExtentStatus.UNCERTAIN, reason="the ankle found is uncertain"),)
    report = measure(_volume(hu), _segmentation(labels, extents=extents), DensityRule(), TALL)
    group = report.group(Group.ALL, "left")
    assert group.completeness is Completeness.UNCERTAIN
    assert "the ankle found is uncertain" in group.reason
    assert group.smm_g is None
    assert group.in_scan_smm_g is not None
    assert report.group(Group.ALL, "right").completeness is Completeness.COMPLETE
    assert report.group(Group.ABOVE_KNEE, "left").completeness is Completeness.COMPLETE
    assert report.screening_of(Group.ALL).classification is Classification.NOT_CLASSIFIED


def test_bones_get_volume_and_hu_but_no_mass() -> None:
    """Issue 11, defect 11: a femur was given a mass at muscle density (465 cm3 reported as
    484 g). A bone has volume and attenuation only; muscle keeps its mass, and the groups are unchanged."""
    hu, labels = _region_phantom()
    femur = CATALOGUE.by_key("femur_left")
    labels[2:8, 10:12, 0:12] = femur.label
    hu[2:8, 10:12, 0:12] = 700
    structures = (*REGIONS, femur)
    report = measure(_volume(hu), _segmentation(labels, structures), DensityRule(), TALL)
    bone = next(m for m in report.structures if m.key == "femur_left")
    values = hu[labels == femur.label].astype(np.float64)
    assert (bone.voxels, bone.volume_cm3, bone.mean_hu) == (values.size, values.size * 2.0 / 1000, 700.0)
    assert bone.mass_g is None
    assert all(m.mass_g is not None and m.mass_g > 0 for m in report.structures if m.key != "femur_left")
    without = measure(_volume(hu), _segmentation(labels), DensityRule(), TALL)
    assert [g.smm_g for g in report.groups] == [g.smm_g for g in without.groups]
