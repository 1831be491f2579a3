"""A review racing the retention sweep's delete of the same alert (PostgreSQL, where two
transactions really interleave; SQLite serialises writers)."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from core.settings import Settings
from service.alerts import review_alert
from service.errors import NotFoundError
from service.tables import alerts
from tests.conftest import POSTGRES_URL, settings_for
from tests.service.conftest import raise_test_alert


@pytest.fixture(params=["postgres"] if POSTGRES_URL else [])
def db_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """PostgreSQL only (overrides the two-backend fixture of ``tests/conftest.py``)."""
    yield from settings_for(request.param, tmp_path)


def _alert(engine: Engine, now: dt.datetime) -> str:
    with engine.begin() as conn:
        return raise_test_alert(conn, "race", now)


def test_review_after_an_uncommitted_delete_waits_and_finds_no_alert(engine: Engine) -> None:
    now = dt.datetime.now(dt.UTC)
    alert_id = _alert(engine, now)
    outcome: list[BaseException | str] = []
    sweeper = engine.connect()
    sweep = sweeper.begin()
    sweeper.execute(alerts.delete().where(alerts.c.id == alert_id))  # not committed yet

    def officer() -> None:
        try:
            with engine.begin() as conn:
                outcome.append(
                    review_alert(
                        conn, alert_id, "officer-1", "officer", "confirm", "", now, _pending
                    )
                )
        except BaseException as exc:  # recorded for the assertion
            outcome.append(exc)

    thread = threading.Thread(target=officer)
    thread.start()
    thread.join(1.0)
    assert thread.is_alive() and not outcome  # the review waits for the sweep's lock
    sweep.commit()
    sweeper.close()
    thread.join(30)
    assert len(outcome) == 1 and isinstance(outcome[0], NotFoundError), outcome


def _pending(reviews: list[dict[str, str]]) -> str:
    return "pending"
