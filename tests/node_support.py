"""Helpers for the node tests: a migrated database, index rows for a series, node configurations, waiting.

Nothing here mocks the node: the helpers write real rows through the node's own index function, write real
configuration files and start real processes (``sarcoscreen run|serve|worker --config``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import pydicom
from dicom_peers import free_port, wait_for_port
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from sarcoscreen.db.models import Delivery, Job, Output, OutputKind, Series
from sarcoscreen.db.outbox import add_deliveries
from sarcoscreen.db.queue import claim, complete, enqueue
from sarcoscreen.db.session import create_engine_from_url, session_scope, write_session
from sarcoscreen.node.instance_index import index_instance
from sarcoscreen.node.scp import ReceivedInstance
from sarcoscreen.node.spool import Spool

T = TypeVar("T")

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
PROJECT = Path(__file__).resolve().parent.parent
SARCOSCREEN = [sys.executable, "-m", "sarcoscreen.node.cli"]


def received(series_uid: str, number: int, *, study_uid: str = "1.2.826.0.1.1", modality: str = "CT",
             patient_id: str = "P-1", **changes: Any) -> ReceivedInstance:
    """A `ReceivedInstance` as the SCP would record it (no file behind it)."""
    values: dict[str, Any] = {
        "study_instance_uid": study_uid, "series_instance_uid": series_uid,
        "sop_instance_uid": f"{series_uid}.{number}", "sop_class_uid": CT_IMAGE,
        "transfer_syntax_uid": "1.2.840.10008.1.2.1", "relative_path": f"{series_uid}/{series_uid}.{number}.dcm",
        "size": 1000, "sha256": "0" * 64, "calling_ae_title": "SCANNER", "duplicate": False, "modality": modality,
        "patient_id": patient_id, "patient_sex": "F", "study_date": "20260102", "body_part": "HIP",
        "series_description": "Hip 1.0", "study_description": "CT HIP", "image_type": ("ORIGINAL", "PRIMARY", "AXIAL"),
        "slice_thickness_mm": 1.0,
    }
    values.update(changes)
    return ReceivedInstance(**values)


def add_series(engine: Engine, series_uid: str, count: int, start: int = 1, **changes: Any) -> int:
    """Index `count` instances of a series; returns the series id."""
    with session_scope(engine) as session:
        for number in range(start, start + count):
            index_instance(session, received(series_uid, number, **changes))
        return session.execute(select(Series.id).where(Series.series_instance_uid == series_uid)).scalar_one()


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 60.0, interval: float = 0.2) -> T:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})")


def decide_series(engine: Engine, settings: Any) -> list[Any]:
    """One decision round of a just-created series watcher (`SeriesWatcher.run_once`), as a node that has listened
    for ``network.stable_age_s``: the watcher decides nothing before it has listened that long, so with the tests'
    tiny stable age a first round right after it starts may find nothing (a race); then a second round decides."""
    from sarcoscreen.node.series_watcher import SeriesWatcher

    watcher = SeriesWatcher(engine, settings)
    outcomes = watcher.run_once()
    if not outcomes:
        time.sleep(max(0.01, 2 * settings.network.stable_age_s))
        outcomes = watcher.run_once()
    return outcomes


def rows(engine: Engine, query: Any) -> list[Any]:
    with Session(engine) as session:
        return list(session.execute(query).scalars())


def jobs_of(engine: Engine) -> list[Job]:
    return rows(engine, select(Job).order_by(Job.id))


def deliveries_of(engine: Engine) -> list[tuple[Delivery, Output]]:
    with Session(engine) as session:
        return [(d, o) for d, o in session.execute(
            select(Delivery, Output).join(Output, Output.id == Delivery.output_id).order_by(Delivery.id))]


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class NodeConfig:
    """A node configuration file for tests: fast stability, short leases, loopback only."""

    folder: Path
    database_url: str
    port: int = field(default_factory=free_port)
    ae_title: str = "SARCO"
    destinations: list[dict[str, Any]] = field(default_factory=list)
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.folder / "node.toml"

    def write(self) -> Path:
        sections: dict[str, dict[str, Any]] = {
            "network": {"ae_title": self.ae_title, "host": "127.0.0.1", "port": self.port, "stable_age_s": 1.0},
            "database": {"url": self.database_url},
            "storage": {"data_dir": str(self.folder / "data"), "min_free_mb": 0},
            "queue": {"poll_s": 0.3, "lease_s": 6.0, "heartbeat_s": 1.0, "backoff_s": 0.5, "backoff_max_s": 2.0},
            "delivery": {"retry_s": 0.5, "retry_max_s": 1.0, "timeout_s": 10.0},
            "logging": {"level": "INFO"},
        }
        for name, values in self.sections.items():
            sections.setdefault(name, {}).update(values)
        lines = []
        for name, values in sections.items():
            lines.append(f"[{name}]")
            lines += [f"{key} = {toml_value(value)}" for key, value in values.items()]
            lines.append("")
        for destination in self.destinations:
            lines.append("[[destinations]]")
            lines += [f"{key} = {toml_value(value)}" for key, value in destination.items()]
            lines.append("")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path.write_text("\n".join(lines), encoding="utf-8")
        return self.path

    def engine(self) -> Engine:
        return create_engine_from_url(self.database_url)


@dataclass
class NodeProcess:
    process: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@contextmanager
def node_process(config: NodeConfig, command: str = "run", *extra: str, wait_port: bool = True,
                 name: str | None = None) -> Iterator[NodeProcess]:
    """``sarcoscreen --config FILE <command>`` as a subprocess; SIGTERM (then SIGKILL) at the end."""
    config.write()
    log = config.folder / f"{name or command}.log"
    handle = log.open("wb")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([*SARCOSCREEN, "--config", str(config.path), command, *extra], stdout=handle,
                               stderr=subprocess.STDOUT, env=env, cwd=config.folder)
    node = NodeProcess(process, log)
    try:
        if wait_port:
            try:
                wait_for_port(config.port, timeout=60)
            except TimeoutError:
                raise AssertionError(f"the node did not start:\n{node.text()}") from None
        yield node
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        handle.close()


def queued_job(engine: Engine, series_uid: str = "1.2.3.1", max_attempts: int = 3) -> int:
    """A series of 3 indexed instances with a queued job; returns the job id."""
    series_id = add_series(engine, series_uid, 3)
    with session_scope(engine) as session:
        return enqueue(session, series_id, reason="test", max_attempts=max_attempts).id


def done_job_with_outputs(engine: Engine, series_uid: str = "1.2.5.1") -> tuple[int, list[int]]:
    """A done job with a SEG and an SR output, each with a pending delivery to two destinations; returns the job id
    and the delivery ids."""
    job_id = queued_job(engine, series_uid)
    claimed = claim(engine, lease_s=60)
    assert claimed is not None
    destinations = [SimpleNamespace(name="pacs", ae_title="PACS", host="127.0.0.1", port=104),
                    SimpleNamespace(name="archive", ae_title="ARCH", host="127.0.0.1", port=105)]
    with write_session(engine) as session:
        outputs = [Output(job_id=job_id, kind=kind, sop_class_uid="1.2", sop_instance_uid=f"{series_uid}.9.{n}",
                          series_instance_uid=f"{series_uid}.9", path=f"{series_uid}/job/{kind.value}.dcm")
                   for n, kind in enumerate((OutputKind.SEG, OutputKind.SR))]
        session.add_all(outputs)
        session.flush()
        assert add_deliveries(session, outputs, destinations) == 4
        complete(session, job_id, claimed.lease_token)
    with Session(engine) as session:
        ids = list(session.execute(select(Delivery.id).order_by(Delivery.id)).scalars())
    return job_id, ids


def spool_series(settings: Any, folder: Path) -> Spool:
    """Every ``*.dcm`` of `folder` into the node's spool as the SCP would store it (by series and instance UID);
    returns the spool (index it with `sarcoscreen.node.reconcile.reconcile`)."""
    spool = Spool(settings.storage.spool, settings.storage.quarantine)
    for path in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        spool.store(path.read_bytes(), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID))
    return spool
