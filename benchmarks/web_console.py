"""Benchmark: the QA web console's pages on a database of 10,000 series results.

    .venv/bin/python benchmarks/web_console.py [--series 10000] [--requests 30] [--work /tmp]
        [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test] [--revision 0009]

Fills an empty database (a SQLite file under ``--work`` by default; with ``--database-url`` a fresh schema on that
PostgreSQL server, dropped afterwards) with SYNTHETIC results - no patient data: patient IDs ``SYN-...``, made-up
UIDs and numbers - written in bulk with the models (`sarcoscreen.db.models`), in the shapes the worker leaves:

* studies of one or two series each (patients with several studies), series over the past year: 86 % processed,
  5 % failed, 5 % skipped (by routing, or by the worker's gluteal check), 2 % queued or running, 2 % receiving;
* one job per series that has one (10 % of the processed series also have an older job done before, as after
  late instances): done, failed with an error, queued or running; 80 % by the threshold engine, 20 % by the
  Bayesian U-Net; done jobs with their step durations;
* per done job 12 group results (4 groups x left, right, both; 88 % of groups complete, the others truncated,
  uncertain or not found; the gluteal group suspected in about 20 % of the jobs against a calibration) and the 67
  structure measurements of the catalogue (a few above the U-Net's uncertainty threshold);
* per analysed series SEG, SR and key image outputs, each delivered to two destinations (mostly sent, some
  pending or failed), and the events a job leaves (queued, claimed, done or failed, deliveries sent).

Instances are not written (the pages do not read them; ``/metrics`` and Health count them by state).

Then it starts the console as ``sarcoscreen web`` (uvicorn, its own process, logging at INFO as in production),
signs in and times each page over ``--requests`` requests after one untimed request (the first ``/metrics`` scrape
reads every done job's step durations once; later ones only the recent jobs'): median and 95th percentile in ms,
and the median's ratio to the 200 ms target. ``/cohort`` is timed when the console has it. ``--revision 0009``
leaves the schema at that revision (the console does not migrate on start here), to measure the pages without the
indexes revision 0010 added. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from node_bench_support import bench_database
from sqlalchemy import Engine, insert, text
from sqlalchemy.orm import Session

from sarcoscreen.db import migrate
from sarcoscreen.db.models import (
    Classification,
    Completeness,
    Delivery,
    DeliveryStatus,
    Event,
    EventLevel,
    GroupResult,
    GroupSide,
    HeightSource,
    Job,
    JobStatus,
    Output,
    OutputKind,
    Series,
    SeriesState,
    StructureMeasurement,
    Study,
)
from sarcoscreen.db.session import create_engine_from_url, session_scope
from sarcoscreen.db.web_users import add_user
from sarcoscreen.inference.catalogue import CATALOGUE, Group
from sarcoscreen.node.loopback import free_port, wait_for_port

TARGET_MS = 200.0
USER, PASSWORD = "bench", "benchmark password"
CHUNK = 5000
STEPS = ("prepare", "load", "engine", "measure", "files", "dicom outputs", "store")
DESTINATIONS = (("pacs", "PACS", 104), ("archive", "ARCHIVE", 11112))
SOP_CLASSES = {OutputKind.SEG: "1.2.840.10008.5.1.4.1.1.66.4", OutputKind.SR: "1.2.840.10008.5.1.4.1.1.88.22",
               OutputKind.KEY_IMAGE: "1.2.840.10008.5.1.4.1.1.7"}
UID_ROOT = "2.25.4242"
"""Made-up UIDs (2.25: UUID-derived root) under one prefix, so that nothing looks like a real site's."""


# --- synthetic results ---------------------------------------------------------------------------------------------


@dataclass
class Rows:
    """Rows per table, as dictionaries of column values, with their ids assigned here."""

    studies: list[dict[str, Any]]
    series: list[dict[str, Any]]
    jobs: list[dict[str, Any]]
    groups: list[dict[str, Any]]
    structures: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    deliveries: list[dict[str, Any]]
    events: list[dict[str, Any]]

    def counts(self) -> dict[str, int]:
        return {name: len(rows) for name, rows in vars(self).items()}


