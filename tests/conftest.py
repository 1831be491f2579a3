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
from crypto.he import GateKeyBundle, get_parameter_set
from gate.warmup import warm_up
from service.he_worker import _warm_up as warm_up_scoring

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


@pytest.fixture(scope="session", autouse=True)
def _compiled_kernels() -> None:
    """Compile (or load from numba's on-disk cache) every HE kernel once, before any test
    starts a service or a gate.

    On a fresh clone the first compile takes one to two minutes on two cores; a test that
    waits for a service to become ready, a match to answer or a browser page to update
    would otherwise spend its own timeout on the compiler. Worker processes and child
    services then load the compiled kernels from the cache this writes.
    """
    params = get_parameter_set(load_settings().he_parameter_set)
    warm_up_scoring(params, 128, prepare=True)
    warm_up(GateKeyBundle.generate(params), 128, lambda _message: None)
