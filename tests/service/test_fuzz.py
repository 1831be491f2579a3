"""Fuzz the staff and gate APIs' OpenAPI schemas with schemathesis: no input may cause a 5xx.

Runs in process (ASGI) against an app bound to the module's running service context,
so the database, policy engine and audit log are the real ones. Few examples per
operation keep it quick; the point is malformed input at every route, not volume.
Gate requests are signed by a registered gate (see the gate section below).
"""

from __future__ import annotations

import base64
import json
import re
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
import requests
import schemathesis
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crypto.signing import RequestSigner
from protocol import wire
from service.app import create_app, create_gate_app
from service.gates import key_id_for

EXCLUDED = ("/api/v1/alerts/stream",)  # an endless SSE stream: covered in test_alert_feed


def test_no_5xx_on_any_staff_route(service):
    app = create_app(service.settings, service.ctx.engine, service.ctx)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    tokens = {user: service.token(user) for user in ("admin", "supervisor1")}
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 20
    fuzzed = 0
    for operation in operations:
        if operation.path in EXCLUDED:
            continue
        admin_route = operation.path.startswith(("/api/v1/accounts", "/api/v1/gates"))
        token = tokens["admin" if admin_route else "supervisor1"]

        @given(case=operation.as_strategy(), headers=st.just({"Authorization": f"Bearer {token}"}))
        @settings(
            max_examples=8,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
        )
        def check(case, headers):
            response = case.call(headers=headers)
            assert response.status_code < 500, (case.method, case.path, response.text[:300])
            if response.status_code >= 400:
                ctype = (response.headers.get("content-type") or [""])[0]
                assert ctype.startswith("application/problem+json"), (case.path, ctype)

        check()
        fuzzed += 1
    assert fuzzed == len(operations) - len(EXCLUDED)


# --- gate API ---------------------------------------------------------------------------
#
# The gate app, in process, behind a shim that does what the TLS listener does
# (service.tls.ClientCertH11Protocol): put the gate's client certificate into the scope.
# Every generated request is signed by a registered, approved gate through a `requests`
# auth hook, which sees the request exactly as it goes out (method, path, body bytes),
# so the service's checks pass and the fuzzing reaches the body parsers and the work
# behind them. Unsigned and tampered variants keep the refusal path fuzzed as well
# (test_gate_auth checks each refusal code on its own over real TLS).

_DOC_CODES = frozenset(
    re.findall(r"`([a-z][a-z0-9-]+)`", (Path(__file__).parents[2] / "docs/api.md").read_text())
)
_GATE_AUTH_CODES = frozenset(
    {
        "certificate-required",
        "certificate-mismatch",
        "signature-malformed",
        "signature-invalid",
        "request-stale",
    }
)


# Random bytes for the binary probe form (the route parses the frame itself).
schemathesis.serializer.alias(wire.MATCH_REQUEST_TYPE, "application/octet-stream")


class _WithClientCert:
    """ASGI wrapper: the verified client certificate in ``scope["extensions"]["tls"]``."""

    def __init__(self, app: Any, der: bytes) -> None:
        self.app, self.der = app, der

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            extensions = {**(scope.get("extensions") or {}), "tls": {"client_cert_der": self.der}}
            scope = {**scope, "extensions": extensions}
        await self.app(scope, receive, send)


class _GateSigner(requests.auth.AuthBase):
    """Sign the prepared request (``vm-req-v1``) as the service verifies it.

    ``mode``: ``signed``; ``unsigned`` (no signing headers); ``tampered`` (signed over a
    body other than the one sent).
    """

    def __init__(self, signer: RequestSigner, clock: Callable[[], float], mode: str) -> None:
        self.signer, self.clock, self.mode = signer, clock, mode

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        if self.mode == "unsigned":
            return r
        raw = r.body
        assert raw is None or isinstance(raw, bytes | str), type(raw)  # never streamed here
        body = raw.encode("utf-8") if isinstance(raw, str) else raw or b""
        if self.mode == "tampered":
            body += b" "
        path = urlsplit(r.url or "").path
        r.headers.update(self.signer.sign(r.method or "", path, body, now=self.clock()))
        return r


def _assert_typed(response: Any, where: Any) -> None:
    """No 5xx; a 4xx is problem+json whose ``code`` is documented in docs/api.md."""
    assert response.status_code < 500, (where, response.status_code, response.text[:300])
    if response.status_code >= 400:
        ctype = response.headers.get("content-type") or ""
        ctype = ctype[0] if isinstance(ctype, list) else ctype
        assert ctype.startswith("application/problem+json"), (where, ctype)
        body = json.loads(response.content)
        assert body["status"] == response.status_code, (where, body)
        assert body["code"] in _DOC_CODES, (where, body)
        assert body["type"].endswith("/" + body["code"]), (where, body)


