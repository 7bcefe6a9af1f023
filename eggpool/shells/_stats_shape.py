"""How the stats read from SQLite are shaped into JSON: totals, figures, requests.

Theory of operation. `Stats` (eggpool/shells/_stats.py) sums rows into
`Totals` dicts (`add`); these functions turn totals into the figures the
API shows (shares and rates rounded to 4 places, money in dollars to 6,
times in seconds) and a request row into its metadata. A request's shape
never has its content, its client address or upstream error details: the
API may be public.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from eggpool.dashboard.params import StatsQuery
from eggpool.shells._store_rollups import LATENCY_EDGES

__all__ = [
    "FIELDS",
    "MAXIMA",
    "REQUEST_COLUMNS",
    "Totals",
    "add",
    "counts",
    "empty",
    "figures",
    "period",
    "quantile",
    "request",
    "spans",
    "tokens",
    "usd",
    "with_model",
]

Totals = dict[str, Any]

FIELDS = (
    "requests", "errors", "attempts", "streamed", "input_tokens", "cache_read_tokens",
    "cache_write_tokens", "output_tokens", "reasoning_tokens", "cost_microdollars",
    "latency_sum", "latency_count", "ttft_sum", "ttft_count",
    "exact", "derived", "partial", "estimated", "unknown",
)  # fmt: skip
"""The summed columns of a totals row, in the order the queries select them."""
MAXIMA = ("latency_max", "ttft_max")
"""The maxima that follow them."""

REQUEST_COLUMNS = (
    "request_id, status, started_at, finalized_at, protocol, model, streamed, outcome, "
    "http_status, account, provider, attempts, input_tokens, cache_read_tokens, "
    "cache_write_tokens, output_tokens, reasoning_tokens, cost_microdollars, exactness, "
    "latency, ttft"
)


def request(row: Sequence[Any]) -> dict[str, object]:
    """One request's metadata: never its content, its client address or error details."""
    (request_id, status, started_at, finalized_at, protocol, model, streamed, outcome,
     http_status, account, provider, attempts, input_tokens, cache_read, cache_write,
     output_tokens, reasoning, cost, exactness, latency, ttft) = row  # fmt: skip
    return {
        "request_id": request_id,
        "status": status,
        "started_at": started_at,
        "finalized_at": finalized_at,
        "protocol": protocol,
        "model": model,
        "streamed": bool(streamed),
        "outcome": outcome,
        "http_status": http_status,
        "account": account,
        "provider": provider,
        "attempts": attempts,
        "tokens": {
            "input": input_tokens,
            "cache_read": cache_read,
            "cache_write": cache_write,
            "output": output_tokens,
            "reasoning": reasoning,
        },
        "cost_usd": usd(cost),
        "exactness": exactness,
        "latency_s": latency,
        "ttft_s": ttft,
    }


def empty() -> Totals:
    return {**dict.fromkeys(FIELDS, 0), **dict.fromkeys(MAXIMA)}


def add(out: dict[Any, Totals], key: Any, values: Sequence[Any]) -> None:
    totals = out.get(key)
    if totals is None:
        totals = out[key] = empty()
    for name, value in zip(FIELDS, values, strict=False):
        totals[name] += value or 0
    for name, value in zip(MAXIMA, values[len(FIELDS) :], strict=True):
        if value is not None and (totals[name] is None or value > totals[name]):
            totals[name] = value


def figures(r: Totals) -> dict[str, object]:
    requests = r["requests"]
    total = tokens(r)
    inputs = r["input_tokens"] + r["cache_read_tokens"] + r["cache_write_tokens"]
    return {
        "requests": requests,
        "errors": r["errors"],
        "error_rate": round(r["errors"] / requests, 4) if requests else 0.0,
        "attempts": r["attempts"],
        "streamed": r["streamed"],
        "tokens": {
            "input": r["input_tokens"],
            "cache_read": r["cache_read_tokens"],
            "cache_write": r["cache_write_tokens"],
            "output": r["output_tokens"],
            "reasoning": r["reasoning_tokens"],
            "total": total,
            "cache_read_share": round(r["cache_read_tokens"] / inputs, 4) if inputs else 0.0,
            "reasoning_share": (
                round(r["reasoning_tokens"] / r["output_tokens"], 4) if r["output_tokens"] else 0.0
            ),
        },
        "cost_usd": usd(r["cost_microdollars"]),
        "avg_latency_s": (
            round(r["latency_sum"] / r["latency_count"], 4) if r["latency_count"] else None
        ),
        "avg_ttft_s": round(r["ttft_sum"] / r["ttft_count"], 4) if r["ttft_count"] else None,
    }


def tokens(r: Totals) -> int:
    return int(
        r["input_tokens"] + r["cache_read_tokens"] + r["cache_write_tokens"] + r["output_tokens"]
    )


def usd(microdollars: int) -> float:
    return round(microdollars / 1e6, 6)


def period(q: StatsQuery) -> dict[str, object]:
    return {"period": {"name": q.period, "start": q.start, "end": q.end}}


def with_model(q: StatsQuery, *, model: str) -> StatsQuery:
    return StatsQuery(
        start=q.start, end=q.end, period=q.period, bucket=q.bucket, group_by=q.group_by,
        limit=q.limit, account=q.account, provider=q.provider, model=model,
    )  # fmt: skip


def quantile(counts: list[int], q: float, top: float | None) -> float | None:
    """The `q` quantile of a bucketed distribution, interpolated inside its bucket."""
    total = sum(counts)
    if not total:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            low = LATENCY_EDGES[index - 1] if index else 0.0
            high = LATENCY_EDGES[index] if index < len(LATENCY_EDGES) else (top or low)
            if top is not None:
                high = min(high, max(top, low))
            return round(low + (high - low) * (rank - seen) / count, 4)
        seen += count
    return None


def counts(rows: Mapping[tuple[Any, ...], Totals]) -> dict[str, int]:
    """Requests per single-column group (an empty key is `unknown`), sorted by key."""
    return {key[0] or "unknown": r["requests"] for key, r in sorted(rows.items())}


def spans(q: StatsQuery, *, days: bool) -> list[tuple[str, float, float]]:
    """How to read `[q.start, q.end)`: ("day", first, end) and ("hour", first, end) ranges of
    rollups (unit numbers, end excluded) and ("raw", start, end) seconds of request rows."""
    first_hour, end_hour = math.ceil(q.start / 3600), math.floor(q.end / 3600)
    if first_hour >= end_hour:
        return [("raw", q.start, q.end)]
    spans: list[tuple[str, float, float]] = []
    hours = [(first_hour, end_hour)]
    first_day, end_day = math.ceil(q.start / 86400), math.floor(q.end / 86400)
    if days and first_day < end_day:
        spans.append(("day", first_day, end_day))
        hours = [(first_hour, first_day * 24), (end_day * 24, end_hour)]
    spans += [("hour", low, high) for low, high in hours if low < high]
    edges = [(q.start, first_hour * 3600), (end_hour * 3600, q.end)]
    spans += [("raw", low, high) for low, high in edges if low < high]
    return spans
