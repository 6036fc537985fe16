"""Benchmark: an engine on real pelvic CT against manual labels ("real CT is the judge", issue 10).

    .venv/bin/python benchmarks/real_ct.py [--engine threshold] [--cuts 130 100 80 60 -40] [--data ../shared/data]
                                          [--json out.json] [--figure docs/figures/real_ct_outside_muscle.png]

For every real CT series in ``--data`` (`inference.labelled_ct.find_cases`): Pelvic-Ref-002 with its per-voxel
manual annotation, Pelvic-Ref-003 (and 002) with the manual organ contours of their RT Structure Sets. Each series
is loaded once; the engine runs on the whole series and on views cut to end N mm below the femoral head top
(``--cuts``; a negative N ends the scan above it), as abdomen-pelvis CT ends. Printed, per case:

* the gluteal group per side against the manual gluteus maximus + medius + minimus in the same slices (all
  labelled voxels, and those inside the engine's muscle HU window), and the engine's completeness verdict against
  the annotation's own;
* the upper gluteal group (iliac crest top to femoral head centre) against the annotation between the engine's
  landmarks and between the annotation's own;
* the above-knee group against the 18 labelled hip and thigh muscles without psoas;
* the landmarks found, per view, next to the reference's;
* per run: slices, seconds to segment and measure, engine muscle and how much of it lies outside the labels;
* engine muscle outside all labelled muscle by 15 mm level, on the whole series;
* the engine's muscle inside the manual bladder, rectum and prostate contours.

A picture of where engine muscle lies outside the labels goes to ``--figure``. ``--json`` writes every figure.
Definitions: `sarcoscreen.inference.labelled_ct`. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sarcoscreen.inference.catalogue import Group, Side
from sarcoscreen.inference.density import DensityRule
from sarcoscreen.inference.engines import Engine, EngineError, Segmentation, create_engine
from sarcoscreen.inference.engines.orientation import axial_frame
from sarcoscreen.inference.height import Height, HeightSource
from sarcoscreen.inference.labelled_ct import (
    MUSCLE_LABELS,
    CaseView,
    Comparison,
    LabelledCase,
    compare,
    find_cases,
    load_case,
)
from sarcoscreen.inference.measure import MeasurementReport, measure

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = PROJECT_ROOT.parent / "shared" / "data"
DEFAULT_FIGURE = PROJECT_ROOT / "docs" / "figures" / "real_ct_outside_muscle.png"
SIDES = (Side.RIGHT, Side.LEFT)
_VERDICT = {"complete": "complete", "truncated": "truncated", "uncertain": "uncertain", "not in scan": "not in scan",
            "not found": "not found", "not produced by the engine": "not produced"}

FOOTNOTES = """\
Notes
  engine      the engine's group: the sum of its member structures (threshold engine: region labels) in the view;
              mass by the density rule of the run ({rule}); 'labels' by the same rule on the labelled voxels.
  labels      manual annotation in the same slices, split left/right at the pelvis label's centre of mass;
              'in window' counts only labelled voxels inside the muscle HU window, the engine's own definition of
              muscle tissue (the annotation outlines whole muscles, intramuscular fat included).
  verdict     engine completeness / the annotation's own (truncated: a member's labelled voxels touch the view's
              first or last slice; upper gluteal: crest top and head centre strictly inside the view).
  upper       gluteal muscle between the iliac crest top and the femoral head centre (both slices included);
              'same slices' = the annotation between the engine's landmarks, 'own' = between the annotation's
              (crest top = highest pelvis label slice, head centre = maximum of the femur label's distance
              transform in its top 60 mm, per side).
  above knee  known definitional differences: the engine's regions include muscle outside the catalogue
              (quadratus femoris, the gemelli, pelvic floor muscle lateral of the ring, the lower ends of the
              abdominal wall at the crest) and exclude the iliacus and obturator internus inside the pelvic ring;
              the annotation's 18 muscles are 5-23 of labels.json without psoas major (13). The scans end at
              mid-thigh, so the group is truncated in every view.
  outside     engine muscle voxels farther than {tolerance:g} mm in the slice plane from any labelled muscle
              voxel (labels 5-28, trunk muscles included) of the same slice."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="threshold", help="engine name (default threshold)")
    parser.add_argument("--bundle", type=Path, help="model bundle for --engine bayesian-unet")
    parser.add_argument("--cuts", nargs="*", type=float, default=[130, 100, 80, 60, -40],
                        help="views ending N mm below the femoral head top (negative: above); default 130 100 80 60 "
                             "-40; the whole series is always run")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"real CT data (default {DEFAULT_DATA})")
    parser.add_argument("--json", type=Path, help="write every figure to this JSON file")
    parser.add_argument("--figure", type=Path, default=DEFAULT_FIGURE,
                        help="PNG of engine muscle outside the labels (default "
                             "docs/figures/real_ct_outside_muscle.png)")
    parser.add_argument("--no-figure", action="store_true", help="do not draw the picture")
    parser.add_argument("--tolerance-mm", type=float, default=3.0, help="outside tolerance (default 3 mm)")
    parser.add_argument("--band-mm", type=float, default=15.0, help="level band height (default 15 mm)")
    args = parser.parse_args(argv)

    cases = find_cases(args.data)
    if not cases:
        print(f"no real CT cases under {args.data}", file=sys.stderr)
        return 2
    options: dict[str, Any] = {"bundle_path": args.bundle} if args.bundle else {}
    engine = create_engine(args.engine, **options)
    rule = DensityRule()
    height = Height(None, HeightSource.UNKNOWN, "not needed for the benchmark")
    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    figure_done = False
    for files in cases:
        load_start = time.perf_counter()
        case = load_case(files)
        load_s = time.perf_counter() - load_start
        views = [case.whole()]
        skipped = []
        for mm in args.cuts:
            if case.head_top is None:
                skipped.append(f"{mm:g} mm: no femoral head in the reference")
                continue
            views.append(case.cut(mm))
        runs = []
        for view in views:
            try:
                segmentation, report, seconds = _run(engine, view, rule, height)
            except EngineError as exc:
                skipped.append(f"{_view_name(view)}: the engine refused ({exc})")
                continue
            comparison = compare(view, segmentation, report, rule, tolerance_mm=args.tolerance_mm,
                                 band_mm=args.band_mm)
            runs.append((view, segmentation, comparison, seconds))
            if view.mm_below_head_top is None and case.labels is not None and not args.no_figure \
                    and not figure_done:
                draw_figure(case, view, segmentation, comparison, args.figure)
                figure_done = True
        _print_case(case, files.name, load_s, runs, skipped, rule, args.tolerance_mm)
        results.append({"case": files.name, "load_s": load_s,
                        "reference_landmarks": [_jsonable(lm) for lm in case.landmarks],
                        "midline_x_mm": case.midline_x_mm,
                        "runs": [{"view": v.name, "mm_below_head_top": v.mm_below_head_top, "segment_s": s[0],
                                  "measure_s": s[1], "comparison": _jsonable(c), "notes": list(g.notes)}
                                 for v, g, c, s in runs]})
    total = time.perf_counter() - started
    print(f"\nTotal {total:.1f} s (engine {engine.name} {engine.version}).")
    if figure_done:
        print(f"Picture: {args.figure}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"engine": engine.name, "engine_version": engine.version,
                                         "density_rule": rule.describe(), "tolerance_mm": args.tolerance_mm,
                                         "band_mm": args.band_mm, "total_s": total, "cases": results}, indent=1))
        print(f"JSON: {args.json}")
    return 0


