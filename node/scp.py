"""The Storage SCP: receives CT instances by C-STORE and makes them durable before acknowledging them.

Service classes (PS3.4): Storage (Annex B) for CT Image, Enhanced CT Image and Legacy Converted Enhanced CT
Image, in every transfer syntax pynetdicom knows (compressed ones included: they are stored as received, never
transcoded), and Verification (Annex A). What happens to one C-STORE request, on the association's thread:

1. the header is read from the received bytes (`sarcoscreen.node.received_header`: a single-pass scanner for
   the common transfer syntaxes, pydicom for the rest; pixel data is never decoded) - a data set that cannot be
   parsed, or is not in the VR encoding of the presentation context's transfer syntax, is 0xC000; its SOP
   Class, SOP Instance, Study and Series Instance UIDs must be present (Type 1), be UIDs (PS3.5 9.1) and the
   first two agree with the request's (Affected SOP Class/Instance UID) - otherwise 0xA900. A refused data set
   is quarantined with the reason;
2. `Spool.store` writes it durably (fsync, atomic rename) - below the disk reserve: 0xA700;
3. the index records it in the database - when the database is unavailable: 0xA700 (the file stays in the
   spool and is indexed by the start-up reconciliation);
4. only then Success 0x0000. A SOP Instance UID already received in the same series is Success too and stored
   once; one the index holds under another series is refused with 0xC001, quarantined, and recorded as an
   ``instance.conflict`` event (the first copy is kept: `StorageSCP._refuse_conflict`).

Every refusal is also recorded with its status and reason (`RefusalLog`: a ``store_refusals`` row, in its own
transaction, `sarcoscreen.node.refusal_log`), so refusals can be counted (``sarcoscreen_instances_refused_total``);
a refusal that cannot be recorded - the database is down - is logged and answered all the same.

`StorageSCP.stop` (SIGTERM) stops listening and aborts the associations that are open; a C-STORE being stored
finishes first, so nothing acknowledged is lost and nothing is left half-written.

Nothing slow runs here: series stability, routing and analysis run elsewhere. Access control: the Called AE
Title must be ours (configurable) and, when an allow-list is set, the Calling AE Title (optionally with the
peer's address) must be on it; otherwise the association is rejected (PS3.8 Table 9-21, reasons 3 and 7). At
most `max_associations` associations are open at once (the next is rejected-transient, local limit exceeded).
With TLS, the handshake runs on the connection's own thread and a failed one is logged with the peer's address and
the reason (`sarcoscreen.node.association_server`).
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from pynetdicom import ALL_TRANSFER_SYNTAXES, Association, evt
from pynetdicom.sop_class import Verification
from pynetdicom.status import Status

from sarcoscreen.inference.error_text import error_text
from sarcoscreen.inference.sop_classes import CT_IMAGE_STORAGE_SOP_CLASSES
from sarcoscreen.node.ae_title import DEFAULT_AE_TITLE
from sarcoscreen.node.association_server import NodeAE
from sarcoscreen.node.received_header import HeaderAttributes, TransferSyntaxMismatchError, read_header_attributes
from sarcoscreen.node.spool import (
    InsufficientStorageError,
    InvalidUidError,
    Spool,
    SpoolError,
    StoredFile,
    is_valid_uid,
)

__all__ = [
    "ACCEPTED_TRANSFER_SYNTAXES",
    "JPIP_TRANSFER_SYNTAXES",
    "STATUS_CANNOT_UNDERSTAND",
    "STATUS_DATASET_MISMATCH",
    "STATUS_OUT_OF_RESOURCES",
    "STATUS_SOP_INSTANCE_CONFLICT",
    "STATUS_SUCCESS",
    "IndexUnavailableError",
    "InstanceConflictError",
    "InstanceIndex",
    "ReceivedInstance",
    "RefusalLog",
    "RefusalNotRecordedError",
    "RejectedInstanceError",
    "StorageSCP",
    "instance_from_header",
    "read_header",
]

logger = logging.getLogger(__name__)

# C-STORE response statuses, PS3.4 Table B.2-1 (pynetdicom names Success only).
STATUS_SUCCESS = int(Status.SUCCESS)
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_DATASET_MISMATCH = 0xA900
STATUS_CANNOT_UNDERSTAND = 0xC000
STATUS_SOP_INSTANCE_CONFLICT = 0xC001
"""A SOP Instance UID the node holds under another series: in the "Cannot understand" range (C000-CFFF) of
Table B.2-1, distinct from 0xC000 so that the sender's log tells the two apart."""

