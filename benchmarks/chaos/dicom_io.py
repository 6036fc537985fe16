"""DICOM on both sides of the node, over real associations on loopback.

* `store` is the site's modality or PACS: it sends data sets (encoded by pydicom) or files *as they are on
  disk* (pynetdicom's chunked mode sends the bytes after the File Meta Information unchanged, so a fuzzed file
  reaches the node exactly as mutated) and returns each C-STORE's status, or ``None`` when no response came.
* `RecordingDestination` is the site's PACS on the other side: a pynetdicom Storage SCP that accepts the node's
  SEG, SR and key images, notes every object it receives (a resend of the same SOP Instance UID counts twice) and
  can hold each response for a while, which widens the window in which a kill lands mid-delivery.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydicom import Dataset
from pydicom.filereader import read_file_meta_info
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, _config, build_context, evt
from pynetdicom.sop_class import (
    ComprehensiveSRStorage,
    EncapsulatedPDFStorage,
    SecondaryCaptureImageStorage,
    SegmentationStorage,
    Verification,
)

from sarcoscreen.node.loopback import free_port, wait_for_port

__all__ = ["RecordingDestination", "StoreResult", "echo", "store"]

LABEL_MAP_SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.7"


@dataclass(frozen=True)
class StoreResult:
    """What the SCU saw: whether an association was established and each C-STORE's status (``None``: none)."""

    connected: bool
    statuses: dict[str, int | None]
    """SOP Instance UID (the request's Affected SOP Instance UID) -> status."""

    @property
    def acknowledged(self) -> set[str]:
        return {uid for uid, status in self.statuses.items() if status == 0x0000}


def _identity(item: Dataset | Path) -> tuple[str, str, str]:
    """(SOP Class UID, SOP Instance UID, transfer syntax) the request will carry."""
    if isinstance(item, Path):
        meta = read_file_meta_info(item)
        return (str(meta.MediaStorageSOPClassUID), str(meta.MediaStorageSOPInstanceUID),
                str(meta.TransferSyntaxUID))
    return str(item.SOPClassUID), str(item.SOPInstanceUID), str(item.file_meta.TransferSyntaxUID)


class _ChunkedMode:
    """pynetdicom's chunked mode (file bytes sent as they are) while at least one association sends files; the
    setting is the library's, process-wide: counted, so that simultaneous associations share it and the previous
    value comes back after the last one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._before = False

    @contextmanager
    def on(self) -> Iterator[None]:
        with self._lock:
            if self._users == 0:
                self._before = _config.STORE_SEND_CHUNKED_DATASET
                _config.STORE_SEND_CHUNKED_DATASET = True
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    _config.STORE_SEND_CHUNKED_DATASET = self._before


_CHUNKED = _ChunkedMode()


def store(port: int, items: Sequence[Dataset | Path], *, called: str = "SARCO", calling: str = "CHAOS",
          timeout: float = 20.0, on_status: Callable[[str, int | None], None] | None = None) -> StoreResult:
    """C-STORE `items` to 127.0.0.1:`port` in one association; `on_status(uid, status)` after each response."""
    identities = [_identity(item) for item in items]
    contexts = sorted({(sop_class, syntax) for sop_class, _, syntax in identities})
    if len(contexts) > 127:
        raise ValueError(f"{len(contexts)} presentation contexts do not fit one association")
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.requested_contexts = [build_context(sop_class, syntax) for sop_class, syntax in contexts]
    statuses: dict[str, int | None] = {uid: None for _, uid, _ in identities}
    files = any(isinstance(item, Path) for item in items)
    with _CHUNKED.on() if files else _nothing():
        assoc = ae.associate("127.0.0.1", port, ae_title=called)
        if not assoc.is_established:
            return StoreResult(False, statuses)
        try:
            for item, (_, uid, _) in zip(items, identities, strict=True):
                if not assoc.is_established:
                    break
                try:
                    response = assoc.send_c_store(item)
                except (ValueError, AttributeError, OSError, RuntimeError):
                    # no accepted context, unreadable file, or the association ended under us: no response
                    response = Dataset()
                status = int(response.Status) if "Status" in response else None
                statuses[uid] = status
                if on_status is not None:
                    on_status(uid, status)
        finally:
            if assoc.is_established:
                assoc.release()
    return StoreResult(True, statuses)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def echo(port: int, *, called: str = "SARCO", timeout: float = 10.0) -> bool:
    """C-ECHO: does the node answer on `port`?"""
    ae = AE(ae_title="CHAOS")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    if not assoc.is_established:
        return False
    try:
        status = assoc.send_c_echo()
        return "Status" in status and int(status.Status) == 0
    finally:
        if assoc.is_established:
            assoc.release()


@dataclass(frozen=True)
class Received:
    """One C-STORE the destination answered."""

    sop_instance_uid: str
    sop_class_uid: str
    readable: bool
    """The data set decoded (pydicom) with the SOP Instance UID of the request."""


class RecordingDestination:
    """A Storage SCP for the node's outputs that records what it receives; ``delay_s`` holds each response for a
    seeded random time in that range (after `store_started` is set)."""

    def __init__(self, ae_title: str = "CHAOSDEST", delay_s: tuple[float, float] = (0.0, 0.0), seed: int = 0
                 ) -> None:
        self.ae_title = ae_title
        self.delay_s = delay_s
        self.port = free_port()
        self.store_started = threading.Event()
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._open = 0
        self._server = None

    def start(self) -> RecordingDestination:
        ae = AE(ae_title=self.ae_title)
        ae.maximum_associations = 10
        for sop_class in (SegmentationStorage, LABEL_MAP_SEGMENTATION, ComprehensiveSRStorage,
                          SecondaryCaptureImageStorage, EncapsulatedPDFStorage):
            ae.add_supported_context(sop_class, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        self._server = ae.start_server(("127.0.0.1", self.port), block=False,
                                       evt_handlers=[(evt.EVT_C_STORE, self._on_store),
                                                     (evt.EVT_CONN_OPEN, self._on_open),
                                                     (evt.EVT_CONN_CLOSE, self._on_close)])
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def _on_open(self, _event: evt.Event) -> None:
        with self._lock:
            self._open += 1

    def _on_close(self, _event: evt.Event) -> None:
        with self._lock:
            self._open -= 1

    @property
    def open_connections(self) -> int:
        """Connections from the node open right now (a delivery in progress)."""
        with self._lock:
            return self._open

    def _on_store(self, event: evt.Event) -> int:
        self.store_started.set()
        uid = str(event.request.AffectedSOPInstanceUID)
        try:
            readable = str(event.dataset.SOPInstanceUID) == uid
        except Exception:  # whatever the node sent: note it as unreadable
            readable = False
        with self._lock:  # stored before the response, as an archive does
            self._received.append(Received(uid, str(event.request.AffectedSOPClassUID), readable))
            delay = self._random.uniform(*self.delay_s)
        if delay > 0:
            time.sleep(delay)
        return 0x0000

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def counts(self) -> Counter[str]:
        """Times each SOP Instance UID was received."""
        return Counter(r.sop_instance_uid for r in self.received)

    def __enter__(self) -> RecordingDestination:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
