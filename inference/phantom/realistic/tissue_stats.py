"""Per-tissue HU statistics on an annotation's grid: the same tissue masks for a real CT and a simulated one.

Tissues: muscle groups of the annotation (gluteal 5-7, other hip 8-13, thigh 14-23, trunk 24-28), bones (pelvis 1,
femur 2, sacrum and spine 3-4), and the unlabelled body compartments of `paint.compartments` (subcutaneous,
interior). Organ masks (RT structure set contours, or the simulator's own organs) are added by the caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from sarcoscreen.inference.phantom.realistic.paint import Compartments

__all__ = ["TISSUE_LABELS", "TissueStats", "tissue_masks", "tissue_stats"]

TISSUE_LABELS: Mapping[str, tuple[int, ...]] = {
    "gluteal muscles": (5, 6, 7),
    "other hip muscles": (8, 9, 10, 11, 12, 13),
    "thigh muscles": tuple(range(14, 24)),
    "trunk muscles": tuple(range(24, 29)),
    "pelvis (bone)": (1,),
    "femur (bone)": (2,),
    "sacrum and spine (bone)": (3, 4),
}


@dataclass(frozen=True)
class TissueStats:
    voxels: int
    mean: float
    sd: float
    p5: float
    p25: float
    median: float
    p75: float
    p95: float

    @classmethod
    def of(cls, values: np.ndarray) -> TissueStats:
        v = values.astype(np.float64)
        p = np.percentile(v, [5, 25, 50, 75, 95])
        return cls(int(v.size), float(v.mean()), float(v.std()), *(float(x) for x in p))


def tissue_masks(labels: np.ndarray, comps: Compartments) -> dict[str, np.ndarray]:
    masks = {name: np.isin(labels, values) for name, values in TISSUE_LABELS.items()}
    masks["subcutaneous (unlabelled)"] = comps.subcutaneous
    masks["interior (unlabelled)"] = comps.interior
    return masks


def tissue_stats(hu: np.ndarray, masks: Mapping[str, np.ndarray]) -> dict[str, TissueStats]:
    """Statistics of `hu` in every non-empty mask."""
    return {name: TissueStats.of(hu[mask]) for name, mask in masks.items() if mask.any()}
