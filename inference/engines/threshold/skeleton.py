"""The lower-extremity skeleton along the scan, found from the bone mask: hip joints, femurs, tibias and hip bones.

Works on the canonical coarse grid of `masks` (``[k, i, j]``: head -> feet, anterior -> posterior, patient right
-> left), with the full-resolution view where precision matters (the femoral heads, `hip`). Landmarks come from
whatever part of the skeleton the scan holds; each records how it was found and how sure the engine is
(`LandmarkEvidence`):

1. **Femoral heads** from the pelvis (`hip`): the hip joints themselves, so that an abdomen-pelvis CT that ends
   at the lesser trochanters - or at the femoral heads - still has them; a metal ball is a prosthetic head.
2. **Femoral shaft**, when the scan holds one: a slice is *thigh-like* on one side when that side's largest bone
   is compact, 2-25 cm^2 and no bone lies within 3 cm of the midline. The longest run of thigh-like slices per
   side, 3 cm long (1 cm where the scan cuts it off), is the shaft. Followed up (bone overlapping its own
   footprint slice by slice), it gives the **lesser trochanter** (the section first exceeds 1.6 times the
   shaft's median) and *confirms* the femoral head it reaches. Without a shaft the femur is followed down from
   the head instead.
3. **Pelvis**, from the femoral head: the **iliac crest** (bone lateral of half the head's distance from the
   midline, followed up to its last slice), the **ischial tuberosity** (the lowest slice with bone medial and
   posterior of the head), the **greater trochanter** (the highest bone more than the head's radius + 20 mm
   lateral of its centre) and, per scan, the **pubic symphysis** (bone at the midline in front of the heads).
4. **Down the femur**: the **knee joint line** where the femur followed downwards ends (joint space) or, when femur
   and tibia touch on the working grid, the narrowest section after the condyles widen. The tibia is followed
   down to the **ankle**: its section falls below 0.4 times the median of the last slices (the joint space) or
   more than doubles on two slices in a row (merged with the talus). An ankle that makes the tibia shorter than
   0.6 or longer than 1.05 times the femur (head centre to knee; tibia/femur is about 0.8 in adults) is
   *uncertain*.

A scan of the lower legs has no femoral shaft: a long bone with a smaller one beside it (tibia and fibula) is
then followed up to the knee joint and down to the ankle. A scan without femoral heads and without a leg's long
bones (a chest, an abdomen above the hips) finds nothing.

Landmarks that are outside the scan are ``None``; the engine then reports which ones were missing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from sarcoscreen.inference.catalogue import Side
from sarcoscreen.inference.engines.base import Certainty
from sarcoscreen.inference.engines.threshold.hip import FemoralHead, find_femoral_heads
from sarcoscreen.inference.engines.threshold.masks import WorkGrid

__all__ = ["LandmarkEvidence", "LegSkeleton", "Skeleton", "find_skeleton", "midline_columns"]

_SHAFT_AREA_CM2 = (2.0, 25.0)
_MIDLINE_CLEAR_MM = 30.0
_MIN_SHAFT_MM = 30.0
_MIN_CUT_SHAFT_MM = 10.0
_TROCHANTER_RATIO = 1.6
_MERGE_RATIO = 2.5


@dataclass(frozen=True)
class LandmarkEvidence:
    """How a landmark was found and how sure the engine is of it."""

    method: str
    certainty: Certainty = Certainty.FOUND
    note: str = ""


@dataclass
class LegSkeleton:
    """Slices (canonical ``k``) of one side's landmarks, ``None`` where not in the scan."""

    side: Side
    shaft: tuple[int, int] | None = None
    """First and last slice of the femoral shaft run."""
    femur_top: int | None = None
    """The top of the femoral head (at the acetabular roof)."""
    femur_top_in_scan: bool = False
    """False when the femur still continues at the first slice (the scan starts below the hip)."""
    femoral_head_centre: tuple[float, float] | None = None
    """(row, column) of the femoral head's centre, on the working grid."""
    femoral_head_slice: int | None = None
    femoral_head_radius_mm: float | None = None
    implant: bool = False
    """The femoral head is metal (a hip prosthesis)."""
    greater_trochanter: int | None = None
    lesser_trochanter: int | None = None
    knee_joint: int | None = None
    ankle: int | None = None
    iliac_crest: int | None = None
    ischial_tuberosity: int | None = None
    """The lowest slice of the hip bone medial and posterior of the femoral head."""
    femur_centres: dict[int, tuple[float, float]] = field(default_factory=dict)
    """(row, column) of the femur on every slice it was followed."""
    tibia_centres: dict[int, tuple[float, float]] = field(default_factory=dict)
    evidence: dict[str, LandmarkEvidence] = field(default_factory=dict)
    """Per landmark name (``femoral_head``, ``iliac_crest``, ...): how it was found."""

    @property
    def found(self) -> bool:
        return self.shaft is not None or bool(self.tibia_centres) or self.femoral_head_centre is not None

    @property
    def head_in_scan(self) -> bool:
        return self.femoral_head_centre is not None and self.femur_top_in_scan

    def certainty(self, name: str) -> Certainty:
        evidence = self.evidence.get(name)
        return evidence.certainty if evidence else Certainty.FOUND

    def derived(self, method: str, source: str = "femoral_head") -> LandmarkEvidence:
        """Evidence of a landmark found from `source`: as sure as it is."""
        certainty = self.certainty(source)
        note = f"found from an uncertain {source.replace('_', ' ')}" if certainty is Certainty.UNCERTAIN else ""
        return LandmarkEvidence(method, certainty, note)


