"""Measurement: per-structure volume, attenuation and mass; group mass (SMM), SMI and screening.

From a `Volume` and an engine's `Segmentation`:

* per structure and side: voxels, volume (cm^3), mean and SD HU, the fraction of voxels inside the skeletal-
  muscle HU window (an intramuscular-fat indicator: lower means fattier muscle), and whether the structure touches
  the first or last slice (cut off by the scan); for muscle (`Structure.is_muscle`: a muscle or a muscle region)
  also the mass (g) by the `DensityRule`. A bone has no mass: the rule is muscle's density, and a femur at
  1.04 g/cm3 is no bone's mass;
* per group (gluteal, above knee, all, and the landmark-bounded upper gluteal group) and side (left, right,
  both): skeletal muscle mass (SMM, g) and SMI = SMM / height^2 (kg/m^2) - only when the scan holds the group's
  whole extent. A group the scan cuts is *truncated*: its in-scan mass and, where the engine can estimate it, how
  far the scan falls short are reported, never a smaller mass called complete. A group bounded by a landmark the
  engine is unsure of is *uncertain*. With per-muscle labels each member muscle without voxels is judged by where it
  should be (`inference.muscle_extents`, placed by the engine's landmarks): *not in the scan* when the landmarks
  place it outside the scan, *not found* when the scan holds where it lies - a segmentation failure: the group is
  never complete, is reported as not found and carries a QA flag - and "not in the scan or not found" when there are
  no landmarks to tell (reported as not in the scan, as before);
* per group: the screening SMI (by the side rule) and the classification against a site calibration, or "not
  classified" with the reason. There is no built-in cut-off. The screening SMI is a *per-side* value (by default
  the mean of the left and right SMI, so half the both-sides SMI): `SMI_BASIS` says which, in the words every
  report shows next to it, and `GroupScreening.bilateral_smi_kg_m2` carries the both-sides SMI beside it.

Statistics are accumulated slab by slab with `numpy.bincount`, so memory stays a small multiple of one slab
whatever the length of the series.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from sarcoscreen.inference.calibration import Calibration
from sarcoscreen.inference.catalogue import CATALOGUE, GROUP_BOUNDS, Group, Kind, Side, Structure
from sarcoscreen.inference.density import DensityRule
from sarcoscreen.inference.engines.base import Certainty, ExtentStatus, Segmentation
from sarcoscreen.inference.height import Height
from sarcoscreen.inference.muscle_extents import LANDMARK_ALIASES, LANDMARKS, Coverage, Placement, place
from sarcoscreen.inference.sides import SideRule
from sarcoscreen.inference.volume import Volume

__all__ = [
    "BOTH_SIDES",
    "SMI_BASIS",
    "Absence",
    "Classification",
    "Completeness",
    "GroupMeasurement",
    "GroupScreening",
    "MeasurementReport",
    "StructureMeasurement",
    "gluteal_region_missed",
    "measure",
    "measure_structures",
    "side_smi_basis",
]

SMI_BASIS: dict[SideRule, str] = {
    SideRule.MEAN: "per side (mean of left and right)",
    SideRule.MIN: "per side (lower of left and right)",
    SideRule.LEFT: "left side",
    SideRule.RIGHT: "right side",
}
"""What the screening SMI of each side rule is, in the words the reports put next to it: with ``mean`` it is the
mean of the two sides' SMI, half the both-sides SMI, and must never be read as the latter."""
BOTH_SIDES = "both sides"
"""What the SMI of a group's ``both`` measurement is: both sides' mass / height^2."""


def side_smi_basis(side: str) -> str:
    """What the SMI of a group measured on `side` (``left``, ``right``, ``both``) is, in words."""
    return BOTH_SIDES if side == "both" else SMI_BASIS[SideRule(side)]


_SLAB = 32  # slices per accumulation step
_BINS = 256  # label values (uint8)


