"""RT Structure Sets: read the ROIs' contours and rasterise them onto a CT `Volume`'s voxel grid.

An RT Structure Set (PS3.3 A.19; Structure Set Module C.8.8.5, ROI Contour Module C.8.8.6) describes each region
of interest (ROI) as a stack of contours in patient coordinates (LPS, mm): ``StructureSetROISequence`` names the
ROIs (number, name, frame of reference), ``ROIContourSequence`` holds, per ROI, the ``ContourSequence`` of
contours, each a ``ContourGeometricType`` and ``ContourData`` (x, y, z triplets).

Rasterisation (`rasterise_roi`):

* Only ``CLOSED_PLANAR`` contours enclose an area; ``POINT`` and ``OPEN_*`` contours are skipped. An ROI without
  any closed planar contour is refused, since its mask would be silently empty.
* Each contour must lie in one plane parallel to the volume's slices (its points' spread along the slice normal
  at most a tenth of the slice spacing), and is matched to the slice nearest its position along the normal,
  within half the slice spacing (on an exact tie, the lower slice index). Contours beyond the volume's first or
  last slice are skipped (a structure set may cover more slices than a series cut from the same scan) or, with
  ``strict=True``, refused. The slice match uses positions only: ``ContourImageSequence`` references (optional,
  Type 3) are not needed, so masks land on copies or re-sorted series of the same frame of reference.
* Points are mapped to continuous pixel coordinates by the slice's ImagePositionPatient, the row and column
  directions and the pixel spacing; a pixel belongs to a contour when its *centre* is inside the polygon
  (half-open on the right and bottom edges, so abutting polygons share no pixel).
* All contours of one ROI on one slice combine by the **even-odd rule**: a pixel is inside when an odd number of
  contours enclose it. A contour drawn inside another is a hole (C.8.8.6.3 allows either nesting or keyhole
  contours; both come out right).

Why not rt-utils: it is the popular package for this, but it pulls OpenCV (``opencv-python``, a large binary
wheel) for its polygon fill, rounds contour vertices to whole pixels before filling (shifting boundaries by up to
half a pixel and including edge pixels), matches contours to images by ``ContourImageSequence`` UID (an optional
attribute) and reads the image series itself rather than taking our `Volume`. Reading is pydicom's (maintained,
already a dependency); what remains - geometry and an even-odd scanline fill - is short and tested exactly here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from sarcoscreen.inference.volume import Volume

__all__ = [
    "RT_STRUCTURE_SET_STORAGE",
    "AmbiguousRoiNameError",
    "Contour",
    "ContourGeometryError",
    "FrameOfReferenceMismatchError",
    "NotAStructureSetError",
    "RTStructError",
    "Roi",
    "RoiNotFoundError",
    "StructureSet",
    "fill_even_odd",
    "rasterise_roi",
    "read_structure_set",
]

RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
CLOSED_PLANAR = "CLOSED_PLANAR"
_PLANE_TOLERANCE = 0.1  # of the slice spacing: a contour's allowed spread along the slice normal


class RTStructError(Exception):
    """An RT Structure Set could not be read or rasterised; the message says why."""


class NotAStructureSetError(RTStructError):
    """The file is not a DICOM RT Structure Set, or lacks its required sequences."""


class RoiNotFoundError(RTStructError):
    """No ROI has the requested name."""

    def __init__(self, message: str, available: tuple[str, ...]) -> None:
        super().__init__(message)
        self.available = available


class AmbiguousRoiNameError(RTStructError):
    """Several ROIs have the requested name (compared case-insensitively)."""


class FrameOfReferenceMismatchError(RTStructError):
    """The ROI's frame of reference is not the volume's: its coordinates cannot be mapped onto the volume."""


class ContourGeometryError(RTStructError):
    """A contour is malformed, not parallel to the volume's slices, or (strict mode) outside the volume."""


@dataclass(frozen=True, eq=False)
class Contour:
    """One contour of an ROI."""

    geometric_type: str
    """``CLOSED_PLANAR``, ``OPEN_PLANAR``, ``OPEN_NONPLANAR`` or ``POINT``."""
    points: np.ndarray
    """``(n, 3)`` float64 patient coordinates (LPS, mm)."""
    referenced_sop_instance_uids: tuple[str, ...] = ()
    """The images named in ContourImageSequence, if any (not used for matching)."""


@dataclass(frozen=True)
class Roi:
    """One region of interest and its contours."""

    number: int
    name: str
    frame_of_reference_uid: str
    interpreted_type: str | None
    """RTROIInterpretedType (ORGAN, EXTERNAL, PTV, ...) from RTROIObservationsSequence, when given."""
    generation_algorithm: str | None
    """ROIGenerationAlgorithm as recorded (AUTOMATIC, SEMIAUTOMATIC, MANUAL); often not informative."""
    contours: tuple[Contour, ...]

    @property
    def closed_contours(self) -> tuple[Contour, ...]:
        return tuple(c for c in self.contours if c.geometric_type == CLOSED_PLANAR)


