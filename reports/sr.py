"""TID 1500 Imaging Measurement Report of one analysis, as a Comprehensive SR written with highdicom.

DICOM PS3.3 A.35.3 (Comprehensive SR IOD); PS3.16 TID 1500 (Measurement Report), TID 1411 (Volumetric ROI
Measurements and Qualitative Evaluations), TID 1501 (Measurement and Qualitative Evaluation Group), TID 300
(Measurement), TID 4019 (Algorithm Identification), TID 1001/1004 (observation context,
device observer). The tree, with the source of every code, is in ``docs/dicom-outputs.md``; the codes are in
`sarcoscreen.reports.sr_codes`.

* per structure and side with voxels (each is a SEG segment): a TID 1411 group referencing its segment, with
  volume, mean and SD attenuation, mass (muscle only: a bone has none), fraction in the muscle HU window, and -
  when the engine gives them - the segmentation uncertainty under the concept and unit of its measure
  (predictive variance or entropy) and its QA flag;
* per group (`Group`: the reference study's gluteal, above knee, all; then sarcoscreen's own upper gluteal
  group) and side (left, right, both): a TID 1501 group with the skeletal muscle mass (SCT "Mass" of the group)
  and SMI when complete, the completeness (coded, with the reason in words), and for a truncated or uncertain
  group the mass inside the scan (a lower bound, its own private concept) and the scan's shortfall in mm;
* per group: a TID 1501 screening group with the SMI used for screening - a per-side value by the side rule
  (laterality, or derivation and measurement method, say which: the mean of the sides is half the both-sides
  SMI) - with both sides' SMI beside it, the cut-off and calibration when there is one, and "Sarcopenia
  suspected" Yes / No / Undetermined with the reason;
* one TID 1501 group of analysis parameters: body height and its source, density rule, HU window, engine notes,
  uncertainty threshold, calibration;
* the TID 1500 "Qualitative Evaluations" container: the overall screening result (the calibration's primary
  group; Undetermined without a calibration) with its reason.

No Image Library (TID 1500 row 5, optional) is written: with one entry and its descriptors per source slice it
made a 600-slice SR about 2.5 MB and 15 s to build, and the SR refers to the source through the SEG (which
references every source instance) and the Source Series for Segmentation; the Current Requested Procedure
Evidence Sequence lists every source instance and the SEG.

Values are written as highdicom writes NUM items: Numeric Value (DS) plus Floating Point Value (FD), so the exact
float round-trips. A quantity that could not be measured is left out (its group says why), never written as 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import highdicom as hd
from pydicom import Dataset
from pydicom.sr.codedict import codes

from sarcoscreen.inference.catalogue import Group
from sarcoscreen.inference.coding import Code
from sarcoscreen.inference.measure import (
    Completeness,
    GroupMeasurement,
    GroupScreening,
    MeasurementReport,
    StructureMeasurement,
)
from sarcoscreen.inference.sides import SideRule
from sarcoscreen.reports import sr_codes as codes_
from sarcoscreen.reports.dicom_uids import OutputUids
from sarcoscreen.reports.output_attributes import highdicom_arguments
from sarcoscreen.reports.output_dates import OutputDateTime, output_datetime, stamp
from sarcoscreen.reports.seg import SegSegment, anatomy_concept, private_coding_scheme
from sarcoscreen.reports.source_attributes import SourceInstances
from sarcoscreen.reports.sr_codes import coded

__all__ = ["SrOptions", "build_sr", "group_tracking_key", "screening_tracking_key"]

_LATERALITY = {"left": codes_.LEFT, "right": codes_.RIGHT}
_SIDE_TITLE = {"left": "left", "right": "right", "both": "both sides"}


@dataclass(frozen=True)
class SrOptions:
    series_number: int = 902
    instance_number: int = 1
    manufacturer: str = "sarcoscreen"
    model_name: str = "sarcoscreen"
    software_version: str = ""


def group_tracking_key(group: Group, side: str) -> str:
    return f"group:{group.value}:{side}"


def screening_tracking_key(group: Group) -> str:
    return f"screening:{group.value}"


def _laterality(side: str) -> Code:
    return _LATERALITY.get(side, codes_.BILATERAL)


def _num(name: Code, value: float | None, unit: Code, *, derivation: Code | None = None,
         method: Code | None = None) -> hd.sr.Measurement | None:
    if value is None:
        return None
    return hd.sr.Measurement(
        name=coded(name), value=float(value), unit=coded(unit),
        derivation=coded(derivation) if derivation else None, method=coded(method) if method else None,
    )


def _present(*items: hd.sr.Measurement | None) -> list[hd.sr.Measurement]:
    return [m for m in items if m is not None]


def _text(name: Code, value: str) -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(name=coded(name), value=value[:4096] or "-",
                                 relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)


def _evaluation(name: Code, value: Code) -> hd.sr.QualitativeEvaluation:
    return hd.sr.QualitativeEvaluation(name=coded(name), value=coded(value))


def _add_texts(group: hd.sr.MeasurementsAndQualitativeEvaluations
               | hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations,
               texts: Sequence[hd.sr.TextContentItem]) -> None:
    """TEXT qualitative evaluations (TID 1501/1419 allow CODE or TEXT); highdicom's constructor takes CODE only."""
    for item in texts:
        group[0].ContentSequence.append(item)


