"""The public model's training data (`training.public_data`), the data set's explicit split, elastic augmentation
and the per-muscle / per-group / uncertainty figures of `training.evaluate`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sarcoscreen.inference.catalogue import CATALOGUE
from sarcoscreen.inference.phantom.realistic import tissue_model as tm
from sarcoscreen.inference.phantom.realistic.source import catalogue_labels, read_annotation
from sarcoscreen.inference.training.augment import AugmentConfig, augment
from sarcoscreen.inference.training.datasets import LabelMapping, find_cases, load_case
from sarcoscreen.inference.training.evaluate import CaseScore, Evaluation
from sarcoscreen.inference.training.public_data import (
    GENERIC_MUSCLE_HU,
    INTENDED_USE,
    RealCase,
    build_public_dataset,
    draw_parameters,
)

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
ANNOTATION = DATA / "pelvic-annotation" / "Pelvic-Ref-002"
CT = DATA / "pelvic-ref-ct" / "Pelvic-Ref-002" / "ct"
needs_data = pytest.mark.skipif(not (ANNOTATION / "label.mhd").is_file() or not CT.is_dir(),
                                reason="../shared/data (Pelvic-Ref-002 annotation and CT) is not present")


def test_protocols_are_drawn_from_the_seed_within_clinical_ranges():
    draws = [draw_parameters(seed) for seed in range(100)]
    assert draw_parameters(7) == draws[7]
    assert len({d.protocol.pixel_mm for d in draws}) == 100
    for d in draws:
        assert 0.7 <= d.protocol.pixel_mm <= 1.0
        assert 3.0 <= d.protocol.thickness_mm <= 5.0
        assert d.fatty_infiltration is None
    assert 0 < sum(d.randomise for d in draws) < 100
    assert any(d.protocol.contrast for d in draws)
    assert any(d.metal_hip.value != "none" for d in draws)


def test_generic_tissue_gives_every_muscle_the_assumed_median():
    generic = draw_parameters(3, "generic").fatty_infiltration
    assert generic is not None
    assert set(generic) == set(range(5, 29))
    assert set(generic.values()) == {tm.muscle_fat_fraction(GENERIC_MUSCLE_HU)}
    with pytest.raises(ValueError, match="calibrated"):
        draw_parameters(3, "measured-on-the-test-case")


@needs_data
def test_real_case_labels_align_with_the_real_series(tmp_path):
    listing = build_public_dataset(tmp_path, [], [], real=[RealCase("ref002", CT, ANNOTATION)],
                                   validation=["ref002"])
    meta = json.loads(listing.read_text())
    assert meta["intended_use"] == INTENDED_USE
    assert meta["subjects"] == 1
    assert meta["synthetic"] is False
    assert any("MIT" in line for line in meta["licences"])
    cases, _ = find_cases(tmp_path)
    assert [c.validation for c in cases] == [True]
    volume, labels = load_case(cases[0], LabelMapping())
    source = read_annotation(ANNOTATION)
    expected = catalogue_labels(source.labels, source.left)
    assert labels.shape == volume.shape == expected.shape
    order = np.argsort(volume.positions[:, 2])
    assert np.array_equal(labels[order], expected)
    # the labels sit on the muscle of the real CT: gluteus maximus voxels have muscle-like HU
    glut = labels == CATALOGUE.structure("gluteus_maximus", "right").label
    assert 0 < float(np.median(volume.hu[glut])) < 60


def test_a_folder_that_is_not_an_annotation_is_refused_with_the_reason(tmp_path, capsys):
    from sarcoscreen.inference.training.public_data import main

    (tmp_path / "empty").mkdir()
    assert main(["--out", str(tmp_path / "out"), "--annotation", str(tmp_path / "empty"), "--seeds", "1"]) == 2
    assert "not an annotation folder" in capsys.readouterr().err
    assert not (tmp_path / "out" / "dataset.json").exists()


def test_elastic_augmentation_moves_image_and_labels_together():
    generator = torch.Generator().manual_seed(0)
    images = torch.full((2, 64, 64), -100.0)
    labels = torch.zeros((2, 64, 64), dtype=torch.long)
    images[:, 20:44, 20:44] = 50.0
    labels[:, 20:44, 20:44] = 3
    still = AugmentConfig(rotation_deg=0, scale=0, shift=0, hu_gain=0, hu_offset=0, noise_hu=0, probability=1.0)
    _moved_image, moved_labels = augment(images, labels, still, generator)
    assert torch.equal(moved_labels, labels)
    bent_image, bent_labels = augment(images, labels, AugmentConfig(**{**still.to_dict(), "elastic": 0.05}),
                                      generator)
    assert not torch.equal(bent_labels, labels)
    assert set(bent_labels.unique().tolist()) <= {0, 3}
    inside = bent_labels == 3
    assert float(bent_image[inside].mean()) > 40.0
    assert float(bent_image[~inside].mean()) < -80.0


def _score(case: str, key: str, dice: float, ref: int, pred: int, u: float | None) -> CaseScore:
    return CaseScore(case, key, dice, ref, pred, u)


def test_evaluation_pools_sides_sums_groups_and_ranks_uncertainty():
    scores = (
        _score("a", "gluteus_maximus_right", 0.9, 1000, 1100, 0.01),
        _score("a", "gluteus_maximus_left", 0.8, 1000, 900, 0.02),
        _score("a", "gluteus_medius_right", 0.7, 500, 500, 0.03),
        _score("a", "psoas_major_right", 0.5, 400, 100, 0.05),
    )
    evaluation = Evaluation("bundle", ("a",), scores, ())
    dice = evaluation.muscle_dice()
    assert dice["gluteus_maximus"] == pytest.approx(0.85)
    assert dice["gluteus_medius"] == pytest.approx(0.7)
    groups = {(g.group, g.side): g for g in evaluation.group_volumes()}
    assert groups[("gluteal", "right")].reference_voxels == 1500
    assert groups[("gluteal", "right")].error_pct == pytest.approx(100.0 * 100 / 1500)
    assert groups[("above_knee", "right")].reference_voxels == 1500  # psoas is not above-knee
    assert groups[("all", "right")].reference_voxels == 1500
    rho, _, n = evaluation.uncertainty_rank_correlation()
    assert n == 4
    assert rho == pytest.approx(1.0)
