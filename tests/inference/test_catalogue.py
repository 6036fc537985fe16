"""The muscle catalogue: structures, groups of the reference study, codes and colours."""

from __future__ import annotations

import importlib
import re

import pytest

from sarcoscreen.inference.catalogue import (
    CATALOGUE,
    Group,
    Kind,
    Region,
    Side,
    UnknownStructureError,
)

HIASA_19 = {
    "gluteus_maximus", "gluteus_medius", "gluteus_minimus", "iliacus", "obturator_externus",
    "obturator_internus", "pectineus", "piriformis", "psoas_major", "adductors", "biceps_femoris", "gracilis",
    "rectus_femoris", "sartorius", "semimembranosus", "semitendinosus", "tensor_fasciae_latae",
    "vastus_lateralis_intermedius", "vastus_medialis",
}
PRIVATE_SCHEME = "99SARCO"
# Labels merging several muscles (the gastrocnemius label has `includes` too, but its two heads are one muscle).
MERGED_MUSCLES = {"adductors", "vastus_lateralis_intermedius", "toe_extensors", "fibularis", "deep_posterior_leg"}


def _anatomy_keys(structures: tuple) -> set[str]:
    return {s.anatomy.key for s in structures}


def test_hip_and_thigh_muscles_are_those_of_hiasa_et_al() -> None:
    hip_thigh = {a.key for a in CATALOGUE.anatomies
                 if a.kind is Kind.MUSCLE and a.region in (Region.HIP, Region.THIGH)}
    assert hip_thigh == HIASA_19


def test_every_muscle_and_bone_is_on_both_sides_except_the_sacrum() -> None:
    for anatomy in CATALOGUE.anatomies:
        if anatomy.key == "sacrum":
            assert CATALOGUE.structure("sacrum", Side.MIDLINE).side is Side.MIDLINE
            continue
        right = CATALOGUE.structure(anatomy.key, Side.RIGHT)
        left = CATALOGUE.structure(anatomy.key, Side.LEFT)
        assert left.label == right.label + 1
        assert right.laterality is not None
        assert right.laterality.value == "24028007"
        assert left.laterality is not None
        assert left.laterality.value == "7771000"
    bones = _anatomy_keys(CATALOGUE.bones())
    assert bones == {"hip_bone", "sacrum", "femur", "patella", "tibia", "fibula"}


def test_groups_follow_the_reference_study() -> None:
    muscles = CATALOGUE.muscles(Kind.MUSCLE)
    gluteal = _anatomy_keys(tuple(s for s in CATALOGUE.group_members(Group.GLUTEAL) if s.anatomy.kind is Kind.MUSCLE))
    above = _anatomy_keys(tuple(s for s in CATALOGUE.group_members(Group.ABOVE_KNEE)
                                if s.anatomy.kind is Kind.MUSCLE))
    everything = _anatomy_keys(tuple(s for s in CATALOGUE.group_members(Group.ALL) if s.anatomy.kind is Kind.MUSCLE))
    assert gluteal == {"gluteus_maximus", "gluteus_medius", "gluteus_minimus"}
    assert above == HIASA_19 - {"psoas_major"}
    lower_leg = {s.anatomy.key for s in muscles if s.anatomy.region is Region.LOWER_LEG}
    assert len(lower_leg) == 6
    assert everything == above | lower_leg
    assert "psoas_major" not in everything


def test_region_labels_partition_the_groups() -> None:
    regions = CATALOGUE.muscles(Kind.MUSCLE_REGION)
    by_group = {g: _anatomy_keys(tuple(s for s in regions if g in s.anatomy.groups)) for g in Group}
    assert by_group[Group.GLUTEAL] == {"gluteal_region_muscle"}
    assert by_group[Group.ABOVE_KNEE] == {"gluteal_region_muscle", "hip_thigh_muscle"}
    assert by_group[Group.ALL] == {"gluteal_region_muscle", "hip_thigh_muscle", "lower_leg_muscle"}


