"""Routing decisions in the store: each decision, its dynamic exclusions, and their rollups.

Theory of operation. The core records every routing decision
(`RoutingDecided`): the account chosen (or none), how many were eligible,
whether the session's account was kept, and the accounts left out for a
reason that changes with time (cooling down, circuit open, over quota,
already tried). Schema version 6 keeps them in `routing_decisions` and
`routing_exclusions` (one row per left-out account), both kept as long as
requests are (`retain_request_stats_days`), and counts them, by triggers on
insert, into `routing_hours` / `routing_days` (decisions per model and
chosen account, '' for none, with how often affinity kept the session's
account and the eligible accounts summed) and `exclusion_hours` /
`exclusion_days` (per account and reason). Inserts ignore a decision id
already stored, so a retried record counts once.

Like `_store_rollups`, this module is a released schema version: change it
only through a new one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from eggpool.core.effects import RoutingDecided
from eggpool.shells._store_rollups import UNITS, upsert_statements

__all__ = ["INSERT_DECISION", "INSERT_EXCLUSION", "decision_rows", "migrate_routing"]

INSERT_DECISION = """
INSERT INTO routing_decisions (decision_id, request_id, at, model, account, candidates, affinity)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (decision_id) DO NOTHING
"""
INSERT_EXCLUSION = """
INSERT INTO routing_exclusions (decision_id, at, account, reason) VALUES (?, ?, ?, ?)
ON CONFLICT (decision_id, account) DO NOTHING
"""

_TABLES = (
    """
    CREATE TABLE routing_decisions (
        decision_id TEXT PRIMARY KEY,
        request_id TEXT NOT NULL,
        at REAL NOT NULL,
        model TEXT NOT NULL,
        account TEXT NOT NULL,
        candidates INTEGER NOT NULL,
        affinity INTEGER NOT NULL
    )
    """,
    "CREATE INDEX routing_decisions_request ON routing_decisions (request_id)",
    "CREATE INDEX routing_decisions_at ON routing_decisions (at)",
    """
    CREATE TABLE routing_exclusions (
        decision_id TEXT NOT NULL,
        at REAL NOT NULL,
        account TEXT NOT NULL,
        reason TEXT NOT NULL,
        PRIMARY KEY (decision_id, account)
    )
    """,
    "CREATE INDEX routing_exclusions_at ON routing_exclusions (at)",
)

_ROLLUPS = """
CREATE TABLE routing_{unit}s (
    {unit} INTEGER NOT NULL,
    model TEXT NOT NULL,
    account TEXT NOT NULL,
    decisions INTEGER NOT NULL DEFAULT 0,
    affinity INTEGER NOT NULL DEFAULT 0,
    candidates INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY ({unit}, model, account)
) WITHOUT ROWID
""", """
CREATE TABLE exclusion_{unit}s (
    {unit} INTEGER NOT NULL,
    account TEXT NOT NULL,
    reason TEXT NOT NULL,
    exclusions INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY ({unit}, account, reason)
) WITHOUT ROWID
"""  # fmt: skip


def _triggers() -> list[str]:
    decided: list[str] = []
    excluded: list[str] = []
    for unit, seconds in UNITS.items():
        when = f"CAST(NEW.at / {seconds} AS INTEGER)"
        decided += upsert_statements(
            f"routing_{unit}s",
            {unit: when, "model": "NEW.model", "account": "NEW.account"},
            "decisions = decisions + 1, affinity = affinity + (NEW.affinity != 0), "
            "candidates = candidates + NEW.candidates",
        )
        excluded += upsert_statements(
            f"exclusion_{unit}s",
            {unit: when, "account": "NEW.account", "reason": "NEW.reason"},
            "exclusions = exclusions + 1",
        )
    on_decision, on_exclusion = ";\n".join(decided), ";\n".join(excluded)
    return [
        f"""CREATE TRIGGER routing_decisions_count AFTER INSERT ON routing_decisions
            BEGIN {on_decision}; END""",
        f"""CREATE TRIGGER routing_exclusions_count AFTER INSERT ON routing_exclusions
            BEGIN {on_exclusion}; END""",
    ]


def migrate_routing(conn: sqlite3.Connection) -> None:
    """Schema version 6: routing decisions, their exclusions, their rollups."""
    statements = list(_TABLES)
    for unit in UNITS:
        statements += [table.format(unit=unit) for table in _ROLLUPS]
    statements += _triggers()
    for statement in statements:
        conn.execute(statement)


def decision_rows(
    record: RoutingDecided, text: Any, time: Any
) -> tuple[tuple[Any, ...], Sequence[tuple[Any, ...]]]:
    """The decision's row and its exclusions' rows (`text` and `time` clamp values as the
    store's other rows are clamped)."""
    at = time(record.at)
    decision = (
        text(record.decision_id),
        text(record.request_id),
        at,
        text(record.model),
        text(record.account or ""),
        max(0, min(record.candidates, 2**31)),
        int(bool(record.affinity)),
    )
    exclusions = [
        (text(record.decision_id), at, text(account), text(reason))
        for account, reason in record.excluded
    ]
    return decision, exclusions
