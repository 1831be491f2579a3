"""The scoring engine the settings choose (``scoring_backend``).

``embedded`` (the default, and what ``make demo`` and the tests run): worker processes
of this service process, :class:`~service.scoring.inprocess.InProcessBackend`. A
distributed engine adds its value to ``Settings.scoring_backend`` and its branch here;
nothing else in the service changes, since callers see only
:class:`~service.scoring.backend.ScoringBackend`.
"""

from __future__ import annotations

from core.settings import Settings
from service.scoring.backend import ScoringBackend
from service.scoring.inprocess import InProcessBackend

__all__ = ["build_backend"]


def build_backend(settings: Settings) -> ScoringBackend:
    """A new, empty scoring backend (no gallery until its first ``rebuild``)."""
    match settings.scoring_backend:
        case "embedded":
            return InProcessBackend(
                settings.match_workers,
                settings.match_queue_limit,
                settings.he_parameter_set,
                settings.match_key_cache,
                settings.match_prepared_cache,
                settings.match_prepare,
            )
