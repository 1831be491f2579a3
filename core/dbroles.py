"""Least-privilege PostgreSQL roles: the owner migrates, the application only appends.

Two roles per deployment (the DBA creates them; ``docs/deploy.md``):

- the **owner** role owns the schema and every table; it runs the migrations
  (``database_migration_url``) and nothing else;
- the **application** role (``database_url``) is what the service connects as.

:func:`grant_script` gives the application role, for every table of the schema:

=========================  =========================================================
table                      privileges
=========================  =========================================================
``audit_head``             SELECT; UPDATE of every column but ``id`` (the one head row
                           is rewritten by each append; the sequencer's chain, not the
                           database, is what makes that row trustworthy)
other ``audit_*``          SELECT, INSERT: no UPDATE, DELETE or TRUNCATE, whatever the
                           triggers say; a new audit table is append-only by default
``alembic_version``        SELECT (the service checks the schema is current)
every other table          SELECT, INSERT, UPDATE, DELETE (the service's own records)
=========================  =========================================================

plus USAGE on the schema (never CREATE) and EXECUTE on the one ``SECURITY DEFINER``
function that deletes audit payloads under retention (migration ``0007_roles``). Not
being the owner, the application role cannot alter, disable or drop triggers. The
script is idempotent (it revokes first) and refuses tables not owned by the owner role
and an application role that is a superuser or the owner; run it after every upgrade.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Engine

from core.db import make_engine
from core.errors import ConfigurationError
from core.settings import Settings

__all__ = [
    "PAYLOAD_DELETE_FUNCTION",
    "apply_script",
    "grant_script",
    "migration_engine",
    "quote_ident",
]

#: The retention function the application role may execute (migration ``0007_roles``).
PAYLOAD_DELETE_FUNCTION = "audit_delete_expired_payloads"
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def quote_ident(name: str, setting: str) -> str:
    """``name`` double-quoted after checking it is a plain lower-case identifier."""
    if not _IDENT.match(name):
        raise ConfigurationError(setting, f"{name!r} is not a plain identifier ([a-z_][a-z0-9_]*)")
    return f'"{name}"'


def grant_script(app_role: str, owner_role: str, schema: str) -> str:
    """The SQL (one transaction) that gives ``app_role`` exactly the rights above."""
    app = quote_ident(app_role, "--app")
    owner = quote_ident(owner_role, "--owner")
    nsp = quote_ident(schema, "VEILMATCH_DATABASE_SCHEMA")
    if app_role == owner_role:
        raise ConfigurationError("--app", "the application role must not be the owner role")
    # Identifiers are checked plain names above, so quoting them is safe.
    literal = {"app": f"'{app_role}'", "owner": f"'{owner_role}'", "nsp": f"'{schema}'"}
    return f"""-- veilmatch least-privilege grants: schema {nsp}, owner {owner}, application {app}.
-- Run as the owner (or a superuser) after every `veilmatch db upgrade`; idempotent.
BEGIN;
DO $grants$
DECLARE
    t record;
    cols text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {literal["app"]}) THEN
        RAISE EXCEPTION 'role % does not exist', {literal["app"]};
    END IF;
    IF (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = {literal["app"]}) THEN
        RAISE EXCEPTION 'the application role must not be a superuser or bypass RLS';
    END IF;
    FOR t IN
        SELECT c.relname, pg_get_userbyid(c.relowner) AS owner
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = {literal["nsp"]} AND c.relkind IN ('r', 'p')
    LOOP
        IF t.owner <> {literal["owner"]} THEN
            RAISE EXCEPTION 'table % is owned by %, not by the owner role', t.relname, t.owner;
        END IF;
        EXECUTE format('REVOKE ALL ON TABLE %I.%I FROM %I', {literal["nsp"]}, t.relname,
                       {literal["app"]});
        IF t.relname = 'audit_head' THEN
            SELECT string_agg(quote_ident(attname), ', ') INTO cols
            FROM pg_attribute
            WHERE attrelid = format('%I.%I', {literal["nsp"]}, t.relname)::regclass
              AND attnum > 0 AND NOT attisdropped AND attname <> 'id';
            EXECUTE format('GRANT SELECT, UPDATE (%s) ON TABLE %I.%I TO %I', cols,
                           {literal["nsp"]}, t.relname, {literal["app"]});
        ELSIF t.relname LIKE 'audit\\_%' THEN
            EXECUTE format('GRANT SELECT, INSERT ON TABLE %I.%I TO %I', {literal["nsp"]},
                           t.relname, {literal["app"]});
        ELSIF t.relname = 'alembic_version' THEN
            EXECUTE format('GRANT SELECT ON TABLE %I.%I TO %I', {literal["nsp"]}, t.relname,
                           {literal["app"]});
        ELSE
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE %I.%I TO %I',
                           {literal["nsp"]}, t.relname, {literal["app"]});
        END IF;
    END LOOP;
END
$grants$;
REVOKE CREATE ON SCHEMA {nsp} FROM {app};
GRANT USAGE ON SCHEMA {nsp} TO {app};
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {nsp} TO {app};
REVOKE ALL ON FUNCTION {nsp}.{PAYLOAD_DELETE_FUNCTION}(bigint[], integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION {nsp}.{PAYLOAD_DELETE_FUNCTION}(bigint[], integer) TO {app};
COMMIT;
"""  # noqa: S608 - identifiers checked by quote_ident, no values from outside


def apply_script(engine: Engine, script: str) -> None:
    """Run ``script`` (several statements, its own BEGIN/COMMIT) on a fresh connection.

    The driver runs it as one simple query, so ``%`` in the PL/pgSQL is not taken for a
    parameter; the connection is discarded afterwards rather than pooled in autocommit.
    """
    raw = engine.raw_connection()
    try:
        driver: Any = raw.driver_connection
        driver.autocommit = True
        driver.execute(script)
    finally:
        raw.invalidate()


def migration_engine(settings: Settings) -> Engine:
    """An engine as the migration (owner) role: ``database_migration_url``, else the
    service's own ``database_url``."""
    if not settings.database_migration_url:
        return make_engine(settings)
    return make_engine(
        settings.model_copy(update={"database_url": settings.database_migration_url})
    )
