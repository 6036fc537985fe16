"""The node's Prometheus metrics, read from the database and the disks at each scrape.

`NodeCollector` counts nothing itself: every value comes from the database (instances, refused C-STOREs, series,
jobs and the queue, each done job's step durations, deliveries) and from the file systems (free space of the spool
and outputs folders) when Prometheus scrapes ``/metrics``. So the same numbers come from any process that reaches the
database - ``sarcoscreen web`` as well as ``serve``/``run`` - and nothing is lost when a process restarts. The one
thing a collector keeps is what it already read of the step durations of jobs that can no longer change
(`SettledSteps`), so that a scrape does not take every done job's JSON apart again. `metrics_registry` makes a
`CollectorRegistry` per web app: no module-level registry or metric object.

The metrics (names, labels, meaning) are listed in docs/node.md, "Metrics and probes". Labels are states, DIMSE
statuses, step names, destination names and folder roles: never a UID, path or patient value. When the database
cannot be read, ``sarcoscreen_database_up`` is 0 and only the disk metrics follow (the scrape itself succeeds).
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from sarcoscreen.db.models import DeliveryStatus
from sarcoscreen.db.monitoring import (
    StepDurations,
    delivery_counts,
    instance_counts,
    job_counts,
    queue_status,
    refusal_counts,
    series_counts,
    step_durations,
)
from sarcoscreen.db.session import db_now, session_scope
from sarcoscreen.inference.error_text import error_text
from sarcoscreen.node.config import Settings
from sarcoscreen.node.scp import (
    STATUS_CANNOT_UNDERSTAND,
    STATUS_DATASET_MISMATCH,
    STATUS_OUT_OF_RESOURCES,
    STATUS_SOP_INSTANCE_CONFLICT,
)

__all__ = ["JOB_STEPS", "SETTLE_S", "STEP_BUCKETS", "NodeCollector", "SettledSteps", "metrics_registry",
           "status_label", "step_histogram"]

logger = logging.getLogger(__name__)

STEP_BUCKETS: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
"""Upper bounds (seconds) of the step-duration histogram's buckets; ``+Inf`` follows."""

JOB_STEPS: tuple[str, ...] = ("prepare", "load", "engine", "measure", "files", "dicom outputs", "store")
"""The worker's steps, in order (node/worker.py, node/analysis.py): always exported, 0 until a job had them."""

REFUSAL_STATUSES: tuple[int, ...] = (STATUS_OUT_OF_RESOURCES, STATUS_DATASET_MISMATCH, STATUS_CANNOT_UNDERSTAND,
                                     STATUS_SOP_INSTANCE_CONFLICT)
"""The statuses the SCP refuses with (node/scp.py): always exported, 0 until one occurred."""


def status_label(status: int) -> str:
    """A DIMSE status as the label value: ``0xA700``."""
    return f"0x{status:04X}"


def step_histogram(durations: dict[str, StepDurations], steps: Iterable[str]) -> HistogramMetricFamily:
    """``sarcoscreen_job_step_seconds``: `steps` always (0 when no job had them), then any other step recorded."""
    family = HistogramMetricFamily("sarcoscreen_job_step_seconds",
                                   "Seconds per step of the attempt that finished each done job.", labels=["step"])
    ordered = list(steps)
    for step in [*ordered, *sorted(set(durations) - set(ordered))]:
        found = durations.get(step, StepDurations((0,) * len(STEP_BUCKETS), 0, 0.0))
        buckets = [(floatToGoString(bound), float(n)) for bound, n in zip(STEP_BUCKETS, found.at_most, strict=True)]
        # durations are stored to the millisecond: rounding keeps the sum the same whichever way it was added up
        family.add_metric([step], [*buckets, ("+Inf", float(found.count))], sum_value=round(found.total_s, 3))
    return family


SETTLE_S = 600.0
"""A done job that finished this long ago no longer changes (its ``store`` duration is added seconds after it is
done): `SettledSteps` keeps its durations and no later scrape reads them again."""


class SettledSteps:
    """The step durations of the done jobs that finished before a moving horizon (now - `SETTLE_S`), kept by one
    collector so that a scrape reads only the jobs finished since: the first scrape of a process reads every done job
    (the database takes each job's JSON apart: seconds per hundred thousand jobs on SQLite), the next ones only the last
    minutes'. Jobs that finished after the horizon are read again at every scrape, as they may still change."""

    def __init__(self, settle_s: float = SETTLE_S) -> None:
        self.settle_s = settle_s
        self._lock = threading.Lock()
        self._until: datetime | None = None
        self._settled: dict[str, StepDurations] = {}

    def read(self, session: Session) -> dict[str, StepDurations]:
        """Every done job's durations: the settled ones (read once) plus those of the jobs finished since."""
        with self._lock:  # scrapes run in a thread pool: one moves the horizon at a time
            horizon = db_now(session) - timedelta(seconds=self.settle_s)
            if self._until is None or horizon > self._until:
                newly = step_durations(session, STEP_BUCKETS, finished_after=self._until, finished_until=horizon)
                self._settled = _merged(self._settled, newly)
                self._until = horizon
            recent = step_durations(session, STEP_BUCKETS, finished_after=self._until)
            return _merged(self._settled, recent)


