"""The frame every part shares around its own work: the node run closed and its crashes noted, then the node let
finish its work, checked that it still answers, stopped cleanly, its instances counted, and what it wrote scanned
for the fake patient values.

A part's run reads::

    result = SomeResult(...)                      # a `NodeRunRecord`
    with node_session(node, result):
        node.start()
        ...                                       # the part's own attack
        with settled_database(node, config, result, settle_s=..., after="...", acknowledged=...) as engine:
            ...                                   # the part's own counts
        result.phi = scan_everything(node, config, url, quarantine=...)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from node_support import NodeConfig
from sqlalchemy import Engine

from chaos.dicom_io import echo
from chaos.ledger import IdleState, InstanceLedger, instance_ledger, wait_idle
from chaos.node_control import NodeStartError, NodeUnderTest
from chaos.phi import PhiHit, scan_cli, scan_database, scan_files, scan_text

__all__ = ["NodeRunRecord", "node_session", "quarantine_folder", "scan_everything", "settled_database",
           "spool_folder"]


@dataclass(kw_only=True)
class NodeRunRecord:
    """What every part notes about its node (filled in by `node_session`, `settled_database` and
    `scan_everything`); a part's result adds its own fields."""

    instances: InstanceLedger | None = None
    idle: IdleState | None = None
    crashes: list[str] = field(default_factory=list)
    phi: list[PhiHit] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)
    """Anything the run could not finish (the node not started or not idle in time, a sender that could not
    finish)."""
    seconds: float = 0.0


def spool_folder(config: NodeConfig) -> Path:
    return Path(config.folder) / "data" / "spool"


def quarantine_folder(config: NodeConfig) -> Path:
    return Path(config.folder) / "data" / "quarantine"


@contextmanager
def node_session(node: NodeUnderTest, record: NodeRunRecord) -> Iterator[None]:
    """The block runs the node (it starts it); afterwards the node is closed and every crash it noted is added to
    `record`. A start that fails in the block (`NodeStartError`, the first one or a restart) ends the block and is
    noted as unfinished."""
    try:
        yield
    except NodeStartError as exc:
        record.unfinished.append(str(exc).splitlines()[0])
    finally:
        node.close()
        record.crashes += node.all_crashes()


@contextmanager
def settled_database(node: NodeUnderTest, config: NodeConfig, record: NodeRunRecord, *, settle_s: float, after: str,
                     acknowledged: set[str]) -> Iterator[Engine]:
    """The node's database once the node is idle (at most `settle_s`), has been C-ECHOed and stopped with SIGTERM;
    `record` gets the idle state, a node not idle in time (unfinished), one that did not answer (a crash; a clean
    stop that fails is noted by `NodeUnderTest`) and the ledger of the `acknowledged` instances. `after` names what
    came before, for the notes ("the trials"). The engine is disposed after the block."""
    engine = config.engine()
    try:
        record.idle = wait_idle(engine, settle_s)
        if not record.idle.idle:
            record.unfinished.append(f"not idle after {settle_s:g} s: {record.idle}")
        if not echo(node.port):
            record.crashes.append(f"the node did not answer C-ECHO after {after}")
        node.stop()
        record.instances = instance_ledger(engine, spool_folder(config), acknowledged)
        yield engine
    finally:
        engine.dispose()


def scan_everything(node: NodeUnderTest, config: NodeConfig, url: str, *, quarantine: bool) -> list[PhiHit]:
    """Fake patient values in the node's log, the database's text, the CLI's output (and the quarantine's
    notes)."""
    hits = [*scan_text("node log", node.log_text()), *scan_database(url), *scan_cli(config.path, url)]
    if quarantine:
        hits += scan_files(quarantine_folder(config).rglob("*.json"))
    return hits
