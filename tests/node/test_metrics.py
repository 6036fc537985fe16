"""``/metrics`` served by the web console's application through a real HTTP server, parsed with Prometheus' own
parser, on a real database (SQLite and PostgreSQL) with known rows; refused C-STOREs recorded by a real Storage SCP
answering a pynetdicom SCU; step durations of a job done by the real worker."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pydicom
import pydicom.filebase
import pydicom.filewriter
import pytest
from ct_series_factory import write_ct_series
from dicom_peers import free_port, wait_for_port
from node_support import (
    NodeConfig,
    add_series,
    decide_series,
    done_job_with_outputs,
    jobs_of,
    node_process,
    queued_job,
    rows,
)
from prometheus_client.parser import text_string_to_metric_families
from pynetdicom import AE
from pynetdicom import _config as pynetdicom_config
from sqlalchemy import Engine, select, update
from unparseable_instance import write_unparseable_instance
from web_support import node_settings, running_console

from sarcoscreen.db import migrate
from sarcoscreen.db.models import Instance, InstanceState, Job, JobStatus, StoreRefusal
from sarcoscreen.db.outbox import claim_due, record_outcome
from sarcoscreen.db.queue import claim
from sarcoscreen.db.refusals import record_refusal
from sarcoscreen.db.results import add_step_seconds
from sarcoscreen.db.session import create_engine_from_url, session_scope
from sarcoscreen.node.instance_index import SqlInstanceIndex
from sarcoscreen.node.metrics import JOB_STEPS, STEP_BUCKETS
from sarcoscreen.node.reconcile import reconcile
from sarcoscreen.node.refusal_log import SqlRefusalLog
from sarcoscreen.node.scp import STATUS_CANNOT_UNDERSTAND, STATUS_OUT_OF_RESOURCES, StorageSCP
from sarcoscreen.node.spool import Spool
from sarcoscreen.node.worker import Worker

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(base_url: str) -> Samples:
    """GET /metrics and parse it with Prometheus' parser: {(sample name, labels): value}."""
    response = httpx.get(f"{base_url}/metrics", timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = create_engine_from_url(db_url)
    yield engine
    engine.dispose()


def _known_rows(engine: Engine) -> None:
    """One done job with four deliveries (one sent, one failed, two pending), a running and a queued job, a receiving
    series with a purged instance, three refusals, and the done job's step durations."""
    done_job, _ = done_job_with_outputs(engine, "1.2.5.1")  # series processed; deliveries to pacs and archive
    queued_job(engine, "1.2.3.1")
    waiting = queued_job(engine, "1.2.3.2")
    assert claim(engine, lease_s=60) is not None  # the oldest: 1.2.3.1's job runs
    add_series(engine, "1.2.9.1", 2)  # receiving
    with session_scope(engine) as session:
        session.execute(update(Instance).where(Instance.sop_instance_uid == "1.2.9.1.2")
                        .values(state=InstanceState.PURGED))
        now = session.execute(select(Job.next_attempt_at).where(Job.id == waiting)).scalar_one()
        session.execute(update(Job).where(Job.id == waiting).values(next_attempt_at=now - timedelta(seconds=120)))
    due = {(d.destination_name, d.kind): d for d in claim_due(engine, hold_s=600)}
    assert len(due) == 4
    record_outcome(engine, due[("pacs", "SEG")], accepted=True, status_code=0, error="", retry_s=1,
                   retry_max_s=1, max_attempts=0)
    record_outcome(engine, due[("archive", "SEG")], accepted=False, status_code=0xA700, error="out of resources",
                   retry_s=1, retry_max_s=1, max_attempts=1)
    for status in (0xA700, 0xA700, 0xC000):
        record_refusal(engine, status=status, reason="test", calling_ae_title="SCANNER")
    for step, seconds in (("load", 0.3), ("engine", 12.0), ("store", 0.05)):
        add_step_seconds(engine, done_job, step, seconds)


def test_metrics_hold_the_numbers_of_known_rows(db_url: str, engine: Engine, tmp_path: Path) -> None:
    settings = node_settings(db_url, tmp_path / "data")
    _known_rows(engine)
    with running_console(settings, engine) as url:
        samples = scrape(url)
    assert value(samples, "sarcoscreen_database_up") == 1
    assert {state: value(samples, "sarcoscreen_instances", state=state)
            for state in ("stored", "missing file", "changed file", "purged")} == {
        "stored": 10, "missing file": 0, "changed file": 0, "purged": 1}
    assert {status: value(samples, "sarcoscreen_instances_refused_total", status=status)
            for status in ("0xA700", "0xA900", "0xC000", "0xC001")} == {
        "0xA700": 2, "0xA900": 0, "0xC000": 1, "0xC001": 0}
    assert {state: value(samples, "sarcoscreen_series", state=state)
            for state in ("receiving", "queued", "skipped", "processed", "failed")} == {
        "receiving": 1, "queued": 2, "skipped": 0, "processed": 1, "failed": 0}
    assert {status: value(samples, "sarcoscreen_jobs", status=status)
            for status in ("queued", "running", "done", "failed", "cancelled")} == {
        "queued": 1, "running": 1, "done": 1, "failed": 0, "cancelled": 0}
    assert value(samples, "sarcoscreen_queue_depth") == 1
    assert value(samples, "sarcoscreen_jobs_running") == 1
    assert 120 <= value(samples, "sarcoscreen_queue_oldest_age_seconds") < 180
    deliveries = {(name, status): value(samples, "sarcoscreen_deliveries", destination=name, status=status)
                  for name in ("pacs", "archive", "viewer") for status in ("pending", "sent", "failed", "cancelled")}
    assert deliveries == {
        ("pacs", "pending"): 1, ("pacs", "sent"): 1, ("pacs", "failed"): 0, ("pacs", "cancelled"): 0,
        ("archive", "pending"): 1, ("archive", "sent"): 0, ("archive", "failed"): 1, ("archive", "cancelled"): 0,
        ("viewer", "pending"): 0, ("viewer", "sent"): 0, ("viewer", "failed"): 0, ("viewer", "cancelled"): 0}
    # The histogram of the done job's steps: cumulative buckets, count and sum per step; steps it did not have are 0.
    bounds = [*(str(float(b)) for b in STEP_BUCKETS), "+Inf"]
    for step, seconds in (("load", 0.3), ("engine", 12.0), ("store", 0.05)):
        assert [value(samples, "sarcoscreen_job_step_seconds_bucket", step=step, le=le) for le in bounds] == [
            1.0 if le == "+Inf" or float(le) >= seconds else 0.0 for le in bounds], step
        assert value(samples, "sarcoscreen_job_step_seconds_count", step=step) == 1
        assert value(samples, "sarcoscreen_job_step_seconds_sum", step=step) == pytest.approx(seconds)
    assert value(samples, "sarcoscreen_job_step_seconds_count", step="measure") == 0
    # Disks: the spool's and the outputs' file systems, and the reserve.
    assert value(samples, "sarcoscreen_disk_free_bytes", folder="spool") == pytest.approx(
        shutil.disk_usage(settings.storage.spool).free, rel=0.05)
    assert value(samples, "sarcoscreen_disk_free_bytes", folder="outputs") > 0
    assert value(samples, "sarcoscreen_storage_min_free_bytes") == 7 * 2**20


def test_each_app_has_its_own_registry_and_reads_at_scrape_time(db_url: str, engine: Engine, tmp_path: Path) -> None:
    """No module-level state: two applications on two databases give their own numbers, and a row added after the
    first scrape is in the next one (read at scrape time, nothing cached)."""
    other_url = f"sqlite:///{tmp_path / 'other' / 'other.db'}"
    migrate.upgrade(other_url)
    other = create_engine_from_url(other_url)
    try:
        add_series(engine, "1.2.7.1", 3)
        add_series(other, "1.2.8.1", 5)
        with (running_console(node_settings(db_url, tmp_path / "a" / "data"), engine) as first,
              running_console(node_settings(other_url, tmp_path / "b" / "data"), other) as second):
            assert value(scrape(first), "sarcoscreen_instances", state="stored") == 3
            assert value(scrape(second), "sarcoscreen_instances", state="stored") == 5
            add_series(engine, "1.2.7.2", 4)
            assert value(scrape(first), "sarcoscreen_instances", state="stored") == 7
            assert value(scrape(second), "sarcoscreen_instances", state="stored") == 5
    finally:
        other.dispose()


def test_step_durations_settled_are_read_once_and_recent_ones_at_every_scrape(db_url: str, engine: Engine,
                                                                            tmp_path: Path) -> None:
    """A job done an hour ago is settled: the first scrape reads it and the collector keeps it. A job done now is
    read again at each scrape (its store step is added after it is done). A new application (a fresh registry, as
    after a restart) gives exactly the same samples."""
    settings = node_settings(db_url, tmp_path / "data")
    old, _ = done_job_with_outputs(engine, "1.2.5.1")
    with session_scope(engine) as session:
        finished = session.execute(select(Job.finished_at).where(Job.id == old)).scalar_one()
        session.execute(update(Job).where(Job.id == old).values(finished_at=finished - timedelta(hours=1)))
    add_step_seconds(engine, old, "load", 1.0)
    with running_console(settings, engine) as url:  # one application: one collector for the three scrapes
        first = scrape(url)
        new, _ = done_job_with_outputs(engine, "1.2.5.2")
        add_step_seconds(engine, new, "load", 2.0)
        second = scrape(url)
        add_step_seconds(engine, new, "store", 0.5)
        third = scrape(url)
    with running_console(settings, engine) as url:
        fresh = scrape(url)
    assert (value(first, "sarcoscreen_job_step_seconds_count", step="load"),
            value(first, "sarcoscreen_job_step_seconds_sum", step="load")) == (1, 1.0)
    assert (value(second, "sarcoscreen_job_step_seconds_count", step="load"),
            value(second, "sarcoscreen_job_step_seconds_sum", step="load")) == (2, 3.0)
    assert value(second, "sarcoscreen_job_step_seconds_count", step="store") == 0
    assert value(third, "sarcoscreen_job_step_seconds_count", step="store") == 1
    assert value(third, "sarcoscreen_job_step_seconds_bucket", step="load", le="1.0") == 1
    assert value(third, "sarcoscreen_job_step_seconds_bucket", step="load", le="2.5") == 2
    histogram = {key: v for key, v in third.items() if key[0].startswith("sarcoscreen_job_step_seconds")}
    assert histogram == {key: v for key, v in fresh.items() if key[0].startswith("sarcoscreen_job_step_seconds")}


def test_a_database_that_is_gone_is_database_up_0_and_the_disks_still_answer(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db' / 'node.db'}"
    migrate.upgrade(url)
    engine = create_engine_from_url(url)
    try:
        settings = node_settings(url, tmp_path / "data")
        with running_console(settings, engine) as base:
            assert value(scrape(base), "sarcoscreen_database_up") == 1
            shutil.rmtree(tmp_path / "db")
            engine.dispose()  # no pooled connection to the deleted file: the next one finds no folder
            samples = scrape(base)
    finally:
        engine.dispose()
    assert value(samples, "sarcoscreen_database_up") == 0
    assert value(samples, "sarcoscreen_disk_free_bytes", folder="spool") > 0
    assert not [name for name, _ in samples if name.startswith(("sarcoscreen_instances", "sarcoscreen_jobs"))]


# --- refused C-STOREs, recorded by the SCP ---------------------------------------------------------------------


def _c_store(port: int, *files: Path) -> list[int]:
    """C-STORE of each file as it is (pynetdicom SCU, calling AE title SCANNER); the statuses."""
    ae = AE(ae_title="SCANNER")
    ae.add_requested_context(pydicom.uid.CTImageStorage, pydicom.uid.ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="SARCO")
    assert assoc.is_established
    before = pynetdicom_config.STORE_SEND_CHUNKED_DATASET
    pynetdicom_config.STORE_SEND_CHUNKED_DATASET = True  # the bytes as they are in the file
    try:
        return [int(assoc.send_c_store(file).Status) for file in files]
    finally:
        pynetdicom_config.STORE_SEND_CHUNKED_DATASET = before
        assoc.release()


def test_refused_c_stores_are_recorded_by_the_scp_and_counted(db_url: str, engine: Engine, tmp_path: Path) -> None:
    """A data set that cannot be parsed (0xC000) and one refused below the disk reserve (0xA700) leave no instance
    row; each leaves a store_refusals row (scrubbed reason, calling AE title) and is counted by status."""
    settings = node_settings(db_url, tmp_path / "data")
    spool = Spool(settings.storage.spool, settings.storage.quarantine)
    good = write_ct_series(tmp_path / "ct", 1, rows=4, columns=4, PatientName="DOE^JANE")
    scp = StorageSCP(spool, SqlInstanceIndex(engine), ae_title="SARCO", host="127.0.0.1", port=free_port(),
                     refusals=SqlRefusalLog(engine))
    scp.start()
    try:
        bad = write_unparseable_instance(tmp_path / "bad.dcm")
        assert _c_store(scp.port, bad, good.files[0]) == [STATUS_CANNOT_UNDERSTAND, 0x0000]
        spool.min_free_bytes = spool.free_bytes() * 2  # more than is free
        other = write_ct_series(tmp_path / "ct2", 1, rows=4, columns=4)
        assert _c_store(scp.port, other.files[0]) == [STATUS_OUT_OF_RESOURCES]
    finally:
        scp.stop()
    refusals = rows(engine, select(StoreRefusal).order_by(StoreRefusal.id))
    assert [(r.status, r.calling_ae_title) for r in refusals] == [(0xC000, "SCANNER"), (0xA700, "SCANNER")]
    assert refusals[0].reason.startswith("the data set cannot be parsed")
    assert "MiB free on the spool's disk" in refusals[1].reason
    assert not any("DOE" in r.reason for r in refusals)
    with running_console(settings, engine) as url:
        samples = scrape(url)
    assert value(samples, "sarcoscreen_instances_refused_total", status="0xC000") == 1
    assert value(samples, "sarcoscreen_instances_refused_total", status="0xA700") == 1
    assert value(samples, "sarcoscreen_instances", state="stored") == 1


def test_a_refusal_that_cannot_be_recorded_is_still_answered(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                                             ) -> None:
    """The database is gone when the SCP refuses: the refusal is logged as not recorded and answered all the same."""
    url = f"sqlite:///{tmp_path / 'db' / 'node.db'}"
    migrate.upgrade(url)
    engine = create_engine_from_url(url)
    spool = Spool(tmp_path / "spool", tmp_path / "quarantine")
    scp = StorageSCP(spool, SqlInstanceIndex(engine), ae_title="SARCO", host="127.0.0.1", port=free_port(),
                     refusals=SqlRefusalLog(engine))
    scp.start()
    try:
        shutil.rmtree(tmp_path / "db")
        engine.dispose()
        assert _c_store(scp.port, write_unparseable_instance(tmp_path / "bad.dcm")) == [STATUS_CANNOT_UNDERSTAND]
    finally:
        scp.stop()
        engine.dispose()
    assert "C-STORE refusal 0xC000 from SCANNER not recorded: OperationalError" in caplog.text


# --- step durations of a job done by the real worker -----------------------------------------------------------


def test_step_durations_of_a_job_done_by_the_worker_are_stored_and_exported(db_url: str, engine: Engine,
                                                                           tmp_path: Path) -> None:
    settings = node_settings(db_url, tmp_path / "data", routing={"require_gluteal_region": False, "min_slices": 2})
    series = write_ct_series(tmp_path / "ct", 5, 16, 16)
    spool = Spool(settings.storage.spool, settings.storage.quarantine)
    for path, uid in zip(series.files, series.sop_instance_uids, strict=True):
        spool.store(path.read_bytes(), series.series_instance_uid, uid)
    assert reconcile(engine, spool).indexed == 5
    assert [o.outcome for o in decide_series(engine, settings)] == ["queued"]
    assert Worker(settings, engine).run_one()
    (job,) = jobs_of(engine)
    assert job.status is JobStatus.DONE, job.error
    assert job.step_seconds is not None
    assert list(job.step_seconds) == list(JOB_STEPS)  # every step, in order, the store step added after the commit
    assert all(seconds >= 0 for seconds in job.step_seconds.values())
    with running_console(settings, engine) as url:
        samples = scrape(url)
    for step, seconds in job.step_seconds.items():
        assert value(samples, "sarcoscreen_job_step_seconds_count", step=step) == 1
        assert value(samples, "sarcoscreen_job_step_seconds_sum", step=step) == pytest.approx(seconds)
        assert value(samples, "sarcoscreen_job_step_seconds_bucket", step=step, le="+Inf") == 1


# --- the node as a process ---------------------------------------------------------------------------------------


def test_serve_records_a_refusal_and_its_console_counts_it(tmp_path: Path) -> None:
    """``sarcoscreen serve`` with the console on: a C-STORE its SCP refuses is counted at /metrics of the same
    process (the SCP's refusal log is wired into the service), and /readyz is 200."""
    web_port = free_port()
    config = NodeConfig(tmp_path, f"sqlite:///{tmp_path / 'node.db'}",
                        sections={"web": {"enabled_in_serve": True, "host": "127.0.0.1", "port": web_port}})
    with node_process(config, "serve"):
        wait_for_port(web_port, timeout=30)
        assert _c_store(config.port, write_unparseable_instance(tmp_path / "bad.dcm")) == [STATUS_CANNOT_UNDERSTAND]
        base = f"http://127.0.0.1:{web_port}"
        samples = scrape(base)
        ready = httpx.get(f"{base}/readyz")
    assert value(samples, "sarcoscreen_instances_refused_total", status="0xC000") == 1
    assert value(samples, "sarcoscreen_database_up") == 1
    assert ready.status_code == 200, ready.text
