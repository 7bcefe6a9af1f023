"""The dashboard's pages as HTML: the stats API's data in, one escaped document out. Pure.

Theory of operation. Each page is a function of a `Context` (which page,
period, theme, the themes to offer, whether the viewer sent the key) and
the data the shell read for it (the same dicts the stats API returns,
eggpool/shells/_stats.py). `render(context, data)` picks the page (the
operations pages' bodies are in `_pages_ops`) and draws the frame.
Everything that came from data (account, model and provider names, event
details, request ids) goes through `_e` (HTML escaping) or the SVG
renderer's own escaping; nothing is ever written into a script or a style.

Layout: a top bar (the pages, the period links, a theme selector that is a
plain GET form), then the page's cards, tables and inline SVG charts. The
page works without JavaScript; `/static/dashboard.js` only adds the live
updates and the automatic refresh. Numbers carry `data-live` names the
script updates in place.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import attrs

from eggpool.dashboard import _html as h
from eggpool.dashboard import _pages_ops as ops
from eggpool.dashboard import svg
from eggpool.dashboard.site import PAGES, Page, PageCall

__all__ = ["Context", "error_page", "render"]

_PERIODS = ("1h", "24h", "7d", "30d")
_CURRENT_PAGE = ' aria-current="page"'
_CURRENT = ' aria-current="true"'


@attrs.frozen(kw_only=True)
class Context:
    call: PageCall
    themes: Sequence[str]
    now: float
    refresh_s: float = 60.0


def _link(page: Page, context: Context, **changes: str) -> str:
    """The URL of `page` keeping the period and theme (and `changes`)."""
    params = {"period": context.call.query.period, "theme": context.call.theme, **changes}
    if "period" not in page.params:
        params.pop("period")
    return f"{page.path}?{urllib.parse.urlencode(params)}"


# -- the frame ---------------------------------------------------------------------------


def _layout(context: Context, body: str) -> str:
    call = context.call
    page = call.page
    nav = "".join(
        f'<a href="{h.e(_link(p, context))}"'
        f"{_CURRENT_PAGE if p.name == page.name else ''}>{h.e(p.title)}</a>"
        for p in PAGES.values()
        if p.in_nav
    )
    periods = ""
    if "period" in page.params:
        periods = (
            '<nav class="periods" aria-label="Period">'
            + "".join(
                f'<a href="{h.e(_link(page, context, period=name))}"'
                f"{_CURRENT if call.query.period == name else ''}>{name}</a>"
                for name in _PERIODS
            )
            + "</nav>"
        )
    options = "".join(
        f"<option{' selected' if name == call.theme else ''}>{h.e(name)}</option>"
        for name in context.themes
    )
    hidden = (
        f'<input type="hidden" name="period" value="{h.e(call.query.period)}">'
        if "period" in page.params
        else ""
    )
    theme_css = f"/static/theme.css?{urllib.parse.urlencode({'theme': call.theme})}"
    title = page.title if call.request_id is None else f"Trace {call.request_id}"
    action = page.path if call.request_id is None else ops.trace_path(call.request_id)
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>EggPool · {h.e(title)}</title>"
        '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">'
        '<link rel="stylesheet" href="/static/dashboard.css">'
        f'<link rel="stylesheet" href="{h.e(theme_css)}">'
        '<script src="/static/dashboard.js" defer></script>'
        "</head>"
        f'<body data-page="{h.e(page.name)}" data-refresh="{int(context.refresh_s)}">'
        '<header class="topbar"><a class="brand" href="/">EggPool</a>'
        f'<nav class="pages" aria-label="Pages">{nav}</nav>{periods}'
        f'<form class="themes" method="get" action="{h.e(action)}">'
        f'{hidden}<label>Theme <select name="theme">{options}</select></label>'
        '<button type="submit">Apply</button></form></header>'
        f'<main id="content"><h1>{h.e(title)}</h1>{body}'
        f'<p class="stamp">As of {h.e(h.when(context.now))} · '
        f'<span class="live-state" data-live-state>not live</span></p></main>'
        "</body></html>\n"
    )


def error_page(status: int, message: str) -> str:
    """A plain page for a refused request (the message is escaped)."""
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8"><title>EggPool · '
        f"{status}</title>"
        '<link rel="stylesheet" href="/static/dashboard.css"></head>'
        f'<body><main id="content"><h1>{status}</h1><p>{h.e(message)}</p>'
        '<p><a href="/">Back to the overview</a></p></main></body></html>\n'
    )


# -- pages -----------------------------------------------------------------------------------


def render(context: Context, data: Mapping[str, Any]) -> str:
    """The page `context.call` names, from `data` (what the shell read for it)."""
    body = _RENDERERS[context.call.page.name](context, data)
    return _layout(context, body)


def _overview(context: Context, data: Mapping[str, Any]) -> str:
    summary, pending = data["summary"], data["pending"]
    tokens = summary["tokens"]
    latency, ttft = summary["latency"], summary["ttft"]
    cards = "".join(
        (
            h.card(
                "Requests",
                h.count(summary["requests"]),
                f"{h.count(summary['streamed'])} streamed",
                live="requests",
            ),
            h.card(
                "Errors",
                h.count(summary["errors"]),
                f"{h.share(summary['error_rate'])} of requests",
                live="errors",
            ),
            h.card(
                "Cost", h.money(summary["cost_usd"]), "as charged to the accounts", live="cost"
            ),
            h.card(
                "Tokens",
                h.count(tokens["total"]),
                f"{h.share(tokens['cache_read_share'])} of input from cache, "
                f"{h.share(tokens['reasoning_share'])} of output reasoning",
                live="tokens",
            ),
            h.card(
                "Latency p50 / p99",
                f"{h.seconds(latency['p50_s'])} / {h.seconds(latency['p99_s'])}",
                f"average {h.seconds(latency['avg_s'])}",
            ),
            h.card(
                "First token p50 / p99",
                f"{h.seconds(ttft['p50_s'])} / {h.seconds(ttft['p99_s'])}",
                f"average {h.seconds(ttft['avg_s'])}",
            ),
            h.card(
                "Pending",
                h.count(pending["pending"]),
                f"{h.count(pending['stale_pending'])} stale (over 15 minutes)",
                live="pending",
            ),
            h.reservations(pending.get("reservations")),
            _operational_card(data.get("operational")),
        )
    )
    series = data["series"]
    labels = [_bucket_label(start, series["bucket"]) for start in series["buckets"]]
    chart = svg.stacked_bar_chart(
        "Requests by account",
        labels,
        [(s["name"], s["requests"]) for s in series["series"]],
        unit="req",
    )
    days = {
        datetime.fromtimestamp(point["start"], UTC).date(): point["tokens"]
        for point in data["daily"]["points"]
    }
    heat = svg.heatmap(
        "Tokens per day", days, end=datetime.fromtimestamp(context.now, UTC).date(), unit="tokens"
    )
    accounts = _account_rows(context, data["accounts"]["accounts"], brief=True)
    return (
        f'<div class="cards">{cards}</div>{h.chart(chart)}'
        f"{h.table('Accounts', _BRIEF_ACCOUNT_HEADINGS, accounts)}"
        f"{h.chart(heat, 'heatmap')}"
    )


def _operational_card(operational: object) -> str:
    """Operational events in the period (crash recovery, shutdowns...), by kind."""
    if not isinstance(operational, dict):
        return ""
    counts = operational.get("counts") or {}
    total = sum(counts.values())
    detail = ", ".join(f"{n:,} {kind}" for kind, n in sorted(counts.items())) or "none"
    return h.card("Operational events", h.count(total), h.e(detail))


def _exactness(counts: Mapping[str, int]) -> str:
    """How an account's costs were known: `12 exact, 3 estimated` (kinds that occurred)."""
    parts = [f"{n:,} {kind}" for kind, n in counts.items() if n]
    return h.e(", ".join(parts) or "-")


