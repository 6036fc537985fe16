"""Where each muscle should be along the body axis, relative to bony landmarks, measured on real anatomy.

Measurement uses this to tell apart two reasons a per-muscle engine's muscle has no voxels (`inference.measure`):

* **not in the scan**: the landmarks the scan holds place the muscle wholly outside it;
* **not found**: the scan holds levels where the muscle lies in every reference - a segmentation failure, flagged
  for QA;
* neither can be told: no landmark to place it by, or the scan reaches only the edge of where it may lie.

**The table** (`REFERENCE_EXTENTS`): per catalogue muscle, the craniocaudal level of its top and bottom relative to
each of four landmarks - the top of the iliac crest, the femoral head top, the femoral head centre and the ischial
tuberosity (the pelvis bottom) - as the range (lowest, highest; mm, head +) over the references. Levels are patient
z of the highest and lowest slice holding the muscle's label on that side.

**Where the numbers come from.** The three manual label maps of real pelvic CT in
``../shared/data/pelvic-annotation/Pelvic-Ref-{001,002,004}`` (TCIA Pelvic Reference Data; annotation
yuta-hi/pelvic-annonation, MIT licence; ``../shared/data/README.md``), read by
`inference.phantom.realistic.source.read_annotation`, split into sides and given their landmarks by
`inference.labelled_ct` (`inference.bone_landmarks`: crest top and pelvis bottom = highest and lowest slice of
the pelvis label, femoral head top = highest slice of the femur label, head centre = the distance transform's
maximum within 60 mm of it). Both sides of the three cases: six values per entry; 1 x 1 x 3 mm voxels, so levels
are multiples of 3 mm. Measured by `measure_reference_extents`, printed by ``benchmarks/muscle_extents.py``;
``tests/inference/test_muscle_extents.py`` measures the label maps again and compares them with the table. On these
maps the two sides' landmarks differ by at most 3 mm (crest top, pelvis bottom) and 6 mm (femoral head top and
centre).

**What can be judged.** The label maps cover mid-thigh to the lumbar spine. A muscle whose label touches their
lowest slice in a reference continues below it (``continues_below``: the adductors, biceps femoris, gracilis,
rectus femoris, sartorius, semimembranosus, semitendinosus and the vasti): its top is measured, and for its bottom
only that it reaches at least the lowest annotated level (the table's bottom range is that level). The lower-leg
muscles are not in the label maps at all (``below_references``): all that is known is that they lie below the lowest
annotated level of every reference - anatomy, not measurement: the femur label runs through that level in all
three maps, so the knee and the leg below it are lower. For such a muscle the rule can only say "the scan covers
at least part of where it should be" when the scan reaches its known part; a lower-leg muscle is never called
*not found* from these landmarks. Psoas major belongs to no group; its top (origin at T12-L4) may lie above what
the annotators labelled.

**The rule** (`place`): each end of the muscle is placed by the landmark, among those the scan holds, whose
range is narrowest, and every range is widened by a margin for patients unlike the three references
(`MARGIN_MM` + `MARGIN_FRACTION` of the distance to the landmark - a judgement, not a measurement: three patients cannot
show the spread of all patients, and distances along the body scale with its size). *Where it lies in every
reference* is the span from its highest possible bottom to its lowest possible top; *where it may lie* from its
lowest possible bottom to its highest possible top. The scan holding at least `MIN_COVER_MM` of the first makes a
missing muscle **not found**; a scan wholly outside the second makes it **not in the scan**.

**Checked leaving one case out** (``benchmarks/muscle_extents.py --check``): the table measured on two cases, the
third cut into scans ending or starting every 15 mm along its length, each scan's landmarks found on its own bone
labels as an engine's are (`inference.bone_landmarks.landmarks_from_labels`). Over the 18 hip and thigh muscles of
the groups, both sides: 2578 verdicts *covered*, none of them without labelled voxels (no false "not found"); 771
*outside*, none with labelled voxels in the scan (no false "not in the scan"); 3131 cannot be told. Psoas major
failed this check (its labelled bottom lies up to 93 mm apart between the references); it belongs to no group and
measurement does not judge it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np

from sarcoscreen.inference.catalogue import CATALOGUE, Kind, Region, Side

if TYPE_CHECKING:
    from sarcoscreen.inference.labelled_ct import LabelledCase

__all__ = [
    "LANDMARKS",
    "LANDMARK_ALIASES",
    "MARGIN_FRACTION",
    "MARGIN_MM",
    "MIN_COVER_MM",
    "REFERENCE_CASES",
    "REFERENCE_EXTENTS",
    "Coverage",
    "LevelRange",
    "Placement",
    "ReferenceExtent",
    "measure_reference_extents",
    "place",
]

LANDMARKS = ("iliac_crest", "femoral_head_top", "femoral_head", "ischial_tuberosity")
"""The landmarks the table is relative to, by their engine names (`engines.base.Landmark.name`): the top of the iliac
crest, the femoral head top, the femoral head centre, the ischial tuberosity (the pelvis bottom)."""
LANDMARK_ALIASES = MappingProxyType({"pelvis_bottom": "ischial_tuberosity"})
"""Other names of the same landmarks: `labelled_ct` calls the lowest slice of the pelvis ``pelvis_bottom``."""
_WORDS = {"iliac_crest": "iliac crest top", "femoral_head_top": "femoral head top",
          "femoral_head": "femoral head centre", "ischial_tuberosity": "ischial tuberosity"}

REFERENCE_CASES = ("Pelvic-Ref-001", "Pelvic-Ref-002", "Pelvic-Ref-004")
"""The annotated cases the table was measured on (``../shared/data/pelvic-annotation``)."""

MARGIN_MM = 10.0
"""Fixed part of the margin around every reference range: about three of the references' 3 mm slices (a judgement,
see the module docstring)."""
MARGIN_FRACTION = 0.15
"""Part of the margin proportional to the distance from the landmark (a judgement: body dimensions of adults vary
by roughly this much around their mean, and the references' own ranges are of this order - e.g. the gluteus
maximus bottom lies 66-96 mm below the pelvis bottom)."""
MIN_COVER_MM = 10.0
"""How much of the levels where a muscle lies in every reference (margin taken off) the scan must hold before a
muscle without voxels is *not found* rather than perhaps at the scan's edge."""


