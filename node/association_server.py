"""The SCP's listening side: pynetdicom's threaded association server, with the TLS handshake where it belongs.

pynetdicom wraps each accepted socket in its `ssl.SSLContext` inside the loop that accepts connections
(`AssociationServer.get_request`): the handshake runs there, on a blocking socket without a timeout, so one client
that connects and says nothing holds up every other peer, and a refused handshake is dropped without a word
(`socketserver` ignores the `OSError`). Here the loop only accepts; the handshake runs on the connection's own
thread, bounded by the ACSE timeout, and a refused one is logged with the peer's address and the reason
(`sarcoscreen.node.tls.handshake_failure`: plain TCP, no client certificate, certificate verify failed, ...) -
never a certificate's subject or anything the peer sent. An association starts only after a good handshake.

`NodeAE` is pynetdicom's `AE` whose `start_server` makes this server (through `AE.make_server`'s documented
`server_class`).
"""

from __future__ import annotations

import logging
import socket
import ssl
from typing import Any

from pynetdicom import AE
from pynetdicom.transport import ThreadedAssociationServer

from sarcoscreen.node.tls import handshake_failure

__all__ = ["AssociationServer", "NodeAE"]

logger = logging.getLogger("sarcoscreen.node.scp")


class AssociationServer(ThreadedAssociationServer):
    """`ThreadedAssociationServer` with the TLS handshake on each connection's thread (see the module)."""

    daemon_threads = True
    """A connection's thread before its association starts holds no data: the process need not wait for it."""
    block_on_close = False

    def serve_forever(self, poll_interval: float = 0.1) -> None:
        """`socketserver`'s loop, which `shutdown` waits for: polled every 0.1 s rather than 0.5 s, so stopping
        takes a tenth of a second, not half a second."""
        super().serve_forever(poll_interval)

    def get_request(self) -> tuple[socket.socket, Any]:
        """Accept only; `process_request_thread` does the handshake."""
        assert self.socket is not None
        return self.socket.accept()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        if self.ssl_context is not None:
            request = self._handshake(self.ssl_context, request, client_address)
            if request is None:
                return
        super().process_request_thread(request, client_address)

    def _handshake(self, context: ssl.SSLContext, connection: socket.socket, peer: Any) -> ssl.SSLSocket | None:
        """The TLS socket after a good handshake; ``None`` (logged, connection closed) otherwise."""
        timeout = self.ae.acse_timeout
        connection.settimeout(timeout)
        try:
            secured = context.wrap_socket(connection, server_side=True, do_handshake_on_connect=False)
        except (ssl.SSLError, OSError) as exc:
            connection.close()
            self._refused(peer, handshake_failure(exc, timeout))
            return None
        try:
            secured.do_handshake()
        except (ssl.SSLError, OSError) as exc:
            secured.close()
            self._refused(peer, handshake_failure(exc, timeout))
            return None
        secured.settimeout(None)  # as pynetdicom's accepted sockets are: its transport has its own timeouts
        return secured

    @staticmethod
    def _refused(peer: Any, reason: str) -> None:
        host, port = (peer[0], peer[1]) if isinstance(peer, tuple) else (str(peer), 0)
        logger.warning("TLS handshake with %s:%d failed: %s; no association", host, port, reason)


class NodeAE(AE):
    """pynetdicom's `AE` whose servers are `AssociationServer`s."""

    def make_server(self, address: Any, ae_title: str | None = None, contexts: Any = None,
                    ssl_context: ssl.SSLContext | None = None, evt_handlers: Any = None, server_class: Any = None,
                    **kwargs: Any) -> Any:
        return super().make_server(address, ae_title=ae_title, contexts=contexts, ssl_context=ssl_context,
                                   evt_handlers=evt_handlers, server_class=AssociationServer, **kwargs)