@dataclass
class Skeleton:
    right: LegSkeleton
    left: LegSkeleton
    midline: np.ndarray
    """Column of the body's midline on every slice (working grid)."""
    pubic_symphysis: int | None = None
    """The middle slice of the pubic symphysis (bone at the midline in front of the femoral heads)."""
    symphysis_evidence: LandmarkEvidence | None = None

    def leg(self, side: Side) -> LegSkeleton:
        return self.right if side is Side.RIGHT else self.left

    @property
    def legs(self) -> tuple[LegSkeleton, LegSkeleton]:
        return (self.right, self.left)


def midline_columns(body: np.ndarray) -> np.ndarray:
    """Per slice, the column halfway between the body's leftmost and rightmost extent; slices without body
    take the nearest slice's value. Smoothed along the scan."""
    n = body.shape[0]
    columns = np.full(n, np.nan)
    any_cols = body.any(axis=1)  # [k, j]
    for k in range(n):
        cols = np.flatnonzero(any_cols[k])
        if cols.size:
            columns[k] = (cols[0] + cols[-1]) / 2.0
    valid = np.flatnonzero(~np.isnan(columns))
    if valid.size == 0:
        return np.full(n, body.shape[2] / 2.0)
    columns = np.interp(np.arange(n), valid, columns[valid])
    return ndimage.median_filter(columns, size=min(n, 9), mode="nearest")


@dataclass(frozen=True)
class _Component:
    index: int
    area: int
    row: float
    col: float
    col_min: int
    col_max: int
    compact: float


class _SliceComponents:
    """2-D connected bone components of every slice, computed once."""

    def __init__(self, bone: np.ndarray) -> None:
        self.labels: list[np.ndarray] = []
        self.components: list[list[_Component]] = []
        for k in range(bone.shape[0]):
            lab, count = ndimage.label(bone[k])
            self.labels.append(lab)
            found = []
            if count:
                objects = ndimage.find_objects(lab)
                rows, cols = np.nonzero(lab)
                values = lab[rows, cols]
                areas = np.bincount(values, minlength=count + 1)
                centres = zip(np.bincount(values, weights=rows, minlength=count + 1)[1:] / np.maximum(areas[1:], 1),
                              np.bincount(values, weights=cols, minlength=count + 1)[1:] / np.maximum(areas[1:], 1),
                              strict=True)
                for n, (sl, (r, c)) in enumerate(zip(objects, centres, strict=True), start=1):
                    box = (sl[0].stop - sl[0].start) * (sl[1].stop - sl[1].start)
                    found.append(_Component(n, int(areas[n]), float(r), float(c), sl[1].start, sl[1].stop - 1,
                                            areas[n] / max(box, 1)))
            self.components.append(found)

    def mask(self, k: int, component: _Component) -> np.ndarray:
        return self.labels[k] == component.index


def _on_side(component: _Component, side: Side, midline: float) -> bool:
    # Canonical columns run from patient right (j = 0) to patient left.
    return component.col < midline if side is Side.RIGHT else component.col > midline


