"""The patient-height registry: heights for SMI when the images carry no plausible PatientSize.

``sarcoscreen heights import FILE.csv`` reads a UTF-8 CSV file (a spreadsheet's byte-order mark is fine) with a
header row and the columns

* ``patient_id`` - as in PatientID (0010,0020) of the images;
* ``height_m`` (metres) or ``height_cm`` (centimetres, converted because the column says so); a file may have
  both columns, and a row may fill either (if it fills both, they must agree within 0.5 cm);
* ``measured_on`` (optional) - the date of measurement, ``YYYY-MM-DD``.

Every row is either stored or reported with its row number (the header is row 1, as in a spreadsheet) and why:
a missing value, a value that is not a number, an implausible height (`inference.height.validate_height_m`),
a bad or future date, or a duplicate of an earlier row (same patient and date). Nothing is dropped silently;
blank lines are counted. Valid rows are upserted: a new (patient, date) is added, a known one gets the new height.
Messages name rows, never patient identifiers.

The height used for a patient is the latest measurement (`registry_height`).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from sarcoscreen.db.models import PatientHeight, utcnow
from sarcoscreen.inference.height import ImplausibleHeightError, validate_height_m

__all__ = ["HeightImportReport", "import_heights_csv", "registry_height"]

PATIENT_ID_MAX = 64
_CM_M_TOLERANCE = 0.005
_LOOKUP_CHUNK = 500

Key = tuple[str, date | None]


@dataclass
class HeightImportReport:
    """What an import did: counts, and one message per refused row (or for the file)."""

    path: Path
    rows: int = 0
    """Data rows read (blank lines not included)."""
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    refused: int = 0
    blank_lines: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def stored(self) -> int:
        """Rows now in the registry (new, updated or already there with the same height)."""
        return self.inserted + self.updated + self.unchanged

    def summary(self) -> str:
        text = (f"{self.path.name}: {self.rows} rows read: {self.inserted} new, {self.updated} updated, "
                f"{self.unchanged} unchanged, {self.refused} refused")
        if self.blank_lines:
            text += f"; {self.blank_lines} blank line{'s' if self.blank_lines > 1 else ''} skipped"
        return text


@dataclass(frozen=True)
class _Row:
    number: int
    patient_id: str
    height_m: float
    measured_on: date | None


class _RowError(ValueError):
    """One row cannot be imported; the message says why (without the patient ID)."""


def _number(text: str, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _RowError(f"{column} {text!r} is not a number (use a decimal point)") from None
    if not math.isfinite(value):
        raise _RowError(f"{column} {text!r} is not a finite number")
    return value


def _height(values: dict[str, str]) -> float:
    metres_text = values.get("height_m", "")
    cm_text = values.get("height_cm", "")
    if not metres_text and not cm_text:
        raise _RowError("no height (height_m or height_cm is empty)")
    candidates: list[float] = []
    try:
        if metres_text:
            candidates.append(validate_height_m(_number(metres_text, "height_m"), "height_m"))
        if cm_text:
            cm = _number(cm_text, "height_cm")
            candidates.append(validate_height_m(cm / 100.0, f"height_cm {cm_text} ="))
    except ImplausibleHeightError as exc:
        raise _RowError(str(exc)) from None
    if max(candidates) - min(candidates) > _CM_M_TOLERANCE:
        raise _RowError(f"height_m {metres_text} and height_cm {cm_text} disagree")
    return candidates[0]


def _measured_on(text: str, today: date) -> date | None:
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise _RowError(f"measured_on {text!r} is not a date YYYY-MM-DD") from None
    if day > today:
        raise _RowError(f"measured_on {text} is in the future")
    return day


def _parse_row(number: int, header: list[str], cells: list[str], today: date) -> _Row:
    if len(cells) != len(header):
        raise _RowError(f"has {len(cells)} fields, the header has {len(header)}")
    values = {name: cell.strip() for name, cell in zip(header, cells, strict=True)}
    patient_id = values["patient_id"]
    if not patient_id:
        raise _RowError("patient_id is empty")
    if len(patient_id) > PATIENT_ID_MAX:
        raise _RowError(f"patient_id is longer than {PATIENT_ID_MAX} characters")
    return _Row(number, patient_id, _height(values), _measured_on(values.get("measured_on", ""), today))


def _header_problem(header: list[str]) -> str | None:
    if "patient_id" not in header:
        return "missing column patient_id"
    if "height_m" not in header and "height_cm" not in header:
        return "missing column height_m or height_cm"
    duplicated = sorted({name for name in header if name and header.count(name) > 1})
    if duplicated:
        return f"column {', '.join(duplicated)} appears more than once"
    return None


def _read_rows(path: Path, report: HeightImportReport) -> list[_Row]:
    """Parse the file; every refused row is counted and reported in `report`."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        report.errors.append(f"{path}: no such file")
        return []
    except UnicodeDecodeError as exc:
        report.errors.append(f"{path}: not UTF-8 text (byte {exc.start}); save the file as CSV UTF-8")
        return []
    except OSError as exc:
        report.errors.append(f"{path}: cannot be read: {exc.strerror}")
        return []
    header: list[str] | None = None
    rows: list[_Row] = []
    today = datetime.now(UTC).date()
    number = 0
    try:
        # Records, not lines: a quoted field may hold a line break. Row numbers are a spreadsheet's.
        for number, cells in enumerate(csv.reader(io.StringIO(text, newline="")), start=1):
            if not any(cell.strip() for cell in cells):
                report.blank_lines += 1
                continue
            if header is None:
                header = [cell.strip().lower() for cell in cells]
                problem = _header_problem(header)
                if problem is not None:
                    report.errors.append(f"row {number} (header): {problem}; nothing imported")
                    header = []
                continue
            report.rows += 1
            if not header:
                report.refused += 1
                continue
            try:
                rows.append(_parse_row(number, header, cells, today))
            except _RowError as exc:
                report.refused += 1
                report.errors.append(f"row {number}: {exc}")
    except csv.Error as exc:
        report.errors.append(f"row {number + 1}: not valid CSV ({exc}); it and the rows after it were not read")
        return []
    if header is None:
        report.errors.append(f"{path}: empty file (no header row)")
    return rows


