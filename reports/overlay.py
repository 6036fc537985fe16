"""A picture of the result: axial slices at the landmarks with the coloured masks, and the results table
(`results_table.table_rows`: the reference study's groups first, sarcoscreen's own after them and marked; the
screening SMI headed with what it is, e.g. per side (mean of left and right), and both sides' SMI beside it).

Used for ``overlay.png`` of ``sarcoscreen analyze`` and as the pixel data of the key image. Burns in no patient
name or identifier: only the results, the engine with its notes (`Segmentation.notes`, e.g. the model's training
data and intended use) and the slice positions.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sarcoscreen.inference.catalogue import CATALOGUE
from sarcoscreen.inference.engines.base import Segmentation
from sarcoscreen.inference.measure import MeasurementReport
from sarcoscreen.inference.volume import Volume
from sarcoscreen.reports.results_table import display_groups, group_label, height_text, own_groups_note, table_rows

__all__ = ["choose_slices", "render_overlay"]

WINDOW_CENTRE = 40.0
WINDOW_WIDTH = 400.0
ALPHA = 0.45
PANEL = 320


def choose_slices(volume: Volume, segmentation: Segmentation, count: int = 4) -> list[tuple[int, str]]:
    """Slices to show with a caption each: the landmarks when the engine found some, else evenly spaced
    slices through the labelled extent (or the whole scan when nothing was labelled)."""
    chosen: list[tuple[int, str]] = []
    seen: set[int] = set()
    for landmark in sorted(segmentation.landmarks, key=lambda lm: lm.slice_index):
        if landmark.slice_index in seen:
            continue
        seen.add(landmark.slice_index)
        side = f" ({landmark.side.value})" if landmark.side else ""
        chosen.append((landmark.slice_index, f"{landmark.name.replace('_', ' ')}{side}"))
    if len(chosen) > count:
        step = (len(chosen) - 1) / (count - 1)
        chosen = [chosen[round(i * step)] for i in range(count)]
    if not chosen:
        labelled = np.flatnonzero(segmentation.labels.reshape(segmentation.labels.shape[0], -1).any(axis=1))
        first, last = (labelled[0], labelled[-1]) if labelled.size else (0, volume.shape[0] - 1)
        indices = np.unique(np.linspace(first, last, count + 2).round().astype(int)[1:-1])
        chosen = [(int(k), "") for k in indices]
    z = volume.slice_z_mm()
    return [(k, f"{caption}  z={z[k]:.0f} mm".strip()) for k, caption in chosen]


def _colour_table() -> np.ndarray:
    table = np.zeros((256, 3), np.float32)
    for structure in CATALOGUE:
        table[structure.label] = structure.anatomy.colour
    return table


def _panel(volume: Volume, labels: np.ndarray, k: int, colours: np.ndarray) -> Image.Image:
    hu = volume.hu[k].astype(np.float32)
    low = WINDOW_CENTRE - WINDOW_WIDTH / 2
    grey = np.clip((hu - low) / WINDOW_WIDTH, 0, 1) * 255
    rgb = np.repeat(grey[..., None], 3, axis=2)
    mask = labels[k] > 0
    rgb[mask] = (1 - ALPHA) * rgb[mask] + ALPHA * colours[labels[k][mask]]
    image = Image.fromarray(rgb.astype(np.uint8), "RGB")
    # Square pixels on screen: scale by the physical aspect ratio.
    aspect = volume.spacing[1] / volume.spacing[2]
    width = PANEL
    height = max(1, round(PANEL * image.height / image.width * aspect))
    return image.resize((width, height), Image.Resampling.BILINEAR)


def _table_columns(rows: list[tuple[str, ...]], font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> list[int]:
    """Left edge (pixels) of each table column: each as wide as its widest cell, 14 pixels apart."""
    columns = [6]
    for i in range(len(rows[0]) - 1):
        columns.append(columns[-1] + max(round(font.getlength(row[i])) for row in rows) + 14)
    return columns


def _wrap(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: float) -> list[str]:
    """`text` as lines no wider than `width` pixels, broken at spaces (a single longer word stays whole)."""
    lines: list[str] = []
    current = ""
    for word in text.split(" "):
        candidate = f"{current} {word}" if current else word
        if current and font.getlength(candidate) > width:
            lines.append(current)
            current = f"    {word}"
        else:
            current = candidate
    return [*lines, current]


def render_overlay(volume: Volume, segmentation: Segmentation, report: MeasurementReport,
                   count: int = 4) -> Image.Image:
    """RGB image: up to `count` axial panels with masks over a soft-tissue window, then the results table."""
    colours = _colour_table()
    slices = choose_slices(volume, segmentation, count)
    panels = [_panel(volume, segmentation.labels, k, colours) for k, _ in slices]
    font = ImageFont.load_default(13)
    caption_h = 20
    panels_h = max((p.height for p in panels), default=0) + caption_h
    rows = table_rows(report)
    order = display_groups()
    line_h = 17
    columns = _table_columns(rows, font)
    table_w = columns[-1] + max(round(font.getlength(row[-1])) for row in rows) + 6
    width = max(PANEL * max(len(panels), 1), 960, table_w)
    notes = [
        *own_groups_note(),
        f"engine {report.engine_name} {report.engine_version}; density {report.density_rule}; {height_text(report)}",
        *(f"{group_label(s.group)}: {s.reason}" for s in sorted(report.screening, key=lambda s: order.index(s.group))),
        # the engine's notes (e.g. the model's training data and intended use, a synthetic-data warning): the key
        # image is what a reader sees, so they are on it, wrapped to the picture's width
        *(line for note in report.notes for line in _wrap(f"note: {note}", font, width - 12)),
    ]
    height = panels_h + line_h * (len(rows) + len(notes) + 2)
    canvas = Image.new("RGB", (width, height), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    for n, (panel, (_, caption)) in enumerate(zip(panels, slices, strict=True)):
        canvas.paste(panel, (n * PANEL, caption_h))
        draw.text((n * PANEL + 4, 3), caption, fill=(255, 255, 0), font=font)
    y = panels_h + 8
    for r, row in enumerate(rows):
        for x, cell in zip(columns, row, strict=True):
            draw.text((x, y), cell, fill=(255, 255, 255) if r == 0 else (220, 220, 220), font=font)
        y += line_h
    y += line_h // 2
    for note in notes:
        draw.text((6, y), note, fill=(180, 180, 180), font=font)
        y += line_h
    return canvas
