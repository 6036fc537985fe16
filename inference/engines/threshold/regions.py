"""Where lower-extremity muscle may be, and which region of the reference study each place belongs to.

Works slice by slice on the canonical coarse grid (see `masks`), using the landmarks of `skeleton`. The result is
a region label map: every voxel of the working grid where lower-extremity skeletal muscle of one region and side
can lie; the engine then keeps the full-resolution voxels of that place whose HU lie in the muscle window.

**The gluteal region** is a sector around the hip, per level, per side. Angles are measured in the axial plane
around the femoral head centre (above it) or the femur's centre on that slice (below it), 0 deg pointing
laterally, +90 deg posteriorly, -90 deg anteriorly:

=====================================================  =============  =======================================
level                                                  sector         what lies there
=====================================================  =============  =======================================
iliac crest to 20 mm below it                          none           abdominal wall and back muscles only
20-45 mm below the crest                               0 to 120       gluteus medius on the ilium; the
                                                                      obliques are anterior-lateral
45 mm below the crest to the acetabular roof           -60 to 120     gluteus medius, minimus, maximus
acetabular roof to femoral head centre                 -30 to 150     the three glutei around the joint
head centre to 25 mm below it                          -40 to 160     with medius/minimus at the trochanter
25 mm below the head centre to the ischial tuberosity  10 to 160      gluteus maximus (vastus lateralis and
                                                                      tensor fasciae latae lie laterally)
ischial tuberosity to 30 mm below it                   40 to 150      the lower gluteus maximus
=====================================================  =============  =======================================

The sectors were chosen on the manual labels of three real anatomies (`../shared/data/pelvic-annotation`), with
landmarks from the labelled bones: over the whole region they hold 91-99 % of the gluteal muscles' volume and
other labelled muscle of 3-11 % of it (``docs/engines.md``). The gluteus maximus goes on, thin, to about 90 mm
below the ischial tuberosity; the region stops 30 mm below it (the lowest fibres lie among the hamstrings), but
the group's *extent* - what the scan must hold for the group to be complete - ends 90 mm below it.

**Everything else admitted is the hip and thigh region** (above the knee joint) or the lower leg, except:

* **Skin**: a rim of ``skin_mm`` inside the body outline (skin has muscle-like HU).
* **Above the iliac crest + 20 mm and below the ankle joint**, and body parts not connected to the legs or pelvis in
  the slice (arms at the side).
* **Inside the bony pelvic ring** (from the crest to the ischial tuberosity): the convex hull of the pelvic bone
  (above the femoral heads: all bone of the slice; from the femoral heads down: the bone medial of them, and the
  sacrum or coccyx of the nearest slice above that has it, so that the hull still reaches back to the coccyx below
  its tip) holds bowel, bladder, rectum, vessels and the muscles of the pelvic wall and floor; the iliacus there is
  missed.
* **The abdomen in front of the pelvis**: above the acetabular roof only the gluteal sector and, within 30 mm above
  the roof, the muscles in front of the hip lateral of the femoral head (sartorius, tensor fasciae latae, rectus
  femoris) are kept; down to the femoral head centre, in front of the hip only what lies lateral of 30 mm medial
  of the head centre (iliopsoas, sartorius, rectus femoris, tensor fasciae latae) - the femoral vessels, bladder
  and bowel lie medial of it.
* **Back and abdominal wall in the pelvic levels** (above the femoral heads): beside and behind the spine or
  sacrum within ``paraspinal_half_width_mm`` of the midline, posterior of the central bone's centre, and
  anterior-medial between the anterior superior iliac spines.
* **Genitals and perineum** (below the pubic symphysis, or the ischial tuberosity without one): on each side only
  what lies inside the convex hull of that thigh's muscle (the muscle-window components of at least 25 % of the
  largest) is kept; scrotum, penis and the skin folds between the thighs lie outside it.

Without a femoral head on a side (a scan of the legs, or a femur followed up from its shaft to no hip joint) the
side has no gluteal region; its thigh muscle above the knee is the hip and thigh region.
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

__all__ = ["GlutealSector", "RegionParameters", "gluteal_levels", "region_labels"]


@dataclass(frozen=True)
class RegionParameters:
    skin_mm: float = 4.0
    paraspinal_half_width_mm: float = 45.0
    crest_margin_mm: float = 20.0
    """No lower-extremity muscle is taken within this distance below the top of the iliac crest."""
    gluteal_bottom_below_ischium_mm: float = 30.0
    """The gluteal region ends this far below the ischial tuberosity."""
    gluteal_extent_below_ischium_mm: float = 90.0
    """The gluteus maximus ends about this far below the ischial tuberosity (manual labels of three anatomies:
    69-93 mm): the scan must reach it for the gluteal group to be complete."""
    ischium_below_head_mm: float = 72.0
    """Where the ischial tuberosity is not in the scan it is expected this far below the femoral head centre
    (57-72 mm on the three labelled anatomies; the largest, so that a shortfall is not understated)."""
    anterior_medial_mm: float = 30.0
    """In front of the hip, above the head centre, muscle is kept only lateral of this distance medial of the head
    centre."""
    vessels_in_front_mm: float = 15.0
    """From the femoral head centre down to the pubic symphysis, medial of ``anterior_medial_mm`` and this far in
    front of the head centre lie the femoral vessels, not muscle."""
    genitals_below_symphysis_mm: float = 160.0
    """How far below the pubic symphysis the genitals may hang between the thighs (002: 150 mm); below that the
    thighs' hull is not needed and the gracilis, a small separate muscle at the thigh's medial edge, is kept."""
    muscle_hu: tuple[float, float] = (-29.0, 150.0)
    anal_half_width_mm: float = 35.0
    """From the femoral head centre to 30 mm below the ischial tuberosity, nothing behind the head centres within this
    distance of the midline is lower-extremity muscle: the rectum, anal canal, levator ani and the anococcygeal
    region (manual labels of three anatomies: 0-3.5 % of a slice's gluteal muscle lies there)."""
    perineum_half_width_mm: float = 10.0
    """Below the pubic symphysis nothing within this distance of the midline is thigh muscle (manual labels of three
    anatomies: the adductors and gracilis lie at least 8-16 mm from it there)."""


@dataclass(frozen=True)
class GlutealSector:
    """One level band of the gluteal region: angles (degrees) around the band's origin."""

    low_deg: float
    high_deg: float
    around_head: bool
    """Around the femoral head centre (above it) or the femur's centre on the slice (below it)."""


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


def _pelvic_interior(bone_slice: np.ndarray, skeleton: Skeleton, k: int,
                     back: np.ndarray | None) -> np.ndarray:
    """The convex hull of the pelvic ring on slice `k` (see module docstring); `back` are the (row, column) points
    of the sacrum or coccyx on the nearest slice above that has them, so that below the coccyx's tip the hull still
    reaches back to it and holds the rectum and the pelvic floor."""
    rows, cols = np.nonzero(bone_slice)
    if rows.size == 0:
        return np.zeros(bone_slice.shape, bool)
    heads = [leg.femoral_head_centre for leg in skeleton.legs
             if leg.femoral_head_centre is not None and leg.femur_top is not None and k >= leg.femur_top]
    if len(heads) == 2:
        low, high = sorted(h[1] for h in heads)
        keep = (cols > low) & (cols < high)
        rows, cols = rows[keep], cols[keep]
    points = np.column_stack([rows, cols])
    if back is not None and len(back):
        points = np.concatenate([points, back])
    return _hull_mask(points, bone_slice.shape)


def _anal_band(skeleton: Skeleton, levels: dict[Side, dict[str, int] | None]) -> tuple[int, int, float] | None:
    """(first, last slice, row): from the femoral head centres to 30 mm below the ischial tuberosities, behind the
    head centres' row - where the rectum, anal canal and the pelvic floor lie at the midline below the coccyx."""
    known = [(leg, levels[leg.side]) for leg in skeleton.legs if levels.get(leg.side) is not None]
    if not known:
        return None
    first = min(lv["head"] for _, lv in known)  # type: ignore[index]
    last = max(lv["bottom"] for _, lv in known)  # type: ignore[index]
    row = float(np.mean([leg.femoral_head_centre[0] for leg, _ in known]))  # type: ignore[index]
    return first, last, row


def _sacrum_points(bone: np.ndarray, skeleton: Skeleton, grid: WorkGrid) -> list[np.ndarray | None]:
    """Per slice: the sacrum's or coccyx's bone (within 20 mm of the midline, behind the femoral heads' centres),
    carried down from the last slice that has it."""
    heads = [leg.femoral_head_centre for leg in skeleton.legs if leg.femoral_head_centre is not None]
    out: list[np.ndarray | None] = [None] * bone.shape[0]
    if not heads:
        return out
    head_row = float(np.mean([h[0] for h in heads]))
    half = 20.0 / grid.spacing[2]
    columns = np.arange(bone.shape[2])
    last: np.ndarray | None = None
    for k in range(bone.shape[0]):
        band = np.abs(columns - skeleton.midline[k]) <= half
        rows, cols = np.nonzero(bone[k][:, band])
        behind = rows > head_row
        if behind.any():
            last = np.column_stack([rows[behind], np.flatnonzero(band)[cols[behind]]])
        out[k] = last
    return out


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


def gluteal_levels(leg: LegSkeleton, grid: WorkGrid, params: RegionParameters) -> dict[str, int] | None:
    """The slices bounding the gluteal region's level bands on `leg`'s side (canonical k; may lie outside the scan
    where estimated), or ``None`` without a femoral head."""
    if leg.femoral_head_slice is None or leg.femur_top is None:
        return None
    mm = grid.spacing[0]
    head = leg.femoral_head_slice
    crest = leg.iliac_crest if leg.iliac_crest is not None else 0
    ischium = leg.ischial_tuberosity
    if ischium is None:
        ischium = head + round(params.ischium_below_head_mm / mm)
    return {
        "top": crest + round(params.crest_margin_mm / mm),
        "near_crest": crest + round(45.0 / mm),
        "roof": leg.femur_top,
        "head": head,
        "trochanter": head + round(25.0 / mm),
        "ischium": ischium,
        "bottom": ischium + round(params.gluteal_bottom_below_ischium_mm / mm),
        "extent": ischium + round(params.gluteal_extent_below_ischium_mm / mm),
    }


def _sector(levels: dict[str, int], k: int) -> GlutealSector | None:
    if k < levels["top"] or k > levels["bottom"]:
        return None
    if k < levels["near_crest"]:
        return GlutealSector(0.0, 120.0, True)
    if k < levels["roof"]:
        return GlutealSector(-60.0, 120.0, True)
    if k <= levels["head"]:
        return GlutealSector(-30.0, 150.0, True)
    if k <= levels["trochanter"]:
        return GlutealSector(-40.0, 160.0, False)
    if k <= levels["ischium"]:
        return GlutealSector(10.0, 160.0, False)
    return GlutealSector(40.0, 150.0, False)


def _angles(leg: LegSkeleton, origin: tuple[float, float], grid: WorkGrid, row_index: np.ndarray,
            col_index: np.ndarray) -> np.ndarray:
    """Angle (degrees) of every pixel around `origin`: 0 lateral, +90 posterior, -90 anterior, +-180 medial."""
    lateral = -1.0 if leg.side is Side.RIGHT else 1.0  # canonical columns run patient right -> left
    d_row = (row_index - origin[0]) * grid.spacing[1]
    d_col = (col_index - origin[1]) * grid.spacing[2] * lateral
    return np.degrees(np.arctan2(d_row, d_col))


def region_labels(body: np.ndarray, bone: np.ndarray, skeleton: Skeleton, grid: WorkGrid,
                  params: RegionParameters = RegionParameters(), hu: np.ndarray | None = None) -> np.ndarray:
    """``uint8`` region label map on the working grid (catalogue labels of the region structures; 0 = none).
    `hu` (the working grid's HU) lets the genitals and perineum be told from the thighs' muscle."""
    n, rows, cols = body.shape
    out = np.zeros(body.shape, np.uint8)
    legs = [leg for leg in skeleton.legs if leg.found]
    if not legs:
        return out
    interior = erode_in_plane(body, grid.pixels(params.skin_mm))
    row_index = np.arange(rows)[:, None]
    col_index = np.arange(cols)[None, :]
    paraspinal = params.paraspinal_half_width_mm / grid.spacing[2]
    levels = {leg.side: gluteal_levels(leg, grid, params) for leg in legs}
    perineum_from = _perineum_from(skeleton)
    sacrum = _sacrum_points(bone, skeleton, grid)
    anal_band = _anal_band(skeleton, levels)
    ischia = [leg.ischial_tuberosity for leg in skeleton.legs if leg.ischial_tuberosity is not None]
    thighs_from = max(ischia) if ischia else None
    genitals_end = perineum_from if perineum_from is not None else thighs_from
    genitals_mm = params.genitals_below_symphysis_mm
    thighs_to = n if genitals_end is None else genitals_end + round(genitals_mm / grid.spacing[0])
    for k in range(n):
        admitted = interior[k] & ~bone[k]
        if not admitted.any():
            continue
        admitted &= _connected_to_skeleton(body[k], bone[k])
        pelvic = any(_in_pelvis(leg, k, grid) for leg in legs)
        if pelvic:
            admitted &= ~_pelvic_interior(bone[k], skeleton, k, sacrum[k])
            admitted &= ~_back_and_abdominal_wall(bone[k], skeleton.midline[k], paraspinal, row_index, col_index,
                                                  skeleton, k)
        right_half, left_half = _side_masks((rows, cols), skeleton.midline[k])
        for leg, half in ((skeleton.right, right_half), (skeleton.left, left_half)):
            if not leg.found:
                continue
            region = _region_of_slice(leg, k, n, levels[leg.side])
            if region is None:
                continue
            place = admitted & half
            if anal_band is not None and anal_band[0] < k <= anal_band[1]:
                place &= ~((np.abs(col_index - skeleton.midline[k]) * grid.spacing[2] < params.anal_half_width_mm)
                           & (row_index > anal_band[2]))
            if perineum_from is not None and k > perineum_from:
                place &= np.abs(col_index - skeleton.midline[k]) * grid.spacing[2] > params.perineum_half_width_mm
            if hu is not None and thighs_from is not None and thighs_from < k <= thighs_to:
                place &= _thigh_hull(place, hu[k], params.muscle_hu, skeleton.midline[k], grid)
            if levels[leg.side] is not None and levels[leg.side]["roof"] < k <= levels[leg.side]["ischium"]:
                place &= ~_rotator_corridor(leg, bone[k] & half, k, row_index)
            if region == "above_knee" and levels[leg.side] is not None:
                gluteal, other = _hip_places(leg, k, levels[leg.side], skeleton.pubic_symphysis, grid, params,
                                             row_index, col_index)
                out[k][place & gluteal] = _label("gluteal_region_muscle", leg.side)
                out[k][place & other & ~gluteal] = _label("hip_thigh_muscle", leg.side)
            elif region == "above_knee":
                out[k][place] = _label("hip_thigh_muscle", leg.side)
            else:
                out[k][place] = _label("lower_leg_muscle", leg.side)
    return out


def _hip_places(leg: LegSkeleton, k: int, levels: dict[str, int], symphysis: int | None, grid: WorkGrid,
                params: RegionParameters, row_index: np.ndarray,
                col_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The gluteal place and the hip-and-thigh place of slice `k` on a side with a femoral head."""
    shape = (row_index.shape[0], col_index.shape[1])
    everywhere = np.ones(shape, bool)
    nowhere = np.zeros(shape, bool)
    assert leg.femoral_head_centre is not None
    head = leg.femoral_head_centre
    if k < levels["top"]:
        return nowhere, nowhere
    sector = _sector(levels, k)
    gluteal = nowhere
    if sector is not None:
        origin = head if sector.around_head else leg.femur_centres.get(k, _nearest_centre(leg, k))
        angle = _angles(leg, origin, grid, row_index, col_index)
        gluteal = (angle >= sector.low_deg) & (angle < sector.high_deg)
    lateral = -1.0 if leg.side is Side.RIGHT else 1.0
    medial_limit = head[1] - lateral * params.anterior_medial_mm / grid.spacing[2]
    outside_vessels = col_index * lateral > medial_limit * lateral
    if k > levels["head"]:
        if symphysis is not None and k <= symphysis:
            # Down to the pubic symphysis, the femoral vessels lie in front of the pectineus, medial of the hip.
            front = row_index < head[0] - params.vessels_in_front_mm / grid.spacing[1]
            return gluteal, ~(front & ~outside_vessels)
        return gluteal, everywhere
    # Above the head centre: in front of the hip only what lies lateral of the femoral vessels.
    other = np.broadcast_to(outside_vessels, shape)
    if k < levels["roof"]:
        if k < levels["roof"] - round(30.0 / grid.spacing[0]):
            return gluteal, nowhere
        other = other & (row_index < head[0])  # in front of the head centre
    return gluteal, other


def _nearest_centre(leg: LegSkeleton, k: int) -> tuple[float, float]:
    if not leg.femur_centres:
        assert leg.femoral_head_centre is not None
        return leg.femoral_head_centre
    nearest = min(leg.femur_centres, key=lambda j: abs(j - k))
    return leg.femur_centres[nearest]


def _perineum_from(skeleton: Skeleton) -> int | None:
    """Below this slice the genitals and perineum lie between the thighs: the pubic symphysis, else the lower of the
    ischial tuberosities."""
    if skeleton.pubic_symphysis is not None:
        return skeleton.pubic_symphysis
    ischia = [leg.ischial_tuberosity for leg in skeleton.legs if leg.ischial_tuberosity is not None]
    return max(ischia) if ischia else None


def _rotator_corridor(leg: LegSkeleton, bone_half: np.ndarray, k: int, row_index: np.ndarray) -> np.ndarray:
    """Between the femoral head centre and the ischial tuberosity: the convex hull of the femur and the ischium
    (bone behind the femur's centre), behind the femur's centre - where the short external rotators (quadratus
    femoris, gemelli, obturator internus) run from the ischium to the femur, under the gluteus maximus."""
    centre = leg.femur_centres.get(k, _nearest_centre(leg, k))
    behind = np.broadcast_to(row_index >= centre[0], bone_half.shape)
    points = np.argwhere(bone_half & behind)
    if len(points) < 3:
        return np.zeros(bone_half.shape, bool)
    return _hull_mask(points, bone_half.shape) & behind


def _thigh_hull(place: np.ndarray, hu_slice: np.ndarray, window: tuple[float, float], midline: float,
                grid: WorkGrid) -> np.ndarray:
    """The convex hull of one thigh's muscle on a slice: the muscle-window components of `place` (opened by one
    pixel) of at least 25 % of the largest, and those lying wholly more than 40 mm from the midline (the genitals
    lie nearer)."""
    rows, cols = np.nonzero(place)
    if rows.size == 0:
        return place
    # On the bounding box of the place (a thigh is a small part of the slice), then back onto the slice.
    top, left = max(0, rows.min() - 1), max(0, cols.min() - 1)
    box = (slice(top, rows.max() + 2), slice(left, cols.max() + 2))
    muscle = place[box] & (hu_slice[box] >= window[0]) & (hu_slice[box] <= window[1])
    muscle = ndimage.binary_opening(muscle)
    labels, count = ndimage.label(muscle)
    if count == 0:
        return place
    midline = midline - left
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    keep = sizes >= 0.25 * sizes.max()
    far = 40.0 / grid.spacing[2]
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is not None and (box[1].start - midline > far or midline - (box[1].stop - 1) > far):
            keep[index] = True  # the whole component lies more than 40 mm from the midline
    keep[0] = False
    rows, cols = np.nonzero(keep[labels])
    return _hull_mask(np.column_stack([rows + top, cols + left]), place.shape)


def _top(leg: LegSkeleton, levels: dict[str, int] | None) -> int:
    """First slice of lower-extremity muscle on this side: 20 mm below the iliac crest, or the scan's start."""
    if levels is not None:
        return max(0, levels["top"])
    return leg.iliac_crest if leg.iliac_crest is not None else 0


def _in_pelvis(leg: LegSkeleton, k: int, grid: WorkGrid) -> bool:
    """From the iliac crest (or the scan's start) to the ischial tuberosity - or, where the scan ends above the
    tuberosity, to the scan's end (at most 150 mm below the femoral head centre)."""
    if leg.femoral_head_slice is None:
        return False
    if leg.ischial_tuberosity is not None:
        bottom = leg.ischial_tuberosity
    else:
        bottom = leg.femoral_head_slice + round(150.0 / grid.spacing[0])
    top = leg.iliac_crest if leg.iliac_crest is not None else 0
    return top <= k <= bottom


def _region_of_slice(leg: LegSkeleton, k: int, n: int, levels: dict[str, int] | None) -> str | None:
    if k < _top(leg, levels):
        return None
    knee = leg.knee_joint if leg.knee_joint is not None else n
    if k < knee:
        # Without a femoral shaft or head (a scan of the lower legs) and no knee in the scan, nothing is above it.
        has_femur = leg.shaft is not None or leg.femoral_head_centre is not None or leg.knee_joint is not None
        return "above_knee" if has_femur else "lower_leg"
    ankle = leg.ankle if leg.ankle is not None else n
    return "lower_leg" if k < ankle else None


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
