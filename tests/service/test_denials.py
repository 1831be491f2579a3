"""Counting unauthenticated refusals in the database (``service.denials``), on each
backend: windows, sources, bounds, and two replicas sharing the counters with every
count handed to exactly one aggregate event."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest

from core.db import make_engine
from service import denials
from tests.service.test_throttle import write

T0 = dt.datetime(2025, 3, 1, 4, 0, 7, tzinfo=dt.UTC)
W = 300


def count(engine, source="192.0.2.7", route="GET /api/v1/alerts", code="token-missing", at=T0):
    with write(engine) as conn:
        denials.count_denial(conn, source=source, route=route, code=code, now=at, window_s=W)


def take(engine, before):
    with write(engine) as conn:
        return denials.take_closed(conn, before, W)


@pytest.mark.parametrize(
    ("address", "source"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),
        ("not-an-address", "unknown"),
    ],
)
def test_sources(address, source):
    assert denials.source_of(address) == source


def test_windows_are_aligned():
    assert denials.window_start(T0, W) == dt.datetime(2025, 3, 1, 4, 0, tzinfo=dt.UTC)
    assert denials.window_start(T0 + dt.timedelta(seconds=293), W).minute == 5


def test_one_event_per_source_and_window_with_the_counts(engine):
    for _ in range(150):
        count(engine)
    for _ in range(50):
        count(engine, code="token-invalid")
    count(engine, source="198.51.100.1", route="GET /metrics", code="scrape-unauthorized")
    count(engine, at=T0 + dt.timedelta(seconds=W))  # the next window
    start = denials.window_start(T0, W)
    # take_closed(before=now - W): at 04:04:59 the window 04:00-04:05 is open, at 04:05 closed
    assert take(engine, start - dt.timedelta(seconds=1)) == []
    events = take(engine, start)
    by_source = {e.payload["source"]: e.payload for e in events}
    assert set(by_source) == {"192.0.2.7", "198.51.100.1"}
    assert by_source["192.0.2.7"]["count"] == 200
    assert by_source["192.0.2.7"]["denials"] == [
        {"route": "GET /api/v1/alerts", "code": "token-missing", "count": 150},
        {"route": "GET /api/v1/alerts", "code": "token-invalid", "count": 50},
    ]
    assert by_source["192.0.2.7"]["window_start"] == "2025-03-01T04:00:00+00:00"
    assert all(e.event_type == "access.denied" and e.actor == "system" for e in events)
    assert all(e.payload["code"] == denials.AGGREGATE_CODE for e in events)
    assert take(engine, start) == []  # taken once
    later = take(engine, T0 + dt.timedelta(days=1))
    assert [e.payload["count"] for e in later] == [1]


def test_sources_per_window_are_bounded(engine):
    for i in range(denials.MAX_SOURCES + 10):
        count(engine, source=f"10.0.{i // 256}.{i % 256}")
    events = take(engine, T0 + dt.timedelta(days=1))
    assert len(events) == denials.MAX_SOURCES + 1
    other = [e.payload for e in events if e.payload["source"] == "other"]
    assert other[0]["count"] == 10


def test_lines_per_event_are_bounded(engine):
    for i in range(denials.MAX_LINES + 5):
        count(engine, route=f"GET /r{i:03d}")
    (event,) = take(engine, T0 + dt.timedelta(days=1))
    assert event.payload["count"] == denials.MAX_LINES + 5
    assert len(event.payload["denials"]) == denials.MAX_LINES + 1
    assert event.payload["denials"][-1] == {"route": "other", "code": "other", "count": 5}


def test_two_replicas_count_together_and_audit_each_count_once(engine, db_settings):
    replica = make_engine(db_settings)
    try:
        for i in range(60):
            count([engine, replica][i % 2])
        taken: list[Any] = []
        lock = threading.Lock()
        start = threading.Barrier(4)

        def flush(e) -> None:
            start.wait()
            events = take(e, T0 + dt.timedelta(days=1))
            with lock:
                taken.extend(events)

        engines = [engine, replica] * 2
        threads = [threading.Thread(target=flush, args=(e,)) for e in engines]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert [e.payload["count"] for e in taken] == [60]
    finally:
        replica.dispose()