_BRIEF_ACCOUNT_HEADINGS = (
    "Account",
    "Provider",
    "Requests",
    "Errors",
    "Cost",
    "5-hour use",
    "State",
)


def _account_rows(
    context: Context, accounts: Sequence[Mapping[str, Any]], *, brief: bool = False
) -> list[list[str]]:
    rows = []
    for a in accounts:
        five = a["windows"]["five_hour"]
        cooldown = a["cooldown_until"]
        state = (
            h.tag("not configured", "info")
            if not a["configured"]
            else h.tag("disabled", "warning")
            if not a["enabled"]
            else h.tag(f"until {h.when(cooldown)}", "error")
            if cooldown is not None
            else h.tag("ready", "success")
        )
        row = [
            h.e(a["account"]),
            h.e(a["provider"] or "-"),
            h.count(a["requests"]),
            h.count(a["errors"]),
            h.money(a["cost_usd"]),
            _use(five),
        ]
        if not brief:
            weekly, monthly = a["windows"]["weekly"], a["windows"]["monthly"]
            row += [
                _use(weekly),
                _use(monthly),
                h.count(a["tokens"]["total"]),
                h.seconds(a["avg_latency_s"]),
                _exactness(a.get("exactness") or {}),
            ]
        row.append(state)
        rows.append(row)
    return rows


def _use(window: Mapping[str, Any]) -> str:
    """Spend in a window against its cap: a native meter (no styles needed) and the share."""
    use = window["use"]
    if use is None:
        return h.e(h.money(window["spent_usd"]))
    tip = f"{h.money(window['spent_usd'])} of {h.money(window['cap_usd'])}"
    return (
        f'<meter min="0" max="1" low="0.7" high="0.9" optimum="0" value="{min(use, 1.0):.4f}" '
        f'title="{h.e(tip)}">{use:.0%}</meter> {use:.0%}'
    )


