"""The shipped Bayesian U-Net on real CT, end to end through ``sarcoscreen analyze`` (issue 12).

A slab of the real Pelvic-Ref-002 series (through the hip joints and the gluteal muscles) is analysed with
``engine.name = "bayesian-unet"`` and no bundle path - the bundle shipped in the package - and:

* the gluteus maximus and medius of each side overlap the manual annotation (Dice >= 0.8). 002's CT and labels are
  part of the shipped model's training data, so this is a regression check that the shipped weights segment real
  CT through the whole pipeline, **not** a validation figure (the held-out figures are in docs/unet-engine.md);
* the DICOM-SEG has one segment per muscle and side it found, each coded in SNOMED CT (or sarcoscreen's private
  scheme for merged muscles) with its laterality;
* the TID 1500 SR carries the structure-wise uncertainty of each muscle (SARCO-1006) and the result files state
  the model's training data and intended use.

Skipped without ../shared/data or without a shipped bundle.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

pytest.importorskip("torch")

from sarcoscreen.inference.catalogue import CATALOGUE
from sarcoscreen.inference.engines.unet import shipped_bundle
from sarcoscreen.inference.phantom.realistic.source import catalogue_labels, read_annotation

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
ANNOTATION = DATA / "pelvic-annotation" / "Pelvic-Ref-002"
CT = DATA / "pelvic-ref-ct" / "Pelvic-Ref-002" / "ct"
SLAB = (55, 85)
"""Annotation slices (z ascending): from below the femoral heads to the upper gluteal region."""

pytestmark = [
    pytest.mark.skipif(not (ANNOTATION / "label.mhd").is_file() or not CT.is_dir(),
                       reason="../shared/data (Pelvic-Ref-002 annotation and CT) is not present"),
    pytest.mark.skipif(not shipped_bundle.has_shipped_bundle(),
                       reason="no model bundle is shipped in inference/engines/unet/shipped/"),
]


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("real002")
    files = sorted(CT.glob("*.dcm"), key=lambda p: float(pydicom.dcmread(
        p, stop_before_pixels=True, specific_tags=["ImagePositionPatient"]).ImagePositionPatient[2]))
    series = root / "series"
    series.mkdir()
    for path in files[SLAB[0]:SLAB[1]]:
        shutil.copy(path, series / path.name)
    (root / "sarcoscreen.toml").write_text('[engine]\nname = "bayesian-unet"\nmc_samples = 3\n'
                                           f'[storage]\ndata_dir = "{root / "state"}"\n')
    out = root / "out"
    command = [sys.executable, "-m", "sarcoscreen.node.cli", "--config", str(root / "sarcoscreen.toml"), "analyze",
               str(series), "--out", str(out), "--height", "1.75", "--dicom-out", str(root / "dicom"),
               "--no-progress"]
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return root


def _seg_labels(seg: pydicom.Dataset, shape: tuple[int, int, int], uids: list[str]) -> np.ndarray:
    """The SEG's frames as one catalogue label map on the slab's slices (z ascending order of `uids`)."""
    by_number = {int(s.SegmentNumber): CATALOGUE.by_key(str(s.TrackingID)).label for s in seg.SegmentSequence}
    labels = np.zeros(shape, np.uint8)
    frames = seg.pixel_array.reshape(-1, shape[1], shape[2])
    for frame, item in zip(frames, seg.PerFrameFunctionalGroupsSequence, strict=True):
        number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        source = str(item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
        labels[uids.index(source)][frame > 0] = by_number[number]
    return labels


def _content_items(dataset: pydicom.Dataset) -> list[pydicom.Dataset]:
    """Every content item of an SR, depth first."""
    items = []
    for item in dataset.get("ContentSequence", []):
        items.append(item)
        items.extend(_content_items(item))
    return items


def test_the_shipped_model_segments_real_ct_per_muscle_with_codes_and_uncertainty(analysed: Path) -> None:
    dicom = sorted((analysed / "dicom").rglob("*.dcm"))
    seg = next(pydicom.dcmread(p) for p in dicom if pydicom.dcmread(p, stop_before_pixels=True).Modality == "SEG")
    sr = next(pydicom.dcmread(p) for p in dicom if pydicom.dcmread(p, stop_before_pixels=True).Modality == "SR")

    keys = [str(s.TrackingID) for s in seg.SegmentSequence]
    muscles = [k for k in keys if CATALOGUE.by_key(k).anatomy.kind.value == "muscle"]
    assert len(muscles) >= 20  # per muscle and side, not regions
    for item in seg.SegmentSequence:
        code = item.SegmentedPropertyTypeCodeSequence[0]
        assert code.CodingSchemeDesignator in ("SCT", "99SARCO")
        structure = CATALOGUE.by_key(str(item.TrackingID))
        if structure.side.value != "midline":
            assert "AnatomicRegionSequence" in item or "SegmentedPropertyTypeModifierCodeSequence" in code

    series = sorted((analysed / "series").glob("*.dcm"), key=lambda p: float(
        pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]))
    uids = [str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in series]
    source = read_annotation(ANNOTATION)
    truth = catalogue_labels(source.labels[SLAB[0]:SLAB[1]], source.left)
    predicted = _seg_labels(seg, truth.shape, uids)
    for key in ("gluteus_maximus_right", "gluteus_maximus_left", "gluteus_medius_right", "gluteus_medius_left"):
        v = CATALOGUE.by_key(key).label
        dice = 2 * np.sum((predicted == v) & (truth == v)) / (np.sum(predicted == v) + np.sum(truth == v))
        assert dice >= 0.8, f"{key}: Dice {dice:.3f}"

    uncertainty_items = [item for item in _content_items(sr)
                         if "ConceptNameCodeSequence" in item and item.ConceptNameCodeSequence[0].CodeValue
                         == "SARCO-1006"]
    assert len(uncertainty_items) >= len(muscles)
    results = json.loads((analysed / "out" / "measurements.json").read_text())
    notes = " ".join(results["engine"]["notes"]) if "engine" in results else json.dumps(results)
    assert "research; not a medical device" in notes
