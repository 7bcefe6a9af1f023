"""Stats from the store: what the stats API and the dashboard show, read from SQLite.

Theory of operation. `Stats` holds one read-only connection and answers
one question at a time (the caller runs it in a worker thread and keeps
calls one at a time: the connection is not shared between two at once).
Each method takes a validated `StatsQuery` (eggpool/dashboard/params.py)
and returns plain JSON-ready data.

shape.Totals come from the rollups (eggpool/shells/_store_rollups.py): day rows
for the whole UTC days of a period, hour rows for the whole hours around
them, and the `requests` rows themselves only for the partial hours at its
two ends (`_spans`). So a period of any length is exact and reads at most
two hours of rows plus a few rollup rows per day, account and model: fast
with a million stored requests. Hourly timeseries read hours, never days.
A period older than the per-request retention loses only its partial end
hours. Latency and TTFT percentiles are estimated from the histograms
(linear inside a bucket; the top bucket reaches to the largest value
seen), to within a bucket's width: `LATENCY_EDGES` are about 1.5x apart.

"Errors" are finalized requests whose outcome is not `completed`. Account,
provider and model filters apply everywhere; the latency histograms know
accounts but not providers, so a provider filter reads the provider's
configured accounts there.
"""

from __future__ import annotations

import bisect
import math
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from eggpool.core.config import Config
from eggpool.core.ledger import WINDOW_SECONDS, account_limits
from eggpool.dashboard.params import StatsQuery
from eggpool.shells import _stats_lists as _lists
from eggpool.shells import _stats_shape as shape
from eggpool.shells._stats_attempts import attempt_stats, phase_stats, retry_stats
from eggpool.shells._stats_routing import routing_stats
from eggpool.shells._store_rollups import EXACTNESS, LATENCY_EDGES, bucket_columns

__all__ = ["STALE_PENDING_S", "Stats"]

STALE_PENDING_S = _lists.STALE_PENDING_S

_HOUR = 3600
_KNOWN_EXACTNESS = "'exact', 'derived', 'partial', 'estimated'"
_ROLLED = """
SUM(requests), SUM(errors), SUM(attempts), SUM(streamed), SUM(input_tokens),
SUM(cache_read_tokens), SUM(cache_write_tokens), SUM(output_tokens), SUM(reasoning_tokens),
SUM(cost_microdollars), SUM(latency_sum), SUM(latency_count), SUM(ttft_sum), SUM(ttft_count),
SUM(exact), SUM(derived), SUM(partial), SUM(estimated), SUM(unknown),
MAX(latency_max), MAX(ttft_max)
"""
_RAW = f"""
COUNT(*), SUM(COALESCE(outcome, '') != 'completed'), SUM(attempts), SUM(streamed != 0),
SUM(input_tokens), SUM(cache_read_tokens), SUM(cache_write_tokens), SUM(output_tokens),
SUM(reasoning_tokens), SUM(cost_microdollars), SUM(COALESCE(latency, 0)), COUNT(latency),
SUM(COALESCE(ttft, 0)), COUNT(ttft), SUM(exactness = 'exact'), SUM(exactness = 'derived'),
SUM(exactness = 'partial'), SUM(exactness = 'estimated'),
SUM(COALESCE(exactness, '') NOT IN ({_KNOWN_EXACTNESS})), MAX(latency), MAX(ttft)
"""
# A group's key, in the rollups and in the rows (NULL is '' in the rollups).
_KEYS_ROLLED = {
    "account": "account", "provider": "provider", "model": "model",
    "outcome": "outcome", "http_status": "http_status",
}  # fmt: skip
_KEYS_RAW = {
    "account": "COALESCE(account, '')", "provider": "COALESCE(provider, '')",
    "model": "COALESCE(model, '')", "outcome": "COALESCE(outcome, '')",
    "http_status": "COALESCE(http_status, 0)",
}  # fmt: skip
_BUCKETS = ", ".join(f"SUM({column})" for column in bucket_columns())
_TOTALS = {"rolled": _ROLLED, "raw": _RAW}
_COUNTS = {"rolled": "SUM(requests)", "raw": "COUNT(*)"}
_UNIT = {"hour": _HOUR, "day": 86400}


