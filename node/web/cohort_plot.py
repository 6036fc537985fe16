"""The cohort view's picture: the screening SMI distribution per muscle group (rows) and sex (columns), as a PNG.

Each panel is a histogram stacked by the classification the node stored (flagged - below the cut-off - in red,
not suspected in blue, not classified in grey) with the calibrated cut-off of that group and sex drawn as a dashed
line; the panel's counts are written in its corner. Bins are shared along a row (one group's two sexes compare
directly). Matplotlib's object interface with the Agg canvas, as `sarcoscreen.reports.study.figures` (no pyplot,
no global figure state: safe in the console's thread pool); the PNG carries no software or date metadata.
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Mapping, Sequence

from sarcoscreen.inference.catalogue import Group

__all__ = ["GROUP_NAMES", "SEX_TITLES", "render_cohort_png"]

SEX_TITLES = {"F": "women", "M": "men"}
GROUP_NAMES = {Group.GLUTEAL.value: "gluteal", Group.ABOVE_KNEE.value: "above knee",
               Group.ALL.value: "all lower extremity", Group.UPPER_GLUTEAL.value: "upper gluteal (iliac crest to "
                                                                                  "femoral head)"}
"""Short names of the groups for panel titles and tables (`Group.title` is the long one)."""
_CLASSES = (("suspected", "flagged (below cut-off)", "#c0392b"),
            ("not suspected", "not suspected", "#2471a3"),
            (None, "not classified", "#a6acb3"))
_PANEL = (4.6, 2.5)
"""Inches per panel (width, height)."""


def _class_of(classification: str | None) -> str | None:
    """The stack a stored classification goes in (`_CLASSES`): anything but the two verdicts is not classified."""
    return classification if classification in ("suspected", "not suspected") else None


def _bins(values: Sequence[float]) -> list[float]:
    """About 25 bins of a round width over `values` (one bin around a single value)."""
    low, high = min(values), max(values)
    if high - low < 1e-9:
        return [low - 0.25, low + 0.25]
    raw = (high - low) / 25
    step = min((s for s in (0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0) if s >= raw), default=10.0)
    start = math.floor(low / step) * step
    count = math.ceil((high - start) / step + 1e-9)
    return [start + step * n for n in range(count + 1)]


def render_cohort_png(values: Mapping[tuple[str, str], Sequence[tuple[float, str | None]]], groups: Sequence[str],
                      sexes: Sequence[str], cutoffs: Mapping[tuple[str, str], float], title: str) -> bytes:
    """The PNG of `values` ((group, sex) -> (screening SMI, classification) pairs) for `groups` x `sexes`, with
    `cutoffs` ((group, sex) -> kg/m^2; none for a panel without one) and `title` above."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(_PANEL[0] * len(sexes), _PANEL[1] * len(groups) + 0.6), layout="constrained")
    FigureCanvasAgg(figure)
    panels = figure.subplots(len(groups), len(sexes), squeeze=False)
    for row, group in enumerate(groups):
        in_row = [smi for sex in sexes for smi, _ in values.get((group, sex), ())]
        bins = _bins(in_row) if in_row else None
        for column, sex in enumerate(sexes):
            axes = panels[row][column]
            points = values.get((group, sex), ())
            axes.set_title(f"{GROUP_NAMES.get(group, group).capitalize()} - {SEX_TITLES[sex]}", fontsize=9)
            if not points or bins is None:
                axes.text(0.5, 0.5, "no measured series", ha="center", va="center", transform=axes.transAxes,
                          color="#5d6677")
                axes.set_xticks([])
                axes.set_yticks([])
                continue
            axes.grid(alpha=0.3)
            stacks = [[smi for smi, c in points if _class_of(c) == key] for key, _, _ in _CLASSES]
            axes.hist(stacks, bins=bins, stacked=True, color=[colour for _, _, colour in _CLASSES],
                      label=[label for _, label, _ in _CLASSES])
            cutoff = cutoffs.get((group, sex))
            if cutoff is not None:
                axes.axvline(cutoff, color="#1d2330", linestyle="--", linewidth=1.3)
                axes.annotate(f"cut-off {cutoff:.2f}", (cutoff, 1.0), xycoords=("data", "axes fraction"),
                              xytext=(3, -3), textcoords="offset points", va="top", fontsize=8,
                              bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "alpha": 0.8,
                                    "edgecolor": "none"})
            else:
                axes.text(0.01, 0.97, "no cut-off", ha="left", va="top", fontsize=8, color="#5d6677",
                          transform=axes.transAxes)
            flagged = len(stacks[0])
            share = f" ({100 * flagged / len(points):.0f} %)"
            axes.text(0.99, 0.97, f"n = {len(points)}\nflagged {flagged}{share}", ha="right", va="top", fontsize=8,
                      transform=axes.transAxes, bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8,
                                                      "edgecolor": "#d7dbe3"})
            axes.set_ylabel("series", fontsize=8)
            axes.tick_params(labelsize=8)
    for axes in panels[-1]:
        axes.set_xlabel("screening SMI, per side (kg/m²)", fontsize=8)
    handles, labels = next((a.get_legend_handles_labels() for row in panels for a in row
                            if a.get_legend_handles_labels()[0]), ([], []))
    if handles:
        figure.legend(handles, labels, loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    figure.suptitle("\n".join(textwrap.wrap(title, 60 * len(sexes))), fontsize=10)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()
