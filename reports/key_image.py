"""The key image: the overlay picture (axial slices at the landmarks with the masks, and the results table) as a
DICOM object for viewers that show neither SEG nor SR.

* ``secondary_capture`` (default): Secondary Capture Image Storage, RGB 8 bit (PS3.3 A.8.1 SC Image IOD), written
  with highdicom; SC Equipment Conversion Type SYN (synthetic image, C.8.6.1), the shown source slices in the
  Source Image Sequence (C.7.6.1, Type 3).
* ``pdf``: Encapsulated PDF Storage (PS3.3 A.45.1), the same picture as a one-page PDF (Pillow's PDF writer),
  every source instance in the Source Instance Sequence (C.24.2, Type 1C: the document is derived from them).

The picture shows no patient name or identifier (`sarcoscreen.reports.overlay`), so Burned In Annotation is
``NO``. With ``burn_in_patient_name`` the source's PatientName is drawn above the picture and Burned In
Annotation is ``YES`` (C.7.6.1.1.7 / C.24.2: identifying text in the pixels must be declared).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import highdicom as hd
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

from sarcoscreen.reports.output_attributes import highdicom_arguments, software_versions
from sarcoscreen.reports.output_dates import OutputDateTime, output_datetime, stamp
from sarcoscreen.reports.source_attributes import TYPE2_COPIED, SourceInstances

__all__ = ["ENCAPSULATED_PDF_STORAGE", "KeyImageKind", "KeyImageOptions", "build_key_image", "build_pdf",
           "build_secondary_capture", "patient_orientation"]

ENCAPSULATED_PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"
_TITLE = "sarcoscreen muscle screening results"


class KeyImageKind(StrEnum):
    SECONDARY_CAPTURE = "secondary_capture"
    PDF = "pdf"
    NONE = "none"


@dataclass(frozen=True)
class KeyImageOptions:
    kind: KeyImageKind = KeyImageKind.SECONDARY_CAPTURE
    burn_in_patient_name: bool = False
    series_number: int = 903
    instance_number: int = 1
    manufacturer: str = "sarcoscreen"
    model_name: str = "sarcoscreen"
    software_version: str = ""


def _with_patient_name(picture: Image.Image, source: SourceInstances) -> Image.Image:
    name = str(source.first.get("PatientName", "") or "").replace("^", " ").strip() or "(no name)"
    band = 24
    canvas = Image.new("RGB", (picture.width, picture.height + band), (0, 0, 0))
    canvas.paste(picture, (0, band))
    ImageDraw.Draw(canvas).text((6, 4), f"Patient: {name}", fill=(255, 255, 255), font=ImageFont.load_default(14))
    return canvas


def patient_orientation(row_direction: Sequence[float], column_direction: Sequence[float]) -> tuple[str, str]:
    """Patient Orientation (0020,0020) of the axial panels: the dominant patient axis of the row and column
    directions (C.7.6.1.1.1), as the panels keep the source's in-plane orientation."""
    letters = (("R", "L"), ("A", "P"), ("F", "H"))

    def letter(direction: Sequence[float]) -> str:
        axis = int(np.argmax(np.abs(direction)))
        return letters[axis][int(direction[axis] > 0)]

    return letter(row_direction), letter(column_direction)


def _referenced(ds: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    return item


def build_secondary_capture(picture: Image.Image, source: SourceInstances, shown: Sequence[Dataset], *,
                            series_instance_uid: str, sop_instance_uid: str, orientation: tuple[str, str],
                            options: KeyImageOptions, created: OutputDateTime | None = None) -> hd.sc.SCImage:
    """Secondary Capture of `picture` in the source's study; `shown` are the source instances in the picture.
    `created`: every date and time written (by default the source's, `output_datetime`)."""
    when = created or output_datetime(source.datasets)
    if options.burn_in_patient_name:
        picture = _with_patient_name(picture, source)
    pixels = np.asarray(picture.convert("RGB"), dtype=np.uint8)
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source.first,
        pixel_array=pixels,
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        patient_orientation=orientation,
        series_instance_uid=series_instance_uid,
        sop_instance_uid=sop_instance_uid,
        series_description=_TITLE,
        **highdicom_arguments(options, when),
    )
    stamp(sc, when)
    sc.DateOfSecondaryCapture, sc.TimeOfSecondaryCapture = when.date, when.time
    sc.ConversionType = "SYN"
    # The picture shows both sides: Image Laterality B (C.7.6.1.1.5), which also satisfies the condition of
    # the General Series Laterality (Type 2C, C.7.3.1: needed only without Image Laterality).
    sc.ImageLaterality = "B"
    sc.BurnedInAnnotation = "YES" if options.burn_in_patient_name else "NO"
    sc.DerivationDescription = "axial slices of the source CT with the muscle masks and the results table"
    sc.SourceImageSequence = [_referenced(ds) for ds in shown]
    return sc


