"""Stats that list rows: cooldowns and events, pending requests, recent requests, a trace.

Theory of operation. These read the tables themselves (`backoffs`,
`operational_events`, `account_events`, `requests`, `attempts`,
`routing_decisions`), newest first or by an index, and return plain
JSON-ready data; `Stats` (eggpool/shells/_stats.py) calls them. A request's
shape never has its content, its client address or upstream error details.
"""

from __future__ import annotations

import math
import sqlite3

from eggpool.dashboard.params import StatsQuery
from eggpool.shells import _stats_shape as shape

__all__ = [
    "STALE_PENDING_S",
    "account_events",
    "backoffs",
    "operational",
    "pending_health",
    "recent_requests",
    "trace",
]

STALE_PENDING_S = 15 * 60
"""A request pending longer than this is counted as stale in the pending health."""


def backoffs(conn: sqlite3.Connection, now: float) -> dict[str, object]:
    rows = conn.execute(
        "SELECT provider, account, model, reason, until, probe_at FROM backoffs "
        "WHERE until > ? ORDER BY until",
        (now,),
    ).fetchall()
    return {
        "now": now,
        "backoffs": [
            {
                "provider": provider,
                "account": account or None,
                "model": model or None,
                "reason": reason,
                "until": None if math.isinf(until) else until,
                "probe_at": probe_at,
            }
            for provider, account, model, reason, until, probe_at in rows
        ],
    }


def operational(conn: sqlite3.Connection, q: StatsQuery) -> dict[str, object]:
    where = "at >= ? AND at < ?"
    params: list[object] = [q.start, q.end]
    if q.kind is not None:
        where += " AND kind = ?"
        params.append(q.kind)
    counts = conn.execute(
        f"SELECT kind, count(*) FROM operational_events WHERE {where} GROUP BY kind", params
    ).fetchall()
    recent = conn.execute(
        f"SELECT at, kind, detail FROM operational_events WHERE {where} "
        "ORDER BY at DESC, id DESC LIMIT ?",
        [*params, q.limit or 50],
    ).fetchall()
    return {
        **shape.period(q),
        "counts": dict(sorted(counts)),
        "events": [{"at": at, "kind": kind, "detail": detail} for at, kind, detail in recent],
    }


def account_events(conn: sqlite3.Connection, q: StatsQuery) -> dict[str, object]:
    """Cooldowns started, lengthened and ended over the period: counts and the latest."""
    where = ["at >= ?", "at < ?"]
    params: list[object] = [q.start, q.end]
    for column, value in (("account", q.account), ("provider", q.provider), ("kind", q.kind)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    clause = " AND ".join(where)
    counts = conn.execute(
        f"SELECT kind, reason, count(*) FROM account_events WHERE {clause} "
        "GROUP BY kind, reason ORDER BY 3 DESC, 1, 2",
        params,
    ).fetchall()
    recent = conn.execute(
        "SELECT at, provider, account, model, kind, reason, until FROM account_events "
        f"WHERE {clause} ORDER BY at DESC, id DESC LIMIT ?",
        [*params, q.limit or 50],
    ).fetchall()
    return {
        **shape.period(q),
        "counts": [{"kind": k, "reason": r, "events": n} for k, r, n in counts],
        "events": [
            {
                "at": at,
                "provider": provider,
                "account": account or None,
                "model": model or None,
                "kind": kind,
                "reason": reason,
                "until": None if until is None or math.isinf(until) else until,
            }
            for at, provider, account, model, kind, reason, until in recent
        ],
    }


def pending_health(conn: sqlite3.Connection, now: float) -> dict[str, object]:
    count, oldest = conn.execute(
        "SELECT count(*), min(started_at) FROM requests WHERE status = 'pending'"
    ).fetchone()
    (stale,) = conn.execute(
        "SELECT count(*) FROM requests WHERE status = 'pending' AND started_at < ?",
        (now - STALE_PENDING_S,),
    ).fetchone()
    return {
        "pending": count,
        "oldest_pending_age_s": None if oldest is None else round(now - oldest, 3),
        "stale_pending": stale,
        "stale_after_s": STALE_PENDING_S,
    }


def recent_requests(conn: sqlite3.Connection, q: StatsQuery) -> dict[str, object]:
    where = ["started_at >= ?", "started_at < ?"]
    params: list[object] = [q.start, q.end]
    for column, value in (
        ("account", q.account),
        ("provider", q.provider),
        ("model", q.model),
        ("http_status", q.status),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    rows = conn.execute(
        f"SELECT {shape.REQUEST_COLUMNS} FROM requests WHERE {' AND '.join(where)} "
        "ORDER BY started_at DESC LIMIT ?",
        [*params, q.limit or 50],
    ).fetchall()
    return {**shape.period(q), "requests": [shape.request(row) for row in rows]}


def trace(conn: sqlite3.Connection, request_id: str) -> dict[str, object] | None:
    row = conn.execute(
        f"SELECT {shape.REQUEST_COLUMNS} FROM requests WHERE request_id = ?", (request_id,)
    ).fetchone()
    if row is None:
        return None
    attempts = conn.execute(
        "SELECT attempt_id, account, provider, ended_at, http_status, category, failover, "
        "latency FROM attempts WHERE request_id = ? ORDER BY ended_at, rowid",
        (request_id,),
    ).fetchall()
    decisions = conn.execute(
        "SELECT decision_id, at, model, account, candidates, affinity "
        "FROM routing_decisions WHERE request_id = ? ORDER BY at, decision_id",
        (request_id,),
    ).fetchall()
    left_out: dict[str, list[dict[str, str]]] = {}
    for decision_id, account, reason in conn.execute(
        "SELECT e.decision_id, e.account, e.reason FROM routing_exclusions AS e "
        "JOIN routing_decisions AS d ON d.decision_id = e.decision_id "
        "WHERE d.request_id = ? ORDER BY e.account",
        (request_id,),
    ):
        left_out.setdefault(decision_id, []).append({"account": account, "reason": reason})
    return {
        "request": shape.request(row),
        "attempts": [
            {
                "attempt_id": attempt_id,
                "account": account,
                "provider": provider,
                "ended_at": ended_at,
                "status": status,
                "category": category,
                "failover": bool(failover),
                "latency_s": latency,
            }
            for attempt_id, account, provider, ended_at, status, category, failover, latency
            in attempts
        ],
        "routing": [
            {
                "decision_id": decision_id,
                "at": at,
                "model": model,
                "account": account or None,
                "candidates": candidates,
                "affinity": bool(affinity),
                "excluded": left_out.get(decision_id, []),
            }
            for decision_id, at, model, account, candidates, affinity in decisions
        ],
    }  # fmt: skip
