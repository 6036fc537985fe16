"""The ``labelmap`` engine: measure an existing segmentation instead of making one.

Reads a NIfTI label map in catalogue label values (a phantom's ground truth, or a manual segmentation made in
3D Slicer / ITK-SNAP with the catalogue's label values) that lies on the same voxel grid as the CT series, in
any axis order or direction. NIfTI world coordinates are RAS; DICOM patient coordinates are LPS, so the first
two world axes change sign. A label map whose grid does not coincide with the series' grid (within 0.1 voxel)
is refused: this engine never resamples, so what is measured is exactly what was drawn.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from sarcoscreen.inference.catalogue import CATALOGUE, Kind, Structure, UnknownStructureError
from sarcoscreen.inference.engines.base import EngineError, Progress, Segmentation
from sarcoscreen.inference.volume import Volume

__all__ = ["LabelMapEngine", "align_to_volume"]

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def align_to_volume(data: np.ndarray, nifti_affine: np.ndarray, volume: Volume, tolerance: float = 0.1) -> np.ndarray:
    """Reorder the axes of `data` (with RAS `nifti_affine`) onto `volume`'s ``[k, i, j]`` grid, without
    resampling; `EngineError` when the two grids differ."""
    if data.ndim != 3:
        raise EngineError(f"the label map has {data.ndim} dimensions; 3 are needed")
    to_lps = _RAS_TO_LPS @ nifti_affine
    # voxel index of the label map -> voxel index of the volume
    mapping = np.linalg.inv(volume.affine) @ to_lps
    linear = mapping[:3, :3]
    permutation = np.argmax(np.abs(linear), axis=0)  # label-map axis a -> volume axis permutation[a]
    signs = np.sign(linear[permutation, np.arange(3)])
    expected = np.zeros((3, 3))
    expected[permutation, np.arange(3)] = signs
    if sorted(permutation.tolist()) != [0, 1, 2] or not np.allclose(linear, expected, atol=tolerance / 10):
        raise EngineError("the label map's voxel grid is rotated or scaled relative to the series")
    # The volume index of the label map's first voxel must be the volume's first (or, on a flipped axis,
    # last) voxel along each axis.
    for a in range(3):
        v = int(permutation[a])
        expected_offset = 0.0 if signs[a] > 0 else data.shape[a] - 1.0
        if data.shape[a] != volume.shape[v] or abs(mapping[v, 3] - expected_offset) > tolerance:
            raise EngineError(
                f"the label map's grid (shape {data.shape}) does not coincide with the series' grid "
                f"(shape {volume.shape}) along volume axis {v}"
            )
    aligned = np.transpose(data, np.argsort(permutation))
    for a in range(3):
        if signs[a] < 0:
            aligned = np.flip(aligned, int(permutation[a]))
    return np.ascontiguousarray(aligned)


class LabelMapEngine:
    """An 'engine' that returns a given label map, so that measurement can run on any segmentation."""

    name = "labelmap"
    version = "1"

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def structures(self) -> tuple[Structure, ...]:
        return tuple(s for s in CATALOGUE if s.anatomy.kind in (Kind.MUSCLE, Kind.BONE))

    def segment(self, volume: Volume, progress: Progress | None = None) -> Segmentation:
        try:
            image = nib.load(self.path)
        except (OSError, nib.filebasedimages.ImageFileError) as exc:
            raise EngineError(f"cannot read label map {self.path}: {exc}") from None
        raw = np.asarray(image.dataobj)
        if not np.issubdtype(raw.dtype, np.integer) and not np.array_equal(raw, np.round(raw)):
            raise EngineError(f"label map {self.path} holds non-integer values")
        values = np.unique(raw)
        if values.min() < 0 or values.max() > 255:
            raise EngineError(f"label map {self.path} holds values outside 0..255")
        present = []
        for value in values[values > 0].tolist():
            try:
                present.append(CATALOGUE.by_label(int(value)))
            except UnknownStructureError:
                raise EngineError(f"label map {self.path} holds value {value}, which is not a catalogue label") \
                    from None
        labels = align_to_volume(raw.astype(np.uint8), image.affine, volume)
        regions = tuple(s for s in present if s.anatomy.kind is Kind.MUSCLE_REGION)
        structures = self.structures() + regions
        return Segmentation(labels=labels, structures=structures, engine_name=self.name,
                            engine_version=self.version, notes=(f"label map read from {self.path.name}",))
