"""The copy of the source's Patient and Study attributes into the DICOM outputs survives malformed values.

A crafted series carries a malformed DA, TM, PN, AS, DS and CS value in every copied attribute of those VRs, and a
malformed DT and IS inside the copied sequences (`invalid_values`). The SEG, SR and key image (Secondary Capture
and PDF) are written for real: they must be written, pass dciodvfy without an error, hold the repaired value or
nothing for each malformed one, list each repair or omission in `notes` by attribute, and no malformed value may
reach a log record or a warning.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pydicom
import pytest
from dicom_output_fixtures import Crafted, crafted_analysis
from dicom_validation import dciodvfy
from invalid_values import INVALID, NESTED_INVALID, Invalid, invalid_series_transform, markers, without_uids
from PIL import Image

from sarcoscreen.inference.series_loader import load_series
from sarcoscreen.reports.dicom_outputs import write_dicom_outputs
from sarcoscreen.reports.key_image import KeyImageKind, KeyImageOptions, build_key_image
from sarcoscreen.reports.source_attributes import TYPE2_COPIED, read_source_instances


def _expect(ds: pydicom.Dataset, entry: Invalid, name: str) -> None:
    if entry.repaired is not None:
        assert str(ds[entry.keyword].value) == entry.repaired, (name, entry.keyword)
    elif entry.keyword in TYPE2_COPIED:
        assert entry.keyword in ds, (name, entry.keyword)
        assert not ds[entry.keyword].value, (name, entry.keyword)
    else:
        assert entry.keyword not in ds, (name, entry.keyword)


@pytest.fixture(scope="module")
def malformed(tmp_path_factory: pytest.TempPathFactory) -> Crafted:
    """The crafted analysis on a series with a malformed value in every copied attribute (pydicom warns while
    writing it; the tests watch the logs only while loading it and writing the outputs)."""
    return crafted_analysis(tmp_path_factory.mktemp("malformed") / "ct", transform=invalid_series_transform())


def test_outputs_of_a_series_with_a_malformed_value_in_every_copied_attribute(
        malformed: Crafted, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.clear()
    with caplog.at_level(logging.DEBUG), warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        volume = load_series(malformed.folder)
        outputs = write_dicom_outputs(malformed.folder, volume, malformed.segmentation, malformed.report,
                                      tmp_path / "out", settings_digest="test")
    assert outputs.seg is not None
    assert outputs.key_image is not None
    for path in outputs.files:
        _check_output(path)
    for keyword in [e.keyword for e in INVALID] + list(NESTED_INVALID):
        assert sum(note.startswith(f"{keyword} (") for note in outputs.notes) == 1, keyword
    recorded = without_uids("\n".join([*outputs.notes, caplog.text, *(str(w.message) for w in warned)]))
    assert [m for m in markers() if m in recorded] == []


def test_the_pdf_key_image_of_that_series(malformed: Crafted, tmp_path: Path) -> None:
    """The Encapsulated PDF copies the Type 2 attributes itself (not through highdicom)."""
    source = read_source_instances(malformed.folder, malformed.volume)
    pdf = build_key_image(Image.new("RGB", (8, 8)), source, [], series_instance_uid="1.2.3.4", orientation=("L", "P"),
                          sop_instance_uid="1.2.3.4.5", options=KeyImageOptions(kind=KeyImageKind.PDF))
    assert pdf is not None
    path = tmp_path / "key_image.dcm"
    pdf.save_as(path, enforce_file_format=True)
    _check_output(path)


def _check_output(path: Path) -> None:
    assert dciodvfy(path).errors == (), path.name
    ds = pydicom.dcmread(path)
    for entry in INVALID:
        _expect(ds, entry, path.name)
    for sequence in NESTED_INVALID:
        assert sequence not in ds, (path.name, sequence)


def test_each_note_says_what_was_done(tmp_path: Path) -> None:
    entries = tuple(e for e in INVALID if e.keyword in {"PatientBirthDate", "StudyDate", "PatientAge"})
    series = tmp_path / "ct"
    from ct_series_factory import write_ct_series

    write_ct_series(series, 2, 4, 4, transform=invalid_series_transform(entries, nested=False))
    source = read_source_instances(series, load_series(series))
    assert sorted(source.notes) == [
        "PatientAge (0010,1010): not a valid AS value; left out",
        "PatientBirthDate (0010,0030): not a valid DA value; written in DICOM form",
        "StudyDate (0008,0020): not a valid DA value; left empty",
    ]
    assert str(source.first.PatientBirthDate) == "19010203"
    assert "StudyDate" in source.first
    assert not source.first.StudyDate
    assert "PatientAge" not in source.first


def test_valid_values_are_copied_unchanged_and_give_no_note(tmp_path: Path) -> None:
    from ct_series_factory import write_ct_series

    valid = {"PatientName": "Yamada^Tarou=山田^太郎=やまだ^たろう", "SpecificCharacterSet": ["", "ISO 2022 IR 87"],
             "PatientBirthDate": "19010203", "StudyTime": "101700.123", "PatientAge": "071Y",
             "PatientSize": " 1.62 ", "OtherPatientNames": ["ROE^JANE", "ROE^J"], "PatientSex": "O"}
    series = write_ct_series(tmp_path / "ct", 2, 4, 4, **valid)
    source = read_source_instances(series.folder, load_series(series.folder))
    assert source.notes == ()
    original = pydicom.dcmread(series.files[0])
    for keyword in valid:
        assert source.first[keyword].value == original[keyword].value, keyword
