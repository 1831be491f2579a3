"""The base layer every component stands on: settings, database, errors, logs, migrations.

It imports nothing of veilmatch's own (checked by the import contract in
``pyproject.toml``, run by ``make lint``). The components (``crypto``, ``audit``,
``policy``, ``gate``, ``service``) build on it, and the application layer
(``veilmatch``: CLI, demo, local stack, simulator) sits on top of everything.
"""

__version__ = "0.1.0"
