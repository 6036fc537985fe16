"""C-STORE SCU: send DICOM files to a remote application entity (PS3.4 Annex B, PS3.7 9.1.1).

Used by ``sarcoscreen send`` and by the node's sender for the outbox. Each file is offered in its own transfer
syntax (so compressed instances travel compressed) together with the uncompressed little-endian syntaxes; the
outcome of every file is returned with the C-STORE status the peer gave, so the caller can retry only what
failed.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_context, evt
from pynetdicom.sop_class import Verification
from pynetdicom.status import STATUS_SUCCESS, STATUS_WARNING, STORAGE_SERVICE_CLASS_STATUS, code_to_category

from sarcoscreen.inference.dicom_files import find_dicom_files
from sarcoscreen.inference.error_text import error_text
from sarcoscreen.node.ae_title import DEFAULT_AE_TITLE, InvalidAETitleError, check_ae_title

__all__ = ["Destination", "DestinationError", "SendOutcome", "SendResult", "parse_destination", "send_files"]

logger = logging.getLogger(__name__)

_DESTINATION = re.compile(r"^(?P<aet>[^@]+)@(?P<host>\[[0-9a-fA-F:]+\]|[^:@]+):(?P<port>\d{1,5})$")


class DestinationError(ValueError):
    """A destination that cannot be parsed or reached."""


@dataclass(frozen=True)
class Destination:
    """A remote DICOM application entity; `DestinationError` when an AE title is not valid (PS3.5 6.2,
    `sarcoscreen.node.ae_title`)."""

    ae_title: str
    host: str
    port: int
    calling_ae_title: str = DEFAULT_AE_TITLE
    tls: ssl.SSLContext | None = None
    name: str = ""

    def __post_init__(self) -> None:
        for which, title in (("called", self.ae_title), ("calling", self.calling_ae_title)):
            try:
                check_ae_title(title)
            except InvalidAETitleError as exc:
                raise DestinationError(f"{which} AE title {title!r} {exc}") from None

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}" + (" (TLS)" if self.tls else "")


def parse_destination(text: str, calling_ae_title: str = DEFAULT_AE_TITLE) -> Destination:
    """``AET@host:port`` -> `Destination`; `DestinationError` saying what is wrong otherwise."""
    match = _DESTINATION.match(text.strip())
    if not match:
        raise DestinationError(f"destination {text!r} is not AET@host:port (e.g. ORTHANC@127.0.0.1:4242)")
    port = int(match["port"])
    if not 0 < port < 65536:
        raise DestinationError(f"port {port} of destination {text!r} is outside 1-65535")
    try:
        aet = check_ae_title(match["aet"])
    except InvalidAETitleError as exc:
        raise DestinationError(f"AE title {match['aet']!r} of destination {text!r} {exc}") from None
    return Destination(aet, match["host"].strip("[]"), port, calling_ae_title)


@dataclass(frozen=True)
class SendOutcome:
    """What became of one file: the peer's C-STORE status, or why there is none."""

    path: Path
    sop_instance_uid: str | None
    status: int | None
    """The C-STORE response's Status (PS3.4 Table B.2-1, PS3.7 Annex C); ``None`` when the file was never sent or
    no response came."""
    error: str = ""

    @property
    def category(self) -> str | None:
        """The status's category as pynetdicom names it (`pynetdicom.status.code_to_category`: ``"Success"``,
        ``"Warning"``, ``"Failure"``, ``"Cancel"``, ``"Pending"`` or ``"Unknown"``); ``None`` without a status."""
        return None if self.status is None else code_to_category(self.status)

    @property
    def ok(self) -> bool:
        """The peer stored the instance: Success, or a Warning (stored, with data elements coerced or discarded or
        the data set not matching the SOP class: PS3.4 B.2.3); a Failure, an unknown status or none is not."""
        return self.category in (STATUS_SUCCESS, STATUS_WARNING)

    @property
    def status_text(self) -> str:
        """``status 0xA700 (Failure, Refused: Out of Resources)`` - the code with its category and, when the
        Storage Service Class defines it, its meaning (`pynetdicom.status`); ``no status`` without one."""
        if self.status is None:
            return "no status"
        meaning = STORAGE_SERVICE_CLASS_STATUS.get(self.status, ("", ""))[1]
        return f"status 0x{self.status:04X} ({self.category}{', ' + meaning if meaning else ''})"


@dataclass(frozen=True)
class SendResult:
    destination: Destination
    outcomes: tuple[SendOutcome, ...]

    @property
    def sent(self) -> int:
        return sum(o.ok for o in self.outcomes)

    @property
    def failed(self) -> tuple[SendOutcome, ...]:
        return tuple(o for o in self.outcomes if not o.ok)


