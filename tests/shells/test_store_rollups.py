"""Hourly rollups: every finalized request counted exactly once, however it was written."""

from __future__ import annotations

import bisect
import sqlite3
from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from eggpool.core.effects import (
    AttemptEnded,
    Record,
    RequestFinalized,
    RequestStarted,
    RoutingDecided,
)
from eggpool.core.usage import Usage
from eggpool.shells._store_rollups import LATENCY_EDGES, UNITS, bucket_columns
from eggpool.shells._store_schema import migrate, prepare_batch

HOUR = 3600.0
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def database(target: int | None = None) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    migrate(conn, target=target)
    return conn


def write(conn: sqlite3.Connection, records: list[Record]) -> None:
    batch = prepare_batch(records, None, None)
    conn.execute("BEGIN IMMEDIATE")
    batch.apply(conn)
    conn.execute("COMMIT")


def started(rid: str, at: float) -> RequestStarted:
    return RequestStarted(
        request_id=rid, at=at, protocol="openai", model="m", streamed=True, client="c"
    )


def finalized(rid: str, at: float, **fields: Any) -> RequestFinalized:
    values: dict[str, Any] = {
        "outcome": "completed", "status": 200, "model": "m", "account": "a", "provider": "p",
        "attempts": 1, "usage": None, "cost_microdollars": 0, "exactness": "exact",
        "latency": 1.0, "ttft": 0.4, "streamed": True,
    }  # fmt: skip
    values.update(fields)
    return RequestFinalized(request_id=rid, at=at, **values)


# What the rollups must hold: recomputed from the requests table itself.
def _key(unit: str) -> str:
    return (
        f"CAST(finalized_at / {UNITS[unit]} AS INTEGER), COALESCE(account, ''), "
        "COALESCE(provider, ''), COALESCE(model, '')"
    )


def _expected(unit: str) -> str:
    return f"""
SELECT {_key(unit)}, COUNT(*), SUM(COALESCE(outcome, '') != 'completed'), SUM(streamed),
       SUM(attempts), SUM(input_tokens), SUM(cache_read_tokens), SUM(cache_write_tokens),
       SUM(output_tokens), SUM(reasoning_tokens), SUM(cost_microdollars), COUNT(latency),
       COUNT(ttft), SUM(exactness = 'exact'), SUM(exactness = 'derived'),
       SUM(exactness = 'partial'), SUM(exactness = 'estimated'),
       SUM(COALESCE(exactness, '') NOT IN ('exact', 'derived', 'partial', 'estimated'))
FROM requests WHERE status = 'finalized' GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
"""


def _rolled(unit: str) -> str:
    return f"""
SELECT {unit}, account, provider, model, requests, errors, streamed, attempts, input_tokens,
       cache_read_tokens, cache_write_tokens, output_tokens, reasoning_tokens,
       cost_microdollars, latency_count, ttft_count, exact, derived, partial, estimated,
       unknown
FROM request_{unit}s ORDER BY 1, 2, 3, 4
"""


def _outcomes_expected(unit: str) -> str:
    return f"""
SELECT {_key(unit)}, COALESCE(outcome, ''), COALESCE(http_status, 0), COUNT(*)
FROM requests WHERE status = 'finalized' GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 6
"""


def histogram(
    conn: sqlite3.Connection, kind: str, unit: str = "hour"
) -> Counter[tuple[int, str, str, int]]:
    columns = ", ".join(bucket_columns())
    rows = conn.execute(
        f"SELECT {unit}, account, model, {columns} FROM latency_{unit}s WHERE kind = ?", (kind,)
    )
    counts: Counter[tuple[int, str, str, int]] = Counter()
    for at, account, model, *buckets in rows:
        for bucket, n in enumerate(buckets):
            if n:
                counts[(at, account, model, bucket)] += n
    return counts


