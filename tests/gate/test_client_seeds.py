"""The gate client's committed probe seeds (prepared queries, single-ciphertext sets).

Each match request carries ``next_seed``; the gate's next probe is encrypted under it
and under nothing else, exactly once. Real SEAL keys and real probes; the service is
replaced by an ``httpx.MockTransport`` that records every request body, so the frames
the gate sends can be read back (the real HTTPS path is ``tests/service/test_prepared``).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from crypto.devcerts import make_dev_pki
from crypto.errors import MalformedInputError
from crypto.he import Probe
from crypto.signing import SigningKey
from gate.client import GateClient, SealGateCrypto
from protocol.messages import MatchResponse

Handler = Callable[[httpx.Request], httpx.Response]


def _unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).standard_normal(128).astype(np.float32)
    return vector / np.linalg.norm(vector)


def _seed_of(probe: bytes) -> bytes:
    seeds = Probe.from_bytes(probe).seeds
    assert len(seeds) == 1
    return seeds[0]


class FakeService:
    """Answers match, reveal and rotate like the service would; records match frames."""

    def __init__(self) -> None:
        self.match_bodies: list[bytes] = []
        self.down = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("link down", request=request)
        path = request.url.path
        if path == "/gate/v1/match":
            self.match_bodies.append(request.content)
            expires = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
            answer = MatchResponse(f"q-{len(self.match_bodies)}", expires, "g-1", b"masked")
            frame = answer.to_bytes()
            headers = {"content-type": "application/vnd.veilmatch.match-response"}
            return httpx.Response(200, content=frame, headers=headers)
        if path == "/gate/v1/reveal":
            query_id = json.loads(request.content)["query_id"]
            return httpx.Response(200, json={"query_id": query_id, "outcome": "proceed"})
        if path == "/gate/v1/keys/rotate":
            return httpx.Response(200, json={"gate_id": "gate-a", "key_id": "k-new"})
        return httpx.Response(404, json={"code": "not-found", "detail": path})

    def metas(self) -> list[dict[str, Any]]:
        """The JSON metadata of every match frame, and its probe's seed (hex)."""
        out = []
        for body in self.match_bodies:
            meta_len = int.from_bytes(body[5:7], "big")
            meta = json.loads(body[7 : 7 + meta_len])
            meta["probe_seed"] = _seed_of(body[7 + meta_len :]).hex()
            out.append(meta)
        return out


class Backlog:
    """The offline queue's interface (``put``, ``drain``) in memory."""

    def __init__(self) -> None:
        self.items: list[bytes] = []

    def put(self, payload: bytes) -> None:
        self.items.append(payload)

    def drain(self, send: Callable[[bytes], None]) -> int:
        while self.items:
            send(self.items[0])
            self.items.pop(0)
        return 0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_dev_pki(tmp_path_factory.mktemp("pki"), ["gate-a"])


@pytest.fixture(scope="module")
def v2_crypto() -> SealGateCrypto:
    return SealGateCrypto.generate("ckks-v2")


def _client(pki: Any, he: Any, fake: FakeService) -> GateClient:
    cert, key = pki.gate_certs["gate-a"]
    client = GateClient(
        "https://127.0.0.1:1",
        gate_id="gate-a",
        cert=Path(cert),
        key=Path(key),
        ca=Path(pki.ca_cert),
        signing_key=SigningKey.generate(),
        he=he,
    )
    client._http = httpx.Client(base_url="https://gate.test", transport=httpx.MockTransport(fake))
    return client


@pytest.fixture
def fake() -> FakeService:
    return FakeService()


@pytest.fixture
def client(
    pki: Any, v2_crypto: SealGateCrypto, fake: FakeService, monkeypatch
) -> Iterator[GateClient]:
    monkeypatch.setattr(v2_crypto, "reveal", lambda _result: [])  # the fake result is no ciphertext
    made = _client(pki, v2_crypto, fake)
    yield made
    made.close()


def test_each_probe_uses_the_seed_committed_in_the_previous_request(client, fake):
    for i in range(4):
        assert client.check(_unit(i)).outcome == "proceed"
    metas = fake.metas()
    seeds = [m["next_seed"] for m in metas]
    assert all(len(s) == 64 and s == s.lower() for s in seeds)
    assert len(set(seeds)) == 4  # a fresh commitment with every request
    for before, after in itertools.pairwise(metas):
        assert after["probe_seed"] == before["next_seed"]
    # the first probe had nothing committed: a fresh seed, not any committed one
    probe_seeds = [m["probe_seed"] for m in metas]
    assert len(set(probe_seeds)) == 4 and metas[0]["probe_seed"] not in seeds


def test_a_committed_seed_serves_one_template_only(client):
    first = client.encrypt(_unit(1))
    assert first.next_seed is not None
    # encryption fails after the commitment was taken: it is gone, never reused
    with pytest.raises(MalformedInputError):
        client.encrypt(np.ones(128, dtype=np.float32))
    second = client.encrypt(_unit(2))
    assert _seed_of(second.probe).hex() != first.next_seed
    # concurrent encryptions: every probe under its own seed
    sealed: list[Any] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        got = client.encrypt(_unit(10 + i))
        with lock:
            sealed.append(got)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    probe_seeds = [_seed_of(s.probe) for s in (first, second, *sealed)]
    assert len(set(probe_seeds)) == len(probe_seeds)


def test_key_rotation_drops_the_commitment(client, pki):
    before = client.encrypt(_unit(3))
    assert before.next_seed is not None
    client.rotate(SigningKey.generate(), SealGateCrypto.generate("ckks-v2"))
    after = client.encrypt(_unit(4))
    assert _seed_of(after.probe).hex() != before.next_seed
    assert Probe.from_bytes(after.probe).key_id != Probe.from_bytes(before.probe).key_id
    # the new key gets its own commitment, used by its next probe
    assert _seed_of(client.encrypt(_unit(5)).probe).hex() == after.next_seed


def test_a_queued_request_replays_with_the_same_bytes(client, fake):
    backlog = Backlog()
    fake.down = True
    assert client.check_or_queue(_unit(6), backlog) is None
    fake.down = False
    outcomes: list[Any] = []
    client.drain(backlog, outcomes.append)
    assert [o.outcome for o in outcomes] == ["proceed"] and backlog.items == []
    replayed = fake.metas()[0]
    assert len(replayed["next_seed"]) == 64
    # the commitment sent with the queued probe is the one the next probe uses
    client.check(_unit(7))
    assert fake.metas()[1]["probe_seed"] == replayed["next_seed"]


def test_a_retried_match_is_the_same_body(client, fake):
    sealed = client.encrypt(_unit(8))
    client.match(sealed.probe, request_id="retry-seed-0001", next_seed=sealed.next_seed)
    client.match(sealed.probe, request_id="retry-seed-0001", next_seed=sealed.next_seed)
    assert fake.match_bodies[0] == fake.match_bodies[1]
    assert fake.metas()[0]["next_seed"] == sealed.next_seed
    assert fake.match_bodies[0].endswith(sealed.probe)


def test_sets_without_single_ciphertext_probes_commit_nothing(pki, fake):
    v1 = SealGateCrypto.generate("ckks-v1")
    client = _client(pki, v1, fake)
    try:
        sealed = client.encrypt(_unit(1))
        assert sealed.next_seed is None and client._committed is None
        assert len(Probe.from_bytes(sealed.probe).seeds) > 1
    finally:
        client.close()
