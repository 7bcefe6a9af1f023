"""Small inline-SVG charts: numbers in, a self-contained `<svg>` string out. Pure.

Theory of operation. Each chart is a function of plain data (series of
points, named values, intervals, bucketed series, daily totals) returning
one `<svg role="img">` element sized by `viewBox`, so it scales with the
page and reads without JavaScript: every mark that stands for a number
carries a `<title>` (the browser's own tooltip). Text from data is escaped;
colours come from CSS custom properties with fallbacks, so a theme restyles
every chart; axes are labelled with compact values at "nice" steps. The
same input always gives the same bytes, and the output refers to nothing
outside itself (no links, scripts, images or event handlers).

This module holds the line, bar and timeline charts and is the import
surface; the stacked bar chart and the calendar heatmap live in
`_svg_stacked.py` and `_svg_heatmap.py`, the shared rules in `_svg_common.py`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from eggpool.dashboard._svg_common import (
    BOTTOM,
    LEFT,
    MUTED,
    RIGHT,
    RULE,
    TEXT,
    TOP,
    H,
    W,
    compact,
    esc,
    frame,
    legend,
    nice_step,
    no_data,
    paint,
    text,
)
from eggpool.dashboard._svg_heatmap import heatmap
from eggpool.dashboard._svg_stacked import stacked_bar_chart

__all__ = ["bar_chart", "heatmap", "line_chart", "stacked_bar_chart", "timeline"]

Point = tuple[float, float]


def line_chart(
    title: str,
    series: Sequence[tuple[str, Sequence[Point]]],
    *,
    x_label: str = "",
    y_label: str = "",
    guides: Sequence[tuple[str, float]] = (),
) -> str:
    """Lines through (x, y) points, one per named series; `guides` are labelled horizontal
    lines (a cap). An empty chart says so."""
    xs = [x for _, points in series for x, _ in points]
    ys = [y for _, points in series for _, y in points] + [v for _, v in guides]
    if not xs:
        return frame(title, [no_data(W / 2, H / 2)])
    x0, x1 = min(xs), max(xs)
    y1 = max(*ys, 0.0) or 1.0
    step = nice_step(y1)
    y1 = math.ceil(y1 / step) * step
    width, height = W - LEFT - RIGHT, H - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + (0.0 if x1 == x0 else (x - x0) / (x1 - x0) * width)

    def py(y: float) -> float:
        return TOP + height - y / y1 * height

    body = _axes(x0, x1, y1, step, px=px, py=py, x_label=x_label, y_label=y_label)
    for value_label, value in guides:
        y = py(value)
        body.append(
            f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{TEXT}" stroke-dasharray="4 3"/>'
        )
        body.append(text(W - RIGHT - 4, y - 4, value_label, anchor="end"))
    for index, (name, points) in enumerate(series):
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
        body.append(
            f'<polyline fill="none" {paint(index, "stroke")} stroke-width="1.5" '
            f'points="{path}"><title>{esc(name)}</title></polyline>'
        )
    body += legend([name for name, _ in series], x=LEFT + 8, y=TOP + 2, width=width - 16)[0]
    return frame(title, body)


def bar_chart(title: str, values: Sequence[tuple[str, float]], *, unit: str = "") -> str:
    """One horizontal bar per named value, longest to scale."""
    if not values:
        return frame(title, [no_data(W / 2, H / 2)])
    top = max(v for _, v in values) or 1.0
    row = min(28.0, (H - TOP - 8) / len(values))
    body = []
    for index, (name, value) in enumerate(values):
        y = TOP + index * row
        length = value / top * (W - LEFT - 180)
        body.append(text(LEFT + 96, y + row * 0.65, name, anchor="end"))
        body.append(
            f'<rect x="{LEFT + 104}" y="{y + 3:.1f}" width="{length:.1f}" '
            f'height="{row - 6:.1f}" {paint(index)}><title>{esc(name)}: '
            f"{esc(compact(value) + unit)}</title></rect>"
        )
        body.append(text(LEFT + 110 + length, y + row * 0.65, f"{compact(value)}{unit}"))
    return frame(title, body)


def timeline(
    title: str,
    rows: Sequence[tuple[str, Sequence[tuple[float, float]]]],
    *,
    start: float,
    end: float,
    x_label: str = "",
) -> str:
    """Intervals (from, to) per named row over [start, end]: when each was cooling down."""
    if not rows or end <= start:
        return frame(title, [no_data(W / 2, H / 2)])
    width = W - LEFT - 96 - RIGHT
    row = min(28.0, (H - TOP - BOTTOM) / len(rows))
    left = LEFT + 96

    def px(x: float) -> float:
        return left + (min(max(x, start), end) - start) / (end - start) * width

    body = []
    for index, (name, spans) in enumerate(rows):
        y = TOP + index * row
        body.append(text(left - 8, y + row * 0.65, name, anchor="end"))
        body.append(
            f'<line x1="{left}" x2="{left + width}" y1="{y + row / 2:.1f}" '
            f'y2="{y + row / 2:.1f}" stroke="{RULE}"/>'
        )
        for a, b in spans:
            x, w = px(a), max(px(b) - px(a), 1.0)
            body.append(
                f'<rect x="{x:.1f}" y="{y + 4:.1f}" width="{w:.1f}" height="{row - 8:.1f}" '
                f"{paint(index)}><title>{esc(name)}: {compact(a)} to {compact(b)}</title></rect>"
            )
    baseline = TOP + len(rows) * row + 14
    step = nice_step(end - start)
    first = math.ceil(start / step)
    for i in range(first, math.floor(end / step + 1e-9) + 1):
        body.append(text(px(i * step), baseline, compact(i * step), anchor="middle", fill=MUTED))
    if x_label:
        body.append(text(left + width / 2, baseline + 16, x_label, anchor="middle"))
    return frame(title, body)


def _axes(
    x0: float,
    x1: float,
    y1: float,
    step: float,
    *,
    px: Callable[[float], float],
    py: Callable[[float], float],
    x_label: str,
    y_label: str,
) -> list[str]:
    body = []
    for i in range(round(y1 / step) + 1):
        y = py(i * step)
        body.append(
            f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="{RULE}"/>'
        )
        body.append(text(LEFT - 6, y + 4, compact(i * step), anchor="end", fill=MUTED))
    x_step = nice_step(x1 - x0)
    for i in range(math.ceil(x0 / x_step), math.floor(x1 / x_step + 1e-3) + 1):
        tick = i * x_step
        body.append(text(px(tick), H - BOTTOM + 16, compact(tick), anchor="middle", fill=MUTED))
    if x_label:
        body.append(text((LEFT + W - RIGHT) / 2, H - 6, x_label, anchor="middle"))
    if y_label:
        body.append(text(12, TOP + 8, y_label))
    return body
