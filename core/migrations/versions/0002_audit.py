"""Audit log tables, with append-only enforcement in the database itself.

Revision ID: 0002_audit
Revises: 0001_baseline

Triggers refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL) on the entry, node,
checkpoint and cosignature tables, and UPDATE on payloads (which may only be deleted,
for retention). Both backends get them. They stop rewriting, not adding: appending
needs only INSERTs and an UPDATE of audit_head, so ``0006_audit_sequencer`` adds the
sequencer's authenticated ranges that the checkpointer checks before signing.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_audit"
down_revision = "0001_baseline"
branch_labels = ("audit",)
depends_on = None

_APPEND_ONLY = ("audit_entries", "audit_nodes", "audit_checkpoints", "audit_cosignatures")


def upgrade() -> None:
    op.create_table(
        "audit_entries",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("leaf", sa.LargeBinary, nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
    )
    op.create_index("ix_audit_entries_event_type", "audit_entries", ["event_type", "seq"])
    op.create_table(
        "audit_payloads",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("blob", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "audit_nodes",
        sa.Column("level", sa.SmallInteger, primary_key=True, autoincrement=False),
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
    )
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("tree_size", sa.BigInteger, nullable=False),
        sa.Column("frontier", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "audit_checkpoints",
        sa.Column("tree_size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("note", sa.LargeBinary, nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "audit_cosignatures",
        sa.Column("tree_size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("signer", sa.String(300), primary_key=True),
        sa.Column("line", sa.Text, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    assert head is not None
    op.bulk_insert(head, [{"id": 1, "tree_size": 0, "frontier": b""}])

    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'audit log is append-only: % on % refused',
                    TG_OP, TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
            END $$
            """
        )
        for table in _APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION audit_refuse_change()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change()"
            )
        op.execute(
            "CREATE TRIGGER audit_payloads_no_update BEFORE UPDATE ON audit_payloads "
            "FOR EACH ROW EXECUTE FUNCTION audit_refuse_change()"
        )
        op.execute(
            "CREATE TRIGGER audit_payloads_no_truncate BEFORE TRUNCATE ON audit_payloads "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change()"
        )
    else:
        for table in _APPEND_ONLY:
            for verb in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                    "BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END"
                )
        op.execute(
            "CREATE TRIGGER audit_payloads_no_update BEFORE UPDATE ON audit_payloads "
            "BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END"
        )


def downgrade() -> None:
    for table in (
        "audit_cosignatures",
        "audit_checkpoints",
        "audit_head",
        "audit_nodes",
        "audit_payloads",
        "audit_entries",
    ):
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS audit_refuse_change()")