def _uncertainty_codes(measure: str | None) -> tuple[Code, Code, Code]:
    """(value concept, QA threshold concept, unit) of the engine's uncertainty measure (`codes_.UNCERTAINTY_MEASURES`);
    an engine giving uncertainties must name its measure (`engines.base.Segmentation`)."""
    if measure not in codes_.UNCERTAINTY_MEASURES:
        raise ValueError(f"uncertainty measure {measure!r} has no SR concept")
    return codes_.UNCERTAINTY_MEASURES[measure]


def _structure_group(
    m: StructureMeasurement, segment: SegSegment, seg: Dataset, algorithm: hd.sr.AlgorithmIdentification,
    source_series_uid: str, uncertainty_measure: str | None,
) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    anatomy = anatomy_concept(segment.structure.anatomy)
    laterality = segment.structure.laterality
    evaluations = []
    if m.qa_flag is not None:
        evaluations.append(_evaluation(codes_.UNCERTAINTY_FLAG, codes_.YES if m.qa_flag else codes_.NO))
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=segment.tracking_uid, identifier=m.name),
        referenced_segment=hd.sr.ReferencedSegment(
            sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID, segment_number=segment.number,
            source_series=hd.sr.SourceSeriesForSegmentation(source_series_uid),
        ),
        finding_category=coded(codes_.ANATOMICAL_STRUCTURE),
        finding_type=anatomy,
        finding_sites=[hd.sr.FindingSite(anatomic_location=anatomy,
                                         laterality=coded(laterality) if laterality else None)],
        algorithm_id=algorithm,
        measurements=_present(
            _num(codes_.VOLUME, m.volume_cm3, codes_.CUBIC_CENTIMETER, method=codes_.VOLUME_METHOD),
            _num(codes_.ATTENUATION, m.mean_hu, codes_.HOUNSFIELD_UNIT, derivation=codes_.MEAN),
            _num(codes_.ATTENUATION, m.sd_hu, codes_.HOUNSFIELD_UNIT, derivation=codes_.STANDARD_DEVIATION),
            _num(codes_.MASS, m.mass_g, codes_.GRAM),
            _num(codes_.FRACTION_IN_WINDOW, m.fraction_in_window, codes_.RATIO),
            _uncertainty(m.uncertainty, uncertainty_measure),
        ),
        qualitative_evaluations=evaluations or None,
    )


def _uncertainty(value: float | None, measure: str | None) -> hd.sr.Measurement | None:
    if value is None:
        return None
    concept, _, unit = _uncertainty_codes(measure)
    return _num(concept, value, unit)


def _group_measurements(g: GroupMeasurement) -> list[hd.sr.Measurement]:
    """A group's NUM items (TID 1501 row 9, TID 300). The group's mass (SCT "Mass") and SMI only when the group is
    complete; for a truncated or uncertain group the mass of its muscle inside the scan under its own concept
    (SARCO-1017, a lower bound) and, when known, how far the scan falls short (SARCO-1018, mm) - never a partial
    mass under the group-mass concept."""
    partial = g.completeness is not Completeness.COMPLETE
    return _present(
        _num(codes_.MASS, g.smm_g, codes_.GRAM),
        _num(codes_.SMI, g.smi_kg_m2, codes_.KG_PER_M2),
        _num(codes_.IN_SCAN_MASS, g.in_scan_smm_g if partial else None, codes_.GRAM),
        _num(codes_.SCAN_SHORTFALL, g.shortfall_mm if partial else None, codes_.MILLIMETER),
    )


