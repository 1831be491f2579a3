"""Service tables: accounts, gates and keys, watchlist, alerts, crossings, queries.

Revision ID: 0004_service
Revises: 0001_baseline
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_service"
down_revision = "0001_baseline"
branch_labels = ("service",)
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "svc_accounts",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=True),
    )
    op.create_table(
        "svc_gates",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("site", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("cert_sha256", sa.String(64), nullable=False),
        sa.Column("registered_at", TS, nullable=False),
        sa.Column("approved_by", sa.String(64), nullable=True),
        sa.Column("approved_at", TS, nullable=True),
        sa.Column("revoked_at", TS, nullable=True),
        sa.Column("last_seen_at", TS, nullable=True),
    )
    op.create_table(
        "svc_gate_keys",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("gate_id", sa.String(128), sa.ForeignKey("svc_gates.id"), nullable=False),
        sa.Column("signing_public_key", sa.LargeBinary, nullable=False),
        sa.Column("he_public_bundle", sa.LargeBinary, nullable=False),
        sa.Column("he_key_id", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("retired_at", TS, nullable=True),
    )
    op.create_index("ix_svc_gate_keys_gate", "svc_gate_keys", ["gate_id"])
    op.create_table(
        "svc_watchlist_entries",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("subject_ref", sa.String(128), nullable=False),
        sa.Column("template_sealed", sa.LargeBinary, nullable=True),
        sa.Column("template_dim", sa.Integer, nullable=False),
        sa.Column("legal_basis", sa.String(500), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.Column("revoked_by", sa.String(64), nullable=True),
        sa.Column("revoke_reason", sa.String(500), nullable=True),
    )
    op.create_table(
        "svc_enrolment_approvals",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "entry_id",
            sa.String(36),
            sa.ForeignKey("svc_watchlist_entries.id"),
            nullable=False,
        ),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("approver", sa.String(64), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("legal_basis", sa.String(500), nullable=False),
        sa.Column("expires_at", TS, nullable=False),
    )
    op.create_table(
        "svc_alerts",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("gate_id", sa.String(128), nullable=False),
        sa.Column("query_id", sa.String(36), nullable=False),
        sa.Column("entry_ids", sa.Text, nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("decision_id", sa.String(128), nullable=False),
        sa.Column("bundle_digest", sa.String(128), nullable=False),
        sa.Column("gallery_version", sa.String(128), nullable=False),
        sa.Column("closed_at", TS, nullable=True),
    )
    op.create_index("ix_svc_alerts_created", "svc_alerts", ["created_at"])
    op.create_table(
        "svc_alert_reviews",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("alert_id", sa.String(36), sa.ForeignKey("svc_alerts.id"), nullable=False),
        sa.Column("reviewer", sa.String(64), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.UniqueConstraint("alert_id", "reviewer", name="uq_svc_alert_reviews_reviewer"),
    )
    op.create_table(
        "svc_crossings",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("doc_pseudonym", sa.String(64), nullable=False),
        sa.Column("gate_id", sa.String(128), nullable=False),
        sa.Column("at", TS, nullable=False),
    )
    op.create_index("ix_svc_crossings_doc_at", "svc_crossings", ["doc_pseudonym", "at"])
    op.create_table(
        "svc_pending_queries",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("gate_id", sa.String(128), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("gallery_version", sa.String(128), nullable=False),
        sa.Column("doc_pseudonym", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("decision_id", sa.String(128), nullable=True),
    )
    op.create_index("ix_svc_pending_expires", "svc_pending_queries", ["expires_at"])
    op.create_table(
        "svc_probe_records",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("query_id", sa.String(36), nullable=False),
        sa.Column("alert_id", sa.String(36), nullable=True),
        sa.Column("ciphertext", sa.LargeBinary, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "svc_idempotency_keys",
        sa.Column("gate_id", sa.String(128), primary_key=True),
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("route", sa.String(64), nullable=False),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer, nullable=False),
        sa.Column("response", sa.LargeBinary, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "svc_request_nonces",
        sa.Column("gate_id", sa.String(128), primary_key=True),
        sa.Column("nonce", sa.String(64), primary_key=True),
        sa.Column("seen_at", TS, nullable=False),
    )


def downgrade() -> None:
    for name in (
        "svc_request_nonces",
        "svc_idempotency_keys",
        "svc_probe_records",
        "svc_pending_queries",
        "svc_crossings",
        "svc_alert_reviews",
        "svc_alerts",
        "svc_enrolment_approvals",
        "svc_watchlist_entries",
        "svc_gate_keys",
        "svc_gates",
        "svc_accounts",
    ):
        op.drop_table(name)
