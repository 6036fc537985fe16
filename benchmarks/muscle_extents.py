"""Measure where each muscle lies along the body axis relative to bony landmarks, on the real label maps.

    .venv/bin/python benchmarks/muscle_extents.py [--data ../shared/data] [--python]

Reads the manual annotations ``<data>/pelvic-annotation/Pelvic-Ref-{001,002,004}`` (`inference.muscle_extents.
REFERENCE_CASES`) with `inference.phantom.realistic.source.read_annotation`, gives them their landmarks and sides
with `inference.labelled_ct`, and measures the table of `inference.muscle_extents` (`measure_reference_extents`):
per catalogue muscle the level of its top and bottom relative to the iliac crest top, the femoral head top and
centre and the ischial tuberosity (the pelvis bottom), lowest to highest over both sides of the three cases.

Prints the table (``*``: the muscle continues below the lowest annotated level - its bottom range is that level;
``lower leg``: not in the label maps, below their lowest level) and whether it equals the one recorded in
`inference.muscle_extents.REFERENCE_EXTENTS`; ``--python`` prints the recorded table's source instead, to paste
there. Exit status 1 when the recorded table differs from the measured one, 2 when the label maps are missing.

``--check`` tests the rule leaving one case out: the table is measured on the other two, and the left-out case is
cut into scans ending (or starting) every 15 mm along its length; each scan's landmarks come from its own bone
labels as an engine's would (`inference.bone_landmarks.landmarks_from_labels`), and every hip and thigh muscle of
a group (not psoas major, which measurement does not judge) placed by them (`inference.muscle_extents.place`) is
compared with whether the annotation has it in that scan. A muscle called *covered* with no labelled voxels would
be a false "not found"; one called *outside* with labelled voxels a false "not in the scan" (a failure hidden).
Result at the commit that added it: covered 2578 (0 false), outside 771 (0 false), cannot tell 3131 (about 1 min).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from sarcoscreen.inference.bone_landmarks import landmarks_from_labels
from sarcoscreen.inference.catalogue import CATALOGUE, Side
from sarcoscreen.inference.labelled_ct import ANNOTATION_TO_CATALOGUE, LabelledCase, slice_volume
from sarcoscreen.inference.muscle_extents import (
    LANDMARKS,
    REFERENCE_CASES,
    REFERENCE_EXTENTS,
    Coverage,
    LevelRange,
    ReferenceExtent,
    measure_reference_extents,
    place,
)
from sarcoscreen.inference.phantom.realistic.source import catalogue_labels, read_annotation

_SHORT = {"iliac_crest": "crest top", "femoral_head_top": "head top", "femoral_head": "head centre",
          "ischial_tuberosity": "ischial tub."}


def load_references(data: Path) -> list[LabelledCase]:
    """The three annotated cases as `LabelledCase` (CT-less: the label maps' own grids)."""
    return [read_annotation(data / "pelvic-annotation" / name).case for name in REFERENCE_CASES]


def format_table(table: Mapping[str, ReferenceExtent]) -> str:
    """The table as text, one line per muscle end."""
    head = f"{'muscle':30s} {'end':6s} " + " ".join(f"{_SHORT[n]:>16s}" for n in LANDMARKS)
    lines = [head, "-" * len(head)]
    for key, extent in table.items():
        if extent.below_references:
            lines.append(f"{key:30s} {'top':6s} " + " ".join(
                f"{'< ' + format(extent.top[n].high_mm, '.0f'):>16s}" for n in LANDMARKS) + "  lower leg")
            continue
        for end, ranges in (("top", extent.top), ("bottom", extent.bottom)):
            mark = "*" if end == "bottom" and extent.continues_below else ""
            lines.append(f"{key:30s} {end:6s} " + " ".join(
                f"{f'{ranges[n].low_mm:.0f}..{ranges[n].high_mm:.0f}{mark}':>16s}" for n in LANDMARKS))
    lines.append("mm relative to the landmark (head +), lowest..highest over both sides of "
                 + ", ".join(REFERENCE_CASES) + "; * the muscle continues below the lowest annotated level (the "
                 "range is that level); lower leg: below the lowest annotated level")
    return "\n".join(lines)


def python_source(table: Mapping[str, ReferenceExtent]) -> str:
    """The source of `REFERENCE_EXTENTS` for `inference/muscle_extents.py`."""
    def pairs(ranges: Mapping[str, LevelRange]) -> str:
        return ", ".join(f"({ranges[n].low_mm:g}, {ranges[n].high_mm:g})" for n in LANDMARKS if n in ranges)

    lines = ["REFERENCE_EXTENTS: Mapping[str, ReferenceExtent] = MappingProxyType({"]
    for key, e in table.items():
        flags = "".join([", below=True" if e.continues_below else "", ", above=True" if e.continues_above else "",
                         ", lower_leg=True" if e.below_references else ""])
        bottom = f",\n        ({pairs(e.bottom)})" if e.bottom else ""
        lines.append(f'    "{key}": _extent(\n        "{key}",\n        ({pairs(e.top)}){bottom}{flags}),')
    lines.append("})")
    return "\n".join(lines)


def leave_one_out(cases: list[LabelledCase], step_mm: float = 15.0) -> tuple[dict[str, int], list[str]]:
    """Counts of the rule's verdicts against the left-out annotation over cut scans (see the module docstring):
    ``covered``, ``covered_absent`` (false "not found"), ``outside``, ``outside_present`` (false "not in the
    scan"), ``unknown``; and the wrong verdicts in words."""
    counts = dict.fromkeys(("covered", "covered_absent", "outside", "outside_present", "unknown"), 0)
    wrong: list[str] = []
    for index, case in enumerate(cases):
        table = measure_reference_extents([c for i, c in enumerate(cases) if i != index])
        assert case.labels is not None
        labels = catalogue_labels(case.labels, case.side_mask(Side.LEFT))
        z = case.superior_mm
        cuts = []
        for mm in np.arange(0.0, float(z.max() - z.min()), step_mm):
            keep = np.nonzero(z >= z.max() - mm - 1e-3)[0]  # scans from the head end down to a level
            cuts.append((int(keep.min()), int(keep.max()) + 1))
            keep = np.nonzero(z <= z.min() + mm + 1e-3)[0]  # scans from the thigh up to a level
            cuts.append((int(keep.min()), int(keep.max()) + 1))
        for start, stop in cuts:
            if stop - start < 5:
                continue
            view = slice_volume(case.volume, start, stop)
            part = labels[start:stop]
            marks = landmarks_from_labels(view, part)
            low, high = float(view.positions[:, 2].min()), float(view.positions[:, 2].max())
            for _, key in ANNOTATION_TO_CATALOGUE.values():
                anatomy = CATALOGUE.anatomy(key)
                if anatomy.kind.value != "muscle" or not anatomy.groups:
                    continue  # psoas major: in no group, never judged (`inference.measure`)
                for side in (Side.RIGHT, Side.LEFT):
                    present = bool((part == CATALOGUE.structure(key, side).label).any())
                    own = {lm.name: float(view.positions[lm.slice_index, 2]) for lm in marks if lm.side is side}
                    placement = place(key, (low, high), own, table)
                    verdict = placement.coverage
                    if verdict is Coverage.COVERED:
                        counts["covered"] += 1
                        counts["covered_absent"] += not present
                    elif verdict is Coverage.OUTSIDE:
                        counts["outside"] += 1
                        counts["outside_present"] += present
                    else:
                        counts["unknown"] += 1
                    if (verdict is Coverage.COVERED and not present) or (verdict is Coverage.OUTSIDE and present):
                        voxels = int((part == CATALOGUE.structure(key, side).label).sum())
                        wrong.append(f"{case.name} slices {start}:{stop} {side.value} {key}: {verdict.value}, "
                                     f"{voxels} labelled voxels; {placement.reason}")
    return counts, wrong


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--python", action="store_true", help="Print the source of REFERENCE_EXTENTS.")
    parser.add_argument("--check", action="store_true", help="Test the rule leaving one case out.")
    args = parser.parse_args(argv)
    missing = [n for n in REFERENCE_CASES if not (args.data / "pelvic-annotation" / n / "label.mhd").is_file()]
    if missing:
        print(f"label maps not found under {args.data / 'pelvic-annotation'}: {', '.join(missing)}", file=sys.stderr)
        return 2
    cases = load_references(args.data)
    if args.check:
        counts, wrong = leave_one_out(cases)
        print("leave one out (table from two cases, scans cut every 15 mm from the third; the hip and thigh muscles "
              "of the groups, both sides):")
        print(f"  covered {counts['covered']} (of which no labelled voxels - a false 'not found': "
              f"{counts['covered_absent']}), outside {counts['outside']} (of which labelled voxels in the scan - a "
              f"false 'not in the scan': {counts['outside_present']}), cannot tell {counts['unknown']}")
        for line in wrong:
            print("  wrong:", line)
        return 0 if counts["covered_absent"] == counts["outside_present"] == 0 else 1
    table = measure_reference_extents(cases)
    if args.python:
        print(python_source(table))
        return 0
    print(format_table(table))
    same = dict(table) == dict(REFERENCE_EXTENTS)
    print("recorded table (inference/muscle_extents.py):", "the same" if same else "DIFFERS - rerun with --python")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
