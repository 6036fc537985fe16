"""Real CT with manual labels: the reference the real-CT benchmark and acceptance tests judge an engine by.

The cases (``../shared/data``, see its README) are real pelvic CT series of the TCIA Pelvic Reference Data:

* **Pelvic-Ref-002**: the CT and a per-voxel manual annotation of 4 bones and 24 muscles (``label.mhd``, label
  values in ``labels.json``; left and right share a value), on the CT's own voxel grid;
* **Pelvic-Ref-003**: the CT and an RT Structure Set whose manual contours (the Italian ROI names; ``_MBS`` and
  ``_DL`` are two automatic methods) outline the bladder, rectum, prostate and femoral heads. 002 has one too.

`find_cases` lists the cases in a data folder; `load_case` reads one (the series once; the label map checked to
lie on the series' grid; the manual organ contours rasterised with `inference.rtstruct`). A `LabelledCase` gives
views of itself as an engine would see a shorter scan (`LabelledCase.whole`, `LabelledCase.cut`): the series
sliced, not copied (`slice_volume`), ending a given distance below (or above) the femoral head top, with the
reference restricted to the same slices. `compare` sets an engine's `Segmentation` and `MeasurementReport` of such
a view against the reference.

Definitions (the benchmark prints them; ``docs/benchmarks.md``):

* **Sides** of the annotation: split by one sagittal plane at the x of the pelvis label's centre of mass
  (`LabelledCase.midline_x_mm`). The bony pelvis is symmetric and rigid and has some 200,000 labelled voxels, so
  its centre of mass is a robust midline; per-slice midlines are noisy (one iliac wing or femoral head ends a slice
  higher than the other, a single small structure per slice) and undefined in the thigh, below the pelvis. On 002
  the per-slice midpoints between the two femora lie a median 0.9 mm from the plane (90 % within 3 mm, at most
  6.4 mm near the femoral necks), and no labelled hip or thigh muscle voxel (5-23) lies within 7.7 mm of it on any
  slice, so a per-slice midline could not assign any of them differently (``tests/inference/test_labelled_ct.py``). The
  lumbar spine above the pelvis drifts further, but the trunk muscles there are not compared per side.
* **Femoral head top**: the highest slice holding the femur label (per side; the case's is the higher of the two).
  For a case without an annotation, the manual femoral head contours of the structure set.
* **Femoral head centre**: the maximum of the 3-D Euclidean distance transform (in mm) of the femur label within
  its top 60 mm, per side: the head is the thickest part of the upper femur. The maximum, the head's radius, is
  reported (18.5-18.8 mm on 002's label, drawn inside the cortex; 22-23 mm on 003's manual contours).
* **Iliac crest top**: the highest slice holding the pelvis label on that side.
* **Pelvis bottom**: the lowest slice holding the pelvis label on that side (the ischial tuberosity).
  These four are defined once, in `inference.bone_landmarks`, for this module and for an engine's own bone labels.
* **Cuts**: a view cut ``N`` mm below the femoral head top keeps every slice from the head end of the scan down to
  the head top minus ``N`` mm (a negative ``N``: above it), as an abdomen-pelvis CT ends.
* **Groups of the annotation**: gluteal = gluteus maximus + medius + minimus (5-7); above knee = the 19 hip and
  thigh muscles without psoas major, 18 labels (5-23 minus 13); labelled muscle = 5-28 (with the trunk muscles).
* **Verdicts of the annotation** for a view: a group whose labelled voxels on that side touch the view's first or
  last slice is *truncated*; none in the view: *not in scan*; else *complete*. The upper gluteal group is complete
  when the side's crest top and head centre both lie inside the view, not on its first or last slice.
  (Measurement judges a member muscle without voxels by where it should be, placed by the landmarks
  (`inference.muscle_extents`): *not found* when the view holds its place, *not in scan* when it lies outside;
  every member is in the 002 annotation, where an engine that returns the annotation gets the annotation's verdicts
  in every view: `reference_segmentation`.)
* **Engine muscle outside the labels**: engine muscle voxels farther than 3 mm (in the slice plane) from any
  labelled muscle voxel of the same slice. In-plane, because the annotation is drawn slice by slice and the slices
  are 3 mm apart: a 3-D tolerance of 3 mm would excuse a whole slice beyond where the annotator stopped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import MappingProxyType

import numpy as np
from scipy import ndimage

from sarcoscreen.inference.bone_landmarks import bone_landmarks
from sarcoscreen.inference.catalogue import CATALOGUE, Group, Side
from sarcoscreen.inference.density import DensityRule
from sarcoscreen.inference.engines.base import Certainty, EngineError, Landmark, Segmentation
from sarcoscreen.inference.engines.labelmap import align_to_volume
from sarcoscreen.inference.measure import MeasurementReport
from sarcoscreen.inference.metaimage import MetaImageError, read_metaimage
from sarcoscreen.inference.rtstruct import RoiNotFoundError, RTStructError, rasterise_roi, read_structure_set
from sarcoscreen.inference.series_loader import load_series
from sarcoscreen.inference.volume import Volume

__all__ = [
    "ABOVE_KNEE_LABELS",
    "ANNOTATION_NAMES",
    "ANNOTATION_TO_CATALOGUE",
    "FEMUR_LABEL",
    "GLUTEAL_LABELS",
    "MANUAL_ROI_NAMES",
    "MUSCLE_LABELS",
    "PELVIS_LABEL",
    "CaseFiles",
    "CaseLandmark",
    "CaseView",
    "Comparison",
    "GroupComparison",
    "LabelGridMismatchError",
    "LabelTableError",
    "LabelledCTError",
    "LabelledCase",
    "LevelBand",
    "OrganOverlap",
    "OutsideMuscle",
    "UpperGlutealComparison",
    "ViewError",
    "VolumeMass",
    "compare",
    "find_cases",
    "load_case",
    "reference_segmentation",
    "slice_volume",
]

PELVIS_LABEL = 1
FEMUR_LABEL = 2
GLUTEAL_LABELS = (5, 6, 7)
PSOAS_LABEL = 13
ABOVE_KNEE_LABELS = tuple(v for v in range(5, 24) if v != PSOAS_LABEL)
MUSCLE_LABELS = tuple(range(5, 29))
ANNOTATION_TO_CATALOGUE: Mapping[int, tuple[str, str]] = MappingProxyType({
    1: ("pelvis", "hip_bone"), 2: ("femur", "femur"), 3: ("sacrum", "sacrum"),
    5: ("gluteus_maximus_muscle", "gluteus_maximus"), 6: ("gluteus_medius_muscle", "gluteus_medius"),
    7: ("gluteus_minimus_muscle", "gluteus_minimus"), 8: ("iliacus_muscle", "iliacus"),
    9: ("obturator_externus_muscle", "obturator_externus"), 10: ("obturator_internus_muscle", "obturator_internus"),
    11: ("pectineus_muscle", "pectineus"), 12: ("piriformis_muscle", "piriformis"),
    13: ("psoas_major_muscle", "psoas_major"), 14: ("adductor_muscles", "adductors"),
    15: ("biceps_femoris_muscle", "biceps_femoris"), 16: ("gracilis_muscle", "gracilis"),
    17: ("rectus_femoris_muscle", "rectus_femoris"), 18: ("sartorius_muscle", "sartorius"),
    19: ("semimembranosus_muscle", "semimembranosus"), 20: ("semitendinosus_muscle", "semitendinosus"),
    21: ("tensor_fasciae_latae_muscle", "tensor_fasciae_latae"),
    22: ("vastus_lateralis_muscle_and_vastus_intermedius_muscle", "vastus_lateralis_intermedius"),
    23: ("vastus_medialis_muscle", "vastus_medialis"),
})
"""Annotation label value -> (its name in ``labels.json``, the catalogue anatomy it is). `load_case` checks the
names; the trunk muscles (24-28) and the spine (4) have no catalogue structure."""
ANNOTATION_NAMES: Mapping[int, str] = MappingProxyType(
    {**{v: name for v, (name, _) in ANNOTATION_TO_CATALOGUE.items()}, 24: "erector_spinae_muscle",
     28: "oblique_muscle"})
"""Label values this module relies on and their names in ``labels.json``; `load_case` checks the table."""

MANUAL_ROI_NAMES: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "bladder": ("Vescica",),
    "rectum": ("Retto", "RettoAno"),
    "prostate": ("Prostata",),
    "femoral_head_left": ("FemoreSinistro", "femoreSin"),
    "femoral_head_right": ("FemoreDestro", "femoreDes"),
})
"""The manual contours of the Pelvic Reference Data structure sets by organ (names compared case-insensitively)."""

_TOLERANCE_MM = 1e-3


class LabelledCTError(Exception):
    """A labelled case could not be read or used; the message says why."""


class LabelGridMismatchError(LabelledCTError):
    """The label map does not lie on the CT series' voxel grid."""


