"""The calendar heatmap: one square per day, weeks as columns, weekdays as rows.

Theory of operation. The caller passes daily totals keyed by
`datetime.date` and the last day to show; the chart covers the
`span_days` days ending there (missing days are 0, days outside are
ignored). Rows run Monday to Sunday (ISO 8601 weeks), columns are the
weeks the span touches, oldest on the left, so the first and last columns
may be partial; exactly one `<rect data-date data-value data-level>` is
drawn per day, with a `<title>` giving weekday, date and value.

The colour has five levels, as on GitHub's contribution graph: 0 for a day
with nothing, then 1 to 4 by quartile of the non-zero days in the span. The
quartile bounds are nearest-rank (the ceil(k n / 4)-th smallest non-zero
value for k = 1, 2, 3), so every bound is a value that occurred, equal
values always share a level, and a day is in level k when it is above bound
k - 1 and at most bound k. The legend's swatches carry those bounds in their
titles. Month and weekday names are fixed English abbreviations rather than
`strftime`, whose output depends on the process locale.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta

from eggpool.dashboard._svg_common import HEAT, HEAT_LABEL, esc, exact, figures, frame, text

_CELL, _STRIDE = 11, 14
_GRID_LEFT, _GRID_TOP = 34, 22
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def heatmap(
    title: str,
    days: Mapping[date, float],
    *,
    end: date,
    span_days: int = 90,
    unit: str = "",
) -> str:
    """Daily totals for the `span_days` days ending at `end` (inclusive) as a calendar;
    `unit` follows every value in tooltips (" tokens")."""
    if isinstance(end, datetime):
        raise TypeError("end is a datetime; pass its date()")
    if span_days < 1:
        raise ValueError(f"span_days is {span_days}; at least one day is shown")
    start = end - timedelta(days=span_days - 1)
    dates = [start + timedelta(days=offset) for offset in range(span_days)]
    values = [days.get(day, 0) for day in dates]
    for day, value in zip(dates, values, strict=True):
        if not 0 <= value < math.inf:
            raise ValueError(f"{day}: {value!r}; daily totals are finite and >= 0")
    ranked = sorted(value for value in values if value > 0)
    bounds = tuple(ranked[math.ceil(k * len(ranked) / 4) - 1] for k in (1, 2, 3)) if ranked else ()
    monday = start - timedelta(days=start.weekday())
    columns = (end - monday).days // 7 + 1
    months = _month_labels(dates, monday)
    # Wide enough for the grid, the last month's name past its column, and the legend
    # beside the "no data" note.
    width = max(_GRID_LEFT + columns * _STRIDE + 8, _GRID_LEFT + months[-1][0] * _STRIDE + 28, 220)
    grid_bottom = _GRID_TOP + 7 * _STRIDE
    suffix = esc(unit)

    body = ['<g class="weekdays">']
    for row in (0, 2, 4):
        body.append(
            text(
                _GRID_LEFT - 6,
                _GRID_TOP + row * _STRIDE + 9,
                _WEEKDAYS[row],
                anchor="end",
                fill=HEAT_LABEL,
            )
        )
    body.append('</g><g class="months">')
    for column, month in months:
        body.append(
            text(_GRID_LEFT + column * _STRIDE, _GRID_TOP - 6, _MONTHS[month - 1], fill=HEAT_LABEL)
        )
    body.append('</g><g class="days">')
    for day, value in zip(dates, values, strict=True):
        level = 1 + bisect_left(bounds, value) if value else 0
        offset = (day - monday).days
        data, shown = figures(value)
        body.append(
            f'<rect x="{_GRID_LEFT + offset // 7 * _STRIDE}" '
            f'y="{_GRID_TOP + offset % 7 * _STRIDE}" width="{_CELL}" height="{_CELL}" '
            f'rx="2" fill="{HEAT[level]}" data-date="{day.isoformat()}" '
            f'data-value="{data}" data-level="{level}"><title>'
            f"{_WEEKDAYS[day.weekday()]} {day.isoformat()}: {shown}{suffix}"
            "</title></rect>"
        )
    body.append("</g>")
    if not ranked:
        body.append(text(_GRID_LEFT, grid_bottom + 15, "no data", fill=HEAT_LABEL))
    peak = ranked[-1] if ranked else 0
    body += _legend(bounds, peak, unit=unit, right=width - 8, y=grid_bottom + 6)
    return frame(
        title,
        body,
        width=width,
        height=grid_bottom + 24,
        desc=_summary(dates, values, unit),
    )


def _month_labels(dates: Sequence[date], monday: date) -> list[tuple[int, int]]:
    """(column, month) at the week of each month's first shown day; the first month's
    label is dropped when the next one would crowd it (the span starts late in a month)."""
    labels = [
        ((day - monday).days // 7, day.month) for day in dates if day.day == 1 or day == dates[0]
    ]
    if len(labels) > 1 and labels[1][0] - labels[0][0] < 3:
        del labels[0]
    return labels


def _legend(
    bounds: Sequence[float], peak: float, *, unit: str, right: float, y: float
) -> list[str]:
    """The words Less and More around the five swatches, flush right; each swatch's title
    gives the range of values it stands for."""
    edges = (0, *bounds, peak)
    left = right - 30 - 5 * _STRIDE
    body = ['<g class="legend">', text(left - 4, y + 9, "Less", anchor="end", fill=HEAT_LABEL)]
    for level in range(5):
        if level == 0:
            meaning = "none"
        elif not bounds or edges[level] <= edges[level - 1]:
            meaning = "no days at this level"
        elif level == 1:
            meaning = f"up to {exact(edges[1])}{unit}"
        elif level == 4:
            meaning = f"more than {exact(edges[3])}{unit}"
        else:
            meaning = (
                f"more than {exact(edges[level - 1])}{unit}, up to {exact(edges[level])}{unit}"
            )
        body.append(
            f'<rect x="{left + level * _STRIDE:g}" y="{y:g}" '
            f'width="{_CELL}" height="{_CELL}" rx="2" fill="{HEAT[level]}">'
            f"<title>level {level}: {esc(meaning)}</title></rect>"
        )
    body += [text(left + 5 * _STRIDE + 1, y + 9, "More", fill=HEAT_LABEL), "</g>"]
    return body


def _summary(dates: Sequence[date], values: Sequence[float], unit: str) -> str:
    span = f"{len(dates)} days from {dates[0].isoformat()} to {dates[-1].isoformat()}"
    peak = max(values)
    if not peak:
        return f"No data in the {span}."
    active = sum(1 for value in values if value)
    busiest = dates[values.index(peak)].isoformat()
    return (
        f"{span}: total {exact(math.fsum(values))}{unit} on {active} active days; "
        f"busiest {busiest} with {exact(peak)}{unit}."
    )
