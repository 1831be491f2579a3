"""Small server-rendered SVG bar charts (no script, no external library, no CDN).

The SVG is accessible: ``role="img"`` with a title naming the series and its total,
and each bar carries a ``<title>`` (the day and its count) for tooltips and screen
readers. The numbers are also given as a table next to the chart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from markupsafe import Markup, escape

__all__ = ["bar_chart"]

WIDTH: Final = 560
HEIGHT: Final = 140
_PAD_LEFT: Final = 36
_PAD_BOTTOM: Final = 22
_PAD_TOP: Final = 8


def _nice_max(value: int) -> int:
    """The smallest 1, 2 or 5 × 10^k at or above ``value`` (at least 1)."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if m * step >= value:
                return max(1, m * step)
        step *= 10


def bar_chart(title: str, labels: Sequence[str], values: Sequence[int]) -> Markup:
    """An SVG bar chart of ``values`` per label (one bar each, oldest on the left).

    Requires ``len(labels) == len(values)`` and non-negative values.
    """
    if len(labels) != len(values):
        raise ValueError("one label per value")
    if any(v < 0 for v in values):
        raise ValueError("values must be non-negative")
    top = _nice_max(max(values, default=0))
    plot_w = WIDTH - _PAD_LEFT - 4
    plot_h = HEIGHT - _PAD_BOTTOM - _PAD_TOP
    n = max(len(values), 1)
    slot = plot_w / n
    bar = max(1.0, slot * 0.7)
    total = sum(values)
    base = _PAD_TOP + plot_h
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}: {total} in total" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}: {total} in total</title>",
        f'<line class="axis" x1="{_PAD_LEFT}" y1="{_PAD_TOP + plot_h}" '
        f'x2="{WIDTH - 4}" y2="{_PAD_TOP + plot_h}"/>',
        f'<text class="tick" x="{_PAD_LEFT - 4}" y="{_PAD_TOP + 8}" text-anchor="end">{top}</text>',
        f'<text class="tick" x="{_PAD_LEFT - 4}" y="{base}" text-anchor="end">0</text>',
    ]
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        h = plot_h * value / top
        x = _PAD_LEFT + i * slot + (slot - bar) / 2
        y = _PAD_TOP + plot_h - h
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}">'
            f"<title>{escape(label)}: {value}</title></rect>"
        )
    if labels:
        last = len(labels) - 1
        for i in sorted({0, last // 2, last}):
            x = _PAD_LEFT + i * slot + slot / 2
            parts.append(
                f'<text class="tick" x="{x:.1f}" y="{HEIGHT - 6}" text-anchor="middle">'
                f"{escape(labels[i][5:])}</text>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every interpolated text is escaped above
