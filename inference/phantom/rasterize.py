"""Rasterise the anatomy into one axial slice: the exact label map and the tissue map.

Every voxel is classified by its centre, so labels are exact and disjoint by construction. Order of precedence
(later wins): air < skin < subcutaneous fat < fat inside the body envelope < muscle < intermuscular septum <
viscera, vessels, nerves, tendons, the tissue around a hip prosthesis < bone < metal. The body envelope (deep
fascia, viscera, bones) is grown by the subcutaneous fat thickness and then by 2 mm of skin with a Euclidean
distance transform, so the fat layer has the requested thickness along the skin normal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from sarcoscreen.inference.phantom.anatomy import (
    Anatomy,
    BonePart,
    Muscle,
    RingTrack,
    ShapeTrack,
    Soft,
    WingTrack,
)
from sarcoscreen.inference.phantom.geometry import Capsule, Ellipse, Ellipsoid, Grid, Sphere, Tube, Window
from sarcoscreen.inference.phantom.tissues import Tissue

__all__ = ["SEPTUM_HALF_MM", "SKIN_MM", "SliceTruth", "body_extent", "rasterize_slice"]

SKIN_MM = 2.0
SEPTUM_HALF_MM = 0.75
"""Half the thickness of the fat septum between neighbouring muscles (septum ~1.5 mm)."""


@dataclass(frozen=True)
class SliceTruth:
    labels: np.ndarray
    """uint8 catalogue labels (0 = background)."""
    tissue: np.ndarray
    """uint8 `Tissue` codes."""
    fat_weight: np.ndarray
    """float32: relative intramuscular-fat propensity of each muscle voxel (0 elsewhere)."""
    body: np.ndarray
    """bool: inside the skin."""
    implants: tuple[tuple[int, np.ndarray], ...] = ()
    """(index in `Anatomy.metal`, bool mask) of every hip prosthesis in this slice."""


def _window(grid: Grid, bbox: tuple[float, float, float, float] | None) -> Window | None:
    if bbox is None:
        return None
    return grid.window(*bbox)


def _shape_masks(shape: object, grid: Grid, grow: float) -> list[tuple[Window, np.ndarray]]:
    """Masks of a bone/soft shape on this slice, each on its own window; `grow` < 0 shrinks."""
    z = grid.z
    out: list[tuple[Window, np.ndarray]] = []
    if isinstance(shape, (Sphere, Ellipsoid, Capsule)):
        w = _window(grid, shape.bbox(z, max(grow, 0.0)))
        if w is not None:
            out.append((w, shape.mask(w, grow)))
    elif isinstance(shape, ShapeTrack):
        e = shape.ellipse(z, grow)
        if e is not None:
            w = _window(grid, e.bbox())
            if w is not None:
                out.append((w, e.mask(w)))
    elif isinstance(shape, WingTrack):
        for cap in shape.capsules(z, grow):
            w = _window(grid, cap.bbox(z))
            if w is not None:
                out.append((w, cap.mask(w)))
    elif isinstance(shape, Tube):
        for cap in shape.capsules:
            w = _window(grid, cap.bbox(z, max(grow, 0.0)))
            if w is not None:
                out.append((w, cap.mask(w, grow)))
    else:  # pragma: no cover - programming error
        raise TypeError(f"unknown shape {type(shape).__name__}")
    return out


def _paint(target: np.ndarray, masks: list[tuple[Window, np.ndarray]], value: bool | int = True) -> None:
    for w, m in masks:
        target[w.rows, w.cols][m] = value


def _muscle_partition(muscles: list[Muscle], grid: Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index of the owning muscle (-1: none), septum mask, and the union of all territories."""
    shape = grid.shape
    best_d = np.full(shape, np.inf, np.float32)
    best_g = np.zeros(shape, np.float32)
    second_d = np.full(shape, np.inf, np.float32)
    second_g = np.zeros(shape, np.float32)
    best_i = np.full(shape, -1, np.int16)
    z = grid.z
    for index, muscle in enumerate(muscles):
        for territory in muscle.shapes:
            lo, hi = territory.z_range
            if z < lo or z > hi:
                continue
            if isinstance(territory, RingTrack):
                ring = territory.ring(z)
                if ring is None:
                    continue
                w = grid.window(*ring.bbox())
                if w is None:
                    continue
                d, g = ring.distance(w)
            else:
                e: Ellipse | None = territory.ellipse(z)
                if e is None:
                    continue
                w = grid.window(*e.bbox())
                if w is None:
                    continue
                d, g = e.distance(w)
            d = d.astype(np.float32)
            g = g.astype(np.float32)
            bd = best_d[w.rows, w.cols]
            bg = best_g[w.rows, w.cols]
            sd = second_d[w.rows, w.cols]
            sg = second_g[w.rows, w.cols]
            bi = best_i[w.rows, w.cols]
            inside = d <= 1.0
            same = bi == index
            new_best = inside & (d < bd)
            # The previous best becomes the second unless it is this muscle's other territory.
            demote = new_best & ~same
            sd[demote] = bd[demote]
            sg[demote] = bg[demote]
            bd[new_best] = d[new_best]
            bg[new_best] = g[new_best]
            bi[new_best] = index
            new_second = inside & ~new_best & ~same & (d < sd)
            sd[new_second] = d[new_second]
            sg[new_second] = g[new_second]
    owned = best_i >= 0
    with np.errstate(invalid="ignore"):
        septum = owned & (second_d <= 1.0) & ((second_d - best_d) < SEPTUM_HALF_MM * (best_g + second_g))
    return best_i, septum, owned