class Completeness(StrEnum):
    COMPLETE = "complete"
    TRUNCATED = "truncated"
    UNCERTAIN = "uncertain"
    """The group is in the scan, but a landmark bounding it is uncertain (`engines.base.Certainty`)."""
    NOT_IN_SCAN = "not in scan"
    """The group's muscle is not in the scan: no member is and none is cut, or a member is missing and the landmarks
    place it outside the scan - or, with no landmarks to tell, a member muscle has no voxels (the reason then says
    "not in the scan or not found")."""
    NOT_FOUND = "not found"
    """A member muscle has no voxels although the scan holds where it lies (`Absence.NOT_FOUND`): a segmentation
    failure. Never complete; the group carries a QA flag (`GroupMeasurement.qa_flag`)."""
    NOT_PRODUCED = "not produced by the engine"


class Absence(StrEnum):
    """Why a muscle of a per-muscle engine has no voxels, judged by where it should be (`inference.muscle_extents`)
    relative to the engine's landmarks and the scan's extent."""

    NOT_IN_SCAN = "not in scan"
    """The landmarks place it wholly outside the scan."""
    NOT_FOUND = "not found"
    """The scan holds levels where it lies in every reference: the engine failed to find it."""
    NOT_IN_SCAN_OR_NOT_FOUND = "not in scan or not found"
    """Cannot be told: no (certain) landmarks, or the scan reaches only the edge of where it may lie."""


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
    mass_g: float | None
    """By the density rule, for muscle only (``None`` for a bone: the rule is muscle's density)."""
    truncated: bool
    """The scan cuts the structure: it touches the first or last slice, or the engine says its extent reaches
    beyond the scan (`engines.base.StructureExtent`)."""
    uncertainty: float | None = None
    qa_flag: bool | None = None
    """``True`` when the engine's uncertainty for this structure exceeds its threshold."""
    extent_uncertain: bool = False
    """The engine is unsure where the structure begins or ends (a bounding landmark is uncertain)."""
    shortfall_mm: float | None = None
    """For a truncated structure: how far its expected extent reaches beyond the scan, when the engine knows."""
    extent_note: str = ""
    absence: Absence | None = None
    """For a muscle of a per-muscle engine without voxels, a member of a group: is it outside the scan, or not found
    where the scan holds it? ``None`` for a structure with voxels, a bone, a muscle region or psoas major (in no
    group, so not judged)."""
    absence_note: str = ""
    """Why, in words (where it should be, relative to the landmarks and the scan)."""


@dataclass(frozen=True)
class GroupMeasurement:
    group: Group
    side: str
    """``left``, ``right`` or ``both``."""
    members: tuple[str, ...]
    completeness: Completeness
    reason: str
    smm_g: float | None
    """Only when complete."""
    smi_kg_m2: float | None
    """Only when complete and the height is known."""
    in_scan_smm_g: float | None = None
    """The mass of the group's muscle inside the scan (equal to `smm_g` when complete); for a truncated or uncertain
    group a lower bound, never the group's mass."""
    shortfall_mm: float | None = None
    """For a truncated group: how far the scan falls short of the group's whole extent (mm), when known."""
    qa_flag: bool = False
    """A member muscle was not found where the scan holds it (`Completeness.NOT_FOUND`): review the segmentation."""