@dataclass(frozen=True)
class LevelRange:
    """The level of one end of a muscle relative to one landmark over the references (mm, head +)."""

    low_mm: float
    high_mm: float

    @property
    def width_mm(self) -> float:
        return self.high_mm - self.low_mm

    @property
    def margin_mm(self) -> float:
        """The margin this range is widened by for patients unlike the references."""
        return MARGIN_MM + MARGIN_FRACTION * max(abs(self.low_mm), abs(self.high_mm))


@dataclass(frozen=True)
class ReferenceExtent:
    """Where one muscle (a catalogue anatomy, both sides) lies relative to the landmarks in the references."""

    anatomy: str
    top: Mapping[str, LevelRange]
    """Landmark -> level of the muscle's top. For a muscle `below_references`: of the lowest annotated level, which
    its top lies below."""
    bottom: Mapping[str, LevelRange]
    """Landmark -> level of the muscle's bottom. For a muscle that `continues_below`: of the lowest level it reaches
    in the references (the lowest annotated level where it runs beyond). Empty for a muscle `below_references`."""
    continues_below: bool = False
    """Its label touches the lowest annotated slice in at least one reference: the muscle goes on below."""
    continues_above: bool = False
    """Its label touches the highest annotated slice in at least one reference."""
    below_references: bool = False
    """Not in the label maps: a lower-leg muscle, below the lowest annotated level of every reference."""

    @property
    def judged(self) -> bool:
        """Both ends measured inside the annotated range: the whole extent is known."""
        return not (self.continues_below or self.continues_above or self.below_references)


