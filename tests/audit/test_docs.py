"""Every byte-exact example in docs/audit.md is what the code produces."""

from __future__ import annotations

import hashlib
from pathlib import Path

from audit.checkpoint import SignedCheckpoint
from audit.note import NoteVerifier
from audit.rfc9162 import hash_leaf
from tests.audit.docs_example import COSIGN_TIME, LOG_KEY, WITNESS_KEY, examples

DOC = (Path(__file__).resolve().parents[2] / "docs" / "audit.md").read_text()


def test_examples_appear_verbatim_in_docs():
    ex = examples()
    for name, value in ex.items():
        assert value.strip() in DOC, f"docs/audit.md example {name!r} is stale"


def test_examples_are_self_consistent():
    ex = examples()
    assert hash_leaf(ex["leaf"].encode()).hex() == ex["leaf_hash"]
    assert hashlib.sha256(ex["payload"].encode()).hexdigest() in ex["leaf"]
    cosigned = SignedCheckpoint.from_bytes(ex["cosigned"].encode())
    cosigned.verify(NoteVerifier.from_string(ex["log_vkey"]))
    got = cosigned.verify_witnesses([NoteVerifier.from_string(ex["witness_vkey"])], 1)
    assert got == {WITNESS_KEY.name: COSIGN_TIME}
    assert LOG_KEY.verifier().to_string() == ex["log_vkey"]
