"""The results of one series as a plain-text table, for the terminal and for the key image.

Groups are shown in `display_groups` order: the reference study's three first, then sarcoscreen's own groups
(the upper gluteal group), marked with `OWN_GROUP_MARK` and explained in a footnote. A group's mass is shown only
when the group is complete; for a truncated or uncertain group the status says how much of its muscle lies
inside the scan (a lower bound, marked ``>=``) and, when known, how far the scan falls short.

Two SMI columns: the screening SMI, a per-side value by the side rule, headed with what it is (e.g. ``SMI kg/m2
per side (mean of left and right)``: half the both-sides SMI), and beside it ``SMI kg/m2 both sides`` (both
sides' mass / height^2), so that neither is taken for the other.
"""

from __future__ import annotations

from sarcoscreen.inference.catalogue import Group
from sarcoscreen.inference.measure import (
    BOTH_SIDES,
    SMI_BASIS,
    Completeness,
    GroupMeasurement,
    MeasurementReport,
)
from sarcoscreen.inference.sides import SideRule

__all__ = ["OWN_GROUP_MARK", "display_groups", "group_label", "group_rows", "height_text", "own_groups_note",
           "partial_text", "results_table", "screening_smi_heading", "table_header", "table_rows"]

OWN_GROUP_MARK = "*"
"""Marks a group that is sarcoscreen's own, not one of the reference study's."""


def display_groups() -> tuple[Group, ...]:
    """The groups in the order reports show them: the reference study's first, then sarcoscreen's own."""
    return tuple(sorted(Group, key=lambda group: not group.of_reference_study))


def group_label(group: Group) -> str:
    """The group's name in a table: the reference study's groups by title; sarcoscreen's own groups by a short
    name with `OWN_GROUP_MARK` (`own_groups_note` gives their titles)."""
    if group.of_reference_study:
        return group.title
    return f"{group.value.replace('_', ' ').capitalize()} {OWN_GROUP_MARK}"


def own_groups_note() -> list[str]:
    """One footnote line per group that is sarcoscreen's own."""
    return [f"{OWN_GROUP_MARK} {group.value.replace('_', ' ').capitalize()}: {group.title}; sarcoscreen's own group, "
            "not one of the reference study's" for group in display_groups() if not group.of_reference_study]


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _kg(grams: float | None) -> str:
    return _num(None if grams is None else grams / 1000.0, 2)


def partial_text(group: GroupMeasurement) -> str:
    """For a truncated or uncertain group: its completeness, the mass of its muscle inside the scan as a lower
    bound and the scan's shortfall when known, e.g. ``truncated: in scan >= 6.12 kg, 40 mm short``; for a group with
    a member muscle not found where the scan holds it ``not found: QA, segmentation failure``; otherwise the
    completeness alone."""
    text = group.completeness.value
    if group.qa_flag:
        return f"{text}: QA, segmentation failure"
    if group.completeness is Completeness.COMPLETE or group.in_scan_smm_g is None:
        return text
    text += f": in scan >= {group.in_scan_smm_g / 1000.0:.2f} kg"
    if group.shortfall_mm is not None:
        text += f", {group.shortfall_mm:.0f} mm short"
    return text


def screening_smi_heading(report: MeasurementReport) -> str:
    """The heading of the screening SMI column: what the value is by the side rule (`measure.SMI_BASIS`)."""
    rule = report.screening[0].side_rule if report.screening else SideRule.MEAN
    return f"SMI kg/m2 {SMI_BASIS[rule]}"


def table_header(report: MeasurementReport) -> tuple[str, ...]:
    return ("group", "SMM left kg", "SMM right kg", "SMM both kg", screening_smi_heading(report),
            f"SMI kg/m2 {BOTH_SIDES}", "status")


def table_rows(report: MeasurementReport) -> list[tuple[str, ...]]:
    """The header and a row per group: the table `results_table` prints and the overlay draws."""
    return [table_header(report), *group_rows(report)]


def group_rows(report: MeasurementReport) -> list[tuple[str, ...]]:
    """(group, SMM left kg, SMM right kg, SMM both kg, SMI screening (per side, by the side rule), SMI both sides,
    status) per group, in `display_groups` order. SMM and SMI only for complete groups; an incomplete group's
    status is `partial_text`."""
    rows = []
    for group in display_groups():
        sides = {side: report.group(group, side) for side in ("left", "right", "both")}
        screening = report.screening_of(group)
        both = sides["both"]
        complete = both.completeness is Completeness.COMPLETE
        status = screening.classification.value if complete else partial_text(both)
        rows.append((
            group_label(group),
            _kg(sides["left"].smm_g),
            _kg(sides["right"].smm_g),
            _kg(both.smm_g),
            _num(screening.smi_kg_m2, 2),
            _num(both.smi_kg_m2, 2),
            status,
        ))
    return rows


def height_text(report: MeasurementReport) -> str:
    """The height used for SMI and its source, or why there is none."""
    if report.height_m is None:
        return report.height_note
    return f"height {report.height_m:.2f} m ({report.height_source})"


def results_table(report: MeasurementReport) -> str:
    """Groups (mass per side, screening SMI and both sides' SMI, status) and the reasons behind anything not
    measured."""
    rows = table_rows(report)
    columns = len(rows[0])
    widths = [max(len(row[i]) for row in rows) for i in range(columns)]
    text_columns = (0, columns - 1)  # group and status: left-aligned; numbers: right-aligned
    lines = ["  ".join(cell.ljust(widths[i]) if i in text_columns else cell.rjust(widths[i])
                       for i, cell in enumerate(row)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines += own_groups_note()
    height = height_text(report)
    lines += [
        "",
        f"engine {report.engine_name} {report.engine_version}; density {report.density_rule}; "
        f"HU window {report.hu_window[0]:g}..{report.hu_window[1]:g}; {height}",
    ]
    order = display_groups()
    for screening in sorted(report.screening, key=lambda s: order.index(s.group)):
        lines.append(f"{group_label(screening.group)}: {screening.reason}")
    lines += [f"note: {note}" for note in report.notes]
    return "\n".join(lines)
