"""``sarcoscreen phantom``, ``phantom --anatomy``, ``phantom cohort`` and ``phantom crop``: synthetic CT with exact
ground truth.

``phantom`` writes the procedural phantom; ``phantom --anatomy DIR`` the CT simulated from a real label map
(`sarcoscreen.inference.phantom.realistic.simulate_ct`). The two share ``--out``, ``--seed``, ``--sex``,
``--height``, ``--slice-mm``, ``--metal-hip`` and ``--contrast`` (with different defaults for sex, height and slice
spacing); an option of the one given to the other is refused by name. Each prints a short summary (where the files
are, the ground-truth group masses, the landmarks); a bad parameter (also a folder that is not an annotation
folder) is one clear message on stderr with exit status 2, a failure to write files exit status 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

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
from sarcoscreen.inference.phantom.realistic import Protocol, SimulationParameters, simulate_ct
from sarcoscreen.node.progress_bars import CountBar, wanted

__all__ = ["params_from_args", "run_anatomy", "run_cohort", "run_crop", "run_phantom", "simulation_params_from_args"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

PHANTOM_DEFAULTS: dict[str, Any] = {
    "fov": "hip", "sex": "F", "height": 1.58, "muscle_scale": 1.0, "fat_mm": 15.0, "slice_mm": 1.0, "matrix": 512,
    "noise_hu": 12.0, "fatty_infiltration": 0.0, "table": True, "offset_mm": (0.0, 0.0), "legs_touching": False,
    "arms": False, "patient_position": "HFS", "age": 72,
}
"""The procedural phantom's defaults of the options the parser leaves unset (None)."""
ANATOMY_DEFAULTS: dict[str, Any] = {
    "sex": "M", "height": 1.75, "slice_mm": Protocol.slice_mm, "crop": "none", "pixel_mm": Protocol.pixel_mm,
    "thickness_mm": Protocol.thickness_mm, "noise_scale": Protocol.noise_scale, "infiltration_scale": 1.0,
    "randomise": False,
}
"""``--anatomy``'s defaults: those of `SimulationParameters` and `Protocol` (the annotated cases are men)."""
_SHARED = frozenset(PHANTOM_DEFAULTS) & frozenset(ANATOMY_DEFAULTS)
_FLAGS = {"table": "--no-table", "height": "--height"}


def _value(args: argparse.Namespace, name: str, defaults: dict[str, Any]) -> Any:
    value = getattr(args, name, None)
    return defaults[name] if value is None else value


def _given(args: argparse.Namespace, names: frozenset[str] | set[str]) -> list[str]:
    """The options among `names` given on the command line (those the parser leaves None when not given)."""
    return [_FLAGS.get(n, "--" + n.replace("_", "-")) for n in sorted(names) if getattr(args, n, None) is not None]


def params_from_args(args: argparse.Namespace) -> PhantomParameters:
    """`PhantomParameters` from the ``phantom`` sub-command's options (`PhantomParameterError` when invalid)."""
    def v(name: str) -> Any:
        return _value(args, name, PHANTOM_DEFAULTS)

    return PhantomParameters(
        fov=v("fov"), sex=v("sex"), height_m=v("height"), muscle_scale=v("muscle_scale"), fat_mm=v("fat_mm"),
        slice_mm=v("slice_mm"), matrix=v("matrix"), noise_hu=v("noise_hu"), seed=args.seed,
        fatty_infiltration=v("fatty_infiltration"),
        metal_hip=getattr(args, "metal_hip", "none"),
        contrast=getattr(args, "contrast", False),
        table=v("table"),
        offset_mm=tuple(v("offset_mm")),
        legs_touching=v("legs_touching"),
        arms=v("arms"),
        patient_position=v("patient_position"),
        age_years=v("age"),
    )


def simulation_params_from_args(args: argparse.Namespace) -> SimulationParameters:
    """`SimulationParameters` from ``phantom --anatomy``'s options (`PhantomParameterError` when invalid)."""
    def v(name: str) -> Any:
        return _value(args, name, ANATOMY_DEFAULTS)

    protocol = Protocol(pixel_mm=v("pixel_mm"), slice_mm=v("slice_mm"), thickness_mm=v("thickness_mm"),
                        noise_scale=v("noise_scale"), contrast=bool(getattr(args, "contrast", False)))
    return SimulationParameters(protocol=protocol, seed=args.seed, sex=v("sex"), height_m=v("height"),
                                metal_hip=getattr(args, "metal_hip", "none"), crop=v("crop"),
                                infiltration_scale=v("infiltration_scale"), randomise=bool(v("randomise")))


def _error(message: str) -> None:
    print(f"sarcoscreen: {message}", file=sys.stderr)


def _failed(command: str, out: Path | str, exc: PhantomParameterError | OSError) -> int:
    """Say why `command` failed and return its exit code: bad parameters or input (`PhantomParameterError`) are the
    user's to fix (`EXIT_USAGE`); a failed write of `out` is `EXIT_FAILED`."""
    if isinstance(exc, OSError):
        _error(f"{command}: cannot write {out}: {exc.strerror or exc}")
        return EXIT_FAILED
    _error(f"{command}: {exc}")
    return EXIT_USAGE


