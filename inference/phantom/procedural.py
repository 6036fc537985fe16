"""The procedural phantom: a synthetic CT series of the parametric anatomy, with its exact label map and
ground-truth masses.

``make_phantom(params, out_dir)`` writes

* ``out_dir/dicom/CT######.dcm``: a CT Image Storage series, one file per slice (`dicom_writer`);
* ``out_dir/labels.nii.gz``: catalogue label values on exactly the series' voxel grid (uint8, RAS affine);
* ``out_dir/ground_truth.json``: per structure and per group (left/right/both) voxels, volume, HU and masses
  under three density rules, computed with `sarcoscreen.inference.measure` from the written files' values;
  the parameters, landmark levels and which groups are complete in the field of view (`ground_truth`).

The series is generated slice by slice with a small ring buffer for the blur along z; the pixel values and
labels are kept in memory-mapped scratch files while the series is written, so memory stays bounded (a few
slices) whatever the length of the scan. See docs/phantom.md.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from pydicom.uid import CTImageStorage

from sarcoscreen.inference.phantom.anatomy import Anatomy, Landmarks, build_anatomy
from sarcoscreen.inference.phantom.ct_values import (
    apply_texture,
    blur_sigmas,
    inplane_blur,
    metal_streaks,
    noise_slice,
    to_stored_hu,
    z_weights,
)
from sarcoscreen.inference.phantom.dicom_writer import SeriesGeometry, SeriesWriter, series_uids
from sarcoscreen.inference.phantom.geometry import Grid
from sarcoscreen.inference.phantom.ground_truth import measure_ground_truth
from sarcoscreen.inference.phantom.parameters import Fov, PatientPosition, PhantomParameters
from sarcoscreen.inference.phantom.rasterize import body_extent, rasterize_slice
from sarcoscreen.inference.phantom.result import PhantomResult, software_version
from sarcoscreen.inference.phantom.tissues import hu_table
from sarcoscreen.inference.volume import SeriesInfo, SliceRef, Volume

__all__ = [
    "LabelGrid",
    "Progress",
    "fov_z_range",
    "label_grid",
    "label_volume",
    "make_phantom",
    "nifti_affine",
    "scan_geometry",
]

Progress = Callable[[int, int], None]
"""``progress(slices_written, slices)``."""


def fov_z_range(anatomy: Anatomy) -> tuple[float, float]:
    """(bottom, top) z of the scan range of the parameters' field of view, mm."""
    lm = anatomy.landmarks
    hv = anatomy.params.height_m / 1.60
    fov = anatomy.params.fov
    if fov is Fov.HIP:
        return lm.ankle_joint - 20.0 * hv, lm.iliac_crest_top + 20.0 * hv
    if fov is Fov.ABDOMEN:
        # Where an abdomen-pelvis CT ends: just below the ischial tuberosities, 2 cm below the lesser trochanter.
        return lm.lesser_trochanter - 20.0 * hv, lm.iliac_crest_top + 50.0 * hv
    return lm.ankle_joint - 20.0 * hv, lm.knee_joint + 70.0 * hv


def scan_geometry(anatomy: Anatomy) -> SeriesGeometry:
    """The series' grid for `anatomy`: the field of view's slices, the reconstruction circle around the body and
    the orientation of the patient position. Sets ``anatomy.table_y`` (the table touches the back of the body)."""
    p = anatomy.params
    bottom, top = fov_z_range(anatomy)
    n = math.floor((top - bottom) / p.slice_mm + 1e-6) + 1
    zs = bottom + p.slice_mm * np.arange(n)
    xmin, xmax, ymin, ymax = body_extent(anatomy, zs[:: max(1, round(10.0 / p.slice_mm))])
    anatomy.table_y = _table_y(anatomy, zs, (xmin, xmax, ymin, ymax))
    ox, oy = p.offset_mm
    # The reconstruction is centred on the nominal body centre; the offset moves the patient within it.
    cx = 0.0
    cy = 0.5 * (ymin + ymax) - oy
    half = max(xmax - ox, ox - xmin, 0.5 * (ymax - ymin)) + abs(ox) + abs(oy) + 15.0
    diameter = p.fov_diameter_mm or max(500.0, 20.0 * math.ceil(2.0 * half / 20.0))
    ps = float(f"{diameter / p.matrix:.10g}")  # exactly what PixelSpacing says
    head_first = p.patient_position is PatientPosition.HFS
    row_dir = (1.0, 0.0, 0.0) if head_first else (-1.0, 0.0, 0.0)
    col_dir = (0.0, 1.0, 0.0)
    x0 = round(cx - row_dir[0] * (p.matrix / 2 - 0.5) * ps, 4)
    y0 = round(cy - (p.matrix / 2 - 0.5) * ps, 4)
    # Volume order: increasing along the normal (+z for HFS, -z for FFS).
    z_order = zs if head_first else zs[::-1]
    positions = np.column_stack([np.full(n, x0), np.full(n, y0), z_order])
    return SeriesGeometry(p.matrix, p.matrix, ps, p.slice_mm, row_dir, col_dir, positions)


