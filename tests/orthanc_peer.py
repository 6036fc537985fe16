"""A real PACS for tests: Orthanc (`sarcoscreen.node.orthanc`) started on free loopback ports with a temporary
configuration, stopped after. The test is skipped when the ``Orthanc`` executable is missing
(scripts/install-system-deps.sh installs it). What Orthanc stored is read back through its REST API.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from sarcoscreen.node.orthanc import OrthancServer, run_orthanc

__all__ = ["OrthancServer", "orthanc"]


@contextmanager
def orthanc(folder: Path, ae_title: str = "ORTHANC", unknown_sop_class_accepted: bool = False
            ) -> Iterator[OrthancServer]:
    """Orthanc with storage in `folder`, checking the called AE title, on loopback only."""
    executable = shutil.which("Orthanc")
    if executable is None:
        pytest.skip("Orthanc is not installed (scripts/install-system-deps.sh installs it)")
    with run_orthanc(folder, executable, ae_title=ae_title, name="sarcoscreen-test",
                     unknown_sop_class_accepted=unknown_sop_class_accepted) as server:
        yield server
