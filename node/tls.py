"""TLS contexts for DICOM associations (PS3.15 Annex B, BCP 195 profile: TLS 1.2 or newer).

The node's SCP uses a server certificate and, when configured, requires clients to present a certificate signed
by the given CA bundle; the sender verifies the destination's certificate against a CA bundle and may present a
client certificate of its own.
"""

from __future__ import annotations

import ssl
from pathlib import Path

__all__ = ["TlsConfigError", "client_context", "server_context"]


class TlsConfigError(Exception):
    """A certificate, key or CA file that cannot be used; the message names the file."""


def _load_chain(context: ssl.SSLContext, certificate: Path, private_key: Path) -> None:
    try:
        context.load_cert_chain(certfile=str(certificate), keyfile=str(private_key))
    except (OSError, ssl.SSLError) as exc:
        raise TlsConfigError(f"cannot load certificate {certificate} with key {private_key}: {exc}") from None


def _load_cas(context: ssl.SSLContext, ca_certificates: Path) -> None:
    try:
        context.load_verify_locations(cafile=str(ca_certificates))
    except (OSError, ssl.SSLError) as exc:
        raise TlsConfigError(f"cannot load CA certificates {ca_certificates}: {exc}") from None


def server_context(certificate: Path, private_key: Path, ca_certificates: Path | None = None,
                   require_client_certificate: bool = False) -> ssl.SSLContext:
    """A server-side context: our certificate; client certificates verified against `ca_certificates`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(context, certificate, private_key)
    if ca_certificates is not None:
        _load_cas(context, ca_certificates)
        context.verify_mode = ssl.CERT_REQUIRED if require_client_certificate else ssl.CERT_OPTIONAL
    elif require_client_certificate:
        raise TlsConfigError("requiring client certificates needs a CA bundle to verify them against")
    return context


def client_context(ca_certificates: Path | None = None, certificate: Path | None = None,
                   private_key: Path | None = None, check_hostname: bool = True) -> ssl.SSLContext:
    """A client-side context verifying the server against `ca_certificates` (system CAs when omitted)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = check_hostname
    if ca_certificates is not None:
        _load_cas(context, ca_certificates)
    if certificate is not None and private_key is not None:
        _load_chain(context, certificate, private_key)
    return context