@dataclass(frozen=True)
class GroupScreening:
    group: Group
    side_rule: SideRule
    smi_kg_m2: float | None
    """The screening SMI: a per-side value by `side_rule` (`smi_basis`), not the both-sides SMI."""
    classification: Classification
    reason: str
    cutoff_kg_m2: float | None = None
    calibration_name: str | None = None
    calibration_sha256: str | None = None
    bilateral_smi_kg_m2: float | None = None
    """Both sides' SMI (the group's ``both`` measurement), shown beside the screening SMI."""
    smi_basis: str = ""
    """`SMI_BASIS` of `side_rule`: what `smi_kg_m2` is, in words."""


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
    uncertainty_measure: str | None = None
    """Which uncertainty the structures' `StructureMeasurement.uncertainty` is (`engines.base.UNCERTAINTY_MEASURES`:
    ``variance`` or ``entropy``); ``None`` when the engine gives none."""

    def group(self, group: Group, side: str = "both") -> GroupMeasurement:
        return next(g for g in self.groups if g.group is group and g.side == side)

    def screening_of(self, group: Group) -> GroupScreening:
        return next(s for s in self.screening if s.group is group)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class _SliceSums:
    """Per slice and label value: voxel count and HU sum, all voxels and those inside the HU window."""

    count: np.ndarray
    sum_hu: np.ndarray
    count_in: np.ndarray
    sum_hu_in: np.ndarray
    sum_sq: np.ndarray
    """Per label only (for the SD): ``(bins,)``."""

    @classmethod
    def of(cls, volume: Volume, labels: np.ndarray, low: float, high: float) -> _SliceSums:
        n, bins = labels.shape[0], _BINS
        count = np.zeros((n, bins), np.int64)
        sum_hu = np.zeros((n, bins), np.float64)
        count_in = np.zeros((n, bins), np.int64)
        sum_hu_in = np.zeros((n, bins), np.float64)
        sum_sq = np.zeros(bins, np.float64)
        for start in range(0, n, _SLAB):
            slab = labels[start:start + _SLAB]
            labelled = slab > 0  # background (label 0) is not measured: skip its voxels
            k = np.nonzero(labelled)[0]
            lab = slab[labelled]
            index = k * bins + lab  # slice within the slab, label
            hu = volume.hu[start:start + _SLAB][labelled].astype(np.float64)
            size = slab.shape[0] * bins
            count[start:start + slab.shape[0]] = np.bincount(index, minlength=size).reshape(-1, bins)
            sum_hu[start:start + slab.shape[0]] = np.bincount(index, weights=hu, minlength=size).reshape(-1, bins)
            sum_sq += np.bincount(lab, weights=hu * hu, minlength=bins)
            inside = (hu >= low) & (hu <= high)
            count_in[start:start + slab.shape[0]] = np.bincount(index[inside], minlength=size).reshape(-1, bins)
            sum_hu_in[start:start + slab.shape[0]] = np.bincount(index[inside], weights=hu[inside],
                                                                  minlength=size).reshape(-1, bins)
        return cls(count, sum_hu, count_in, sum_hu_in, sum_sq)

    def mass_g(self, label: int, rule: DensityRule, voxel_mm3: float, slices: slice = slice(None)) -> float:
        """Mass of `label` in `slices` by `rule`."""
        if rule.exclude_outside_window:
            return rule.mass_from_sums(int(self.count_in[slices, label].sum()),
                                       float(self.sum_hu_in[slices, label].sum()), voxel_mm3)
        return rule.mass_from_sums(int(self.count[slices, label].sum()), float(self.sum_hu[slices, label].sum()),
                                   voxel_mm3)


def measure_structures(volume: Volume, segmentation: Segmentation, rule: DensityRule) -> tuple[
        StructureMeasurement, ...]:
    """Statistics of every structure the engine can produce (zero voxels when absent)."""
    return _measure_structures(volume, segmentation, rule)[0]


