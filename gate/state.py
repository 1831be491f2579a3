"""The gate's state directory: what ``veilmatch gate init`` writes and the agent reads.

Layout (``DIR``; the directory is 0700, every secret 0600 and refused if looser,
``gate.secretfile``)::

    gate.json        configuration: gate id, site, service URL, HE parameter set (not secret)
    state.kek        32-byte key-encryption key sealing he-keys.sealed and the queue  (secret)
    signing.key      Ed25519 request-signing key, raw 32 bytes                        (secret)
    he-keys.sealed   HE key bundle (secret key, public key, rotation keys), sealed    (secret)
    tls.key          TLS client key, ECDSA P-256, PKCS #8 PEM                         (secret)
    tls.csr          its certificate signing request, CN = gate id
    tls.crt          the certificate the CA holder issued from tls.csr (operator copies it)
    ca.crt           the deployment CA that signed the service's certificate
    pseudonym.key    the deployment's pseudonymisation key (shared by the gates)      (secret)
    queue.sqlite3    the offline queue (gate.offline_queue; payloads sealed with state.kek)
    status.json      the agent's last heartbeat and counters (``gate status`` reads it)

Usage::

    paths = init_state(Path("/var/lib/veilmatch-gate"), GateConfig.new(
        "lo-wu-07", "lo-wu", "https://match.example:8444"), pseudonym_key=key_bytes)
    gate = GateState.load(paths.root)          # every check again, on every start
    client = gate.client()
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from crypto.atrest import FileKek
from crypto.errors import CryptoError
from crypto.he import GateKeyBundle, get_parameter_set
from crypto.signing import SigningKey
from gate.client import GateClient, SealGateCrypto, pseudonymise
from gate.errors import GateStateError
from gate.offline_queue import OfflineQueue
from gate.secretfile import read_secret, write_secret
from gate.tlsreq import make_key_and_csr

__all__ = ["STATE_FORMAT", "GateConfig", "GatePaths", "GateState", "init_state"]

STATE_FORMAT = 1
_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
#: Shortest pseudonymisation key accepted (bytes), as ``gate.client.pseudonymise``.
MIN_PSEUDONYM_KEY = 32


@dataclass(frozen=True)
class GateConfig:
    """``gate.json``. Valid on construction: ids as the service accepts them, an
    ``https://`` service URL, a parameter set this build knows."""

    gate_id: str
    site: str
    service_url: str
    parameter_set: str = "ckks-v2"
    created_at: str = ""
    format: int = STATE_FORMAT

    def __post_init__(self) -> None:
        if _ID.fullmatch(self.gate_id) is None or _ID.fullmatch(self.site) is None:
            raise GateStateError("gate id and site are 1-128 of [A-Za-z0-9._:-]")
        if not self.service_url.startswith("https://"):
            raise GateStateError("the service URL must be https:// (the gate API is mutual TLS)")
        if self.format != STATE_FORMAT:
            raise GateStateError(f"state format {self.format} is not {STATE_FORMAT}")
        try:
            get_parameter_set(self.parameter_set)
        except CryptoError:
            raise GateStateError(f"unknown HE parameter set {self.parameter_set!r}") from None

    @classmethod
    def new(
        cls, gate_id: str, site: str, service_url: str, parameter_set: str = "ckks-v2"
    ) -> GateConfig:
        """A configuration stamped with the current time."""
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        return cls(gate_id, site, service_url.rstrip("/"), parameter_set, now)

    def to_bytes(self) -> bytes:
        """Pretty JSON."""
        return (json.dumps(asdict(self), indent=2) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> GateConfig:
        """Parse ``gate.json``; ``GateStateError`` if it is not what ``init`` wrote."""
        try:
            raw = json.loads(data)
            return cls(**{k: raw[k] for k in raw if k in cls.__dataclass_fields__})
        except (ValueError, TypeError, KeyError):
            raise GateStateError("gate.json does not parse") from None


@dataclass(frozen=True)
class GatePaths:
    """The files of one state directory (see the module docstring)."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "gate.json"

    @property
    def kek(self) -> Path:
        return self.root / "state.kek"

    @property
    def signing_key(self) -> Path:
        return self.root / "signing.key"

    @property
    def he_keys(self) -> Path:
        return self.root / "he-keys.sealed"

    @property
    def tls_key(self) -> Path:
        return self.root / "tls.key"

    @property
    def tls_csr(self) -> Path:
        return self.root / "tls.csr"

    @property
    def tls_cert(self) -> Path:
        return self.root / "tls.crt"

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.crt"

    @property
    def pseudonym_key(self) -> Path:
        return self.root / "pseudonym.key"

    @property
    def queue(self) -> Path:
        return self.root / "queue.sqlite3"

    @property
    def status(self) -> Path:
        return self.root / "status.json"


def init_state(
    root: Path,
    config: GateConfig,
    *,
    pseudonym_key: bytes,
    ca_cert: bytes | None = None,
    progress: Callable[[str], None] = lambda _line: None,
) -> GatePaths:
    """Create the state directory with fresh keys. Refuses a non-empty directory (a
    gate's keys are never overwritten by accident) and a pseudonymisation key shorter
    than 32 bytes. ``gate.json`` is written last, so a directory without it is an
    interrupted ``init`` (delete it and start again)."""
    if len(pseudonym_key) < MIN_PSEUDONYM_KEY:
        raise GateStateError(f"the pseudonymisation key must be at least {MIN_PSEUDONYM_KEY} bytes")
    if root.exists() and any(root.iterdir()):
        raise GateStateError(f"{root} is not empty; a gate is initialised once per directory")
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(root, 0o700)
    paths = GatePaths(root)
    write_secret(paths.pseudonym_key, pseudonym_key)
    kek = FileKek.generate(paths.kek)
    write_secret(paths.signing_key, SigningKey.generate().private_bytes())
    progress(f"generating HE keys ({config.parameter_set}, with rotation keys)")
    GateKeyBundle.generate(get_parameter_set(config.parameter_set)).save(paths.he_keys, kek)
    tls_key, csr = make_key_and_csr(config.gate_id)
    write_secret(paths.tls_key, tls_key)
    paths.tls_csr.write_bytes(csr)
    if ca_cert is not None:
        paths.ca_cert.write_bytes(ca_cert)
    paths.config.write_bytes(config.to_bytes())
    return paths


@dataclass
class GateState:
    """A loaded state directory: configuration and keys, every secret checked."""

    paths: GatePaths
    config: GateConfig
    kek: FileKek
    signing_key: SigningKey
    he: SealGateCrypto
    pseudonym_key: bytes

    @classmethod
    def load(cls, root: Path) -> GateState:
        """Read and check everything ``init`` wrote (``GateStateError`` naming the file)."""
        paths = GatePaths(root)
        if not paths.config.is_file():
            raise GateStateError(f"{root} has no gate.json: run `veilmatch gate init` first")
        if os.stat(root).st_mode & 0o077:
            raise GateStateError(f"{root} is accessible by group or others; it must be 0700")
        config = GateConfig.from_bytes(paths.config.read_bytes())
        kek = FileKek(read_secret(paths.kek))
        try:
            signing = SigningKey.from_private_bytes(read_secret(paths.signing_key))
            keys = GateKeyBundle.from_sealed_bytes(read_secret(paths.he_keys), kek)
        except CryptoError as exc:
            raise GateStateError(f"gate keys do not load: {type(exc).__name__}") from None
        read_secret(paths.tls_key)  # mode check now rather than at the first TLS handshake
        return cls(
            paths, config, kek, signing, SealGateCrypto(keys), read_secret(paths.pseudonym_key)
        )

    @property
    def he_created_at(self) -> dt.datetime:
        """When the current HE keys were made (rotation age)."""
        created: dt.datetime = self.he.keys.created_at
        return created

    def client(
        self, *, clock: Callable[[], float] = time.time, timeout_s: float = 30.0
    ) -> GateClient:
        """A :class:`GateClient` for the service, over mutual TLS with this gate's
        certificate; ``GateStateError`` if the certificate or CA is not there yet."""
        for path, what in ((self.paths.tls_cert, "certificate"), (self.paths.ca_cert, "CA")):
            if not path.is_file():
                raise GateStateError(
                    f"no TLS {what} at {path}: have {self.paths.tls_csr} signed by the "
                    "deployment CA and copy the certificate and the CA there (docs/gate.md)"
                )
        return GateClient(
            self.config.service_url,
            gate_id=self.config.gate_id,
            cert=self.paths.tls_cert,
            key=self.paths.tls_key,
            ca=self.paths.ca_cert,
            signing_key=self.signing_key,
            he=self.he,
            clock=clock,
            timeout_s=timeout_s,
        )

    def queue(self, **bounds: Any) -> OfflineQueue:
        """The offline queue in this directory, sealed with the state KEK."""
        return OfflineQueue(self.paths.queue, self.kek, **bounds)

    def pseudonym(self, document_number: str) -> str:
        """The keyed pseudonym of a document number (the number never leaves the gate)."""
        return pseudonymise(self.pseudonym_key, document_number)

    def save_keys(self, signing_key: SigningKey, he: SealGateCrypto) -> None:
        """Replace both keys on disk after a rotation the service accepted (atomic per
        file; the HE bundle first, since a signing key without its HE key is useless)."""
        he.keys.save(self.paths.he_keys, self.kek)
        write_secret(self.paths.signing_key, signing_key.private_bytes(), replace=True)
        self.signing_key, self.he = signing_key, he