JPIP_TRANSFER_SYNTAXES = frozenset({
    "1.2.840.10008.1.2.4.94", "1.2.840.10008.1.2.4.95",  # JPIP Referenced, JPIP Referenced Deflate
    "1.2.840.10008.1.2.4.204", "1.2.840.10008.1.2.4.205",  # JPIP HTJ2K Referenced, ... Referenced Deflate
})
"""Transfer syntaxes whose data set carries a Pixel Data Provider URL (0028,7FE0) instead of the Pixel Data (PS3.5
8.4): the node could store such an instance but never measure it, so it declines them and the
sender falls back to a syntax with the pixels in it (pydicom 3.0 also cannot inflate the two Deflate ones)."""

ACCEPTED_TRANSFER_SYNTAXES = tuple(uid for uid in ALL_TRANSFER_SYNTAXES if uid not in JPIP_TRANSFER_SYNTAXES)
"""The transfer syntaxes of every accepted presentation context (docs/conformance.md 3.2)."""


class IndexUnavailableError(Exception):
    """The instance index (database) could not record an instance."""


class InstanceConflictError(Exception):
    """The index holds the SOP Instance UID under another series; nothing about it was recorded or changed."""

    def __init__(self, sop_instance_uid: str, stored_series_uid: str, received_series_uid: str,
                 stored_series_id: int | None = None) -> None:
        super().__init__(f"SOP Instance UID {sop_instance_uid} received under series {received_series_uid} is "
                         f"already stored under series {stored_series_uid}")
        self.sop_instance_uid = sop_instance_uid
        self.stored_series_uid = stored_series_uid
        self.received_series_uid = received_series_uid
        self.stored_series_id = stored_series_id


