"""Tissue HU on the annotation's own grid (before resampling, blur and noise), by the calibrated `tissue_model`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.special import ndtri

from sarcoscreen.inference.phantom.ct_values import smooth_field
from sarcoscreen.inference.phantom.realistic import tissue_model as tm
from sarcoscreen.inference.phantom.realistic.pelvic_organs import Organ

__all__ = ["Compartments", "compartments", "paint_slab"]


@dataclass(frozen=True, eq=False)
class Compartments:
    """Unlabelled body voxels split into skin, subcutaneous and interior (see `tissue_model`)."""

    skin: np.ndarray
    subcutaneous: np.ndarray
    interior: np.ndarray


def compartments(labels: np.ndarray, body: np.ndarray) -> Compartments:
    """Skin = the outer 2 mm of the body; interior = inside the per-slice closed hull of the labels (closing by
    15 px, holes filled); subcutaneous = the rest of the unlabelled body."""
    hull = np.zeros(body.shape, bool)
    square = np.ones((3, 3), bool)
    for k in range(labels.shape[0]):
        s = labels[k] > 0
        if s.any():
            hull[k] = ndimage.binary_fill_holes(ndimage.binary_closing(s, square, iterations=15))
    skin = body & ~ndimage.binary_erosion(body, np.ones((1, 3, 3), bool), iterations=2)
    free = body & (labels == 0)
    return Compartments(skin & free, free & ~hull & ~skin, free & hull & ~skin)



def paint_slab(labels: np.ndarray, comps: Compartments, organs: np.ndarray, z_mm: np.ndarray, x_mm: np.ndarray,
               y_mm: np.ndarray, fat_fraction: Mapping[int, float], seed: int, contrast: bool,
               muscle_offset_hu: float = 0.0, fat_offset_hu: float = 0.0, bowel_above_z: float | None = None,
               ) -> np.ndarray:
    """float32 HU of the slab (air outside the body)."""
    hu = np.full(labels.shape, -1000.0, np.float32)
    fat = tm.FAT_HU + fat_offset_hu
    lean = tm.LEAN_MUSCLE_HU + muscle_offset_hu + (tm.CONTRAST_HU["muscle"] if contrast else 0.0)
    lut_f = np.zeros(256, np.float32)
    for label, value in fat_fraction.items():
        lut_f[label] = value
    q = {name: (ndtri(c.fat), ndtri(c.fat + c.soft)) for name, c in tm.COMPARTMENTS_002.items()}
    bands = np.asarray(tm.BONE_BANDS_MM)
    for k, z in enumerate(z_mm.tolist()):
        lab = labels[k]
        sl = hu[k]
        f_texture = smooth_field(x_mm, y_mm, z, seed, 11, (3.0, 3.0, 6.0))
        # muscles: two-component mixture, per-voxel fat fraction around the muscle's mean
        muscle = lab >= 5
        if muscle.any():
            phi = np.clip(lut_f[lab[muscle]] + tm.FAT_FRACTION_SPREAD * f_texture[muscle], 0.0, 1.0)
            sl[muscle] = lean * (1.0 - phi) + fat * phi
        # unlabelled compartments: fat, soft tissue, dense by quantiles of one field
        mix = smooth_field(x_mm, y_mm, z, seed, 12, (2.5, 2.5, 6.0))
        for name, where in (("subcutaneous", comps.subcutaneous[k]), ("interior", comps.interior[k])):
            c = tm.COMPARTMENTS_002[name]
            lo, hi = q[name]
            v = mix[where]
            sl[where] = np.where(v < lo, fat, np.where(v < hi, lean, c.dense_hu))
        if bowel_above_z is not None and z > bowel_above_z:
            lo, hi = q["interior"]
            soft = comps.interior[k] & (mix >= lo) & (mix < hi) & (organs[k] == 0)
            gas_field = smooth_field(x_mm, y_mm, z, seed, 13, (4.0, 4.0, 6.0))
            wall = tm.ORGAN_HU["bowel_wall"] + (tm.CONTRAST_HU["bowel_wall"] if contrast else 0.0)
            sl[soft] = np.where(f_texture[soft] > 0.0, wall, tm.ORGAN_HU["bowel_content"])
            sl[soft & (gas_field > ndtri(1.0 - 0.15))] = tm.ORGAN_HU["gas"]
        sl[comps.skin[k]] = tm.ORGAN_HU["skin"]
        # bones: median and SD of the distance band from the label edge
        for label, profile in tm.BONE_PROFILE_002.items():
            bone = lab == label
            if not bone.any():
                continue
            dist = ndimage.distance_transform_edt(bone)[bone]
            band = np.clip(np.searchsorted(bands, dist, side="right") - 1, 0, len(bands) - 1)
            med = np.array([p[0] for p in profile], np.float32)[band]
            sd = np.array([p[1] for p in profile], np.float32)[band]
            sl[bone] = med + 0.8 * sd * smooth_field(x_mm, y_mm, z, seed, 20 + label, (2.0, 2.0, 6.0))[bone]
        _organs(sl, organs[k], x_mm, y_mm, z, seed, contrast)
    return hu


def _organs(sl: np.ndarray, organ: np.ndarray, x: np.ndarray, y: np.ndarray, z: float, seed: int,
            contrast: bool) -> None:
    if not organ.any():
        return
    o = tm.ORGAN_HU
    enhanced = tm.CONTRAST_HU["organ"] if contrast else 0.0
    sl[organ == Organ.BLADDER] = o["bladder"]
    sl[organ == Organ.PROSTATE] = o["prostate"] + enhanced
    sl[organ == Organ.UTERUS] = o["uterus"] + enhanced
    sl[organ == Organ.ARTERY] = tm.CONTRAST_HU["artery"] if contrast else o["artery"]
    sl[organ == Organ.VEIN] = tm.CONTRAST_HU["vein"] if contrast else o["vein"]
    rectum = organ == Organ.RECTUM
    if rectum.any():
        gas = smooth_field(x, y, z, seed, 14, (6.0, 6.0, 9.0)) > ndtri(1.0 - tm.RECTUM_GAS_FRACTION)
        sl[rectum] = np.where(gas[rectum], o["gas"], o["rectum_content"])
