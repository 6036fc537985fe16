"""DICOM-SEG writer: validity (dciodvfy), pixel and metadata round trip through highdicom, references to every
source instance, the configurable types and compressions, and sources that lack Type 2 attributes or UIDs."""

from __future__ import annotations

import re
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from ct_series_factory import edit_file
from dicom_output_fixtures import Crafted, crafted_analysis, crafted_labels
from dicom_validation import dciodvfy
from pydicom.uid import JPEG2000Lossless, RLELossless

from sarcoscreen.inference.catalogue import CATALOGUE
from sarcoscreen.inference.engines.base import Segmentation
from sarcoscreen.inference.series_loader import load_series
from sarcoscreen.reports.dicom_outputs import DicomOutputOptions, write_dicom_outputs
from sarcoscreen.reports.dicom_reader import read_seg
from sarcoscreen.reports.dicom_uids import output_uids, source_identity
from sarcoscreen.reports.key_image import KeyImageKind, KeyImageOptions
from sarcoscreen.reports.seg import (
    NoSegmentsError,
    SegCompression,
    SegOptions,
    SegType,
    build_seg,
    produced_structures,
)
from sarcoscreen.reports.source_attributes import TYPE2_COPIED, SourceReferenceError, read_source_instances

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
LABEL_MAP_SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.7"


@pytest.fixture(scope="module")
def crafted(tmp_path_factory: pytest.TempPathFactory) -> Crafted:
    return crafted_analysis(tmp_path_factory.mktemp("seg") / "ct")


def write_seg(crafted: Crafted, path: Path, options: SegOptions | None = None,
              segmentation: Segmentation | None = None) -> Path:
    segmentation = segmentation or crafted.segmentation
    options = options or SegOptions()
    source = read_source_instances(crafted.folder, crafted.volume)
    uids = output_uids("2.25", source_identity(source.series_instance_uid, []), "e", "1", "s")
    seg, _ = build_seg(source, crafted.volume, segmentation, series_instance_uid=uids.seg_series,
                       sop_instance_uid=uids.seg_instance,
                       tracking_uids={s.key: uids.tracking_uid(s.key) for s in segmentation.structures},
                       options=options)
    seg.save_as(path)
    return path


def labels_back(path: Path, crafted: Crafted) -> np.ndarray:
    """The catalogue label map, decoded from the SEG by highdicom, in the volume's slice order."""
    seg = hd.seg.segread(path)
    uids = [s.sop_instance_uid for s in crafted.volume.slices]
    numbers = [int(item.SegmentNumber) for item in seg.SegmentSequence if int(item.SegmentNumber) > 0]
    pixels = seg.get_pixels_by_source_instance(uids, segment_numbers=numbers, combine_segments=True,
                                               relabel=False)
    to_label = np.zeros(max(numbers) + 1, np.uint8)
    for item in seg.SegmentSequence:
        if int(item.SegmentNumber) > 0:
            to_label[int(item.SegmentNumber)] = CATALOGUE.by_key(str(item.TrackingID)).label
    return to_label[pixels]


def test_binary_seg_is_valid_and_round_trips(crafted: Crafted, tmp_path: Path) -> None:
    path = write_seg(crafted, tmp_path / "seg.dcm")
    verdict = dciodvfy(path)
    assert verdict.iod == "Segmentation"
    assert verdict.errors == ()
    assert verdict.unexpected_warnings() == []
    np.testing.assert_array_equal(labels_back(path, crafted), crafted_labels())
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == SEGMENTATION_STORAGE
    assert ds.SegmentationType == "BINARY"


def test_segments_describe_each_structure(crafted: Crafted, tmp_path: Path) -> None:
    info = read_seg(write_seg(crafted, tmp_path / "seg.dcm"))
    present = produced_structures(crafted.segmentation)
    # one segment per structure with voxels, numbered 1..N in catalogue order; the empty declared one is absent
    assert [s.tracking_id for s in info.segments] == [s.key for s in present]
    assert [s.number for s in info.segments] == list(range(1, len(present) + 1))
    assert "deep_posterior_leg_left" not in {s.tracking_id for s in info.segments}
    for segment, structure in zip(info.segments, present, strict=True):
        assert segment.label == structure.name
        assert (segment.category.value, segment.category.scheme) == ("91723000", "SCT")
        assert segment.property_type.value == structure.anatomy.code.value
        assert segment.property_type.scheme == structure.anatomy.code.scheme
        assert [(m.value, m.scheme) for m in segment.property_modifiers] == [
            (structure.laterality.value, "SCT")]
        assert segment.algorithm_type == "AUTOMATIC"
        assert (segment.algorithm_name, segment.algorithm_version) == ("bayesian-unet", "2.1")
        expected_lab = hd.color.CIELabColor.from_rgb(*structure.anatomy.colour).value
        assert segment.cielab == tuple(expected_lab)
    deep = next(s for s in info.segments if s.tracking_id == "deep_posterior_leg_right")
    # a private code's meaning comes from the catalogue, like a standard one's
    assert deep.property_type.meaning == CATALOGUE.anatomy("deep_posterior_leg").code.meaning
    ds = pydicom.dcmread(tmp_path / "seg.dcm", stop_before_pixels=True)
    schemes = {str(i.CodingSchemeDesignator) for i in ds.CodingSchemeIdentificationSequence}
    assert "99SARCO" in schemes