def _run(engine: Engine, view: CaseView, rule: DensityRule,
         height: Height) -> tuple[Segmentation, MeasurementReport, tuple[float, float]]:
    start = time.perf_counter()
    segmentation = engine.segment(view.volume)
    segmented = time.perf_counter()
    report = measure(view.volume, segmentation, rule, height)
    return segmentation, report, (segmented - start, time.perf_counter() - segmented)


# -- tables ------------------------------------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1, last_left: bool = False) -> str:
    """Columns padded to their widest cell: the first `left` columns (and the last, with `last_left`) aligned
    left, the others right."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def cell(i: int, value: str) -> str:
        return value.ljust(widths[i]) if i < left or (last_left and i == len(widths) - 1) else value.rjust(widths[i])

    def line(row: Sequence[str]) -> str:
        return "  " + "  ".join(cell(i, str(c)) for i, c in enumerate(row)).rstrip()

    return "\n".join([line(header), "  " + "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


def _f(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.0f}%"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _slab(case: LabelledCase, slab: tuple[int, int] | None) -> str:
    if slab is None:
        return "-"
    z = case.superior_mm
    return f"{z[slab[0]]:.0f}-{z[slab[1]]:.0f}" if z[slab[0]] <= z[slab[1]] else f"{z[slab[1]]:.0f}-{z[slab[0]]:.0f}"


def _view_name(view: CaseView) -> str:
    if view.mm_below_head_top is None:
        return "whole"
    mm = view.mm_below_head_top
    return f"{mm:g} below" if mm >= 0 else f"{-mm:g} above"


def _print_case(case: LabelledCase, name: str, load_s: float, runs: list[tuple[CaseView, Segmentation, Comparison,
                tuple[float, float]]], skipped: list[str], rule: DensityRule, tolerance: float) -> None:
    labelled = case.labels is not None
    n = case.volume.shape[0]
    z = case.superior_mm
    print(f"\n=== {name}: {n} slices, z {z.min():.0f} to {z.max():.0f} mm, loaded in {load_s:.1f} s; reference: "
          + ("manual annotation" if labelled else "no muscle annotation")
          + (f" + manual organ contours ({', '.join(case.organs)})" if case.organs else "") + " ===")
    if case.head_top is not None:
        print(f"Views end N mm below (above) the femoral head top at z {case.head_top.z_mm:.1f} mm "
              f"({case.head_top.source}); z is patient z of the slice, superior +.")
    if skipped:
        print("Views skipped: " + "; ".join(skipped))
    if not runs:
        return

    print("\nRuns")
    rows = []
    for view, _, comparison, (seg_s, meas_s) in runs:
        low, high = comparison.z_range_mm
        outside = comparison.outside
        rows.append([_view_name(view), str(view.stop - view.start), f"{low:.0f}-{high:.0f}", f"{seg_s:.1f}",
                     f"{meas_s:.2f}", _f(comparison.engine_muscle_cm3, 0),
                     _f(outside.outside_cm3, 0) if outside else "-",
                     _share(outside.outside_fraction) if outside else "-"])
    print(_table(["view", "slices", "z mm", "segment s", "measure s", "engine muscle cm3", "outside labels cm3",
                  "outside %"], rows))

    for group, title in ((Group.GLUTEAL, "Gluteal group (gluteus maximus + medius + minimus)"),
                         (Group.ABOVE_KNEE, "Above-knee group (hip and thigh muscles without psoas major)")):
        print(f"\n{title}, per side" + ("" if labelled else " (no annotation: engine only)"))
        rows = []
        for view, _, comparison, _ in runs:
            for side in SIDES:
                g = comparison.group(group, side)
                rows.append([_view_name(view), side.value, _f(g.engine.volume_cm3), _f(g.labels.volume_cm3)
                             if g.labels else "-", _pct(g.error),
                             _f(g.labels_in_window.volume_cm3) if g.labels_in_window else "-", _pct(g.error_in_window),
                             _f(g.engine.mass_g, 0), _f(g.labels.mass_g, 0) if g.labels else "-",
                             f"{_VERDICT.get(g.engine_verdict, g.engine_verdict)} / {g.labels_verdict or '-'}"])
        print(_table(["view", "side", "engine cm3", "labels cm3", "error", "labels in window cm3", "error",
                      "engine g", "labels g", "verdict engine / labels"], rows, left=2))

    print("\nUpper gluteal group (iliac crest top to femoral head centre), per side")
    rows = []
    for view, _, comparison, _ in runs:
        for side in SIDES:
            u = comparison.upper(side)
            rows.append([_view_name(view), side.value, _slab(case, u.engine_slices),
                         _f(u.engine.volume_cm3) if u.engine else "-", _f(u.engine.mass_g, 0) if u.engine else "-",
                         _f(u.labels_in_engine_slab.volume_cm3) if u.labels_in_engine_slab else "-",
                         _pct(u.error_same_slices), _slab(case, u.label_slices),
                         _f(u.labels_in_label_slab.volume_cm3) if u.labels_in_label_slab else "-",
                         _pct(u.error_own_landmarks),
                         f"{_VERDICT.get(u.engine_verdict, u.engine_verdict)} / {u.labels_verdict or '-'}"])
    print(_table(["view", "side", "engine z mm", "engine cm3", "engine g", "labels same slices cm3", "error",
                  "labels' z mm", "labels own cm3", "error", "verdict engine / labels"], rows, left=2))

    print("\nLandmarks: patient z (mm) of the slice; certainty c = confirmed, f = found, u = uncertain")
    names: list[tuple[str, Side | None]] = []
    for lm in case.landmarks:
        names.append((lm.name, lm.side))
    for _, _, comparison, _ in runs:
        for lm in comparison.engine_landmarks:
            if (lm.name, lm.side) not in names:
                names.append((lm.name, lm.side))
    rows = []
    for lm_name, side in names:
        ref = case.landmark(lm_name, side)
        row = [lm_name, side.value if side else "-", _f(ref.z_mm) if ref else "-"]
        for _, _, comparison, _ in runs:
            found = next((lm for lm in comparison.engine_landmarks if lm.name == lm_name and lm.side is side), None)
            row.append(f"{found.z_mm:.1f} {found.certainty[:1]}" if found else "-")
        rows.append(row)
    print(_table(["landmark", "side", "reference", *(_view_name(v) for v, _, _, _ in runs)], rows, left=2))
    methods = {}
    for _, _, comparison, _ in runs:
        for lm in comparison.engine_landmarks:
            methods.setdefault(lm.name, lm.method or "(no method given)")
    if methods:
        print("  engine methods: " + "; ".join(f"{k}: {v}" for k, v in methods.items()))
    notes = {lm.note for _, _, comparison, _ in runs for lm in comparison.engine_landmarks if lm.note}
    for note in sorted(notes):
        print(f"  engine note: {note}")
    reference: dict[str, str] = {}
    for lm in case.landmarks:
        reference.setdefault(lm.name, f"{lm.method} ({lm.source})")
    radii = [f"{lm.side.value if lm.side else ''} {lm.radius_mm:.1f} mm" for lm in case.landmarks
             if lm.radius_mm is not None]
    print("  reference methods: " + "; ".join(f"{k}: {v}" for k, v in reference.items())
          + (f"; femoral head radius {', '.join(radii)}" if radii else ""))

    whole = runs[0][2]
    if whole.outside is not None:
        print(f"\nEngine muscle outside all labelled muscle (> {tolerance:g} mm in-plane), whole series, by "
              f"{whole.outside.band_mm:g} mm level relative to the femoral head top")
        rows = []
        for band in whole.outside.bands:
            if not band.engine_cm3 and not band.landmarks:
                continue
            rows.append([f"{band.low_mm:+.0f} to {band.high_mm:+.0f}", _f(band.labelled_muscle_cm3, 0),
                         _f(band.engine_cm3, 0), _f(band.outside_cm3, 1), _share(band.outside_fraction),
                         ", ".join(band.landmarks)])
        rows.append(["total", "", _f(whole.outside.engine_cm3, 0), _f(whole.outside.outside_cm3, 1),
                     _share(whole.outside.outside_fraction), ""])
        print(_table(["level mm", "labelled muscle cm3", "engine cm3", "outside cm3", "outside %",
                      "landmarks in band (ref = reference, eng = engine)"], rows, left=1, last_left=True))

    if any(c.organs for _, _, c, _ in runs):
        print("\nEngine muscle inside manual organ contours")
        rows = []
        for view, _, comparison, _ in runs:
            for organ in comparison.organs:
                rows.append([_view_name(view), organ.organ, _f(organ.organ_cm3), _f(organ.engine_muscle_cm3, 2),
                             _share(organ.fraction)])
        print(_table(["view", "organ", "organ cm3 in view", "engine muscle cm3", "% of organ"], rows, left=2))

    views_of: dict[str, list[str]] = {}
    for view, segmentation, _, _ in runs:
        for note in segmentation.notes:
            views_of.setdefault(note, []).append(_view_name(view))
    if views_of:
        print("\nEngine notes")
        for note, names in views_of.items():
            print(f"  [{', '.join(names) if len(names) < len(runs) else 'every view'}] {note}")
    if labelled:
        print("\n" + FOOTNOTES.format(rule=rule.describe(), tolerance=tolerance))


# -- picture -----------------------------------------------------------------------------------------------------


def draw_figure(case: LabelledCase, view: CaseView, segmentation: Segmentation, comparison: Comparison,
                path: Path) -> None:
    """Axial slices at several levels (labelled muscle outlined, engine muscle inside the labels green, outside
    red) and coronal and sagittal projections of the outside voxels, with the reference's landmarks."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    assert comparison.outside is not None
    assert view.labels is not None
    frame = axial_frame(view.volume)  # head -> feet, anterior -> posterior, patient right -> left
    hu = frame.view(view.volume.hu)
    labelled = frame.view(np.isin(view.labels, MUSCLE_LABELS))
    engine = frame.view(np.isin(segmentation.labels, [s.label for s in segmentation.structures if s.is_muscle]))
    outside = frame.view(comparison.outside.mask)
    n = hu.shape[0]
    z = frame.view(case.superior_mm[view.start:view.stop][:, None, None])[:, 0, 0]

    def canonical(k_whole: int) -> int:
        return frame.slice_index(k_whole - view.start, n)  # the flip is its own inverse

    levels: list[tuple[str, int]] = []
    for name, title in (("iliac_crest", "crest top"), ("femoral_head", "head centre")):
        marks = [lm for lm in case.landmarks if lm.name == name]
        if marks:
            levels.append((title, canonical(round(np.mean([lm.slice_index for lm in marks])))))
    if len(levels) == 2:
        levels.insert(1, ("crest - head, halfway", (levels[0][1] + levels[1][1]) // 2))
    per_slice = outside.sum(axis=(1, 2))
    levels.append(("most outside", int(np.argmax(per_slice))))
    top = case.head_top
    if top is not None:
        below = np.nonzero(z <= top.z_mm - 80)[0]
        if below.size:
            levels.append(("80 mm below head top", int(below[0])))
    levels = sorted({k: t for t, k in levels}.items())  # one panel per slice, head first
    seen = (labelled | engine).any(axis=0)
    rows, cols = np.nonzero(seen) if seen.any() else (np.arange(hu.shape[1]), np.arange(hu.shape[2]))
    crop = (slice(max(int(rows.min()) - 15, 0), int(rows.max()) + 16),
            slice(max(int(cols.min()) - 15, 0), int(cols.max()) + 16))
    figure = Figure(figsize=(4.2 * len(levels), 9.5), dpi=110)
    FigureCanvasAgg(figure)
    columns = max(len(levels), 2)
    grid = figure.add_gridspec(2, columns, height_ratios=[1.0, 1.15])
    window = np.clip((hu.astype(np.float32) + 160) / 400, 0, 1)
    for column, (k, title) in enumerate(levels):
        ax = figure.add_subplot(grid[0, column])
        rgb = np.repeat(window[k][..., None], 3, axis=2)
        inside_engine = engine[k] & ~outside[k]
        rgb[inside_engine] = 0.55 * rgb[inside_engine] + 0.45 * np.array([0.1, 0.8, 0.2])
        rgb[outside[k]] = np.array([1.0, 0.1, 0.1])
        ax.imshow(rgb[crop], interpolation="nearest")
        if labelled[k][crop].any():
            ax.contour(labelled[k][crop].astype(float), levels=[0.5], colors=["#2f7fff"], linewidths=0.6)
        ax.set_title(f"{title}\nz {z[k]:.0f} mm, outside {per_slice[k] * view.volume.voxel_volume_mm3 / 1000:.1f} cm3",
                     fontsize=9)
        ax.set_axis_off()
    spacing = view.volume.spacing
    for column, (axis, title, ray_mm, pixel_mm) in enumerate(((1, "coronal projection", spacing[1], spacing[2]),
                                                              (2, "sagittal projection", spacing[2], spacing[1]))):
        half = columns // 2
        ax = figure.add_subplot(grid[1, :half] if column == 0 else grid[1, half:])
        keep = crop[1] if axis == 1 else crop[0]  # the in-plane axis left after projecting
        bone = (hu > 200).sum(axis=axis)[:, keep]
        thickness = outside.sum(axis=axis)[:, keep] * ray_mm  # mm of outside muscle along the ray
        width = bone.shape[1] * pixel_mm
        extent = (0.0, width, float(z[-1]), float(z[0]))
        ax.imshow(np.log1p(bone), cmap="gray", aspect="auto", extent=extent, interpolation="nearest")
        top_mm = float(np.percentile(thickness[thickness > 0], 99)) if (thickness > 0).any() else 1.0
        image = ax.imshow(np.ma.masked_equal(thickness, 0), cmap="YlOrRd", vmin=0, vmax=top_mm, alpha=0.85,
                          aspect="auto", extent=extent, interpolation="nearest")
        figure.colorbar(image, ax=ax, fraction=0.03, pad=0.01, label="outside muscle along the ray (mm)")
        for lm in case.landmarks:
            if lm.name in ("iliac_crest", "femoral_head", "femoral_head_top"):
                ax.axhline(lm.z_mm, color="#2f7fff", linewidth=0.6, linestyle="--")
                short = {"iliac_crest": "crest top", "femoral_head": "head centre"}.get(lm.name, "head top")
                ax.text(2 if lm.side is Side.RIGHT else width - 2, lm.z_mm + 2,
                        f"{short} {lm.side.value if lm.side else ''} (reference)", color="#2f7fff", fontsize=7,
                        ha="left" if lm.side is Side.RIGHT else "right")
        for lm in comparison.engine_landmarks:
            if lm.name in ("iliac_crest", "femoral_head"):
                ax.axhline(lm.z_mm, color="#ff9f1a", linewidth=0.8, linestyle=":")
        ax.set_title(f"{title} of the engine muscle outside the labels", fontsize=9)
        ax.set_ylabel("patient z (mm)")
        ax.set_xlabel("right -> left (mm)" if axis == 1 else "anterior -> posterior (mm)")
    figure.suptitle(f"{case.name}, {view.name}: engine {segmentation.engine_name} {segmentation.engine_version}. "
                    "Axial: blue outline = labelled muscle (5-28), green = engine muscle within "
                    f"{comparison.outside.tolerance_mm:g} mm of it, red = engine muscle outside. Projections: blue "
                    "dashed = reference crest top, head top, head centre; orange dotted = the engine's crest and head "
                    "centre", fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)


# -- JSON --------------------------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """Dataclasses (array fields left out), enums, tuples and numpy scalars as plain JSON values; computed ratios
    of the comparison types included."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)
               if not isinstance(getattr(value, f.name), np.ndarray)}
        for name in ("error", "error_in_window", "error_same_slices", "error_own_landmarks", "outside_fraction",
                     "fraction"):
            if hasattr(type(value), name):
                out[name] = getattr(value, name)
        return out
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


if __name__ == "__main__":
    sys.exit(main())
