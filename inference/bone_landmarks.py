"""Landmarks from bone labels: iliac crest top, pelvis bottom (ischial tuberosity), femoral head top and centre.

One definition, used in two places:

* the real labelled CT (`sarcoscreen.inference.labelled_ct`): the landmarks of the manual annotation, the reference
  the real-CT benchmark and `inference.muscle_extents` measure against;
* an engine's own label map of catalogue values (`landmarks_from_labels`): the ``bayesian-unet`` engine labels the
  hip bones and femora but finds no landmarks of its own, so measurement could neither bound the upper gluteal
  group nor tell a muscle it did not find from one outside the scan.

Definitions (on one side's masks; ``superior`` is patient z, head +):

* **iliac crest top**: the highest slice holding the side's pelvis (hip bone) label;
* **pelvis bottom**: the lowest slice holding it - the ischial tuberosity, which engines call
  ``ischial_tuberosity`` (`engines.base.Landmark`);
* **femoral head top**: the highest slice holding the side's femur label;
* **femoral head centre**: the maximum of the 3-D Euclidean distance transform (in mm) of the femur label within
  `HEAD_SEARCH_MM` of its top: the head is the thickest part of the upper femur; the maximum is the head's radius
  (18.5-18.8 mm on Pelvic-Ref-002's annotation, drawn inside the cortex; 22-23 mm on Pelvic-Ref-003's manual
  contours - `labelled_ct`).

How sure an engine's landmark is (`Certainty`), from its own bone labels only:

* a landmark whose bone touches the scan's end on that side is **left out**: the highest slice of a femur cut by
  the scan's first slice is where the scan starts, not the femoral head top; so is a femoral head centre within
  the head's radius (plus a slice) of a scan end that cuts the femur, where the cut face may stand in for the head's
  surface;
* **found** otherwise: found by the definition above, nothing disagrees; never *confirmed*, because nothing
  independent of the engine's own segmentation checks it;
* **uncertain** when the bone label is in pieces (pieces besides the largest 3-D connected one hold more than
  `FRAGMENT_FRACTION` of the side's bone voxels: the landmark is taken from the largest piece), when the thickest
  part of the femur top is thinner than `MIN_HEAD_RADIUS_MM` (no head-shaped ball), or when the two sides' levels
  of the same landmark differ by more than `SIDE_DIFFERENCE_MM`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from sarcoscreen.inference.catalogue import CATALOGUE, Side
from sarcoscreen.inference.engines.base import Certainty, Landmark
from sarcoscreen.inference.volume import Volume

__all__ = [
    "ENGINE_NAMES",
    "FRAGMENT_FRACTION",
    "HEAD_SEARCH_MM",
    "MIN_HEAD_RADIUS_MM",
    "SIDE_DIFFERENCE_MM",
    "BoneLandmark",
    "bone_landmarks",
    "landmarks_from_labels",
]

HEAD_SEARCH_MM = 60.0
"""How far below the femur label's top the femoral head centre is looked for (the head and neck of an adult femur
lie within it; the definition of `labelled_ct` since the real-CT benchmark was written)."""
_TOLERANCE_MM = 1e-3

FRAGMENT_FRACTION = 0.05
"""A bone label whose pieces other than the largest hold more than this fraction of its voxels is fragmented: its
landmarks are uncertain. A bone is one piece; a few stray voxels (well under 5 %) are the usual noise of a
slice-wise segmentation, a missed slice through the bone splits it into large pieces."""
MIN_HEAD_RADIUS_MM = 15.0
"""A femoral head centre whose distance-transform radius is below this is uncertain: the femoral heads of the
references measure 18.5-18.8 mm (annotation, drawn inside the cortex) and 22-23 mm (manual contours); the femoral
shaft is thinner, so a smaller maximum means the label's top holds no head."""
SIDE_DIFFERENCE_MM = 20.0
"""Left and right levels of one landmark further apart than this make both uncertain: on the three annotated
pelvic CTs (Pelvic-Ref-001, 002, 004) the two sides differ by at most 3 mm (iliac crest top, pelvis bottom) and 6 mm
(femoral head top and centre) - `inference.muscle_extents`, 'Where the numbers come from'."""

ENGINE_NAMES = {"iliac_crest": "iliac_crest", "pelvis_bottom": "ischial_tuberosity",
                "femoral_head_top": "femoral_head_top", "femoral_head": "femoral_head"}
"""`bone_landmarks` names -> the names engines report (`engines.base.Landmark.name`)."""

_DESCRIPTIONS = {"iliac_crest": "top of the iliac crest", "ischial_tuberosity": "lowest point of the ischial "
                 "tuberosity (bottom of the hip bone)", "femoral_head_top": "top of the femoral head",
                 "femoral_head": "centre of the femoral head"}


