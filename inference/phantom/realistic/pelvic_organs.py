"""The organs a muscle-and-bone annotation leaves out, placed inside the pelvic ring as simple shapes.

Levels come from the annotation's own landmarks (`source.AnnotationSource`): femoral head centre and top, pelvis
bottom (ischial tuberosity). Per slice, the *cavity* is the unlabelled interior (inside the closed hull of the
labels) within 70 mm of the midline; the organs are ellipses placed in it and clipped to it, so they never
overwrite a labelled voxel and the label map stays the ground truth:

* bladder: anterior in the cavity, from 10 mm above the pelvis bottom to 40 mm above the head centre;
* rectum: posterior, from 20 mm below the pelvis bottom to 50 mm above the head centre, content with gas;
* prostate (men) from 10 mm below to 30 mm above the pelvis bottom, uterus (women) from the head centre up 60 mm,
  between the bladder and the rectum;
* vessels (external iliac / femoral artery and vein per side): anterior-medial of the psoas major, below it
  medial-posterior of the sartorius;
* bowel with gas: above 50 mm over the head centre, the interior's soft-tissue voxels are bowel (`simulate`).

The sizes are assumptions (typical adult dimensions), not measurements.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

__all__ = ["Organ", "OrganLevels", "place_organs"]


class Organ(IntEnum):
    NONE = 0
    BLADDER = 1
    RECTUM = 2
    PROSTATE = 3
    UTERUS = 4
    ARTERY = 5
    VEIN = 6


@dataclass(frozen=True)
class OrganLevels:
    head_centre: float
    pelvis_bottom: float


def _ellipse(xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    return ((xx - cx) / max(rx, 0.1)) ** 2 + ((yy - cy) / max(ry, 0.1)) ** 2 <= 1.0


def _taper(z: float, bottom: float, top: float) -> float:
    """0 outside [bottom, top], rising like a half sine to 1 in the middle."""
    if not bottom < z < top:
        return 0.0
    return float(np.sin(np.pi * (z - bottom) / (top - bottom)) ** 0.5)


def place_organs(labels: np.ndarray, interior: np.ndarray, z_mm: np.ndarray, x_mm: np.ndarray, y_mm: np.ndarray,
                 midline_x: float, levels: OrganLevels, sex: str) -> np.ndarray:
    """Organ codes (uint8 `Organ`) on the slab: (slices, rows, columns); only where `interior` (unlabelled) is."""
    out = np.zeros(labels.shape, np.uint8)
    xx, yy = np.meshgrid(x_mm, y_mm)
    near_mid = np.abs(xx - midline_x) < 70.0
    hc, pb = levels.head_centre, levels.pelvis_bottom
    for k, z in enumerate(z_mm.tolist()):
        cavity = interior[k] & near_mid
        organ = out[k]
        if cavity.sum() > 200:
            ys = yy[cavity]
            front, back = float(np.percentile(ys, 3)), float(np.percentile(ys, 97))
            depth = back - front
            t = _taper(z, pb + 10.0, hc + 40.0)
            if t > 0:
                ry = min(35.0, 0.3 * depth) * t
                organ[cavity & _ellipse(xx, yy, midline_x, front + ry + 4.0, 45.0 * t, ry)] = Organ.BLADDER
            t = _taper(z, pb - 20.0, hc + 50.0)
            if t > 0:
                r = 17.0 * max(t, 0.5)
                free = cavity & (organ == 0)
                organ[free & _ellipse(xx, yy, midline_x, back - r - 6.0, r * 1.2, r)] = Organ.RECTUM
            if sex == "M":
                t = _taper(z, pb - 10.0, pb + 30.0)
                centre, rx, ry = 0.55, 18.0 * t, 15.0 * t
            else:
                t = _taper(z, hc, hc + 60.0)
                centre, rx, ry = 0.5, 28.0 * t, 18.0 * t
            if t > 0:
                free = cavity & (organ == 0)
                kind = Organ.PROSTATE if sex == "M" else Organ.UTERUS
                organ[free & _ellipse(xx, yy, midline_x, front + centre * depth, rx, ry)] = kind
        _vessels(labels[k], organ, xx, yy, midline_x)
    return out


def _vessels(labels: np.ndarray, organ: np.ndarray, xx: np.ndarray, yy: np.ndarray,
             midline_x: float) -> None:
    for sign in (-1.0, 1.0):  # -1: right (x < midline), +1: left
        side = (xx - midline_x) * sign > 0
        for label, (dx, dy) in ((13, (-18.0, -14.0)), (18, (-12.0, 14.0))):
            muscle = (labels == label) & side
            if muscle.sum() < 30:
                continue
            cx, cy = float(xx[muscle].mean()), float(yy[muscle].mean())
            ax, ay = cx + sign * dx, cy + dy
            unlabelled = (labels == 0) & (organ == 0)
            organ[unlabelled & _ellipse(xx, yy, ax, ay, 4.5, 4.5)] = Organ.ARTERY
            organ[unlabelled & (organ == 0) & _ellipse(xx, yy, ax + sign * -10.0, ay + 2.0, 6.0, 5.0)] = Organ.VEIN
            break
