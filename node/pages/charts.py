"""Bar charts as inline SVG, drawn on the server: no script, no web fonts, nothing fetched.

Each chart is an ``<svg role="img">`` with a title for screen readers and a
plain table of the same numbers beside it (``<details>`` in the template),
so the figures stay readable without the picture. Colours come from the
page's CSS classes (``bar``, ``bar-label``, ``bar-value``).
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup

ROW = 28  # height of one horizontal bar's row
LABEL_W = 150
BAR_W = 190
VALUE_W = 44
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _scale(values: Sequence[int], width: int) -> list[int]:
    top = max(values, default=0) or 1
    return [max(1 if v else 0, round(v * width / top)) for v in values]


def hbar(title: str, items: Sequence[tuple[str, int]], *, href: Sequence[str | None] | None = None,
         narrow: bool = False) -> Markup:
    """Horizontal bars, one per (label, value), largest first as given; optional link per bar.

    ``narrow`` draws it for a side column (about 270 px) at the same text size.
    """
    label_w, bar_w, cut = (110, 116, 13) if narrow else (LABEL_W, BAR_W, 19)
    if not items:
        return Markup('<p class="empty">{}</p>').format(f"{title}: nothing yet.")
    height = ROW * len(items) + 8
    width = label_w + bar_w + VALUE_W
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
             f'aria-label="{escape(title)}" preserveAspectRatio="xMinYMin meet">',
             f"<title>{escape(title)}</title>"]
    for i, ((label, value), w) in enumerate(zip(items, _scale([v for _, v in items], bar_w), strict=True)):
        y = 4 + i * ROW
        text = escape(label if len(label) <= cut else label[:cut - 1] + "…")
        bar = (f'<text class="bar-label" x="{label_w - 8}" y="{y + 19}" text-anchor="end">{text}</text>'
               f'<rect class="bar" x="{label_w}" y="{y + 4}" width="{w}" height="{ROW - 8}" rx="2"/>'
               f'<text class="bar-value" x="{label_w + w + 6}" y="{y + 19}">{value}</text>')
        link = href[i] if href is not None else None
        if link:
            bar = f'<a href="{escape(link)}">{bar}</a>'
        parts.append(bar)
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704  (every label went through escape(); numbers are ints)


def columns(title: str, items: Sequence[tuple[str, int]]) -> Markup:
    """Vertical bars over time (e.g. months), labels under each bar."""
    if not items:
        return Markup('<p class="empty">{}</p>').format(f"{title}: nothing yet.")
    col, plot_h, top_pad, label_h = 36, 140, 20, 40
    width = col * len(items) + 8
    height = top_pad + plot_h + label_h
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
             f'aria-label="{escape(title)}" preserveAspectRatio="xMinYMin meet">',
             f"<title>{escape(title)}</title>",
             f'<line class="axis" x1="4" y1="{top_pad + plot_h}" x2="{width - 4}" y2="{top_pad + plot_h}"/>']
    for i, ((label, value), h) in enumerate(zip(items, _scale([v for _, v in items], plot_h), strict=True)):
        x = 8 + i * col
        y = top_pad + plot_h - h
        parts.append(f'<rect class="bar" x="{x + 4}" y="{y}" width="{col - 8}" height="{h}" rx="2"/>')
        if value:
            parts.append(f'<text class="bar-value" x="{x + col / 2}" y="{y - 5}" '
                         f'text-anchor="middle">{value}</text>')
        year, _, month = label.partition("-")
        name = MONTHS[int(month) - 1] if month.isdigit() and 1 <= int(month) <= 12 else (month or label)
        parts.append(f'<text class="bar-label" x="{x + col / 2}" y="{top_pad + plot_h + 17}" '
                     f'text-anchor="middle">{escape(name)}</text>')
        if month in ("01", "") or i == 0:
            parts.append(f'<text class="bar-label small" x="{x + col / 2}" y="{top_pad + plot_h + 34}" '
                         f'text-anchor="middle">{escape(year)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704  (every label went through escape(); numbers are ints)
