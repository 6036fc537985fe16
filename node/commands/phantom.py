"""``sarcoscreen phantom``, ``phantom --anatomy``, ``phantom cohort`` and ``phantom crop``: synthetic CT with exact
ground truth.

``phantom`` writes the procedural phantom; ``phantom --anatomy DIR`` the CT simulated from a real label map
(`sarcoscreen.inference.phantom.realistic.simulate_ct`). The two share ``--out``, ``--seed``, ``--sex``,
``--height``, ``--slice-mm``, ``--metal-hip`` and ``--contrast`` (with different defaults for sex, height and slice
spacing, `sarcoscreen.node.phantom_options`); an option of the one given to the other is refused by name. Each
prints a short summary (where the files are, the ground-truth group masses, the landmarks); a bad parameter (also a
folder that is not an annotation folder) is one clear message on stderr with exit status 2, a failure to write
files exit status 1.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from sarcoscreen.node.commands.command import SubParsers
from sarcoscreen.node.commands.errors import ExitCode, UserError
from sarcoscreen.node.config import Settings

if TYPE_CHECKING:
    from sarcoscreen.inference.phantom import PhantomParameterError, PhantomResult

__all__ = ["add_parser", "run"]


def add_parser(commands: SubParsers) -> None:
    parser = commands.add_parser("phantom", help="Write a synthetic lower-extremity CT with exact ground truth.")
    # No abbreviations: "phantom cohort --n 6" must not be taken for an abbreviation of a phantom option.
    # Options without a default here (None) get theirs in phantom_options: the procedural phantom's and the
    # --anatomy simulator's defaults differ (sex, height, slice spacing), and an option of the one given to the
    # other is refused by name.
    parser.allow_abbrev = False
    parser.add_argument("--out", type=Path, help="Folder for the DICOM series and ground truth (required).")
    parser.add_argument("--anatomy", type=Path, metavar="DIR",
                        help="Simulate the CT of a real label map instead (an annotation folder with label.mhd and "
                             "mask.mhd, e.g. ../shared/data/pelvic-annotation/Pelvic-Ref-002): real anatomy, CT "
                             "numbers calibrated on real CT (docs/phantom.md, 'CT from real label maps').")
    parser.add_argument("--fov", choices=("hip", "abdomen", "legs"),
                        help="hip (default): 2 cm above the iliac crest to below the ankle; abdomen: above the iliac "
                             "crest to ~2 cm below the lesser trochanter; legs: ~7 cm above the knee to below the "
                             "ankle.")
    parser.add_argument("--sex", choices=("F", "M"), help="Default F; with --anatomy M (the annotated cases are men: "
                        "prostate or uterus).")
    parser.add_argument("--height", "--height-m", dest="height", type=float, metavar="M",
                        help="Body height in metres (default 1.58; with --anatomy 1.75, written as PatientSize only).")
    parser.add_argument("--muscle-scale", type=float, help="Muscle cross-section scale (default 1 = typical).")
    parser.add_argument("--fat-mm", type=float, help="Subcutaneous fat thickness in mm (default 15).")
    parser.add_argument("--slice-mm", type=float, help="Slice spacing in mm (default 1, also the thickness; with "
                        "--anatomy 3).")
    parser.add_argument("--matrix", type=int, help="Rows and columns of each slice (default 512).")
    parser.add_argument("--noise-hu", type=float, help="Image noise standard deviation in HU (default 12).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fatty-infiltration", type=float, metavar="0..1",
                        help="Intramuscular fat and lower muscle attenuation (myosteatosis; default 0).")
    parser.add_argument("--metal-hip", choices=("none", "left", "right", "both"), default="none",
                        help="Total hip prostheses on one side or both, with streak artefacts.")
    parser.add_argument("--contrast", action="store_true", help="Intravenous contrast (portal-venous phase).")
    parser.add_argument("--no-table", dest="table", action="store_false", default=None,
                        help="Leave out the CT table top.")
    parser.add_argument("--offset-mm", type=float, nargs=2, metavar=("X", "Y"),
                        help="Shift the patient in the image (x to the patient's left, y posterior), mm.")
    parser.add_argument("--legs-touching", action="store_true", default=None,
                        help="Thighs and knees close enough to touch.")
    parser.add_argument("--arms", action="store_true", default=None, help="Forearms beside the pelvis and hips (arms "
                        "down).")
    parser.add_argument("--patient-position", choices=("HFS", "FFS"),
                        help="Head first (default) or feet first supine (feet first mirrors the image columns).")
    parser.add_argument("--age", type=int, help="Age in years (PatientAge; muscle attenuation; default 72).")
    anatomy = parser.add_argument_group("with --anatomy only")
    anatomy.add_argument("--crop", choices=("none", "abdomen-pelvis", "hip"),
                         help="Field of view: none (default; the annotated range, lumbar spine to mid-thigh), "
                              "abdomen-pelvis (down to the lesser trochanter), hip (iliac crest + 20 mm to lesser "
                              "trochanter - 50 mm).")
    anatomy.add_argument("--pixel-mm", type=float, help="In-plane pixel size (default 1.0; the 512 mm field is kept).")
    anatomy.add_argument("--thickness-mm", type=float, help="Slice thickness, FWHM (default 3.0, the annotation's).")
    anatomy.add_argument("--noise-scale", type=float, help="Noise relative to the real series' (default 1.0 = 7.1 HU "
                         "at 1 x 1 x 3 mm, rescaled to the voxel size).")
    anatomy.add_argument("--infiltration-scale", type=float, help="Multiplies every muscle's fat fraction (default "
                         "1.0, the profile measured on Pelvic-Ref-002; 0 = lean muscle).")
    anatomy.add_argument("--randomise", action="store_true", default=None,
                         help="Domain randomisation of intensities, blur and noise from the seed (training data).")
    parser.add_argument("--no-progress", action="store_true", help="No progress bar.")
    parser.set_defaults(run=run, needs_settings=False)
    actions = parser.add_subparsers(dest="phantom_action", required=False, metavar="{cohort,crop}")
    cohort = actions.add_parser(
        "cohort", help="A synthetic validation cohort: subjects, ground-truth masses and SYNTHETIC DXA values.")
    cohort.add_argument("--n", type=int, default=60, help="Number of subjects.")
    cohort.add_argument("--out", type=Path, required=True)
    cohort.add_argument("--seed", type=int, default=0)
    cohort.add_argument("--sex", choices=("F", "M", "both"), default="F")
    cohort.add_argument("--with-ct", action="store_true", help="Also write each subject's CT series (small matrix).")
    cohort.add_argument("--matrix", type=int, default=128, help="Matrix of the CT series with --with-ct.")
    cohort.add_argument("--slice-mm", type=float, default=5.0, help="Slice spacing of the CT series with --with-ct.")
    cohort.add_argument("--no-progress", action="store_true", help="No progress bar.")
    cohort.set_defaults(run=run, needs_settings=False)
    crop = actions.add_parser(
        "crop", help="Cut a generated phantom below (or above) the femoral head top, with its ground truth redone.")
    crop.add_argument("source", type=Path, help="Folder of a phantom written by 'sarcoscreen phantom'.")
    crop.add_argument("--out", type=Path, required=True, help="Folder for the cut series and its ground truth.")
    crop.add_argument("--end-below-head-top", type=float, required=True, metavar="MM",
                      help="Keep the slices from the head end of the scan down to MM below the top of the femoral "
                           "head (negative: above it).")
    crop.set_defaults(run=run, needs_settings=False)


def run(args: argparse.Namespace, settings: Settings | None) -> int:
    """``phantom`` (with ``--anatomy DIR``: the simulated real anatomy), ``phantom cohort`` or ``phantom crop``."""
    action = getattr(args, "phantom_action", None)
    if action == "cohort":
        return _cohort(args)
    if action == "crop":
        return _crop(args)
    if getattr(args, "anatomy", None) is not None:
        return _anatomy(args)
    return _phantom(args)


def _failure(command: str, out: Path | str, exc: PhantomParameterError | OSError) -> UserError:
    """Why `command` failed: bad parameters or input (`PhantomParameterError`) are the user's to fix
    (`ExitCode.USAGE`); a failed write of `out` is `ExitCode.FAILED`."""
    if isinstance(exc, OSError):
        return UserError(f"{command}: cannot write {out}: {exc.strerror or exc}", ExitCode.FAILED)
    return UserError(f"{command}: {exc}", ExitCode.USAGE)


def _phantom(args: argparse.Namespace) -> int:
    """``sarcoscreen phantom --out DIR [options]``: the procedural phantom."""
    from sarcoscreen.inference.phantom import PhantomParameterError, make_phantom
    from sarcoscreen.node.phantom_options import anatomy_only_options, params_from_args
    from sarcoscreen.node.progress_bars import CountBar, wanted

    misplaced = anatomy_only_options(args)
    if misplaced:
        raise UserError(f"phantom: {', '.join(misplaced)} only appl{'ies' if len(misplaced) == 1 else 'y'} with "
                        "--anatomy DIR", ExitCode.USAGE)
    if getattr(args, "out", None) is None:
        raise UserError("phantom: --out DIR is required", ExitCode.USAGE)
    try:
        params = params_from_args(args)
    except PhantomParameterError as exc:
        raise _failure("phantom", args.out, exc) from None
    bar = CountBar(wanted(getattr(args, "no_progress", False)), "slice")
    try:
        result = make_phantom(params, Path(args.out), progress=bar)
    except OSError as exc:
        raise _failure("phantom", args.out, exc) from None
    finally:
        bar.close()
    print(f"SYNTHETIC phantom written to {result.out_dir} in {result.seconds:.1f} s")
    _print_summary(result)
    return ExitCode.OK


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


def _anatomy(args: argparse.Namespace) -> int:
    """``sarcoscreen phantom --anatomy DIR --out OUT [options]``: a CT simulated from a real label map."""
    from sarcoscreen.inference.phantom import PhantomParameterError
    from sarcoscreen.inference.phantom.realistic import simulate_ct
    from sarcoscreen.node.phantom_options import phantom_only_options, simulation_params_from_args

    misplaced = phantom_only_options(args)
    if misplaced:
        raise UserError(f"phantom --anatomy: {', '.join(misplaced)} "
                        f"{'does' if len(misplaced) == 1 else 'do'} not apply to a simulated real anatomy",
                        ExitCode.USAGE)
    if getattr(args, "out", None) is None:
        raise UserError("phantom --anatomy: --out DIR is required", ExitCode.USAGE)
    anatomy, out = Path(args.anatomy), Path(args.out)
    problem = _check_annotation_folder(anatomy)
    if problem is not None:
        raise UserError(f"phantom --anatomy: {problem}", ExitCode.USAGE)
    if out.resolve() == anatomy.resolve():
        raise UserError("phantom --anatomy: --out must not be the annotation folder", ExitCode.USAGE)
    try:
        params = simulation_params_from_args(args)
        result = simulate_ct(anatomy, params, out)
    except (PhantomParameterError, OSError) as exc:
        raise _failure("phantom --anatomy", out, exc) from None
    source = result.ground_truth["source"]
    z0, z1 = source["z_range_mm"]
    randomised = " (intensities randomised from the seed: training data)" if params.randomise else ""
    print(f"SIMULATED CT of the label map {source['annotation']} (z {z0:.1f}..{z1:.1f} mm, crop "
          f"{params.crop.value}){randomised} written to {result.out_dir} in {result.seconds:.1f} s")
    _print_summary(result)
    return ExitCode.OK


def _print_summary(result: PhantomResult) -> None:
    from sarcoscreen.inference.catalogue import Group

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


def _crop(args: argparse.Namespace) -> int:
    """``sarcoscreen phantom crop SOURCE --out DIR --end-below-head-top MM``."""
    from sarcoscreen.inference.phantom import PhantomParameterError, crop_phantom, cut_description

    try:
        result = crop_phantom(args.source, args.out, args.end_below_head_top)
    except (PhantomParameterError, OSError) as exc:
        raise _failure("phantom crop", args.out, exc) from None
    crop = result.ground_truth["crop"]
    print(f"SYNTHETIC phantom {args.source} cut {cut_description(args.end_below_head_top)} (z >= "
          f"{crop['cut_z_mm']:.1f} mm): {crop['slices']} of {crop['source_slices']} slices kept, written to "
          f"{result.out_dir}")
    _print_summary(result)
    return ExitCode.OK


def _cohort(args: argparse.Namespace) -> int:
    """``sarcoscreen phantom cohort --out DIR [--n N] [--with-ct] ...``."""
    from sarcoscreen.inference.phantom import PhantomParameterError
    from sarcoscreen.inference.phantom.cohort import make_cohort
    from sarcoscreen.node.progress_bars import CountBar, wanted

    bar = CountBar(wanted(getattr(args, "no_progress", False)), "subject")
    try:
        result = make_cohort(args.n, Path(args.out), seed=args.seed, sex=args.sex, with_ct=args.with_ct,
                             matrix=args.matrix, slice_mm=args.slice_mm, progress=bar)
    except (PhantomParameterError, OSError) as exc:
        raise _failure("phantom cohort", args.out, exc) from None
    finally:
        bar.close()
    smi = [s.dxa_smi for s in result.subjects]
    print(f"SYNTHETIC cohort of {len(result.subjects)} subjects written to {result.out_dir}")
    print(f"  {result.cohort_csv.name}: SYNTHETIC DXA values (mean DXA SMI {sum(smi) / len(smi):.2f} kg/m2)")
    print(f"  {result.truth_csv.name}: ground-truth phantom muscle masses")
    print(f"  {result.readme.name}: how the values were made")
    return ExitCode.OK
