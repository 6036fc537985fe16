"""CT muscle measurements for the validation study, read from result files or from the node's database.

Every source becomes a list of `MeasuredSeries`: per group and side the skeletal muscle mass (g) of a complete
group - never the in-scan mass of a truncated or uncertain one - or the reason the group was not measurable,
with the join keys (Series/Study Instance UID, Accession Number, or a subject id for a plain table) and what made
the values (engine, density rule).

Sources (``--measurements``, one or many; a folder is searched for ``measurements.json``):

* ``measurements.json`` written by ``sarcoscreen analyze`` (format ``sarcoscreen-measurements/1``);
* ``measurements.csv`` written by ``sarcoscreen analyze`` (long format, one row per value; no Study UID, so it
  joins by Series Instance UID only);
* a wide CSV, one row per subject or series, with a key column (``series_instance_uid``, ``study_instance_uid``,
  ``accession_number`` or ``subject_id``) and columns ``<group>_<side>_smm_g`` or ``<group>_<side>_mass_g``
  (group a `Group` value - ``gluteal|above_knee|all|upper_gluteal`` - side ``left|right|both``) - e.g. the
  phantom cohort's ``truth.csv`` (ground-truth masses, marked as such); a table without a group's columns leaves
  that group unmeasured, with the reason;

or the node's database (``--db URL``, `load_from_database`): the latest finished job of every series, read in a
read-only transaction.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sarcoscreen.inference.catalogue import Group

__all__ = [
    "GROUP_SIDES",
    "MeasuredSeries",
    "MeasurementSource",
    "MeasurementsError",
    "load_from_database",
    "load_measurement_files",
]

SIDES = ("left", "right", "both")
GROUP_SIDES = tuple(f"{g.value}_{s}" for g in Group for s in SIDES)
_KEY_COLUMNS = ("series_instance_uid", "study_instance_uid", "accession_number", "subject_id")


class MeasurementsError(Exception):
    """A measurement source that cannot be used at all (unreadable database, unknown file format)."""


@dataclass(frozen=True)
class MeasuredSeries:
    """The group masses of one analysed series (or one row of a table of masses)."""

    source: str
    """Where the values came from: a file path (and row) or ``database job N``."""
    series_instance_uid: str = ""
    study_instance_uid: str = ""
    accession_number: str = ""
    subject_id: str = ""
    sex: str | None = None
    height_m: float | None = None
    """The height the node used (DICOM/registry), for a plausibility check only: SMI uses the cohort's height."""
    engine: str = ""
    density_rule: str = ""
    created: str = ""
    smm_g: dict[str, float | None] = field(default_factory=dict)
    """``"<group>_<side>"`` -> SMM in grams, ``None`` when not measurable."""
    reasons: dict[str, str] = field(default_factory=dict)
    """``"<group>_<side>"`` -> why the group was not measurable."""
    synthetic: bool = False

    def mass(self, group: Group, side: str) -> float | None:
        return self.smm_g.get(f"{group.value}_{side}")

    def reason(self, group: Group, side: str) -> str:
        key = f"{group.value}_{side}"
        if key not in self.smm_g:
            return f"the source has no {group.value} {side} value"
        return self.reasons.get(key, "not measurable")


@dataclass(frozen=True)
class MeasurementSource:
    """Everything read from ``--measurements`` or ``--db``: the series and the problems met on the way."""

    description: str
    series: tuple[MeasuredSeries, ...]
    problems: tuple[str, ...] = ()


def _float(text: object) -> float | None:
    if text is None:
        return None
    if isinstance(text, int | float):
        return float(text)
    value = str(text).strip()
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _from_json(path: Path, data: dict[str, object]) -> MeasuredSeries:
    smm: dict[str, float | None] = {}
    reasons: dict[str, str] = {}
    for item in data.get("groups", []) or []:
        if not isinstance(item, dict):
            continue
        key = f"{item.get('group')}_{item.get('side')}"
        if key not in GROUP_SIDES:
            continue
        complete = item.get("completeness") == "complete"
        smm[key] = _float(item.get("smm_g")) if complete else None
        if smm[key] is None:
            reasons[key] = str(item.get("reason") or item.get("completeness") or "not measurable")
    notes = " ".join(str(n) for n in data.get("notes", []) or [])
    return MeasuredSeries(
        source=str(path),
        series_instance_uid=str(data.get("series_instance_uid") or ""),
        study_instance_uid=str(data.get("study_instance_uid") or ""),
        accession_number=str(data.get("accession_number") or ""),
        sex=data.get("sex") if data.get("sex") in ("F", "M") else None,  # type: ignore[arg-type]
        height_m=_float(data.get("height_m")),
        engine=f"{data.get('engine_name', '')} {data.get('engine_version', '')}".strip(),
        density_rule=str(data.get("density_rule") or ""),
        created=str(data.get("created") or ""),
        smm_g=smm,
        reasons=reasons,
        synthetic="SYNTHETIC" in notes.upper() or bool(data.get("synthetic", False)),
    )


