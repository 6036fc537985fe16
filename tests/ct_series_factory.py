"""Crafted single-frame CT series written to disk with pydicom, with the truth the loader must recover.

`write_ct_series` writes one file per slice (random file names and InstanceNumbers unless told otherwise) and
returns a `CTSeries` that records, for every written slice, its HU, ImagePositionPatient and file, so a test can
compare the loaded `Volume` with what was written without trusting the loader's own ordering.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from sarcoscreen.inference.volume import Volume

__all__ = ["CTSeries", "assert_matches", "edit_file", "hu_pattern", "write_ct_series"]

Vector = tuple[float, float, float]


@dataclass
class CTSeries:
    """What `write_ct_series` wrote; lists are in slice order along the direction the slices were written."""

    folder: Path
    files: list[Path]
    hu: list[np.ndarray]
    positions: np.ndarray
    row_direction: Vector
    column_direction: Vector
    pixel_spacing: tuple[float, float]
    sop_instance_uids: list[str]
    series_instance_uid: str
    study_instance_uid: str
    extra: dict[str, object] = field(default_factory=dict)

    def voxel_position(self, n: int, i: int, j: int) -> np.ndarray:
        """Patient coordinates (LPS mm) of row `i`, column `j` of written slice `n` (PS3.3 C.7.6.2.1.1)."""
        return (self.positions[n] + j * self.pixel_spacing[1] * np.asarray(self.row_direction)
                + i * self.pixel_spacing[0] * np.asarray(self.column_direction))


def hu_pattern(n_slices: int, rows: int, columns: int, seed: int = 0, low: int = -1024, high: int = 1500
               ) -> list[np.ndarray]:
    """HU slices with a body-like ellipse, air outside, and random texture: every slice differs."""
    rng = np.random.default_rng(seed)
    ii, jj = np.mgrid[:rows, :columns]
    inside = ((ii - rows / 2) / (rows * 0.4)) ** 2 + ((jj - columns / 2) / (columns * 0.45)) ** 2 <= 1
    slices = []
    for _ in range(n_slices):
        hu = np.full((rows, columns), -1000, np.int32)
        hu[inside] = rng.integers(low, high, size=int(inside.sum()))
        hu[0, 0], hu[-1, -1] = low, high - 1  # the range ends are always present
        slices.append(hu)
    return slices


def write_ct_series(
    folder: Path,
    n_slices: int = 6,
    rows: int = 12,
    columns: int = 10,
    *,
    slice_spacing: float = 2.5,
    pixel_spacing: tuple[float, float] = (0.7, 0.8),
    origin: Vector = (-12.0, -30.0, 100.0),
    row_direction: Vector = (1.0, 0.0, 0.0),
    column_direction: Vector = (0.0, 1.0, 0.0),
    step_direction: Vector | None = None,
    positions: Sequence[Vector] | None = None,
    hu: Sequence[np.ndarray] | None = None,
    slopes: float | Sequence[float] = 1.0,
    intercepts: float | Sequence[float] = -1024.0,
    signed: bool = False,
    bits_allocated: int = 16,
    bits_stored: int = 12,
    shuffle: bool = True,
    seed: int = 0,
    series_instance_uid: str | None = None,
    transform: Callable[[Dataset, int], None] | None = None,
    encode: Callable[[Dataset], None] | None = None,
    **attributes: object,
) -> CTSeries:
    """Write `n_slices` CT Image Storage files to `folder` and return what was written.

    Slice ``n`` lies at ``origin + n * slice_spacing * step_direction`` (the slice normal unless given) or at
    ``positions[n]``. HU (``hu_pattern`` unless given) are stored as ``(hu - intercept) / slope``, which must be
    integers within the stored range. `transform(ds, n)` edits each data set before writing, `encode(ds)` may
    compress it; `attributes` are set on every data set.
    """
    folder.mkdir(parents=True, exist_ok=True)
    row, col = np.asarray(row_direction, float), np.asarray(column_direction, float)
    normal = np.cross(row, col)
    step = normal if step_direction is None else np.asarray(step_direction, float)
    if positions is None:
        points = np.array([np.asarray(origin) + n * slice_spacing * step for n in range(n_slices)])
    else:
        points = np.asarray(positions, float)
    values = list(hu) if hu is not None else hu_pattern(n_slices, rows, columns, seed)
    slope_list = [float(slopes)] * n_slices if np.isscalar(slopes) else [float(s) for s in slopes]  # type: ignore[arg-type]
    intercept_list = ([float(intercepts)] * n_slices if np.isscalar(intercepts)  # type: ignore[arg-type]
                      else [float(b) for b in intercepts])  # type: ignore[union-attr]
    rng = np.random.default_rng(seed + 1)
    numbers = rng.permutation(n_slices) + 1 if shuffle else np.arange(1, n_slices + 1)
    series_uid = series_instance_uid or generate_uid()
    study_uid, for_uid = generate_uid(), generate_uid()
    files, uids = [], []
    for n in range(n_slices):
        stored = (values[n] - intercept_list[n]) / slope_list[n]
        if not np.all(stored == np.round(stored)):
            raise ValueError(f"slice {n}: HU are not integer stored values with this rescale")
        dtype = np.dtype(f"{'i' if signed else 'u'}{bits_allocated // 8}")
        lo, hi = (-(1 << (bits_stored - 1)), (1 << (bits_stored - 1)) - 1) if signed else (0, (1 << bits_stored) - 1)
        if stored.min() < lo or stored.max() > hi:
            raise ValueError(f"slice {n}: stored values {stored.min()}..{stored.max()} outside {lo}..{hi}")
        ds = _dataset(stored.astype(dtype), signed, bits_allocated, bits_stored)
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, for_uid
        ds.InstanceNumber = int(numbers[n])
        ds.ImagePositionPatient = [_ds(v) for v in points[n]]
        ds.ImageOrientationPatient = [_ds(v) for v in (*row, *col)]
        ds.PixelSpacing = [_ds(v) for v in pixel_spacing]
        ds.SliceThickness = _ds(slice_spacing)
        ds.RescaleSlope, ds.RescaleIntercept = _ds(slope_list[n]), _ds(intercept_list[n])
        for keyword, value in attributes.items():
            setattr(ds, keyword, value)
        if transform is not None:
            transform(ds, n)
        if encode is not None:
            encode(ds)
        name = f"{rng.integers(1 << 40):011x}.dcm" if shuffle else f"slice{n:04d}.dcm"
        path = folder / name
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
        uids.append(ds.SOPInstanceUID)
    return CTSeries(folder, files, [np.asarray(v) for v in values], points, tuple(row), tuple(col),  # type: ignore[arg-type]
                    pixel_spacing, uids, series_uid, study_uid)


def assert_matches(volume: Volume, series: CTSeries, atol_mm: float = 1e-4) -> None:
    """Every written slice is in the volume with its HU, SOP instance and, through `affine`, its voxel positions
    (within `atol_mm`: the affine assumes uniform spacing)."""
    assert volume.shape[0] == len(series.files)
    z = volume.slice_z_mm()
    assert np.all(np.diff(z) > 0), "slices must be sorted along the normal"
    affine = volume.affine
    rows, columns = series.hu[0].shape
    rng = np.random.default_rng(7)
    for n in range(len(series.files)):
        matches = np.flatnonzero(np.all(np.isclose(volume.positions, series.positions[n], atol=1e-4), axis=1))
        assert matches.size == 1, f"written slice {n} at {series.positions[n]} not found exactly once"
        k = int(matches[0])
        np.testing.assert_array_equal(volume.hu[k], series.hu[n])
        assert volume.slices[k].sop_instance_uid == series.sop_instance_uids[n]
        points = [(0, 0), (rows - 1, 0), (0, columns - 1), (rows - 1, columns - 1),
                  *zip(rng.integers(rows, size=5), rng.integers(columns, size=5), strict=True)]
        for i, j in points:
            mapped = affine @ np.array([k, i, j, 1.0])
            np.testing.assert_allclose(mapped[:3], series.voxel_position(n, int(i), int(j)), atol=atol_mm)


def edit_file(path: Path, change: Callable[[Dataset], None]) -> None:
    """Read `path`, apply `change`, write it back in the same transfer syntax."""
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path, enforce_file_format=True)


def _ds(value: float) -> str:
    """A DS string with enough digits for the test's exact comparisons (at most 16 characters)."""
    text = f"{value:.10g}"
    return text if len(text) <= 16 else f"{value:.8g}"


def _dataset(stored: np.ndarray, signed: bool, bits_allocated: int, bits_stored: int) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.PatientName, ds.PatientID = "Test^Crafted", "CRAFTED-1"
    ds.PatientSex, ds.PatientAge, ds.PatientSize = "F", "071Y", "1.62"
    ds.BodyPartExamined, ds.Manufacturer, ds.ConvolutionKernel = "PELVIS", "sarcoscreen tests", "B30f"
    ds.SeriesDescription, ds.StudyDescription = "crafted series", "crafted study"
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240102", "101500", "1", ""
    ds.SeriesNumber, ds.PatientPosition, ds.ReferringPhysicianName = 3, "HFS", ""
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits_allocated, bits_stored, bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.RescaleType = "HU"
    ds.PixelData = np.ascontiguousarray(stored).tobytes()
    return ds
