"""Benchmark: the realistic simulator's CT numbers against the real CT they were calibrated on (issue 12).

    .venv/bin/python benchmarks/phantom_calibration.py [--data ../shared/data] [--seed 0]
        [--figure docs/figures/phantom-calibration.png | --no-figure] [--json out.json]

Three images, one tissue definition each:

* **real 002**: the Pelvic-Ref-002 CT with its manual label map and body mask (`pelvic-annotation/`) and the
  manual organ contours of its RT structure set;
* **real 003**: the Pelvic-Ref-003 CT (no muscle labels) with the manual contours of its RT structure set and its
  ``External`` contour as the body;
* **simulated 002**: `simulate_series` of the 002 label map with the default protocol (1 x 1 x 3 mm, the real
  series' own grid, so the same voxels are compared) and ``--seed``.

Tissues: the masks of `inference.phantom.realistic.tissue_stats` (muscle groups, bones, the unlabelled
subcutaneous and interior compartments of `paint.compartments`), every muscle label and all muscle pooled,
subcutaneous fat (-400..-50 HU voxels of the subcutaneous compartment; on 003, which has no labels to take the
compartment from, of the body 3-20 mm under the skin), interior soft tissue (-50..80 HU of the interior), the
manual femoral head contours, and bladder, prostate and rectum eroded by 2 mm in-plane - the real contours on the
real images, the simulator's own organs (placed by `pelvic_organs`, not at the real ones) on the simulated one.

Printed: per tissue median, SD and 5th-95th percentile of the three images; the values `tissue_model` calls
measured, re-measured here by the definitions its docstring gives, beside the simulated image's; per-muscle medians;
bone medians by distance from the label edge; where the simulated organs lie against the real contours. A figure of
per-tissue histograms goes to ``--figure``. Not part of the test suite; about a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from sarcoscreen.inference.labelled_ct import ANNOTATION_NAMES, LabelledCase, find_cases, load_case
from sarcoscreen.inference.phantom.realistic import SimulationParameters
from sarcoscreen.inference.phantom.realistic import tissue_model as tm
from sarcoscreen.inference.phantom.realistic.paint import Compartments
from sarcoscreen.inference.phantom.realistic.simulate import simulate_hu, simulate_series
from sarcoscreen.inference.phantom.realistic.source import read_annotation
from sarcoscreen.inference.phantom.realistic.tissue_stats import TissueStats, tissue_masks, tissue_stats
from sarcoscreen.inference.rtstruct import RTStructError, rasterise_roi, read_structure_set

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = PROJECT_ROOT.parent / "shared" / "data"
DEFAULT_FIGURE = PROJECT_ROOT / "docs" / "figures" / "phantom-calibration.png"
REAL_002, REAL_003, SIM_002 = "real 002", "real 003", "simulated 002"
IMAGES = (REAL_002, REAL_003, SIM_002)
FAT_WINDOW = (-400.0, -50.0)
SOFT_WINDOW = (-50.0, 80.0)
DENSE_HU = 80.0
GAS_HU = -400.0
"""The compartment classes of `tissue_model` (fat -400..-50, soft -50..80, dense > 80 HU; below -400 gas)."""
RECTUM_GAS_HU = -500.0
ORGAN_EROSION_MM = 2.0
SKIN_BAND_MM = (3.0, 20.0)
"""003's subcutaneous fat: body voxels this deep under the skin (in-plane), in the fat window."""
LOCAL_WINDOW_PX = 7
MUSCLES = tuple(range(5, 29))


@dataclass(frozen=True)
class Image:
    """One image and what is known on its grid."""

    name: str
    hu: np.ndarray
    body: np.ndarray
    spacing: tuple[float, float, float]
    labels: np.ndarray | None = None
    compartments: Compartments | None = None
    organs: Mapping[str, np.ndarray] | None = None
    """bladder, prostate, rectum, femoral_head_left/right: manual contours (real) or the simulator's organs."""
    z_mm: np.ndarray | None = None
    """Slice positions (mm, increasing)."""
    head_centre_z: float | None = None
    """The femoral head centre (higher of the two sides, `labelled_ct`'s landmark), for organ levels."""


