"""``sarcoscreen study``: the validation study of a site - CT muscle mass against DXA - from a cohort file and
the node's results (``--db``) or result files (``--measurements``).

Reads and validates the cohort (`reports.study.cohort`), reads the CT measurements
(`reports.study.measurements`), joins them (`reports.study.join`), runs the reference study's analysis
(`reports.study.analysis`) and writes the report, figures, results.json and CSV tables (`reports.study.report`).
See docs/validation-study.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sarcoscreen.inference.catalogue import Group
from sarcoscreen.inference.sides import SideRule
from sarcoscreen.node.commands.command import SubParsers, loaded
from sarcoscreen.node.commands.errors import ExitCode, UserError
from sarcoscreen.node.config import Settings

__all__ = ["add_parser", "run"]

_SHOWN_ISSUES = 20


def add_parser(commands: SubParsers) -> None:
    study = commands.add_parser(
        "study", help="Validation study: CT muscle mass against DXA (correlation, ROC, cut-offs) for a cohort.")
    study.add_argument("--cohort", type=Path, required=True,
                       help="CSV: subject_id, sex, height_m|height_cm, dxa_leg_lean_mass_kg, "
                            "dxa_appendicular_lean_mass_kg|dxa_smi_kg_m2, optional study/series UID, accession.")
    source = study.add_mutually_exclusive_group(required=True)
    source.add_argument("--measurements", type=Path, nargs="+", metavar="PATH",
                        help="measurements.json files, folders of them, or a CSV of masses.")
    source.add_argument("--db", nargs="?", const="", metavar="URL",
                        help="Read the node's results from this database (read-only); without URL the configured "
                             "database.")
    study.add_argument("--out", type=Path, required=True, help="Folder for the report, figures and tables.")
    study.add_argument("--definition", choices=("awgs2019", "ewgsop2"), default="awgs2019",
                       help="DXA definition of low muscle mass (default AWGS 2019).")
    study.add_argument("--side-rule", choices=[r.value for r in SideRule],
                       help="How left and right SMI become one value (default: measurement.side_rule). The "
                            "calibration made from the study uses the same rule.")
    study.add_argument("--title", help="Title of the report.")
    study.set_defaults(run=run, needs_settings=True)


def run(args: argparse.Namespace, settings: Settings | None) -> int:
    from sarcoscreen.inference.version import software_version
    from sarcoscreen.reports.study.analysis import SEX_NAMES, analyse
    from sarcoscreen.reports.study.cohort import CohortError, read_cohort
    from sarcoscreen.reports.study.definitions import definition_by_key
    from sarcoscreen.reports.study.join import join_cohort
    from sarcoscreen.reports.study.measurements import (
        MeasurementsError,
        load_from_database,
        load_measurement_files,
    )
    from sarcoscreen.reports.study.report import write_study_outputs

    settings = loaded(settings)
    try:
        cohort = read_cohort(args.cohort)
    except CohortError as exc:
        raise UserError(f"study: {exc}", ExitCode.FAILED) from None
    try:
        if args.measurements:
            source = load_measurement_files(args.measurements)
        else:
            source = load_from_database(args.db or settings.database_url)
    except MeasurementsError as exc:
        raise UserError(f"study: {exc}", ExitCode.FAILED) from None
    side_rule = SideRule(args.side_rule) if args.side_rule else settings.measurement.side_rule
    join = join_cohort(cohort.rows, source.series)
    results = analyse(cohort, join, definition_by_key(args.definition), side_rule,
                      measurement_source=source.description, measurement_problems=source.problems,
                      title=args.title, software_version=software_version())
    files = write_study_outputs(results, args.out)

    if results.synthetic:
        print("SYNTHETIC DATA - not patient data")
    print(cohort.summary())
    for issue in cohort.errors[:_SHOWN_ISSUES]:
        print(f"  refused: {issue}", file=sys.stderr)
    if len(cohort.errors) > _SHOWN_ISSUES:
        print(f"  ... {len(cohort.errors) - _SHOWN_ISSUES} more in cohort_issues.csv", file=sys.stderr)
    for problem in source.problems:
        print(f"  measurements: {problem}", file=sys.stderr)
    print(join.summary())
    reasons: dict[str, int] = {}
    for item in join.not_joined:
        reasons[item.reason] = reasons.get(item.reason, 0) + 1
    for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1]):
        print(f"  not joined ({count}): {reason}")
    for warning in results.warnings:
        print(f"  warning: {warning}")
    width = max(len(g.value) for g in Group)
    for row in results.rocs:
        corr = results.correlation(row.stratum, row.group)
        r_s = "n/a" if corr.spearman.r is None else f"{corr.spearman.r:.2f}"
        auc = "n/a" if row.auc is None else f"{row.auc:.3f}"
        if row.auc_ci is not None:
            auc += f" ({row.auc_ci[0]:.3f}-{row.auc_ci[1]:.3f})"
        cut = "no cut-off" if row.optimal is None else (
            f"SMI < {row.optimal.cutoff:.3f} kg/m2 (Se {row.optimal.sensitivity:.2f}, "
            f"Sp {row.optimal.specificity:.2f})")
        own = "" if row.group.of_reference_study else "  (sarcoscreen's own group)"
        print(f"  {SEX_NAMES[row.stratum]:6s} {row.group.value:{width}s} n={row.n:<4d} low={row.n_low:<4d} "
              f"Spearman r={r_s}  AUC={auc}  {cut}{own}")
    print(f"report   {files['report_html']}")
    print(f"results  {files['results_json']}")
    print(f"next:    sarcoscreen calibrate --study {args.out} --out calibration.json")
    return ExitCode.OK if join.joined else ExitCode.FAILED

