"""TLS for the two listeners, and the client certificate handed to the gate app.

Both listeners refuse anything older than TLS 1.2. The gate listener requires a client
certificate chaining to ``Settings.tls_ca`` (checked during the handshake by OpenSSL),
and :class:`ClientCertH11Protocol` puts the verified leaf certificate into the ASGI
scope under the ASGI TLS extension (``scope["extensions"]["tls"]``), so routes can bind
the certificate to the gate id it claims.
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = [
    "ClientCertH11Protocol",
    "PeerCertificate",
    "gate_ssl_context",
    "peer_certificate",
    "staff_ssl_context",
]


def staff_ssl_context(cert: Path, key: Path) -> ssl.SSLContext:
    """Server-authenticated TLS 1.2+ for the staff API."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["http/1.1"])
    return context


def gate_ssl_context(cert: Path, key: Path, ca: Path) -> ssl.SSLContext:
    """Mutual TLS 1.2+ for the gate API: clients must present a cert from ``ca``."""
    context = staff_ssl_context(cert, key)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=str(ca))
    return context


class PeerCertificate:
    """The verified client certificate of a gate connection."""

    def __init__(self, der: bytes) -> None:
        self.der = der
        self.sha256 = hashlib.sha256(der).hexdigest()
        cert = x509.load_der_x509_certificate(der)
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        value = names[0].value if names else ""
        self.common_name = value if isinstance(value, str) else value.decode("utf-8", "replace")


def peer_certificate(scope: MutableMapping[str, Any]) -> PeerCertificate | None:
    """The client certificate recorded for this request, if the connection had one."""
    tls = scope.get("extensions", {}).get("tls", {})
    der = tls.get("client_cert_der")
    return PeerCertificate(der) if isinstance(der, bytes) else None


class ClientCertH11Protocol(H11Protocol):
    """uvicorn's h11 protocol plus the client certificate in the ASGI scope.

    The certificate is read once per connection, after the handshake OpenSSL already
    verified, and every request on the connection sees it.
    """

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if der is None:
            return
        inner = self.app

        async def with_cert(scope: Any, receive: Any, send: Any) -> None:
            extensions = dict(scope.get("extensions") or {})
            extensions["tls"] = {"client_cert_der": der, "tls_version": ssl_object.version()}
            await inner({**scope, "extensions": extensions}, receive, send)

        self.app = with_cert
