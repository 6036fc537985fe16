"""One annotation folder (``label.mhd`` + ``mask.mhd``) as the simulator's source: labels, body, geometry, sides.

The split into sides and the landmarks are those of `sarcoscreen.inference.labelled_ct` (the pelvis label's centre
of mass as the midline; femoral head top and centre, iliac crest top, pelvis bottom), computed on a CT-less
`Volume` of the label map's grid. The lesser trochanter follows the threshold engine's rule on the femur label:
walking up the femur from its shaft, the first section wider than 1.6 times the shaft's.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from sarcoscreen.inference.catalogue import CATALOGUE, Side
from sarcoscreen.inference.labelled_ct import ANNOTATION_TO_CATALOGUE, FEMUR_LABEL, LabelledCase
from sarcoscreen.inference.metaimage import MetaImageError, read_metaimage
from sarcoscreen.inference.phantom.parameters import PhantomParameterError
from sarcoscreen.inference.volume import SeriesInfo, SliceRef, Volume

__all__ = ["AnnotationSource", "catalogue_labels", "read_annotation"]

TROCHANTER_RATIO = 1.6
"""The threshold engine's lesser-trochanter rule (`engines/threshold/skeleton.py`)."""


@dataclass(frozen=True, eq=False)
class AnnotationSource:
    """A real label map on its own grid (axes slice, row, column; LPS; slices ordered by increasing z)."""

    name: str
    labels: np.ndarray
    """uint8 annotation values (``labels.json``: 1-4 bones, 5-28 muscles)."""
    body: np.ndarray
    """bool body mask."""
    origin: tuple[float, float, float]
    """LPS position of voxel (0, 0, 0)."""
    spacing: tuple[float, float, float]
    """(slice, row, column) mm."""

    @cached_property
    def z_mm(self) -> np.ndarray:
        return self.origin[2] + self.spacing[0] * np.arange(self.labels.shape[0])

    @cached_property
    def case(self) -> LabelledCase:
        """The annotation as `labelled_ct` sees it, on a CT-less volume (zero HU, never read here)."""
        n = self.labels.shape[0]
        positions = np.column_stack([np.full(n, self.origin[0]), np.full(n, self.origin[1]), self.z_mm])
        volume = Volume(hu=np.broadcast_to(np.int16(0), self.labels.shape), spacing=self.spacing,
                        row_direction=(1.0, 0.0, 0.0), column_direction=(0.0, 1.0, 0.0), positions=positions,
                        slices=tuple(SliceRef(f"2.25.{k + 1}", "1.2.840.10008.5.1.4.1.1.2") for k in range(n)),
                        info=SeriesInfo("2.25.1", "2.25.2", "2.25.3"))
        return LabelledCase(self.name, volume, self.labels)

    @cached_property
    def left(self) -> np.ndarray:
        """(rows, columns) pixels on the patient's left of the midline."""
        return self.case.side_mask(Side.LEFT)

    def landmark_z(self, name: str, *, highest: bool = True) -> float | None:
        found = [lm.z_mm for lm in self.case.landmarks if lm.name == name]
        if not found:
            return None
        return max(found) if highest else min(found)

    @cached_property
    def lesser_trochanter_z(self) -> float | None:
        """The lower of the two sides' lesser trochanter levels (mm), or ``None`` without a femoral shaft."""
        levels = []
        for side in (Side.RIGHT, Side.LEFT):
            mask = self.left if side is Side.LEFT else ~self.left
            area = ((self.labels == FEMUR_LABEL) & mask[None]).sum(axis=(1, 2)).astype(float)
            ks = np.flatnonzero(area > 0)
            if ks.size < 6:
                continue
            shaft = float(np.median(area[ks[:3]]))
            above = [k for k in ks if area[k] > TROCHANTER_RATIO * shaft]
            if above and above[0] > ks[0]:
                levels.append(float(self.z_mm[above[0]]))
        return min(levels) if levels else None


def read_annotation(folder: Path | str) -> AnnotationSource:
    """Read ``label.mhd`` and ``mask.mhd`` of one annotation folder (`PhantomParameterError` when unusable)."""
    folder = Path(folder)
    try:
        label_image = read_metaimage(folder / "label.mhd")
        mask_image = read_metaimage(folder / "mask.mhd")
    except (MetaImageError, OSError) as exc:
        raise PhantomParameterError(f"{folder}: not an annotation folder with label.mhd and mask.mhd ({exc})") from None
    labels, body = label_image.array, mask_image.array
    if labels.ndim != 3 or labels.shape != body.shape:
        raise PhantomParameterError(f"{folder}: label {labels.shape} and mask {body.shape} must be the same 3-D grid")
    affine = label_image.affine
    sz, sy, sx = (float(v) for v in label_image.spacing)
    if not np.allclose(affine[:3, :3], [[0.0, 0.0, sx], [0.0, sy, 0.0], [sz, 0.0, 0.0]]):
        raise PhantomParameterError(f"{folder}: only axial label maps with identity direction are supported")
    if labels.min() < 0 or labels.max() > 28:
        raise PhantomParameterError(f"{folder}: label values {labels.min()}..{labels.max()} outside 0..28")
    origin = tuple(float(v) for v in affine[:3, 3])
    return AnnotationSource(folder.name, labels.astype(np.uint8), body > 0, origin, (sz, sy, sx))  # type: ignore[arg-type]


def catalogue_labels(labels: np.ndarray, left: np.ndarray) -> np.ndarray:
    """Annotation values -> catalogue labels split at the midline (`left`: (rows, columns)); trunk muscles and the
    spine, which have no catalogue structure, become 0 (as in `labelled_ct.reference_segmentation`)."""
    luts = {}
    for side in (Side.RIGHT, Side.LEFT):
        lut = np.zeros(256, np.uint8)
        for value, (_, key) in ANNOTATION_TO_CATALOGUE.items():
            lut[value] = CATALOGUE.structure(key, side).label
        luts[side] = lut
    return np.where(left[None], luts[Side.LEFT][labels], luts[Side.RIGHT][labels]).astype(np.uint8)
