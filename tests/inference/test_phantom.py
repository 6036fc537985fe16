"""The digital phantom: ground truth consistent with the written files, anatomy sanity, FOV rules, determinism,
hip prostheses (one side, both sides) and cut series."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from sarcoscreen.inference.catalogue import CATALOGUE, GROUP_BOUNDS, Group, Kind, Side
from sarcoscreen.inference.engines.labelmap import align_to_volume
from sarcoscreen.inference.phantom import (
    PhantomParameterError,
    PhantomParameters,
    build_anatomy,
    crop_phantom,
    label_volume,
    make_phantom,
)
from sarcoscreen.inference.phantom.ct_values import metal_streaks
from sarcoscreen.inference.phantom.geometry import Grid
from sarcoscreen.inference.phantom.ground_truth import DENSITY_RULES, ENGINE_LANDMARKS
from sarcoscreen.inference.phantom.procedural import scan_geometry
from sarcoscreen.inference.phantom.rasterize import rasterize_slice
from sarcoscreen.inference.series_loader import load_series
from sarcoscreen.inference.volume import Volume

SMALL = {"matrix": 112, "slice_mm": 5.0}


def _read_series(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """HU (slices sorted by z ascending, rows, columns) and the z of each slice, read with pydicom."""
    datasets = [pydicom.dcmread(p) for p in sorted(folder.glob("*.dcm"))]
    datasets.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    hu = np.stack([d.pixel_array.astype(np.float64) * float(d.RescaleSlope) + float(d.RescaleIntercept)
                   for d in datasets])
    return hu, np.array([float(d.ImagePositionPatient[2]) for d in datasets])


def _aligned(result_dir: Path) -> tuple[np.ndarray, np.ndarray, float, dict]:
    """(HU, labels) on the loader's grid, voxel volume, ground truth."""
    volume = load_series(result_dir / "dicom")
    image = nib.load(result_dir / "labels.nii.gz")
    labels = align_to_volume(np.asarray(image.dataobj), image.affine, volume)
    gt = json.loads((result_dir / "ground_truth.json").read_text())
    return np.asarray(volume.hu, np.float64), labels, volume.voxel_volume_mm3, gt


@pytest.fixture(scope="module")
def hip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hip")
    make_phantom(PhantomParameters(seed=3, **SMALL), out)
    return out


@pytest.fixture(scope="module")
def hip_arrays(hip: Path) -> tuple[np.ndarray, np.ndarray, float, dict]:
    return _aligned(hip)


def _bounded_slab(group: Group, gt: dict) -> slice | None:
    """The slices of a landmark-bounded group, from the landmark slice indices ground_truth.json reports."""
    bounds = GROUP_BOUNDS[group]
    rows = [gt["landmarks_mm"][ENGINE_LANDMARKS[name]] for name in (bounds.top, bounds.bottom)]
    if not all(r["in_scan"] for r in rows):
        return None
    ends = sorted(r["slice_index"] for r in rows)
    return slice(ends[0], ends[1] + 1)


def _check_consistency(result_dir: Path) -> None:
    """Every structure's voxels and masses and every group's masses, recomputed from the files read back."""
    hu, labels, voxel_mm3, gt = _aligned(result_dir)
    counts = np.bincount(labels.ravel(), minlength=256)
    for s in gt["structures"]:
        assert counts[s["label"]] == s["voxels"], s["key"]
        values = hu[labels == s["label"]]
        if s["kind"] == "bone":  # a bone has no mass: the rules are muscle's density (issue 11)
            assert set(s["mass_g"].values()) == {None}, s["key"]
        for name, rule in DENSITY_RULES.items() if s["kind"] != "bone" else ():
            expected = rule.mass_g(values, voxel_mm3)
            assert s["mass_g"][name] == pytest.approx(expected, rel=1e-6, abs=1e-9), (s["key"], name)
        if s["voxels"]:
            assert s["mean_hu"] == pytest.approx(values.mean(), rel=1e-6, abs=1e-6)
        # Truncated means: present on the first or last slice.
        assert s["truncated"] == bool(np.isin(s["label"], labels[[0, -1]])), s["key"]
    members = {s["key"]: s for s in gt["structures"]}
    for g in gt["groups"]:
        for name, rule in DENSITY_RULES.items():
            if Group(g["group"]) in GROUP_BOUNDS:
                slab = _bounded_slab(Group(g["group"]), gt)
                if slab is None:  # the group's muscle from the scan's end: checked in the crop tests
                    continue
                wanted = [members[k]["label"] for k in g["members"]]
                total = rule.mass_g(hu[slab][np.isin(labels[slab], wanted)], voxel_mm3)
            else:
                total = sum(members[k]["mass_g"][name] for k in g["members"])
            assert g["in_scan_mass_g"][name] == pytest.approx(total, rel=1e-6, abs=1e-9), (g["group"], g["side"])
            if g["completeness"] == "complete":
                assert g["mass_g"][name] == pytest.approx(total, rel=1e-6, abs=1e-9), (g["group"], g["side"])
            else:
                assert g["mass_g"][name] is None


