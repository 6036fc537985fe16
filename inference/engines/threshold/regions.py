"""Where lower-extremity muscle may be, and which region of the reference study each place belongs to.

Works slice by slice on the canonical coarse grid (see `masks`), using the landmarks of `skeleton`. The result is
a region label map: every voxel of the working grid where lower-extremity skeletal muscle of one region and side
can lie; the engine then keeps the full-resolution voxels of that place whose HU lie in the muscle window.

What is excluded, and why:

* **Skin**: a rim of ``skin_mm`` inside the body outline (skin has muscle-like HU).
* **Anything not in the lower extremity**: above the iliac crest (abdominal wall, back and psoas muscles), below
  the ankle joint (foot), and body parts not connected to the legs or pelvis in the slice (arms at the side).
* **Inside the bony pelvic ring**: between the crest and the lower end of the pelvis, the convex hull of the
  pelvic bone (above the femoral heads: all bone of the slice; from the femoral heads down: the bone medial of the
  femoral heads) holds bowel, bladder, vessels and the muscles of the pelvic wall and floor. The psoas and, above
  the acetabulum, most of the iliacus lie there too, so the engine's hip-and-thigh region misses the iliacus.
* **Back and abdominal wall in the pelvic levels** (above the femoral heads): beside and behind the spine or sacrum
  within ``paraspinal_half_width_mm`` of the midline, posterior of the central bone's centre (erector spinae,
  multifidus), and anterior-medial between the anterior superior iliac spines (rectus abdominis).

Regions per side (each an approximation of a group of the reference study; see ``docs/engines.md``):

* ``gluteal_region_muscle``: from the crest down to the lesser trochanter, muscle posterior to the coronal plane
  through the femoral head centre (``gluteal_anterior_mm`` moves it forwards), and (above the femoral head)
  lateral of the hip
  bone. Approximates gluteus maximus + medius + minimus; it includes the small external rotators (piriformis,
  gemelli, quadratus femoris) and the uppermost hamstrings, and misses the lowest part of gluteus maximus.
* ``hip_thigh_muscle``: every other admitted muscle from the crest to the knee joint line. With the gluteal region
  it approximates the above-knee group (hip and thigh muscles without psoas major).
* ``lower_leg_muscle``: from the knee joint line to the ankle joint. With the others it approximates all
  lower-extremity muscles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from sarcoscreen.inference.catalogue import CATALOGUE, Side
from sarcoscreen.inference.engines.threshold.masks import WorkGrid, erode_in_plane
from sarcoscreen.inference.engines.threshold.skeleton import LegSkeleton, Skeleton

__all__ = ["RegionParameters", "region_labels"]


@dataclass(frozen=True)
class RegionParameters:
    skin_mm: float = 4.0
    gluteal_anterior_mm: float = 0.0
    """The gluteal region starts this far anterior of the femoral head centre's coronal plane."""
    paraspinal_half_width_mm: float = 45.0


def _label(anatomy: str, side: Side) -> int:
    return CATALOGUE.structure(anatomy, side).label


