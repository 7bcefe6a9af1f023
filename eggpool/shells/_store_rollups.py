"""Hourly rollups of finalized requests, kept by the database itself.

Theory of operation. The dashboard must stay fast with a million stored
requests, and per-request rows are only kept `retain_request_stats_days`.
So every finalized request is also counted into small tables with one row
per hour (and, again, per day) and per (account, model) pair, whatever the
traffic: a month of a 20-pair pool is about 15,000 hour rows and 600 day
rows per table, for ten thousand requests a day or a million. Stats read
days for the whole days of a period, hours for the whole hours around
them and request rows only for the partial hours at its ends.

- `request_hours` / `request_days` (hour or day, account, provider,
  model): requests, errors (outcome not `completed`), streamed, attempts,
  tokens of each kind, cost, latency and TTFT sums, counts and maxima, and
  how many requests had each cost exactness;
- `outcome_hours` / `outcome_days` (..., outcome, http_status): requests,
  for the error breakdown;
- `latency_hours` / `latency_days` (hour or day, account, model, kind): a
  histogram of latency or TTFT over fixed buckets, one column per bucket
  (`b0` ...), from which percentiles are estimated (sums cannot give a
  p99);
- `attempt_hours` / `attempt_days` (hour or day, account, provider, retry
  category ('' for a success), HTTP status (0 for none)): upstream
  attempts, how many failed over, and their latency sum and count, counted
  when the attempt is stored (by the hour it ended).

The tables are `WITHOUT ROWID`, clustered by their key: a time range is
one contiguous read.

Triggers on `requests` do the counting, in the same transaction as the
write that finalizes the row: on an insert of a finalized row (a request
whose start was never stored, or crash recovery) and on the one update that
turns a pending row into a finalized one. The writer's finalization only
updates a row while it is pending, so a request is counted exactly once
however often its record is retried, and a crash can never leave the
rollups and the rows disagreeing. A request counts in the hour and the
UTC day it was finalized (`finalized_at // 3600`, `// 86400`), the time
the timeseries use; a NULL account, provider or model is kept as ''.

The triggers insert a zero row when the key has none yet (`INSERT ...
WHERE NOT EXISTS`), then add to it with an `UPDATE`: no UPSERT (older
SQLite) and no `OR IGNORE`, whose conflict handling a trigger does not
keep when the statement that fired it is itself an UPSERT (the writer's
finalization is). Schema version 4 creates all of it and counts the
finalized rows already stored.

This module is schema version 4 as released: databases in the field have
its tables and triggers, so change it only through a new version. The
same holds for `LATENCY_EDGES`: buckets already written use them.
"""

from __future__ import annotations

import sqlite3

__all__ = [
    "EXACTNESS",
    "HOUR_ROWS_DAYS",
    "HOUR_TABLES",
    "LATENCY_EDGES",
    "UNITS",
    "bucket_columns",
    "migrate_rollups",
    "upsert_statements",
]

LATENCY_EDGES: tuple[float, ...] = (
    0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0,
)  # fmt: skip
"""Upper bounds (seconds, exclusive) of the histogram buckets: bucket i (column `b<i>`)
holds values below LATENCY_EDGES[i] and at or above the edge before it; the last bucket,
len(LATENCY_EDGES), holds everything from 600 s up."""

EXACTNESS = ("exact", "derived", "partial", "estimated", "unknown")
"""The exactness columns of `request_hours` (anything else counts as unknown)."""

_SUMS = (
    "attempts", "input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens",
    "reasoning_tokens", "cost_microdollars",
)  # fmt: skip
_KINDS = ("latency", "ttft")


def bucket_columns() -> list[str]:
    """The histogram's columns, bucket by bucket: `b0` ... `b23`."""
    return [f"b{i}" for i in range(len(LATENCY_EDGES) + 1)]


def _integers(names: tuple[str, ...] | list[str]) -> str:
    return ",\n    ".join(f"{name} INTEGER NOT NULL DEFAULT 0" for name in names)


_REQUESTS_TABLE = f"""
CREATE TABLE request_{{unit}}s (
    {{unit}} INTEGER NOT NULL,
    account TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    {_integers(("requests", "errors", "streamed", *_SUMS))},
    latency_sum REAL NOT NULL DEFAULT 0,
    latency_count INTEGER NOT NULL DEFAULT 0,
    latency_max REAL,
    ttft_sum REAL NOT NULL DEFAULT 0,
    ttft_count INTEGER NOT NULL DEFAULT 0,
    ttft_max REAL,
    {_integers(EXACTNESS)},
    PRIMARY KEY ({{unit}}, account, provider, model)
) WITHOUT ROWID
"""

_OUTCOMES_TABLE = """
CREATE TABLE outcome_{unit}s (
    {unit} INTEGER NOT NULL,
    account TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    outcome TEXT NOT NULL,
    http_status INTEGER NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY ({unit}, account, provider, model, outcome, http_status)
) WITHOUT ROWID
"""