def test_ground_truth_matches_written_files(hip: Path) -> None:
    _check_consistency(hip)


def test_labels_read_back_with_pydicom_match_the_loader(hip: Path, hip_arrays: tuple) -> None:
    hu_pydicom, z = _read_series(hip / "dicom")
    hu, _labels, _, gt = hip_arrays
    assert np.array_equal(hu_pydicom, hu)  # HFS: the volume is ordered feet -> head, like sorted z
    assert gt["series"]["slices"] == len(z)
    assert gt["series"]["z_range_mm"] == pytest.approx([z.min(), z.max()])
    image = nib.load(hip / "labels.nii.gz")
    assert image.get_data_dtype() == np.uint8
    assert image.shape == (gt["series"]["columns"], gt["series"]["rows"], gt["series"]["slices"])


def test_every_catalogue_muscle_present_on_both_sides_in_the_hip_fov(hip_arrays: tuple) -> None:
    _, labels, _, gt = hip_arrays
    present = set(np.unique(labels).tolist())
    for structure in CATALOGUE.muscles():
        assert structure.label in present, structure.key
    for structure in CATALOGUE.bones():
        assert structure.label in present, structure.key
    # Only catalogue muscle and bone labels; no region labels; structures never share a voxel.
    allowed = {s.label for s in CATALOGUE if s.anatomy.kind in (Kind.MUSCLE, Kind.BONE)} | {0}
    assert present <= allowed
    assert sum(s["voxels"] for s in gt["structures"]) == int(np.count_nonzero(labels))


def test_hip_fov_all_groups_complete_on_both_sides(hip_arrays: tuple) -> None:
    gt = hip_arrays[3]
    for g in gt["groups"]:
        assert g["completeness"] == "complete", (g["group"], g["side"], g["reason"])
        assert all(v > 0 for v in g["mass_g"].values())
    assert gt["complete_group_names"] == ["gluteal", "above_knee", "all", "upper_gluteal"]
    psoas = [s for s in gt["structures"] if s["key"].startswith("psoas_major")]
    assert all(s["truncated"] for s in psoas)  # continues up to the spine, above the scan


def test_muscle_attenuation_and_bone(hip_arrays: tuple) -> None:
    hu, labels, _, gt = hip_arrays
    for s in gt["structures"]:
        if s["kind"] == "muscle" and s["voxels"] > 50:
            assert 20.0 < s["mean_hu"] < 75.0, (s["key"], s["mean_hu"])
    muscle = np.isin(labels, [s.label for s in CATALOGUE.muscles()])
    assert 30.0 < hu[muscle].mean() < 70.0
    femur = labels == CATALOGUE.structure("femur", "right").label
    assert hu[femur].max() > 700.0
    hip_bone = labels == CATALOGUE.structure("hip_bone", "left").label
    assert hu[hip_bone].max() > 700.0


def test_left_right_masses_symmetric(hip_arrays: tuple) -> None:
    gt = hip_arrays[3]
    by = {(g["group"], g["side"]): g["mass_g"]["hu_linear"] for g in gt["groups"]}
    for group in Group:
        left, right = by[(group.value, "left")], by[(group.value, "right")]
        assert abs(left - right) / right < 0.03


def test_landmarks_in_anatomical_order(hip_arrays: tuple) -> None:
    lm = {k: v["z_mm"] for k, v in hip_arrays[3]["landmarks_mm"].items()}
    order = ["iliac_crest_top", "acetabular_roof", "femoral_head_top", "femoral_head_centre", "greater_trochanter",
             "lesser_trochanter", "knee_joint", "ankle_joint"]
    zs = [lm[k] for k in order]
    assert zs == sorted(zs, reverse=True)
    assert all(v["in_scan"] for v in hip_arrays[3]["landmarks_mm"].values())


