"""TLS contexts for DICOM associations (PS3.15 Annex B, BCP 195 profile: TLS 1.2 or newer).

The node's SCP uses a server certificate and, when configured, requires clients to present a certificate signed
by the given CA bundle; the sender verifies the destination's certificate against a CA bundle and may present a
client certificate of its own. `handshake_failure` says in a few words why a handshake failed, for the log.
"""

from __future__ import annotations

import ssl
from pathlib import Path

__all__ = ["TlsConfigError", "client_context", "handshake_failure", "server_context"]


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


_NOT_TLS = frozenset({"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "HTTPS_PROXY_REQUEST", "UNKNOWN_PROTOCOL",
                      "PACKET_LENGTH_TOO_LONG", "RECORD_LENGTH_MISMATCH"})
"""OpenSSL's reasons when the first bytes are not a TLS record: a DICOM A-ASSOCIATE-RQ, an HTTP request..."""
_NO_VERSION = frozenset({"UNSUPPORTED_PROTOCOL", "NO_PROTOCOLS_AVAILABLE", "TLSV1_ALERT_PROTOCOL_VERSION",
                         "VERSION_TOO_LOW"})
_CLOSED = frozenset({"UNEXPECTED_EOF_WHILE_READING", "EOF_IN_VIOLATION_OF_PROTOCOL"})


def handshake_failure(exc: BaseException, timeout_s: float | None = None) -> str:
    """Why a server-side TLS handshake failed, in words: "plain TCP, not TLS", "no client certificate (one is
    required)", "certificate verify failed: <OpenSSL's verify message>", "the peer refused our certificate (TLS
    alert unknown ca)"... Built from OpenSSL's reason code and verify message only: nothing the peer sent."""
    if isinstance(exc, TimeoutError):
        return f"no TLS handshake within {timeout_s:g} s" if timeout_s is not None else "no TLS handshake in time"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLEOFError | ConnectionError):
        return "the peer closed the connection during the handshake"
    if not isinstance(exc, ssl.SSLError):
        return f"{type(exc).__name__}: {exc.strerror or 'connection error'}" if isinstance(exc, OSError) \
            else type(exc).__name__
    reason = str(exc.reason or "")
    if reason in _NOT_TLS:
        return "plain TCP, not TLS (the peer did not start a TLS handshake)"
    if reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE":
        return "no client certificate (one is required)"
    if reason in _NO_VERSION:
        return "no TLS version in common (TLS 1.2 or newer is required)"
    if reason == "NO_SHARED_CIPHER":
        return "no cipher suite in common"
    if reason in _CLOSED:
        return "the peer closed the connection during the handshake"
    alert = next((reason[len(prefix):] for prefix in ("TLSV1_ALERT_", "SSLV3_ALERT_", "TLSV13_ALERT_")
                  if reason.startswith(prefix)), None)
    if alert is not None:
        text = alert.lower().replace("_", " ")
        if alert in ("UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_UNKNOWN", "CERTIFICATE_EXPIRED"):
            return f"the peer refused our certificate (TLS alert {text})"
        return f"the peer ended the handshake (TLS alert {text})"
    return reason.lower().replace("_", " ") or "TLS error"
