"""Key image: Secondary Capture and Encapsulated PDF, valid (dciodvfy), in the source's study, the overlay's pixels,
and no burned-in patient name unless configured."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from dicom_output_fixtures import Crafted, crafted_analysis
from dicom_validation import dciodvfy

from sarcoscreen.reports.dicom_outputs import DicomOutputOptions, write_dicom_outputs
from sarcoscreen.reports.key_image import KeyImageKind, KeyImageOptions, patient_orientation
from sarcoscreen.reports.overlay import render_overlay


@pytest.fixture(scope="module")
def crafted(tmp_path_factory: pytest.TempPathFactory) -> Crafted:
    return crafted_analysis(tmp_path_factory.mktemp("key") / "ct")


def _write(crafted: Crafted, out: Path, kind: KeyImageKind, burn_in: bool = False) -> Path:
    options = DicomOutputOptions(key_image=KeyImageOptions(kind, burn_in))
    outputs = write_dicom_outputs(crafted.folder, crafted.volume, crafted.segmentation, crafted.report, out,
                                  settings_digest="k", options=options)
    assert outputs.key_image is not None
    return outputs.key_image


def test_secondary_capture_is_the_overlay(crafted: Crafted, tmp_path: Path) -> None:
    path = _write(crafted, tmp_path, KeyImageKind.SECONDARY_CAPTURE)
    verdict = dciodvfy(path)
    assert verdict.iod == "SCImage"
    assert verdict.errors == ()
    assert verdict.unexpected_warnings() == []
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
    assert ds.StudyInstanceUID == crafted.series.study_instance_uid
    assert ds.PatientID == "CRAFTED-1"
    assert ds.BurnedInAnnotation == "NO"
    assert (ds.ConversionType, ds.PhotometricInterpretation, ds.SamplesPerPixel) == ("SYN", "RGB", 3)
    expected = np.asarray(render_overlay(crafted.volume, crafted.segmentation, crafted.report))
    np.testing.assert_array_equal(ds.pixel_array, expected)
    np.testing.assert_array_equal(hd.imread(path).get_frame(1), expected)  # highdicom reads it back too
    shown = {i.ReferencedSOPInstanceUID for i in ds.SourceImageSequence}
    assert shown
    assert shown <= set(crafted.series.sop_instance_uids)


def test_patient_name_only_when_configured(crafted: Crafted, tmp_path: Path) -> None:
    plain = pydicom.dcmread(_write(crafted, tmp_path / "plain", KeyImageKind.SECONDARY_CAPTURE))
    named = pydicom.dcmread(_write(crafted, tmp_path / "named", KeyImageKind.SECONDARY_CAPTURE, burn_in=True))
    assert named.BurnedInAnnotation == "YES"
    assert named.Rows > plain.Rows  # a band with the name above the same picture
    np.testing.assert_array_equal(named.pixel_array[named.Rows - plain.Rows:], plain.pixel_array)
    assert named.pixel_array[: named.Rows - plain.Rows].any()


@pytest.mark.parametrize("burn_in", [False, True])
def test_encapsulated_pdf(crafted: Crafted, tmp_path: Path, burn_in: bool) -> None:
    path = _write(crafted, tmp_path, KeyImageKind.PDF, burn_in)
    verdict = dciodvfy(path)
    assert verdict.iod == "EncapsulatedPDF"
    assert verdict.errors == ()
    assert verdict.unexpected_warnings() == []
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.104.1"
    assert ds.BurnedInAnnotation == ("YES" if burn_in else "NO")
    document = bytes(ds.EncapsulatedDocument)[: int(ds.EncapsulatedDocumentLength)]
    assert document.startswith(b"%PDF-")
    assert document.rstrip().endswith(b"%%EOF")
    assert {i.ReferencedSOPInstanceUID for i in ds.SourceInstanceSequence} == set(crafted.series.sop_instance_uids)


def test_no_key_image_when_disabled(crafted: Crafted, tmp_path: Path) -> None:
    _write(crafted, tmp_path, KeyImageKind.SECONDARY_CAPTURE)
    options = DicomOutputOptions(key_image=KeyImageOptions(KeyImageKind.NONE))
    outputs = write_dicom_outputs(crafted.folder, crafted.volume, crafted.segmentation, crafted.report, tmp_path,
                                  settings_digest="k", options=options)
    assert outputs.key_image is None
    assert [kind for kind, _ in outputs.omitted] == ["key_image"]
    assert not (tmp_path / "key_image.dcm").exists()  # the stale one of the first run is gone


def test_patient_orientation() -> None:
    assert patient_orientation((1, 0, 0), (0, 1, 0)) == ("L", "P")
    assert patient_orientation((-1, 0, 0), (0, 0.2, -0.98)) == ("R", "F")