class Stats:
    """Answers stats questions from the store's database (read-only)."""

    def __init__(self, conn: sqlite3.Connection, config: Config) -> None:
        """`conn`: a read-only connection of the store's (`Store.read_connection`); closed
        by `close`."""
        self.config = config
        self._conn = conn
        self._providers: dict[str, list[str]] = {}
        for account in config.accounts:
            self._providers.setdefault(account.provider_id, []).append(account.name)

    def close(self) -> None:
        self._conn.close()

    # -- endpoints -----------------------------------------------------------------------

    def summary(self, q: StatsQuery) -> dict[str, object]:
        row = self._grouped(q, ()).get((), shape.empty())
        outcomes: dict[str, int] = {}
        for (outcome, _), count in self._outcomes(q).items():
            outcomes[outcome or "unknown"] = outcomes.get(outcome or "unknown", 0) + count
        return {
            **shape.period(q),
            **shape.figures(row),
            "latency": self._percentiles(q, "latency", row),
            "ttft": self._percentiles(q, "ttft", row),
            "exactness": {name: row[name] for name in EXACTNESS},
            "outcomes": dict(sorted(outcomes.items())),
        }

    def accounts(self, q: StatsQuery, now: float) -> dict[str, object]:
        rows = self._grouped(q, ("account",))
        limits = account_limits(self.config)
        configured = {a.name: a for a in self.config.accounts}
        names = sorted(set(configured) | {key[0] for key in rows if key[0]})
        windows = [self._window_spend(seconds, now) for seconds in WINDOW_SECONDS]
        backoffs = self._backoffs_by_account(now)
        out = []
        for name in names:
            account = configured.get(name)
            capacity = limits[name].capacity if name in limits else (0, 0, 0)
            spent = [window.get(name, 0) for window in windows]
            out.append(
                {
                    "account": name,
                    "provider": account.provider_id if account else None,
                    "configured": account is not None,
                    "enabled": account.enabled if account else False,
                    **shape.figures(totals := rows.get((name,), shape.empty())),
                    "exactness": {kind: totals[kind] for kind in EXACTNESS},
                    "windows": {
                        label: {
                            "spent_usd": shape.usd(used),
                            "cap_usd": shape.usd(cap) if cap else None,
                            "use": round(used / cap, 4) if cap else None,
                        }
                        for label, used, cap in zip(
                            ("five_hour", "weekly", "monthly"), spent, capacity, strict=True
                        )
                    },
                    "cooldown_until": backoffs.get(name),
                }
            )
        return {**shape.period(q), "accounts": out}

    def models(self, q: StatsQuery) -> dict[str, object]:
        rows = self._grouped(q, ("model",))
        total = sum(r["requests"] for r in rows.values())
        models = [
            {
                "model": key[0],
                "share": round(r["requests"] / total, 4) if total else 0.0,
                **shape.figures(r),
            }
            for key, r in sorted(rows.items(), key=lambda item: (-item[1]["requests"], item[0]))
        ]
        return {**shape.period(q), "models": models}

    def timeseries(self, q: StatsQuery) -> dict[str, object]:
        """Requests, errors, tokens and cost per bucket; with `group_by`, the requests per
        bucket of the top `limit` groups and of all others as `Other` (totals kept)."""
        size = q.bucket.seconds
        first, last = int(q.start // size) * size, math.ceil(q.end / size) * size
        starts = list(range(first, last, size))
        key = q.group_by.value if q.group_by is not None else None
        rows = self._by_bucket(q, key)
        if key is None:
            series = {start: rows.get((start, ""), shape.empty()) for start in starts}
            return {
                **shape.period(q),
                "bucket": q.bucket.value,
                "points": [
                    {
                        "start": start,
                        "requests": r["requests"],
                        "errors": r["errors"],
                        "tokens": shape.tokens(r),
                        "cost_usd": shape.usd(r["cost_microdollars"]),
                    }
                    for start, r in series.items()
                ],
            }
        totals: dict[str, int] = {}
        for (_, group), r in rows.items():
            totals[group] = totals.get(group, 0) + r["requests"]
        ranked = sorted(totals, key=lambda g: (-totals[g], g))
        top = ranked[: q.limit or len(ranked)]
        names = [*top, *(["Other"] if len(ranked) > len(top) else [])]
        kept = set(top)
        values = {name: [0] * len(starts) for name in names}
        index = {start: i for i, start in enumerate(starts)}
        for (start, group), r in rows.items():
            slot = index.get(start)
            if slot is not None:
                values[group if group in kept else "Other"][slot] += r["requests"]
        return {
            **shape.period(q),
            "bucket": q.bucket.value,
            "group_by": key,
            "buckets": starts,
            "series": [{"name": name, "requests": values[name]} for name in names],
            "bucket_totals": [sum(values[n][i] for n in names) for i in range(len(starts))],
        }

    def errors(self, q: StatsQuery) -> dict[str, object]:
        failed = sorted(
            ((count, outcome, status) for (outcome, status), count in self._outcomes(q).items()
             if outcome != "completed"),
            key=lambda e: (-e[0], e[1], e[2]),
        )  # fmt: skip
        total = self._grouped(q, ()).get((), shape.empty())["requests"]
        errors = sum(count for count, _, _ in failed)
        return {
            **shape.period(q),
            "requests": total,
            "errors": errors,
            "error_rate": round(errors / total, 4) if total else 0.0,
            "by_outcome_and_status": [
                {"outcome": outcome, "status": status, "requests": count}
                for count, outcome, status in failed[: q.limit]
            ],
        }

    def latency(self, q: StatsQuery) -> dict[str, object]:
        total = self._grouped(q, ()).get((), shape.empty())
        models = self._grouped(q, ("model",))
        per_model = []
        for (model,), r in sorted(models.items(), key=lambda item: -item[1]["requests"]):
            narrowed = shape.with_model(q, model=model)
            per_model.append(
                {
                    "model": model,
                    "requests": r["requests"],
                    "latency": self._percentiles(narrowed, "latency", r),
                    "ttft": self._percentiles(narrowed, "ttft", r),
                }
            )
        return {
            **shape.period(q),
            "latency": self._percentiles(q, "latency", total),
            "ttft": self._percentiles(q, "ttft", total),
            "phases": phase_stats(self._conn, q),
            "models": per_model[: q.limit],
        }

    def backoffs(self, now: float) -> dict[str, object]:
        return _lists.backoffs(self._conn, now)

    def operational(self, q: StatsQuery) -> dict[str, object]:
        return _lists.operational(self._conn, q)

    def account_events(self, q: StatsQuery) -> dict[str, object]:
        return _lists.account_events(self._conn, q)

    def pending_health(self, now: float) -> dict[str, object]:
        return _lists.pending_health(self._conn, now)

    def routing(self, q: StatsQuery) -> dict[str, object]:
        return routing_stats(self._conn, q)

    def attempts(self, q: StatsQuery) -> dict[str, object]:
        return attempt_stats(self._conn, q)

    def retries(self, q: StatsQuery) -> dict[str, object]:
        return retry_stats(self._conn, q)

    def recent_requests(self, q: StatsQuery) -> dict[str, object]:
        return _lists.recent_requests(self._conn, q)

    def trace(self, request_id: str) -> dict[str, object] | None:
        return _lists.trace(self._conn, request_id)

    # -- aggregation ---------------------------------------------------------------------

    def _filters(
        self, q: StatsQuery, keys: Mapping[str, str], *, accounts_only: bool = False
    ) -> tuple[list[str], list[object]]:
        where: list[str] = []
        params: list[object] = []
        if q.account is not None:
            where.append(f"{keys['account']} = ?")
            params.append(q.account)
        if q.provider is not None:
            if accounts_only:  # the histograms have no provider column
                names = self._providers.get(q.provider, [])
                where.append(f"{keys['account']} IN ({', '.join('?' * len(names)) or 'NULL'})")
                params.extend(names)
            else:
                where.append(f"{keys['provider']} = ?")
                params.append(q.provider)
        if q.model is not None:
            where.append(f"{keys['model']} = ?")
            params.append(q.model)
        return where, params

    def _grouped(self, q: StatsQuery, by: Sequence[str]) -> dict[tuple[Any, ...], shape.Totals]:
        """Totals per group of `by` columns over the period."""
        out: dict[tuple[Any, ...], shape.Totals] = {}
        for rows in self._parts(q, list(by)):
            for row in rows:
                shape.add(out, tuple(row[: len(by)]), row[len(by) :])
        return out

    def _by_bucket(self, q: StatsQuery, group: str | None) -> dict[tuple[int, str], shape.Totals]:
        """Totals per (bucket start, group) over the period ('' when not grouped)."""
        by = [group] if group is not None else []
        out: dict[tuple[int, str], shape.Totals] = {}
        for rows in self._parts(q, by, bucket=q.bucket.seconds):
            for row in rows:
                key = (int(row[0]), str(row[1]) if group is not None else "")
                shape.add(out, key, row[len(by) + 1 :])
        return out

    def _outcomes(self, q: StatsQuery) -> dict[tuple[str, int], int]:
        """Requests per (outcome, HTTP status) over the period."""
        out: dict[tuple[str, int], int] = {}
        for rows in self._parts(q, ["outcome", "http_status"], table="outcome", sums=_COUNTS):
            for outcome, status, count in rows:
                out[(outcome, status)] = out.get((outcome, status), 0) + count
        return out

    def _parts(
        self,
        q: StatsQuery,
        by: list[str],
        *,
        bucket: int | None = None,
        table: str = "request",
        sums: Mapping[str, str] = _TOTALS,
    ) -> Iterable[list[Any]]:
        """The period's rows, grouped by the time `bucket` (seconds; first, when given) and
        `by`: day rollups for its whole days, hour rollups for its whole hours around them,
        request rows for the partial hours at its ends."""
        for unit, low, high in shape.spans(q, days=bucket is None or bucket % 86400 == 0):
            if unit == "raw":
                keys = [_KEYS_RAW[k] for k in by]
                if bucket is not None:
                    keys.insert(0, f"CAST(finalized_at / {bucket} AS INTEGER) * {bucket}")
                where, params = self._filters(q, _KEYS_RAW)
                where[:0] = ["status = 'finalized'", "finalized_at >= ?", "finalized_at < ?"]
                yield self._select("requests", keys, sums["raw"], where, [low, high, *params])
                continue
            keys = list(by)
            if bucket is not None:
                per = bucket // _UNIT[unit]
                keys.insert(0, f"({unit} / {per}) * {bucket}")
            where, params = self._filters(q, _KEYS_ROLLED)
            where[:0] = [f"{unit} >= ?", f"{unit} < ?"]
            yield self._select(
                f"{table}_{unit}s", keys, sums["rolled"], where, [low, high, *params]
            )

    def _select(
        self, table: str, keys: list[str], sums: str, where: list[str], params: list[object]
    ) -> list[Any]:
        columns = ", ".join([*keys, sums])
        group = f" GROUP BY {', '.join(str(i + 1) for i in range(len(keys)))}" if keys else ""
        sql = f"SELECT {columns} FROM {table} WHERE {' AND '.join(where)}{group}"
        return [row for row in self._conn.execute(sql, params) if row[len(keys)]]

    def _percentiles(
        self, q: StatsQuery, kind: str, totals: shape.Totals
    ) -> dict[str, float | None]:
        """Average and estimated p50 / p90 / p99 (seconds) of `kind` over the period."""
        counts = [0] * (len(LATENCY_EDGES) + 1)
        keys = {"account": "account", "provider": "", "model": "model"}
        for unit, low, high in shape.spans(q, days=True):
            if unit == "raw":
                where, params = self._filters(q, _KEYS_RAW)
                where[:0] = [
                    "status = 'finalized'", "finalized_at >= ?", "finalized_at < ?",
                    f"{kind} IS NOT NULL",
                ]  # fmt: skip
                for (value,) in self._conn.execute(
                    f"SELECT {kind} FROM requests WHERE {' AND '.join(where)}",
                    [low, high, *params],
                ):
                    counts[bisect.bisect_right(LATENCY_EDGES, value)] += 1
                continue
            where, params = self._filters(q, keys, accounts_only=True)
            where[:0] = ["kind = ?", f"{unit} >= ?", f"{unit} < ?"]
            row = self._conn.execute(
                f"SELECT {_BUCKETS} FROM latency_{unit}s WHERE {' AND '.join(where)}",
                [kind, low, high, *params],
            ).fetchone()
            for index, count in enumerate(row):
                counts[index] += int(count or 0)
        n = totals[f"{kind}_count"]
        top = totals.get(f"{kind}_max")
        return {
            "avg_s": round(totals[f"{kind}_sum"] / n, 4) if n else None,
            "p50_s": shape.quantile(counts, 0.50, top),
            "p90_s": shape.quantile(counts, 0.90, top),
            "p99_s": shape.quantile(counts, 0.99, top),
            "max_s": round(top, 4) if top is not None else None,
        }

    def _window_spend(self, seconds: int, now: float) -> dict[str, int]:
        q = StatsQuery(start=now - seconds, end=now, period=f"{seconds}s")
        return {
            key[0]: r["cost_microdollars"] for key, r in self._grouped(q, ("account",)).items()
        }

    def _backoffs_by_account(self, now: float) -> dict[str, float | None]:
        """The latest cooldown end of each account (any scope naming it; None: no end)."""
        out: dict[str, float | None] = {}
        rows = self._conn.execute(
            "SELECT account, max(until) FROM backoffs WHERE until > ? AND account != '' "
            "GROUP BY account",
            (now,),
        )
        for account, until in rows:
            out[account] = None if math.isinf(until) else until
        return out
