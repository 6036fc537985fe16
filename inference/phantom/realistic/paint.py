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

__all__ = ["INTERMUSCULAR_MM", "ORAL_CONTRAST_HU", "SEPTUM_HU", "Compartments", "compartments", "paint_slab"]

INTERMUSCULAR_MM = 3.0
"""Interior voxels this close to a labelled structure are painted as fat planes, not as the cavity's content."""
SEPTUM_HU = 10.0
"""Fibrous septa in fat, before blur (assumed: thin fibrous tissue, 1-2 mm, partial-volumed with fat)."""
ORAL_CONTRAST_HU = 250.0
"""Bowel content with positive oral contrast (assumed; the real 002 series shows such loops)."""


@dataclass(frozen=True, eq=False)
class Compartments:
    """Unlabelled body voxels split into skin, subcutaneous and interior (see `tissue_model`)."""

    skin: np.ndarray
    subcutaneous: np.ndarray
    interior: np.ndarray


def compartments(labels: np.ndarray, body: np.ndarray) -> Compartments:
    """Skin = the outer 2 mm of the body; interior = inside the per-slice closed hull of the labels (closing by
    15 px, holes filled) or between labelled pixels along both the row and the column (`_spans`: the abdominal
    cavity between the trunk muscles); subcutaneous = the rest of the unlabelled body."""
    hull = np.zeros(body.shape, bool)
    square = np.ones((3, 3), bool)
    for k in range(labels.shape[0]):
        s = labels[k] > 0
        if s.any():
            hull[k] = ndimage.binary_fill_holes(ndimage.binary_closing(s, square, iterations=15)) | _spans(s)
    skin = body & ~ndimage.binary_erosion(body, np.ones((1, 3, 3), bool), iterations=2)
    free = body & (labels == 0)
    return Compartments(skin & free, free & ~hull & ~skin, free & hull & ~skin)



def _spans(mask: np.ndarray) -> np.ndarray:
    """Pixels that lie between two pixels of `mask` along their row and also along their column."""
    def between(m: np.ndarray, axis: int) -> np.ndarray:
        forward = np.maximum.accumulate(m, axis=axis)
        backward = np.flip(np.maximum.accumulate(np.flip(m, axis=axis), axis=axis), axis=axis)
        return forward & backward

    return between(mask, 0) & between(mask, 1)


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
        # unlabelled compartments (see `_paint_unlabelled`)
        _paint_unlabelled(sl, lab, comps.subcutaneous[k], comps.interior[k] & (organs[k] == 0), x_mm, y_mm, z,
                          seed, fat, contrast, bowel=bowel_above_z is not None and z > bowel_above_z)
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
            sl[bone] = med + 0.7 * sd * smooth_field(x_mm, y_mm, z, seed, 20 + label, (3.0, 3.0, 6.0))[bone]
        _organs(sl, organs[k], x_mm, y_mm, z, seed, contrast)
    return hu


def _paint_unlabelled(sl: np.ndarray, lab: np.ndarray, subcutaneous: np.ndarray, interior: np.ndarray,
                      x: np.ndarray, y: np.ndarray, z: float, seed: int, fat: float, contrast: bool,
                      bowel: bool) -> None:
    """Unlabelled body voxels of one slice, with the spatial structure of real CT rather than voxel speckle.

    * Subcutaneous fat, and interior voxels within `INTERMUSCULAR_MM` of a labelled structure (the fat planes
      between muscles, retroperitoneal fat along psoas and iliacus): fat crossed by thin fibrous septa (the
      zero-crossings of a 6 mm random field, about 8 % of the area, `SEPTUM_HU`).
    * The rest of the interior (the abdominal and pelvic cavity), above the bowel level: bowel loops (the upper
      55 % of a 9 mm random field) with a 2 mm wall (`bowel_wall`), content that is fluid, gas (15 %) or - in a third of
      the series - positive oral contrast (20 %, `ORAL_CONTRAST_HU`), chosen by a coarse 25 mm field; between loops,
      mesenteric fat with small vessels. Below the bowel level: fat, soft tissue (the pelvic floor, vessels,
      seminal vesicles) and dense voxels in 002's measured interior proportions, in 5 mm blobs (organs are painted
      over it).

    The measured composition of 002's unlabelled voxels (`tissue_model.COMPARTMENTS_002`: subcutaneous 77 % fat,
    interior 43 % fat / 49 % soft / 9 % dense) is met only roughly: those fractions include partial volume at every
    boundary, which here comes from the PSF and slice profile instead of painted speckle."""
    px = float(x[1] - x[0]) if len(x) > 1 else 1.0
    distance = ndimage.distance_transform_edt(lab == 0) * px
    fatty = subcutaneous | (interior & (distance <= INTERMUSCULAR_MM))
    cavity = interior & ~fatty
    septa = np.abs(smooth_field(x, y, z, seed, 31, (6.0, 6.0, 9.0))) < 0.1
    sl[fatty] = np.where(septa[fatty], SEPTUM_HU, fat)
    if not cavity.any():
        return
    if not bowel:
        # the pelvic cavity below the bowel: pelvic floor, vessels, seminal vesicles and fat in 002's proportions
        c = tm.COMPARTMENTS_002["interior"]
        mix = smooth_field(x, y, z, seed, 12, (5.0, 5.0, 6.0))[cavity]
        lean = tm.LEAN_MUSCLE_HU + (tm.CONTRAST_HU["muscle"] if contrast else 0.0)
        sl[cavity] = np.where(mix < ndtri(c.fat), fat, np.where(mix < ndtri(c.fat + c.soft), lean, c.dense_hu))
        return
    loops = smooth_field(x, y, z, seed, 32, (9.0, 9.0, 12.0)) > ndtri(0.45)
    loops &= cavity
    content = ndimage.binary_erosion(loops, np.ones((3, 3), bool), iterations=max(1, round(2.0 / px)))
    wall = loops & ~content
    kind = smooth_field(x, y, z, seed, 33, (25.0, 25.0, 30.0))
    oral = np.random.default_rng([seed, 0x0A1]).random() < 1.0 / 3.0
    o = tm.ORGAN_HU
    values = np.where(kind > ndtri(0.85), o["gas"],
                      np.where((kind < ndtri(0.2)) & oral, ORAL_CONTRAST_HU, o["bowel_content"]))
    sl[content] = values[content]
    sl[wall] = o["bowel_wall"] + (tm.CONTRAST_HU["bowel_wall"] if contrast else 0.0)
    mesentery = cavity & ~loops
    vessel = smooth_field(x, y, z, seed, 34, (3.0, 3.0, 9.0)) > ndtri(0.985)
    vessel_hu = tm.CONTRAST_HU["artery"] if contrast else o["artery"]
    sl[mesentery] = np.where(vessel[mesentery], vessel_hu, np.where(septa[mesentery], SEPTUM_HU, fat))


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