def _group_group(g: GroupMeasurement, uids: OutputUids,
                 algorithm: hd.sr.AlgorithmIdentification) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=uids.tracking_uid(group_tracking_key(g.group, g.side)),
            identifier=f"{g.group.title}, {_SIDE_TITLE[g.side]}",
        ),
        finding_category=coded(codes_.ANATOMICAL_STRUCTURE),
        finding_type=coded(codes_.GROUP_FINDINGS[g.group]),
        finding_sites=[hd.sr.FindingSite(anatomic_location=coded(codes_.SKELETAL_MUSCLE),
                                         laterality=coded(_laterality(g.side)))],
        algorithm_id=algorithm,
        measurements=_group_measurements(g),
        qualitative_evaluations=[_evaluation(codes_.COMPLETENESS, codes_.COMPLETENESS_VALUES[g.completeness])],
    )
    _add_texts(group, [_text(codes_.COMPLETENESS_REASON, g.reason)])
    return group


def _calibration_text(s: GroupScreening) -> str | None:
    if s.calibration_name is None:
        return None
    return f"{s.calibration_name} (SHA-256 {s.calibration_sha256})"


def _screening_group(s: GroupScreening, uids: OutputUids,
                     algorithm: hd.sr.AlgorithmIdentification) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """The screening SMI - a per-side value by the side rule, with Derivation Mean/Minimum and a Measurement Method
    saying so for mean/min - and beside it both sides' SMI (Measurement Method SARCO-1042 "Both sides together",
    its own Finding Site laterality Bilateral), the cut-off and the verdict."""
    side = {SideRule.LEFT: "left", SideRule.RIGHT: "right"}.get(s.side_rule, "both")
    derivation = {SideRule.MEAN: codes_.MEAN, SideRule.MIN: codes_.MINIMUM}.get(s.side_rule)
    method = {SideRule.MEAN: codes_.PER_SIDE_MEAN, SideRule.MIN: codes_.PER_SIDE_LOWER}.get(s.side_rule)
    bilateral = None if s.bilateral_smi_kg_m2 is None else hd.sr.Measurement(
        name=coded(codes_.SMI), value=float(s.bilateral_smi_kg_m2), unit=coded(codes_.KG_PER_M2),
        method=coded(codes_.BOTH_SIDES),
        finding_sites=[hd.sr.FindingSite(anatomic_location=coded(codes_.SKELETAL_MUSCLE),
                                         laterality=coded(codes_.BILATERAL))],
    )
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=uids.tracking_uid(screening_tracking_key(s.group)),
            identifier=f"{s.group.title}, sarcopenia screening",
        ),
        finding_category=coded(codes_.ANATOMICAL_STRUCTURE),
        finding_type=coded(codes_.GROUP_FINDINGS[s.group]),
        finding_sites=[hd.sr.FindingSite(anatomic_location=coded(codes_.SKELETAL_MUSCLE),
                                         laterality=coded(_laterality(side)))],
        algorithm_id=algorithm,
        measurements=_present(
            _num(codes_.SMI, s.smi_kg_m2, codes_.KG_PER_M2, derivation=derivation, method=method),
            bilateral if s.smi_kg_m2 is not None else None,
            _num(codes_.SMI_CUTOFF, s.cutoff_kg_m2, codes_.KG_PER_M2),
        ),
        qualitative_evaluations=[_evaluation(codes_.SARCOPENIA_SUSPECTED, codes_.SCREENING_VALUES[s.classification])],
    )
    texts = [_text(codes_.CLASSIFICATION_REASON, s.reason)]
    calibration = _calibration_text(s)
    if calibration:
        texts.append(_text(codes_.CALIBRATION, calibration))
    _add_texts(group, texts)
    return group


