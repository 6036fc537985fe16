"""Benchmark: latency from the last instance of a 600-slice series to its SEG and SR accepted at the destination.

    .venv/bin/python benchmarks/node_latency.py [--work /tmp] [--rounds 2] [--stable-age 5]
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test]

The node runs as ``sarcoscreen run`` (Storage SCP, series watcher, sender, one worker process, the default
``threshold`` engine and outputs: BINARY SEG, TID 1500 SR, Secondary Capture key image) with a dcmtk ``storescp``
as the destination, all on loopback. The series is the 600-slice, 512 x 512 phantom hip CT (cached under
``--work``), sent with dcmtk ``storescu`` (``TCP_NODELAY=1``). The clock starts when storescu has the response to
the last instance and stops when both the SEG and the SR deliveries are ``sent`` (the destination answered
Success; ``deliveries.sent_at``). The breakdown comes from the job's and deliveries' timestamps:

* stable: until the series watcher made the job - ``network.stable_age_s`` by design plus up to one poll;
* queued: until a worker claimed it (up to one ``queue.poll_s``);
* processing: load, segment, measure, write files and DICOM outputs, commit results and outbox;
* delivery: until the destination accepted SEG and SR;
* processing steps: the worker's own timing from its log line (prepare, load, engine, measure, files incl. the
  overlay, DICOM outputs, the results transaction).

``queue.poll_s`` is 0.5 s here (default 2 s). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from node_bench_support import bench_database, hip_ct_files, sarcoscreen_command, storescu_send, write_node_config

from sarcoscreen.node.loopback import free_port, wait_for_port


def one_round(files: list[Path], stable_age: float, database_url: str | None) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="latency-"))
    try:
        with bench_database(database_url, folder / "sarcoscreen.db") as url:
            return _measure_round(folder, files, stable_age, url)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _measure_round(folder: Path, files: list[Path], stable_age: float, url: str) -> dict[str, Any]:
    from sqlalchemy import create_engine, select
    from sqlalchemy.orm import Session

    from sarcoscreen.db.models import Delivery, DeliveryStatus, Job, Output, OutputKind

    received = folder / "received"
    received.mkdir()
    destination_port, port = free_port(), free_port()
    config = write_node_config(
        folder, port=port, database_url=url, stable_age_s=stable_age, log_level="INFO",
        more=f'[queue]\npoll_s = 0.5\n[[destinations]]\nname = "storescp"\nae_title = "STORESCP"\n'
             f'host = "127.0.0.1"\nport = {destination_port}\n')
    destination = subprocess.Popen(["storescp", "--aetitle", "STORESCP", "--output-directory", str(received), "+xa",
                                    str(destination_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = (folder / "node.log").open("wb")
    node = subprocess.Popen(sarcoscreen_command(config, "run"), stderr=log)
    engine = create_engine(url)
    try:
        wait_for_port(destination_port)
        wait_for_port(port)
        storescu_send(port, files, 1)
        last = datetime.now(UTC)
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            with Session(engine) as session:
                sent = session.execute(
                    select(Output.kind, Delivery.sent_at).join(Delivery, Delivery.output_id == Output.id)
                    .where(Delivery.status == DeliveryStatus.SENT, Output.kind.in_((OutputKind.SEG, OutputKind.SR)))
                ).all()
                job = session.execute(select(Job)).scalars().first()
            if len(sent) == 2 and job is not None:
                break
            time.sleep(0.2)
        else:
            raise TimeoutError("SEG and SR not delivered within 15 minutes")

        def aware(value: datetime) -> datetime:
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value

        delivered = max(aware(at) for _, at in sent)
        node.terminate()
        node.wait(timeout=120)
        done = [line for line in (folder / "node.log").read_text(errors="replace").splitlines() if ": done in " in line]
        created, started, finished = aware(job.created_at), aware(job.started_at), aware(job.finished_at)
        return {
            "total": (delivered - last).total_seconds(),
            "stable": (created - last).total_seconds(),
            "queued": (started - created).total_seconds(),
            "processing": (finished - started).total_seconds(),
            "delivery": (delivered - finished).total_seconds(),
            "steps": done[-1].split(": done in ", 1)[1] if done else "",
        }
    finally:
        if node.poll() is None:
            node.terminate()
            node.wait(timeout=120)
        log.close()
        destination.terminate()
        destination.wait(timeout=30)
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp"))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--stable-age", type=float, default=5.0)
    parser.add_argument("--postgres", help="Also measure with the database on this PostgreSQL server.")
    args = parser.parse_args()
    files = hip_ct_files(args.work)
    print(f"{len(files)} instances; stable_age_s = {args.stable_age:g}, queue.poll_s = 0.5\n")
    print("| database | round | total s | stable s | queued s | processing s | delivery s | processing steps |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, url in [("SQLite", None)] + ([("PostgreSQL", args.postgres)] if args.postgres else []):
        for number in range(1, args.rounds + 1):
            r = one_round(files, args.stable_age, url)
            print(f"| {name} | {number} | {r['total']:.1f} | {r['stable']:.1f} | {r['queued']:.1f} | "
                  f"{r['processing']:.1f} | {r['delivery']:.1f} | {r['steps']} |", flush=True)


if __name__ == "__main__":
    main()
