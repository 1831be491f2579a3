"""veilmatch: privacy-focused, auditable encrypted face matching for border gates.

This package is the application layer, the top of the layer stack: the ``veilmatch``
CLI, the demo, the local stack, the simulator, reconciliation and the retention CLI.
It may import every component; nothing imports it. The base layer (settings,
database, errors, logs, migrations) is ``core``; the components are the top-level
packages ``crypto``, ``audit``, ``policy``, ``gate`` and ``service``.
"""

from core import __version__

__all__ = ["__version__"]
