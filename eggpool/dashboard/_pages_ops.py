"""The dashboard's operations pages: reliability, routing, events, traces, runtime. Pure.

The same contract as eggpool/dashboard/pages.py (which draws the frame
around these bodies): a function of the page's `Context` and the data the
shell read, returning escaped HTML.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any

from eggpool.dashboard import _html as h
from eggpool.dashboard import svg

__all__ = ["events", "reliability", "routing", "runtime", "trace", "trace_path", "traces"]


def trace_path(request_id: str) -> str:
    return "/traces/" + urllib.parse.quote(request_id, safe="")


_ATTEMPT_HEADINGS = (
    "Account",
    "Provider",
    "Attempts",
    "Failed",
    "Failure rate",
    "Failed over",
    "Avg latency",
)


def reliability(context: object, data: Mapping[str, Any]) -> str:
    errors, pending, backoffs = data["errors"], data["pending"], data["backoffs"]
    attempts = data["attempts"]
    cards = (
        h.card("Errors", h.count(errors["errors"]), f"{h.share(errors['error_rate'])} of requests")
        + h.card(
            "Pending",
            h.count(pending["pending"]),
            f"oldest {h.seconds(pending['oldest_pending_age_s'])}",
        )
        + h.card("Stale pending", h.count(pending["stale_pending"]), "pending over 15 minutes")
        + h.reservations(pending.get("reservations"))
        + h.card("Cooldowns", h.count(len(backoffs["backoffs"])), "running now")
        + h.card(
            "Upstream attempts",
            h.count(attempts["attempts"]),
            f"{h.share(attempts['failure_rate'])} failed, "
            f"{h.share(attempts['failover_rate'])} failed over",
        )
    )
    attempt_rows = [
        [
            h.e(a["account"]),
            h.e(a["provider"]),
            h.count(a["attempts"]),
            h.count(a["failed"]),
            h.share(a["failure_rate"]),
            h.count(a["failovers"]),
            h.seconds(a["avg_latency_s"]),
        ]
        for a in attempts["accounts"]
    ]
    retry_rows = [
        [h.e(r["category"]), h.count(r["attempts"]), h.share(r["share"]), h.count(r["failovers"])]
        for r in data["retries"]["categories"]
    ]
    error_rows = [
        [h.e(e["outcome"]), h.e(e["status"]), h.count(e["requests"])]
        for e in errors["by_outcome_and_status"]
    ]
    backoff_rows = [
        [
            h.e(b["provider"]),
            h.e(b["account"] or "all"),
            h.e(b["model"] or "all"),
            h.e(b["reason"]),
            h.e(h.when(b["until"]) if b["until"] is not None else "no end"),
        ]
        for b in backoffs["backoffs"]
    ]
    return (
        f'<div class="cards">{cards}</div>'
        + h.table("Errors by outcome and status", ("Outcome", "Status", "Requests"), error_rows)
        + h.table(
            "Upstream attempts by account",
            _ATTEMPT_HEADINGS,
            attempt_rows,
        )
        + h.table(
            "Failed attempts by retry category",
            ("Category", "Attempts", "Share", "Failed over"),
            retry_rows,
        )
        + h.table(
            "Running cooldowns", ("Provider", "Account", "Model", "Reason", "Until"), backoff_rows
        )
    )


def routing(context: object, data: Mapping[str, Any]) -> str:
    routing = data["routing"]
    cards = (
        h.card("Decisions", h.count(routing["decisions"]), "one per attempt routed")
        + h.card("No account", h.count(routing["no_account"]), "requests none could take")
        + h.card("Session kept", h.count(routing["affinity_kept"]), "affinity held the account")
        + h.card(
            "Eligible per decision",
            "-" if routing["avg_candidates"] is None else f"{routing['avg_candidates']:.2f}",
            "accounts on average",
        )
    )
    reasons = routing["exclusions_by_reason"]
    chart = svg.bar_chart(
        "Exclusions by reason", [(r["reason"], r["exclusions"]) for r in reasons]
    )
    selections = [
        [h.e(s["account"]), h.count(s["decisions"]), h.share(s["share"])]
        for s in routing["selections"]
    ]
    models = [
        [h.e(m["model"] or "-"), h.count(m["decisions"]), h.count(m["no_account"])]
        for m in routing["models"]
    ]
    excluded = [
        [h.e(x["account"]), h.e(x["reason"]), h.count(x["exclusions"])]
        for x in routing["exclusions"]
    ]
    return (
        f'<div class="cards">{cards}</div>'
        + h.table("Selections by account", ("Account", "Decisions", "Share"), selections)
        + h.table("Decisions by model", ("Model", "Decisions", "No account"), models)
        + h.chart(chart)
        + h.table("Accounts left out, and why", ("Account", "Reason", "Times"), excluded)
    )


def events(context: object, data: Mapping[str, Any]) -> str:
    accounts = data["accounts"]
    account_rows = [
        [
            h.e(h.when(ev["at"])),
            h.e(ev["account"] or "all"),
            h.e(ev["provider"]),
            h.e(ev["model"] or "all"),
            h.tag("cooldown", "error") if ev["kind"] == "cooldown" else h.tag("ended", "success"),
            h.e(ev["reason"]),
            h.e(h.when(ev["until"]) if ev["until"] is not None else "-"),
        ]
        for ev in accounts["events"]
    ]
    operational = [
        [h.e(h.when(ev["at"])), h.e(ev["kind"]), h.e(ev["detail"])]
        for ev in data["operational"]["events"]
    ]
    headings = ("When", "Account", "Provider", "Model", "Event", "Reason", "Until")
    return h.table("Account events: cooldowns started and ended", headings, account_rows) + (
        h.table("Operational events", ("When", "Kind", "Detail"), operational)
    )


def traces(context: object, data: Mapping[str, Any]) -> str:
    rows = []
    for r in data["recent"]["requests"]:
        link = f'<a href="{h.e(trace_path(r["request_id"]))}">{h.e(r["request_id"])}</a>'
        status = r["http_status"] if r["http_status"] is not None else r["status"]
        rows.append(
            [
                link,
                h.e(h.when(r["started_at"])),
                h.e(r["model"] or "-"),
                h.e(r["account"] or "-"),
                h.e(status),
                h.e(r["attempts"]),
                h.seconds(r["latency_s"]),
                h.money(r["cost_usd"]),
            ]
        )
    headings = ("Request", "Started", "Model", "Account", "Status", "Attempts", "Latency", "Cost")
    return h.table("Recent requests (newest first)", headings, rows)


def trace(context: object, data: Mapping[str, Any]) -> str:
    trace = data["trace"]
    r = trace["request"]
    facts = [
        ("Status", f"{r['status']} · {r['outcome'] or '-'} · HTTP {r['http_status'] or '-'}"),
        ("Model", r["model"] or "-"),
        ("Account", f"{r['account'] or '-'} ({r['provider'] or '-'})"),
        ("Started", h.when(r["started_at"])),
        ("Finished", h.when(r["finalized_at"])),
        ("Latency / first token", f"{h.seconds(r['latency_s'])} / {h.seconds(r['ttft_s'])}"),
        ("Tokens in / out", f"{r['tokens']['input']:,} / {r['tokens']['output']:,}"),
        ("Cost", f"{h.money(r['cost_usd'])} ({r['exactness'] or 'unknown'})"),
    ]
    listing = "".join(f"<dt>{h.e(k)}</dt><dd>{h.e(v)}</dd>" for k, v in facts)
    rows = [
        [
            h.e(a["attempt_id"]),
            h.e(a["account"]),
            h.e(a["status"] if a["status"] is not None else "-"),
            h.e(a["category"] or "-"),
            h.e("yes" if a["failover"] else "no"),
            h.seconds(a["latency_s"]),
        ]
        for a in trace["attempts"]
    ]
    headings = ("Attempt", "Account", "Status", "Category", "Failed over", "Latency")
    decisions = [
        [
            h.e(d["decision_id"]),
            h.e(d["account"] or "none"),
            h.count(d["candidates"]),
            h.e("yes" if d["affinity"] else "no"),
            h.e(", ".join(f"{x['account']} ({x['reason']})" for x in d["excluded"]) or "-"),
        ]
        for d in trace.get("routing", [])
    ]
    routing = h.table(
        "Routing decisions",
        ("Decision", "Chosen", "Eligible", "Session kept", "Left out"),
        decisions,
    )
    facts_panel = f'<section class="panel"><dl class="facts">{listing}</dl></section>'
    return facts_panel + routing + h.table("Attempts, in order", headings, rows)


def runtime(context: object, data: Mapping[str, Any]) -> str:
    runtime = data["runtime"]
    process = runtime["process"]
    serving = runtime.get("serving", {})
    rss = process["rss_bytes"]
    dispatch = serving.get("dispatch_overhead_us") or {}
    p50, p95 = dispatch.get("p50"), dispatch.get("p95")
    cards = "".join(
        (
            h.card("Version", runtime["version"]),
            h.card("Uptime", h.seconds(process["uptime_s"])),
            h.card("Memory (RSS)", "-" if rss is None else f"{rss / 2**20:,.1f} MiB"),
            h.card("Threads", h.count(process["threads"])),
            h.card("In flight", h.count(runtime["requests_in_flight"] or 0), live="in_flight"),
            h.card(
                "Dispatch overhead p50 / p95",
                "-" if p50 is None else f"{p50:,.0f} / {p95:,.0f} µs",
                f"the proxy's own time over the last {dispatch.get('samples', 0):,} requests",
            ),
        )
    )
    tasks = [
        [h.e(name.replace("_", " ")), h.count(n)] for name, n in serving.get("tasks", {}).items()
    ]
    files = runtime["database"]["files"]
    rows = [
        [h.e(name), "-" if size is None else f"{size / 2**20:,.2f} MiB"]
        for name, size in files.items()
    ]
    return (
        f'<div class="cards">{cards}</div>'
        + h.table("Serving now", ("What", "How many"), tasks)
        + h.table("Database files", ("File", "Size"), rows)
    )
