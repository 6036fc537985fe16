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
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from node_ingest import free_port, make_series, wait_for_port


def one_round(files: list[Path], stable_age: float, database_url: str | None) -> dict[str, Any]:
    from sqlalchemy import create_engine, select, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.orm import Session

    from sarcoscreen.db.models import Delivery, DeliveryStatus, Job, Output, OutputKind

    folder = Path(tempfile.mkdtemp(prefix="latency-"))
    received = folder / "received"
    received.mkdir()
    destination_port, port = free_port(), free_port()
    url = f"sqlite:///{folder / 'sarcoscreen.db'}"
    schema = None
    if database_url:
        import uuid

        schema = f"bench_{uuid.uuid4().hex[:12]}"
        admin = create_engine(database_url)
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = make_url(database_url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False)
    config = folder / "node.toml"
    config.write_text(
        f'[network]\nae_title = "SARCO"\nhost = "127.0.0.1"\nport = {port}\nstable_age_s = {stable_age}\n'
        f'[database]\nurl = "{url}"\n[storage]\ndata_dir = "{folder / "data"}"\nmin_free_mb = 0\n'
        '[queue]\npoll_s = 0.5\n[logging]\nlevel = "INFO"\n'
        f'[[destinations]]\nname = "storescp"\nae_title = "STORESCP"\nhost = "127.0.0.1"\nport = {destination_port}\n',
        encoding="utf-8")
    destination = subprocess.Popen(["storescp", "--aetitle", "STORESCP", "--output-directory", str(received), "+xa",
                                    str(destination_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = (folder / "node.log").open("wb")
    node = subprocess.Popen([sys.executable, "-m", "sarcoscreen.node.cli", "--config", str(config), "run"],
                            stderr=log)
    engine = create_engine(url)
    try:
        wait_for_port(destination_port)
        wait_for_port(port)
        subprocess.run(["storescu", "-aet", "SCANNER", "-aec", "SARCO", "127.0.0.1", str(port), *map(str, files)],
                       check=True, env={**os.environ, "TCP_NODELAY": "1"}, stdout=subprocess.DEVNULL)
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
        shutil.rmtree(folder, ignore_errors=True)
        if schema is not None:
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp"))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--stable-age", type=float, default=5.0)
    parser.add_argument("--postgres", help="Also measure with the database on this PostgreSQL server.")
    args = parser.parse_args()
    files = make_series(args.work)
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
