"""``sarcoscreen phantom``, ``phantom cohort`` and ``phantom crop``: synthetic CT with exact ground truth.

Each prints a short summary (where the files are, the ground-truth group masses, the landmarks); a bad
parameter is one clear message on stderr with exit status 2, a failure to write files exit status 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from sarcoscreen.inference.catalogue import Group
from sarcoscreen.inference.phantom import (
    PhantomParameterError,
    PhantomParameters,
    PhantomResult,
    crop_phantom,
    cut_description,
    make_phantom,
)
from sarcoscreen.inference.phantom.cohort import make_cohort

__all__ = ["params_from_args", "run_cohort", "run_crop", "run_phantom"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def params_from_args(args: argparse.Namespace) -> PhantomParameters:
    """`PhantomParameters` from the ``phantom`` sub-command's options (`PhantomParameterError` when invalid)."""
    return PhantomParameters(
        fov=args.fov, sex=args.sex, height_m=args.height, muscle_scale=args.muscle_scale, fat_mm=args.fat_mm,
        slice_mm=args.slice_mm, matrix=args.matrix, noise_hu=args.noise_hu, seed=args.seed,
        fatty_infiltration=getattr(args, "fatty_infiltration", 0.0),
        metal_hip=getattr(args, "metal_hip", "none"),
        contrast=getattr(args, "contrast", False),
        table=getattr(args, "table", True),
        offset_mm=tuple(getattr(args, "offset_mm", (0.0, 0.0))),
        legs_touching=getattr(args, "legs_touching", False),
        arms=getattr(args, "arms", False),
        patient_position=getattr(args, "patient_position", "HFS"),
        age_years=getattr(args, "age", 72),
    )


class _Bar:
    def __init__(self, enabled: bool, unit: str) -> None:
        self.enabled = enabled
        self.unit = unit
        self.bar: tqdm | None = None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            self.bar = tqdm(total=total, unit=self.unit, leave=False, file=sys.stderr)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _error(message: str) -> None:
    print(f"sarcoscreen: {message}", file=sys.stderr)


def run_phantom(args: argparse.Namespace) -> int:
    if getattr(args, "out", None) is None:
        _error("phantom: --out DIR is required")
        return EXIT_USAGE
    try:
        params = params_from_args(args)
    except PhantomParameterError as exc:
        _error(f"phantom: {exc}")
        return EXIT_USAGE
    bar = _Bar(not getattr(args, "no_progress", False) and sys.stderr.isatty(), "slice")
    try:
        result = make_phantom(params, Path(args.out), progress=bar)
    except OSError as exc:
        _error(f"phantom: cannot write {args.out}: {exc.strerror or exc}")
        return EXIT_FAILED
    finally:
        bar.close()
    print(f"SYNTHETIC phantom written to {result.out_dir} in {result.seconds:.1f} s")
    _print_summary(result)
    return EXIT_OK


def _print_summary(result: PhantomResult) -> None:
    gt = result.ground_truth
    series = gt["series"]
    print(f"  series:       {result.dicom_dir} ({result.slices} slices, {series['rows']}x{series['columns']}, "
          f"{series['pixel_spacing_mm']:.3f} mm pixels, {series['slice_spacing_mm']:g} mm slices)")
    print(f"  labels:       {result.labels_path}")
    print(f"  ground truth: {result.ground_truth_path}")
    print("  group masses (g, density 1.04 g/cm3; in-scan mass of a truncated group in brackets):")
    for group in Group:
        row = {g["side"]: g for g in gt["groups"] if g["group"] == group.value}
        cells = []
        for side in ("left", "right", "both"):
            mass = row[side]["mass_g"]["constant_1.04"]
            in_scan = row[side].get("in_scan_mass_g", {}).get("constant_1.04")
            if mass is not None:
                cells.append(f"{side} {mass:8.0f}")
            elif row[side]["completeness"] == "truncated" and in_scan is not None:
                cells.append(f"{side} {f'({in_scan:.0f})':>8s}")
            else:
                cells.append(f"{side} {row[side]['completeness']:>8s}")
        print(f"    {group.value:<13s} " + "  ".join(cells))
    print("  landmarks (z, mm):")
    for name, lm in gt["landmarks_mm"].items():
        where = f"slice {lm['slice_index']}" if lm["in_scan"] else "outside the scan"
        print(f"    {name:<20s} {lm['z_mm']:8.1f}  ({where})")


def run_crop(args: argparse.Namespace) -> int:
    """``sarcoscreen phantom crop SOURCE --out DIR --end-below-head-top MM``."""
    try:
        result = crop_phantom(args.source, args.out, args.end_below_head_top)
    except PhantomParameterError as exc:
        _error(f"phantom crop: {exc}")
        return EXIT_USAGE
    except OSError as exc:
        _error(f"phantom crop: cannot write {args.out}: {exc.strerror or exc}")
        return EXIT_FAILED
    crop = result.ground_truth["crop"]
    print(f"SYNTHETIC phantom {args.source} cut {cut_description(args.end_below_head_top)} (z >= "
          f"{crop['cut_z_mm']:.1f} mm): {crop['slices']} of {crop['source_slices']} slices kept, written to "
          f"{result.out_dir}")
    _print_summary(result)
    return EXIT_OK


def run_cohort(args: argparse.Namespace) -> int:
    if getattr(args, "out", None) is None:
        _error("phantom cohort: --out DIR is required")
        return EXIT_USAGE
    bar = _Bar(not getattr(args, "no_progress", False) and sys.stderr.isatty(), "subject")
    try:
        result = make_cohort(args.n, Path(args.out), seed=args.seed, sex=args.sex, with_ct=args.with_ct,
                             matrix=args.matrix, slice_mm=args.slice_mm, progress=bar)
    except PhantomParameterError as exc:
        _error(f"phantom cohort: {exc}")
        return EXIT_USAGE
    except OSError as exc:
        _error(f"phantom cohort: cannot write {args.out}: {exc.strerror or exc}")
        return EXIT_FAILED
    finally:
        bar.close()
    smi = [s.dxa_smi for s in result.subjects]
    print(f"SYNTHETIC cohort of {len(result.subjects)} subjects written to {result.out_dir}")
    print(f"  {result.cohort_csv.name}: SYNTHETIC DXA values (mean DXA SMI {sum(smi) / len(smi):.2f} kg/m2)")
    print(f"  {result.truth_csv.name}: ground-truth phantom muscle masses")
    print(f"  {result.readme.name}: how the values were made")
    return EXIT_OK
