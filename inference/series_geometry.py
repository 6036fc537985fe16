"""From the frames of one series to one regular grid of slices, or the reason there is none.

Geometry follows PS3.3 C.7.6.2 (Image Plane Module): ImageOrientationPatient gives the row and column direction
cosines, their cross product the slice normal, and slices are ordered by the projection of ImagePositionPatient on
that normal (never by file name or InstanceNumber, C.7.6.2.1.1). The checks, in order, and their tolerances:

1. **Localizers** - frames whose ImageType/FrameType contains LOCALIZER (or the vendor values TOPOGRAM, SCOUT)
   are excluded, then frames whose orientation differs from the majority's when they are few (at most
   `MAX_STRAY_LOCALIZERS` images and under a quarter of the series); each exclusion is a warning.
2. **Required attributes** - ImagePositionPatient, ImageOrientationPatient, PixelSpacing, RescaleSlope and
   RescaleIntercept in every remaining frame (`MissingTagError` names the attribute), with values that can place
   the slices and compute HU in every frame: PixelSpacing two positive numbers and SliceThickness, when present, a
   positive number (`InvalidSpacingError`; the engines divide by the spacing), RescaleSlope not 0
   (`InvalidRescaleError`), ImageOrientationPatient unit, orthogonal direction cosines within 1e-3
   (`InvalidOrientationError`).
3. **Orientation** - all frames within `ORIENTATION_TOLERANCE_DEG` of each other.
4. **Pixel grid** - the same Rows, Columns and PixelSpacing (within 1e-3 mm) in every frame.
5. **At least two slices** (`MIN_SLICES`): a single slice has no slice spacing, and screening refuses it.
6. **Duplicates** - two different images within `DUPLICATE_TOLERANCE_MM` along the normal.
7. **Gantry tilt** - every slice position must lie on the line through the first position along the normal,
   within half a pixel in its plane; otherwise the series is *rejected* (never resampled) with the angle between
   the slice-position direction and the normal in the message.
8. **Missing slices** - a step larger than `GAP_FACTOR` (1.5) times the median spacing.
9. **Uniform spacing** - every step within 0.1 mm or 5 % of the median, whichever is smaller.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from sarcoscreen.inference.dicom_headers import FrameHeader
from sarcoscreen.inference.series_errors import (
    DuplicatePositionError,
    GantryTiltError,
    InvalidOrientationError,
    InvalidRescaleError,
    InvalidSpacingError,
    MissingSlicesError,
    MissingTagError,
    MixedOrientationError,
    MixedPixelGridError,
    NonUniformSpacingError,
    TooFewSlicesError,
)

__all__ = [
    "DUPLICATE_TOLERANCE_MM",
    "GAP_FACTOR",
    "MAX_STRAY_LOCALIZERS",
    "MIN_SLICES",
    "ORIENTATION_TOLERANCE_DEG",
    "SliceGrid",
    "arrange_slices",
]

MIN_SLICES = 2
ORIENTATION_TOLERANCE_DEG = 0.1
MAX_STRAY_LOCALIZERS = 3
DUPLICATE_TOLERANCE_MM = 0.01
GAP_FACTOR = 1.5
SPACING_TOLERANCE_MM = 0.1
SPACING_TOLERANCE_FRACTION = 0.05
LOCALIZER_TYPES = frozenset({"LOCALIZER", "TOPOGRAM", "SCOUT"})
_TAG_NAMES = {
    "ImagePositionPatient": "ImagePositionPatient (0020,0032)",
    "ImageOrientationPatient": "ImageOrientationPatient (0020,0037)",
    "PixelSpacing": "PixelSpacing (0028,0030)",
    "RescaleIntercept": "RescaleIntercept (0028,1052)",
    "RescaleSlope": "RescaleSlope (0028,1053)",
}


@dataclass(frozen=True)
class SliceGrid:
    """The frames of the series sorted along the normal, with the grid they form."""

    frames: tuple[FrameHeader, ...]
    row_direction: tuple[float, float, float]
    column_direction: tuple[float, float, float]
    spacing: tuple[float, float, float]
    positions: np.ndarray
    warnings: tuple[str, ...]


def arrange_slices(frames: list[FrameHeader], where: str = "") -> SliceGrid:
    """Validate `frames` as one regular grid and sort them along the normal (see the module docstring)."""
    warnings: list[str] = []
    frames = _exclude_typed_localizers(frames, warnings)
    _require_attributes(frames, where)
    _require_usable_values(frames, where)
    frames = _exclude_stray_orientations(frames, warnings)
    if len(frames) < MIN_SLICES:
        excluded = f" ({'; '.join(warnings)})" if warnings else ""
        raise TooFewSlicesError(
            f"the series has {len(frames)} image slice(s){excluded}; a volume needs at least {MIN_SLICES} "
            "slices, and a single slice cannot be screened"
        )
    row, col = _directions(frames[0])
    _require_same_grid(frames)
    normal = np.cross(row, col)
    positions = np.array([f.position for f in frames], dtype=np.float64)
    z = positions @ normal
    order = np.argsort(z, kind="stable")
    frames = [frames[k] for k in order]
    positions, z = positions[order], z[order]
    _reject_duplicates(frames, z)
    steps = np.diff(z)
    spacing_row, spacing_col = frames[0].pixel_spacing  # type: ignore[misc]
    _reject_tilt(positions, normal, 0.5 * min(spacing_row, spacing_col))
    _reject_gaps(steps, z)
    _reject_irregular_spacing(steps)
    dk = float((z[-1] - z[0]) / (len(z) - 1))
    return SliceGrid(
        frames=tuple(frames), row_direction=tuple(float(v) for v in row),  # type: ignore[arg-type]
        column_direction=tuple(float(v) for v in col),  # type: ignore[arg-type]
        spacing=(dk, float(spacing_row), float(spacing_col)), positions=positions, warnings=tuple(warnings),
    )


def _exclude_typed_localizers(frames: list[FrameHeader], warnings: list[str]) -> list[FrameHeader]:
    kept = [f for f in frames if not LOCALIZER_TYPES.intersection(f.image_type)]
    if len(kept) < len(frames):
        n = len(frames) - len(kept)
        warnings.append(f"excluded {n} localizer image(s) (ImageType LOCALIZER)")
    return kept


def _require_attributes(frames: list[FrameHeader], where: str) -> None:
    for keyword, name in _TAG_NAMES.items():
        lacking = [f for f in frames if keyword in f.missing]
        if lacking:
            example = lacking[0].instance.path.name
            frame = f" frame {lacking[0].frame_number}" if lacking[0].frame_number else ""
            raise MissingTagError(
                f"{name} is missing or malformed in {len(lacking)} of {len(frames)} images{where} "
                f"(e.g. {example}{frame}); it is required to place the slices and compute HU", keyword
            )


def _example(frames: list[FrameHeader]) -> str:
    frame = f" frame {frames[0].frame_number}" if frames[0].frame_number else ""
    return f"{frames[0].instance.path.name}{frame}"


def _require_usable_values(frames: list[FrameHeader], where: str) -> None:
    """Values present but unusable: a spacing or thickness that is not positive, a slope of 0, an orientation that
    is not a pair of orthogonal unit vectors - in any frame, not only the first."""
    spacing = [f for f in frames if min(f.pixel_spacing) <= 0]  # type: ignore[type-var]
    if spacing:
        raise InvalidSpacingError(
            f"{_TAG_NAMES['PixelSpacing']} is not two positive numbers in {len(spacing)} of {len(frames)} images"
            f"{where} (e.g. {_example(spacing)}: {'/'.join(f'{v:g}' for v in spacing[0].pixel_spacing)} mm); the "
            "pixel spacing places and sizes every voxel", "PixelSpacing")  # type: ignore[union-attr]
    thickness = [f for f in frames if "SliceThickness" in f.malformed
                 or (f.slice_thickness is not None and f.slice_thickness <= 0)]
    if thickness:
        raise InvalidSpacingError(
            f"SliceThickness (0018,0050) is not a positive number in {len(thickness)} of {len(frames)} images{where} "
            f"(e.g. {_example(thickness)}); leave it empty when unknown", "SliceThickness")
    flat = [f for f in frames if f.slope == 0]
    if flat:
        raise InvalidRescaleError(
            f"{_TAG_NAMES['RescaleSlope']} is 0 in {len(flat)} of {len(frames)} images{where} (e.g. "
            f"{_example(flat)}): every voxel would have the same HU (HU = stored value x slope + intercept)")
    iop = np.array([f.orientation for f in frames], dtype=np.float64).reshape(-1, 6)
    rows, cols = iop[:, :3], iop[:, 3:]
    bad = ((np.abs(np.linalg.norm(rows, axis=1) - 1) > 1e-3) | (np.abs(np.linalg.norm(cols, axis=1) - 1) > 1e-3)
           | (np.abs(np.einsum("ij,ij->i", rows, cols)) > 1e-3))
    if bad.any():
        _directions(frames[int(np.argmax(bad))])


def _directions(frame: FrameHeader) -> tuple[np.ndarray, np.ndarray]:
    iop = np.asarray(frame.orientation, dtype=np.float64)
    row, col = iop[:3], iop[3:]
    if (abs(np.linalg.norm(row) - 1) > 1e-3 or abs(np.linalg.norm(col) - 1) > 1e-3
            or abs(float(row @ col)) > 1e-3):
        raise InvalidOrientationError(
            f"ImageOrientationPatient {np.round(iop, 4).tolist()} in {frame.instance.path.name} is not a pair of "
            "orthogonal unit vectors"
        )
    return row / np.linalg.norm(row), col / np.linalg.norm(col)


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def _orientation_key(frames: list[FrameHeader]) -> list[int]:
    """A cluster index per frame: frames within `ORIENTATION_TOLERANCE_DEG` (rows and columns) share one."""
    centres: list[np.ndarray] = []
    labels = []
    for frame in frames:
        iop = np.asarray(frame.orientation, dtype=np.float64)
        for n, centre in enumerate(centres):
            if (_angle_deg(iop[:3], centre[:3]) <= ORIENTATION_TOLERANCE_DEG
                    and _angle_deg(iop[3:], centre[3:]) <= ORIENTATION_TOLERANCE_DEG):
                labels.append(n)
                break
        else:
            centres.append(iop)
            labels.append(len(centres) - 1)
    return labels


def _exclude_stray_orientations(frames: list[FrameHeader], warnings: list[str]) -> list[FrameHeader]:
    if not frames:
        return frames
    labels = _orientation_key(frames)
    counts = Counter(labels)
    if len(counts) == 1:
        return frames
    majority, _ = counts.most_common(1)[0]
    strays = len(frames) - counts[majority]
    if strays <= MAX_STRAY_LOCALIZERS and strays * 4 < len(frames):
        warnings.append(
            f"excluded {strays} image(s) whose orientation differs from the other {counts[majority]} "
            "(taken for localizers)"
        )
        return [f for f, label in zip(frames, labels, strict=True) if label == majority]
    described = []
    for label, count in counts.most_common():
        example = next(f for f, lab in zip(frames, labels, strict=True) if lab == label)
        described.append(f"{count} image(s) oriented {np.round(example.orientation, 3).tolist()}")
    raise MixedOrientationError(
        f"the images have {len(counts)} different orientations: {'; '.join(described)}; one volume needs parallel "
        f"slices (tolerance {ORIENTATION_TOLERANCE_DEG}°)"
    )


def _require_same_grid(frames: list[FrameHeader]) -> None:
    def key(f: FrameHeader) -> tuple[int | None, int | None, float, float]:
        sr, sc = f.pixel_spacing  # type: ignore[misc]
        return f.instance.rows, f.instance.columns, round(sr, 3), round(sc, 3)

    counts = Counter(key(f) for f in frames)
    if len(counts) > 1:
        described = "; ".join(
            f"{rows}x{cols} pixels of {sr:g}x{sc:g} mm ({n} images)"
            for (rows, cols, sr, sc), n in counts.most_common()
        )
        raise MixedPixelGridError(f"the images differ in Rows, Columns or PixelSpacing: {described}")


def _reject_duplicates(frames: list[FrameHeader], z: np.ndarray) -> None:
    same = np.flatnonzero(np.diff(z) < DUPLICATE_TOLERANCE_MM)
    if same.size:
        k = int(same[0])
        a, b = frames[k].instance.path.name, frames[k + 1].instance.path.name
        raise DuplicatePositionError(
            f"{same.size} slice position(s) hold more than one image (different SOP instances), e.g. {a} and {b} "
            f"both at {z[k]:.2f} mm along the normal; the series mixes acquisitions or reconstructions"
        )


def _reject_tilt(positions: np.ndarray, normal: np.ndarray, tolerance_mm: float) -> None:
    relative = positions - positions[0]
    along = relative @ normal
    lateral = relative - np.outer(along, normal)
    offsets = np.linalg.norm(lateral, axis=1)
    worst = int(np.argmax(offsets))
    if offsets[worst] <= tolerance_mm:
        return
    angle = float(np.degrees(np.arctan2(offsets[-1], along[-1])))
    if offsets[-1] > tolerance_mm:
        how = f"they run at {angle:.2f}° to it (gantry tilt), so "
    else:  # first and last agree: one or a few slices are shifted, not a tilt of the whole series
        how = "the positions are sheared: "
    raise GantryTiltError(
        f"the slice positions do not advance along the slice normal: {how}slice {worst} lies "
        f"{offsets[worst]:.2f} mm off the normal within its plane (tolerance {tolerance_mm:.2f} mm, half a "
        "pixel); tilted series are rejected, not resampled",
        angle,
    )


def _reject_gaps(steps: np.ndarray, z: np.ndarray) -> None:
    median = float(np.median(steps))
    gaps = np.flatnonzero(steps > GAP_FACTOR * median)
    if gaps.size:
        k = int(gaps[0])
        missing = max(1, round(float(steps[k]) / median) - 1)
        raise MissingSlicesError(
            f"{gaps.size} gap(s) in the slice positions: {steps[k]:.2f} mm between slices at {z[k]:.2f} and "
            f"{z[k + 1]:.2f} mm along the normal, {steps[k] / median:.1f} times the median spacing "
            f"{median:.3f} mm; about {missing} slice(s) missing"
        )


def _reject_irregular_spacing(steps: np.ndarray) -> None:
    median = float(np.median(steps))
    tolerance = min(SPACING_TOLERANCE_MM, SPACING_TOLERANCE_FRACTION * median)
    deviation = np.abs(steps - median)
    if float(deviation.max()) > tolerance:
        bad = int(np.count_nonzero(deviation > tolerance))
        raise NonUniformSpacingError(
            f"the slice spacing is not uniform: steps from {steps.min():.3f} to {steps.max():.3f} mm (median "
            f"{median:.3f} mm), {bad} beyond the tolerance of {tolerance:.3f} mm (0.1 mm or 5 % of the median, "
            "whichever is smaller)"
        )