def _read_json(path: Path) -> MeasuredSeries:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MeasurementsError(f"{path}: not readable as JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != "sarcoscreen-measurements/1":
        raise MeasurementsError(f"{path}: not a sarcoscreen measurements.json (format sarcoscreen-measurements/1)")
    return _from_json(path, data)


def _read_long_csv(path: Path, rows: list[dict[str, str]]) -> list[MeasuredSeries]:
    by_series: dict[str, dict[str, object]] = {}
    for row in rows:
        if row.get("kind") != "group":
            continue
        uid = row.get("series_instance_uid", "")
        entry = by_series.setdefault(uid, {"smm": {}, "reasons": {}, "engine": row.get("engine", ""),
                                           "density": row.get("density_rule", "")})
        key = f"{row.get('key')}_{row.get('side')}"
        if key not in GROUP_SIDES:
            continue
        value = _float(row.get("smm_g")) if row.get("status") == "complete" else None
        entry["smm"][key] = value  # type: ignore[index]
        if value is None:
            entry["reasons"][key] = row.get("reason") or row.get("status") or "not measurable"  # type: ignore[index]
    return [MeasuredSeries(source=str(path), series_instance_uid=uid, engine=str(e["engine"]),
                           density_rule=str(e["density"]), smm_g=dict(e["smm"]),  # type: ignore[call-overload]
                           reasons=dict(e["reasons"]))  # type: ignore[call-overload]
            for uid, e in by_series.items()]


def _read_wide_csv(path: Path, header: list[str], rows: list[dict[str, str]]) -> list[MeasuredSeries]:
    keys = [k for k in _KEY_COLUMNS if k in header]
    if not keys:
        raise MeasurementsError(f"{path}: a table of masses needs a key column ({', '.join(_KEY_COLUMNS)})")
    columns: dict[str, str] = {}
    for group_side in GROUP_SIDES:
        for suffix in ("_smm_g", "_mass_g"):
            if group_side + suffix in header:
                columns[group_side] = group_side + suffix
                break
    if not columns:
        raise MeasurementsError(f"{path}: no mass columns (<group>_<side>_smm_g or <group>_<side>_mass_g)")
    ground_truth = "truth_source" in header
    out = []
    for number, row in enumerate(rows, start=2):
        smm = {k: _float(row.get(c)) for k, c in columns.items()}
        reasons = {k: "no value in the table" for k, v in smm.items() if v is None}
        engine = row.get("engine", "").strip()
        if ground_truth:
            engine = f"phantom ground truth ({row.get('truth_source', '').strip()})"
        out.append(MeasuredSeries(
            source=f"{path} row {number}",
            series_instance_uid=row.get("series_instance_uid", "").strip(),
            study_instance_uid=row.get("study_instance_uid", "").strip(),
            accession_number=row.get("accession_number", "").strip(),
            subject_id=row.get("subject_id", "").strip(),
            sex=row.get("sex", "").strip().upper() if row.get("sex", "").strip().upper() in ("F", "M") else None,
            engine=engine or "table",
            density_rule=row.get("density_rule", "").strip() or ("constant 1.04 g/cm3" if ground_truth else ""),
            smm_g=smm,
            reasons=reasons,
            synthetic=row.get("synthetic", "").strip().lower() == "true",
        ))
    return out


def _read_csv(path: Path) -> list[MeasuredSeries]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise MeasurementsError(f"{path}: not readable as UTF-8 text ({exc})") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip().lower() for h in reader.fieldnames or []]
    reader.fieldnames = header
    rows = list(reader)
    if {"kind", "key", "side", "smm_g"} <= set(header):
        return _read_long_csv(path, rows)
    return _read_wide_csv(path, header, rows)


