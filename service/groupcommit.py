"""Group commit: concurrent write transactions of the match path share one commit.

Every traveller costs two write transactions (match, reveal), each ending in a
durable commit (an fsync on SQLite with ``synchronous=FULL``) under the database's
single writer lock. Under load the commits, not the statements, dominate the time the
lock is held. :class:`GroupCommitter` lets threads that arrive while a commit is in
progress queue their work; the next thread to get the lock (the *leader*) runs every
queued piece of work in one transaction — each in its own savepoint, so a failing one
rolls back alone — appends all their audit events in one batch, commits once and
wakes the others.

Guarantees, for each caller of :meth:`GroupCommitter.run`:

- It returns only after the transaction holding its work and its audit events has
  committed; if that commit fails it raises, so nothing is acknowledged unaudited.
- Its work either committed completely (records and audit events) or not at all: an
  exception inside it rolls back its savepoint and its buffered events are dropped,
  and the exception is re-raised in the caller's thread.
- Work runs in arrival order; audit entries keep that order.

Work runs in the leader's thread, so it must only use the connection it is given.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError

__all__ = ["AUDIT_BUFFER_KEY", "GroupCommitter"]

T = TypeVar("T")
#: ``Connection.info`` key under which a batch collects the audit events of one work item.
AUDIT_BUFFER_KEY = "veilmatch.audit_buffer"


@dataclass
class _Job(Generic[T]):
    work: Callable[[Connection], T]
    done: threading.Event = field(default_factory=threading.Event)
    result: T | None = None
    error: BaseException | None = None


class GroupCommitter:
    """Batches write work into shared transactions.

    ``transaction`` opens one write transaction (commit on normal exit, rollback on
    error); ``append`` appends a list of buffered audit events inside it.
    ``max_batch`` bounds how much work one commit carries.
    """

    def __init__(
        self,
        transaction: Callable[[], AbstractContextManager[Connection]],
        append: Callable[[Connection, Sequence[Any]], None],
        *,
        max_batch: int = 32,
    ) -> None:
        self._transaction = transaction
        self._append = append
        self._max_batch = max_batch
        self._queue: list[_Job[Any]] = []
        self._queue_lock = threading.Lock()
        self._leader = threading.Lock()
        self.batches = 0
        self.jobs = 0

    def run(self, work: Callable[[Connection], T]) -> T:
        """Run ``work(conn)`` in a (possibly shared) transaction; return its result once
        committed, or raise its exception or the commit's."""
        job: _Job[T] = _Job(work)
        with self._queue_lock:
            self._queue.append(job)
        while not job.done.is_set():
            with self._leader:
                if job.done.is_set():
                    break
                with self._queue_lock:
                    batch = self._queue[: self._max_batch]
                    del self._queue[: self._max_batch]
                if batch:
                    self._run_batch(batch)
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[return-value]

    def _run_batch(self, batch: list[_Job[Any]]) -> None:
        events: list[Any] = []
        try:
            with self._transaction() as conn:
                for job in batch:
                    buffered: list[Any] = []
                    conn.info[AUDIT_BUFFER_KEY] = buffered
                    try:
                        with _savepoint(conn, len(batch) > 1):
                            job.result = job.work(conn)
                    except Exception as exc:
                        # A database failure dooms the shared transaction: every job of
                        # the batch gets that error (not a later PendingRollbackError).
                        # A constraint violation only rolls back its own savepoint.
                        doomed = isinstance(exc, DBAPIError) and not isinstance(exc, IntegrityError)
                        if len(batch) == 1 or doomed:
                            raise
                        job.error = exc
                    else:
                        events.extend(buffered)
                    finally:
                        if not conn.invalidated:
                            conn.info.pop(AUDIT_BUFFER_KEY, None)
                if events:
                    self._append(conn, events)
        except BaseException as exc:
            for job in batch:
                if job.error is None:
                    job.error = exc
        finally:
            self.batches += 1
            self.jobs += len(batch)
            for job in batch:
                job.done.set()


class _NoSavepoint:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _savepoint(conn: Connection, needed: bool) -> AbstractContextManager[Any]:
    """A savepoint around one work item, only when others share its transaction."""
    return conn.begin_nested() if needed else _NoSavepoint()