def expected_histogram(
    conn: sqlite3.Connection, kind: str, unit: str = "hour"
) -> Counter[tuple[int, str, str, int]]:
    counts: Counter[tuple[int, str, str, int]] = Counter()
    rows = conn.execute(
        f"SELECT finalized_at, COALESCE(account, ''), COALESCE(model, ''), {kind} "
        "FROM requests WHERE status = 'finalized'"
    )
    for at, account, model, value in rows:
        if value is not None:
            bucket = bisect.bisect_right(LATENCY_EDGES, value)
            counts[(int(at // UNITS[unit]), account, model, bucket)] += 1
    return counts


def _attempts_expected(unit: str) -> str:
    return f"""
SELECT CAST(ended_at / {UNITS[unit]} AS INTEGER), account, provider, COALESCE(category, ''),
       COALESCE(http_status, 0), COUNT(*), SUM(failover != 0), COUNT(latency), COUNT(connect),
       COUNT(head)
FROM attempts GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
"""


def assert_consistent(conn: sqlite3.Connection) -> None:
    for unit in UNITS:
        attempts = (
            f"SELECT {unit}, account, provider, category, http_status, attempts, failovers, "
            f"latency_count, connect_count, head_count FROM attempt_{unit}s "
            "ORDER BY 1, 2, 3, 4, 5"
        )
        assert (
            conn.execute(attempts).fetchall() == conn.execute(_attempts_expected(unit)).fetchall()
        )
        assert conn.execute(_rolled(unit)).fetchall() == conn.execute(_expected(unit)).fetchall()
        outcomes = f"SELECT * FROM outcome_{unit}s ORDER BY 1, 2, 3, 4, 5, 6"
        assert (
            conn.execute(outcomes).fetchall() == conn.execute(_outcomes_expected(unit)).fetchall()
        )
        for kind in ("latency", "ttft"):
            assert histogram(conn, kind, unit) == expected_histogram(conn, kind, unit)


def test_a_request_counts_once_in_the_hour_it_finished() -> None:
    conn = database()
    usage = Usage(input_tokens=100, cache_read_tokens=20, output_tokens=30, reasoning_tokens=5)
    write(conn, [started("r", T0 + 10)])
    write(conn, [finalized("r", T0 + HOUR + 5, usage=usage, cost_microdollars=700)])
    write(conn, [finalized("r", T0 + HOUR + 9, cost_microdollars=999)])  # a retried record
    row = conn.execute(
        "SELECT hour, requests, input_tokens, cache_read_tokens, output_tokens, "
        "reasoning_tokens, cost_microdollars, latency_sum, latency_max FROM request_hours"
    ).fetchall()
    assert row == [(int(T0 // HOUR) + 1, 1, 100, 20, 30, 5, 700, 1.0, 1.0)]
    assert_consistent(conn)


def test_a_finalization_without_a_stored_start_counts_too() -> None:
    conn = database()
    write(conn, [finalized("lost", T0, latency=None, ttft=None, outcome="interrupted")])
    assert conn.execute("SELECT requests, latency_count FROM request_hours").fetchall() == [(1, 0)]
    assert conn.execute("SELECT count(*) FROM latency_hours").fetchall() == [(0,)]
    assert conn.execute("SELECT outcome, requests FROM outcome_hours").fetchall() == [
        ("interrupted", 1)
    ]


def test_deleting_old_requests_keeps_their_counts() -> None:
    conn = database()
    write(conn, [started("r", T0), finalized("r", T0 + 1)])
    conn.execute("DELETE FROM requests")
    assert conn.execute("SELECT sum(requests) FROM request_hours").fetchall() == [(1,)]


_ids = st.sampled_from([f"r{n}" for n in range(12)])
_records = st.one_of(
    st.builds(started, _ids, st.floats(T0, T0 + 5 * HOUR, allow_nan=False)),
    st.builds(
        AttemptEnded,
        request_id=_ids,
        attempt_id=st.sampled_from(["x#1", "x#2", "y#1"]),  # retried records repeat ids
        account=st.sampled_from(["a", "b"]),
        provider=st.sampled_from(["p", "q"]),
        at=st.floats(T0, T0 + 50 * HOUR, allow_nan=False),
        status=st.sampled_from([None, 200, 429, 500]),
        category=st.sampled_from([None, "rate_limited", "server_error"]),
        failover=st.booleans(),
        latency=st.one_of(st.none(), st.floats(0, 100, allow_nan=False)),
        connect=st.one_of(st.none(), st.floats(0, 5, allow_nan=False)),
        head=st.one_of(st.none(), st.floats(0, 50, allow_nan=False)),
    ),
    st.builds(
        finalized,
        _ids,
        st.floats(T0, T0 + 5 * HOUR, allow_nan=False),
        account=st.sampled_from(["a", "b", None]),
        model=st.sampled_from(["m", "n", ""]),
        outcome=st.sampled_from(["completed", "upstream_error", "interrupted"]),
        status=st.sampled_from([200, 429, 502]),
        cost_microdollars=st.integers(0, 10**6),
        exactness=st.sampled_from(["exact", "derived", "partial", "estimated", "unknown", "?"]),
        streamed=st.booleans(),
        latency=st.one_of(st.none(), st.floats(0, 900, allow_nan=False)),
        ttft=st.one_of(st.none(), st.floats(0, 100, allow_nan=False)),
        usage=st.one_of(
            st.none(),
            st.builds(
                Usage, input_tokens=st.integers(0, 10**6), output_tokens=st.integers(0, 10**5)
            ),
        ),
    ),
)


@settings(max_examples=60)
@given(st.lists(st.lists(_records, max_size=8), max_size=6))
def test_rollups_always_equal_the_rows_they_summarize(batches: list[list[Record]]) -> None:
    # Any order of starts, finalizations and retried records, in any batches: the rollups
    # hold exactly what a GROUP BY over the finalized rows gives.
    conn = database()
    for records in batches:
        write(conn, records)
    assert_consistent(conn)


def test_upgrading_to_version_4_counts_the_requests_already_stored() -> None:
    conn = database(target=3)
    # A version 3 attempts table (the writer of today has columns it lacks): by hand.
    conn.execute(
        "INSERT INTO attempts (attempt_id, request_id, account, provider, ended_at, "
        "http_status, category, failover, latency) "
        "VALUES ('a#1', 'a', 'x', 'p', ?, 429, 'rate_limited', 1, 0.5)",
        (T0 + 1,),
    )
    write(conn, [started("a", T0), finalized("a", T0 + 2), started("b", T0 + 3)])
    write(conn, [finalized("c", T0 + 2 * HOUR, latency=31.0, ttft=None)])
    migrate(conn)
    assert_consistent(conn)
    write(conn, [finalized("b", T0 + 5)])  # pending before the upgrade, finalized after
    assert_consistent(conn)
    assert conn.execute("SELECT sum(requests) FROM request_hours").fetchall() == [(3,)]


_decisions = st.builds(
    RoutingDecided,
    decision_id=st.sampled_from(["r1@1", "r1@2", "r2@1", "r3@1"]),  # retried records repeat
    request_id=st.sampled_from(["r1", "r2", "r3"]),
    at=st.floats(T0, T0 + 50 * HOUR, allow_nan=False),
    model=st.sampled_from(["m", "n"]),
    account=st.sampled_from(["a", "b", None]),
    candidates=st.integers(0, 5),
    affinity=st.booleans(),
    excluded=st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c"]), st.sampled_from(["cooling", "over_local_quota"])
        ),
        max_size=3,
        unique_by=lambda pair: pair[0],
    ).map(tuple),
)


@settings(max_examples=40)
@given(st.lists(st.lists(_decisions, max_size=6), max_size=5))
def test_routing_rollups_equal_the_decisions_they_count(batches: list[list[Record]]) -> None:
    conn = database()
    for records in batches:
        write(conn, records)
    for unit, seconds in UNITS.items():
        when = f"CAST(at / {seconds} AS INTEGER)"
        rolled = (
            f"SELECT {unit}, model, account, decisions, affinity, candidates "
            f"FROM routing_{unit}s ORDER BY 1, 2, 3"
        )
        expected = (
            f"SELECT {when}, model, account, count(*), sum(affinity), sum(candidates) "
            "FROM routing_decisions GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
        )
        assert conn.execute(rolled).fetchall() == conn.execute(expected).fetchall()
        rolled = (
            f"SELECT {unit}, account, reason, exclusions FROM exclusion_{unit}s ORDER BY 1, 2, 3"
        )
        expected = (
            f"SELECT {when}, account, reason, count(*) FROM routing_exclusions "
            "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
        )
        assert conn.execute(rolled).fetchall() == conn.execute(expected).fetchall()
    stored = conn.execute("SELECT count(*) FROM routing_decisions").fetchone()[0]
    assert stored == len({r.decision_id for batch in batches for r in batch})  # type: ignore[attr-defined]