@dataclass(frozen=True)
class ReceivedInstance:
    """One stored instance as the index records it (the patient ID goes to the database, never to logs)."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    relative_path: str
    size: int
    sha256: str
    calling_ae_title: str
    duplicate: bool
    modality: str = ""
    patient_id: str = ""
    patient_sex: str = ""
    patient_age: str = ""
    patient_size: str = ""
    """PatientSize (0010,1020) as received (metres by the standard; validated when measuring)."""
    accession_number: str = ""
    study_date: str = ""
    study_description: str = ""
    series_description: str = ""
    body_part: str = ""
    frame_of_reference_uid: str = ""
    image_type: tuple[str, ...] = ()
    slice_thickness_mm: float | None = None
    axial: bool = True
    frames: int = 1


class InstanceIndex(Protocol):
    """Where received instances are recorded (the database)."""

    def add(self, instance: ReceivedInstance) -> None:
        """Record `instance`; raise `IndexUnavailableError` when that is not possible, `InstanceConflictError`
        (recording nothing) when its SOP Instance UID is recorded under another series."""
        ...


class RefusalNotRecordedError(Exception):
    """A refused C-STORE could not be recorded (the database is unavailable); the refusal stands."""


class RefusalLog(Protocol):
    """Where refused C-STOREs are recorded, to be counted (the database: `sarcoscreen.node.refusal_log`)."""

    def record(self, status: int, reason: str, calling_ae_title: str) -> None:
        """Record one refusal; raise `RefusalNotRecordedError` when that is not possible."""
        ...


class RejectedInstanceError(Exception):
    """A received data set that cannot be accepted; `status` is the C-STORE failure status to answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def read_header(encoded: bytes, request_class: str, request_instance: str) -> HeaderAttributes:
    """Step 1: read the header of `encoded` (a PS3.10 file; `read_header_attributes`) and check its UIDs against
    the C-STORE request's Affected SOP Class/Instance UID (PS3.4 B.2.3: a mismatch is 0xA900); Study and Series
    Instance UID are Type 1. Raises `RejectedInstanceError` with the status to answer."""
    try:
        header = read_header_attributes(encoded)
    except TransferSyntaxMismatchError as exc:
        raise RejectedInstanceError(STATUS_CANNOT_UNDERSTAND, str(exc)) from None
    except Exception as exc:  # the peer's bytes may be anything; pydicom raises many kinds of errors on them
        reason = f"the data set cannot be parsed: {error_text(exc)}"
        raise RejectedInstanceError(STATUS_CANNOT_UNDERSTAND, reason) from None
    identifying = (("SOPClassUID", header.sop_class_uid), ("SOPInstanceUID", header.sop_instance_uid),
                   ("StudyInstanceUID", header.study_instance_uid), ("SeriesInstanceUID", header.series_instance_uid))
    missing = [name for name, value in identifying if not value]
    if missing:
        raise RejectedInstanceError(STATUS_DATASET_MISMATCH, f"{_names(missing)} missing or empty (Type 1)")
    invalid = [name for name, value in identifying if not is_valid_uid(value)]
    if invalid:  # the value is not repeated: it is not a UID, so it may be anything
        raise RejectedInstanceError(STATUS_DATASET_MISMATCH,
                                    f"{_names(invalid)} {'is' if len(invalid) == 1 else 'are'} not a valid UID "
                                    "(PS3.5 9.1)")
    if header.sop_class_uid != request_class:
        raise RejectedInstanceError(STATUS_DATASET_MISMATCH,
                                    f"SOP Class UID {header.sop_class_uid} differs from the request's {request_class}")
    if header.sop_instance_uid != request_instance:
        raise RejectedInstanceError(STATUS_DATASET_MISMATCH,
                                    "SOP Instance UID differs from the request's Affected SOP Instance UID")
    return header


