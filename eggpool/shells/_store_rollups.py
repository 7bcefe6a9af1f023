"""Hourly rollups of finalized requests, kept by the database itself.

Theory of operation. The dashboard must stay fast with a million stored
requests, and per-request rows are only kept `retain_request_stats_days`.
So every finalized request is also counted into two small tables, one row
per hour and combination of what the pages filter and group by:

- `request_hours`: per (hour, account, provider, model, outcome, HTTP
  status, streamed, exactness) the requests, attempts, tokens of each kind,
  cost, and latency and TTFT sums, counts and maxima;
- `latency_hours`: per (hour, account, model, kind) a histogram of latency
  or TTFT over fixed buckets (`LATENCY_EDGES`), from which percentiles are
  estimated (stats read them; sums cannot give a p99).

Triggers on `requests` do the counting, in the same transaction as the
write that finalizes the row: on an insert of a finalized row (a request
whose start was never stored, or crash recovery) and on the one update that
turns a pending row into a finalized one. The writer's finalization only
updates a row while it is pending, so a request is counted exactly once
however often its record is retried, and a crash can never leave the
rollups and the rows disagreeing. A request counts in the hour it was
finalized (`finalized_at // 3600`), the time the timeseries use.

The triggers insert a zero row when the key has none yet (`INSERT ...
WHERE NOT EXISTS`), then add to it with an `UPDATE`: no UPSERT (older
SQLite) and no `OR IGNORE`, whose conflict handling a trigger does not
keep when the statement that fired it is itself an UPSERT (the writer's
finalization is). Version 4 of the
schema creates all of it and counts the finalized rows already stored.
This module is schema version 4 as released: databases in the field have
its tables and triggers, so change it only through a new version. The
same holds for `LATENCY_EDGES`: buckets already written use them.
"""

from __future__ import annotations

import sqlite3

__all__ = ["LATENCY_EDGES", "ROLLUP_DIMENSIONS", "migrate_rollups"]

LATENCY_EDGES: tuple[float, ...] = (
    0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0,
)  # fmt: skip
"""Upper bounds (seconds, exclusive) of the histogram buckets: bucket i holds values
below LATENCY_EDGES[i] and at or above the edge before it; the last bucket,
len(LATENCY_EDGES), holds everything from 600 s up."""

ROLLUP_DIMENSIONS = (
    "account", "provider", "model", "outcome", "http_status", "streamed", "exactness",
)  # fmt: skip
"""What `request_hours` rows are kept per, besides the hour."""

_REQUEST_HOURS = """
CREATE TABLE request_hours (
    hour INTEGER NOT NULL,
    account TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    outcome TEXT NOT NULL,
    http_status INTEGER NOT NULL,
    streamed INTEGER NOT NULL,
    exactness TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens INTEGER NOT NULL DEFAULT 0,
    cost_microdollars INTEGER NOT NULL DEFAULT 0,
    latency_sum REAL NOT NULL DEFAULT 0,
    latency_count INTEGER NOT NULL DEFAULT 0,
    latency_max REAL,
    ttft_sum REAL NOT NULL DEFAULT 0,
    ttft_count INTEGER NOT NULL DEFAULT 0,
    ttft_max REAL,
    PRIMARY KEY (hour, account, provider, model, outcome, http_status, streamed, exactness)
)
"""

_LATENCY_HOURS = """
CREATE TABLE latency_hours (
    hour INTEGER NOT NULL,
    account TEXT NOT NULL,
    model TEXT NOT NULL,
    kind TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    count INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, account, model, kind, bucket)
)
"""

# The key of a finalized row, as `request_hours` keeps it (NULLs become '' or 0: a NULL
# in a primary key would make every row distinct).
_KEY = {
    "hour": "CAST({r}.finalized_at / 3600 AS INTEGER)",
    "account": "COALESCE({r}.account, '')",
    "provider": "COALESCE({r}.provider, '')",
    "model": "COALESCE({r}.model, '')",
    "outcome": "COALESCE({r}.outcome, '')",
    "http_status": "COALESCE({r}.http_status, 0)",
    "streamed": "{r}.streamed",
    "exactness": "COALESCE({r}.exactness, '')",
}

_SUMS = (
    "attempts", "input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens",
    "reasoning_tokens", "cost_microdollars",
)  # fmt: skip


def _bucket(value: str) -> str:
    """SQL for the histogram bucket of `value` (a CASE ladder: no math functions needed)."""
    steps = " ".join(f"WHEN {value} < {edge!r} THEN {i}" for i, edge in enumerate(LATENCY_EDGES))
    return f"CASE {steps} ELSE {len(LATENCY_EDGES)} END"


