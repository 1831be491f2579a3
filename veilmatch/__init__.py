"""veilmatch: privacy-focused, auditable encrypted face matching for border gates.

This package holds what every component shares: settings, the database engine and
session factory, migrations, structured logging and the ``veilmatch`` CLI. The
components themselves are the top-level packages ``gate``, ``service``, ``crypto``,
``audit`` and ``policy``.
"""

__version__ = "0.1.0"
