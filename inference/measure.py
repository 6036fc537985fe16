"""Measurement: per-structure volume, attenuation and mass; group mass (SMM), SMI and screening.

From a `Volume` and an engine's `Segmentation`:

* per structure and side: voxels, volume (cm^3), mean and SD HU, the fraction of voxels inside the skeletal-
  muscle HU window (an intramuscular-fat indicator: lower means fattier muscle), mass (g) by the `DensityRule`,
  and whether the structure touches the first or last slice (cut off by the scan);
* per group of the reference study (gluteal, above knee, all) and side (left, right, both): skeletal muscle mass
  (SMM, g) and SMI = SMM / height^2 (kg/m^2) - only when every member structure is inside the scan;
* per group: the screening SMI (by the side rule) and the classification against a site calibration, or "not
  classified" with the reason. There is no built-in cut-off.

Statistics are accumulated slab by slab with `numpy.bincount`, so memory stays a small multiple of one slab
whatever the length of the series.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from sarcoscreen.inference.calibration import Calibration
from sarcoscreen.inference.catalogue import CATALOGUE, Group, Kind, Side, Structure
from sarcoscreen.inference.density import DensityRule
from sarcoscreen.inference.engines.base import Segmentation
from sarcoscreen.inference.height import Height
from sarcoscreen.inference.sides import SideRule
from sarcoscreen.inference.volume import Volume

__all__ = [
    "Classification",
    "Completeness",
    "GroupMeasurement",
    "GroupScreening",
    "MeasurementReport",
    "StructureMeasurement",
    "measure",
    "measure_structures",
]

_SLAB = 32  # slices per accumulation step


class Completeness(StrEnum):
    COMPLETE = "complete"
    TRUNCATED = "truncated"
    NOT_IN_SCAN = "not in scan"
    NOT_PRODUCED = "not produced by the engine"


class Classification(StrEnum):
    SUSPECTED = "suspected"
    NOT_SUSPECTED = "not suspected"
    NOT_CLASSIFIED = "not classified"


@dataclass(frozen=True)
class StructureMeasurement:
    key: str
    label: int
    name: str
    side: Side
    voxels: int
    volume_cm3: float
    mean_hu: float | None
    sd_hu: float | None
    fraction_in_window: float | None
    mass_g: float
    truncated: bool
    """The structure touches the first or last slice: the scan cut it."""
    uncertainty: float | None = None
    qa_flag: bool | None = None
    """``True`` when the engine's uncertainty for this structure exceeds its threshold."""


@dataclass(frozen=True)
class GroupMeasurement:
    group: Group
    side: str
    """``left``, ``right`` or ``both``."""
    members: tuple[str, ...]
    completeness: Completeness
    reason: str
    smm_g: float | None
    smi_kg_m2: float | None


@dataclass(frozen=True)
class GroupScreening:
    group: Group
    side_rule: SideRule
    smi_kg_m2: float | None
    classification: Classification
    reason: str
    cutoff_kg_m2: float | None = None
    calibration_name: str | None = None
    calibration_sha256: str | None = None


