"""SynthSeg-style domain randomisation on top of the calibrated simulation (training data only).

Billot et al., SynthSeg (Medical Image Analysis 2023) randomise contrast, resolution, noise, bias and gamma so that
a network learns shape, not one scanner's intensities. Here, on CT numbers (all draws from the seed):

* per-tissue intensity: muscle fat fractions x U(0.5, 1.8) per muscle, fat and lean muscle offsets N(0, 8) HU;
* blur: an extra in-plane Gaussian of sigma U(0, 0.8) mm;
* noise: the noise scale x U(0.6, 2.0);
* gamma: on the soft-tissue window -200..300 HU, exponent exp(N(0, 0.15)), values outside it left as they are;
* a smooth bias of attenuation (HU + 1000) of up to +-1 % over the field (+-10 HU).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["Randomisation", "apply_gamma_bias", "draw_randomisation"]

_WINDOW = (-200.0, 300.0)


@dataclass(frozen=True)
class Randomisation:
    infiltration_factor: dict[int, float]
    fat_offset_hu: float
    muscle_offset_hu: float
    extra_blur_mm: float
    noise_factor: float
    gamma: float
    bias_amplitude: float


def draw_randomisation(seed: int) -> Randomisation:
    rng = np.random.default_rng([seed, 0x5A17])
    return Randomisation(
        infiltration_factor={label: float(rng.uniform(0.5, 1.8)) for label in range(5, 29)},
        fat_offset_hu=float(rng.normal(0.0, 8.0)), muscle_offset_hu=float(rng.normal(0.0, 8.0)),
        extra_blur_mm=float(rng.uniform(0.0, 0.8)), noise_factor=float(rng.uniform(0.6, 2.0)),
        gamma=float(np.exp(rng.normal(0.0, 0.15))), bias_amplitude=float(rng.uniform(0.0, 0.01)))


def apply_gamma_bias(hu: np.ndarray, r: Randomisation, seed: int) -> np.ndarray:
    """Gamma in the soft-tissue window and a smooth bias field, on a (slices, rows, columns) float32 volume."""
    low, high = _WINDOW
    inside = (hu > low) & (hu < high)
    t = (hu[inside] - low) / (high - low)
    hu[inside] = low + (high - low) * t ** r.gamma
    rng = np.random.default_rng([seed, 0xB1A5])
    coarse = rng.standard_normal((2, 4, 4)).astype(np.float32)
    field = ndimage.zoom(coarse, [s / c for s, c in zip(hu.shape, coarse.shape, strict=True)], order=3,
                         grid_mode=True, mode="nearest")
    field = field[: hu.shape[0], : hu.shape[1], : hu.shape[2]]
    field /= max(float(np.abs(field).max()), 1e-6)
    body = hu > -500
    hu[body] = (hu[body] + 1000.0) * (1.0 + r.bias_amplitude * field[body]) - 1000.0
    return hu