_LATENCY_TABLE = f"""
CREATE TABLE latency_{{unit}}s (
    {{unit}} INTEGER NOT NULL,
    account TEXT NOT NULL,
    model TEXT NOT NULL,
    kind TEXT NOT NULL,
    {_integers(bucket_columns())},
    PRIMARY KEY ({{unit}}, account, model, kind)
) WITHOUT ROWID
"""

_ATTEMPTS_TABLE = """
CREATE TABLE attempt_{unit}s (
    {unit} INTEGER NOT NULL,
    account TEXT NOT NULL,
    provider TEXT NOT NULL,
    category TEXT NOT NULL,
    http_status INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    failovers INTEGER NOT NULL DEFAULT 0,
    latency_sum REAL NOT NULL DEFAULT 0,
    latency_count INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY ({unit}, account, provider, category, http_status)
) WITHOUT ROWID
"""

HOUR_ROWS_DAYS = 400
"""Hour rows are kept this long (the longest period the stats take); day rows for ever."""

HOUR_TABLES = (
    "request_hours", "outcome_hours", "latency_hours", "attempt_hours", "routing_hours",
    "exclusion_hours",
)  # fmt: skip
"""Every hour rollup (schema 4 and 6), for retention."""

UNITS = {"hour": 3600, "day": 86400}
"""The rollups' resolutions: each has its three tables, `request_hours` ... `latency_days`."""


def _key(r: str, unit: str) -> dict[str, str]:
    """Key columns of a finalized row `r`, as the `unit` rollups keep them."""
    return {
        unit: f"CAST({r}.finalized_at / {UNITS[unit]} AS INTEGER)",
        "account": f"COALESCE({r}.account, '')",
        "provider": f"COALESCE({r}.provider, '')",
        "model": f"COALESCE({r}.model, '')",
    }


def _in_bucket(value: str, index: int) -> str:
    """SQL, 1 or 0: is `value` in bucket `index`."""
    tests = []
    if index > 0:
        tests.append(f"{value} >= {LATENCY_EDGES[index - 1]!r}")
    if index < len(LATENCY_EDGES):
        tests.append(f"{value} < {LATENCY_EDGES[index]!r}")
    return f"({' AND '.join(tests)})"


def _exactness(r: str, name: str) -> str:
    """SQL, 1 or 0: does row `r` have exactness `name` (unknown: anything not listed)."""
    if name == "unknown":
        known = ", ".join(f"'{e}'" for e in EXACTNESS if e != "unknown")
        return f"(COALESCE({r}.exactness, '') NOT IN ({known}))"
    return f"(COALESCE({r}.exactness, '') = '{name}')"


def upsert_statements(table: str, key: dict[str, str], updates: str) -> list[str]:
    """Make sure `table` has a row for `key`, then apply `updates` to it."""
    names, values = ", ".join(key), ", ".join(key.values())
    match = " AND ".join(f"{name} = {value}" for name, value in key.items())
    return [
        f"""INSERT INTO {table} ({names}) SELECT {values}
            WHERE NOT EXISTS (SELECT 1 FROM {table} WHERE {match})""",
        f"UPDATE {table} SET {updates} WHERE {match}",
    ]


def _count_statements(r: str, unit: str) -> list[str]:
    """The statements that count row `r` (`NEW` in a trigger) into the `unit` rollups."""
    key = _key(r, unit)
    sums = ", ".join(f"{name} = {name} + COALESCE({r}.{name}, 0)" for name in _SUMS)
    exactness = ", ".join(f"{name} = {name} + {_exactness(r, name)}" for name in EXACTNESS)
    timing = ", ".join(
        f"{kind}_sum = {kind}_sum + COALESCE({r}.{kind}, 0), "
        f"{kind}_count = {kind}_count + ({r}.{kind} IS NOT NULL), "
        f"{kind}_max = CASE WHEN {r}.{kind} IS NULL THEN {kind}_max "
        f"ELSE MAX(COALESCE({kind}_max, {r}.{kind}), {r}.{kind}) END"
        for kind in _KINDS
    )
    statements = upsert_statements(
        f"request_{unit}s",
        key,
        f"requests = requests + 1, "
        f"errors = errors + (COALESCE({r}.outcome, '') != 'completed'), "
        f"streamed = streamed + ({r}.streamed != 0), {sums}, {timing}, {exactness}",
    )
    outcome = {
        **key,
        "outcome": f"COALESCE({r}.outcome, '')",
        "http_status": f"COALESCE({r}.http_status, 0)",
    }
    statements += upsert_statements(f"outcome_{unit}s", outcome, "requests = requests + 1")
    for kind in _KINDS:
        value = f"{r}.{kind}"
        cell = {unit: key[unit], "account": key["account"], "model": key["model"],
                "kind": f"'{kind}'"}  # fmt: skip
        columns = ", ".join(
            f"{column} = {column} + {_in_bucket(value, i)}"
            for i, column in enumerate(bucket_columns())
        )
        # Only for a row that has the value: the whole pair runs under its condition.
        statements += [
            statement.replace("WHERE ", f"WHERE {value} IS NOT NULL AND ", 1)
            for statement in upsert_statements(f"latency_{unit}s", cell, columns)
        ]
    return statements


