"""The ``threshold`` engine: weight-free segmentation of lower-extremity skeletal muscle by region.

No trained model: bone geometry gives the landmarks (iliac crest, femoral heads, lesser trochanters, knee joint
lines, ankles; `skeleton`), anatomical rules give where lower-extremity muscle may lie and which region of the
reference study each place belongs to (`regions`), and the skeletal-muscle HU window (default -29..150 HU,
Mitsiopoulos et al., J Appl Physiol 1998) decides, voxel by voxel at full resolution, what is muscle. Fat between
and inside muscles, marrow, skin and everything inside the bony pelvic ring are excluded.

The engine produces the three *region* structures of the catalogue per side (gluteal region, hip and thigh,
lower leg), not individual muscles; each approximates a group of the reference study (``docs/engines.md``).

Robustness:

* **Metal** (hip prostheses): voxels within ``metal_margin_mm`` of metal are classified on an in-plane median of
  the HU, so the bright and dark streaks of the artefact do not decide; the implant itself is excluded as bone.
* **Patient not centred, legs touching**: sides are split at the midline between the two femurs (or the body's
  midline where the femurs are not seen), slice by slice.
* **Arms, table**: the table is removed with the body mask; body parts not connected to the legs or pelvis in a
  slice (arms at the side) are excluded.
* **Contrast**: enhanced vessels are above the muscle window; bowel and bladder lie inside the pelvic ring.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from sarcoscreen.inference.catalogue import CATALOGUE, Kind, Side, Structure
from sarcoscreen.inference.engines.base import (
    Certainty,
    EngineError,
    ExtentStatus,
    Landmark,
    Progress,
    Segmentation,
    StructureExtent,
)
from sarcoscreen.inference.engines.orientation import AxialFrame, axial_frame
from sarcoscreen.inference.engines.threshold.masks import WorkGrid, body_mask, bone_mask, metal_mask, reduce
from sarcoscreen.inference.engines.threshold.regions import RegionParameters, gluteal_levels, region_labels
from sarcoscreen.inference.engines.threshold.skeleton import LandmarkEvidence, LegSkeleton, Skeleton, find_skeleton
from sarcoscreen.inference.volume import Volume

__all__ = ["ThresholdEngine"]

_SLAB = 32


@dataclass(frozen=True)
class _Upsampler:
    """Maps the working grid back to full resolution (rows/columns beyond whole blocks take the last block)."""

    factor: int
    rows: int
    cols: int

    def __call__(self, coarse: np.ndarray) -> np.ndarray:
        r_index = np.minimum(np.arange(self.rows) // self.factor, coarse.shape[-2] - 1)
        c_index = np.minimum(np.arange(self.cols) // self.factor, coarse.shape[-1] - 1)
        return coarse[..., r_index[:, None], c_index[None, :]]


class ThresholdEngine:
    """Weight-free region segmentation (see module docstring)."""

    name = "threshold"
    version = "2.0"

    def __init__(self, hu_window: tuple[float, float] = (-29.0, 150.0), metal_margin_mm: float = 20.0,
                 regions: RegionParameters | None = None) -> None:
        low, high = hu_window
        if not low < high:
            raise EngineError(f"HU window {hu_window} must be (low, high) with low < high")
        self.hu_window = (float(low), float(high))
        self.metal_margin_mm = metal_margin_mm
        self.regions = regions or RegionParameters()

    def structures(self) -> tuple[Structure, ...]:
        return CATALOGUE.muscles(Kind.MUSCLE_REGION)

    def segment(self, volume: Volume, progress: Progress | None = None) -> Segmentation:
        frame = axial_frame(volume)
        hu = frame.view(volume.hu)
        n = hu.shape[0]
        if n < 2:
            raise EngineError("the threshold engine needs at least 2 slices")
        report = progress or (lambda step, done, total: None)
        grid = WorkGrid.for_spacing(volume.spacing)
        report("working grid", 0, 4)
        coarse = reduce(hu, grid.factor)
        body = body_mask(coarse, grid)
        bone = bone_mask(coarse, body)
        metal = metal_mask(coarse)
        report("skeleton", 1, 4)
        skeleton = find_skeleton(hu, bone, metal, body, grid)
        report("regions", 2, 4)
        regions = region_labels(body, bone, skeleton, grid, self.regions, coarse)
        near_metal = None
        if metal.any():
            near_metal = ndimage.binary_dilation(metal, structure=np.ones((3, 3, 3), bool),
                                                 iterations=max(1, grid.pixels(self.metal_margin_mm)))
        report("muscle", 3, 4)
        labels = np.zeros(volume.hu.shape, np.uint8)
        self._fill(frame.view(labels), hu, regions, near_metal, grid, report)
        report("muscle", 4, 4)
        return Segmentation(
            labels=labels,
            structures=self.structures(),
            engine_name=self.name,
            engine_version=self.version,
            landmarks=self._landmarks(skeleton, volume, frame),
            notes=self._notes(skeleton, near_metal is not None),
            extents=self._extents(skeleton, grid, n),
        )

    def _fill(self, out: np.ndarray, hu: np.ndarray, regions: np.ndarray, near_metal: np.ndarray | None,
              grid: WorkGrid, report: Progress) -> None:
        low, high = self.hu_window
        up = _Upsampler(grid.factor, hu.shape[1], hu.shape[2])
        for start in range(0, hu.shape[0], _SLAB):
            stop = min(start + _SLAB, hu.shape[0])
            region = up(regions[start:stop])
            if not region.any():
                continue
            values = hu[start:stop]
            if near_metal is not None and near_metal[start:stop].any():
                values = _median_near(values, up(near_metal[start:stop]))
            muscle = (values >= low) & (values <= high)
            out[start:stop] = np.where(muscle, region, 0)

    @staticmethod
    def _landmarks(skeleton: Skeleton, volume: Volume, frame: AxialFrame) -> tuple[Landmark, ...]:
        z = volume.slice_z_mm()
        n = volume.shape[0]
        found: list[Landmark] = []

        def add(name: str, k: int, side: Side | None, evidence: LandmarkEvidence | None) -> None:
            index = frame.slice_index(int(k), n)
            evidence = evidence or LandmarkEvidence(_DEFAULT_METHODS.get(name, ""))
            found.append(Landmark(name, index, float(z[index]), side, _DESCRIPTIONS[name], evidence.method,
                                  evidence.certainty, evidence.note))

        for leg in skeleton.legs:
            for name, attribute in _LEG_LANDMARKS:
                k = getattr(leg, attribute)
                if k is None or (attribute in ("femur_top", "femoral_head_slice") and not leg.femur_top_in_scan):
                    continue
                add(name, k, leg.side, leg.evidence.get(name))
        if skeleton.pubic_symphysis is not None:
            add("pubic_symphysis", skeleton.pubic_symphysis, None, skeleton.symphysis_evidence)
        return tuple(found)

    def _extents(self, skeleton: Skeleton, grid: WorkGrid, n: int) -> tuple[StructureExtent, ...]:
        """Whether the scan holds each region's whole extent (see `_region_extent`)."""
        extents = []
        for leg in skeleton.legs:
            if not leg.found:
                continue
            for anatomy in ("gluteal_region_muscle", "hip_thigh_muscle", "lower_leg_muscle"):
                extent = _region_extent(anatomy, leg, gluteal_levels(leg, grid, self.regions), grid, n)
                if extent is not None:
                    extents.append(extent)
        return tuple(extents)

    @staticmethod
    def _notes(skeleton: Skeleton, metal: bool) -> tuple[str, ...]:
        notes = ["threshold engine: region labels approximate the reference study's groups "
                 "(gluteal region ~ gluteus maximus/medius/minimus; the iliacus inside the pelvic ring is "
                 "not counted); see docs/engines.md"]
        for leg in skeleton.legs:
            notes.extend(_missing(leg))
            if leg.implant:
                notes.append(f"{leg.side.value}: hip prosthesis (metal femoral head): the hip landmarks come from the "
                             "metal ball; muscle near the metal is measured on median-filtered HU")
            notes.extend(f"{leg.side.value}: {name.replace('_', ' ')} uncertain: {evidence.note}"
                         for name, evidence in leg.evidence.items() if evidence.certainty is Certainty.UNCERTAIN)
        if metal:
            notes.append("metal found: muscle near it was classified on median-filtered HU to suppress streaks")
        return tuple(notes)


