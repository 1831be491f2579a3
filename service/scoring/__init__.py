"""Encrypted scoring behind one interface: :class:`~service.scoring.backend.ScoringBackend`.

One job per module:

- :mod:`~service.scoring.backend`: the interface every engine implements, the outcome
  of one scored query and the gallery version hash;
- :mod:`~service.scoring.admission`: the bounded queue (at most ``queue_limit``
  queries in flight, else 503);
- :mod:`~service.scoring.routing`: which worker takes a query or a preparation
  (preparation affinity);
- :mod:`~service.scoring.workers`: one record per scoring worker and the gallery
  version they hold;
- :mod:`~service.scoring.supervision`: restarting dead workers with backoff, pinging
  idle ones;
- :mod:`~service.scoring.pending`: the pending-query store (the per-query secret
  mapping until the gate reveals);
- :mod:`~service.scoring.inprocess`: the embedded engine, worker processes of this
  service process (the default);
- :mod:`~service.scoring.factory`: the engine the settings choose.
"""