class LabelTableError(LabelledCTError):
    """The label table (``labels.json``) does not name the label values this module relies on as expected."""


class ViewError(LabelledCTError):
    """A view (a cut) of a case cannot be made: too few slices, or no femoral head to cut at."""


@dataclass(frozen=True)
class CaseFiles:
    """Where one case's files are."""

    name: str
    ct: Path
    labels: Path | None = None
    label_table: Path | None = None
    rtstruct: Path | None = None


def find_cases(data: Path | str) -> tuple[CaseFiles, ...]:
    """The real CT cases in `data` (``../shared/data``): ``pelvic-ref-ct/<case>/ct`` with the annotation of the
    same case name and the structure set in ``rtstruct/`` when present. Empty when there are none."""
    data = Path(data)
    cases = []
    for ct in sorted((data / "pelvic-ref-ct").glob("*/ct")):
        if not ct.is_dir():
            continue
        name = ct.parent.name
        labels = data / "pelvic-annotation" / name / "label.mhd"
        table = data / "pelvic-annotation" / "labels.json"
        rtstruct = sorted((ct.parent / "rtstruct").glob("*.dcm"))
        cases.append(CaseFiles(name, ct, labels if labels.is_file() else None, table if table.is_file() else None,
                               rtstruct[0] if rtstruct else None))
    return tuple(cases)


