"""Witnesses: cosign only consistent extensions, keep state atomically, and verifiers
enforce a quorum of their cosignatures."""

from __future__ import annotations

import base64
import json

import pytest

from audit.checkpoint import SignedCheckpoint
from audit.errors import (
    ForkError,
    MalformedError,
    SignatureError,
    TruncationError,
    WitnessError,
)
from audit.export import export_log
from audit.note import parse_note
from audit.sources import DirectorySource
from audit.verify import LogVerificationError, verify_log
from audit.witness import Witness, WitnessConflictError, proof_lines
from tests.audit.conftest import T0, fill, log_signer, make_log, witness_signer

NOW = 1_760_000_000


def _witness(tmp_path, n=1):
    return Witness(witness_signer(n), log_signer().verifier(), tmp_path / f"w{n}.json")


def test_witness_cosigns_consistent_growth_and_verifier_counts_quorum(engine, tmp_path):
    log = make_log(engine)
    fill(log, 100)
    w1, w2 = _witness(tmp_path, 1), _witness(tmp_path, 2)
    export_log(log, tmp_path / "e1")
    for w in (w1, w2):
        cosigned = w.witness_source(DirectorySource(tmp_path / "e1"), now=NOW)
        assert log.add_cosignatures(cosigned.to_bytes(), [w.signer.verifier()]) == [w.signer.name]
    fill(log, 150, start=100)
    log.checkpoint(now=T0)
    export_log(log, tmp_path / "e2")
    cosigned = w1.witness_source(DirectorySource(tmp_path / "e2"), now=NOW + 60)
    log.add_cosignatures(cosigned.to_bytes(), [w1.signer.verifier()])
    assert w1.state_size() == 250 and w2.state_size() == 100

    export_log(log, tmp_path / "e3")
    keys = [witness_signer(1).verifier(), witness_signer(2).verifier()]
    report = verify_log(
        DirectorySource(tmp_path / "e3"),
        log_signer().verifier(),
        witnesses=keys,
        quorum=1,
        now=NOW + 120,
    )
    assert report.witnesses == {"witness1.test/w": NOW + 60}
    with pytest.raises(LogVerificationError) as info:
        verify_log(
            DirectorySource(tmp_path / "e3"),
            log_signer().verifier(),
            witnesses=keys,
            now=NOW + 120,
        )
    assert isinstance(info.value.problems[0], WitnessError)
    assert "1 valid witness cosignature(s) on size 250, 2 required" in str(info.value)


def test_witness_refuses_a_fork_and_truncation(engine, tmp_path):
    log = make_log(engine)
    fill(log, 50)
    cp50 = log.latest_checkpoint()
    w = _witness(tmp_path)
    w.add_checkpoint(cp50.to_bytes(), 0, [], now=NOW)
    fill(log, 50, start=50)
    cp100 = log.checkpoint(now=T0)
    good_proof = log.consistency_proof(50, 100)
    # A proof for a different history is refused, and the state does not move.
    bad = [bytes(32)] * len(good_proof)
    with pytest.raises(ForkError):
        w.add_checkpoint(cp100.to_bytes(), 50, bad, now=NOW)
    assert w.state_size() == 50
    w.add_checkpoint(cp100.to_bytes(), 50, good_proof, now=NOW)
    # A different root at the same size: fork.
    forged = SignedCheckpoint.sign(
        type(cp100.checkpoint)(cp100.checkpoint.origin, 100, bytes(32)), log_signer()
    )
    with pytest.raises(ForkError):
        w.add_checkpoint(forged.to_bytes(), 100, [], now=NOW)
    # Going back to size 50 is truncation.
    with pytest.raises(TruncationError):
        w.add_checkpoint(cp50.to_bytes(), 100, [], now=NOW)
    # The caller's idea of the witness state is wrong: conflict with the known size.
    with pytest.raises(WitnessConflictError) as info:
        w.add_checkpoint(cp100.to_bytes(), 7, [], now=NOW)
    assert info.value.known_size == 100


def test_witness_rejects_checkpoints_not_signed_by_the_log(engine, tmp_path):
    log = make_log(engine)
    fill(log, 5)
    other = SignedCheckpoint.sign(
        log.latest_checkpoint().checkpoint, witness_signer(9).__class__.generate(log.origin)
    )
    with pytest.raises(SignatureError):
        _witness(tmp_path).add_checkpoint(other.to_bytes(), 0, [], now=NOW)


def test_add_checkpoint_wire_format(engine, tmp_path):
    log = make_log(engine)
    fill(log, 10)
    w = _witness(tmp_path)
    body = b"old 0\n\n" + log.latest_checkpoint().to_bytes()
    line = w.handle_add_checkpoint(body, now=NOW)
    assert line.startswith("— witness1.test/w ".encode()) and line.endswith(b"\n")
    fill(log, 10, start=10)
    cp = log.checkpoint(now=T0)
    body = ("old 10\n" + proof_lines(log.consistency_proof(10, 20)) + "\n").encode()
    w.handle_add_checkpoint(body + cp.to_bytes(), now=NOW)
    assert w.state_size() == 20
    with pytest.raises(MalformedError):
        w.handle_add_checkpoint(b"garbage", now=NOW)
    with pytest.raises(MalformedError):
        w.handle_add_checkpoint(b"old 20\n!!notbase64\n\n" + cp.to_bytes(), now=NOW)


def test_witness_state_file_is_complete_json_with_the_cosigned_note(engine, tmp_path):
    log = make_log(engine)
    fill(log, 3)
    w = _witness(tmp_path)
    w.add_checkpoint(log.latest_checkpoint().to_bytes(), 0, [], now=NOW)
    state = json.loads((tmp_path / "w1.json").read_text())
    assert state["size"] == 3 and state["origin"] == log.origin
    note = parse_note(state["checkpoint"].encode())
    assert [s.name for s in note.signatures] == [log.origin, "witness1.test/w"]
    assert base64.b64decode(note.text.split(b"\n")[2]).hex() == state["root"]
    assert not list(tmp_path.glob(".w1.json.*.tmp"))  # no temporary file left behind


def test_add_cosignatures_rejects_foreign_checkpoints(engine, tmp_path):
    log = make_log(engine)
    fill(log, 3)
    w = _witness(tmp_path)
    forged = SignedCheckpoint.sign(
        type(log.latest_checkpoint().checkpoint)(log.origin, 3, bytes(32)), log_signer()
    )
    sig = w.signer.sign(forged.note.text, timestamp=NOW)
    with pytest.raises(SignatureError):
        log.add_cosignatures(forged.note.with_signatures([sig]).to_bytes(), [w.signer.verifier()])


def test_verify_and_witness_over_http(engine, tmp_path):
    """The same checks against a base URL (here a plain static server over an export)."""
    import functools
    import http.server
    import threading

    log = make_log(engine)
    fill(log, 300)
    export_log(log, tmp_path / "site")
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "site")
    )
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        from audit.sources import open_source

        url = f"http://127.0.0.1:{server.server_address[1]}/"
        w = _witness(tmp_path)
        cosigned = w.witness_source(open_source(url), now=NOW)
        assert cosigned.checkpoint.size == 100  # first checkpoint: issued after the first batch
        report = verify_log(open_source(url), log_signer().verifier(), state_path=tmp_path / "s")
        assert report.size == 100 and report.entries_checked == 100
    finally:
        server.shutdown()