def _merged(first: dict[str, StepDurations], second: dict[str, StepDurations]) -> dict[str, StepDurations]:
    merged = dict(first)
    for step, durations in second.items():
        merged[step] = merged[step] + durations if step in merged else durations
    return merged


class NodeCollector(Collector):
    """The node's metrics, read at each scrape (see the module docstring)."""

    def __init__(self, settings: Settings, db: Engine) -> None:
        self.settings = settings
        self.db = db
        self.steps = SettledSteps()

    def collect(self) -> Iterator[Metric]:
        yield from self._storage()
        try:
            families = list(self._database())
        except SQLAlchemyError as exc:
            logger.warning("metrics: the database cannot be read: %s", (error_text(exc).splitlines() or [""])[0])
            yield GaugeMetricFamily("sarcoscreen_database_up", "1 when the database answered this scrape, else 0.",
                                    value=0)
            return
        yield GaugeMetricFamily("sarcoscreen_database_up", "1 when the database answered this scrape, else 0.",
                                value=1)
        yield from families

    def _storage(self) -> Iterator[Metric]:
        storage = self.settings.storage
        free = GaugeMetricFamily("sarcoscreen_disk_free_bytes",
                                 "Free bytes on the file system of a storage folder (spool: new instances; outputs: "
                                 "results).", labels=["folder"])
        for folder, path in (("spool", storage.spool), ("outputs", storage.outputs)):
            try:
                free.add_metric([folder], float(shutil.disk_usage(path).free))
            except OSError as exc:  # not there (yet), or not reachable from this process: no sample
                logger.debug("metrics: free space of the %s folder unknown: %s", folder, exc.strerror)
        yield free
        yield GaugeMetricFamily("sarcoscreen_storage_min_free_bytes",
                                "storage.min_free_mb in bytes: below it on the spool's disk every C-STORE is refused "
                                "with 0xA700.", value=float(storage.min_free_mb * 2**20))

    def _database(self) -> Iterator[Metric]:
        with session_scope(self.db) as session:
            instances = instance_counts(session)
            refusals = refusal_counts(session)
            series = series_counts(session)
            jobs = job_counts(session)
            queue = queue_status(session)
            deliveries = delivery_counts(session)
            durations = self.steps.read(session)
        family = GaugeMetricFamily("sarcoscreen_instances", "Instances received and indexed, by state.",
                                   labels=["state"])
        for state, count in instances.items():
            family.add_metric([state.value], count)
        yield family
        counter = CounterMetricFamily("sarcoscreen_instances_refused",
                                      "C-STOREs the SCP refused, by the DIMSE status answered.", labels=["status"])
        for status in sorted({*REFUSAL_STATUSES, *refusals}):
            counter.add_metric([status_label(status)], refusals.get(status, 0))
        yield counter
        family = GaugeMetricFamily("sarcoscreen_series", "Series, by state.", labels=["state"])
        for state, count in series.items():
            family.add_metric([state.value], count)
        yield family
        family = GaugeMetricFamily("sarcoscreen_jobs", "Jobs, by status.", labels=["status"])
        for status, count in jobs.items():
            family.add_metric([status.value], count)
        yield family
        yield GaugeMetricFamily("sarcoscreen_queue_depth", "Queued jobs (due, or waiting for their backoff).",
                                value=queue.queued)
        yield GaugeMetricFamily("sarcoscreen_queue_oldest_age_seconds",
                                "Seconds the longest-waiting due queued job has waited for a worker (0: none due).",
                                value=queue.oldest_waiting_s)
        yield GaugeMetricFamily("sarcoscreen_jobs_running", "Jobs a worker holds now.", value=queue.running)
        yield step_histogram(durations, JOB_STEPS)
        family = GaugeMetricFamily("sarcoscreen_deliveries", "Deliveries (one output to one destination), by "
                                   "destination name and status.", labels=["destination", "status"])
        names = sorted({*(d.name for d in self.settings.destinations), *deliveries})
        for name in names:
            counts = deliveries.get(name, {})
            for status in DeliveryStatus:
                family.add_metric([name, status.value], counts.get(status, 0))
        yield family


def metrics_registry(settings: Settings, db: Engine) -> CollectorRegistry:
    """A registry of its own for one web app, holding the node's collector (nothing is read until a scrape)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(settings, db))
    return registry
