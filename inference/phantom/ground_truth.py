"""The phantom's ground truth: per-structure and per-group masses measured exactly as `inference.measure` does.

Masses are computed by `sarcoscreen.inference.measure.measure` itself, on the written label map and the written
(integer, rescaled) HU values, under three density rules - constant 1.04 g/cm3, constant 1.06 g/cm3 and
HU-linear - so that ``sarcoscreen analyze --labels labels.nii.gz`` on the series reproduces them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sarcoscreen.inference.catalogue import CATALOGUE, Group, Kind
from sarcoscreen.inference.density import DensityKind, DensityRule
from sarcoscreen.inference.engines.base import Segmentation
from sarcoscreen.inference.height import Height, HeightSource
from sarcoscreen.inference.measure import Completeness, MeasurementReport, measure
from sarcoscreen.inference.phantom.anatomy import Landmarks
from sarcoscreen.inference.volume import Volume

__all__ = ["DENSITY_RULES", "GROUND_TRUTH_ENGINE", "ground_truth_structures", "measure_ground_truth"]

GROUND_TRUTH_ENGINE = "phantom-ground-truth"

DENSITY_RULES: dict[str, DensityRule] = {
    "constant_1.04": DensityRule(DensityKind.CONSTANT, 1.04),
    "constant_1.06": DensityRule(DensityKind.CONSTANT, 1.06),
    "hu_linear": DensityRule(DensityKind.HU_LINEAR),
}


def ground_truth_structures() -> tuple:
    """The structures the ground truth labels: every catalogue muscle and bone (no region labels)."""
    return tuple(s for s in CATALOGUE if s.anatomy.kind in (Kind.MUSCLE, Kind.BONE))


def measure_ground_truth(volume: Volume, labels: np.ndarray, height_m: float, landmarks: Landmarks,
                         version: str) -> dict[str, Any]:
    """Structures, groups and landmarks of ground_truth.json (without parameters and series facts)."""
    segmentation = Segmentation(labels=labels, structures=ground_truth_structures(),
                                engine_name=GROUND_TRUTH_ENGINE, engine_version=version)
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
    groups = []
    complete: dict[str, dict[str, bool]] = {}
    for index, g in enumerate(first.groups):
        groups.append({
            "group": g.group.value,
            "side": g.side,
            "members": list(g.members),
            "completeness": g.completeness.value,
            "reason": g.reason,
            "mass_g": {name: r.groups[index].smm_g for name, r in reports.items()},
            "smi_kg_m2": {name: r.groups[index].smi_kg_m2 for name, r in reports.items()},
        })
        complete.setdefault(g.group.value, {})[g.side] = g.completeness is Completeness.COMPLETE
    z = volume.slice_z_mm()
    z_lo, z_hi = float(z.min()), float(z.max())
    landmark_rows = {}
    for name, value in landmarks.reported().items():
        inside = z_lo <= value <= z_hi
        landmark_rows[name] = {
            "z_mm": round(value, 3),
            "in_scan": inside,
            "slice_index": int(np.argmin(np.abs(z - value))) if inside else None,
        }
    return {
        "density_rules": {name: rule.describe() for name, rule in DENSITY_RULES.items()},
        "structures": structures,
        "groups": groups,
        "complete_groups": complete,
        "complete_group_names": [g.value for g in Group if complete[g.value]["both"]],
        "landmarks_mm": landmark_rows,
    }