def _measure_structures(volume: Volume, segmentation: Segmentation, rule: DensityRule) -> tuple[
        tuple[StructureMeasurement, ...], _SliceSums]:
    labels = segmentation.labels
    if labels.shape != volume.hu.shape:
        raise ValueError(f"label map {labels.shape} and volume {volume.hu.shape} differ in shape")
    low, high = rule.hu_window
    sums = _SliceSums.of(volume, labels, low, high)
    at_ends = set(np.flatnonzero(sums.count[0]).tolist()) | set(np.flatnonzero(sums.count[-1]).tolist())
    voxel_mm3 = volume.voxel_volume_mm3
    results = []
    for structure in segmentation.structures:
        label = structure.label
        n = int(sums.count[:, label].sum())
        absence = None
        if n == 0 and structure.anatomy.kind is Kind.MUSCLE and structure.anatomy.groups:
            absence = _absence(structure, volume, segmentation)  # psoas major, in no group, is not judged
        total_hu = float(sums.sum_hu[:, label].sum())
        mean = sd = fraction = None
        if n:
            mean = total_hu / n
            sd = float(np.sqrt(max(sums.sum_sq[label] / n - mean * mean, 0.0)))
            fraction = float(sums.count_in[:, label].sum() / n)
        uncertainty = segmentation.structure_uncertainty.get(structure.key)
        qa_flag = None
        if uncertainty is not None and segmentation.uncertainty_threshold is not None:
            qa_flag = bool(uncertainty > segmentation.uncertainty_threshold)
        extent = segmentation.extent(structure.key)
        touching = n > 0 and label in at_ends
        beyond = extent is not None and extent.status is ExtentStatus.TRUNCATED
        results.append(StructureMeasurement(
            key=structure.key, label=label, name=structure.name, side=structure.side, voxels=n,
            volume_cm3=n * voxel_mm3 / 1000.0, mean_hu=mean, sd_hu=sd, fraction_in_window=fraction,
            mass_g=sums.mass_g(label, rule, voxel_mm3) if structure.is_muscle else None,
            truncated=touching or beyond, uncertainty=uncertainty,
            qa_flag=qa_flag,
            extent_uncertain=extent is not None and extent.status is ExtentStatus.UNCERTAIN,
            shortfall_mm=extent.shortfall_mm if beyond else None,
            extent_note=extent.reason if extent is not None and extent.status is not ExtentStatus.IN_SCAN else "",
            absence=None if absence is None else absence[0], absence_note="" if absence is None else absence[1],
        ))
    return tuple(results), sums


_ABSENCE = {Coverage.OUTSIDE: Absence.NOT_IN_SCAN, Coverage.COVERED: Absence.NOT_FOUND,
            Coverage.UNKNOWN: Absence.NOT_IN_SCAN_OR_NOT_FOUND}


def _absence(structure: Structure, volume: Volume, segmentation: Segmentation) -> tuple[Absence, str]:
    """Why a muscle without voxels has none: where it should be (`muscle_extents.place`) placed by the engine's
    landmarks - those of its side, the other side's where its own are missing - against the scan's extent (patient z
    of the first and last slice). Uncertain landmarks place nothing."""
    superior = volume.positions[:, 2]
    scan = (float(superior.min()), float(superior.max()))
    usable = [lm for lm in segmentation.landmarks if LANDMARK_ALIASES.get(lm.name, lm.name) in LANDMARKS]
    certain = [lm for lm in usable if lm.certainty is not Certainty.UNCERTAIN]
    marks: dict[str, float] = {}
    for lm in sorted(certain, key=lambda lm: lm.side is structure.side):  # its own side last: it wins
        marks[LANDMARK_ALIASES.get(lm.name, lm.name)] = float(superior[lm.slice_index])
    if not marks and usable:
        placement = Placement(Coverage.UNKNOWN, "the landmarks to tell are uncertain")
    else:
        placement = place(structure.anatomy.key, scan, marks)
    return _ABSENCE[placement.coverage], placement.reason


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


def _muscle_mass(m: StructureMeasurement) -> float:
    """The mass of a group member (a group's members are muscle, `Structure.is_muscle`: each has its mass)."""
    if m.mass_g is None:
        raise ValueError(f"{m.key} has no mass: a bone cannot be a member of a muscle group")
    return m.mass_g


def _names(items: list[str]) -> str:
    return ", ".join(items)


@dataclass(frozen=True)
class _GroupContext:
    by_key: dict[str, StructureMeasurement]
    sums: _SliceSums
    rule: DensityRule
    voxel_mm3: float
    segmentation: Segmentation
    height: Height
    head_at_last_slice: bool
    """The last slice is the one nearest the patient's head (patient z, superior, increases along the slices)."""


