"""The end every part shares: let the node finish its work, check that it still answers, stop it cleanly, and scan
what it wrote for the fake patient values."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from node_support import NodeConfig
from sqlalchemy import Engine

from chaos.dicom_io import echo
from chaos.ledger import IdleState, wait_idle
from chaos.node_control import NodeUnderTest
from chaos.phi import PhiHit, scan_cli, scan_database, scan_files, scan_text

__all__ = ["Settled", "scan_everything", "settle_and_stop"]


@dataclass(frozen=True)
class Settled:
    idle: IdleState
    unfinished: list[str]
    """The node not idle within the deadline."""
    crashes: list[str]
    """The node not answering C-ECHO afterwards (a clean stop that fails is noted by `NodeUnderTest`)."""


def settle_and_stop(node: NodeUnderTest, engine: Engine, settle_s: float, after: str) -> Settled:
    """Wait until the node is idle (at most `settle_s`), C-ECHO it, then SIGTERM it; `after` names what came
    before, for the notes ("the trials")."""
    idle = wait_idle(engine, settle_s)
    unfinished = [] if idle.idle else [f"not idle after {settle_s:g} s: {idle}"]
    crashes = [] if echo(node.port) else [f"the node did not answer C-ECHO after {after}"]
    node.stop()
    return Settled(idle, unfinished, crashes)


def scan_everything(node: NodeUnderTest, config: NodeConfig, url: str, *, quarantine: bool) -> list[PhiHit]:
    """Fake patient values in the node's log, the database's text, the CLI's output (and the quarantine's
    notes)."""
    hits = [*scan_text("node log", node.log_text()), *scan_database(url), *scan_cli(config.path, url)]
    if quarantine:
        hits += scan_files((Path(config.folder) / "data" / "quarantine").rglob("*.json"))
    return hits
