"""Routing rules: does a stable series qualify for muscle analysis, and if not, why not.

A series that has been idle for ``stable_age`` seconds is summarised from its instances' headers
(`SeriesSummary`) and checked against `RoutingRules`. The decision is either "analyse" or "skipped" with every
reason in words, stored with the series so a PACS administrator can see why a scan was not processed.

The anatomical condition "the scan reaches at least the gluteal region" needs the images; it is checked by the
worker (a series whose gluteal group is not measurable is reported as such, never silently dropped).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field

from sarcoscreen.inference.sop_classes import CT_IMAGE_STORAGE_SOP_CLASSES

__all__ = ["Decision", "RoutingRules", "SeriesSummary", "decide"]


@dataclass(frozen=True)
class SeriesSummary:
    """What routing needs to know of a series, from its instances' headers (no patient data)."""

    series_instance_uid: str
    modality: str
    sop_class_uids: frozenset[str]
    instances: int
    frames: int
    """Slices: instances of single-frame classes plus the frames of multi-frame instances."""
    image_types: frozenset[str] = frozenset()
    """Values of ImageType (0008,0008) seen, e.g. {"ORIGINAL", "PRIMARY", "AXIAL", "LOCALIZER"}."""
    axial: bool = True
    """ImageOrientationPatient is (nearly) axial for the majority of slices."""
    slice_thickness_mm: float | None = None
    body_part: str = ""
    study_description: str = ""
    series_description: str = ""


@dataclass(frozen=True)
class RoutingRules:
    """Site rules; patterns are case-insensitive shell-style (``*HIP*``)."""

    min_slices: int = 20
    max_slice_thickness_mm: float = 5.0
    include_body_parts: Sequence[str] = ()
    """When not empty, BodyPartExamined must match one (an empty BodyPartExamined passes: it is often missing)."""
    exclude_body_parts: Sequence[str] = ("HEAD", "BRAIN", "*CHEST*", "THORAX", "NECK")
    include_descriptions: Sequence[str] = ()
    """When not empty, the study or series description must match one."""
    exclude_descriptions: Sequence[str] = ("*SCOUT*", "*TOPO*", "*LOCALIZER*", "*DOSE*", "*MIP*", "*MPR*")


@dataclass(frozen=True)
class Decision:
    analyse: bool
    reasons: tuple[str, ...] = field(default=())

    @property
    def text(self) -> str:
        return "analyse" if self.analyse else "skipped: " + "; ".join(self.reasons)


def _matches(value: str, patterns: Sequence[str]) -> str | None:
    upper = value.upper()
    return next((p for p in patterns if fnmatch.fnmatchcase(upper, p.upper())), None)


def decide(summary: SeriesSummary, rules: RoutingRules) -> Decision:
    """Apply `rules` to `summary`; every failed rule contributes its reason."""
    reasons: list[str] = []
    if summary.modality != "CT":
        reasons.append(f"modality {summary.modality or '(none)'} is not CT")
    unsupported = sorted(summary.sop_class_uids.difference(CT_IMAGE_STORAGE_SOP_CLASSES))
    if unsupported:
        reasons.append(f"SOP class {', '.join(unsupported)} is not a CT image storage class")
    if "LOCALIZER" in summary.image_types and summary.frames < rules.min_slices:
        reasons.append("a localizer (scout) series")
    if not summary.axial:
        reasons.append("not axial")
    if summary.frames < rules.min_slices:
        reasons.append(f"{summary.frames} slices, fewer than the {rules.min_slices} required")
    if summary.slice_thickness_mm is not None and summary.slice_thickness_mm > rules.max_slice_thickness_mm:
        reasons.append(f"slice thickness {summary.slice_thickness_mm:g} mm exceeds {rules.max_slice_thickness_mm:g} mm")
    body_part = summary.body_part.strip()
    if body_part:
        excluded = _matches(body_part, rules.exclude_body_parts)
        if excluded:
            reasons.append(f"body part {body_part} is excluded ({excluded})")
        elif rules.include_body_parts and not _matches(body_part, rules.include_body_parts):
            reasons.append(f"body part {body_part} is not among {', '.join(rules.include_body_parts)}")
    descriptions = [d for d in (summary.study_description, summary.series_description) if d.strip()]
    for description in descriptions:
        excluded = _matches(description, rules.exclude_descriptions)
        if excluded:
            reasons.append(f"description {description!r} is excluded ({excluded})")
    if rules.include_descriptions and not any(_matches(d, rules.include_descriptions) for d in descriptions):
        reasons.append(f"no description matches {', '.join(rules.include_descriptions)}")
    return Decision(not reasons, tuple(reasons))
