"""From tissue maps to CT numbers: intramuscular fat, partial-volume blur, image noise, metal streaks.

Everything random is a deterministic function of the seed and the voxel position (or slice index), so a slice
comes out the same whatever slab it is computed in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from scipy.special import ndtri

from sarcoscreen.inference.phantom.geometry import Grid
from sarcoscreen.inference.phantom.tissues import Tissue

__all__ = [
    "HU_MAX",
    "HU_MIN",
    "apply_texture",
    "blur_sigmas",
    "inplane_blur",
    "metal_streaks",
    "noise_slice",
    "smooth_field",
    "to_stored_hu",
    "z_weights",
]

HU_MIN = -1024
HU_MAX = 3071
"""12-bit CT range with RescaleIntercept -1024 (stored values 0..4095)."""

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _hash_uniform(ix: np.ndarray, iy: np.ndarray, iz: int, seed: int, channel: int) -> np.ndarray:
    """A uniform (0, 1) value per integer lattice point (splitmix64 on the packed coordinates)."""
    with np.errstate(over="ignore"):
        h = (ix.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
             ^ iy.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
             ^ np.uint64((iz * 0x165667B19E3779F9) & 0xFFFFFFFFFFFFFFFF)
             ^ np.uint64(((seed * 0x27D4EB2F165667C5) ^ (channel * 0x94D049BB133111EB)) & 0xFFFFFFFFFFFFFFFF))
        h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        h = h ^ (h >> np.uint64(31))
    return ((h >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)


def smooth_field(x: np.ndarray, y: np.ndarray, z: float, seed: int, channel: int,
                 spacing: tuple[float, float, float]) -> np.ndarray:
    """A unit-variance Gaussian random field at the points ``x[j], y[i]`` of one slice (float32, (ny, nx)).

    Lattice noise (independent normals at lattice points `spacing` mm apart) interpolated with smoothstep
    weights and normalised by the weights' root sum of squares, so the variance is 1 everywhere and a threshold
    at the normal quantile selects the wanted fraction of voxels. Streaks follow the longer z spacing, like fat
    between muscle fascicles.
    """
    sx, sy, sz = spacing
    fx = x / sx
    fy = y / sy
    fz = z / sz
    ix0 = np.floor(fx).astype(np.int64)
    iy0 = np.floor(fy).astype(np.int64)
    iz0 = math.floor(fz)
    tx = fx - ix0
    ty = fy - iy0
    tz = fz - iz0
    wx = tx * tx * (3 - 2 * tx)
    wy = ty * ty * (3 - 2 * ty)
    wz = tz * tz * (3 - 2 * tz)
    # Lattice values on the small lattice covering the slice.
    lx = np.arange(ix0.min(), ix0.max() + 2)
    ly = np.arange(iy0.min(), iy0.max() + 2)
    gx, gy = np.meshgrid(lx, ly)
    total = np.zeros((len(y), len(x)), np.float64)
    norm = np.zeros((len(y), len(x)), np.float64)
    cx = (ix0 - lx[0])[None, :]
    cy = (iy0 - ly[0])[:, None]
    for dz_, wz_ in ((0, 1.0 - wz), (1, wz)):
        plane = ndtri(_hash_uniform(gx, gy, iz0 + dz_, seed, channel))
        for dy_, wy_ in ((0, 1.0 - wy), (1, wy)):
            for dx_, wx_ in ((0, 1.0 - wx), (1, wx)):
                weight = (wy_[:, None] * wx_[None, :]) * wz_
                total += weight * plane[cy + dy_, cx + dx_]
                norm += weight * weight
    return (total / np.sqrt(norm)).astype(np.float32)


def _bounding_box(mask: np.ndarray) -> tuple[slice, slice]:
    """The rows and columns of the smallest rectangle that holds every pixel of `mask` (not empty)."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def apply_texture(tissue: np.ndarray, fat_weight: np.ndarray, grid: Grid, seed: int,
                  fatty_infiltration: float) -> np.ndarray:
    """Tissue map with intramuscular fat specks and gas bubbles in feces (a new array)."""
    out = tissue.copy()
    muscle = tissue == Tissue.MUSCLE
    if muscle.any():
        r, c = _bounding_box(muscle)
        field = smooth_field(grid.x[c], grid.y[r], grid.z, seed, 1, (2.2, 2.2, 7.0))
        fraction = np.clip((0.03 + 0.22 * fatty_infiltration) * fat_weight[r, c], 1e-6, 0.6)
        specks = muscle[r, c] & (field > ndtri(1.0 - fraction))
        out[r, c][specks] = Tissue.INTRAMUSCULAR_FAT
    feces = tissue == Tissue.FECES
    if feces.any():
        r, c = _bounding_box(feces)
        field = smooth_field(grid.x[c], grid.y[r], grid.z, seed, 2, (3.0, 3.0, 3.0))
        out[r, c][feces[r, c] & (field > 1.1)] = Tissue.GAS
    return out


def blur_sigmas(pixel_mm: float, slice_mm: float) -> tuple[float, float]:
    """Gaussian sigmas (in voxels) for partial volume: a voxel-sized box plus a ~0.55 mm (in-plane) / 0.5 mm
    (along z) system blur, added in quadrature."""
    inplane = math.sqrt(1.0 / 12.0 + (0.55 / pixel_mm) ** 2)
    along = math.sqrt(1.0 / 12.0 + (0.5 / slice_mm) ** 2)
    return inplane, along


