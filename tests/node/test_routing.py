"""Routing rules: which stable series are analysed, and the reasons given for the others."""

from __future__ import annotations

import dataclasses

import pytest

from sarcoscreen.node.routing import RoutingRules, SeriesSummary, decide

CT = "1.2.840.10008.5.1.4.1.1.2"


def _hip_ct(**changes: object) -> SeriesSummary:
    summary = SeriesSummary(
        series_instance_uid="1.2.3", modality="CT", sop_class_uids=frozenset({CT}), instances=400, frames=400,
        image_types=frozenset({"ORIGINAL", "PRIMARY", "AXIAL"}), slice_thickness_mm=1.0, body_part="HIP",
        study_description="CT HIP", series_description="Bone 1.0",
    )
    return dataclasses.replace(summary, **changes)


def test_a_hip_ct_is_analysed() -> None:
    decision = decide(_hip_ct(), RoutingRules())
    assert decision.analyse
    assert decision.text == "analyse"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"modality": "MR"}, "modality MR is not CT"),
        ({"sop_class_uids": frozenset({"1.2.840.10008.5.1.4.1.1.7"})}, "is not a CT image storage class"),
        ({"frames": 3, "instances": 3}, "3 slices, fewer than the 20 required"),
        ({"frames": 2, "image_types": frozenset({"ORIGINAL", "PRIMARY", "LOCALIZER"})}, "a localizer (scout) series"),
        ({"slice_thickness_mm": 8.0}, "slice thickness 8 mm exceeds 5 mm"),
        ({"axial": False}, "not axial"),
        ({"body_part": "CHEST"}, "body part CHEST is excluded (*CHEST*)"),
        ({"series_description": "Dose Report"}, "description 'Dose Report' is excluded (*DOSE*)"),
    ],
)
def test_each_failed_rule_gives_its_reason(changes: dict, reason: str) -> None:
    decision = decide(_hip_ct(**changes), RoutingRules())
    assert not decision.analyse
    assert reason in decision.text


def test_include_patterns_and_missing_body_part() -> None:
    rules = RoutingRules(include_body_parts=("HIP", "PELVIS", "*LEG*"), include_descriptions=("*HIP*",))
    assert decide(_hip_ct(body_part=""), rules).analyse  # BodyPartExamined is often empty: not a reason
    assert "not among HIP, PELVIS, *LEG*" in decide(_hip_ct(body_part="ABDOMEN"), rules).text
    assert "no description matches *HIP*" in decide(
        _hip_ct(study_description="CT KNEE", series_description="Soft"), rules).text


def test_all_reasons_are_reported_together() -> None:
    decision = decide(_hip_ct(modality="MR", frames=5), RoutingRules())
    assert len(decision.reasons) == 2
