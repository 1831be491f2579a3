"""The gate's TLS client key and its certificate signing request (PKCS #10).

The private key (ECDSA P-256) is made on the gate and never leaves it; the CSR carries
the gate id as its common name, which is what the service's mutual TLS checks against
the id in every signed request. The deployment's CA holder signs the CSR
(``veilmatch dev sign-csr``, or the deployment's own CA tooling) and the operator puts
the certificate next to it (``docs/gate.md``, *Certificates*).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gate.errors import GateStateError

__all__ = ["CertificateInfo", "certificate_info", "make_key_and_csr"]


def make_key_and_csr(gate_id: str) -> tuple[bytes, bytes]:
    """(PKCS #8 PEM private key, PEM CSR with ``CN=gate_id``), freshly generated."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "veilmatch gate"),
            x509.NameAttribute(NameOID.COMMON_NAME, gate_id),
        ]
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    pem_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem_key, csr.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class CertificateInfo:
    """What ``gate status`` shows of the gate's certificate."""

    common_name: str
    not_after: dt.datetime
    matches_key: bool


def certificate_info(cert_pem: bytes, key_pem: bytes) -> CertificateInfo:
    """Common name, expiry and whether the certificate is for this gate's key;
    ``GateStateError`` if either does not parse."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, None)
    except ValueError:
        raise GateStateError("the TLS certificate or key does not parse") from None
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    common_name = str(names[0].value) if names else ""
    ours = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    theirs = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return CertificateInfo(common_name, cert.not_valid_after_utc, ours == theirs)
