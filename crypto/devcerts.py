"""Development PKI: a CA, a server certificate and gate client certificates.

For development and tests only; production deployments bring their own CA. Keys are
written with mode 0600 into the key directory and are never committed.

:func:`sign_gate_csr` is the CA holder's side of ``veilmatch gate init``: it issues a
gate's client certificate from the CSR the gate made (the gate's private key never
leaves it), with the development CA or any CA certificate and key given to it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "VALIDITY",
    "DevPki",
    "issue_gate_cert",
    "load_ca",
    "load_ca_files",
    "make_dev_pki",
    "sign_gate_csr",
]

VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True)
class DevPki:
    """Paths of the files ``make_dev_pki`` wrote."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    gate_certs: dict[str, tuple[Path, Path]]


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "veilmatch development"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    usage: x509.ObjectIdentifier,
    san: list[x509.GeneralName],
    now: dt.datetime,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def load_ca(key_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Load the development CA written by :func:`make_dev_pki`."""
    return load_ca_files(key_dir / "ca.crt", key_dir / "ca.key")


def issue_gate_cert(
    key_dir: Path, gate_id: str, now: dt.datetime | None = None
) -> tuple[Path, Path]:
    """Issue a client certificate (CN = ``gate_id``) signed by the development CA."""
    now = now or dt.datetime.now(dt.UTC)
    ca_cert, ca_key = load_ca(key_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _issue(gate_id, key, ca_cert, ca_key, ExtendedKeyUsageOID.CLIENT_AUTH, [], now)
    cert_path, key_path = key_dir / f"gate-{gate_id}.crt", key_dir / f"gate-{gate_id}.key"
    _write_cert(cert_path, cert)
    _write_key(key_path, key)
    return cert_path, key_path


def sign_gate_csr(
    csr_pem: bytes,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    *,
    gate_id: str | None = None,
    validity: dt.timedelta = VALIDITY,
    now: dt.datetime | None = None,
) -> bytes:
    """A PEM client certificate for the gate whose PEM CSR is ``csr_pem``.

    Checks, raising ``ValueError`` with the reason: the CSR parses, its self-signature
    verifies (the requester holds the key), it names exactly one common name, and that
    name equals ``gate_id`` when given (the CA holder states which gate they expect).
    Only the common name and the public key are taken from the CSR; any extensions it
    requests are ignored (client authentication only, never a CA).
    """
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError:
        raise ValueError("not a PEM certificate signing request") from None
    if not csr.is_signature_valid:
        raise ValueError("the CSR's signature does not verify")
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1 or not str(names[0].value):
        raise ValueError("the CSR must name exactly one common name (the gate id)")
    common_name = str(names[0].value)
    if gate_id is not None and common_name != gate_id:
        raise ValueError(f"the CSR is for {common_name!r}, not {gate_id!r}")
    public = csr.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise ValueError("the CSR's key is not an elliptic-curve key")
    now = now or dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    cert = builder.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM)


def load_ca_files(
    cert_path: Path, key_path: Path
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A CA certificate and its EC private key from PEM files (``ValueError`` if not)."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key is not an elliptic-curve private key")
    return cert, key


def make_dev_pki(
    key_dir: Path,
    gate_ids: list[str],
    hostnames: tuple[str, ...] = ("localhost",),
    ips: tuple[str, ...] = ("127.0.0.1", "::1"),
    force: bool = False,
    now: dt.datetime | None = None,
) -> DevPki:
    """Create (or reuse, unless ``force``) the CA, the server cert and the gates' certs."""
    now = now or dt.datetime.now(dt.UTC)
    key_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(key_dir, 0o700)
    ca_cert_path, ca_key_path = key_dir / "ca.crt", key_dir / "ca.key"
    if force or not (ca_cert_path.exists() and ca_key_path.exists()):
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(_name("veilmatch development CA"))
            .issuer_name(_name("veilmatch development CA"))
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        _write_cert(ca_cert_path, ca_cert)
        _write_key(ca_key_path, ca_key)
        force = True  # a new CA invalidates everything it issued before
    ca_cert, ca_key = load_ca(key_dir)
    server_cert, server_key = key_dir / "server.crt", key_dir / "server.key"
    if force or not server_cert.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        san: list[x509.GeneralName] = [x509.DNSName(h) for h in hostnames]
        san += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        cert = _issue("localhost", key, ca_cert, ca_key, ExtendedKeyUsageOID.SERVER_AUTH, san, now)
        _write_cert(server_cert, cert)
        _write_key(server_key, key)
    gates: dict[str, tuple[Path, Path]] = {}
    for gate_id in gate_ids:
        cert_path = key_dir / f"gate-{gate_id}.crt"
        if force or not cert_path.exists():
            gates[gate_id] = issue_gate_cert(key_dir, gate_id, now)
        else:
            gates[gate_id] = (cert_path, key_dir / f"gate-{gate_id}.key")
    return DevPki(ca_cert_path, ca_key_path, server_cert, server_key, gates)
