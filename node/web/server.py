"""Serving the web console: uvicorn in a thread of this process, started and stopped cleanly (`ConsoleServer`).

Used by ``sarcoscreen web`` (the console alone), by ``serve``/``run`` with ``web.enabled_in_serve`` and by
``sarcoscreen demo``. The listening socket is bound here, before uvicorn starts, so a port in use is told at once
(`ConsoleServerError`) and port 0 gives a free port (`ConsoleServer.port`).

uvicorn logs through sarcoscreen's logging (``uvicorn.error``, and ``uvicorn.access`` with the client address,
method, path with its query string and status of each request). No page puts a patient identifier into a path or
query string (the patient filter is posted: `sarcoscreen.node.web.patient_filter`), so the access log holds none.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

import uvicorn
from starlette.types import ASGIApp

__all__ = ["ConsoleServer", "ConsoleServerError"]

logger = logging.getLogger(__name__)


class ConsoleServerError(Exception):
    """The console cannot listen or did not start; the message says where and why."""


def _listening_socket(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ConsoleServerError(f"web console: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConsoleServerError(f"web console: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


class ConsoleServer:
    """`app` served by uvicorn on `host`:`port` in a daemon thread, between `start` and `stop`."""

    def __init__(self, app: ASGIApp, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self._port = port
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port listened on (the free port chosen for port 0) once started."""
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self, timeout: float = 30.0) -> None:
        """Listen and serve; returns once uvicorn accepts requests. `ConsoleServerError` when it cannot."""
        self._socket = _listening_socket(self.host, self._port)
        self._port = int(self._socket.getsockname()[1])
        config = uvicorn.Config(self.app, log_config=None, access_log=True, lifespan="off", server_header=False,
                                timeout_graceful_shutdown=5)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]},
                                        name="web-console", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise ConsoleServerError(f"web console: uvicorn did not start on {self.host}:{self.port}")
            time.sleep(0.02)
        logger.info("web console listening on %s", self.url)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting requests, let the ones in progress finish (at most 5 s), and close the socket."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("web console: the server thread did not stop within %g s", timeout)
        if self._socket is not None:
            self._socket.close()
        self._server, self._thread, self._socket = None, None, None
