"""The real-labelled-CT reference: views (cuts) of a case, the reference's landmarks and sides, the comparison of an
engine's result against the annotation - on synthetic cases whose answers are known exactly, and on the real
Pelvic-Ref-002 / 003 cases of ../shared/data."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest
from ct_series_factory import write_ct_series

from sarcoscreen.inference.catalogue import CATALOGUE, Group, Kind, Side
from sarcoscreen.inference.density import DensityRule
from sarcoscreen.inference.engines.base import Landmark, Segmentation
from sarcoscreen.inference.height import Height, HeightSource
from sarcoscreen.inference.labelled_ct import (
    ABOVE_KNEE_LABELS,
    ANNOTATION_NAMES,
    GLUTEAL_LABELS,
    CaseFiles,
    LabelGridMismatchError,
    LabelledCase,
    LabelTableError,
    ViewError,
    compare,
    find_cases,
    load_case,
    reference_segmentation,
    slice_volume,
)
from sarcoscreen.inference.measure import measure
from sarcoscreen.inference.volume import SeriesInfo, SliceRef, Volume

RULE = DensityRule()
NO_HEIGHT = Height(None, HeightSource.UNKNOWN, "not needed")


def _volume(n: int = 40, size: int = 64) -> Volume:
    """Head-first supine axial slices 3 mm apart from z = 0 upwards, 2 x 2 mm pixels; patient left at high j."""
    positions = np.array([[-64.0, -64.0, 3.0 * k] for k in range(n)])
    hu = np.full((n, size, size), 40, np.int16)  # soft tissue everywhere: inside the muscle HU window
    return Volume(hu=hu, spacing=(3.0, 2.0, 2.0), row_direction=(1.0, 0.0, 0.0), column_direction=(0.0, 1.0, 0.0),
                  positions=positions, slices=tuple(SliceRef(f"1.2.9.{k}", "1.2.840.10008.5.1.4.1.1.2")
                                                    for k in range(n)),
                  info=SeriesInfo("1.2.9", "1.2.9.1", "1.2.9.2"))


def _synthetic_case() -> LabelledCase:
    """Pelvis blocks (slices 20-35), femoral balls of radius 9 mm centred on slice 16 with shafts below, gluteal
    muscle (slices 10-30) and adductors (slices 0-12) on both sides, symmetric about column 31.5."""
    volume = _volume()
    labels = np.zeros(volume.shape, np.uint8)
    for c0, c1 in ((8, 16), (48, 56)):
        labels[20:36, 20:30, c0:c1] = 1  # pelvis
        labels[10:31, 44:54, c0:c1] = 5  # gluteus maximus
        labels[0:13, 10:18, c0:c1] = 14  # adductors
    kk, ii, jj = np.mgrid[:40, :64, :64]
    for centre_col in (12.0, 51.0):
        ball = ((kk - 16) * 3.0) ** 2 + ((ii - 34) * 2.0) ** 2 + ((jj - centre_col) * 2.0) ** 2 <= 9.0 ** 2
        shaft = (kk < 16) & (((ii - 34) * 2.0) ** 2 + ((jj - centre_col) * 2.0) ** 2 <= 4.0 ** 2)
        labels[ball | shaft] = 2
    bladder = np.zeros(volume.shape, bool)
    bladder[24:28, 28:32, 30:34] = True
    return LabelledCase("synthetic", volume, labels, {"bladder": bladder})


def _engine_result(view_labels: np.ndarray, start: int, case: LabelledCase) -> Segmentation:
    """Region labels: exactly the annotated gluteal muscle per side, plus a 2 x 4 x 4 blob of 'muscle' on the
    right, far from any labelled muscle, on whole-series slices 25-26 (half of it inside the bladder)."""
    out = np.zeros(view_labels.shape, np.uint8)
    right, left = CATALOGUE.by_key("gluteal_region_muscle_right"), CATALOGUE.by_key("gluteal_region_muscle_left")
    glute = view_labels == 5
    out[glute & case.side_mask(Side.RIGHT)[None]] = right.label
    out[glute & case.side_mask(Side.LEFT)[None]] = left.label
    if start <= 25:
        out[25 - start:27 - start, 26:30, 28:32] = right.label  # columns 28-31: right of the midline at 31.5
    landmarks = tuple(Landmark(name, k - start, 3.0 * k, side) for side in (Side.RIGHT, Side.LEFT)
                      for name, k in (("iliac_crest", 35), ("femoral_head", 16)) if 0 <= k - start < out.shape[0])
    return Segmentation(labels=out, structures=CATALOGUE.muscles(Kind.MUSCLE_REGION), engine_name="test",
                        engine_version="1", landmarks=landmarks)


def test_slice_volume_is_a_view_with_consistent_geometry() -> None:
    volume = _volume(10, 8)
    part = slice_volume(volume, 3, 8)
    assert part.shape == (5, 8, 8)
    assert np.shares_memory(part.hu, volume.hu)
    np.testing.assert_array_equal(part.positions, volume.positions[3:8])
    assert part.slices == volume.slices[3:8]
    np.testing.assert_allclose(part.slice_z_mm(), volume.slice_z_mm()[3:8])
    # Voxel (k, i, j) of the part is voxel (k + 3, i, j) of the whole, in patient space too.
    np.testing.assert_allclose(part.affine @ [1, 2, 3, 1], volume.affine @ [4, 2, 3, 1])
    assert part.info is volume.info
    assert part.spacing == volume.spacing
    for start, stop in ((5, 6), (-1, 4), (4, 11), (6, 3)):
        with pytest.raises(ViewError):
            slice_volume(volume, start, stop)


def test_reference_landmarks_sides_and_cuts_of_a_synthetic_case() -> None:
    case = _synthetic_case()
    assert case.midline_x_mm == pytest.approx(-64.0 + 31.5 * 2.0)
    assert case.side_mask(Side.RIGHT)[0, 31]
    assert case.side_mask(Side.LEFT)[0, 32]
    got = {(lm.name, lm.side): lm.slice_index for lm in case.landmarks}
    for side in (Side.RIGHT, Side.LEFT):
        assert got[("iliac_crest", side)] == 35
        assert got[("pelvis_bottom", side)] == 20
        assert got[("femoral_head_top", side)] == 19  # 16 + floor(9 mm / 3 mm)
        assert got[("femoral_head", side)] == 16
        centre = case.landmark("femoral_head", side)
        assert centre is not None
        assert centre.radius_mm == pytest.approx(9.0, abs=1.5)
    assert case.head_top is not None
    assert case.head_top.z_mm == 57.0
    view = case.cut(30)  # keep z >= 27 mm: slices 9-39
    assert (view.start, view.stop) == (9, 40)
    assert view.z_range_mm() == (27.0, 117.0)
    assert np.shares_memory(view.volume.hu, case.volume.hu)
    above = case.cut(-40)  # keep z >= 97 mm
    assert (above.start, above.stop) == (33, 40)
    whole = case.whole()
    assert (whole.start, whole.stop) == (0, 40)
    with pytest.raises(ViewError):
        case.cut(-200)


@pytest.mark.parametrize(("cut", "verdict", "upper_verdict"), [
    (None, "complete", "complete"),
    (30.0, "complete", "complete"),   # slices 9-39: the gluteal muscle (10-30) is inside
    (20.0, "truncated", "complete"),  # slices 13-39: it touches slice 13; crest (35) and head centre (16) inside
    (-40.0, "not in scan", "not in scan"),  # slices 33-39: no gluteal muscle
])
def test_comparison_of_a_known_engine_result(cut: float | None, verdict: str, upper_verdict: str) -> None:
    case = _synthetic_case()
    view = case.whole() if cut is None else case.cut(cut)
    segmentation = _engine_result(view.labels, view.start, case)  # type: ignore[arg-type]
    report = measure(view.volume, segmentation, RULE, NO_HEIGHT)
    comparison = compare(view, segmentation, report, RULE)
    voxel_cm3 = 3 * 2 * 2 / 1000
    blob = 2 * 4 * 4 * voxel_cm3 if view.start <= 25 else 0.0
    glute_slices = max(0, min(31, view.stop) - max(10, view.start))
    glute = glute_slices * 10 * 8 * voxel_cm3
    right, left = comparison.group(Group.GLUTEAL, Side.RIGHT), comparison.group(Group.GLUTEAL, Side.LEFT)
    assert right.labels is not None
    assert right.labels.volume_cm3 == pytest.approx(glute)
    assert right.engine.volume_cm3 == pytest.approx(glute + blob)
    assert left.engine.volume_cm3 == pytest.approx(glute)
    assert left.error == pytest.approx(0.0) if glute else left.error is None
    assert right.labels_in_window is not None
    assert right.labels_in_window.volume_cm3 == pytest.approx(glute)  # every voxel is 40 HU
    assert right.labels.mass_g == pytest.approx(glute * 1.04)
    assert right.labels_verdict == verdict
    assert left.labels_verdict == verdict
    assert left.engine_verdict == verdict  # measure's touching rule and the annotation's agree on this one
    # Above knee: the annotation's gluteal + adductor muscle; the adductors (0-12) touch the whole series' end.
    above = comparison.group(Group.ABOVE_KNEE, Side.LEFT)
    assert above.labels is not None
    adductor_slices = max(0, 13 - view.start)
    assert above.labels.volume_cm3 == pytest.approx(glute + adductor_slices * 8 * 8 * voxel_cm3)
    # Upper gluteal: slices 16-35 between the engine's landmarks, which are the reference's.
    upper = comparison.upper(Side.LEFT)
    assert upper.labels_verdict == upper_verdict
    if view.start <= 16:
        assert upper.engine_slices == (16, 35)
        assert upper.engine is not None
        assert upper.labels_in_engine_slab is not None
        assert upper.engine.volume_cm3 == pytest.approx((31 - 16) * 80 * voxel_cm3)
        assert upper.labels_in_engine_slab.volume_cm3 == pytest.approx(upper.engine.volume_cm3)
        assert upper.label_slices == (16, 35)
        assert upper.error_own_landmarks == pytest.approx(0.0)
        assert upper.engine_verdict == "complete"
    # Outside labelled muscle: the blob, in the band 15-30 mm above the head top (z 75-78 mm vs top 57 mm).
    outside = comparison.outside
    assert outside is not None
    assert outside.outside_cm3 == pytest.approx(blob)
    assert outside.engine_cm3 == pytest.approx(comparison.engine_muscle_cm3)
    if blob:
        band = next(b for b in outside.bands if b.outside_cm3)
        assert (band.low_mm, band.high_mm) == (15.0, 30.0)
        # The crest top (z 105) is in the band 45-60 mm; the head centre (z 48) in -15-0 mm.
        assert any("crest R (ref)" in name for b in outside.bands if b.low_mm == 45.0 for name in b.landmarks)
        assert any("head centre L (eng)" in name for b in outside.bands if b.low_mm == -15.0 for name in b.landmarks)
    # Organ overlap: the blob's cells inside the 4 x 4 x 4 bladder (2 slices x 2 rows x 2 columns).
    bladder = comparison.organs[0]
    expected_bladder = (4 * 4 * 4 * voxel_cm3) if view.start <= 24 else max(0, 28 - view.start) * 16 * voxel_cm3
    assert bladder.organ_cm3 == pytest.approx(expected_bladder)
    assert bladder.engine_muscle_cm3 == pytest.approx(2 * 2 * 2 * voxel_cm3 if blob else 0.0)


def test_outside_tolerance_is_in_plane() -> None:
    """A voxel 2 mm beside labelled muscle is inside the tolerance; one directly above it, a slice (3 mm) away, with
    no muscle on its own slice, is outside: the annotation is judged slice by slice."""
    case = _synthetic_case()
    near = case.near_muscle(3.0)
    assert near[20, 44, 16]  # 2 mm beside the gluteal block (columns 8-15)
    assert not near[20, 44, 18]  # 6 mm beside it
    assert not near[31, 44, 10]  # above the block's top slice (30): 3 mm away along z, none in its own slice


def test_reference_segmentation_of_the_synthetic_case_matches_it() -> None:
    case = _synthetic_case()
    view = case.cut(30)
    segmentation = reference_segmentation(view)
    assert segmentation.labels.shape == view.volume.shape
    gluteus_left = CATALOGUE.by_key("gluteus_maximus_left").label
    assert (segmentation.labels == gluteus_left).sum() == ((view.labels == 5) & case.side_mask(Side.LEFT)).sum()
    comparison = compare(view, segmentation, measure(view.volume, segmentation, RULE, NO_HEIGHT), RULE)
    for g in comparison.groups:
        assert g.labels is not None
        assert g.engine.volume_cm3 == pytest.approx(g.labels.volume_cm3)
    # Measurement judges a member muscle without voxels by where it should be (`inference.muscle_extents`), placed
    # by the reference's landmarks: this annotation has only gluteus maximus of the gluteal group, and the view holds
    # the crest top and the femoral heads, so the gluteus medius and minimus are 'not found' (a segmentation failure,
    # had an engine returned this); the annotation's verdict looks at the members present. On the real annotation
    # every member is present and they agree. A member not found wins over a cut one (the adductors touch the view's
    # first slice).
    glute = comparison.group(Group.GLUTEAL, Side.LEFT)
    assert (glute.engine_verdict, glute.labels_verdict) == ("not found", "complete")
    above = comparison.group(Group.ABOVE_KNEE, Side.LEFT)
    assert (above.engine_verdict, above.labels_verdict) == ("not found", "truncated")


def _write_mhd(folder: Path, array: np.ndarray, offset: tuple[float, float, float],
               spacing: tuple[float, float, float]) -> Path:
    (folder / "label.zraw").write_bytes(zlib.compress(array.astype("<i2").tobytes()))
    (folder / "label.mhd").write_text(
        "ObjectType = Image\nNDims = 3\nCompressedData = True\nElementType = MET_SHORT\n"
        f"Offset = {' '.join(map(str, offset))}\nElementSpacing = {' '.join(map(str, spacing))}\n"
        f"TransformMatrix = 1 0 0 0 1 0 0 0 1\nDimSize = {' '.join(map(str, reversed(array.shape)))}\n"
        "ElementDataFile = label.zraw\n")
    return folder / "label.mhd"


def _label_table(path: Path, swap: bool = False) -> Path:
    names = dict(ANNOTATION_NAMES)
    if swap:
        names[5], names[6] = names[6], names[5]
    path.write_text(json.dumps({"color": [[v, n, 1, 1, 1, 1.0] for v, n in sorted(names.items())]}))
    return path


def test_load_case_aligns_the_label_map_and_refuses_other_grids(tmp_path: Path) -> None:
    series = write_ct_series(tmp_path / "ct", n_slices=6, rows=12, columns=10, slice_spacing=2.5,
                             pixel_spacing=(0.7, 0.8), origin=(-12.0, -30.0, 100.0))
    labels = np.zeros((6, 12, 10), np.int16)
    labels[2, 3, 4] = 5
    labels[5, 11, 9] = 2
    label_dir = tmp_path / "labels"
    label_dir.mkdir()
    # MetaImage spacing is (x, y, z) = (column, row, slice) spacing; PixelSpacing is (row, column).
    mhd = _write_mhd(label_dir, labels, (-12.0, -30.0, 100.0), (0.8, 0.7, 2.5))
    table = _label_table(tmp_path / "labels.json")
    case = load_case(CaseFiles("t", series.folder, mhd, table))
    assert case.labels is not None
    assert case.labels.dtype == np.uint8
    np.testing.assert_array_equal(case.labels, labels)
    shifted = _write_mhd(label_dir, labels, (-12.0, -30.0, 101.25), (0.8, 0.7, 2.5))  # half a slice
    with pytest.raises(LabelGridMismatchError):
        load_case(CaseFiles("t", series.folder, shifted, table))
    _write_mhd(label_dir, labels, (-12.0, -30.0, 100.0), (0.8, 0.7, 2.5))
    with pytest.raises(LabelTableError, match="gluteus"):
        load_case(CaseFiles("t", series.folder, mhd, _label_table(tmp_path / "swapped.json", swap=True)))


# -- the real cases ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def case_002(shared_data: Path) -> LabelledCase:
    cases = {c.name: c for c in find_cases(shared_data)}
    files = cases.get("Pelvic-Ref-002")
    if files is None or files.labels is None:
        pytest.skip(f"Pelvic-Ref-002 CT and annotation not found under {shared_data}")
    return load_case(files)


def test_real_annotation_lies_on_its_ct(case_002: LabelledCase) -> None:
    labels, hu = case_002.labels, case_002.volume.hu
    assert labels is not None
    assert labels.shape == (163, 512, 512)
    assert np.median(hu[labels == 2]) > 200  # femur: bone
    assert np.median(hu[labels == 1]) > 150  # pelvis: bone
    for value in (*GLUTEAL_LABELS, 13, 22):
        assert -29 <= np.median(hu[labels == value]) <= 150, value  # muscle HU window
    assert set(case_002.organs) == {"bladder", "rectum", "prostate", "femoral_head_left", "femoral_head_right"}
    # The structure set's manual femoral heads (an independent outline) lie on the annotation's femur.
    for side in (Side.LEFT, Side.RIGHT):
        head = case_002.organs[f"femoral_head_{side.value}"]
        assert (labels[head] == 2).mean() > 0.5, side


def test_real_midline_split(case_002: LabelledCase) -> None:
    """Why one sagittal plane: per-slice midpoints between the femora agree with it, and no labelled hip or thigh
    muscle comes near it, so per-slice midlines could not assign any of their voxels differently."""
    labels = case_002.labels
    assert labels is not None
    mid = case_002.midline_x_mm
    assert mid is not None
    x = case_002.pixel_x_mm
    left, right = case_002.side_mask(Side.LEFT), case_002.side_mask(Side.RIGHT)
    offsets = []
    for k in range(labels.shape[0]):
        femur = labels[k] == 2
        if (femur & left).any() and (femur & right).any():
            offsets.append((x[femur & left].mean() + x[femur & right].mean()) / 2 - mid)
    offsets_mm = np.abs(offsets)
    assert len(offsets) > 50
    assert np.median(offsets_mm) < 2.0
    assert np.percentile(offsets_mm, 90) < 4.0
    assert offsets_mm.max() < 8.0
    muscle = np.isin(labels, (*ABOVE_KNEE_LABELS, 13)).any(axis=0)
    assert np.abs(x[muscle] - mid).min() > 5.0


def test_real_reference_landmarks_and_cuts(case_002: LabelledCase) -> None:
    z = case_002.superior_mm
    top = case_002.head_top
    assert top is not None
    for side in (Side.RIGHT, Side.LEFT):
        head_top = case_002.landmark("femoral_head_top", side)
        centre = case_002.landmark("femoral_head", side)
        crest = case_002.landmark("iliac_crest", side)
        bottom = case_002.landmark("pelvis_bottom", side)
        assert head_top is not None
        assert centre is not None
        assert crest is not None
        assert bottom is not None
        assert centre.radius_mm is not None
        assert 15 <= centre.radius_mm <= 30
        assert 10 <= head_top.z_mm - centre.z_mm <= 30
        assert 80 <= crest.z_mm - head_top.z_mm <= 160
        assert bottom.z_mm < centre.z_mm
    for mm in (130.0, 100.0, 80.0, 60.0, -40.0):
        view = case_002.cut(mm)
        assert view.stop == 163  # the head end (the last slices, superior) is kept
        assert top.z_mm - mm - 1e-3 <= z[view.start] < top.z_mm - mm + 3.0  # the lowest slice at or above the level
        assert np.shares_memory(view.volume.hu, case_002.volume.hu)
        assert view.volume.slices[0] == case_002.volume.slices[view.start]


def test_real_reference_segmentation_matches_the_annotation_in_every_view(case_002: LabelledCase) -> None:
    """The comparison checked against itself on real anatomy: an engine returning the annotation has no error,
    the annotation's own verdicts (measure's rules and the annotation's agree), and no muscle outside."""
    for view in (case_002.whole(), case_002.cut(130), case_002.cut(60), case_002.cut(-40)):
        segmentation = reference_segmentation(view)
        report = measure(view.volume, segmentation, RULE, NO_HEIGHT)
        comparison = compare(view, segmentation, report, RULE)
        for g in comparison.groups:
            assert g.labels is not None
            assert g.engine.volume_cm3 == pytest.approx(g.labels.volume_cm3), (view.name, g.group, g.side)
            assert g.engine.mass_g == pytest.approx(g.labels.mass_g), (view.name, g.group, g.side)
            assert g.engine_verdict == g.labels_verdict, (view.name, g.group, g.side)
        for u in comparison.upper_gluteal:
            assert u.engine is not None
            assert u.labels_in_label_slab is not None
            assert u.engine.volume_cm3 == pytest.approx(u.labels_in_label_slab.volume_cm3), (view.name, u.side)
            assert u.engine.mass_g == pytest.approx(u.labels_in_label_slab.mass_g), (view.name, u.side)
            assert u.engine_verdict == u.labels_verdict, (view.name, u.side)
        assert comparison.outside is not None
        assert comparison.outside.outside_cm3 == 0.0
        assert all(o.engine_muscle_cm3 == 0.0 for o in comparison.organs)
    assert comparison.group(Group.GLUTEAL, Side.LEFT).labels_verdict == "truncated"  # 40 mm above the head top
    assert comparison.upper(Side.LEFT).labels_verdict == "truncated"


def test_real_case_without_annotation(shared_data: Path) -> None:
    cases = {c.name: c for c in find_cases(shared_data)}
    files = cases.get("Pelvic-Ref-003")
    if files is None or files.rtstruct is None:
        pytest.skip(f"Pelvic-Ref-003 CT and structure set not found under {shared_data}")
    case = load_case(files)
    assert case.labels is None
    assert case.midline_x_mm is None
    top = case.head_top
    assert top is not None
    assert top.source == "structure set"
    view = case.cut(60)
    empty = Segmentation(labels=np.zeros(view.volume.shape, np.uint8), structures=CATALOGUE.muscles(Kind.MUSCLE_REGION),
                         engine_name="nothing", engine_version="0")
    comparison = compare(view, empty, measure(view.volume, empty, RULE, NO_HEIGHT), RULE)
    assert comparison.outside is None
    assert all(g.labels is None and g.labels_verdict is None for g in comparison.groups)
    assert all(g.engine_verdict == "not in scan" for g in comparison.groups)
    organs = {o.organ: o for o in comparison.organs}
    assert set(organs) == {"bladder", "rectum", "prostate"}
    assert 30 < organs["bladder"].organ_cm3 < 1000
    assert organs["bladder"].engine_muscle_cm3 == 0.0
