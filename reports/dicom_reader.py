"""Read a DICOM-SEG and a TID 1500 Measurement Report SR - ours and other tools' (dcmqi, highdicom, 3D Slicer) -
into plain dataclasses.

The reader walks the data sets with pydicom and asks only for what PS3.3 and PS3.16 require, so it reads objects
it did not write: the SEG's Segment Sequence (C.8.20.2), Referenced Series Sequence and per-frame functional
groups; the SR's TID 1500 tree - Imaging Measurements (126010, DCM) with its Measurement Groups (125007, DCM;
TID 1501 / 1410 / 1411), and the Qualitative Evaluations container (C0034375, UMLS). Concepts are matched by code
value; the legacy SNOMED-RT (SRT) codes that older writers such as dcmqi use are accepted for the few concepts
the reader compares (Finding Site, Laterality, Measurement Method, Volume, Mean, Minimum, Standard Deviation).

A measurement's value is the Floating Point Value (0040,A161) when present (exact), else the Numeric Value
(0040,A30A, decimal string).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydicom import Dataset, dcmread

__all__ = [
    "CodedValue",
    "MeasurementGroupInfo",
    "NumMeasurement",
    "SegInfo",
    "SegmentInfo",
    "SrInfo",
    "read_seg",
    "read_sr",
]

# Legacy SNOMED-RT (SRT) codes of the concepts the reader compares, mapped to their SNOMED CT codes (PS3.16
# Annex O lists the SRT-to-SCT transition).
_EQUIVALENT = {
    "G-C0E3": "363698007",  # Finding Site
    "G-C171": "272741003",  # Laterality
    "G-C036": "370129005",  # Measurement Method
    "G-D705": "118565006",  # Volume
    "R-00317": "373098007",  # Mean
    "R-404FB": "255605001",  # Minimum
    "R-10047": "386136009",  # Standard Deviation
}
_IMAGING_MEASUREMENTS = "126010"
_MEASUREMENT_GROUP = "125007"
_QUALITATIVE_EVALUATIONS = "C0034375"
_TRACKING_ID, _TRACKING_UID = "112039", "112040"
_FINDING, _FINDING_CATEGORY, _FINDING_SITE, _LATERALITY = "121071", "276214006", "363698007", "272741003"
_ALGORITHM_NAME, _ALGORITHM_VERSION = "111001", "111003"
_REFERENCED_SEGMENT = {"121191", "121214"}
_SOURCE_SERIES = "121232"
_DERIVATION, _METHOD = "121401", "370129005"


@dataclass(frozen=True)
class CodedValue:
    value: str
    scheme: str
    meaning: str

    @classmethod
    def of(cls, item: Dataset) -> CodedValue:
        value = item.get("CodeValue") or item.get("LongCodeValue") or item.get("URNCodeValue") or ""
        return cls(str(value), str(item.get("CodingSchemeDesignator", "")), str(item.get("CodeMeaning", "")))

    @property
    def key(self) -> str:
        """The code value, with the legacy SRT codes the reader knows mapped to their SNOMED CT equivalents."""
        return _EQUIVALENT.get(self.value, self.value)


def _first_code(ds: Dataset, keyword: str) -> CodedValue | None:
    sequence = ds.get(keyword)
    return CodedValue.of(sequence[0]) if sequence else None


# --- SEG -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentInfo:
    number: int
    label: str
    category: CodedValue | None
    property_type: CodedValue | None
    property_modifiers: tuple[CodedValue, ...]
    algorithm_type: str
    algorithm_name: str | None
    algorithm_version: str | None
    cielab: tuple[int, int, int] | None
    tracking_id: str | None
    tracking_uid: str | None


@dataclass(frozen=True)
class SegInfo:
    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    frame_of_reference_uid: str
    transfer_syntax_uid: str
    segmentation_type: str
    number_of_frames: int
    rows: int
    columns: int
    segments: tuple[SegmentInfo, ...]
    referenced_series_uid: str | None
    referenced_instance_uids: tuple[str, ...]
    frames_per_segment: dict[int, int]
    """Segment number -> number of frames (BINARY/FRACTIONAL; empty for LABELMAP, whose frames hold all)."""

    def segment(self, number: int) -> SegmentInfo:
        return next(s for s in self.segments if s.number == number)


def _segment(item: Dataset) -> SegmentInfo:
    property_type = item.get("SegmentedPropertyTypeCodeSequence")
    modifiers: tuple[CodedValue, ...] = ()
    if property_type and "SegmentedPropertyTypeModifierCodeSequence" in property_type[0]:
        modifiers = tuple(CodedValue.of(m) for m in property_type[0].SegmentedPropertyTypeModifierCodeSequence)
    algorithm = item.get("SegmentationAlgorithmIdentificationSequence")
    lab = item.get("RecommendedDisplayCIELabValue")
    return SegmentInfo(
        number=int(item.SegmentNumber),
        label=str(item.get("SegmentLabel", "")),
        category=_first_code(item, "SegmentedPropertyCategoryCodeSequence"),
        property_type=CodedValue.of(property_type[0]) if property_type else None,
        property_modifiers=modifiers,
        algorithm_type=str(item.get("SegmentAlgorithmType", "")),
        algorithm_name=str(algorithm[0].AlgorithmName) if algorithm else (
            str(item.SegmentAlgorithmName) if item.get("SegmentAlgorithmName") else None),
        algorithm_version=str(algorithm[0].AlgorithmVersion) if algorithm else None,
        cielab=tuple(int(v) for v in lab) if lab else None,  # type: ignore[arg-type]
        tracking_id=str(item.TrackingID) if item.get("TrackingID") else None,
        tracking_uid=str(item.TrackingUID) if item.get("TrackingUID") else None,
    )


def read_seg(path: Path | str) -> SegInfo:
    """The header facts and segments of a Segmentation instance (no pixel data is decoded)."""
    ds = dcmread(path, stop_before_pixels=True)
    series = ds.get("ReferencedSeriesSequence")
    referenced = tuple(str(i.ReferencedSOPInstanceUID) for s in (series or [])
                       for i in s.get("ReferencedInstanceSequence", []))
    frames: dict[int, int] = {}
    shared = ds.get("SharedFunctionalGroupsSequence")
    shared_identification = shared[0].get("SegmentIdentificationSequence") if shared else None
    for frame in ds.get("PerFrameFunctionalGroupsSequence", []):
        identification = frame.get("SegmentIdentificationSequence") or shared_identification
        if identification:
            number = int(identification[0].ReferencedSegmentNumber)
            frames[number] = frames.get(number, 0) + 1
    return SegInfo(
        sop_class_uid=str(ds.SOPClassUID), sop_instance_uid=str(ds.SOPInstanceUID),
        series_instance_uid=str(ds.SeriesInstanceUID), study_instance_uid=str(ds.StudyInstanceUID),
        frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "")),
        transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID),
        segmentation_type=str(ds.SegmentationType), number_of_frames=int(ds.get("NumberOfFrames", 1)),
        rows=int(ds.Rows), columns=int(ds.Columns),
        segments=tuple(_segment(item) for item in ds.SegmentSequence),
        referenced_series_uid=str(series[0].SeriesInstanceUID) if series else None,
        referenced_instance_uids=referenced, frames_per_segment=frames,
    )


# --- SR --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NumMeasurement:
    name: CodedValue
    value: float | None
    unit: CodedValue | None
    derivation: CodedValue | None = None
    method: CodedValue | None = None


@dataclass(frozen=True)
class MeasurementGroupInfo:
    template_id: str | None
    tracking_identifier: str | None
    tracking_uid: str | None
    finding: CodedValue | None
    finding_category: CodedValue | None
    finding_sites: tuple[tuple[CodedValue, CodedValue | None], ...]
    """(site, laterality or None)."""
    referenced_segment: tuple[str, int] | None
    """(SEG SOP Instance UID, segment number)."""
    source_series_uid: str | None
    algorithm_name: str | None
    algorithm_version: str | None
    measurements: tuple[NumMeasurement, ...]
    evaluations: tuple[tuple[CodedValue, CodedValue], ...]
    texts: tuple[tuple[CodedValue, str], ...]

    def measurement(self, code_value: str, derivation: str | None = None) -> NumMeasurement | None:
        """The first measurement named `code_value` (with derivation `derivation` when given)."""
        for m in self.measurements:
            if m.name.key == code_value and (derivation is None or (m.derivation and m.derivation.key == derivation)):
                return m
        return None

    def evaluation(self, code_value: str) -> CodedValue | None:
        return next((v for n, v in self.evaluations if n.key == code_value), None)

    def text(self, code_value: str) -> str | None:
        return next((v for n, v in self.texts if n.key == code_value), None)


@dataclass(frozen=True)
class SrInfo:
    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    title: CodedValue | None
    template_id: str | None
    completion_flag: str
    verification_flag: str
    procedures_reported: tuple[CodedValue, ...]
    observer_type: CodedValue | None
    groups: tuple[MeasurementGroupInfo, ...]
    qualitative_evaluations: tuple[tuple[CodedValue, CodedValue | str], ...]
    coding_schemes: tuple[str, ...]
    evidence_instance_uids: tuple[str, ...]

    def group(self, tracking_uid: str) -> MeasurementGroupInfo:
        return next(g for g in self.groups if g.tracking_uid == tracking_uid)


def _name(item: Dataset) -> CodedValue | None:
    return _first_code(item, "ConceptNameCodeSequence")


def _template(item: Dataset) -> str | None:
    sequence = item.get("ContentTemplateSequence")
    return str(sequence[0].TemplateIdentifier) if sequence else None


def _children(item: Dataset) -> list[Dataset]:
    return list(item.get("ContentSequence", []))


def _num(item: Dataset) -> NumMeasurement:
    value: float | None = None
    unit = None
    measured = item.get("MeasuredValueSequence")
    if measured:
        mv = measured[0]
        if "FloatingPointValue" in mv:
            value = float(mv.FloatingPointValue)
        elif mv.get("NumericValue") is not None and str(mv.NumericValue) != "":
            value = float(mv.NumericValue)
        unit = _first_code(mv, "MeasurementUnitsCodeSequence")
    derivation = method = None
    for child in _children(item):
        name = _name(child)
        if name and child.ValueType == "CODE":
            if name.key == _DERIVATION:
                derivation = _first_code(child, "ConceptCodeSequence")
            elif name.key == _METHOD:
                method = _first_code(child, "ConceptCodeSequence")
    return NumMeasurement(_name(item) or CodedValue("", "", ""), value, unit, derivation, method)


def _group(container: Dataset) -> MeasurementGroupInfo:
    tracking_id = tracking_uid = source_series = algorithm_name = algorithm_version = None
    finding = category = None
    sites: list[tuple[CodedValue, CodedValue | None]] = []
    segment: tuple[str, int] | None = None
    measurements: list[NumMeasurement] = []
    evaluations: list[tuple[CodedValue, CodedValue]] = []
    texts: list[tuple[CodedValue, str]] = []
    for item in _children(container):
        name = _name(item)
        kind = item.get("ValueType", "")
        key = name.key if name else ""
        if kind == "TEXT" and key == _TRACKING_ID:
            tracking_id = str(item.TextValue)
        elif kind == "UIDREF" and key == _TRACKING_UID:
            tracking_uid = str(item.UID)
        elif kind == "UIDREF" and key == _SOURCE_SERIES:
            source_series = str(item.UID)
        elif kind == "TEXT" and key == _ALGORITHM_NAME:
            algorithm_name = str(item.TextValue)
        elif kind == "TEXT" and key == _ALGORITHM_VERSION:
            algorithm_version = str(item.TextValue)
        elif kind == "CODE" and key == _FINDING:
            finding = _first_code(item, "ConceptCodeSequence")
        elif kind == "CODE" and key == _FINDING_CATEGORY:
            category = _first_code(item, "ConceptCodeSequence")
        elif kind == "CODE" and key == _FINDING_SITE:
            laterality = next((_first_code(c, "ConceptCodeSequence") for c in _children(item)
                               if (_name(c) or CodedValue("", "", "")).key == _LATERALITY), None)
            site = _first_code(item, "ConceptCodeSequence")
            if site:
                sites.append((site, laterality))
        elif kind == "IMAGE" and key in _REFERENCED_SEGMENT:
            reference = item.ReferencedSOPSequence[0]
            numbers = reference.get("ReferencedSegmentNumber")
            number = 0 if numbers is None else int(numbers) if isinstance(numbers, int) else int(numbers[0])
            segment = (str(reference.ReferencedSOPInstanceUID), number)
        elif kind == "NUM":
            measurements.append(_num(item))
        elif kind == "CODE" and name is not None:
            value = _first_code(item, "ConceptCodeSequence")
            if value is not None:
                evaluations.append((name, value))
        elif kind == "TEXT" and name is not None:
            texts.append((name, str(item.TextValue)))
    return MeasurementGroupInfo(
        template_id=_template(container), tracking_identifier=tracking_id, tracking_uid=tracking_uid,
        finding=finding, finding_category=category, finding_sites=tuple(sites), referenced_segment=segment,
        source_series_uid=source_series, algorithm_name=algorithm_name, algorithm_version=algorithm_version,
        measurements=tuple(measurements), evaluations=tuple(evaluations), texts=tuple(texts),
    )


def read_sr(path: Path | str) -> SrInfo:
    """The TID 1500 content of a Measurement Report SR (other SR documents give no groups)."""
    ds = dcmread(path)
    groups: list[MeasurementGroupInfo] = []
    qualitative: list[tuple[CodedValue, CodedValue | str]] = []
    procedures: list[CodedValue] = []
    observer_type = None
    for item in _children(ds):
        name = _name(item)
        key = name.key if name else ""
        kind = item.get("ValueType", "")
        if kind == "CONTAINER" and key == _IMAGING_MEASUREMENTS:
            groups += [_group(c) for c in _children(item)
                       if c.get("ValueType") == "CONTAINER" and (_name(c) or CodedValue("", "", "")).key
                       == _MEASUREMENT_GROUP]
        elif kind == "CONTAINER" and key == _QUALITATIVE_EVALUATIONS:
            for child in _children(item):
                child_name = _name(child)
                if child_name is None:
                    continue
                if child.get("ValueType") == "CODE":
                    value = _first_code(child, "ConceptCodeSequence")
                    if value is not None:
                        qualitative.append((child_name, value))
                elif child.get("ValueType") == "TEXT":
                    qualitative.append((child_name, str(child.TextValue)))
        elif kind == "CODE" and key == "121058":
            code = _first_code(item, "ConceptCodeSequence")
            if code:
                procedures.append(code)
        elif kind == "CODE" and key == "121005":
            observer_type = _first_code(item, "ConceptCodeSequence")
    evidence = tuple(
        str(i.ReferencedSOPInstanceUID)
        for keyword in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence")
        for study in ds.get(keyword, []) for series in study.get("ReferencedSeriesSequence", [])
        for i in series.get("ReferencedSOPSequence", [])
    )
    return SrInfo(
        sop_class_uid=str(ds.SOPClassUID), sop_instance_uid=str(ds.SOPInstanceUID),
        series_instance_uid=str(ds.SeriesInstanceUID), study_instance_uid=str(ds.StudyInstanceUID),
        title=_name(ds), template_id=_template(ds),
        completion_flag=str(ds.get("CompletionFlag", "")), verification_flag=str(ds.get("VerificationFlag", "")),
        procedures_reported=tuple(procedures), observer_type=observer_type, groups=tuple(groups),
        qualitative_evaluations=tuple(qualitative),
        coding_schemes=tuple(str(i.CodingSchemeDesignator) for i in ds.get("CodingSchemeIdentificationSequence", [])),
        evidence_instance_uids=evidence,
    )