def _table_y(anatomy: Anatomy, zs: np.ndarray, extent: tuple[float, float, float, float]) -> float:
    """The table top touches the most posterior skin point: found on a coarse grid (4 mm, every ~3 cm)."""
    xmin, xmax, ymin, ymax = extent
    x = np.arange(xmin - 8.0, xmax + 8.0, 4.0)
    y = np.arange(ymin - 8.0, ymax + 8.0, 4.0)
    anatomy.table_y = 1e9  # no table while probing
    deepest = -np.inf
    for z in np.linspace(zs.min(), zs.max(), max(2, int((zs.max() - zs.min()) / 30.0))):
        body = rasterize_slice(anatomy, Grid(x, y, float(z))).body
        rows = np.flatnonzero(body.any(axis=1))
        if rows.size:
            deepest = max(deepest, float(y[rows[-1]]))
    return (deepest if np.isfinite(deepest) else ymax) + 3.0


def nifti_affine(geometry: SeriesGeometry) -> np.ndarray:
    """RAS affine of the label map stored with axes (column, row, slice)."""
    lps = np.eye(4)
    lps[:3, 0] = np.asarray(geometry.row_direction) * geometry.pixel_spacing_mm
    lps[:3, 1] = np.asarray(geometry.column_direction) * geometry.pixel_spacing_mm
    lps[:3, 2] = geometry.normal * geometry.slice_spacing_mm
    lps[:3, 3] = geometry.positions[0]
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def _weight_kg(p: PhantomParameters) -> float:
    bmi = 21.0 + 0.3 * (p.fat_mm - 15.0) + 8.0 * (p.muscle_scale - 1.0) + (1.5 if p.sex == "M" else 0.0)
    return max(bmi, 15.0) * p.height_m**2


@dataclass(frozen=True, eq=False)
class LabelGrid:
    """A phantom's label map without CT: what `label_grid` returns."""

    labels: np.ndarray
    """(slices, rows, columns) uint8 catalogue labels, slices in volume order."""
    voxel_mm3: float
    z_mm: np.ndarray
    """Patient z of every slice."""
    landmarks: Landmarks


def label_grid(params: PhantomParameters, z_step_mm: float | None = None) -> LabelGrid:
    """Only the label map (no CT, no files) on the series grid, or every `z_step_mm` (coarse ground truth)."""
    anatomy = build_anatomy(params)
    geometry = scan_geometry(anatomy)
    x, y = geometry.column_x(), geometry.row_y()
    zs = geometry.positions[:, 2]
    if z_step_mm is not None:
        zs = np.arange(zs.min(), zs.max() + 1e-6, z_step_mm)
    labels = np.zeros((len(zs), geometry.rows, geometry.columns), np.uint8)
    for k, z in enumerate(zs):
        labels[k] = rasterize_slice(anatomy, Grid(x, y, float(z))).labels
    dz = z_step_mm if z_step_mm is not None else geometry.slice_spacing_mm
    return LabelGrid(labels, geometry.pixel_spacing_mm**2 * dz, np.asarray(zs, np.float64), anatomy.landmarks)


def label_volume(params: PhantomParameters, z_step_mm: float | None = None) -> tuple[np.ndarray, float]:
    """Only the label map (no CT, no files) on the series grid, or every `z_step_mm` (coarse ground truth).

    Returns (labels (slices, rows, columns) uint8, voxel volume mm^3).
    """
    grid = label_grid(params, z_step_mm)
    return grid.labels, grid.voxel_mm3