def test_seg_references_every_source_instance_and_frame(crafted: Crafted, tmp_path: Path) -> None:
    path = write_seg(crafted, tmp_path / "seg.dcm")
    info = read_seg(path)
    assert info.referenced_series_uid == crafted.series.series_instance_uid
    assert set(info.referenced_instance_uids) == set(crafted.series.sop_instance_uids)
    assert info.study_instance_uid == crafted.series.study_instance_uid
    source_for = pydicom.dcmread(crafted.series.files[0]).FrameOfReferenceUID
    assert info.frame_of_reference_uid == source_for
    assert (info.rows, info.columns) == crafted.volume.shape[1:]
    # every frame derives from the source slice at its own position
    position_of = {uid: tuple(np.round(p, 3)) for uid, p in zip(crafted.series.sop_instance_uids,
                                                              crafted.series.positions, strict=True)}
    ds = pydicom.dcmread(path)
    for frame in ds.PerFrameFunctionalGroupsSequence:
        source = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        position = tuple(np.round([float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient], 3))
        assert position_of[source] == position


@pytest.mark.parametrize("omit", [True, False])
def test_frame_count_follows_empty_frame_option(crafted: Crafted, tmp_path: Path, omit: bool) -> None:
    info = read_seg(write_seg(crafted, tmp_path / "seg.dcm", SegOptions(omit_empty_frames=omit)))
    labels = crafted_labels()
    for segment in info.segments:
        label = CATALOGUE.by_key(segment.tracking_id).label
        slices_with = int(np.count_nonzero((labels == label).any(axis=(1, 2))))
        assert info.frames_per_segment[segment.number] == (slices_with if omit else labels.shape[0])
    assert info.number_of_frames == sum(info.frames_per_segment.values())


def test_binary_jpeg2000_round_trips(crafted: Crafted, tmp_path: Path) -> None:
    path = write_seg(crafted, tmp_path / "seg.dcm", SegOptions(SegType.BINARY, SegCompression.JPEG2000))
    assert pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID == JPEG2000Lossless
    assert dciodvfy(path).errors == ()
    np.testing.assert_array_equal(labels_back(path, crafted), crafted_labels())


@pytest.mark.parametrize("compression", [SegCompression.NONE, SegCompression.RLE, SegCompression.JPEG2000])
def test_labelmap_round_trips(crafted: Crafted, tmp_path: Path, compression: SegCompression) -> None:
    path = write_seg(crafted, tmp_path / "seg.dcm", SegOptions(SegType.LABELMAP, compression))
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert ds.SOPClassUID == LABEL_MAP_SEGMENTATION_STORAGE
    assert ds.SegmentationType == "LABELMAP"
    assert ds.file_meta.TransferSyntaxUID == compression.transfer_syntax
    assert int(ds.NumberOfFrames) == int(np.count_nonzero(crafted_labels().any(axis=(1, 2))))
    np.testing.assert_array_equal(labels_back(path, crafted), crafted_labels())
    # dicom3tools of 2022 predates the Label Map Segmentation SOP class (2024): it does not know the IOD and
    # applies the BINARY numbering rule to the background segment 0. Nothing else may be wrong.
    known = (re.compile(r"^Error - Information Object Not found$"),
             re.compile(r"^Error - SegmentNumber not monotonically increasing .* SegmentNumber of 0$"))
    assert [e for e in dciodvfy(path).errors if not any(k.search(e) for k in known)] == []


def test_binary_cannot_be_rle() -> None:
    with pytest.raises(ValueError, match="cannot be RLE-compressed"):
        SegOptions(SegType.BINARY, SegCompression.RLE)
    assert RLELossless == SegCompression.RLE.transfer_syntax


def test_empty_label_map_gives_no_seg(crafted: Crafted, tmp_path: Path) -> None:
    empty = Segmentation(np.zeros(crafted.volume.shape, np.uint8), crafted.segmentation.structures, "threshold", "1")
    with pytest.raises(NoSegmentsError, match="no structure"):
        write_seg(crafted, tmp_path / "seg.dcm", segmentation=empty)