def _measure_group(group: Group, side: str, found: tuple[tuple[Structure, ...], tuple[Structure, ...]],
                   context: _GroupContext) -> GroupMeasurement:
    members, missing = found
    keys = tuple(s.key for s in members)
    if missing:
        return GroupMeasurement(group, side, keys, Completeness.NOT_PRODUCED,
                                f"not measurable: the engine does not produce {_names([s.name for s in missing])}",
                                None, None)
    if not members:
        return GroupMeasurement(group, side, keys, Completeness.NOT_PRODUCED,
                                f"not measurable: the engine produces no structure of the {group.value} group",
                                None, None)
    if group in GROUP_BOUNDS:
        return _measure_bounded_group(group, side, members, context)
    by_key = context.by_key
    absent = [by_key[k] for k in keys if by_key[k].voxels == 0]
    not_found = [m for m in absent if m.absence is Absence.NOT_FOUND]
    if not_found:
        return _not_found(group, side, keys, not_found)
    cut = [by_key[k] for k in keys if by_key[k].truncated]
    unsure = [by_key[k] for k in keys if by_key[k].extent_uncertain and not by_key[k].truncated]
    in_scan = sum(_muscle_mass(by_key[k]) for k in keys)
    if cut:
        # The scan cuts through the group; members beyond the cut are absent for the same reason.
        touching = [m.name for m in cut if not m.extent_note]
        reasons = [f"{m.name}: {m.extent_note}" for m in cut if m.extent_note]
        if touching:
            reasons.insert(0, f"{_names(touching)} touch the first or last slice")
        reasons += _absent_reasons(absent)
        shortfalls = [m.shortfall_mm for m in cut]
        shortfall = max(shortfalls) if all(x is not None for x in shortfalls) else None  # type: ignore[type-var]
        reason = f"not measurable: truncated: {'; '.join(reasons)}"
        if shortfall is not None:
            reason += f"; the scan falls about {shortfall:.0f} mm short"
        reason += f"; {in_scan:.0f} g of the group's muscle lie inside the scan"
        return GroupMeasurement(group, side, keys, Completeness.TRUNCATED, reason, None, None, in_scan, shortfall)
    if absent:
        return GroupMeasurement(group, side, keys, Completeness.NOT_IN_SCAN,
                                f"not measurable: {'; '.join(_absent_reasons(absent))}", None, None)
    if unsure:
        reason = "not measurable: uncertain extent: " + "; ".join(f"{m.name}: {m.extent_note}" for m in unsure)
        return GroupMeasurement(group, side, keys, Completeness.UNCERTAIN, reason, None, None, in_scan)
    return _complete(group, side, keys, in_scan, context.height)


def _absent_reasons(absent: list[StructureMeasurement]) -> list[str]:
    """Members without voxels in words: ``not in the scan: A, B`` (the landmarks place them outside, or a muscle
    region's engine, which cannot tell); ``not in the scan or not found: <why>: C`` per reason it cannot be told."""
    outside = [m.name for m in absent if m.absence in (None, Absence.NOT_IN_SCAN)]
    reasons = [f"not in the scan: {_names(outside)}"] if outside else []
    unknown: dict[str, list[str]] = {}
    for m in absent:
        if m.absence is Absence.NOT_IN_SCAN_OR_NOT_FOUND:
            unknown.setdefault(_short_why(m.absence_note), []).append(m.name)
    reasons += [f"not in the scan or not found: {why}: {_names(names)}" for why, names in unknown.items()]
    return reasons


def _short_why(note: str) -> str:
    """The gist of a `muscle_extents.Placement.reason` (``gist (detail)``): the reason without the levels, which are
    in the structure's own note."""
    return note.split(" (", maxsplit=1)[0]


