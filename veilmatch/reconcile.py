"""After a load or fault run: do the service's records and audit log account for every
query the gates saw acknowledged, and does the log verify offline?

Checks, each recorded in :class:`Reconciliation` (``raise_if_broken`` raises
:class:`ReconciliationError` listing every failure):

1. every match the service acknowledged to a gate (a query id) has its ``match.query``
   audit entry;
2. every decision a gate received has its ``match.decision`` entry with the same
   outcome, and every ``secondary`` has an ``alert.raised`` entry and an alert row;
3. the alerts table and ``alert.raised`` entries agree in number;
4. the log, exported at its latest signed checkpoint, passes the oversight verifier
   (``audit.verify.verify_log``) with the log's public key.

The log is read with the service stopped or running; if entries were appended after the
last checkpoint (a crash), a checkpoint is signed first, as ``veilmatch audit
checkpoint`` would, and the number of such entries is reported.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Set
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from audit.errors import AuditError
from audit.export import export_log
from audit.keys import load_verifier
from audit.log import AuditLog
from audit.sources import DirectorySource
from audit.verify import describe, verify_log
from core.db import make_engine
from core.errors import VeilmatchError
from core.settings import Settings
from service.tables import alerts, pending_queries

__all__ = ["Reconciliation", "ReconciliationError", "reconcile"]

_PAGE = 50_000


class ReconciliationError(VeilmatchError):
    """Records, audit log and what the gates saw do not agree."""


@dataclass
class Reconciliation:
    """Counts from both sides and the problems found (empty when everything agrees)."""

    acknowledged_queries: int = 0
    decisions_received: int = 0
    secondary_received: int = 0
    audit_match_queries: int = 0
    audit_match_decisions: int = 0
    audit_alerts_raised: int = 0
    alert_rows: int = 0
    revealed_rows: int = 0
    log_size: int = 0
    entries_after_last_checkpoint: int = 0
    verified: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and self.verified

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form with ``ok``."""
        return {**asdict(self), "ok": self.ok}

    def raise_if_broken(self) -> None:
        """Raise :class:`ReconciliationError` naming every problem."""
        if not self.ok:
            raise ReconciliationError("; ".join(self.problems[:20]) or "log did not verify")


def _subject(header: Any, prefix: str) -> str | None:
    for subject in header.subjects:
        if subject.startswith(prefix):
            return str(subject[len(prefix) :])
    return None


@dataclass
class _LogView:
    """What the audit log says about matches: query ids, decisions, alerts raised."""

    queries: set[str] = field(default_factory=set)
    decided: dict[str, str] = field(default_factory=dict)
    raised: set[str] = field(default_factory=set)


def reconcile(
    settings: Settings,
    acknowledged: Set[str],
    decisions: Mapping[str, str],
    *,
    export_dir: Path,
) -> Reconciliation:
    """Reconcile the gates' view (query ids acknowledged; query id → outcome received)."""
    assert settings.key_dir is not None
    key_dir = Path(settings.key_dir)
    out = Reconciliation(
        acknowledged_queries=len(acknowledged),
        decisions_received=len(decisions),
        secondary_received=sum(1 for o in decisions.values() if o == "secondary"),
    )
    engine = make_engine(settings)
    try:
        log = AuditLog.from_settings(engine, settings)  # the service's log and sequencer keys
        view = _read_log(log)
        _compare_with_gates(out, view, acknowledged, decisions)
        _compare_with_tables(out, view, engine)
        _checkpoint_and_verify(out, log, key_dir, export_dir)
    finally:
        engine.dispose()
    return out


def _read_log(log: AuditLog) -> _LogView:
    """Page through the match and alert entries of the whole log."""
    view = _LogView()
    start = 0
    while True:
        page = log.entries(
            start, None, types=["match.query", "match.decision", "alert.raised"], limit=_PAGE
        )
        for entry in page:
            query_id = _subject(entry.header, "query:")
            if query_id is None:
                continue
            if entry.header.type == "match.query":
                view.queries.add(query_id)
            elif entry.header.type == "match.decision":
                view.decided[query_id] = str((entry.payload or {}).get("outcome"))
            else:
                view.raised.add(query_id)
        if len(page) < _PAGE:
            return view
        start = page[-1].seq + 1


def _compare_with_gates(
    out: Reconciliation, view: _LogView, acknowledged: Set[str], decisions: Mapping[str, str]
) -> None:
    """Checks 1 and 2: what the gates were told is what the log records."""
    out.audit_match_queries = len(view.queries)
    out.audit_match_decisions = len(view.decided)
    out.audit_alerts_raised = len(view.raised)
    missing = sorted(acknowledged - view.queries)
    if missing:
        out.problems.append(f"{len(missing)} acknowledged queries without match.query")
    for query_id, outcome in decisions.items():
        if view.decided.get(query_id) != outcome:
            out.problems.append(
                f"query {query_id}: gate got {outcome}, log has {view.decided.get(query_id)}"
            )
        if outcome == "secondary" and query_id not in view.raised:
            out.problems.append(f"query {query_id}: secondary without alert.raised")


def _compare_with_tables(out: Reconciliation, view: _LogView, engine: sa.Engine) -> None:
    """Check 3: alert rows and revealed queries agree with the log's entries."""
    with engine.connect() as conn:
        out.alert_rows = int(
            conn.execute(sa.select(sa.func.count()).select_from(alerts)).scalar_one()
        )
        out.revealed_rows = int(
            conn.execute(
                sa.select(sa.func.count())
                .select_from(pending_queries)
                .where(pending_queries.c.status == "revealed")
            ).scalar_one()
        )
    if out.alert_rows != len(view.raised):
        out.problems.append(f"{out.alert_rows} alert rows but {len(view.raised)} alert.raised")
    if out.revealed_rows != len(view.decided):
        out.problems.append(
            f"{out.revealed_rows} revealed queries but {len(view.decided)} match.decision entries"
        )


def _checkpoint_and_verify(
    out: Reconciliation, log: AuditLog, key_dir: Path, export_dir: Path
) -> None:
    """Check 4: checkpoint what a crash left unsigned, export, verify offline."""
    size = log.tree_size()
    out.log_size = size
    try:
        checkpointed = log.latest_checkpoint().checkpoint.size
    except AuditError:
        checkpointed = 0
    out.entries_after_last_checkpoint = size - checkpointed
    if size > checkpointed:
        log.checkpoint()
    if export_dir.exists():
        shutil.rmtree(export_dir)
    export_log(log, export_dir)
    verifier = load_verifier(str(key_dir / "audit-log.pub"))
    try:
        report = verify_log(DirectorySource(export_dir), verifier)
        out.verified = report.size == size
        if not out.verified:
            out.problems.append(f"verified size {report.size} != log size {size}")
    except AuditError as exc:
        out.problems.extend(f"verify: {line}" for line in describe(exc))
