"""DICOM-SEG of the structures an engine produced, written with highdicom (PS3.3 A.51 Segmentation IOD, C.8.20).

One segment per catalogue structure (anatomy and side) with at least one voxel in the engine's label map:

* Segment Label (0062,0005): the structure in words ("Left gluteus maximus");
* Segmented Property Category: (91723000, SCT, "Anatomical Structure") (PS3.16 CID 7150); Segmented Property
  Type: the anatomy's code from the catalogue (SNOMED CT, or 99SARCO for merged-muscle labels), with the side as
  Segmented Property Type Modifier (PS3.16 CID 244 laterality), as C.8.20.2 and 3D Slicer/dcmqi do;
* Segment Algorithm Type AUTOMATIC with Segmentation Algorithm Identification (engine name and version, family
  from PS3.16 CID 7162); the ``labelmap`` engine's input comes from outside sarcoscreen (a manual segmentation or
  a phantom's truth), so its segments are MANUAL without an algorithm;
* Recommended Display CIELab Value: the catalogue colour (sRGB) converted to CIELab;
* Tracking ID / Tracking UID: the structure key and the UID the SR's measurement group of the same structure
  carries (so SR and SEG refer to each other).

The SEG is pixel-aligned with the source: one frame per (segment, slice) for BINARY, one per slice for LABELMAP,
with the source's Frame of Reference, plane positions and pixel measures; highdicom matches every frame to its
source slice (Derivation Image Sequence, per frame) and lists every source instance in the Referenced Series
Sequence. Empty frames are omitted by default (`SegOptions.omit_empty_frames`); see ``docs/dicom-outputs.md`` for
the viewer consequences. A label map with no structure gives no SEG (`NoSegmentsError`): a Segmentation instance
needs at least one segment (C.8.20.2, Segment Sequence Type 1 with one or more items).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import highdicom as hd
import numpy as np
from highdicom.coding_schemes import CodingSchemeIdentificationItem
from pydicom.sr.codedict import codes
from pydicom.uid import UID, ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless

from sarcoscreen.inference.catalogue import CATALOGUE, Anatomy, Structure
from sarcoscreen.inference.coding import PRIVATE_SCHEME, PRIVATE_SCHEME_NAME
from sarcoscreen.inference.engines.base import Segmentation
from sarcoscreen.inference.volume import Volume
from sarcoscreen.reports.output_attributes import highdicom_arguments
from sarcoscreen.reports.output_dates import OutputDateTime, output_datetime, stamp
from sarcoscreen.reports.source_attributes import SourceInstances, SourceReferenceError
from sarcoscreen.reports.sr_codes import ANATOMICAL_STRUCTURE, coded

__all__ = [
    "NoSegmentsError",
    "SegCompression",
    "SegOptions",
    "SegSegment",
    "SegType",
    "anatomy_concept",
    "build_seg",
    "private_coding_scheme",
    "produced_structures",
]

MAX_MEANING = 64  # Code Meaning (0008,0104) is LO


class SegType(StrEnum):
    BINARY = "binary"
    LABELMAP = "labelmap"


class SegCompression(StrEnum):
    NONE = "none"
    RLE = "rle"
    JPEG2000 = "jpeg2000"

    @property
    def transfer_syntax(self) -> UID:
        return {"none": ExplicitVRLittleEndian, "rle": RLELossless, "jpeg2000": JPEG2000Lossless}[self.value]


class NoSegmentsError(ValueError):
    """The label map holds no structure: a SEG needs at least one segment."""


@dataclass(frozen=True)
class SegOptions:
    seg_type: SegType = SegType.BINARY
    compression: SegCompression = SegCompression.NONE
    omit_empty_frames: bool = True
    series_number: int = 901
    instance_number: int = 1
    manufacturer: str = "sarcoscreen"
    model_name: str = "sarcoscreen"
    software_version: str = ""
    device_serial_number: str = "sarcoscreen"

    def __post_init__(self) -> None:
        if self.seg_type is SegType.BINARY and self.compression is SegCompression.RLE:
            raise ValueError("a BINARY SEG cannot be RLE-compressed (1-bit frames); use none or jpeg2000, "
                             "or seg_type labelmap")


@dataclass(frozen=True)
class SegSegment:
    """One segment of the written SEG."""

    number: int
    structure: Structure
    tracking_uid: str


_FAMILIES = {
    "threshold": codes.cid7162.HistogramAnalysis,
    "bayesian-unet": codes.cid7162.ArtificialIntelligence,
}
_MANUAL_ENGINES = frozenset({"labelmap"})


def anatomy_concept(anatomy: Anatomy) -> hd.sr.CodedConcept:
    """The anatomy's code for DICOM (the catalogue keeps Code Meaning within LO's 64 characters)."""
    return coded(anatomy.code)


def private_coding_scheme() -> CodingSchemeIdentificationItem:
    """Coding Scheme Identification Sequence item declaring 99SARCO (PS3.3 C.12.1.1.4)."""
    return CodingSchemeIdentificationItem(
        designator=PRIVATE_SCHEME, name=PRIVATE_SCHEME_NAME, responsible_organization="sarcoscreen project",
    )


def produced_structures(segmentation: Segmentation) -> tuple[Structure, ...]:
    """The structures with at least one voxel in the label map, in catalogue label order. A label outside the
    engine's declared structures is an engine error (`ValueError`)."""
    present = np.flatnonzero(np.bincount(segmentation.labels.ravel(), minlength=256))
    declared = {s.label for s in segmentation.structures}
    unknown = sorted(int(v) for v in present if v and v not in declared)
    if unknown:
        raise ValueError(f"the label map holds label values {unknown} that the engine does not declare")
    return tuple(CATALOGUE.by_label(int(v)) for v in present if v)


