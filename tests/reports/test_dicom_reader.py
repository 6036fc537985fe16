"""Our SEG/SR reader on objects other tools wrote: dcmqi's SEGs and its TID 1500 SR (``../shared/data/dcmqi``)."""

from __future__ import annotations

from pathlib import Path

import pydicom

from sarcoscreen.reports.dicom_reader import read_seg, read_sr


def test_dcmqi_liver_seg_references_the_ct_it_was_made_from(shared_data: Path) -> None:
    info = read_seg(shared_data / "dcmqi" / "liver-seg.dcm")
    ct = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted((shared_data / "dcmqi" / "ct-3slice").iterdir())]
    assert info.segmentation_type == "BINARY"
    assert info.number_of_frames == 3
    assert info.frames_per_segment == {1: 3}
    assert [(s.number, s.label, s.property_type.value, s.property_type.scheme) for s in info.segments] == [
        (1, "Liver", "T-62000", "SRT")]
    assert set(info.referenced_instance_uids) == {str(ds.SOPInstanceUID) for ds in ct}
    assert info.referenced_series_uid == ct[0].SeriesInstanceUID
    assert info.frame_of_reference_uid == ct[0].FrameOfReferenceUID
    assert (info.rows, info.columns) == (int(ct[0].Rows), int(ct[0].Columns))


def test_dcmqi_tid1500_sr(shared_data: Path) -> None:
    folder = shared_data / "dcmqi" / "sr-example"
    seg = read_seg(folder / "seg.dcm")
    assert seg.number_of_frames == 13
    assert seg.segments[0].algorithm_type == "MANUAL"
    sr = read_sr(folder / "sr.dcm")
    assert (sr.title.value, sr.template_id) == ("126000", "1500")
    assert [p.value for p in sr.procedures_reported] == ["44139-4"]
    assert sr.observer_type.value == "121006"
    assert len(sr.groups) == 1
    group = sr.groups[0]
    assert group.tracking_identifier == "primary tumor"
    assert group.template_id == "1411"
    assert group.referenced_segment == (seg.sop_instance_uid, 1)
    assert group.source_series_uid == "1.3.6.1.4.1.14519.5.2.1.2744.7002.261560220703676715130542397405"
    assert group.finding_sites[0][0].value == "T-C5300"
    # values as dsrdump shows them; legacy SRT codes (Volume G-D705, Mean R-00317) are understood
    assert group.measurement("126401", derivation="373098007").value == 6.01529
    volume = group.measurement("118565006")
    assert (volume.value, volume.unit.value, volume.method.value) == (33.5824, "ml", "126030")
    assert len(group.measurements) == 22  # the NUM items dsrdump lists
    assert sr.qualitative_evaluations == ()
    assert "99PMP" in sr.coding_schemes