def _hull_mask(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Filled convex hull of (row, column) `points` on a grid of `shape`."""
    if len(points) < 3:
        return np.zeros(shape, bool)
    try:
        hull = ConvexHull(points[:, ::-1].astype(float))
    except QhullError:
        return np.zeros(shape, bool)
    polygon = [tuple(points[v, ::-1].astype(float)) for v in hull.vertices]
    image = Image.new("1", (shape[1], shape[0]), 0)
    ImageDraw.Draw(image).polygon(polygon, fill=1, outline=1)
    return np.asarray(image, dtype=bool)


def _pelvic_interior(bone_slice: np.ndarray, skeleton: Skeleton, k: int) -> np.ndarray:
    """The convex hull of the pelvic ring on slice `k` (see module docstring)."""
    rows, cols = np.nonzero(bone_slice)
    if rows.size == 0:
        return np.zeros(bone_slice.shape, bool)
    heads = [leg.femoral_head_centre for leg in skeleton.legs
             if leg.femoral_head_centre is not None and leg.femur_top is not None and k >= leg.femur_top]
    if len(heads) == 2:
        low, high = sorted(h[1] for h in heads)
        keep = (cols > low) & (cols < high)
        rows, cols = rows[keep], cols[keep]
    return _hull_mask(np.column_stack([rows, cols]), bone_slice.shape)


def _connected_to_skeleton(body_slice: np.ndarray, bone_slice: np.ndarray) -> np.ndarray:
    """Body components of the slice that contain bone of at least 2 % of the slice's bone (trunk, legs)."""
    labels, count = ndimage.label(body_slice)
    if count <= 1:
        return body_slice
    bone_per_component = np.bincount(labels[bone_slice], minlength=count + 1)
    bone_per_component[0] = 0
    keep = bone_per_component >= max(1, 0.02 * bone_per_component.sum())
    keep[0] = False
    return keep[labels]


def _side_masks(shape: tuple[int, int], midline: float) -> tuple[np.ndarray, np.ndarray]:
    columns = np.arange(shape[1])[None, :]
    right = np.broadcast_to(columns < midline, shape)
    return right, ~right


def region_labels(body: np.ndarray, bone: np.ndarray, skeleton: Skeleton, grid: WorkGrid,
                  params: RegionParameters = RegionParameters()) -> np.ndarray:
    """``uint8`` region label map on the working grid (catalogue labels of the region structures; 0 = none)."""
    n, rows, cols = body.shape
    out = np.zeros(body.shape, np.uint8)
    legs = [leg for leg in skeleton.legs if leg.found]
    if not legs:
        return out
    interior = erode_in_plane(body, grid.pixels(params.skin_mm))
    row_index = np.arange(rows)[:, None]
    col_index = np.arange(cols)[None, :]
    paraspinal = params.paraspinal_half_width_mm / grid.spacing[2]
    for k in range(n):
        admitted = interior[k] & ~bone[k]
        if not admitted.any():
            continue
        admitted &= _connected_to_skeleton(body[k], bone[k])
        pelvic = any(_in_pelvis(leg, k) for leg in legs)
        if pelvic:
            admitted &= ~_pelvic_interior(bone[k], skeleton, k)
            admitted &= ~_back_and_abdominal_wall(bone[k], skeleton.midline[k], paraspinal, row_index, col_index,
                                                  skeleton, k)
        right_half, left_half = _side_masks((rows, cols), skeleton.midline[k])
        for leg, half in ((skeleton.right, right_half), (skeleton.left, left_half)):
            if not leg.found:
                continue
            region = _region_of_slice(leg, k, n)
            if region is None:
                continue
            place = admitted & half
            if region == "above_knee" and leg.femoral_head_centre is not None and _in_gluteal_levels(leg, k):
                gluteal = _gluteal_place(leg, k, grid, params, row_index, col_index, skeleton.midline[k])
                out[k][place & gluteal] = _label("gluteal_region_muscle", leg.side)
                out[k][place & ~gluteal] = _label("hip_thigh_muscle", leg.side)
            elif region == "above_knee":
                out[k][place] = _label("hip_thigh_muscle", leg.side)
            else:
                out[k][place] = _label("lower_leg_muscle", leg.side)
    return out


def _top(leg: LegSkeleton) -> int:
    """First slice of lower-extremity muscle on this side: the iliac crest, or the scan's start."""
    return leg.iliac_crest if leg.iliac_crest is not None else 0


def _in_pelvis(leg: LegSkeleton, k: int) -> bool:
    if leg.femur_top is None or not leg.femur_top_in_scan:
        return False
    bottom = leg.pelvis_bottom if leg.pelvis_bottom is not None else leg.femur_top
    return _top(leg) <= k <= bottom


def _region_of_slice(leg: LegSkeleton, k: int, n: int) -> str | None:
    if k < _top(leg):
        return None
    knee = leg.knee_joint if leg.knee_joint is not None else n
    if k < knee:
        # Without a femoral shaft (a scan of the lower legs) and no knee in the scan, nothing is above it.
        return "above_knee" if leg.shaft is not None or leg.knee_joint is not None else "lower_leg"
    ankle = leg.ankle if leg.ankle is not None else n
    return "lower_leg" if k < ankle else None


def _in_gluteal_levels(leg: LegSkeleton, k: int) -> bool:
    bottom = leg.lesser_trochanter if leg.lesser_trochanter is not None else leg.femur_top
    return _top(leg) <= k <= bottom


def _gluteal_place(leg: LegSkeleton, k: int, grid: WorkGrid, params: RegionParameters, row_index: np.ndarray,
                   col_index: np.ndarray, midline: float) -> np.ndarray:
    head_row, head_col = leg.femur_centres.get(k, leg.femoral_head_centre)
    anterior_limit = head_row - params.gluteal_anterior_mm / grid.spacing[1]
    posterior = row_index >= anterior_limit
    if leg.femur_top is not None and k < leg.femur_top:
        # Above the femoral head: lateral of the hip joint (gluteus medius and minimus on the iliac wing).
        lateral = col_index < head_col if leg.side is Side.RIGHT else col_index > head_col
        return posterior | lateral
    return np.broadcast_to(posterior, (row_index.shape[0], col_index.shape[1]))


def _back_and_abdominal_wall(bone_slice: np.ndarray, midline: float, paraspinal: float, row_index: np.ndarray,
                             col_index: np.ndarray, skeleton: Skeleton, k: int) -> np.ndarray:
    """Paraspinal muscles behind the sacrum and the rectus abdominis between the anterior iliac spines."""
    shape = bone_slice.shape
    excluded = np.zeros(shape, bool)
    central = np.abs(col_index - midline) < paraspinal
    central_bone_rows = np.nonzero(bone_slice[:, np.abs(np.arange(shape[1]) - midline) < paraspinal])[0]
    heads_top = [leg.femur_top for leg in skeleton.legs if leg.femur_top is not None]
    above_heads = bool(heads_top) and k < min(heads_top)
    if central_bone_rows.size and above_heads:
        # Beside and behind the spine or sacrum (posterior of the central bone's centre: the vertebral canal),
        # within the paraspinal band: erector spinae and multifidus lie along the spinous processes.
        excluded |= np.broadcast_to((row_index > central_bone_rows.mean()) & central, shape)
    rows, cols = np.nonzero(bone_slice)
    if rows.size and above_heads:
        right = cols < midline
        left = ~right
        if right.any() and left.any():
            # Anterior superior iliac spines ~ the most anterior bone on each side.
            r_asis = cols[right][rows[right].argmin()]
            l_asis = cols[left][rows[left].argmin()]
            front = max(rows[right].min(), rows[left].min())
            between = (col_index > r_asis) & (col_index < l_asis)
            excluded |= np.broadcast_to((row_index < front) & between, shape)
    return excluded
