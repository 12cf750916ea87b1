"""Hashrate charts as inline SVG, drawn on the server: no script, no library, readable at
once (a title stating the window, a y axis in a hashrate unit, UTC times on the x axis).

Pure code: points in, markup out. Every text is escaped here (a chart's title may hold a
miner's address). Colours come from the page's stylesheet (classes), so the chart
follows dark mode; the presentation attributes are the fallback without CSS.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime

from markupsafe import Markup, escape

from multipool.web.data import HashratePoint
from multipool.web.display import HASHRATE_UNITS, format_hashrate

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 64, 14, 30, 36
# The width of a digit at the phone's 26 px letters (style.css), in picture units.
PHONE_DIGIT_WIDTH = 16
# Half the width of a time label ("18:00": four digits and a colon) at those letters.
TIME_LABEL_HALF_WIDTH = (4 * PHONE_DIGIT_WIDTH + PHONE_DIGIT_WIDTH // 2) // 2
# Horizontal grid lines above the zero line.
Y_TICKS = 4
# Hours between two labels of the time axis, by the span the chart covers.
X_LABEL_HOURS = ((6 * 3600, 1), (26 * 3600, 6))


def nice_ceiling(value: float) -> float:
    """Given a positive number, return the smallest of 1, 2, 4, 6, 8 times a power of ten
    that is at least the number: the top of an axis whose quarters read well.

    >>> nice_ceiling(7.3), nice_ceiling(12), nice_ceiling(0.03), nice_ceiling(2.5)
    (8.0, 20.0, 0.04, 4.0)
    """
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 4, 6, 8, 10):
        if value <= step * power * (1 + 1e-9):
            return float(step * power)
    raise AssertionError("unreachable")


def axis_unit(top: float) -> tuple[str, float]:
    """Given the top of the axis in H/s, return the unit its labels use and its size.

    >>> axis_unit(25000.0), axis_unit(0.5)
    (('kH/s', 1000.0), ('H/s', 1.0))
    """
    size = 1.0
    for unit in HASHRATE_UNITS:
        if top / size < 1000 or unit == HASHRATE_UNITS[-1]:
            return unit, size
        size *= 1000
    raise AssertionError("unreachable")


def _number(value: float) -> str:
    return f"{value:.3g}" if value < 1000 else f"{value:,.0f}"


def hashrate_chart(points: Sequence[HashratePoint], *, title: str, chart_id: str,
                   bucket_seconds: int) -> Markup:
    """Given a hashrate series (oldest first, one point per bucket of ``bucket_seconds``),
    a title (stating the window, e.g. "Pool hashrate, last 24 h") and an id unique in
    the page, return an ``<svg>`` element: the line, its area, a labelled y axis and a
    UTC time axis. An empty or all-zero series says so in the picture."""
    ident = escape(chart_id)
    rates = [p.hashrate for p in points]
    peak = max(rates, default=0.0)
    top = nice_ceiling(peak)
    unit, size = axis_unit(top)
    labels = [_number(top * i / Y_TICKS / size) for i in range(Y_TICKS + 1)]
    # Room for the longest value label at the phone's letter size (style.css), so a
    # label such as "0.045" is never cut at the picture's left edge.
    left = max(LEFT, 12 + PHONE_DIGIT_WIDTH * max(map(len, labels)))
    plot_w, plot_h = WIDTH - left - RIGHT, HEIGHT - TOP - BOTTOM
    if points:
        start = points[0].time.timestamp()
        end = points[-1].time.timestamp() + bucket_seconds
    else:
        end = datetime.now(UTC).timestamp()
        start = end - 86400
    span = max(end - start, 1.0)

    def x_of(t: float) -> float:
        return left + (t - start) / span * plot_w

    def y_of(rate: float) -> float:
        return TOP + plot_h - (rate / top) * plot_h

    parts = [f'<svg class="chart" id="{ident}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
             f'aria-labelledby="{ident}-title {ident}-desc" '
             f'preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">']
    average = sum(rates) / len(rates) if rates else 0.0
    parts.append(f'<title id="{ident}-title">{escape(title)}</title>')
    parts.append(f'<desc id="{ident}-desc">Average {escape(format_hashrate(average))}, '
                 f'peak {escape(format_hashrate(peak))}, in buckets of '
                 f'{bucket_seconds // 60} min.</desc>')
    # The y axis: grid lines with their values, the unit above the axis.
    for i in range(Y_TICKS + 1):
        value = top * i / Y_TICKS
        y = y_of(value)
        parts.append(f'<line class="chart-grid" x1="{left}" x2="{WIDTH - RIGHT}" '
                     f'y1="{y:.1f}" y2="{y:.1f}" stroke="currentColor" stroke-opacity="0.2"/>')
        parts.append(f'<text class="chart-label" x="{left - 6}" y="{y + 4:.1f}" '
                     f'text-anchor="end" font-size="12" fill="currentColor">'
                     f'{escape(labels[i])}</text>')
    parts.append(f'<text class="chart-label chart-unit" x="{left + 6}" y="{TOP - 10}" '
                 f'font-size="12" fill="currentColor">{escape(unit)}</text>')
    # Above the plot, not under the hour labels: on a phone's large letters the two
    # lines under the plot would overlap.
    parts.append(f'<text class="chart-label" x="{WIDTH - RIGHT}" y="{TOP - 10}" '
                 f'text-anchor="end" font-size="11" fill="currentColor">time (UTC)</text>')
    # The time axis: whole UTC hours, every 1 or 6 hours by the span.
    step = next((hours for limit, hours in X_LABEL_HOURS if span <= limit), 24) * 3600
    tick = math.ceil(start / step) * step
    while tick <= end:
        x = x_of(tick)
        label = datetime.fromtimestamp(tick, UTC).strftime("%H:%M")
        parts.append(f'<line class="chart-grid" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" '
                     f'y2="{TOP + plot_h}" stroke="currentColor" stroke-opacity="0.1"/>')
        # A label centred on an hour close to now would run past the picture's right
        # edge on a phone: that hour keeps its grid line only.
        if x + TIME_LABEL_HALF_WIDTH <= WIDTH:
            parts.append(f'<text class="chart-label" x="{x:.1f}" y="{HEIGHT - 12}" '
                         f'text-anchor="middle" font-size="12" fill="currentColor">'
                         f'{label}</text>')
        tick += step
    if points:
        # Each bucket's value is drawn at the middle of its bucket (one after another
        # from the first).
        middle = start + bucket_seconds / 2
        coords = [(x_of(middle + i * bucket_seconds), y_of(rate))
                  for i, rate in enumerate(rates)]
        line = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        base = TOP + plot_h
        area = (f"M{coords[0][0]:.1f},{base} L" + " L".join(f"{x:.1f},{y:.1f}"
                                                             for x, y in coords)
                + f" L{coords[-1][0]:.1f},{base} Z")
        parts.append(f'<path class="chart-area" d="{area}" fill="currentColor" '
                     f'fill-opacity="0.12"/>')
        parts.append(f'<polyline class="chart-line" points="{line}" fill="none" '
                     f'stroke="currentColor" stroke-width="2"/>')
    if peak == 0:
        parts.append(f'<text class="chart-empty" x="{left + plot_w / 2:.1f}" '
                     f'y="{TOP + plot_h / 2:.1f}" text-anchor="middle" font-size="14" '
                     f'fill="currentColor">no shares in this window</text>')
    parts.append(f'<line class="chart-axis" x1="{left}" x2="{left}" y1="{TOP}" '
                 f'y2="{TOP + plot_h}" stroke="currentColor"/>')
    parts.append(f'<line class="chart-axis" x1="{left}" x2="{WIDTH - RIGHT}" '
                 f'y1="{TOP + plot_h}" y2="{TOP + plot_h}" stroke="currentColor"/>')
    parts.append("</svg>")
    return Markup("\n".join(parts))  # noqa: S704 - every interpolated text is escaped above