@dataclass(frozen=True)
class MeasurementReport:
    """Everything measured for one series: what the SR, the database and the CLI report."""

    series_instance_uid: str
    engine_name: str
    engine_version: str
    density_rule: str
    hu_window: tuple[float, float]
    height_m: float | None
    height_source: str
    height_note: str
    sex: str | None
    structures: tuple[StructureMeasurement, ...]
    groups: tuple[GroupMeasurement, ...]
    screening: tuple[GroupScreening, ...]
    primary_group: Group | None = None
    notes: tuple[str, ...] = field(default=())

    def group(self, group: Group, side: str = "both") -> GroupMeasurement:
        return next(g for g in self.groups if g.group is group and g.side == side)

    def screening_of(self, group: Group) -> GroupScreening:
        return next(s for s in self.screening if s.group is group)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure_structures(volume: Volume, segmentation: Segmentation, rule: DensityRule) -> tuple[
        StructureMeasurement, ...]:
    """Statistics of every structure the engine can produce (zero voxels when absent)."""
    labels = segmentation.labels
    if labels.shape != volume.hu.shape:
        raise ValueError(f"label map {labels.shape} and volume {volume.hu.shape} differ in shape")
    bins = 256
    low, high = rule.hu_window
    count = np.zeros(bins, np.int64)
    sum_hu = np.zeros(bins, np.float64)
    sum_sq = np.zeros(bins, np.float64)
    count_in = np.zeros(bins, np.int64)
    sum_hu_in = np.zeros(bins, np.float64)
    for start in range(0, labels.shape[0], _SLAB):
        slab = labels[start:start + _SLAB]
        labelled = slab > 0  # background (label 0) is not measured: skip its voxels
        lab = slab[labelled]
        hu = volume.hu[start:start + _SLAB][labelled].astype(np.float64)
        count += np.bincount(lab, minlength=bins)
        sum_hu += np.bincount(lab, weights=hu, minlength=bins)
        sum_sq += np.bincount(lab, weights=hu * hu, minlength=bins)
        inside = (hu >= low) & (hu <= high)
        count_in += np.bincount(lab[inside], minlength=bins)
        sum_hu_in += np.bincount(lab[inside], weights=hu[inside], minlength=bins)
    at_ends = set(np.unique(labels[0]).tolist()) | set(np.unique(labels[-1]).tolist())
    voxel_mm3 = volume.voxel_volume_mm3
    results = []
    for structure in segmentation.structures:
        n = int(count[structure.label])
        if rule.exclude_outside_window:
            mass = rule.mass_from_sums(int(count_in[structure.label]), float(sum_hu_in[structure.label]), voxel_mm3)
        else:
            mass = rule.mass_from_sums(n, float(sum_hu[structure.label]), voxel_mm3)
        mean = sd = fraction = None
        if n:
            mean = float(sum_hu[structure.label] / n)
            sd = float(np.sqrt(max(sum_sq[structure.label] / n - mean * mean, 0.0)))
            fraction = float(count_in[structure.label] / n)
        uncertainty = segmentation.structure_uncertainty.get(structure.key)
        qa_flag = None
        if uncertainty is not None and segmentation.uncertainty_threshold is not None:
            qa_flag = bool(uncertainty > segmentation.uncertainty_threshold)
        results.append(StructureMeasurement(
            key=structure.key, label=structure.label, name=structure.name, side=structure.side, voxels=n,
            volume_cm3=n * voxel_mm3 / 1000.0, mean_hu=mean, sd_hu=sd, fraction_in_window=fraction, mass_g=mass,
            truncated=n > 0 and structure.label in at_ends, uncertainty=uncertainty, qa_flag=qa_flag,
        ))
    return tuple(results)


def _group_members(group: Group, side: Side | None,
                   produced: tuple[Structure, ...]) -> tuple[tuple[Structure, ...], tuple[Structure, ...]]:
    """Members of `group` among the structures an engine produces (per-muscle or region labels), and the
    members it does not produce: an engine that labels some of a group's muscles must label them all, or the
    group's mass would silently lack the others."""
    produced_keys = {s.key for s in produced}
    catalogue_members = CATALOGUE.group_members(group, side)
    members = tuple(s for s in catalogue_members if s.key in produced_keys)
    # An engine producing both per-muscle and region labels would count muscle twice: prefer per-muscle.
    if any(s.anatomy.kind is Kind.MUSCLE for s in members):
        members = tuple(s for s in members if s.anatomy.kind is Kind.MUSCLE)
        missing = tuple(s for s in catalogue_members if s.anatomy.kind is Kind.MUSCLE and s.key not in produced_keys)
        return members, missing
    if members:  # region labels: each side's regions must all be there
        missing = tuple(s for s in catalogue_members
                        if s.anatomy.kind is Kind.MUSCLE_REGION and s.key not in produced_keys)
        return members, missing
    return members, ()


def _measure_group(group: Group, side: str, found: tuple[tuple[Structure, ...], tuple[Structure, ...]],
                   by_key: dict[str, StructureMeasurement], height: Height) -> GroupMeasurement:
    members, missing = found
    keys = tuple(s.key for s in members)
    if missing:
        return GroupMeasurement(group, side, keys, Completeness.NOT_PRODUCED,
                                f"not measurable: the engine does not produce {', '.join(s.name for s in missing)}",
                                None, None)
    if not members:
        return GroupMeasurement(group, side, keys, Completeness.NOT_PRODUCED,
                                f"not measurable: the engine produces no structure of the {group.value} group",
                                None, None)
    absent = [by_key[k].name for k in keys if by_key[k].voxels == 0]
    cut = [by_key[k].name for k in keys if by_key[k].truncated]
    if cut:
        # The scan cuts through the group; members beyond the cut are absent for the same reason.
        reason = f"not measurable: truncated: {', '.join(cut)} touch the first or last slice"
        if absent:
            reason += f"; not in the scan: {', '.join(absent)}"
        return GroupMeasurement(group, side, keys, Completeness.TRUNCATED, reason, None, None)
    if absent:
        return GroupMeasurement(group, side, keys, Completeness.NOT_IN_SCAN,
                                f"not measurable: not in the scan: {', '.join(absent)}", None, None)
    smm = sum(by_key[k].mass_g for k in keys)
    smi = smm / 1000.0 / height.metres**2 if height.metres else None
    reason = "complete" if smi is not None else f"complete; no SMI: {height.note}"
    return GroupMeasurement(group, side, keys, Completeness.COMPLETE, reason, smm, smi)


