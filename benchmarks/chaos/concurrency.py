"""Simultaneous associations: as many senders as the node allows (``network.max_associations``, 20 by default)
start at once, each with a series; some send a series another one is sending at the same moment (the same SOP
Instance UIDs racing each other). A quarter of the senders are dcmtk ``storescu`` (when installed), the rest
pynetdicom.

Checked: every association is accepted and every instance acknowledged; every acknowledged instance is indexed
once with its file; each series holds exactly its instances; the node decides every series, stays up and logs
no patient value.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ct_series_factory import CTSeries, write_ct_series
from node_support import NodeConfig
from sqlalchemy import select
from sqlalchemy.orm import Session

from chaos.databases import Backend, fresh_database
from chaos.dicom_io import store
from chaos.kill_trials import node_sections
from chaos.node_control import NodeUnderTest
from chaos.phi import WELL_FORMED, stamp
from chaos.settle import NodeRunRecord, node_session, scan_everything, settled_database
from sarcoscreen.db.models import Series

__all__ = ["ConcurrencyResult", "run_concurrency"]

DCMTK_STORESCU = "/usr/bin/storescu"  # inside the virtual environment `storescu` is pynetdicom's


@dataclass
class ConcurrencyResult(NodeRunRecord):
    backend: str
    associations: int
    racing: int
    sent: int = 0
    most_at_once: int = 0
    """The most associations that were open at the same moment (from the senders' clocks)."""
    acknowledged_instances: int = 0
    not_acknowledged: list[str] = field(default_factory=list)
    wrong_counts: list[str] = field(default_factory=list)


def _dcmtk_store(port: int, series: CTSeries) -> tuple[bool, str]:
    done = subprocess.run([DCMTK_STORESCU, "-aet", "DCMTK", "-aec", "SARCO", "127.0.0.1", str(port),
                           *map(str, series.files)], capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "TCP_NODELAY": "1"})
    ok = done.returncode == 0 and "Failed" not in done.stderr + done.stdout
    return ok, (done.stdout + done.stderr)[-300:]


def run_concurrency(backend: Backend, work: Path, *, associations: int = 20, racing: int = 4, slices: int = 10,
                    settle_s: float = 120.0) -> ConcurrencyResult:
    """`associations` senders at once, `racing` of them sending another sender's series (see the module)."""
    started = time.monotonic()
    result = ConcurrencyResult(backend.label, associations, racing)
    distinct = associations - racing
    series = [write_ct_series(work / "series" / f"{n:02d}", slices, 64, 64, shuffle=False, seed=n,
                              transform=lambda ds, _n, k=n: stamp(ds, WELL_FORMED[k % len(WELL_FORMED)]))
              for n in range(distinct)]
    plan = [*series, *series[:racing]]
    dcmtk = shutil.which(DCMTK_STORESCU) is not None
    with fresh_database(backend, work) as url:
        config = NodeConfig(work / "node", url, sections={**node_sections(stable_age_s=2.0),
                                                          "network": {"stable_age_s": 2.0,
                                                                      "max_associations": associations}})
        node = NodeUnderTest(config, command="serve", arguments=())  # ingest only: series of few slices are skipped
        acknowledged: set[str] = set()
        lock = threading.Lock()
        barrier = threading.Barrier(len(plan))
        spans: list[tuple[float, float]] = []

        def send(index: int, one: CTSeries) -> None:
            barrier.wait(timeout=60)
            begun = time.monotonic()
            if dcmtk and index % 4 == 3:
                ok, text = _dcmtk_store(config.port, one)
                with lock:
                    spans.append((begun, time.monotonic()))
                    if ok:
                        acknowledged.update(one.sop_instance_uids)
                    else:
                        result.not_acknowledged.append(f"storescu {index}: {text}")
                return
            outcome = store(config.port, one.files, calling=f"SENDER{index}", timeout=60.0)
            with lock:
                spans.append((begun, time.monotonic()))
                acknowledged.update(outcome.acknowledged)
                missing = len(one.files) - len(outcome.acknowledged)
                if missing or not outcome.connected:
                    result.not_acknowledged.append(f"association {index}: {missing} of {len(one.files)} not "
                                                   f"acknowledged ({'connected' if outcome.connected else 'refused'})")

        with node_session(node, result):
            node.start()
            threads = [threading.Thread(target=send, args=(i, s), daemon=True) for i, s in enumerate(plan)]
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 300.0
            for thread in threads:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
            if any(thread.is_alive() for thread in threads):
                result.unfinished.append("senders still running 300 s after the start")
            result.sent = sum(len(s.files) for s in plan)
            result.most_at_once = max((sum(1 for b, e in spans if b <= t < e) for t, _ in spans), default=0)
            result.acknowledged_instances = len(acknowledged)
            with settled_database(node, config, result, settle_s=settle_s, after="the concurrent associations",
                                  acknowledged=acknowledged) as engine, Session(engine) as session:
                counts = dict(session.execute(select(Series.series_instance_uid, Series.instance_count)).all())
            for one in series:
                if counts.get(one.series_instance_uid) != len(one.files):
                    result.wrong_counts.append(f"series {one.series_instance_uid}: "
                                               f"{counts.get(one.series_instance_uid)} of {len(one.files)}")
            result.phi = scan_everything(node, config, url, quarantine=False)
    result.seconds = time.monotonic() - started
    return result
