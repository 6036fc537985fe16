"""Series selection: a CT series next to non-image objects (RT Structure Set, SR, SEG, presentation state) is
loaded and the rest set aside with a note; two image series are refused with both listed. On crafted series, on
the phantom through ``sarcoscreen analyze``, and on a real case folder (``ct/`` + ``rtstruct/``) when
``../shared/data`` is present."""

from __future__ import annotations

import shutil
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from ct_series_factory import CTSeries, assert_matches, write_ct_series
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    BasicTextSRStorage,
    CTImageStorage,
    ExplicitVRLittleEndian,
    GrayscaleSoftcopyPresentationStateStorage,
    KeyObjectSelectionDocumentStorage,
    MRImageStorage,
    RTDoseStorage,
    RTStructureSetStorage,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from sarcoscreen.inference.dicom_headers import read_header
from sarcoscreen.inference.series_errors import (
    MultipleSeriesError,
    NoDicomFilesError,
    NoImageSeriesError,
    SeriesNotFoundError,
)
from sarcoscreen.inference.series_loader import load_series
from sarcoscreen.inference.series_selection import is_image
from sarcoscreen.inference.sop_classes import sop_class_name
from sarcoscreen.node.cli import main

PELVIC_003_CT = "1.3.6.1.4.1.14519.5.2.1.7085.2036.172655946193211583130023679095"
PELVIC_003_RTSTRUCT = "1.2.752.243.1.1.20230123144952877.5000.72621.1"


# -- non-image objects written with pydicom and highdicom -----------------------------------------------------------