def _not_found(group: Group, side: str, keys: tuple[str, ...],
               not_found: list[StructureMeasurement]) -> GroupMeasurement:
    """A group with member muscles the engine did not find where the scan holds them: no mass, a QA flag."""
    reason = ("not measurable: not found (segmentation failure, QA): "
              + "; ".join(f"{m.name}: no voxels, but {m.absence_note}" for m in not_found)
              + "; the group's mass is not reported")
    return GroupMeasurement(group, side, keys, Completeness.NOT_FOUND, reason, None, None, qa_flag=True)


def _complete(group: Group, side: str, keys: tuple[str, ...], smm: float, height: Height) -> GroupMeasurement:
    smi = smm / 1000.0 / height.metres**2 if height.metres else None
    reason = "complete" if smi is not None else f"complete; no SMI: {height.note}"
    return GroupMeasurement(group, side, keys, Completeness.COMPLETE, reason, smm, smi, smm)


def _measure_bounded_group(group: Group, side: str, members: tuple[Structure, ...],
                           context: _GroupContext) -> GroupMeasurement:
    """A landmark-bounded group (`GROUP_BOUNDS`): the members' muscle in the slices between the side's two
    landmarks, both included. Each side separately; ``both`` is the sum of the sides."""
    bounds = GROUP_BOUNDS[group]
    keys = tuple(s.key for s in members)
    not_found = [context.by_key[k] for k in keys if context.by_key[k].absence is Absence.NOT_FOUND]
    if not_found:
        return _not_found(group, side, keys, not_found)
    if not any(context.by_key[k].voxels for k in keys):
        return GroupMeasurement(group, side, keys, Completeness.NOT_IN_SCAN,
                                f"not measurable: no {bounds.of_group.value} muscle in the scan", None, None)
    if not context.segmentation.landmarks:
        return GroupMeasurement(group, side, keys, Completeness.NOT_PRODUCED,
                                f"not measurable: the engine reports no landmarks ({bounds.top.replace('_', ' ')}, "
                                f"{bounds.bottom.replace('_', ' ')}) to bound the group", None, None)
    sides = (Side.LEFT, Side.RIGHT) if side == "both" else (Side(side),)
    n = context.segmentation.labels.shape[0]
    total = 0.0
    truncated: list[str] = []
    uncertain: list[str] = []
    for one in sides:
        labels = [s.label for s in members if s.side is one]
        if not any(context.by_key[s.key].voxels for s in members if s.side is one):
            return GroupMeasurement(group, side, keys, Completeness.NOT_IN_SCAN,
                                    f"not measurable: no {one.value} {bounds.of_group.value} muscle in the scan",
                                    None, None)
        top = context.segmentation.landmark(bounds.top, one)
        bottom = context.segmentation.landmark(bounds.bottom, one)
        ends = [lm.slice_index for lm in (top, bottom) if lm is not None]
        if len(ends) == 2:
            first, last = min(ends), max(ends)
        elif top is not None or bottom is not None:
            # The other landmark lies beyond the scan (or was not found): up to the scan's end on its side.
            present = top if top is not None else bottom
            assert present is not None
            towards_head = top is None
            to_last = towards_head == context.head_at_last_slice
            first, last = (present.slice_index, n - 1) if to_last else (0, present.slice_index)
        else:
            first, last = 0, n - 1
        for name, lm in ((bounds.top, top), (bounds.bottom, bottom)):
            if lm is None:
                truncated.append(f"{one.value} {name.replace('_', ' ')} not found in the scan")
            elif lm.slice_index in (0, n - 1):
                truncated.append(f"{one.value} {name.replace('_', ' ')} at the scan's first or last slice")
            elif lm.certainty is Certainty.UNCERTAIN:
                uncertain.append(f"{one.value} {name.replace('_', ' ')} uncertain"
                                 + (f" ({lm.note})" if lm.note else ""))
        slab = slice(first, last + 1)
        total += sum(context.sums.mass_g(label, context.rule, context.voxel_mm3, slab) for label in labels)
    between = f"between the {bounds.top.replace('_', ' ')} and the {bounds.bottom.replace('_', ' ')}"
    if truncated:
        return GroupMeasurement(group, side, keys, Completeness.TRUNCATED,
                                f"not measurable: truncated: {'; '.join(truncated)}; {total:.0f} g of "
                                f"{bounds.of_group.value} muscle {between} lie inside the scan",
                                None, None, total)
    if uncertain:
        return GroupMeasurement(group, side, keys, Completeness.UNCERTAIN,
                                f"not measurable: {'; '.join(uncertain)}", None, None, total)
    return _complete(group, side, keys, total, context.height)


