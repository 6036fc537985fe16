"""The femoral heads, found where the pelvis holds them - whatever part of the femur the scan holds below.

An abdomen-pelvis CT often ends at or just below the lesser trochanters, and may end at the femoral heads; a hip
may carry a prosthesis. So the heads are found from the hip joints themselves, not by following a femoral shaft up:

1. **Candidates** (working grid, slices thinned to about 4 mm): the bone mask closed and filled in-plane, its 3-D
   distance transform on each side of the midline, and the local maxima of at least 12 mm - the thickest bone of
   a hip joint is the head in its socket. The femoral heads are the pair of candidates, one per side, at nearly
   the same level (within 40 mm), 120-280 mm apart, each with the ilium above it (bone lateral of half the
   head's distance from the midline in most slices up to 60 mm above) and bone at the midline within 60 mm of its
   level (sacrum, coccyx or pubic symphysis). Humeral heads are farther apart and have no ilium above; knee
   condyles have no pelvis at the midline.
2. **Refinement** at full resolution in a box of about 100 x 100 x 120 mm around each candidate: a spherical Hough
   transform of the bone edges (radii 21-30 mm: adult femoral heads of 42-56 mm and the acetabular
   surface a few mm outside them). The convex surface of the head and the concave surface of the
   acetabulum vote for the same centre, so a head whose trabecular bone is faint (osteoporosis) is still found,
   and the thick supra-acetabular bone, which draws the distance transform upwards, does not decide.
3. **Implants**: where the box holds metal (> 2000 HU), the centre is the thickest point of the metal: the solid
   ball of a prosthetic head is thicker than its stem and the shell of an acetabular cup; streaks do not vote.

Each head carries its method, a score (the fraction of the sphere's surface that voted) and a `Certainty`:
``found`` when the refined centre lies near its candidate with enough support and, with both heads found, their
levels and radii agree; ``uncertain`` otherwise (the note says why). A femoral shaft followed up into the head
later makes it ``confirmed`` (`skeleton`).

Coordinates are those of the canonical view (`engines.orientation`): slice ``k`` head -> feet, then rows anterior
-> posterior, columns patient right -> left; on the working grid unless said otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from sarcoscreen.inference.catalogue import Side
from sarcoscreen.inference.engines.base import Certainty
from sarcoscreen.inference.engines.threshold.masks import (
    METAL_HU,
    WorkGrid,
    dilate_in_plane,
    erode_in_plane,
    fill_holes_in_plane,
)

__all__ = ["FemoralHead", "find_femoral_heads"]

_CANDIDATE_MIN_MM = 12.0
_PAIR_DZ_MM = 40.0
_PAIR_SEPARATION_MM = (120.0, 280.0)
_HOUGH_RADII_MM = np.arange(21.0, 31.0, 1.0)
_HOUGH_MIN_SCORE = 0.6
"""Minimum support (votes per 1000 mm^2 of sphere surface) for a refined head; below it the head is uncertain."""
_HOUGH_AGREE_MM = 32.0
"""The refined centre lies within this distance of its candidate (the thickest bone is drawn upwards by the bone
above the acetabulum: 18-24 mm on the real series)."""
_BOX_HALF_MM = (60.0, 50.0, 50.0)


@dataclass(frozen=True)
class FemoralHead:
    side: Side
    k: float
    """Slice of the centre (canonical, fractional)."""
    row: float
    col: float
    """Row and column of the centre on the working grid."""
    radius_mm: float
    score: float
    """Hough support; 0 for the candidate or metal method."""
    implant: bool
    method: str
    certainty: Certainty
    note: str = ""


@dataclass(frozen=True)
class _Candidate:
    side: Side
    k: int
    row: int
    col: int
    radius_mm: float


def find_femoral_heads(hu: np.ndarray, bone: np.ndarray, metal: np.ndarray, grid: WorkGrid,
                       midline: np.ndarray) -> dict[Side, FemoralHead]:
    """The femoral heads per side (absent sides are not in the dict). `hu` is the full-resolution canonical view,
    `bone` and `metal` the working-grid masks, `midline` the body's midline column per slice."""
    pair = _candidate_pair(bone, grid, midline)
    heads = _refine(hu, metal, grid, pair)
    # A head is a head only with a quarter of its radius below the centre in the scan: a scan ending at the
    # acetabular roof holds none.
    n = bone.shape[0]
    heads = {side: h for side, h in heads.items() if h.k + 0.25 * h.radius_mm / grid.spacing[0] <= n - 1}
    if len(heads) == 1:
        # One hip joint alone: the other may be beyond the scan's end (a scan ending inside the heads, where a
        # sphere in the acetabular roof can pass for a head) or missing; nothing confirms this one's level.
        (side, head), = heads.items()
        if head.certainty is Certainty.FOUND:
            heads[side] = replace(head, certainty=Certainty.UNCERTAIN,
                                  note="; ".join(x for x in (head.note, "the other hip joint was not found") if x))
    if len(heads) == 2:
        heads = _compare_sides(heads, grid)
    return heads


