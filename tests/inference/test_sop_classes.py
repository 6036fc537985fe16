"""The CT image storage SOP classes: one list, whose classes the SCP accepts, routing analyses and the loader reads."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.uid import SecondaryCaptureImageStorage
from pynetdicom import AE

from sarcoscreen.inference.sop_classes import (
    CT_IMAGE_STORAGE_SOP_CLASSES,
    DERIVED_MAP_SOP_CLASSES,
    sop_class_name,
)
from sarcoscreen.node.loopback import free_port
from sarcoscreen.node.routing import RoutingRules, SeriesSummary, decide
from sarcoscreen.node.scp import ReceivedInstance, StorageSCP
from sarcoscreen.node.spool import Spool


class _NoIndex:
    def add(self, instance: ReceivedInstance) -> None:
        raise AssertionError("nothing is stored in these tests")


@pytest.fixture
def scp(tmp_path: Path) -> Iterator[StorageSCP]:
    node = StorageSCP(Spool(tmp_path / "spool", tmp_path / "quarantine"), _NoIndex(), ae_title="SARCO",
                      host="127.0.0.1", port=free_port())
    node.start()
    yield node
    node.stop()


def test_the_ct_classes_have_their_registry_names() -> None:
    assert [sop_class_name(uid) for uid in CT_IMAGE_STORAGE_SOP_CLASSES] == [
        "CT Image Storage", "Enhanced CT Image Storage", "Legacy Converted Enhanced CT Image Storage"]
    assert [sop_class_name(uid) for uid in DERIVED_MAP_SOP_CLASSES] == [
        "Segmentation Storage", "Label Map Segmentation Storage", "Height Map Segmentation Storage",
        "RT Dose Storage"]
    assert not set(CT_IMAGE_STORAGE_SOP_CLASSES) & set(DERIVED_MAP_SOP_CLASSES)


def test_the_scp_accepts_exactly_the_ct_classes_for_storage(scp: StorageSCP) -> None:
    ae = AE(ae_title="SCANNER")
    for uid in (*CT_IMAGE_STORAGE_SOP_CLASSES, SecondaryCaptureImageStorage):
        ae.add_requested_context(uid)
    assoc = ae.associate("127.0.0.1", scp.port, ae_title="SARCO")
    assert assoc.is_established
    try:
        accepted = {str(context.abstract_syntax) for context in assoc.accepted_contexts}
        rejected = {str(context.abstract_syntax) for context in assoc.rejected_contexts}
    finally:
        assoc.release()
    assert accepted == set(CT_IMAGE_STORAGE_SOP_CLASSES)
    assert rejected == {SecondaryCaptureImageStorage}


@pytest.mark.parametrize("uid", CT_IMAGE_STORAGE_SOP_CLASSES)
def test_routing_analyses_every_ct_class(uid: str) -> None:
    summary = SeriesSummary(series_instance_uid="1.2.3", modality="CT", sop_class_uids=frozenset({uid}),
                            instances=100, frames=100, slice_thickness_mm=1.0)
    assert decide(summary, RoutingRules()).analyse
    mixed = dataclasses.replace(summary, sop_class_uids=frozenset({uid, SecondaryCaptureImageStorage}))
    assert "is not a CT image storage class" in decide(mixed, RoutingRules()).text
