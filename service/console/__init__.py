"""The web console for officers, oversight bodies and the legal team.

Server-rendered pages (Jinja2, a little plain JavaScript, no build step) on the staff
listener, behind a session cookie over the service's local accounts and the same
``veilmatch.access`` policy as the API. Usage::

    from service import console

    app.include_router(console.router)   # pages under /console/

See ``docs/console.md``.
"""

from __future__ import annotations

from service.console.routes import router

__all__ = ["router"]