def _long_bone(comps: _SliceComponents, k: int, side: Side, midline: float,
               grid: WorkGrid) -> tuple[_Component, bool] | None:
    """The side's largest bone if slice `k` looks like a thigh or a lower leg there, and whether a second,
    smaller bone lies beside it (a fibula beside the tibia)."""
    px_cm2 = grid.pixel_area_cm2()
    clear = _MIDLINE_CLEAR_MM / grid.spacing[2]
    big = [c for c in comps.components[k] if c.area * px_cm2 >= 0.3]
    if any(c.col_min - clear <= midline <= c.col_max + clear for c in big):
        return None
    mine = sorted((c for c in big if _on_side(c, side, midline)), key=lambda c: c.area, reverse=True)
    if not mine:
        return None
    largest = mine[0]
    low, high = _SHAFT_AREA_CM2
    if not low <= largest.area * px_cm2 <= high or largest.compact < 0.45:
        return None
    near = 60.0 / grid.spacing[2]
    paired = any(c.area < 0.6 * largest.area and np.hypot(c.row - largest.row, c.col - largest.col) < near
                 for c in mine[1:])
    return largest, paired


def _longest_run(flags: np.ndarray, max_gap: int) -> tuple[int, int] | None:
    best: tuple[int, int] | None = None
    start = last = None
    for k in np.flatnonzero(flags):
        if start is None or k - last > max_gap + 1:
            start = k
        last = k
        if best is None or last - start > best[1] - best[0]:
            best = (int(start), int(last))
    return best


def _follow(comps: _SliceComponents, start_mask: np.ndarray, start: int, step: int, stop: int,
            on_step: Callable[[int, np.ndarray, _Component], bool]) -> int:
    """Follow the bone overlapping `start_mask` from slice `start` in direction `step` until it ends or
    `on_step(k, mask, component)` returns False. Returns the first slice where the bone was lost (or `stop`)."""
    previous = ndimage.binary_dilation(start_mask, iterations=1)
    k = start + step
    while k != stop:
        labels = comps.labels[k]
        hits = labels[previous]
        hits = hits[hits > 0]
        if hits.size == 0:
            return k
        index = int(np.bincount(hits).argmax())
        component = next(c for c in comps.components[k] if c.index == index)
        mask = labels == index
        if not on_step(k, mask, component):
            return k
        previous = ndimage.binary_dilation(mask, iterations=1)
        k += step
    return stop


def _long_enough(run: tuple[int, int], n: int, grid: WorkGrid) -> bool:
    """A run of limb-like slices is a long bone when it is 3 cm long, or 1 cm where the scan cuts it off (an
    abdomen-pelvis scan that ends just below the lesser trochanters)."""
    length_mm = (run[1] - run[0] + 1) * grid.spacing[0]
    cut = run[0] == 0 or run[1] == n - 1
    return length_mm >= (_MIN_CUT_SHAFT_MM if cut else _MIN_SHAFT_MM)


def _leg(comps: _SliceComponents, bone: np.ndarray, side: Side, midline: np.ndarray, grid: WorkGrid,
         head: FemoralHead | None) -> LegSkeleton:
    n = bone.shape[0]
    leg = LegSkeleton(side)
    if head is not None:
        _place_head(leg, head, grid)
    found = [_long_bone(comps, k, side, midline[k], grid) for k in range(n)]
    single = [f[0] if f is not None and not f[1] else None for f in found]
    paired = [f[0] if f is not None and f[1] else None for f in found]
    run = _longest_run(np.array([c is not None for c in single]), max_gap=2)
    if run is not None and head is not None and run[1] <= leg.femoral_head_slice:
        run = None  # "thigh-like" slices above the femoral head are not a femur
    if run is not None and _long_enough(run, n, grid):
        leg.shaft = run
        _up_the_femur(comps, leg, single, midline, grid)
        if head is not None:  # the hip joint decides where the head is, not where the femur followed up ends
            leg.femur_top_in_scan = head.k - head.radius_mm / grid.spacing[0] >= 0
            leg.femur_top = max(0, round(head.k - head.radius_mm / grid.spacing[0]))
        if head is not None:
            _confirm_head(leg, grid)
        elif leg.femur_top_in_scan:
            _femoral_head_from_shaft(bone, leg, midline, grid)
        _down_the_femur(comps, leg, single, grid, n)
    elif head is not None:
        _down_from_the_head(comps, leg, grid, n)
    else:
        run = _longest_run(np.array([c is not None for c in paired]), max_gap=2)
        if run is not None and _long_enough(run, n, grid):
            _tibia_without_femur(comps, leg, paired, run, n)
    if leg.femur_top is not None and leg.femur_top_in_scan:
        _hip_bone(bone, leg, midline, grid)
        _greater_trochanter(bone, leg, grid)
    _check_ankle(leg, grid)
    return leg


