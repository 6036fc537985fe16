"""``sarcoscreen inspect SERIES``: load a CT series and describe what the loader made of it."""

from __future__ import annotations

import argparse

import numpy as np

from sarcoscreen.inference.series_loader import SeriesLoadError, load_series
from sarcoscreen.inference.volume import Volume

__all__ = ["describe_volume", "run_inspect"]


def describe_volume(volume: Volume) -> str:
    """A short human-readable description: geometry, HU range, series facts and loader warnings (no PHI)."""
    info = volume.info
    z = volume.slice_z_mm()
    hu = volume.hu
    sample = hu[:: max(1, hu.shape[0] // 16)]
    lines = [
        f"series        {info.series_instance_uid or '(no SeriesInstanceUID)'}",
        f"modality      {info.modality}   body part {info.body_part_examined or '-'}   "
        f"description {info.series_description or '-'}",
        f"voxels        {volume.shape[0]} slices x {volume.shape[1]} rows x {volume.shape[2]} columns ({hu.dtype})",
        f"spacing       {volume.spacing[0]:.3f} x {volume.spacing[1]:.3f} x {volume.spacing[2]:.3f} mm "
        "(slice, row, column)",
        f"extent        {z[-1] - z[0] + volume.spacing[0]:.1f} mm along the normal "
        f"{np.round(volume.normal, 3).tolist()}",
        f"HU            min {int(sample.min())}  median {float(np.median(sample)):.0f}  max {int(sample.max())}",
        f"patient       sex {info.patient_sex or 'unknown'}   size "
        f"{f'{info.patient_size_m:.2f} m' if info.patient_size_m else 'not recorded'}",
    ]
    lines += [f"warning       {w}" for w in volume.warnings]
    return "\n".join(lines)


def run_inspect(args: argparse.Namespace) -> int:
    try:
        volume = load_series(args.series, series_instance_uid=args.series_uid)
    except SeriesLoadError as exc:
        print(f"sarcoscreen: cannot load {args.series}: {exc}")
        return 1
    print(describe_volume(volume))
    return 0
