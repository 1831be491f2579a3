"""When the agent rotates its keys (``gate.agent.rotation_due``), on a controllable clock.

The rotation itself, against a real service over mutual TLS, is in
``tests/e2e/test_gate_agent.py``.
"""

from __future__ import annotations

import datetime as dt

from gate.agent import rotation_due

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
