"""Landmarks from an engine's bone labels (`inference.bone_landmarks.landmarks_from_labels`): the definitions of
the real-CT reference (`inference.labelled_ct`), written once; what is left out at the scan's ends; how sure they
are; and the ``bayesian-unet`` engine returning them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sarcoscreen.inference.bone_landmarks import ENGINE_NAMES, landmarks_from_labels
from sarcoscreen.inference.catalogue import CATALOGUE, Side
from sarcoscreen.inference.engines.base import Certainty, Landmark
from sarcoscreen.inference.labelled_ct import FEMUR_LABEL, PELVIS_LABEL, LabelledCase, slice_volume
from sarcoscreen.inference.volume import SeriesInfo, SliceRef, Volume

STEP, PIXEL = 3.0, 2.0
N, ROWS, COLUMNS = 100, 80, 120
CENTRE_COLUMN = {Side.RIGHT: 35, Side.LEFT: 85}
"""Column of each side's femoral head centre (x increases to the patient's left)."""
HEAD_SLICE, HEAD_RADIUS_MM = 45, 22.0
PELVIS_SLICES = (40, 85)


def _volume(n: int = N) -> Volume:
    """Axial, slices 3 mm apart from z = 0 (feet) to z = 297 mm (head), 2 mm pixels."""
    positions = np.column_stack([np.zeros(n), np.zeros(n), STEP * np.arange(n)])
    return Volume(hu=np.zeros((n, ROWS, COLUMNS), np.int16), spacing=(STEP, PIXEL, PIXEL),
                  row_direction=(1.0, 0.0, 0.0), column_direction=(0.0, 1.0, 0.0), positions=positions,
                  slices=tuple(SliceRef(f"2.25.{k + 1}", "1.2.840.10008.5.1.4.1.1.2") for k in range(n)),
                  info=SeriesInfo("2.25.1", "2.25.2", "2.25.3"))


def _bones(pelvis_shift: dict[Side, int] | None = None, head_radius_mm: float = HEAD_RADIUS_MM) -> dict[Side, tuple[
        np.ndarray, np.ndarray]]:
    """Per side (femur, pelvis) masks: a femoral head ball on a shaft of 12 mm radius, a hip bone block above."""
    kk, ii, jj = np.mgrid[:N, :ROWS, :COLUMNS]
    out = {}
    for side, column in CENTRE_COLUMN.items():
        ring = ((ii - 40) * PIXEL) ** 2 + ((jj - column) * PIXEL) ** 2
        ball = ((kk - HEAD_SLICE) * STEP) ** 2 + ring <= head_radius_mm ** 2
        femur = ball | ((kk < HEAD_SLICE) & (ring <= 12.0 ** 2))
        shift = (pelvis_shift or {}).get(side, 0)
        pelvis = np.zeros((N, ROWS, COLUMNS), bool)
        near = slice(column - 20, column - 5) if side is Side.RIGHT else slice(column + 5, column + 20)
        pelvis[PELVIS_SLICES[0] + shift:PELVIS_SLICES[1] + 1 + shift, 15:35, near] = True
        pelvis &= ~femur
        out[side] = (femur, pelvis)
    return out


def _catalogue_labels(bones: dict[Side, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    labels = np.zeros((N, ROWS, COLUMNS), np.uint8)
    for side, (femur, pelvis) in bones.items():
        labels[femur] = CATALOGUE.structure("femur", side).label
        labels[pelvis] = CATALOGUE.structure("hip_bone", side).label
    return labels


def _found(landmarks: tuple[Landmark, ...]) -> dict[tuple[str, Side | None], int]:
    return {(lm.name, lm.side): lm.slice_index for lm in landmarks}


def test_the_engine_landmarks_are_the_reference_definitions() -> None:
    """The same bones as an annotation (one value per bone, sides split at the midline: `labelled_ct`) and as an
    engine's catalogue labels (one value per bone and side) give the same landmarks."""
    bones = _bones()
    volume = _volume()
    annotation = np.zeros((N, ROWS, COLUMNS), np.uint8)
    for femur, pelvis in bones.values():
        annotation[femur], annotation[pelvis] = FEMUR_LABEL, PELVIS_LABEL
    case = LabelledCase("synthetic", volume, annotation)
    reference = {(ENGINE_NAMES[lm.name], lm.side): lm.slice_index for lm in case.landmarks}
    landmarks = landmarks_from_labels(volume, _catalogue_labels(bones))
    assert _found(landmarks) == reference
    top = int(np.floor((HEAD_SLICE * STEP + HEAD_RADIUS_MM) / STEP))
    for side in (Side.RIGHT, Side.LEFT):
        assert reference[("iliac_crest", side)] == PELVIS_SLICES[1]
        assert reference[("ischial_tuberosity", side)] == PELVIS_SLICES[0]
        assert reference[("femoral_head_top", side)] == top
        assert reference[("femoral_head", side)] == HEAD_SLICE
    assert all(lm.certainty is Certainty.FOUND and not lm.note for lm in landmarks)
    assert all("the engine's" in lm.method for lm in landmarks)
    assert all(lm.z_mm == pytest.approx(volume.slice_z_mm()[lm.slice_index]) for lm in landmarks)