class Coverage(StrEnum):
    COVERED = "covered"
    """The scan holds levels where the muscle lies in every reference: without voxels it was *not found*."""
    OUTSIDE = "outside"
    """The landmarks place the muscle wholly outside the scan: *not in the scan*."""
    UNKNOWN = "unknown"
    """No landmark to place it by, or the scan reaches only the edge of where it may lie."""


@dataclass(frozen=True)
class Placement:
    """The verdict of `place` on a muscle and a scan, in words (no patient data: levels relative to the scan and the
    landmarks)."""

    coverage: Coverage
    gist: str
    """The verdict's reason without numbers, e.g. ``no landmarks to tell`` (never holds `` (``)."""
    detail: str = ""
    """Where the muscle should be and how much of it the scan holds."""

    @property
    def reason(self) -> str:
        """``gist (detail)``."""
        return f"{self.gist} ({self.detail})" if self.detail else self.gist


def _span(values: Sequence[float]) -> LevelRange:
    """Lowest and highest of `values`, to 0.1 mm (the levels are whole slices of 3 mm; this drops float noise)."""
    return LevelRange(round(float(min(values)), 1), round(float(max(values)), 1))


def measure_reference_extents(cases: Sequence[LabelledCase]) -> dict[str, ReferenceExtent]:
    """The table, measured on annotated cases (`labelled_ct.LabelledCase` with an annotation and its landmarks):
    every catalogue muscle, the ranges over both sides of every case (see the module docstring)."""
    from sarcoscreen.inference.labelled_ct import ANNOTATION_TO_CATALOGUE, LabelledCTError

    value_of = {key: value for value, (_, key) in ANNOTATION_TO_CATALOGUE.items()}
    tops: dict[str, dict[str, list[float]]] = {}
    bottoms: dict[str, dict[str, list[float]]] = {}
    lowest: dict[str, list[float]] = {name: [] for name in LANDMARKS}
    below: set[str] = set()
    above: set[str] = set()
    for case in cases:
        if case.labels is None:
            raise LabelledCTError(f"{case.name}: no annotation to measure extents on")
        z = case.superior_mm
        z_low, z_high = float(z.min()), float(z.max())
        for side in (Side.RIGHT, Side.LEFT):
            marks = {LANDMARK_ALIASES.get(lm.name, lm.name): lm.z_mm for lm in case.landmarks if lm.side is side}
            missing = [name for name in LANDMARKS if name not in marks]
            if missing:
                raise LabelledCTError(f"{case.name}: no {', '.join(missing)} on the {side.value} side")
            for name in LANDMARKS:
                lowest[name].append(z_low - marks[name])
            for anatomy in CATALOGUE.anatomies:
                if anatomy.kind is not Kind.MUSCLE or anatomy.key not in value_of:
                    continue
                ks = np.nonzero(case._label_on_side((value_of[anatomy.key],), side).any(axis=(1, 2)))[0]
                if ks.size == 0:
                    raise LabelledCTError(f"{case.name}: no {anatomy.name} on the {side.value} side")
                top, bottom = float(z[ks].max()), float(z[ks].min())
                if top >= z_high:
                    above.add(anatomy.key)
                if bottom <= z_low:
                    below.add(anatomy.key)
                for name in LANDMARKS:
                    tops.setdefault(anatomy.key, {}).setdefault(name, []).append(top - marks[name])
                    bottoms.setdefault(anatomy.key, {}).setdefault(name, []).append(bottom - marks[name])
    table: dict[str, ReferenceExtent] = {}
    for anatomy in CATALOGUE.anatomies:
        if anatomy.kind is not Kind.MUSCLE:
            continue
        if anatomy.key in tops:
            table[anatomy.key] = ReferenceExtent(
                anatomy.key, MappingProxyType({n: _span(v) for n, v in tops[anatomy.key].items()}),
                MappingProxyType({n: _span(v) for n, v in bottoms[anatomy.key].items()}),
                continues_below=anatomy.key in below, continues_above=anatomy.key in above)
        elif anatomy.region is Region.LOWER_LEG:
            table[anatomy.key] = ReferenceExtent(
                anatomy.key, MappingProxyType({n: _span(v) for n, v in lowest.items()}), MappingProxyType({}),
                below_references=True)
        else:
            raise LabelledCTError(f"{anatomy.name} is in no annotation and not a lower-leg muscle")
    return table