def _screen(group: Group, per_side: dict[str, GroupMeasurement], height: Height, sex: str | None,
            calibration: Calibration | None, side_rule: SideRule, mismatch: str | None) -> GroupScreening:
    rule = calibration.side_rule if calibration else side_rule
    value = rule.apply(per_side["left"].smi_kg_m2, per_side["right"].smi_kg_m2)
    both = per_side["both"].smi_kg_m2
    basis = SMI_BASIS[rule]

    def not_classified(reason: str) -> GroupScreening:
        return GroupScreening(group, rule, value, Classification.NOT_CLASSIFIED, f"not classified: {reason}",
                              None, calibration.name if calibration else None,
                              calibration.sha256 if calibration else None, both, basis)

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
    reason = (f"SMI {basis} {value:.2f} kg/m2 {relation} the cut-off {cutoff.smi_cutoff_kg_m2:.2f} kg/m2 "
              f"for sex {sex} of calibration {calibration.describe()}"
              + (f" ({BOTH_SIDES} {both:.2f} kg/m2)" if both is not None else ""))
    return GroupScreening(group, rule, value, verdict, reason, cutoff.smi_cutoff_kg_m2, calibration.name,
                          calibration.sha256, both, basis)


def gluteal_region_missed(segmentation: Segmentation) -> str | None:
    """Why the scan does not reach the gluteal region, or ``None`` when it does.

    The coverage rule of ``routing.require_gluteal_region``: a segmentation without a single voxel of a gluteal
    muscle does not reach the region, and the series is skipped rather than measured (every group would be
    empty). Engines that produce no structure of the gluteal group cannot tell, and are not judged (``None``).
    Group completeness (`Completeness`) is the finer judgement made once the region is reached.
    """
    members = CATALOGUE.group_members(Group.GLUTEAL, None)
    produced = {s.key for s in segmentation.structures}
    labels = [s.label for s in members if s.key in produced]
    if not labels:
        return None
    if np.isin(segmentation.labels, np.asarray(labels, dtype=segmentation.labels.dtype)).any():
        return None
    return "the images do not reach the gluteal region (no gluteal muscle found)"


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
    structures, sums = _measure_structures(volume, segmentation, rule)
    context = _GroupContext({m.key: m for m in structures}, sums, rule, volume.voxel_volume_mm3, segmentation,
                            height, head_at_last_slice=bool(volume.positions[-1][2] > volume.positions[0][2]))
    groups: list[GroupMeasurement] = []
    screening: list[GroupScreening] = []
    sex = volume.info.patient_sex if volume.info.patient_sex in ("F", "M") else None
    mismatch = None
    if calibration is not None:
        mismatch = calibration.mismatch(f"{segmentation.engine_name} {segmentation.engine_version}", rule.describe())
    for group in Group:
        per_side = {
            side.value: _measure_group(group, side.value, _group_members(group, side, segmentation.structures),
                                       context)
            for side in (Side.LEFT, Side.RIGHT)
        }
        both_members = _group_members(group, None, segmentation.structures)
        per_side["both"] = _measure_group(group, "both", both_members, context)
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
        uncertainty_measure=segmentation.uncertainty_measure,
    )
