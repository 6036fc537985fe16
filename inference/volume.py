"""A CT series as one array of Hounsfield units with its patient-space geometry.

`Volume` is the value that crosses from the series loader to segmentation engines, measurement and the DICOM-SEG
writer. Its conventions follow DICOM PS3.3 C.7.6.2 (Image Plane Module):

* the array is indexed ``hu[k, i, j]``: ``k`` the slice (sorted by position along the slice normal, increasing),
  ``i`` the row, ``j`` the column;
* ``row_direction`` is the first triplet of ImageOrientationPatient: the patient-space (LPS) direction in which
  the column index ``j`` increases; ``column_direction`` is the second triplet: the direction in which the row
  index ``i`` increases; ``normal`` is their cross product and ``k`` increases along it;
* ``spacing`` is ``(slice, row, column)`` spacing in mm in array-axis order, i.e. ``(dk, PixelSpacing[0],
  PixelSpacing[1])``;
* ``positions[k]`` is ImagePositionPatient of slice ``k`` (the centre of its first voxel), in mm.

No patient name, identifier or birth date is carried: what downstream code needs of the patient is in
`SeriesInfo`, and a writer that needs the full patient module reads it from the source instances by their SOP
Instance UIDs (`slices`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["SeriesInfo", "SliceRef", "Volume"]


@dataclass(frozen=True)
class SliceRef:
    """Where one slice of a `Volume` came from, for pixel-aligned derived objects (DICOM-SEG)."""

    sop_instance_uid: str
    sop_class_uid: str
    frame_number: int | None = None
    """1-based frame of a multi-frame instance (Enhanced CT, Legacy Converted); ``None`` for single-frame."""


@dataclass(frozen=True)
class SeriesInfo:
    """Non-identifying facts of the series that measurement and routing need."""

    study_instance_uid: str
    series_instance_uid: str
    frame_of_reference_uid: str
    modality: str = "CT"
    patient_sex: str | None = None
    """PatientSex (0010,0040): ``"F"``, ``"M"``, ``"O"`` or ``None`` when absent or empty."""
    patient_size_m: float | None = None
    """PatientSize (0010,1020) as recorded, in metres according to the standard; not validated here."""
    patient_age: str | None = None
    body_part_examined: str | None = None
    study_description: str | None = None
    series_description: str | None = None
    manufacturer: str | None = None
    slice_thickness_mm: float | None = None
    contrast_agent: str | None = None
    """ContrastBolusAgent (0018,0010); a non-empty value means contrast-enhanced CT."""
    convolution_kernel: str | None = None


@dataclass(frozen=True, eq=False)
class Volume:
    """Hounsfield units of one CT series on a regular grid, with the geometry to map voxels to patient space."""

    hu: np.ndarray
    """``(slices, rows, columns)``; ``int16`` when every slice's rescale gives integers in range, else ``float32``.
    Padding voxels (PixelPaddingValue) are set to -1024 HU (air)."""
    spacing: tuple[float, float, float]
    row_direction: tuple[float, float, float]
    column_direction: tuple[float, float, float]
    positions: np.ndarray
    """``(slices, 3)`` float64: ImagePositionPatient of every slice, sorted along the normal."""
    slices: tuple[SliceRef, ...]
    info: SeriesInfo
    warnings: tuple[str, ...] = field(default=())
    """Conditions the loader tolerated and corrected (excluded localizers, ...), in words."""

    def __post_init__(self) -> None:
        if self.hu.ndim != 3:
            raise ValueError(f"hu must be 3-D (slices, rows, columns), got shape {self.hu.shape}")
        if len(self.slices) != self.hu.shape[0] or self.positions.shape != (self.hu.shape[0], 3):
            raise ValueError(
                f"{self.hu.shape[0]} slices in hu, {len(self.slices)} slice references and "
                f"{self.positions.shape[0]} positions must agree"
            )

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.hu.shape)  # type: ignore[return-value]

    @property
    def normal(self) -> np.ndarray:
        return np.cross(np.asarray(self.row_direction), np.asarray(self.column_direction))

    @property
    def voxel_volume_mm3(self) -> float:
        return float(self.spacing[0] * self.spacing[1] * self.spacing[2])

    @property
    def affine(self) -> np.ndarray:
        """4x4 matrix mapping ``(k, i, j, 1)`` voxel indices to LPS patient coordinates in mm."""
        m = np.eye(4)
        m[:3, 0] = self.normal * self.spacing[0]
        m[:3, 1] = np.asarray(self.column_direction) * self.spacing[1]
        m[:3, 2] = np.asarray(self.row_direction) * self.spacing[2]
        m[:3, 3] = self.positions[0]
        return m

    def slice_z_mm(self) -> np.ndarray:
        """Position of every slice along the normal, in mm (increasing)."""
        return self.positions @ self.normal