# --- masks ----------------------------------------------------------------------------------------------------


def _disk(radius_px: float) -> np.ndarray:
    r = int(np.ceil(radius_px))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return (xx**2 + yy**2 <= radius_px**2)[None]


def _erode_in_plane(mask: np.ndarray, mm: float, pixel_mm: float) -> np.ndarray:
    return ndimage.binary_erosion(mask, structure=_disk(mm / pixel_mm))


def _window(hu: np.ndarray, low: float, high: float) -> np.ndarray:
    return (hu >= low) & (hu < high)


def _skin_band(body: np.ndarray, pixel_mm: float) -> np.ndarray:
    depth = np.zeros(body.shape, np.float32)
    for k in range(body.shape[0]):
        if body[k].any():
            depth[k] = ndimage.distance_transform_edt(body[k]) * pixel_mm
    low, high = SKIN_BAND_MM
    return body & (depth >= low) & (depth <= high)


def _femoral_heads(image: Image) -> np.ndarray | None:
    if not image.organs:
        return None
    heads = [image.organs[k] for k in ("femoral_head_left", "femoral_head_right") if k in image.organs]
    return np.logical_or.reduce(heads) if heads else None


def tissue_mask_builders(image: Image) -> dict[str, Callable[[], np.ndarray | None]]:
    """Per tissue, how to make its mask on `image` (``None``: not available there). Built one at a time, so the
    benchmark never holds every mask of a 512 x 512 x 163 volume at once."""
    px = image.spacing[1]
    builders: dict[str, Callable[[], np.ndarray | None]] = {}
    comps = image.compartments
    if comps is not None:
        builders["subcutaneous fat"] = lambda: comps.subcutaneous & _window(image.hu, *FAT_WINDOW)
    else:
        builders["subcutaneous fat"] = lambda: _skin_band(image.body, px) & _window(image.hu, *FAT_WINDOW)
    if image.labels is not None and comps is not None:
        labels = image.labels
        builders["muscle, pooled (5-28)"] = lambda: (labels >= 5) & (labels <= 28)
        for name, mask in tissue_masks(labels, comps).items():
            builders[name] = lambda mask=mask: mask
        builders["interior soft tissue (-50..80 HU)"] = lambda: comps.interior & _window(image.hu, *SOFT_WINDOW)
    builders["femoral heads (manual contours)"] = lambda: _femoral_heads(image)
    for organ in ("bladder", "prostate", "rectum"):
        def build(organ: str = organ) -> np.ndarray | None:
            if not image.organs or organ not in image.organs or not image.organs[organ].any():
                return None
            return _erode_in_plane(image.organs[organ], ORGAN_EROSION_MM, px)
        builders[f"{organ} (eroded 2 mm)"] = build
    return builders


TISSUE_ORDER = (
    "subcutaneous fat", "subcutaneous (unlabelled)", "interior (unlabelled)", "interior soft tissue (-50..80 HU)",
    "muscle, pooled (5-28)", "gluteal muscles", "other hip muscles", "thigh muscles", "trunk muscles",
    "pelvis (bone)", "femur (bone)", "femoral heads (manual contours)", "sacrum and spine (bone)",
    "bladder (eroded 2 mm)", "prostate (eroded 2 mm)", "rectum (eroded 2 mm)",
)


def tissue_values(images: Sequence[Image]) -> dict[str, dict[str, np.ndarray]]:
    """HU values per tissue and image (only where the tissue is defined and not empty)."""
    values: dict[str, dict[str, np.ndarray]] = {name: {} for name in TISSUE_ORDER}
    for image in images:
        for name, build in tissue_mask_builders(image).items():
            mask = build()
            if mask is not None and mask.any():
                values[name][image.name] = image.hu[mask].astype(np.float32)
    return values


# --- the values tissue_model calls measured -------------------------------------------------------------------


