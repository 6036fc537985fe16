"""The phantom's ground truth: per-structure and per-group masses measured exactly as `inference.measure` does.

Masses are computed by `sarcoscreen.inference.measure.measure` itself, on the written label map and the written
(integer, rescaled) HU values, under three density rules - constant 1.04 g/cm3, constant 1.06 g/cm3 and
HU-linear - so that ``sarcoscreen analyze --labels labels.nii.gz`` on the series reproduces them.

The phantom knows where its landmarks are: they are handed to `measure` as an engine's landmarks would be (per
side, on the slice nearest the landmark's level, certainty "confirmed"), so the landmark-bounded groups
(`catalogue.GROUP_BOUNDS`: the upper gluteal group, gluteal muscle from the iliac crest top down to the femoral
head centre, slices inclusive) are measured on the phantom's own levels.

Completeness of a group in the ground truth (what a perfect segmenter should report):

* a group of member muscles is **complete** when every member is in the scan and none touches the first or last
  slice, **not in scan** when no member is, and **truncated** otherwise, with the mass of its muscle inside the
  scan (``in_scan_mass_g``);
* a landmark-bounded group is complete when both bounding landmarks lie inside the scan and not on its first or
  last slice, not in scan when the side has none of the bounded group's muscle, truncated otherwise - `measure`'s
  rule, applied to the phantom's exact landmarks.

This module is the one place that turns a label map, HU and the anatomy's landmarks into ground truth: the
generator (`make_phantom`) and the cut series (`crop.crop_phantom`) both call `measure_ground_truth`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sarcoscreen.inference.catalogue import CATALOGUE, GROUP_BOUNDS, Group, Kind, Side, Structure
from sarcoscreen.inference.density import DensityKind, DensityRule
from sarcoscreen.inference.engines.base import Certainty, Landmark, Segmentation
from sarcoscreen.inference.height import Height, HeightSource
from sarcoscreen.inference.measure import (
    Completeness,
    GroupMeasurement,
    MeasurementReport,
    StructureMeasurement,
    measure,
)
from sarcoscreen.inference.phantom.anatomy import Landmarks
from sarcoscreen.inference.volume import Volume

__all__ = [
    "DENSITY_RULES",
    "ENGINE_LANDMARKS",
    "GROUND_TRUTH_ENGINE",
    "bounded_slices",
    "ground_truth_structures",
    "measure_ground_truth",
    "nearest_slice",
    "phantom_landmarks",
]

GROUND_TRUTH_ENGINE = "phantom-ground-truth"

DENSITY_RULES: dict[str, DensityRule] = {
    "constant_1.04": DensityRule(DensityKind.CONSTANT, 1.04),
    "constant_1.06": DensityRule(DensityKind.CONSTANT, 1.06),
    "hu_linear": DensityRule(DensityKind.HU_LINEAR),
}

ENGINE_LANDMARKS: dict[str, str] = {
    "iliac_crest": "iliac_crest_top",
    "acetabular_roof": "acetabular_roof",
    "femoral_head_top": "femoral_head_top",
    "femoral_head": "femoral_head_centre",
    "greater_trochanter": "greater_trochanter",
    "lesser_trochanter": "lesser_trochanter",
    "ischial_tuberosity": "ischial_tuberosity",
    "knee_joint": "knee_joint",
    "ankle": "ankle_joint",
}
"""Landmark names as engines (`engines.base.Landmark.name`) and the labelled real CT (`inference.labelled_ct`)
report them -> the phantom's `Landmarks` field."""

_SIDES = (Side.RIGHT, Side.LEFT)


def ground_truth_structures() -> tuple[Structure, ...]:
    """The structures the ground truth labels: every catalogue muscle and bone (no region labels)."""
    return tuple(s for s in CATALOGUE if s.anatomy.kind in (Kind.MUSCLE, Kind.BONE))


def nearest_slice(slice_z: np.ndarray, z_mm: float) -> int | None:
    """Index of the slice whose patient z (`slice_z`, one per slice) is nearest `z_mm`; ``None`` when `z_mm` lies
    outside the scan (beyond the centre of its first or last slice)."""
    if not float(slice_z.min()) <= z_mm <= float(slice_z.max()):
        return None
    return int(np.argmin(np.abs(slice_z - z_mm)))


def phantom_landmarks(landmarks: Landmarks, volume: Volume) -> tuple[Landmark, ...]:
    """The phantom's landmarks inside the scan as an engine reports them: both sides, on the nearest slice."""
    patient_z = volume.positions[:, 2]
    along_normal = volume.slice_z_mm()
    out = []
    for side in _SIDES:
        for name, field_name in ENGINE_LANDMARKS.items():
            level = float(getattr(landmarks, field_name))
            k = nearest_slice(patient_z, level)
            if k is None:
                continue
            out.append(Landmark(name=name, slice_index=k, z_mm=float(along_normal[k]), side=side,
                                description=f"phantom {field_name.replace('_', ' ')} at z = {level:.1f} mm",
                                method="the phantom's geometry (exact)", certainty=Certainty.CONFIRMED))
    return tuple(out)


