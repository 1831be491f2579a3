"""Offline queue: pending encrypted probes kept while the matching service is unreachable.

Usage::

    kek = FileKek.load(key_dir / "gate-queue.kek")
    queue = OfflineQueue(data_dir / "gate-queue.sqlite3", kek, max_age_s=3600)
    queue.put(probe_bytes)                  # link down: keep it (sealed) for later
    report = queue.drain(client.send_probe)  # link back: oldest first, stop on failure

Properties:

* **Encrypted at rest.** Each payload is sealed with ``crypto.atrest.seal`` (AES-256-GCM
  under a fresh data key wrapped by the KEK). The AAD binds the blob to this queue's
  random id, its sequence number and its enqueue time, so blobs cannot be moved between
  queues, reordered or re-dated without failing to open. Payloads are already encrypted
  probes; this second layer also covers whatever the caller packs beside the probe
  (gate id, document pseudonym, capture time) and lets a stolen gate's backlog be
  made unreadable by destroying its KEK.
* **Bounded.** At most ``max_items`` entries and ``max_bytes`` sealed bytes; ``put``
  raises ``QueueFullError`` rather than dropping anything silently (the lane falls back
  to manual inspection). Entries older than ``max_age_s`` are deleted on every
  ``put``/``drain``/``purge_expired`` and never sent: a stale probe is no use to the
  match and keeping it is a retention problem.
* **FIFO drain.** ``drain(send)`` sends the oldest live entry first and deletes it only
  after ``send`` returns; the first exception from ``send`` stops the drain and leaves
  that entry in place. An entry that no longer opens (tampered, wrong KEK) is deleted
  and counted in ``DrainReport.corrupt``.
* **Injectable clock.** ``now`` returns Unix seconds; tests pass a fake.

The store is a gate-local SQLite file (stdlib ``sqlite3``, WAL, ``synchronous=FULL``,
``secure_delete`` so deleted blobs are overwritten); it is not the service database.
"""

from __future__ import annotations

import os
import sqlite3
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from crypto.atrest import KeyEncryptionKey, open_sealed, seal
from crypto.errors import SealedDataError
from gate.errors import OfflineQueueError, QueueFullError

__all__ = ["DrainReport", "OfflineQueue", "QueueStats"]

