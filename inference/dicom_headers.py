"""Headers of CT instances, read without their pixel data, as small records for selecting, validating and sorting.

A single-frame CT image (CT Image Storage) gives one `FrameHeader`; an Enhanced CT or Legacy Converted Enhanced
CT instance gives one per frame, its geometry and rescale taken from the Per-Frame Functional Groups Sequence with
the Shared Functional Groups Sequence as fallback (PS3.3 C.7.6.16 Multi-frame Functional Groups):

* Plane Position (Patient) C.7.6.16.2.3 -> ``ImagePositionPatient``
* Plane Orientation (Patient) C.7.6.16.2.4 -> ``ImageOrientationPatient``
* Pixel Measures C.7.6.16.2.1 -> ``PixelSpacing``, ``SliceThickness``
* Pixel Value Transformation C.7.6.16.2.9 -> ``RescaleSlope``, ``RescaleIntercept``
* CT Image Frame Type C.8.15.3.1 -> ``FrameType`` (a frame can be a LOCALIZER)
* CT Reconstruction C.8.15.3.6, or Unassigned Shared Converted Attributes C.7.6.16.2.25 of a legacy-converted
  instance -> ``ConvolutionKernel``

The datasets are dropped after reading: a 1000-file series keeps only these records (a few hundred bytes each).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_partial
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from sarcoscreen.inference.volume import SeriesInfo

__all__ = [
    "DICOMDIR_SOP_CLASS",
    "FrameHeader",
    "InstanceHeader",
    "NotDicomError",
    "TruncatedDicomError",
    "read_header",
    "stored_value",
    "transfer_syntax_name",
]

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage
_UNDEFINED_LENGTH = 0xFFFFFFFF
_PIXEL_TAGS = {0x7FE00008: "FloatPixelData", 0x7FE00009: "DoubleFloatPixelData", 0x7FE00010: "PixelData"}


class NotDicomError(Exception):
    """The file is not a DICOM file (no DICM prefix and not a plausible raw data set)."""


class TruncatedDicomError(Exception):
    """A DICOM file that ends early: pydicom reads what is there without complaint, so the loader checks."""


@dataclass(frozen=True)
class InstanceHeader:
    """What the loader needs of one file: identity, pixel encoding and the series facts (no PHI)."""

    path: Path
    sop_instance_uid: str
    sop_class_uid: str
    series_instance_uid: str
    modality: str
    transfer_syntax_uid: str
    has_file_meta: bool
    pixel_keyword: str | None
    """``"PixelData"`` (or a float pixel data keyword) when the file holds pixel data, else ``None``."""
    pixel_length: int | None
    """Bytes of native pixel data (the element's value length); ``None`` when absent or encapsulated (undefined
    length, PS3.5 A.4)."""
    photometric_interpretation: str
    samples_per_pixel: int
    rows: int | None
    columns: int | None
    bits_allocated: int | None
    bits_stored: int | None
    pixel_representation: int
    padding: tuple[int, int] | None
    """Inclusive range of padding in stored-value space (PS3.3 C.7.5.1.1.2), or ``None``."""
    has_modality_lut_sequence: bool
    number_of_frames: int
    info: SeriesInfo


@dataclass(frozen=True)
class FrameHeader:
    """One frame (a slice) of an instance: where it lies and how its stored values become HU."""

    instance: InstanceHeader
    index: int
    """0-based index of the frame in the pixel data (0 for a single-frame image)."""
    frame_number: int | None
    """1-based frame number of a multi-frame instance; ``None`` for a single-frame image."""
    image_type: tuple[str, ...]
    position: tuple[float, float, float] | None
    orientation: tuple[float, float, float, float, float, float] | None
    pixel_spacing: tuple[float, float] | None
    slope: float | None
    intercept: float | None
    slice_thickness: float | None
    missing: tuple[str, ...]
    """Keywords of required geometry/rescale attributes that are absent or malformed in this frame."""
    malformed: tuple[str, ...] = ()
    """Keywords of optional attributes present with a value that is not a number (SliceThickness)."""


def stored_value(value: int, bits_stored: int, signed: bool) -> int:
    """`value` as pydicom presents a stored pixel: the low `bits_stored` bits, sign-extended when `signed`.

    PixelPaddingValue is written in stored-value space, sometimes as the unsigned bit pattern of a negative value
    (``US 63536`` for -2000); masking and sign extension give the value the decoded pixel array holds.
    """
    v = int(value) & ((1 << bits_stored) - 1)
    if signed and v >= 1 << (bits_stored - 1):
        v -= 1 << bits_stored
    return v


def read_header(path: Path) -> tuple[InstanceHeader, list[FrameHeader]] | None:
    """The header records of the file at `path`; ``None`` for a DICOMDIR.

    Raises `NotDicomError` for a file that is not DICOM; any other exception means a DICOM file that could not be
    parsed (truncated, corrupt).
    """
    found: list[tuple[str, int, int]] = []  # (keyword, value length, file position of the value)

    with path.open("rb") as fp:

        def at_pixels(tag: BaseTag, vr: str | None, length: int) -> bool:
            if tag in _PIXEL_TAGS:
                found.append((_PIXEL_TAGS[tag], length, fp.tell()))
                return True
            return False

        try:
            ds = read_partial(fp, stop_when=at_pixels)
        except InvalidDicomError:
            ds = _read_raw_dataset(fp, path, at_pixels)
        size = os.fstat(fp.fileno()).st_size
    meta = getattr(ds, "file_meta", None) or Dataset()
    if str(meta.get("MediaStorageSOPClassUID", "")) == DICOMDIR_SOP_CLASS or "DirectoryRecordSequence" in ds:
        return None
    if not found:  # before any attribute is accessed: access converts the raw elements
        _check_last_element(ds)
    instance = _instance(ds, meta, path, found[0] if found else None)
    _check_complete(instance, found[0] if found else None, size)
    return instance, _frames(ds, instance)


def _check_last_element(ds: Dataset) -> None:
    """Raise `TruncatedDicomError` when the last element read is shorter than its stated length (PS3.5 7.1)."""
    tags = sorted(ds.keys())
    if tags:
        last = ds.get_item(tags[-1])
        if (isinstance(last, RawDataElement) and isinstance(last.value, bytes)
                and last.length != _UNDEFINED_LENGTH and len(last.value) < last.length):
            raise TruncatedDicomError(f"element {BaseTag(tags[-1])} ends early")


def _check_complete(instance: InstanceHeader, pixels: tuple[str, int, int] | None, size: int) -> None:
    """Raise `TruncatedDicomError` when native pixel data is longer than the rest of the file, or when a file
    has neither pixel data nor SeriesInstanceUID (Type 1 in every IOD: it ended inside its header)."""
    if pixels is not None:
        _, length, position = pixels
        deflated = instance.transfer_syntax_uid == DeflatedExplicitVRLittleEndian
        if length != _UNDEFINED_LENGTH and not deflated and position + length > size:
            raise TruncatedDicomError(f"pixel data ends after {size - position} of {length} bytes")
    elif not instance.series_instance_uid:
        raise TruncatedDicomError("no SeriesInstanceUID and no pixel data")


def _read_raw_dataset(fp: Any, path: Path, stop_when: Any) -> Dataset:
    """A data set without preamble and file meta (not PS3.10 conformant; some old exports do it). It must start
    with a group 0x0008 element (little endian), so that text, images or archives are not parsed by force."""
    fp.seek(0)
    if fp.read(2) != b"\x08\x00":
        raise NotDicomError(f"{path.name}: not DICOM")
    fp.seek(0)
    try:
        ds = read_partial(fp, stop_when=stop_when, force=True)
        plausible = "SOPClassUID" in ds or ("Modality" in ds and "Rows" in ds)
    except Exception as exc:
        raise NotDicomError(f"{path.name}: not DICOM") from exc
    if not plausible:
        raise NotDicomError(f"{path.name}: not DICOM")
    return ds


def _transfer_syntax(ds: Dataset, meta: Dataset) -> tuple[str, bool]:
    tsyntax = str(meta.get("TransferSyntaxUID", "") or "")
    if tsyntax:
        return tsyntax, True
    implicit, little = ds.original_encoding
    if implicit:
        return ImplicitVRLittleEndian, False
    return (ExplicitVRLittleEndian if little else ExplicitVRBigEndian), False


def _instance(ds: Dataset, meta: Dataset, path: Path, pixels: tuple[str, int, int] | None) -> InstanceHeader:
    tsyntax, has_meta = _transfer_syntax(ds, meta)
    bits_stored = _int(ds, "BitsStored")
    signed = _int(ds, "PixelRepresentation") == 1
    padding = None
    if bits_stored and _number(ds.get("PixelPaddingValue")) is not None:
        low = stored_value(int(ds.PixelPaddingValue), bits_stored, signed)
        limit = _number(ds.get("PixelPaddingRangeLimit"))
        high = low if limit is None else stored_value(int(limit), bits_stored, signed)
        padding = (min(low, high), max(low, high))
    return InstanceHeader(
        path=path,
        sop_instance_uid=_text(ds, "SOPInstanceUID") or str(meta.get("MediaStorageSOPInstanceUID", "") or ""),
        sop_class_uid=_text(ds, "SOPClassUID") or str(meta.get("MediaStorageSOPClassUID", "") or ""),
        series_instance_uid=_text(ds, "SeriesInstanceUID") or "",
        modality=(_text(ds, "Modality") or "").upper(),
        transfer_syntax_uid=tsyntax,
        has_file_meta=has_meta,
        pixel_keyword=pixels[0] if pixels else None,
        pixel_length=pixels[1] if pixels and pixels[1] != _UNDEFINED_LENGTH else None,
        photometric_interpretation=(_text(ds, "PhotometricInterpretation") or "").upper(),
        samples_per_pixel=_int(ds, "SamplesPerPixel") or 1,
        rows=_int(ds, "Rows"),
        columns=_int(ds, "Columns"),
        bits_allocated=_int(ds, "BitsAllocated"),
        bits_stored=bits_stored,
        pixel_representation=1 if signed else 0,
        padding=padding,
        has_modality_lut_sequence="ModalityLUTSequence" in ds,
        number_of_frames=_int(ds, "NumberOfFrames") or 1,
        info=_series_info(ds),
    )


def _frames(ds: Dataset, instance: InstanceHeader) -> list[FrameHeader]:
    image_type = _strings(ds.get("ImageType"))
    if "PerFrameFunctionalGroupsSequence" not in ds and "SharedFunctionalGroupsSequence" not in ds:
        return [_frame(instance, 0, None, image_type, ds, ds, ds, ds, ds.get("SliceThickness"))]
    per_frame = list(ds.get("PerFrameFunctionalGroupsSequence") or [])
    shared_items = ds.get("SharedFunctionalGroupsSequence") or []
    shared = shared_items[0] if len(shared_items) else None
    frames = []
    for index in range(instance.number_of_frames):
        groups = (per_frame[index] if index < len(per_frame) else None, shared)
        frame_type = _item(groups, "CTImageFrameTypeSequence")
        measures = _item(groups, "PixelMeasuresSequence")
        frames.append(_frame(
            instance, index, index + 1,
            _strings(frame_type.get("FrameType")) if frame_type is not None else image_type,
            _item(groups, "PlanePositionSequence"), _item(groups, "PlaneOrientationSequence"), measures,
            _item(groups, "PixelValueTransformationSequence"),
            measures.get("SliceThickness") if measures is not None else None,
        ))
    return frames


def _frame(
    instance: InstanceHeader, index: int, frame_number: int | None, image_type: tuple[str, ...],
    position_item: Dataset | None, orientation_item: Dataset | None, measures_item: Dataset | None,
    rescale_item: Dataset | None, thickness: Any,
) -> FrameHeader:
    missing: list[str] = []

    def floats(item: Dataset | None, keyword: str, count: int) -> tuple[float, ...] | None:
        values = _floats(item.get(keyword) if item is not None else None, count)
        if values is None:
            missing.append(keyword)
        return values

    position = floats(position_item, "ImagePositionPatient", 3)
    orientation = floats(orientation_item, "ImageOrientationPatient", 6)
    spacing = floats(measures_item, "PixelSpacing", 2)
    slope = floats(rescale_item, "RescaleSlope", 1)
    intercept = floats(rescale_item, "RescaleIntercept", 1)
    slice_thickness = _number(thickness)
    malformed = ("SliceThickness",) if slice_thickness is None and _text_of(thickness) else ()
    return FrameHeader(
        instance=instance, index=index, frame_number=frame_number, image_type=image_type,
        position=position,  # type: ignore[arg-type]
        orientation=orientation,  # type: ignore[arg-type]
        pixel_spacing=spacing,  # type: ignore[arg-type]
        slope=slope[0] if slope else None, intercept=intercept[0] if intercept else None,
        slice_thickness=slice_thickness, missing=tuple(missing), malformed=malformed,
    )


def _item(groups: Iterable[Dataset | None], keyword: str) -> Dataset | None:
    """The first item of functional group `keyword`: per-frame first, then shared (PS3.3 C.7.6.16)."""
    for group in groups:
        if group is not None and keyword in group:
            items = group[keyword].value
            if items:
                return items[0]
    return None


def _series_info(ds: Dataset) -> SeriesInfo:
    shared_items = ds.get("SharedFunctionalGroupsSequence") or []
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    groups = [shared_items[0] if len(shared_items) else None, per_frame[0] if len(per_frame) else None]
    thickness = _number(ds.get("SliceThickness"))
    measures = _item(groups, "PixelMeasuresSequence")
    if thickness is None and measures is not None:
        thickness = _number(measures.get("SliceThickness"))
    kernel = _text(ds, "ConvolutionKernel")
    for keyword in ("CTReconstructionSequence", "UnassignedSharedConvertedAttributesSequence"):
        item = _item(groups, keyword)
        if kernel is None and item is not None:
            kernel = _text(item, "ConvolutionKernel")
    contrast = _text(ds, "ContrastBolusAgent")
    agents = ds.get("ContrastBolusAgentSequence") or []
    if contrast is None and len(agents):
        contrast = _text(agents[0], "CodeMeaning")
    sex = (_text(ds, "PatientSex") or "").upper()
    return SeriesInfo(
        study_instance_uid=_text(ds, "StudyInstanceUID") or "",
        series_instance_uid=_text(ds, "SeriesInstanceUID") or "",
        frame_of_reference_uid=_text(ds, "FrameOfReferenceUID") or "",
        modality=(_text(ds, "Modality") or "").upper(),
        patient_sex=sex if sex in {"F", "M", "O"} else None,
        patient_size_m=_number(ds.get("PatientSize")),
        patient_age=_text(ds, "PatientAge"),
        body_part_examined=_text(ds, "BodyPartExamined"),
        study_description=_text(ds, "StudyDescription"),
        series_description=_text(ds, "SeriesDescription"),
        manufacturer=_text(ds, "Manufacturer"),
        slice_thickness_mm=thickness,
        contrast_agent=contrast,
        convolution_kernel=kernel,
    )


def _text(ds: Dataset, keyword: str) -> str | None:
    """The value of `keyword` as text (multiple values joined with a backslash), or ``None`` when absent/empty."""
    value = ds.get(keyword)
    if value is None:
        return None
    text = "\\".join(str(v) for v in value) if isinstance(value, MultiValue | list) else str(value)
    text = text.strip()
    return text or None


def _text_of(value: Any) -> str:
    """`value` (a data element's value) as stripped text; empty for ``None``."""
    if value is None:
        return ""
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(str(v) for v in value).strip()
    return str(value).strip()


def _strings(value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, MultiValue | list | tuple):
        return tuple(str(v).strip().upper() for v in value)
    return tuple(part.strip().upper() for part in str(value).split("\\"))


def _int(ds: Dataset, keyword: str) -> int | None:
    value = _number(ds.get(keyword))
    return None if value is None else int(value)


def _number(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, MultiValue | list | tuple):
        if len(value) == 0:
            return None
        value = value[0]
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _floats(value: Any, count: int) -> tuple[float, ...] | None:
    """Exactly `count` finite numbers, or ``None`` (absent, empty or malformed)."""
    if value is None or value == "":
        return None
    values = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    if len(values) != count:
        return None
    try:
        numbers = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        return None
    return numbers if all(math.isfinite(n) for n in numbers) else None


def transfer_syntax_name(uid: str) -> str:
    """``"JPEG 2000 Image Compression (Lossless Only) (1.2.840.10008.1.2.4.90)"``; the UID alone if unknown."""
    name = UID(uid).name
    return f"{name} ({uid})" if name and name != uid else uid
