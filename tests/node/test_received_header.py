"""The received-header reader: the single-pass scanner gives exactly what pydicom gives, or declines.

The corpus is every DICOM file at hand that others wrote - pydicom's own test and character-set files (all
transfer syntaxes, big endian, deflated, private and undefined-length sequences, truncated and malformed files,
many repertoires), the real CT series and objects in ``../shared/data`` - plus a phantom CT written by
sarcoscreen and data sets crafted here for what the corpus may lack (nested undefined-length sequences in both
VR encodings, UTF-8 text). Damaged bytes must never make the scanner raise.
"""

from __future__ import annotations

import io
import random
import zlib
from dataclasses import fields
from pathlib import Path

import pydicom
import pydicom.filewriter
import pytest
from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    generate_uid,
)

from sarcoscreen.inference.phantom import PhantomParameters, make_phantom
from sarcoscreen.node.received_header import (
    HeaderAttributes,
    TransferSyntaxMismatchError,
    check_vr_encoding,
    dataset_attributes,
    read_header_attributes,
    scan_header,
)

PYDICOM_DATA = Path(pydicom.__file__).parent / "data"

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom's about the odd corpus files it reads


def _corpus(shared_data: Path) -> list[Path]:
    files = [*sorted((PYDICOM_DATA / "test_files").rglob("*")), *sorted((PYDICOM_DATA / "charset_files").glob("*")),
             *sorted(shared_data.rglob("*.dcm"))]
    return [f for f in files if f.is_file() and f.suffix.lower() in (".dcm", "")]


def _pydicom_attributes(data: bytes) -> HeaderAttributes | None:
    try:
        return dataset_attributes(dcmread(io.BytesIO(data), stop_before_pixels=True))
    except Exception:  # a file pydicom cannot read is outside the comparison
        return None


