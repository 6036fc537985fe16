"""`simulate_ct`: a CT series (DICOM + labels.nii.gz + ground_truth.json) from one real annotation folder.

The output layout is the digital phantom's (`sarcoscreen.inference.phantom`), so ``sarcoscreen train`` reads it
unchanged. Steps: read the annotation (`source`), choose the slices (slab, crop), paint tissue HU on the
annotation's grid (`paint`, `tissue_model`, `pelvic_organs`), optional metal hips, in-plane PSF (0.6 mm, the
phantom's system blur), the slice profile and resampling to the protocol's grid, noise, optional randomisation,
write. Labels: the annotation split left/right in catalogue values (`source.catalogue_labels`), resampled by
nearest neighbour; metal voxels are label 0 (the bone they replace is gone).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from pydicom.uid import CTImageStorage
from scipy import ndimage

from sarcoscreen.inference.catalogue import Side
from sarcoscreen.inference.phantom.anatomy import Landmarks
from sarcoscreen.inference.phantom.ct_values import metal_streaks, noise_slice, to_stored_hu
from sarcoscreen.inference.phantom.dicom_writer import SeriesGeometry, SeriesUids, SeriesWriter, phantom_uid
from sarcoscreen.inference.phantom.geometry import Grid
from sarcoscreen.inference.phantom.ground_truth import measure_ground_truth
from sarcoscreen.inference.phantom.parameters import Fov, PhantomParameterError, PhantomParameters
from sarcoscreen.inference.phantom.realistic import tissue_model as tm
from sarcoscreen.inference.phantom.realistic.paint import compartments, paint_slab
from sarcoscreen.inference.phantom.realistic.parameters import Crop, SimulationParameters
from sarcoscreen.inference.phantom.realistic.pelvic_organs import OrganLevels, place_organs
from sarcoscreen.inference.phantom.realistic.randomise import apply_gamma_bias, draw_randomisation
from sarcoscreen.inference.phantom.realistic.source import AnnotationSource, catalogue_labels, read_annotation
from sarcoscreen.inference.phantom.result import PhantomResult, software_version
from sarcoscreen.inference.volume import SeriesInfo, SliceRef, Volume

__all__ = ["SimulatedSeries", "SimulatedSlab", "crop_levels", "simulate_ct", "simulate_hu", "simulate_series"]

PSF_SIGMA_MM = 0.6
_FOV = {Crop.NONE: Fov.ABDOMEN, Crop.ABDOMEN_PELVIS: Fov.ABDOMEN, Crop.HIP: Fov.HIP}


def crop_levels(source: AnnotationSource, crop: Crop) -> tuple[float, float]:
    """(bottom, top) patient z of the crop (`PhantomParameterError` when its landmark is not in the label map)."""
    z = source.z_mm
    if crop is Crop.NONE:
        return float(z.min()), float(z.max())
    lt = source.lesser_trochanter_z
    if lt is None:
        raise PhantomParameterError(f"{source.name}: no lesser trochanter in the label map to crop at")
    if crop is Crop.ABDOMEN_PELVIS:
        return lt, float(z.max())
    crest = source.landmark_z("iliac_crest")
    if crest is None:
        raise PhantomParameterError(f"{source.name}: no iliac crest in the label map to crop at")
    return lt - 50.0, crest + 20.0


class SimulatedSlab:
    """HU and annotation values of the chosen slices on the annotation's grid (before resampling)."""

    def __init__(self, source: AnnotationSource, params: SimulationParameters) -> None:
        self.source = source
        bottom, top = crop_levels(source, params.crop)
        ks = np.flatnonzero((source.z_mm >= bottom - 1e-3) & (source.z_mm <= top + 1e-3))
        if params.source_slices is not None:
            a, b = params.source_slices
            ks = ks[(ks >= a) & (ks < b)]
        if ks.size < 2:
            raise PhantomParameterError("the slab and crop leave fewer than 2 slices")
        self.k0, self.k1 = int(ks[0]), int(ks[-1]) + 1
        self.labels = source.labels[self.k0:self.k1]
        self.z_mm = source.z_mm[self.k0:self.k1]
        _nz, ny, nx = self.labels.shape
        ox, oy, _ = source.origin
        self.x_mm = ox + source.spacing[2] * np.arange(nx)
        self.y_mm = oy + source.spacing[1] * np.arange(ny)
        self.metal = np.zeros(self.labels.shape, bool)