@dataclass(frozen=True)
class StructureSet:
    """The ROIs of one RT Structure Set instance."""

    sop_instance_uid: str
    series_instance_uid: str
    label: str
    rois: tuple[Roi, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.rois)

    def roi(self, name: str) -> Roi:
        """The ROI called `name`, compared case-insensitively and without surrounding spaces."""
        wanted = name.strip().casefold()
        found = [r for r in self.rois if r.name.strip().casefold() == wanted]
        if not found:
            raise RoiNotFoundError(f"no ROI named {name!r}; the structure set has {', '.join(self.names)}",
                                   self.names)
        if len(found) > 1:
            raise AmbiguousRoiNameError(f"{len(found)} ROIs are named {name!r} (numbers "
                                        f"{', '.join(str(r.number) for r in found)})")
        return found[0]

    def first_of(self, names: Sequence[str]) -> Roi:
        """The first ROI present among `names` (for data sets that spell one structure several ways)."""
        for name in names:
            try:
                return self.roi(name)
            except RoiNotFoundError:
                continue
        raise RoiNotFoundError(f"none of {', '.join(names)} is in the structure set; it has "
                               f"{', '.join(self.names)}", self.names)


def read_structure_set(source: Path | str | Dataset) -> StructureSet:
    """Read the RT Structure Set in `source` (a file or a data set already read)."""
    if isinstance(source, Dataset):
        ds = source
        where = "the data set"
    else:
        where = Path(source).name
        try:
            ds = pydicom.dcmread(source)
        except (InvalidDicomError, OSError, EOFError, ValueError) as exc:
            raise NotAStructureSetError(f"{where} cannot be read as DICOM: {exc}") from None
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class != RT_STRUCTURE_SET_STORAGE:
        raise NotAStructureSetError(f"{where} is not an RT Structure Set (SOP Class {sop_class or 'missing'}, "
                                    f"Modality {ds.get('Modality', 'missing')})")
    if "StructureSetROISequence" not in ds:
        raise NotAStructureSetError(f"{where} has no StructureSetROISequence")
    interpreted = {int(item.ReferencedROINumber): str(item.get("RTROIInterpretedType", "")) or None
                   for item in ds.get("RTROIObservationsSequence", []) if "ReferencedROINumber" in item}
    contours_by_roi: dict[int, tuple[Contour, ...]] = {}
    for item in ds.get("ROIContourSequence", []):
        try:
            number = int(item.ReferencedROINumber)
        except (AttributeError, TypeError, ValueError):
            raise NotAStructureSetError(f"{where}: an ROIContourSequence item has no ReferencedROINumber") \
                from None
        contours_by_roi[number] = tuple(_contour(c, where, number) for c in item.get("ContourSequence", []))
    rois = []
    for item in ds.StructureSetROISequence:
        try:
            number = int(item.ROINumber)
        except (AttributeError, TypeError, ValueError):
            raise NotAStructureSetError(f"{where}: a StructureSetROISequence item has no ROINumber") from None
        rois.append(Roi(
            number=number, name=str(item.get("ROIName", "")),
            frame_of_reference_uid=str(item.get("ReferencedFrameOfReferenceUID", "")),
            interpreted_type=interpreted.get(number),
            generation_algorithm=str(item.get("ROIGenerationAlgorithm", "")) or None,
            contours=contours_by_roi.get(number, ()),
        ))
    return StructureSet(sop_instance_uid=str(ds.get("SOPInstanceUID", "")),
                        series_instance_uid=str(ds.get("SeriesInstanceUID", "")),
                        label=str(ds.get("StructureSetLabel", "")), rois=tuple(rois))


def _contour(item: Dataset, where: str, roi_number: int) -> Contour:
    kind = str(item.get("ContourGeometricType", "")).strip().upper()
    data = item.get("ContourData")
    if data is None:
        raise ContourGeometryError(f"{where}: a contour of ROI {roi_number} has no ContourData")
    values = np.asarray([float(v) for v in (data if isinstance(data, Sequence) else [data])], dtype=np.float64)
    if values.size == 0 or values.size % 3:
        raise ContourGeometryError(f"{where}: a contour of ROI {roi_number} has {values.size} ContourData values, "
                                   "not (x, y, z) triplets")
    points = values.reshape(-1, 3)
    declared = item.get("NumberOfContourPoints")
    if declared is not None and int(declared) != len(points):
        raise ContourGeometryError(f"{where}: a contour of ROI {roi_number} declares {int(declared)} points and "
                                   f"holds {len(points)}")
    if not np.isfinite(points).all():
        raise ContourGeometryError(f"{where}: a contour of ROI {roi_number} holds a coordinate that is not finite")
    refs = tuple(str(ref.get("ReferencedSOPInstanceUID", "")) for ref in item.get("ContourImageSequence", []))
    return Contour(kind, points, refs)