def _dataset_to_send(path: Path) -> Path | Dataset:
    """The file itself, or - when its SOP Class or Instance UID (0008,0016/0018) is empty, as in some
    de-identified data - the dataset with those UIDs taken from its File Meta Information, which pynetdicom needs
    for the presentation context and the request. The file on disk is never changed."""
    ds = dcmread(path, stop_before_pixels=True)
    if ds.get("SOPClassUID") and ds.get("SOPInstanceUID"):
        return path
    full = dcmread(path)
    full.SOPClassUID = full.get("SOPClassUID") or full.file_meta.MediaStorageSOPClassUID
    full.SOPInstanceUID = full.get("SOPInstanceUID") or full.file_meta.MediaStorageSOPInstanceUID
    logger.warning("empty SOP Class/Instance UID in %s; sent with the File Meta's UIDs", path.name)
    return full


def _no_delay(event: evt.Event) -> None:
    """Send each PDU at once (TCP_NODELAY). With Nagle's algorithm the data PDU after a small command PDU waits for
    the peer's delayed ACK (~40 ms on Linux), which caps small instances at ~20 per second."""
    sock = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
    if sock is not None:
        with contextlib.suppress(OSError):  # not a TCP socket: nothing to tune
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _why_not_established(assoc: object, destination: Destination) -> str:
    """Words for a failed association: rejected by the peer, no TCP connection at all, or ended early (e.g. the TLS
    handshake failed). pynetdicom reports a refused connection as an aborted association, so the TCP connection
    is tried once more to tell them apart."""
    if getattr(assoc, "is_rejected", False):
        return "rejected by the peer (AE title or presentation contexts not accepted)"
    try:
        with socket.create_connection((destination.host, destination.port), timeout=5):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return f"could not be established: cannot connect to {destination.host}:{destination.port} ({reason})"
    if destination.tls is not None:
        return "aborted (TCP connects; the TLS handshake or the association request failed)"
    return "aborted by the peer or the network"


def send_files(paths: Sequence[Path], destination: Destination, timeout: float = 30.0) -> SendResult:
    """Send every DICOM file under `paths` (files or folders) to `destination` in one association.

    Folders are searched by `find_dicom_files` (recursively; DICOMDIR and hidden files left out). Files that are
    not DICOM are reported as not sent. Raises `DestinationError` when no association can be established (peer
    down, refused, TLS failure): nothing was sent, everything can be retried.
    """
    outcomes: list[SendOutcome] = []
    headers = []
    for path in find_dicom_files(paths):
        try:
            ds = dcmread(path, stop_before_pixels=True)
            sop_class = str(ds.get("SOPClassUID", "") or ds.file_meta.get("MediaStorageSOPClassUID", ""))
            sop_uid = str(ds.get("SOPInstanceUID", "") or ds.file_meta.get("MediaStorageSOPInstanceUID", ""))
            headers.append((path, sop_class, sop_uid, str(ds.file_meta.TransferSyntaxUID)))
        except (InvalidDicomError, AttributeError, OSError) as exc:
            reason = f"not a DICOM file with SOP Class/Instance UID: {error_text(exc)}"
            outcomes.append(SendOutcome(path, None, None, reason))
    if not headers:
        return SendResult(destination, tuple(outcomes))
    # One presentation context per (SOP class, transfer syntax) of the files, so that an acceptor choosing one
    # syntax per context cannot leave a compressed file without a context (PS3.8 9.3.2.2), plus an
    # uncompressed one per SOP class.
    wanted = {(sop_class, syntax) for _, sop_class, _, syntax in headers}
    requested = [build_context(sop_class, syntax) for sop_class, syntax in sorted(wanted)
                 if syntax not in (ExplicitVRLittleEndian, ImplicitVRLittleEndian)]
    requested += [build_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
                  for sop_class in sorted({sop_class for sop_class, _ in wanted})]
    requested.append(build_context(Verification))
    if len(requested) > 128:
        raise DestinationError(f"{len(requested)} presentation contexts exceed the 128 of one association")
    ae = AE(ae_title=destination.calling_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.requested_contexts = requested
    tls_args = (destination.tls, destination.host) if destination.tls else None
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title, tls_args=tls_args,
                         evt_handlers=[(evt.EVT_CONN_OPEN, _no_delay)])
    if not assoc.is_established:
        raise DestinationError(f"association with {destination} {_why_not_established(assoc, destination)}")
    try:
        for path, _, sop_uid, _ in headers:
            if not assoc.is_established:
                outcomes.append(SendOutcome(path, sop_uid, None, "association ended before this file was sent"))
                continue
            try:
                status = assoc.send_c_store(_dataset_to_send(path))
            except ValueError as exc:  # no accepted presentation context for this file
                outcomes.append(SendOutcome(path, sop_uid, None, error_text(exc)))
                continue
            code = int(status.Status) if "Status" in status else None
            error = "" if code is not None else "no response (timeout or aborted association)"
            outcomes.append(SendOutcome(path, sop_uid, code, error))
    finally:
        if assoc.is_established:
            assoc.release()
    result = SendResult(destination, tuple(outcomes))
    logger.info("sent %d of %d files to %s", result.sent, len(outcomes), destination)
    return result
