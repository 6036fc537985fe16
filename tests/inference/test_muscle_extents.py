"""Where a muscle should be (`inference.muscle_extents`): the rule on a small table, and the recorded table against
the three real label maps it was measured on."""

from __future__ import annotations

from pathlib import Path

import pytest

from sarcoscreen.inference.catalogue import CATALOGUE, Kind
from sarcoscreen.inference.muscle_extents import (
    LANDMARKS,
    MIN_COVER_MM,
    REFERENCE_CASES,
    REFERENCE_EXTENTS,
    Coverage,
    LevelRange,
    _extent,
    measure_reference_extents,
    place,
)

# A muscle 60-45 mm below the crest top at its top and 3-9 mm above the head centre at its bottom (the gluteus
# minimus of the references), ranges relative to the other landmarks made wide so that those two are chosen.
WIDE = (-500.0, 500.0)
TABLE = {
    "gluteus_minimus": _extent("gluteus_minimus", ((-60, -45), WIDE, WIDE, WIDE), (WIDE, WIDE, (3, 9), WIDE)),
    "adductors": _extent("adductors", (WIDE, WIDE, (-45, -24), WIDE), (WIDE, WIDE, (-222, -165), WIDE),
                         below=True),
    "soleus": _extent("soleus", (WIDE, WIDE, (-222, -165), WIDE), lower_leg=True),
}
CREST, HEAD = 100.0, -40.0
MARKS = {"iliac_crest": CREST, "femoral_head": HEAD}


def _margin(low: float, high: float) -> float:
    return LevelRange(low, high).margin_mm


def test_a_scan_holding_where_the_muscle_lies_in_every_reference_covers_it() -> None:
    # Where it lies in every reference, less the margins: from HEAD + 9 + margin up to CREST - 60 - margin.
    core_low, core_high = HEAD + 9 + _margin(3, 9), CREST - 60 - _margin(-60, -45)
    assert core_high - core_low > MIN_COVER_MM
    placement = place("gluteus_minimus", (core_low - 50, core_high + 50), MARKS, TABLE)
    assert placement.coverage is Coverage.COVERED
    assert "iliac crest top" in placement.reason
    assert "femoral head centre" in placement.reason
    # Exactly MIN_COVER_MM of it is enough; less is the edge, which cannot be told.
    assert place("gluteus_minimus", (core_high - MIN_COVER_MM, 500.0), MARKS, TABLE).coverage is Coverage.COVERED
    edge = place("gluteus_minimus", (core_high - MIN_COVER_MM + 1, 500.0), MARKS, TABLE)
    assert edge.coverage is Coverage.UNKNOWN
    assert edge.gist == "the scan reaches only the edge of where it may lie"


def test_a_scan_beyond_where_the_muscle_may_lie_is_outside() -> None:
    possible_top = CREST - 45 + _margin(-60, -45)
    above = place("gluteus_minimus", (possible_top + 1, 600.0), MARKS, TABLE)
    assert above.coverage is Coverage.OUTSIDE
    assert above.gist == "the scan ends above where it may begin"
    assert place("gluteus_minimus", (possible_top - 1, 600.0), MARKS, TABLE).coverage is Coverage.UNKNOWN
    possible_bottom = HEAD + 3 - _margin(3, 9)
    below = place("gluteus_minimus", (-600.0, possible_bottom - 1), MARKS, TABLE)
    assert below.coverage is Coverage.OUTSIDE
    assert below.gist == "the scan starts below where it may end"


def test_without_landmarks_nothing_can_be_told() -> None:
    placement = place("gluteus_minimus", (-600.0, 600.0), {}, TABLE)
    assert (placement.coverage, placement.reason) == (Coverage.UNKNOWN, "no landmarks to tell")
    # Landmarks the table does not know tell nothing either; the annotation's name of the pelvis bottom is the
    # ischial tuberosity.
    unknown = place("gluteus_minimus", (-600.0, 600.0), {"knee_joint": -400.0}, TABLE)
    assert (unknown.coverage, unknown.reason) == (Coverage.UNKNOWN, "no landmarks to tell")
    for scan in ((-600.0, 600.0), (100.0, 600.0), (600.0, 700.0)):
        assert (place("gluteus_minimus", scan, {"pelvis_bottom": -100.0}) ==
                place("gluteus_minimus", scan, {"ischial_tuberosity": -100.0}))
    assert place("gluteus_minimus", (600.0, 700.0), {"pelvis_bottom": -100.0}).coverage is Coverage.OUTSIDE


