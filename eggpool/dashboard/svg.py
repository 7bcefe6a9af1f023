"""Small inline-SVG charts: numbers in, a self-contained `<svg>` string out. Pure.

Theory of operation. Each chart is a function of plain data (series of
points, named values, intervals) returning one `<svg>` element sized by
`viewBox`, so it scales with the page and reads without JavaScript. Text
is escaped; colours come from CSS custom properties (`--series-0` ...,
`--fg`, `--grid`) with fallbacks, so a theme restyles every chart. Axes are
labelled with rounded values at "nice" steps.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence

__all__ = ["bar_chart", "line_chart", "timeline"]

_W, _H = 640, 240
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 16, 16, 40
_PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1")

Point = tuple[float, float]


def _colour(index: int) -> str:
    return f"var(--series-{index % len(_PALETTE)}, {_PALETTE[index % len(_PALETTE)]})"


def _nice_step(span: float, ticks: int = 5) -> float:
    if span <= 0:
        return 1.0
    raw = span / ticks
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def _label(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _frame(title: str, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {_H}" role="img" '
        f'class="chart"><title>{html.escape(title)}</title>{"".join(body)}</svg>'
    )


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
        return _frame(title, [_text(_W / 2, _H / 2, "no data", anchor="middle")])
    x0, x1 = min(xs), max(xs)
    y1 = max(*ys, 0.0) or 1.0
    step = _nice_step(y1)
    y1 = math.ceil(y1 / step) * step
    width, height = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def px(x: float) -> float:
        return _LEFT + (0.0 if x1 == x0 else (x - x0) / (x1 - x0) * width)

    def py(y: float) -> float:
        return _TOP + height - y / y1 * height

    body = _axes(x0, x1, y1, step, px=px, py=py, x_label=x_label, y_label=y_label)
    for value_label, value in guides:
        y = py(value)
        body.append(
            f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="var(--fg, #333)" stroke-dasharray="4 3"/>'
        )
        body.append(_text(_W - _RIGHT - 4, y - 4, value_label, anchor="end"))
    for index, (name, points) in enumerate(series):
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
        body.append(
            f'<polyline fill="none" stroke="{_colour(index)}" stroke-width="1.5" '
            f'points="{path}"><title>{html.escape(name)}</title></polyline>'
        )
    body += _legend([name for name, _ in series])
    return _frame(title, body)


def bar_chart(title: str, values: Sequence[tuple[str, float]], *, unit: str = "") -> str:
    """One horizontal bar per named value, longest to scale."""
    if not values:
        return _frame(title, [_text(_W / 2, _H / 2, "no data", anchor="middle")])
    top = max(v for _, v in values) or 1.0
    row = min(28.0, (_H - _TOP - 8) / len(values))
    body = []
    for index, (name, value) in enumerate(values):
        y = _TOP + index * row
        length = value / top * (_W - _LEFT - 180)
        body.append(_text(_LEFT + 96, y + row * 0.65, name, anchor="end"))
        body.append(
            f'<rect x="{_LEFT + 104}" y="{y + 3:.1f}" width="{length:.1f}" '
            f'height="{row - 6:.1f}" fill="{_colour(index)}"/>'
        )
        body.append(_text(_LEFT + 110 + length, y + row * 0.65, f"{_label(value)}{unit}"))
    return _frame(title, body)


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
        return _frame(title, [_text(_W / 2, _H / 2, "no data", anchor="middle")])
    width = _W - _LEFT - 96 - _RIGHT
    row = min(28.0, (_H - _TOP - _BOTTOM) / len(rows))
    left = _LEFT + 96

    def px(x: float) -> float:
        return left + (min(max(x, start), end) - start) / (end - start) * width

    body = []
    for index, (name, spans) in enumerate(rows):
        y = _TOP + index * row
        body.append(_text(left - 8, y + row * 0.65, name, anchor="end"))
        body.append(
            f'<line x1="{left}" x2="{left + width}" y1="{y + row / 2:.1f}" '
            f'y2="{y + row / 2:.1f}" stroke="var(--grid, #ddd)"/>'
        )
        for a, b in spans:
            x, w = px(a), max(px(b) - px(a), 1.0)
            body.append(
                f'<rect x="{x:.1f}" y="{y + 4:.1f}" width="{w:.1f}" height="{row - 8:.1f}" '
                f'fill="{_colour(index)}"/>'
            )
    baseline = _TOP + len(rows) * row + 14
    step = _nice_step(end - start)
    tick = math.ceil(start / step) * step
    while tick <= end:
        body.append(_text(px(tick), baseline, _label(tick), anchor="middle"))
        tick += step
    if x_label:
        body.append(_text(left + width / 2, baseline + 16, x_label, anchor="middle"))
    return _frame(title, body)


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
    value = 0.0
    while value <= y1 + step / 2:
        y = py(value)
        body.append(
            f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="var(--grid, #ddd)"/>'
        )
        body.append(_text(_LEFT - 6, y + 4, _label(value), anchor="end"))
        value += step
    x_step = _nice_step(x1 - x0)
    tick = math.ceil(x0 / x_step) * x_step
    while tick <= x1 + x_step / 1000:
        body.append(_text(px(tick), _H - _BOTTOM + 16, _label(tick), anchor="middle"))
        tick += x_step
    if x_label:
        body.append(_text((_LEFT + _W - _RIGHT) / 2, _H - 6, x_label, anchor="middle"))
    if y_label:
        body.append(_text(12, _TOP + 8, y_label))
    return body


def _legend(names: Sequence[str]) -> list[str]:
    body = []
    x = _LEFT + 8.0
    for index, name in enumerate(names):
        body.append(
            f'<rect x="{x:.1f}" y="{_TOP + 2}" width="10" height="10" fill="{_colour(index)}"/>'
        )
        body.append(_text(x + 14, _TOP + 11, name))
        x += 24 + 7 * len(name)
    return body


def _text(x: float, y: float, text: str, *, anchor: str = "start") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="11" text-anchor="{anchor}" '
        f'fill="var(--fg, #333)">{html.escape(text)}</text>'
    )
