"""The labelmap engine: a NIfTI label map in any axis order lands on the series' grid, or is refused."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from sarcoscreen.inference.catalogue import CATALOGUE
from sarcoscreen.inference.engines import EngineError, create_engine
from sarcoscreen.inference.engines.labelmap import align_to_volume
from sarcoscreen.inference.volume import SeriesInfo, SliceRef, Volume

RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _volume(shape: tuple[int, int, int] = (5, 4, 3)) -> Volume:
    n = shape[0]
    return Volume(
        hu=np.zeros(shape, np.int16), spacing=(2.0, 0.5, 0.7), row_direction=(1.0, 0.0, 0.0),
        column_direction=(0.0, 1.0, 0.0),
        positions=np.array([[10.0, 20.0, 30.0 + 2.0 * k] for k in range(n)]),
        slices=tuple(SliceRef(f"1.2.{k}", "1.2.840.10008.5.1.4.1.1.2") for k in range(n)),
        info=SeriesInfo("1.2", "1.2.3", "1.2.4"),
    )


def _xyz_affine(volume: Volume) -> np.ndarray:
    """RAS affine of an array stored (j, i, k) - the usual NIfTI order for an axial series."""
    to_kij = np.zeros((4, 4))
    to_kij[2, 0] = to_kij[1, 1] = to_kij[0, 2] = to_kij[3, 3] = 1.0
    return RAS_FROM_LPS @ volume.affine @ to_kij


def test_axis_order_and_flips_are_undone_exactly() -> None:
    volume = _volume()
    truth = np.arange(60).reshape(volume.shape)
    data = np.transpose(truth, (2, 1, 0))
    affine = _xyz_affine(volume)
    assert np.array_equal(align_to_volume(data, affine, volume), truth)
    flip_x = np.eye(4)
    flip_x[0, 0], flip_x[0, 3] = -1.0, data.shape[0] - 1.0
    assert np.array_equal(align_to_volume(data[::-1], affine @ flip_x, volume), truth)


def test_shifted_or_scaled_grids_are_refused() -> None:
    volume = _volume()
    data = np.zeros((3, 4, 5), np.uint8)
    shifted = _xyz_affine(volume).copy()
    shifted[2, 3] += 1.0  # half a slice
    with pytest.raises(EngineError, match="does not coincide"):
        align_to_volume(data, shifted, volume)
    scaled = _xyz_affine(volume) @ np.diag([2.0, 1.0, 1.0, 1.0])
    with pytest.raises(EngineError, match="rotated or scaled"):
        align_to_volume(data, scaled, volume)


def test_engine_reads_a_label_map_and_refuses_unknown_labels(tmp_path: Path) -> None:
    volume = _volume()
    labels = np.zeros(volume.shape, np.uint8)
    gluteus = CATALOGUE.by_key("gluteus_maximus_left")
    labels[1:3, 1:3, 1] = gluteus.label
    path = tmp_path / "labels.nii.gz"
    nib.save(nib.Nifti1Image(np.transpose(labels, (2, 1, 0)), _xyz_affine(volume)), path)
    segmentation = create_engine("labelmap", path=path).segment(volume)
    assert np.array_equal(segmentation.labels, labels)
    assert gluteus in segmentation.structures
    bad = labels.copy()
    bad[0, 0, 0] = 250
    nib.save(nib.Nifti1Image(np.transpose(bad, (2, 1, 0)), _xyz_affine(volume)), path)
    with pytest.raises(EngineError, match="value 250, which is not a catalogue label"):
        create_engine("labelmap", path=path).segment(volume)
    with pytest.raises(EngineError, match="cannot read label map"):
        create_engine("labelmap", path=tmp_path / "missing.nii.gz").segment(volume)