@dataclass
class GateFuzz:
    app: Any  # the gate app, wrapped with the gate's client certificate
    signer: RequestSigner  # the gate's key (registered, approved)
    samples: dict[str, bytes]  # real bytes per base64 body field, to mutate


@pytest.fixture(scope="module")
def gate_fuzz(service: Any) -> Callable[[str], GateFuzz]:
    """``GateFuzz`` for an approved gate; one gate per test, so that no test spends
    another's share of the match policy's per-gate rate limit (30 a minute)."""
    made: dict[str, GateFuzz] = {}

    def make(gate_id: str) -> GateFuzz:
        if gate_id not in made:
            made[gate_id] = _approved_for_fuzzing(service, gate_id)
        return made[gate_id]

    return make


def _approved_for_fuzzing(service: Any, gate_id: str) -> GateFuzz:
    client = service.approved_gate(gate_id, site="lo-wu")
    client.close()
    template = np.ones(128, dtype=np.float32)  # the embedder's dimension
    probe = client.he.encrypt(template / np.linalg.norm(template))
    bundle = client.he.public_bundle()[:65536]  # a prefix: enough to reach the parser
    samples = {
        "probe": probe,
        "he_public_bundle": bundle,
        "signing_public_key": client.signing_key.public_bytes(),
        "new_key_signature": bytes(64),
    }
    cert_pem = service.pki.gate_certs[gate_id][0].read_bytes()
    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    key = client.signing_key
    signer = RequestSigner(key, gate_id, key_id_for(key.public_bytes()))
    return GateFuzz(_WithClientCert(create_gate_app(service.ctx), der), signer, samples)


@st.composite
def _mutated(draw: st.DrawFn, real: bytes) -> bytes:
    """``real`` as is, truncated, with a byte flipped, or random bytes."""
    kind = draw(st.sampled_from(("real", "truncated", "flipped", "random")))
    if kind == "real":
        return real
    if kind == "truncated":
        return real[: draw(st.integers(0, max(len(real) - 1, 0)))]
    if kind == "flipped" and real:
        at = draw(st.integers(0, min(len(real), 4096) - 1))  # headers live up front
        return real[:at] + bytes([real[at] ^ draw(st.integers(1, 255))]) + real[at + 1 :]
    return draw(st.binary(max_size=128))


def _with_binary_fields(case: Any, data: st.DataObject, samples: dict[str, bytes]) -> None:
    """Replace some base64 fields of a JSON body by base64 of (mutated) real bytes, so the
    fuzzing gets past base64 decoding into the crypto parsers."""
    if not isinstance(case.body, dict):
        return
    for name, real in samples.items():
        if name in case.body and data.draw(st.booleans()):
            case.body[name] = base64.b64encode(data.draw(_mutated(real))).decode("ascii")


def test_no_5xx_on_any_gate_route(service, gate_fuzz):
    fuzz = gate_fuzz("gate-c")
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz.app)
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    gate_routes = [op for op in operations if op.path.startswith("/gate/v1/")]
    assert len(gate_routes) == 5
    media_types: set[str] = set()
    signed: set[str] = set()  # outcomes of signed gate requests
    for operation in operations:

        @given(
            case=operation.as_strategy(),
            mode=st.sampled_from(("signed", "signed", "signed", "unsigned", "tampered")),
            data=st.data(),
        )
        @settings(
            max_examples=16,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
        )
        def check(case, mode, data):
            _with_binary_fields(case, data, fuzz.samples)
            auth = _GateSigner(fuzz.signer, service.gate_time, mode)
            response = case.call(auth=auth)
            where = (case.method, case.path, case.media_type, mode)
            _assert_typed(response, where)
            media_types.add(str(case.media_type))
            if mode == "signed" and case.path.startswith("/gate/v1/"):
                signed.add("ok" if response.status_code < 300 else response.json()["code"])
            if mode != "signed" and case.path.startswith("/gate/v1/"):
                assert 400 <= response.status_code < 500, where
                if case.path != "/gate/v1/register":  # parses its body before the signature
                    assert response.json()["code"] in _GATE_AUTH_CODES, (where, response.text)

        check()
    assert wire.MATCH_REQUEST_TYPE in media_types  # the binary probe form was fuzzed too
    # signed requests got past authentication, to the handlers and body parsers (the
    # crypto parsers are reached for sure by the two tests below)
    assert {"ok", "malformed-request", "query-expired"} <= signed, signed


