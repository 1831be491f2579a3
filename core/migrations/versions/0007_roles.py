"""Least-privilege roles: the one function through which the application deletes payloads.

Revision ID: 0007_roles
Revises: 0002_audit

PostgreSQL only (SQLite has no roles). The service's application role gets no DELETE
on ``audit_payloads`` (``veilmatch db roles`` writes its grants); retention deletes
payloads by calling ``audit_delete_expired_payloads(seqs, retention_days)``, which runs
with its owner's (the migration role's) rights and deletes only payloads that

1. belong to an entry that is not itself a ``retention.delete`` event (those payloads
   are what lets a verifier accept the other missing ones),
2. under a retention period of at least ``PAYLOAD_FLOOR_DAYS`` (the policy's own floor
   for audit payloads: EU AI Act Art. 19(1) and 26(6), six months), refused below, and
3. whose entry's leaf time (in the append-only leaf bytes) is at least
   ``retention_days`` before the database's clock, not the caller's.

It returns the sequence numbers it deleted; the caller logs exactly those. Its
``search_path`` is pinned to the schema it was created in, so a caller cannot redirect
its table names, and PUBLIC may not execute it (the grant script names the one role
that may).
"""

from alembic import op

revision = "0007_roles"
down_revision = "0002_audit"
branch_labels = ("roles",)
depends_on = None

#: The shortest retention period the function accepts for audit payloads, in days.
PAYLOAD_FLOOR_DAYS = 183
FUNCTION = "audit_delete_expired_payloads"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    schema = bind.exec_driver_sql("SELECT current_schema()").scalar_one()
    quoted = '"' + str(schema).replace('"', '""') + '"'
    op.execute(
        f"""
        CREATE FUNCTION {FUNCTION}(p_seqs bigint[], p_retention_days integer)
        RETURNS SETOF bigint
        LANGUAGE plpgsql
        SECURITY DEFINER
        SET search_path = {quoted}, pg_temp
        AS $$
        BEGIN
            IF p_retention_days IS NULL OR p_retention_days < {PAYLOAD_FLOOR_DAYS} THEN
                RAISE EXCEPTION
                    'audit payloads are kept at least {PAYLOAD_FLOOR_DAYS} days, not %',
                    p_retention_days
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            RETURN QUERY
            WITH deleted AS (
                DELETE FROM audit_payloads AS p
                USING audit_entries AS e
                WHERE p.seq = ANY (p_seqs)
                  AND e.seq = p.seq
                  AND e.event_type <> 'retention.delete'
                  AND (convert_from(e.leaf, 'UTF8')::jsonb ->> 'time')::timestamptz
                      <= now() - make_interval(days => p_retention_days)
                RETURNING p.seq
            )
            SELECT deleted.seq FROM deleted ORDER BY deleted.seq;
        END
        $$
        """  # noqa: S608 - the schema name is quoted, the rest are constants
    )
    op.execute(f"REVOKE ALL ON FUNCTION {FUNCTION}(bigint[], integer) FROM PUBLIC")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP FUNCTION IF EXISTS {FUNCTION}(bigint[], integer)")
