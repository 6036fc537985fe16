"""``sarcoscreen demo``: the main job on embedded defaults, for a newcomer's first command.

Makes a synthetic hip CT with exact ground truth (the digital phantom), runs the same pipeline as
``sarcoscreen analyze`` with the configured engine (the weight-free ``threshold`` engine by default) - load,
segment, measure, result files, DICOM-SEG, TID 1500 SR and key image - and prints the results next to the
phantom's ground truth, so that what the engine measures can be judged against what is really there. Nothing
leaves the machine; everything is written under ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sarcoscreen.inference.catalogue import Group
from sarcoscreen.inference.measure import MeasurementReport
from sarcoscreen.inference.phantom import PhantomParameterError, PhantomParameters, make_phantom
from sarcoscreen.node.analyze_command import AnalysisError, analyze_series
from sarcoscreen.node.config import Settings
from sarcoscreen.reports.results_table import results_table

__all__ = ["comparison_table", "run_demo"]


def _ground_truth_mass(ground_truth: dict, group: Group, side: str, rule: str) -> float:
    row = next(g for g in ground_truth["groups"] if g["group"] == group.value and g["side"] == side)
    return float(row["mass_g"][rule])


def _rule_key(report: MeasurementReport) -> str | None:
    """The ground-truth column that used the same density rule as the report, if the phantom has one."""
    rule = report.density_rule
    if rule.startswith("constant 1.04") and "excluded" not in rule:
        return "constant_1.04"
    if rule.startswith("constant 1.06") and "excluded" not in rule:
        return "constant_1.06"
    if rule.startswith("HU-linear") and "excluded" not in rule:
        return "hu_linear"
    return None


def comparison_table(report: MeasurementReport, ground_truth: dict) -> str:
    """Group masses (both sides) measured by the engine against the phantom's ground truth."""
    key = _rule_key(report)
    if key is None:
        return (f"(no ground truth for the density rule '{report.density_rule}': the phantom records constant "
                "1.04/1.06 g/cm3 and HU-linear without exclusion)")
    lines = [f"{'group':30s} {'engine kg':>10s} {'truth kg':>10s} {'difference':>11s}"]
    for group in Group:
        measured = report.group(group, "both")
        truth = _ground_truth_mass(ground_truth, group, "both", key) / 1000.0
        if measured.smm_g is None:
            lines.append(f"{group.title:30s} {'-':>10s} {truth:10.2f}   {measured.completeness.value}")
            continue
        engine = measured.smm_g / 1000.0
        lines.append(f"{group.title:30s} {engine:10.2f} {truth:10.2f} {100 * (engine / truth - 1):+10.1f}%")
    return "\n".join(lines)


def run_demo(args: argparse.Namespace, settings: Settings) -> int:
    out: Path = args.out
    phantom_dir = out / "phantom"
    print(f"1/3 making a synthetic hip CT (digital phantom, {args.matrix}x{args.matrix}, {args.slice_mm:g} mm "
          f"slices) in {phantom_dir}")
    try:
        phantom = make_phantom(PhantomParameters(matrix=args.matrix, slice_mm=args.slice_mm, seed=args.seed),
                               phantom_dir)
    except PhantomParameterError as exc:
        print(f"sarcoscreen: {exc}")
        return 2
    print(f"    {phantom.slices} slices in {phantom.seconds:.1f} s")
    print(f"2/3 analysing it with the '{settings.engine.name}' engine")
    try:
        result = analyze_series(phantom.dicom_dir, out / "results", settings, progress=not args.no_progress,
                                dicom_out=out / "dicom-outputs")
    except AnalysisError as exc:
        print(f"sarcoscreen: cannot analyse the phantom: {exc}")
        return 1
    print("3/3 results\n")
    print(results_table(result.report))
    print("\nEngine against the phantom's exact ground truth (both sides):\n")
    ground_truth = json.loads(phantom.ground_truth_path.read_text(encoding="utf-8"))
    print(comparison_table(result.report, ground_truth))
    print("\nFiles:")
    for kind, path in result.files.items():
        print(f"  {kind:10s} {path}")
    if result.dicom_error:
        print(f"  DICOM outputs not written: {result.dicom_error}")
    print(f"  {'phantom':10s} {phantom.dicom_dir} (CT), {phantom.labels_path.name}, "
          f"{phantom.ground_truth_path.name}")
    print("\nThe phantom is synthetic: these numbers show how the engine works, not a patient's muscle mass.")
    return 0
