"""The stacked bar chart: one bar per time bucket, one segment per series.

Theory of operation. The caller has already bucketed and grouped its data
(requests per hour per account, the smallest accounts folded into an
`Other` series), so the chart takes the bucket labels and, per series, one
value per bucket. Each bucket is a `<g data-bucket data-total>` holding
one `<rect data-series data-value>` per non-zero series, stacked in series
order from the bottom, each with a `<title>` naming series, bucket, value
and the bucket's total, which is the tooltip. Segment edges are rounded
once and shared by neighbours, so a stack has no hairline gaps or
overlaps. The y axis runs from 0 to the smallest nice tick at or above the
tallest bucket; with nothing to draw (no buckets, or every value 0) the
chart keeps its axis, labels and legend and says "no data" rather than
scaling by zero. A negative, NaN or infinite value is the caller's mistake
and raises `ValueError`, as does a series whose length is not the number
of buckets.

Thirty days of hourly buckets for a dozen accounts is ten thousand
segments, so rendering is one pass over buckets x series with everything a
series' segments share (escaped name, paint) built once, and integer
coordinates (see `_bars`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from eggpool.dashboard._svg_common import (
    LEFT,
    MUTED,
    RIGHT,
    RULE,
    W,
    compact,
    esc,
    exact,
    figures,
    frame,
    legend,
    nice_step,
    no_data,
    paint,
    shorten,
    text,
)

_PLOT_TOP, _PLOT_HEIGHT = 24, 176
_BASE = _PLOT_TOP + _PLOT_HEIGHT


def stacked_bar_chart(
    title: str,
    buckets: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    *,
    unit: str = "",
) -> str:
    """One bar per bucket label (in order, left to right), stacked from one value per
    bucket for each named series; `unit` follows every value in tooltips ("%", " req")."""
    count = len(buckets)
    for name, values in series:
        if len(values) != count:
            raise ValueError(f"series {name!r} has {len(values)} values for {count} buckets")
        for value in values:
            if not 0 <= value < math.inf:
                raise ValueError(f"series {name!r} has {value!r}; values are finite and >= 0")
    try:
        columns = zip(*(values for _, values in series), strict=True)
        totals = [math.fsum(column) for column in columns] if series else [0.0] * count
    except OverflowError:
        raise ValueError("a bucket's total is too large for a float") from None
    peak = max(totals, default=0.0)
    plot_width = W - LEFT - RIGHT

    body = []
    if unit.strip():
        body.append(text(8, 12, unit.strip(), fill=MUTED))
    ticks, step, top = 0, 1.0, 1.0
    if peak > 0:
        step = nice_step(peak)
        ticks = math.ceil(peak / step)
        top = max(ticks * step, peak)
        if math.isinf(top):  # within a step of the largest float: one tick at the peak
            ticks, step, top = 1, peak, peak
    body.append('<g class="y-axis">')
    for i in range(ticks + 1):
        y = _BASE - i * step / top * _PLOT_HEIGHT
        body.append(
            f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="{RULE}"/>'
        )
        body.append(text(LEFT - 6, y + 4, compact(i * step), anchor="end", fill=MUTED))
    body.append("</g>")

    if peak > 0:
        body += _bars(buckets, series, totals, top=top, unit=unit)
    else:
        body.append(no_data(LEFT + plot_width / 2, _PLOT_TOP + _PLOT_HEIGHT / 2))
    body += _bucket_labels(buckets)
    keys, keys_height = legend(
        [name for name, _ in series], x=LEFT, y=_BASE + 30, width=plot_width
    )
    body += keys
    return frame(
        title,
        body,
        height=_BASE + 30 + keys_height + 4,
        desc=_summary(buckets, len(series), totals, unit),
    )


def _bars(
    buckets: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    totals: Sequence[float],
    *,
    top: float,
    unit: str,
) -> list[str]:
    # Drawn in hundredths of a pixel inside a scale(0.01) group: every edge is an
    # integer, so a segment's top is exactly the next one's bottom, and integers
    # format several times faster than floats (this loop runs ~10k times).
    height = _PLOT_HEIGHT * 100
    slot = (W - LEFT - RIGHT) * 100 / len(buckets)
    gap = min(slot * 0.2, 400.0) if slot >= 400 else 0.0
    base = _BASE * 100
    # What each series' segments share, built once: paint and index, then tooltip start.
    heads = [f'{paint(s)} data-series="{s}" data-value="' for s in range(len(series))]
    names = [f'"><title>{esc(name)}, ' for name, _ in series]
    columns = [values for _, values in series]
    suffix = esc(unit)
    body = ['<g class="bars" transform="scale(0.01)">']
    for b, (label, total) in enumerate(zip(buckets, totals, strict=True)):
        bucket = esc(label)
        left = round(LEFT * 100 + b * slot + gap / 2)
        box = f'<rect x="{left}" width="{round(LEFT * 100 + (b + 1) * slot - gap / 2) - left}" '
        total_data, total_shown = figures(total)
        tail = f"{suffix} of {total_shown}{suffix}</title></rect>"
        where = f"{bucket}: "  # after the series name, before the value
        body.append(f'<g data-bucket="{bucket}" data-total="{total_data}">')
        below, edge = 0.0, base
        for s, values in enumerate(columns):
            value = values[b]
            if not value:
                continue
            data, tip = figures(value)
            below += value
            upper = round(base - below / top * height)  # not * (height / top): top may be tiny
            body.append(
                f'{box}y="{upper}" height="{edge - upper}" '
                f"{heads[s]}{data}{names[s]}{where}{tip}{tail}"
            )
            edge = upper
        body.append("</g>")
    body.append("</g>")
    return body


def _bucket_labels(buckets: Sequence[str]) -> list[str]:
    """As many bucket labels as fit side by side, evenly spaced, starting with the first."""
    if not buckets:
        return []
    slot = (W - LEFT - RIGHT) / len(buckets)
    labels = [shorten(label, 16) for label in buckets]
    fit = max(1, int((W - LEFT - RIGHT) // (6.5 * max(map(len, labels)) + 12)))
    body = ['<g class="x-axis">']
    for b in range(0, len(buckets), math.ceil(len(buckets) / fit)):
        body.append(
            text(LEFT + (b + 0.5) * slot, _BASE + 16, labels[b], anchor="middle", fill=MUTED)
        )
    body.append("</g>")
    return body


def _summary(buckets: Sequence[str], series: int, totals: Sequence[float], unit: str) -> str:
    peak = max(totals, default=0.0)
    if not peak:
        return f"No data in {len(buckets)} buckets." if buckets else "No data."
    busiest = buckets[totals.index(peak)]
    return (
        f"{len(buckets)} buckets from {buckets[0]} to {buckets[-1]}, {series} series; "
        f"total {exact(math.fsum(totals))}{unit}, highest {exact(peak)}{unit} at {busiest}."
    )
