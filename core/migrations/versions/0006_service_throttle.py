"""Login throttling and aggregated unauthenticated denials, shared by every replica.

``svc_login_throttle`` counts sign-in attempts per account (a SHA-256 of the typed
username) and per client address, and holds lock-outs. ``svc_denial_counts`` counts
unauthenticated refusals per source, window, route and code until they are written to
the audit log as one entry per source and window. Both live in the database, not in a
process's memory, so several API replicas on one PostgreSQL share them.

Revision ID: 0006_service_throttle
Revises: 0005_service_query_index
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_service_throttle"
down_revision = "0005_service_query_index"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "svc_login_throttle",
        sa.Column("key", sa.String(80), primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("window_start", TS, nullable=False),
        sa.Column("locked_until", TS, nullable=True),
    )
    op.create_table(
        "svc_denial_counts",
        sa.Column("window_start", TS, primary_key=True),
        sa.Column("source", sa.String(64), primary_key=True),
        sa.Column("route", sa.String(200), primary_key=True),
        sa.Column("code", sa.String(64), primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("svc_denial_counts")
    op.drop_table("svc_login_throttle")
