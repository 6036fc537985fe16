"""TLS associations: dcmtk storescu --tls and our SCU against the SCP, client certificates required."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest
from certificates import make_pki
from dicom_peers import free_port
from test_scp import RecordingIndex

from sarcoscreen.node.dicom_sender import DestinationError, parse_destination, send_files
from sarcoscreen.node.scp import StorageSCP
from sarcoscreen.node.spool import Spool
from sarcoscreen.node.tls import TlsConfigError, client_context, server_context

pytestmark = pytest.mark.skipif(shutil.which("storescu") is None, reason="dcmtk is not installed")


def test_tls_with_required_client_certificate(tmp_path: Path, shared_data: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    spool = Spool(tmp_path / "spool", tmp_path / "quarantine")
    scp = StorageSCP(spool, RecordingIndex(), ae_title="SARCO", host="127.0.0.1", port=free_port(),
                     tls=server_context(pki.server_cert, pki.server_key, pki.ca, require_client_certificate=True))
    scp.start()
    files = sorted((shared_data / "dcmqi" / "ct-3slice").iterdir())
    try:
        # dcmtk with a client certificate, verifying our server certificate.
        result = subprocess.run(
            ["storescu", "-v", "+tls", str(pki.client_key), str(pki.client_cert), "+cf", str(pki.ca),
             "-aec", "SARCO", "127.0.0.1", str(scp.port), str(files[0])],
            capture_output=True, text=True, timeout=60, check=False)
        assert "Received Store Response (Success)" in result.stdout + result.stderr
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


def test_bad_tls_files_are_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(TlsConfigError, match=r"nope\.pem"):
        server_context(missing, missing)
    pki = make_pki(tmp_path / "pki")
    with pytest.raises(TlsConfigError, match="needs a CA bundle"):
        server_context(pki.server_cert, pki.server_key, None, require_client_certificate=True)
