"""Shared fixtures: one database fixture parametrised over SQLite and PostgreSQL.

SQLite always runs. PostgreSQL runs when ``VEILMATCH_TEST_POSTGRES_URL`` is set; then an
unreachable server is a test failure, not a skip. Each test gets a clean schema: a
fresh SQLite file, or a fresh PostgreSQL schema (``search_path``) dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from core.db import make_engine
from core.migrate import upgrade
from core.settings import Settings, load_settings

POSTGRES_URL = os.environ.get("VEILMATCH_TEST_POSTGRES_URL", "")
BACKENDS = ["sqlite"] + (["postgres"] if POSTGRES_URL else [])


def _postgres_admin() -> Engine:
    return create_engine(load_settings(database_url=POSTGRES_URL).sqlalchemy_url)


@pytest.fixture(params=BACKENDS)
def db_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """Settings pointing at an empty database of each backend (no schema migrated yet)."""
    yield from settings_for(request.param, tmp_path)


def settings_for(backend: str, tmp_path: Path) -> Iterator[Settings]:
    """Yield settings for an empty database of ``backend``; drop it afterwards."""
    if backend == "sqlite":
        yield load_settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'test.db'}")
        return
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = _postgres_admin()
    with admin.begin() as conn:  # unreachable server: raises, test fails (never skips)
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield load_settings(data_dir=tmp_path, database_url=POSTGRES_URL, database_schema=schema)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def raw_engine(db_settings: Settings) -> Iterator[Engine]:
    """An engine on the clean, unmigrated database."""
    engine = make_engine(db_settings)
    yield engine
    engine.dispose()


@pytest.fixture
def engine(raw_engine: Engine) -> Engine:
    """An engine on a clean database migrated to the latest schema."""
    upgrade(raw_engine)
    return raw_engine
