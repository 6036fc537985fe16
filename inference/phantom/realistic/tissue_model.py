"""CT numbers of the tissues a real label map implies, calibrated on the real Pelvic-Ref-002 and -003 series.

Every value is either **measured** (on the real CT, by ``benchmarks/phantom_calibration.py``, which prints them
again) or an **assumption** with its source. Measured, 002 = Pelvic-Ref-002 (its own label map and body mask),
003 = Pelvic-Ref-003 (its manual RT structure set, contours eroded by 2 mm):

* fat -104 HU: 002, median of 7x7-pixel local means of subcutaneous fat (003: -98);
* image noise 7.1 HU at 1 x 1 x 3 mm: 002, median local SD in the same fat (003: 7.6);
* lean muscle 50 HU: 002, the highest per-muscle median HU (iliacus), the leanest labelled muscle;
* per-muscle fat fraction: ``(lean - median_m) / (lean - fat)`` from 002's per-muscle medians;
* bone by in-plane distance from the label edge (bands 0.5-1.5 ... >8.5 mm): 002's median and SD per bone label;
* unlabelled body voxels in two compartments (subcutaneous: outside the closed hull of the labels; interior:
  inside it, organ contours excluded): 002's fractions of fat (-400..-50 HU), soft tissue (-50..80) and dense
  (>80 HU, median 164 / 173 HU) voxels. Measured with the hull before the abdominal cavity between the trunk
  muscles joined the interior (`paint.compartments`, `_spans`); with today's compartments real 002 gives 0.84 /
  0.15 / 0.011 (subcutaneous) and 0.55 / 0.35 / 0.07 (interior) (`benchmarks/phantom_calibration.py`). `paint`
  uses the interior fractions only for the pelvic cavity below the bowel; elsewhere it paints structure (fat
  planes, septa, bowel loops) rather than these fractions;
* bladder -2 HU, prostate 38 HU (003; 002: 16 and 43); rectum gas fraction 0.31 (003; 002: 0.18), its non-gas
  content 17 HU (003; 002: 13).

Assumptions: unenhanced blood 40 HU and bowel wall 45 HU, bowel content 22 HU, and the contrast-enhanced values
(arteries 250, veins 180 HU, organs +50, muscle +8 HU): `phantom.tissues` (literature values listed there);
uterus = prostate's value; skin 35 HU (`phantom.tissues`); metal 3071 HU (the 12-bit ceiling).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

__all__ = [
    "BONE_PROFILE_002",
    "COMPARTMENTS_002",
    "FAT_HU",
    "LEAN_MUSCLE_HU",
    "MUSCLE_FAT_FRACTION_002",
    "MUSCLE_MEDIAN_002",
    "NOISE_HU_REF",
    "ORGAN_HU",
    "Compartment",
    "muscle_fat_fraction",
]

FAT_HU = -104.0
NOISE_HU_REF = 7.1
NOISE_REF_VOXEL_MM3 = 1.0 * 1.0 * 3.0
LEAN_MUSCLE_HU = 50.0
FAT_FRACTION_SPREAD = 0.12
"""SD of the per-voxel fat fraction around a muscle's mean: fitted so that the simulated per-muscle SDs of 002
come near the real ones (pooled real SD ~24 HU, of which ~7 HU noise)."""

MUSCLE_MEDIAN_002 = MappingProxyType({
    5: 9.0, 6: 22.0, 7: 33.0, 8: 50.0, 9: 35.0, 10: 35.0, 11: 46.0, 12: 39.0, 13: 35.0, 14: 41.0, 15: 31.0,
    16: 25.0, 17: 44.0, 18: 29.0, 19: 38.0, 20: 42.0, 21: 21.0, 22: 41.0, 23: 46.0, 24: 21.0, 25: 12.0,
    26: -3.0, 27: -13.0, 28: 17.0,
})
"""Median HU per annotation muscle label on the real 002 CT (measured)."""


def muscle_fat_fraction(median_hu: float) -> float:
    """The mean fat fraction that gives a muscle this median HU in the two-component model."""
    return min(0.9, max(0.0, (LEAN_MUSCLE_HU - median_hu) / (LEAN_MUSCLE_HU - FAT_HU)))


MUSCLE_FAT_FRACTION_002 = MappingProxyType({k: muscle_fat_fraction(v) for k, v in MUSCLE_MEDIAN_002.items()})

BONE_BANDS_MM = (0.5, 1.5, 2.5, 3.5, 5.5, 8.5)
"""Lower edges of the in-plane distance bands from the bone label's edge (the last band is open)."""
BONE_PROFILE_002 = MappingProxyType({
    # label: ((median, SD) per band), measured on 002
    1: ((338, 156), (466, 260), (375, 309), (205, 258), (117, 156), (125, 138)),
    2: ((413, 247), (937, 422), (1194, 526), (1004, 571), (360, 527), (158, 214)),
    3: ((130, 130), (231, 171), (250, 212), (197, 252), (89, 217), (24, 124)),
    4: ((121, 104), (184, 112), (194, 128), (168, 144), (157, 153), (139, 135)),
})


@dataclass(frozen=True)
class Compartment:
    """Composition of unlabelled body voxels in one compartment (fractions of its voxels, measured on 002)."""

    fat: float
    soft: float
    dense: float
    dense_hu: float


COMPARTMENTS_002 = MappingProxyType({
    # gas (1.3 % / 1.9 %) is left to the explicit bowel and rectum; its share goes to fat.
    "subcutaneous": Compartment(fat=0.754 + 0.013, soft=0.203, dense=0.031, dense_hu=164.0),
    "interior": Compartment(fat=0.406 + 0.019, soft=0.486, dense=0.088, dense_hu=173.0),
})

ORGAN_HU = MappingProxyType({
    "bladder": -2.0, "prostate": 38.0, "uterus": 38.0, "rectum_content": 17.0, "gas": -1000.0,
    "bowel_wall": 45.0, "bowel_content": 22.0, "artery": 40.0, "vein": 40.0, "skin": 35.0, "metal": 3071.0,
})
RECTUM_GAS_FRACTION = 0.31
CONTRAST_HU = MappingProxyType({"artery": 250.0, "vein": 180.0, "organ": 50.0, "muscle": 8.0, "bowel_wall": 40.0})
