"""The active profile's legal obligations for the console's legal pages.

``veilmatch.legal.obligations`` decides which obligations apply given how many people's
face information the service stores (for example the Mainland filing duty from
100,000 people); this module counts them and asks the policy. The count is an
aggregate: no entry, reference or template leaves this module.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from policy.engine import LEGAL_OBLIGATIONS
from policy.errors import PolicyError
from service.context import ServiceContext
from service.tables import watchlist_entries

__all__ = ["face_subjects_stored", "obligations_for"]


def face_subjects_stored(conn: Connection) -> int:
    """Distinct watchlist subjects whose face template is still stored (any status)."""
    query = sa.select(sa.func.count(sa.distinct(watchlist_entries.c.subject_ref))).where(
        watchlist_entries.c.template_sealed.is_not(None)
    )
    return int(conn.execute(query).scalar_one())


def obligations_for(ctx: ServiceContext) -> dict[str, Any] | None:
    """The policy's answer for today's watchlist size, with that size and the decision
    id; None when the loaded policy cannot answer (shown as unavailable, never guessed)."""
    with ctx.engine.connect() as conn:
        size = face_subjects_stored(conn)
    try:
        decision = ctx.policy.evaluate(LEGAL_OBLIGATIONS, {"watchlist_size": size})
    except PolicyError:
        return None
    result = decision.result if isinstance(decision.result, dict) else {}
    return {
        "watchlist_size": size,
        "profile": result.get("profile"),
        "obligations": result.get("obligations", []),
        "decision_id": decision.decision_id,
    }
