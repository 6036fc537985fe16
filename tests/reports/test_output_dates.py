"""The date and time of the DICOM outputs: the latest one the source records, never the clock's."""

from __future__ import annotations

from pydicom import Dataset

from sarcoscreen.reports.output_dates import UNDATED, OutputDateTime, output_datetime


def _ds(**attributes: str) -> Dataset:
    ds = Dataset()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def test_the_latest_date_and_time_of_the_source() -> None:
    first = _ds(StudyDate="20240102", StudyTime="101500", SeriesDate="20240102", SeriesTime="1030")
    last = _ds(StudyDate="20240102", StudyTime="101500", AcquisitionDate="20240102", AcquisitionTime="103512.25",
               ContentDate="20240102", ContentTime="103512.1")
    assert output_datetime([first, last]) == OutputDateTime("20240102", "103512.25")
    assert output_datetime([last, first]) == OutputDateTime("20240102", "103512.25")
    # a later date wins over a later time; a date without a time is midnight
    assert output_datetime([first, _ds(ContentDate="20240103")]) == OutputDateTime("20240103", "000000")


def test_invalid_or_missing_values_are_ignored() -> None:
    assert output_datetime([_ds(StudyDate="", StudyTime="")]) == UNDATED
    assert output_datetime([_ds(StudyDate="2024-01-02", StudyTime="101500")]) == UNDATED
    assert output_datetime([]) == UNDATED
    assert output_datetime([_ds(StudyDate="20240102", StudyTime="25:00")]) == OutputDateTime("20240102", "000000")
    assert (UNDATED.date, UNDATED.time) == ("19700101", "000000")