def _files(paths: Iterable[Path], problems: list[str]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            inside = sorted(path.rglob("measurements.json"))
            if not inside:
                problems.append(f"{path}: no measurements.json in this folder")
            found.extend(inside)
        elif path.is_file():
            found.append(path)
        else:
            problems.append(f"{path}: no such file or folder")
    return found


def load_measurement_files(paths: Iterable[Path]) -> MeasurementSource:
    """Read measurements.json files, folders of them, and CSV tables; unreadable files become problems."""
    paths = list(paths)
    problems: list[str] = []
    series: list[MeasuredSeries] = []
    for path in _files(paths, problems):
        try:
            if path.suffix.lower() == ".json":
                series.append(_read_json(path))
            elif path.suffix.lower() in (".csv", ".txt"):
                series.extend(_read_csv(path))
            else:
                problems.append(f"{path}: not a .json or .csv file")
        except MeasurementsError as exc:
            problems.append(str(exc))
    description = ", ".join(str(p) for p in paths)
    return MeasurementSource(f"measurement files: {description}", tuple(series), tuple(problems))


def load_from_database(url: str) -> MeasurementSource:
    """The group results of the latest finished job of every series in the node's database, read-only.

    SQLite is opened with ``mode=ro`` (nothing, not even the journal mode, is changed); on PostgreSQL the
    transaction is ``READ ONLY``. Nothing is migrated: a database without the node's tables is refused.
    """
    from sqlalchemy import create_engine, select, text
    from sqlalchemy.exc import SQLAlchemyError

    from sarcoscreen.db.models import GroupResult, Job, JobStatus, Series, StructureMeasurement, Study
    from sarcoscreen.db.session import create_engine_from_url, mask_url, sqlite_file

    try:
        path = sqlite_file(url)
    except ValueError as exc:
        raise MeasurementsError(str(exc)) from None
    if path is not None:
        if not path.is_file():
            raise MeasurementsError(f"no database file at {path}")
        engine = create_engine(f"sqlite:///file:{path.resolve()}?mode=ro&uri=true")
    else:
        try:
            engine = create_engine_from_url(url)
        except ValueError as exc:
            raise MeasurementsError(str(exc)) from None
    query = (
        select(Study.study_instance_uid, Study.accession_number, Study.patient_sex, Series.series_instance_uid,
               Job.id, Job.finished_at, Job.engine_name, Job.engine_version, GroupResult.muscle_group,
               GroupResult.side, GroupResult.completeness, GroupResult.reason, GroupResult.smm_g,
               GroupResult.height_m)
        .join(Series, Series.study_id == Study.id)
        .join(Job, Job.series_id == Series.id)
        .join(GroupResult, GroupResult.job_id == Job.id)
        .where(Job.status == JobStatus.DONE)
    )
    density_query = select(StructureMeasurement.job_id, StructureMeasurement.density_rule).distinct()
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "postgresql":
                connection.execute(text("SET TRANSACTION READ ONLY"))
            rows = connection.execute(query).all()
            density = {int(job): str(rule) for job, rule in connection.execute(density_query).all()}
            connection.rollback()
    except SQLAlchemyError as exc:
        first = str(exc).splitlines()[0]
        raise MeasurementsError(f"cannot read the results from {mask_url(url)}: {first}") from None
    finally:
        engine.dispose()
    latest: dict[str, tuple[object, int]] = {}
    for row in rows:
        order = (row.finished_at.timestamp() if row.finished_at else 0.0, row.id)
        if row.series_instance_uid not in latest or order > latest[row.series_instance_uid]:  # type: ignore[operator]
            latest[row.series_instance_uid] = order  # type: ignore[assignment]
    by_job: dict[int, dict[str, object]] = {}
    for row in rows:
        order = (row.finished_at.timestamp() if row.finished_at else 0.0, row.id)
        if latest[row.series_instance_uid] != order:
            continue
        entry = by_job.setdefault(row.id, {"row": row, "smm": {}, "reasons": {}})
        key = f"{row.muscle_group}_{row.side}"
        value = row.smm_g if str(row.completeness) == "complete" else None
        entry["smm"][key] = value  # type: ignore[index]
        if value is None:
            entry["reasons"][key] = row.reason or str(row.completeness)  # type: ignore[index]
        if row.side == "both" and row.height_m:
            entry["height"] = row.height_m
    series = []
    for job_id, entry in sorted(by_job.items()):
        r = entry["row"]
        series.append(MeasuredSeries(
            source=f"database job {job_id}",
            series_instance_uid=r.series_instance_uid,  # type: ignore[attr-defined]
            study_instance_uid=r.study_instance_uid,  # type: ignore[attr-defined]
            accession_number=r.accession_number or "",  # type: ignore[attr-defined]
            sex=r.patient_sex if r.patient_sex in ("F", "M") else None,  # type: ignore[attr-defined]
            height_m=entry.get("height"),  # type: ignore[arg-type]
            engine=f"{r.engine_name or ''} {r.engine_version or ''}".strip(),  # type: ignore[attr-defined]
            density_rule=density.get(job_id, ""),
            created=r.finished_at.isoformat() if r.finished_at else "",  # type: ignore[attr-defined]
            smm_g=dict(entry["smm"]),  # type: ignore[call-overload]
            reasons=dict(entry["reasons"]),  # type: ignore[call-overload]
        ))
    return MeasurementSource(f"database {mask_url(url)}", tuple(series))