@pytest.fixture(scope="module")
def phantom_slice(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    out = tmp_path_factory.mktemp("phantom")
    make_phantom(PhantomParameters(matrix=64, slice_mm=10.0, seed=2), out)
    return sorted((out / "dicom").glob("*.dcm"))[3].read_bytes()


def test_the_scanner_agrees_with_pydicom_on_every_file_it_reads(shared_data: Path) -> None:
    scanned, declined, compared = [], [], 0
    for path in _corpus(shared_data):
        data = path.read_bytes()
        result = scan_header(data)  # must not raise, whatever the file
        expected = _pydicom_attributes(data)
        if result is None:
            declined.append(path.name)
            continue
        assert expected is not None, f"{path.name}: the scanner read a header pydicom cannot read"
        differences = {f.name: (getattr(result, f.name), getattr(expected, f.name)) for f in fields(HeaderAttributes)
                       if getattr(result, f.name) != getattr(expected, f.name)}
        assert not differences, f"{path.name}: scanner != pydicom: {differences}"
        scanned.append(path.name)
        compared += 1
    print(f"\n{compared} files read by the scanner and equal to pydicom; {len(declined)} declined (pydicom reads "
          f"those): {', '.join(sorted(declined))}")
    assert compared >= 40  # the corpus is mostly little-endian files in Latin-1 or ASCII
    # The real CT series of both vendors are read by the scanner (the node's everyday input):
    assert "01.dcm" in scanned  # GE, Implicit VR Little Endian
    assert any(name.startswith("CT.1.3.12.2.1107") for name in scanned)  # Siemens, JPEG 2000, with sequences


@pytest.mark.parametrize("name", ["MR_small_bigendian.dcm", "image_dfl.dcm", "chrJapMulti.dcm", "liver-seg.dcm"])
def test_the_scanner_declines_what_it_does_not_read_and_pydicom_reads_it(shared_data: Path, name: str) -> None:
    """Big endian, deflated, another repertoire (ISO 2022 code extensions), multi-frame functional groups."""
    path = next(p for p in [*(PYDICOM_DATA / "test_files").glob(name), *(PYDICOM_DATA / "charset_files").glob(name),
                            *shared_data.rglob(name)])
    data = path.read_bytes()
    assert scan_header(data) is None
    assert read_header_attributes(data) == _pydicom_attributes(data)


def test_a_multi_frame_orientation_comes_from_the_functional_groups(shared_data: Path) -> None:
    attributes = read_header_attributes((shared_data / "dcmqi" / "liver-seg.dcm").read_bytes())
    assert len(attributes.image_orientation) == 6
    assert attributes.number_of_frames == "3"


def _crafted(syntax: str, *, undefined_lengths: bool, patient_id: str = "PAT-1", charset: str = "") -> bytes:
    """A CT header with nested sequences before the attributes the index wants (pixel data omitted)."""
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyDate = "20261201"
    ds.Modality = "CT"
    inner = Dataset()
    inner.CodeValue, inner.CodingSchemeDesignator, inner.CodeMeaning = "T-D2500", "SRT", "Hip"
    inner.ReferencedSOPSequence = Sequence([Dataset()])
    inner.ReferencedSOPSequence[0].ReferencedSOPInstanceUID = generate_uid()
    item = Dataset()
    item.ReferencedSOPClassUID = CTImageStorage
    item.ReferencedSOPInstanceUID = generate_uid()
    item.PurposeOfReferenceCodeSequence = Sequence([inner])
    ds.ReferencedImageSequence = Sequence([item, Dataset()])
    ds.PatientID = patient_id
    ds.PatientSex = "F"
    ds.PatientSize = "1.62"
    ds.BodyPartExamined = "HIP"
    ds.SliceThickness = "1.25"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = generate_uid(), generate_uid(), generate_uid()
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    if undefined_lengths:
        for sequence_owner in (ds, item, inner):
            for element in sequence_owner:
                if element.VR == "SQ":
                    element.is_undefined_length = True
                    for entry in element.value:
                        entry.is_undefined_length_sequence_item = True
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    stream = io.BytesIO()
    ds.save_as(stream, enforce_file_format=True)
    return stream.getvalue()


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
@pytest.mark.parametrize("undefined_lengths", [False, True])
def test_nested_sequences_are_skipped_in_both_vr_encodings(syntax: str, undefined_lengths: bool) -> None:
    data = _crafted(syntax, undefined_lengths=undefined_lengths)
    if undefined_lengths:
        assert b"\xfe\xff\xdd\xe0" in data  # sequence delimitation items were written
    result = scan_header(data)
    assert result is not None
    assert result == _pydicom_attributes(data)
    assert (result.patient_id, result.body_part, result.slice_thickness) == ("PAT-1", "HIP", "1.25")
    assert result.image_type == ("ORIGINAL", "PRIMARY", "AXIAL")
    assert result.transfer_syntax_uid == syntax


def test_utf8_text_is_decoded_as_pydicom_does() -> None:
    data = _crafted(ExplicitVRLittleEndian, undefined_lengths=False, patient_id="Müller-Ødegård-ß",
                    charset="ISO_IR 192")
    result = scan_header(data)
    assert result is not None
    assert result.patient_id == "Müller-Ødegård-ß"
    assert result == _pydicom_attributes(data)


def test_elements_out_of_order_are_left_to_pydicom() -> None:
    data = bytearray(_crafted(ExplicitVRLittleEndian, undefined_lengths=False))
    at = data.index(b"\x08\x00\x60\x00CS")  # Modality (0008,0060): give it a tag below StudyDate (0008,0020)
    data[at:at + 4] = b"\x08\x00\x10\x00"
    assert scan_header(bytes(data)) is None


def test_damaged_bytes_are_declined_or_read_exactly_as_pydicom_reads_them(phantom_slice: bytes) -> None:
    """Seeded byte flips in the header, and truncations: the scanner never raises, never reads a header that
    pydicom cannot read, and what it reads equals what pydicom reads."""
    rng = random.Random(20261201)
    header_end = phantom_slice.index(b"\xe0\x7f\x10\x00")
    read = 0
    for trial in range(3000):
        data = bytearray(phantom_slice[:header_end + 64])
        if trial % 3 == 0:
            data = data[:rng.randrange(0, len(data))]
        else:
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(132, header_end)] = rng.randrange(256)
        result = scan_header(bytes(data))
        if result is not None:
            read += 1
            assert result == _pydicom_attributes(bytes(data)), f"trial {trial}"
    assert read > 300  # flips inside values keep the structure: those are read, not declined


