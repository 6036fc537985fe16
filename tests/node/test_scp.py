"""The Storage SCP with real dcmtk peers (echoscu, storescu): write before acknowledge, statuses, access control.

The index here records in memory; the SQL index is tested with the database (tests/node/test_node_index.py).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pydicom.filebase
import pydicom.filewriter
import pytest
from ct_series_factory import edit_file, write_ct_series
from dcmtk import (
    CALLED_AE_TITLE_NOT_RECOGNIZED,
    CALLING_AE_TITLE_NOT_RECOGNIZED,
    ScuRun,
    echoscu,
    requires_dcmtk,
    storescu,
)
from dicom_peers import free_port
from filesystems import read_only, small_filesystem
from pynetdicom import AE
from pynetdicom import _config as pynetdicom_config
from pynetdicom.sop_class import Verification
from test_received_header import ps10_bytes
from unparseable_instance import write_unparseable_instance

from sarcoscreen.node.scp import (
    STATUS_CANNOT_UNDERSTAND,
    STATUS_DATASET_MISMATCH,
    IndexUnavailableError,
    ReceivedInstance,
    StorageSCP,
)
from sarcoscreen.node.spool import Spool
from sarcoscreen.node.storage_scu import parse_destination, send_files

pytestmark = requires_dcmtk("storescu", "echoscu")


class RecordingIndex:
    def __init__(self, fail: bool = False) -> None:
        self.instances: list[ReceivedInstance] = []
        self.fail = fail

    def add(self, instance: ReceivedInstance) -> None:
        if self.fail:
            raise IndexUnavailableError("database down (test)")
        self.instances.append(instance)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[StorageSCP, RecordingIndex, Spool]]:
    spool = Spool(tmp_path / "spool", tmp_path / "quarantine")
    index = RecordingIndex()
    scp = StorageSCP(spool, index, ae_title="SARCO", host="127.0.0.1", port=free_port(),
                     allowed_calling=("SCANNER", "STORESCU@127.0.0.1"))
    scp.start()
    yield scp, index, spool
    scp.stop()


def _send_as_is(scp: StorageSCP, file: Path, syntax: str = pydicom.uid.ExplicitVRLittleEndian) -> int:
    """C-STORE of `file` by pynetdicom, which sends a file given by path as it is (the request's UIDs and the
    presentation context from its File Meta Information, the data set's bytes not decoded); the status."""
    ae = AE(ae_title="SCANNER")
    ae.add_requested_context(pydicom.uid.CTImageStorage, syntax)
    assoc = ae.associate("127.0.0.1", scp.port, ae_title="SARCO")
    assert assoc.is_established
    before = pynetdicom_config.STORE_SEND_CHUNKED_DATASET
    pynetdicom_config.STORE_SEND_CHUNKED_DATASET = True  # the bytes as they are in the file, never decoded
    try:
        return int(assoc.send_c_store(file).Status)
    finally:
        pynetdicom_config.STORE_SEND_CHUNKED_DATASET = before
        assoc.release()


def _storescu(scp: StorageSCP, *files: Path, calling: str = "STORESCU", called: str = "SARCO") -> ScuRun:
    return storescu(scp.port, files, calling=calling, called=called, timeout=60)


def test_echo(node: tuple[StorageSCP, RecordingIndex, Spool]) -> None:
    scp, _, _ = node
    run = echoscu(scp.port, calling="SCANNER")
    assert run.statuses == [0x0000], run.problems


def test_instances_are_spooled_and_indexed_once(node: tuple[StorageSCP, RecordingIndex, Spool],
                                                shared_data: Path) -> None:
    scp, index, spool = node
    files = sorted((shared_data / "dcmqi" / "ct-3slice").iterdir())
    run = _storescu(scp, *files)
    assert run.statuses == [0x0000] * 3, run.problems
    stored = list(spool.walk())
    assert len(stored) == 3
    for series_uid, sop_uid, relative in stored:
        original = next(pydicom.dcmread(f) for f in files if pydicom.dcmread(f).SOPInstanceUID == sop_uid)
        assert series_uid == original.SeriesInstanceUID
        assert pydicom.dcmread(spool.path_of(relative)).PixelData == original.PixelData
    assert {i.sop_instance_uid for i in index.instances} == {s[1] for s in stored}
    assert all(not i.duplicate and i.calling_ae_title == "STORESCU" for i in index.instances)
    # A PACS resending the series: success again, nothing stored twice.
    assert _storescu(scp, *files).statuses == [0x0000] * 3
    assert len(list(spool.walk())) == 3
    assert [i.duplicate for i in index.instances[3:]] == [True, True, True]


def test_instances_without_series_uid_are_refused_and_quarantined(
        node: tuple[StorageSCP, RecordingIndex, Spool], shared_data: Path, tmp_path: Path) -> None:
    scp, index, spool = node
    # This real de-identified series has empty Study/Series/SOP Instance UIDs in its data sets (storescu
    # cannot even send it; our SCU takes the SOP UIDs from the File Meta Information).
    files = sorted((shared_data / "siemens-ct-jpeg2000").iterdir())[:2]
    result = send_files(files, parse_destination(f"SARCO@127.0.0.1:{scp.port}", "SCANNER"))
    assert [o.status for o in result.outcomes] == [STATUS_DATASET_MISMATCH] * 2
    assert list(spool.walk()) == []
    assert index.instances == []
    notes = sorted((tmp_path / "quarantine").rglob("*.json"))
    assert len(notes) == 2
    assert "StudyInstanceUID and SeriesInstanceUID missing or empty" in notes[0].read_text(encoding="utf-8")


def test_a_data_set_that_cannot_be_parsed_is_refused_and_quarantined(
        node: tuple[StorageSCP, RecordingIndex, Spool], tmp_path: Path) -> None:
    """Valid File Meta Information and SOP UIDs, then Study Date with a VR that does not exist: 0xC000, the bytes
    kept in the quarantine with the reason."""
    scp, index, spool = node
    broken = write_unparseable_instance(tmp_path / "broken.dcm")
    ae = AE(ae_title="SCANNER")  # pynetdicom sends a file given by path as it is, without decoding it
    ae.add_requested_context(pydicom.uid.CTImageStorage, pydicom.uid.ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", scp.port, ae_title="SARCO")
    assert assoc.is_established
    try:
        response = assoc.send_c_store(broken)
    finally:
        assoc.release()
    assert response.Status == STATUS_CANNOT_UNDERSTAND
    assert list(spool.walk()) == []
    assert index.instances == []
    (note,) = (tmp_path / "quarantine").rglob("*.json")
    assert "the data set cannot be parsed" in note.read_text(encoding="utf-8")
    assert note.with_suffix(".dcm").read_bytes().endswith(b"ZZ\x04\x00abcd")  # the bytes as received


def test_unknown_calling_ae_title_is_rejected(node: tuple[StorageSCP, RecordingIndex, Spool],
                                              shared_data: Path) -> None:
    scp, _, spool = node
    run = _storescu(scp, next((shared_data / "dcmqi" / "ct-3slice").iterdir()), calling="INTRUDER")
    assert run.association == "rejected", run.problems
    assert run.rejection == CALLING_AE_TITLE_NOT_RECOGNIZED  # rejected-permanent, service-user, reason 3
    assert list(spool.walk()) == []


def test_wrong_called_ae_title_is_rejected(node: tuple[StorageSCP, RecordingIndex, Spool],
                                           shared_data: Path) -> None:
    scp, _, spool = node
    run = _storescu(scp, next((shared_data / "dcmqi" / "ct-3slice").iterdir()), calling="SCANNER",
                    called="SOMEONE")
    assert run.association == "rejected", run.problems
    assert run.rejection == CALLED_AE_TITLE_NOT_RECOGNIZED  # rejected-permanent, service-user, reason 7
    assert list(spool.walk()) == []


def test_full_disk_and_dead_database_answer_out_of_resources(tmp_path: Path, shared_data: Path) -> None:
    file = next((shared_data / "dcmqi" / "ct-3slice").iterdir())
    spool = Spool(tmp_path / "spool", tmp_path / "quarantine")
    spool.min_free_bytes = spool.free_bytes() * 2  # more than is free
    scp = StorageSCP(spool, RecordingIndex(), ae_title="SARCO", host="127.0.0.1", port=free_port())
    scp.start()
    try:
        assert _storescu(scp, file).statuses == [0xA700]  # Refused: Out of Resources
        assert list(spool.walk()) == []
    finally:
        scp.stop()
    spool.min_free_bytes = 0
    scp = StorageSCP(spool, RecordingIndex(fail=True), ae_title="SARCO", host="127.0.0.1", port=free_port())
    scp.start()
    try:
        assert _storescu(scp, file).statuses == [0xA700]  # Refused: Out of Resources
        # Not acknowledged, but durable: the start-up reconciliation will index it.
        assert len(list(spool.walk())) == 1
    finally:
        scp.stop()


_TOO_LONG_UID = "1.2." + "3" * 61  # 65 characters


@pytest.mark.parametrize(("change", "reason"), [
    (lambda ds: delattr(ds, "SOPInstanceUID"), "SOPInstanceUID missing or empty (Type 1)"),
    (lambda ds: delattr(ds, "SOPClassUID"), "SOPClassUID missing or empty (Type 1)"),
    (lambda ds: setattr(ds, "StudyInstanceUID", "../../1.2.3"), "StudyInstanceUID is not a valid UID"),
    (lambda ds: setattr(ds, "StudyInstanceUID", "1.2.03.4"), "StudyInstanceUID is not a valid UID"),
    (lambda ds: setattr(ds, "StudyInstanceUID", _TOO_LONG_UID), "StudyInstanceUID is not a valid UID"),
], ids=["no-sop-instance", "no-sop-class", "study-dotdot", "study-leading-zero", "study-too-long"])
@pytest.mark.filterwarnings("ignore:Invalid value for VR UI", "ignore:The value length")  # pydicom writing them
def test_identifying_uids_missing_or_invalid_are_refused(
        node: tuple[StorageSCP, RecordingIndex, Spool], tmp_path: Path, change: object, reason: str) -> None:
    """The data set's own SOP Class/Instance UID are Type 1 (the request's are not a substitute: PS3.4 B.2.3) and
    Study, Series, SOP Class and SOP Instance UID must be UIDs (PS3.5 9.1): 0xA900, quarantined, nothing stored."""
    scp, index, spool = node
    series = write_ct_series(tmp_path / "ct", 1, rows=4, columns=4)
    edit_file(series.files[0], change)  # type: ignore[arg-type]
    assert _send_as_is(scp, series.files[0]) == STATUS_DATASET_MISMATCH
    assert list(spool.walk()) == []
    assert index.instances == []
    (note,) = (tmp_path / "quarantine").rglob("*.json")
    assert reason in note.read_text(encoding="utf-8")
    assert "../" not in note.read_text(encoding="utf-8")  # the invalid value itself is not repeated


@pytest.mark.parametrize(("meta_syntax", "body_implicit"), [
    (pydicom.uid.ExplicitVRLittleEndian, True), (pydicom.uid.ImplicitVRLittleEndian, False)],
    ids=["implicit-body-in-explicit-context", "explicit-body-in-implicit-context"])
def test_a_data_set_not_in_the_negotiated_transfer_syntax_is_refused(
        node: tuple[StorageSCP, RecordingIndex, Spool], tmp_path: Path, meta_syntax: str,
        body_implicit: bool) -> None:
    """PS3.5 10: the data set is encoded in the transfer syntax of its presentation context. One encoded in the
    other VR encoding is 0xC000 (pydicom would read it anyway, with a warning, and the file would lie)."""
    scp, index, spool = node
    series = write_ct_series(tmp_path / "ct", 1, rows=4, columns=4)
    mismatched = tmp_path / "mismatched.dcm"
    mismatched.write_bytes(ps10_bytes(pydicom.dcmread(series.files[0]), meta_syntax, body_implicit=body_implicit))
    assert _send_as_is(scp, mismatched, meta_syntax) == STATUS_CANNOT_UNDERSTAND
    assert list(spool.walk()) == []
    assert index.instances == []
    (note,) = (tmp_path / "quarantine").rglob("*.json")
    assert "encoded in " + ("Implicit" if body_implicit else "Explicit") in note.read_text(encoding="utf-8")
    # The same data set in the syntax it is encoded in is stored.
    matching = tmp_path / "matching.dcm"
    matching.write_bytes(ps10_bytes(pydicom.dcmread(series.files[0]), meta_syntax, body_implicit=not body_implicit))
    assert _send_as_is(scp, matching, meta_syntax) == 0x0000
    assert len(list(spool.walk())) == 1


def test_max_associations_counts_associations_not_connections(tmp_path: Path) -> None:
    """`network.max_associations` open associations are admitted; one more is rejected-transient, local limit
    exceeded (PS3.8 Table 9-21). A TCP connection that never sent an A-ASSOCIATE-RQ (a port probe, a load
    balancer's health check) is not an association: pynetdicom counts its thread for up to the ACSE timeout."""
    spool = Spool(tmp_path / "spool", tmp_path / "quarantine")
    scp = StorageSCP(spool, RecordingIndex(), ae_title="SARCO", host="127.0.0.1", port=free_port(),
                     max_associations=2)
    scp.start()
    ae = AE(ae_title="SCANNER")
    ae.add_requested_context(Verification)
    opened = []
    try:
        with socket.create_connection(("127.0.0.1", scp.port)):
            pass  # a probe: connect, close
        silent = socket.create_connection(("127.0.0.1", scp.port))  # connected, says nothing
        opened = [ae.associate("127.0.0.1", scp.port, ae_title="SARCO") for _ in range(2)]
        assert [a.is_established for a in opened] == [True, True]
        refused = ae.associate("127.0.0.1", scp.port, ae_title="SARCO")
        assert refused.is_rejected
        answer = refused.acceptor.primitive
        assert (answer.result, answer.result_source, answer.diagnostic) == (0x02, 0x03, 0x02)
        opened[0].release()
        again = ae.associate("127.0.0.1", scp.port, ae_title="SARCO")  # a released association frees its place
        assert again.is_established
        opened[0] = again
        silent.close()
    finally:
        for assoc in opened:
            if assoc.is_established:
                assoc.release()
        scp.stop()


def test_a_refusal_stands_when_the_quarantine_cannot_be_written(tmp_path: Path) -> None:
    """The quarantine on a disk remounted read-only: the data set is still refused with its own status (0xA900
    here) and the log says it was not quarantined - the handler does not fail on the quarantine's error."""
    series = write_ct_series(tmp_path / "ct", 1, rows=4, columns=4)
    edit_file(series.files[0], lambda ds: delattr(ds, "SOPClassUID"))
    with small_filesystem(tmp_path / "quarantine") as quarantine:
        spool = Spool(tmp_path / "spool", quarantine)
        read_only(quarantine)
        index = RecordingIndex()
        scp = StorageSCP(spool, index, ae_title="SARCO", host="127.0.0.1", port=free_port())
        scp.start()
        try:
            assert _send_as_is(scp, series.files[0]) == STATUS_DATASET_MISMATCH
        finally:
            scp.stop()
    assert list(spool.walk()) == []
    assert index.instances == []


def test_jpip_syntaxes_are_declined_and_the_others_accepted(node: tuple[StorageSCP, RecordingIndex, Spool]) -> None:
    """A JPIP data set holds a URL, not the pixels (PS3.5 8.4): its presentation context is rejected so that the
    sender falls back to another syntax (the chaos run found the two Deflate ones accepted, then refused 0xC000)."""
    scp, _, _ = node
    ae = AE(ae_title="SCANNER")
    proposed = ["1.2.840.10008.1.2.4.95", "1.2.840.10008.1.2.4.205", "1.2.840.10008.1.2.4.94",
                "1.2.840.10008.1.2.4.204", pydicom.uid.JPEG2000Lossless]
    for syntax in proposed:
        ae.add_requested_context(pydicom.uid.CTImageStorage, syntax)
    assoc = ae.associate("127.0.0.1", scp.port, ae_title="SARCO")
    try:
        assert assoc.is_established
        accepted = {str(c.transfer_syntax[0]) for c in assoc.accepted_contexts}
        rejected = {str(c.transfer_syntax[0]) for c in assoc.rejected_contexts}
    finally:
        assoc.release()
    assert accepted == {pydicom.uid.JPEG2000Lossless}
    assert rejected == set(proposed[:4])
