from sqlalchemy import inspect, text

from core.db import session_scope
from core.migrate import current_revisions, head_revisions, is_up_to_date, upgrade


def test_upgrade_creates_schema_and_twice_is_noop(raw_engine):
    assert current_revisions(raw_engine) == set()
    upgrade(raw_engine)
    first = current_revisions(raw_engine)
    assert first == head_revisions(raw_engine)
    tables = set(inspect(raw_engine).get_table_names())
    assert {"deployment", "alembic_version"} <= tables
    upgrade(raw_engine)
    assert current_revisions(raw_engine) == first
    assert set(inspect(raw_engine).get_table_names()) == tables
    assert is_up_to_date(raw_engine)


def test_session_scope_rolls_back_on_error(engine):
    try:
        with session_scope(engine) as session:
            session.execute(
                text("INSERT INTO deployment (name, created_at) VALUES ('x', CURRENT_TIMESTAMP)")
            )
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    with session_scope(engine) as session:
        assert session.execute(text("SELECT count(*) FROM deployment")).scalar_one() == 0
