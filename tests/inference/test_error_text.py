"""The one scrubbing helper for recorded error texts: real exceptions of pydicom, highdicom, Python and SQLAlchemy
that quote a DICOM value lose the value and keep their type and reason; the project's own messages pass
unchanged; and the places that record a text (events, a job's error, a delivery's error, a quarantine note)
scrub it on real databases (SQLite, PostgreSQL) and a real spool."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import pytest
from pydicom.valuerep import DA, TM
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, insert, select
from sqlalchemy.exc import IntegrityError

from sarcoscreen.db.events import record_event
from sarcoscreen.db.models import Delivery, Event, Job
from sarcoscreen.db.outbox import claim_due, record_outcome
from sarcoscreen.db.queue import claim, enqueue, fail
from sarcoscreen.db.session import session_scope
from sarcoscreen.inference.error_text import REDACTED, error_text, scrub_text
from sarcoscreen.inference.series_errors import MixedPixelGridError
from sarcoscreen.node.spool import Spool
from sarcoscreen.reports.source_attributes import SourceReferenceError


def _raised(call, *args):  # type: ignore[no-untyped-def]
    try:
        call(*args)
    except Exception as exc:  # the test wants whatever the library raises
        return exc
    raise AssertionError(f"{call} raised nothing")


def _sqlalchemy_error() -> IntegrityError:
    """A real IntegrityError whose text carries the SQL and its parameters (a name, here)."""
    engine = create_engine("sqlite://")
    table = Table("t", MetaData(), Column("id", Integer, primary_key=True), Column("name", String, unique=True))
    table.metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(insert(table).values(id=1, name="DOE^JOHN"))
    try:
        with engine.begin() as connection:
            connection.execute(insert(table).values(id=2, name="DOE^JOHN"))
    except IntegrityError as exc:
        return exc
    finally:
        engine.dispose()
    raise AssertionError("no IntegrityError")


FOREIGN = {
    "pydicom DA": (lambda: _raised(DA, "1901-02-03"), "1901-02-03", "ValueError: Unable to convert"),
    "pydicom TM": (lambda: _raised(TM, "10:17:00"), "10:17:00", "ValueError: Unable to convert"),
    "highdicom enum": (lambda: _raised(hd.PatientSexValues, "female"), "female", "ValueError:"),
    "float": (lambda: _raised(float, "1,62"), "1,62", "ValueError: could not convert string to float"),
    "KeyError of a name": (lambda: KeyError("DOE^JOHN"), "DOE^JOHN", "KeyError"),
    "bytes repr": (lambda: ValueError(f"bad element value {b'DOE^JOHN'!r} at 0x10"), "DOE^JOHN", "ValueError: bad"),
    "double quotes": (lambda: ValueError('name "O\'BRIEN^PAT" is odd'), "BRIEN", "ValueError: name"),
    "unterminated quote": (lambda: ValueError("value 'DOE^JO"), "DOE", "ValueError: value"),
    "unquoted name": (lambda: ValueError("component DOE^JOHN too long"), "DOE^JOHN", "ValueError: component"),
    "unquoted date": (lambda: ValueError("date 1901-02-03 or 19010203 out of range"), "1901", "ValueError: date"),
    "SQLAlchemy parameters": (_sqlalchemy_error, "DOE^JOHN", "IntegrityError: (sqlite3.IntegrityError) UNIQUE"),
}


@pytest.mark.parametrize("name", FOREIGN)
def test_a_foreign_exception_keeps_its_type_and_reason_and_loses_the_value(name: str) -> None:
    make, value, kept = FOREIGN[name]
    exc = make()
    assert value in str(exc)  # the raw text does carry the value
    text = error_text(exc)
    assert value not in text
    assert text.startswith(kept), text
    assert text == scrub_text(text)  # scrubbing twice changes nothing


def test_the_vr_a_conversion_names_stays() -> None:
    assert error_text(_raised(DA, "1901-02-03")) == f"ValueError: Unable to convert {REDACTED} to 'DA' object"


def test_the_projects_own_messages_pass_unchanged() -> None:
    texts = [
        "the images differ in Rows, Columns or PixelSpacing: 12x10 pixels of 0.7x0.8 mm (24 images); "
        "12x10 pixels of 0.5x0.5 mm (1 images)",
        "job 3's output folder deleted (3 DICOM objects, all delivered)",
        "seg 1.2.826.0.1.3680043.8.498.1234567890123456789 to pacs: attempt 2 failed, next in 60 s",
        "lease of host:12:abc expired at 2026-07-08T10:15:00Z without a heartbeat (worker stopped or killed during "
        "attempt 1)",
        "2 of 30 slices: 1.2.826.0.1.3680043.8.498.20240102.dcm and 19.dcm",
    ]
    for text in texts:
        assert scrub_text(text) == text
    assert error_text(MixedPixelGridError(texts[0])) == texts[0]
    assert error_text(SourceReferenceError("the source series has no StudyInstanceUID (0020,000D)")) == (
        "the source series has no StudyInstanceUID (0020,000D)")


def test_the_place_it_happened_can_be_named() -> None:
    exc = _raised(DA, "1901-02-03")
    text = error_text(exc, location=True)
    assert "1901" not in text
    assert text.startswith("ValueError")
    assert "valuerep.py:" in text


# -- the places that record a text ------------------------------------------------------------------------------


def test_events_and_a_jobs_error_are_stored_scrubbed(engine) -> None:  # type: ignore[no-untyped-def]
    from node_support import add_series

    series_id = add_series(engine, "1.2.826.0.1.3680043.8.498.77", 2)
    with session_scope(engine) as session:
        enqueue(session, series_id, reason="test", max_attempts=1)
        record_event(session, "test.event", "a value 'DOE^JOHN' and a date 1901-02-03 in an event")
    claimed = claim(engine, 60)
    assert claimed is not None
    fail(engine, claimed.id, claimed.lease_token, "ValueError: Unable to convert '1901-02-03' to 'DA' object",
         backoff_s=0, backoff_max_s=0)
    with session_scope(engine) as session:
        messages = list(session.execute(select(Event.message)).scalars())
        error = session.execute(select(Job.error)).scalar_one()
    recorded = "\n".join([*messages, error])
    assert "DOE" not in recorded
    assert "1901" not in recorded
    assert f"Unable to convert {REDACTED} to 'DA' object" in error


def test_a_deliverys_error_is_stored_scrubbed(engine) -> None:  # type: ignore[no-untyped-def]
    from node_support import done_job_with_outputs

    done_job_with_outputs(engine)
    delivery = claim_due(engine, hold_s=300)[0]
    record_outcome(engine, delivery, accepted=False, status_code=None, retry_s=1, retry_max_s=1, max_attempts=0,
                   error="not a DICOM file: ValueError: 'DOE^JOHN' at 0x10")
    with session_scope(engine) as session:
        errors = list(session.execute(select(Delivery.last_error).where(Delivery.last_error.is_not(None))).scalars())
        messages = list(session.execute(select(Event.message).where(Event.kind == "delivery.retry")).scalars())
    assert errors == [f"not a DICOM file: ValueError: {REDACTED} at 0x10"]
    assert len(messages) == 1
    assert "DOE" not in messages[0]


def test_a_quarantine_note_is_scrubbed(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", tmp_path / "quarantine")
    path = spool.quarantine(b"not dicom", "the data set cannot be parsed: ValueError: 'DOE^JOHN' is too long",
                            calling_ae_title="SCANNER")
    note = json.loads(path.with_suffix(".json").read_text())
    assert note["reason"] == f"the data set cannot be parsed: ValueError: {REDACTED} is too long"


def test_library_warnings_and_tracebacks_reach_the_log_scrubbed(tmp_path: Path) -> None:
    """pydicom's warnings quote the invalid value (``warn_and_log``): the chaos fuzz run found a patient's name,
    IDs and birth date on the node's stderr that way. In a process set up by `configure_logging` they reach stderr
    and the log file through sarcoscreen's handlers, scrubbed, and so does the text of a logged traceback."""
    script = """
import logging, sys
from pathlib import Path
import pydicom.config, pydicom.valuerep
from sarcoscreen.node.logging_setup import configure_logging
configure_logging("INFO", Path(sys.argv[1]))
pydicom.valuerep.validate_value("PN", "DOE^JOHN^" + "X" * 70, pydicom.config.WARN)
try:
    raise ValueError("Unable to convert '1901-02-03' to 'DA' object")
except ValueError:
    logging.getLogger("sarcoscreen.test").exception("while reading a header")
"""
    log_file = tmp_path / "node.log"
    result = subprocess.run([sys.executable, "-c", script, str(log_file)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    for text in (result.stderr, log_file.read_text()):
        assert "DOE" not in text, text
        assert "1901" not in text, text
        assert "UserWarning" in text  # the warning is there, without its value
        assert "Unable to convert <value> to 'DA' object" in text
