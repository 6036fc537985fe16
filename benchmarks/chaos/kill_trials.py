"""kill -9 of the node at random points while series arrive, are analysed and delivered; then count.

One node (``sarcoscreen run``, one worker process) on a fresh database receives phantom series from a sender
thread that behaves like a PACS: it resends every instance not acknowledged, after each failed association.
Each trial releases one more series and kills the node at a moment drawn in turn (seeded) from:

* ``ingest`` - after a random number of instances of an association were acknowledged;
* ``job`` - at a random time into a running job;
* ``delivery`` - while the destination holds a response: it has the object, the node has no answer yet (the
  case where a resend is unavoidable);
* ``random`` - at a random time after the start.

The kill takes the main process alone or the whole process group (seeded coin). The node is restarted at once.
With ``sigterm`` (or a `plan` naming ``term``) a trial stops the node cleanly instead: SIGTERM must end it in time
with code 0, an association in progress cut (the sender resends what was not acknowledged).
What was in flight at each kill is observed, not assumed: an association of the sender open, a job running in the
database, a connection of the node open at the destination. After the last trial the sender finishes, the node
works until idle and is stopped cleanly; then `chaos.ledger` counts.

`first_start_trials` kill the node during its first start on an empty database (migration, reconciliation) and
check that the next start works.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from node_support import NodeConfig
from pydicom import Dataset
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from chaos.databases import Backend, fresh_database
from chaos.dicom_io import RecordingDestination, echo, store
from chaos.ledger import DeliveryLedger, delivery_ledger
from chaos.node_control import NodeStartError, NodeUnderTest
from chaos.phi import WELL_FORMED, PhiHit, scan_text
from chaos.settle import NodeRunRecord, node_session, scan_everything, settled_database
from chaos.sources import phantom_datasets, renamed_copy
from sarcoscreen.db.migrate import current, head
from sarcoscreen.db.models import Job, JobStatus
from sarcoscreen.db.session import create_engine_from_url

__all__ = ["KillTrialsResult", "node_sections", "run_first_start_trials", "run_kill_trials"]

MOMENTS = ("ingest", "job", "delivery", "random")


def node_sections(stable_age_s: float = 3.0, delivery_timeout_s: float = 2.0) -> dict[str, dict[str, object]]:
    """The campaign's node settings: short stability, leases, backoffs and delivery holds (a delivery claimed by a
    sender that died is due again after 5 x ``delivery.timeout_s``)."""
    return {
        "network": {"stable_age_s": stable_age_s},
        "queue": {"poll_s": 0.3, "lease_s": 6.0, "heartbeat_s": 1.0, "backoff_s": 0.5, "backoff_max_s": 2.0,
                  "max_attempts": 3},
        "delivery": {"retry_s": 0.5, "retry_max_s": 1.0, "timeout_s": delivery_timeout_s},
        "logging": {"level": "INFO"},
    }


class Traffic:
    """The sending PACS: one series per permit, each instance resent until acknowledged (bounded by a deadline)."""

    def __init__(self, port: int, series: Sequence[Sequence[Dataset]], deadline: float) -> None:
        self.port = port
        self.series = series
        self.deadline = deadline
        self.acknowledged: set[str] = set()
        self.in_association = threading.Event()
        self.associations = 0
        self._acks_now = 0
        self._lock = threading.Lock()
        self._permits = threading.Semaphore(0)
        self._thread = threading.Thread(target=self._run, name="chaos-traffic", daemon=True)

    def start(self) -> Traffic:
        self._thread.start()
        return self

    def release(self, count: int = 1) -> None:
        for _ in range(count):
            self._permits.release()

    def acks_in_association(self) -> int:
        with self._lock:
            return self._acks_now if self.in_association.is_set() else 0

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _note(self, uid: str, status: int | None) -> None:
        if status == 0x0000:
            with self._lock:
                self.acknowledged.add(uid)
                self._acks_now += 1

    def _run(self) -> None:
        for datasets in self.series:
            while not self._permits.acquire(timeout=0.5):
                if time.monotonic() > self.deadline:
                    return
            while time.monotonic() < self.deadline:
                with self._lock:
                    pending = [ds for ds in datasets if str(ds.SOPInstanceUID) not in self.acknowledged]
                    self._acks_now = 0
                if not pending:
                    break
                self.in_association.set()
                try:
                    # pynetdicom notices a closed association only when its DIMSE timeout ends: keep it short
                    store(self.port, pending, on_status=self._note, timeout=4.0)
                finally:
                    self.in_association.clear()
                    self.associations += 1
                time.sleep(0.3)


@dataclass
class KillTrialsResult(NodeRunRecord):
    backend: str
    trials: int
    stopped: int = 0
    """Trials that stopped the node with SIGTERM."""
    in_flight: Counter[str] = field(default_factory=Counter)
    """Kills that found an ingest association, a running job or a delivery in progress (or nothing: idle)."""
    moments_missed: int = 0
    """Trials whose drawn moment did not come within its wait (killed anyway)."""
    whole_group: int = 0
    deliveries: DeliveryLedger | None = None
    series_sent: int = 0


def _draw_plan(rng: random.Random, trials: int, how: str) -> list[tuple[str, str]]:
    """Each moment in turn, shuffled within each round of `MOMENTS`."""
    plan: list[tuple[str, str]] = []
    while len(plan) < trials:
        moments = list(MOMENTS)
        rng.shuffle(moments)
        plan += [(moment, how) for moment in moments]
    return plan[:trials]


def _running_jobs(config: NodeConfig) -> int:
    engine = create_engine_from_url(config.database_url)
    try:
        with Session(engine) as session:
            return int(session.scalar(select(func.count()).select_from(Job).where(
                Job.status == JobStatus.RUNNING)) or 0)
    finally:
        engine.dispose()


def _wait_for(check: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return False


def _reach(moment: str, rng: random.Random, traffic: Traffic, destination: RecordingDestination,
           config: NodeConfig, wait_s: float) -> bool:
    """Wait for the drawn moment (at most `wait_s`); ``False`` when it did not come."""
    if moment == "ingest":
        wanted = rng.randint(1, 40)
        return _wait_for(lambda: traffic.acks_in_association() >= wanted, wait_s)
    if moment == "job":
        if not _wait_for(lambda: _running_jobs(config) > 0, wait_s, interval=0.1):
            return False
        time.sleep(rng.uniform(0.0, 1.5))
        return True
    if moment == "delivery":
        destination.store_started.clear()
        if not destination.store_started.wait(wait_s):
            return False
        time.sleep(rng.uniform(0.0, destination.delay_s[0]))  # inside the held response
        return True
    time.sleep(rng.uniform(0.1, 3.0))
    return True


def run_kill_trials(backend: Backend, work: Path, *, trials: int, seed: int, phantom: Path, sigterm: bool = False,
                    plan: Sequence[tuple[str, str]] | None = None, delivery_timeout_s: float = 2.0,
                    wait_s: float = 30.0, settle_s: float = 240.0) -> KillTrialsResult:
    """`trials` kills of a node receiving, analysing and delivering `trials` + 1 phantom series (see the module);
    with `sigterm` each trial is a clean stop (SIGTERM, which must end the node in time with code 0) instead.
    `plan` gives each trial's (moment, ``kill`` | ``term``) instead of drawing them."""
    started = time.monotonic()
    rng = random.Random(seed)
    result = KillTrialsResult(backend.label, trials)
    if plan is None:
        plan = _draw_plan(rng, trials, "term" if sigterm else "kill")
    elif len(plan) != trials:
        raise ValueError(f"a plan of {len(plan)} trials for {trials} trials")
    source = phantom_datasets(phantom)
    # One series ahead of the kills, so that a job or a delivery is usually under way when one is wanted.
    series = [renamed_copy(source, WELL_FORMED[n % len(WELL_FORMED)]) for n in range(trials + 1)]
    result.series_sent = len(series)
    expected = {str(s[0].SeriesInstanceUID): len(s) for s in series}
    with fresh_database(backend, work) as url, RecordingDestination(delay_s=(0.05, 0.4), seed=seed) as destination:
        pacs = {"name": "pacs", "ae_title": destination.ae_title, "host": "127.0.0.1", "port": destination.port}
        config = NodeConfig(work / "node", url, sections=node_sections(delivery_timeout_s=delivery_timeout_s),
                            destinations=[pacs])
        node = NodeUnderTest(config)
        with node_session(node, result):
            node.start()
            traffic = Traffic(config.port, series, deadline=time.monotonic() + 60.0 * max(trials, 1) + 120.0)
            traffic.start()
            traffic.release()
            for moment, how in plan:
                traffic.release()
                if not _reach(moment, rng, traffic, destination, config, wait_s):
                    result.moments_missed += 1
                whole_group = rng.random() < 0.5
                flags = {"ingest": traffic.in_association.is_set(),
                         "delivery": destination.open_connections > 0}
                if how == "term":
                    flags["job"] = _running_jobs(config) > 0  # a clean stop lets the job finish first
                    node.stop(timeout=120.0)
                    result.stopped += 1
                else:
                    node.kill9(whole_group=whole_group)
                    flags["job"] = _running_jobs(config) > 0
                    result.whole_group += whole_group
                result.in_flight.update([name for name, hit in flags.items() if hit] or ["idle"])
                node.start()
            if not traffic.join(timeout=max(120.0, 15.0 * trials)):
                result.unfinished.append("the sender still had unacknowledged instances at its deadline")
            with settled_database(node, config, result, settle_s=settle_s, after="the trials",
                                  acknowledged=traffic.acknowledged) as engine:
                result.deliveries = delivery_ledger(
                    engine, destination.counts(), sum(not r.readable for r in destination.received), expected)
            result.phi = scan_everything(node, config, url, quarantine=False)
    result.seconds = time.monotonic() - started
    return result