def _series_state(rng: random.Random) -> SeriesState:
    x = rng.random()
    if x < 0.86:
        return SeriesState.PROCESSED
    if x < 0.91:
        return SeriesState.FAILED
    if x < 0.96:
        return SeriesState.SKIPPED
    return SeriesState.QUEUED if x < 0.98 else SeriesState.RECEIVING


def _done_job_rows(rows: Rows, rng: random.Random, job_id: int, finished: datetime, unet: bool,
                   structure_id: int, group_id: int) -> tuple[int, int]:
    """A done job's group results and structure measurements; the next free ids."""
    height = round(rng.uniform(1.5, 1.9), 2)
    suspected = rng.random() < 0.2
    for group in Group:
        completeness = rng.choices([Completeness.COMPLETE, Completeness.TRUNCATED, Completeness.UNCERTAIN,
                                    Completeness.NOT_FOUND], [88, 8, 2, 2])[0]
        complete = completeness is Completeness.COMPLETE
        smi_both = rng.uniform(4.0, 9.0) if group is Group.ALL else rng.uniform(0.2, 3.0)
        for side in GroupSide:
            share = 1.0 if side is GroupSide.BOTH else 0.5
            smm = smi_both * height**2 * 1000 * share
            row: dict[str, Any] = {
                "id": group_id, "job_id": job_id, "muscle_group": group.value, "side": side,
                "completeness": completeness, "reason": f"{completeness.value} (synthetic)",
                "smm_g": smm if complete else None, "smi_kg_m2": smi_both * share if complete else None,
                "in_scan_smm_g": smm if complete else smm * 0.7,
                "shortfall_mm": None if complete else rng.uniform(5, 60),
                "height_m": height, "height_source": HeightSource.DICOM,
            }
            if side is GroupSide.BOTH:
                flagged = suspected and group is Group.GLUTEAL and complete
                row.update({
                    "screening_side_rule": "mean", "screening_smi_kg_m2": smi_both / 2 if complete else None,
                    "classification": (Classification.SUSPECTED if flagged else
                                       Classification.NOT_SUSPECTED if complete else Classification.NOT_CLASSIFIED),
                    "classification_reason": "SYNTHETIC calibration", "cutoff_kg_m2": 0.6,
                    "calibration_name": "SYNTHETIC benchmark", "calibration_sha256": "0" * 64})
            rows.groups.append(row)
            group_id += 1
    for structure in CATALOGUE:
        voxels = rng.randint(2_000, 400_000)
        uncertainty = rng.uniform(0.01, 0.3) if unet else None
        rows.structures.append({
            "id": structure_id, "job_id": job_id, "structure_key": structure.key, "label": structure.label,
            "name": structure.name, "side": structure.side, "voxels": voxels, "volume_cm3": voxels * 0.002,
            "mean_hu": rng.uniform(20, 60), "sd_hu": rng.uniform(10, 30), "fraction_in_window": rng.uniform(0.6, 1),
            "mass_g": voxels * 0.002 * 1.04 if structure.is_muscle else None, "truncated": rng.random() < 0.05,
            "uncertainty": uncertainty, "qa_flag": bool(unet and uncertainty is not None and uncertainty > 0.29),
            "extent_uncertain": False, "density_rule": "constant 1.04 g/cm3"})
        structure_id += 1
    return structure_id, group_id