def test_viscera_inside_the_pelvic_ring_are_soft_tissue_and_background(hip: Path, hip_arrays: tuple) -> None:
    hu, labels, _, gt = hip_arrays
    volume = load_series(hip / "dicom")
    z = volume.slice_z_mm()
    lm = gt["landmarks_mm"]
    # The bladder lies on the midline just behind the pubic symphysis, ~2 cm above the femoral head centre.
    k = int(np.argmin(np.abs(z - (lm["femoral_head_centre"]["z_mm"] + 12.0))))
    x0, y0 = volume.positions[k][:2]
    ps = volume.spacing[1]
    col = round((0.0 - x0) / ps)
    row = round((-34.0 - y0) / ps)
    patch_hu = hu[k, row - 1:row + 2, col - 1:col + 2]
    patch_labels = labels[k, row - 1:row + 2, col - 1:col + 2]
    assert np.all(patch_labels == 0)
    assert -30.0 < patch_hu.mean() < 60.0
    # Soft-tissue-like background voxels (bowel, bladder, vessels) exist inside the pelvis at this level.
    soft = (labels[k] == 0) & (hu[k] > -20) & (hu[k] < 80)
    assert soft.sum() > 20


def test_fov_rules_abdomen_and_legs(tmp_path: Path) -> None:
    abdomen = make_phantom(PhantomParameters(fov="abdomen", matrix=96, slice_mm=5.0, seed=1), tmp_path / "abd")
    groups = {(g["group"], g["side"]): g for g in abdomen.ground_truth["groups"]}
    # An abdomen-pelvis CT ends just below the ischial tuberosity: the upper gluteal group is whole, the gluteal group
    # is not (gluteus maximus goes on ~8 cm below the tuberosity), nor are the thigh muscles.
    for side in ("left", "right", "both"):
        assert groups[("gluteal", side)]["completeness"] == "truncated"
        assert "gluteus maximus" in groups[("gluteal", side)]["reason"]
        assert groups[("upper_gluteal", side)]["completeness"] == "complete"
        assert groups[("above_knee", side)]["completeness"] == "truncated"
        assert groups[("all", side)]["completeness"] != "complete"
    assert abdomen.ground_truth["complete_group_names"] == ["upper_gluteal"]
    structures = {s["key"]: s for s in abdomen.ground_truth["structures"]}
    for side in ("left", "right"):
        assert structures[f"gluteus_maximus_{side}"]["truncated"]
        for key in ("gluteus_medius", "gluteus_minimus"):
            assert structures[f"{key}_{side}"]["voxels"] > 0, key
            assert not structures[f"{key}_{side}"]["truncated"], key
    lm = abdomen.ground_truth["landmarks_mm"]
    assert lm["lesser_trochanter"]["in_scan"]
    assert abdomen.ground_truth["series"]["z_range_mm"][0] == pytest.approx(lm["lesser_trochanter"]["z_mm"] - 20.0
                                                                          * 1.58 / 1.60, abs=5.0)

    legs = make_phantom(PhantomParameters(fov="legs", matrix=96, slice_mm=5.0, seed=1), tmp_path / "legs")
    groups = {(g["group"], g["side"]): g for g in legs.ground_truth["groups"]}
    structures = {s["key"]: s for s in legs.ground_truth["structures"]}
    for side in ("left", "right"):
        assert groups[("gluteal", side)]["completeness"] == "not in scan"
        assert groups[("upper_gluteal", side)]["completeness"] == "not in scan"
        assert groups[("above_knee", side)]["completeness"] != "complete"
        assert groups[("all", side)]["completeness"] != "complete"
        for key in ("vastus_medialis", "adductors", "semimembranosus", "biceps_femoris", "sartorius"):
            assert structures[f"{key}_{side}"]["truncated"], key
        for s in CATALOGUE.muscles():
            if s.anatomy.region.value == "lower leg" and s.side.value == side:
                assert structures[s.key]["voxels"] > 0, s.key
                assert not structures[s.key]["truncated"], s.key
    assert legs.ground_truth["landmarks_mm"]["iliac_crest_top"]["in_scan"] is False