def _extent(anatomy: str, top: Sequence[tuple[float, float]], bottom: Sequence[tuple[float, float]] = (), *,
            below: bool = False, above: bool = False, lower_leg: bool = False) -> ReferenceExtent:
    """A row of the recorded table: `top` and `bottom` (lowest, highest) per landmark in `LANDMARKS` order."""
    return ReferenceExtent(anatomy, MappingProxyType({n: LevelRange(*v) for n, v in zip(LANDMARKS, top, strict=True)}),
                           MappingProxyType({n: LevelRange(*v) for n, v in zip(LANDMARKS, bottom, strict=False)}),
                           continues_below=below, continues_above=above, below_references=lower_leg)


# Generated by benchmarks/muscle_extents.py from Pelvic-Ref-001, 002 and 004 (both sides); do not edit by hand.
# Per anatomy: the (lowest, highest) level in mm of its top, then of its bottom, relative to each of LANDMARKS in
# order: iliac crest top, femoral head top, femoral head centre, ischial tuberosity.
REFERENCE_EXTENTS: Mapping[str, ReferenceExtent] = MappingProxyType({
    "gluteus_maximus": _extent(
        "gluteus_maximus",
        ((-42, -30), (72, 96), (90, 114), (147, 186)),
        ((-312, -255), (-186, -141), (-168, -123), (-96, -66))),
    "gluteus_medius": _extent(
        "gluteus_medius",
        ((-12, -3), (105, 117), (120, 138), (177, 207)),
        ((-183, -147), (-57, -27), (-39, -6), (30, 63))),
    "gluteus_minimus": _extent(
        "gluteus_minimus",
        ((-60, -45), (60, 69), (75, 90), (132, 162)),
        ((-141, -123), (-18, -9), (3, 9), (60, 81))),
    "iliacus": _extent(
        "iliacus",
        ((-24, -6), (90, 120), (108, 141), (165, 210)),
        ((-213, -177), (-87, -63), (-69, -45), (-3, 12))),
    "obturator_externus": _extent(
        "obturator_externus",
        ((-174, -150), (-48, -36), (-30, -18), (36, 51)),
        ((-207, -180), (-90, -66), (-69, -51), (3, 12))),
    "obturator_internus": _extent(
        "obturator_internus",
        ((-144, -105), (-30, 15), (-9, 36), (48, 105)),
        ((-189, -165), (-72, -51), (-51, -36), (21, 27))),
    "pectineus": _extent(
        "pectineus",
        ((-162, -135), (-36, -21), (-18, 0), (48, 72)),
        ((-255, -195), (-129, -81), (-108, -66), (-39, -9))),
    "piriformis": _extent(
        "piriformis",
        ((-93, -72), (21, 42), (42, 63), (111, 132)),
        ((-129, -111), (-6, 3), (15, 24), (72, 93))),
    "psoas_major": _extent(
        "psoas_major",
        ((87, 129), (201, 255), (222, 276), (282, 345)),
        ((-171, -78), (-51, 36), (-30, 54), (39, 111))),
    "adductors": _extent(
        "adductors",
        ((-189, -162), (-63, -45), (-45, -24), (24, 45)),
        ((-357, -297), (-243, -183), (-222, -165), (-150, -99)), below=True),
    "biceps_femoris": _extent(
        "biceps_femoris",
        ((-261, -222), (-147, -102), (-126, -81), (-54, -12)),
        ((-357, -297), (-243, -183), (-222, -165), (-150, -99)), below=True),
    "gracilis": _extent(
        "gracilis",
        ((-231, -192), (-105, -78), (-87, -60), (-15, 0)),
        ((-357, -297), (-243, -183), (-222, -165), (-150, -99)), below=True),
    "rectus_femoris": _extent(
        "rectus_femoris",
        ((-156, -111), (-36, 3), (-15, 24), (54, 96)),
        ((-357, -297), (-243, -183), (-222, -165), (-150, -99)), below=True),
    "sartorius": _extent(
        "sartorius",
        ((-102, -78), (24, 39), (42, 60), (105, 129)),
        ((-357, -297), (-243, -183), (-222, -165), (-150, -99)), below=True),
    "semimembranosus": _extent(
        "semimembranosus",
        ((-291, -273), (-174, -153), (-159, -132), (-102, -63)),
        ((-357, -297), (-243, -183), (-222, -165), (-150, -99)), below=True),
    "semitendinosus": _extent(
        "semitendinosus",
        ((-219, -168), (-99, -48), (-78, -27), (-9, 42)),
        ((-357, -297), (-243, -183), (-222, -165), (-150, -99)), below=True),
    "tensor_fasciae_latae": _extent(
        "tensor_fasciae_latae",
        ((-105, -84), (21, 30), (39, 51), (102, 120)),
        ((-279, -219), (-153, -105), (-132, -84), (-63, -12))),
    "vastus_lateralis_intermedius": _extent(
        "vastus_lateralis_intermedius",
        ((-183, -147), (-57, -33), (-39, -18), (33, 54)),
        ((-357, -297), (-243, -183), (-222, -165), (-150, -99)), below=True),
    "vastus_medialis": _extent(
        "vastus_medialis",
        ((-231, -192), (-105, -78), (-84, -60), (-15, 6)),
        ((-357, -297), (-243, -183), (-222, -165), (-150, -99)), below=True),
    "tibialis_anterior": _extent(
        "tibialis_anterior",
        ((-357, -297), (-243, -183), (-222, -165), (-150, -99)), lower_leg=True),
    "toe_extensors": _extent(
        "toe_extensors",
        ((-357, -297), (-243, -183), (-222, -165), (-150, -99)), lower_leg=True),
    "fibularis": _extent(
        "fibularis",
        ((-357, -297), (-243, -183), (-222, -165), (-150, -99)), lower_leg=True),
    "gastrocnemius": _extent(
        "gastrocnemius",
        ((-357, -297), (-243, -183), (-222, -165), (-150, -99)), lower_leg=True),
    "soleus": _extent(
        "soleus",
        ((-357, -297), (-243, -183), (-222, -165), (-150, -99)), lower_leg=True),
    "deep_posterior_leg": _extent(
        "deep_posterior_leg",
        ((-357, -297), (-243, -183), (-222, -165), (-150, -99)), lower_leg=True),
})
"""Per catalogue muscle (anatomy key), where it lies in the references (see the module docstring)."""