_frame_meta = st.one_of(
    st.fixed_dictionaries(
        {"request_id": st.one_of(st.uuids().map(lambda u: u.hex), st.text(max_size=80))},
        optional={
            "doc_pseudonym": st.one_of(st.none(), st.text(max_size=80), st.integers()),
            "next_seed": st.one_of(st.text(max_size=70), st.just("ab" * 32)),
            "extra": st.integers(),
        },
    ).map(lambda meta: json.dumps(meta).encode()),
    st.binary(max_size=64),
)


@st.composite
def _match_frames(draw: st.DrawFn, probe: bytes) -> bytes:
    """Match request frames, most well formed up to one layer: head, metadata or probe."""
    broken = draw(st.sampled_from(("none", "head", "meta", "probe", "probe", "probe")))
    magic, version = wire.MATCH_REQUEST_MAGIC, 1
    meta = json.dumps({"request_id": draw(st.uuids()).hex}).encode()
    payload = probe
    if broken == "head":
        magic = draw(st.sampled_from((magic, b"VMRS", b"\x00\x00\x00\x00")))
        version = draw(st.sampled_from((1, 0, 2, 255)))
    elif broken == "meta":
        meta = draw(_frame_meta)
    elif broken == "probe":
        payload = draw(_mutated(probe))
    declared = len(meta)
    if broken == "head":
        declared = draw(st.sampled_from((declared, declared + 7, 0, 0xFFFF)))
    frame = struct.pack(">4sBH", magic, version, declared) + meta + payload
    if broken == "head" and draw(st.booleans()):
        frame = frame[: draw(st.integers(0, 16))]
    return frame


def test_binary_match_frames_get_typed_errors(service, gate_fuzz):
    """The binary match form, frames malformed at every layer: typed 4xx, never 5xx.

    Built rather than schema-generated: random bytes rarely get past the magic."""
    fuzz = gate_fuzz("gate-d")
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz.app)
    operation = schema["/gate/v1/match"]["POST"]
    auth = _GateSigner(fuzz.signer, service.gate_time, "signed")
    codes: set[str] = set()

    @given(body=_match_frames(fuzz.samples["probe"]))
    @settings(
        max_examples=60,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
    )
    def check(body):
        case = operation.Case(body=body, media_type=wire.MATCH_REQUEST_TYPE)
        response = case.call(auth=auth)
        _assert_typed(response, body[:40])
        codes.add("ok" if response.status_code == 200 else response.json()["code"])

    check()
    # every layer was reached: frame, metadata, probe (and a real probe scores)
    assert {"malformed-frame", "malformed-request", "crypto-refused"} <= codes, codes


def test_reveal_positions_get_typed_errors(service, gate_fuzz):
    """Reveal, against a real pending query, with any positions: typed 4xx or an outcome.

    The schema-driven run only reaches reveal's query lookup (random query ids)."""
    fuzz = gate_fuzz("gate-e")
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz.app)
    match, reveal = schema["/gate/v1/match"]["POST"], schema["/gate/v1/reveal"]["POST"]
    auth = _GateSigner(fuzz.signer, service.gate_time, "signed")
    probe = base64.b64encode(fuzz.samples["probe"]).decode("ascii")
    outcomes: set[str] = set()

    @given(
        positions=st.one_of(
            st.lists(st.integers(0, 300), max_size=8),
            st.lists(st.integers(-(2**70), 2**70), max_size=4),
        ),
    )
    @settings(
        max_examples=16,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
    )
    def check(positions):
        rid = uuid.uuid4().hex  # fresh: a replayed id is an idempotent retry (tested elsewhere)
        body: dict[str, Any] = {"request_id": rid, "probe": probe}
        matched = match.Case(body=body, media_type="application/json").call(auth=auth)
        assert matched.status_code == 200, matched.text[:300]
        query_id = matched.json()["query_id"]
        body = {"request_id": rid + "-r", "query_id": query_id, "positions": positions}
        response = reveal.Case(body=body, media_type="application/json").call(auth=auth)
        _assert_typed(response, positions)
        ok = response.status_code == 200
        outcomes.add(response.json()["outcome"] if ok else response.json()["code"])

    check()
    assert {"proceed", "crypto-refused"} <= outcomes, outcomes
