"""A database of generated requests for stats tests and `make bench` (pages with 1M rows).

`fill(path, count, ...)` writes `count` finalized requests (and an attempt
each, a failed one first for some) spread over `days` days before `end`,
through the store's own schema and row preparation (`prepare_batch`), so
the rollup triggers count them as they would count real ones. The draws
come from one seeded generator: the same arguments give the same database.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

from eggpool.core.effects import (
    AttemptEnded,
    BackoffChanged,
    Record,
    RequestFinalized,
    RequestStarted,
    RoutingDecided,
)
from eggpool.core.usage import Usage
from eggpool.shells._store_schema import migrate, prepare_batch

ACCOUNTS = {"a1": "one", "a2": "one", "b1": "two", "c1": "three"}
MODELS = ("gpt-4o-mini", "gpt-4o", "claude-sonnet", "deepseek-chat", "llama-70b")
OUTCOMES = (
    ("completed", 200, 0.93),
    ("upstream_error", 502, 0.03),
    ("throttled", 429, 0.02),
    ("client_error", 400, 0.02),
)


def fill(path: Path | str, count: int, *, end: float, days: float = 30.0, seed: int = 1) -> None:
    """Write `count` requests finalized in the `days` before `end` into the database at
    `path` (created and migrated if needed)."""
    rng = random.Random(seed)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = OFF")
        migrate(conn)
        batch: list[Record] = []
        for n in range(count):
            batch += _request(rng, n, end - rng.random() * days * 86400)
            if len(batch) >= 6000:
                _write(conn, batch)
                batch = []
        _write(conn, batch)
    finally:
        conn.close()


def _write(conn: sqlite3.Connection, records: list[Record]) -> None:
    if not records:
        return
    prepared = prepare_batch(records, None, None)
    conn.execute("BEGIN IMMEDIATE")
    prepared.apply(conn)
    conn.execute("COMMIT")


def _request(rng: random.Random, n: int, at: float) -> list[Record]:
    request_id = f"gen-{n:08d}"
    account = rng.choice(tuple(ACCOUNTS))
    model = rng.choice(MODELS)
    draw, outcome, status = rng.random(), "completed", 200
    for name, code, share in OUTCOMES:
        if draw < share:
            outcome, status = name, code
            break
        draw -= share
    streamed = rng.random() < 0.6
    latency = rng.lognormvariate(0.5, 0.9)
    ttft = min(latency, rng.lognormvariate(-0.7, 0.6)) if streamed else None
    usage = Usage(
        input_tokens=rng.randrange(50, 20_000),
        cache_read_tokens=rng.randrange(0, 5_000),
        output_tokens=rng.randrange(1, 2_000),
        reasoning_tokens=rng.randrange(0, 200),
    )
    records: list[Record] = [
        RequestStarted(
            request_id=request_id, at=at - latency, protocol="openai", model=model,
            streamed=streamed, client="127.0.0.1",
        ),
    ]  # fmt: skip
    attempts = 1
    if rng.random() < 0.05:  # a failover first: c1 throttled, then cooling down
        records += [
            RoutingDecided(
                decision_id=f"{request_id}@1", request_id=request_id, at=at - latency,
                model=model, account="c1", candidates=len(ACCOUNTS), affinity=False,
                excluded=(),
            ),
            BackoffChanged(
                provider=ACCOUNTS["c1"], account="c1", model=None, reason="rate_limited",
                until=at + 30, at=at - latency / 2,
            ),
        ]  # fmt: skip
        attempts = 2
        records.append(
            AttemptEnded(
                request_id=request_id, attempt_id=f"{request_id}#1", account="c1",
                provider=ACCOUNTS["c1"], at=at - latency / 2, status=429,
                category="rate_limited", failover=True, latency=latency / 3,
            )
        )  # fmt: skip
    records.append(
        RoutingDecided(
            decision_id=f"{request_id}@{attempts}", request_id=request_id, at=at - latency,
            model=model, account=account, candidates=len(ACCOUNTS) - attempts + 1,
            affinity=rng.random() < 0.3,
            excluded=(("c1", "already_tried"),) if attempts == 2 else (),
        )
    )  # fmt: skip
    records += [
        AttemptEnded(
            request_id=request_id, attempt_id=f"{request_id}#{attempts}", account=account,
            provider=ACCOUNTS[account], at=at, status=status, category=None, failover=False,
            latency=latency, connect=rng.choice((0.0, 0.0, 0.0, rng.random() * 0.2)),
            head=min(latency, (ttft or latency) * 0.9),
        ),
        RequestFinalized(
            request_id=request_id, at=at, outcome=outcome, status=status, model=model,
            account=account, provider=ACCOUNTS[account], attempts=attempts,
            usage=usage if outcome == "completed" else None,
            cost_microdollars=rng.randrange(10, 50_000) if outcome == "completed" else 0,
            exactness=rng.choice(("exact", "derived", "estimated")),
            latency=latency, ttft=ttft, streamed=streamed,
        ),
    ]  # fmt: skip
    return records
