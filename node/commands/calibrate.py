"""``sarcoscreen calibrate --study DIR --out FILE``: the site calibration file from a validation study.

Takes the Youden-optimal cut-offs of ``sarcoscreen study`` (results.json) and writes them, with the study's side
rule and provenance, in the format the node reads (`reports.study.calibration_writer`). Point
``measurement.calibration_file`` at the file to let the node flag patients; every flag records the
calibration's name and SHA-256. See docs/validation-study.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sarcoscreen.inference.catalogue import Group
from sarcoscreen.inference.sides import SideRule
from sarcoscreen.node.commands.command import SubParsers
from sarcoscreen.node.commands.errors import ExitCode, UserError
from sarcoscreen.node.config import Settings

__all__ = ["add_parser", "run"]


def add_parser(commands: SubParsers) -> None:
    calibrate = commands.add_parser(
        "calibrate", help="Write the site calibration file (SMI cut-offs per group and sex) from a study.")
    calibrate.add_argument("--study", type=Path, required=True,
                           help="The output folder of `sarcoscreen study` (or its results.json).")
    calibrate.add_argument("--out", type=Path, required=True, help="The calibration file to write (JSON).")
    calibrate.add_argument("--name", help="Name recorded with every flag (default: date and reference standard).")
    calibrate.add_argument("--primary-group", choices=[g.value for g in Group],
                           help="The group reported first (default: all, when it has a cut-off); upper_gluteal is "
                                "sarcoscreen's own group, not one of the reference study's.")
    calibrate.add_argument("--side-rule", choices=[r.value for r in SideRule],
                           help="Check that the study used this side rule (the cut-offs are only valid for it).")
    calibrate.add_argument("--min-per-class", type=int, default=2, metavar="N",
                           help="Leave out a group and sex with fewer than N patients with or without low muscle "
                                "mass (default 2).")
    calibrate.add_argument("--include-uninformative", action="store_true",
                           help="Keep cut-offs whose AUC 95%% CI includes 0.5.")
    calibrate.set_defaults(run=run, needs_settings=False)


def run(args: argparse.Namespace, settings: Settings | None) -> int:
    from sarcoscreen.inference.version import software_version
    from sarcoscreen.reports.study.calibration_writer import (
        StudyFileError,
        draft_calibration,
        read_study,
        write_calibration,
    )

    try:
        study, sha256 = read_study(args.study)
        if args.side_rule and args.side_rule != study.get("side_rule"):
            raise StudyFileError(f"the study computed SMI with side rule {study.get('side_rule')!r}; cut-offs are "
                                 f"only valid for that rule (run `sarcoscreen study --side-rule {args.side_rule}` "
                                 "for another)")
        draft = draft_calibration(study, sha256, name=args.name,
                                  primary_group=Group(args.primary_group) if args.primary_group else None,
                                  min_per_class=args.min_per_class, include_uninformative=args.include_uninformative,
                                  software_version=software_version())
        calibration = write_calibration(draft, args.out)
    except StudyFileError as exc:
        raise UserError(f"calibrate: {exc}", ExitCode.FAILED) from None
    if calibration.synthetic:
        print("SYNTHETIC calibration - made from synthetic data; never use it for patients")
    print(f"calibration {calibration.describe()} written to {args.out}")
    print(f"  side rule {calibration.side_rule.value}; primary group {calibration.primary_group.value}; "
          f"reference standard {calibration.reference_standard}")
    width = max(len(g.value) for g in Group)
    for c in calibration.cutoffs:
        ci = f" ({c.auc_ci95[0]:.3f}-{c.auc_ci95[1]:.3f})" if c.auc_ci95 else ""
        own = "" if c.group.of_reference_study else "  (sarcoscreen's own group, not the reference study's)"
        print(f"  {c.group.value:{width}s} {c.sex}: suspected when SMI < {c.smi_cutoff_kg_m2:.4f} kg/m2  "
              f"n={c.n} low={c.n_low_muscle_mass} AUC={c.auc:.3f}{ci} Se={c.sensitivity:.2f} Sp={c.specificity:.2f}"
              f"{own}")
    for item in draft.skipped:
        print(f"  left out: {item}")
    for warning in draft.warnings:
        print(f"  warning: {warning}")
    print(f"use it:  [measurement] calibration_file = \"{args.out}\"  (or SARCOSCREEN_MEASUREMENT__CALIBRATION_FILE)")
    return ExitCode.OK