def _place_head(leg: LegSkeleton, head: FemoralHead, grid: WorkGrid) -> None:
    leg.femoral_head_centre = (head.row, head.col)
    leg.femoral_head_slice = round(head.k)
    leg.femoral_head_radius_mm = head.radius_mm
    leg.implant = head.implant
    roof = round(head.k - head.radius_mm / grid.spacing[0])
    leg.femur_top_in_scan = roof >= 0
    leg.femur_top = max(roof, 0)
    leg.femur_centres[leg.femoral_head_slice] = (head.row, head.col)
    evidence = LandmarkEvidence(head.method, head.certainty, head.note)
    leg.evidence["femoral_head"] = evidence
    leg.evidence["acetabular_roof"] = LandmarkEvidence(f"the head's centre minus its radius "
                                                       f"({head.radius_mm:.0f} mm)", head.certainty, head.note)


def _confirm_head(leg: LegSkeleton, grid: WorkGrid) -> None:
    """The femur followed up from its shaft reaches the head found in the pelvis: the head is confirmed. If it
    ends far from it, the head is uncertain."""
    assert leg.femoral_head_slice is not None
    assert leg.femoral_head_centre is not None
    reach = min(leg.femur_centres)
    head_k, (head_row, head_col) = leg.femoral_head_slice, leg.femoral_head_centre
    near_k = reach <= head_k + round(2.5 * (leg.femoral_head_radius_mm or 22.0) / grid.spacing[0])
    row, col = leg.femur_centres[reach]
    distance = np.hypot((row - head_row) * grid.spacing[1], (col - head_col) * grid.spacing[2])
    current = leg.evidence["femoral_head"]
    if near_k and distance <= 60.0:
        if current.certainty is Certainty.FOUND:
            for name in ("femoral_head", "acetabular_roof"):
                old = leg.evidence[name]
                leg.evidence[name] = LandmarkEvidence(
                    old.method + "; confirmed by the femoral shaft followed up into it", Certainty.CONFIRMED)
    else:
        for name in ("femoral_head", "acetabular_roof"):
            old = leg.evidence[name]
            leg.evidence[name] = LandmarkEvidence(old.method, Certainty.UNCERTAIN, "the femoral shaft followed up "
                                                  "does not reach it")
    for k in [k for k in leg.femur_centres if k < head_k]:
        del leg.femur_centres[k]  # above the head centre the femur followed up is the head inside the acetabulum
    leg.femur_centres[head_k] = (head_row, head_col)


def _down_from_the_head(comps: _SliceComponents, leg: LegSkeleton, grid: WorkGrid, n: int) -> None:
    """Without a femoral shaft: follow the femur down from below the head centre (the neck), recording its centre
    on every slice - the bone nearest the last centre (within 35 mm), and where it has merged with the ischium or
    pubis only its part within 30 mm of the last centre; the lesser trochanter when the scan holds the shaft below it
    (the section falls to less than 1/1.6 of the trochanteric section and stays there for 30 mm)."""
    assert leg.femoral_head_slice is not None
    assert leg.femoral_head_centre is not None
    radius = leg.femoral_head_radius_mm or 22.0
    start = leg.femoral_head_slice + max(1, round(0.5 * radius / grid.spacing[0]))
    centre = leg.femoral_head_centre
    areas: dict[int, int] = {}
    reach = 35.0
    for k in range(start, n):
        near = [cp for cp in comps.components[k]
                if np.hypot((cp.row - centre[0]) * grid.spacing[1], (cp.col - centre[1]) * grid.spacing[2]) < reach
                and cp.area * grid.pixel_area_cm2() >= 0.5]
        if not near:
            break
        component = max(near, key=lambda cp: cp.area)
        area = component.area
        previous = areas.get(k - 1)
        if previous is not None and area > _MERGE_RATIO * previous:
            # Merged with the pelvis on this slice: the part of it near the femur's last centre.
            rows, cols = np.nonzero(comps.mask(k, component))
            keep = np.hypot((rows - centre[0]) * grid.spacing[1], (cols - centre[1]) * grid.spacing[2]) < 30.0
            if not keep.any():
                break
            centre, area = (float(rows[keep].mean()), float(cols[keep].mean())), int(keep.sum())
        else:
            centre = (component.row, component.col)
        areas[k] = area
        leg.femur_centres[k] = centre
    if not areas:
        return
    ks = sorted(areas)
    tail = [k for k in ks if k >= ks[-1] - round(30.0 / grid.spacing[0])]
    if (ks[-1] - leg.femoral_head_slice) * grid.spacing[0] < 90.0 or len(tail) < 3:
        return
    shaft_area = float(np.median([areas[k] for k in tail]))
    if shaft_area * grid.pixel_area_cm2() > 12.0:
        return
    wide = [k for k in ks if k < tail[0] and areas[k] > _TROCHANTER_RATIO * shaft_area]
    if wide:
        leg.lesser_trochanter = wide[-1]
        leg.evidence["lesser_trochanter"] = LandmarkEvidence(
            "the femur followed down from the head: last section wider than 1.6 times the shaft below it")