def _parameters_group(report: MeasurementReport, uids: OutputUids, algorithm: hd.sr.AlgorithmIdentification,
                      uncertainty_threshold: float | None) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=uids.tracking_uid("parameters"),
                                                     identifier="Analysis parameters"),
        algorithm_id=algorithm,
        measurements=_present(
            _num(codes_.BODY_HEIGHT, report.height_m, codes_.METER),
            _num(codes_.WINDOW_LOWER, report.hu_window[0], codes_.HOUNSFIELD_UNIT),
            _num(codes_.WINDOW_UPPER, report.hu_window[1], codes_.HOUNSFIELD_UNIT),
            _uncertainty_threshold(uncertainty_threshold, report.uncertainty_measure),
        ),
    )
    height_source = report.height_source + (f": {report.height_note}" if report.height_note else "")
    texts = [_text(codes_.HEIGHT_SOURCE, height_source), _text(codes_.DENSITY_RULE, report.density_rule)]
    calibrations = {t for t in (_calibration_text(s) for s in report.screening) if t}
    texts += [_text(codes_.CALIBRATION, t) for t in sorted(calibrations)]
    texts += [_text(codes_.ENGINE_NOTE, note) for note in report.notes]
    _add_texts(group, texts)
    return group


def _uncertainty_threshold(value: float | None, measure: str | None) -> hd.sr.Measurement | None:
    if value is None:
        return None
    _, concept, unit = _uncertainty_codes(measure)
    return _num(concept, value, unit)


def _overall(report: MeasurementReport) -> hd.sr.ContainerContentItem:
    """TID 1500 row 12: the overall result (the calibration's primary group) in "Qualitative Evaluations"."""
    if report.primary_group is not None:
        s = report.screening_of(report.primary_group)
        value, reason = codes_.SCREENING_VALUES[s.classification], f"{s.group.title}: {s.reason}"
    else:
        value, reason = codes_.UNDETERMINED, "not classified: no calibrated cut-off"
    container = hd.sr.ContainerContentItem(name=coded(codes_.QUALITATIVE_EVALUATIONS),
                                           relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
    container.ContentSequence = hd.sr.ContentSequence([
        hd.sr.CodeContentItem(name=coded(codes_.SARCOPENIA_SUSPECTED), value=coded(value),
                              relationship_type=hd.sr.RelationshipTypeValues.CONTAINS),
        _text(codes_.CLASSIFICATION_REASON, reason),
    ])
    return container


def build_sr(
    source: SourceInstances,
    report: MeasurementReport,
    uids: OutputUids,
    *,
    seg: Dataset | None,
    segments: Sequence[SegSegment] = (),
    uncertainty_threshold: float | None = None,
    options: SrOptions = SrOptions(),
    created: OutputDateTime | None = None,
) -> hd.sr.ComprehensiveSR:
    """The SR of `report`. `seg` and `segments` are the written SEG (``None`` when no SEG was written: then no
    structure group is written, as a TID 1411 group must reference its region). `created` is the Content, Series
    and Instance Creation Date/Time (by default the source's, `output_datetime`)."""
    when = created or output_datetime(source.datasets)
    algorithm = hd.sr.AlgorithmIdentification(name=report.engine_name, version=report.engine_version)
    by_key = {m.key: m for m in report.structures}
    groups: list[hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations
                 | hd.sr.MeasurementsAndQualitativeEvaluations] = []
    if seg is not None:
        groups += [_structure_group(by_key[s.structure.key], s, seg, algorithm, source.series_instance_uid,
                                    report.uncertainty_measure) for s in segments]
    groups += [_group_group(g, uids, algorithm) for g in report.groups]
    groups += [_screening_group(s, uids, algorithm) for s in report.screening]
    groups.append(_parameters_group(report, uids, algorithm, uncertainty_threshold))
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=uids.device_observer, name="sarcoscreen", manufacturer_name=options.manufacturer,
            model_name=f"{report.engine_name} {report.engine_version}"[:64],
        ),
    )
    content = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=coded(codes_.PROCEDURE_CT),
        imaging_measurements=groups,
        referenced_images=None,  # TID 1500 row 5, TID 1600 Image Library: optional; see the module description
    )
    content[0].ContentSequence.append(_overall(report))
    evidence = [*source.datasets, *([seg] if seg is not None else [])]
    sr = hd.sr.ComprehensiveSR(
        evidence=evidence,
        content=content[0],
        series_instance_uid=uids.sr_series,
        sop_instance_uid=uids.sr_instance,
        is_complete=True,
        series_description="sarcoscreen muscle measurements",
        coding_schemes=[private_coding_scheme()],
        **highdicom_arguments(options, when),
    )
    stamp(sr, when)
    return sr