def synthetic_rows(count: int, seed: int = 14) -> Rows:
    """`count` series with their studies, jobs, results, outputs, deliveries and events (SYNTHETIC)."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    rows = Rows([], [], [], [], [], [], [], [])
    ids = {"job": 1, "structure": 1, "group": 1, "output": 1, "delivery": 1, "event": 1}

    def event(kind: str, at: datetime, series_id: int, job_id: int | None, message: str,
              level: EventLevel = EventLevel.INFO) -> None:
        rows.events.append({"id": ids["event"], "occurred_at": at, "level": level, "series_id": series_id,
                            "job_id": job_id, "kind": kind, "message": message})
        ids["event"] += 1

    series_id = 0
    while series_id < count:
        study_id = len(rows.studies) + 1
        study_date = (now - timedelta(days=rng.uniform(0, 365))).date()
        rows.studies.append({
            "id": study_id, "study_instance_uid": f"{UID_ROOT}.1.{study_id}",
            "patient_id": f"SYN-{rng.randrange(count // 2):06d}", "accession_number": f"SYNACC{study_id:07d}",
            "study_date": study_date, "study_description": "CT PELVIS (synthetic)",
            "patient_sex": rng.choice("FM"), "patient_size_recorded": round(rng.uniform(1.5, 1.9), 2),
            "created_at": now})
        for _ in range(min(rng.choice((1, 1, 2)), count - series_id)):
            series_id += 1
            received = datetime.combine(study_date, datetime.min.time(), UTC) + timedelta(hours=rng.uniform(7, 18))
            received = min(received, now - timedelta(minutes=5))
            state = _series_state(rng)
            instances = rng.randint(250, 700)
            skipped_by_routing = state is SeriesState.SKIPPED and rng.random() < 0.6
            rows.series.append({
                "id": series_id, "study_id": study_id, "series_instance_uid": f"{UID_ROOT}.2.{series_id}",
                "modality": "CT", "series_description": "Hip 1.5 mm (synthetic)", "body_part": "PELVIS",
                "slice_thickness_mm": 1.5, "instance_count": instances,
                "first_received_at": received - timedelta(seconds=instances / 150),
                "last_received_at": received, "state": state,
                "skip_reason": ("routing: body part HEAD" if skipped_by_routing else
                                "the images do not reach the gluteal region (no gluteal muscle found)"
                                if state is SeriesState.SKIPPED else None)})
            event("series.received", received, series_id, None, f"{instances} instances")
            if state is SeriesState.RECEIVING or skipped_by_routing:
                continue
            runs = 2 if state is SeriesState.PROCESSED and rng.random() < 0.1 else 1
            for run in range(runs):
                job_id = ids["job"]
                ids["job"] += 1
                latest = run == runs - 1
                created = received + timedelta(seconds=60 + run * 600)
                status = (JobStatus.DONE if not latest or state in (SeriesState.PROCESSED, SeriesState.SKIPPED)
                          else JobStatus.FAILED if state is SeriesState.FAILED
                          else rng.choice((JobStatus.QUEUED, JobStatus.RUNNING)))
                unet = rng.random() < 0.2
                seconds = {step: round(rng.uniform(0.05, 9.0), 3) for step in STEPS}
                finished = created + timedelta(seconds=sum(seconds.values()) + 1)
                done = status is JobStatus.DONE
                rows.jobs.append({
                    "id": job_id, "series_id": series_id, "status": status,
                    "attempts": 3 if status is JobStatus.FAILED else 0 if status is JobStatus.QUEUED else 1,
                    "max_attempts": 3, "next_attempt_at": created,
                    "lease_owner": "bench-host:4242" if status is JobStatus.RUNNING else None,
                    "lease_expires_at": now + timedelta(seconds=60) if status is JobStatus.RUNNING else None,
                    "heartbeat_at": now if status is JobStatus.RUNNING else None,
                    "error": ("the series cannot be loaded: 1 slice position(s) hold more than one image"
                              if status is JobStatus.FAILED else None),
                    "engine_name": ("bayesian-unet" if unet else "threshold") if done else None,
                    "engine_version": ("1.0" if unet else "3") if done else None,
                    "settings_hash": "a" * 64 if done else None,
                    "reason": "series stable" if run == 0 else "late instances", "instance_count": instances,
                    "created_at": created, "started_at": created if status is not JobStatus.QUEUED else None,
                    "finished_at": finished if status in (JobStatus.DONE, JobStatus.FAILED) else None,
                    "step_seconds": seconds if done else None})
                event("job.queued", created, series_id, job_id, "queued")
                if status is JobStatus.QUEUED:
                    continue
                event("job.claimed", created, series_id, job_id, "claimed by bench-host:4242")
                if status is JobStatus.FAILED:
                    event("job.failed", finished, series_id, job_id, "failed", EventLevel.ERROR)
                if not done:
                    continue
                event("job.done", finished, series_id, job_id, "done")
                ids["structure"], ids["group"] = _done_job_rows(rows, rng, job_id, finished, unet, ids["structure"],
                                                                ids["group"])
                if state is SeriesState.SKIPPED:
                    continue
                for kind in OutputKind:
                    output_id = ids["output"]
                    ids["output"] += 1
                    rows.outputs.append({
                        "id": output_id, "job_id": job_id, "kind": kind, "sop_class_uid": SOP_CLASSES[kind],
                        "sop_instance_uid": f"{UID_ROOT}.3.{output_id}",
                        "series_instance_uid": f"{UID_ROOT}.4.{job_id}.{kind.value}",
                        "path": f"{series_id}/{job_id}/{kind.value.lower()}.dcm", "created_at": finished})
                    for name, ae_title, port in DESTINATIONS:
                        status_d = (DeliveryStatus.CANCELLED if not latest else
                                    rng.choices(list(DeliveryStatus)[:3], [95, 3, 2])[0])
                        sent = status_d is DeliveryStatus.SENT
                        rows.deliveries.append({
                            "id": ids["delivery"], "output_id": output_id, "destination_name": name,
                            "destination_ae_title": ae_title, "host": "127.0.0.1", "port": port,
                            "status": status_d, "attempts": 1 if sent else 5 if status_d is DeliveryStatus.FAILED
                            else 0, "next_attempt_at": finished,
                            "last_status_code": 0xA700 if status_d is DeliveryStatus.FAILED else None,
                            "last_error": "out of resources (synthetic)" if status_d is DeliveryStatus.FAILED
                            else None, "last_attempt_at": finished if sent else None,
                            "sent_at": finished + timedelta(seconds=1) if sent else None, "created_at": finished})
                        ids["delivery"] += 1
                        if sent:
                            event("delivery.sent", finished, series_id, job_id, f"{kind.value} sent to {name}")
    return rows


def fill(db: Engine, rows: Rows) -> None:
    """Insert `rows` with the models in bulk (chunks of `CHUNK`), in dependency order; on PostgreSQL the id
    sequences are moved past the ids given."""
    tables = ((Study, rows.studies), (Series, rows.series), (Job, rows.jobs), (GroupResult, rows.groups),
              (StructureMeasurement, rows.structures), (Output, rows.outputs), (Delivery, rows.deliveries),
              (Event, rows.events))
    with Session(db) as session:
        for model, values in tables:
            for start in range(0, len(values), CHUNK):
                session.execute(insert(model), values[start:start + CHUNK])
        if db.dialect.name == "postgresql":
            for model, _ in tables:
                name = model.__tablename__
                session.execute(text(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                                     f"(SELECT coalesce(max(id), 1) FROM {name}))"))
        session.commit()
    with db.connect() as connection:  # fresh planner statistics, as autovacuum / a maintained node would have
        connection.execute(text("ANALYZE"))
        connection.commit()


# --- the console and its pages ---------------------------------------------------------------------------------------


@contextmanager
def console_process(folder: Path, database_url: str) -> Iterator[str]:
    """``sarcoscreen web`` on a free loopback port, on `database_url` as it is (``migrate_on_start`` off: a schema
    left at an older revision stays there), logging to ``folder/console.log``; yields its base URL and stops it
    (SIGTERM) on exit."""
    port = free_port()
    config = folder / "console.toml"
    config.write_text(f'[database]\nurl = "{database_url}"\nmigrate_on_start = false\n'
                      f'[storage]\ndata_dir = "{folder / "data"}"\n'
                      f'min_free_mb = 0\n[web]\nhost = "127.0.0.1"\nport = {port}\n', encoding="utf-8")
    with (folder / "console.log").open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "sarcoscreen.node.cli", "--config", str(config), "web"],
                                   stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_port(port, timeout=60)
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait(timeout=30)


def signed_in_client(url: str) -> httpx.Client:
    """An HTTP client of the console at `url`, signed in as the benchmark's user."""
    client = httpx.Client(base_url=url, timeout=120, follow_redirects=False)
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/signin").text)
    assert token, "no CSRF field on /signin"
    response = client.post("/signin", data={"name": USER, "password": PASSWORD, "csrf_token": token[1]})
    if response.status_code != 303 or response.headers.get("location") != "/results":
        raise RuntimeError(f"sign-in failed: {response.status_code}")
    return client