def _up_the_femur(comps: _SliceComponents, leg: LegSkeleton, candidates: list, midline: np.ndarray,
                  grid: WorkGrid) -> None:
    top, bottom = leg.shaft
    for k in range(top, bottom + 1):
        if candidates[k] is not None:
            leg.femur_centres[k] = (candidates[k].row, candidates[k].col)
    shaft_area = float(np.median([c.area for c in candidates[top:bottom + 1] if c is not None]))
    clear = _MIDLINE_CLEAR_MM / grid.spacing[2]
    state = {"area": candidates[top].area}

    def on_step(k: int, mask: np.ndarray, component: _Component) -> bool:
        merged = component.area > _MERGE_RATIO * state["area"] and (
            component.col_min - clear <= midline[k] <= component.col_max + clear
            or abs(component.col - midline[k]) < abs(leg.femur_centres[k + 1][1] - midline[k]) * 0.6)
        if merged:
            return False
        if leg.lesser_trochanter is None and component.area > _TROCHANTER_RATIO * shaft_area:
            leg.lesser_trochanter = k
        leg.femur_centres[k] = (component.row, component.col)
        state["area"] = component.area
        return True

    start_mask = comps.mask(top, candidates[top])
    lost = _follow(comps, start_mask, top, -1, -1, on_step)
    leg.femur_top_in_scan = lost >= 0
    leg.femur_top = lost + 1 if lost >= 0 else 0


def _femoral_head_from_shaft(bone: np.ndarray, leg: LegSkeleton, midline: np.ndarray, grid: WorkGrid) -> None:
    """When the pelvis gave no femoral head on this side but a femoral shaft was followed up to the hip: the
    thickest bone (maximum of the 3-D distance transform) within 15 cm above the lesser trochanter, lateral of the
    sacrum. It is *uncertain*: the thick bone above the acetabulum draws it upwards."""
    below = leg.lesser_trochanter if leg.lesser_trochanter is not None else leg.shaft[0]
    start = max(0, below - round(150.0 / grid.spacing[0]))
    shaft_col = float(np.median([c for _, c in (leg.femur_centres[k] for k in range(*leg.shaft)
                                                if k in leg.femur_centres)] or [leg.femur_centres[below][1]]))
    mid = float(midline[below])
    limit = mid - 0.3 * (mid - shaft_col)
    columns = np.arange(bone.shape[2])
    band = columns < limit if leg.side is Side.RIGHT else columns > limit
    box = bone[start:below + 1][:, :, band]
    if not box.any():
        return
    distance = ndimage.distance_transform_edt(box, sampling=grid.spacing)
    k, r, c = np.unravel_index(int(distance.argmax()), distance.shape)
    radius = float(distance[k, r, c])
    k_centre = start + int(k)
    leg.femoral_head_centre = (float(r), float(np.flatnonzero(band)[c]))
    leg.femoral_head_slice = k_centre
    roof = k_centre - round(radius / grid.spacing[0])
    leg.femur_top_in_scan = roof >= 0 and not (start == 0 and k == 0)
    leg.femur_top = max(roof, 0)
    leg.femoral_head_radius_mm = radius
    note = "no hip joint found in the pelvis on this side; estimated from the femur followed up"
    leg.evidence["femoral_head"] = LandmarkEvidence("thickest bone above the lesser trochanter (distance transform)",
                                                    Certainty.UNCERTAIN, note)
    leg.evidence["acetabular_roof"] = LandmarkEvidence("the head's centre minus its radius", Certainty.UNCERTAIN,
                                                       note)