def test_group_members_by_side() -> None:
    left = CATALOGUE.group_members(Group.GLUTEAL, "left")
    assert {s.side for s in left} == {Side.LEFT}
    assert {s.key for s in left} >= {"gluteus_maximus_left", "gluteus_medius_left", "gluteus_minimus_left"}


def test_lookups_and_unknown_structures() -> None:
    structure = CATALOGUE.by_key("vastus_medialis_right")
    assert CATALOGUE.by_label(structure.label) is structure
    assert structure.name == "Right vastus medialis"
    with pytest.raises(UnknownStructureError, match="label value 250"):
        CATALOGUE.by_label(250)
    with pytest.raises(UnknownStructureError, match="quadriceps"):
        CATALOGUE.by_key("quadriceps")
    assert len({s.label for s in CATALOGUE}) == len(CATALOGUE)
    assert 0 not in {s.label for s in CATALOGUE}  # 0 is background in every label map


def test_every_code_is_snomed_ct_or_a_declared_private_code_with_a_source() -> None:
    for anatomy in CATALOGUE.anatomies:
        code = anatomy.code
        assert code.meaning, anatomy.key
        assert code.source, anatomy.key
        assert not code.source.startswith("PENDING"), f"{anatomy.key} has no sourced code yet"
        if code.scheme == PRIVATE_SCHEME:
            # Only a label merging several muscles, or a muscle region, may lack a single SNOMED CT concept.
            assert anatomy.key in MERGED_MUSCLES or anatomy.kind is Kind.MUSCLE_REGION, anatomy.key
            assert anatomy.includes, anatomy.key
            continue
        assert code.scheme == "SCT", anatomy.key
        assert code.value.isdigit(), anatomy.key


def test_merged_muscle_labels_say_what_they_include() -> None:
    for key in MERGED_MUSCLES:
        anatomy = CATALOGUE.anatomy(key)
        assert anatomy.kind is Kind.MUSCLE
        assert anatomy.includes, key


def test_private_codes_are_declared() -> None:
    private = [a for a in CATALOGUE.anatomies if a.code.scheme == PRIVATE_SCHEME]
    assert PRIVATE_SCHEME.startswith("99")  # DICOM PS3.3 section 8.2: private coding scheme designators
    values = [a.code.value for a in private]
    assert len(set(values)) == len(values)
    for anatomy in private:
        assert re.fullmatch(r"SARCO-\d{4}", anatomy.code.value), anatomy.key
        assert anatomy.code.source.startswith("sarcoscreen private code: no single SNOMED CT concept for "), anatomy.key
    for anatomy in CATALOGUE.anatomies:
        if anatomy.code.value.startswith("SARCO-"):
            assert anatomy.code.scheme == PRIVATE_SCHEME, anatomy.key


def test_code_table_covers_exactly_the_catalogue() -> None:
    codes = importlib.import_module("sarcoscreen.inference._catalogue_codes")
    assert set(codes.CODES) == {a.key for a in CATALOGUE.anatomies}
    assert codes.PRIVATE_SCHEME == PRIVATE_SCHEME


def test_specific_muscles_have_distinct_codes() -> None:
    codes = [(a.code.scheme, a.code.value) for a in CATALOGUE.anatomies if a.kind is Kind.MUSCLE]
    assert len(set(codes)) == len(codes)
    assert len({value for _, value in codes}) == len(codes)


def test_colours_are_distinct_rgb() -> None:
    colours = [a.colour for a in CATALOGUE.anatomies]
    assert len(set(colours)) == len(colours)
    for colour in colours:
        assert len(colour) == 3
        assert all(0 <= c <= 255 for c in colour)


def test_code_meanings_fit_the_dicom_long_string() -> None:
    # Code Meaning (0008,0104) is LO: at most 64 characters (PS3.5 Table 6.2-1); longer ones break writers.
    for anatomy in CATALOGUE.anatomies:
        assert len(anatomy.code.meaning) <= 64, anatomy.key
    for structure in CATALOGUE:
        assert len(structure.name) <= 64, structure.key