def _screen(group: Group, per_side: dict[str, GroupMeasurement], height: Height, sex: str | None,
            calibration: Calibration | None, side_rule: SideRule, mismatch: str | None) -> GroupScreening:
    rule = calibration.side_rule if calibration else side_rule
    value = rule.apply(per_side["left"].smi_kg_m2, per_side["right"].smi_kg_m2)

    def not_classified(reason: str) -> GroupScreening:
        return GroupScreening(group, rule, value, Classification.NOT_CLASSIFIED, f"not classified: {reason}",
                              None, calibration.name if calibration else None,
                              calibration.sha256 if calibration else None)

    incomplete = [g for g in per_side.values() if g.side != "both" and g.completeness is not Completeness.COMPLETE]
    if incomplete:
        return not_classified(incomplete[0].reason)
    if not height.known:
        return not_classified(height.note)
    if value is None:
        return not_classified(f"no SMI for side rule {rule.value}")
    if calibration is None:
        return not_classified("no calibrated cut-off")
    if mismatch is not None:
        return not_classified(mismatch)
    if sex not in ("F", "M"):
        return not_classified("patient sex unknown; cut-offs are sex-specific")
    cutoff = calibration.cutoff(group, sex)
    if cutoff is None:
        return not_classified(f"calibration {calibration.name} has no cut-off for {group.value}, sex {sex}")
    suspected = value < cutoff.smi_cutoff_kg_m2
    verdict = Classification.SUSPECTED if suspected else Classification.NOT_SUSPECTED
    relation = "below" if suspected else "at or above"
    reason = (f"SMI {value:.2f} kg/m2 ({rule.value}) {relation} the cut-off {cutoff.smi_cutoff_kg_m2:.2f} kg/m2 "
              f"for sex {sex} of calibration {calibration.describe()}")
    return GroupScreening(group, rule, value, verdict, reason, cutoff.smi_cutoff_kg_m2, calibration.name,
                          calibration.sha256)


def measure(
    volume: Volume,
    segmentation: Segmentation,
    rule: DensityRule,
    height: Height,
    *,
    calibration: Calibration | None = None,
    side_rule: SideRule = SideRule.MEAN,
) -> MeasurementReport:
    """Measure every structure and group and screen each group against `calibration` (if any)."""
    structures = measure_structures(volume, segmentation, rule)
    by_key = {m.key: m for m in structures}
    groups: list[GroupMeasurement] = []
    screening: list[GroupScreening] = []
    sex = volume.info.patient_sex if volume.info.patient_sex in ("F", "M") else None
    mismatch = None
    if calibration is not None:
        mismatch = calibration.mismatch(f"{segmentation.engine_name} {segmentation.engine_version}", rule.describe())
    for group in Group:
        per_side = {
            side.value: _measure_group(group, side.value, _group_members(group, side, segmentation.structures),
                                       by_key, height)
            for side in (Side.LEFT, Side.RIGHT)
        }
        both_members = _group_members(group, None, segmentation.structures)
        per_side["both"] = _measure_group(group, "both", both_members, by_key, height)
        groups.extend(per_side.values())
        screening.append(_screen(group, per_side, height, sex, calibration, side_rule, mismatch))
    return MeasurementReport(
        series_instance_uid=volume.info.series_instance_uid,
        engine_name=segmentation.engine_name,
        engine_version=segmentation.engine_version,
        density_rule=rule.describe(),
        hu_window=rule.hu_window,
        height_m=height.metres,
        height_source=height.source.value,
        height_note=height.note,
        sex=sex,
        structures=structures,
        groups=tuple(groups),
        screening=tuple(screening),
        primary_group=calibration.primary_group if calibration else None,
        notes=segmentation.notes,
    )
