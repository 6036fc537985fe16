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
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def make_series(work: Path) -> list[Path]:
    folder = work / "sarcoscreen-node-benchmark-600"
    marker = folder / "COMPLETE"
    if not marker.is_file():
        subprocess.run([sys.executable, "-m", "sarcoscreen.node.cli", "phantom", "--out", str(folder), "--fov", "hip",
                        "--slice-mm", "1.5", "--matrix", "512", "--seed", "3", "--no-progress"], check=True,
                       stdout=subprocess.DEVNULL)
        marker.write_text("ok")
    return sorted((folder / "dicom").glob("*.dcm"))


def send(port: int, files: list[Path], parallel: int) -> float:
    """Seconds for `parallel` storescu processes to send `files` (split evenly); checks every response."""
    groups = [files[i::parallel] for i in range(parallel)]
    env = {**os.environ, "TCP_NODELAY": "1"}
    start = time.perf_counter()
    processes = [subprocess.Popen(["storescu", "-aet", "SCANNER", "-aec", "SARCO", "127.0.0.1", str(port),
                                   *map(str, group)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                 for group in groups]
    outputs = [p.communicate()[0] for p in processes]
    seconds = time.perf_counter() - start
    for process, output in zip(processes, outputs, strict=True):
        if process.returncode != 0:
            raise RuntimeError(f"storescu failed: {output.decode(errors='replace')[-500:]}")
    return seconds


def run_bare(files: list[Path], parallel: int, where: Path | None) -> float:
    folder = Path(tempfile.mkdtemp(prefix="bare-", dir=where))
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", BARE_SCP, str(folder), str(port)])
    try:
        wait_for_port(port, timeout=60)
        seconds = send(port, files, parallel)
        stored = len(list(folder.iterdir()))
        if stored != len(files):
            raise RuntimeError(f"bare SCP stored {stored} of {len(files)}")
        return seconds
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


def run_node(files: list[Path], parallel: int, database_url: str | None, where: Path | None) -> float:
    folder = Path(tempfile.mkdtemp(prefix="node-", dir=where))
    port = free_port()
    url = database_url or f"sqlite:///{folder / 'sarcoscreen.db'}"
    if database_url:  # a fresh schema for each round
        import uuid

        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        schema = f"bench_{uuid.uuid4().hex[:12]}"
        admin = create_engine(database_url)
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = make_url(database_url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False)
    config = folder / "node.toml"
    config.write_text(f'[network]\nae_title = "SARCO"\nhost = "127.0.0.1"\nport = {port}\nstable_age_s = 3600\n'
                      f'[database]\nurl = "{url}"\n[storage]\ndata_dir = "{folder / "data"}"\nmin_free_mb = 0\n'
                      '[logging]\nlevel = "WARNING"\n', encoding="utf-8")
    server = subprocess.Popen([sys.executable, "-m", "sarcoscreen.node.cli", "--config", str(config), "serve"])
    try:
        wait_for_port(port, timeout=60)
        seconds = send(port, files, parallel)
        stored = len(list((folder / "data" / "spool").rglob("*.dcm")))
        if stored != len(files):
            raise RuntimeError(f"node stored {stored} of {len(files)}")
        return seconds
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(folder, ignore_errors=True)
        if database_url:
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


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
    files = make_series(args.work)
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
