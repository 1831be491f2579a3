"""The gate's client for the matching service: encrypt, sign, send over mTLS, reveal.

Usage::

    client = GateClient(
        "https://service:8444", gate_id="shenzhen-bay-1", cert=cert, key=key, ca=ca,
        signing_key=SigningKey.generate(), he=SealGateCrypto.generate("ckks-v2"),
    )
    client.register(site="shenzhen-bay")          # then an admin approves the gate
    outcome = client.check(template, doc_pseudonym=pseudonymise(shared_key, doc_no))
    outcome.outcome                                # "proceed" | "secondary"

Protocol per traveller: ``POST /gate/v1/match`` with the encrypted probe (and the
document pseudonym, never the number); decrypt the masked result locally and keep
only the positive positions (raw decrypted values never leave this process);
``POST /gate/v1/reveal`` with those positions; show the outcome. Every request is
signed (``crypto.signing``) over its exact body bytes and carries a request id so a
retry is idempotent.

The messages are ``protocol.messages`` (the service parses the same frames with the
same checks, ``protocol.wire`` and ``docs/api.md``): the match exchange is binary
frames, so the probe and the masked result travel as raw bytes, not base64 inside
JSON. A response that does not parse is :class:`ServiceProtocolError`.

When the service is unreachable, :meth:`GateClient.check_or_queue` stores the encrypted
probe in the gate's :class:`~gate.offline_queue.OfflineQueue`; :meth:`drain` sends the
backlog when the link returns.

Prepared queries (single-ciphertext parameter sets, ckks-v2): every match request also
carries ``next_seed``, the 32-byte seed of ``a`` under which the gate will encrypt its
*next* probe, so the service can do that query's template-independent half while it is
idle. :meth:`GateClient.encrypt` keeps at most one committed seed for the current HE
key: it takes it (clearing it before encrypting, so it never serves two templates —
two templates under one ``a`` would reveal their difference to the service), then
commits a fresh ``os.urandom`` seed and returns it with the probe. A key rotation
drops the commitment. Committing early is safe: ``a`` is public in RLWE.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import ssl
import threading
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import numpy as np
import numpy.typing as npt

from crypto.signing import RequestSigner, SigningKey
from gate.errors import GateError
from protocol.errors import ProtocolError
from protocol.messages import MatchRequest, MatchResponse, RevealRequest, RevealResponse
from protocol.wire import MATCH_REQUEST_TYPE, MATCH_RESPONSE_TYPE, is_media_type

__all__ = [
    "GateClient",
    "GateCrypto",
    "MatchOutcome",
    "SealGateCrypto",
    "SealedProbe",
    "ServiceProtocolError",
    "ServiceRefusedError",
    "ServiceUnreachableError",
    "pseudonymise",
]


#: Bytes of a probe seed (``crypto.he.wire.SEED_BYTES``).
SEED_BYTES = 32


class ServiceUnreachableError(GateError):
    """The service could not be reached (network, TLS handshake, timeout)."""


class ServiceProtocolError(GateError):
    """The service's answer does not parse as the protocol's message (a bug or a
    man in the middle; the request may have been processed)."""


class ServiceRefusedError(GateError):
    """The service answered with a problem response; ``code`` is its stable error code."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"service refused ({status} {code}): {detail}")
        self.status = status
        self.code = code


def pseudonymise(shared_key: bytes, document_number: str) -> str:
    """HMAC-SHA256 of the normalised document number under the gates' shared key (hex).

    The service only ever sees this value; without the key it cannot be reversed or
    linked to a number, and rotating the key unlinks all past pseudonyms.
    """
    if len(shared_key) < 32:
        raise ValueError("the pseudonym key must be at least 32 bytes")
    normal = unicodedata.normalize("NFKC", document_number).strip().upper().replace(" ", "")
    return hmac.new(shared_key, normal.encode("utf-8"), hashlib.sha256).hexdigest()


class GateCrypto(Protocol):
    """The gate's HE keys: encrypt a template, reveal a masked result."""

    def public_bundle(self) -> bytes:
        """Serialized public key bundle sent at registration."""
        ...

    @property
    def single_ciphertext(self) -> bool:
        """Whether a probe is one seeded ciphertext (its seed can be committed early)."""
        ...

    def encrypt(self, template: npt.NDArray[np.float32], seed: bytes | None = None) -> bytes:
        """Serialized encrypted probe for ``template`` (unit norm); under ``seed`` (32
        bytes, single-ciphertext sets only) if given, else a fresh random one."""
        ...

    def reveal(self, masked_result: bytes) -> list[int]:
        """Positions whose decrypted value is positive (only these leave the gate)."""
        ...


@dataclass(frozen=True)
class SealedProbe:
    """An encrypted probe and the seed committed for the gate's next probe (64 hex
    digits, sent as ``next_seed`` with this probe; None under sets without seeds)."""

    probe: bytes
    next_seed: str | None = None


@dataclass(frozen=True)
class MatchOutcome:
    """What the lane shows: ``proceed`` or ``secondary``, and the query id for records."""

    query_id: str
    outcome: str
    hits: int