def test_a_bone_running_beyond_the_scans_end_has_no_landmark_there() -> None:
    labels = _catalogue_labels(_bones())
    volume = _volume()
    # Slices 0-49: the femoral heads (top at slice 52) and the hip bones run beyond the head end; the ischial
    # tuberosity (slice 40) is inside.
    low = landmarks_from_labels(slice_volume(volume, 0, 50), labels[:50])
    assert {name for name, _ in _found(low)} == {"ischial_tuberosity"}
    # Slices 45-99: the hip bones start at the foot end (no ischial tuberosity) and the femoral head centre (slice 45)
    # is on it; the head top and the crest are inside.
    high = landmarks_from_labels(slice_volume(volume, 45, N), labels[45:])
    assert {name for name, _ in _found(high)} == {"iliac_crest", "femoral_head_top"}
    # No bone labels: no landmarks.
    assert landmarks_from_labels(volume, np.zeros_like(labels)) == ()


def test_a_bone_label_in_pieces_gives_uncertain_landmarks_from_its_largest_piece() -> None:
    bones = _bones()
    labels = _catalogue_labels(bones)
    femur_right = CATALOGUE.structure("femur", Side.RIGHT).label
    clean = _found(landmarks_from_labels(_volume(), labels))
    # A few stray voxels far above (well under 5 % of the femur): ignored, still found.
    stray = labels.copy()
    stray[95, 5:7, 5:7] = femur_right
    landmarks = landmarks_from_labels(_volume(), stray)
    assert _found(landmarks) == clean
    assert all(lm.certainty is Certainty.FOUND for lm in landmarks)
    # A large separate piece: the landmark still comes from the largest piece, but the engine is unsure of it.
    broken = labels.copy()
    broken[88:99, 2:14, 2:14] = femur_right
    landmarks = landmarks_from_labels(_volume(), broken)
    assert _found(landmarks) == clean
    by_key = {(lm.name, lm.side): lm for lm in landmarks}
    for name in ("femoral_head_top", "femoral_head"):
        assert by_key[(name, Side.RIGHT)].certainty is Certainty.UNCERTAIN
        assert "in pieces" in by_key[(name, Side.RIGHT)].note
        assert by_key[(name, Side.LEFT)].certainty is Certainty.FOUND
    assert by_key[("iliac_crest", Side.RIGHT)].certainty is Certainty.FOUND


def test_a_femur_top_without_a_head_gives_an_uncertain_centre() -> None:
    landmarks = landmarks_from_labels(_volume(), _catalogue_labels(_bones(head_radius_mm=12.0)))
    centres = [lm for lm in landmarks if lm.name == "femoral_head"]
    assert len(centres) == 2
    assert all(lm.certainty is Certainty.UNCERTAIN and "thinner than a femoral head" in lm.note for lm in centres)
    assert all(lm.certainty is Certainty.FOUND for lm in landmarks if lm.name != "femoral_head")