def _names(names: Sequence[str]) -> str:
    """'A', 'A and B', 'A, B and C'."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def instance_from_header(header: HeaderAttributes, *, sop_class: str, sop_instance: str, relative_path: str,
                         size: int, sha256: str, calling_ae_title: str, duplicate: bool) -> ReceivedInstance:
    """What the index records of one stored instance, from its header attributes."""
    try:
        thickness = float(header.slice_thickness) if header.slice_thickness else None
    except ValueError:
        thickness = None
    try:
        frames = int(header.number_of_frames or 1)
    except ValueError:
        frames = 1
    return ReceivedInstance(
        study_instance_uid=header.study_instance_uid, series_instance_uid=header.series_instance_uid,
        sop_instance_uid=sop_instance, sop_class_uid=sop_class, transfer_syntax_uid=header.transfer_syntax_uid,
        relative_path=relative_path, size=size, sha256=sha256, calling_ae_title=calling_ae_title,
        duplicate=duplicate, modality=header.modality, patient_id=header.patient_id, patient_sex=header.patient_sex,
        patient_age=header.patient_age, patient_size=header.patient_size, accession_number=header.accession_number,
        study_date=header.study_date, study_description=header.study_description,
        series_description=header.series_description, body_part=header.body_part,
        frame_of_reference_uid=header.frame_of_reference_uid, image_type=header.image_type,
        slice_thickness_mm=thickness, axial=_is_axial(header.image_orientation), frames=frames,
    )


def _is_axial(orientation: tuple[str, ...]) -> bool:
    """Row and column direction cosines along x and y (a missing or unreadable orientation counts as axial; the
    loader checks the geometry again)."""
    if not orientation:
        return True
    try:
        values = [float(v) for v in orientation]
    except ValueError:
        return True
    return len(values) == 6 and abs(values[0]) > 0.95 and abs(values[4]) > 0.95


_UNLIMITED = 1 << 30


def _reject(assoc: Association, result: int, source: int, reason: int) -> None:
    """Send A-ASSOCIATE-RJ from the EVT_REQUESTED handler and, as pynetdicom's own negotiation does, mark the
    association rejected so that it stops there."""
    assoc.acse.send_reject(result, source, reason)
    assoc.is_rejected = True
    assoc.kill()


def _caller_allowed(allowed: Sequence[str], calling_ae: str, address: str) -> bool:
    if not allowed:
        return True
    for entry in allowed:
        aet, _, host = entry.partition("@")
        if aet.strip() == calling_ae and (not host or host == address):
            return True
    return False


class StorageSCP:
    """The node's listening AE; `start` serves in background threads, `stop` ends it."""

    def __init__(
        self,
        spool: Spool,
        index: InstanceIndex,
        *,
        ae_title: str = DEFAULT_AE_TITLE,
        host: str = "0.0.0.0",
        port: int = 11112,
        max_associations: int = 20,
        max_pdu_bytes: int = 0,
        require_called_ae_title: bool = True,
        allowed_calling: Sequence[str] = (),
        tls: ssl.SSLContext | None = None,
        refusals: RefusalLog | None = None,
    ) -> None:
        self.spool = spool
        self.index = index
        self.refusals = refusals
        self.host = host
        self.port = port
        self.allowed_calling = tuple(allowed_calling)
        self.tls = tls
        self.max_associations = max_associations
        self._admitted: set[Association] = set()
        self._admission = threading.Lock()
        self._stopping = threading.Event()
        ae = NodeAE(ae_title=ae_title)
        # pynetdicom counts every acceptor thread against its limit, including connections that never sent an
        # A-ASSOCIATE-RQ (a port probe's thread waits for one for the ACSE timeout): the node admits by its own
        # count (`_admit`), so pynetdicom's must never be the one reached.
        ae.maximum_associations = _UNLIMITED
        ae.maximum_pdu_size = max_pdu_bytes
        ae.require_called_aet = require_called_ae_title
        for sop_class in CT_IMAGE_STORAGE_SOP_CLASSES:
            ae.add_supported_context(sop_class, ACCEPTED_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification, ACCEPTED_TRANSFER_SYNTAXES)
        self._ae = ae
        self._server = None

    @property
    def ae_title(self) -> str:
        return self._ae.ae_title

    def start(self) -> None:
        handlers = [
            (evt.EVT_C_STORE, self._on_c_store),
            (evt.EVT_C_ECHO, self._on_c_echo),
            (evt.EVT_REQUESTED, self._on_requested),
        ]
        self._stopping.clear()
        self._server = self._ae.start_server((self.host, self.port), block=False, evt_handlers=handlers,
                                             ssl_context=self.tls)
        self.port = self._server.server_address[1]
        logger.info("listening as %s on %s:%d%s", self.ae_title, self.host, self.port, " (TLS)" if self.tls else "")

    def stop(self, grace_s: float = 30.0) -> None:
        """Stop listening, then abort the associations that are open (A-ABORT: the peer sends what it has left
        again later) and wait up to `grace_s` seconds for their threads to end. A C-STORE being stored when the
        abort comes finishes first - stored and indexed, or not at all (a partial P-DATA stream is never passed to
        the handler) - and its response may not reach the peer, which sends it again (Success, stored once). So
        once `stop` returns, nothing is half-written and nothing more is stored or acknowledged."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # an association negotiated from here on is rejected (`_on_requested`)
        server.shutdown()
        associations = [a for a in self._ae.active_associations if a.is_acceptor]
        requested = [a for a in associations if a.requestor.primitive is not None]
        for assoc in associations:
            if assoc.requestor.primitive is None:  # a connection that has not asked for an association
                assoc.dul.kill_dul()
                continue
            if assoc.is_released or assoc.is_aborted or assoc.is_rejected:
                continue  # ending by itself
            if assoc.is_established:
                logger.warning("association from %s at %s aborted: the node is stopping",
                               assoc.requestor.ae_title.strip(), assoc.requestor.address)
            assoc.abort()
        deadline = time.monotonic() + grace_s
        for assoc in requested:
            assoc.join(max(0.0, deadline - time.monotonic()))
        busy = sum(assoc.is_alive() for assoc in requested)
        if busy:
            logger.error("%d aborted associations still busy after %g s (a C-STORE waiting for the disk or the "
                         "database); stopping without them", busy, grace_s)

    # --- handlers --------------------------------------------------------------------------------------------

    def _on_requested(self, event: evt.Event) -> None:
        assoc = event.assoc
        calling = assoc.requestor.primitive.calling_ae_title.strip()
        address = assoc.requestor.address
        if not _caller_allowed(self.allowed_calling, calling, address):
            logger.warning("association from %s at %s rejected: calling AE title not allowed", calling, address)
            # Rejected-permanent, service-user, calling AE title not recognized (PS3.8 Table 9-21).
            _reject(assoc, 0x01, 0x01, 0x03)
            return
        if self._stopping.is_set():
            logger.warning("association from %s at %s rejected: the node is stopping", calling, address)
            # Rejected-transient, service-provider (presentation), temporary congestion (PS3.8 Table 9-21).
            _reject(assoc, 0x02, 0x03, 0x01)
            return
        if not self._admit(assoc):
            logger.warning("association from %s at %s rejected: %d associations open (network.max_associations)",
                           calling, address, self.max_associations)
            # Rejected-transient, service-provider (presentation), local limit exceeded (PS3.8 Table 9-21).
            _reject(assoc, 0x02, 0x03, 0x02)

    def _admit(self, assoc: Association) -> bool:
        """Count `assoc` among the open associations unless `max_associations` are open already. Open: admitted
        here and neither released, aborted nor ended (an association whose negotiation then fails ends at once)."""
        with self._admission:
            self._admitted = {a for a in self._admitted if a.is_alive() and not (a.is_released or a.is_aborted
                                                                                   or a.is_rejected)}
            if len(self._admitted) >= self.max_associations:
                return False
            self._admitted.add(assoc)
            return True

    def _on_c_echo(self, event: evt.Event) -> int:
        return STATUS_SUCCESS

    def _on_c_store(self, event: evt.Event) -> int:
        request = event.request
        request_class = str(request.AffectedSOPClassUID)
        request_instance = str(request.AffectedSOPInstanceUID)
        calling = event.assoc.requestor.ae_title.strip()
        try:
            encoded = event.encoded_dataset(include_meta=True)
        except Exception as exc:  # the peer's bytes may be anything: answer, don't crash
            reason = f"cannot encode the received data set: {error_text(exc)}"
            logger.error("C-STORE of %s from %s: %s", request_instance, calling, reason)
            return self._refused(STATUS_CANNOT_UNDERSTAND, reason, calling)
        try:
            header = read_header(encoded, request_class, request_instance)
            stored = self.spool.store(encoded, header.series_instance_uid, request_instance)
        except RejectedInstanceError as rejected:
            kept = self._quarantine(encoded, str(rejected), sop_instance_uid=request_instance,
                                    calling_ae_title=calling)
            logger.warning("C-STORE of %s from %s refused (0x%04X): %s; %s", request_instance, calling,
                           rejected.status, rejected, kept)
            return self._refused(rejected.status, str(rejected), calling)
        except InvalidUidError as exc:
            kept = self._quarantine(encoded, str(exc), calling_ae_title=calling)
            logger.warning("C-STORE from %s refused (0xA900): %s; %s", calling, exc, kept)
            return self._refused(STATUS_DATASET_MISMATCH, str(exc), calling)
        except InsufficientStorageError as exc:
            logger.error("C-STORE of %s from %s refused (0xA700): %s", request_instance, calling, exc)
            return self._refused(STATUS_OUT_OF_RESOURCES, str(exc), calling)
        except SpoolError as exc:
            logger.error("C-STORE of %s from %s failed (0xA700): %s", request_instance, calling, exc)
            return self._refused(STATUS_OUT_OF_RESOURCES, str(exc), calling)
        instance = instance_from_header(header, sop_class=header.sop_class_uid,
                                        sop_instance=request_instance, relative_path=stored.relative_path,
                                        size=stored.size, sha256=stored.sha256, calling_ae_title=calling,
                                        duplicate=stored.duplicate)
        try:
            self.index.add(instance)
        except InstanceConflictError as conflict:
            return self._refused(self._refuse_conflict(encoded, stored, conflict, calling), str(conflict), calling)
        except IndexUnavailableError as exc:
            logger.error("C-STORE of %s: stored in the spool but not indexed (0xA700): %s", instance.sop_instance_uid,
                         exc)
            return self._refused(STATUS_OUT_OF_RESOURCES, f"stored in the spool but not indexed: {exc}", calling)
        return STATUS_SUCCESS

    def _refused(self, status: int, reason: str, calling: str) -> int:
        """Record a refusal with `reason` (to be counted) and return its `status`. One that cannot be recorded is
        logged and answered all the same: counting refusals never changes an answer."""
        if self.refusals is not None:
            try:
                self.refusals.record(status, reason, calling)
            except RefusalNotRecordedError as exc:
                logger.warning("C-STORE refusal 0x%04X from %s not recorded: %s", status, calling, exc)
        return status

    def _quarantine(self, encoded: bytes, reason: str, **facts: str) -> str:
        """Keep a refused data set in the quarantine; what became of it, for the log line. A quarantine that cannot
        be written does not change the answer (the data set was refused: the sender still has it)."""
        try:
            return f"quarantined as {self.spool.quarantine(encoded, reason, **facts).name}"
        except SpoolError as exc:
            return f"not quarantined ({exc})"

    def _refuse_conflict(self, encoded: bytes, stored: StoredFile, conflict: InstanceConflictError,
                         calling: str) -> int:
        """The SOP Instance UID is held under another series: keep the first copy, quarantine this one (before its
        spool file, just written, is removed: the bytes are always somewhere) and refuse it. A copy that was in
        the spool already (`stored.duplicate`) is left to the start-up reconciliation."""
        reason = (f"the SOP Instance UID is already stored under series {conflict.stored_series_uid}; received "
                  f"under series {conflict.received_series_uid}, refused (a SOP Instance UID identifies one "
                  "instance, PS3.3 C.12.1.1.1; the first copy is kept)")
        try:
            path = self.spool.quarantine(encoded, reason, sop_instance_uid=conflict.sop_instance_uid,
                                         calling_ae_title=calling)
        except SpoolError as exc:  # the copy stays in the spool: the next start quarantines it
            logger.error("C-STORE of %s from %s refused (0x%04X): %s; not quarantined (%s), left in the spool as "
                         "%s", conflict.sop_instance_uid, calling, STATUS_SOP_INSTANCE_CONFLICT, conflict, exc,
                         stored.relative_path)
            return STATUS_SOP_INSTANCE_CONFLICT
        if not stored.duplicate:
            try:
                stored.path.unlink(missing_ok=True)
            except OSError as exc:  # the next start's reconciliation moves it to the quarantine
                logger.error("cannot remove %s from the spool: %s", stored.relative_path, exc.strerror)
        logger.warning("C-STORE of %s from %s refused (0x%04X): %s; quarantined as %s", conflict.sop_instance_uid,
                       calling, STATUS_SOP_INSTANCE_CONFLICT, conflict, path.name)
        return STATUS_SOP_INSTANCE_CONFLICT
