"""Augmentation that keeps anatomy honest, applied to batches of slices on the model grid.

* spatial: a small random rotation (default +-10 degrees), isotropic scaling (+-10 %) and shift (+-5 % of the
  field), the same for image (bilinear, air outside) and labels (nearest, background outside);
* elastic (``elastic`` > 0): a smooth random displacement (a 5 x 5 grid of normal draws, SD ``elastic`` of the
  half field, upsampled bicubically) added to the sampling grid, the same for image and labels;
* intensity: a random gain (+-5 %) and offset (+-15 HU) on the HU, and Gaussian noise with a random SD
  (0..15 HU) - CT numbers move a little between scanners and kernels, anatomy does not;
* **no left-right flip** by default: the labels are lateralised. With ``flip_lr`` a flipped slice also has
  every right label swapped with its left counterpart (`swap_lut`), so that the anatomy stays true.

Randomness comes from a `torch.Generator`, so a training run is reproducible from its seed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

from sarcoscreen.inference.catalogue import CATALOGUE, Side

__all__ = ["AugmentConfig", "augment", "swap_lut"]


@dataclass(frozen=True)
class AugmentConfig:
    rotation_deg: float = 10.0
    scale: float = 0.10
    shift: float = 0.05
    """Fraction of the field of view."""
    hu_gain: float = 0.05
    hu_offset: float = 15.0
    noise_hu: float = 15.0
    elastic: float = 0.0
    """SD of the smooth random displacement, as a fraction of the half field (0: off)."""
    flip_lr: bool = False
    """Mirror left-right with label swapping (off by default)."""
    probability: float = 0.8
    """Probability that a slice is transformed spatially."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def swap_lut(label_values: list[int]) -> torch.Tensor:
    """Class index -> class index of the same anatomy on the other side (itself when unpaired or absent)."""
    index = {value: i for i, value in enumerate(label_values)}
    out = list(range(len(label_values)))
    for i, value in enumerate(label_values):
        if value == 0:
            continue
        structure = CATALOGUE.by_label(value)
        if structure.side is Side.MIDLINE:
            continue
        other = CATALOGUE.structure(structure.anatomy.key, Side.LEFT if structure.side is Side.RIGHT else Side.RIGHT)
        out[i] = index.get(other.label, i)
    return torch.tensor(out, dtype=torch.long)


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def augment(images: torch.Tensor, labels: torch.Tensor, config: AugmentConfig, generator: torch.Generator,
            swap: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment HU slices ``(B, H, W)`` float and their class-index labels ``(B, H, W)`` long (both on the CPU)."""
    b = images.shape[0]
    angle = _uniform(b, -1.0, 1.0, generator) * math.radians(config.rotation_deg)
    scale = 1.0 + _uniform(b, -config.scale, config.scale, generator)
    shift = _uniform(2 * b, -2.0 * config.shift, 2.0 * config.shift, generator).view(b, 2)
    active = torch.rand(b, generator=generator) < config.probability
    angle, scale = torch.where(active, angle, 0.0), torch.where(active, scale, 1.0)
    shift = torch.where(active[:, None], shift, 0.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    if config.flip_lr and swap is not None:
        flip = torch.rand(b, generator=generator) < 0.5
        theta[flip, 0, :] *= torch.tensor([-1.0, -1.0, 1.0])  # x -> -x in the sampling grid: a mirror
        labels = torch.where(flip[:, None, None], swap[labels], labels)
    grid = F.affine_grid(theta, [b, 1, *images.shape[-2:]], align_corners=False)
    if config.elastic > 0:
        coarse = torch.randn((b, 2, 5, 5), generator=generator) * config.elastic * active[:, None, None, None]
        field = F.interpolate(coarse, size=images.shape[-2:], mode="bicubic", align_corners=True)
        grid = grid + field.permute(0, 2, 3, 1)
    moved = F.grid_sample((images + 1024.0).unsqueeze(1), grid, mode="bilinear", padding_mode="zeros",
                          align_corners=False).squeeze(1) - 1024.0
    moved_labels = F.grid_sample(labels.unsqueeze(1).float(), grid, mode="nearest", padding_mode="zeros",
                                 align_corners=False).squeeze(1).round().long()
    gain = 1.0 + _uniform(b, -config.hu_gain, config.hu_gain, generator)
    offset = _uniform(b, -config.hu_offset, config.hu_offset, generator)
    sd = _uniform(b, 0.0, config.noise_hu, generator)
    noise = torch.randn(moved.shape, generator=generator) * sd[:, None, None]
    return moved * gain[:, None, None] + offset[:, None, None] + noise, moved_labels