def test_sides_far_apart_make_both_uncertain() -> None:
    landmarks = landmarks_from_labels(_volume(), _catalogue_labels(_bones(pelvis_shift={Side.LEFT: 10})))
    crests = [lm for lm in landmarks if lm.name == "iliac_crest"]
    assert len(crests) == 2
    assert all(lm.certainty is Certainty.UNCERTAIN and "30 mm apart" in lm.note for lm in crests)
    assert all(lm.certainty is Certainty.FOUND for lm in landmarks if lm.name.startswith("femoral"))


@pytest.mark.slow
def test_on_a_real_annotation_they_are_the_references_landmarks(shared_data: Path) -> None:
    """Pelvic-Ref-002's label map in catalogue labels (as an engine would label it) gives the annotation's own
    landmarks, every one found."""
    from sarcoscreen.inference.phantom.realistic.source import catalogue_labels, read_annotation

    folder = shared_data / "pelvic-annotation" / "Pelvic-Ref-002"
    if not (folder / "label.mhd").is_file():
        pytest.skip("Pelvic-Ref-002's annotation is not in ../shared/data")
    source = read_annotation(folder)
    case = source.case
    landmarks = landmarks_from_labels(case.volume, catalogue_labels(source.labels, source.left))
    assert _found(landmarks) == {(ENGINE_NAMES[lm.name], lm.side): lm.slice_index for lm in case.landmarks}
    assert len(landmarks) == 8
    assert all(lm.certainty is Certainty.FOUND for lm in landmarks)


def test_the_bayesian_unet_engine_returns_the_landmarks_of_its_labels(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine's `segment` gives the landmarks of the label map it returns. The untrained test network's labels
    mean nothing, so its prediction is replaced by known bones after it ran (the rest of `segment` is real)."""
    torch = pytest.importorskip("torch")
    from sarcoscreen.inference.engines import create_engine
    from sarcoscreen.inference.engines.unet import inference as unet_inference
    from sarcoscreen.inference.engines.unet.bundle import save_bundle
    from sarcoscreen.inference.engines.unet.manifest import InputSpec, LabelEntry, Manifest, TrainingData
    from sarcoscreen.inference.engines.unet.model import BayesianUNet, UNetConfig

    keys = tuple(CATALOGUE.structure(a, s).key for a in ("hip_bone", "femur", "gluteus_maximus")
                 for s in (Side.RIGHT, Side.LEFT))
    torch.manual_seed(0)
    config = UNetConfig(num_classes=len(keys) + 1, levels=3, base_filters=4)
    manifest = Manifest(name="landmark-test", version="0.1", architecture=config.to_dict(),
                        labels=(LabelEntry(0, "background", 0),
                                *(LabelEntry(i, k, CATALOGUE.by_key(k).label) for i, k in enumerate(keys, 1))),
                        input=InputSpec((32, 32), (8.0, 8.0), (-300.0, 1000.0), -500.0, 400.0),
                        training_data=TrainingData("untrained test network", True), weights_sha256="0" * 64,
                        mc_samples=1)
    save_bundle(BayesianUNet(config), manifest, tmp_path / "bundle")
    known = _catalogue_labels(_bones())
    real = unet_inference.predict_slices

    def predict_then_known_bones(*args: object, **kwargs: object) -> object:
        result = real(*args, **kwargs)  # type: ignore[arg-type]
        labels_out = kwargs["labels_out"]
        assert isinstance(labels_out, np.ndarray)
        labels_out[...] = known[::-1]  # labels_out is the canonical (head -> feet) view; this volume runs upwards
        return result

    monkeypatch.setattr(unet_inference, "predict_slices", predict_then_known_bones)
    volume = _volume()
    engine = create_engine("bayesian-unet", bundle_path=tmp_path / "bundle", device="cpu", mc_samples=1)
    segmentation = engine.segment(volume)
    assert np.array_equal(segmentation.labels, known)
    assert segmentation.landmarks == landmarks_from_labels(volume, known)
    assert len(segmentation.landmarks) == 8
