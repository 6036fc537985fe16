"""Fake patient values that are easy to find, and the scan of everything the node writes for people to read.

Every case of the campaign carries one of `PATIENTS`: names, IDs and birth dates, well-formed and malformed
(too long for their VR, several values, bad dates, bytes outside the declared character set, control
characters). Every text marker contains ``ZQX`` in some case; birth dates are digit strings matched only where
no other digit or dot touches them (so that they are never found inside a UID). A fuzzed value may lose part of
its marker; ``zqx`` survives most mutations.

Scanned: node logs, the quarantine's notes (the reason an instance was refused), every text column of the
database (except ``studies.patient_id`` and ``patient_heights.patient_id``, where the patient ID belongs), and the
output of ``sarcoscreen jobs`` and
``sarcoscreen results`` (whose patient column shows the stored patient IDs to QA staff by design: those exact
values are removed from its output before the scan).
"""

from __future__ import annotations

import json
import re
import subprocess
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from node_support import SARCOSCREEN
from pydicom import Dataset
from sqlalchemy import MetaData, String, Text, create_engine, select

__all__ = ["MALFORMED", "PATIENTS", "WELL_FORMED", "FakePatient", "PhiHit", "scan_cli", "scan_database", "scan_files",
           "scan_text", "stamp"]


@dataclass(frozen=True)
class FakePatient:
    """Patient attributes to put into a data set; `name` may be bytes to bypass the character set."""

    name: str | bytes
    patient_id: str
    birth_date: str
    other_ids: str = "ZQXOTHER-77"
    address: str = "Zqxweg 5, Zqxhausen"


WELL_FORMED: tuple[FakePatient, ...] = (
    FakePatient("Zqxphi^Wilhelmina", "PHIZQX-4417", "19230417"),
    FakePatient("Zqxphi^Otto^Karl^Dr.", "PHIZQX-5521", "19310102"),
)
"""Valid values: what every well-behaved site sends (the kill trials and the concurrency run use these)."""

MALFORMED: tuple[FakePatient, ...] = (
    FakePatient("Zqxphi^Wilhelmina^Maria^Dr.^III^extra", "PHIZQX-4418", "1923-04-17"),  # 6 components, ISO date
    FakePatient("Zqxphi" * 14, "PHIZQX-" + "7" * 70, "17/04/1923"),  # over-long PN and LO, a foreign date
    FakePatient("Zqxphi^One\\Zqxphi^Two", "PHIZQX-44\\PHIZQX-45", "19231341"),  # two values; month 13
    FakePatient("Zqxphi^W\u00f6lhelmina".encode("latin-1"), "PHIZQX-4419", "ZQXBD1923"),  # latin-1, no charset
    FakePatient("Zqxphi^Wil\x1b$Bhelmina\x00", "PHIZQX\t4420", "1923041"),  # escape, NUL, tab; short date
)
"""Values a hostile or broken site sends (the fuzz corpus and the malformed series use these too)."""

PATIENTS: tuple[FakePatient, ...] = WELL_FORMED + MALFORMED

BIRTH_DATES = ("19230417", "19310102", "1923-04-17", "17/04/1923", "19231341", "1923041")
_PATTERNS = (re.compile("zqx", re.IGNORECASE),
             *(re.compile(rf"(?<![\d.]){re.escape(d)}(?![\d.])") for d in BIRTH_DATES))
ALLOWED_COLUMNS = {("studies", "patient_id"), ("patient_heights", "patient_id")}


def stamp(ds: Dataset, patient: FakePatient) -> None:
    """Put `patient`'s values into `ds` as they are (pydicom's value checks only warn; silenced here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if isinstance(patient.name, bytes):
            ds.add_new(0x00100010, "PN", patient.name)
        else:
            ds.PatientName = patient.name
        ds.PatientID = patient.patient_id
        ds.PatientBirthDate = patient.birth_date
        ds.OtherPatientIDs = patient.other_ids
        ds.PatientAddress = patient.address


@dataclass(frozen=True)
class PhiHit:
    """A patient value found where it must not be."""

    where: str
    excerpt: str

    def __str__(self) -> str:
        return f"{self.where}: {self.excerpt}"


def scan_text(where: str, text: str) -> list[PhiHit]:
    """Every line of `text` with a marker, as hits named `where` (line number added)."""
    hits = []
    for number, line in enumerate(text.splitlines(), 1):
        if any(pattern.search(line) for pattern in _PATTERNS):
            hits.append(PhiHit(f"{where}:{number}", line.strip()[:240]))
    return hits


def scan_files(paths: Iterable[Path]) -> list[PhiHit]:
    hits: list[PhiHit] = []
    for path in paths:
        if path.is_file():
            hits += scan_text(path.name, path.read_text(encoding="utf-8", errors="replace"))
    return hits


def scan_database(url: str) -> list[PhiHit]:
    """Every text value of every table, except the columns meant for the patient ID."""
    engine = create_engine(url)
    hits: list[PhiHit] = []
    try:
        metadata = MetaData()
        metadata.reflect(engine)
        with engine.connect() as connection:
            for table in metadata.sorted_tables:
                columns = [c for c in table.columns if isinstance(c.type, String | Text)
                           and (table.name, c.name) not in ALLOWED_COLUMNS]
                if not columns:
                    continue
                for row in connection.execute(select(*columns)):
                    for column, value in zip(columns, row, strict=True):
                        if value is not None:
                            hits += scan_text(f"database {table.name}.{column.name}", str(value))
    finally:
        engine.dispose()
    return hits


def stored_patient_ids(url: str) -> list[str]:
    """The patient IDs the node stored (shown by ``sarcoscreen results`` by design)."""
    engine = create_engine(url)
    try:
        metadata = MetaData()
        metadata.reflect(engine, only=["studies"])
        studies = metadata.tables["studies"]
        with engine.connect() as connection:
            return sorted({v for v in connection.execute(select(studies.c.patient_id)).scalars() if v},
                          key=len, reverse=True)
    finally:
        engine.dispose()


def scan_cli(config: Path, database_url: str, commands: Sequence[Sequence[str]] = (
        ("jobs", "--format", "json", "--limit", "100000"), ("results", "--format", "json"))) -> list[PhiHit]:
    """Run each ``sarcoscreen --config FILE <command>`` and scan its output (stored patient IDs removed from
    ``results``, where they belong)."""
    allowed = stored_patient_ids(database_url)
    hits: list[PhiHit] = []
    for command in commands:
        done = subprocess.run([*SARCOSCREEN, "--config", str(config), *command], capture_output=True, text=True,
                              errors="replace", timeout=120, check=False)
        text = done.stdout + done.stderr
        if done.returncode != 0:
            hits.append(PhiHit(f"sarcoscreen {' '.join(command)}", f"exit code {done.returncode}: {text[-200:]}"))
        if command[0] == "results":
            for value in allowed:
                for form in (value, json.dumps(value)[1:-1]):  # as printed, and as escaped in JSON
                    text = text.replace(form, "<patient id>")
        hits += scan_text(f"sarcoscreen {' '.join(command)}", text)
    return hits