def _without_duplicates(rows: list[_Row], report: HeightImportReport) -> list[_Row]:
    """Refuse repeated (patient, date) rows: a repeat of the same height, or both rows when the heights differ."""
    first: dict[Key, _Row] = {}
    conflicting: set[Key] = set()
    for row in rows:
        key = (row.patient_id, row.measured_on)
        earlier = first.get(key)
        if earlier is None:
            first[key] = row
            continue
        report.refused += 1
        when = f"date {row.measured_on.isoformat()}" if row.measured_on else "no date"
        if math.isclose(earlier.height_m, row.height_m, abs_tol=1e-9):
            report.errors.append(f"row {row.number}: duplicate of row {earlier.number} (same patient, {when})")
        else:
            report.errors.append(
                f"row {row.number}: same patient and {when} as row {earlier.number} but a different height; "
                f"neither row imported"
            )
            if key not in conflicting:
                conflicting.add(key)
                report.refused += 1
                report.errors.append(
                    f"row {earlier.number}: same patient and {when} as row {row.number} but a different height; "
                    f"neither row imported"
                )
    return [row for key, row in first.items() if key not in conflicting]


def _existing(session: Session, patient_ids: Iterable[str]) -> dict[Key, PatientHeight]:
    ids = sorted(set(patient_ids))
    found: dict[Key, PatientHeight] = {}
    for start in range(0, len(ids), _LOOKUP_CHUNK):
        chunk = ids[start:start + _LOOKUP_CHUNK]
        for entry in session.scalars(select(PatientHeight).where(PatientHeight.patient_id.in_(chunk))):
            found[(entry.patient_id, entry.measured_on)] = entry
    return found


def import_heights_csv(session: Session, path: Path | str) -> HeightImportReport:
    """Upsert the valid rows of the CSV file at `path` into the registry; report every refused row.

    The caller commits (e.g. `session_scope`); the rows are flushed before this returns, so a database error
    surfaces here. See the module documentation for the file format.
    """
    path = Path(path)
    report = HeightImportReport(path)
    rows = _without_duplicates(_read_rows(path, report), report)
    existing = _existing(session, (row.patient_id for row in rows))
    now = utcnow()
    source = str(path.resolve())
    for row in sorted(rows, key=lambda r: r.number):
        entry = existing.get((row.patient_id, row.measured_on))
        if entry is None:
            session.add(PatientHeight(patient_id=row.patient_id, height_m=row.height_m, measured_on=row.measured_on,
                                      source_file=source, imported_at=now))
            report.inserted += 1
        elif math.isclose(entry.height_m, row.height_m, abs_tol=1e-9):
            report.unchanged += 1
        else:
            entry.height_m = row.height_m
            entry.source_file = source
            entry.imported_at = now
            report.updated += 1
    session.flush()
    return report


def registry_height(session: Session, patient_id: str) -> float | None:
    """The patient's latest registry height in metres, or ``None`` when the registry has none.

    Latest by measurement date; an undated entry counts as measured on the day it was imported.
    """
    entries = session.scalars(select(PatientHeight).where(PatientHeight.patient_id == patient_id)).all()
    if not entries:
        return None
    latest = max(
        entries, key=lambda e: (e.measured_on or e.imported_at.date(), e.imported_at, e.measured_on is not None)
    )
    return float(latest.height_m)