@dataclass
class FirstStartResult:
    backend: str
    trials: int
    failures: list[str] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)
    phi: list[PhiHit] = field(default_factory=list)
    seconds: float = 0.0


def run_first_start_trials(backend: Backend, work: Path, *, trials: int, seed: int) -> FirstStartResult:
    """kill -9 at a random moment of the first start on an empty database; the next start must work."""
    started = time.monotonic()
    rng = random.Random(seed)
    result = FirstStartResult(backend.label, trials)
    for trial in range(trials):
        folder = work / f"first-start-{trial}"
        with fresh_database(backend, folder) as url:
            # serve: the start that migrates and reconciles; worker processes start only after both
            node = NodeUnderTest(NodeConfig(folder / "node", url, sections=node_sections()), command="serve",
                                 arguments=())
            try:
                node.start(wait=False)
                time.sleep(rng.uniform(0.1, 2.5))
                if node.alive():
                    node.kill9(whole_group=True)
                node.start()
                if not echo(node.port):
                    result.failures.append(f"trial {trial}: no C-ECHO after the restart")
                node.stop()
                revision = current(url)
                if revision != head():
                    result.failures.append(f"trial {trial}: database at {revision}, not {head()}")
            except NodeStartError as exc:
                result.failures.append(f"trial {trial}: {str(exc).splitlines()[0]}")
            finally:
                node.close()
                # The killed first start counts as a crash only if it ended on its own before the kill.
                result.crashes += [c for c in node.all_crashes() if "ended on its own" in c or "did not" in c
                                   or "worker process" in c or "Fatal" in c]
                result.phi += scan_text("node log", node.log_text())
    result.seconds = time.monotonic() - started
    return result