def _pick(ranges: Mapping[str, LevelRange], marks: Mapping[str, float]) -> tuple[str, LevelRange] | None:
    """The landmark the scan holds whose range is narrowest (ties: `LANDMARKS` order)."""
    usable = [(ranges[name].width_mm, LANDMARKS.index(name), name) for name in ranges if name in marks]
    if not usable:
        return None
    name = min(usable)[2]
    return name, ranges[name]


def _words(r: LevelRange, landmark: str, *, at_least: bool = False) -> str:
    """A range in words, e.g. ``12 to 3 mm below the iliac crest top``; `at_least`: its highest value only."""
    low, high = (r.high_mm, r.high_mm) if at_least else (r.low_mm, r.high_mm)
    name = _WORDS[landmark]
    if high <= 0:
        span = f"{-high:.0f}" if low == high else f"{-high:.0f} to {-low:.0f}"
        return f"{span} mm below the {name}" if high < 0 or low < 0 else f"at the {name}"
    if low >= 0:
        span = f"{low:.0f}" if low == high else f"{low:.0f} to {high:.0f}"
        return f"{span} mm above the {name}"
    return f"{-low:.0f} mm below to {high:.0f} mm above the {name}"


def place(anatomy: str, scan_mm: tuple[float, float], landmarks: Mapping[str, float],
          table: Mapping[str, ReferenceExtent] | None = None) -> Placement:
    """Is muscle `anatomy` (a catalogue anatomy key) where a scan covering patient z `scan_mm` (lowest, highest slice
    centre) can show it? `landmarks`: name -> patient z of the landmarks the scan holds, on the muscle's side (names
    of `LANDMARKS` or `LANDMARK_ALIASES`; others are ignored). `table`: `REFERENCE_EXTENTS` unless given."""
    extent = (REFERENCE_EXTENTS if table is None else table).get(anatomy)
    if extent is None:
        return Placement(Coverage.UNKNOWN, "no reference extent for this structure")
    marks = {LANDMARK_ALIASES.get(name, name): z for name, z in landmarks.items()}
    marks = {name: z for name, z in marks.items() if name in LANDMARKS}
    if not marks:
        return Placement(Coverage.UNKNOWN, "no landmarks to tell")
    low, high = min(scan_mm), max(scan_mm)
    top = _pick(extent.top, marks)
    assert top is not None  # every end has a range for every landmark
    top_name, top_range = top
    top_z = marks[top_name]
    possible_top = math.inf if extent.continues_above else top_z + top_range.high_mm + top_range.margin_mm
    if extent.below_references:
        if low > possible_top:
            lowest = _words(top_range, top_name, at_least=True)
            return Placement(Coverage.OUTSIDE, "the scan ends above where it may begin",
                             f"{low - possible_top:.0f} mm above, with a margin: it lies below the lowest annotated "
                             f"level of every reference, {lowest} at the highest")
        return Placement(Coverage.UNKNOWN, "the scan reaches below the reference annotations",
                         "below mid-thigh, where the place of a lower-leg muscle is not known relative to these "
                         "landmarks")
    bottom = _pick(extent.bottom, marks)
    assert bottom is not None
    bottom_name, bottom_range = bottom
    bottom_z = marks[bottom_name]
    possible_bottom = -math.inf if extent.continues_below else (
        bottom_z + bottom_range.low_mm - bottom_range.margin_mm)
    core_top = top_z + top_range.low_mm - top_range.margin_mm
    core_bottom = bottom_z + bottom_range.high_mm + bottom_range.margin_mm
    where = (f"its top {_words(top_range, top_name)}, "
             + (f"reaching below {_words(bottom_range, bottom_name, at_least=True)}" if extent.continues_below
                else f"its bottom {_words(bottom_range, bottom_name)}"))
    covered = min(high, core_top) - max(low, core_bottom)
    if core_top > core_bottom and covered >= MIN_COVER_MM:
        return Placement(Coverage.COVERED, "the scan holds where it lies",
                         f"{covered:.0f} mm of the levels where it lies in every reference annotation, less a margin: "
                         f"{where}")
    if low > possible_top:
        return Placement(Coverage.OUTSIDE, "the scan ends above where it may begin",
                         f"{low - possible_top:.0f} mm above, with a margin: {where}")
    if high < possible_bottom:
        return Placement(Coverage.OUTSIDE, "the scan starts below where it may end",
                         f"{possible_bottom - high:.0f} mm below, with a margin: {where}")
    return Placement(Coverage.UNKNOWN, "the scan reaches only the edge of where it may lie", where)
