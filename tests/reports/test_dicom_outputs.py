"""DICOM outputs end to end: ``sarcoscreen analyze --dicom-out`` on a phantom (per-muscle label map and the default
threshold engine) and on the real series of ``../shared/data``, validated by dciodvfy, read back by highdicom and
our reader, re-run deterministically, and stored by a real Orthanc over C-STORE."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from dicom_output_fixtures import Crafted, crafted_analysis
from dicom_validation import dciodvfy, dsrdump
from orthanc_peer import orthanc

from sarcoscreen.inference.catalogue import CATALOGUE, Group, Kind
from sarcoscreen.inference.engines.base import Segmentation
from sarcoscreen.inference.height import choose_height
from sarcoscreen.inference.measure import MeasurementReport, measure
from sarcoscreen.node.analysis import (
    AnalysisOutcome,
    analyze_series,
    density_rule_from,
    dicom_options_from,
    settings_digest,
)
from sarcoscreen.node.cli import main
from sarcoscreen.node.config import ConfigError, Settings, load_settings
from sarcoscreen.node.storage_scu import Destination, send_files
from sarcoscreen.reports.dicom_outputs import DicomOutputOptions, DicomOutputs, write_dicom_outputs
from sarcoscreen.reports.dicom_reader import read_seg, read_sr
from sarcoscreen.reports.key_image import KeyImageKind, KeyImageOptions
from sarcoscreen.reports.seg import SegCompression, SegType
from sarcoscreen.reports.sr_codes import GROUP_FINDINGS

# Warnings dciodvfy gives for attributes copied from the real sources (their values, not ours).
RETIRED_PERSON_NAME = re.compile(r"Retired Person Name form")


@pytest.fixture(scope="module")
def settings() -> Settings:
    """The defaults, except that a series short of the gluteal region is measured (the real series here are a few
    abdominal slices: what is tested is the objects written for them, not the node's coverage rule)."""
    return load_settings(environ={}, overrides={"routing": {"require_gluteal_region": False}})


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("phantom")
    assert main(["phantom", "--out", str(folder), "--matrix", "128", "--slice-mm", "5", "--no-progress"]) == 0
    return folder


@pytest.fixture(scope="module")
def per_muscle(phantom: Path, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> AnalysisOutcome:
    out = tmp_path_factory.mktemp("per-muscle")
    return analyze_series(phantom / "dicom", out, settings, labels=phantom / "labels.nii.gz", dicom_out=out / "dicom")


def _labels_from_seg(path: Path, result: AnalysisOutcome) -> np.ndarray:
    seg = hd.seg.segread(path)
    numbers = [int(s.SegmentNumber) for s in seg.SegmentSequence if int(s.SegmentNumber) > 0]
    pixels = seg.get_pixels_by_source_instance([s.sop_instance_uid for s in result.volume.slices],
                                               segment_numbers=numbers, combine_segments=True, relabel=False)
    lut = np.zeros(max(numbers) + 1, np.uint8)
    for item in seg.SegmentSequence:
        if int(item.SegmentNumber) > 0:
            lut[int(item.SegmentNumber)] = CATALOGUE.by_key(str(item.TrackingID)).label
    return lut[pixels]


def test_phantom_per_muscle_outputs_are_valid_and_round_trip(per_muscle: AnalysisOutcome) -> None:
    outputs = per_muscle.dicom
    assert outputs is not None
    assert outputs.omitted == ()
    for path in outputs.files:
        verdict = dciodvfy(path)
        assert verdict.errors == (), path.name
        assert verdict.unexpected_warnings() == [], path.name
    np.testing.assert_array_equal(_labels_from_seg(outputs.seg, per_muscle), per_muscle.segmentation.labels)
    present = {m.key for m in per_muscle.report.structures if m.voxels}
    assert {s.tracking_id for s in read_seg(outputs.seg).segments} == present
    info = read_sr(outputs.sr)
    by_name = {m.name: m for m in per_muscle.report.structures}
    structure_groups = [g for g in info.groups if g.referenced_segment is not None]
    assert len(structure_groups) == len(present)
    masses = {g.tracking_identifier: g.measurement("118538004") for g in structure_groups}
    for name, mass in masses.items():  # a bone has volume and attenuation, no mass (issue 11)
        expected = by_name[name].mass_g
        assert (mass.value if mass is not None else None) == expected, name
    assert None in masses.values()  # the phantom's bones
    assert sum(m is not None for m in masses.values()) > len(masses) / 2
    assert "Imaging Measurement Report" in dsrdump(outputs.sr)


def test_threshold_engine_outputs(phantom: Path, settings: Settings, tmp_path: Path) -> None:
    result = analyze_series(phantom / "dicom", tmp_path, settings, dicom_out=tmp_path / "dicom")
    outputs = result.dicom
    assert outputs is not None
    assert outputs.seg is not None
    segments = read_seg(outputs.seg).segments
    assert segments
    assert {CATALOGUE.by_key(s.tracking_id).anatomy.kind for s in segments} == {Kind.MUSCLE_REGION}
    assert {(s.property_type.value, s.algorithm_name, s.algorithm_type) for s in segments} == {
        ("127954009", "threshold", "AUTOMATIC")}
    for path in outputs.files:
        assert dciodvfy(path).errors == (), path.name


def test_rerun_gives_the_same_uids_and_other_settings_other_uids(per_muscle: AnalysisOutcome, phantom: Path,
                                                                 settings: Settings, tmp_path: Path) -> None:
    first = per_muscle.dicom
    again = write_dicom_outputs(phantom / "dicom", per_muscle.volume, per_muscle.segmentation, per_muscle.report,
                                tmp_path / "again", settings_digest=settings_digest(settings, None),
                                options=dicom_options_from(settings))
    assert again.uids == first.uids
    for a, b in zip(first.files, again.files, strict=True):
        old, new = pydicom.dcmread(a, stop_before_pixels=True), pydicom.dcmread(b, stop_before_pixels=True)
        assert (old.SOPInstanceUID, old.SeriesInstanceUID) == (new.SOPInstanceUID, new.SeriesInstanceUID)
    labelmap = load_settings(environ={"SARCOSCREEN_OUTPUTS__SEG_TYPE": "labelmap"})
    assert settings_digest(labelmap, None) != settings_digest(settings, None)
    other = write_dicom_outputs(phantom / "dicom", per_muscle.volume, per_muscle.segmentation, per_muscle.report,
                                tmp_path / "other", settings_digest=settings_digest(labelmap, None),
                                options=dicom_options_from(labelmap))
    assert other.uids.seg_instance != first.uids.seg_instance
    assert pydicom.dcmread(other.seg, stop_before_pixels=True).SegmentationType == "LABELMAP"


def test_orthanc_accepts_all_three_by_c_store(per_muscle: AnalysisOutcome, tmp_path: Path) -> None:
    outputs = per_muscle.dicom
    with orthanc(tmp_path / "orthanc") as server:
        destination = Destination(server.ae_title, "127.0.0.1", server.dicom_port)
        result = send_files(list(outputs.files), destination)
        assert [o.status for o in result.outcomes] == [0, 0, 0], [o.error for o in result.outcomes]
        expected = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in outputs.files}
        assert server.instance_uids() == expected
        # a re-run sends the same UIDs: the archive replaces, it does not duplicate
        assert send_files(list(outputs.files), destination).sent == 3
        assert server.instance_uids() == expected
        assert len(server.get("/instances")) == 3  # type: ignore[arg-type]


def test_real_siemens_series_is_refused_with_the_reason(shared_data: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """The de-identified Siemens series has empty Study/Series/SOP Instance UIDs in its data sets: outputs that
    must reference it cannot be made. The measurements are still written; analyze says why and exits 1. (Its few
    slices do not reach the gluteal region: measured anyway, with the coverage rule off.)"""
    config = tmp_path / "sarcoscreen.toml"
    config.write_text("[routing]\nrequire_gluteal_region = false\n")
    code = main(["--config", str(config), "analyze", str(shared_data / "siemens-ct-jpeg2000"), "--out", str(tmp_path),
                 "--dicom-out", str(tmp_path / "dicom"), "--no-progress"])
    assert code == 1
    printed = capsys.readouterr().err
    assert "DICOM outputs not written: the source series has no StudyInstanceUID (0020,000D)" in printed
    assert (tmp_path / "measurements.json").is_file()
    assert not list(tmp_path.glob("dicom/*.dcm"))


def test_real_dcmqi_series_sr_and_key_image_without_seg(shared_data: Path, settings: Settings,
                                                       tmp_path: Path) -> None:
    """The real GE abdomen slices: the threshold engine finds no lower-extremity muscle, so no SEG; the SR says
    'not in scan' for every group and the key image is still written; both are valid."""
    result = analyze_series(shared_data / "dcmqi" / "ct-3slice", tmp_path, settings, height_m=1.7,
                            dicom_out=tmp_path / "dicom")
    outputs = result.dicom
    assert outputs is not None
    assert outputs.seg is None
    assert [k for k, _ in outputs.omitted] == ["seg"]
    for path in (outputs.sr, outputs.key_image):
        verdict = dciodvfy(path)
        assert verdict.errors == (), path.name
        assert verdict.unexpected_warnings(RETIRED_PERSON_NAME) == []
    info = read_sr(outputs.sr)
    completeness = {g.finding.value: g.evaluation("SARCO-1010").value for g in info.groups
                    if g.evaluation("SARCO-1010")}
    assert {completeness[GROUP_FINDINGS[group].value] for group in Group if group.of_reference_study} == {"SARCO-1013"}
    # sarcoscreen's own landmark-bounded group: not in the scan, or (no landmark found at all) not produced
    assert completeness[GROUP_FINDINGS[Group.UPPER_GLUTEAL].value] in {"SARCO-1013", "SARCO-1014"}


def test_real_dcmqi_series_with_a_seg_references_what_dcmqi_references(shared_data: Path, settings: Settings,
                                                                       tmp_path: Path) -> None:
    """A SEG on the real GE slices (muscle-window voxels of a box in each half of the body as the two gluteal
    region labels) is valid and references the same instances and frame of reference as dcmqi's liver SEG."""
    folder = shared_data / "dcmqi" / "ct-3slice"
    base = analyze_series(folder, tmp_path, settings, height_m=1.7)
    volume = base.volume
    labels = np.zeros(volume.shape, np.uint8)
    in_window = (volume.hu >= -29) & (volume.hu <= 150)
    half = volume.shape[2] // 2
    box = np.zeros(volume.shape, bool)
    box[:, 300:420, 100:412] = True
    left_half = np.arange(volume.shape[2]) >= half  # columns run towards the patient's left (row direction +x)
    labels[box & in_window & ~left_half] = CATALOGUE.by_key("gluteal_region_muscle_right").label
    labels[box & in_window & left_half] = CATALOGUE.by_key("gluteal_region_muscle_left").label
    structures = tuple(CATALOGUE.muscles(Kind.MUSCLE_REGION))
    segmentation = Segmentation(labels, structures, "threshold", "1.0")
    report = measure(volume, segmentation, density_rule_from(settings), choose_height(1.7, None, None))
    outputs = write_dicom_outputs(folder, volume, segmentation, report, tmp_path / "dicom", settings_digest="real")
    for path in outputs.files:
        verdict = dciodvfy(path)
        assert verdict.errors == (), path.name
        assert verdict.unexpected_warnings(RETIRED_PERSON_NAME) == [], path.name
    ours, theirs = read_seg(outputs.seg), read_seg(shared_data / "dcmqi" / "liver-seg.dcm")
    assert set(ours.referenced_instance_uids) == set(theirs.referenced_instance_uids)
    assert ours.frame_of_reference_uid == theirs.frame_of_reference_uid
    assert ours.study_instance_uid == theirs.study_instance_uid
    assert ours.referenced_series_uid == theirs.referenced_series_uid


def test_options_from_configuration(settings: Settings) -> None:
    options = dicom_options_from(settings)
    assert (options.seg.seg_type, options.seg.compression, options.seg.omit_empty_frames) == (
        SegType.BINARY, SegCompression.NONE, True)
    assert (options.key_image.kind, options.key_image.burn_in_patient_name) == (KeyImageKind.SECONDARY_CAPTURE,
                                                                               False)
    assert options.uid_root == "2.25"
    custom = load_settings(environ={"SARCOSCREEN_OUTPUTS__SEG_TYPE": "labelmap",
                                    "SARCOSCREEN_OUTPUTS__SEG_COMPRESSION": "rle",
                                    "SARCOSCREEN_OUTPUTS__KEY_IMAGE": "pdf",
                                    "SARCOSCREEN_UIDS__ROOT": "1.2.826.0.1.3680043.10.543"})
    options = dicom_options_from(custom)
    assert (options.seg.seg_type, options.seg.compression) == (SegType.LABELMAP, SegCompression.RLE)
    assert options.key_image.kind is KeyImageKind.PDF
    assert options.uid_root == "1.2.826.0.1.3680043.10.543"
    with pytest.raises(ConfigError, match="seg_compression rle needs seg_type labelmap"):
        load_settings(environ={"SARCOSCREEN_OUTPUTS__SEG_COMPRESSION": "rle"})
    with pytest.raises(ConfigError, match=r"outputs\.key_image"):
        load_settings(environ={"SARCOSCREEN_OUTPUTS__KEY_IMAGE": "png"})


# --- issue 11, defect 10: an object re-sent under the same UID must be identical ----------------------------------

_ROOT = "1.2.826.0.1.3680043.10.543"
_SERIES_DATE = {"SeriesDate": "20240102", "SeriesTime": "103000",
                "AcquisitionDate": "20240102", "AcquisitionTime": "103512.25"}


@pytest.fixture(scope="module")
def dated(tmp_path_factory: pytest.TempPathFactory) -> Crafted:
    """The crafted analysis on a series that records its series and acquisition date and time."""
    return crafted_analysis(tmp_path_factory.mktemp("dated") / "ct", **_SERIES_DATE)


def _write_crafted(crafted: Crafted, out: Path, kind: KeyImageKind = KeyImageKind.SECONDARY_CAPTURE,
                   report: MeasurementReport | None = None, segmentation: Segmentation | None = None) -> DicomOutputs:
    options = DicomOutputOptions(uid_root=_ROOT, key_image=KeyImageOptions(kind))
    return write_dicom_outputs(crafted.folder, crafted.volume, segmentation or crafted.segmentation,
                               report or crafted.report, out, settings_digest="same", options=options)


@pytest.mark.parametrize("kind", [KeyImageKind.SECONDARY_CAPTURE, KeyImageKind.PDF])
def test_the_same_analysis_written_twice_gives_byte_identical_files(dated: Crafted, tmp_path: Path,
                                                                   kind: KeyImageKind) -> None:
    first, second = _write_crafted(dated, tmp_path / "first", kind), _write_crafted(dated, tmp_path / "second", kind)
    assert [p.name for p in first.files] == ["seg.dcm", "sr.dcm", "key_image.dcm"]
    for a, b in zip(first.files, second.files, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name
    seg = pydicom.dcmread(first.seg, stop_before_pixels=True)
    organisations = {str(seg.DimensionOrganizationSequence[0].DimensionOrganizationUID),
                     *(str(item.DimensionOrganizationUID) for item in seg.DimensionIndexSequence)}
    (organisation,) = organisations
    assert organisation.startswith(_ROOT + ".")  # the configured root, not highdicom's
    # every date and time of the outputs is the source's latest (the acquisition here), none the clock's
    for path in first.files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        for prefix in ("Content", "InstanceCreation", "Series", "DateOfSecondaryCapture"):
            date_keyword, time_keyword = (("DateOfSecondaryCapture", "TimeOfSecondaryCapture")
                                          if prefix == "DateOfSecondaryCapture" else (f"{prefix}Date", f"{prefix}Time"))
            if date_keyword in ds:
                assert (ds[date_keyword].value, ds[time_keyword].value) == ("20240102", "103512.25"), (
                    path.name, date_keyword)
        assert "ContentDate" in ds


def test_other_content_gets_other_uids(dated: Crafted, tmp_path: Path) -> None:
    """Same source, engine, version and settings, but a corrected height (another SR and key image) or another
    label map (the labelmap engine reads a file the settings do not name): what changed gets new UIDs; what did
    not keeps its UIDs and bytes."""
    none = KeyImageKind.NONE  # its UIDs are derived all the same; drawing it would only take time
    base = _write_crafted(dated, tmp_path / "base", none)
    taller = replace(dated.report, height_m=1.70)
    corrected = _write_crafted(dated, tmp_path / "height", none, report=taller)
    assert corrected.uids.seg_instance == base.uids.seg_instance
    assert corrected.seg.read_bytes() == base.seg.read_bytes()
    assert corrected.uids.sr_instance != base.uids.sr_instance
    assert corrected.uids.key_image_instance != base.uids.key_image_instance
    labels = dated.segmentation.labels.copy()
    labels[labels == CATALOGUE.by_key("gluteus_minimus_left").label] = 0
    other = replace(dated.segmentation, labels=labels)
    relabelled = _write_crafted(dated, tmp_path / "labels", none, segmentation=other)
    assert relabelled.uids.seg_instance != base.uids.seg_instance
    assert relabelled.uids.sr_instance != base.uids.sr_instance