def local_fat_statistics(hu: np.ndarray, fat: np.ndarray) -> tuple[float, float]:
    """(median of 7x7 local means, median of 7x7 local SDs) over the fat voxels whose whole window is fat."""
    size = (1, LOCAL_WINDOW_PX, LOCAL_WINDOW_PX)
    inner = ndimage.binary_erosion(fat, structure=np.ones(size, bool))
    x = hu.astype(np.float32)
    mean = ndimage.uniform_filter(x, size)
    mean_sq = ndimage.uniform_filter(x * x, size)
    sd = np.sqrt(np.maximum(mean_sq - mean * mean, 0.0))
    return float(np.median(mean[inner])), float(np.median(sd[inner]))


def compartment_composition(hu: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    v = hu[mask].astype(np.float32)
    dense = v[v >= DENSE_HU]
    return {"gas": float((v < GAS_HU).mean()), "fat": float(_window(v, *FAT_WINDOW).mean()),
            "soft": float(_window(v, *SOFT_WINDOW).mean()), "dense": float(dense.size / v.size),
            "dense_median_hu": float(np.median(dense)) if dense.size else float("nan")}


def rectum_content(hu: np.ndarray, rectum: np.ndarray) -> dict[str, float]:
    v = hu[rectum].astype(np.float32)
    gas = v < RECTUM_GAS_HU
    return {"gas_fraction": float(gas.mean()), "content_median_hu": float(np.median(v[~gas])) if (~gas).any()
            else float("nan")}


def bone_profile(hu: np.ndarray, labels: np.ndarray, label: int) -> list[tuple[float, float]]:
    """(median, SD) per in-plane distance band from the bone label's edge (`tissue_model.BONE_BANDS_MM`)."""
    bands = np.asarray(tm.BONE_BANDS_MM)
    per_band: list[list[np.ndarray]] = [[] for _ in bands]
    for k in range(labels.shape[0]):
        bone = labels[k] == label
        if not bone.any():
            continue
        dist = ndimage.distance_transform_edt(bone)[bone]
        band = np.clip(np.searchsorted(bands, dist, side="right") - 1, 0, len(bands) - 1)
        values = hu[k][bone]
        for b in range(len(bands)):
            per_band[b].append(values[band == b])
    out = []
    for chunks in per_band:
        v = np.concatenate(chunks) if chunks else np.zeros(0)
        out.append((float(np.median(v)), float(v.std())) if v.size else (float("nan"), float("nan")))
    return out


def model_values(images: Mapping[str, Image]) -> dict[str, Any]:
    """The quantities `tissue_model`'s docstring says were measured, re-measured on each image."""
    out: dict[str, Any] = {}
    for name, image in images.items():
        row: dict[str, Any] = {}
        if image.compartments is not None:
            fat = image.compartments.subcutaneous & _window(image.hu, *FAT_WINDOW)
        else:
            fat = _skin_band(image.body, image.spacing[1]) & _window(image.hu, *FAT_WINDOW)
        row["fat_hu"], row["noise_hu"] = local_fat_statistics(image.hu, fat)
        if image.labels is not None and image.compartments is not None:
            medians = {label: float(np.median(image.hu[image.labels == label])) for label in MUSCLES
                       if (image.labels == label).any()}
            sds = {label: float(image.hu[image.labels == label].std()) for label in medians}
            row["muscle_median"], row["muscle_sd"] = medians, sds
            lean = max(medians, key=lambda k: medians[k])
            row["lean_muscle"] = (lean, medians[lean])
            organs = np.zeros(image.hu.shape, bool)
            for key in ("bladder", "prostate", "rectum"):
                if image.organs and key in image.organs:
                    organs |= image.organs[key]
            row["compartments"] = {
                "subcutaneous": compartment_composition(image.hu, image.compartments.subcutaneous),
                "interior": compartment_composition(image.hu, image.compartments.interior & ~organs)}
            row["bone_profile"] = {label: bone_profile(image.hu, image.labels, label) for label in (1, 2, 3, 4)}
        if image.organs:
            px = image.spacing[1]
            eroded = {k: _erode_in_plane(image.organs[k], ORGAN_EROSION_MM, px) for k in ("bladder", "prostate",
                                                                                       "rectum")
                      if k in image.organs and image.organs[k].any()}
            for key in ("bladder", "prostate"):
                if key in eroded and eroded[key].any():
                    row[f"{key}_hu"] = float(np.median(image.hu[eroded[key]]))
            if "rectum" in eroded and eroded["rectum"].any():
                row["rectum"] = rectum_content(image.hu, eroded["rectum"])
        out[name] = row
    return out


def organ_placement(images: Mapping[str, Image]) -> dict[str, dict[str, Any]]:
    """Per organ and image: volume and z range relative to the femoral head centre; for the simulated 002 also
    Dice and centroid offset against the real 002 contour (same grid)."""
    out: dict[str, dict[str, Any]] = {}
    real, simulated = images[REAL_002], images[SIM_002]
    for key in ("bladder", "prostate", "rectum"):
        row: dict[str, Any] = {}
        for name, image in images.items():
            mask = image.organs.get(key) if image.organs else None
            if mask is None or not mask.any() or image.z_mm is None or image.head_centre_z is None:
                continue
            ks = np.flatnonzero(mask.any(axis=(1, 2)))
            row[name] = {"cm3": float(mask.sum() * np.prod(image.spacing) / 1000.0),
                         "z_from_head_centre_mm": [float(image.z_mm[ks[0]] - image.head_centre_z),
                                                   float(image.z_mm[ks[-1]] - image.head_centre_z)]}
        a = real.organs.get(key) if real.organs else None
        b = simulated.organs.get(key) if simulated.organs else None
        if a is not None and b is not None and a.any() and b.any():
            scale = np.array(real.spacing)
            dz, dy, dx = ((np.array(ndimage.center_of_mass(b)) - np.array(ndimage.center_of_mass(a))) * scale).tolist()
            row["simulated vs real 002"] = {"dice": float(2.0 * (a & b).sum() / (a.sum() + b.sum())),
                                            "centroid_offset_xyz_mm": [dx, dy, dz]}
        out[key] = row
    return out


# --- loading --------------------------------------------------------------------------------------------------


def _external(case_rtstruct: Path | None, case: LabelledCase) -> np.ndarray | None:
    if case_rtstruct is None:
        return None
    try:
        return rasterise_roi(read_structure_set(case_rtstruct).roi("External"), case.volume)
    except RTStructError:
        return None


def load_images(data: Path, seed: int) -> tuple[dict[str, Image], dict[str, Any]]:
    """The three images (003 left out when absent) and facts about them."""
    cases = {c.name: c for c in find_cases(data)}
    files002 = cases.get("Pelvic-Ref-002")
    if files002 is None or files002.labels is None:
        raise SystemExit(f"benchmark: {data} has no Pelvic-Ref-002 CT with its annotation")
    facts: dict[str, Any] = {}
    t = time.perf_counter()
    case002 = load_case(files002)
    source = read_annotation(files002.labels.parent)
    assert case002.labels is not None
    if not np.array_equal(case002.labels, source.labels) or not np.allclose(case002.volume.slice_z_mm(),
                                                                              source.z_mm, atol=1e-3):
        raise SystemExit("benchmark: the 002 label map does not lie on the 002 series' grid")
    params = SimulationParameters(seed=seed)
    _, _, sim_masks = simulate_hu(source, params)  # the simulator's own organ masks and compartments
    sim = simulate_series(source, params)
    if sim.hu.shape != case002.volume.hu.shape or not np.allclose(sim.z_mm, source.z_mm):
        raise SystemExit("benchmark: the simulated series is not on the annotation's grid")
    comps = Compartments(sim_masks["skin"], sim_masks["subcutaneous"], sim_masks["interior"])
    spacing = tuple(float(s) for s in case002.volume.spacing)
    head002 = source.landmark_z("femoral_head")
    images = {
        REAL_002: Image(REAL_002, case002.volume.hu, source.body, spacing, source.labels, comps,  # type: ignore[arg-type]
                        dict(case002.organs), source.z_mm, head002),
        SIM_002: Image(SIM_002, sim.hu, source.body, spacing, source.labels, comps,  # type: ignore[arg-type]
                       {"bladder": sim_masks["bladder"], "prostate": sim_masks["prostate"],
                        "rectum": sim_masks["rectum"], **{k: v for k, v in case002.organs.items()
                                                          if k.startswith("femoral_head")}}, source.z_mm, head002),
    }
    files003 = cases.get("Pelvic-Ref-003")
    if files003 is not None:
        case003 = load_case(files003)
        body = _external(files003.rtstruct, case003)
        if body is None:
            body = ndimage.binary_fill_holes(case003.volume.hu > -500)
        images[REAL_003] = Image(REAL_003, case003.volume.hu, body,
                                 tuple(float(s) for s in case003.volume.spacing),  # type: ignore[arg-type]
                                 organs=dict(case003.organs), z_mm=case003.volume.slice_z_mm(),
                                 head_centre_z=max((lm.z_mm for lm in case003.landmarks if lm.name == "femoral_head"),
                                                   default=None))
        facts["003 slices"] = case003.volume.shape[0]
    facts["002 slices"] = case002.volume.shape[0]
    facts["seconds to load and simulate"] = round(time.perf_counter() - t, 1)
    return images, facts


# --- printing -------------------------------------------------------------------------------------------------


def _cell(s: TissueStats | None) -> str:
    if s is None:
        return f"{'-':>24s}"
    return f"{s.median:6.0f} {s.sd:5.0f} {s.p5:5.0f}..{s.p95:<5.0f}"


def print_tissue_table(stats: Mapping[str, Mapping[str, TissueStats]]) -> None:
    print("\nPer tissue: median  SD  p5..p95 (HU)")
    print(f"{'tissue':<36s} | {REAL_002:^24s} | {REAL_003:^24s} | {SIM_002:^24s} | sim-real 002")
    for name in TISSUE_ORDER:
        row = stats.get(name, {})
        if not row:
            continue
        diff = (f"{row[SIM_002].median - row[REAL_002].median:+6.0f}" if SIM_002 in row and REAL_002 in row
                else "     -")
        print(f"{name:<36s} | {_cell(row.get(REAL_002))} | {_cell(row.get(REAL_003))} | {_cell(row.get(SIM_002))} "
              f"| {diff}")


def _f(value: float | None, fmt: str = "6.0f") -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return f"{'-':>{fmt.split('.', maxsplit=1)[0]}s}"
    return f"{value:{fmt}}"


def print_model_values(measured: Mapping[str, Mapping[str, Any]]) -> None:
    r2, r3, s2 = (measured.get(n, {}) for n in IMAGES)
    print("\ntissue_model values (model) re-measured by its own definitions:")
    print(f"{'quantity':<52s} {'model':>8s} {REAL_002:>9s} {REAL_003:>9s} {SIM_002:>14s}")

    def row(label: str, model: float | None, key: Callable[[Mapping[str, Any]], float | None], digits: int = 1
            ) -> None:
        def get(m: Mapping[str, Any]) -> float | None:
            try:
                return key(m)
            except (KeyError, TypeError):
                return None
        cells = [_f(v, f"{w}.{digits}f") for v, w in ((model, 8), (get(r2), 9), (get(r3), 9), (get(s2), 14))]
        print(f"{label:<52s} " + " ".join(cells))

    row("fat HU (median 7x7 local mean, subcutaneous fat)", tm.FAT_HU, lambda m: m["fat_hu"])
    row("noise HU (median 7x7 local SD, same fat)", tm.NOISE_HU_REF, lambda m: m["noise_hu"])
    lean = r2.get("lean_muscle")
    lean_name = ANNOTATION_NAMES.get(lean[0], str(lean[0])) if lean else "?"
    row(f"lean muscle HU (highest muscle median: {lean_name.removesuffix('_muscle')})", tm.LEAN_MUSCLE_HU,
        lambda m: m["lean_muscle"][1])
    for comp, model in tm.COMPARTMENTS_002.items():
        model_fat = model.fat - (0.013 if comp == "subcutaneous" else 0.019)  # the model moved gas into fat
        row(f"{comp}: fat fraction (-400..-50 HU)", model_fat, lambda m, c=comp: m["compartments"][c]["fat"], 3)
        row(f"{comp}: soft-tissue fraction (-50..80 HU)", model.soft, lambda m, c=comp: m["compartments"][c]["soft"], 3)
        row(f"{comp}: dense fraction (> 80 HU)", model.dense, lambda m, c=comp: m["compartments"][c]["dense"], 3)
        row(f"{comp}: dense median HU", model.dense_hu, lambda m, c=comp: m["compartments"][c]["dense_median_hu"])
        row(f"{comp}: gas fraction (< -400 HU)", 0.013 if comp == "subcutaneous" else 0.019,
            lambda m, c=comp: m["compartments"][c]["gas"], 3)
    row("bladder HU (median, contour eroded 2 mm)", tm.ORGAN_HU["bladder"], lambda m: m["bladder_hu"])
    row("prostate HU (median, contour eroded 2 mm)", tm.ORGAN_HU["prostate"], lambda m: m["prostate_hu"])
    row("rectum gas fraction (< -500 HU)", tm.RECTUM_GAS_FRACTION, lambda m: m["rectum"]["gas_fraction"], 2)
    row("rectum non-gas content HU (median)", tm.ORGAN_HU["rectum_content"],
        lambda m: m["rectum"]["content_median_hu"])


def print_muscles(measured: Mapping[str, Mapping[str, Any]]) -> None:
    r2, s2 = measured[REAL_002], measured[SIM_002]
    print("\nPer muscle label (002): median HU model / real / simulated, SD real / simulated")
    print(f"{'label':<44s} {'model':>6s} {'real':>6s} {'sim':>6s} {'SD real':>8s} {'SD sim':>7s}")
    for label in MUSCLES:
        if label not in r2.get("muscle_median", {}):
            continue
        name = ANNOTATION_NAMES.get(label, "").removesuffix("_muscle") or "(trunk muscle)"
        print(f"{label:>2d} {name:<41s} {tm.MUSCLE_MEDIAN_002.get(label, float('nan')):6.0f} "
              f"{r2['muscle_median'][label]:6.0f} {s2['muscle_median'].get(label, float('nan')):6.0f} "
              f"{r2['muscle_sd'][label]:8.0f} {s2['muscle_sd'].get(label, float('nan')):7.0f}")


def print_bones(measured: Mapping[str, Mapping[str, Any]]) -> None:
    r2, s2 = measured[REAL_002], measured[SIM_002]
    names = {1: "pelvis", 2: "femur", 3: "sacrum", 4: "spine"}
    edges = tm.BONE_BANDS_MM
    bands = [f"{a:g}-{b:g}" for a, b in itertools.pairwise(edges)] + [f">{edges[-1]:g}"]
    print("\nBone median HU by in-plane distance from the label edge (mm): model / real 002 / simulated 002")
    print(f"{'bone':<8s} " + " ".join(f"{b:>16s}" for b in bands))
    for label, name in names.items():
        cells = []
        for band in range(len(bands)):
            model = tm.BONE_PROFILE_002[label][band][0]
            cells.append(f"{model:4.0f}/{r2['bone_profile'][label][band][0]:4.0f}/"
                         f"{s2['bone_profile'][label][band][0]:4.0f}")
        print(f"{name:<8s} " + " ".join(f"{c:>16s}" for c in cells))


def print_placement(placement: Mapping[str, Mapping[str, Any]]) -> None:
    print("\nPelvic organs: volume (cm3) and z range (mm from the femoral head centre); simulated 002 against the "
          "real 002 contour (centroid offset simulated - real: x to the patient's left, y posterior, z up)")
    print(f"{'organ':<9s} " + " ".join(f"{n:>22s}" for n in IMAGES) + f" {'Dice':>5s} {'offset x/y/z (mm)':>18s}")
    for key, row in placement.items():
        cells = []
        for name in IMAGES:
            if name in row:
                lo, hi = row[name]["z_from_head_centre_mm"]
                cells.append(f"{row[name]['cm3']:5.0f} cm3 {lo:+4.0f}..{hi:+4.0f}")
            else:
                cells.append("-")
        versus = row.get("simulated vs real 002")
        tail = (f" {versus['dice']:5.2f} {'/'.join(f'{v:+.0f}' for v in versus['centroid_offset_xyz_mm']):>18s}"
                if versus else "")
        print(f"{key:<9s} " + " ".join(f"{c:>22s}" for c in cells) + tail)


# --- figure ---------------------------------------------------------------------------------------------------

FIGURE_TISSUES = {
    "subcutaneous fat": (-200, 0), "interior (unlabelled)": (-250, 300), "muscle, pooled (5-28)": (-150, 150),
    "gluteal muscles": (-150, 150), "thigh muscles": (-150, 150), "trunk muscles": (-150, 150),
    "pelvis (bone)": (-200, 1600), "femur (bone)": (-200, 1600), "femoral heads (manual contours)": (-200, 1600),
    "bladder (eroded 2 mm)": (-60, 80), "prostate (eroded 2 mm)": (-40, 120), "rectum (eroded 2 mm)": (-1000, 200),
}
COLOURS = {REAL_002: "#1f77b4", REAL_003: "#ff7f0e", SIM_002: "#2ca02c"}


def draw_figure(values: Mapping[str, Mapping[str, np.ndarray]], path: Path) -> None:
    """Per-tissue HU histograms (density; values outside the panel's range are left out and counted in the legend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 4, figsize=(16, 10.5))
    for ax, (name, (low, high)) in zip(axes.flat, FIGURE_TISSUES.items(), strict=True):
        width = max(1, round((high - low) / 80))
        bins = np.arange(low, high + width, width) - 0.5  # whole HU per bin: no comb from integer CT numbers
        missing = []
        for image in IMAGES:
            v = values.get(name, {}).get(image)
            if v is None:
                if image == SIM_002 or (image == REAL_003 and "eroded" in name):
                    missing.append(image)
                continue
            outside = float(((v < low) | (v > high)).mean())
            note = f", {100 * outside:.0f} % outside" if outside >= 0.005 else ""
            ax.hist(v, bins=bins, density=True, histtype="step", lw=1.6, color=COLOURS[image],
                    ls="--" if image == SIM_002 else "-", label=f"{image} (median {np.median(v):.0f}{note})")
        for i, image in enumerate(missing):
            ax.text(0.02, 0.95 - 0.07 * i, f"{image}: no voxels", transform=ax.transAxes, fontsize=7,
                    color=COLOURS[image], va="top")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("HU")
        ax.set_yticks([])
        ax.legend(fontsize=7, loc="upper right")
    fig.suptitle("Realistic simulator calibration: real Pelvic-Ref-002 and -003 CT, simulated 002 on the same voxels "
                 "as real 002 (003 has no muscle labels; organs: real contours vs the simulator's own organs)",
                 fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


# --- main -----------------------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"real CT data (default {DEFAULT_DATA})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated series (default 0)")
    parser.add_argument("--figure", type=Path, default=DEFAULT_FIGURE, help=f"histograms (default {DEFAULT_FIGURE})")
    parser.add_argument("--no-figure", action="store_true", help="do not draw the figure")
    parser.add_argument("--json", type=Path, help="write every number to this JSON file")
    args = parser.parse_args(argv)

    images, facts = load_images(args.data, args.seed)
    values = tissue_values(list(images.values()))
    stats = {name: {image: TissueStats.of(v) for image, v in row.items()} for name, row in values.items()}
    # tissue_stats on the shared masks: the same numbers for the label-map tissues (a cross-check of the masks).
    shared = tissue_masks(images[REAL_002].labels, images[REAL_002].compartments)  # type: ignore[arg-type]
    for image in (REAL_002, SIM_002):
        for name, s in tissue_stats(images[image].hu, shared).items():
            assert abs(s.median - stats[name][image].median) < 1e-3, name
    del shared
    measured = model_values(images)
    placement = organ_placement(images)

    print(f"Phantom calibration: {', '.join(f'{k} {v}' for k, v in facts.items())}; simulated with seed {args.seed}")
    print_tissue_table(stats)
    print_model_values(measured)
    print_muscles(measured)
    print_bones(measured)
    print_placement(placement)
    if not args.no_figure:
        draw_figure(values, args.figure)
        print(f"\nfigure: {args.figure}")
    if args.json:
        document = {"facts": facts, "seed": args.seed,
                    "tissues": {n: {i: asdict(s) for i, s in row.items()} for n, row in stats.items() if row},
                    "model_values": measured, "organ_placement": placement}
        args.json.write_text(json.dumps(_jsonable(document), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
