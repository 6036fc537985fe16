"""From a series' axial slices to the network's input grid and back; the same code serves inference and training.

Slices are taken in the canonical orientation of `sarcoscreen.inference.engines.orientation` (rows anterior to
posterior, columns patient right to patient left), so that left and right mean the same to the network whatever
the patient position. In-plane, each slice is

1. resampled to the bundle's pixel spacing (bilinear, anti-aliased when shrinking; labels: nearest), then
2. cropped or padded (with air, -1024 HU) to the bundle's input size, centred on the body's centre (the median
   over slices of the centroid of voxels above -500 HU, one centre for the whole series), and
3. clipped to the HU window and normalised.

`PlaneMapping.back` undoes 1-2 for class probabilities (outside the model's window: background) and
uncertainty maps (outside: 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from sarcoscreen.inference.engines.unet.manifest import InputSpec

__all__ = ["AIR_HU", "PlaneMapping", "body_centre", "normalise"]

AIR_HU = -1024.0
_BODY_HU = -500.0


def body_centre(hu: np.ndarray, max_slices: int = 24) -> tuple[float, float]:
    """(row, column) of the body's centre in pixels of `hu` ``[slice, row, column]``: the median over up to
    `max_slices` evenly spaced slices of the centroid of voxels above -500 HU; the image centre when no slice
    has any."""
    n = hu.shape[0]
    rows, cols = [], []
    for k in np.unique(np.linspace(0, n - 1, min(n, max_slices)).round().astype(int)):
        mask = np.asarray(hu[k]) > _BODY_HU
        if mask.sum() < 16:
            continue
        r, c = np.nonzero(mask)
        rows.append(r.mean())
        cols.append(c.mean())
    if not rows:
        return (hu.shape[1] - 1) / 2.0, (hu.shape[2] - 1) / 2.0
    return float(np.median(rows)), float(np.median(cols))


def normalise(hu: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    low, high = spec.hu_window
    return (hu.clamp(low, high) - spec.mean) / spec.std


def _window(x: torch.Tensor, offset: tuple[int, int], size: tuple[int, int],
            fill: float | torch.Tensor) -> torch.Tensor:
    """``x[..., offset_r : offset_r + size_r, offset_c : offset_c + size_c]`` with out-of-range parts filled."""
    h, w = x.shape[-2:]
    r0, c0 = offset
    out = torch.empty((*x.shape[:-2], *size), dtype=x.dtype, device=x.device)
    if isinstance(fill, torch.Tensor):
        out[:] = fill.view(*fill.shape, 1, 1).to(x.dtype)
    else:
        out.fill_(fill)
    sr0, sr1 = max(r0, 0), min(r0 + size[0], h)
    sc0, sc1 = max(c0, 0), min(c0 + size[1], w)
    if sr0 < sr1 and sc0 < sc1:
        out[..., sr0 - r0:sr1 - r0, sc0 - c0:sc1 - c0] = x[..., sr0:sr1, sc0:sc1]
    return out


@dataclass(frozen=True)
class PlaneMapping:
    """How one series' slices (``source_shape`` at ``source_spacing``) map onto the model's input grid."""

    source_shape: tuple[int, int]
    source_spacing: tuple[float, float]
    scaled_shape: tuple[int, int]
    """The slice resampled to the model's pixel spacing."""
    offset: tuple[int, int]
    """Where the model's window starts in the resampled slice (negative: padding before the image)."""
    size: tuple[int, int]

    @classmethod
    def create(cls, source_shape: tuple[int, int], source_spacing: tuple[float, float], spec: InputSpec,
               centre: tuple[float, float] | None = None) -> PlaneMapping:
        """The mapping for slices of `source_shape` (rows, columns) and `source_spacing` (mm), with the body's
        `centre` (row, column in source pixels; default the image centre)."""
        h, w = source_shape
        scaled = (max(1, round(h * source_spacing[0] / spec.pixel_spacing_mm[0])),
                  max(1, round(w * source_spacing[1] / spec.pixel_spacing_mm[1])))
        if centre is None:
            centre = ((h - 1) / 2.0, (w - 1) / 2.0)
        offset = tuple(
            round((centre[a] + 0.5) * scaled[a] / source_shape[a] - spec.size[a] / 2.0) for a in range(2)
        )
        return cls(tuple(source_shape), tuple(source_spacing), scaled, offset, tuple(spec.size))  # type: ignore[arg-type]

    def inside(self) -> np.ndarray:
        """Boolean ``(H, W)``: which source pixels fall inside the model's window."""
        masks = []
        for a in range(2):
            centres = (np.arange(self.source_shape[a]) + 0.5) * self.scaled_shape[a] / self.source_shape[a] - 0.5
            masks.append((centres >= self.offset[a] - 0.5) & (centres < self.offset[a] + self.size[a] - 0.5))
        return masks[0][:, None] & masks[1][None, :]

    def body_outside(self, hu: np.ndarray, max_slices: int = 24) -> float:
        """Fraction of body voxels (above -500 HU) of up to `max_slices` slices of `hu` outside the window."""
        outside = ~self.inside()
        body = cut = 0
        for k in np.unique(np.linspace(0, hu.shape[0] - 1, min(hu.shape[0], max_slices)).round().astype(int)):
            mask = np.asarray(hu[k]) > _BODY_HU
            body += int(mask.sum())
            cut += int((mask & outside).sum())
        return cut / body if body else 0.0

    def image(self, hu: torch.Tensor) -> torch.Tensor:
        """HU slices ``(n, H, W)`` -> ``(n, rows, cols)`` on the model grid (not yet normalised)."""
        x = hu.to(torch.float32).unsqueeze(1)
        if tuple(x.shape[-2:]) != self.scaled_shape:
            shrink = self.scaled_shape[0] < x.shape[-2] or self.scaled_shape[1] < x.shape[-1]
            x = F.interpolate(x, size=self.scaled_shape, mode="bilinear", align_corners=False, antialias=shrink)
        return _window(x, self.offset, self.size, AIR_HU).squeeze(1)

    def labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Label slices ``(n, H, W)`` (any integer values) -> ``(n, rows, cols)`` by nearest neighbour."""
        x = labels.to(torch.float32).unsqueeze(1)
        if tuple(x.shape[-2:]) != self.scaled_shape:
            x = F.interpolate(x, size=self.scaled_shape, mode="nearest-exact")
        return _window(x, self.offset, self.size, 0.0).squeeze(1).round().to(torch.long)

    def back(self, maps: torch.Tensor, fill: float | torch.Tensor) -> torch.Tensor:
        """Maps on the model grid ``(n, C, rows, cols)`` -> ``(n, C, H, W)`` on the source grid (bilinear);
        `fill` (a number, or one value per channel) outside the model's window."""
        inverse = (-self.offset[0], -self.offset[1])
        x = _window(maps, inverse, self.scaled_shape, fill)
        if tuple(x.shape[-2:]) != self.source_shape:
            x = F.interpolate(x, size=self.source_shape, mode="bilinear", align_corners=False)
        return x
