"""Write the phantom as a single-frame CT Image Storage series (one file per slice).

Modules of the CT Image IOD (DICOM PS3.3 A.3): Patient, General Study, Patient Study, General Series, Frame of
Reference, General Equipment, General Acquisition, General Image, Image Plane, Image Pixel, Contrast/Bolus (with
contrast), CT Image, VOI LUT and SOP Common. Pixel data: unsigned 16-bit storage with 12 bits stored
(BitsStored 12, HighBit 11, PixelRepresentation 0) and RescaleIntercept -1024, RescaleSlope 1, so stored
values 0..4095 map to -1024..3071 HU, the classic CT convention. Files are explicit VR little endian with a
file meta header (PS3.10), written with ``enforce_file_format=True``.

UIDs are ``2.25`` UUID-derived UIDs (PS3.5 B.2) generated from the seed and the parameters' fingerprint, so the
same parameters give the same UIDs and different phantoms never collide.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, CTImageStorage, ExplicitVRLittleEndian

from sarcoscreen.inference.phantom.parameters import Fov, PhantomParameters

__all__ = ["BODY_PART", "SeriesGeometry", "SeriesUids", "SeriesWriter", "phantom_uid", "series_uids"]

# DICOM PS3.16 Annex L defined terms for Body Part Examined (0018,0015).
# PELVISLOWEXTREMT ("Pelvis and lower extremities") would describe the hip FOV exactly but is a recent term that
# validators (dciodvfy) do not know yet and then treat as paired; PELVIS is what hip CTs commonly carry.
BODY_PART = {Fov.HIP: "PELVIS", Fov.ABDOMEN: "ABDOMENPELVIS", Fov.LEGS: "LEG"}
_DESCRIPTION = {Fov.HIP: "hip to ankle", Fov.ABDOMEN: "abdomen and pelvis", Fov.LEGS: "knee to ankle"}


@dataclass(frozen=True)
class SeriesUids:
    study: str
    series: str
    frame_of_reference: str
    instance_prefix_entropy: str

    def instance(self, index: int) -> str:
        return phantom_uid(f"{self.instance_prefix_entropy}/instance/{index}")


def phantom_uid(name: str) -> str:
    """A UUID-derived UID (PS3.5 B.2) from a name-based (SHA-1, version 5) UUID: deterministic."""
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, 'urn:sarcoscreen-phantom:' + name).int}"


def series_uids(params: PhantomParameters) -> SeriesUids:
    base = f"{params.seed}/{params.fingerprint()}"
    return SeriesUids(
        study=phantom_uid(f"{base}/study"),
        series=phantom_uid(f"{base}/series"),
        frame_of_reference=phantom_uid(f"{base}/frame-of-reference"),
        instance_prefix_entropy=base,
    )


@dataclass(frozen=True)
class SeriesGeometry:
    """The voxel grid in DICOM terms; slice ``k`` of the volume is at ``positions[k]``."""

    rows: int
    columns: int
    pixel_spacing_mm: float
    slice_spacing_mm: float
    row_direction: tuple[float, float, float]
    column_direction: tuple[float, float, float]
    positions: np.ndarray
    """(slices, 3) ImagePositionPatient, sorted along the slice normal (volume order)."""

    @property
    def slices(self) -> int:
        return int(self.positions.shape[0])

    @property
    def normal(self) -> np.ndarray:
        return np.cross(np.asarray(self.row_direction), np.asarray(self.column_direction))

    def column_x(self) -> np.ndarray:
        """Patient x of every column's pixel centres (the row direction is +-x)."""
        return self.positions[0, 0] + self.row_direction[0] * self.pixel_spacing_mm * np.arange(self.columns)

    def row_y(self) -> np.ndarray:
        return self.positions[0, 1] + self.column_direction[1] * self.pixel_spacing_mm * np.arange(self.rows)


def _date_for(seed: int) -> dt.date:
    return dt.date(2024, 1, 1) + dt.timedelta(days=seed % 366)


