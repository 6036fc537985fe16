"""The node ``sarcoscreen demo`` starts, and following the demo's series through it.

`demo_settings` puts the node on embedded defaults under the demo's folder (SQLite, local folders, a free loopback
port, short waits, the demo's destination, the web console on a free loopback port); `add_demo_user` makes the
console's user ``demo`` with a random password; `write_config` writes them as a configuration file, so that
``sarcoscreen --config OUT/sarcoscreen.toml results`` works on the demo's database afterwards;
`wait_for_delivery` prints each change of the series (state, job, deliveries) until its outputs were accepted by
the destination, it failed or was skipped, or the time is up.
"""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from sarcoscreen.db.models import Delivery, DeliveryStatus, Job, JobStatus, Output, Series
from sarcoscreen.db.models import SeriesState as State
from sarcoscreen.node.config import DestinationSettings, Settings
from sarcoscreen.node.demo_destinations import DemoDestination

__all__ = ["DEMO_USER", "add_demo_user", "demo_settings", "skip_reason", "wait_for_delivery", "write_config"]

DEMO_USER = "demo"
"""The web console's user that ``sarcoscreen demo`` makes."""


def demo_settings(settings: Settings, out: Path, destination: DemoDestination, port: int, log_level: str) -> Settings:
    """Embedded defaults under `out` (SQLite, local folders), short waits, the demo destination."""
    data_dir = (out / "sarcoscreen-data").resolve()
    return settings.model_copy(update={
        "logging": settings.logging.model_copy(update={"level": log_level}),
        "database": settings.database.model_copy(update={"url": f"sqlite:///{data_dir / 'sarcoscreen.db'}"}),
        "storage": settings.storage.model_copy(update={"data_dir": data_dir, "spool_dir": None, "quarantine_dir": None,
                                                       "output_dir": None, "min_free_mb": 0}),
        "network": settings.network.model_copy(update={"host": "127.0.0.1", "port": port, "stable_age_s": 2.0,
                                                       "allowed_calling": [], "tls_certificate": None,
                                                       "tls_private_key": None, "tls_ca_certificates": None,
                                                       "tls_require_client_certificate": False}),
        "queue": settings.queue.model_copy(update={"poll_s": 0.5}),
        "web": settings.web.model_copy(update={"host": "127.0.0.1", "port": 0, "enabled_in_serve": True,
                                               "trusted_user_header": None, "secret_file": None}),
        "delivery": settings.delivery.model_copy(update={"retry_s": 1.0, "retry_max_s": 5.0}),
        "destinations": [DestinationSettings(name=destination.name, ae_title=destination.ae_title,
                                             host="127.0.0.1", port=destination.port)],
    })


def add_demo_user(db: Engine) -> str:
    """The console's user `DEMO_USER` with a new random password (returned; replaced when the user exists)."""
    import secrets

    from sarcoscreen.db.session import session_scope
    from sarcoscreen.db.web_users import WebUserExistsError, add_user, set_password

    password = secrets.token_urlsafe(12)
    with session_scope(db) as session:
        try:
            add_user(session, DEMO_USER, password)
        except WebUserExistsError:
            set_password(session, DEMO_USER, password)
    return password


def write_config(settings: Settings, path: Path) -> None:
    """The demo node's settings that other commands need to reach its database, as a configuration file."""
    d = settings.destinations[0]
    engine = settings.engine
    engine_text = f'\n[engine]\nname = "{engine.name}"\n'
    if engine.name == "bayesian-unet":
        engine_text += f'bundle_path = "{engine.bundle_path}"\nmc_samples = {engine.mc_samples}\n'
    path.write_text(
        "# The configuration `sarcoscreen demo` ran with: sarcoscreen --config this-file results|jobs|run\n"
        f'[network]\nhost = "127.0.0.1"\nport = {settings.network.port}\nstable_age_s = '
        f"{settings.network.stable_age_s}\n\n"
        f'[database]\nurl = "{settings.database.url}"\n\n[storage]\ndata_dir = "{settings.storage.data_dir}"\n\n'
        f'[[destinations]]\nname = "{d.name}"\nae_title = "{d.ae_title}"\nhost = "{d.host}"\nport = {d.port}\n'
        + engine_text, encoding="utf-8")


def _progress(session: Session, series_uid: str) -> tuple[str, Job | None, int, int]:
    """The series' state, its latest job, and how many of that job's deliveries were accepted, of how many."""
    series = session.execute(select(Series).where(Series.series_instance_uid == series_uid)).scalar_one_or_none()
    if series is None:
        return "not indexed yet", None, 0, 0
    job = session.execute(select(Job).where(Job.series_id == series.id).order_by(Job.id.desc()).limit(1)
                          ).scalar_one_or_none()
    deliveries = session.execute(select(Delivery.status).join(Output).where(Output.job_id == job.id)
                                 ).scalars().all() if job else []
    sent = sum(status is DeliveryStatus.SENT for status in deliveries)
    return series.state.value, job, sent, len(deliveries)


def wait_for_delivery(db: Engine, series_uid: str, timeout: float) -> tuple[str, Job | None]:
    """Follow the series through the node, printing each change; until delivered, failed or `timeout`."""
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    shown = ""
    while time.monotonic() < deadline:
        with Session(db) as session:
            state, job, sent, total = _progress(session, series_uid)
        job_text = f", job {job.id} {job.status.value}" if job else ""
        delivery_text = f", {sent}/{total} outputs accepted by the destination" if total else ""
        line = f"{state}{job_text}{delivery_text}"
        if line != shown:
            print(f"    {time.monotonic() - started:5.1f} s  series {line}")
            shown = line
        if state in (State.SKIPPED.value, State.FAILED.value):
            return state, job
        if job is not None and job.status is JobStatus.DONE and total and sent == total:
            return "delivered", job
        time.sleep(0.3)
    return "timeout", None


def skip_reason(db: Engine, series_uid: str) -> str | None:
    """Why the node skipped the series (routing, or no gluteal muscle found), if it did."""
    with Session(db) as session:
        return session.execute(select(Series.skip_reason).where(Series.series_instance_uid == series_uid)
                               ).scalar_one_or_none()
