"""Cooldown hints: how long the provider says to wait, from headers and body.

Sources, most explicit first: `retry-after-ms`; `Retry-After` (seconds or
an HTTP-date); the rate-limit reset headers (OpenAI/Groq Go-style
durations, Anthropic RFC 3339 timestamps, OpenRouter epoch milliseconds),
counted only for the window that reports nothing remaining; the body
(Gemini `retryDelay`, "try again in ...", Anthropic's "regain access on
..."). Absolute times are turned into seconds with the `now_wall` passed
in; the result is clamped to [0, MAX_COOLDOWN] and flagged when clamped.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from eggpool.core._retry_body import Body

__all__ = ["MAX_COOLDOWN", "cooldown_hint", "header_map"]

MAX_COOLDOWN = 31 * 86400.0
"""Longest cooldown hint passed on (a monthly quota resets within 31 days)."""

_MAX_VALUE = 128  # header values longer than any date or duration are cut here

_NUMBER = re.compile(r"[0-9]{1,40}(?:\.[0-9]{1,20})?")
_SIGNED = re.compile(r"-?[0-9]{1,40}(?:\.[0-9]{1,20})?")
_GO_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)")
_GO_DURATION = re.compile(r"(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:ns|us|µs|μs|ms|s|m|h)){1,8}")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_GO_UNITS |= dict.fromkeys(("µs", "μs"), 1e-6)  # both micro signs occur
_RFC3339 = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9:.]+(?:[Zz]|[+-][0-9:]+)?")
# x-ratelimit-reset-{requests,tokens} (OpenAI, Groq: Go durations),
# x-ratelimit-reset (OpenRouter: epoch ms), anthropic-ratelimit-*-reset (RFC 3339).
_RESET_HEADER = re.compile(
    r"x-ratelimit-reset(?:-(?P<x>[a-z0-9-]{1,40}))?|anthropic-ratelimit-(?P<a>[a-z0-9-]{1,40}?)-reset"
)
_TRY_AGAIN = re.compile(
    r"(?:try again|retry|reset) (?:in|after) ((?:[0-9]+(?:\.[0-9]+)?(?:ms|h|m|s)){1,4})(?![a-z])"
    r"|(?:try again|retry) in ([0-9]+(?:\.[0-9]+)?) ?(seconds?|secs?|minutes?|mins?|hours?)\b",
    re.IGNORECASE,
)
_WORD_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_REGAIN = re.compile(
    r"regain access on ([0-9]{4})-([0-9]{2})-([0-9]{2})(?: at ([0-9]{2}):([0-9]{2}))?",
    re.IGNORECASE,
)


def _go_duration(value: str) -> float | None:
    """`"6m0s"`, `"2m59.56s"`, `"500ms"`, `"7.66s"` (Go's Duration.String) in seconds."""
    if not _GO_DURATION.fullmatch(value):
        return None
    return sum(float(n) * _GO_UNITS[unit] for n, unit in _GO_PART.findall(value))


def _until(moment: datetime | float, now_wall: float) -> float | None:
    """Seconds from `now_wall` to an absolute time; None when `now_wall` is not finite."""
    if not math.isfinite(now_wall):
        return None
    if isinstance(moment, datetime):
        # A date without a zone is UTC, never the host's local time (a hidden input).
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        moment = moment.timestamp()
    return moment - now_wall


def _retry_after(value: str, now_wall: float) -> float | None:
    """RFC 9110 Retry-After: delta-seconds, or an HTTP-date relative to `now_wall`."""
    if _NUMBER.fullmatch(value):
        return float(value)
    if not value[:1].isalpha():
        return None  # "-5", "1e3", "": not the grammar
    try:
        moment = parsedate_to_datetime(value)
    except (ValueError, TypeError, OverflowError, IndexError):
        return None
    return _until(moment, now_wall)


def _reset_value(value: str, now_wall: float) -> float | None:
    """A window's reset: Go duration, RFC 3339 timestamp, or a number.

    A bare number is read by size: epoch milliseconds (OpenRouter) from 1e12,
    epoch seconds from 1e9, seconds to wait below that."""
    if _NUMBER.fullmatch(value):
        number = float(value)
        if number >= 1e12:
            return _until(number / 1000.0, now_wall)
        if number >= 1e9:
            return _until(number, now_wall)
        return number
    if (seconds := _go_duration(value)) is not None:
        return seconds
    if _RFC3339.fullmatch(value):
        try:
            moment = datetime.fromisoformat(value)
        except (ValueError, OverflowError):
            return None
        return _until(moment, now_wall)
    return None


def _window_reset(headers: Mapping[str, str], now_wall: float) -> tuple[float, str] | None:
    """The reset of the exhausted window (remaining <= 0), latest first; windows
    without a remaining count are candidates only if none says it is empty, and
    a window with room left is not why the request failed."""
    empty: list[tuple[float, str]] = []
    unknown: list[tuple[float, str]] = []
    for name, value in headers.items():
        match = _RESET_HEADER.fullmatch(name)
        if not match or (seconds := _reset_value(value, now_wall)) is None:
            continue
        if match["a"]:
            remaining_name = f"anthropic-ratelimit-{match['a']}-remaining"
        else:
            remaining_name = "x-ratelimit-remaining" + (f"-{match['x']}" if match["x"] else "")
        remaining = headers.get(remaining_name, "")
        if not _SIGNED.fullmatch(remaining):
            unknown.append((seconds, name))
        elif float(remaining) <= 0:
            empty.append((seconds, name))
    chosen = empty or unknown
    return max(chosen) if chosen else None


def _body_hint(body: Body, now_wall: float) -> tuple[float, str] | None:
    for delay in body.delays:
        if (seconds := _go_duration(delay.strip())) is not None:
            return seconds, "body:retryDelay"  # Gemini google.rpc.RetryInfo
    text = "\n".join(body.texts) or body.raw
    if match := _TRY_AGAIN.search(text):
        if match[1]:
            seconds = _go_duration(match[1])
        else:
            seconds = float(match[2]) * _WORD_UNITS[match[3][0].lower()]
        if seconds is not None:
            return seconds, "body:try again in"
    if match := _REGAIN.search(text):
        year, month, day, hour, minute = (int(g) if g else 0 for g in match.groups())
        try:
            moment = datetime(year, month, day, hour, minute, tzinfo=UTC)
        except ValueError:
            return None
        seconds = _until(moment, now_wall)
        return None if seconds is None else (seconds, "body:regain access on")
    return None


def header_map(lines: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """Lower-cased names; the first occurrence of a repeated header wins."""
    headers: dict[str, str] = {}
    for name, value in lines:
        key = name[:_MAX_VALUE].strip().lower()
        if key not in headers:
            headers[key] = value[:_MAX_VALUE].strip()
    return headers


def cooldown_hint(
    headers: Mapping[str, str], body: Body, now_wall: float, *, windows: bool, body_hints: bool
) -> tuple[float | None, str | None, bool]:
    """(seconds, source, clamped) from the most explicit hint the provider gave."""
    hints: list[tuple[float, str] | None] = []
    if (ms := headers.get("retry-after-ms")) is not None and _NUMBER.fullmatch(ms):
        hints.append((float(ms) / 1000.0, "retry-after-ms"))
    if (value := headers.get("retry-after")) is not None:
        seconds = _retry_after(value, now_wall)
        hints.append(None if seconds is None else (seconds, "retry-after"))
    if windows:
        hints.append(_window_reset(headers, now_wall))
    if body_hints:
        hints.append(_body_hint(body, now_wall))
    for hint in hints:
        if hint is not None and math.isfinite(hint[0]):
            seconds, source = hint
            clamped = min(max(seconds, 0.0), MAX_COOLDOWN) + 0.0  # + 0.0: never -0.0
            return clamped, source, clamped != seconds
    return None, None, False
