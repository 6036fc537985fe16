"""How voxel volume becomes muscle mass: the density rule, recorded with every mass sarcoscreen reports.

Two rules are in use in the CT body-composition literature:

* ``constant``: one density for skeletal muscle, 1.04 g/cm^3 (ICRP Publication 23 reference man; used by
  Mitsiopoulos et al., J Appl Physiol 1998, to convert CT muscle volume to mass) or 1.06 g/cm^3 (Snyder et al.,
  ICRP 23, the value for muscle tissue itself).
* ``hu_linear``: density from attenuation, rho = 1.0 + HU / 1000 g/cm^3, the linear water-equivalent
  approximation (water 0 HU = 1.0 g/cm^3), so that fatty infiltration lowers mass.

Optionally only voxels inside the muscle HU window count (``exclude_outside_window``), which removes
intramuscular fat and partial-volume voxels from the mass.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

__all__ = ["DensityKind", "DensityRule"]


class DensityKind(StrEnum):
    CONSTANT = "constant"
    HU_LINEAR = "hu_linear"


@dataclass(frozen=True)
class DensityRule:
    """A rule for turning the HU values of one structure's voxels into grams."""

    kind: DensityKind = DensityKind.CONSTANT
    constant_g_per_cm3: float = 1.04
    exclude_outside_window: bool = False
    hu_window: tuple[float, float] = (-29.0, 150.0)
    """The skeletal-muscle HU window (Mitsiopoulos et al. 1998: -29 to +150 HU), inclusive."""

    def __post_init__(self) -> None:
        if not 0.9 <= self.constant_g_per_cm3 <= 1.2:
            raise ValueError(f"muscle density {self.constant_g_per_cm3} g/cm^3 is outside 0.9-1.2")
        low, high = self.hu_window
        if not low < high:
            raise ValueError(f"HU window {self.hu_window} must be (low, high) with low < high")

    def counted(self, hu: np.ndarray) -> np.ndarray:
        """Boolean mask of the voxels that contribute mass."""
        if not self.exclude_outside_window:
            return np.ones(hu.shape, dtype=bool)
        low, high = self.hu_window
        return (hu >= low) & (hu <= high)

    def mass_g(self, hu: np.ndarray, voxel_volume_mm3: float) -> float:
        """Mass in grams of voxels with HU values `hu` (any shape), each `voxel_volume_mm3` in size."""
        values = np.asarray(hu)
        if self.exclude_outside_window:
            values = values[self.counted(values)]
        voxel_cm3 = voxel_volume_mm3 / 1000.0
        if self.kind is DensityKind.CONSTANT:
            return float(values.size * voxel_cm3 * self.constant_g_per_cm3)
        density = 1.0 + values.astype(np.float64) / 1000.0
        return float(density.sum() * voxel_cm3)

    def mass_from_sums(self, voxels: int, sum_hu: float, voxel_volume_mm3: float) -> float:
        """Mass in grams from the count and HU sum of the voxels that count (see `counted`).

        Equal to `mass_g` over those voxels; lets measurement accumulate statistics slab by slab.
        """
        voxel_cm3 = voxel_volume_mm3 / 1000.0
        if self.kind is DensityKind.CONSTANT:
            return float(voxels * voxel_cm3 * self.constant_g_per_cm3)
        return float((voxels + sum_hu / 1000.0) * voxel_cm3)

    def describe(self) -> str:
        """The rule in words, as recorded next to every mass."""
        if self.kind is DensityKind.CONSTANT:
            text = f"constant {self.constant_g_per_cm3:.2f} g/cm3"
        else:
            text = "HU-linear 1.0 + HU/1000 g/cm3"
        if self.exclude_outside_window:
            low, high = self.hu_window
            text += f", voxels outside {low:g}..{high:g} HU excluded"
        return text
