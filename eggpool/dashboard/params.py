"""Query parameters of the stats API and the dashboard pages: validated, or refused by name.

Theory of operation. `parse_query(query_string, allowed, now=...)` turns the
raw query string of a request into a `StatsQuery`, or a `LocalFailure` whose
message and `param` name the offending parameter (rendered as a 400). Every
endpoint lists the parameters it takes; any other parameter, and any
parameter given twice, is refused rather than ignored, so a typo never
silently shows the wrong numbers.

The period is `[start, end)` in wall-clock Unix seconds:

- `1h`, `24h`, `7d`, `30d`, or any `<n>h` / `<n>d` up to `MAX_DAYS` days:
  that long, ending now;
- `START..END`: each an ISO 8601 date (`2026-11-01`, midnight UTC) or date
  and time (`2026-11-01T08:00`, `...Z`, `...+01:00`; no offset means UTC),
  or Unix seconds; `START..` ends now;
- one ISO time or Unix seconds alone: since then, until now.

Times are UTC throughout; buckets of a timeseries start on UTC hours or
days. `bucket` defaults to hours for periods up to 48 hours and days beyond.
"""

from __future__ import annotations

import enum
import math
import re
import urllib.parse
from collections.abc import Collection
from datetime import UTC, datetime
from typing import TypeVar

import attrs

from eggpool.core.errors import LocalFailure

__all__ = [
    "DEFAULT_PERIOD",
    "MAX_DAYS",
    "Bucket",
    "GroupBy",
    "StatsQuery",
    "parse_period",
    "parse_query",
]

DEFAULT_PERIOD = "24h"
MAX_DAYS = 400
"""The longest period asked for (the rollups keep about this much history)."""

_MAX_TEXT = 200
_RELATIVE = re.compile(r"(\d{1,5})([hd])")
_E = TypeVar("_E", bound=enum.Enum)


class Bucket(enum.Enum):
    HOUR = "hour"
    DAY = "day"

    @property
    def seconds(self) -> int:
        return 3600 if self is Bucket.HOUR else 86400


class GroupBy(enum.Enum):
    PROVIDER = "provider"
    MODEL = "model"
    ACCOUNT = "account"


@attrs.frozen(kw_only=True)
class StatsQuery:
    """What one stats request asks for (unset filters are None)."""

    start: float
    end: float
    period: str  # as given (or the default), for echoing back
    bucket: Bucket = Bucket.HOUR
    group_by: GroupBy | None = None
    limit: int | None = None
    account: str | None = None
    provider: str | None = None
    model: str | None = None
    status: int | None = None
    kind: str | None = None


def parse_query(
    query: str,
    allowed: Collection[str],
    *,
    now: float,
    limits: tuple[int, int, int] = (1, 100, 20),
) -> StatsQuery | LocalFailure:
    """`query` (the part of the URL after `?`) as a `StatsQuery`. `allowed` names the
    parameters the endpoint takes; `limits` is (least, most, default) for `limit`."""
    try:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=False)
    except ValueError:
        return LocalFailure.invalid_value("query", "it is not a valid query string")
    values: dict[str, str] = {}
    for name, value in pairs:
        if name not in allowed:
            return LocalFailure.invalid_value(
                name, f"this endpoint takes no such parameter (it takes: {_listed(allowed)})"
            )
        if name in values:
            return LocalFailure.invalid_value(name, "it is given more than once")
        values[name] = value

    period = values.get("period", DEFAULT_PERIOD)
    span = parse_period(period, now=now)
    if isinstance(span, LocalFailure):
        return span
    start, end = span

    bucket_text = values.get("bucket")
    if bucket_text is None:
        bucket = Bucket.HOUR if end - start <= 48 * 3600 else Bucket.DAY
    else:
        found = _enum(Bucket, "bucket", bucket_text)
        if isinstance(found, LocalFailure):
            return found
        bucket = found

    group_by = None
    if "group_by" in values:
        grouped = _enum(GroupBy, "group_by", values["group_by"])
        if isinstance(grouped, LocalFailure):
            return grouped
        group_by = grouped

    least, most, default = limits
    limit: int | None = default if "limit" in allowed else None
    if "limit" in values:
        number = _integer("limit", values["limit"], least, most)
        if isinstance(number, LocalFailure):
            return number
        limit = number

    status = None
    if "status" in values:
        code = _integer("status", values["status"], 100, 599)
        if isinstance(code, LocalFailure):
            return code
        status = code

    texts: dict[str, str | None] = {}
    for name in ("account", "provider", "model", "kind"):
        text = values.get(name)
        if text is not None and not 0 < len(text) <= _MAX_TEXT:
            return LocalFailure.invalid_value(
                name, f"expected 1 to {_MAX_TEXT} characters, got {len(text)}"
            )
        texts[name] = text

    return StatsQuery(
        start=start,
        end=end,
        period=period,
        bucket=bucket,
        group_by=group_by,
        limit=limit,
        account=texts["account"],
        provider=texts["provider"],
        model=texts["model"],
        status=status,
        kind=texts["kind"],
    )


def parse_period(text: str, *, now: float) -> tuple[float, float] | LocalFailure:
    """`[start, end)` for a `period` value (see the module docstring)."""
    relative = _RELATIVE.fullmatch(text)
    if relative is not None:
        amount, unit = int(relative.group(1)), relative.group(2)
        seconds = amount * (3600 if unit == "h" else 86400)
        if not 0 < seconds <= MAX_DAYS * 86400:
            return _bad_period(f"a relative period is 1h to {MAX_DAYS}d, got {text!r}")
        return now - seconds, now
    first, separator, second = text.partition("..")
    start = _instant(first)
    if start is None:
        return _bad_period(
            f"expected 1h, 24h, 7d, 30d, START..END or a start time, got {_shown(text)}"
        )
    end = now
    if separator and second:
        found = _instant(second)
        if found is None:
            return _bad_period(f"the end {_shown(second)} is not a date, time or Unix time")
        end = found
    if end <= start:
        return _bad_period("its end must come after its start")
    if end - start > MAX_DAYS * 86400:
        return _bad_period(f"it may span at most {MAX_DAYS} days")
    return start, end


def _instant(text: str) -> float | None:
    """Unix seconds for an ISO 8601 date or time (naive = UTC) or a Unix time, or None."""
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        return value if math.isfinite(value) and 0 <= value < 1e11 else None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _bad_period(problem: str) -> LocalFailure:
    return LocalFailure.invalid_value("period", problem)


def _enum(kind: type[_E], name: str, text: str) -> _E | LocalFailure:
    for member in kind:
        if member.value == text:
            return member
    choices = ", ".join(str(member.value) for member in kind)
    return LocalFailure.invalid_value(name, f"expected one of {choices}, got {_shown(text)}")


def _integer(name: str, text: str, least: int, most: int) -> int | LocalFailure:
    if not re.fullmatch(r"-?\d{1,12}", text):
        return LocalFailure.invalid_value(name, f"expected an integer, got {_shown(text)}")
    value = int(text)
    if not least <= value <= most:
        return LocalFailure.invalid_value(
            name, f"expected a value from {least} to {most}, got {value}"
        )
    return value


def _listed(names: Collection[str]) -> str:
    return ", ".join(sorted(names)) or "none"


def _shown(text: str) -> str:
    """A client's value, quoted and cut short, for an error message."""
    return repr(text if len(text) <= 40 else text[:40] + "...")
