"""The validation cohort file: one row per patient with height, sex and DXA values, validated row by row.

A UTF-8 CSV (comma, semicolon or tab; a spreadsheet's byte-order mark is fine) with a header row. Column names
are case-insensitive; the alias in brackets is accepted too:

=================================  ==============================================================================
``subject_id`` (``id``)            pseudonymous identifier, unique in the file (required; never a patient ID)
``sex``                            ``F`` / ``M`` (``female`` / ``male`` accepted) (required)
``height_m`` or ``height_cm``      body height; ``height_cm`` is converted because the column says so, a value in
                                   ``height_m`` that looks like centimetres is an error, never converted
``dxa_leg_lean_mass_kg``           DXA lean mass of both lower extremities, kg (required)
``dxa_appendicular_lean_mass_kg``  DXA appendicular lean mass (arms + legs), kg (``dxa_alm_kg``)
``dxa_smi_kg_m2``                  DXA SMI = ALM / height^2 (``dxa_asmi_kg_m2``); one of ALM or SMI is required
``study_instance_uid``             optional join keys to the node's results: Study Instance UID,
``series_instance_uid``            Series Instance UID (the most specific), Accession Number
``accession_number``
``synthetic``                      ``true`` marks SYNTHETIC data (the phantom cohort); every output then says so
=================================  ==============================================================================

Every data row is either accepted or reported with its row number (the header is row 1, as in a spreadsheet)
and every reason: a missing or non-numeric value, a height in centimetres in ``height_m``, an impossible value
(height outside 1.0-2.3 m, lean masses outside physiological ranges or in grams, ALM not larger than the legs'
lean mass, DXA SMI outside 2-15 kg/m2), an unknown sex, a malformed UID, a duplicate identifier or join key.
Blank lines are counted. When both ALM and DXA SMI are given the file's SMI is used; a disagreement with
ALM / height^2 of more than 0.2 kg/m2 is reported as a warning (DXA may have used another height).
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from sarcoscreen.inference.height import ImplausibleHeightError, validate_height_m

__all__ = ["CohortError", "CohortFile", "CohortRow", "RowIssue", "read_cohort"]

_ALIASES: dict[str, str] = {
    "id": "subject_id",
    "dxa_alm_kg": "dxa_appendicular_lean_mass_kg",
    "dxa_asmi_kg_m2": "dxa_smi_kg_m2",
}
KNOWN_COLUMNS = (
    "subject_id", "sex", "height_m", "height_cm", "dxa_leg_lean_mass_kg", "dxa_appendicular_lean_mass_kg",
    "dxa_smi_kg_m2", "study_instance_uid", "series_instance_uid", "accession_number", "synthetic",
)
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_SEX = {"f": "F", "female": "F", "m": "M", "male": "M"}
_TRUE = {"true", "yes", "1", "y"}
_FALSE = {"false", "no", "0", "n", ""}

LEG_LEAN_RANGE_KG = (2.0, 40.0)
ALM_RANGE_KG = (4.0, 60.0)
DXA_SMI_RANGE = (2.0, 15.0)
SMI_DISAGREEMENT_KG_M2 = 0.2


class CohortError(Exception):
    """The file cannot be read as a cohort at all (unreadable, no header, missing columns); says why."""


@dataclass(frozen=True)
class RowIssue:
    row: int
    """Row number in the file, the header being row 1."""
    subject_id: str
    message: str

    def __str__(self) -> str:
        who = f" ({self.subject_id})" if self.subject_id else ""
        return f"row {self.row}{who}: {self.message}"


@dataclass(frozen=True)
class CohortRow:
    row: int
    subject_id: str
    sex: str
    height_m: float
    dxa_leg_lean_kg: float
    dxa_alm_kg: float | None
    dxa_smi_kg_m2: float
    dxa_smi_source: str
    """``given`` (the file's dxa_smi_kg_m2) or ``ALM / height^2``."""
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    accession_number: str = ""
    synthetic: bool = False


@dataclass(frozen=True)
class CohortFile:
    path: Path
    sha256: str
    rows: tuple[CohortRow, ...]
    """The accepted rows, in file order."""
    errors: tuple[RowIssue, ...]
    """One issue per reason a row was refused (a row may have several)."""
    warnings: tuple[RowIssue, ...]
    rows_read: int
    blank_lines: int
    ignored_columns: tuple[str, ...]
    synthetic: bool

    @property
    def refused_rows(self) -> tuple[int, ...]:
        return tuple(sorted({e.row for e in self.errors}))

    def summary(self) -> str:
        text = (f"{self.path.name}: {self.rows_read} rows read, {len(self.rows)} accepted, "
                f"{len(self.refused_rows)} refused")
        if self.blank_lines:
            text += f", {self.blank_lines} blank line{'s' if self.blank_lines > 1 else ''}"
        return text + (" (SYNTHETIC)" if self.synthetic else "")


def _dialect(sample: str) -> type[csv.Dialect] | csv.Dialect:
    try:
        return csv.Sniffer().sniff(sample.splitlines()[0] if sample else "", delimiters=",;\t")
    except csv.Error:
        return csv.excel


def _number(raw: str, column: str, problems: list[str]) -> float | None:
    text = raw.strip()
    if not text:
        problems.append(f"{column} is missing")
        return None
    try:
        value = float(text.replace(",", ".")) if text.count(",") == 1 and "." not in text else float(text)
    except ValueError:
        problems.append(f"{column} {text!r} is not a number")
        return None
    if not math.isfinite(value):
        problems.append(f"{column} {text!r} is not a finite number")
        return None
    return value


def _mass(value: float | None, column: str, limits: tuple[float, float], problems: list[str]) -> float | None:
    if value is None:
        return None
    low, high = limits
    if value > 1000 * low and value <= 1000 * high:
        problems.append(f"{column} {value:g} looks like grams; the column is in kg")
        return None
    if not low <= value <= high:
        problems.append(f"{column} {value:g} kg is outside the plausible range {low:g}-{high:g} kg")
        return None
    return value


def _height(cells: dict[str, str], problems: list[str]) -> float | None:
    metres_raw, cm_raw = cells.get("height_m", "").strip(), cells.get("height_cm", "").strip()
    if not metres_raw and not cm_raw:
        problems.append("height is missing (height_m or height_cm)")
        return None
    candidates = []
    if metres_raw:
        value = _number(metres_raw, "height_m", problems)
        if value is not None:
            try:
                candidates.append(validate_height_m(value, "height_m"))
            except ImplausibleHeightError as exc:
                problems.append(str(exc) + ("; use a height_cm column for centimetres" if 100 <= value <= 230
                                            else ""))
    if cm_raw:
        value = _number(cm_raw, "height_cm", problems)
        if value is not None:
            if 1.0 <= value <= 2.3:
                problems.append(f"height_cm {value:g} looks like metres; the column is in centimetres")
            else:
                try:
                    candidates.append(validate_height_m(value / 100.0, f"height_cm {value:g} (as metres)"))
                except ImplausibleHeightError as exc:
                    problems.append(str(exc))
    if len(candidates) == 2 and abs(candidates[0] - candidates[1]) > 0.005:
        problems.append(f"height_m {candidates[0]:g} and height_cm {candidates[1] * 100:g} disagree")
        return None
    return candidates[0] if candidates and len(candidates) == (bool(metres_raw) + bool(cm_raw)) else None


def _uid(cells: dict[str, str], column: str, problems: list[str]) -> str:
    value = cells.get(column, "").strip()
    if value and (len(value) > 64 or not _UID.match(value)):
        problems.append(f"{column} is not a valid DICOM UID (digits and dots, at most 64 characters)")
    return value


def _parse_row(number: int, cells: dict[str, str], problems: list[str], warnings: list[str]) -> CohortRow | None:
    subject_id = cells.get("subject_id", "").strip()
    if not subject_id:
        problems.append("subject_id is missing")
    sex_text = cells.get("sex", "").strip()
    sex = _SEX.get(sex_text.lower())
    if sex is None:
        problems.append(f"sex {sex_text!r} must be F or M" if sex_text else "sex is missing")
    height = _height(cells, problems)
    leg = _mass(_number(cells.get("dxa_leg_lean_mass_kg", ""), "dxa_leg_lean_mass_kg", problems),
                "dxa_leg_lean_mass_kg", LEG_LEAN_RANGE_KG, problems)
    alm_raw, smi_raw = cells.get("dxa_appendicular_lean_mass_kg", "").strip(), cells.get("dxa_smi_kg_m2", "").strip()
    alm = smi = None
    if not alm_raw and not smi_raw:
        problems.append("DXA appendicular lean mass or DXA SMI is missing (dxa_appendicular_lean_mass_kg or "
                        "dxa_smi_kg_m2)")
    if alm_raw:
        alm = _mass(_number(alm_raw, "dxa_appendicular_lean_mass_kg", problems), "dxa_appendicular_lean_mass_kg",
                    ALM_RANGE_KG, problems)
        if alm is not None and leg is not None and alm <= leg:
            problems.append(f"dxa_appendicular_lean_mass_kg {alm:g} is not larger than the legs' lean mass "
                            f"{leg:g} (ALM = arms + legs)")
    if smi_raw:
        smi = _number(smi_raw, "dxa_smi_kg_m2", problems)
        if smi is not None and not DXA_SMI_RANGE[0] <= smi <= DXA_SMI_RANGE[1]:
            problems.append(f"dxa_smi_kg_m2 {smi:g} is outside the plausible range "
                            f"{DXA_SMI_RANGE[0]:g}-{DXA_SMI_RANGE[1]:g} kg/m2")
            smi = None
    uids = {c: _uid(cells, c, problems) for c in ("study_instance_uid", "series_instance_uid")}
    synthetic_text = cells.get("synthetic", "").strip().lower()
    if synthetic_text not in _TRUE | _FALSE:
        problems.append(f"synthetic {synthetic_text!r} must be true or false")
    if problems or sex is None or height is None or leg is None:
        return None
    source = "given"
    if smi is None:
        assert alm is not None
        smi, source = alm / height**2, "ALM / height^2"
    elif alm is not None and abs(alm / height**2 - smi) > SMI_DISAGREEMENT_KG_M2:
        warnings.append(f"dxa_smi_kg_m2 {smi:g} differs from ALM / height^2 = {alm / height**2:.2f} by more than "
                        f"{SMI_DISAGREEMENT_KG_M2:g} kg/m2; the file's DXA SMI is used")
    return CohortRow(number, subject_id, sex, height, leg, alm, smi, source, uids["study_instance_uid"],
                     uids["series_instance_uid"], cells.get("accession_number", "").strip(),
                     synthetic_text in _TRUE)


@dataclass
class _Seen:
    ids: dict[str, int] = field(default_factory=dict)
    keys: dict[tuple[str, str], int] = field(default_factory=dict)


def _duplicates(row: CohortRow, seen: _Seen) -> list[str]:
    problems = []
    if row.subject_id in seen.ids:
        problems.append(f"subject_id duplicates row {seen.ids[row.subject_id]}")
    for column in ("study_instance_uid", "series_instance_uid", "accession_number"):
        value = getattr(row, column)
        if value and (column, value) in seen.keys:
            problems.append(f"{column} duplicates row {seen.keys[(column, value)]}")
    if not problems:
        seen.ids[row.subject_id] = row.row
        for column in ("study_instance_uid", "series_instance_uid", "accession_number"):
            if getattr(row, column):
                seen.keys[(column, getattr(row, column))] = row.row
    return problems


def read_cohort(path: Path) -> CohortFile:
    """Read and validate a cohort CSV; raise `CohortError` only when the file as a whole is unusable."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CohortError(f"cohort file {path} cannot be read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CohortError(f"cohort file {path} is not UTF-8 text") from None
    reader = csv.reader(io.StringIO(text, newline=""), _dialect(text[:4096]))
    header = next(reader, None)
    if not header or not any(h.strip() for h in header):
        raise CohortError(f"cohort file {path} is empty (a header row is needed)")
    names = [_ALIASES.get(h.strip().lower(), h.strip().lower()) for h in header]
    repeated = sorted({n for n in names if n and names.count(n) > 1})
    if repeated:
        raise CohortError(f"cohort file {path}: column(s) {', '.join(repeated)} appear more than once")
    missing = [c for c in ("subject_id", "sex", "dxa_leg_lean_mass_kg") if c not in names]
    if "height_m" not in names and "height_cm" not in names:
        missing.append("height_m or height_cm")
    if "dxa_appendicular_lean_mass_kg" not in names and "dxa_smi_kg_m2" not in names:
        missing.append("dxa_appendicular_lean_mass_kg or dxa_smi_kg_m2")
    if missing:
        raise CohortError(f"cohort file {path}: missing column(s): {', '.join(missing)} "
                          f"(found: {', '.join(h for h in header if h.strip()) or 'none'})")
    ignored = tuple(h for h, n in zip(header, names, strict=True) if n and n not in KNOWN_COLUMNS)
    rows: list[CohortRow] = []
    errors: list[RowIssue] = []
    warnings: list[RowIssue] = []
    seen = _Seen()
    rows_read = blank = 0
    for number, record in enumerate(reader, start=2):
        if not any(cell.strip() for cell in record):
            blank += 1
            continue
        rows_read += 1
        cells = {n: v for n, v in zip(names, record, strict=False) if n}
        subject = cells.get("subject_id", "").strip()
        problems: list[str] = []
        row_warnings: list[str] = []
        if len(record) != len(names):
            problems.append(f"has {len(record)} fields, the header has {len(names)}")
        row = _parse_row(number, cells, problems, row_warnings)
        if row is not None and not problems:
            problems.extend(_duplicates(row, seen))
        errors.extend(RowIssue(number, subject, p) for p in problems)
        warnings.extend(RowIssue(number, subject, w) for w in row_warnings)
        if row is not None and not problems:
            rows.append(row)
    if rows_read == 0:
        raise CohortError(f"cohort file {path} has a header but no data rows")
    flags = {r.synthetic for r in rows}
    if len(flags) > 1:
        warnings.append(RowIssue(1, "", "some rows are synthetic and some are not; the whole study is marked "
                                        "SYNTHETIC"))
    return CohortFile(path, hashlib.sha256(raw).hexdigest(), tuple(rows), tuple(errors), tuple(warnings),
                      rows_read, blank, ignored, True in flags)
