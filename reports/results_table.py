"""The results of one series as a plain-text table, for the terminal and for the key image."""

from __future__ import annotations

from sarcoscreen.inference.catalogue import Group
from sarcoscreen.inference.measure import Completeness, MeasurementReport

__all__ = ["group_rows", "height_text", "results_table"]


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _kg(grams: float | None) -> str:
    return _num(None if grams is None else grams / 1000.0, 2)


def group_rows(report: MeasurementReport) -> list[tuple[str, str, str, str, str, str]]:
    """(group, SMM left kg, SMM right kg, SMM both kg, SMI screening, status) per group."""
    rows = []
    for group in Group:
        sides = {side: report.group(group, side) for side in ("left", "right", "both")}
        screening = report.screening_of(group)
        both = sides["both"]
        if both.completeness is Completeness.COMPLETE:
            status = screening.classification.value
        else:
            status = both.completeness.value
        rows.append((
            group.title,
            _kg(sides["left"].smm_g),
            _kg(sides["right"].smm_g),
            _kg(both.smm_g),
            _num(screening.smi_kg_m2, 2),
            status,
        ))
    return rows


def height_text(report: MeasurementReport) -> str:
    """The height used for SMI and its source, or why there is none."""
    if report.height_m is None:
        return report.height_note
    return f"height {report.height_m:.2f} m ({report.height_source})"


def results_table(report: MeasurementReport) -> str:
    """Groups (mass per side, screening SMI, status) and the reasons behind anything not measured."""
    header = ("group", "SMM left kg", "SMM right kg", "SMM both kg", "SMI kg/m2", "status")
    rows = [header, *group_rows(report)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    height = height_text(report)
    lines += [
        "",
        f"engine {report.engine_name} {report.engine_version}; density {report.density_rule}; "
        f"HU window {report.hu_window[0]:g}..{report.hu_window[1]:g}; {height}",
    ]
    for screening in report.screening:
        lines.append(f"{screening.group.title}: {screening.reason}")
    lines += [f"note: {note}" for note in report.notes]
    return "\n".join(lines)
