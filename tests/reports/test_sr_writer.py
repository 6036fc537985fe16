"""TID 1500 SR: validity (dciodvfy), rendering (dsrdump), exact round trip through highdicom and our reader, the
SEG cross-references, screening and uncertainty content, truncated and uncertain groups (the in-scan mass and the
shortfall under their own concepts, never the group's mass), sarcoscreen's own upper gluteal group, and the code
table."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from dicom_output_fixtures import Crafted, calibration, crafted_analysis
from dicom_validation import dciodvfy, dsrdump
from pydicom.sr.codedict import codes

from sarcoscreen.inference.catalogue import CATALOGUE, Group, Kind, Side
from sarcoscreen.inference.coding import PRIVATE_SCHEME, Code
from sarcoscreen.inference.density import DensityKind, DensityRule
from sarcoscreen.inference.engines.base import Certainty, ExtentStatus, Landmark, Segmentation, StructureExtent
from sarcoscreen.inference.height import choose_height
from sarcoscreen.inference.measure import Completeness, measure
from sarcoscreen.reports import sr_codes
from sarcoscreen.reports.dicom_outputs import DicomOutputs, write_dicom_outputs
from sarcoscreen.reports.dicom_reader import CodedValue, MeasurementGroupInfo, SrInfo, read_seg, read_sr
from sarcoscreen.reports.sr import group_tracking_key, screening_tracking_key

COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
GROUP_MASS, SMI, IN_SCAN_MASS, SHORTFALL = "118538004", "SARCO-1001", "SARCO-1017", "SARCO-1018"


def _landmark(name: str, k: int, side: Side, certainty: Certainty = Certainty.FOUND) -> Landmark:
    return Landmark(name, k, float(k), side, method="crafted", certainty=certainty)


# Left: iliac crest and femoral head centre inside the scan (the upper gluteal group is complete); right: no iliac
# crest (the scan does not reach it: truncated, with the in-scan mass).
LANDMARKS = (_landmark("iliac_crest", 4, Side.LEFT), _landmark("femoral_head", 6, Side.LEFT),
             _landmark("femoral_head", 6, Side.RIGHT))


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Crafted, DicomOutputs]:
    folder = tmp_path_factory.mktemp("sr")
    crafted = crafted_analysis(folder / "ct", calibration=calibration(), landmarks=LANDMARKS)
    outputs = write_dicom_outputs(crafted.folder, crafted.volume, crafted.segmentation, crafted.report,
                                  folder / "out", settings_digest="test")
    return crafted, outputs


@pytest.fixture(scope="module")
def sr_info(written: tuple[Crafted, DicomOutputs]) -> SrInfo:
    return read_sr(written[1].sr)


def test_sr_is_valid(written: tuple[Crafted, DicomOutputs]) -> None:
    verdict = dciodvfy(written[1].sr)
    assert verdict.iod == "ComprehensiveSR"
    assert verdict.errors == ()
    assert verdict.unexpected_warnings() == []


def test_dsrdump_renders_the_report(written: tuple[Crafted, DicomOutputs]) -> None:
    crafted, outputs = written
    text = dsrdump(outputs.sr)
    assert '<CONTAINER:(,,"Imaging Measurement Report")' in text
    assert '(25045-6,LN,"CT unspecified body region")' in text
    assert '"Sarcopenia suspected")=(373066001,SCT,"Yes")' in text
    assert text.count('"Referenced Segment")=(SG image,,') == len(outputs.segments)
    for measurement in crafted.report.structures:
        assert (f'"Tracking Identifier")="{measurement.name[:27]}' in text) == (measurement.voxels > 0)


def _structure_groups(info: SrInfo) -> dict[str, MeasurementGroupInfo]:
    return {g.tracking_identifier: g for g in info.groups if g.referenced_segment is not None}


def test_structure_groups_round_trip_exactly(written: tuple[Crafted, DicomOutputs], sr_info: SrInfo) -> None:
    crafted, outputs = written
    groups = _structure_groups(sr_info)
    seg = read_seg(outputs.seg)
    present = [m for m in crafted.report.structures if m.voxels > 0]
    assert set(groups) == {m.name for m in present}
    for m in present:
        g = groups[m.name]
        assert g.template_id == "1411"
        # the group and its SEG segment carry the same Tracking UID and refer to each other
        segment = next(s for s in seg.segments if s.tracking_id == m.key)
        assert g.referenced_segment == (seg.sop_instance_uid, segment.number)
        assert g.tracking_uid == segment.tracking_uid
        assert g.source_series_uid == crafted.series.series_instance_uid
        structure = CATALOGUE.by_key(m.key)
        assert g.finding.value == structure.anatomy.code.value
        assert [(site.value, lat.value if lat else None) for site, lat in g.finding_sites] == [
            (structure.anatomy.code.value, structure.laterality.value)]
        assert (g.algorithm_name, g.algorithm_version) == ("bayesian-unet", "2.1")
        assert g.measurement("118565006").value == m.volume_cm3
        assert g.measurement("118565006").method.value == "126030"
        assert g.measurement("112031", derivation="373098007").value == m.mean_hu
        assert g.measurement("112031", derivation="386136009").value == m.sd_hu
        mass = g.measurement("118538004")
        assert (mass.value if mass else None) == m.mass_g
        assert mass is None or mass.unit.value == "g"
        assert g.measurement("SARCO-1002").value == m.fraction_in_window
        uncertainty = g.measurement("SARCO-1006")  # the crafted engine gives the predictive variance
        assert (uncertainty.value if uncertainty else None) == m.uncertainty
        flag = g.evaluation("SARCO-1004")
        assert (flag.value if flag else None) == {None: None, True: "373066001", False: "373067005"}[m.qa_flag]
    assert groups["Right gluteus maximus"].evaluation("SARCO-1004").meaning == "Yes"
    assert groups["Left gluteus maximus"].evaluation("SARCO-1004").meaning == "No"
    # a bone has its volume and attenuation, no mass (it would be at muscle density); every muscle has its mass
    femur = groups[CATALOGUE.by_key("femur_left").name]
    assert femur.measurement("118565006") is not None
    assert femur.measurement("112031", derivation="373098007") is not None
    assert femur.measurement("118538004") is None
    assert all(groups[m.name].measurement("118538004") for m in present if CATALOGUE.by_key(m.key).is_muscle)


def test_group_and_screening_groups(written: tuple[Crafted, DicomOutputs], sr_info: SrInfo) -> None:
    crafted, outputs = written
    by_uid = {g.tracking_uid: g for g in sr_info.groups}
    for gm in crafted.report.groups:
        g = by_uid[outputs.uids.tracking_uid(group_tracking_key(gm.group, gm.side))]
        assert g.finding == _coded(sr_codes.GROUP_FINDINGS[gm.group])
        laterality = {"left": "7771000", "right": "24028007", "both": "51440002"}[gm.side]
        assert [(s.value, lat.value) for s, lat in g.finding_sites] == [("127954009", laterality)]
        assert g.evaluation("SARCO-1010") == _coded(sr_codes.COMPLETENESS_VALUES[gm.completeness])
        assert g.text("SARCO-1015") == gm.reason
        if gm.completeness is Completeness.COMPLETE:
            assert g.measurement(GROUP_MASS).value == gm.smm_g
            assert g.measurement(SMI).value == gm.smi_kg_m2
            assert g.measurement(SMI).unit.value == "kg/m2"
            assert g.measurement(IN_SCAN_MASS) is None  # it is the group's mass: said once
        else:  # not measured: no value at all, never a zero
            assert g.measurement(GROUP_MASS) is None
            assert g.measurement(SMI) is None
            in_scan = g.measurement(IN_SCAN_MASS)
            assert (in_scan.value if in_scan else None) == gm.in_scan_smm_g
        assert g.measurement(SHORTFALL) is None  # no engine extents in this analysis
    # the crafted engine labels the gluteal muscles only: the other groups lack muscles it does not produce
    completeness = {(gm.group, gm.side): gm.completeness for gm in crafted.report.groups}
    assert completeness[(Group.GLUTEAL, "both")] is Completeness.COMPLETE
    assert completeness[(Group.ALL, "left")] is Completeness.NOT_PRODUCED
    # gluteal: measured and below the cut-off; the others cannot be measured by this engine, or (upper gluteal)
    # are truncated on one side and have no cut-off
    expected = {Group.GLUTEAL: "373066001", Group.ABOVE_KNEE: "373068000", Group.ALL: "373068000",
                Group.UPPER_GLUTEAL: "373068000"}
    for s in crafted.report.screening:
        g = by_uid[outputs.uids.tracking_uid(screening_tracking_key(s.group))]
        assert g.evaluation("SARCO-1020").value == expected[s.group]
        assert g.text("SARCO-1025") == s.reason
        smi = g.measurement("SARCO-1001")
        assert (smi.value if smi else None) == s.smi_kg_m2
        if smi is not None:
            assert smi.derivation.value == "255605001"  # the calibration's side rule: min
        assert g.finding_sites[0][1].value == "51440002"
        cutoff = g.measurement("SARCO-1021")
        assert (cutoff.value if cutoff else None) == s.cutoff_kg_m2
        assert g.text("SARCO-1022") == "test-site 2026 (SHA-256 " + "ab" * 32 + ")"
    overall = {name.value: value for name, value in sr_info.qualitative_evaluations}
    assert overall["SARCO-1020"].value == "373066001"
    assert overall["SARCO-1025"].startswith("Gluteal muscles: SMI")


def test_the_upper_gluteal_group_is_reported_with_its_own_code(written: tuple[Crafted, DicomOutputs],
                                                                 sr_info: SrInfo) -> None:
    crafted, outputs = written
    by_uid = {g.tracking_uid: g for g in sr_info.groups}

    def group(side: str) -> MeasurementGroupInfo:
        return by_uid[outputs.uids.tracking_uid(group_tracking_key(Group.UPPER_GLUTEAL, side))]

    left, right = crafted.report.group(Group.UPPER_GLUTEAL, "left"), crafted.report.group(Group.UPPER_GLUTEAL, "right")
    assert left.completeness is Completeness.COMPLETE, left.reason
    assert right.completeness is Completeness.TRUNCATED, right.reason
    assert group("left").finding == CodedValue("SARCO-1104", PRIVATE_SCHEME, Group.UPPER_GLUTEAL.title)
    assert group("left").tracking_identifier == f"{Group.UPPER_GLUTEAL.title}, left"
    assert group("left").measurement(GROUP_MASS).value == left.smm_g > 0
    # the complete left group is less than the whole left gluteal group (it is bounded by the landmarks)
    assert left.smm_g < crafted.report.group(Group.GLUTEAL, "left").smm_g
    assert group("right").evaluation("SARCO-1010").value == "SARCO-1012"
    assert group("right").measurement(GROUP_MASS) is None
    assert group("right").measurement(IN_SCAN_MASS).value == right.in_scan_smm_g > 0
    assert group("right").measurement(IN_SCAN_MASS).unit.value == "g"
    assert "right iliac crest not found" in group("right").text("SARCO-1015")
    # the reference study's groups come first in the SR, sarcoscreen's own after them
    order = [g.finding.value for g in sr_info.groups if g.finding and g.finding.value.startswith("SARCO-110")]
    assert order.index("SARCO-1104") > max(order.index(c) for c in ("SARCO-1101", "SARCO-1102", "SARCO-1103"))


def test_truncated_and_uncertain_groups(tmp_path: Path) -> None:
    """An engine says the right gluteus maximus reaches 35 mm beyond the scan, and its landmarks are uncertain:
    the gluteal group (right, both) is truncated with its in-scan mass and shortfall; the upper gluteal group is
    uncertain with its in-scan mass; the SR stays valid and dsrdump renders the new concepts."""
    extents = (StructureExtent("gluteus_maximus_right", ExtentStatus.TRUNCATED, shortfall_mm=35.0,
                               reason="the gluteus maximus continues below the scan"),)
    landmarks = tuple(_landmark(name, k, side, Certainty.UNCERTAIN) for side in (Side.LEFT, Side.RIGHT)
                      for name, k in (("iliac_crest", 3), ("femoral_head", 6)))
    crafted = crafted_analysis(tmp_path / "ct", landmarks=landmarks, extents=extents)
    outputs = write_dicom_outputs(crafted.folder, crafted.volume, crafted.segmentation, crafted.report,
                                  tmp_path / "out", settings_digest="t")
    verdict = dciodvfy(outputs.sr)
    assert verdict.errors == ()
    assert verdict.unexpected_warnings() == []
    text = dsrdump(outputs.sr)
    assert '"Muscle mass inside the scan (lower bound)")="' in text
    assert '"Muscle group completeness")=(SARCO-1016,99SARCO,"Extent uncertain")' in text
    assert '"Extent of the group beyond the scan")="35.0" (mm,UCUM,"mm")' in text
    info = read_sr(outputs.sr)
    by_uid = {g.tracking_uid: g for g in info.groups}
    gluteal = crafted.report.group(Group.GLUTEAL, "right")
    assert (gluteal.completeness, gluteal.shortfall_mm) == (Completeness.TRUNCATED, 35.0)
    g = by_uid[outputs.uids.tracking_uid(group_tracking_key(Group.GLUTEAL, "right"))]
    assert g.measurement(GROUP_MASS) is None
    assert g.measurement(SMI) is None
    assert g.measurement(IN_SCAN_MASS).value == gluteal.in_scan_smm_g
    assert g.measurement(SHORTFALL).value == 35.0
    assert g.measurement(SHORTFALL).unit == CodedValue("mm", "UCUM", "mm")
    upper = crafted.report.group(Group.UPPER_GLUTEAL, "both")
    assert upper.completeness is Completeness.UNCERTAIN, upper.reason
    g = by_uid[outputs.uids.tracking_uid(group_tracking_key(Group.UPPER_GLUTEAL, "both"))]
    assert g.evaluation("SARCO-1010") == _coded(sr_codes.UNCERTAIN)
    assert g.measurement(GROUP_MASS) is None
    assert g.measurement(IN_SCAN_MASS).value == upper.in_scan_smm_g
    assert g.measurement(SHORTFALL) is None
    assert g.text("SARCO-1015") == upper.reason


def test_analysis_parameters(written: tuple[Crafted, DicomOutputs], sr_info: SrInfo) -> None:
    crafted, _outputs = written
    g = next(g for g in sr_info.groups if g.tracking_identifier == "Analysis parameters")
    assert g.measurement("8302-2").value == crafted.report.height_m == 1.62
    assert g.measurement("8302-2").unit.value == "m"
    assert g.measurement("SARCO-1032").value == -29.0
    assert g.measurement("SARCO-1033").value == 150.0
    assert g.measurement("SARCO-1008").value == 0.2
    assert g.text("SARCO-1030").startswith("explicit")
    assert g.text("SARCO-1031") == crafted.report.density_rule
    assert g.text("SARCO-1034") == "crafted label map for tests"
    assert (g.algorithm_name, g.algorithm_version) == ("bayesian-unet", "2.1")


def test_highdicom_reads_the_same_values(written: tuple[Crafted, DicomOutputs]) -> None:
    crafted, outputs = written
    sr = hd.sr.srread(outputs.sr)
    volumetric = sr.content.get_volumetric_roi_measurement_groups()
    by_name = {m.name: m for m in crafted.report.structures}
    assert len(volumetric) == len(outputs.segments)
    for group in volumetric:
        m = by_name[group.tracking_identifier]
        assert group.referenced_segment.referenced_segment_numbers
        values = {(x.name.value, x.derivation.value if x.derivation else None): x.value
                  for x in group.get_measurements()}
        assert values[("118565006", None)] == m.volume_cm3
        assert values.get(("118538004", None)) == m.mass_g  # none for a bone
        assert values[("112031", "373098007")] == m.mean_hu
    image_groups = sr.content.get_image_measurement_groups()
    assert len(image_groups) == len(crafted.report.groups) + len(crafted.report.screening) + 1
    assert sr.SOPClassUID == COMPREHENSIVE_SR
    schemes = {str(i.CodingSchemeDesignator) for i in sr.CodingSchemeIdentificationSequence}
    assert PRIVATE_SCHEME in schemes


def test_evidence_lists_the_seg_and_every_source_instance(written: tuple[Crafted, DicomOutputs],
                                                          sr_info: SrInfo) -> None:
    crafted, outputs = written
    seg_uid = pydicom.dcmread(outputs.seg, stop_before_pixels=True).SOPInstanceUID
    assert set(sr_info.evidence_instance_uids) == {*crafted.series.sop_instance_uids, seg_uid}
    assert sr_info.study_instance_uid == crafted.series.study_instance_uid
    assert sr_info.completion_flag == "COMPLETE"
    assert sr_info.verification_flag == "UNVERIFIED"


def test_without_segments_the_sr_says_not_in_scan(tmp_path: Path) -> None:
    crafted = crafted_analysis(tmp_path / "ct")
    # what the threshold engine declares on a scan without lower-extremity anatomy
    empty = Segmentation(np.zeros(crafted.volume.shape, np.uint8), CATALOGUE.muscles(Kind.MUSCLE_REGION),
                         "threshold", "1.0")
    rule = DensityRule(DensityKind.CONSTANT, 1.04, False, (-29.0, 150.0))
    report = measure(crafted.volume, empty, rule, choose_height(1.62, None, None))
    outputs = write_dicom_outputs(crafted.folder, crafted.volume, empty, report, tmp_path / "out",
                                  settings_digest="t")
    assert outputs.seg is None
    assert not (tmp_path / "out" / "seg.dcm").exists()
    assert [kind for kind, _ in outputs.omitted] == ["seg"]
    assert dciodvfy(outputs.sr).errors == ()
    info = read_sr(outputs.sr)
    assert not [g for g in info.groups if g.referenced_segment is not None]
    completeness = {g.finding.value: g.evaluation("SARCO-1010").value for g in info.groups
                    if g.evaluation("SARCO-1010")}
    assert len([g for g in info.groups if g.evaluation("SARCO-1010")]) == 3 * len(Group)
    assert {completeness[sr_codes.GROUP_FINDINGS[group].value] for group in Group
            if group.of_reference_study} == {"SARCO-1013"}
    overall = {name.value: value for name, value in info.qualitative_evaluations}
    assert overall["SARCO-1020"].value == "373068000"


def test_code_table() -> None:
    private = [c for c in sr_codes.ALL_CODES if c.scheme == PRIVATE_SCHEME]
    catalogue_values = {a.code.value for a in CATALOGUE.anatomies}
    assert len({c.value for c in private}) == len(private)
    # one concept per group and per completeness, so every group and state can be written
    assert set(sr_codes.GROUP_FINDINGS) == set(Group)
    assert set(sr_codes.COMPLETENESS_VALUES) == set(Completeness)
    assert sr_codes.IN_SCAN_MASS.value != sr_codes.MASS.value
    assert sr_codes.MILLIMETER.value == codes.UCUM.Millimeter.value
    assert all(c.value.startswith("SARCO-1") and c.value not in catalogue_values for c in private)
    for code in sr_codes.ALL_CODES:
        assert code.source, code
        assert len(code.meaning) <= 64, code
        assert code.scheme in {"SCT", "DCM", "UCUM", "LN", "UMLS", PRIVATE_SCHEME}, code
    # the standard codes are those of PS3.16 as pydicom 3 carries it (where PS3.16 has the concept)
    assert sr_codes.VOLUME.value == codes.SCT.Volume.value
    assert sr_codes.MASS.value == codes.SCT.MassQuantity.value
    assert sr_codes.MEAN.value == codes.SCT.Mean.value
    assert sr_codes.ATTENUATION.value == codes.DCM.AttenuationCoefficient.value
    assert sr_codes.SKELETAL_MUSCLE.value == codes.SCT.SkeletalMuscle.value
    assert sr_codes.ANATOMICAL_STRUCTURE.value == codes.SCT.AnatomicalStructure.value
    assert sr_codes.PROCEDURE_CT.value == codes.LN.CTUnspecifiedBodyRegion.value
    assert (sr_codes.YES.value, sr_codes.NO.value, sr_codes.UNDETERMINED.value) == (
        codes.SCT.Yes.value, codes.SCT.No.value, codes.SCT.Undetermined.value)
    assert sr_codes.HOUNSFIELD_UNIT.value == codes.UCUM.HounsfieldUnit.value


def _coded(code: Code) -> CodedValue:
    return CodedValue(code.value, code.scheme, code.meaning)


# --- issue 11, defect 12: which uncertainty measure, coded apart with its unit -------------------------------------


@pytest.mark.parametrize(("kind", "concept", "threshold_concept", "unit"), [
    ("variance", "SARCO-1006", "SARCO-1008", "1"),
    ("entropy", "SARCO-1007", "SARCO-1009", "{nat}"),
])
def test_the_uncertainty_measure_has_its_own_concept_and_unit(written: tuple[Crafted, DicomOutputs],
                                                              tmp_path: Path, kind: str, concept: str,
                                                              threshold_concept: str, unit: str) -> None:
    """Predictive variance and predictive entropy shared SARCO-1003 with unit "1"; which one it was stood only in
    an engine note. Each has its own concept (value and QA threshold) with its unit; the generic one is gone."""
    crafted, _ = written
    segmentation = replace(crafted.segmentation, uncertainty_measure=kind)
    report = measure(crafted.volume, segmentation, DensityRule(DensityKind.CONSTANT, 1.04, False, (-29.0, 150.0)),
                     choose_height(1.62, None, None))
    assert report.uncertainty_measure == kind
    outputs = write_dicom_outputs(crafted.folder, crafted.volume, segmentation, report, tmp_path,
                                  settings_digest=kind)
    verdict = dciodvfy(outputs.sr)
    assert verdict.errors == ()
    assert verdict.unexpected_warnings() == []
    info = read_sr(outputs.sr)
    groups = _structure_groups(info)
    value = groups["Right gluteus maximus"].measurement(concept)
    assert (value.value, value.unit.value) == (0.31, unit)
    assert all(g.measurement("SARCO-1003") is None for g in info.groups)
    parameters = next(g for g in info.groups if g.tracking_identifier == "Analysis parameters")
    threshold = parameters.measurement(threshold_concept)
    assert (threshold.value, threshold.unit.value) == (0.2, unit)
    assert parameters.measurement("SARCO-1005") is None
    meaning = {"variance": "predictive variance", "entropy": "predictive entropy"}[kind]
    assert f'{meaning}")="0.31" ({unit},UCUM,' in dsrdump(outputs.sr)


def test_an_engine_giving_uncertainties_must_say_which_measure() -> None:
    labels = np.zeros((2, 2, 2), np.uint8)
    structures = (CATALOGUE.by_key("gluteus_maximus_left"),)
    with pytest.raises(ValueError, match="uncertainty_measure"):
        Segmentation(labels, structures, "e", "1", structure_uncertainty={"gluteus_maximus_left": 0.1})
    with pytest.raises(ValueError, match="uncertainty_measure"):
        Segmentation(labels, structures, "e", "1", structure_uncertainty={"gluteus_maximus_left": 0.1},
                     uncertainty_measure="mutual information")
    assert Segmentation(labels, structures, "e", "1").uncertainty_measure is None


# --- issue 11, defect 13: the screening SMI is per side, said so, with both sides' SMI beside it -------------------


def test_the_screening_smi_says_per_side_and_has_both_sides_beside_it(written: tuple[Crafted, DicomOutputs],
                                                                       sr_info: SrInfo) -> None:
    """The screening group's SMI (the calibration's side rule, min here) has a method saying it is a per-side value
    (the lower of the two sides'), and both sides' SMI (the group's mass of both sides / height^2) is next to it,
    with its own method and finding site."""
    crafted, outputs = written
    screening = crafted.report.screening_of(Group.GLUTEAL)
    g = sr_info.group(outputs.uids.tracking_uid(screening_tracking_key(Group.GLUTEAL)))
    smi = [m for m in g.measurements if m.name.value == SMI]
    assert [(m.value, m.derivation.value if m.derivation else None, m.method) for m in smi] == [
        (screening.smi_kg_m2, "255605001", _coded(sr_codes.PER_SIDE_LOWER)),
        (crafted.report.group(Group.GLUTEAL, "both").smi_kg_m2, None, _coded(sr_codes.BOTH_SIDES)),
    ]
    text = dsrdump(outputs.sr)
    assert '"Lower of the left and right sides\' values (per side)")' in text
    # a group without an SMI has neither
    upper = sr_info.group(outputs.uids.tracking_uid(screening_tracking_key(Group.UPPER_GLUTEAL)))
    assert not [m for m in upper.measurements if m.name.value == SMI]


# --- issue 11, defect 14: the documented codes are the written ones ------------------------------------------------

_DOCS = Path(__file__).resolve().parents[2] / "docs" / "dicom-outputs.md"
_TRIPLE = re.compile(r'\(([\w.\-{}\[\]\']+), (DCM|SCT|LN|UMLS|UCUM|99SARCO), "([^"]+)"\)')


def _written_concepts(ds: pydicom.Dataset) -> set[tuple[str, str, str]]:
    """Every (value, scheme, meaning) of a code item anywhere in `ds`."""
    found: set[tuple[str, str, str]] = set()
    for element in ds:
        if element.VR != "SQ":
            continue
        for item in element.value:
            if "CodeValue" in item and "CodingSchemeDesignator" in item:
                found.add((str(item.CodeValue), str(item.CodingSchemeDesignator), str(item.get("CodeMeaning", ""))))
            found |= _written_concepts(item)
    return found


def test_the_documented_codes_are_the_written_ones(written: tuple[Crafted, DicomOutputs]) -> None:
    """docs/dicom-outputs.md gave Referenced Segment as 121214 while the SR has 121191: every concept the docs name
    with a code whose meaning the written SR has must have the SR's code, in the tree and in the code table."""
    written_by_meaning = {meaning.lower(): (value, scheme) for value, scheme, meaning in
                          _written_concepts(pydicom.dcmread(written[1].sr))}
    text = _DOCS.read_text(encoding="utf-8")
    documented = {(meaning.lower(), (value, scheme)) for value, scheme, meaning in _TRIPLE.findall(text)}
    table = next(line for line in text.splitlines() if line.startswith("| Imaging Measurement Report, "))
    names, values = (cell.strip().split(", ") for cell in table.split("|")[1:3])
    assert len(names) == len(values)
    documented |= {(name.lower(), (value, "")) for name, value in zip(names, values, strict=True) if "/" not in name}
    checked = [(meaning, code) for meaning, code in documented if meaning in written_by_meaning]
    assert len(checked) > 30
    for meaning, (value, scheme) in checked:
        assert value == written_by_meaning[meaning][0], meaning
        assert scheme in ("", written_by_meaning[meaning][1]), meaning