class SeriesWriter:
    """Writes slice after slice of one series into a folder."""

    def __init__(self, folder: Path, params: PhantomParameters, geometry: SeriesGeometry, uids: SeriesUids,
                 version: str, weight_kg: float) -> None:
        self.folder = folder
        self.params = params
        self.geometry = geometry
        self.uids = uids
        folder.mkdir(parents=True, exist_ok=True)
        self.ds = self._template(version, weight_kg)
        # Instance numbers follow the scan direction: head to feet for HFS, feet to head for FFS; both run
        # from the top of the volume for HFS (the volume is ordered feet -> head) and from its start for FFS.
        self.head_first = params.patient_position.value == "HFS"

    def _template(self, version: str, weight_kg: float) -> Dataset:
        p, g = self.params, self.geometry
        date = _date_for(p.seed).strftime("%Y%m%d")
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.file_meta.ImplementationVersionName = "SARCOSCREEN_PH"
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SOPClassUID = CTImageStorage
        ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = date
        ds.StudyTime = "090000"
        ds.SeriesTime = "090500"
        ds.AcquisitionTime = ds.ContentTime = "090510"
        ds.AccessionNumber = f"PH{p.seed % 10**12:012d}"
        ds.Modality = "CT"
        ds.Manufacturer = "sarcoscreen phantom"
        ds.ManufacturerModelName = "digital phantom"
        ds.SoftwareVersions = version
        ds.ReferringPhysicianName = ""
        ds.StudyDescription = f"PHANTOM synthetic CT {_DESCRIPTION[p.fov]}"
        ds.SeriesDescription = f"PHANTOM synthetic {p.fov.value} {g.slice_spacing_mm:g}mm"
        ds.PatientName = "PHANTOM^SARCOSCREEN"
        ds.PatientID = f"PHANTOM-{p.seed}-{p.fingerprint()[:8]}"
        ds.PatientBirthDate = ""
        ds.PatientSex = p.sex
        ds.PatientAge = f"{int(p.age_years):03d}Y"
        ds.PatientSize = f"{p.height_m:.2f}"
        ds.PatientWeight = f"{weight_kg:.1f}"
        ds.PatientIdentityRemoved = "NO"
        ds.BodyPartExamined = BODY_PART[p.fov]
        if p.fov is Fov.LEGS:
            # LEG is a paired body part; both legs are imaged and General Series Laterality has no "both".
            ds.Laterality = ""
        ds.SliceThickness = f"{g.slice_spacing_mm:g}"
        ds.SpacingBetweenSlices = f"{g.slice_spacing_mm:g}"
        ds.KVP = "120"
        ds.DataCollectionDiameter = "500"
        ds.ReconstructionDiameter = f"{g.pixel_spacing_mm * g.columns:.1f}"
        ds.GantryDetectorTilt = "0"
        ds.TableHeight = "150"
        ds.RotationDirection = "CW"
        ds.XRayTubeCurrent = 200
        ds.ConvolutionKernel = "STANDARD"
        ds.PatientPosition = p.patient_position.value
        if p.contrast:
            ds.ContrastBolusAgent = "IV contrast (synthetic)"
            ds.ContrastBolusRoute = "IV"
        ds.StudyInstanceUID = self.uids.study
        ds.SeriesInstanceUID = self.uids.series
        ds.StudyID = f"PH{p.seed % 10**14}"
        ds.SeriesNumber = 2
        ds.AcquisitionNumber = 1
        ds.FrameOfReferenceUID = self.uids.frame_of_reference
        ds.PositionReferenceIndicator = ""
        ds.ImageOrientationPatient = [f"{v:g}" for v in (*g.row_direction, *g.column_direction)]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = g.rows
        ds.Columns = g.columns
        ds.PixelSpacing = [f"{g.pixel_spacing_mm:.10g}", f"{g.pixel_spacing_mm:.10g}"]
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = "-1024"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.WindowCenter = "40"
        ds.WindowWidth = "400"
        ds.WindowCenterWidthExplanation = "SOFT TISSUE"
        ds.BurnedInAnnotation = "NO"
        ds.ImageComments = "SYNTHETIC PHANTOM - not a patient. Ground truth in labels.nii.gz / ground_truth.json."
        return ds

    def instance_number(self, index: int) -> int:
        return self.geometry.slices - index if self.head_first else index + 1

    def sop_instance_uid(self, index: int) -> str:
        return self.uids.instance(index)

    def write(self, index: int, hu: np.ndarray) -> Path:
        """Write volume slice `index` (int16 HU, (rows, columns)) and return its path."""
        ds = self.ds
        number = self.instance_number(index)
        uid = self.sop_instance_uid(index)
        position = self.geometry.positions[index]
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.SOPInstanceUID = uid
        ds.InstanceNumber = number
        ds.ImagePositionPatient = [f"{v:.4f}" for v in position]
        ds.SliceLocation = f"{position[2]:.4f}"
        ds.PixelData = (hu.astype(np.int32) + 1024).astype("<u2").tobytes()
        path = self.folder / f"CT{number:06d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        return path
