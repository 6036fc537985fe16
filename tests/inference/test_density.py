"""The density rule that turns muscle voxels into grams."""

from __future__ import annotations

import numpy as np
import pytest

from sarcoscreen.inference.density import DensityKind, DensityRule


def test_constant_density_is_volume_times_density() -> None:
    hu = np.array([40, 50, -100, 200], dtype=np.int16)
    rule = DensityRule(DensityKind.CONSTANT, 1.06)
    # 4 voxels of 2 mm^3 = 0.008 cm^3 at 1.06 g/cm^3.
    assert rule.mass_g(hu, 2.0) == pytest.approx(4 * 0.002 * 1.06)


def test_hu_linear_density_follows_attenuation() -> None:
    hu = np.array([0, 100, -100], dtype=np.int16)
    rule = DensityRule(DensityKind.HU_LINEAR)
    # densities 1.0, 1.1, 0.9 g/cm^3 for 1 cm^3 voxels.
    assert rule.mass_g(hu, 1000.0) == pytest.approx(3.0)
    assert rule.mass_g(np.array([100]), 1000.0) == pytest.approx(1.1)


def test_exclusion_of_voxels_outside_the_window() -> None:
    hu = np.array([-30, -29, 150, 151], dtype=np.int16)
    rule = DensityRule(DensityKind.CONSTANT, 1.0, exclude_outside_window=True)
    assert rule.mass_g(hu, 1000.0) == pytest.approx(2.0)
    assert "outside -29..150 HU excluded" in rule.describe()


@pytest.mark.parametrize("density", [0.5, 1.5])
def test_implausible_density_is_refused(density: float) -> None:
    with pytest.raises(ValueError, match=r"outside 0\.9-1\.2"):
        DensityRule(DensityKind.CONSTANT, density)