def _thinned(n: int, slice_mm: float) -> np.ndarray:
    step = max(1, round(4.0 / slice_mm))
    return np.arange(0, n, step)


def _candidate_pair(bone: np.ndarray, grid: WorkGrid, midline: np.ndarray) -> list[_Candidate]:
    """The femoral-head candidates (see module docstring), found on the working grid reduced again by two in-plane
    and thinned to about 4 mm between slices: a head of 40-55 mm is 5-7 pixels across there."""
    n = bone.shape[0]
    ks = _thinned(n, grid.spacing[0])
    rows, cols = bone.shape[1] // 2 * 2, bone.shape[2] // 2 * 2
    small = bone[ks, :rows, :cols].reshape(len(ks), rows // 2, 2, cols // 2, 2).any(axis=(2, 4))
    solid = fill_holes_in_plane(erode_in_plane(dilate_in_plane(small, 1), 1))
    step = ks[1] - ks[0] if len(ks) > 1 else 1
    sampling = (grid.spacing[0] * step, grid.spacing[1] * 2, grid.spacing[2] * 2)
    columns = np.arange(solid.shape[2])
    mid = float(np.median(midline)) / 2.0
    candidates: dict[Side, list[_Candidate]] = {}
    for side in (Side.RIGHT, Side.LEFT):
        clear = 30.0 / sampling[2]
        band = columns < mid - clear if side is Side.RIGHT else columns > mid + clear
        if not band.any():
            candidates[side] = []
            continue
        offset = int(np.flatnonzero(band)[0])
        box = solid[:, :, band]
        distance = ndimage.distance_transform_edt(box, sampling=sampling)
        peaks = (distance == ndimage.maximum_filter(distance, size=(3, 5, 5))) & (distance >= _CANDIDATE_MIN_MM)
        found = [
            _Candidate(side, int(ks[k]), 2 * int(r) + 1, 2 * (int(c) + offset) + 1, float(distance[k, r, c]))
            for k, r, c in np.argwhere(peaks)
        ]
        found.sort(key=lambda c: c.radius_mm, reverse=True)
        candidates[side] = [c for c in found[:12]
                            if _ilium_above(bone, c, grid, midline) and _pelvis_at_midline(bone, c, grid, midline)]
    best: tuple[float, list[_Candidate]] | None = None
    low, high = _PAIR_SEPARATION_MM
    for right in candidates[Side.RIGHT]:
        for left in candidates[Side.LEFT]:
            dz = abs(right.k - left.k) * grid.spacing[0]
            separation = (left.col - right.col) * grid.spacing[2]
            if dz > _PAIR_DZ_MM or not low <= separation <= high:
                continue
            score = right.radius_mm + left.radius_mm - 0.1 * dz
            if best is None or score > best[0]:
                best = (score, [right, left])
    if best is not None:
        return best[1]
    singles = [c for side in candidates.values() for c in side[:1]]
    return singles[:1] if len(singles) == 1 else []


def _ilium_above(bone: np.ndarray, candidate: _Candidate, grid: WorkGrid, midline: np.ndarray) -> bool:
    """Bone lateral of half the candidate's distance from the midline in most slices 20-60 mm above it: the ilium
    (a knee condyle has the femoral shaft above it, a humeral head the thin scapula and clavicle)."""
    first = candidate.k - round(60.0 / grid.spacing[0])
    last = candidate.k - round(20.0 / grid.spacing[0])
    if first < 0:
        return False  # the scan starts too close above it to tell
    columns = np.arange(bone.shape[2])
    hits = 0
    slices = range(first, last + 1)
    for k in slices:
        offset = abs(candidate.col - midline[k]) * 0.5
        band = columns < midline[k] - offset if candidate.side is Side.RIGHT else columns > midline[k] + offset
        hits += bool(bone[k][:, band].any())
    return hits >= 0.7 * len(slices)


def _pelvis_at_midline(bone: np.ndarray, candidate: _Candidate, grid: WorkGrid, midline: np.ndarray) -> bool:
    """Bone within 20 mm of the midline within 60 mm above or below the candidate: the sacrum, coccyx or pubic
    symphysis of a pelvis (a knee has none)."""
    reach = round(60.0 / grid.spacing[0])
    half = 20.0 / grid.spacing[2]
    columns = np.arange(bone.shape[2])
    for k in range(max(0, candidate.k - reach), min(bone.shape[0], candidate.k + reach + 1)):
        if bone[k][:, np.abs(columns - midline[k]) <= half].any():
            return True
    return False


def _box(centre: tuple[float, float, float], shape: tuple[int, int, int],
         spacing: tuple[float, float, float]) -> tuple[slice, slice, slice]:
    return tuple(  # type: ignore[return-value]
        slice(max(0, round(c - h / s)), min(n, round(c + h / s) + 1))
        for c, h, s, n in zip(centre, _BOX_HALF_MM, spacing, shape, strict=True)
    )


@dataclass(frozen=True)
class _Refinement:
    candidate: _Candidate
    box: tuple[slice, slice, slice]
    spacing: tuple[float, float, float]
    spheres: dict[float, tuple[float, tuple[int, int, int]]]
    """Per radius: best support and centre (box index)."""


def _refine(hu: np.ndarray, metal: np.ndarray, grid: WorkGrid, candidates: list[_Candidate]) -> dict[Side, FemoralHead]:
    """Refine each candidate (module docstring, step 2-3). Natural heads of both sides share one radius within
    1 mm (the one with the most support on both): the femoral heads of one person are nearly the same size, and the
    acetabular roof's smaller curvature does not pull one side's centre upwards."""
    f = grid.factor
    full_spacing = (grid.spacing[0], grid.spacing[1] / f, grid.spacing[2] / f)
    heads: dict[Side, FemoralHead] = {}
    natural: list[_Refinement] = []
    for candidate in candidates:
        centre_full = (float(candidate.k), (candidate.row + 0.5) * f, (candidate.col + 0.5) * f)
        box = _box(centre_full, hu.shape, full_spacing)
        coarse_box = (box[0], slice(box[1].start // f, box[1].stop // f + 1),
                      slice(box[2].start // f, box[2].stop // f + 1))
        if metal[coarse_box].sum() >= 4:
            heads[candidate.side] = _metal_head(hu, box, full_spacing, candidate, f)
            continue
        sub = np.clip(hu[box].astype(np.float32), -100.0, 800.0)
        near = tuple(c - b.start for c, b in zip(centre_full, box, strict=True))
        natural.append(_Refinement(candidate, box, full_spacing, _hough_sphere(sub, full_spacing, near)))
    if not natural:
        return heads
    common = [r for r in _HOUGH_RADII_MM if all(float(r) in x.spheres for x in natural)]
    if common:
        def total(radius: float) -> float:
            return sum(max(x.spheres[r][0] for r in x.spheres if abs(r - radius) <= 1.0) for x in natural)
        radius_star = max((float(r) for r in common), key=total)
    for refinement in natural:
        allowed = {r: v for r, v in refinement.spheres.items() if common and abs(r - radius_star) <= 1.0}
        heads[refinement.candidate.side] = _head_from(refinement, allowed, f)
    return heads


def _head_from(refinement: _Refinement, spheres: dict[float, tuple[float, tuple[int, int, int]]],
               f: int) -> FemoralHead:
    candidate, box, spacing = refinement.candidate, refinement.box, refinement.spacing
    fallback = FemoralHead(candidate.side, float(candidate.k), float(candidate.row), float(candidate.col),
                           candidate.radius_mm, 0.0, False, "thickest bone of the hip joint (distance transform)",
                           Certainty.UNCERTAIN)
    if not spheres:
        return replace(fallback, note="no spherical bone surface found around it")
    radius, (score, (k, r, c)) = max(spheres.items(), key=lambda item: item[1][0])
    k, r, c = k + box[0].start, r + box[1].start, c + box[2].start
    centre_full = (float(candidate.k), (candidate.row + 0.5) * f, (candidate.col + 0.5) * f)
    shift = np.sqrt(((k - centre_full[0]) * spacing[0]) ** 2 + ((r - centre_full[1]) * spacing[1]) ** 2
                    + ((c - centre_full[2]) * spacing[2]) ** 2)
    if score < _HOUGH_MIN_SCORE:
        return replace(fallback, note=f"weak spherical bone surface (support {score:.2f})")
    certainty = Certainty.FOUND
    note = ""
    if shift > _HOUGH_AGREE_MM:
        certainty, note = Certainty.UNCERTAIN, f"the sphere lies {shift:.0f} mm from the thickest bone"
    return FemoralHead(candidate.side, float(k), r / f - 0.5, c / f - 0.5, radius, score, False,
                       "spherical Hough transform of the head's and the acetabulum's bone surfaces", certainty, note)


def _hough_sphere(sub: np.ndarray, spacing: tuple[float, float, float],
                  near: tuple[float, float, float]) -> dict[float, tuple[float, tuple[int, int, int]]]:
    """Per radius of `_HOUGH_RADII_MM`: the best (support, centre index) of a sphere in `sub` (HU, clipped) whose
    centre lies within `_HOUGH_AGREE_MM` of `near` (box index); empty when `sub` holds too few edges."""
    smooth = ndimage.gaussian_filter(sub, sigma=(0.5, 1.5 / spacing[1], 1.5 / spacing[2]))
    gk, gr, gc = np.gradient(smooth, *spacing)
    magnitude = np.sqrt(gk * gk + gr * gr + gc * gc)
    edge = magnitude > 40.0
    if edge.sum() < 100:
        return {}
    ks, rs, cs = np.nonzero(edge)
    norm = magnitude[edge]
    direction = np.stack([gk[edge] / norm, gr[edge] / norm, gc[edge] / norm], axis=1)
    position = np.stack([ks * spacing[0], rs * spacing[1], cs * spacing[2]], axis=1)
    shape = sub.shape
    size = int(np.prod(shape))
    grids = np.meshgrid(*(np.arange(n) * s for n, s in zip(shape, spacing, strict=True)), indexing="ij")
    window = sum((g - c * s) ** 2 for g, c, s in zip(grids, near, spacing, strict=True)) <= _HOUGH_AGREE_MM ** 2
    found: dict[float, tuple[float, tuple[int, int, int]]] = {}
    for radius in _HOUGH_RADII_MM:
        votes = np.zeros(size, np.float32)
        for sign in (1.0, -1.0):  # convex head surface (into the bone) and concave acetabulum (out of it)
            p = position + sign * radius * direction
            index = [np.round(p[:, a] / spacing[a]).astype(np.int64) for a in range(3)]
            ok = np.ones(len(p), bool)
            for a in range(3):
                ok &= (index[a] >= 0) & (index[a] < shape[a])
            flat = np.ravel_multi_index((index[0][ok], index[1][ok], index[2][ok]), shape)
            votes += np.bincount(flat, minlength=size).astype(np.float32)
        votes = ndimage.gaussian_filter(votes.reshape(shape), sigma=(0.7, 2.0 / spacing[1], 2.0 / spacing[2]))
        votes[~window] = 0.0
        centre = np.unravel_index(int(votes.argmax()), shape)
        support = float(votes.max()) / (4.0 * np.pi * radius * radius) * 1000.0
        found[float(radius)] = (support, (int(centre[0]), int(centre[1]), int(centre[2])))
    return found


def _metal_head(hu: np.ndarray, box: tuple[slice, slice, slice], spacing: tuple[float, float, float],
                candidate: _Candidate, f: int) -> FemoralHead:
    """A prosthetic head: the thickest point of the metal in the box - the solid ball (R 14-18 mm) is thicker than
    the stem (about 7 mm) and the cup's shell."""
    metal = hu[box] > METAL_HU
    distance = ndimage.distance_transform_edt(metal, sampling=spacing)
    k, r, c = np.unravel_index(int(distance.argmax()), distance.shape)
    return FemoralHead(candidate.side, float(k + box[0].start), (r + box[1].start) / f - 0.5,
                       (c + box[2].start) / f - 0.5, float(distance[k, r, c]), 0.0, True,
                       "centre of the metal ball (prosthetic head): the thickest metal of the hip", Certainty.FOUND)


def _compare_sides(heads: dict[Side, FemoralHead], grid: WorkGrid) -> dict[Side, FemoralHead]:
    """Two heads at levels more than 25 mm apart, or (both natural) radii more than 5 mm apart: the weaker one
    is uncertain."""
    right, left = heads[Side.RIGHT], heads[Side.LEFT]
    dz = abs(right.k - left.k) * grid.spacing[0]
    radii_differ = not (right.implant or left.implant) and abs(right.radius_mm - left.radius_mm) > 5.0
    if dz <= 25.0 and not radii_differ:
        return heads
    weaker = min((right, left), key=lambda h: (h.certainty is Certainty.FOUND, h.score))
    why = f"the heads' levels differ by {dz:.0f} mm" if dz > 25.0 else "the heads' radii differ by more than 5 mm"
    heads[weaker.side] = replace(weaker, certainty=Certainty.UNCERTAIN,
                                 note="; ".join(x for x in (weaker.note, why) if x))
    return heads