def _description(number: int, structure: Structure, segmentation: Segmentation,
                 tracking_uid: str) -> hd.seg.SegmentDescription:
    manual = segmentation.engine_name in _MANUAL_ENGINES
    algorithm = None if manual else hd.AlgorithmIdentificationSequence(
        name=segmentation.engine_name,
        family=_FAMILIES.get(segmentation.engine_name, codes.cid7162.HistogramAnalysis),
        version=segmentation.engine_version,
        source="sarcoscreen",
    )
    colour = structure.anatomy.colour
    description = hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=structure.name,
        segmented_property_category=coded(ANATOMICAL_STRUCTURE),
        segmented_property_type=anatomy_concept(structure.anatomy),
        algorithm_type=(hd.seg.SegmentAlgorithmTypeValues.MANUAL if manual
                        else hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC),
        algorithm_identification=algorithm,
        tracking_uid=tracking_uid,
        tracking_id=structure.key,
        display_color=hd.color.CIELabColor.from_rgb(*colour),
    )
    laterality = structure.laterality
    if laterality is not None:
        description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
            coded(laterality)
        ]
    return description


def _geometry(volume: Volume, source: SourceInstances) -> tuple[
        hd.PixelMeasuresSequence, hd.PlaneOrientationSequence, list[hd.PlanePositionSequence]]:
    thickness = source.first.get("SliceThickness")
    measures = hd.PixelMeasuresSequence(
        pixel_spacing=(volume.spacing[1], volume.spacing[2]),
        slice_thickness=float(thickness) if thickness else volume.spacing[0],
        spacing_between_slices=volume.spacing[0],
    )
    orientation = hd.PlaneOrientationSequence(
        coordinate_system="PATIENT", image_orientation=(*volume.row_direction, *volume.column_direction),
    )
    positions = [hd.PlanePositionSequence(coordinate_system="PATIENT", image_position=tuple(map(float, p)))
                 for p in volume.positions]
    return measures, orientation, positions


