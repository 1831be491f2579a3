"""Regenerates the byte-exact examples in docs/audit.md (also run by test_docs.py).

.venv/bin/python -m tests.audit.docs_example
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

from audit.events import AuditEvent, EventType
from audit.log import AuditLog
from audit.note import COSIGNATURE_V1, NoteSigner
from core.db import make_engine
from core.migrate import upgrade
from core.settings import load_settings

LOG_KEY = NoteSigner.from_seed("veilmatch.example/audit", bytes(range(32)))
WITNESS_KEY = NoteSigner.from_seed("oversight.example/w1", bytes([1]) * 32, COSIGNATURE_V1)
WHEN = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
COSIGN_TIME = 1735787045


def examples() -> dict[str, str]:
    """Every example string shown in docs/audit.md, by name."""
    counter = iter(range(1, 1000))
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(
            load_settings(data_dir=Path(tmp), database_url=f"sqlite:///{tmp}/doc.db")
        )
        upgrade(engine)
        log = AuditLog(engine, LOG_KEY, rng=lambda n: next(counter).to_bytes(n, "big"))
        log.append(
            [
                AuditEvent(
                    EventType.MATCH_DECISION,
                    "system",
                    ("watchlist:wl-8f3a", "gate:szb-07"),
                    {"gate": "szb-07", "hits": 1, "outcome": "secondary"},
                    policy_digest="sha256-5d1c0b7a",
                    decision_id="dec-000042",
                ),
                AuditEvent(EventType.ALERT_REVIEW, "officer:o-1138", ("alert:al-0001",), {}),
                AuditEvent(EventType.ADMIN, "officer:o-2001", (), {"action": "export"}),
            ],
            now=WHEN,
        )
        first = log.entries(0, 1)[0]
        from audit.events import encode_payload

        blob = encode_payload(first.payload or {}, (1).to_bytes(16, "big"))
        cp = log.latest_checkpoint()
        cosig = WITNESS_KEY.sign(cp.note.text, timestamp=COSIGN_TIME)
        proof = log.inclusion_proof(0, 3)
        engine.dispose()
    return {
        "leaf": first.leaf.decode(),
        "leaf_hash": first.leaf_hash.hex(),
        "payload": blob.decode(),
        "checkpoint": cp.to_bytes().decode(),
        "cosigned": cp.note.with_signatures([cosig]).to_bytes().decode(),
        "log_vkey": LOG_KEY.verifier().to_string(),
        "witness_vkey": WITNESS_KEY.verifier().to_string(),
        "inclusion": "\n".join(h.hex() for h in proof.hashes),
    }


if __name__ == "__main__":
    for name, value in examples().items():
        print(f"== {name}\n{value}")