def _soft_masks(soft: Soft, grid: Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """(whole, wall, gas, halo) full-slice masks of a soft structure, or None when absent from this slice."""
    shape = grid.shape
    whole = np.zeros(shape, bool)
    inner = np.zeros(shape, bool)
    gas = np.zeros(shape, bool)
    halo = np.zeros(shape, bool)
    found = False
    for s in soft.shapes:
        caps: list[Capsule] = list(s.capsules) if isinstance(s, Tube) else ([s] if isinstance(s, Capsule) else [])
        if caps:
            for cap in caps:
                w = _window(grid, cap.bbox(grid.z, soft.halo_mm))
                if w is None:
                    continue
                dist, t = cap._dist(w)
                r = cap.r0 + t * (cap.r1 - cap.r0)
                m = dist <= r
                if not m.any() and soft.halo_mm <= 0:
                    continue
                found = True
                whole[w.rows, w.cols] |= m
                if soft.wall_mm > 0:
                    inner[w.rows, w.cols] |= dist <= r - soft.wall_mm
                if soft.gas_level is not None:
                    axis_y = cap.p0[1] + t * (cap.p1[1] - cap.p0[1])
                    gas[w.rows, w.cols] |= m & (w.Y - axis_y < -soft.gas_level * r)
                if soft.halo_mm > 0:
                    halo[w.rows, w.cols] |= dist <= r + soft.halo_mm
            continue
        masks = _shape_masks(s, grid, 0.0)
        if not masks:
            continue
        found = True
        _paint(whole, masks)
        if soft.wall_mm > 0:
            _paint(inner, _shape_masks(s, grid, -soft.wall_mm))
        if soft.halo_mm > 0:
            _paint(halo, _shape_masks(s, grid, soft.halo_mm))
    if not found:
        return None
    wall = whole & ~inner if soft.wall_mm > 0 else np.zeros(shape, bool)
    return whole, wall, gas & inner if soft.wall_mm > 0 else gas, halo


def _bone_masks(parts: tuple[BonePart, ...], grid: Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    shape = grid.shape
    outer = np.zeros(shape, bool)
    inner = np.zeros(shape, bool)
    marrow = np.zeros(shape, np.uint8)
    found = False
    for part in parts:
        if part.subtract:
            for w, m in _shape_masks(part.shape, grid, 0.0):
                outer[w.rows, w.cols] &= ~m
            for w, m in _shape_masks(part.shape, grid, part.cortex_mm):
                inner[w.rows, w.cols] &= ~m
            continue
        masks = _shape_masks(part.shape, grid, 0.0)
        if not masks:
            continue
        found = True
        _paint(outer, masks)
        for w, m in _shape_masks(part.shape, grid, -part.cortex_mm):
            inner[w.rows, w.cols] |= m
            marrow[w.rows, w.cols][m] = int(part.marrow)
    if not found:
        return None
    inner &= outer
    return outer, inner, marrow


def _grow(envelope: np.ndarray, grid: Grid, distance_mm: float) -> np.ndarray:
    """Distance (mm) of every voxel outside `envelope` to it, computed on a crop; inf far away."""
    dist = np.full(envelope.shape, np.inf, np.float32)
    rows = np.flatnonzero(envelope.any(axis=1))
    cols = np.flatnonzero(envelope.any(axis=0))
    if rows.size == 0:
        return dist
    dy = abs(float(grid.y[1] - grid.y[0]))
    dx = abs(float(grid.x[1] - grid.x[0]))
    pad_r = int(np.ceil(distance_mm / dy)) + 2
    pad_c = int(np.ceil(distance_mm / dx)) + 2
    r0, r1 = max(rows[0] - pad_r, 0), min(rows[-1] + pad_r + 1, envelope.shape[0])
    c0, c1 = max(cols[0] - pad_c, 0), min(cols[-1] + pad_c + 1, envelope.shape[1])
    crop = envelope[r0:r1, c0:c1]
    dist[r0:r1, c0:c1] = ndimage.distance_transform_edt(~crop, sampling=(dy, dx)).astype(np.float32)
    return dist


def rasterize_slice(anatomy: Anatomy, grid: Grid) -> SliceTruth:
    """Labels and tissues of the slice at ``grid.z``."""
    shape = grid.shape
    fat_mm = anatomy.params.fat_mm
    muscles = anatomy.muscles
    best_i, septum, owned = _muscle_partition(muscles, grid)

    envelope = owned.copy()
    bones = []
    for bone in anatomy.bones:
        masks = _bone_masks(bone.parts, grid)
        if masks is not None:
            bones.append((bone, masks))
            envelope |= masks[0]
    cavity = np.zeros(shape, bool)
    if anatomy.cavity is not None:
        e = anatomy.cavity.ellipse(grid.z)
        if e is not None:
            _paint(cavity, [(w, e.mask(w)) for w in [grid.window(*e.bbox())] if w is not None])
    envelope |= cavity
    softs = []
    for soft in anatomy.soft:
        masks_s = _soft_masks(soft, grid)
        if masks_s is None:
            continue
        if soft.inside_cavity:
            masks_s = (masks_s[0] & cavity, masks_s[1] & cavity, masks_s[2] & cavity, masks_s[3] & cavity)
        softs.append((soft, masks_s))
        envelope |= masks_s[0]

    dist = _grow(envelope, grid, fat_mm + SKIN_MM)
    tissue = np.full(shape, Tissue.AIR, np.uint8)
    labels = np.zeros(shape, np.uint8)
    tissue[dist <= fat_mm + SKIN_MM] = Tissue.SKIN
    tissue[dist <= fat_mm] = Tissue.FAT
    tissue[envelope] = Tissue.FAT
    body = dist <= fat_mm + SKIN_MM
    body |= envelope

    muscle = owned & ~septum
    label_of = np.array([m.label for m in muscles] + [0], np.uint8)
    weight_of = np.array([m.fat_weight for m in muscles] + [0.0], np.float32)
    index = np.where(muscle, best_i, len(muscles)).astype(np.intp)
    tissue[muscle] = Tissue.MUSCLE
    labels[:] = label_of[index]
    fat_weight = weight_of[index]

    for soft, (whole, wall, gas, halo) in softs:
        if soft.envelope_only:
            continue
        yields = soft.inside_cavity or soft.tissue in (Tissue.URINE, Tissue.SOFT_ORGAN, Tissue.FECES,
                                                       Tissue.BOWEL_CONTENT)
        region = whole & ~muscle if yields else whole
        if soft.halo_mm > 0:
            rim = halo & muscle & ~whole
            tissue[rim] = Tissue.FAT
            labels[rim] = 0
            fat_weight[rim] = 0.0
        tissue[region] = soft.tissue
        tissue[region & wall] = soft.wall_tissue
        tissue[region & gas] = Tissue.GAS
        labels[region] = 0
        fat_weight[region] = 0.0

    for bone, (outer, inner, marrow) in bones:
        tissue[outer] = Tissue.CORTEX
        tissue[inner] = marrow[inner]
        labels[outer] = bone.label
        fat_weight[outer] = 0.0

    implants: list[tuple[int, np.ndarray]] = []
    for index, implant in enumerate(anatomy.metal):
        metal = np.zeros(shape, bool)
        for m in implant.shapes:
            _paint(metal, _shape_masks(m, grid, 0.0))
        if not metal.any():
            continue
        implants.append((index, metal))
        tissue[metal] = Tissue.METAL
        labels[metal] = 0
        fat_weight[metal] = 0.0

    if anatomy.params.table:
        _paint_table(tissue, grid, anatomy.table_y, body)
    return SliceTruth(labels, tissue, fat_weight, body, tuple(implants))


def _paint_table(tissue: np.ndarray, grid: Grid, y_top: float, body: np.ndarray) -> None:
    """A curved carbon-fibre table top (2 mm shells around a 36 mm foam core), 440 mm wide."""
    x = grid.x[None, :]
    y = grid.y[:, None]
    top = y_top - 0.00025 * x * x
    depth = y - top
    inside = (np.abs(x) <= 220.0) & (depth >= 0) & (depth <= 40.0) & ~body
    shell = inside & ((depth <= 2.0) | (depth >= 38.0))
    tissue[inside] = Tissue.TABLE_FOAM
    tissue[shell] = Tissue.TABLE_SHELL


def body_extent(anatomy: Anatomy, zs: np.ndarray) -> tuple[float, float, float, float]:
    """Conservative (xmin, xmax, ymin, ymax) of the skin over the levels `zs`, from the shapes' bounding boxes."""
    xmin = ymin = np.inf
    xmax = ymax = -np.inf
    grow = anatomy.params.fat_mm + SKIN_MM
    for z in zs:
        boxes = []
        for m in anatomy.muscles:
            for t in m.shapes:
                if isinstance(t, RingTrack):
                    r = t.ring(float(z))
                    if r is not None:
                        boxes.append(r.bbox())
                else:
                    e = t.ellipse(float(z))
                    if e is not None:
                        boxes.append(e.bbox())
        if anatomy.cavity is not None:
            e = anatomy.cavity.ellipse(float(z))
            if e is not None:
                boxes.append(e.bbox())
        for soft in anatomy.soft:
            if not (soft.envelope_only or soft.in_extent):
                continue
            for s in soft.shapes:
                if isinstance(s, Capsule):
                    b = s.bbox(float(z))
                    if b is not None:
                        boxes.append(b)
                elif isinstance(s, ShapeTrack):
                    e = s.ellipse(float(z))
                    if e is not None:
                        boxes.append(e.bbox())
                elif isinstance(s, Ellipsoid):
                    b = s.bbox(float(z))
                    if b is not None:
                        boxes.append(b)
        for x0, x1, y0, y1 in boxes:
            xmin, xmax = min(xmin, x0), max(xmax, x1)
            ymin, ymax = min(ymin, y0), max(ymax, y1)
    return (float(xmin - grow), float(xmax + grow), float(ymin - grow), float(ymax + grow))