def _pdf_bytes(picture: Image.Image, when: OutputDateTime) -> bytes:
    """The picture as a one-page PDF whose creation and modification dates are `when` (Pillow would write the
    clock's), as a PDF date without a time zone (ISO 32000-1 7.9.4: its relation to UT unknown, as the source's
    DICOM time has none)."""
    buffer = io.BytesIO()
    moment = when.moment
    pdf_date = f"D:{when.date}{moment.hour:02d}{moment.minute:02d}{moment.second:02d}".encode("ascii")
    picture.convert("RGB").save(buffer, format="PDF", resolution=96.0, title=_TITLE, author="sarcoscreen",
                                creationDate=pdf_date, modDate=pdf_date)
    return buffer.getvalue()


def build_pdf(picture: Image.Image, source: SourceInstances, *, series_instance_uid: str, sop_instance_uid: str,
              options: KeyImageOptions, created: OutputDateTime | None = None) -> Dataset:
    """Encapsulated PDF of `picture` in the source's study (PS3.3 A.45.1). `created`: every date and time written
    (by default the source's, `output_datetime`)."""
    when = created or output_datetime(source.datasets)
    if options.burn_in_patient_name:
        picture = _with_patient_name(picture, source)
    first = source.first
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ENCAPSULATED_PDF_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    if "SpecificCharacterSet" in first:
        ds.SpecificCharacterSet = first.SpecificCharacterSet
    # SOP Common
    ds.SOPClassUID, ds.SOPInstanceUID = ENCAPSULATED_PDF_STORAGE, sop_instance_uid
    ds.InstanceCreationDate, ds.InstanceCreationTime = when.date, when.time
    # Patient and General Study (copied; Type 2 present, empty when the source lacks them)
    for keyword in TYPE2_COPIED:
        setattr(ds, keyword, first.get(keyword))
    ds.StudyInstanceUID = first.StudyInstanceUID
    # Encapsulated Document Series
    ds.Modality = "DOC"
    ds.SeriesInstanceUID, ds.SeriesNumber = series_instance_uid, options.series_number
    ds.SeriesDescription = _TITLE
    ds.SeriesDate, ds.SeriesTime = when.date, when.time
    # General Equipment, SC Equipment
    ds.Manufacturer = options.manufacturer
    ds.ManufacturerModelName = options.model_name
    ds.SoftwareVersions = software_versions(options)
    ds.ConversionType = "SYN"
    # Encapsulated Document
    ds.InstanceNumber = options.instance_number
    ds.ContentDate, ds.ContentTime = when.date, when.time
    ds.AcquisitionDateTime = None
    ds.BurnedInAnnotation = "YES" if options.burn_in_patient_name else "NO"
    ds.SourceInstanceSequence = [_referenced(d) for d in source.datasets]
    ds.DocumentTitle = _TITLE
    ds.ConceptNameCodeSequence = []
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    document = _pdf_bytes(picture, when)
    ds.EncapsulatedDocumentLength = len(document)  # before the padding
    ds.EncapsulatedDocument = document + b"\x00" * (len(document) % 2)  # OB: even length (PS3.5 7.1.1)
    return ds


def build_key_image(picture: Image.Image, source: SourceInstances, shown: Sequence[Dataset], *,
                    series_instance_uid: str, sop_instance_uid: str, orientation: tuple[str, str],
                    options: KeyImageOptions, created: OutputDateTime | None = None) -> Dataset | None:
    """The key image of the configured kind, or ``None`` for ``none``."""
    if options.kind is KeyImageKind.NONE:
        return None
    if options.kind is KeyImageKind.PDF:
        return build_pdf(picture, source, series_instance_uid=series_instance_uid,
                         sop_instance_uid=sop_instance_uid, options=options, created=created)
    return build_secondary_capture(picture, source, shown, series_instance_uid=series_instance_uid,
                                   sop_instance_uid=sop_instance_uid, orientation=orientation, options=options,
                                   created=created)
