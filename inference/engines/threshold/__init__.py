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

from sarcoscreen.inference.catalogue import CATALOGUE, Kind, Structure
from sarcoscreen.inference.engines.base import EngineError, Landmark, Progress, Segmentation
from sarcoscreen.inference.engines.orientation import AxialFrame, axial_frame
from sarcoscreen.inference.engines.threshold.masks import WorkGrid, body_mask, bone_mask, metal_mask, reduce
from sarcoscreen.inference.engines.threshold.regions import RegionParameters, region_labels
from sarcoscreen.inference.engines.threshold.skeleton import LegSkeleton, Skeleton, find_skeleton
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
    version = "1.0"

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
        skeleton = find_skeleton(bone, body, grid)
        report("regions", 2, 4)
        regions = region_labels(body, bone, skeleton, grid, self.regions)
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
                smooth = ndimage.median_filter(values, size=(1, 5, 5))
                values = np.where(up(near_metal[start:stop]), smooth, values)
            muscle = (values >= low) & (values <= high)
            out[start:stop] = np.where(muscle, region, 0)

    @staticmethod
    def _landmarks(skeleton: Skeleton, volume: Volume, frame: AxialFrame) -> tuple[Landmark, ...]:
        z = volume.slice_z_mm()
        n = volume.shape[0]
        found: list[Landmark] = []
        names = (
            ("iliac_crest", "iliac_crest", "top of the iliac crest"),
            ("acetabular_roof", "femur_top", "top of the femoral head (acetabular roof)"),
            ("femoral_head", "femoral_head_slice", "centre of the femoral head"),
            ("lesser_trochanter", "lesser_trochanter", "lesser trochanter"),
            ("knee_joint", "knee_joint", "knee joint line"),
            ("ankle", "ankle", "ankle joint (distal end of the tibia)"),
        )
        for leg in skeleton.legs:
            for name, attribute, description in names:
                k = getattr(leg, attribute)
                if k is None or (attribute in ("femur_top", "femoral_head_slice") and not leg.femur_top_in_scan):
                    continue
                index = frame.slice_index(int(k), n)
                found.append(Landmark(name, index, float(z[index]), leg.side, description))
        return tuple(found)

    @staticmethod
    def _notes(skeleton: Skeleton, metal: bool) -> tuple[str, ...]:
        notes = ["threshold engine: region labels approximate the reference study's groups "
                 "(gluteal region ~ gluteus maximus/medius/minimus; the iliacus inside the pelvic ring is "
                 "not counted); see docs/engines.md"]
        for leg in skeleton.legs:
            notes.extend(_missing(leg))
        if metal:
            notes.append("metal found: muscle near it was classified on median-filtered HU to suppress streaks")
        return tuple(notes)


def _missing(leg: LegSkeleton) -> list[str]:
    side = leg.side.value
    if not leg.found:
        return [f"{side}: no femur or tibia found: no lower-extremity muscle labelled on this side"]
    notes = []
    if leg.shaft is not None and leg.iliac_crest is None:
        notes.append(f"{side}: the iliac crest is not in the scan (the scan starts below it)")
    if leg.shaft is not None and leg.knee_joint is None:
        notes.append(f"{side}: the knee joint is not in the scan")
    if leg.ankle is None and (leg.knee_joint is not None or leg.shaft is None):
        notes.append(f"{side}: the ankle joint is not in the scan")
    return notes