@dataclass(frozen=True)
class BoneLandmark:
    """A landmark of one side found on bone masks (`bone_landmarks`)."""

    name: str
    """``iliac_crest`` (top), ``pelvis_bottom``, ``femoral_head_top`` or ``femoral_head`` (centre)."""
    slice_index: int
    method: str
    radius_mm: float | None = None
    """For the femoral head centre: the head's radius (the distance transform's maximum)."""


def bone_landmarks(femur: np.ndarray | None, pelvis: np.ndarray | None, superior_mm: np.ndarray,
                   spacing: tuple[float, float, float], *, femur_label: str = "the femur label",
                   pelvis_label: str = "the pelvis label") -> tuple[BoneLandmark, ...]:
    """The landmarks of one side from its femur and pelvis masks (``(slices, rows, columns)`` booleans; either may
    be ``None``), in the order crest top, pelvis bottom, femoral head top, femoral head centre - each only when its
    bone has voxels. `superior_mm`: patient z of every slice; `spacing`: (slice, row, column) mm. The labels' names
    go into the methods' words."""
    found: list[BoneLandmark] = []
    if pelvis is not None and pelvis.any():
        ks = np.nonzero(pelvis.any(axis=(1, 2)))[0]
        found.append(BoneLandmark("iliac_crest", _extreme(ks, superior_mm, highest=True),
                                  f"highest slice of {pelvis_label}"))
        found.append(BoneLandmark("pelvis_bottom", _extreme(ks, superior_mm, highest=False),
                                  f"lowest slice of {pelvis_label} (ischial tuberosity)"))
    if femur is not None and femur.any():
        ks = np.nonzero(femur.any(axis=(1, 2)))[0]
        top = _extreme(ks, superior_mm, highest=True)
        found.append(BoneLandmark("femoral_head_top", top, f"highest slice of {femur_label}"))
        centre, radius = _head_centre(femur, top, superior_mm, spacing)
        found.append(BoneLandmark("femoral_head", centre, f"maximum of the distance transform of {femur_label} "
                                  f"within {HEAD_SEARCH_MM:g} mm of its top", radius))
    return tuple(found)


def _extreme(ks: np.ndarray, superior_mm: np.ndarray, *, highest: bool) -> int:
    z = superior_mm[ks]
    return int(ks[np.argmax(z)] if highest else ks[np.argmin(z)])


def _head_centre(femur: np.ndarray, top: int, superior_mm: np.ndarray,
                 spacing: tuple[float, float, float]) -> tuple[int, float]:
    """Slice of the femoral head centre and the head's radius (mm)."""
    near_top = superior_mm >= superior_mm[top] - HEAD_SEARCH_MM - _TOLERANCE_MM
    ks = np.nonzero(near_top & femur.any(axis=(1, 2)))[0]
    k0, k1 = int(ks.min()), int(ks.max()) + 1
    rows = np.nonzero(femur[k0:k1].any(axis=(0, 2)))[0]
    cols = np.nonzero(femur[k0:k1].any(axis=(0, 1)))[0]
    box = femur[k0:k1, rows.min():rows.max() + 1, cols.min():cols.max() + 1] & near_top[k0:k1, None, None]
    distance = ndimage.distance_transform_edt(np.pad(box, 1), sampling=spacing)
    k = int(np.unravel_index(int(np.argmax(distance)), distance.shape)[0]) - 1 + k0
    return k, float(distance.max())


def _largest_piece(mask: np.ndarray) -> tuple[np.ndarray, float]:
    """The largest 3-D connected piece of `mask` (26-connected) and the fraction of the voxels outside it; labelled
    inside the mask's bounding box only, so a long series costs no full-size label array."""
    if not mask.any():
        return mask, 0.0
    box = tuple(slice(int(np.flatnonzero(mask.any(axis=other)).min()), int(np.flatnonzero(mask.any(axis=other)).max())
                      + 1) for other in ((1, 2), (0, 2), (0, 1)))
    pieces, n = ndimage.label(mask[box], structure=np.ones((3, 3, 3), bool))
    if n <= 1:
        return mask, 0.0
    sizes = np.bincount(pieces.ravel())[1:]
    largest = int(np.argmax(sizes)) + 1
    out = np.zeros_like(mask)
    out[box] = pieces == largest
    return out, float(1.0 - sizes[largest - 1] / sizes.sum())


_SLAB = 32


def _bone_mask(labels: np.ndarray, value: int) -> np.ndarray:
    """``labels == value`` on every slice but only the rows and columns of the bone's in-plane bounding box (slice
    indices unchanged): found slab by slab, so a long series never holds a full-size mask."""
    rows = np.zeros(labels.shape[1], bool)
    columns = np.zeros(labels.shape[2], bool)
    for start in range(0, labels.shape[0], _SLAB):
        hit = labels[start:start + _SLAB] == value
        rows |= hit.any(axis=(0, 2))
        columns |= hit.any(axis=(0, 1))
    if not rows.any():
        return np.zeros((labels.shape[0], 0, 0), bool)
    r, c = np.flatnonzero(rows), np.flatnonzero(columns)
    return labels[:, r.min():r.max() + 1, c.min():c.max() + 1] == value