def _count_statements(r: str) -> list[str]:
    """The statements that count row `r` (`NEW` in a trigger) into the rollups."""
    key = {name: sql.format(r=r) for name, sql in _KEY.items()}
    names = ", ".join(key)
    values = ", ".join(key.values())
    match = " AND ".join(f"{name} = {sql}" for name, sql in key.items())
    sums = ", ".join(f"{name} = {name} + COALESCE({r}.{name}, 0)" for name in _SUMS)
    statements = [
        f"""INSERT INTO request_hours ({names}) SELECT {values}
            WHERE NOT EXISTS (SELECT 1 FROM request_hours WHERE {match})""",
        f"""UPDATE request_hours SET requests = requests + 1, {sums},
            latency_sum = latency_sum + COALESCE({r}.latency, 0),
            latency_count = latency_count + ({r}.latency IS NOT NULL),
            latency_max = CASE WHEN {r}.latency IS NULL THEN latency_max
                               ELSE MAX(COALESCE(latency_max, {r}.latency), {r}.latency) END,
            ttft_sum = ttft_sum + COALESCE({r}.ttft, 0),
            ttft_count = ttft_count + ({r}.ttft IS NOT NULL),
            ttft_max = CASE WHEN {r}.ttft IS NULL THEN ttft_max
                            ELSE MAX(COALESCE(ttft_max, {r}.ttft), {r}.ttft) END
            WHERE {match}""",
    ]
    hour, account, model = key["hour"], key["account"], key["model"]
    for kind in ("latency", "ttft"):
        value = f"{r}.{kind}"
        bucket = _bucket(value)
        cell = (
            f"hour = {hour} AND account = {account} AND model = {model}"
            f" AND kind = '{kind}' AND bucket = {bucket}"
        )
        statements += [
            f"""INSERT INTO latency_hours (hour, account, model, kind, bucket)
                SELECT {hour}, {account}, {model}, '{kind}', {bucket}
                WHERE {value} IS NOT NULL
                  AND NOT EXISTS (SELECT 1 FROM latency_hours WHERE {cell})""",
            f"UPDATE latency_hours SET count = count + 1 WHERE {value} IS NOT NULL AND {cell}",
        ]
    return statements


def _triggers() -> list[str]:
    body = ";\n".join(_count_statements("NEW")) + ";"
    return [
        f"""CREATE TRIGGER requests_count_inserted AFTER INSERT ON requests
            WHEN NEW.status = 'finalized' AND NEW.finalized_at IS NOT NULL
            BEGIN {body} END""",
        f"""CREATE TRIGGER requests_count_finalized AFTER UPDATE OF status ON requests
            WHEN OLD.status = 'pending' AND NEW.status = 'finalized'
                 AND NEW.finalized_at IS NOT NULL
            BEGIN {body} END""",
    ]


def _backfill() -> list[str]:
    """Count the finalized rows already stored (one pass per table)."""
    key = {name: sql.format(r="r") for name, sql in _KEY.items()}
    names = ", ".join(key)
    values = ", ".join(key.values())
    sums = ", ".join(f"SUM(COALESCE(r.{name}, 0))" for name in _SUMS)
    histograms = [
        f"""INSERT INTO latency_hours (hour, account, model, kind, bucket, count)
            SELECT {key["hour"]}, {key["account"]}, {key["model"]}, '{kind}',
                   {_bucket(f"r.{kind}")}, COUNT(*)
            FROM requests AS r
            WHERE r.status = 'finalized' AND r.finalized_at IS NOT NULL
              AND r.{kind} IS NOT NULL
            GROUP BY 1, 2, 3, 4, 5"""
        for kind in ("latency", "ttft")
    ]
    return [
        f"""INSERT INTO request_hours ({names}, requests, {", ".join(_SUMS)},
                latency_sum, latency_count, latency_max, ttft_sum, ttft_count, ttft_max)
            SELECT {values}, COUNT(*), {sums},
                   SUM(COALESCE(r.latency, 0)), COUNT(r.latency), MAX(r.latency),
                   SUM(COALESCE(r.ttft, 0)), COUNT(r.ttft), MAX(r.ttft)
            FROM requests AS r
            WHERE r.status = 'finalized' AND r.finalized_at IS NOT NULL
            GROUP BY {", ".join(str(i) for i in range(1, len(key) + 1))}""",
        *histograms,
    ]


def migrate_rollups(conn: sqlite3.Connection) -> None:
    """Schema version 4: the rollup tables, their indexes, the counting triggers, and the
    counts of what is already stored."""
    statements = [
        _REQUEST_HOURS,
        _LATENCY_HOURS,
        # Per-account and per-model pages filter on these within a time range.
        "CREATE INDEX request_hours_account ON request_hours (account, hour)",
        "CREATE INDEX request_hours_model ON request_hours (model, hour)",
        *_backfill(),
        *_triggers(),
    ]
    for statement in statements:
        conn.execute(statement)