@dataclass(frozen=True)
class Timing:
    """One page's response times."""

    page: str
    path: str
    median_ms: float
    p95_ms: float
    size_kib: float

    @property
    def ratio(self) -> float:
        return self.median_ms / TARGET_MS


def pages(series_count: int, middle_series: int) -> list[tuple[str, str]]:
    """The pages timed: (what, path)."""
    middle_page = max(1, series_count // 50 // 2)
    return [
        ("results, first page", "/results"),
        ("results, filtered + sorted", "/results?state=processed&flagged=1&engine=threshold&sort=patient&order=asc"),
        ("results, QA flags", "/results?qa=1"),
        (f"results, page {middle_page} of {max(1, -(-series_count // 50))}", f"/results?page={middle_page}"),
        ("CSV export of one page", "/results.csv?sort=study_date"),
        ("series page", f"/series/{middle_series}"),
        ("queue", "/queue"),
        ("cohort", "/cohort"),
        ("health", "/health"),
        ("/metrics", "/metrics"),
    ]


def time_page(client: httpx.Client, page: str, path: str, requests: int) -> Timing | None:
    """`requests` timed GETs of `path` after one untimed; ``None`` when the console has no such page (404)."""
    first = client.get(path)
    if first.status_code == 404:
        return None
    if first.status_code != 200:
        raise RuntimeError(f"{path}: HTTP {first.status_code}")
    times = []
    for _ in range(requests):
        start = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - start) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"{path}: HTTP {response.status_code}")
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    return Timing(page, path, statistics.median(times), p95, len(first.content) / 1024)