def simulate_hu(source: AnnotationSource, params: SimulationParameters) -> tuple[SimulatedSlab, np.ndarray, dict]:
    """Noise-free HU on the annotation grid (PSF applied), the slab, and the organ masks by name."""
    slab = SimulatedSlab(source, params)
    body = source.body[slab.k0:slab.k1]
    comps = compartments(slab.labels, body)
    midline = source.case.midline_x_mm or 0.0
    head = source.landmark_z("femoral_head")
    bottom = source.landmark_z("pelvis_bottom", highest=False)
    organs = np.zeros(slab.labels.shape, np.uint8)
    if head is not None and bottom is not None:
        organs = place_organs(slab.labels, comps.interior, slab.z_mm, slab.x_mm, slab.y_mm, midline,
                              OrganLevels(head, bottom), params.sex)
    base = tm.MUSCLE_FAT_FRACTION_002 if params.fatty_infiltration is None else params.fatty_infiltration
    fractions = {int(k): min(1.0, float(v) * params.infiltration_scale) for k, v in base.items()}
    muscle_offset = fat_offset = 0.0
    if params.randomise:
        r = draw_randomisation(params.seed)
        fractions = {k: min(1.0, v * r.infiltration_factor.get(k, 1.0)) for k, v in fractions.items()}
        muscle_offset, fat_offset = r.muscle_offset_hu, r.fat_offset_hu
    hu = paint_slab(slab.labels, comps, organs, slab.z_mm, slab.x_mm, slab.y_mm, fractions, params.seed,
                    params.protocol.contrast, muscle_offset, fat_offset,
                    bowel_above_z=None if head is None else head + 50.0)
    for side in params.metal_hip.sides:
        _metal_hip(slab, hu, side)
    sigma_px = PSF_SIGMA_MM / source.spacing[2]
    for k in range(hu.shape[0]):
        hu[k] = ndimage.gaussian_filter(hu[k], sigma_px, mode="nearest", truncate=3.0)
    names = {"bladder": 1, "rectum": 2, "prostate": 3, "uterus": 4, "artery": 5, "vein": 6}
    masks = {name: organs == code for name, code in names.items()}
    masks.update({"skin": comps.skin, "subcutaneous": comps.subcutaneous, "interior": comps.interior})
    return slab, hu, masks


def _metal_hip(slab: SimulatedSlab, hu: np.ndarray, side: str) -> None:
    """A total hip: head sphere (r 22 mm) at the femoral head centre, cup shell (r 22-27 mm) in the acetabulum,
    stem (r 7 mm) along the femur's section centroids down to 120 mm below the head centre."""
    src = slab.source
    lm = src.case.landmark("femoral_head", Side(side))
    if lm is None:
        return
    on_side = src.left if side == "left" else ~src.left
    femur = (src.labels[lm.slice_index] == 2) & on_side
    if not femur.any():
        return
    xx, yy = np.meshgrid(slab.x_mm, slab.y_mm)
    cx, cy, cz = float(xx[femur].mean()), float(yy[femur].mean()), lm.z_mm
    for k, z in enumerate(slab.z_mm):
        dz = float(z) - cz
        r2 = (xx - cx) ** 2 + (yy - cy) ** 2 + dz**2
        metal = r2 <= 22.0**2
        metal |= (r2 <= 27.0**2) & (r2 > 23.0**2) & (dz > -5.0) & (slab.labels[k] == 1)
        if -120.0 < dz < 0.0:
            bone = (slab.labels[k] == 2) & on_side
            if bone.any():
                bx, by = float(xx[bone].mean()), float(yy[bone].mean())
                metal |= (xx - bx) ** 2 + (yy - by) ** 2 <= 7.0**2
        slab.metal[k] |= metal
        hu[k][metal] = tm.ORGAN_HU["metal"]


