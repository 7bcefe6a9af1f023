"""Fuzzing the retry classifier from recorded provider errors outwards.

Every harness starts from the recorded errors and cooldown headers of
tests/core/test_retry.py (OpenAI, Anthropic, OpenRouter, DeepSeek, Groq,
Gemini, Mistral, Ollama, CDN pages), so that mutations land inside
realistic shapes instead of being rejected at the first byte: byte edits of
the body (truncation, splices, case flips, inserted tokens), value swaps
deep in the JSON, and hostile header values. Statuses, phases and
`now_wall` (nan and infinities included) vary independently.

The invariant everywhere: `classify_outcome` returns a `RetryDecision`,
never raises, and the decision is consistent (`_check`).
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import attrs
from hypothesis import given
from hypothesis import strategies as st

from eggpool.core.config import Protocol
from eggpool.core.retry import (
    BODY_SNIPPET_CAP,
    MAX_COOLDOWN,
    AttemptPhase,
    FailureCategory,
    FailureScope,
    Penalty,
    RetryDecision,
    TransportFailure,
    UpstreamOutcome,
    classify_outcome,
)
from tests.core.test_retry import HEADER_VALUES, HINTS, RECORDED
from tests.helpers.documents import leaves

BODIES = [case.body for case in RECORDED] + [hint.body for hint in HINTS if hint.body]
HEADER_SETS = [case.headers for case in RECORDED if case.headers] + [h.headers for h in HINTS]
TOKENS = [
    "insufficient_quota", "rate_limit_exceeded", "rate_limit_error", "overloaded_error",
    "context_length_exceeded", "model_not_found", "invalid_api_key", "permission_error",
    "API_KEY_INVALID", "RESOURCE_EXHAUSTED", "GenerateRequestsPerDayPerProjectPerModel",
    "PerMinute", "slow_down", "billing_error", "prompt is too long", "model: x",
    "credit balance is too low", "Too many requests in queue", "regain access on 9999-12-31",
    "regain access on 2023-02-30 at 25:61", "Please retry in 1e400s", "try again in 99999h",
    "try again in 0.000001ms", "429", "502", '"code": 503', '"retryDelay": "-5s"',
    '"retryDelay": "99999999999999999999s"', "data: ", "event: error\n", "\r\n\r\n", "\ufeff",
    "\x00", "[" * 50, "{" * 50, '\\"', "\ud800",
]  # fmt: skip
STATUSES = [200, 301, 400, 401, 402, 403, 404, 408, 409, 413, 422, 429, 500, 502, 503, 529]
walls = st.sampled_from([1_700_000_000.0, 0.0, -1e300, 1e300]) | st.floats()
phases = st.sampled_from(AttemptPhase)
# Where and when the attempt failed: (phase, now_wall).
moments = st.tuples(phases, walls)
statuses = st.sampled_from(STATUSES) | st.integers()


def _check(outcome: UpstreamOutcome) -> None:
    decision = classify_outcome(outcome)
    assert isinstance(decision, RetryDecision)
    assert decision == classify_outcome(outcome)
    if decision.cooldown is None:
        assert decision.cooldown_source is None
        assert decision.cooldown_clamped is False
    else:
        assert math.isfinite(decision.cooldown)
        assert 0.0 <= decision.cooldown <= MAX_COOLDOWN
        assert decision.cooldown_source
        assert not decision.cooldown_clamped or decision.cooldown in (0.0, MAX_COOLDOWN)
    if decision.scope is FailureScope.NONE:
        assert decision.cooldown is None
    if outcome.phase is AttemptPhase.MID_STREAM:
        assert decision.failover is False
    if decision.category in (FailureCategory.BAD_REQUEST, FailureCategory.CONTEXT_TOO_LONG):
        assert (decision.failover, decision.scope, decision.penalty) == (
            False,
            FailureScope.NONE,
            Penalty.NONE,
        )
    assert decision.penalize == (decision.penalty is not Penalty.NONE)
    assert decision.reason.isascii()
    assert 0 < len(decision.reason) < 200


def _outcome(
    status: int | None,
    body: bytes | str,
    headers: list[tuple[str, str]],
    moment: tuple[AttemptPhase, float],
    failure: TransportFailure | None = None,
) -> UpstreamOutcome:
    phase, now_wall = moment
    return UpstreamOutcome(
        phase=phase,
        protocol=Protocol.OPENAI,
        now_wall=now_wall,
        status=status,
        headers=headers,
        body=body,
        failure=failure,
    )


byte_edits = st.lists(
    st.tuples(
        st.sampled_from(["insert", "delete", "replace", "truncate", "splice", "swapcase"]),
        st.integers(min_value=0, max_value=BODY_SNIPPET_CAP),
        st.sampled_from(TOKENS) | st.text(max_size=8),
        st.sampled_from(BODIES),
    ),
    max_size=6,
)


@given(st.sampled_from(RECORDED), byte_edits, st.none() | statuses, moments)
def test_byte_edits_of_recorded_bodies_classify_cleanly(
    case: Any,
    edits: list[tuple[str, int, str, str]],
    status: int | None,
    moment: tuple[AttemptPhase, float],
) -> None:
    body = case.body
    for op, position, token, other in edits:
        at = position % (len(body) + 1)
        if op == "insert":
            body = body[:at] + token + body[at:]
        elif op == "delete":
            body = body[:at] + body[at + len(token) :]
        elif op == "replace":
            body = body[:at] + token + body[at + len(token) :]
        elif op == "truncate":
            body = body[:at]
        elif op == "splice":
            body = body[:at] + other[at % (len(other) + 1) :]
        else:
            body = body[:at] + body[at:].swapcase()
    as_bytes = body.encode("utf-8", "surrogatepass")
    for payload in (body, as_bytes, as_bytes * 3):
        _check(_outcome(case.status if status is None else status, payload, case.headers, moment))


def _json(body: str) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


JSON_CASES = [(case, doc) for case in RECORDED if (doc := _json(case.body)) is not None]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=16)
    | st.sampled_from(TOKENS)
    | st.sampled_from(STATUSES),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(
        ["error", "code", "type", "status", "message", "details", "quotaId", "retryDelay",
         "metadata", "raw", "reason"]) | st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)  # fmt: skip


@given(
    st.sampled_from(JSON_CASES),
    st.lists(st.tuples(st.integers(min_value=0), json_values), max_size=5),
    st.sampled_from(["status", "embedded", "random"]),
    statuses,
    moments,
)
def test_value_swaps_inside_recorded_json_classify_cleanly(
    case_and_doc: tuple[Any, Any],
    swaps: list[tuple[int, Any]],
    status_choice: str,
    random_status: int,
    moment: tuple[AttemptPhase, float],
) -> None:
    case, original = case_and_doc
    document = copy.deepcopy(original)
    for index, value in swaps:
        paths = list(leaves(document))
        if not paths:
            break
        path = paths[index % len(paths)]
        parent: Any = document
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = value
    body = json.dumps(document, allow_nan=True)
    status = {"status": case.status, "embedded": 200, "random": random_status}[status_choice]
    _check(_outcome(status, body, case.headers, moment))
    _check(_outcome(status, "data: " + body + "\n\n", [], moment))


header_edits = st.lists(
    st.tuples(
        st.sampled_from(["value", "upper", "duplicate", "drop", "add"]),
        st.integers(min_value=0),
        st.sampled_from(HEADER_VALUES) | st.text(max_size=40),
        st.sampled_from(
            ["retry-after", "retry-after-ms", "x-ratelimit-reset", "x-ratelimit-remaining",
             "x-ratelimit-reset-tokens", "x-ratelimit-remaining-tokens",
             "anthropic-ratelimit-output-tokens-reset",
             "anthropic-ratelimit-output-tokens-remaining"]) | st.text(max_size=30),
    ),
    max_size=8,
)  # fmt: skip


@given(
    st.sampled_from(HEADER_SETS),
    header_edits,
    st.sampled_from([429, 402, 403, 503, 529, 401, 400, 500]) | statuses,
    st.sampled_from(BODIES) | st.text(max_size=200),
    moments,
)
def test_header_edits_of_recorded_hints_classify_cleanly(
    base: list[tuple[str, str]],
    edits: list[tuple[str, int, str, str]],
    status: int,
    body: str,
    moment: tuple[AttemptPhase, float],
) -> None:
    headers = list(base)
    for op, position, value, name in edits:
        if op == "add" or not headers:
            headers.append((name, value))
            continue
        at = position % len(headers)
        old_name, old_value = headers[at]
        if op == "value":
            headers[at] = (old_name, value)
        elif op == "upper":
            headers[at] = (old_name.upper(), old_value)
        elif op == "duplicate":
            headers.insert(at, (old_name, value))
        else:
            del headers[at]
    _check(_outcome(status, body, headers, moment))


@given(
    st.sampled_from(TransportFailure),
    st.none() | statuses,
    st.sampled_from(BODIES),
    st.sampled_from(HEADER_SETS),
    moments,
)
def test_transport_failures_with_any_leftovers_classify_cleanly(
    failure: TransportFailure,
    status: int | None,
    body: str,
    headers: list[tuple[str, str]],
    moment: tuple[AttemptPhase, float],
) -> None:
    _check(_outcome(status, body, headers, moment, failure))


@given(st.sampled_from(RECORDED), st.integers(min_value=1, max_value=2000))
def test_huge_bodies_are_classified_by_their_snippet(case: Any, repeat: int) -> None:
    outcome = _outcome(case.status, case.body * repeat, case.headers, (case.phase, 1e9))
    assert classify_outcome(outcome) == classify_outcome(
        attrs.evolve(outcome, body=outcome.body[:BODY_SNIPPET_CAP])
    )
    _check(outcome)