def _median_near(values: np.ndarray, near: np.ndarray) -> np.ndarray:
    """`values` with an in-plane 5 x 5 median where `near` is set (computed on the box around it only)."""
    ks, rows, cols = np.nonzero(near)
    box = (slice(ks.min(), ks.max() + 1), slice(max(0, rows.min() - 2), rows.max() + 3),
           slice(max(0, cols.min() - 2), cols.max() + 3))
    out = np.array(values)
    smooth = ndimage.median_filter(values[box], size=(1, 5, 5))
    out[box] = np.where(near[box], smooth, values[box])
    return out


_LEG_LANDMARKS = (
    ("iliac_crest", "iliac_crest"),
    ("acetabular_roof", "femur_top"),
    ("femoral_head", "femoral_head_slice"),
    ("greater_trochanter", "greater_trochanter"),
    ("lesser_trochanter", "lesser_trochanter"),
    ("ischial_tuberosity", "ischial_tuberosity"),
    ("knee_joint", "knee_joint"),
    ("ankle", "ankle"),
)
_DESCRIPTIONS = {
    "iliac_crest": "top of the iliac crest",
    "acetabular_roof": "top of the femoral head (acetabular roof)",
    "femoral_head": "centre of the femoral head",
    "greater_trochanter": "tip of the greater trochanter",
    "lesser_trochanter": "lesser trochanter",
    "ischial_tuberosity": "lowest point of the ischial tuberosity",
    "pubic_symphysis": "pubic symphysis (middle)",
    "knee_joint": "knee joint line",
    "ankle": "ankle joint (distal end of the tibia)",
}
_DEFAULT_METHODS = {
    "lesser_trochanter": "the femur followed up from its shaft: first section wider than 1.6 times the shaft's",
    "knee_joint": "where the femur followed down ends, or its narrowest section after the condyles",
    "ankle": "where the tibia followed down ends (joint space) or merges with the talus",
}