def slice_volume(volume: Volume, start: int, stop: int) -> Volume:
    """Slices ``start:stop`` of `volume` as a `Volume` that shares its voxels (a view, no copy).

    Positions and slice references are cut with the voxels, so the affine, `Volume.slice_z_mm` and the SOP
    Instance UIDs of every slice stay those of the original series; spacing, directions, series facts and the
    loader's warnings are unchanged. At least two slices (what an engine needs for a volume).
    """
    n = volume.shape[0]
    if not 0 <= start < stop <= n:
        raise ViewError(f"slices {start}:{stop} are not a range inside the volume's {n} slices")
    if stop - start < 2:
        raise ViewError(f"slices {start}:{stop} hold {stop - start} slice; a volume needs at least 2")
    return Volume(hu=volume.hu[start:stop], spacing=volume.spacing, row_direction=volume.row_direction,
                  column_direction=volume.column_direction, positions=volume.positions[start:stop],
                  slices=volume.slices[start:stop], info=volume.info, warnings=volume.warnings)


@dataclass(frozen=True)
class CaseLandmark:
    """A landmark of the reference (annotation or structure set) or of an engine, on the whole series."""

    name: str
    """``iliac_crest`` (top), ``femoral_head_top``, ``femoral_head`` (centre), ``pelvis_bottom``, or an
    engine's landmark name."""
    side: Side | None
    slice_index: int
    """In the whole series."""
    z_mm: float
    """Patient z (superior +) of that slice."""
    source: str
    """``annotation``, ``structure set`` or ``engine``."""
    certainty: str = ""
    method: str = ""
    note: str = ""
    radius_mm: float | None = None
    """For the reference's femoral head centre: the head's radius (the distance transform's maximum)."""


@dataclass(frozen=True)
class VolumeMass:
    volume_cm3: float
    mass_g: float


