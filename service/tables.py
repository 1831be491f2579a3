"""The service's tables (SQLAlchemy Core). Created by migrations ``0004_service`` to
``0006_service_throttle``.

All times are UTC. SQLite drops the timezone on read, so readers go through
:func:`as_utc`. No table holds a template in the clear, an image, a raw document
number, or a plaintext key: watchlist templates are sealed
with AES-256-GCM (``crypto.atrest``); document references are keyed pseudonyms made
by the gates.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

metadata = sa.MetaData()
TS = sa.DateTime(timezone=True)

accounts = sa.Table(
    "svc_accounts",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("username", sa.String(64), nullable=False, unique=True),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("password_hash", sa.String(200), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("created_by", sa.String(64), nullable=True),
)

gates = sa.Table(
    "svc_gates",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("site", sa.String(128), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending | active | revoked
    sa.Column("cert_sha256", sa.String(64), nullable=False),
    sa.Column("registered_at", TS, nullable=False),
    sa.Column("approved_by", sa.String(64), nullable=True),
    sa.Column("approved_at", TS, nullable=True),
    sa.Column("revoked_at", TS, nullable=True),
    sa.Column("last_seen_at", TS, nullable=True),
)

gate_keys = sa.Table(
    "svc_gate_keys",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("gate_id", sa.String(128), sa.ForeignKey("svc_gates.id"), nullable=False),
    sa.Column("signing_public_key", sa.LargeBinary, nullable=False),
    sa.Column("he_public_bundle", sa.LargeBinary, nullable=False),
    sa.Column("he_key_id", sa.String(128), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # active | retired
    sa.Column("created_at", TS, nullable=False),
    sa.Column("expires_at", TS, nullable=False),
    sa.Column("retired_at", TS, nullable=True),
    sa.Index("ix_svc_gate_keys_gate", "gate_id"),
)

watchlist_entries = sa.Table(
    "svc_watchlist_entries",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("subject_ref", sa.String(128), nullable=False),
    sa.Column("template_sealed", sa.LargeBinary, nullable=True),  # NULL once purged
    sa.Column("template_dim", sa.Integer, nullable=False),
    sa.Column("legal_basis", sa.String(500), nullable=False),
    sa.Column("category", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending | active | revoked
    sa.Column("created_by", sa.String(64), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("expires_at", TS, nullable=False),
    sa.Column("revoked_at", TS, nullable=True),
    sa.Column("revoked_by", sa.String(64), nullable=True),
    sa.Column("revoke_reason", sa.String(500), nullable=True),
)

enrolment_approvals = sa.Table(
    "svc_enrolment_approvals",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("entry_id", sa.String(36), sa.ForeignKey("svc_watchlist_entries.id"), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),  # approve | renew
    sa.Column("approver", sa.String(64), nullable=False),
    sa.Column("at", TS, nullable=False),
    sa.Column("legal_basis", sa.String(500), nullable=False),
    sa.Column("expires_at", TS, nullable=False),
)

alerts = sa.Table(
    "svc_alerts",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("gate_id", sa.String(128), nullable=False),
    sa.Column("query_id", sa.String(36), nullable=False),
    sa.Column("entry_ids", sa.Text, nullable=False),  # JSON list of watchlist entry ids
    sa.Column("reason", sa.String(64), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # open | actionable | dismissed
    sa.Column("decision_id", sa.String(128), nullable=False),
    sa.Column("bundle_digest", sa.String(128), nullable=False),
    sa.Column("gallery_version", sa.String(128), nullable=False),
    sa.Column("closed_at", TS, nullable=True),
    sa.Index("ix_svc_alerts_created", "created_at"),
)

alert_reviews = sa.Table(
    "svc_alert_reviews",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("alert_id", sa.String(36), sa.ForeignKey("svc_alerts.id"), nullable=False),
    sa.Column("reviewer", sa.String(64), nullable=False),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("verdict", sa.String(16), nullable=False),  # confirm | dismiss
    sa.Column("reason", sa.String(500), nullable=False),
    sa.Column("at", TS, nullable=False),
    sa.UniqueConstraint("alert_id", "reviewer", name="uq_svc_alert_reviews_reviewer"),
)

crossings = sa.Table(
    "svc_crossings",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("doc_pseudonym", sa.String(64), nullable=False),
    sa.Column("gate_id", sa.String(128), nullable=False),
    sa.Column("at", TS, nullable=False),
    sa.Index("ix_svc_crossings_doc_at", "doc_pseudonym", "at"),
)

pending_queries = sa.Table(
    "svc_pending_queries",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("gate_id", sa.String(128), nullable=False),
    sa.Column("key_id", sa.String(64), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("expires_at", TS, nullable=False),
    sa.Column("gallery_version", sa.String(128), nullable=False),
    sa.Column("doc_pseudonym", sa.String(64), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),  # pending | revealed | expired
    sa.Column("outcome", sa.String(16), nullable=True),
    sa.Column("decision_id", sa.String(128), nullable=True),
    sa.Index("ix_svc_pending_expires", "expires_at"),
    sa.Index("ix_svc_pending_gate_created", "gate_id", "created_at"),  # rate limit, stats
    sa.Index("ix_svc_pending_created", "created_at"),
)

probe_records = sa.Table(
    "svc_probe_records",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("query_id", sa.String(36), nullable=False),
    sa.Column("alert_id", sa.String(36), nullable=True),
    sa.Column("ciphertext", sa.LargeBinary, nullable=False),
    sa.Column("created_at", TS, nullable=False),
)

idempotency_keys = sa.Table(
    "svc_idempotency_keys",
    metadata,
    sa.Column("gate_id", sa.String(128), primary_key=True),
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("route", sa.String(64), nullable=False),
    sa.Column("body_sha256", sa.String(64), nullable=False),
    sa.Column("status_code", sa.Integer, nullable=False),
    sa.Column("response", sa.LargeBinary, nullable=False),
    sa.Column("created_at", TS, nullable=False),
)

request_nonces = sa.Table(
    "svc_request_nonces",
    metadata,
    sa.Column("gate_id", sa.String(128), primary_key=True),
    sa.Column("nonce", sa.String(64), primary_key=True),
    sa.Column("seen_at", TS, nullable=False),
)


login_throttle = sa.Table(
    "svc_login_throttle",
    metadata,
    # "account:<sha256 of the typed username, 32 hex>" or "address:<client address>"
    sa.Column("key", sa.String(80), primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False),  # attempts not proven good
    sa.Column("window_start", TS, nullable=False),
    sa.Column("locked_until", TS, nullable=True),
)

denial_counts = sa.Table(
    "svc_denial_counts",
    metadata,
    sa.Column("window_start", TS, primary_key=True),
    sa.Column("source", sa.String(64), primary_key=True),  # client address (IPv6: its /64)
    sa.Column("route", sa.String(200), primary_key=True),  # "GET /api/v1/alerts" (template)
    sa.Column("code", sa.String(64), primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
)


def as_utc(value: dt.datetime | None) -> dt.datetime | None:
    """Attach UTC to naive datetimes read back from SQLite."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def utc(value: dt.datetime) -> dt.datetime:
    """Like :func:`as_utc` for a value known not to be ``None``."""
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