def test_determinism_same_seed_identical_other_seed_differs(tmp_path: Path) -> None:
    p = PhantomParameters(fov="legs", matrix=80, slice_mm=8.0, seed=5)
    a = make_phantom(p, tmp_path / "a")
    b = make_phantom(p, tmp_path / "b")
    c = make_phantom(PhantomParameters(fov="legs", matrix=80, slice_mm=8.0, seed=6), tmp_path / "c")
    hu_a, _ = _read_series(a.dicom_dir)
    hu_b, _ = _read_series(b.dicom_dir)
    hu_c, _ = _read_series(c.dicom_dir)
    assert np.array_equal(hu_a, hu_b)
    lab_a = np.asarray(nib.load(a.labels_path).dataobj)
    assert np.array_equal(lab_a, np.asarray(nib.load(b.labels_path).dataobj))
    assert a.ground_truth["series"]["series_instance_uid"] == b.ground_truth["series"]["series_instance_uid"]
    assert not np.array_equal(hu_a, hu_c)
    assert a.ground_truth["series"]["series_instance_uid"] != c.ground_truth["series"]["series_instance_uid"]
    # The seed changes noise, fat specks and bowel, never the muscles and bones.
    assert np.array_equal(lab_a, np.asarray(nib.load(c.labels_path).dataobj))


def _muscle_mass(labels: np.ndarray, voxel_mm3: float) -> float:
    counts = np.bincount(labels.ravel(), minlength=256)
    return float(sum(counts[s.label] for s in CATALOGUE.muscles()) * voxel_mm3)


def test_muscle_scale_scales_cross_sections_about_squared() -> None:
    base = _muscle_mass(*label_volume(PhantomParameters(matrix=112), z_step_mm=10.0))
    small = _muscle_mass(*label_volume(PhantomParameters(matrix=112, muscle_scale=0.8), z_step_mm=10.0))
    # Muscles shrink about their bone attachments (area ~ s^2); bone inside the muscle envelope stays the same
    # size, so the muscle area falls slightly faster than s^2 (see docs/phantom.md).
    ratio = small / base
    assert 0.56 < ratio < 0.66


def test_height_changes_lengths_and_scales_mass_with_height_squared(tmp_path: Path) -> None:
    short = PhantomParameters(matrix=96, height_m=1.50)
    tall = PhantomParameters(matrix=96, height_m=1.80)
    femur = CATALOGUE.structure("femur", "left").label

    def femur_length(p: PhantomParameters) -> float:
        labels, _ = label_volume(p, z_step_mm=4.0)
        ks = np.flatnonzero((labels == femur).any(axis=(1, 2)))
        return (ks[-1] - ks[0]) * 4.0

    ratio = femur_length(tall) / femur_length(short)
    assert ratio == pytest.approx(1.80 / 1.50, rel=0.04)
    mass_ratio = _muscle_mass(*label_volume(tall, z_step_mm=10.0)) / _muscle_mass(*label_volume(short, z_step_mm=10.0))
    assert mass_ratio == pytest.approx((1.80 / 1.50) ** 2, rel=0.06)  # so SMI does not depend on height


def test_subcutaneous_fat_thickness_along_a_ray(tmp_path: Path) -> None:
    fat = 25.0
    result = make_phantom(PhantomParameters(fov="legs", matrix=256, slice_mm=10.0, fat_mm=fat, noise_hu=0.0,
                                            seed=2), tmp_path / "fat")
    hu, labels, _, gt = _aligned(result.out_dir)
    volume = load_series(result.dicom_dir)
    ps = volume.spacing[1]
    k = int(np.argmin(np.abs(volume.slice_z_mm() - (gt["landmarks_mm"]["knee_joint"]["z_mm"] - 150.0))))
    muscle_all = np.isin(labels[k], [s.label for s in CATALOGUE.muscles() if s.side is Side.LEFT])
    # The ray along the row through the most lateral muscle voxel is normal to the deep fascia there.
    # The left leg is at +x: with HFS the columns run towards +x, so its lateral skin is at the right end.
    rows, cols = np.nonzero(muscle_all)
    r = int(rows[np.argmax(cols)])
    line_hu = hu[k, r]
    last_muscle = int(cols.max())
    body = np.flatnonzero(line_hu > -500)
    last_body = body[-1]
    thickness = (last_body - last_muscle) * ps
    assert thickness == pytest.approx(fat + 2.0, abs=2.5 * ps)
    between = line_hu[last_muscle + 2:last_body - 1]
    assert np.median(between) < -60.0


