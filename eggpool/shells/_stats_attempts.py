"""Stats of upstream attempts: how often accounts answered, failed and were failed over.

Theory of operation. Every stored attempt is counted into `attempt_hours`
and `attempt_days` (eggpool/shells/_store_rollups.py) by the hour it ended,
per account, provider, retry category ('' for a success) and HTTP status.
A period is read like the request stats (`shape.spans`): day rows for its
whole days, hour rows around them, `attempts` rows for the partial hours
at its ends, so the counts are exact. A failover is an attempt whose
failure sent the request on to another account; a request that needed
one shows both attempts here and one request in the request stats.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from eggpool.dashboard.params import StatsQuery
from eggpool.shells import _stats_shape as shape

__all__ = ["attempt_stats", "phase_stats", "retry_stats"]

_ROLLED = "SUM(attempts), SUM(failovers), SUM(latency_sum), SUM(latency_count)"
_RAW = "COUNT(*), SUM(failover != 0), SUM(COALESCE(latency, 0)), COUNT(latency)"
_KEYS_RAW = {
    "account": "account", "provider": "provider", "category": "COALESCE(category, '')",
    "http_status": "COALESCE(http_status, 0)",
}  # fmt: skip


Groups = dict[tuple[Any, ...], list[float]]


def _rows(
    conn: sqlite3.Connection,
    q: StatsQuery,
    by: list[str],
    sums: tuple[str, str] = (_ROLLED, _RAW),
) -> Groups:
    """`sums` (by default attempts, failovers, latency sum, latency count) per group of `by`
    over the period: (rollup columns, row columns)."""
    out: Groups = {}
    for unit, low, high in shape.spans(q, days=True):
        where: list[str] = []
        params: list[object] = []
        for column in ("account", "provider"):
            value = getattr(q, column)
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if unit == "raw":
            keys = [_KEYS_RAW[k] for k in by]
            where[:0] = ["ended_at >= ?", "ended_at < ?"]
            table, columns_sql = "attempts", sums[1]
        else:
            keys = list(by)
            where[:0] = [f"{unit} >= ?", f"{unit} < ?"]
            table, columns_sql = f"attempt_{unit}s", sums[0]
        group = f" GROUP BY {', '.join(str(i + 1) for i in range(len(keys)))}" if keys else ""
        columns = ", ".join([*keys, columns_sql])
        sql = f"SELECT {columns} FROM {table} WHERE {' AND '.join(where)}{group}"
        for row in conn.execute(sql, [low, high, *params]):
            if not any(row[len(keys) :]):  # an empty range: SUM() of nothing
                continue
            totals = out.setdefault(tuple(row[: len(keys)]), [0] * (len(row) - len(keys)))
            for index, value in enumerate(row[len(keys) :]):
                totals[index] += value or 0
    return out


def _figures(values: list[float]) -> dict[str, object]:
    attempts, failovers, latency, counted = values
    return {
        "attempts": int(attempts),
        "failovers": int(failovers),
        "failover_rate": round(failovers / attempts, 4) if attempts else 0.0,
        "avg_latency_s": round(latency / counted, 4) if counted else None,
    }


def attempt_stats(conn: sqlite3.Connection, q: StatsQuery) -> dict[str, object]:
    """Attempts over the period: totals, failures, per account and per HTTP status."""
    by_category = _rows(conn, q, ["category"])
    total = [sum(v[i] for v in by_category.values()) for i in range(4)]
    failed = sum(v[0] for (category,), v in by_category.items() if category)
    accounts = []
    by_account = _rows(conn, q, ["account", "provider", "category"])
    merged: dict[tuple[str, str], list[float]] = {}
    failures: dict[tuple[str, str], float] = {}
    for (account, provider, category), values in by_account.items():
        row = merged.setdefault((account, provider), [0, 0, 0.0, 0])
        for index, value in enumerate(values):
            row[index] += value
        if category:
            failures[(account, provider)] = failures.get((account, provider), 0) + values[0]
    for (account, provider), values in sorted(merged.items(), key=lambda i: -i[1][0]):
        figures = _figures(values)
        failed_here = failures.get((account, provider), 0)
        accounts.append(
            {
                "account": account,
                "provider": provider,
                **figures,
                "failed": int(failed_here),
                "failure_rate": round(failed_here / values[0], 4) if values[0] else 0.0,
            }
        )
    statuses = _rows(conn, q, ["http_status"])
    return {
        **shape.period(q),
        **_figures(total),
        "failed": int(failed),
        "failure_rate": round(failed / total[0], 4) if total[0] else 0.0,
        "accounts": accounts[: q.limit],
        "by_status": {
            str(status): int(values[0]) for (status,), values in sorted(statuses.items())
        },
    }


def retry_stats(conn: sqlite3.Connection, q: StatsQuery) -> dict[str, object]:
    """Failed attempts by retry category (the classifier's), most frequent first."""
    rows = _rows(conn, q, ["category"])
    failed = [(category, values) for (category,), values in rows.items() if category]
    failed.sort(key=lambda item: (-item[1][0], item[0]))
    total = sum(values[0] for _, values in failed)
    return {
        **shape.period(q),
        "failed_attempts": int(total),
        "categories": [
            {
                "category": category,
                "attempts": int(values[0]),
                "share": round(values[0] / total, 4) if total else 0.0,
                "failovers": int(values[1]),
            }
            for category, values in failed[: q.limit]
        ],
    }


_PHASES = (
    "SUM(connect_sum), SUM(connect_count), SUM(head_sum), SUM(head_count), "
    "SUM(headed_latency_sum)",
    "SUM(COALESCE(connect, 0)), COUNT(connect), SUM(COALESCE(head, 0)), COUNT(head), "
    "SUM(CASE WHEN head IS NULL THEN 0 ELSE COALESCE(latency, 0) END)",
)


def phase_stats(conn: sqlite3.Connection, q: StatsQuery) -> dict[str, object]:
    """Where attempts' time went, on average: getting a connection, waiting for the
    response head after it, and receiving the rest after the head (a stream's tokens)."""
    totals = _rows(conn, q, [], _PHASES).get((), [0, 0, 0.0, 0, 0.0])
    connect_sum, connected, head_sum, headed, headed_latency = totals
    connect = connect_sum / connected if connected else None
    head = head_sum / headed if headed else None
    return {
        "attempts_measured": int(headed),
        "connect_s": None if connect is None else round(connect, 4),
        "upstream_wait_s": (None if head is None else round(max(head - (connect or 0.0), 0.0), 4)),
        "after_head_s": None if not headed else round((headed_latency - head_sum) / headed, 4),
    }
