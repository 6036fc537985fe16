"""Benchmark: ingest throughput of the node against a bare pynetdicom SCP, same client (dcmtk storescu), same run.

    .venv/bin/python benchmarks/node_ingest.py [--work /tmp] [--rounds 3] [--parallel 1 4]
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test]

* **bare**: a pynetdicom Storage SCP (same AE settings as the node: every transfer syntax, unlimited PDU) whose
  C-STORE handler writes the received bytes to a file - no fsync, no header parsing, no database - and answers
  Success. The floor of what any pynetdicom SCP can do.
* **node**: ``sarcoscreen serve`` - the node's Storage SCP with write-before-acknowledge: header parse and
  checks, temporary file + fsync + atomic rename + folder fsync, SHA-256, one SQL transaction per instance
  (SQLite in WAL mode; PostgreSQL with ``--postgres``), then Success. The series watcher and the sender run but
  have nothing to do (``stable_age_s`` is longer than the run).

The series is the 600-slice, 512 x 512 phantom hip CT (``sarcoscreen phantom --slice-mm 1.5 --matrix 512``,
uncompressed, ~513 KiB per instance; cached under ``--work``). Each SCP runs in its own process on a free
loopback port with an empty folder; the client is dcmtk ``storescu`` with ``TCP_NODELAY=1`` (without it dcmtk's
Nagle algorithm waits for the SCP's delayed ACK, ~40 ms per instance, for either SCP). ``--parallel N`` splits
the files over N storescu processes sending at once (N associations). Rounds alternate bare and node so that
load from other work on the machine affects both alike; the table gives the median and the range of instances
per second, and the median (range) of each round's ratio node / bare. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from node_bench_support import bench_database, hip_ct_files, sarcoscreen_command, storescu_send, write_node_config

from sarcoscreen.node.loopback import free_port, wait_for_port

BARE_SCP = r"""
import sys
from pathlib import Path
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.sop_class import (CTImageStorage, EnhancedCTImageStorage, LegacyConvertedEnhancedCTImageStorage,
                                  Verification)

folder, port = Path(sys.argv[1]), int(sys.argv[2])

def on_store(event):
    (folder / f"{event.request.AffectedSOPInstanceUID}.dcm").write_bytes(event.encoded_dataset(include_meta=True))
    return 0x0000

ae = AE(ae_title="SARCO")
ae.maximum_associations = 20
ae.maximum_pdu_size = 0
for sop_class in (CTImageStorage, EnhancedCTImageStorage, LegacyConvertedEnhancedCTImageStorage):
    ae.add_supported_context(sop_class, ALL_TRANSFER_SYNTAXES)
ae.add_supported_context(Verification)
ae.start_server(("127.0.0.1", port), block=True, evt_handlers=[(evt.EVT_C_STORE, on_store)])
"""


def _timed_ingest(server: list[str], port: int, files: list[Path], parallel: int, stored: Callable[[], int],
                  name: str, stop_timeout: float) -> float:
    """Start the SCP `server` (listening on `port`), send `files` and check that it `stored` them all; the
    seconds of the sending. The SCP is stopped afterwards."""
    process = subprocess.Popen(server)
    try:
        wait_for_port(port, timeout=60)
        seconds = storescu_send(port, files, parallel)
        count = stored()
        if count != len(files):
            raise RuntimeError(f"{name} stored {count} of {len(files)}")
        return seconds
    finally:
        process.terminate()
        process.wait(timeout=stop_timeout)


def run_bare(files: list[Path], parallel: int, where: Path | None) -> float:
    folder = Path(tempfile.mkdtemp(prefix="bare-", dir=where))
    port = free_port()
    try:
        return _timed_ingest([sys.executable, "-c", BARE_SCP, str(folder), str(port)], port, files, parallel,
                             lambda: len(list(folder.iterdir())), "bare SCP", stop_timeout=30)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_node(files: list[Path], parallel: int, database_url: str | None, where: Path | None) -> float:
    folder = Path(tempfile.mkdtemp(prefix="node-", dir=where))
    port = free_port()
    try:
        with bench_database(database_url, folder / "sarcoscreen.db") as url:  # a fresh schema for each round
            config = write_node_config(folder, port=port, database_url=url, stable_age_s=3600, log_level="WARNING")
            return _timed_ingest(sarcoscreen_command(config, "serve"), port, files, parallel,
                                 lambda: len(list((folder / "data" / "spool").rglob("*.dcm"))), "node",
                                 stop_timeout=60)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--parallel", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--postgres", help="Also measure the node on this PostgreSQL server (a schema per round).")
    parser.add_argument("--where", type=Path, help="Folder for the SCPs' files (default: the system's temporary "
                        "folder). On tmpfs (/dev/shm) fsync costs nothing: that isolates the software's overhead "
                        "from the disk's flush latency.")
    args = parser.parse_args()
    if shutil.which("storescu") is None:
        sys.exit("dcmtk storescu is needed")
    files = hip_ct_files(args.work)
    size = sum(f.stat().st_size for f in files) / len(files) / 1024
    print(f"{len(files)} instances, {size:.0f} KiB each; {args.rounds} rounds, bare and node alternating; files in "
          f"{args.where or tempfile.gettempdir()}\n")
    print("| associations | SCP | database | instances/s, median (range) | node / bare |")
    print("| --- | --- | --- | --- | --- |")
    databases = [("SQLite", None)] + ([("PostgreSQL", args.postgres)] if args.postgres else [])
    for parallel in args.parallel:
        bare: list[float] = []
        node: dict[str, list[float]] = {name: [] for name, _ in databases}
        for _ in range(args.rounds):
            bare.append(len(files) / run_bare(files, parallel, args.where))
            for name, url in databases:
                node[name].append(len(files) / run_node(files, parallel, url, args.where))
        bare_median = statistics.median(bare)
        print(f"| {parallel} | bare pynetdicom | - | {bare_median:.0f} ({min(bare):.0f}-{max(bare):.0f}) | |")
        for name, rates in node.items():
            median = statistics.median(rates)
            # Each round's node run against the bare run just before it: load from other work cancels out.
            ratios = [n / b for n, b in zip(rates, bare, strict=True)]
            print(f"| {parallel} | node | {name} | {median:.0f} ({min(rates):.0f}-{max(rates):.0f}) | "
                  f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) |", flush=True)


if __name__ == "__main__":
    main()
