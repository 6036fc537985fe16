"""The node's results per series as QA staff read them: a table, CSV or JSON (`format_results`).

Used by ``sarcoscreen results`` and by ``sarcoscreen demo``. The output shows patient IDs (QA staff need them); it
is for the terminal or a file, never for logs.

Every group of `Group` is shown, the reference study's first and sarcoscreen's own (upper gluteal) after them,
marked. A group's mass and SMI are shown only when it is complete; for a truncated or uncertain group the mass of
its muscle inside the scan is shown apart from them, as a lower bound (``>=``, CSV ``*_in_scan_lower_bound_kg``),
with the scan's shortfall when known.

Two SMI per group: the screening SMI, a per-side value by the side rule - headed with what it is, e.g. ``gluteal
SMI per side (mean of left and right)``, half the both-sides SMI (CSV ``*_smi_per_side_kg_m2`` with
``*_smi_side_rule``; JSON ``screening_smi_kg_m2`` with ``screening_smi_basis``) - and beside it both sides' SMI
(``gluteal SMI both sides``; CSV ``*_smi_both_sides_kg_m2``; JSON ``smi_kg_m2``).

Which engine measured each row: its name and version as the worker stored them with the job (``jobs.engine_name``,
``jobs.engine_version``; for ``bayesian-unet`` the version names the weights, ``1.0+<sha256 prefix>``), in the
table's ``engine`` column, CSV ``engine`` and JSON ``job.engine`` (with ``engine_name`` and ``engine_version``
apart).
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from typing import Any

from sarcoscreen.db.queries import GROUPS, ResultRow
from sarcoscreen.inference.catalogue import Group
from sarcoscreen.inference.measure import BOTH_SIDES, SMI_BASIS
from sarcoscreen.inference.sides import SideRule
from sarcoscreen.reports.results_table import OWN_GROUP_MARK, display_groups, own_groups_note

__all__ = ["format_results"]


def _number(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _flat(row: ResultRow) -> dict[str, Any]:
    """One row as flat columns (CSV and the table)."""
    flat: dict[str, Any] = {
        "series_instance_uid": row.series_instance_uid,
        "patient_id": row.patient_id or "",
        "accession_number": row.accession_number or "",
        "study_date": row.study_date.isoformat() if row.study_date else "",
        "state": row.state,
        "job_id": row.job_id or "",
        "finished_at": row.finished_at.isoformat(timespec="seconds") if row.finished_at else "",
        "engine": row.engine or "",
        "height_m": _number(row.height_m),
    }
    for group in GROUPS:
        value = row.groups.get(group)
        flat[f"{group}_smm_kg"] = _number(value.smm_g / 1000.0 if value and value.smm_g is not None else None)
        flat[f"{group}_smi_per_side_kg_m2"] = _number(value.screening_smi_kg_m2 if value else None)
        flat[f"{group}_smi_side_rule"] = (value.screening_side_rule or "") if value else ""
        flat[f"{group}_smi_both_sides_kg_m2"] = _number(value.smi_kg_m2 if value else None)
        flat[f"{group}_classification"] = (value.classification or "") if value else ""
        flat[f"{group}_completeness"] = value.completeness if value else ""
        partial = value is not None and not value.complete
        flat[f"{group}_in_scan_lower_bound_kg"] = _number(
            value.in_scan_smm_g / 1000.0 if partial and value.in_scan_smm_g is not None else None)
        flat[f"{group}_shortfall_mm"] = _number(value.shortfall_mm if partial else None, 0)
    flat["flagged"] = "yes" if row.flagged else ""
    flat["qa"] = "; ".join(row.qa_flags)
    flat["in_scan"] = _in_scan_text(row)
    flat["delivered"] = f"{row.deliveries_sent}/{row.deliveries_total}" if row.deliveries_total else ""
    flat["reason"] = row.skip_reason or row.job_error or ""
    return flat


def _in_scan_text(row: ResultRow) -> str:
    """The truncated or uncertain groups with the muscle inside the scan (a lower bound), e.g.
    ``all truncated >= 6.12 kg, 40 mm short``."""
    parts = []
    for group in display_groups():
        value = row.groups.get(group.value)
        if value is None or value.complete or value.in_scan_smm_g is None:
            continue
        text = f"{_short(group)} {value.completeness} >= {value.in_scan_smm_g / 1000.0:.2f} kg"
        if value.shortfall_mm is not None:
            text += f", {value.shortfall_mm:.0f} mm short"
        parts.append(text)
    return "; ".join(parts)


def _short(group: Group) -> str:
    """A group's name in a table column: its value with hyphens, sarcoscreen's own groups marked."""
    name = group.value.replace("_", "-")
    return name if group.of_reference_study else f"{name} {OWN_GROUP_MARK}"


def _json(row: ResultRow) -> dict[str, Any]:
    return {
        "series_instance_uid": row.series_instance_uid, "study_instance_uid": row.study_instance_uid,
        "patient_id": row.patient_id, "accession_number": row.accession_number,
        "study_date": row.study_date.isoformat() if row.study_date else None,
        "series_description": row.series_description, "state": row.state, "skip_reason": row.skip_reason,
        "instances": row.instances, "last_received_at": row.last_received_at.isoformat(),
        "job": None if row.job_id is None else {
            "id": row.job_id, "status": row.job_status, "error": row.job_error, "engine": row.engine,
            "engine_name": row.engine_name, "engine_version": row.engine_version,
            "finished_at": row.finished_at.isoformat() if row.finished_at else None,
        },
        "height_m": row.height_m, "height_source": row.height_source, "flagged": row.flagged,
        "qa_flags": list(row.qa_flags),
        "groups": {name: {"of_reference_study": Group(name).of_reference_study, "completeness": g.completeness,
                          "smm_g": g.smm_g, "smi_kg_m2": g.smi_kg_m2, "in_scan_smm_g": g.in_scan_smm_g,
                          "in_scan_is_lower_bound": not g.complete, "shortfall_mm": g.shortfall_mm,
                          "screening_smi_kg_m2": g.screening_smi_kg_m2, "screening_side_rule": g.screening_side_rule,
                          "screening_smi_basis": _basis(g.screening_side_rule),
                          "classification": g.classification, "cutoff_kg_m2": g.cutoff_kg_m2, "reason": g.reason,
                          "qa_flag": g.qa_flag}
                   for name, g in row.groups.items()},
        "deliveries": {"sent": row.deliveries_sent, "total": row.deliveries_total},
    }


def _basis(side_rule: str | None) -> str | None:
    """What a screening SMI of `side_rule` is (`measure.SMI_BASIS`), e.g. ``per side (mean of left and right)``."""
    try:
        return SMI_BASIS[SideRule(side_rule)] if side_rule else None
    except ValueError:
        return None


def _per_side_heading(rows: list[ResultRow], group: Group) -> str:
    """The heading of a group's screening SMI column: what the values are by the rows' side rule; rows made with
    different side rules (the setting changed) are headed ``per side (side rule: CSV or JSON)``."""
    rules = {value.screening_side_rule for row in rows if (value := row.groups.get(group.value)) is not None
             and value.screening_smi_kg_m2 is not None}
    basis = _basis(next(iter(rules))) if len(rules) == 1 else None
    return f"{_short(group)} SMI {basis or 'per side (side rule: CSV or JSON)'}"


def _table_columns(rows: list[ResultRow]) -> tuple[tuple[str, str], ...]:
    smi = []
    for group in display_groups():
        smi += [(f"{group.value}_smi_per_side_kg_m2", _per_side_heading(rows, group)),
                (f"{group.value}_smi_both_sides_kg_m2", f"{_short(group)} SMI {BOTH_SIDES}")]
    return (
        ("patient_id", "patient"), ("study_date", "study date"), ("state", "state"), ("job_id", "job"),
        ("engine", "engine"), *smi,
        ("flagged", "flagged"), ("qa", "QA"), ("delivered", "sent"),
        ("in_scan", "not complete: muscle in scan (lower bound)"),
        ("series_instance_uid", "series"), ("reason", "reason"),
    )


def format_results(rows: list[ResultRow], fmt: str) -> str:
    """`rows` as ``table``, ``csv`` or ``json`` text."""
    if fmt == "json":
        return json.dumps([_json(r) for r in rows], indent=2) + "\n"
    flat = [_flat(r) for r in rows]
    if fmt == "csv":
        buffer = io.StringIO()
        columns = list(flat[0]) if flat else list(_flat_columns())
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(flat)
        return buffer.getvalue()
    if not rows:
        return "no results\n"
    columns = _table_columns(rows)
    widths = {key: max(len(title), *(len(str(f[key])) for f in flat)) for key, title in columns}
    widths["reason"] = min(widths["reason"], 60)
    widths["qa"] = min(widths["qa"], 60)
    lines = ["  ".join(title.ljust(widths[key]) for key, title in columns).rstrip()]
    lines.append("  ".join("-" * widths[key] for key, _ in columns))
    for f in flat:
        lines.append("  ".join(str(f[key])[:widths[key]].ljust(widths[key]) for key, _ in columns).rstrip())
    lines.append("SMI in kg/m2. SMI per side: the screening value by the side rule, as compared with the cut-off "
                 "(the mean of left and right is half the both-sides SMI); SMI both sides: both sides' mass / "
                 "height^2; flagged: a group below its calibrated cut-off")
    lines.append("not complete: a truncated or uncertain group has no mass or SMI; the muscle of it inside the scan "
                 "is a lower bound, not the group's mass")
    lines.append("QA: a group with a muscle the engine did not find where the scan holds it (not found: a "
                 "segmentation failure, no mass), or structures whose segmentation uncertainty exceeds the threshold")
    lines += own_groups_note()
    return "\n".join(lines) + "\n"


def _flat_columns() -> dict[str, Any]:
    placeholder = ResultRow("", "", None, None, None, None, "", None, 0, datetime.now(UTC))
    return _flat(placeholder)
