"""Stats of routing: where decisions sent requests, and which accounts were left out why.

Theory of operation. Routing decisions and their dynamic exclusions are
counted into `routing_*` and `exclusion_*` rollups (by hour and by day,
eggpool/shells/_store_routing.py); a period reads them like the other
stats (`shape.spans`): day rows for whole days, hour rows around them, the
decision rows themselves for the partial hours at the ends. A decision
with no account ('') is a request no account could take.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from eggpool.dashboard.params import StatsQuery
from eggpool.shells import _stats_shape as shape

__all__ = ["routing_stats"]


_DECISIONS = ("SUM(decisions), SUM(affinity), SUM(candidates)",
              "COUNT(*), SUM(affinity != 0), SUM(candidates)")  # fmt: skip
_EXCLUSIONS = ("SUM(exclusions)", "COUNT(*)")


def routing_stats(conn: sqlite3.Connection, q: StatsQuery) -> dict[str, object]:
    """Decisions, selections per account and model, exclusions by reason, over the period."""
    filters = {"model": q.model, "account": q.account}
    decided = _spanned(
        conn, q, rolled="routing_{unit}s", raw="routing_decisions", keys=["model", "account"],
        sums=_DECISIONS, filters=filters,
    )  # fmt: skip
    total = sum(v[0] for v in decided.values())
    unplaced = sum(v[0] for (_, account), v in decided.items() if not account)
    affinity = sum(v[1] for v in decided.values())
    candidates = sum(v[2] for v in decided.values())
    per_account: dict[str, float] = {}
    per_model: dict[str, list[float]] = {}
    for (model, account), values in decided.items():
        if account:
            per_account[account] = per_account.get(account, 0) + values[0]
        row = per_model.setdefault(model, [0, 0])
        row[0] += values[0]
        row[1] += values[0] if not account else 0
    exclusions = _spanned(
        conn, q, rolled="exclusion_{unit}s", raw="routing_exclusions", keys=["account", "reason"],
        sums=_EXCLUSIONS, filters={"account": q.account},
    )  # fmt: skip
    by_reason: dict[str, float] = {}
    for (_, reason), values in exclusions.items():
        by_reason[reason] = by_reason.get(reason, 0) + values[0]
    limit = q.limit
    return {
        **shape.period(q),
        "decisions": int(total),
        "no_account": int(unplaced),
        "affinity_kept": int(affinity),
        "avg_candidates": round(candidates / total, 2) if total else None,
        "selections": [
            {"account": account, "decisions": int(n), "share": round(n / total, 4)}
            for account, n in sorted(per_account.items(), key=lambda i: (-i[1], i[0]))[:limit]
        ],
        "models": [
            {"model": model, "decisions": int(v[0]), "no_account": int(v[1])}
            for model, v in sorted(per_model.items(), key=lambda i: (-i[1][0], i[0]))[:limit]
        ],
        "exclusions_by_reason": [
            {"reason": reason, "exclusions": int(n)}
            for reason, n in sorted(by_reason.items(), key=lambda i: (-i[1], i[0]))
        ],
        "exclusions": [
            {"account": account, "reason": reason, "exclusions": int(v[0])}
            for (account, reason), v in sorted(exclusions.items(), key=lambda i: (-i[1][0], i[0]))[
                :limit
            ]
        ],
    }


def _spanned(
    conn: sqlite3.Connection,
    q: StatsQuery,
    *,
    rolled: str,
    raw: str,
    keys: list[str],
    sums: tuple[str, str],
    filters: dict[str, str | None],
) -> dict[tuple[Any, ...], list[float]]:
    out: dict[tuple[Any, ...], list[float]] = {}
    for unit, low, high in shape.spans(q, days=True):
        if unit == "raw":
            table, where, columns = raw, ["at >= ?", "at < ?"], sums[1]
        else:
            table, columns = rolled.format(unit=unit), sums[0]
            where = [f"{unit} >= ?", f"{unit} < ?"]
        params: list[object] = [low, high]
        for column, value in filters.items():
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        group = ", ".join(str(i + 1) for i in range(len(keys)))
        sql = (
            f"SELECT {', '.join(keys)}, {columns} FROM {table} "
            f"WHERE {' AND '.join(where)} GROUP BY {group}"
        )
        for row in conn.execute(sql, params):
            if not row[len(keys)]:
                continue
            totals = out.setdefault(tuple(row[: len(keys)]), [0] * (len(row) - len(keys)))
            for index, value in enumerate(row[len(keys) :]):
                totals[index] += value or 0
    return out
