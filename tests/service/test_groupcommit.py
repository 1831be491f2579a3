"""Group commit (``service.groupcommit``) on both backends with the real audit log.

Work queued while another batch commits shares one transaction; a failing work item
rolls back alone (its records and audit events), its caller gets its exception, and
everyone else's records and audit entries are committed before their callers return.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from audit.note import NoteSigner
from service.adapters import AuditLogAdapter
from service.groupcommit import AUDIT_BUFFER_KEY, GroupCommitter
from service.ports import ServiceEvent
from service.tables import request_nonces

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class WorkFailedError(Exception):
    pass


def _committer(engine: Engine) -> tuple[GroupCommitter, AuditLogAdapter]:
    audit = AuditLogAdapter(engine, NoteSigner.generate("test.invalid/log"))

    @contextmanager
    def transaction() -> Iterator[Connection]:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.commit()
            except BaseException:
                conn.rollback()
                raise

    return GroupCommitter(transaction, audit.append_in), audit


def _work(
    name: str,
    fail: bool | str = False,
    gate: threading.Event | None = None,
    started: threading.Event | None = None,
):
    def work(conn: Connection) -> str:
        if started is not None:
            started.set()
        if gate is not None:
            gate.wait(10)
        conn.execute(request_nonces.insert().values(gate_id="g", nonce=name, seen_at=NOW))
        conn.info[AUDIT_BUFFER_KEY].append(
            ServiceEvent("gate.register", "system", (f"query:{name}",))
        )
        if fail == "duplicate":  # a constraint violation raised by the database itself
            conn.execute(request_nonces.insert().values(gate_id="g", nonce=name, seen_at=NOW))
        if fail:
            raise WorkFailedError(name)
        return name

    return work


def test_concurrent_work_shares_commits_and_failures_stay_isolated(engine):
    committer, audit = _committer(engine)
    release, started = threading.Event(), threading.Event()
    results: dict[str, object] = {}

    def call(name: str, fail: bool = False, gate=None, begun=None) -> None:
        try:
            results[name] = committer.run(_work(name, fail, gate, begun))
        except (WorkFailedError, sa.exc.IntegrityError) as exc:
            results[name] = exc

    first = threading.Thread(target=call, args=("n-first", False, release, started))
    first.start()
    assert started.wait(10)  # the first caller leads a batch and waits inside its work
    fails: dict[int, bool | str] = {2: True, 4: "duplicate"}
    others = [threading.Thread(target=call, args=(f"n-{i}", fails.get(i, False))) for i in range(5)]
    for thread in others:
        thread.start()
    deadline = time.monotonic() + 10
    while len(committer._queue) < 5:  # all five queued behind the running batch
        assert time.monotonic() < deadline
        time.sleep(0.01)
    release.set()
    for thread in [first, *others]:
        thread.join(30)
    assert isinstance(results["n-2"], WorkFailedError)
    assert isinstance(results["n-4"], sa.exc.IntegrityError)
    assert {k: v for k, v in results.items() if k not in ("n-2", "n-4")} == {
        k: k for k in ("n-first", "n-0", "n-1", "n-3")
    }
    with engine.connect() as conn:
        stored = set(conn.execute(sa.select(request_nonces.c.nonce)).scalars())
    assert stored == {"n-first", "n-0", "n-1", "n-3"}  # the failed ones rolled back alone
    subjects = [
        e.header.subjects[0].removeprefix("query:") for e in audit.log.entries(0, None, limit=100)
    ]
    assert sorted(subjects) == sorted(stored)  # its audit event was dropped too
    assert committer.jobs == 6 and committer.batches == 2  # the five shared one commit


def test_a_single_failing_job_raises_and_leaves_nothing(engine):
    committer, audit = _committer(engine)
    with pytest.raises(WorkFailedError):
        committer.run(_work("alone", fail=True))
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(request_nonces)).scalar() == 0
    assert audit.log.tree_size() == 0
    assert committer.run(_work("after")) == "after"
    assert audit.log.tree_size() == 1
