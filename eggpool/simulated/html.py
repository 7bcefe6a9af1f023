"""The HTML report of a simulation (`--report report.html`): one self-contained page.

Theory of operation. The page holds the summary table and three charts
drawn by `eggpool/dashboard/svg.py` as inline SVG (no script, no external
file): each account's spend over the last five hours at every moment of
the run against its five-hour cap, the share of requests each account
served, and when each account was cooling down. Everything shown is
escaped; the page's colours are CSS variables, so it reads in light and
dark.
"""

from __future__ import annotations

import html

from eggpool.core.config import Config
from eggpool.core.ledger import account_limits
from eggpool.dashboard.svg import bar_chart, line_chart, timeline
from eggpool.simulated.simulate import Report

__all__ = ["render_report"]

_SAMPLES = 240
_FIVE_HOURS = 5 * 3600.0
_STYLE = """
:root { --fg: #222; --bg: #fff; --grid: #ddd; color-scheme: light dark; }
@media (prefers-color-scheme: dark) { :root { --fg: #ddd; --bg: #111; --grid: #333; } }
body { font: 14px/1.4 system-ui, sans-serif; color: var(--fg); background: var(--bg);
       max-width: 72rem; margin: 2rem auto; padding: 0 1rem; }
table { border-collapse: collapse; }
th, td { padding: 0.2rem 0.8rem; text-align: right; border-bottom: 1px solid var(--grid); }
th:first-child, td:first-child { text-align: left; }
svg.chart { width: 100%; height: auto; max-width: 56rem; }
"""


def render_report(report: Report, config: Config, title: str) -> str:
    """The whole page for `report` of a run of `config`."""
    caps = account_limits(config)
    accounts = sorted(report.accounts)
    end = report.duration
    spend = [(name, _rolling(report.accounts[name].charges, end)) for name in accounts]
    distinct_caps = sorted({caps[name].capacity[0] for name in accounts if name in caps})
    guides = [(f"5-hour cap ${cap / 1e6:,.2f}", cap / 1e6) for cap in distinct_caps if cap]
    charts = [
        line_chart(
            "Spend in the last five hours, per account",
            [(name, [(t / 3600, usd) for t, usd in points]) for name, points in spend],
            x_label="hours into the run",
            y_label="USD",
            guides=guides,
        ),
        bar_chart(
            "Share of requests served",
            [
                (name, 100 * report.accounts[name].requests / max(report.requests, 1))
                for name in accounts
            ],
            unit="%",
        ),
        timeline(
            "Cooling down",
            [
                (name, [(a / 3600, b / 3600) for a, b in report.cooldowns.get(name, [])])
                for name in accounts
            ],
            start=0.0,
            end=end / 3600,
            x_label="hours into the run",
        ),
    ]
    head = "".join(f"<th>{html.escape(name)}</th>" for name in report.ACCOUNT_COLUMNS)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
        for row in report.account_rows()
    )
    summary = html.escape(report.table().split("\n\n", 1)[-1]).strip()
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
        f"<pre>{summary}</pre>"
        + "".join(f"<figure>{chart}</figure>" for chart in charts)
        + "</body></html>\n"
    )


def _rolling(charges: list[tuple[float, int]], end: float) -> list[tuple[float, float]]:
    """Spend (USD) within the five hours before each of `_SAMPLES` moments of the run."""
    points = []
    start = total = 0
    index = 0
    for step in range(_SAMPLES + 1):
        t = end * step / _SAMPLES
        while index < len(charges) and charges[index][0] <= t:
            total += charges[index][1]
            index += 1
        while start < index and charges[start][0] <= t - _FIVE_HOURS:
            total -= charges[start][1]
            start += 1
        points.append((t, total / 1e6))
    return points
