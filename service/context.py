"""Everything a request handler needs, built once per process and shared by both apps.

``ServiceContext`` owns the engine, clock, key-encryption key, token issuer, audit and
policy adapters, the scoring backend, pending mappings and the alert bus. Handlers get it
from ``request.app.state.ctx``. Time is injectable (``clock``) so retention, expiry and
opening-hours tests are deterministic.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine

from core.db import write_transaction
from core.settings import Settings
from crypto.atrest import FileKek, KeyEncryptionKey
from service.accounts import Principal, TokenIssuer
from service.alerts import AlertBus
from service.decisions import AccessDecision, ask_access
from service.errors import ForbiddenError
from service.groupcommit import AUDIT_BUFFER_KEY, GroupCommitter
from service.metrics import ServiceMetrics
from service.ports import AuditPort, HePort, PolicyDecision, PolicyPort, ServiceEvent
from service.scoring.backend import ScoringBackend
from service.scoring.pending import MemoryPendingStore, PendingStore

__all__ = ["ServiceContext", "load_or_create_kek", "system_clock"]

Clock = Callable[[], dt.datetime]
T = TypeVar("T")


def system_clock() -> dt.datetime:
    """The current time in UTC."""
    return dt.datetime.now(dt.UTC)


def load_or_create_kek(path: Path) -> KeyEncryptionKey:
    """The file KEK at ``path``, created (0600) on first start."""
    if path.exists():
        return FileKek.load(path)
    return FileKek.generate(path)


@dataclass
class ServiceContext:
    """Shared state of one service process."""

    settings: Settings
    engine: Engine
    audit: AuditPort
    policy: PolicyPort
    kek: KeyEncryptionKey
    tokens: TokenIssuer
    pool: ScoringBackend
    he: HePort
    clock: Clock = system_clock
    pending: PendingStore = field(default_factory=MemoryPendingStore)
    bus: AlertBus = field(default_factory=AlertBus)
    metrics: ServiceMetrics = field(default_factory=ServiceMetrics)
    face_embedder: Callable[[bytes], Sequence[float]] | None = None
    ready: bool = False
    policy_load_event: Any = None
    #: The key provider's handle (``service.keys.ServiceKeys``), closed by ``stop``.
    keys: Any = None
    _write_lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    committer: GroupCommitter = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.committer = GroupCommitter(self.transaction, self._append_events)

    def pending_ttl_margin(self) -> dt.timedelta:
        """A span after which every pending query made now has expired."""
        return dt.timedelta(seconds=self.settings.pending_query_ttl_s + 1)

    def now(self) -> dt.datetime:
        """The service clock (UTC, timezone-aware)."""
        return self.clock()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One database transaction (commit on success, roll back on error).

        :func:`core.db.write_transaction`: ``BEGIN IMMEDIATE`` on SQLite (our
        transactions read, then write, often an audit leaf), and writers of this process
        first queue on an in-process lock, since SQLite has one writer anyway.
        """
        with write_transaction(self.engine, queue=self._write_lock) as conn:
            yield conn

    @contextmanager
    def reader(self) -> Iterator[Connection]:
        """A connection for reads only (no write lock on SQLite)."""
        with self.engine.connect() as conn:
            yield conn

    def write(self, work: Callable[[Connection], T]) -> T:
        """Run ``work(conn)`` in a write transaction that concurrent callers may share
        (group commit, :mod:`service.groupcommit`); returns its result once committed.

        ``work`` runs in whichever thread leads the batch: it must only use ``conn``.
        """
        return self.committer.run(work)

    def record(self, conn: Connection, *events: ServiceEvent) -> None:
        """Append audit events inside ``conn``'s transaction, timing the append.

        Inside :meth:`write` the events are buffered and appended once for the whole
        batch, still before its commit.
        """
        buffer = conn.info.get(AUDIT_BUFFER_KEY)
        if buffer is not None:
            buffer.extend(events)
            return
        self._append_events(conn, events)

    def _append_events(self, conn: Connection, events: Sequence[ServiceEvent]) -> None:
        started = time.perf_counter()
        self.audit.append_in(conn, list(events))
        self.metrics.audit_append_seconds.observe(time.perf_counter() - started)

    def authorize(
        self,
        principal: Principal,
        action: str,
        resource: Mapping[str, Any] | None = None,
    ) -> PolicyDecision:
        """Ask ``veilmatch.access``; raise ``ForbiddenError`` (audited by the handler) if denied."""
        access = ask_access(self.policy, principal.role, action, principal.subject, resource or {})
        if not access.allow:
            raise _forbidden(action, access)
        return access.policy

    def authorize_role(self, principal: Principal, action: str) -> None:
        """Policy before lookup: refuse now if ``veilmatch.access`` refuses ``action`` to
        this caller whatever the target's facts (its role may not, it is not named).

        Called before a handler reads the target, so a caller who may not act on any
        target gets the same 403 for an existing id and a missing one. Refusals that
        depend on the target's facts are left to :meth:`authorize` after the lookup.
        """
        access = ask_access(self.policy, principal.role, action, principal.subject, {})
        if access.refused_whatever_the_target:
            raise _forbidden(action, access)


def _forbidden(action: str, access: AccessDecision) -> ForbiddenError:
    return ForbiddenError(f"{action}: " + "; ".join(access.reasons)[:300], code="forbidden")