def _down_the_femur(comps: _SliceComponents, leg: LegSkeleton, candidates: list, grid: WorkGrid, n: int) -> None:
    _top, bottom = leg.shaft
    areas: dict[int, int] = {bottom: candidates[bottom].area}
    limit = min(n, bottom + int(200.0 / grid.spacing[0]))

    def on_step(k: int, mask: np.ndarray, component: _Component) -> bool:
        areas[k] = component.area
        leg.femur_centres[k] = (component.row, component.col)
        return True

    lost = _follow(comps, comps.mask(bottom, candidates[bottom]), bottom, 1, limit, on_step)
    if lost < n and lost != limit:
        leg.knee_joint = lost
    elif lost == limit and limit < n:
        # Femur and tibia touch on the working grid: the narrowest section after the condyles widen.
        ks = sorted(areas)
        values = np.array([areas[k] for k in ks])
        peak = int(values.argmax())
        if peak < len(values) - 1:
            leg.knee_joint = ks[peak + int(values[peak:].argmin())]
    if leg.knee_joint is not None:
        for k in list(leg.femur_centres):
            if k >= leg.knee_joint:
                del leg.femur_centres[k]
        _follow_tibia(comps, leg, leg.knee_joint, grid, n)


def _largest_on_side(comps: _SliceComponents, k: int, side: Side, midline: float, grid: WorkGrid,
                     min_cm2: float = 1.0) -> _Component | None:
    mine = [c for c in comps.components[k] if _on_side(c, side, midline)
            and c.area * grid.pixel_area_cm2() >= min_cm2]
    return max(mine, key=lambda c: c.area) if mine else None


class _TibiaStep:
    """Follow the tibia downwards, recording its centre. It ends where its section falls below 0.4 times the
    median of the last slices (the joint space), or more than doubles on two slices in a row (merged with the
    talus). Before `earliest_end` (half the femur's length below the knee: a tibia is about as long as a femur)
    such a change is taken for noise breaking or joining the bone, and the tibia is followed on. `end` is the
    first slice of the change."""

    def __init__(self, leg: LegSkeleton, earliest_end: int = 0) -> None:
        self.leg = leg
        self.earliest_end = earliest_end
        self.areas: list[int] = []
        self.pending: int | None = None
        self.end: int | None = None

    def __call__(self, k: int, mask: np.ndarray, component: _Component) -> bool:
        if self.areas:
            reference = float(np.median(self.areas[-5:]))
            dropped = component.area < 0.4 * reference
            jumped = component.area > 2.0 * reference
            if (dropped or jumped) and k < self.earliest_end:
                return True  # noise: follow on without recording this slice
            if dropped:  # the joint space: the tibia ends here
                self.end = k
                return False
            if jumped:  # merged with the talus (one slice may be the fibula joined through noise)
                if self.pending is not None:
                    self.end = self.pending
                    return False
                self.pending = k
                return True
        self.pending = None
        self.areas.append(component.area)
        self.leg.tibia_centres[k] = (component.row, component.col)
        return True

    def ankle(self, lost: int, n: int) -> int | None:
        """The ankle joint: where the tibia changed, or where it was lost before the scan's end."""
        if self.end is not None:
            for k in list(self.leg.tibia_centres):
                if k >= self.end:
                    del self.leg.tibia_centres[k]
            return self.end
        return lost if lost < n else None