@dataclass(frozen=True, eq=False)
class LabelledCase:
    """One real CT series with its reference, loaded once."""

    name: str
    volume: Volume
    labels: np.ndarray | None
    """``uint8`` annotation values on the volume's grid, or ``None``."""
    organs: Mapping[str, np.ndarray] = field(default_factory=dict)
    """Boolean masks of the manual structure-set contours by organ (`MANUAL_ROI_NAMES`)."""
    structure_set_uid: str | None = None

    def __post_init__(self) -> None:
        if self.labels is not None and self.labels.shape != self.volume.shape:
            raise LabelGridMismatchError(f"labels {self.labels.shape} and volume {self.volume.shape} differ")
        normal = self.volume.normal
        if abs(normal[2]) < 0.95:
            raise LabelledCTError(f"{self.name}: the series is not axial (slice normal {np.round(normal, 3)})")

    # -- geometry ------------------------------------------------------------------------------------------
    @cached_property
    def superior_mm(self) -> np.ndarray:
        """Patient z (superior +) of every slice."""
        return self.volume.positions[:, 2].astype(np.float64)

    @cached_property
    def pixel_x_mm(self) -> np.ndarray:
        """Patient x (left +) of every pixel of a slice, ``(rows, columns)``."""
        rows, columns = self.volume.shape[1:]
        ii, jj = np.mgrid[:rows, :columns]
        return (self.volume.positions[0][0] + ii * self.volume.spacing[1] * self.volume.column_direction[0]
                + jj * self.volume.spacing[2] * self.volume.row_direction[0])

    @cached_property
    def midline_x_mm(self) -> float | None:
        """Patient x of the sagittal plane splitting the annotation's sides: the pelvis label's centre of mass."""
        if self.labels is None:
            return None
        pelvis = self.labels == PELVIS_LABEL
        if not pelvis.any():
            raise LabelledCTError(f"{self.name}: the annotation has no pelvis label to find the midline by")
        counts = pelvis.sum(axis=0)
        return float((counts * self.pixel_x_mm).sum() / counts.sum())

    def side_mask(self, side: Side) -> np.ndarray:
        """``(rows, columns)`` pixels on `side` of the midline (LPS: +x is the patient's left)."""
        midline = self.midline_x_mm
        if midline is None:
            raise LabelledCTError(f"{self.name}: no annotation, no midline")
        return self.pixel_x_mm > midline if side is Side.LEFT else self.pixel_x_mm <= midline

    def _label_on_side(self, values: Iterable[int], side: Side) -> np.ndarray:
        assert self.labels is not None
        return np.isin(self.labels, tuple(values)) & self.side_mask(side)[None]

    # -- reference landmarks ---------------------------------------------------------------------------------
    @cached_property
    def landmarks(self) -> tuple[CaseLandmark, ...]:
        """The reference's landmarks on the whole series (see the module docstring for the definitions)."""
        found: list[CaseLandmark] = []
        for side in (Side.RIGHT, Side.LEFT):
            if self.labels is not None:
                femur = self._label_on_side((FEMUR_LABEL,), side)
                pelvis = self._label_on_side((PELVIS_LABEL,), side)
                source, what = "annotation", "the femur label"
            elif f"femoral_head_{side.value}" in self.organs:
                femur = self.organs[f"femoral_head_{side.value}"]
                pelvis = None
                source, what = "structure set", "the manual femoral head contour"
            else:
                continue
            for lm in bone_landmarks(femur, pelvis, self.superior_mm, self.volume.spacing, femur_label=what):
                found.append(self._landmark(lm.name, side, lm.slice_index, source, lm.method, lm.radius_mm))
        return tuple(found)

    def landmark(self, name: str, side: Side | None = None) -> CaseLandmark | None:
        return next((lm for lm in self.landmarks if lm.name == name and (side is None or lm.side is side)), None)

    @cached_property
    def head_top(self) -> CaseLandmark | None:
        """The higher of the two femoral head tops (what the cuts are measured from)."""
        tops = [lm for lm in self.landmarks if lm.name == "femoral_head_top"]
        return max(tops, key=lambda lm: lm.z_mm) if tops else None

    def _landmark(self, name: str, side: Side, k: int, source: str, method: str,
                  radius_mm: float | None = None) -> CaseLandmark:
        return CaseLandmark(name, side, int(k), float(self.superior_mm[k]), source, method=method,
                            radius_mm=radius_mm)

    # -- views ------------------------------------------------------------------------------------------------
    def whole(self) -> CaseView:
        return CaseView(self, "whole series", 0, self.volume.shape[0], None)

    def cut(self, mm_below_head_top: float) -> CaseView:
        """The view ending `mm_below_head_top` below the femoral head top (negative: above it): every slice from
        the head end of the scan down to that level."""
        top = self.head_top
        if top is None:
            raise ViewError(f"{self.name}: no femoral head in the reference to cut at")
        keep = np.nonzero(self.superior_mm >= top.z_mm - mm_below_head_top - _TOLERANCE_MM)[0]
        if keep.size == 0:
            raise ViewError(f"{self.name}: no slice lies above {mm_below_head_top:g} mm below the femoral head top")
        start, stop = int(keep.min()), int(keep.max()) + 1
        if keep.size != stop - start:
            raise ViewError(f"{self.name}: the kept slices are not contiguous (is the head end at one end?)")
        where = f"{mm_below_head_top:g} mm below" if mm_below_head_top >= 0 else f"{-mm_below_head_top:g} mm above"
        return CaseView(self, f"{where} head top", start, stop, float(mm_below_head_top))

    # -- per-slice sums of the annotation --------------------------------------------------------------------
    def _label_sums(self, values: tuple[int, ...], side: Side, rule: DensityRule) -> _SliceSums:
        """Per slice: voxels of `values` on `side`, and those (with their HU sum) that count by `rule`."""
        key = (values, side, rule)
        cache = self._sums_cache
        if key not in cache:
            mask = self._label_on_side(values, side)
            hu = self.volume.hu
            low, high = rule.hu_window
            window = (hu >= low) & (hu <= high)
            counted = mask & window if rule.exclude_outside_window else mask
            cache[key] = _SliceSums(
                voxels=mask.sum(axis=(1, 2)),
                in_window=(mask & window).sum(axis=(1, 2)),
                counted=counted.sum(axis=(1, 2)),
                counted_hu=np.where(counted, hu, 0).sum(axis=(1, 2), dtype=np.float64),
                in_window_hu=np.where(mask & window, hu, 0).sum(axis=(1, 2), dtype=np.float64),
            )
        return cache[key]

    @cached_property
    def _sums_cache(self) -> dict[tuple[tuple[int, ...], Side, DensityRule], _SliceSums]:
        return {}

    @cached_property
    def _near_cache(self) -> dict[float, np.ndarray]:
        return {}

    def near_muscle(self, tolerance_mm: float) -> np.ndarray:
        """Voxels of the whole series within `tolerance_mm` in the slice plane of any labelled muscle voxel (labels
        5-28); computed once per tolerance."""
        if self.labels is None:
            raise LabelledCTError(f"{self.name}: no annotation")
        if tolerance_mm not in self._near_cache:
            self._near_cache[tolerance_mm] = self._dilate_muscle(tolerance_mm)
        return self._near_cache[tolerance_mm]

    def _dilate_muscle(self, tolerance_mm: float) -> np.ndarray:
        assert self.labels is not None
        dy, dx = self.volume.spacing[1], self.volume.spacing[2]
        ry, rx = int(tolerance_mm // dy), int(tolerance_mm // dx)
        yy, xx = np.mgrid[-ry:ry + 1, -rx:rx + 1]
        disk = (yy * dy) ** 2 + (xx * dx) ** 2 <= tolerance_mm ** 2 + 1e-9
        muscle = np.isin(self.labels, MUSCLE_LABELS)
        return ndimage.binary_dilation(muscle, structure=disk[None])


@dataclass(frozen=True, eq=False)
class _SliceSums:
    voxels: np.ndarray
    in_window: np.ndarray
    counted: np.ndarray
    counted_hu: np.ndarray
    in_window_hu: np.ndarray

    def total(self, start: int, stop: int, rule: DensityRule, voxel_mm3: float) -> tuple[VolumeMass, VolumeMass]:
        """(all labelled voxels, those inside the HU window) in slices ``start:stop``, volume and mass by `rule`."""
        s = slice(start, stop)
        cm3 = voxel_mm3 / 1000.0
        every = VolumeMass(float(self.voxels[s].sum() * cm3),
                           rule.mass_from_sums(int(self.counted[s].sum()), float(self.counted_hu[s].sum()),
                                               voxel_mm3))
        windowed = VolumeMass(float(self.in_window[s].sum() * cm3),
                              rule.mass_from_sums(int(self.in_window[s].sum()), float(self.in_window_hu[s].sum()),
                                                  voxel_mm3))
        return every, windowed


@dataclass(frozen=True, eq=False)
class CaseView:
    """A case as an engine sees a shorter scan: slices ``start:stop`` of the whole series."""

    case: LabelledCase
    name: str
    start: int
    stop: int
    mm_below_head_top: float | None
    """``None`` for the whole series."""

    @cached_property
    def volume(self) -> Volume:
        return slice_volume(self.case.volume, self.start, self.stop)

    @property
    def labels(self) -> np.ndarray | None:
        return None if self.case.labels is None else self.case.labels[self.start:self.stop]

    def organ(self, name: str) -> np.ndarray:
        return self.case.organs[name][self.start:self.stop]

    def z_range_mm(self) -> tuple[float, float]:
        """Patient z of the lowest and highest slice of the view."""
        z = self.case.superior_mm[self.start:self.stop]
        return float(z.min()), float(z.max())

    def inside(self, k: int) -> bool:
        """Whole-series slice `k` lies strictly inside the view (not its first or last slice)."""
        return self.start < k < self.stop - 1


def load_case(files: CaseFiles) -> LabelledCase:
    """Load a case: the series, the annotation (checked to lie on the series' grid) and the manual contours."""
    volume = load_series(files.ct)
    labels = None
    if files.labels is not None:
        if files.label_table is not None:
            _check_label_table(files.label_table)
        try:
            image = read_metaimage(files.labels)
        except MetaImageError as exc:
            raise LabelledCTError(f"{files.name}: {exc}") from None
        raw = image.array
        if raw.ndim != 3:
            raise LabelGridMismatchError(f"{files.name}: the label map has {raw.ndim} dimensions")
        if raw.min() < 0 or raw.max() > 255:
            raise LabelledCTError(f"{files.name}: label values outside 0..255 ({raw.min()}..{raw.max()})")
        # The MetaImage affine maps (z, y, x) indices to LPS; align_to_volume takes a NIfTI-style RAS affine.
        ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ image.affine
        try:
            labels = align_to_volume(raw.astype(np.uint8), ras, volume)
        except EngineError as exc:  # the labelmap engine's refusal of a grid that is not the series' own
            raise LabelGridMismatchError(f"{files.name}: {exc}") from None
    organs: dict[str, np.ndarray] = {}
    uid = None
    if files.rtstruct is not None:
        try:
            structure_set = read_structure_set(files.rtstruct)
            uid = structure_set.sop_instance_uid
            for organ, names in MANUAL_ROI_NAMES.items():
                try:
                    roi = structure_set.first_of(names)
                except RoiNotFoundError:
                    continue
                organs[organ] = rasterise_roi(roi, volume)
        except RTStructError as exc:
            raise LabelledCTError(f"{files.name}: {exc}") from None
    return LabelledCase(files.name, volume, labels, MappingProxyType(organs), uid)


def _check_label_table(path: Path) -> None:
    try:
        table = json.loads(path.read_text())
        names = {int(entry[0]): str(entry[1]) for entry in table["color"]}
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise LabelTableError(f"{path.name}: not a label table ({exc})") from None
    wrong = {v: names.get(v) for v, name in ANNOTATION_NAMES.items() if names.get(v) != name}
    if wrong:
        raise LabelTableError(f"{path.name}: label values name other structures than expected: "
                              + ", ".join(f"{v} is {n!r}, expected {ANNOTATION_NAMES[v]!r}" for v, n in wrong.items()))


# -- comparison ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupComparison:
    """One group on one side: the engine against the annotation in the same slices."""

    group: Group
    side: Side
    engine: VolumeMass
    labels: VolumeMass | None
    """All labelled voxels of the group's muscles on that side (``None`` without an annotation)."""
    labels_in_window: VolumeMass | None
    """The labelled voxels inside the muscle HU window: the engine's own definition of muscle tissue."""
    engine_verdict: str
    labels_verdict: str | None

    @property
    def error(self) -> float | None:
        """Engine volume / labelled volume - 1."""
        return _ratio(self.engine.volume_cm3, self.labels.volume_cm3 if self.labels else None)

    @property
    def error_in_window(self) -> float | None:
        return _ratio(self.engine.volume_cm3, self.labels_in_window.volume_cm3 if self.labels_in_window else None)


@dataclass(frozen=True)
class UpperGlutealComparison:
    """The upper gluteal group (crest top to femoral head centre) on one side."""

    side: Side
    engine_slices: tuple[int, int] | None
    """Whole-series slices (first, last, inclusive) between the engine's landmarks; ``None`` when the engine
    reports neither."""
    engine: VolumeMass | None
    """The engine's gluteal muscle in its slab: volume counted here, mass as the report gives it (in-scan)."""
    labels_in_engine_slab: VolumeMass | None
    label_slices: tuple[int, int] | None
    """Whole-series slices between the annotation's crest top and head centre, clipped to the view."""
    labels_in_label_slab: VolumeMass | None
    engine_verdict: str
    labels_verdict: str | None

    @property
    def error_same_slices(self) -> float | None:
        return _ratio(self.engine.volume_cm3 if self.engine else None,
                      self.labels_in_engine_slab.volume_cm3 if self.labels_in_engine_slab else None)

    @property
    def error_own_landmarks(self) -> float | None:
        return _ratio(self.engine.volume_cm3 if self.engine else None,
                      self.labels_in_label_slab.volume_cm3 if self.labels_in_label_slab else None)


@dataclass(frozen=True)
class LevelBand:
    """Engine muscle in one band of levels, relative to the femoral head top."""

    low_mm: float
    high_mm: float
    """The band holds slices with ``low_mm <= z - head top < high_mm``."""
    engine_cm3: float
    outside_cm3: float
    labelled_muscle_cm3: float
    landmarks: tuple[str, ...]

    @property
    def outside_fraction(self) -> float | None:
        return self.outside_cm3 / self.engine_cm3 if self.engine_cm3 else None


@dataclass(frozen=True, eq=False)
class OutsideMuscle:
    """Engine muscle farther than `tolerance_mm` from any labelled muscle, in total and by level."""

    tolerance_mm: float
    band_mm: float
    engine_cm3: float
    outside_cm3: float
    bands: tuple[LevelBand, ...]
    mask: np.ndarray = field(repr=False)
    """The outside voxels on the view's grid (for pictures)."""

    @property
    def outside_fraction(self) -> float | None:
        return self.outside_cm3 / self.engine_cm3 if self.engine_cm3 else None


@dataclass(frozen=True)
class OrganOverlap:
    organ: str
    organ_cm3: float
    """The manual contour's volume inside the view."""
    engine_muscle_cm3: float
    """Engine muscle inside the contour."""

    @property
    def fraction(self) -> float | None:
        return self.engine_muscle_cm3 / self.organ_cm3 if self.organ_cm3 else None


@dataclass(frozen=True, eq=False)
class Comparison:
    """An engine's result on one view against the reference."""

    case: str
    view: str
    slices: tuple[int, int]
    """Whole-series slices ``start:stop`` of the view."""
    z_range_mm: tuple[float, float]
    groups: tuple[GroupComparison, ...]
    upper_gluteal: tuple[UpperGlutealComparison, ...]
    outside: OutsideMuscle | None
    organs: tuple[OrganOverlap, ...]
    engine_landmarks: tuple[CaseLandmark, ...]
    engine_muscle_cm3: float

    def group(self, group: Group, side: Side) -> GroupComparison:
        return next(g for g in self.groups if g.group is group and g.side is side)

    def upper(self, side: Side) -> UpperGlutealComparison:
        return next(u for u in self.upper_gluteal if u.side is side)


def compare(view: CaseView, segmentation: Segmentation, report: MeasurementReport, rule: DensityRule, *,
            tolerance_mm: float = 3.0, band_mm: float = 15.0) -> Comparison:
    """Set the engine's `segmentation` and `report` of `view` (measured with `rule`) against the reference."""
    case = view.case
    if segmentation.labels.shape != view.volume.shape:
        raise LabelledCTError(f"segmentation {segmentation.labels.shape} and view {view.volume.shape} differ")
    voxel_mm3 = case.volume.voxel_volume_mm3
    engine_landmarks = tuple(
        CaseLandmark(lm.name, lm.side, lm.slice_index + view.start,
                     float(case.superior_mm[lm.slice_index + view.start]), "engine", lm.certainty.value, lm.method,
                     lm.note)
        for lm in segmentation.landmarks)
    structures = {s.key: s for s in report.structures}
    groups = []
    for group, values in ((Group.GLUTEAL, GLUTEAL_LABELS), (Group.ABOVE_KNEE, ABOVE_KNEE_LABELS)):
        for side in (Side.RIGHT, Side.LEFT):
            measured = report.group(group, side.value)
            engine = VolumeMass(sum(structures[k].volume_cm3 for k in measured.members),
                                sum(structures[k].mass_g for k in measured.members))
            labels = in_window = verdict = None
            if case.labels is not None:
                sums = case._label_sums(values, side, rule)
                labels, in_window = sums.total(view.start, view.stop, rule, voxel_mm3)
                verdict = _labels_verdict(sums.voxels, view)
            groups.append(GroupComparison(group, side, engine, labels, in_window, measured.completeness.value,
                                          verdict))
    upper = tuple(_upper_gluteal(view, segmentation, report, side, rule) for side in (Side.RIGHT, Side.LEFT))
    engine_muscle = np.isin(segmentation.labels, [s.label for s in segmentation.structures if s.is_muscle])
    engine_cm3 = float(engine_muscle.sum() * voxel_mm3 / 1000.0)
    outside = None
    if case.labels is not None:
        outside = _outside(view, engine_muscle, engine_landmarks, tolerance_mm, band_mm)
    organs = tuple(
        OrganOverlap(organ, float(view.organ(organ).sum() * voxel_mm3 / 1000.0),
                     float((view.organ(organ) & engine_muscle).sum() * voxel_mm3 / 1000.0))
        for organ in ("bladder", "rectum", "prostate") if organ in case.organs)
    return Comparison(case.name, view.name, (view.start, view.stop), view.z_range_mm(), tuple(groups), upper,
                      outside, organs, engine_landmarks, engine_cm3)


def _ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or reference is None or reference == 0:
        return None
    return value / reference - 1.0


def _labels_verdict(per_slice: np.ndarray, view: CaseView) -> str:
    inside = per_slice[view.start:view.stop]
    if not inside.any():
        return "not in scan"
    return "truncated" if inside[0] or inside[-1] else "complete"


def _upper_gluteal(view: CaseView, segmentation: Segmentation, report: MeasurementReport, side: Side,
                   rule: DensityRule) -> UpperGlutealComparison:
    case = view.case
    measured = report.group(Group.UPPER_GLUTEAL, side.value)
    voxel_mm3 = case.volume.voxel_volume_mm3
    engine_slab = _engine_slab(view, segmentation, side)
    engine = labels_engine = labels_own = label_slab = verdict = None
    if engine_slab is not None:
        first, last = engine_slab
        member_labels = [CATALOGUE.by_key(k).label for k in measured.members]
        voxels = int(np.isin(segmentation.labels[first - view.start:last - view.start + 1], member_labels).sum())
        engine = VolumeMass(voxels * voxel_mm3 / 1000.0, measured.in_scan_smm_g or 0.0)
    if case.labels is not None:
        sums = case._label_sums(GLUTEAL_LABELS, side, rule)
        if engine_slab is not None:
            labels_engine = sums.total(engine_slab[0], engine_slab[1] + 1, rule, voxel_mm3)[0]
        crest, centre = case.landmark("iliac_crest", side), case.landmark("femoral_head", side)
        if crest is not None and centre is not None:
            low, high = sorted((crest.slice_index, centre.slice_index))
            clipped = (max(low, view.start), min(high, view.stop - 1))
            if clipped[0] <= clipped[1]:
                label_slab = clipped
                labels_own = sums.total(clipped[0], clipped[1] + 1, rule, voxel_mm3)[0]
            verdict = "complete" if view.inside(crest.slice_index) and view.inside(centre.slice_index) else \
                "truncated"
            if not sums.voxels[view.start:view.stop].any():
                verdict = "not in scan"
    return UpperGlutealComparison(side, engine_slab, engine, labels_engine, label_slab, labels_own,
                                  measured.completeness.value, verdict)


def _engine_slab(view: CaseView, segmentation: Segmentation, side: Side) -> tuple[int, int] | None:
    """Whole-series slices (first, last) between the engine's crest and femoral head centre on `side`, as
    measurement bounds the group: a missing landmark leaves the slab open to the scan's end on its side."""
    top = segmentation.landmark("iliac_crest", side)
    bottom = segmentation.landmark("femoral_head", side)
    n = segmentation.labels.shape[0]
    if top is None and bottom is None:
        return None
    if top is not None and bottom is not None:
        first, last = sorted((top.slice_index, bottom.slice_index))
    else:
        present = top if top is not None else bottom
        assert present is not None
        z = view.case.superior_mm[view.start:view.stop]
        head_at_last = bool(z[-1] > z[0])
        towards_head = top is None  # the crest is missing: the slab runs to the head end
        first, last = (present.slice_index, n - 1) if towards_head == head_at_last else (0, present.slice_index)
    return first + view.start, last + view.start


def _outside(view: CaseView, engine_muscle: np.ndarray, engine_landmarks: tuple[CaseLandmark, ...],
             tolerance_mm: float, band_mm: float) -> OutsideMuscle:
    case = view.case
    near = case.near_muscle(tolerance_mm)
    outside = engine_muscle & ~near[view.start:view.stop]
    labelled = np.isin(view.labels, MUSCLE_LABELS) if view.labels is not None else np.zeros_like(outside)
    cm3 = case.volume.voxel_volume_mm3 / 1000.0
    top = case.head_top
    reference_z = top.z_mm if top is not None else 0.0
    z = case.superior_mm[view.start:view.stop] - reference_z
    band_index = np.floor(z / band_mm + 1e-9).astype(int)
    per_slice = (engine_muscle.sum(axis=(1, 2)), outside.sum(axis=(1, 2)), labelled.sum(axis=(1, 2)))
    marks = [lm for lm in case.landmarks if view.start <= lm.slice_index < view.stop]
    marks += list(engine_landmarks)
    bands = []
    for b in sorted(set(band_index.tolist()), reverse=True):
        in_band = band_index == b
        names = tuple(_mark(lm) for lm in marks if math.floor((lm.z_mm - reference_z) / band_mm + 1e-9) == b)
        bands.append(LevelBand(b * band_mm, (b + 1) * band_mm, float(per_slice[0][in_band].sum() * cm3),
                               float(per_slice[1][in_band].sum() * cm3), float(per_slice[2][in_band].sum() * cm3),
                               names))
    return OutsideMuscle(tolerance_mm, band_mm, float(per_slice[0].sum() * cm3), float(per_slice[1].sum() * cm3),
                         tuple(bands), outside)


_SHORT = {"iliac_crest": "crest", "femoral_head": "head centre", "femoral_head_top": "head top",
          "pelvis_bottom": "pelvis bottom", "acetabular_roof": "acetabular roof",
          "lesser_trochanter": "lesser trochanter", "greater_trochanter": "greater trochanter"}


def _mark(lm: CaseLandmark) -> str:
    side = {Side.RIGHT: " R", Side.LEFT: " L"}.get(lm.side, "") if lm.side else ""
    who = "eng" if lm.source == "engine" else "ref"
    return f"{_SHORT.get(lm.name, lm.name.replace('_', ' '))}{side} ({who})"



def reference_segmentation(view: CaseView) -> Segmentation:
    """The annotation of `view` as an engine's `Segmentation`: its 19 hip and thigh muscles and its bones in
    catalogue labels per side (the trunk muscles have none), with the reference's landmarks inside the view.

    An engine that returned exactly this would match the reference: `compare` must then report no error and the
    annotation's own verdicts, which makes it the check of the comparison itself.
    """
    case = view.case
    labels = view.labels
    if labels is None:
        raise LabelledCTError(f"{case.name}: no annotation")
    luts = {}
    structures = []
    for side in (Side.RIGHT, Side.LEFT):
        lut = np.zeros(256, np.uint8)
        for value, (_, key) in ANNOTATION_TO_CATALOGUE.items():
            structure = CATALOGUE.structure(key, side)  # an unpaired anatomy (sacrum) ignores the side
            lut[value] = structure.label
            if structure not in structures:
                structures.append(structure)
        luts[side] = lut
    left = case.side_mask(Side.LEFT)[None]
    out = np.where(left, luts[Side.LEFT][labels], luts[Side.RIGHT][labels])
    z = view.volume.slice_z_mm()
    landmarks = tuple(
        Landmark(lm.name, lm.slice_index - view.start, float(z[lm.slice_index - view.start]), lm.side,
                 description=f"{lm.name.replace('_', ' ')} of the reference", method=lm.method,
                 certainty=Certainty.FOUND)
        for lm in case.landmarks if view.start <= lm.slice_index < view.stop)
    return Segmentation(labels=out.astype(np.uint8), structures=tuple(structures), engine_name="annotation",
                        engine_version="1", landmarks=landmarks)
