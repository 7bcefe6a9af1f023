"""Stats read from the store: exact totals from rollups plus edge rows, on an empty and on a
generated database, checked against plain SQL over the request rows."""

from __future__ import annotations

import bisect
import math
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eggpool.core.config import Config, parse_config
from eggpool.dashboard.params import StatsQuery, parse_query
from eggpool.shells._stats import Stats
from eggpool.shells._store_rollups import LATENCY_EDGES
from eggpool.shells._store_schema import migrate
from tests.helpers.stats_db import ACCOUNTS, fill

END = 1_767_225_600.0 + 41 * 86400 + 1234.5  # mid-hour: periods have partial end hours
COUNT = 6000


def config() -> Config:
    providers: dict[str, Any] = {}
    for account, provider in ACCOUNTS.items():
        entry = providers.setdefault(
            provider, {"base_url": f"https://{provider}.test/v1", "accounts": []}
        )
        entry["accounts"].append({"name": account, "api_key": f"sk-{account}-0123456789"})
    limits = {"five_hour_microdollars": 5_000_000}
    return parse_config({"providers": providers, "limits": limits}, {})


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stats") / "usage.sqlite3"
    fill(path, COUNT, end=END, days=10)
    return path


@pytest.fixture
def stats(generated: Path) -> Iterator[Stats]:
    reader = Stats(sqlite3.connect(f"file:{generated}?mode=ro", uri=True), config())
    yield reader
    reader.close()


@pytest.fixture
def empty(tmp_path: Path) -> Iterator[Stats]:
    path = tmp_path / "empty.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn)
    conn.close()
    reader = Stats(sqlite3.connect(f"file:{path}?mode=ro", uri=True), config())
    yield reader
    reader.close()


def query(text: str = "", **kwargs: Any) -> StatsQuery:
    allowed = {"period", "account", "provider", "model", "bucket", "group_by", "limit", "status"}
    parsed = parse_query(text, allowed, now=END, **kwargs)
    assert isinstance(parsed, StatsQuery), parsed
    return parsed


def brute(db: Path, q: StatsQuery) -> dict[str, Any]:
    """The same totals the slow way: every finalized row in the period."""
    where, params = (
        ["status = 'finalized'", "finalized_at >= ?", "finalized_at < ?"],
        [
            q.start,
            q.end,
        ],
    )
    for column, value in (("account", q.account), ("provider", q.provider), ("model", q.model)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "SELECT count(*), sum(outcome != 'completed'), sum(input_tokens), "
            "sum(output_tokens), sum(cost_microdollars), count(latency), count(ttft) "
            f"FROM requests WHERE {' AND '.join(where)}",
            params,
        ).fetchone()
        latencies = [v for (v,) in conn.execute(
            f"SELECT latency FROM requests WHERE {' AND '.join(where)} AND latency IS NOT NULL",
            params,
        )]  # fmt: skip
    keys = ("requests", "errors", "input", "output", "cost", "latency_n", "ttft_n")
    out = {k: v or 0 for k, v in zip(keys, row, strict=True)}
    out["latencies"] = sorted(latencies)
    return out


def test_an_empty_database_answers_every_question_with_zeros(empty: Stats) -> None:
    q = query("period=7d&limit=5")
    summary = empty.summary(q)
    assert summary["requests"] == 0
    assert summary["latency"] == {
        "avg_s": None, "p50_s": None, "p90_s": None, "p99_s": None, "max_s": None,
    }  # fmt: skip
    accounts = empty.accounts(q, END)["accounts"]
    assert [a["account"] for a in accounts] == sorted(ACCOUNTS)
    assert all(a["requests"] == 0 for a in accounts)
    assert empty.models(q)["models"] == []
    points = empty.timeseries(query("period=24h"))["points"]
    assert len(points) in (24, 25)
    assert all(p["requests"] == 0 for p in points)
    assert empty.timeseries(query("period=24h&group_by=model"))["series"] == []
    assert empty.errors(q)["errors"] == 0
    assert empty.latency(q)["models"] == []
    assert empty.backoffs(END)["backoffs"] == []
    assert empty.account_events(q) == {**empty.account_events(q), "counts": [], "events": []}
    assert empty.attempts(q)["attempts"] == 0
    assert empty.retries(q)["categories"] == []
    assert empty.routing(q)["decisions"] == 0
    assert empty.pending_health(END)["pending"] == 0
    assert empty.recent_requests(q)["requests"] == []
    assert empty.trace("nope") is None


