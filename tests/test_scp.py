"""The Storage SCP with real dcmtk peers (echoscu, storescu): write before acknowledge, statuses, access control.

The index here records in memory; the SQL index is tested with the database (tests/test_node_*.py).
"""

from __future__ import annotations

import io
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pydicom.filebase
import pydicom.filewriter
import pytest
from dicom_peers import free_port
from pynetdicom import AE

from sarcoscreen.node.dicom_sender import parse_destination, send_files
from sarcoscreen.node.scp import (
    STATUS_CANNOT_UNDERSTAND,
    STATUS_DATASET_MISMATCH,
    IndexUnavailableError,
    ReceivedInstance,
    StorageSCP,
)
from sarcoscreen.node.spool import Spool

pytestmark = pytest.mark.skipif(shutil.which("storescu") is None, reason="dcmtk is not installed")


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


def _storescu(scp: StorageSCP, *files: Path, calling: str = "STORESCU", called: str = "SARCO") -> str:
    result = subprocess.run(
        ["storescu", "-v", "-aet", calling, "-aec", called, "127.0.0.1", str(scp.port), *map(str, files)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    return result.stdout + result.stderr


def test_echo(node: tuple[StorageSCP, RecordingIndex, Spool]) -> None:
    scp, _, _ = node
    result = subprocess.run(["echoscu", "-aet", "SCANNER", "-aec", "SARCO", "127.0.0.1", str(scp.port)],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr


def test_instances_are_spooled_and_indexed_once(node: tuple[StorageSCP, RecordingIndex, Spool],
                                                shared_data: Path) -> None:
    scp, index, spool = node
    files = sorted((shared_data / "dcmqi" / "ct-3slice").iterdir())
    output = _storescu(scp, *files)
    assert "Received Store Response (Success)" in output
    stored = list(spool.walk())
    assert len(stored) == 3
    for series_uid, sop_uid, relative in stored:
        original = next(pydicom.dcmread(f) for f in files if pydicom.dcmread(f).SOPInstanceUID == sop_uid)
        assert series_uid == original.SeriesInstanceUID
        assert pydicom.dcmread(spool.path_of(relative)).PixelData == original.PixelData
    assert {i.sop_instance_uid for i in index.instances} == {s[1] for s in stored}
    assert all(not i.duplicate and i.calling_ae_title == "STORESCU" for i in index.instances)
    # A PACS resending the series: success again, nothing stored twice.
    assert "Received Store Response (Success)" in _storescu(scp, *files)
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
    meta = pydicom.dataset.FileMetaDataset()
    meta.MediaStorageSOPClassUID = pydicom.uid.CTImageStorage
    meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    stream = io.BytesIO()
    stream.write(b"\0" * 128 + b"DICM")
    pydicom.filewriter.write_file_meta_info(pydicom.filebase.DicomFileLike(stream), meta, enforce_standard=True)
    for tag, value in ((b"\x08\x00\x16\x00", meta.MediaStorageSOPClassUID),
                       (b"\x08\x00\x18\x00", meta.MediaStorageSOPInstanceUID)):
        text = value.encode() + (b"\0" if len(value) % 2 else b"")
        stream.write(tag + b"UI" + len(text).to_bytes(2, "little") + text)
    stream.write(b"\x08\x00\x20\x00ZZ\x04\x00abcd")  # Study Date (0008,0020) with VR 'ZZ'
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(stream.getvalue())
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
    output = _storescu(scp, next((shared_data / "dcmqi" / "ct-3slice").iterdir()), calling="INTRUDER")
    assert "Association Rejected" in output
    assert "Calling AE Title Not Recognized" in output
    assert list(spool.walk()) == []


def test_wrong_called_ae_title_is_rejected(node: tuple[StorageSCP, RecordingIndex, Spool],
                                           shared_data: Path) -> None:
    scp, _, spool = node
    output = _storescu(scp, next((shared_data / "dcmqi" / "ct-3slice").iterdir()), calling="SCANNER",
                       called="SOMEONE")
    assert "Called AE Title Not Recognized" in output
    assert list(spool.walk()) == []


def test_full_disk_and_dead_database_answer_out_of_resources(tmp_path: Path, shared_data: Path) -> None:
    file = next((shared_data / "dcmqi" / "ct-3slice").iterdir())
    spool = Spool(tmp_path / "spool", tmp_path / "quarantine")
    spool.min_free_bytes = spool.free_bytes() * 2  # more than is free
    scp = StorageSCP(spool, RecordingIndex(), ae_title="SARCO", host="127.0.0.1", port=free_port())
    scp.start()
    try:
        assert "Refused: OutOfResources" in _storescu(scp, file)
        assert list(spool.walk()) == []
    finally:
        scp.stop()
    spool.min_free_bytes = 0
    scp = StorageSCP(spool, RecordingIndex(fail=True), ae_title="SARCO", host="127.0.0.1", port=free_port())
    scp.start()
    try:
        assert "Refused: OutOfResources" in _storescu(scp, file)
        # Not acknowledged, but durable: the start-up reconciliation will index it.
        assert len(list(spool.walk())) == 1
    finally:
        scp.stop()
