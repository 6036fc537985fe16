"""Real DICOM peers for tests: dcmtk's storescp (tests/dcmtk.py finds it), started on a free loopback port."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dcmtk import dcmtk_tool

from sarcoscreen.node.loopback import free_port, wait_for_port


@dataclass
class StoreSCP:
    ae_title: str
    port: int
    folder: Path

    def received(self) -> list[Path]:
        return sorted(p for p in self.folder.rglob("*") if p.is_file())


@contextmanager
def dcmtk_storescp(folder: Path, ae_title: str = "STORESCP", accept_all: bool = True) -> Iterator[StoreSCP]:
    """dcmtk storescp writing what it receives into `folder`; skips the test when dcmtk is not installed."""
    tool = dcmtk_tool("storescp")
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    args = [tool, "--aetitle", ae_title, "--output-directory", str(folder)]
    if accept_all:
        args.append("+xa")  # accept all supported transfer syntaxes, compressed ones too
    process = subprocess.Popen([*args, str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port)
        yield StoreSCP(ae_title, port, folder)
    finally:
        process.terminate()
        process.wait(timeout=10)
