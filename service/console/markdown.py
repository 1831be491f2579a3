"""Markdown to HTML for the generated policy documentation.

Raw HTML in the source is not passed through (``html=False``), so the output is safe
to embed; headings get ``id`` anchors in the form the document's own table of contents
links to (lower case, punctuation dropped, spaces to hyphens).
"""

from __future__ import annotations

import re

from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from markupsafe import Markup

__all__ = ["slug", "to_html"]


def slug(title: str) -> str:
    """``"Access control"`` → ``"access-control"``."""
    return re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-")


def _heading_ids(state: StateCore) -> None:
    tokens = state.tokens
    for i, token in enumerate(tokens[:-1]):
        if token.type == "heading_open":
            token.attrSet("id", slug(tokens[i + 1].content))


_MD = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")
_MD.core.ruler.push("heading_ids", _heading_ids)


def to_html(text: str) -> Markup:
    """Render Markdown ``text`` (raw HTML escaped)."""
    return Markup(_MD.render(text))  # noqa: S704 - markdown-it escapes text, html=False
