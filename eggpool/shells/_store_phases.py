"""Schema version 7: where an attempt's time went (connect, upstream wait, after the head).

Theory of operation. An attempt's record now says how long getting a
connection took (`connect`, as the upstream client measured it: a free
slot, then TCP, TLS and proxy handshakes; about 0 on a pooled connection)
and when the response head came (`head`, seconds from dispatch). Version 7
adds both to `attempts`, adds their sums and counts to the attempt rollups
(`connect_sum`, `connect_count`, `head_sum`, `head_count`, and
`headed_latency_sum`: the whole latency of the attempts that had a head,
so the time after the head is `headed_latency_sum - head_sum`), and
replaces the rollups' trigger with one that fills them. Rows from before
version 7 have no timings and count in no phase.

A released schema version: change it only through a new one.
"""

from __future__ import annotations

import sqlite3

from eggpool.shells._store_rollups import UNITS, upsert_statements

__all__ = ["migrate_phases"]

_COLUMNS = (
    ("connect_sum", "REAL NOT NULL DEFAULT 0"),
    ("connect_count", "INTEGER NOT NULL DEFAULT 0"),
    ("head_sum", "REAL NOT NULL DEFAULT 0"),
    ("head_count", "INTEGER NOT NULL DEFAULT 0"),
    ("headed_latency_sum", "REAL NOT NULL DEFAULT 0"),
)


def _trigger() -> str:
    statements: list[str] = []
    for unit, seconds in UNITS.items():
        key = {
            unit: f"CAST(NEW.ended_at / {seconds} AS INTEGER)",
            "account": "NEW.account",
            "provider": "NEW.provider",
            "category": "COALESCE(NEW.category, '')",
            "http_status": "COALESCE(NEW.http_status, 0)",
        }
        statements += upsert_statements(
            f"attempt_{unit}s",
            key,
            "attempts = attempts + 1, failovers = failovers + (NEW.failover != 0), "
            "latency_sum = latency_sum + COALESCE(NEW.latency, 0), "
            "latency_count = latency_count + (NEW.latency IS NOT NULL), "
            "connect_sum = connect_sum + COALESCE(NEW.connect, 0), "
            "connect_count = connect_count + (NEW.connect IS NOT NULL), "
            "head_sum = head_sum + COALESCE(NEW.head, 0), "
            "head_count = head_count + (NEW.head IS NOT NULL), "
            "headed_latency_sum = headed_latency_sum "
            "+ CASE WHEN NEW.head IS NULL THEN 0 ELSE COALESCE(NEW.latency, 0) END",
        )
    body = ";\n".join(statements)
    return f"CREATE TRIGGER attempts_count_inserted AFTER INSERT ON attempts BEGIN {body}; END"


def migrate_phases(conn: sqlite3.Connection) -> None:
    """Schema version 7 (see the module docstring)."""
    statements = [
        "ALTER TABLE attempts ADD COLUMN connect REAL",
        "ALTER TABLE attempts ADD COLUMN head REAL",
        *(
            f"ALTER TABLE attempt_{unit}s ADD COLUMN {name} {kind}"
            for unit in UNITS
            for name, kind in _COLUMNS
        ),
        "DROP TRIGGER attempts_count_inserted",
        _trigger(),
    ]
    for statement in statements:
        conn.execute(statement)
