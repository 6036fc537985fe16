"""Wiring of the node: ``sarcoscreen serve`` (SCP + series watcher + sender) and ``sarcoscreen run`` (the same
plus worker processes), with a clean shutdown on SIGTERM/SIGINT.

Start-up order: prepare the storage (`sarcoscreen.node.storage_setup`: folders and the SQLite file created with the
configured modes, wider modes of what exists logged - or refused with ``storage.strict_modes`` - and a spool that
cannot be written told), migrate the database (``database.migrate_on_start``), reconcile the spool with the index
(`sarcoscreen.node.reconcile`), then start the series watcher, the sender, the retention sweeper
(`sarcoscreen.node.retention`), the workers (``run``) and the Storage SCP, so that nothing is acknowledged
before the node can record it, and last, with ``web.enabled_in_serve``, the QA web console (uvicorn in a thread:
`sarcoscreen.node.web.server.ConsoleServer`). Shutdown runs in reverse: the console stops taking requests, the SCP
stops accepting associations and aborts the ones in progress (a C-STORE being stored finishes first:
`StorageSCP.stop`), then the watcher, the retention sweeper, the sender, and the workers (each finishes its current
job).
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from sarcoscreen.db.migrate import ensure_schema
from sarcoscreen.db.session import create_engine_from_url, mask_url
from sarcoscreen.node.config import Settings
from sarcoscreen.node.delivery import Sender
from sarcoscreen.node.instance_index import SqlInstanceIndex, open_index_db
from sarcoscreen.node.reconcile import reconcile
from sarcoscreen.node.refusal_log import SqlRefusalLog
from sarcoscreen.node.retention import RetentionSweeper
from sarcoscreen.node.scp import StorageSCP
from sarcoscreen.node.series_watcher import SeriesWatcher
from sarcoscreen.node.storage_setup import StorageSetupError, prepare_storage
from sarcoscreen.node.tls import TlsConfigError, server_context
from sarcoscreen.node.worker_pool import WorkerPool

if TYPE_CHECKING:
    from sarcoscreen.node.web.server import ConsoleServer

__all__ = ["NodeService", "ServiceError", "serve_until_signal"]

logger = logging.getLogger(__name__)


class ServiceError(Exception):
    """The node cannot start; the message says why (port in use, bad certificate, database unreachable...)."""


class NodeService:
    """The node's parts in one process; `workers` > 0 adds that many worker processes (``run``)."""

    def __init__(self, settings: Settings, *, workers: int = 0) -> None:
        self.settings = settings
        self.workers = workers
        self.db: Engine | None = None
        self.scp: StorageSCP | None = None
        self.watcher: SeriesWatcher | None = None
        self.retention: RetentionSweeper | None = None
        self.sender: Sender | None = None
        self.pool: WorkerPool | None = None
        self.index_db: Engine | None = None
        self.console: ConsoleServer | None = None

    @property
    def port(self) -> int:
        return self.scp.port if self.scp is not None else self.settings.network.port

    @property
    def web_port(self) -> int | None:
        """The web console's port while it is served (``web.enabled_in_serve``), else ``None``."""
        return self.console.port if self.console is not None else None

    def _start_console(self, db: Engine) -> None:
        """The QA web console on ``web.host``:``web.port``, on the node's database; `ServiceError` when it cannot
        start."""
        from sarcoscreen.node.web import create_app
        from sarcoscreen.node.web.secret import SecretFileError
        from sarcoscreen.node.web.server import ConsoleServer, ConsoleServerError

        try:
            console = ConsoleServer(create_app(self.settings, db), self.settings.web.host, self.settings.web.port)
            console.start()
        except (SecretFileError, ConsoleServerError) as exc:
            raise ServiceError(str(exc)) from None
        self.console = console

    def start(self) -> None:
        settings = self.settings
        network = settings.network
        try:
            spool = prepare_storage(settings)
        except StorageSetupError as exc:
            raise ServiceError(str(exc)) from None
        if settings.database.migrate_on_start:
            from sarcoscreen.db.migrate import MigrationError

            try:
                ensure_schema(settings.database_url)
            except MigrationError as exc:
                raise ServiceError(str(exc)) from None
        self.db = create_engine_from_url(settings.database_url)
        try:
            reconcile(self.db, spool)
        except SQLAlchemyError as exc:
            raise ServiceError(f"database {mask_url(settings.database_url)}: {type(exc).__name__}: "
                               f"{str(getattr(exc, 'orig', exc)).splitlines()[0]}") from None
        tls = None
        try:
            if network.tls_certificate is not None and network.tls_private_key is not None:
                tls = server_context(network.tls_certificate, network.tls_private_key, network.tls_ca_certificates,
                                     network.tls_require_client_certificate)
            self.sender = Sender(self.db, settings)
        except TlsConfigError as exc:
            raise ServiceError(str(exc)) from None
        self.watcher = SeriesWatcher(self.db, settings)
        self.retention = RetentionSweeper(self.db, settings)
        self.index_db = open_index_db(settings.database_url)
        self.scp = StorageSCP(
            spool, SqlInstanceIndex(self.index_db), ae_title=network.ae_title, host=network.host, port=network.port,
            max_associations=network.max_associations, max_pdu_bytes=network.max_pdu_bytes,
            require_called_ae_title=network.require_called_ae_title, allowed_calling=network.allowed_calling,
            tls=tls, refusals=SqlRefusalLog(self.index_db))
        self.watcher.start()
        self.sender.start()
        self.retention.start()
        if self.workers:
            self.pool = WorkerPool(settings, self.workers)
            self.pool.start()
        try:
            self.scp.start()
        except OSError as exc:
            self.stop()
            raise ServiceError(f"cannot listen on {network.host}:{network.port}: {exc.strerror or exc}") from None
        if settings.web.enabled_in_serve:
            try:
                self._start_console(self.db)
            except ServiceError:
                self.stop()
                raise
        destinations = ", ".join(f"{d.name} ({d.ae_title}@{d.host}:{d.port}{' TLS' if d.tls else ''})"
                                 for d in settings.destinations) or "none configured"
        logger.info("node ready: %s on port %d, database %s, destinations: %s, %d worker processes",
                    network.ae_title, self.scp.port, mask_url(settings.database_url), destinations, self.workers)

    def stop(self) -> None:
        if self.console is not None:
            self.console.stop()
            self.console = None
        if self.scp is not None:
            self.scp.stop()
        if self.watcher is not None:
            self.watcher.stop()
        if self.retention is not None:
            self.retention.stop()
        if self.sender is not None:
            self.sender.stop()
        if self.pool is not None:
            self.pool.stop()
        for engine in (self.index_db, self.db):
            if engine is not None:
                engine.dispose()
        logger.info("node stopped")


def serve_until_signal(settings: Settings, *, workers: int = 0) -> None:
    """Start the node and run until SIGTERM or SIGINT; then stop it cleanly."""
    stop = threading.Event()

    def handler(signum: int, _frame: FrameType | None) -> None:
        logger.info("signal %d: shutting down", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    service = NodeService(settings, workers=workers)
    service.start()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        service.stop()