def _base(sop_class: str, modality: str, series_uid: str, study_uid: str) -> Dataset:
    """A data set with file meta, the crafted series' patient (to check that it never appears) and its study."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.StudyInstanceUID = modality, series_uid, study_uid
    ds.PatientName, ds.PatientID, ds.PatientSex = "Test^Crafted", "CRAFTED-1", "F"
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "20240102", "", "", "", ""
    ds.SeriesNumber, ds.InstanceNumber = 900, 1
    ds.Manufacturer = "sarcoscreen tests"
    return ds


def _save(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_rtstruct(path: Path, ct: CTSeries) -> Dataset:
    """An RT Structure Set (PS3.3 A.19) with one closed planar contour on the first slice of `ct`."""
    ds = _base(RTStructureSetStorage, "RTSTRUCT", generate_uid(), ct.study_instance_uid)
    source = pydicom.dcmread(ct.files[0], stop_before_pixels=True)
    ds.StructureSetLabel, ds.StructureSetDate, ds.StructureSetTime = "crafted", "20240102", "101500"
    image = Dataset()
    image.ReferencedSOPClassUID, image.ReferencedSOPInstanceUID = CTImageStorage, source.SOPInstanceUID
    frame = Dataset()
    frame.FrameOfReferenceUID = source.FrameOfReferenceUID
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame])
    roi = Dataset()
    roi.ROINumber, roi.ReferencedFrameOfReferenceUID, roi.ROIName = 1, source.FrameOfReferenceUID, "Body"
    roi.ROIGenerationAlgorithm = "MANUAL"
    ds.StructureSetROISequence = Sequence([roi])
    contour = Dataset()
    contour.ContourImageSequence = Sequence([image])
    contour.ContourGeometricType, contour.NumberOfContourPoints = "CLOSED_PLANAR", 3
    x, y, z = (float(v) for v in source.ImagePositionPatient)
    contour.ContourData = [x, y, z, x + 3, y, z, x, y + 3, z]
    roi_contour = Dataset()
    roi_contour.ReferencedROINumber, roi_contour.ROIDisplayColor = 1, [255, 0, 0]
    roi_contour.ContourSequence = Sequence([contour])
    ds.ROIContourSequence = Sequence([roi_contour])
    observation = Dataset()
    observation.ObservationNumber, observation.ReferencedROINumber = 1, 1
    observation.RTROIInterpretedType, observation.ROIInterpreter = "EXTERNAL", ""
    ds.RTROIObservationsSequence = Sequence([observation])
    _save(ds, path)
    return ds


def write_basic_text_sr(path: Path, study_uid: str) -> Dataset:
    """A Basic Text SR (PS3.3 A.35.1) with one TEXT item."""
    ds = _base(BasicTextSRStorage, "SR", generate_uid(), study_uid)
    ds.ValueType, ds.ContinuityOfContent = "CONTAINER", "SEPARATE"
    ds.CompletionFlag, ds.VerificationFlag = "COMPLETE", "UNVERIFIED"
    ds.ContentDate, ds.ContentTime = "20240102", "101500"
    title = Dataset()
    title.CodeValue, title.CodingSchemeDesignator, title.CodeMeaning = "11528-7", "LN", "Radiology Report"
    ds.ConceptNameCodeSequence = Sequence([title])
    item = Dataset()
    item.RelationshipType, item.ValueType, item.TextValue = "CONTAINS", "TEXT", "no finding"
    name = Dataset()
    name.CodeValue, name.CodingSchemeDesignator, name.CodeMeaning = "121071", "DCM", "Finding"
    item.ConceptNameCodeSequence = Sequence([name])
    ds.ContentSequence = Sequence([item])
    _save(ds, path)
    return ds


def write_presentation_state(path: Path, series_uid: str, study_uid: str) -> Dataset:
    """A Grayscale Softcopy Presentation State (no pixel data) in the series given."""
    ds = _base(GrayscaleSoftcopyPresentationStateStorage, "PR", series_uid, study_uid)
    ds.ContentLabel, ds.PresentationCreationDate, ds.PresentationCreationTime = "CRAFTED", "20240102", "101500"
    _save(ds, path)
    return ds


def write_seg(path: Path, ct: CTSeries) -> Dataset:
    """A BINARY DICOM-SEG (pixel data, but a map of the CT, not an image to choose) written by highdicom."""
    sources = sorted((pydicom.dcmread(f) for f in ct.files), key=lambda d: float(d.ImagePositionPatient[2]))
    for source in sources:
        source.PatientBirthDate = ""  # Type 2, copied by highdicom
    mask = np.zeros((len(sources), sources[0].Rows, sources[0].Columns), bool)
    mask[:, 2:6, 2:6] = True
    segment = hd.seg.SegmentDescription(
        segment_number=1, segment_label="body",
        segmented_property_category=hd.sr.CodedConcept("85756007", "SCT", "Tissue"),
        segmented_property_type=hd.sr.CodedConcept("38266002", "SCT", "Entire body"),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=mask, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment], series_instance_uid=hd.UID(), series_number=901,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="sarcoscreen tests",
        manufacturer_model_name="tests", software_versions="0", device_serial_number="1",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(path, enforce_file_format=True)
    return seg


def _image_series(folder: Path, sop_class: str, modality: str, n_slices: int, seed: int) -> CTSeries:
    def sop(ds: Dataset, n: int) -> None:
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class

    return write_ct_series(folder, n_slices=n_slices, seed=seed, Modality=modality, transform=sop)


# -- the rule: image or not ----------------------------------------------------------------------------------------


def test_image_or_not_by_sop_class_and_pixel_data(tmp_path: Path) -> None:
    ct = write_ct_series(tmp_path / "ct", n_slices=3)
    mr = _image_series(tmp_path / "mr", MRImageStorage, "MR", 1, seed=3)
    sc = _image_series(tmp_path / "sc", SecondaryCaptureImageStorage, "OT", 1, seed=4)
    private = _image_series(tmp_path / "private", "1.2.3.4.5.6", "OT", 1, seed=5)
    dose = _image_series(tmp_path / "dose", RTDoseStorage, "RTDOSE", 1, seed=6)
    rtstruct = tmp_path / "rs.dcm"
    write_rtstruct(rtstruct, ct)
    seg = tmp_path / "seg.dcm"
    write_seg(seg, ct)
    no_pixels = tmp_path / "ct-no-pixels.dcm"
    stripped = pydicom.dcmread(ct.files[0])
    del stripped.PixelData
    stripped.save_as(no_pixels, enforce_file_format=True)
    key_objects = tmp_path / "ko.dcm"
    _save(_base(KeyObjectSelectionDocumentStorage, "KO", generate_uid(), ct.study_instance_uid), key_objects)

    def image(path: Path) -> bool:
        header = read_header(path)
        assert header is not None
        return is_image(header[0])

    assert image(ct.files[0])
    assert image(no_pixels), "a CT image storage instance is an image even without its pixel data"
    assert image(mr.files[0])
    assert image(sc.files[0]), "a secondary capture is an image"
    assert image(private.files[0]), "an unknown SOP class with pixel data is an image"
    assert not image(dose.files[0]), "RT Dose has pixel data but is a map of another series"
    assert not image(seg), "a SEG has pixel data but is a map of another series"
    assert not image(rtstruct)
    assert not image(key_objects)
    assert sop_class_name(RTStructureSetStorage) == "RT Structure Set Storage"
    assert sop_class_name("1.2.840.10008.5.1.4.1.1.66.7") == "Label Map Segmentation Storage"
    assert sop_class_name("1.2.3.4.5.6") == "1.2.3.4.5.6"
    assert sop_class_name("") == "(no SOP Class UID)"


# -- one CT series and non-image objects -----------------------------------------------------------------------------


def test_ct_series_is_loaded_and_non_image_objects_are_set_aside(tmp_path: Path) -> None:
    ct = write_ct_series(tmp_path / "ct", n_slices=5)
    rtstruct = write_rtstruct(tmp_path / "rtstruct" / "rs.dcm", ct)
    report = write_basic_text_sr(tmp_path / "sr" / "report.dcm", ct.study_instance_uid)
    seg = write_seg(tmp_path / "seg" / "seg.dcm", ct)
    # presentation states belong in a series of their own; some exporters put them in the image series
    for n in range(2):
        write_presentation_state(tmp_path / "ct" / f"pr{n}.dcm", ct.series_instance_uid, ct.study_instance_uid)
    volume = load_series(tmp_path)
    assert_matches(volume, ct)
    assert volume.info.series_instance_uid == ct.series_instance_uid
    assert set(volume.warnings) == {
        "set aside 2 non-image instances of the loaded series: Grayscale Softcopy Presentation State Storage (2)",
        f"set aside 1 non-image instance of series {rtstruct.SeriesInstanceUID} (RTSTRUCT): "
        "RT Structure Set Storage (1)",
        f"set aside 1 non-image instance of series {report.SeriesInstanceUID} (SR): Basic Text SR Storage (1)",
        f"set aside 1 non-image instance of series {seg.SeriesInstanceUID} (SEG): Segmentation Storage (1)",
    }
    assert volume.warnings[0].startswith("set aside 2 non-image instances of the loaded series")
    assert not any("Crafted" in w or "CRAFTED" in w for w in volume.warnings)


def test_copies_of_one_non_image_object_count_once(tmp_path: Path) -> None:
    ct = write_ct_series(tmp_path / "ct", n_slices=3)
    report = write_basic_text_sr(tmp_path / "a" / "report.dcm", ct.study_instance_uid)
    _save(report, tmp_path / "b" / "copy.dcm")
    volume = load_series(tmp_path)
    assert volume.warnings == (
        f"set aside 1 non-image instance of series {report.SeriesInstanceUID} (SR): Basic Text SR Storage (1)",
    )


def test_only_non_image_objects_are_refused(tmp_path: Path) -> None:
    ct = write_ct_series(tmp_path / "elsewhere", n_slices=3)
    rtstruct = write_rtstruct(tmp_path / "case" / "rs.dcm", ct)
    write_basic_text_sr(tmp_path / "case" / "sr.dcm", ct.study_instance_uid)
    with pytest.raises(NoImageSeriesError, match="no image series, only non-image objects") as caught:
        load_series(tmp_path / "case")
    assert isinstance(caught.value, NoDicomFilesError)
    assert "RT Structure Set Storage (1)" in str(caught.value)
    assert "Basic Text SR Storage (1)" in str(caught.value)
    with pytest.raises(NoImageSeriesError, match=rf"series {rtstruct.SeriesInstanceUID} holds no images"):
        load_series(tmp_path, series_instance_uid=rtstruct.SeriesInstanceUID)


# -- several image series -------------------------------------------------------------------------------------------


def test_two_ct_image_series_are_refused_with_both_listed(tmp_path: Path) -> None:
    thin = write_ct_series(tmp_path / "thin", n_slices=6, seed=1)
    thick = write_ct_series(tmp_path / "thick", n_slices=3, seed=2, slice_spacing=5.0)
    rtstruct = write_rtstruct(tmp_path / "rtstruct" / "rs.dcm", thin)
    with pytest.raises(MultipleSeriesError, match="the files hold 2 image series; choose one") as caught:
        load_series(tmp_path)
    message = str(caught.value)
    assert f"{thin.series_instance_uid} (CT: CT Image Storage (6))" in message
    assert f"{thick.series_instance_uid} (CT: CT Image Storage (3))" in message
    assert "--series-uid" in message
    assert message.endswith("; set aside either way: 1 non-image instance of 1 series")
    assert rtstruct.SeriesInstanceUID not in message
    assert set(caught.value.series_instance_uids) == {thin.series_instance_uid, thick.series_instance_uid}
    volume = load_series(tmp_path, series_instance_uid=thick.series_instance_uid)
    assert_matches(volume, thick)
    assert set(volume.warnings) == {
        f"set aside 6 image instances of series {thin.series_instance_uid} (CT), not the series chosen: "
        "CT Image Storage (6)",
        f"set aside 1 non-image instance of series {rtstruct.SeriesInstanceUID} (RTSTRUCT): "
        "RT Structure Set Storage (1)",
    }
    with pytest.raises(SeriesNotFoundError, match=r"1\.2\.3\.4 is not among the 3 series found"):
        load_series(tmp_path, series_instance_uid="1.2.3.4")


@pytest.mark.parametrize(("sop_class", "modality", "name"), [
    (SecondaryCaptureImageStorage, "CT", "Secondary Capture Image Storage"),  # a dose report screen
    (MRImageStorage, "MR", "MR Image Storage"),
])
def test_a_non_ct_image_series_next_to_the_ct_is_a_second_image_series(
    tmp_path: Path, sop_class: str, modality: str, name: str
) -> None:
    ct = write_ct_series(tmp_path / "ct", n_slices=4)
    other = _image_series(tmp_path / "other", sop_class, modality, 1, seed=9)
    with pytest.raises(MultipleSeriesError, match="2 image series") as caught:
        load_series(tmp_path)
    assert f"{other.series_instance_uid} ({modality}: {name} (1))" in str(caught.value)
    volume = load_series(tmp_path, series_instance_uid=ct.series_instance_uid)
    assert_matches(volume, ct)
    assert volume.warnings == (f"set aside 1 image instance of series {other.series_instance_uid} ({modality}), "
                               f"not the series chosen: {name} (1)",)


# -- sarcoscreen analyze ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("phantom")
    assert main(["phantom", "--out", str(folder), "--matrix", "64", "--slice-mm", "8", "--no-progress"]) == 0
    return folder


def _phantom_ct(phantom: Path) -> CTSeries:
    """The phantom's series as a `CTSeries` with just what the writers of non-image objects need."""
    files = sorted((phantom / "dicom").glob("CT*.dcm"))
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    return CTSeries(phantom / "dicom", files, [], np.zeros((0, 3)), (1, 0, 0), (0, 1, 0), (1, 1), [],
                    str(first.SeriesInstanceUID), str(first.StudyInstanceUID))


