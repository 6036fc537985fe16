"""The lower-extremity skeleton along the scan, found from the bone mask: femurs, tibias and hip bones per side.

Works on the canonical coarse grid of `masks` (``[k, i, j]``: head -> feet, anterior -> posterior, patient right
-> left). The femur and the tibia are followed slice by slice as connected bone that overlaps its own footprint
on the neighbouring slice, which is how a radiologist scrolls through them:

1. **Femoral shaft.** A slice is *thigh-like* on one side when that side's largest bone is compact, 2-25 cm^2
   (a femoral shaft is 4-8 cm^2, the subtrochanteric femur and the condyles more) and no bone lies within 3 cm
   of the midline (no spine, sacrum or sternum). The longest run of thigh-like slices per side, 3 cm long (1 cm
   where the scan cuts it off), is the femoral shaft.
2. **Up the femur** from the shaft: the lesser trochanter is where the cross-section first exceeds 1.6 times
   the shaft's median area; the top of the femur (femoral head, at the acetabular roof) is where the bone
   followed upwards ends, or where it merges with a much larger bone reaching towards the midline (the hip
   bone, when the joint space is narrower than the working grid).
3. **Down the femur**: the knee joint line is where the femur followed downwards ends (the joint space) or,
   when femur and tibia touch on the working grid, the narrowest cross-section after the condyles widen.
4. **The tibia** is the largest bone just below the knee joint on that side, followed down to its distal end:
   the ankle joint (tibial plafond).
5. **The hip bone**: from the femoral head upwards, bone lateral of half the distance from the midline to the
   femoral head, followed up to its last slice: the top of the iliac crest. Its lowest slice near the
   femoral head level is the lower end of the pelvis (ischial tuberosity or pubis).

A scan of the lower legs has no femoral shaft: a long bone with a smaller one beside it (tibia and fibula) is
then followed up to the knee joint and down to the ankle. Slices with bone near the midline (spine, sacrum,
sternum) are never taken for a limb, so a chest or abdomen without legs finds nothing.

Landmarks that are outside the scan are ``None``; the engine then reports which ones were missing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from sarcoscreen.inference.catalogue import Side
from sarcoscreen.inference.engines.threshold.masks import WorkGrid

__all__ = ["LegSkeleton", "Skeleton", "find_skeleton", "midline_columns"]

_SHAFT_AREA_CM2 = (2.0, 25.0)
_MIDLINE_CLEAR_MM = 30.0
_MIN_SHAFT_MM = 30.0
_MIN_CUT_SHAFT_MM = 10.0
_TROCHANTER_RATIO = 1.6
_MERGE_RATIO = 2.5


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
    lesser_trochanter: int | None = None
    knee_joint: int | None = None
    ankle: int | None = None
    iliac_crest: int | None = None
    pelvis_bottom: int | None = None
    femur_centres: dict[int, tuple[float, float]] = field(default_factory=dict)
    """(row, column) of the femur on every slice it was followed."""
    tibia_centres: dict[int, tuple[float, float]] = field(default_factory=dict)

    @property
    def found(self) -> bool:
        return self.shaft is not None or bool(self.tibia_centres)


@dataclass
class Skeleton:
    right: LegSkeleton
    left: LegSkeleton
    midline: np.ndarray
    """Column of the body's midline on every slice (working grid)."""

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


def _leg(comps: _SliceComponents, bone: np.ndarray, side: Side, midline: np.ndarray, grid: WorkGrid) -> LegSkeleton:
    n = bone.shape[0]
    leg = LegSkeleton(side)
    found = [_long_bone(comps, k, side, midline[k], grid) for k in range(n)]
    single = [f[0] if f is not None and not f[1] else None for f in found]
    paired = [f[0] if f is not None and f[1] else None for f in found]
    run = _longest_run(np.array([c is not None for c in single]), max_gap=2)
    if run is not None and _long_enough(run, n, grid):
        leg.shaft = run
        _up_the_femur(comps, leg, single, midline, grid)
        if leg.femur_top_in_scan:
            _femoral_head(bone, leg, midline, grid)
        _down_the_femur(comps, leg, single, grid, n)
    else:
        run = _longest_run(np.array([c is not None for c in paired]), max_gap=2)
        if run is not None and _long_enough(run, n, grid):
            _tibia_without_femur(comps, leg, paired, run, n)
    if leg.femur_top is not None and leg.femur_top_in_scan:
        _hip_bone(bone, leg, midline, grid)
    return leg


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


def _femoral_head(bone: np.ndarray, leg: LegSkeleton, midline: np.ndarray, grid: WorkGrid) -> None:
    """The femoral head: the centre of the thickest bone (maximum of the 3-D distance transform) within 15 cm
    above the lesser trochanter, lateral of the sacrum. A ball of bone is thicker than the hip bone around the
    acetabulum even when the two touch on the working grid; the distance is the head's radius, so its top (the
    acetabular roof) follows."""
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
    """Iliac crest and lower end of the pelvis on `leg`'s side (see module docstring)."""
    head = leg.femur_top
    head_col = leg.femoral_head_centre[1] if leg.femoral_head_centre else None
    if head_col is None:
        return
    n_cols = bone.shape[2]
    columns = np.arange(n_cols)

    def lateral_bone(k: int) -> bool:
        offset = abs(head_col - midline[k]) * 0.5
        band = columns < midline[k] - offset if leg.side is Side.RIGHT else columns > midline[k] + offset
        return bool(bone[k][:, band].any())

    gap_allowed = max(1, round(4.0 / grid.spacing[0]))
    k, last, misses = head, head, 0
    while k >= 0:
        if lateral_bone(k):
            last, misses = k, 0
        else:
            misses += 1
            if misses > gap_allowed:
                break
        k -= 1
    leg.iliac_crest = last if k >= 0 else None  # None: the ilium continues at the first slice
    # Lower end of the pelvis: the last slice below the femoral head with bone medial of the femur.
    clear = 15.0 / grid.spacing[2]
    bottom = head
    for k in range(head, min(bone.shape[0], head + int(150.0 / grid.spacing[0]))):
        centre = leg.femur_centres.get(k, leg.femoral_head_centre)
        if leg.side is Side.RIGHT:
            band = (columns > centre[1] + clear) & (columns < midline[k])
        else:
            band = (columns < centre[1] - clear) & (columns > midline[k])
        if bone[k][:, band].any():
            bottom = k
    leg.pelvis_bottom = bottom


def find_skeleton(bone: np.ndarray, body: np.ndarray, grid: WorkGrid) -> Skeleton:
    """Femurs, tibias and hip bones per side (see module docstring)."""
    midline = midline_columns(body)
    comps = _SliceComponents(bone)
    right = _leg(comps, bone, Side.RIGHT, midline, grid)
    left = _leg(comps, bone, Side.LEFT, midline, grid)
    # With both femurs found, the midline is halfway between them where both are followed.
    both = sorted(set(right.femur_centres) & set(left.femur_centres))
    if both:
        refined = midline.copy()
        for k in both:
            refined[k] = (right.femur_centres[k][1] + left.femur_centres[k][1]) / 2.0
        midline[:] = refined
    return Skeleton(right, left, midline)