def _follow_tibia(comps: _SliceComponents, leg: LegSkeleton, start: int, grid: WorkGrid, n: int) -> None:
    midline_col = leg.femur_centres[max(leg.femur_centres)][1] if leg.femur_centres else None
    for k in range(start, min(n, start + int(30.0 / grid.spacing[0]) + 1)):
        side_components = [c for c in comps.components[k]
                           if midline_col is None or abs(c.col - midline_col) < 60.0 / grid.spacing[2]]
        if not side_components:
            continue
        tibia = max(side_components, key=lambda c: c.area)
        leg.tibia_centres[k] = (tibia.row, tibia.col)
        earliest = k
        if leg.femoral_head_slice is not None and leg.knee_joint is not None:
            earliest = leg.knee_joint + (leg.knee_joint - leg.femoral_head_slice) // 2
        step = _TibiaStep(leg, earliest)
        leg.ankle = step.ankle(_follow(comps, comps.mask(k, tibia), k, 1, n, step), n)
        return


def _tibia_without_femur(comps: _SliceComponents, leg: LegSkeleton, paired: list, run: tuple[int, int],
                         n: int) -> None:
    """Scans of the lower legs without a femoral shaft: the tibia (a long bone with the fibula beside it) is
    followed up to the knee joint and down to the ankle."""
    top = run[0]
    start = paired[top]
    leg.tibia_centres[top] = (start.row, start.col)

    def on_step(k: int, mask: np.ndarray, component: _Component) -> bool:
        leg.tibia_centres[k] = (component.row, component.col)
        return True

    lost_up = _follow(comps, comps.mask(top, start), top, -1, -1, on_step)
    if lost_up >= 0:
        leg.knee_joint = lost_up + 1
    step = _TibiaStep(leg)
    leg.ankle = step.ankle(_follow(comps, comps.mask(top, start), top, 1, n, step), n)


def _hip_bone(bone: np.ndarray, leg: LegSkeleton, midline: np.ndarray, grid: WorkGrid) -> None:
    """Iliac crest and ischial tuberosity on `leg`'s side (see module docstring)."""
    assert leg.femur_top is not None
    assert leg.femoral_head_centre is not None
    assert leg.femoral_head_slice is not None
    head_row, head_col = leg.femoral_head_centre
    n, _, n_cols = bone.shape
    columns = np.arange(n_cols)

    def lateral_bone(k: int) -> bool:
        offset = abs(head_col - midline[k]) * 0.5
        band = columns < midline[k] - offset if leg.side is Side.RIGHT else columns > midline[k] + offset
        return bool(bone[k][:, band].any())

    gap_allowed = max(1, round(4.0 / grid.spacing[0]))
    k, last, misses = leg.femur_top, leg.femur_top, 0
    while k >= 0:
        if lateral_bone(k):
            last, misses = k, 0
        else:
            misses += 1
            if misses > gap_allowed:
                break
        k -= 1
    if k >= 0:
        leg.iliac_crest = last
        leg.evidence["iliac_crest"] = leg.derived("top of the bone lateral of half the femoral head's distance "
                                                  "from the midline, followed up from the head (the ilium)")
    # Ischial tuberosity: the lowest slice with bone medial and posterior of the femoral head, within 15 cm below it.
    clear = (leg.femoral_head_radius_mm or 22.0) * 0.5 / grid.spacing[2]
    centre_clear = 15.0 / grid.spacing[2]
    rows = np.arange(bone.shape[1])
    posterior = rows > head_row
    bottom = None
    stop = min(n, leg.femoral_head_slice + int(150.0 / grid.spacing[0]))
    for k in range(leg.femoral_head_slice, stop):
        if leg.side is Side.RIGHT:
            band = (columns > head_col + clear) & (columns < midline[k] - centre_clear)
        else:
            band = (columns < head_col - clear) & (columns > midline[k] + centre_clear)
        if bone[k][posterior][:, band].any():
            bottom = k
    if bottom is not None and bottom < n - 1 and bottom < stop - 1:
        leg.ischial_tuberosity = bottom
        leg.evidence["ischial_tuberosity"] = leg.derived("lowest bone medial and posterior of the femoral head")


def _greater_trochanter(bone: np.ndarray, leg: LegSkeleton, grid: WorkGrid) -> None:
    """The tip of the greater trochanter: the highest slice, from 10 mm above the head centre to 60 mm below it,
    with bone more than the head's radius + 20 mm lateral of the head centre."""
    assert leg.femoral_head_centre is not None
    assert leg.femoral_head_slice is not None
    _, head_col = leg.femoral_head_centre
    offset = ((leg.femoral_head_radius_mm or 22.0) + 20.0) / grid.spacing[2]
    columns = np.arange(bone.shape[2])
    band = columns < head_col - offset if leg.side is Side.RIGHT else columns > head_col + offset
    first = max(0, leg.femoral_head_slice - round(10.0 / grid.spacing[0]))
    last = min(bone.shape[0], leg.femoral_head_slice + round(60.0 / grid.spacing[0]))
    for k in range(first, last):
        if bone[k][:, band].sum() * grid.pixel_area_cm2() >= 1.0:
            if k > first:
                leg.greater_trochanter = k
                leg.evidence["greater_trochanter"] = leg.derived(
                    "highest bone lateral of the femoral head by more than its radius + 20 mm")
            return


