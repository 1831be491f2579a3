"""Offline queue: sealed at rest, bounded by count/bytes/age, FIFO drain, fake clock."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from crypto.atrest import FileKek
from gate.errors import OfflineQueueError, QueueFullError
from gate.offline_queue import OfflineQueue


class Clock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def kek(tmp_path: Path) -> FileKek:
    return FileKek.generate(tmp_path / "keys" / "queue.kek")


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _queue(tmp_path: Path, kek: FileKek, clock: Clock, **kw) -> OfflineQueue:
    return OfflineQueue(tmp_path / "queue.sqlite3", kek, now=clock, **kw)


def test_fifo_drain_and_delete_after_send(tmp_path, kek, clock):
    q = _queue(tmp_path, kek, clock)
    seqs = [q.put(f"probe-{i}".encode()) for i in range(5)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    got: list[bytes] = []
    report = q.drain(got.append)
    assert got == [f"probe-{i}".encode() for i in range(5)]
    assert (report.sent, report.remaining, report.expired, report.corrupt) == (5, 0, 0, 0)
    assert report.error is None
    assert len(q) == 0


def test_failed_send_stops_and_keeps_the_entry(tmp_path, kek, clock):
    q = _queue(tmp_path, kek, clock)
    for i in range(3):
        q.put(bytes([i]))
    calls: list[bytes] = []

    def flaky(payload: bytes) -> None:
        calls.append(payload)
        if len(calls) == 2:
            raise ConnectionError("link down again")

    report = q.drain(flaky)
    assert report.sent == 1 and report.remaining == 2 and report.error == "ConnectionError"
    got: list[bytes] = []
    q.drain(got.append)
    assert got == [b"\x01", b"\x02"]  # the failed one is retried first


def test_drain_limit(tmp_path, kek, clock):
    q = _queue(tmp_path, kek, clock)
    for i in range(4):
        q.put(bytes([i]))
    assert q.drain(lambda _p: None, limit=3).remaining == 1


def test_item_and_byte_bounds_refuse_new_entries(tmp_path, kek, clock):
    q = _queue(tmp_path, kek, clock, max_items=3)
    for i in range(3):
        q.put(bytes([i]))
    with pytest.raises(QueueFullError):
        q.put(b"x")
    assert len(q) == 3
    q2 = OfflineQueue(tmp_path / "q2.sqlite3", kek, now=clock, max_bytes=1000)
    q2.put(b"a" * 500)  # sealed size is payload + header (~100 bytes)
    with pytest.raises(QueueFullError):
        q2.put(b"b" * 500)
    assert q2.stats().items == 1


def test_entries_expire_by_age_and_are_never_sent(tmp_path, kek, clock):
    q = _queue(tmp_path, kek, clock, max_age_s=60)
    q.put(b"old")
    clock.advance(30)
    q.put(b"newer")
    assert q.stats().oldest_age_s == pytest.approx(30)
    clock.advance(31)  # "old" is 61 s old, "newer" 31 s
    got: list[bytes] = []
    report = q.drain(got.append)
    assert got == [b"newer"]
    assert report.expired == 1
    # Expiry also frees room for new entries.
    q3 = OfflineQueue(tmp_path / "q3.sqlite3", kek, now=clock, max_items=1, max_age_s=10)
    q3.put(b"a")
    clock.advance(11)
    q3.put(b"b")
    assert q3.stats().items == 1


def test_payloads_are_encrypted_on_disk_and_file_is_private(tmp_path, kek, clock):
    q = _queue(tmp_path, kek, clock)
    secret = b"PROBE-CIPHERTEXT-MARKER-1234567890"
    q.put(secret)
    q.close()
    path = tmp_path / "queue.sqlite3"
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("queue.sqlite3*"))
    assert secret not in raw
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_persists_across_reopen(tmp_path, kek, clock):
    q = _queue(tmp_path, kek, clock)
    q.put(b"one")
    q.put(b"two")
    q.close()
    reopened = _queue(tmp_path, kek, clock)
    got: list[bytes] = []
    reopened.drain(got.append)
    assert got == [b"one", b"two"]
    # Sequence numbers are never reused after deletion (they are bound into the AAD).
    assert reopened.put(b"three") == 3


def test_swapped_or_tampered_blobs_do_not_open(tmp_path, kek, clock):
    q = _queue(tmp_path, kek, clock)
    q.put(b"first")
    q.put(b"second")
    q.put(b"third")
    q.close()
    db = sqlite3.connect(tmp_path / "queue.sqlite3")
    blobs = dict(db.execute("SELECT seq, blob FROM entries").fetchall())
    db.execute("UPDATE entries SET blob = ? WHERE seq = 1", (blobs[2],))  # reorder attack
    db.execute("UPDATE entries SET enqueued_us = enqueued_us + 1 WHERE seq = 3")  # re-date
    db.commit()
    db.close()
    got: list[bytes] = []
    report = _queue(tmp_path, kek, clock).drain(got.append)
    assert got == [b"second"]
    assert report.corrupt == 2


def test_wrong_kek_opens_nothing(tmp_path, kek, clock):
    q = _queue(tmp_path, kek, clock)
    q.put(b"secret")
    q.close()
    other = FileKek.generate(tmp_path / "keys" / "other.kek")
    got: list[bytes] = []
    report = OfflineQueue(tmp_path / "queue.sqlite3", other, now=clock).drain(got.append)
    assert got == [] and report.corrupt == 1


def test_blob_from_another_queue_does_not_open(tmp_path, kek, clock):
    a = OfflineQueue(tmp_path / "a.sqlite3", kek, now=clock)
    b = OfflineQueue(tmp_path / "b.sqlite3", kek, now=clock)
    a.put(b"for queue a")
    b.put(b"for queue b")
    a.close()
    b.close()
    da, db_ = sqlite3.connect(tmp_path / "a.sqlite3"), sqlite3.connect(tmp_path / "b.sqlite3")
    (blob_a,) = da.execute("SELECT blob FROM entries").fetchone()
    db_.execute("UPDATE entries SET blob = ?", (blob_a,))
    db_.commit()
    da.close()
    db_.close()
    report = OfflineQueue(tmp_path / "b.sqlite3", kek, now=clock).drain(lambda _p: None)
    assert report.corrupt == 1 and report.sent == 0


def test_bad_bounds_and_unwritable_path(tmp_path, kek, clock):
    with pytest.raises(ValueError):
        OfflineQueue(tmp_path / "q.sqlite3", kek, max_items=0)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OfflineQueueError):
        OfflineQueue(blocker / "q.sqlite3", kek, now=clock)