def _accounts(context: Context, data: Mapping[str, Any]) -> str:
    rows = _account_rows(context, data["accounts"]["accounts"])
    headings = (
        "Account",
        "Provider",
        "Requests",
        "Errors",
        "Cost",
        "5-hour",
        "Weekly",
        "Monthly",
        "Tokens",
        "Avg latency",
        "Cost exactness",
        "State",
    )
    return h.table("Accounts: spend in each quota window against its cap", headings, rows)


def _models(context: Context, data: Mapping[str, Any]) -> str:
    rows = [
        [
            h.e(m["model"] or "-"),
            h.count(m["requests"]),
            h.share(m["share"]),
            h.count(m["errors"]),
            h.count(m["tokens"]["total"]),
            h.money(m["cost_usd"]),
            h.seconds(m["avg_latency_s"]),
            h.seconds(m["avg_ttft_s"]),
        ]
        for m in data["models"]["models"]
    ]
    chart = svg.bar_chart(
        "Requests per model",
        [(m["model"] or "-", m["requests"]) for m in data["models"]["models"]],
    )
    headings = (
        "Model",
        "Requests",
        "Share",
        "Errors",
        "Tokens",
        "Cost",
        "Avg latency",
        "Avg first token",
    )
    return h.chart(chart) + h.table("Models", headings, rows)


def _percentile_row(name: str, figures: Mapping[str, Any]) -> list[str]:
    return [
        h.e(name),
        *(h.seconds(figures[k]) for k in ("avg_s", "p50_s", "p90_s", "p99_s", "max_s")),
    ]


def _latency(context: Context, data: Mapping[str, Any]) -> str:
    latency = data["latency"]
    rows = [
        _percentile_row("All requests: latency", latency["latency"]),
        _percentile_row("All requests: first token", latency["ttft"]),
    ]
    for m in latency["models"]:
        rows.append(_percentile_row(f"{m['model'] or '-'}: latency", m["latency"]))
        rows.append(_percentile_row(f"{m['model'] or '-'}: first token", m["ttft"]))
    headings = ("", "Average", "p50", "p90", "p99", "Max")
    table = h.table("Latency and time to first token (percentiles estimated)", headings, rows)
    return table + _phases(latency.get("phases") or {})


def _phases(phases: Mapping[str, Any]) -> str:
    """Where attempts' time went on average, and the proxy's own share."""
    overhead = phases.get("proxy_overhead_us") or {}
    p50, p95 = overhead.get("p50"), overhead.get("p95")
    rows = [
        ["Getting a connection", h.seconds(phases.get("connect_s"))],
        ["Waiting for the response head", h.seconds(phases.get("upstream_wait_s"))],
        ["After the head (the body, a stream's tokens)", h.seconds(phases.get("after_head_s"))],
        [
            "The proxy's own work per request (p50 / p95)",
            "-" if p50 is None else f"{p50:,.0f} / {p95:,.0f} µs",
        ],
    ]
    measured = phases.get("attempts_measured") or 0
    return h.table(
        f"Phases, averaged over {measured:,} upstream attempts", ("Phase", "Time"), rows
    )


def _timeseries(context: Context, data: Mapping[str, Any]) -> str:
    series = data["series"]
    labels = [_bucket_label(start, series["bucket"]) for start in series["buckets"]]
    chart = svg.stacked_bar_chart(
        f"Requests by {series['group_by']}",
        labels,
        [(s["name"], s["requests"]) for s in series["series"]],
        unit="req",
    )
    page = context.call.page
    groups = "".join(
        f'<a href="{h.e(_link(page, context, group_by=g, bucket=series["bucket"]))}"'
        f"{_CURRENT if g == series['group_by'] else ''}>{g}</a>"
        for g in ("account", "model", "provider")
    )
    buckets = "".join(
        f'<a href="{h.e(_link(page, context, group_by=series["group_by"], bucket=b))}"'
        f"{_CURRENT if b == series['bucket'] else ''}>{b}</a>"
        for b in ("hour", "day")
    )
    rows = [
        [
            h.e(label),
            *(h.count(s["requests"][i]) for s in series["series"]),
            h.count(series["bucket_totals"][i]),
        ]
        for i, label in enumerate(labels)
        if series["bucket_totals"][i]
    ]
    headings = ("Bucket", *(s["name"] for s in series["series"]), "Total")
    return (
        f'<nav class="controls" aria-label="Group by">{groups}</nav>'
        f'<nav class="controls" aria-label="Bucket">{buckets}</nav>'
        f"{h.chart(chart)}{h.table('Requests per bucket', headings, rows)}"
    )


def _bucket_label(start: int, bucket: str) -> str:
    moment = datetime.fromtimestamp(start, UTC)
    return moment.strftime("%m-%d %H:00" if bucket == "hour" else "%Y-%m-%d")


_RENDERERS = {
    "overview": _overview,
    "accounts": _accounts,
    "models": _models,
    "latency": _latency,
    "timeseries": _timeseries,
    "reliability": ops.reliability,
    "routing": ops.routing,
    "events": ops.events,
    "traces": ops.traces,
    "trace": ops.trace,
    "runtime": ops.runtime,
}
