"""The date and time the DICOM outputs carry, derived from their source so that re-writing an analysis gives the
same bytes.

An object re-sent under the same SOP Instance UID must be the same object, so no date or time of an output may come
from the clock. Content Date/Time (PS3.3 C.7.6.1 General Image, C.17.2 SR Document General, C.24.2 Encapsulated
Document; Type 1 in the SEG and the SR), Series Date/Time (C.7.3.1), Instance Creation Date/Time (C.12.1 SOP
Common), the Contribution DateTime highdicom writes for itself (Contributing Equipment Sequence, C.12.1) and the
Secondary Capture's Date/Time of Secondary Capture (C.8.6.2) are all set to **the latest date and
time recorded in the source instances**: the latest of their Series, Acquisition, Content and Study Date/Time
pairs. The outputs thus never look older than the images they were derived from, and the same source gives the
same value on every run and every machine.

A source that records no date at all (some de-identified series) gives `UNDATED`, 1970-01-01 00:00:00: a fixed
value that cannot be mistaken for a real examination, since Content Date is Type 1 in the SEG and the SR.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass

from pydicom import Dataset
from pydicom.valuerep import DA, TM

__all__ = ["SOURCE_DATE_PAIRS", "UNDATED", "OutputDateTime", "output_datetime", "stamp"]

SOURCE_DATE_PAIRS = (
    ("SeriesDate", "SeriesTime"),
    ("AcquisitionDate", "AcquisitionTime"),
    ("ContentDate", "ContentTime"),
    ("StudyDate", "StudyTime"),
)
"""The (date, time) attributes of a source instance looked at, each pair a moment."""


@dataclass(frozen=True)
class OutputDateTime:
    """A DICOM date (DA, ``YYYYMMDD``) and time (TM, ``HHMMSS[.F]``) as written."""

    date: str
    time: str

    @property
    def moment(self) -> datetime.datetime:
        return datetime.datetime.combine(_date(self.date) or datetime.date.min, _time(self.time) or datetime.time())


UNDATED = OutputDateTime("19700101", "000000")
"""What an output carries when its source records no date."""


def _date(value: object) -> datetime.date | None:
    """A valid DA value as a date, else ``None``."""
    text = str(value or "").strip()
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        return DA(text)
    except ValueError:
        return None


def _time(value: object) -> datetime.time | None:
    """A valid TM value as a time, else ``None``."""
    text = str(value or "").strip()
    if not text or not text.replace(".", "", 1).isdigit():
        return None
    try:
        return TM(text)
    except ValueError:
        return None


def _pairs(datasets: Iterable[Dataset]) -> Iterable[OutputDateTime]:
    """Every valid (date, time) of `datasets`; a missing or invalid time counts as midnight."""
    for ds in datasets:
        for date_keyword, time_keyword in SOURCE_DATE_PAIRS:
            date = str(ds.get(date_keyword) or "").strip()
            if _date(date) is None:
                continue
            time = str(ds.get(time_keyword) or "").strip()
            yield OutputDateTime(date, time if _time(time) is not None else "000000")


def output_datetime(datasets: Iterable[Dataset]) -> OutputDateTime:
    """The latest (date, time) recorded in `datasets` (`SOURCE_DATE_PAIRS`), or `UNDATED`."""
    return max(_pairs(datasets), key=lambda value: value.moment, default=UNDATED)


def stamp(ds: Dataset, when: OutputDateTime) -> None:
    """Set the Instance Creation Date/Time of `ds` and every Contribution DateTime of its Contributing Equipment
    Sequence (highdicom writes the clock's for itself) to `when`."""
    ds.InstanceCreationDate, ds.InstanceCreationTime = when.date, when.time
    for item in ds.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            item.ContributionDateTime = f"{when.date}{when.time}"