def _output_grid(slab: SimulatedSlab, params: SimulationParameters) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p = params.protocol
    src = slab.source
    field = src.spacing[2] * slab.labels.shape[2]
    n_xy = round(field / p.pixel_mm)
    ps = field / n_xy
    x0 = slab.x_mm[0] - 0.5 * src.spacing[2] + 0.5 * ps
    y0 = slab.y_mm[0] - 0.5 * src.spacing[1] + 0.5 * ps
    n_z = math.floor((slab.z_mm[-1] - slab.z_mm[0]) / p.slice_mm + 1e-6) + 1
    zs = slab.z_mm[0] + p.slice_mm * np.arange(n_z)
    return x0 + ps * np.arange(n_xy), y0 + ps * np.arange(n_xy), zs


def _resample(slab: SimulatedSlab, hu: np.ndarray, labels: np.ndarray, params: SimulationParameters,
              extra_blur_mm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
    p = params.protocol
    src_dz = slab.source.spacing[0]
    x, y, zs = _output_grid(slab, params)
    ps = float(x[1] - x[0])
    extra_z = math.sqrt(max(p.thickness_mm**2 - src_dz**2, 0.0)) / 2.355 / src_dz
    aa = math.sqrt(max(ps**2 - slab.source.spacing[2] ** 2, 0.0)) / 2.355 / slab.source.spacing[2]
    sigma_xy = math.hypot(aa, extra_blur_mm / slab.source.spacing[2])
    if extra_z > 0 or sigma_xy > 0:
        hu = ndimage.gaussian_filter(hu, (extra_z, sigma_xy, sigma_xy), mode="nearest", truncate=3.0)
    fz = (zs - slab.z_mm[0]) / src_dz
    i0 = np.clip(np.floor(fz).astype(int), 0, hu.shape[0] - 1)
    i1 = np.clip(i0 + 1, 0, hu.shape[0] - 1)
    w = (fz - i0).astype(np.float32)[:, None, None]
    nearest = np.clip(np.rint(fz).astype(int), 0, hu.shape[0] - 1)
    cols = np.clip(np.rint((x - slab.x_mm[0]) / slab.source.spacing[2]).astype(int), 0, hu.shape[2] - 1)
    rows = np.clip(np.rint((y - slab.y_mm[0]) / slab.source.spacing[1]).astype(int), 0, hu.shape[1] - 1)
    fx = np.clip((x - slab.x_mm[0]) / slab.source.spacing[2], 0, hu.shape[2] - 1)
    fy = np.clip((y - slab.y_mm[0]) / slab.source.spacing[1], 0, hu.shape[1] - 1)
    out = np.empty((len(zs), len(y), len(x)), np.float32)
    for k in range(len(zs)):
        plane = (1 - w[k]) * hu[i0[k]] + w[k] * hu[i1[k]]
        gy, gx = np.meshgrid(fy, fx, indexing="ij")
        out[k] = ndimage.map_coordinates(plane, [gy, gx], order=1, mode="nearest")
    out_labels = labels[nearest][:, rows][:, :, cols]
    metal = slab.metal[nearest][:, rows][:, :, cols]
    out_labels[metal] = 0
    return out, out_labels, zs, (x, y, metal)


@dataclass(frozen=True)
class SimulatedSeries:
    """A simulated series in memory: HU (float32, noise and randomisation applied) and catalogue labels on the
    protocol's grid (slices by increasing z, rows posterior-going, columns patient-left-going)."""

    source: AnnotationSource
    hu: np.ndarray
    labels: np.ndarray
    x_mm: np.ndarray
    y_mm: np.ndarray
    z_mm: np.ndarray

    @property
    def pixel_mm(self) -> float:
        return float(self.x_mm[1] - self.x_mm[0])

    def volume(self, slice_mm: float) -> Volume:
        """The series as a `Volume` (HU rounded to int16, no DICOM written): what ``simulate_ct`` writes and a
        loader would read back."""
        n = self.hu.shape[0]
        positions = np.column_stack([np.full(n, self.x_mm[0]), np.full(n, self.y_mm[0]), self.z_mm])
        ps = self.pixel_mm
        return Volume(hu=to_stored_hu(self.hu), spacing=(slice_mm, ps, ps), row_direction=(1.0, 0.0, 0.0),
                      column_direction=(0.0, 1.0, 0.0), positions=positions.astype(np.float64),
                      slices=tuple(SliceRef("", "") for _ in range(n)), info=SeriesInfo("", "", ""))


def simulate_series(source: AnnotationSource, params: SimulationParameters) -> SimulatedSeries:
    """Simulate one series from an annotation in memory (see the module docstring for the steps)."""
    slab, hu, _ = simulate_hu(source, params)
    randomisation = draw_randomisation(params.seed) if params.randomise else None
    labels = catalogue_labels(slab.labels, source.left)
    hu_out, labels_out, zs, (x, y, metal) = _resample(
        slab, hu, labels, params, randomisation.extra_blur_mm if randomisation else 0.0)
    del hu
    p = params.protocol
    ps = float(x[1] - x[0])
    noise_sd = tm.NOISE_HU_REF * p.noise_scale * math.sqrt(tm.NOISE_REF_VOXEL_MM3 / (ps * ps * p.thickness_mm))
    if randomisation:
        noise_sd *= randomisation.noise_factor
    for k in range(hu_out.shape[0]):
        # noise_slice's kernel correlates over ~0.6 px: scaled to the measured SD in 7x7 windows.
        hu_out[k] += noise_slice(hu_out.shape[1:], params.seed, k, noise_sd)
        if metal[k].any():
            hu_out[k] += metal_streaks(((0, metal[k]),), Grid(x, y, float(zs[k])), params.seed)
    if randomisation:
        hu_out = apply_gamma_bias(hu_out, randomisation, params.seed)
    return SimulatedSeries(source, hu_out, labels_out, x, y, zs)


def simulate_ct(annotation_dir: Path | str, params: SimulationParameters, out_dir: Path | str) -> PhantomResult:
    """Simulate one series from `annotation_dir` into `out_dir` (``dicom/``, ``labels.nii.gz``,
    ``ground_truth.json``)."""
    start = time.perf_counter()
    source = read_annotation(annotation_dir)
    series = simulate_series(source, params)
    stored = to_stored_hu(series.hu)
    return _write(Path(out_dir), source, params, stored, series.labels, series.x_mm, series.y_mm, series.z_mm,
                  start)


def _landmarks(source: AnnotationSource) -> Landmarks:
    """The phantom's `Landmarks` from the label map; levels a label map cannot give are NaN (reported as null)."""
    nan = float("nan")

    def z(name: str, highest: bool = True) -> float:
        value = source.landmark_z(name, highest=highest)
        return nan if value is None else value

    centre = z("femoral_head")
    return Landmarks(sole=nan, ankle_joint=nan, knee_joint=nan,
                     lesser_trochanter=source.lesser_trochanter_z if source.lesser_trochanter_z is not None else nan,
                     ischial_tuberosity=z("pelvis_bottom", highest=False), symphysis_bottom=nan,
                     greater_trochanter=nan, symphysis_top=nan, femoral_head_centre=centre,
                     femoral_head_top=z("femoral_head_top"), acetabular_roof=nan, s1_top=nan, asis=nan,
                     iliac_crest_top=z("iliac_crest"))


def _write(out: Path, source: AnnotationSource, params: SimulationParameters, stored: np.ndarray,
           labels: np.ndarray, x: np.ndarray, y: np.ndarray, zs: np.ndarray, start: float) -> PhantomResult:
    out.mkdir(parents=True, exist_ok=True)
    dicom_dir = out / "dicom"
    if dicom_dir.exists():
        for old in dicom_dir.glob("CT*.dcm"):
            old.unlink()
    p = params.protocol
    n, rows, cols = stored.shape
    ps = float(x[1] - x[0])
    positions = np.column_stack([np.full(n, x[0]), np.full(n, y[0]), zs]).round(4)
    geometry = SeriesGeometry(rows, cols, ps, p.slice_mm, (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), positions)
    fingerprint = params.fingerprint(source.name)
    base = f"anatomy/{fingerprint}"
    uids = SeriesUids(phantom_uid(f"{base}/study"), phantom_uid(f"{base}/series"),
                      phantom_uid(f"{base}/frame-of-reference"), base)
    proxy = PhantomParameters(fov=_FOV[params.crop], sex=params.sex, height_m=params.height_m,
                              slice_mm=p.slice_mm, matrix=max(64, min(cols, 1024)), seed=params.seed,
                              contrast=p.contrast, age_years=60)
    software = software_version()
    writer = SeriesWriter(dicom_dir, proxy, geometry, uids, software, 75.0)
    ds = writer.ds
    ds.StudyDescription = f"SIMULATED CT from label map {source.name}"[:64]
    ds.SeriesDescription = f"SIMULATED {params.crop.value} {p.slice_mm:g}mm"[:64]
    ds.PatientID = f"SIM-{params.seed}-{fingerprint[:8]}"
    ds.PatientAge = ""
    ds.SliceThickness = f"{p.thickness_mm:g}"
    ds.ImageComments = ("SIMULATED CT from a real label map - not a patient's CT. Ground truth in labels.nii.gz / "
                        "ground_truth.json.")
    for k in range(n):
        writer.write(k, stored[k])
    lps = np.eye(4)
    lps[:3, 0] = (ps, 0.0, 0.0)
    lps[:3, 1] = (0.0, ps, 0.0)
    lps[:3, 2] = (0.0, 0.0, p.slice_mm)
    lps[:3, 3] = positions[0]
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    image = nib.Nifti1Image(np.ascontiguousarray(labels.transpose(2, 1, 0)), affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm")
    nib.save(image, out / "labels.nii.gz")
    info = SeriesInfo(study_instance_uid=uids.study, series_instance_uid=uids.series,
                      frame_of_reference_uid=uids.frame_of_reference, patient_sex=params.sex,
                      patient_size_m=params.height_m, body_part_examined=ds.BodyPartExamined,
                      slice_thickness_mm=p.thickness_mm)
    volume = Volume(hu=stored, spacing=(p.slice_mm, ps, ps), row_direction=(1.0, 0.0, 0.0),
                    column_direction=(0.0, 1.0, 0.0), positions=positions.astype(np.float64),
                    slices=tuple(SliceRef(writer.sop_instance_uid(k), CTImageStorage) for k in range(n)), info=info)
    landmarks = _landmarks(source)
    truth = measure_ground_truth(volume, labels, params.height_m, landmarks, software)
    for row in truth["landmarks_mm"].values():
        if not math.isfinite(row["z_mm"]):
            row["z_mm"] = None
    seconds = time.perf_counter() - start
    document: dict[str, Any] = {
        "synthetic": True,
        "description": "SIMULATED CT from a real label map (real anatomy, simulated CT numbers); labels are the "
                       "annotation split left/right in catalogue values.",
        "generator": {"name": "sarcoscreen phantom --anatomy", "version": software, "seconds": round(seconds, 2)},
        "source": {"annotation": source.name, "slices": [int(v) for v in (zs.min(), zs.max())]},
        "parameters": params.to_dict(),
        "series": {"study_instance_uid": uids.study, "series_instance_uid": uids.series,
                   "frame_of_reference_uid": uids.frame_of_reference, "slices": n, "rows": rows, "columns": cols,
                   "pixel_spacing_mm": ps, "slice_spacing_mm": p.slice_mm, "slice_thickness_mm": p.thickness_mm,
                   "z_range_mm": [float(zs.min()), float(zs.max())], "patient_position": "HFS",
                   "body_part_examined": ds.BodyPartExamined, "dicom_folder": "dicom", "label_map": "labels.nii.gz"},
        **truth,
    }
    document["source"] = {"annotation": source.name, "z_range_mm": [float(zs.min()), float(zs.max())]}
    gt = out / "ground_truth.json"
    gt.write_text(json.dumps(document, indent=2) + "\n")
    return PhantomResult(out, dicom_dir, out / "labels.nii.gz", gt, document, n, seconds)
