"""``sarcoscreen inspect SERIES``: load a CT series and describe what the loader made of it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from sarcoscreen.node.commands.command import SubParsers
from sarcoscreen.node.commands.errors import ExitCode, UserError
from sarcoscreen.node.config import Settings

if TYPE_CHECKING:
    from sarcoscreen.inference.volume import Volume

__all__ = ["add_parser", "describe_volume", "run"]


def add_parser(commands: SubParsers) -> None:
    parser = commands.add_parser("inspect", help="Load a CT series and describe it (geometry, HU, warnings).")
    parser.add_argument("series", type=Path, help="Folder (or file) of one DICOM CT series.")
    parser.add_argument("--series-uid", help="The SeriesInstanceUID to load when the folder holds several image "
                        "series (non-image objects such as an RT Structure Set or an SR are set aside anyway).")
    parser.set_defaults(run=run, needs_settings=False)


def describe_volume(volume: Volume) -> str:
    """A short human-readable description: geometry, HU range, series facts and loader warnings (no PHI)."""
    import numpy as np

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


def run(args: argparse.Namespace, settings: Settings | None) -> int:
    from sarcoscreen.inference.series_errors import SeriesLoadError
    from sarcoscreen.inference.series_loader import load_series

    try:
        volume = load_series(args.series, series_instance_uid=args.series_uid)
    except SeriesLoadError as exc:
        raise UserError(f"cannot load {args.series}: {exc}") from None
    print(describe_volume(volume))
    return ExitCode.OK