def _region_extent(anatomy: str, leg: LegSkeleton, levels: dict[str, int] | None, grid: WorkGrid,
                   n: int) -> StructureExtent | None:
    """Whether the scan holds the whole extent of one region on one side.

    * The gluteal region reaches from the iliac crest to 90 mm below the ischial tuberosity (where the gluteus
      maximus ends): a scan that stops above that is *truncated*, with the shortfall; a scan that starts below the
      crest is truncated at the top (shortfall unknown).
    * The hip and thigh region and the lower leg are bounded by the crest, the knee joint and the ankle; a scan that
      cuts them leaves the label on its first or last slice, which measurement already treats as truncated.
    * A bounding landmark that is uncertain makes the region's extent uncertain.
    """
    key = CATALOGUE.structure(anatomy, leg.side).key
    mm = grid.spacing[0]
    bounds = {"gluteal_region_muscle": ("femoral_head", "iliac_crest", "ischial_tuberosity"),
              "hip_thigh_muscle": ("femoral_head", "iliac_crest", "knee_joint"),
              "lower_leg_muscle": ("knee_joint", "ankle")}[anatomy]
    if anatomy == "gluteal_region_muscle":
        if levels is None:
            return None
        if leg.iliac_crest is None:
            return StructureExtent(key, ExtentStatus.TRUNCATED, None,
                                   "the scan starts below the iliac crest, where the gluteus medius begins")
        if levels["extent"] > n - 1:
            shortfall = (levels["extent"] - (n - 1)) * mm
            where = ("the ischial tuberosity" if leg.ischial_tuberosity is not None
                     else "the ischial tuberosity (not in the scan; expected from the femoral head)")
            return StructureExtent(key, ExtentStatus.TRUNCATED, round(shortfall, 1),
                                   f"the gluteus maximus reaches about 90 mm below {where}, beyond the scan's end")
    unsure = [name.replace("_", " ") + (f" ({leg.evidence[name].note})" if leg.evidence[name].note else "")
              for name in bounds if name in leg.evidence and leg.evidence[name].certainty is Certainty.UNCERTAIN]
    if unsure:
        return StructureExtent(key, ExtentStatus.UNCERTAIN, None, "uncertain landmark: " + "; ".join(unsure))
    return StructureExtent(key, ExtentStatus.IN_SCAN)


def _missing(leg: LegSkeleton) -> list[str]:
    side = leg.side.value
    if not leg.found:
        return [f"{side}: no femoral head, femur or tibia found (the scan ends above the hip joints, or holds no "
                "lower extremity): no lower-extremity muscle labelled on this side"]
    notes = []
    femur = leg.shaft is not None or leg.femoral_head_centre is not None
    if femur and leg.iliac_crest is None:
        notes.append(f"{side}: the iliac crest is not in the scan (the scan starts below it)")
    if femur and leg.femoral_head_centre is None:
        notes.append(f"{side}: no hip joint found: no gluteal region on this side")
    if femur and leg.knee_joint is None:
        notes.append(f"{side}: the knee joint is not in the scan")
    if leg.ankle is None and (leg.knee_joint is not None or not femur):
        notes.append(f"{side}: the ankle joint is not in the scan")
    return notes