def run_phantom(args: argparse.Namespace) -> int:
    """``sarcoscreen phantom --out DIR [options]`` (with ``--anatomy DIR``: `run_anatomy`)."""
    if getattr(args, "anatomy", None) is not None:
        return run_anatomy(args)
    misplaced = _given(args, set(ANATOMY_DEFAULTS) - _SHARED)
    if misplaced:
        _error(f"phantom: {', '.join(misplaced)} only appl{'ies' if len(misplaced) == 1 else 'y'} with --anatomy DIR")
        return EXIT_USAGE
    if getattr(args, "out", None) is None:
        _error("phantom: --out DIR is required")
        return EXIT_USAGE
    try:
        params = params_from_args(args)
    except PhantomParameterError as exc:
        _error(f"phantom: {exc}")
        return EXIT_USAGE
    bar = CountBar(wanted(getattr(args, "no_progress", False)), "slice")
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


def _check_annotation_folder(folder: Path) -> str | None:
    """Why `folder` is not an annotation folder (``label.mhd`` + ``mask.mhd``), or ``None`` when it looks like one
    (`read_annotation` then checks the files themselves)."""
    if not folder.is_dir():
        return f"{folder} is not a folder"
    missing = [name for name in ("label.mhd", "mask.mhd") if not (folder / name).is_file()]
    if missing:
        return (f"{folder} is not an annotation folder: it has no {' and no '.join(missing)} (a label map and body "
                "mask as in ../shared/data/pelvic-annotation/Pelvic-Ref-002)")
    return None


def run_anatomy(args: argparse.Namespace) -> int:
    """``sarcoscreen phantom --anatomy DIR --out OUT [options]``: a CT simulated from a real label map."""
    misplaced = _given(args, set(PHANTOM_DEFAULTS) - _SHARED)
    if misplaced:
        _error(f"phantom --anatomy: {', '.join(misplaced)} "
               f"{'does' if len(misplaced) == 1 else 'do'} not apply to a simulated real anatomy")
        return EXIT_USAGE
    if getattr(args, "out", None) is None:
        _error("phantom --anatomy: --out DIR is required")
        return EXIT_USAGE
    anatomy, out = Path(args.anatomy), Path(args.out)
    problem = _check_annotation_folder(anatomy)
    if problem is not None:
        _error(f"phantom --anatomy: {problem}")
        return EXIT_USAGE
    if out.resolve() == anatomy.resolve():
        _error("phantom --anatomy: --out must not be the annotation folder")
        return EXIT_USAGE
    try:
        params = simulation_params_from_args(args)
        result = simulate_ct(anatomy, params, out)
    except (PhantomParameterError, OSError) as exc:
        return _failed("phantom --anatomy", out, exc)
    source = result.ground_truth["source"]
    z0, z1 = source["z_range_mm"]
    randomised = " (intensities randomised from the seed: training data)" if params.randomise else ""
    print(f"SIMULATED CT of the label map {source['annotation']} (z {z0:.1f}..{z1:.1f} mm, crop "
          f"{params.crop.value}){randomised} written to {result.out_dir} in {result.seconds:.1f} s")
    _print_summary(result)
    return EXIT_OK


def _print_summary(result: PhantomResult) -> None:
    gt = result.ground_truth
    series = gt["series"]
    thickness = series.get("slice_thickness_mm")
    thick = f", {thickness:g} mm thick" if thickness not in (None, series["slice_spacing_mm"]) else ""
    print(f"  series:       {result.dicom_dir} ({result.slices} slices, {series['rows']}x{series['columns']}, "
          f"{series['pixel_spacing_mm']:.3f} mm pixels, {series['slice_spacing_mm']:g} mm slices{thick})")
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
        if lm["z_mm"] is None:  # a simulated label map has no knee, ankle, ...
            print(f"    {name:<20s} {'-':>8s}  (not in the label map)")
            continue
        where = f"slice {lm['slice_index']}" if lm["in_scan"] else "outside the scan"
        print(f"    {name:<20s} {lm['z_mm']:8.1f}  ({where})")


def run_crop(args: argparse.Namespace) -> int:
    """``sarcoscreen phantom crop SOURCE --out DIR --end-below-head-top MM``."""
    try:
        result = crop_phantom(args.source, args.out, args.end_below_head_top)
    except (PhantomParameterError, OSError) as exc:
        return _failed("phantom crop", args.out, exc)
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
    bar = CountBar(wanted(getattr(args, "no_progress", False)), "subject")
    try:
        result = make_cohort(args.n, Path(args.out), seed=args.seed, sex=args.sex, with_ct=args.with_ct,
                             matrix=args.matrix, slice_mm=args.slice_mm, progress=bar)
    except (PhantomParameterError, OSError) as exc:
        return _failed("phantom cohort", args.out, exc)
    finally:
        bar.close()
    smi = [s.dxa_smi for s in result.subjects]
    print(f"SYNTHETIC cohort of {len(result.subjects)} subjects written to {result.out_dir}")
    print(f"  {result.cohort_csv.name}: SYNTHETIC DXA values (mean DXA SMI {sum(smi) / len(smi):.2f} kg/m2)")
    print(f"  {result.truth_csv.name}: ground-truth phantom muscle masses")
    print(f"  {result.readme.name}: how the values were made")
    return EXIT_OK
