"""C-STORE SCU against dcmtk storescp: real association, statuses per file, clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom
import pytest
from dicom_peers import dcmtk_storescp, free_port
from pynetdicom import AE, evt
from pynetdicom.sop_class import CTImageStorage

from sarcoscreen.node.storage_scu import DestinationError, SendOutcome, parse_destination, send_files


def test_compressed_real_series_arrives_intact(tmp_path: Path, shared_data: Path) -> None:
    source = shared_data / "siemens-ct-jpeg2000"
    with dcmtk_storescp(tmp_path / "received") as scp:
        result = send_files([source], parse_destination(f"{scp.ae_title}@127.0.0.1:{scp.port}"))
        received = scp.received()
    assert result.sent == 20
    assert result.failed == ()
    assert {o.status for o in result.outcomes} == {0}
    # This de-identified series has empty SOP Class/Instance UIDs in the data set; the File Meta has them.
    def uid(ds: pydicom.Dataset) -> str:
        return str(ds.get("SOPInstanceUID") or ds.file_meta.MediaStorageSOPInstanceUID)

    original = {uid(ds): ds for ds in (pydicom.dcmread(p) for p in source.iterdir())}
    got = [pydicom.dcmread(p) for p in received]
    assert {uid(ds) for ds in got} == set(original)
    # Offered in its own transfer syntax, the series travels as JPEG 2000 and decodes identically.
    for ds in got[:3]:
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.90"
        assert (ds.pixel_array == original[uid(ds)].pixel_array).all()


def test_files_that_are_not_dicom_are_reported_not_sent(tmp_path: Path, shared_data: Path) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("not DICOM", encoding="utf-8")
    one = next((shared_data / "dcmqi" / "ct-3slice").iterdir())
    with dcmtk_storescp(tmp_path / "received") as scp:
        result = send_files([junk, one], parse_destination(f"{scp.ae_title}@127.0.0.1:{scp.port}"))
    assert result.sent == 1
    (failed,) = result.failed
    assert failed.path == junk
    assert failed.status is None
    assert "not a DICOM file" in failed.error


def test_a_peer_that_is_down_raises_and_nothing_is_sent(shared_data: Path) -> None:
    destination = parse_destination(f"NOBODY@127.0.0.1:{free_port()}")
    with pytest.raises(DestinationError, match=r"could not be established|aborted"):
        send_files([shared_data / "dcmqi" / "ct-3slice"], destination, timeout=5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ORTHANC127.0.0.1:4242", "is not AET@host:port"),
        ("ORTHANC@127.0.0.1", "is not AET@host:port"),
        ("ORTHANC@127.0.0.1:70000", "outside 1-65535"),
        ("ORTHANCTOOLONGAETITLE@h:104", "AE title 'ORTHANCTOOLONGAETITLE' .* has 21 characters, more than 16"),
        ("ORT\\HANC@h:104", "contains a backslash"),
    ],
)
def test_bad_destinations_are_explained(text: str, message: str) -> None:
    with pytest.raises(DestinationError, match=message):
        parse_destination(text)


def test_destination_parsing() -> None:
    destination = parse_destination("PACS@[::1]:11112")
    assert (destination.ae_title, destination.host, destination.port) == ("PACS", "::1", 11112)


def test_a_folder_is_sent_without_its_dicomdir_and_hidden_files(tmp_path: Path, shared_data: Path) -> None:
    folder = tmp_path / "export"
    shutil.copytree(shared_data / "dcmqi" / "ct-3slice", folder / "SE0")
    (folder / "DICOMDIR").write_bytes(b"a File-set's directory, not an instance")
    (folder / ".DS_Store").write_bytes(b"\0\1\2")
    with dcmtk_storescp(tmp_path / "received") as scp:
        result = send_files([folder], parse_destination(f"{scp.ae_title}@127.0.0.1:{scp.port}"))
    assert [o.path.parent.name for o in result.outcomes] == ["SE0"] * 3
    assert (result.sent, result.failed) == (3, ())


def test_a_bad_calling_ae_title_is_a_destination_error() -> None:
    with pytest.raises(DestinationError, match=r"calling AE title .* contains a control character"):
        parse_destination("PACS@pacs:104", calling_ae_title="SARCO\tSCREEN")
    assert parse_destination(" PACS @pacs:104", calling_ae_title="ABCDEFGHIJKLMNOP").ae_title == "PACS"


@pytest.mark.parametrize(
    ("status", "ok", "text"),
    [
        (0x0000, True, "status 0x0000 (Success)"),
        (0xB000, True, "status 0xB000 (Warning, Coercion of Data Elements)"),
        (0xB007, True, "status 0xB007 (Warning, Data Set Does Not Match SOP Class)"),
        (0xB006, True, "status 0xB006 (Warning, Element Discarded)"),
        (0x0107, True, "status 0x0107 (Warning, Attribute List Error)"),  # a general warning, PS3.7 C.4.2
        (0xA700, False, "status 0xA700 (Failure, Refused: Out of Resources)"),
        (0xA900, False, "status 0xA900 (Failure, Data Set Does Not Match SOP Class)"),
        (0xC001, False, "status 0xC001 (Failure, Cannot Understand)"),
        (0x0110, False, "status 0x0110 (Failure, Processing Failure)"),
        (0x1234, False, "status 0x1234 (Unknown)"),
        (None, False, "no status"),
    ],
)
def test_statuses_are_judged_by_their_category(status: int | None, ok: bool, text: str) -> None:
    outcome = SendOutcome(Path("IM1"), "1.2.3", status)
    assert outcome.ok is ok
    assert outcome.status_text == text


def test_warnings_count_as_sent_and_failures_do_not(shared_data: Path) -> None:
    """A peer answering Warning, Failure, Warning: the first and last are stored, the second is to be retried."""
    answers = iter([0xB000, 0xA700, 0x0107])
    peer = AE(ae_title="PEER")
    peer.add_supported_context(CTImageStorage)
    port = free_port()
    server = peer.start_server(("127.0.0.1", port), block=False,
                               evt_handlers=[(evt.EVT_C_STORE, lambda event: next(answers))])
    try:
        result = send_files([shared_data / "dcmqi" / "ct-3slice"], parse_destination(f"PEER@127.0.0.1:{port}"))
    finally:
        server.shutdown()
    assert [(o.status, o.ok) for o in result.outcomes] == [(0xB000, True), (0xA700, False), (0x0107, True)]
    assert result.sent == 2
    assert [o.status_text for o in result.failed] == ["status 0xA700 (Failure, Refused: Out of Resources)"]
