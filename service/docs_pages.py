"""The interactive API pages ``/docs`` (Swagger UI) and ``/redoc``, off unless asked for.

Both pages load their code from a CDN (``cdn.jsdelivr.net``, by major version) and run
an inline bootstrap script: acceptable on a developer's machine, not on a production
listener that serves officers' sessions. So they exist only with ``Settings.api_docs``
(default off); ``/openapi.json`` is always served, as JSON under the API's
``default-src 'none'`` policy. When on, each page carries its own
Content-Security-Policy: scripts from the CDN plus the page's inline script by its
SHA-256 (computed from the exact HTML served, so it cannot drift from FastAPI's
template), no other script, no framing, no form targets, fetches to this origin only.
ReDoc injects its styles at run time, so styles (not scripts) allow ``'unsafe-inline'``.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Final

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse

__all__ = ["add_docs_pages", "page_csp"]

_CDN: Final = "https://cdn.jsdelivr.net"
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


def page_csp(html: bytes) -> str:
    """The Content-Security-Policy for one docs page's exact ``html``."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(html)
    )
    return (
        f"default-src 'none'; script-src {_CDN} {hashes}".rstrip()
        + f"; style-src {_CDN} https://fonts.googleapis.com 'unsafe-inline'"
        + "; font-src https://fonts.gstatic.com"
        + f"; img-src 'self' data: {_CDN} https://fastapi.tiangolo.com"
        + "; connect-src 'self'; worker-src blob:"
        + "; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )


def add_docs_pages(app: FastAPI) -> None:
    """Serve ``/docs`` and ``/redoc`` for ``app`` (built with ``docs_url=None``)."""
    openapi_url = app.openapi_url or "/openapi.json"
    pages = {
        "/docs": get_swagger_ui_html(openapi_url=openapi_url, title=f"{app.title} - docs").body,
        "/redoc": get_redoc_html(openapi_url=openapi_url, title=f"{app.title} - ReDoc").body,
    }
    for path, html in pages.items():
        csp = page_csp(bytes(html))

        def page(html: bytes = bytes(html), csp: str = csp) -> HTMLResponse:
            return HTMLResponse(html, headers={"content-security-policy": csp})

        app.add_api_route(path, page, methods=["GET"], include_in_schema=False)