def test_fatty_infiltration_lowers_muscle_attenuation(tmp_path: Path) -> None:
    lean = make_phantom(PhantomParameters(fov="legs", matrix=96, slice_mm=8.0, seed=4), tmp_path / "lean")
    fatty = make_phantom(PhantomParameters(fov="legs", matrix=96, slice_mm=8.0, seed=4, fatty_infiltration=0.8),
                         tmp_path / "fatty")

    def mean_hu(gt: dict) -> float:
        rows = [s for s in gt["structures"] if s["kind"] == "muscle" and s["voxels"]]
        return sum(s["mean_hu"] * s["voxels"] for s in rows) / sum(s["voxels"] for s in rows)

    assert 30.0 < mean_hu(lean.ground_truth) < 70.0
    assert mean_hu(fatty.ground_truth) < mean_hu(lean.ground_truth) - 15.0
    # Labels do not change: intramuscular fat stays inside the muscle label.
    assert [s["voxels"] for s in lean.ground_truth["structures"]] == \
        [s["voxels"] for s in fatty.ground_truth["structures"]]


def test_metal_hip_feet_first_offset_and_options_stay_consistent(tmp_path: Path) -> None:
    p = PhantomParameters(fov="abdomen", matrix=96, slice_mm=6.0, seed=9, metal_hip="left", contrast=True,
                          patient_position="FFS", offset_mm=(20.0, -15.0), legs_touching=True, table=True)
    result = make_phantom(p, tmp_path / "metal")
    _check_consistency(result.out_dir)
    hu, labels, _, _gt = _aligned(result.out_dir)
    volume = load_series(result.dicom_dir)
    assert volume.row_direction[0] == pytest.approx(-1.0)
    assert hu.max() >= 3000.0
    metal = hu >= 3000.0
    x = volume.positions[0][0] + volume.row_direction[0] * volume.spacing[2] * np.arange(hu.shape[2])
    assert x[np.nonzero(metal)[2]].mean() > 20.0  # the left hip is at +x
    assert np.all(labels[metal] == 0)
    ds = pydicom.dcmread(next(result.dicom_dir.glob("*.dcm")))
    assert ds.PatientPosition == "FFS"
    assert ds.ContrastBolusAgent
    # Landmarks are judged in patient z, whatever the slice order.
    assert result.ground_truth["landmarks_mm"]["femoral_head_centre"]["in_scan"]
    assert result.ground_truth["complete_groups"]["upper_gluteal"]["both"]


def test_dicom_headers(hip: Path) -> None:
    files = sorted((hip / "dicom").glob("*.dcm"))
    ds = pydicom.dcmread(files[0])
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.SOPClassUID == pydicom.uid.CTImageStorage
    assert str(ds.PatientName) == "PHANTOM^SARCOSCREEN"
    assert ds.Manufacturer == "sarcoscreen phantom"
    assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert ds.BodyPartExamined == "PELVIS"
    assert "PHANTOM" in ds.StudyDescription
    assert "PHANTOM" in ds.SeriesDescription
    assert float(ds.PatientSize) == pytest.approx(1.58)
    assert ds.PatientSex == "F"
    assert float(ds.RescaleIntercept) == -1024
    assert float(ds.RescaleSlope) == 1
    assert float(ds.PixelSpacing[0]) * ds.Columns == pytest.approx(float(ds.ReconstructionDiameter), rel=1e-3)
    uids = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files}
    assert len(uids) == len(files)
    numbers = sorted(int(pydicom.dcmread(f, stop_before_pixels=True).InstanceNumber) for f in files)
    assert numbers == list(range(1, len(files) + 1))


def test_dciodvfy_reports_no_errors(hip: Path) -> None:
    import subprocess

    from dcmtk import dicom3tools_tool

    tool = dicom3tools_tool("dciodvfy")
    path = sorted((hip / "dicom").glob("*.dcm"))[5]
    run = subprocess.run([tool, str(path)], capture_output=True, text=True, check=False)
    report = run.stdout + run.stderr
    assert "Error" not in report, report
    assert "Warning" not in report, report


@pytest.mark.parametrize(("field", "value", "message"), [
    ("height_m", 158.0, "centimetres"),
    ("height_m", 0.9, "height"),
    ("muscle_scale", 3.0, "muscle scale"),
    ("fat_mm", -1.0, "fat"),
    ("matrix", 20, "matrix"),
    ("fov", "knee", "fov"),
    ("sex", "X", "sex"),
    ("fatty_infiltration", 1.5, "fatty infiltration"),
    ("metal_hip", "middle", "metal_hip"),
])
def test_bad_parameters_are_refused_with_their_name(field: str, value: object, message: str) -> None:
    with pytest.raises(PhantomParameterError, match=message):
        PhantomParameters(**{field: value})