def landmarks_from_labels(volume: Volume, labels: np.ndarray) -> tuple[Landmark, ...]:
    """The landmarks of an axial `volume` from its label map of catalogue values (an engine's hip bone and femur
    labels per side), with method and `Certainty` (see the module docstring). Landmarks whose bone touches the
    scan's end where the landmark would be are left out; no hip bone or femur labels: none."""
    if labels.shape != volume.shape:
        raise ValueError(f"labels {labels.shape} and volume {volume.shape} differ in shape")
    superior = volume.positions[:, 2].astype(np.float64)
    along_normal = volume.slice_z_mm()
    head_end = int(np.argmax(superior))
    foot_end = int(np.argmin(superior))
    per_side: dict[Side, list[Landmark]] = {}
    for side in (Side.RIGHT, Side.LEFT):
        femur, femur_rest = _largest_piece(_bone_mask(labels, CATALOGUE.structure("femur", side).label))
        pelvis, pelvis_rest = _largest_piece(_bone_mask(labels, CATALOGUE.structure("hip_bone", side).label))
        out: list[Landmark] = []
        for found in bone_landmarks(femur, pelvis, superior, volume.spacing,
                                    femur_label="the engine's femur label",
                                    pelvis_label="the engine's hip bone label"):
            on_pelvis = found.name in ("iliac_crest", "pelvis_bottom")
            bone, rest = (pelvis, pelvis_rest) if on_pelvis else (femur, femur_rest)
            # The scan's end the landmark is near: a bone running beyond it there has its landmark outside.
            beyond = bool(bone[foot_end if found.name == "pelvis_bottom" else head_end].any())
            if found.name == "femoral_head" and bone[foot_end].any():
                # The scan's end cuts the femur: within the head's radius of it, the cut face and not the head's
                # surface may be what limits the distance transform, so the thickest part may lie below the scan.
                gap = abs(float(superior[found.slice_index] - superior[foot_end]))
                beyond = beyond or gap <= (found.radius_mm or 0.0) + volume.spacing[0]
            if beyond:
                continue  # the bone runs beyond the scan where the landmark would be: not in the scan
            notes = []
            if rest > FRAGMENT_FRACTION:
                notes.append(f"the {'hip bone' if on_pelvis else 'femur'} label is in pieces: "
                             f"{100 * rest:.0f} % lie outside its largest piece")
            if found.radius_mm is not None and found.radius_mm < MIN_HEAD_RADIUS_MM:
                notes.append(f"the thickest part of the femur's top is {found.radius_mm:.1f} mm in radius, thinner "
                             f"than a femoral head ({MIN_HEAD_RADIUS_MM:g} mm)")
            name = ENGINE_NAMES[found.name]
            k = found.slice_index
            out.append(Landmark(name=name, slice_index=k, z_mm=float(along_normal[k]), side=side,
                                description=_DESCRIPTIONS[name], method=found.method,
                                certainty=Certainty.UNCERTAIN if notes else Certainty.FOUND, note="; ".join(notes)))
        per_side[side] = out
    _check_sides(per_side, superior)
    return tuple(per_side[Side.RIGHT]) + tuple(per_side[Side.LEFT])


def _check_sides(per_side: dict[Side, list[Landmark]], superior: np.ndarray) -> None:
    """Both sides' level of a landmark more than `SIDE_DIFFERENCE_MM` apart: both uncertain (in place)."""
    right = {lm.name: i for i, lm in enumerate(per_side[Side.RIGHT])}
    left = {lm.name: i for i, lm in enumerate(per_side[Side.LEFT])}
    for name in right.keys() & left.keys():
        a, b = per_side[Side.RIGHT][right[name]], per_side[Side.LEFT][left[name]]
        gap = abs(float(superior[a.slice_index] - superior[b.slice_index]))
        if gap <= SIDE_DIFFERENCE_MM:
            continue
        why = (f"the left and right {name.replace('_', ' ')} lie {gap:.0f} mm apart (more than "
               f"{SIDE_DIFFERENCE_MM:g} mm)")
        for side, index in ((Side.RIGHT, right[name]), (Side.LEFT, left[name])):
            lm = per_side[side][index]
            per_side[side][index] = Landmark(lm.name, lm.slice_index, lm.z_mm, lm.side, lm.description, lm.method,
                                             Certainty.UNCERTAIN, "; ".join(x for x in (lm.note, why) if x))
