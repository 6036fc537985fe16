"""Turn a validation study's results into the site calibration file the node screens with.

Input: ``results.json`` of ``sarcoscreen study`` (format ``sarcoscreen-study/1``). Output: a calibration file in
the format `sarcoscreen.inference.calibration` reads (``sarcoscreen-calibration/1``), holding for every group
and sex with an estimable ROC the Youden-optimal SMI cut-off (`statistics.youden`: "suspected when SMI < cut-off"
reproduces the study's sensitivity and specificity), n, the number with low muscle mass, AUC with DeLong 95 % CI,
sensitivity and specificity, and the study's side rule (the cut-offs are on the scale of that rule).

The format is extended additively (the reader ignores what it does not know): each cut-off also carries
``sensitivity_ci95``, ``specificity_ci95``, ``youden_j``, ``method`` and ``of_reference_study`` (false for
sarcoscreen's own upper gluteal group, which is calibrated like the reference study's three); a top-level
``provenance`` object
records the study (date, title, SHA-256 of results.json), the cohort file (name, SHA-256, rows, joined), the
engine(s) and density rule(s) that measured the cohort, the reference standard with its citation, how the
cut-off was chosen and the warnings. ``synthetic`` is true when the study was.

A group and sex is left out, with the reason, when the study has no cut-off for it (one class empty, J <= 0),
when fewer than `min_per_class` patients are in a class, or - unless ``include_uninformative`` - when the AUC's
95 % CI includes 0.5 (CT SMI not shown to discriminate).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sarcoscreen.inference.calibration import FORMAT, Calibration, CalibrationError, parse_calibration
from sarcoscreen.inference.catalogue import Group
from sarcoscreen.reports.study.report import STUDY_FORMAT

__all__ = ["CalibrationDraft", "StudyFileError", "draft_calibration", "read_study", "write_calibration"]

SMALL_CLASS = 10
_DIGITS = 4


class StudyFileError(Exception):
    """The study results cannot be used (missing, not a study, no usable cut-off); says why."""


@dataclass(frozen=True)
class CalibrationDraft:
    data: dict[str, Any]
    """The calibration file's content."""
    skipped: tuple[str, ...]
    """Group and sex left out, with the reason."""
    warnings: tuple[str, ...]


def read_study(path: Path) -> tuple[dict[str, Any], str]:
    """``results.json`` (or the folder holding it) and its SHA-256."""
    file = path / "results.json" if path.is_dir() else path
    try:
        raw = file.read_bytes()
        data = json.loads(raw)
    except OSError as exc:
        raise StudyFileError(f"study results {file} cannot be read: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StudyFileError(f"study results {file} are not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != STUDY_FORMAT:
        raise StudyFileError(f"{file} is not the results.json of `sarcoscreen study` (format {STUDY_FORMAT})")
    return data, hashlib.sha256(raw).hexdigest()


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), _DIGITS)


