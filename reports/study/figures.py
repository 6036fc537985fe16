"""The study's figures, as PNG and SVG: CT SMM against DXA lean mass with the least-squares line, and ROC curves
of CT SMI against DXA-defined low muscle mass with the optimal (Youden) point, one panel per group: the reference
study's three groups side by side (the layout of its Figure 2), and sarcoscreen's own groups (upper gluteal) in a
separate part of the figure to their right, headed as not being the reference study's.

Matplotlib's object interface with the Agg canvas (no pyplot, no display, no global figure state); SVG files
carry no date and a fixed hash salt, so the same results give the same files.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sarcoscreen.inference.catalogue import Group
from sarcoscreen.reports.study.analysis import SEX_NAMES, StudyResults

__all__ = ["write_figures"]

_COLOURS = {"F": "#c0392b", "M": "#2471a3"}
_MARKERS = {"F": "o", "M": "s"}
_PANEL_WIDTH = 4.5
"""Inches per panel."""
_OWN_HEADING = "sarcoscreen's own group\n(not one of the reference study's)"


def _save(figure: Figure, folder: Path, stem: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    paths = []
    with mpl.rc_context({"svg.hashsalt": "sarcoscreen", "svg.fonttype": "none"}):
        for suffix, options in ((".png", {"dpi": 150, "metadata": {"Software": None}}),
                                (".svg", {"metadata": {"Date": None, "Creator": None}})):
            path = folder / f"{stem}{suffix}"
            figure.savefig(path, bbox_inches="tight", **options)  # type: ignore[arg-type]
            paths.append(path)
    return paths


def _title(results: StudyResults, text: str) -> str:
    return f"SYNTHETIC DATA - {text}" if results.synthetic else text


def _sexes(results: StudyResults) -> list[str]:
    return [s.stratum for s in results.strata if s.stratum in ("F", "M")]


def _scatter_panel(axes: Axes, results: StudyResults, group: Group) -> None:
    for sex in _sexes(results):
        points = [(s.smm_kg[group], s.dxa_leg_lean_kg) for s in results.subjects
                  if s.sex == sex and s.smm_kg[group] is not None]
        if not points:
            continue
        x, y = zip(*points, strict=True)
        row = results.correlation(sex, group)
        label = f"{SEX_NAMES[sex]} (n = {row.n}"
        if row.spearman.r is not None:
            label += f", r_s = {row.spearman.r:.2f}"
        axes.scatter(x, y, s=18, alpha=0.8, color=_COLOURS[sex], marker=_MARKERS[sex], label=label + ")")
        if row.fit is not None:
            low, high = min(x), max(x)
            axes.plot([low, high], [row.fit.intercept + row.fit.slope * low, row.fit.intercept + row.fit.slope * high],
                      color=_COLOURS[sex], linewidth=1.2)
    axes.set_title(_panel_title(group), fontsize=10)
    axes.set_xlabel("CT skeletal muscle mass, both sides (kg)")
    axes.set_ylabel("DXA lean mass, lower extremities (kg)")
    axes.grid(alpha=0.3)
    if axes.collections:
        axes.legend(fontsize=7, loc="upper left")
    else:
        axes.text(0.5, 0.5, "not measured", ha="center", va="center", transform=axes.transAxes)


def _roc_panel(axes: Axes, results: StudyResults, group: Group) -> None:
    axes.plot([0, 1], [0, 1], color="0.6", linewidth=0.8, linestyle="--")
    drawn = False
    for sex in _sexes(results):
        row = results.roc(sex, group)
        if row.curve is None or row.auc is None:
            continue
        drawn = True
        label = f"{SEX_NAMES[sex]}: AUC {row.auc:.2f}"
        if row.auc_ci is not None:
            label += f" ({row.auc_ci[0]:.2f}-{row.auc_ci[1]:.2f})"
        label += f", n = {row.n} ({row.n_low} low)"
        # Straight segments between the points: a tie of SMI across the classes is a diagonal, as the trapezoid AUC.
        axes.plot(row.curve.fpr, row.curve.tpr, color=_COLOURS[sex], linewidth=1.5, label=label)
        if row.optimal is not None:
            point = row.optimal
            axes.plot(1 - point.specificity, point.sensitivity, marker="o", markersize=7, markerfacecolor="white",
                      markeredgecolor=_COLOURS[sex], markeredgewidth=1.8, linestyle="none")
            axes.annotate(f"SMI < {point.cutoff:.2f} kg/m²\nSe {point.sensitivity:.2f}, Sp {point.specificity:.2f}",
                          (1 - point.specificity, point.sensitivity), textcoords="offset points", xytext=(10, -24),
                          fontsize=7, color=_COLOURS[sex])
    axes.set_xlim(-0.02, 1.02)
    axes.set_ylim(-0.02, 1.02)
    axes.set_aspect("equal")
    axes.set_title(_panel_title(group), fontsize=10)
    axes.set_xlabel("1 - specificity")
    axes.set_ylabel("Sensitivity")
    axes.grid(alpha=0.3)
    if drawn:
        axes.legend(fontsize=7, loc="lower right")
    else:
        axes.text(0.5, 0.5, "no ROC analysis", ha="center", va="center", transform=axes.transAxes)


def _panel_title(group: Group) -> str:
    return textwrap.fill(group.title, 36)


def _panels(height: float, results: StudyResults, draw: Callable[[Axes, StudyResults, Group], None]) -> Figure:
    """A figure with one panel per group: the reference study's groups in one row, sarcoscreen's own groups in a
    part of their own to the right (with a heading saying so)."""
    reference = [g for g in Group if g.of_reference_study]
    own = [g for g in Group if not g.of_reference_study]
    figure = Figure(figsize=(_PANEL_WIDTH * len(Group), height), layout="constrained")
    parts = figure.subfigures(1, 2, width_ratios=[len(reference), len(own)], wspace=0.04) if own else [figure]
    for part, groups in zip(parts, (reference, own), strict=False):
        for axes, group in zip(np.atleast_1d(part.subplots(1, len(groups))), groups, strict=True):
            draw(axes, results, group)
    if own:
        parts[1].set_facecolor("#f4f4f4")
        parts[1].suptitle(_OWN_HEADING, fontsize=9, style="italic")
        parts[0].suptitle("The reference study's groups", fontsize=9, style="italic")
    return figure


def write_figures(results: StudyResults, folder: Path) -> dict[str, list[Path]]:
    """Write ``scatter_smm_dxa`` and ``roc_smi`` as PNG and SVG into `folder`."""
    scatter = _panels(4.9, results, _scatter_panel)
    scatter.suptitle(_title(results, "CT skeletal muscle mass against DXA lean mass of the lower extremities"))
    roc = _panels(5.2, results, _roc_panel)
    roc.suptitle(_title(results, f"CT SMI ({results.side_rule.value} of sides) for low muscle mass by "
                                 f"{results.definition.name} (DXA); o = Youden-optimal cut-off"))
    return {"scatter": _save(scatter, folder, "scatter_smm_dxa"), "roc": _save(roc, folder, "roc_smi")}