def test_sides_follow_the_catalogue_convention(hip_arrays: tuple) -> None:
    _hu, labels, _, _ = hip_arrays
    # Right structures (odd labels) lie at -x (the patient's right), left ones (+1) at +x.
    right = CATALOGUE.structure("vastus_medialis", Side.RIGHT).label
    cols_right = np.nonzero(labels == right)[2].mean()
    cols_left = np.nonzero(labels == right + 1)[2].mean()
    assert cols_right < labels.shape[2] / 2 < cols_left


def test_arms_are_separate_body_parts_with_muscle_that_is_not_labelled(tmp_path: Path) -> None:
    from scipy import ndimage

    make_phantom(PhantomParameters(arms=True, seed=2, **SMALL), tmp_path)
    hu, labels, _, gt = _aligned(tmp_path)
    volume = load_series(tmp_path / "dicom")
    z = volume.slice_z_mm()
    k = int(np.argmin(np.abs(z - gt["landmarks_mm"]["femoral_head_centre"]["z_mm"])))
    body, _ = ndimage.label(hu[k] > -400)
    sizes = np.bincount(body.ravel())[1:]
    big = np.flatnonzero(sizes > 0.01 * sizes.max()) + 1
    trunk = big[np.argmax(sizes[big - 1])]
    # Body parts besides the trunk that hold bone (the table top holds none): the two forearms.
    arms = [part for part in big if part != trunk and np.count_nonzero((hu[k] > 600) & (body == part))]
    assert len(arms) == 2
    for part in arms:
        inside = body == part
        # Muscle-like attenuation in the forearm, none of it labelled.
        assert np.count_nonzero((hu[k] > 0) & (hu[k] < 100) & inside) > 20
        assert not labels[k][inside].any()


# --- hip prostheses ------------------------------------------------------------------------------------------


def _x_of_columns(volume: Volume) -> np.ndarray:
    return volume.positions[0][0] + volume.row_direction[0] * volume.spacing[2] * np.arange(volume.shape[2])


def test_bilateral_prostheses_have_metal_in_both_femoral_head_regions(tmp_path: Path) -> None:
    result = make_phantom(PhantomParameters(fov="abdomen", metal_hip="both", seed=5, **SMALL), tmp_path)
    _check_consistency(result.out_dir)
    hu, labels, _, gt = _aligned(result.out_dir)
    volume = load_series(result.dicom_dir)
    x, z = _x_of_columns(volume), volume.positions[:, 2]
    head = gt["landmarks_mm"]["femoral_head_centre"]["z_mm"]
    head_radius = gt["landmarks_mm"]["femoral_head_top"]["z_mm"] - head
    near_head = np.abs(z - head) <= head_radius
    for sign in (-1, 1):  # the patient's right at -x, left at +x
        side = (x * sign) > 40.0
        metal = hu[near_head][:, :, side] >= 3000.0
        assert metal.sum() >= 10, sign
    assert np.all(labels[hu >= 3000.0] == 0)
    # The prostheses replace the femoral heads: no femur label within the head's radius of either head centre.
    k = int(np.argmin(np.abs(z - head)))
    y = volume.positions[0][1] + volume.spacing[1] * np.arange(volume.shape[1])
    params = PhantomParameters.from_dict(gt["parameters"])
    assert params.metal_hip.sides == ("right", "left")
    anatomy = build_anatomy(params)
    for implant in anatomy.metal:
        ball = implant.shapes[0]
        inside = ((x[None, :] - ball.centre[0]) ** 2 + (y[:, None] - ball.centre[1]) ** 2
                  <= (head_radius - 1.0) ** 2)
        femur = CATALOGUE.structure("femur", implant.side).label
        assert inside.sum() > 10
        assert not np.any(labels[k][inside] == femur), implant.side


