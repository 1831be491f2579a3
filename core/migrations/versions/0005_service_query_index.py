"""Index pending queries by (gate, time) for the per-gate rate limit and statistics.

At 640,000 crossings a day the rate-limit count and the per-gate daily statistics
would otherwise scan the whole table.

Revision ID: 0005_service_query_index
Revises: 0004_service
"""

from alembic import op

revision = "0005_service_query_index"
down_revision = "0004_service"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_svc_pending_gate_created", "svc_pending_queries", ["gate_id", "created_at"])
    op.create_index("ix_svc_pending_created", "svc_pending_queries", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_svc_pending_created", "svc_pending_queries")
    op.drop_index("ix_svc_pending_gate_created", "svc_pending_queries")