def draft_calibration(study: dict[str, Any], study_sha256: str, *, name: str | None = None,
                      primary_group: Group | None = None, min_per_class: int = 2,
                      include_uninformative: bool = False, software_version: str = "0+unknown",
                      created: datetime | None = None) -> CalibrationDraft:
    """The calibration for `study` (a parsed results.json); raise `StudyFileError` when no cut-off is usable."""
    synthetic = bool(study.get("synthetic"))
    created_at = (created or datetime.now(UTC)).isoformat(timespec="seconds")
    cutoffs: list[dict[str, Any]] = []
    skipped: list[str] = []
    warnings: list[str] = []
    for row in study.get("roc", []):
        what = f"{row['group']} {row['stratum']}"
        optimal, auc, ci = row.get("optimal"), row.get("auc"), row.get("auc_ci")
        n, n_low = int(row["n"]), int(row["n_low"])
        if optimal is None or auc is None:
            skipped.append(f"{what}: no cut-off ({row.get('note') or 'no ROC analysis'})")
            continue
        if min(n_low, n - n_low) < min_per_class:
            skipped.append(f"{what}: {n_low} with and {n - n_low} without low muscle mass; at least {min_per_class} "
                           "in each class are required")
            continue
        if ci is None:
            skipped.append(f"{what}: no confidence interval for the AUC")
            continue
        if ci[0] <= 0.5 and not include_uninformative:
            skipped.append(f"{what}: AUC {auc:.3f} with 95% CI {ci[0]:.3f}-{ci[1]:.3f} includes 0.5 (CT SMI not "
                           "shown to discriminate)")
            continue
        if min(n_low, n - n_low) < SMALL_CLASS:
            warnings.append(f"{what}: only {min(n_low, n - n_low)} patients in the smaller class; the cut-off is "
                            "very uncertain")
        cutoffs.append({
            "group": row["group"], "sex": row["stratum"], "smi_cutoff_kg_m2": float(optimal["cutoff"]),
            "n": n, "n_low_muscle_mass": n_low, "auc": _round(auc), "auc_ci95": [_round(ci[0]), _round(ci[1])],
            "sensitivity": _round(optimal["sensitivity"]), "specificity": _round(optimal["specificity"]),
            "sensitivity_ci95": [_round(v) for v in optimal["sensitivity_ci"]] if optimal.get("sensitivity_ci")
            else None,
            "specificity_ci95": [_round(v) for v in optimal["specificity_ci"]] if optimal.get("specificity_ci")
            else None,
            "youden_j": _round(optimal["youden_j"]), "method": "youden",
            "of_reference_study": Group(row["group"]).of_reference_study,
        })
    if not cutoffs:
        raise StudyFileError("the study gives no usable cut-off:\n  " + "\n  ".join(skipped or ["no ROC results"]))
    groups = [c["group"] for c in cutoffs]
    if primary_group is None:
        primary = Group.ALL.value if Group.ALL.value in groups else groups[0]
    else:
        primary = primary_group.value
        if primary not in groups:
            raise StudyFileError(f"primary group {primary} has no cut-off in this study")
    cohort = study.get("cohort", {})
    measurements = study.get("measurements", {})
    if len(measurements.get("engines", [])) > 1:
        warnings.append("the study mixes engines: " + "; ".join(measurements["engines"]))
    reference = study.get("reference_standard", {})
    label = name or f"{'SYNTHETIC ' if synthetic else ''}calibration {created_at[:10]} ({reference.get('name', '')})"
    data = {
        "format": FORMAT,
        "name": label,
        "created": created_at,
        "software_version": software_version,
        "reference_standard": reference.get("text", ""),
        "side_rule": study["side_rule"],
        "primary_group": primary,
        "synthetic": synthetic,
        "cutoffs": cutoffs,
        "provenance": {
            "study_title": study.get("title", ""),
            "study_created": study.get("created", ""),
            "study_software_version": study.get("software_version", ""),
            "study_results_sha256": study_sha256,
            "cohort_file": cohort.get("file", ""),
            "cohort_sha256": cohort.get("sha256", ""),
            "cohort_rows_read": cohort.get("rows_read"),
            "cohort_rows_accepted": cohort.get("rows_accepted"),
            "joined_to_ct": study.get("join", {}).get("joined"),
            "measurement_source": measurements.get("source", ""),
            "engines": measurements.get("engines", []),
            "density_rules": measurements.get("density_rules", []),
            "height_source": study.get("height_source", ""),
            "reference_standard_citation": reference.get("citation", ""),
            "cutoff_method": "maximum Youden index (ties: higher sensitivity), midway between adjacent observed CT "
                             "SMI values; suspected when SMI < cut-off; SMI by the side rule",
            "min_per_class": min_per_class,
            "skipped": skipped,
            "warnings": warnings,
        },
    }
    return CalibrationDraft(data, tuple(skipped), tuple(warnings))


def write_calibration(draft: CalibrationDraft, path: Path) -> Calibration:
    """Write the calibration file atomically, after checking that the node's reader accepts it."""
    raw = (json.dumps(draft.data, indent=2) + "\n").encode("utf-8")
    try:
        calibration = parse_calibration(raw, str(path))
    except CalibrationError as exc:  # a bug here, not a user error: never write a file the node would refuse
        raise StudyFileError(f"the calibration would not be readable: {exc}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(raw)
    os.replace(tmp, path)
    return calibration