def print_table(timings: list[Timing], missing: list[str]) -> None:
    print(f"| page | median ms | p95 ms | median / {TARGET_MS:.0f} ms | KiB |")
    print("| --- | --- | --- | --- | --- |")
    for t in timings:
        print(f"| {t.page} (`{t.path}`) | {t.median_ms:.0f} | {t.p95_ms:.0f} | {t.ratio:.2f} | {t.size_kib:.0f} |")
    for page in missing:
        print(f"| {page} | - | - | - | not in this console (404) |")


def run(database_url: str, work: Path, series_count: int, requests: int, revision: str) -> None:
    db = create_engine_from_url(database_url)
    try:
        migrate.upgrade(database_url, revision)
        start = time.perf_counter()
        rows = synthetic_rows(series_count)
        made = time.perf_counter() - start
        fill(db, rows)
        print(f"filled in {time.perf_counter() - start:.1f} s ({made:.1f} s making rows): "
              + ", ".join(f"{name} {n:,}" for name, n in rows.counts().items()), flush=True)
        with session_scope(db) as session:
            add_user(session, USER, PASSWORD)
    finally:
        db.dispose()
    middle_series = rows.series[len(rows.series) // 2]["id"]
    timings, missing = [], []
    with console_process(work, database_url) as url:
        client = signed_in_client(url)
        try:
            for page, path in pages(series_count, middle_series):
                timing = time_page(client, page, path, requests)
                if timing is None:
                    missing.append(page)
                else:
                    timings.append(timing)
                    print(f"  {page}: median {timing.median_ms:.0f} ms, p95 {timing.p95_ms:.0f} ms", flush=True)
        finally:
            client.close()
    expected = migrate.head() if revision == "head" else revision
    if migrate.current(database_url) != expected:
        raise RuntimeError(f"the schema is at {migrate.current(database_url)}, not {expected}")
    print()
    print_table(timings, missing)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=30, help="timed requests per page (default 30)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--database-url", help="a PostgreSQL server (a fresh schema is used); default SQLite")
    parser.add_argument("--revision", default="head",
                        help="migrate to this revision, not head (e.g. 0009: before the console's indexes of 0010)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="web-console-bench-", dir=args.work))
    try:
        with bench_database(args.database_url, work / "sarcoscreen.db") as url:
            backend = "PostgreSQL" if args.database_url else "SQLite"
            print(f"{backend} (schema revision {args.revision}): {args.series:,} series, {args.requests} requests per "
                  "page", flush=True)
            run(url, work, args.series, args.requests, args.revision)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