def make_phantom(params: PhantomParameters, out_dir: Path | str, progress: Progress | None = None) -> PhantomResult:
    """Generate the phantom described by `params` into `out_dir` (created; existing phantom files replaced)."""
    start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dicom_dir = out / "dicom"
    if dicom_dir.exists():
        for old in dicom_dir.glob("CT*.dcm"):
            old.unlink()
    anatomy = build_anatomy(params)
    geometry = scan_geometry(anatomy)
    uids = series_uids(params)
    software = software_version()
    writer = SeriesWriter(dicom_dir, params, geometry, uids, software, _weight_kg(params))
    n, rows, cols = geometry.slices, geometry.rows, geometry.columns
    x, y = geometry.column_x(), geometry.row_y()
    table = hu_table(fatty_infiltration=params.fatty_infiltration, contrast=params.contrast,
                     age_years=params.age_years)
    sigma_xy, sigma_z = blur_sigmas(geometry.pixel_spacing_mm, geometry.slice_spacing_mm)
    weights = z_weights(sigma_z)
    half = len(weights) // 2
    step = float(geometry.normal[2]) * geometry.slice_spacing_mm
    z0 = float(geometry.positions[0, 2])

    work = Path(tempfile.mkdtemp(prefix=".phantom-work-", dir=out))
    try:
        hu_map = np.lib.format.open_memmap(work / "hu.npy", mode="w+", dtype=np.int16, shape=(n, rows, cols))
        label_map = np.lib.format.open_memmap(work / "labels.npy", mode="w+", dtype=np.uint8, shape=(n, rows, cols))
        blurred: deque[np.ndarray] = deque(maxlen=2 * half + 1)
        pending: deque[tuple[int, np.ndarray, tuple[tuple[int, np.ndarray], ...]]] = deque()
        for k in range(-half, n + half):
            z = z0 + k * step
            grid = Grid(x, y, z)
            truth = rasterize_slice(anatomy, grid)
            tissue = apply_texture(truth.tissue, truth.fat_weight, grid, params.seed, params.fatty_infiltration)
            blurred.append(inplane_blur(table[tissue], sigma_xy))
            if 0 <= k < n:
                pending.append((k, truth.labels, truth.implants))
            centre = k - half
            if centre < 0 or len(blurred) < len(weights):
                continue
            index, labels, implants = pending.popleft()
            assert index == centre
            hu = np.zeros((rows, cols), np.float32)
            for w, s in zip(weights, blurred, strict=True):
                hu += w * s
            hu += noise_slice((rows, cols), params.seed, centre, params.noise_hu)
            if implants:
                hu += metal_streaks(implants, Grid(x, y, z0 + centre * step), params.seed)
            stored = to_stored_hu(hu)
            hu_map[centre] = stored
            label_map[centre] = labels
            writer.write(centre, stored)
            if progress is not None:
                progress(centre + 1, n)
        hu_map.flush()
        label_map.flush()

        affine = nifti_affine(geometry)
        image = nib.Nifti1Image(label_map.transpose(2, 1, 0), affine)
        image.set_qform(affine, code=1)
        image.set_sform(affine, code=1)
        image.header.set_xyzt_units("mm")
        labels_path = out / "labels.nii.gz"
        nib.save(image, labels_path)

        info = SeriesInfo(
            study_instance_uid=uids.study, series_instance_uid=uids.series,
            frame_of_reference_uid=uids.frame_of_reference, patient_sex=params.sex,
            patient_size_m=params.height_m, patient_age=f"{params.age_years:03d}Y",
            body_part_examined=writer.ds.BodyPartExamined, slice_thickness_mm=params.slice_mm,
            contrast_agent="IV contrast (synthetic)" if params.contrast else None,
        )
        volume = Volume(
            hu=hu_map, spacing=(geometry.slice_spacing_mm, geometry.pixel_spacing_mm, geometry.pixel_spacing_mm),
            row_direction=geometry.row_direction, column_direction=geometry.column_direction,
            positions=geometry.positions.copy(),
            slices=tuple(SliceRef(writer.sop_instance_uid(k), CTImageStorage) for k in range(n)),
            info=info,
        )
        truth_part = measure_ground_truth(volume, label_map, params.height_m, anatomy.landmarks, software)
        del volume
        del hu_map, label_map
    finally:
        shutil.rmtree(work, ignore_errors=True)

    seconds = time.perf_counter() - start
    z_all = geometry.positions[:, 2]
    ground_truth: dict[str, Any] = {
        "synthetic": True,
        "description": "SYNTHETIC digital phantom (a geometric caricature, not a patient). Labels are exact by "
                       "voxel centre; masses are computed from labels.nii.gz and the written DICOM HU values "
                       "exactly as sarcoscreen.inference.measure does.",
        "generator": {"name": "sarcoscreen phantom", "version": software, "seconds": round(seconds, 2)},
        "parameters": params.to_dict(),
        "anatomy_scales": anatomy.scales,
        "series": {
            "study_instance_uid": uids.study,
            "series_instance_uid": uids.series,
            "frame_of_reference_uid": uids.frame_of_reference,
            "slices": n,
            "rows": rows,
            "columns": cols,
            "pixel_spacing_mm": geometry.pixel_spacing_mm,
            "slice_spacing_mm": geometry.slice_spacing_mm,
            "z_range_mm": [float(z_all.min()), float(z_all.max())],
            "patient_position": params.patient_position.value,
            "body_part_examined": writer.ds.BodyPartExamined,
            "stored_pixels": "uint16, BitsStored 12, RescaleIntercept -1024, RescaleSlope 1",
            "dicom_folder": "dicom",
            "label_map": "labels.nii.gz",
        },
        **truth_part,
    }
    gt_path = out / "ground_truth.json"
    gt_path.write_text(json.dumps(ground_truth, indent=2) + "\n")
    return PhantomResult(out, dicom_dir, out / "labels.nii.gz", gt_path, ground_truth, n, seconds)
