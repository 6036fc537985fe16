"""A real PACS for tests: Orthanc started on free loopback ports with a temporary configuration, stopped after.

The test is skipped when the ``Orthanc`` executable is missing (scripts/install-system-deps.sh installs it).
What Orthanc stored is read back through its REST API (``/instances``) with urllib.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from dicom_peers import free_port, wait_for_port


@dataclass
class OrthancServer:
    ae_title: str
    dicom_port: int
    http_port: int

    def get(self, path: str) -> object:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=10) as response:
            return json.loads(response.read())

    def instance_uids(self) -> set[str]:
        """SOP Instance UIDs of everything stored."""
        uids = set()
        for orthanc_id in self.get("/instances"):  # type: ignore[union-attr]
            tags = self.get(f"/instances/{orthanc_id}/simplified-tags")
            uids.add(tags["SOPInstanceUID"])  # type: ignore[index]
        return uids


@contextmanager
def orthanc(folder: Path, ae_title: str = "ORTHANC", unknown_sop_class_accepted: bool = False
            ) -> Iterator[OrthancServer]:
    """Orthanc with storage in `folder`, checking the called AE title, on loopback only."""
    executable = shutil.which("Orthanc")
    if executable is None:
        pytest.skip("Orthanc is not installed (scripts/install-system-deps.sh installs it)")
    folder.mkdir(parents=True, exist_ok=True)
    dicom_port, http_port = free_port(), free_port()
    config = {
        "Name": "sarcoscreen-test",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"),
        "DicomAet": ae_title,
        "DicomPort": dicom_port,
        "DicomServerEnabled": True,
        "DicomCheckCalledAet": True,
        "DicomAlwaysAllowStore": True,
        "UnknownSopClassAccepted": unknown_sop_class_accepted,
        "HttpPort": http_port,
        "HttpServerEnabled": True,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [],
        "StorageCompression": False,
        "OverwriteInstances": True,
    }
    config_path = folder / "orthanc.json"
    config_path.write_text(json.dumps(config), encoding="utf-8")
    log = (folder / "orthanc.log").open("wb")
    process = subprocess.Popen([executable, str(config_path)], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(http_port, timeout=30)
        wait_for_port(dicom_port, timeout=30)
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
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log.close()