def _check_ankle(leg: LegSkeleton, grid: WorkGrid) -> None:
    """An ankle that makes the tibia implausibly short or long against the femur is uncertain (tibia/femur is about
    0.8 in adults; accepted 0.6-1.05)."""
    if leg.ankle is None or leg.knee_joint is None:
        return
    leg.evidence.setdefault("ankle", LandmarkEvidence("where the tibia followed down ends (joint space) or merges "
                                                      "with the talus"))
    leg.evidence.setdefault("knee_joint", LandmarkEvidence("where the femur followed down ends, or its narrowest "
                                                           "section after the condyles"))
    if leg.femoral_head_slice is None or not leg.femur_top_in_scan:
        return
    femur = (leg.knee_joint - leg.femoral_head_slice) * grid.spacing[0]
    tibia = (leg.ankle - leg.knee_joint) * grid.spacing[0]
    if femur <= 0:
        return
    ratio = tibia / femur
    if not 0.6 <= ratio <= 1.05:
        old = leg.evidence["ankle"]
        leg.evidence["ankle"] = LandmarkEvidence(old.method, Certainty.UNCERTAIN,
                                                 f"the tibia would be {ratio:.2f} times the femur's length "
                                                 "(expected about 0.8)")


def _pubic_symphysis(bone: np.ndarray, skeleton: Skeleton, grid: WorkGrid) -> None:
    """The middle slice of the longest run of slices with bone within 10 mm of the midline in front of the
    femoral heads, from 30 mm above to 90 mm below their centres."""
    legs = [leg for leg in skeleton.legs if leg.femoral_head_slice is not None and leg.femoral_head_centre]
    if not legs:
        return
    head_k = int(np.mean([leg.femoral_head_slice for leg in legs]))
    head_row = float(np.mean([leg.femoral_head_centre[0] for leg in legs]))  # type: ignore[index]
    n = bone.shape[0]
    first = max(0, head_k - round(30.0 / grid.spacing[0]))
    last = min(n, head_k + round(90.0 / grid.spacing[0]))
    half = 10.0 / grid.spacing[2]
    columns = np.arange(bone.shape[2])
    flags = np.zeros(n, bool)
    for k in range(first, last):
        band = np.abs(columns - skeleton.midline[k]) <= half
        flags[k] = bool(bone[k][: int(head_row)][:, band].any())
    run = _longest_run(flags, max_gap=1)
    if run is None or run[0] == 0 or run[1] >= n - 1:
        return
    skeleton.pubic_symphysis = (run[0] + run[1]) // 2
    skeleton.symphysis_evidence = LandmarkEvidence("bone at the midline in front of the femoral heads")


def find_skeleton(hu: np.ndarray, bone: np.ndarray, metal: np.ndarray, body: np.ndarray,
                  grid: WorkGrid) -> Skeleton:
    """Hip joints, femurs, tibias and hip bones per side (see module docstring). `hu` is the full-resolution
    canonical view; the masks are on the working grid."""
    midline = midline_columns(body)
    comps = _SliceComponents(bone)
    heads = find_femoral_heads(hu, bone, metal, grid, midline)
    right = _leg(comps, bone, Side.RIGHT, midline, grid, heads.get(Side.RIGHT))
    left = _leg(comps, bone, Side.LEFT, midline, grid, heads.get(Side.LEFT))
    # With both femurs found, the midline is halfway between them where both are followed.
    both = sorted(set(right.femur_centres) & set(left.femur_centres))
    if both:
        refined = midline.copy()
        for k in both:
            refined[k] = (right.femur_centres[k][1] + left.femur_centres[k][1]) / 2.0
        midline[:] = refined
    skeleton = Skeleton(right, left, midline)
    _pubic_symphysis(bone, skeleton, grid)
    return skeleton
