"""Measurement results as files: ``measurements.json`` (everything) and ``measurements.csv`` (one row per value).

The JSON is the complete `MeasurementReport` plus provenance (software version, when, which series, the engine's
landmarks with how each was found and how sure the engine is) and the definition of every group (title, whether
it is one of the reference study's); the CSV is long-format, one row per structure or group value, for
spreadsheets and QA scripts. A group's mass (``smm_g``) is there only when the group is complete; the mass of its
muscle inside the scan (``in_scan_smm_g``: a lower bound for a truncated or uncertain group) and the scan's
shortfall (``shortfall_mm``) have their own fields. A group with a member muscle the engine did not find where the
scan holds it is ``not found`` with ``qa_flag`` true (JSON ``groups[].qa_flag``; the structure's ``absence``, ``not
found``, says which). Neither file contains patient name, identifier or birth date.
Both are written atomically (a temporary name, then a rename; none left behind when writing fails: `FileWriteError`)
and created with `modes` (0600 unless the node's ``storage.file_mode`` says otherwise).
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any

from sarcoscreen.inference.catalogue import Group
from sarcoscreen.inference.engines.base import Landmark
from sarcoscreen.inference.file_modes import PRIVATE, FileModes
from sarcoscreen.inference.measure import MeasurementReport, StructureMeasurement, side_smi_basis
from sarcoscreen.inference.version import software_version

__all__ = ["CSV_COLUMNS", "group_definitions", "landmark_json", "report_as_json", "write_measurements_csv",
           "write_measurements_json"]

CSV_COLUMNS = (
    "series_instance_uid", "kind", "key", "side", "voxels", "volume_cm3", "mean_hu", "sd_hu", "fraction_in_window",
    "mass_g", "smm_g", "smi_kg_m2", "smi_basis", "smi_both_sides_kg_m2", "in_scan_smm_g", "shortfall_mm", "status",
    "reason", "uncertainty", "uncertainty_measure", "qa_flag", "density_rule", "engine",
)
"""``mass_g``: a structure's mass, muscle only (empty for a bone). ``smm_g``/``smi_kg_m2``: a complete group's mass
and SMI only. ``smi_basis``: what ``smi_kg_m2`` is - for a group row its side (``left side``, ``right side``,
``both sides``), for a screening row the side rule's per-side value (e.g. ``per side (mean of left and right)``,
half the both-sides SMI), whose both-sides SMI is beside it in ``smi_both_sides_kg_m2``. ``in_scan_smm_g``: a
group's muscle inside the scan (a lower bound unless ``status`` is ``complete``). ``shortfall_mm``: how far the
scan falls short of a truncated group or structure, when the engine knows. ``uncertainty_measure``: what
``uncertainty`` is, ``variance`` (predictive variance, no unit) or ``entropy`` (predictive entropy, nats).
``status``: a structure's ``complete``, ``truncated``, ``uncertain`` or, without voxels, ``absent`` - for a muscle of a
per-muscle engine ``not in scan``, ``not found`` or ``not in scan or not found`` (`measure.Absence`, why in
``reason``); a group's completeness (``not found``: a member muscle the engine did not find where the scan holds
it). ``qa_flag``: a structure whose uncertainty exceeds the engine's QA threshold (``true``/``false``), a group
with a member muscle not found (``true``, else empty)."""


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return round(value, 6)
    return value


def landmark_json(landmark: Landmark) -> dict[str, Any]:
    """One landmark as JSON-ready data: name, slice, position, side, description, how it was found (``method``),
    how sure the engine is (``certainty``: confirmed, found, uncertain) and why (``note``)."""
    return _plain(asdict(landmark))


def group_definitions() -> list[dict[str, Any]]:
    """Every group with its title and whether it is one of the reference study's (``false``: sarcoscreen's own)."""
    return [{"group": g.value, "title": g.title, "of_reference_study": g.of_reference_study} for g in Group]


def report_as_json(report: MeasurementReport, **provenance: Any) -> dict[str, Any]:
    """The report as JSON-ready data with provenance (software version, creation time, anything given) and the
    group definitions."""
    return {
        "format": "sarcoscreen-measurements/1",
        "software_version": software_version(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **{k: _plain(v) for k, v in provenance.items()},
        "group_definitions": group_definitions(),
        **_plain(report.to_dict()),
    }


def write_measurements_json(report: MeasurementReport, path: Path, *, modes: FileModes = PRIVATE,
                            **provenance: Any) -> Path:
    modes.make_dirs(path.parent)
    return modes.write_text(path, json.dumps(report_as_json(report, **provenance), indent=2) + "\n")


def _fmt(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _structure_status(m: StructureMeasurement) -> str:
    if m.truncated:
        return "truncated"
    if m.voxels == 0:  # a per-muscle engine's muscle is judged by where it should be: not in scan, not found, ...
        return m.absence.value if m.absence is not None else "absent"
    return "uncertain" if m.extent_uncertain else "complete"


def write_measurements_csv(report: MeasurementReport, path: Path, *, modes: FileModes = PRIVATE) -> Path:
    """One row per structure and per group and side, columns `CSV_COLUMNS`."""
    engine = f"{report.engine_name} {report.engine_version}"
    rows: list[dict[str, str]] = []
    for m in report.structures:
        rows.append({
            "series_instance_uid": report.series_instance_uid, "kind": "structure", "key": m.key,
            "side": m.side.value, "voxels": str(m.voxels), "volume_cm3": _fmt(m.volume_cm3, 3),
            "mean_hu": _fmt(m.mean_hu, 2), "sd_hu": _fmt(m.sd_hu, 2),
            "fraction_in_window": _fmt(m.fraction_in_window, 4), "mass_g": _fmt(m.mass_g, 2),
            "shortfall_mm": _fmt(m.shortfall_mm, 1), "status": _structure_status(m),
            "reason": m.absence_note or m.extent_note,
            "uncertainty": _fmt(m.uncertainty, 5),
            "uncertainty_measure": (report.uncertainty_measure or "") if m.uncertainty is not None else "",
            "qa_flag": "" if m.qa_flag is None else str(m.qa_flag).lower(),
            "density_rule": report.density_rule, "engine": engine,
        })
    for g in report.groups:
        rows.append({
            "series_instance_uid": report.series_instance_uid, "kind": "group", "key": g.group.value,
            "side": g.side, "smm_g": _fmt(g.smm_g, 2), "smi_kg_m2": _fmt(g.smi_kg_m2, 4),
            "smi_basis": side_smi_basis(g.side),
            "in_scan_smm_g": _fmt(g.in_scan_smm_g, 2), "shortfall_mm": _fmt(g.shortfall_mm, 1),
            "status": g.completeness.value, "reason": g.reason, "qa_flag": "true" if g.qa_flag else "",
            "density_rule": report.density_rule, "engine": engine,
        })
    for s in report.screening:
        rows.append({
            "series_instance_uid": report.series_instance_uid, "kind": "screening", "key": s.group.value,
            "side": s.side_rule.value, "smi_kg_m2": _fmt(s.smi_kg_m2, 4), "smi_basis": s.smi_basis,
            "smi_both_sides_kg_m2": _fmt(s.bilateral_smi_kg_m2, 4), "status": s.classification.value,
            "reason": s.reason, "density_rule": report.density_rule, "engine": engine,
        })
    modes.make_dirs(path.parent)
    with modes.atomic(path, "text", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path