@pytest.mark.parametrize(
    "text",
    [
        "period=1h",
        "period=24h",
        "period=7d",
        "period=30d",
        "period=3d&account=a1",
        "period=3d&provider=one",
        "period=3d&model=gpt-4o",
        f"period={END - 5 * 86400 + 17.25}..{END - 86400 - 600}",
        "period=2026-02-05T10:30..2026-02-06T02:15",
    ],
)
def test_totals_equal_the_rows_they_come_from(stats: Stats, generated: Path, text: str) -> None:
    q = query(text)
    summary = stats.summary(q)
    expected = brute(generated, q)
    assert summary["requests"] == expected["requests"]
    assert summary["errors"] == expected["errors"]
    assert summary["tokens"]["input"] == expected["input"]
    assert summary["tokens"]["output"] == expected["output"]
    assert summary["cost_usd"] == round(expected["cost"] / 1e6, 6)
    series = stats.timeseries(query(text))
    assert sum(p["requests"] for p in series["points"]) == expected["requests"]


def test_a_percentile_falls_in_the_bucket_of_the_exact_one(stats: Stats, generated: Path) -> None:
    q = query("period=7d")
    latency = stats.summary(q)["latency"]
    values = brute(generated, q)["latencies"]
    for name, fraction in (("p50_s", 0.5), ("p90_s", 0.9), ("p99_s", 0.99)):
        exact = values[min(len(values) - 1, math.ceil(fraction * len(values)) - 1)]
        bucket = bisect.bisect_right(LATENCY_EDGES, exact)
        low = LATENCY_EDGES[bucket - 1] if bucket else 0.0
        high = LATENCY_EDGES[bucket] if bucket < len(LATENCY_EDGES) else max(values)
        assert low <= latency[name] <= high, (name, exact, latency[name])
    assert latency["max_s"] == pytest.approx(max(values), abs=1e-4)


@settings(max_examples=25, deadline=None)
@given(
    start=st.floats(0, 9 * 86400),
    length=st.floats(60, 3 * 86400),
    limit=st.integers(1, 6),
    group=st.sampled_from(["account", "model", "provider"]),
)
def test_grouped_timeseries_keep_every_request(
    generated: Path, start: float, length: float, limit: int, group: str
) -> None:
    # Whatever the period and the top-N, the groups (with Other) add up to the flat series.
    reader = Stats(sqlite3.connect(f"file:{generated}?mode=ro", uri=True), config())
    try:
        first = END - 10 * 86400 + start
        period = f"period={first}..{min(first + length, END)}"
        flat = reader.timeseries(query(period))
        grouped = reader.timeseries(query(f"{period}&group_by={group}&limit={limit}"))
    finally:
        reader.close()
    assert grouped["bucket_totals"] == [p["requests"] for p in flat["points"]]
    names = [s["name"] for s in grouped["series"]]
    assert len([n for n in names if n != "Other"]) <= limit
    for index, total in enumerate(grouped["bucket_totals"]):
        assert sum(s["requests"][index] for s in grouped["series"]) == total


