"""The destinations of ``sarcoscreen demo``: where the demo's node delivers its SEG, SR and key image.

Orthanc when it is installed (a real PACS, started on loopback ports with its storage in the demo's folder), or a
small built-in storage SCP that writes what it receives into a folder. Each is a context manager that yields a
running `DemoDestination` and stops it afterwards.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pynetdicom import AE, evt
from pynetdicom.sop_class import (
    ComprehensiveSRStorage,
    EncapsulatedPDFStorage,
    SecondaryCaptureImageStorage,
    SegmentationStorage,
    Verification,
)

from sarcoscreen.node.loopback import free_port
from sarcoscreen.node.orthanc import run_orthanc

__all__ = ["DemoDestination", "builtin_destination", "orthanc_destination"]

_LABEL_MAP_SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.7"
_KINDS = {"1.2.840.10008.5.1.4.1.1.66.4": "SEG", _LABEL_MAP_SEGMENTATION: "SEG (label map)",
          "1.2.840.10008.5.1.4.1.1.88.33": "SR", "1.2.840.10008.5.1.4.1.1.7": "key image (SC)",
          "1.2.840.10008.5.1.4.1.1.104.1": "key image (PDF)"}
"""What each SOP class the node delivers is called in the demo's listing."""


@dataclass(frozen=True)
class DemoDestination:
    """A running destination of the demo's node: where it listens and what it has received."""

    name: str
    ae_title: str
    port: int
    received: Callable[[], list[tuple[str, str]]]
    """(kind, SOP Instance UID) of every object it holds."""
    where: str
    """What it is, in the demo's words (with its folder or web address)."""


@contextmanager
def builtin_destination(folder: Path) -> Iterator[DemoDestination]:
    """A storage SCP that accepts SEG, SR and key images and writes them into `folder` (a stand-in PACS)."""
    folder.mkdir(parents=True, exist_ok=True)
    lock = threading.Lock()

    def on_store(event: evt.Event) -> int:
        data = event.encoded_dataset(include_meta=True)
        with lock:
            (folder / f"{event.request.AffectedSOPInstanceUID}.dcm").write_bytes(data)
        return 0x0000

    ae = AE(ae_title="DEMOPACS")
    for sop_class in (SegmentationStorage, _LABEL_MAP_SEGMENTATION, ComprehensiveSRStorage,
                      SecondaryCaptureImageStorage, EncapsulatedPDFStorage, Verification):
        ae.add_supported_context(sop_class)
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])

    def received() -> list[tuple[str, str]]:
        out = []
        for path in sorted(folder.glob("*.dcm")):
            ds = dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID", "SOPInstanceUID"])
            out.append((_KINDS.get(str(ds.SOPClassUID), str(ds.SOPClassUID)), str(ds.SOPInstanceUID)))
        return out

    try:
        yield DemoDestination("demo-pacs", "DEMOPACS", port, received, f"the built-in storage SCP, files in {folder}")
    finally:
        server.shutdown()


@contextmanager
def orthanc_destination(folder: Path, executable: str) -> Iterator[DemoDestination]:
    """Orthanc on loopback ports with its storage in `folder` (`sarcoscreen.node.orthanc`), stopped afterwards."""
    with run_orthanc(folder, executable, name="sarcoscreen-demo") as orthanc:

        def received() -> list[tuple[str, str]]:
            return sorted((_KINDS.get(tags.get("SOPClassUID", ""), tags.get("Modality", "?")), tags["SOPInstanceUID"])
                          for tags in orthanc.instance_tags())

        yield DemoDestination("orthanc", orthanc.ae_title, orthanc.dicom_port, received,
                              f"Orthanc (web interface {orthanc.web_address} while the demo runs)")
