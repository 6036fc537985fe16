"""Orthanc as a local PACS: started on free loopback ports with a generated configuration, stopped afterwards.

The demo's destination (`sarcoscreen.node.demo_destinations`) and the tests' PACS peer are this one launcher. The
configuration keeps Orthanc on loopback (no remote access, no authentication needed there, no plugins), checks
the called AE title, accepts every store, keeps a resent instance once (``OverwriteInstances``) and stores in
the given folder; what it stored is read back through its REST API (``/instances``).
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sarcoscreen.node.loopback import free_port, wait_for_port

__all__ = ["OrthancServer", "run_orthanc"]

_START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class OrthancServer:
    """A running Orthanc: its DICOM AE and ports, and its REST API."""

    ae_title: str
    dicom_port: int
    http_port: int

    @property
    def web_address(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/"

    def get(self, path: str) -> Any:
        """The JSON answer of the REST API at `path` (e.g. ``/instances``)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=10) as response:
            return json.loads(response.read())

    def instance_tags(self) -> list[dict[str, str]]:
        """The simplified tags of every stored instance."""
        return [self.get(f"/instances/{orthanc_id}/simplified-tags") for orthanc_id in self.get("/instances")]

    def instance_uids(self) -> set[str]:
        """SOP Instance UIDs of everything stored."""
        return {tags["SOPInstanceUID"] for tags in self.instance_tags()}


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


@contextmanager
def run_orthanc(folder: Path, executable: str, *, ae_title: str = "ORTHANC", name: str = "sarcoscreen",
                unknown_sop_class_accepted: bool = False) -> Iterator[OrthancServer]:
    """Orthanc (`executable`) with its storage, index, configuration and log in `folder`, until the block ends.

    Yields once the REST API answers (the database is open), so stores and queries work at once.
    """
    folder.mkdir(parents=True, exist_ok=True)
    dicom_port, http_port = free_port(), free_port()
    config = {
        "Name": name, "StorageDirectory": str(folder / "storage"), "IndexDirectory": str(folder / "index"),
        "DicomAet": ae_title, "DicomPort": dicom_port, "DicomServerEnabled": True, "DicomCheckCalledAet": True,
        "DicomAlwaysAllowStore": True, "UnknownSopClassAccepted": unknown_sop_class_accepted,
        "HttpPort": http_port, "HttpServerEnabled": True, "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False, "Plugins": [], "StorageCompression": False, "OverwriteInstances": True,
    }
    config_path = folder / "orthanc.json"
    config_path.write_text(json.dumps(config), encoding="utf-8")
    with (folder / "orthanc.log").open("wb") as log:
        process = subprocess.Popen([executable, str(config_path)], stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_port(http_port, _START_TIMEOUT_S)
            wait_for_port(dicom_port, _START_TIMEOUT_S)
            server = OrthancServer(ae_title, dicom_port, http_port)
            deadline = time.monotonic() + 15
            while True:  # the REST API answers once the database is open
                try:
                    server.get("/system")
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            yield server
        finally:
            _stop(process)