def test_a_truncated_header_is_declined(phantom_slice: bytes) -> None:
    """Cut inside an element's value or header: the scanner never reads past the end, it leaves the file to
    pydicom (whose verdict the SCP reports)."""
    header_end = phantom_slice.index(b"\xe0\x7f\x10\x00")
    declined = 0
    for cut in range(200, header_end, 7):
        truncated = phantom_slice[:cut]
        result = scan_header(truncated)
        if result is None:
            declined += 1
        else:  # a cut exactly between two elements reads as a shorter header, as pydicom reads it
            assert result == _pydicom_attributes(truncated)
    assert declined > len(range(200, header_end, 7)) // 2


def test_the_phantom_slice_is_read_by_the_scanner(phantom_slice: bytes) -> None:
    result = scan_header(phantom_slice)
    assert result is not None
    assert result == _pydicom_attributes(phantom_slice)
    assert result.modality == "CT"
    assert result.study_instance_uid
    assert result.series_instance_uid


def ps10_bytes(ds: Dataset, declared_syntax: str, *, body_implicit: bool, deflate: bool = False) -> bytes:
    """A PS3.10 file whose File Meta names `declared_syntax` and whose data set is encoded in Implicit or Explicit VR
    Little Endian as told (raw-deflated with `deflate`) - which need not agree."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    meta.TransferSyntaxUID = declared_syntax
    head = DicomBytesIO()
    head.write(b"\0" * 128 + b"DICM")
    pydicom.filewriter.write_file_meta_info(head, meta, enforce_standard=True)
    body = DicomBytesIO()
    body.is_implicit_VR, body.is_little_endian = body_implicit, True
    pydicom.filewriter.write_dataset(body, ds)
    data = body.getvalue()
    if deflate:
        packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        data = packer.compress(data) + packer.flush()
    return head.getvalue() + data


@pytest.mark.parametrize(("declared", "body_implicit", "deflate", "mismatch"), [
    (ExplicitVRLittleEndian, True, False, "Implicit"),
    (ImplicitVRLittleEndian, False, False, "Explicit"),
    (JPEGBaseline8Bit, True, False, "Implicit"),
    (DeflatedExplicitVRLittleEndian, True, True, "Implicit"),
    (ExplicitVRLittleEndian, False, False, None),
    (ImplicitVRLittleEndian, True, False, None),
    (DeflatedExplicitVRLittleEndian, False, True, None),
], ids=["implicit-as-explicit", "explicit-as-implicit", "implicit-as-jpeg", "implicit-as-deflated", "explicit",
        "implicit", "deflated"])
def test_a_data_set_in_the_other_vr_encoding_than_its_transfer_syntax_is_named(
        declared: str, body_implicit: bool, deflate: bool, mismatch: str | None) -> None:
    """pydicom reads such a data set with a warning only; `read_header_attributes` raises (PS3.5 10.1)."""
    ds = dcmread(io.BytesIO(_crafted(ExplicitVRLittleEndian, undefined_lengths=False)))
    del ds.file_meta
    data = ps10_bytes(ds, declared, body_implicit=body_implicit, deflate=deflate)
    if mismatch is None:
        check_vr_encoding(data)
        assert read_header_attributes(data).patient_id == "PAT-1"
        return
    with pytest.raises(TransferSyntaxMismatchError, match=f"encoded in {mismatch} VR, but its transfer syntax "
                                                          f"{declared} "):
        read_header_attributes(data)


def test_pydicoms_jpeg_file_with_an_implicit_vr_data_set_is_named() -> None:
    """pydicom's test file SC_rgb_jpeg.dcm says JPEG Baseline (Explicit VR) and is Implicit VR: the one file of
    the corpus that `check_vr_encoding` refuses."""
    with pytest.raises(TransferSyntaxMismatchError, match="encoded in Implicit VR"):
        check_vr_encoding((PYDICOM_DATA / "test_files" / "SC_rgb_jpeg.dcm").read_bytes())