def test_accounts_show_spend_against_their_windows(stats: Stats, generated: Path) -> None:
    rows = {a["account"]: a for a in stats.accounts(query("period=24h"), END)["accounts"]}
    spent = brute(generated, StatsQuery(start=END - 5 * 3600, end=END, period="5h", account="a1"))
    window = rows["a1"]["windows"]["five_hour"]
    assert window["spent_usd"] == round(spent["cost"] / 1e6, 6)
    assert window["cap_usd"] == 5.0
    assert window["use"] == round(spent["cost"] / 5e6, 4)
    assert rows["a1"]["provider"] == "one"
    with sqlite3.connect(generated) as conn:
        counted = dict(
            conn.execute(
                "SELECT exactness, count(*) FROM requests WHERE status = 'finalized' "
                "AND account = 'a1' AND finalized_at >= ? AND finalized_at < ? GROUP BY 1",
                (END - 86400, END),
            ).fetchall()
        )
    assert {k: v for k, v in rows["a1"]["exactness"].items() if v} == counted


def test_errors_models_and_latency_cover_the_period(stats: Stats, generated: Path) -> None:
    q = query("period=7d&limit=3")
    expected = brute(generated, q)
    errors = stats.errors(q)
    assert errors["errors"] == expected["errors"]
    assert len(errors["by_outcome_and_status"]) <= 3
    assert {e["outcome"] for e in errors["by_outcome_and_status"]} <= {
        "upstream_error", "throttled", "client_error",
    }  # fmt: skip
    models = stats.models(q)["models"]
    assert sum(m["requests"] for m in models) == expected["requests"]
    assert sum(m["share"] for m in models) == pytest.approx(1.0, abs=1e-3)
    assert len(stats.latency(q)["models"]) == 3


def test_recent_requests_and_a_trace_never_show_the_client(stats: Stats) -> None:
    recent = stats.recent_requests(query("period=30d&limit=10&account=a2"))["requests"]
    assert len(recent) == 10
    assert all(r["account"] == "a2" for r in recent)
    assert [r["started_at"] for r in recent] == sorted(
        (r["started_at"] for r in recent), reverse=True
    )
    trace = stats.trace(recent[0]["request_id"])
    assert trace is not None
    assert trace["attempts"][-1]["account"] == "a2"
    assert "client" not in trace["request"]


@pytest.mark.parametrize("text", ["period=1h", "period=7d", "period=30d&account=c1"])
def test_attempts_and_retries_equal_the_attempt_rows(
    stats: Stats, generated: Path, text: str
) -> None:
    q = query(text)
    where, params = "ended_at >= ? AND ended_at < ?", [q.start, q.end]
    if q.account is not None:
        where += " AND account = ?"
        params.append(q.account)
    with sqlite3.connect(generated) as conn:
        total, failovers, failed = conn.execute(
            f"SELECT count(*), sum(failover), sum(category IS NOT NULL) FROM attempts "
            f"WHERE {where}",
            params,
        ).fetchone()
        categories = dict(
            conn.execute(
                f"SELECT category, count(*) FROM attempts WHERE {where} "
                "AND category IS NOT NULL GROUP BY category",
                params,
            ).fetchall()
        )
    attempts = stats.attempts(q)
    assert attempts["attempts"] == total
    assert attempts["failovers"] == (failovers or 0)
    assert attempts["failed"] == (failed or 0)
    assert sum(a["attempts"] for a in attempts["accounts"]) == total
    retries = stats.retries(q)
    assert {c["category"]: c["attempts"] for c in retries["categories"]} == categories


def test_phases_average_the_attempts_timings(stats: Stats, generated: Path) -> None:
    q = query("period=7d")
    with sqlite3.connect(generated) as conn:
        connect, head, after, measured = conn.execute(
            "SELECT avg(connect), avg(head), avg(latency - head), count(head) FROM attempts "
            "WHERE ended_at >= ? AND ended_at < ? AND head IS NOT NULL",
            (q.start, q.end),
        ).fetchone()
    phases = stats.latency(q)["phases"]
    assert phases["attempts_measured"] == measured
    assert phases["connect_s"] == pytest.approx(connect, abs=1e-4)
    assert phases["upstream_wait_s"] == pytest.approx(head - connect, abs=1e-4)
    assert phases["after_head_s"] == pytest.approx(after, abs=1e-4)