def test_a_prosthesis_replaces_bone_and_leaves_muscle_labels_alone() -> None:
    none = PhantomParameters(matrix=128, metal_hip="none")
    both = PhantomParameters(matrix=128, metal_hip="both")
    anatomy_none, anatomy_both = build_anatomy(none), build_anatomy(both)
    geometry = scan_geometry(anatomy_both)
    anatomy_none.table_y = anatomy_both.table_y
    x, y = geometry.column_x(), geometry.row_y()
    muscles = [s.label for s in CATALOGUE.muscles()]
    femurs = [CATALOGUE.structure("femur", side).label for side in (Side.RIGHT, Side.LEFT)]
    lm = anatomy_both.landmarks
    femur_lost = 0
    for z in np.arange(lm.lesser_trochanter - 130.0, lm.acetabular_roof + 12.0, 3.0):
        a = rasterize_slice(anatomy_none, Grid(x, y, float(z)))
        b = rasterize_slice(anatomy_both, Grid(x, y, float(z)))
        metal = np.zeros(a.labels.shape, bool)
        for _, mask in b.implants:
            metal |= mask
        changed = a.labels != b.labels
        # Only bone gives way (to metal or to the tissue around the prosthesis); muscle only under the metal cup,
        # where muscle territories reach into the hip's joint space.
        assert set(a.labels[changed & ~metal].tolist()) <= set(femurs), z
        assert set(b.labels[changed & ~metal].tolist()) <= {0}, z
        assert np.count_nonzero(changed & metal & np.isin(a.labels, muscles)) <= 6, z
        femur_lost += int(np.count_nonzero(np.isin(a.labels, femurs) & ~np.isin(b.labels, femurs)))
    assert femur_lost > 100  # the resected heads and necks


def test_the_streaks_of_two_prostheses_darken_the_band_between_them() -> None:
    anatomy = build_anatomy(PhantomParameters(matrix=128, metal_hip="both"))
    geometry = scan_geometry(anatomy)
    x, y = geometry.column_x(), geometry.row_y()
    grid = Grid(x, y, anatomy.landmarks.femoral_head_centre + 10.0)
    implants = rasterize_slice(anatomy, grid).implants
    assert [index for index, _ in implants] == [0, 1]
    both = metal_streaks(implants, grid, seed=0)
    right = metal_streaks(implants[:1], grid, seed=0)
    left = metal_streaks(implants[1:], grid, seed=0)
    row = int(np.argmin(np.abs(y - 0.0)))
    middle = int(np.argmin(np.abs(x - 0.0)))
    # The rays through both implants: darker than the two implants' own streaks added up, and dark.
    between = both[row - 1:row + 2, middle - 1:middle + 2].mean()
    assert between < (right + left)[row - 1:row + 2, middle - 1:middle + 2].mean() - 100.0
    assert between < -250.0
    # Far above and below the joining line the band fades.
    far = int(np.argmin(np.abs(y - 90.0)))
    assert abs(both[far, middle] - (right + left)[far, middle]) < 10.0
    for _, mask in implants:
        assert np.all(both[mask] == 0.0)


# --- cut series ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cuts(hip: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[float, Path]:
    out = tmp_path_factory.mktemp("cuts")
    return {mm: crop_phantom(hip, out / f"cut{mm:g}", mm).out_dir for mm in (180.0, 100.0, 60.0, -40.0)}


def _groups(gt: dict) -> dict[tuple[str, str], dict]:
    return {(g["group"], g["side"]): g for g in gt["groups"]}


def test_a_cut_keeps_the_slices_from_the_head_end_down_to_the_cut(hip: Path, hip_arrays: tuple,
                                                                    cuts: dict[float, Path]) -> None:
    hu_all, labels_all, _, gt_all = hip_arrays
    z_all = load_series(hip / "dicom").positions[:, 2]
    head_top = gt_all["landmarks_mm"]["femoral_head_top"]["z_mm"]
    for mm, folder in cuts.items():
        volume = load_series(folder / "dicom")
        hu, labels, _, gt = _aligned(folder)
        keep = z_all >= head_top - mm - 1e-3
        assert volume.positions[:, 2] == pytest.approx(z_all[keep])
        assert z_all[keep].max() == z_all.max()  # the head end stays
        assert np.array_equal(hu, hu_all[keep])  # pixels unchanged
        assert np.array_equal(labels, labels_all[keep])
        assert gt["series"]["slices"] == int(keep.sum()) == gt["crop"]["slices"]
        assert gt["crop"]["end_below_femoral_head_top_mm"] == mm
        assert gt["series"]["series_instance_uid"] != gt_all["series"]["series_instance_uid"]
        assert volume.info.series_instance_uid == gt["series"]["series_instance_uid"]
        assert volume.info.study_instance_uid == gt_all["series"]["study_instance_uid"]
        files = sorted((folder / "dicom").glob("*.dcm"))
        numbers = sorted(int(pydicom.dcmread(f, stop_before_pixels=True).InstanceNumber) for f in files)
        assert numbers == list(range(1, len(files) + 1))
        # Landmarks below the cut are out of the scan.
        for name, row in gt["landmarks_mm"].items():
            assert row["in_scan"] == (row["z_mm"] >= volume.positions[:, 2].min()), name
        _check_consistency(folder)