def build_seg(
    source: SourceInstances,
    volume: Volume,
    segmentation: Segmentation,
    *,
    series_instance_uid: str,
    sop_instance_uid: str,
    tracking_uids: dict[str, str],
    options: SegOptions = SegOptions(),
    dimension_organization_uid: str | None = None,
    created: OutputDateTime | None = None,
) -> tuple[hd.seg.Segmentation, tuple[SegSegment, ...]]:
    """The SEG dataset and its segments. `tracking_uids` maps structure keys to Tracking UIDs;
    `dimension_organization_uid` replaces the random one highdicom draws; `created` is the Content, Series and
    Instance Creation Date/Time (by default the source's, `output_datetime`): with both given, the same input
    gives the same bytes.

    Raises `NoSegmentsError` when the label map is empty and `SourceReferenceError` when the source consists of
    several multi-frame instances (highdicom derives a SEG from one multi-frame or many single-frame images).
    """
    structures = produced_structures(segmentation)
    if not structures:
        raise NoSegmentsError("the engine labelled no structure in this series: no segment to write")
    multiframe = [ds for ds in source.datasets if int(ds.get("NumberOfFrames", 1) or 1) > 1]
    if multiframe and len(source.datasets) > 1:
        raise SourceReferenceError("the source consists of several multi-frame instances; a SEG can be derived "
                                   "from one multi-frame instance or from single-frame instances")
    labelmap = options.seg_type is SegType.LABELMAP
    when = created or output_datetime(source.datasets)
    # Segment numbers run 1..N in catalogue label order for both types: BINARY requires it (C.8.20.2.4), and
    # validators and viewers that predate the Label Map SOP class apply the same rule to LABELMAP.
    segments = tuple(SegSegment(n, s, tracking_uids[s.key]) for n, s in enumerate(structures, start=1))
    lut = np.zeros(256, np.uint8)
    for segment in segments:
        lut[segment.structure.label] = segment.number
    pixels = lut[segmentation.labels]
    descriptions = [_description(s.number, s.structure, segmentation, s.tracking_uid) for s in segments]
    measures, orientation, positions = _geometry(volume, source)
    schemes = [private_coding_scheme()] if any(
        s.structure.anatomy.code.scheme == PRIVATE_SCHEME for s in segments) else None
    seg = hd.seg.Segmentation(
        source_images=list(source.datasets),
        pixel_array=pixels,
        segmentation_type=(hd.seg.SegmentationTypeValues.LABELMAP if labelmap
                           else hd.seg.SegmentationTypeValues.BINARY),
        segment_descriptions=descriptions,
        series_instance_uid=series_instance_uid,
        sop_instance_uid=sop_instance_uid,
        device_serial_number=options.device_serial_number,
        content_label="MUSCLES",
        content_description=f"Lower-extremity muscles ({segmentation.engine_name} {segmentation.engine_version})"[
            :64],
        series_description="sarcoscreen muscle segmentation",
        transfer_syntax_uid=options.compression.transfer_syntax,
        pixel_measures=measures,
        plane_orientation=orientation,
        plane_positions=positions,
        omit_empty_frames=options.omit_empty_frames,
        coding_schemes=schemes,
        **highdicom_arguments(options, when),
    )
    stamp(seg, when)
    if dimension_organization_uid is not None:
        _set_dimension_organization(seg, dimension_organization_uid)
    return seg, segments


def _set_dimension_organization(seg: hd.seg.Segmentation, uid: str) -> None:
    """Replace the Dimension Organization UID (0020,9164) that highdicom 0.28 draws at random (it takes none as a
    parameter) wherever it is: the Dimension Organization Sequence and every Dimension Index Sequence item
    (C.7.6.17)."""
    for item in seg.DimensionOrganizationSequence:
        item.DimensionOrganizationUID = uid
    for item in seg.get("DimensionIndexSequence", []):
        item.DimensionOrganizationUID = uid
