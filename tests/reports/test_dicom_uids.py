"""Deterministic output UIDs: same inputs, same UIDs; any input changed, other UIDs; always valid UIDs."""

from __future__ import annotations

import re
import uuid
from dataclasses import astuple

import pytest

from sarcoscreen.reports.dicom_uids import OutputContent, content_digest, derive_uid, output_uids, source_identity

_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def _all(uids: object) -> list[str]:
    return [v for v in astuple(uids) if isinstance(v, str) and v.startswith(("2.25.", "1."))]


def test_same_inputs_same_uids_and_all_distinct() -> None:
    a = output_uids("2.25", "series:1.2.3", "threshold", "1.0", "abc")
    b = output_uids("2.25", "series:1.2.3", "threshold", "1.0", "abc")
    assert a == b
    values = _all(a)
    assert len(values) == 8
    assert len(set(values)) == 8
    assert a.tracking_uid("gluteus_maximus_left") == b.tracking_uid("gluteus_maximus_left")
    assert a.tracking_uid("gluteus_maximus_left") != a.tracking_uid("gluteus_maximus_right")


@pytest.mark.parametrize("changed", range(4))
def test_any_changed_input_changes_every_instance_uid(changed: int) -> None:
    inputs = ["series:1.2.3", "threshold", "1.0", "abc"]
    base = output_uids("2.25", *inputs)
    inputs[changed] += "x"
    other = output_uids("2.25", *inputs)
    for kind in ("seg_series", "seg_instance", "sr_series", "sr_instance", "key_image_series",
                 "key_image_instance"):
        assert getattr(base, kind) != getattr(other, kind)


def test_default_root_gives_uuid_derived_uids() -> None:
    uid = derive_uid("2.25", "a", "b")
    assert uid.startswith("2.25.")
    assert _UID.match(uid)
    assert len(uid) <= 64
    value = uuid.UUID(int=int(uid.removeprefix("2.25.")))
    assert value.version == 5
    assert value.variant == uuid.RFC_4122
    assert derive_uid("2.25", "a", "b") != derive_uid("2.25", "ab")  # parts are separated, not concatenated


def test_content_changes_the_uids_of_the_objects_holding_it() -> None:
    """The SEG's UIDs follow the SEG's content; the SR's and key image's follow both digests; tracking UIDs and
    the device observer stay (they name a structure or a device, not an object)."""
    inputs = ("2.25", "series:1.2.3", "threshold", "1.0", "abc")
    base = output_uids(*inputs, OutputContent(seg="s1", report="r1"))
    assert base == output_uids(*inputs, OutputContent(seg="s1", report="r1"))
    other_report = output_uids(*inputs, OutputContent(seg="s1", report="r2"))
    other_seg = output_uids(*inputs, OutputContent(seg="s2", report="r1"))
    seg_uids = ("seg_series", "seg_instance", "dimension_organization")
    report_uids = ("sr_series", "sr_instance", "key_image_series", "key_image_instance")
    for kind in seg_uids:
        assert getattr(other_report, kind) == getattr(base, kind)
        assert getattr(other_seg, kind) != getattr(base, kind)
    for kind in report_uids:
        assert getattr(other_report, kind) != getattr(base, kind)
        assert getattr(other_seg, kind) != getattr(base, kind)
    for other in (other_report, other_seg):
        assert other.tracking_uid("gluteus_maximus_left") == base.tracking_uid("gluteus_maximus_left")
        assert other.device_observer == base.device_observer


def test_content_digest_separates_its_parts() -> None:
    assert content_digest("ab", "c") != content_digest("a", "bc")
    assert content_digest("a", b"b") == content_digest("a", "b")
    assert len(content_digest()) == 64


@pytest.mark.parametrize("root", ["1.2.826.0.1.3680043.10.543", "1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17"])
def test_configured_root(root: str) -> None:
    uid = derive_uid(root, "x")
    assert uid.startswith(root + ".")
    assert len(uid) == 64
    assert _UID.match(uid)
    assert derive_uid(root, "x") == uid
    assert derive_uid(root, "y") != uid


def test_too_long_root_is_refused() -> None:
    with pytest.raises(ValueError, match="too long"):
        derive_uid("1." + "2" * 55, "x")


def test_source_identity() -> None:
    assert source_identity("1.2.3", ["9", "8"]) == "series:1.2.3"
    # without a series UID: the instances, in any order, without duplicates
    assert source_identity("", ["1.5", "1.4", "1.5"]) == source_identity("", ["1.4", "1.5"])
    assert source_identity("", ["1.4"]) != source_identity("", ["1.5"])