class GateClient:
    """Signed, mutually authenticated calls to the gate API."""

    def __init__(
        self,
        base_url: str,
        *,
        gate_id: str,
        cert: Path,
        key: Path,
        ca: Path,
        signing_key: SigningKey,
        he: GateCrypto,
        clock: Callable[[], float] = time.time,
        timeout_s: float = 30.0,
    ) -> None:
        context = ssl.create_default_context(cafile=str(ca))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(cert), str(key))
        self._http = httpx.Client(base_url=base_url, verify=context, timeout=timeout_s)
        self.gate_id = gate_id
        self.signing_key = signing_key
        self.he = he
        self.clock = clock
        self.signer = RequestSigner(signing_key, gate_id, _key_id(signing_key.public_bytes()))
        # The seed committed for the next probe under the HE key it was committed for.
        self._committed: tuple[GateCrypto, bytes] | None = None
        self._commit_lock = threading.Lock()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _send(self, path: str, body: bytes, content_type: str) -> httpx.Response:
        headers = self.signer.sign("POST", path, body, now=self.clock())
        headers["Content-Type"] = content_type
        try:
            response = self._http.post(path, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise ServiceUnreachableError(f"{type(exc).__name__} calling {path}") from None
        if response.status_code >= 400:
            try:
                problem = response.json()
                code, detail = str(problem.get("code")), str(problem.get("detail"))
            except ValueError:
                code, detail = "unknown", response.text[:200]
            raise ServiceRefusedError(response.status_code, code, detail)
        return response

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps(payload, separators=(",", ":")).encode()
        data: dict[str, Any] = self._send(path, body, "application/json").json()
        return data

    def encrypt(self, template: npt.NDArray[np.float32]) -> SealedProbe:
        """Encrypt ``template`` under the seed committed for it, if any, and commit the
        seed of the next probe (single-ciphertext sets; else a plain encryption).

        The committed seed is cleared before encrypting, so it can never serve a second
        template, even if encryption fails or two threads encrypt at once.
        """
        he = self.he
        with self._commit_lock:
            committed, self._committed = self._committed, None
        if not he.single_ciphertext:
            return SealedProbe(he.encrypt(template))
        seed = committed[1] if committed is not None and committed[0] is he else None
        probe = he.encrypt(template, seed)
        next_seed = os.urandom(SEED_BYTES)
        with self._commit_lock:
            if self.he is he:  # not rotated meanwhile
                self._committed = (he, next_seed)
        return SealedProbe(probe, next_seed.hex())

    def match(
        self,
        probe: bytes,
        doc_pseudonym: str | None = None,
        request_id: str | None = None,
        next_seed: str | None = None,
    ) -> tuple[str, bytes]:
        """Send an encrypted probe (binary wire); returns (query id, masked result bytes).

        ``next_seed`` is the seed committed with this probe (:meth:`encrypt`); a retry
        must send the same arguments, so that its body is the same bytes.
        """
        request = MatchRequest(request_id or secrets.token_hex(16), probe, doc_pseudonym, next_seed)
        response = self._send("/gate/v1/match", request.to_bytes(), MATCH_REQUEST_TYPE)
        if not is_media_type(response.headers.get("content-type"), MATCH_RESPONSE_TYPE):
            raise ServiceRefusedError(response.status_code, "unexpected-media-type", "")
        try:
            answer = MatchResponse.from_bytes(response.content)
        except ProtocolError as exc:
            raise ServiceProtocolError(f"match response refused: {exc}") from None
        return answer.query_id, answer.masked_result

    def register(self, site: str) -> dict[str, Any]:
        """Register this gate's keys (pending until an admin approves)."""
        return self._post(
            "/gate/v1/register",
            {
                "gate_id": self.gate_id,
                "site": site,
                "signing_public_key": _b64(self.signing_key.public_bytes()),
                "he_public_bundle": _b64(self.he.public_bundle()),
            },
        )

    def heartbeat(self) -> dict[str, Any]:
        """Tell the service the gate is alive; returns key expiry and service time."""
        return self._post("/gate/v1/heartbeat", {})

    def rotate(self, signing_key: SigningKey, he: GateCrypto) -> dict[str, Any]:
        """Replace both keys; signed by the current key, new key proves possession."""
        new_id = _key_id(signing_key.public_bytes())
        bundle = he.public_bundle()
        digest = hashlib.sha256(bundle).hexdigest()
        proof = signing_key.sign(f"vm-rotate-v1\n{self.gate_id}\n{new_id}\n{digest}".encode())
        result = self._post(
            "/gate/v1/keys/rotate",
            {
                "signing_public_key": _b64(signing_key.public_bytes()),
                "he_public_bundle": _b64(bundle),
                "new_key_signature": _b64(proof),
            },
        )
        with self._commit_lock:
            self.signing_key, self.he = signing_key, he
            self._committed = None  # committed for the old HE key
        self.signer = RequestSigner(signing_key, self.gate_id, new_id)
        return result

    def send_probe(
        self,
        probe: bytes,
        doc_pseudonym: str | None = None,
        request_id: str | None = None,
        next_seed: str | None = None,
    ) -> MatchOutcome:
        """Match an already encrypted probe, reveal, return the outcome.

        ``next_seed``: the seed :meth:`encrypt` committed with this probe, if any.
        """
        request_id = request_id or secrets.token_hex(16)
        query_id, result = self.match(probe, doc_pseudonym, request_id, next_seed)
        positions = tuple(sorted(set(self.he.reveal(result))))
        reveal = RevealRequest(_reveal_id(request_id), query_id, positions)
        response = self._send("/gate/v1/reveal", reveal.to_bytes(), "application/json")
        try:
            revealed = RevealResponse.from_bytes(response.content)
        except ProtocolError as exc:
            raise ServiceProtocolError(f"reveal response refused: {exc}") from None
        return MatchOutcome(revealed.query_id, revealed.outcome, len(positions))

    def check(
        self, template: npt.NDArray[np.float32], doc_pseudonym: str | None = None
    ) -> MatchOutcome:
        """Encrypt ``template`` and run the whole protocol."""
        sealed = self.encrypt(template)
        return self.send_probe(sealed.probe, doc_pseudonym, next_seed=sealed.next_seed)

    def check_or_queue(
        self, template: npt.NDArray[np.float32], queue: Any, doc_pseudonym: str | None = None
    ) -> MatchOutcome | None:
        """Like :meth:`check`, but keep the encrypted probe in ``queue`` if unreachable.

        The queued request keeps its ``next_seed``, so its replay is the same bytes (an
        idempotent retry if the first attempt did reach the service).
        """
        sealed = self.encrypt(template)
        request_id = secrets.token_hex(16)
        try:
            return self.send_probe(sealed.probe, doc_pseudonym, request_id, sealed.next_seed)
        except ServiceUnreachableError:
            queue.put(_pack(sealed.probe, doc_pseudonym, request_id, sealed.next_seed))
            return None

    def drain(self, queue: Any, on_outcome: Callable[[MatchOutcome], None]) -> Any:
        """Send the offline backlog oldest first; stops at the first failure.

        A queued probe whose match had committed before a service crash replays to
        ``410 query-expired`` (its secret mapping died with the process): the service asks
        for a new query, so the same probe is sent again under a fresh request id.
        """

        def send(payload: bytes) -> None:
            probe, doc, request_id, next_seed = _unpack(payload)
            try:
                outcome = self.send_probe(probe, doc, request_id, next_seed)
            except ServiceRefusedError as exc:
                if exc.code != "query-expired":
                    raise
                outcome = self.send_probe(probe, doc)
            on_outcome(outcome)

        return queue.drain(send)


def _key_id(public: bytes) -> str:
    return "k-" + hashlib.sha256(public).hexdigest()[:16]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _reveal_id(request_id: str) -> str:
    """The reveal's request id: the match's with ``-r`` (a retry repeats it); ids at
    the 64-character limit are shortened to keep the suffix."""
    return request_id[:62] + "-r"


def _pack(probe: bytes, doc: str | None, request_id: str, next_seed: str | None = None) -> bytes:
    data = {"probe": _b64(probe), "doc": doc, "request_id": request_id}
    if next_seed is not None:
        data["next_seed"] = next_seed
    return json.dumps(data).encode()


def _unpack(payload: bytes) -> tuple[bytes, str | None, str, str | None]:
    """A queued request; entries queued before seeds were committed have none."""
    data = json.loads(payload)
    next_seed = data.get("next_seed")
    return (
        base64.b64decode(data["probe"]),
        data.get("doc"),
        str(data["request_id"]),
        None if next_seed is None else str(next_seed),
    )


def positions_of(values: Sequence[float]) -> list[int]:
    """Indices of strictly positive values (the only thing a gate reports)."""
    return [i for i, v in enumerate(values) if v > 0]


class SealGateCrypto:
    """:class:`GateCrypto` over ``crypto.he`` with a gate key bundle kept on the gate."""

    def __init__(self, keys: Any) -> None:
        self.keys = keys

    @classmethod
    def generate(cls, parameter_set: str = "ckks-v2") -> SealGateCrypto:
        """Fresh HE keys under the named parameter set."""
        from crypto.he import GateKeyBundle, get_parameter_set

        return cls(GateKeyBundle.generate(get_parameter_set(parameter_set)))

    def public_bundle(self) -> bytes:
        """The public half (public key + the one Galois key)."""
        return bytes(self.keys.public().to_bytes())

    @property
    def single_ciphertext(self) -> bool:
        """Whether probes are one seeded ciphertext (ckks-v2)."""
        return bool(self.keys.params.single_ciphertext)

    def encrypt(self, template: npt.NDArray[np.float32], seed: bytes | None = None) -> bytes:
        """Encrypt a unit-norm template under the gate's own key (and ``seed``, if given)."""
        from crypto.he import encrypt_probe

        return bytes(encrypt_probe(self.keys, template, seed=seed).to_bytes())

    def reveal(self, masked_result: bytes) -> list[int]:
        """Positive positions of a masked result; decrypted values never leave here."""
        from crypto.he import MaskedResult, reveal

        return [int(p) for p in reveal(self.keys, MaskedResult.from_bytes(masked_result))]