def bounded_slices(group: Group, landmarks: Landmarks, slice_z: np.ndarray) -> tuple[int, int] | None:
    """First and last slice index (inclusive) of a landmark-bounded group on a grid of slices at patient z
    `slice_z`, or ``None`` when a bounding landmark lies outside the grid. Both sides share the phantom's levels."""
    bounds = GROUP_BOUNDS[group]
    ends = [nearest_slice(slice_z, float(getattr(landmarks, ENGINE_LANDMARKS[name])))
            for name in (bounds.top, bounds.bottom)]
    if ends[0] is None or ends[1] is None:
        return None
    return min(ends), max(ends)


def _member_completeness(members: Sequence[StructureMeasurement]) -> tuple[Completeness, str]:
    """Ground-truth completeness of a group of member muscles (see the module docstring)."""
    absent = [m.name for m in members if m.voxels == 0]
    cut = [m.name for m in members if m.truncated]
    if len(absent) == len(members):
        return Completeness.NOT_IN_SCAN, "not in scan: none of its muscles is in the scan"
    if not absent and not cut:
        return Completeness.COMPLETE, "complete"
    reasons = []
    if cut:
        reasons.append(f"{', '.join(cut)} touch the first or last slice")
    if absent:
        reasons.append(f"not in the scan: {', '.join(absent)}")
    return Completeness.TRUNCATED, f"truncated: {'; '.join(reasons)}"


def _group_row(index: int, reports: dict[str, MeasurementReport]) -> dict[str, Any]:
    first: GroupMeasurement = reports["constant_1.04"].groups[index]
    by_key = {m.key: m for m in reports["constant_1.04"].structures}
    if first.group in GROUP_BOUNDS:
        completeness, reason = first.completeness, first.reason.removeprefix("not measurable: ")

        def in_scan(r: MeasurementReport) -> float:
            return float(r.groups[index].in_scan_smm_g or 0.0)
    else:
        completeness, reason = _member_completeness([by_key[k] for k in first.members])

        def in_scan(r: MeasurementReport) -> float:
            masses = {m.key: m.mass_g for m in r.structures}
            return float(sum(masses[k] for k in first.members))
    complete = completeness is Completeness.COMPLETE
    return {
        "group": first.group.value,
        "side": first.side,
        "members": list(first.members),
        "completeness": completeness.value,
        "reason": reason,
        "mass_g": {name: r.groups[index].smm_g if complete else None for name, r in reports.items()},
        "in_scan_mass_g": {name: in_scan(r) for name, r in reports.items()},
        "smi_kg_m2": {name: r.groups[index].smi_kg_m2 if complete else None for name, r in reports.items()},
    }


def measure_ground_truth(volume: Volume, labels: np.ndarray, height_m: float, landmarks: Landmarks,
                         version: str) -> dict[str, Any]:
    """Structures, groups and landmarks of ground_truth.json (without parameters and series facts)."""
    segmentation = Segmentation(labels=labels, structures=ground_truth_structures(),
                                engine_name=GROUND_TRUTH_ENGINE, engine_version=version,
                                landmarks=phantom_landmarks(landmarks, volume))
    height = Height(height_m, HeightSource.EXPLICIT)
    reports: dict[str, MeasurementReport] = {
        name: measure(volume, segmentation, rule, height) for name, rule in DENSITY_RULES.items()
    }
    first = reports["constant_1.04"]
    structures = []
    for index, s in enumerate(first.structures):
        structure = CATALOGUE.by_label(s.label)
        structures.append({
            "label": s.label,
            "key": s.key,
            "name": s.name,
            "side": s.side.value,
            "kind": structure.anatomy.kind.value,
            "voxels": s.voxels,
            "volume_cm3": s.volume_cm3,
            "mean_hu": s.mean_hu,
            "sd_hu": s.sd_hu,
            "fraction_in_muscle_window": s.fraction_in_window,
            "truncated": s.truncated,
            "mass_g": {name: r.structures[index].mass_g for name, r in reports.items()},
        })
    groups = [_group_row(index, reports) for index in range(len(first.groups))]
    complete: dict[str, dict[str, bool]] = {}
    for row in groups:
        complete.setdefault(row["group"], {})[row["side"]] = row["completeness"] == Completeness.COMPLETE.value
    patient_z = volume.positions[:, 2]
    landmark_rows = {}
    for name, value in landmarks.reported().items():
        k = nearest_slice(patient_z, value)
        landmark_rows[name] = {"z_mm": round(value, 3), "in_scan": k is not None, "slice_index": k}
    return {
        "density_rules": {name: rule.describe() for name, rule in DENSITY_RULES.items()},
        "structures": structures,
        "groups": groups,
        "complete_groups": complete,
        "complete_group_names": [g.value for g in Group if complete[g.value]["both"]],
        "landmarks_mm": landmark_rows,
    }
