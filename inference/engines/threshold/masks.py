"""Body, bone and metal masks of a canonical axial CT on a coarse working grid.

All masks are computed on a grid reduced in-plane to about 2 mm (`WorkGrid`), where 3-D morphology over a
600-slice series costs seconds, and are boolean arrays ``[k, i, j]`` in the canonical orientation of
`sarcoscreen.inference.engines.orientation`.

* Body: voxels above -400 HU (fat and denser), opened in-plane to drop the table, blankets and cables, kept as
  the 3-D components that hold at least a quarter of the largest (the trunk with the legs; or both legs when the
  scan starts below the pelvis), holes filled slice by slice (bowel gas, lungs).
* Bone: in-plane components of voxels above 180 HU that contain cortical bone (> 500 HU), holes filled slice by
  slice (also those enclosed after a one-pixel closing, for a broken cortex) so marrow counts as bone.
  Contrast-filled vessels (up to ~400 HU) have no cortical seed and stay out;
  components are taken per slice because in 3-D the arteries touch the pelvis somewhere.
* Metal: above 2000 HU (hip prostheses, screws); part of the bone mask; its streak artefacts are handled by the
  muscle step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["WorkGrid", "body_mask", "bone_mask", "dilate_in_plane", "erode_in_plane", "fill_holes_in_plane",
           "metal_mask", "reduce"]

BODY_HU = -400.0
BONE_HU = 180.0
CORTEX_HU = 500.0
METAL_HU = 2000.0


@dataclass(frozen=True)
class WorkGrid:
    """In-plane reduction by `factor` (block means); `spacing` is the working grid's (slice, row, column) mm."""

    factor: int
    spacing: tuple[float, float, float]

    @classmethod
    def for_spacing(cls, spacing: tuple[float, float, float], target_mm: float = 2.0) -> WorkGrid:
        factor = max(1, round(target_mm / min(spacing[1], spacing[2])))
        return cls(factor, (spacing[0], spacing[1] * factor, spacing[2] * factor))

    def pixels(self, mm: float) -> int:
        """A distance in mm as a whole number of working-grid pixels (at least 1)."""
        return max(1, round(mm / min(self.spacing[1], self.spacing[2])))

    def pixel_area_cm2(self) -> float:
        return self.spacing[1] * self.spacing[2] / 100.0


def reduce(hu: np.ndarray, factor: int, slab: int = 64) -> np.ndarray:
    """Block-mean `hu` in-plane by `factor` into float32 (rows/columns beyond a whole block are dropped)."""
    k, rows, cols = hu.shape
    r, c = rows // factor, cols // factor
    out = np.empty((k, r, c), np.float32)
    integer = np.issubdtype(hu.dtype, np.integer)
    accumulator = np.int32 if integer else np.float64  # integers summed exactly, no full-resolution float copy
    for start in range(0, k, slab):
        block = hu[start:start + slab, : r * factor, : c * factor]
        # The factor x factor strided views added one by one: faster than summing a 5-D reshaped view.
        total = np.zeros((block.shape[0], r, c), accumulator)
        for di in range(factor):
            for dj in range(factor):
                total += block[:, di::factor, dj::factor]
        out[start:start + slab] = total / float(factor * factor)
    return out


def erode_in_plane(mask: np.ndarray, radius: int) -> np.ndarray:
    """Erosion by an in-plane square of half-width `radius` (separable minimum filter: fast on whole series);
    outside the array counts as background."""
    size = (1, 2 * radius + 1, 2 * radius + 1)
    return ndimage.minimum_filter(mask.view(np.uint8), size=size, mode="constant", cval=0).view(bool)


def dilate_in_plane(mask: np.ndarray, radius: int) -> np.ndarray:
    """Dilation by an in-plane square of half-width `radius` (separable maximum filter)."""
    size = (1, 2 * radius + 1, 2 * radius + 1)
    return ndimage.maximum_filter(mask.view(np.uint8), size=size, mode="constant", cval=0).view(bool)


def fill_holes_in_plane(mask: np.ndarray) -> np.ndarray:
    """Fill holes slice by slice: background not connected in-plane to the slice's border becomes foreground."""
    cross = np.zeros((3, 3, 3), bool)
    cross[1] = ndimage.generate_binary_structure(2, 1)
    background, _ = ndimage.label(~mask, structure=cross)
    border = np.zeros(background.max() + 1, bool)
    for edge in (background[:, 0, :], background[:, -1, :], background[:, :, 0], background[:, :, -1]):
        border[np.unique(edge)] = True
    border[0] = True  # label 0 is the mask itself, not a hole
    return mask | ~border[background]


def _keep_large_components(mask: np.ndarray, fraction: float) -> np.ndarray:
    labels, count = ndimage.label(mask)
    if count == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    keep = sizes >= fraction * sizes.max()
    keep[0] = False
    return keep[labels]


def body_mask(hu: np.ndarray, grid: WorkGrid) -> np.ndarray:
    """The patient's body on the working grid (see module docstring)."""
    body = hu > BODY_HU
    radius = grid.pixels(4.0)
    body = dilate_in_plane(erode_in_plane(body, radius), radius)
    body = _keep_large_components(body, 0.25)
    return fill_holes_in_plane(body)


def bone_mask(hu: np.ndarray, body: np.ndarray) -> np.ndarray:
    """Bone with marrow, inside the body (see module docstring)."""
    candidate = (hu > BONE_HU) & body
    # Components per slice: in 3-D, contrast-filled arteries touch the pelvis somewhere and would be seeded.
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 2)
    labels, count = ndimage.label(candidate, structure=in_plane)
    if count == 0:
        return candidate
    seeded = np.zeros(count + 1, bool)
    seeded[np.unique(labels[(hu > CORTEX_HU) & candidate])] = True
    seeded[0] = False
    bone = seeded[labels]
    # Marrow: the holes of the bone, and of the bone closed by one pixel in-plane, so that a thin cortex broken by
    # partial volume on a coarse grid (pixels of 3-4 mm) still encloses its marrow. The closing's own pixels are
    # not added: they would join bones that lie close together (tibia and fibula).
    closed = erode_in_plane(dilate_in_plane(bone, 1), 1)
    return fill_holes_in_plane(bone) | (fill_holes_in_plane(closed) & ~closed)


def metal_mask(hu: np.ndarray) -> np.ndarray:
    return hu > METAL_HU