def test_the_narrowest_landmark_places_each_end() -> None:
    """With only the femoral head centre, the top is placed by its wide range: the scan ending 20 mm below the
    crest top, which the crest's range calls outside, can no longer be told."""
    scan = (CREST - 20, 600.0)
    assert place("gluteus_minimus", scan, MARKS, TABLE).coverage is Coverage.OUTSIDE
    assert place("gluteus_minimus", scan, {"femoral_head": HEAD}, TABLE).coverage is Coverage.UNKNOWN


def test_a_muscle_continuing_below_the_references_is_judged_by_its_known_part() -> None:
    # Its top 24-45 mm below the head centre; it reaches at least 165 mm below it. A thigh scan far below: it may be
    # there (no bottom is known), so never outside below.
    assert place("adductors", (HEAD - 400, HEAD - 300), MARKS, TABLE).coverage is Coverage.UNKNOWN
    assert place("adductors", (HEAD - 150, HEAD - 60), MARKS, TABLE).coverage is Coverage.COVERED
    assert place("adductors", (HEAD + 20, 600.0), MARKS, TABLE).coverage is Coverage.OUTSIDE


def test_a_lower_leg_muscle_is_only_ever_outside_or_cannot_be_told() -> None:
    assert place("soleus", (HEAD - 120, 600.0), MARKS, TABLE).coverage is Coverage.OUTSIDE
    far = place("soleus", (HEAD - 900, 600.0), MARKS, TABLE)
    assert far.coverage is Coverage.UNKNOWN
    assert far.gist == "the scan reaches below the reference annotations"


def test_the_recorded_table_covers_every_catalogue_muscle() -> None:
    muscles = {a.key for a in CATALOGUE.anatomies if a.kind is Kind.MUSCLE}
    assert set(REFERENCE_EXTENTS) == muscles
    for key, extent in REFERENCE_EXTENTS.items():
        assert set(extent.top) == set(LANDMARKS), key
        if extent.below_references:
            assert CATALOGUE.anatomy(key).region.value == "lower leg"
            assert not extent.bottom
            continue
        assert set(extent.bottom) == set(LANDMARKS), key
        for name in LANDMARKS:
            assert extent.top[name].low_mm <= extent.top[name].high_mm
            assert extent.bottom[name].high_mm <= extent.top[name].high_mm, key
    # The gluteal muscles lie wholly inside the annotated range: their whole extent is judged.
    assert all(REFERENCE_EXTENTS[k].judged for k in ("gluteus_maximus", "gluteus_medius", "gluteus_minimus"))
    assert not REFERENCE_EXTENTS["adductors"].judged


@pytest.mark.slow
def test_the_recorded_table_is_what_the_real_label_maps_give(shared_data: Path) -> None:
    """`REFERENCE_EXTENTS` measured again on Pelvic-Ref-001, 002 and 004 (about 10 s)."""
    from sarcoscreen.inference.phantom.realistic.source import read_annotation

    folders = [shared_data / "pelvic-annotation" / name for name in REFERENCE_CASES]
    if not all((folder / "label.mhd").is_file() for folder in folders):
        pytest.skip("the pelvic annotations are not in ../shared/data")
    measured = measure_reference_extents([read_annotation(folder).case for folder in folders])
    assert measured == dict(REFERENCE_EXTENTS)
    # Spot checks against the label maps as the data README describes them.
    glute_medius = measured["gluteus_medius"]
    assert glute_medius.top["iliac_crest"] == LevelRange(-12.0, -3.0)
    assert measured["vastus_medialis"].continues_below
    assert not measured["gluteus_maximus"].continues_below