def inplane_blur(hu: np.ndarray, sigma_px: float) -> np.ndarray:
    return ndimage.gaussian_filter(hu.astype(np.float32), sigma_px, mode="nearest", truncate=3.0)


def z_weights(sigma_slices: float) -> np.ndarray:
    """Normalised Gaussian weights for slices ``-h..h`` around a slice."""
    half = max(1, math.ceil(3.0 * sigma_slices))
    k = np.arange(-half, half + 1, dtype=np.float64)
    w = np.exp(-0.5 * (k / sigma_slices) ** 2)
    return (w / w.sum()).astype(np.float32)


def noise_slice(shape: tuple[int, int], seed: int, index: int, sd_hu: float) -> np.ndarray:
    """Slightly correlated Gaussian noise (white noise blurred by 0.6 px, rescaled to `sd_hu`) for one slice."""
    if sd_hu <= 0:
        return np.zeros(shape, np.float32)
    rng = np.random.default_rng([seed, index + 1_000_000, 0x4E01])
    white = rng.standard_normal(shape, dtype=np.float32)
    sigma = 0.6
    smooth = ndimage.gaussian_filter(white, sigma, mode="wrap", truncate=3.0)
    half = math.ceil(3.0 * sigma)
    k = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
    k /= k.sum()
    gain = float(np.sum(k * k))  # variance gain of the separable 2-D kernel is gain**2
    return smooth * (sd_hu / gain)


def metal_streaks(implants: Sequence[tuple[int, np.ndarray]], grid: Grid, seed: int) -> np.ndarray:
    """Streak artefacts of the metal implants in this slice, given as (implant index, mask) pairs.

    Around each implant: a dark band along the left-right beam path through it (photon starvation and beam
    hardening) and fine radial bright/dark streaks with a pattern seeded by the seed and the implant's index,
    decaying with distance; its strength grows with the implant's area in the slice. Between two implants (both
    hips): a further dark band along the line joining them, as wide as the narrower implant across that line,
    strongest between them and fading beyond them - the rays through both implants are the most starved, the
    classic dark streak across the pelvis of a patient with bilateral hip prostheses. Zero on the metal itself.
    """
    out = np.zeros(grid.shape, np.float32)
    present = [(index, mask) for index, mask in implants if mask.any()]
    if not present:
        return out
    pixel_mm2 = abs(float(grid.x[1] - grid.x[0]) * float(grid.y[1] - grid.y[0]))
    shapes = []
    for index, mask in present:
        rows, cols = np.nonzero(mask)
        px, py = grid.x[cols], grid.y[rows]
        centre = (float(px.mean()), float(py.mean()))
        strength = min(1.0, mask.sum() * pixel_mm2 / 600.0)
        out += _implant_streaks(centre, strength, grid, seed, index)
        shapes.append((centre, strength, px, py))
    for a in range(len(shapes)):
        for b in range(a + 1, len(shapes)):
            out += _between_implants(shapes[a], shapes[b], grid)
    for _, mask in present:
        out[mask] = 0.0
    return out


def _implant_streaks(centre: tuple[float, float], strength: float, grid: Grid, seed: int,
                     index: int) -> np.ndarray:
    cx, cy = centre
    dx = grid.x[None, :] - cx
    dy = grid.y[:, None] - cy
    r = np.sqrt(dx * dx + dy * dy)
    phi = np.arctan2(dy, dx)
    decay = 40.0 / (r + 40.0)
    rng = np.random.default_rng([seed, 0x5EA1] if index == 0 else [seed, 0x5EA1, index])
    phases = rng.uniform(0, 2 * np.pi, size=3)
    radial = (np.cos(7 * phi + phases[0]) + 0.7 * np.cos(13 * phi + phases[1]) + 0.5 * np.cos(23 * phi + phases[2]))
    band = np.exp(-0.5 * (np.sin(phi) / 0.07) ** 2)
    return (strength * decay * (90.0 * radial - 260.0 * band)).astype(np.float32)


_BETWEEN_HU = 220.0
"""Depth of the dark band between two implants of full strength (HU), on top of each implant's own band."""


def _between_implants(one: tuple[tuple[float, float], float, np.ndarray, np.ndarray],
                      other: tuple[tuple[float, float], float, np.ndarray, np.ndarray], grid: Grid) -> np.ndarray:
    (ax, ay), strength_a, pxa, pya = one
    (bx, by), strength_b, pxb, pyb = other
    length = math.hypot(bx - ax, by - ay)
    if length < 1e-6:
        return np.zeros(grid.shape, np.float32)
    ux, uy = (bx - ax) / length, (by - ay) / length
    # Half-width of each implant across the joining line; the band is as wide as the narrower one.
    half_a = float(np.max(np.abs((pxa - ax) * -uy + (pya - ay) * ux)))
    half_b = float(np.max(np.abs((pxb - bx) * -uy + (pyb - by) * ux)))
    width = max(min(half_a, half_b), 1.0)
    dx = grid.x[None, :] - ax
    dy = grid.y[:, None] - ay
    along = dx * ux + dy * uy
    across = -dx * uy + dy * ux
    beyond = np.maximum(-along, 0.0) + np.maximum(along - length, 0.0)
    profile = np.exp(-0.5 * (across / (0.6 * width)) ** 2) * (40.0 / (beyond + 40.0))
    return (-_BETWEEN_HU * math.sqrt(strength_a * strength_b) * profile).astype(np.float32)


def to_stored_hu(hu: np.ndarray) -> np.ndarray:
    """Round to integer HU in the 12-bit range (int16)."""
    return np.clip(np.rint(hu), HU_MIN, HU_MAX).astype(np.int16)
