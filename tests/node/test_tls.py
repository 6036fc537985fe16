"""TLS associations: dcmtk storescu --tls and our SCU against the SCP, client certificates required."""

from __future__ import annotations

import dataclasses
import logging
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from certificates import Pki, make_pki
from dcmtk import ScuRun, echoscu, requires_dcmtk, storescu
from dicom_peers import free_port
from node_support import wait_for
from test_scp import RecordingIndex

from sarcoscreen.node.scp import StorageSCP
from sarcoscreen.node.spool import Spool
from sarcoscreen.node.storage_scu import DestinationError, parse_destination, send_files
from sarcoscreen.node.tls import TlsConfigError, client_context, server_context

pytestmark = requires_dcmtk("storescu", "echoscu")


def test_tls_with_required_client_certificate(tmp_path: Path, shared_data: Path, pki: Pki) -> None:
    spool = Spool(tmp_path / "spool", tmp_path / "quarantine")
    scp = StorageSCP(spool, RecordingIndex(), ae_title="SARCO", host="127.0.0.1", port=free_port(),
                     tls=server_context(pki.server_cert, pki.server_key, pki.ca, require_client_certificate=True))
    scp.start()
    files = sorted((shared_data / "dcmqi" / "ct-3slice").iterdir())
    try:
        # dcmtk with a client certificate, verifying our server certificate.
        run = storescu(scp.port, files[:1], extra=["+tls", pki.client_key, pki.client_cert, "+cf", pki.ca],
                       timeout=60)
        assert run.statuses == [0x0000], run.problems
        # Our SCU with a client certificate.
        destination = parse_destination(f"SARCO@127.0.0.1:{scp.port}")
        secured = dataclasses.replace(destination, tls=client_context(pki.ca, pki.client_cert, pki.client_key))
        assert send_files(files[1:], secured).sent == 2
        # Without a client certificate the TLS handshake fails: nothing is stored.
        anonymous = dataclasses.replace(destination, tls=client_context(pki.ca))
        with pytest.raises(DestinationError):
            send_files(files[:1], anonymous, timeout=5)
        # Plain TCP to a TLS port: no association.
        with pytest.raises(DestinationError):
            send_files(files[:1], destination, timeout=5)
    finally:
        scp.stop()
    assert len(list(spool.walk())) == 3


def test_bad_tls_files_are_named(tmp_path: Path, pki: Pki) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(TlsConfigError, match=r"nope\.pem"):
        server_context(missing, missing)
    with pytest.raises(TlsConfigError, match="needs a CA bundle"):
        server_context(pki.server_cert, pki.server_key, None, require_client_certificate=True)


@dataclasses.dataclass(frozen=True)
class Stranger:
    """A client certificate no CA of ours signed (self-signed, EC: made in milliseconds)."""

    key: Path
    cert: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> Stranger:
    folder = tmp_path_factory.mktemp("stranger")
    key, cert = folder / "client.key", folder / "client.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=sarcoscreen test stranger"],
                   check=True, capture_output=True, timeout=60)
    return Stranger(key, cert)


@pytest.fixture
def tls_scp(tmp_path: Path, pki: Pki) -> Iterator[StorageSCP]:
    scp = StorageSCP(Spool(tmp_path / "spool", tmp_path / "quarantine"), RecordingIndex(), ae_title="SARCO",
                     host="127.0.0.1", port=free_port(),
                     tls=server_context(pki.server_cert, pki.server_key, pki.ca, require_client_certificate=True))
    scp.start()
    yield scp
    scp.stop()


def _echoscu(scp: StorageSCP, *tls: str | Path) -> ScuRun:
    return echoscu(scp.port, extra=["-to", "10", "-ta", "10", *tls])


def test_refused_tls_handshakes_are_logged_with_the_peer_and_the_reason(
        tls_scp: StorageSCP, pki: Pki, stranger: Stranger, caplog: pytest.LogCaptureFixture) -> None:
    """Plain TCP to the TLS port, TLS without the required client certificate, a certificate of an unknown CA:
    each refused handshake is one warning with the peer's address and the reason (PS3.15 B.1: the node is told
    who tried), and no association follows."""
    caplog.set_level(logging.WARNING, logger="sarcoscreen.node.scp")
    cases = [((), "plain TCP, not TLS"),
             (("+tla", "+cf", pki.ca), "no client certificate"),
             (("+tls", stranger.key, stranger.cert, "+cf", pki.ca), "certificate verify failed")]
    for arguments, reason in cases:
        refused = _echoscu(tls_scp, *arguments)
        assert (refused.association, refused.responses) == ("none", ()), refused
        record = wait_for(f"the log line saying {reason!r}",
                          lambda reason=reason: next((r for r in caplog.records if reason in r.getMessage()), None),
                          timeout=10)
        assert record.levelno == logging.WARNING
        assert record.getMessage().startswith("TLS handshake with 127.0.0.1:")
    assert len(caplog.records) == len(cases)
    # A peer with a certificate of our CA is served, and its handshake is not logged as refused.
    assert _echoscu(tls_scp, "+tls", pki.client_key, pki.client_cert, "+cf", pki.ca).statuses == [0x0000]
    assert len(caplog.records) == len(cases)


def test_a_silent_connection_does_not_hold_up_other_tls_peers(tls_scp: StorageSCP, pki: Pki) -> None:
    """The handshake runs on the connection's own thread, not in the loop that accepts connections: a client
    that connects and says nothing (a port scanner, a peer speaking too late) keeps nobody else waiting."""
    silent = socket.create_connection(("127.0.0.1", tls_scp.port))
    try:
        run = _echoscu(tls_scp, "+tls", pki.client_key, pki.client_cert, "+cf", pki.ca)
        assert run.statuses == [0x0000], run.problems
    finally:
        silent.close()
