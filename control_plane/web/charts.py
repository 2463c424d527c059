"""Charts drawn on the server as inline SVG: no script library, readable without JavaScript, and
described for screen readers (``role="img"`` with ``<title>`` and ``<desc>``)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT, PAD_L, PAD_B, PAD_T = 640, 220, 48, 28, 12


def bar_chart(
    points: Sequence[tuple[str, int]], *, title: str, limit: int | None = None, limit_label: str = "quota"
) -> Markup:
    """Bars for ``points`` (label, value), with a dashed line at ``limit`` when given."""
    top = max([v for _, v in points] + [limit or 0, 1])
    plot_w, plot_h = WIDTH - PAD_L - 8, HEIGHT - PAD_B - PAD_T
    n = max(len(points), 1)
    slot = plot_w / n
    total = sum(v for _, v in points)
    cid = "c" + hashlib.sha1(title.encode()).hexdigest()[:8]  # unique per chart of a page (the titles differ)
    desc = f"{total} requests over {len(points)} periods" + (f"; {limit_label} {limit}" if limit else "")
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" '
        f'aria-labelledby="{cid}-t {cid}-d" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{cid}-t">{escape(title)}</title><desc id="{cid}-d">{escape(desc)}</desc>',
        f'<line x1="{PAD_L}" y1="{PAD_T + plot_h}" x2="{WIDTH - 8}" y2="{PAD_T + plot_h}" class="axis"/>',
        f'<text x="{PAD_L - 6}" y="{PAD_T + 4}" text-anchor="end" class="tick">{top}</text>',
        f'<text x="{PAD_L - 6}" y="{PAD_T + plot_h}" text-anchor="end" class="tick">0</text>',
    ]
    for i, (label, value) in enumerate(points):
        h = plot_h * value / top
        x = PAD_L + i * slot + slot * 0.15
        y = PAD_T + plot_h - h
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}" '
            f'data-value="{value}"><title>{escape(label)}: {value}</title></rect>'
        )
        if n <= 16 or i % max(1, n // 8) == 0:
            parts.append(
                f'<text x="{x + slot * 0.35:.1f}" y="{HEIGHT - 8}" text-anchor="middle" class="tick">'
                f"{escape(label[-5:])}</text>"
            )
    if limit:
        y = PAD_T + plot_h - plot_h * limit / top
        parts.append(f'<line class="limit" x1="{PAD_L}" y1="{y:.1f}" x2="{WIDTH - 8}" y2="{y:.1f}"/>')
        parts.append(
            f'<text x="{WIDTH - 10}" y="{y - 4:.1f}" text-anchor="end" class="tick">{limit_label} {limit}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