def test_a_cut_recomputes_group_completeness_and_in_scan_mass(hip_arrays: tuple, cuts: dict[float, Path]) -> None:
    whole = _groups(hip_arrays[3])
    gt = {mm: json.loads((folder / "ground_truth.json").read_text()) for mm, folder in cuts.items()}
    for side in ("left", "right", "both"):
        gluteal = whole[("gluteal", side)]["mass_g"]["constant_1.04"]
        upper = whole[("upper_gluteal", side)]["mass_g"]["constant_1.04"]
        assert 0.4 * gluteal < upper < 0.9 * gluteal
        # 180 mm below the head top the scan still holds the end of gluteus maximus (ischial tuberosity - 80 mm,
        # ~168 mm below the head top).
        assert _groups(gt[180.0])[("gluteal", side)]["completeness"] == "complete"
        assert _groups(gt[180.0])[("gluteal", side)]["mass_g"]["constant_1.04"] == pytest.approx(gluteal)
        # 100 and 60 mm below it cut gluteus maximus: truncated, with the muscle inside the scan.
        for mm, low in ((100.0, 0.85), (60.0, 0.75)):
            cut = _groups(gt[mm])[("gluteal", side)]
            assert cut["completeness"] == "truncated"
            assert "gluteus maximus" in cut["reason"]
            assert cut["mass_g"]["constant_1.04"] is None
            assert low * gluteal < cut["in_scan_mass_g"]["constant_1.04"] < gluteal
        # The upper gluteal group ends at the femoral head centre: complete and the same mass down to 60 mm.
        for mm in (180.0, 100.0, 60.0):
            row = _groups(gt[mm])[("upper_gluteal", side)]
            assert row["completeness"] == "complete"
            assert row["mass_g"]["constant_1.04"] == pytest.approx(upper, rel=1e-9)
        # 40 mm above the head top the scan still holds the upper part of the gluteal muscles (from the crest):
        # truncated, not absent; the upper gluteal group lacks its lower landmark.
        above = _groups(gt[-40.0])
        assert above[("gluteal", side)]["completeness"] == "truncated"
        assert 0.0 < above[("gluteal", side)]["in_scan_mass_g"]["constant_1.04"] < 0.3 * gluteal
        assert above[("upper_gluteal", side)]["completeness"] == "truncated"
        assert above[("upper_gluteal", side)]["in_scan_mass_g"]["constant_1.04"] == pytest.approx(
            above[("gluteal", side)]["in_scan_mass_g"]["constant_1.04"])
        for mm in cuts:
            for group in ("above_knee", "all"):
                assert _groups(gt[mm])[(group, side)]["completeness"] == "truncated"
    assert gt[180.0]["complete_group_names"] == ["gluteal", "upper_gluteal"]
    assert gt[100.0]["complete_group_names"] == ["upper_gluteal"]
    assert gt[60.0]["complete_group_names"] == ["upper_gluteal"]
    assert gt[-40.0]["complete_group_names"] == []


def test_a_cut_of_a_feet_first_series_keeps_the_head_end_too(tmp_path: Path) -> None:
    source = make_phantom(PhantomParameters(fov="abdomen", patient_position="FFS", metal_hip="right", matrix=80,
                                            slice_mm=6.0, seed=2), tmp_path / "ffs")
    cut = crop_phantom(source.out_dir, tmp_path / "cut", 60.0)
    _check_consistency(cut.out_dir)
    z = load_series(cut.dicom_dir).positions[:, 2]
    head_top = cut.ground_truth["landmarks_mm"]["femoral_head_top"]["z_mm"]
    assert z.min() >= head_top - 60.0 - 1e-3
    assert z.max() == pytest.approx(source.ground_truth["series"]["z_range_mm"][1])
    assert cut.ground_truth["complete_groups"]["upper_gluteal"]["both"]
    assert not cut.ground_truth["complete_groups"]["gluteal"]["both"]


def test_a_cut_that_keeps_nothing_or_overwrites_its_source_is_refused(hip: Path, tmp_path: Path) -> None:
    with pytest.raises(PhantomParameterError, match="keeps no slice"):
        crop_phantom(hip, tmp_path / "none", -400.0)
    with pytest.raises(PhantomParameterError, match="own folder"):
        crop_phantom(hip, hip, 60.0)
    with pytest.raises(PhantomParameterError, match="holds no phantom"):
        crop_phantom(tmp_path, tmp_path / "x", 60.0)
    assert not (tmp_path / "none").exists()
