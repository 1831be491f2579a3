"""The sequencer's authenticated ranges (``audit_ranges``), append-only like the log.

Revision ID: 0006_audit_sequencer
Revises: 0002_audit

Each append transaction stores the range it added with a tag under the sequencer key
(which never lives in the database); the checkpointer signs a size only after checking
that chain. An existing log needs no backfill: the appender and checkpointer anchor the
chain at the newest signed checkpoint, so stop the service (its stop signs a final
checkpoint) before upgrading.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_audit_sequencer"
down_revision = "0002_audit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_ranges",
        sa.Column("end_size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("start_size", sa.BigInteger, nullable=False),
        sa.Column("prev_tag", sa.LargeBinary, nullable=False),
        sa.Column("root", sa.LargeBinary(32), nullable=False),
        sa.Column("tag", sa.LargeBinary, nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        # audit_refuse_change() comes from 0002_audit.
        op.execute(
            "CREATE TRIGGER audit_ranges_append_only BEFORE UPDATE OR DELETE ON audit_ranges "
            "FOR EACH ROW EXECUTE FUNCTION audit_refuse_change()"
        )
        op.execute(
            "CREATE TRIGGER audit_ranges_no_truncate BEFORE TRUNCATE ON audit_ranges "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change()"
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_ranges_no_{verb.lower()} BEFORE {verb} ON audit_ranges "
                "BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END"
            )


def downgrade() -> None:
    op.drop_table("audit_ranges")