def test_analyze_uses_the_ct_and_prints_what_it_set_aside(phantom: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    case = tmp_path / "case"
    shutil.copytree(phantom / "dicom", case / "ct")
    ct = _phantom_ct(phantom)
    rtstruct = write_rtstruct(case / "rtstruct" / "rs.dcm", ct)
    report = write_basic_text_sr(case / "sr" / "report.dcm", ct.study_instance_uid)
    capsys.readouterr()
    code = main(["analyze", str(case), "--labels", str(phantom / "labels.nii.gz"), "--out", str(tmp_path / "out"),
                 "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    lines = printed.splitlines()
    assert lines[0].startswith(f"series    {ct.series_instance_uid}: CT, ")
    assert lines[0].endswith("slices of 64 x 64")
    assert set(lines[1:3]) == {
        f"warning   set aside 1 non-image instance of series {rtstruct.SeriesInstanceUID} (RTSTRUCT): "
        "RT Structure Set Storage (1)",
        f"warning   set aside 1 non-image instance of series {report.SeriesInstanceUID} (SR): "
        "Basic Text SR Storage (1)",
    }
    assert lines[3] == ""
    assert (tmp_path / "out" / "measurements.json").is_file()
    assert "Crafted" not in printed
    assert "CRAFTED" not in printed


def test_analyze_refuses_two_ct_series_and_lists_both(phantom: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(phantom / "dicom", tmp_path / "phantom")
    other = write_ct_series(tmp_path / "other", n_slices=3)
    ct = _phantom_ct(phantom)
    capsys.readouterr()
    code = main(["analyze", str(tmp_path), "--labels", str(phantom / "labels.nii.gz"), "--out",
                 str(tmp_path / "out"), "--no-progress"])
    printed = capsys.readouterr().err
    assert code == 1
    assert printed.startswith(f"sarcoscreen: cannot analyse {tmp_path}: the series cannot be loaded: the files hold 2 "
                              "image series; choose one")
    assert ct.series_instance_uid in printed
    assert f"{other.series_instance_uid} (CT: CT Image Storage (3))" in printed
    assert not (tmp_path / "out").exists()


# -- a real case folder: ct/ and rtstruct/ ----------------------------------------------------------------------------


@pytest.fixture
def pelvic_003(shared_data: Path) -> Path:
    """Pelvic-Ref-003 (TCIA Pelvic Reference Data): 145 CT slices in ct/, an RT Structure Set in rtstruct/."""
    case = shared_data / "pelvic-ref-ct" / "Pelvic-Ref-003"
    if not case.is_dir():
        pytest.skip(f"{case} not found (see ../shared/data/README.md)")
    return case


def test_real_case_folder_with_ct_and_rtstruct_subfolders(pelvic_003: Path) -> None:
    volume = load_series(pelvic_003)
    assert volume.shape == (145, 512, 512)
    assert volume.info.series_instance_uid == PELVIC_003_CT
    assert volume.warnings == (
        f"set aside 1 non-image instance of series {PELVIC_003_RTSTRUCT} (RTSTRUCT): RT Structure Set Storage (1)",
    )


def test_real_case_folder_through_analyze(pelvic_003: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """``sarcoscreen analyze`` on the case folder; a label map on the series' grid (the labelmap engine) keeps the
    test about the selection and what analyze prints, not about an engine."""
    volume = load_series(pelvic_003)
    labels = np.zeros(volume.shape, np.uint8)
    labels[60:70, 200:260, 150:200] = 1
    label_path = tmp_path / "labels.nii.gz"
    nib.save(nib.Nifti1Image(labels, np.diag([-1.0, -1.0, 1.0, 1.0]) @ volume.affine), label_path)  # RAS
    capsys.readouterr()
    code = main(["analyze", str(pelvic_003), "--labels", str(label_path), "--out", str(tmp_path / "out"),
                 "--height", "1.75", "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert printed.splitlines()[:2] == [
        f"series    {PELVIC_003_CT}: CT, 145 slices of 512 x 512",
        f"warning   set aside 1 non-image instance of series {PELVIC_003_RTSTRUCT} (RTSTRUCT): "
        "RT Structure Set Storage (1)",
    ]
    assert (tmp_path / "out" / "measurements.json").is_file()


def test_real_segs_and_sr_written_by_another_tool_are_set_aside(shared_data: Path) -> None:
    """``dcmqi/``: three GE CT slices next to two SEGs (pixel data, but maps of another series) and a TID 1500
    SR, all written by dcmqi."""
    folder = shared_data / "dcmqi"
    if not (folder / "ct-3slice").is_dir():
        pytest.skip(f"{folder} not found (see ../shared/data/README.md)")
    volume = load_series(folder)
    assert volume.shape == (3, 512, 512)
    assert volume.info.series_instance_uid == pydicom.dcmread(
        folder / "ct-3slice" / "01.dcm", stop_before_pixels=True).SeriesInstanceUID
    kinds = sorted(w.split(": ")[-1] for w in volume.warnings)
    assert kinds == ["Comprehensive SR Storage (1)", "Segmentation Storage (1)", "Segmentation Storage (1)"]
    assert all(w.startswith("set aside 1 non-image instance of series ") for w in volume.warnings)
