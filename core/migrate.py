"""Alembic migrations, driven from code (no alembic.ini needed).

Each component owns a migration branch rooted at ``0001_baseline`` (``branch_labels``
name the component), so components can add tables independently; ``upgrade`` always
targets ``heads``. Running it twice is a no-op.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config(engine: Engine) -> Config:
    """An Alembic config bound to ``engine`` (passed to env.py through attributes)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, target: str = "heads") -> None:
    """Bring the schema to ``target`` (default: every branch head)."""
    command.upgrade(alembic_config(engine), target)


def current_revisions(engine: Engine) -> set[str]:
    """Revisions the database is at (empty before the first upgrade)."""
    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


def head_revisions(engine: Engine) -> set[str]:
    """Revisions the code expects."""
    return set(ScriptDirectory.from_config(alembic_config(engine)).get_heads())


def is_up_to_date(engine: Engine) -> bool:
    """True when the database schema matches the code's migration heads."""
    return current_revisions(engine) == head_revisions(engine)