def rasterise_roi(roi: Roi, volume: Volume, *, strict: bool = False,
                  check_frame_of_reference: bool = True) -> np.ndarray:
    """Boolean mask of `roi` on `volume`'s grid, shaped like ``volume.hu`` (see the module docstring).

    `strict` refuses contours beyond the volume's slices instead of skipping them; `check_frame_of_reference`
    refuses an ROI whose frame of reference differs from the volume's (skipped when either is unknown).
    """
    volume_for = volume.info.frame_of_reference_uid
    if (check_frame_of_reference and volume_for and roi.frame_of_reference_uid
            and roi.frame_of_reference_uid != volume_for):
        raise FrameOfReferenceMismatchError(
            f"ROI {roi.name!r} is in frame of reference {roi.frame_of_reference_uid}, the volume in {volume_for}")
    closed = roi.closed_contours
    if not closed:
        kinds = sorted({c.geometric_type for c in roi.contours}) or ["no contours"]
        raise ContourGeometryError(f"ROI {roi.name!r} has no closed planar contour ({', '.join(kinds)}); it "
                                   "encloses no volume")
    normal = volume.normal
    slice_z = volume.slice_z_mm()
    dz = float(volume.spacing[0])
    per_slice: dict[int, list[np.ndarray]] = {}
    for contour in closed:
        along = contour.points @ normal
        if float(np.ptp(along)) > _PLANE_TOLERANCE * dz:
            raise ContourGeometryError(
                f"a contour of ROI {roi.name!r} spans {np.ptp(along):.2f} mm along the slice normal: it is not in "
                "a plane parallel to the volume's slices")
        position = float(along.mean())
        k = int(np.argmin(np.abs(slice_z - position)))
        if abs(slice_z[k] - position) > dz / 2 + 1e-6:
            if strict:
                raise ContourGeometryError(
                    f"a contour of ROI {roi.name!r} at {position:.2f} mm along the normal lies outside the volume's "
                    f"slices ({slice_z[0]:.2f} to {slice_z[-1]:.2f} mm)")
            continue
        if len(contour.points) < 3:
            continue  # no area
        per_slice.setdefault(k, []).append(_pixel_coordinates(contour.points, volume, k))
    mask = np.zeros(volume.shape, dtype=bool)
    for k, polygons in per_slice.items():
        mask[k] = fill_even_odd(polygons, volume.shape[1:])
    return mask


def _pixel_coordinates(points: np.ndarray, volume: Volume, k: int) -> np.ndarray:
    """``(n, 2)`` continuous (row, column) coordinates of `points` on slice `k` (integers at pixel centres)."""
    relative = points - volume.positions[k]
    rows = relative @ np.asarray(volume.column_direction) / volume.spacing[1]
    columns = relative @ np.asarray(volume.row_direction) / volume.spacing[2]
    return np.stack([rows, columns], axis=1)


def fill_even_odd(polygons: Sequence[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Pixels of a ``(rows, columns)`` image whose centres lie inside an odd number of `polygons`.

    Each polygon is an ``(n, 2)`` array of (row, column) vertices, closed implicitly (last to first). A pixel
    centre on a left or top edge is inside, on a right or bottom edge outside (half-open), so a polygon with
    vertices at half-pixel coordinates covers exactly the pixels between them.
    """
    rows, columns = shape
    # crossings[r, c]: how many polygon edges cross row r at a column x with ceil(x) == c; a pixel is inside
    # when the number of crossings at or left of its centre is odd.
    crossings = np.zeros((rows, columns + 1), np.int64)
    for polygon in polygons:
        y0, x0 = polygon[:, 0], polygon[:, 1]
        y1, x1 = np.roll(y0, -1), np.roll(x0, -1)
        low, high = np.minimum(y0, y1), np.maximum(y0, y1)
        first = np.maximum(np.ceil(low), 0).astype(np.int64)  # rows r with low <= r < high
        last = np.minimum(np.ceil(high) - 1, rows - 1).astype(np.int64)
        count = np.maximum(last - first + 1, 0)
        if not count.sum():
            continue
        edge = np.repeat(np.arange(len(y0)), count)
        start = np.cumsum(count) - count
        r = first[edge] + (np.arange(int(count.sum())) - start[edge])
        x = x0[edge] + (r - y0[edge]) * (x1[edge] - x0[edge]) / (y1[edge] - y0[edge])
        c = np.clip(np.ceil(x), 0, columns).astype(np.int64)
        np.add.at(crossings, (r, c), 1)
    return (np.cumsum(crossings, axis=1)[:, :columns] % 2).astype(bool)
