"""When the agent rotates its keys (``gate.agent.rotation_due``), on a controllable clock,
and never while probes sealed under the current key wait in the offline queue.

The rotation itself, against a real service over mutual TLS, is in
``tests/e2e/test_gate_agent.py``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from gate.agent import Agent, rotation_due
from gate.state import GateConfig, GateState, init_state

DAY = 86400.0
EXPIRES = dt.datetime(2026, 3, 31, 12, 0, tzinfo=dt.UTC)


def test_due_only_inside_the_margin_before_expiry():
    expires, at = EXPIRES.isoformat(), EXPIRES.timestamp()
    assert not rotation_due(expires, at - 8 * DAY, 7 * DAY)
    assert rotation_due(expires, at - 7 * DAY + 1, 7 * DAY)
    assert rotation_due(expires, at + 1, 7 * DAY)  # already expired: still try
    # a naive timestamp is read as UTC
    assert rotation_due(EXPIRES.replace(tzinfo=None).isoformat(), at - DAY, 7 * DAY)


def test_no_or_unreadable_expiry_is_never_due():
    now = EXPIRES.timestamp()
    assert not rotation_due(None, now, 7 * DAY)
    assert not rotation_due("", now, 7 * DAY)
    assert not rotation_due("next tuesday", now, 7 * DAY)


class _NoService:
    """A client that must not be asked to rotate (the test fails if it is)."""

    def rotate(self, *_args: object) -> dict[str, str]:
        raise AssertionError("rotated with probes still queued under the old key")


def test_rotation_waits_for_the_offline_queue(tmp_path: Path):
    root = tmp_path / "gate"
    init_state(root, GateConfig.new("g-1", "lo-wu", "https://127.0.0.1:1"), pseudonym_key=b"p" * 32)
    state = GateState.load(root)
    keys_before = (root / "signing.key").read_bytes()
    queue = state.queue()
    try:
        queue.put(b"a sealed probe under the current HE key")
        agent = Agent(state, None, _NoService(), queue, [])  # type: ignore[arg-type]
        assert agent.rotate_keys() is False
        assert agent.counters["key_rotations"] == 0
        assert (root / "signing.key").read_bytes() == keys_before
    finally:
        queue.close()