def test_undeclared_label_is_refused(crafted: Crafted, tmp_path: Path) -> None:
    labels = crafted_labels()
    labels[5, 0, 0] = CATALOGUE.by_key("soleus_left").label
    odd = Segmentation(labels, crafted.segmentation.structures, "threshold", "1")
    with pytest.raises(ValueError, match=str(CATALOGUE.by_key("soleus_left").label)):
        write_seg(crafted, tmp_path / "seg.dcm", segmentation=odd)


@pytest.mark.parametrize("key_image", [KeyImageKind.SECONDARY_CAPTURE, KeyImageKind.PDF])
def test_source_without_type2_attributes_gives_valid_objects(tmp_path: Path, key_image: KeyImageKind) -> None:
    """PatientBirthDate, AccessionNumber, ReferringPhysicianName, StudyID, ... absent from the source: the SEG, SR
    and key image are written with them present and empty, and are valid."""
    crafted = crafted_analysis(tmp_path / "ct")
    for path in crafted.series.files:
        edit_file(path, lambda ds: [delattr(ds, k) for k in TYPE2_COPIED if k in ds])
    assert "PatientBirthDate" not in pydicom.dcmread(crafted.series.files[0])
    outputs = write_dicom_outputs(crafted.folder, crafted.volume, crafted.segmentation, crafted.report,
                                  tmp_path / "out", settings_digest="t",
                                  options=DicomOutputOptions(key_image=KeyImageOptions(key_image)))
    assert len(outputs.files) == 3
    for out in outputs.files:
        verdict = dciodvfy(out)
        assert verdict.errors == (), out.name
        ds = pydicom.dcmread(out, stop_before_pixels=True)
        for keyword in TYPE2_COPIED:
            assert keyword in ds, (out.name, keyword)
            assert not ds[keyword].value, (out.name, keyword)


@pytest.mark.parametrize("keyword", ["StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"])
def test_source_without_uids_is_refused_with_the_reason(tmp_path: Path, keyword: str) -> None:
    crafted = crafted_analysis(tmp_path / "ct")
    for path in crafted.series.files:
        edit_file(path, lambda ds: setattr(ds, keyword, ""))
    volume = load_series(crafted.folder) if keyword != "FrameOfReferenceUID" else crafted.volume
    with pytest.raises(SourceReferenceError, match=f"no {keyword}"):
        read_source_instances(crafted.folder, volume)


def test_seg_on_legacy_converted_multiframe_source(crafted: Crafted, tmp_path: Path) -> None:
    """A Legacy Converted Enhanced CT source: every frame of the SEG derives from the right source frame."""
    datasets = sorted((pydicom.dcmread(p) for p in crafted.series.files),
                      key=lambda ds: float(ds.ImagePositionPatient[2]), reverse=True)  # frames against the normal
    image = hd.legacy.LegacyConvertedEnhancedCTImage(
        legacy_datasets=datasets, series_instance_uid=hd.UID(), series_number=1, sop_instance_uid=hd.UID(),
        instance_number=1)
    folder = tmp_path / "multiframe"
    folder.mkdir()
    image.save_as(folder / "enhanced.dcm")
    volume = load_series(folder)
    assert volume.slices[0].frame_number == len(datasets)  # the loader sorted the frames along the normal
    multiframe = Crafted(crafted.series, volume, Segmentation(
        crafted_labels(), crafted.segmentation.structures, "threshold", "1"), crafted.report)
    source = read_source_instances(folder, volume)
    uids = output_uids("2.25", "x", "e", "1", "s")
    seg, _ = build_seg(source, volume, multiframe.segmentation, series_instance_uid=uids.seg_series,
                       sop_instance_uid=uids.seg_instance,
                       tracking_uids={s.key: uids.tracking_uid(s.key) for s in multiframe.segmentation.structures})
    seg.save_as(tmp_path / "seg.dcm")
    assert dciodvfy(tmp_path / "seg.dcm").errors == ()
    ds = pydicom.dcmread(tmp_path / "seg.dcm")
    frame_of_slice = {s.frame_number: k for k, s in enumerate(volume.slices)}
    for frame in ds.PerFrameFunctionalGroupsSequence:
        reference = frame.DerivationImageSequence[0].SourceImageSequence[0]
        assert reference.ReferencedSOPInstanceUID == image.SOPInstanceUID
        k = frame_of_slice[int(reference.ReferencedFrameNumber)]
        position = [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient]
        np.testing.assert_allclose(position, volume.positions[k], atol=1e-3)
