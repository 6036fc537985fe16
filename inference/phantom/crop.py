"""Cut series: a generated phantom cut below (or above) the femoral head, like the real-CT benchmark's copies.

``crop_phantom(source_dir, out_dir, end_below_head_top_mm)`` keeps the slices of a generated phantom from the
head end of the scan down to ``femoral head top - end_below_head_top_mm`` (a negative value cuts above the head
top) and writes them as a new series:

* ``out_dir/dicom/``: the kept slices' files, pixel data and geometry unchanged, with a new Series Instance UID
  and new SOP Instance UIDs (derived from the source's and the cut, so the same cut gives the same UIDs), the
  same study and frame of reference, instance numbers renumbered from 1 in the source's order and the cut in
  the Series Description;
* ``out_dir/labels.nii.gz``: the source's label map for the kept slices (affine moved to the first kept slice);
* ``out_dir/ground_truth.json``: the source's document with the series facts, structures, groups and landmarks
  recomputed for the kept slices by `ground_truth.measure_ground_truth` (the same code as for a generated
  phantom, on the cut series as written), and a ``crop`` section saying what was cut.

Cutting the written series rather than generating a shorter scan keeps what a cut copy of a real CT keeps: every
pixel of the kept slices, the partial volume and noise across the cut, the table height and the reconstruction
centre and diameter (all of which a shorter generated scan would choose differently).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom

from sarcoscreen.inference.engines.labelmap import align_to_volume
from sarcoscreen.inference.phantom.anatomy import build_anatomy
from sarcoscreen.inference.phantom.dicom_writer import phantom_uid
from sarcoscreen.inference.phantom.ground_truth import measure_ground_truth
from sarcoscreen.inference.phantom.parameters import PhantomParameterError, PhantomParameters
from sarcoscreen.inference.phantom.result import PhantomResult, software_version
from sarcoscreen.inference.series_loader import load_series

__all__ = ["crop_phantom", "cut_description"]

_TOLERANCE_MM = 1e-3
"""A slice exactly at the cut level is kept."""


def cut_description(end_below_head_top_mm: float) -> str:
    """``"130 mm below the femoral head top"`` / ``"40 mm above the femoral head top"``."""
    where = "below" if end_below_head_top_mm >= 0 else "above"
    return f"{abs(end_below_head_top_mm):g} mm {where} the femoral head top"


def crop_phantom(source_dir: Path | str, out_dir: Path | str, end_below_head_top_mm: float) -> PhantomResult:
    """Cut the phantom in `source_dir` so that it ends `end_below_head_top_mm` below the top of the femoral head
    (negative: above it) and write the cut series with its recomputed ground truth to `out_dir`.

    Returns a `PhantomResult`. `PhantomParameterError` when `source_dir` holds no phantom, `out_dir` is the source,
    the cut is not a finite number or no slice would be kept.
    """
    start = time.perf_counter()
    source = Path(source_dir)
    out = Path(out_dir)
    if not isinstance(end_below_head_top_mm, (int, float)) or not math.isfinite(end_below_head_top_mm):
        raise PhantomParameterError(f"cut {end_below_head_top_mm!r} mm must be a finite number of millimetres")
    truth_path = source / "ground_truth.json"
    if not truth_path.is_file() or not (source / "dicom").is_dir() or not (source / "labels.nii.gz").is_file():
        raise PhantomParameterError(f"{source} holds no phantom (dicom/, labels.nii.gz and ground_truth.json)")
    if out.resolve() == source.resolve():
        raise PhantomParameterError("the cut series needs its own folder: --out is the source phantom's folder")
    source_truth: dict[str, Any] = json.loads(truth_path.read_text())
    if not source_truth.get("synthetic"):
        raise PhantomParameterError(f"{truth_path} is not a synthetic phantom's ground truth")
    params = PhantomParameters.from_dict(source_truth["parameters"])
    landmarks = build_anatomy(params).landmarks
    head_top = landmarks.femoral_head_top
    cut_z = head_top - float(end_below_head_top_mm)

    files = sorted((source / "dicom").glob("*.dcm"))
    headers = [(path, pydicom.dcmread(path, stop_before_pixels=True)) for path in files]
    kept = [(path, ds) for path, ds in headers if float(ds.ImagePositionPatient[2]) >= cut_z - _TOLERANCE_MM]
    if not kept:
        top = max(float(ds.ImagePositionPatient[2]) for _, ds in headers)
        raise PhantomParameterError(f"a cut {cut_description(end_below_head_top_mm)} (z = {cut_z:.1f} mm) keeps no "
                                    f"slice: the scan ends at z = {top:.1f} mm")
    label = f"cut/{end_below_head_top_mm:g}"
    source_series = str(kept[0][1].SeriesInstanceUID)
    series_uid = phantom_uid(f"{source_series}/{label}/series")
    out.mkdir(parents=True, exist_ok=True)
    dicom_dir = out / "dicom"
    dicom_dir.mkdir(exist_ok=True)
    for old in dicom_dir.glob("CT*.dcm"):
        old.unlink()
    kept.sort(key=lambda item: int(item[1].InstanceNumber))
    for number, (path, _) in enumerate(kept, start=1):
        ds = pydicom.dcmread(path)
        uid = phantom_uid(f"{ds.SOPInstanceUID}/{label}")
        ds.SOPInstanceUID = uid
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.SeriesInstanceUID = series_uid
        ds.InstanceNumber = number
        where = "below" if end_below_head_top_mm >= 0 else "above"
        ds.SeriesDescription = f"{ds.SeriesDescription} cut {abs(end_below_head_top_mm):g}mm {where} head top"[:64]
        ds.save_as(dicom_dir / f"CT{number:06d}.dcm", enforce_file_format=True)

    labels_path = out / "labels.nii.gz"
    _cut_label_map(source / "labels.nii.gz", labels_path, cut_z)
    volume = load_series(dicom_dir)
    image = nib.load(labels_path)
    labels = align_to_volume(np.asarray(image.dataobj), image.affine, volume)
    truth_part = measure_ground_truth(volume, labels, params.height_m, landmarks, software_version())

    z_all = volume.positions[:, 2]
    series = dict(source_truth["series"])
    series.update({
        "series_instance_uid": series_uid,
        "slices": int(volume.shape[0]),
        "z_range_mm": [float(z_all.min()), float(z_all.max())],
    })
    seconds = time.perf_counter() - start
    ground_truth: dict[str, Any] = {
        **{key: value for key, value in source_truth.items() if key not in truth_part},
        "series": series,
        "crop": {
            "source_series_instance_uid": source_series,
            "end_below_femoral_head_top_mm": float(end_below_head_top_mm),
            "description": f"cut {cut_description(end_below_head_top_mm)}: the slices from the head end of the "
                           "scan down to this level are kept",
            "femoral_head_top_z_mm": round(head_top, 3),
            "cut_z_mm": round(cut_z, 3),
            "source_slices": len(headers),
            "slices": len(kept),
            "seconds": round(seconds, 2),
        },
        **truth_part,
    }
    gt_path = out / "ground_truth.json"
    gt_path.write_text(json.dumps(ground_truth, indent=2) + "\n")
    return PhantomResult(out, dicom_dir, labels_path, gt_path, ground_truth, len(kept), seconds)


def _cut_label_map(source: Path, target: Path, cut_z: float) -> None:
    """Write the slices of the label map at `source` at or above patient z `cut_z` to `target`."""
    image = nib.load(source)
    affine = image.affine
    data = np.asarray(image.dataobj)
    # RAS and LPS share z: the patient z of every slice along the label map's third axis.
    z = affine[2, 2] * np.arange(data.shape[2]) + affine[2, 3]
    keep = np.flatnonzero(z >= cut_z - _TOLERANCE_MM)
    first = int(keep.min())
    cut = np.ascontiguousarray(data[:, :, first:int(keep.max()) + 1])
    moved = affine.copy()
    moved[:3, 3] = affine[:3, :3] @ np.array([0.0, 0.0, float(first)]) + affine[:3, 3]
    out = nib.Nifti1Image(cut, moved)
    out.set_qform(moved, code=1)
    out.set_sform(moved, code=1)
    out.header.set_xyzt_units("mm")
    nib.save(out, target)
