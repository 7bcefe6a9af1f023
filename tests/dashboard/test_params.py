"""Stats query parameters: every accepted spelling, and every refusal named."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eggpool.core.errors import LocalFailure
from eggpool.dashboard.params import (
    MAX_DAYS,
    Bucket,
    GroupBy,
    StatsQuery,
    parse_period,
    parse_query,
)

NOW = datetime(2026, 11, 27, 12, 30, tzinfo=UTC).timestamp()
ALL = {"period", "bucket", "group_by", "limit", "account", "provider", "model", "status", "kind"}


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("period", "start", "end"),
    [
        ("1h", NOW - 3600, NOW),
        ("24h", NOW - 86400, NOW),
        ("7d", NOW - 7 * 86400, NOW),
        ("30d", NOW - 30 * 86400, NOW),
        ("2026-11-01..2026-11-02", at("2026-11-01T00:00"), at("2026-11-02T00:00")),
        ("2026-11-01T08:00Z..2026-11-01T09:30Z", at("2026-11-01T08:00"), at("2026-11-01T09:30")),
        ("2026-11-01T09:00+01:00..", at("2026-11-01T08:00"), NOW),
        ("2026-11-20", at("2026-11-20T00:00"), NOW),
        ("1764000000..1764003600", 1764000000.0, 1764003600.0),
    ],
)
def test_periods(period: str, start: float, end: float) -> None:
    assert parse_period(period, now=NOW) == (start, end)


@pytest.mark.parametrize(
    ("period", "problem"),
    [
        ("forever", "expected 1h, 24h, 7d, 30d"),
        ("0h", "1h to"),
        (f"{MAX_DAYS + 1}d", "1h to"),
        ("2026-11-02..2026-11-01", "end must come after"),
        ("2026-11-01..tomorrow", "the end 'tomorrow'"),
        ("2020-01-01..2026-01-01", f"at most {MAX_DAYS} days"),
        ("nan", "expected 1h"),
    ],
)
def test_bad_periods_say_what_is_wrong(period: str, problem: str) -> None:
    failure = parse_period(period, now=NOW)
    assert isinstance(failure, LocalFailure)
    assert failure.param == "period"
    assert problem in failure.message


def test_a_full_query() -> None:
    q = parse_query(
        "period=7d&bucket=hour&group_by=model&limit=5&account=a1&status=429", ALL, now=NOW
    )
    assert isinstance(q, StatsQuery)
    assert (q.bucket, q.group_by, q.limit, q.account, q.status) == (
        Bucket.HOUR, GroupBy.MODEL, 5, "a1", 429,
    )  # fmt: skip


def test_defaults_follow_the_period() -> None:
    short = parse_query("", ALL, now=NOW)
    long = parse_query("period=30d", ALL, now=NOW, limits=(1, 25, 12))
    assert isinstance(short, StatsQuery)
    assert isinstance(long, StatsQuery)
    assert (short.period, short.bucket) == ("24h", Bucket.HOUR)
    assert (long.bucket, long.limit) == (Bucket.DAY, 12)


@pytest.mark.parametrize(
    ("query", "param", "problem"),
    [
        ("colour=red", "colour", "no such parameter"),
        ("limit=1&limit=2", "limit", "more than once"),
        ("limit=101", "limit", "from 1 to 100"),
        ("limit=ten", "limit", "expected an integer"),
        ("bucket=week", "bucket", "expected one of hour, day"),
        ("group_by=colour", "group_by", "expected one of provider, model, account"),
        ("status=700", "status", "from 100 to 599"),
        ("account=", "account", "1 to 200 characters"),
        ("model=" + "m" * 201, "model", "1 to 200 characters"),
    ],
)
def test_bad_parameters_are_named(query: str, param: str, problem: str) -> None:
    failure = parse_query(query, ALL, now=NOW)
    assert isinstance(failure, LocalFailure)
    assert failure.param == param
    assert problem in failure.message
    assert failure.kind.status == 400


def test_a_parameter_the_endpoint_does_not_take_is_refused() -> None:
    failure = parse_query("model=m", {"period"}, now=NOW)
    assert isinstance(failure, LocalFailure)
    assert failure.param == "model"
    assert "it takes: period" in failure.message


@given(st.text(max_size=60))
def test_any_period_parses_or_is_refused_by_name(text: str) -> None:
    result = parse_period(text, now=NOW)
    if isinstance(result, LocalFailure):
        assert result.param == "period"
    else:
        start, end = result
        assert start < end
        assert end - start <= MAX_DAYS * 86400


@given(st.text(max_size=80))
def test_any_query_string_parses_or_is_refused_by_name(text: str) -> None:
    result = parse_query(text, ALL, now=NOW)
    if isinstance(result, LocalFailure):
        assert result.param is not None
        assert result.kind.status == 400
