"""Watchlist: enrol (pending), approve, renew, revoke; templates sealed at rest.

Templates are L2-normalised float32 vectors, sealed with AES-256-GCM under the
deployment's key-encryption key (``crypto.atrest``) with the entry id as associated
data, so a sealed template cannot be moved to another entry. They are opened only by
:func:`load_gallery_templates`, to (re)build the encoded gallery. An entry becomes
matchable when a supervisor other than its enroller approves it, and stops being
matchable when revoked or past ``expires_at``.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy import Connection

from crypto.atrest import KeyEncryptionKey, open_sealed, seal
from service.errors import ConflictError, ForbiddenError, MalformedRequestError, NotFoundError
from service.tables import enrolment_approvals, utc, watchlist_entries

__all__ = [
    "MAX_DIM",
    "WatchlistEntry",
    "approve_entry",
    "enrol_template",
    "entry_status",
    "get_entry",
    "hit_facts",
    "list_entries",
    "load_gallery_templates",
    "normalise_template",
    "renew_entry",
    "revoke_entry",
]

MAX_DIM = 1024
MAX_VALIDITY = dt.timedelta(days=3 * 365)


@dataclass(frozen=True)
class WatchlistEntry:
    """An entry as staff see it: never the template."""

    id: str
    subject_ref: str
    legal_basis: str
    category: str
    status: str
    created_by: str
    created_at: dt.datetime
    expires_at: dt.datetime
    template_dim: int

    def public(self, now: dt.datetime) -> dict[str, Any]:
        """JSON-ready view with the effective status (``expired`` past the expiry)."""
        return {
            "id": self.id,
            "subject_ref": self.subject_ref,
            "legal_basis": self.legal_basis,
            "category": self.category,
            "status": entry_status(self.status, self.expires_at, now),
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "template_dim": self.template_dim,
        }


def entry_status(stored: str, expires_at: dt.datetime, now: dt.datetime) -> str:
    """Effective status: stored status, or ``expired`` once past ``expires_at``."""
    if stored in ("active", "pending") and utc(expires_at) <= now:
        return "expired"
    return stored


def _aad(entry_id: str) -> bytes:
    return f"veilmatch/watchlist-template/v1/{entry_id}".encode()


def normalise_template(values: Sequence[float]) -> npt.NDArray[np.float32]:
    """Check and L2-normalise a template (finite, 32..1024 dims, non-zero)."""
    if not 32 <= len(values) <= MAX_DIM:
        raise MalformedRequestError(f"template must have 32..{MAX_DIM} components")
    vec = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(vec)):
        raise MalformedRequestError("template has non-finite components")
    norm = float(np.linalg.norm(vec))
    if not math.isfinite(norm) or norm < 1e-6:
        raise MalformedRequestError("template has zero norm")
    return (vec / norm).astype(np.float32)


def _check_validity(expires_at: dt.datetime, now: dt.datetime) -> dt.datetime:
    expires_at = utc(expires_at)
    if expires_at <= now:
        raise MalformedRequestError("expires_at must be in the future")
    if expires_at > now + MAX_VALIDITY:
        raise MalformedRequestError("expires_at may be at most three years ahead")
    return expires_at


def enrol_template(
    conn: Connection,
    kek: KeyEncryptionKey,
    template: npt.NDArray[np.float32],
    subject_ref: str,
    legal_basis: str,
    category: str,
    expires_at: dt.datetime,
    *,
    officer: str,
    now: dt.datetime,
) -> str:
    """Store a pending entry with its sealed template; returns the entry id."""
    expires_at = _check_validity(expires_at, now)
    entry_id = str(uuid.uuid4())
    blob = seal(kek, np.ascontiguousarray(template, dtype="<f4").tobytes(), _aad(entry_id))
    conn.execute(
        watchlist_entries.insert().values(
            id=entry_id,
            subject_ref=subject_ref,
            template_sealed=blob,
            template_dim=int(template.shape[0]),
            legal_basis=legal_basis,
            category=category,
            status="pending",
            created_by=officer,
            created_at=now,
            expires_at=expires_at,
        )
    )
    return entry_id


def _row(conn: Connection, entry_id: str) -> Any:
    row = conn.execute(
        sa.select(watchlist_entries).where(watchlist_entries.c.id == entry_id)
    ).first()
    if row is None:
        raise NotFoundError("no such watchlist entry")
    return row


def get_entry(conn: Connection, entry_id: str) -> WatchlistEntry:
    """One entry (without its template)."""
    return _to_entry(_row(conn, entry_id))


def _to_entry(row: Any) -> WatchlistEntry:
    return WatchlistEntry(
        id=row.id,
        subject_ref=row.subject_ref,
        legal_basis=row.legal_basis,
        category=row.category,
        status=row.status,
        created_by=row.created_by,
        created_at=utc(row.created_at),
        expires_at=utc(row.expires_at),
        template_dim=int(row.template_dim),
    )


def list_entries(conn: Connection, limit: int = 500, offset: int = 0) -> list[WatchlistEntry]:
    """Entries, newest first."""
    rows = conn.execute(
        sa.select(watchlist_entries)
        .order_by(watchlist_entries.c.created_at.desc(), watchlist_entries.c.id)
        .limit(limit)
        .offset(offset)
    )
    return [_to_entry(row) for row in rows]


def _record_approval(
    conn: Connection,
    entry_id: str,
    action: str,
    approver: str,
    legal_basis: str,
    expires_at: dt.datetime,
    now: dt.datetime,
) -> None:
    conn.execute(
        enrolment_approvals.insert().values(
            id=str(uuid.uuid4()),
            entry_id=entry_id,
            action=action,
            approver=approver,
            at=now,
            legal_basis=legal_basis,
            expires_at=expires_at,
        )
    )


def approve_entry(conn: Connection, entry_id: str, supervisor: str, now: dt.datetime) -> None:
    """pending → active. The approver must not be the enroller (four-eyes)."""
    row = _row(conn, entry_id)
    if row.status != "pending":
        raise ConflictError("only a pending entry can be approved", code="entry-not-pending")
    if row.created_by == supervisor:
        raise ForbiddenError("the enroller cannot approve their own entry", code="four-eyes")
    if utc(row.expires_at) <= now:
        raise ConflictError("entry expired before approval", code="entry-expired")
    conn.execute(
        watchlist_entries.update().where(watchlist_entries.c.id == entry_id).values(status="active")
    )
    _record_approval(
        conn, entry_id, "approve", supervisor, row.legal_basis, utc(row.expires_at), now
    )


def renew_entry(
    conn: Connection,
    entry_id: str,
    supervisor: str,
    legal_basis: str,
    expires_at: dt.datetime,
    now: dt.datetime,
) -> None:
    """Extend an active (or lapsed) entry with a restated legal basis."""
    row = _row(conn, entry_id)
    if row.status != "active":
        raise ConflictError("only an approved entry can be renewed", code="entry-not-active")
    expires_at = _check_validity(expires_at, now)
    conn.execute(
        watchlist_entries.update()
        .where(watchlist_entries.c.id == entry_id)
        .values(expires_at=expires_at, legal_basis=legal_basis)
    )
    _record_approval(conn, entry_id, "renew", supervisor, legal_basis, expires_at, now)


def revoke_entry(
    conn: Connection, entry_id: str, supervisor: str, reason: str, now: dt.datetime
) -> None:
    """Any state → revoked; the sealed template is deleted at once."""
    row = _row(conn, entry_id)
    if row.status == "revoked":
        raise ConflictError("entry already revoked", code="entry-revoked")
    conn.execute(
        watchlist_entries.update()
        .where(watchlist_entries.c.id == entry_id)
        .values(
            status="revoked",
            revoked_at=now,
            revoked_by=supervisor,
            revoke_reason=reason,
            template_sealed=None,
        )
    )


def hit_facts(conn: Connection, entry_ids: Sequence[str], now: dt.datetime) -> list[dict[str, Any]]:
    """What ``veilmatch.alert`` needs to know about each matched entry (no template)."""
    if not entry_ids:
        return []
    rows = conn.execute(
        sa.select(watchlist_entries).where(watchlist_entries.c.id.in_(list(entry_ids)))
    ).all()
    return [
        {
            "entry_id": row.id,
            "status": entry_status(row.status, utc(row.expires_at), now),
            "legal_basis": row.legal_basis,
            "expires_at": utc(row.expires_at).isoformat(),
            "category": row.category,
        }
        for row in sorted(rows, key=lambda r: str(r.id))
    ]


def load_gallery_templates(
    conn: Connection, kek: KeyEncryptionKey, now: dt.datetime
) -> tuple[list[str], npt.NDArray[np.float32]]:
    """Active, unexpired entries' ids and their opened templates (rows align).

    Returns an empty (0, 0) array when nothing is matchable. All templates must share
    one dimension (the deployment's model).
    """
    rows = conn.execute(
        sa.select(
            watchlist_entries.c.id,
            watchlist_entries.c.template_sealed,
            watchlist_entries.c.template_dim,
        )
        .where(
            watchlist_entries.c.status == "active",
            watchlist_entries.c.expires_at > now,
            watchlist_entries.c.template_sealed.is_not(None),
        )
        .order_by(watchlist_entries.c.id)
    ).all()
    if not rows:
        return [], np.zeros((0, 0), dtype=np.float32)
    dims = {int(row.template_dim) for row in rows}
    if len(dims) != 1:
        raise ConflictError("watchlist templates have mixed dimensions", code="mixed-dimensions")
    ids = [str(row.id) for row in rows]
    matrix = np.stack(
        [
            np.frombuffer(open_sealed(kek, bytes(row.template_sealed), _aad(row.id)), dtype="<f4")
            for row in rows
        ]
    ).astype(np.float32)
    return ids, matrix