_AAD_DOMAIN = b"veilmatch/gate-offline-queue/v1\x00"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY,
    enqueued_us INTEGER NOT NULL,
    size INTEGER NOT NULL,
    blob BLOB NOT NULL
);
"""


@dataclass(frozen=True)
class QueueStats:
    """Live entries (expired ones already purged), their sealed bytes, oldest age (s)."""

    items: int
    bytes: int
    oldest_age_s: float | None


@dataclass(frozen=True)
class DrainReport:
    """What one ``drain`` did. ``error`` is the exception type that stopped it, if any."""

    sent: int
    expired: int
    corrupt: int
    remaining: int
    error: str | None


class OfflineQueue:
    """Encrypted, bounded, FIFO store of pending payloads (see the module docstring)."""

    def __init__(
        self,
        path: Path,
        kek: KeyEncryptionKey,
        *,
        max_items: int = 10_000,
        max_bytes: int = 64 * 1024 * 1024,
        max_age_s: float = 3600.0,
        now: Callable[[], float] = time.time,
    ) -> None:
        if max_items <= 0 or max_bytes <= 0 or max_age_s <= 0:
            raise ValueError("queue bounds must be positive")
        self._kek = kek
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self._now = now
        self._lock = threading.Lock()
        self._drain_lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA secure_delete=ON")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key = 'queue_id'").fetchone()
            if row is None:
                self._db.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('queue_id', ?)", (os.urandom(16),)
                )
                row = self._db.execute("SELECT value FROM meta WHERE key = 'queue_id'").fetchone()
            self._queue_id = bytes(row[0])
            os.chmod(path, 0o600)
        except (sqlite3.Error, OSError) as exc:
            raise OfflineQueueError(f"cannot open offline queue {path}: {exc}") from None

    def _aad(self, seq: int, enqueued_us: int) -> bytes:
        return _AAD_DOMAIN + self._queue_id + struct.pack(">QQ", seq, enqueued_us)

    def _now_us(self) -> int:
        return round(self._now() * 1_000_000)

    def _purge_locked(self, now_us: int) -> int:
        cutoff = now_us - int(self.max_age_s * 1_000_000)
        cur = self._db.execute("DELETE FROM entries WHERE enqueued_us <= ?", (cutoff,))
        return int(cur.rowcount)

    def _totals_locked(self) -> tuple[int, int, int | None]:
        items, size, oldest = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0), MIN(enqueued_us) FROM entries"
        ).fetchone()
        return int(items), int(size), oldest

    def put(self, payload: bytes) -> int:
        """Seal and store ``payload``; return its sequence number (increasing).

        Raises ``QueueFullError`` if it would exceed ``max_items`` or ``max_bytes``.
        """
        with self._lock:
            try:
                now_us = self._now_us()
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._purge_locked(now_us)
                    items, size, _ = self._totals_locked()
                    (last,) = self._db.execute(
                        "SELECT COALESCE(MAX(seq), 0) FROM entries"
                    ).fetchone()
                    row = self._db.execute(
                        "SELECT value FROM meta WHERE key = 'last_seq'"
                    ).fetchone()
                    seq = max(int(last), int.from_bytes(row[0], "big") if row else 0) + 1
                    blob = seal(self._kek, payload, aad=self._aad(seq, now_us))
                    if items + 1 > self.max_items or size + len(blob) > self.max_bytes:
                        raise QueueFullError(
                            f"offline queue holds {items} items / {size} bytes "
                            f"(limits {self.max_items} / {self.max_bytes})"
                        )
                    self._db.execute(
                        "INSERT INTO entries VALUES (?, ?, ?, ?)", (seq, now_us, len(blob), blob)
                    )
                    self._db.execute(
                        "INSERT OR REPLACE INTO meta VALUES ('last_seq', ?)",
                        (seq.to_bytes(8, "big"),),
                    )
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise OfflineQueueError(f"offline queue write failed: {exc}") from None
            return seq

    def purge_expired(self) -> int:
        """Delete entries older than ``max_age_s``; return how many."""
        with self._lock:
            try:
                return self._purge_locked(self._now_us())
            except sqlite3.Error as exc:
                raise OfflineQueueError(f"offline queue purge failed: {exc}") from None

    def stats(self) -> QueueStats:
        """Current live contents (purges expired entries first)."""
        with self._lock:
            try:
                now_us = self._now_us()
                self._purge_locked(now_us)
                items, size, oldest = self._totals_locked()
            except sqlite3.Error as exc:
                raise OfflineQueueError(f"offline queue read failed: {exc}") from None
        age = None if oldest is None else (now_us - int(oldest)) / 1_000_000
        return QueueStats(items=items, bytes=size, oldest_age_s=age)

    def __len__(self) -> int:
        return self.stats().items

    def drain(self, send: Callable[[bytes], object], *, limit: int | None = None) -> DrainReport:
        """Send live entries oldest first, deleting each after ``send`` returns.

        Stops at the first exception from ``send`` (the entry stays queued) or after
        ``limit`` sends. Never raises what ``send`` raised; the report names it. ``put``
        is not blocked while ``send`` runs; concurrent drains are serialised.
        """
        sent = corrupt = expired = 0
        error: str | None = None
        with self._drain_lock:
            while limit is None or sent < limit:
                with self._lock:
                    try:
                        expired += self._purge_locked(self._now_us())
                        row = self._db.execute(
                            "SELECT seq, enqueued_us, blob FROM entries ORDER BY seq LIMIT 1"
                        ).fetchone()
                    except sqlite3.Error as exc:
                        raise OfflineQueueError(f"offline queue drain failed: {exc}") from None
                if row is None:
                    break
                seq, enqueued_us, blob = int(row[0]), int(row[1]), bytes(row[2])
                try:
                    payload: bytes | None = open_sealed(
                        self._kek, blob, aad=self._aad(seq, enqueued_us)
                    )
                except SealedDataError:
                    payload = None
                    corrupt += 1
                if payload is not None:
                    try:
                        send(payload)
                    except Exception as exc:  # the link failed again: keep the entry
                        error = type(exc).__name__
                        break
                    sent += 1
                with self._lock:
                    try:
                        self._db.execute("DELETE FROM entries WHERE seq = ?", (seq,))
                    except sqlite3.Error as exc:
                        raise OfflineQueueError(f"offline queue drain failed: {exc}") from None
        remaining = self.stats().items
        return DrainReport(
            sent=sent, expired=expired, corrupt=corrupt, remaining=remaining, error=error
        )

    def close(self) -> None:
        """Close the database file."""
        with self._lock:
            self._db.close()