def _attempt_statements(r: str, unit: str) -> list[str]:
    """The statements that count attempt row `r` into the `unit` attempt rollups."""
    key = {
        unit: f"CAST({r}.ended_at / {UNITS[unit]} AS INTEGER)",
        "account": f"{r}.account",
        "provider": f"{r}.provider",
        "category": f"COALESCE({r}.category, '')",
        "http_status": f"COALESCE({r}.http_status, 0)",
    }
    return upsert_statements(
        f"attempt_{unit}s",
        key,
        f"attempts = attempts + 1, failovers = failovers + ({r}.failover != 0), "
        f"latency_sum = latency_sum + COALESCE({r}.latency, 0), "
        f"latency_count = latency_count + ({r}.latency IS NOT NULL)",
    )


def _triggers() -> list[str]:
    body = ";\n".join(stmt for unit in UNITS for stmt in _count_statements("NEW", unit)) + ";"
    attempts = (
        ";\n".join(stmt for unit in UNITS for stmt in _attempt_statements("NEW", unit)) + ";"
    )
    return [
        f"""CREATE TRIGGER requests_count_inserted AFTER INSERT ON requests
            WHEN NEW.status = 'finalized' AND NEW.finalized_at IS NOT NULL
            BEGIN {body} END""",
        f"""CREATE TRIGGER requests_count_finalized AFTER UPDATE OF status ON requests
            WHEN OLD.status = 'pending' AND NEW.status = 'finalized'
                 AND NEW.finalized_at IS NOT NULL
            BEGIN {body} END""",
        f"""CREATE TRIGGER attempts_count_inserted AFTER INSERT ON attempts
            BEGIN {attempts} END""",
    ]


def _backfill(unit: str) -> list[str]:
    """Count the finalized rows already stored into the `unit` rollups (a pass per table)."""
    key = _key("r", unit)
    names, values = ", ".join(key), ", ".join(key.values())
    finalized = "FROM requests AS r WHERE r.status = 'finalized' AND r.finalized_at IS NOT NULL"
    sums = ", ".join(f"SUM(COALESCE(r.{name}, 0))" for name in _SUMS)
    exactness = ", ".join(f"SUM({_exactness('r', name)})" for name in EXACTNESS)
    statements = [
        f"""INSERT INTO request_{unit}s ({names}, requests, errors, streamed, {", ".join(_SUMS)},
                latency_sum, latency_count, latency_max, ttft_sum, ttft_count, ttft_max,
                {", ".join(EXACTNESS)})
            SELECT {values}, COUNT(*), SUM(COALESCE(r.outcome, '') != 'completed'),
                   SUM(r.streamed != 0), {sums},
                   SUM(COALESCE(r.latency, 0)), COUNT(r.latency), MAX(r.latency),
                   SUM(COALESCE(r.ttft, 0)), COUNT(r.ttft), MAX(r.ttft), {exactness}
            {finalized} GROUP BY 1, 2, 3, 4""",
        f"""INSERT INTO outcome_{unit}s ({names}, outcome, http_status, requests)
            SELECT {values}, COALESCE(r.outcome, ''), COALESCE(r.http_status, 0), COUNT(*)
            {finalized} GROUP BY 1, 2, 3, 4, 5, 6""",
    ]
    for kind in _KINDS:
        columns = bucket_columns()
        counts = ", ".join(f"SUM({_in_bucket(f'r.{kind}', i)})" for i in range(len(columns)))
        statements.append(
            f"""INSERT INTO latency_{unit}s ({unit}, account, model, kind, {", ".join(columns)})
                SELECT {key[unit]}, {key["account"]}, {key["model"]}, '{kind}', {counts}
                {finalized} AND r.{kind} IS NOT NULL GROUP BY 1, 2, 3"""
        )
    return statements


def migrate_rollups(conn: sqlite3.Connection) -> None:
    """Schema version 4: the rollup tables, the counting triggers, the counts of what is
    already stored, and an index of requests by start time (recent requests)."""
    statements: list[str] = []
    tables = (_REQUESTS_TABLE, _OUTCOMES_TABLE, _LATENCY_TABLE, _ATTEMPTS_TABLE)
    for unit, seconds in UNITS.items():
        statements += [table.format(unit=unit) for table in tables]
        statements += _backfill(unit)
        statements.append(
            f"""INSERT INTO attempt_{unit}s ({unit}, account, provider, category, http_status,
                    attempts, failovers, latency_sum, latency_count)
                SELECT CAST(ended_at / {seconds} AS INTEGER), account, provider,
                       COALESCE(category, ''), COALESCE(http_status, 0), COUNT(*),
                       SUM(failover != 0), SUM(COALESCE(latency, 0)), COUNT(latency)
                FROM attempts GROUP BY 1, 2, 3, 4, 5"""
        )
    statements += _triggers()
    # Recent requests (pending ones too) are listed newest first by their start.
    statements.append("CREATE INDEX requests_started_at ON requests (started_at)")
    for statement in statements:
        conn.execute(statement)
