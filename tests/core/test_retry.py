"""The retry classifier: recorded provider errors, cooldown hints, phases, and totality.

The scenario table is the playbook: one realistic error (status, body shape,
headers) per row, as each provider documents or was seen sending it, and the
decision we want for it. Properties below check what must hold for any input.
"""

from __future__ import annotations

import json
import math
from typing import NamedTuple

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eggpool.core.config import Protocol
from eggpool.core.retry import (
    _CLASS_RULES,
    _SIGNALS,
    _STATUS_RULES,
    BODY_SNIPPET_CAP,
    MAX_COOLDOWN,
    MAX_HEADERS,
    AttemptPhase,
    FailureCategory,
    FailureScope,
    Penalty,
    RetryDecision,
    TransportFailure,
    UpstreamOutcome,
    _candidates,
    classify_outcome,
)

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z
C = FailureCategory
S = FailureScope
P = Penalty
OPENAI = Protocol.OPENAI
ANTHROPIC = Protocol.ANTHROPIC
HEAD = AttemptPhase.RESPONSE_HEAD
MID = AttemptPhase.MID_STREAM


def classify(
    status: int | None,
    body: bytes | str = b"",
    headers: list[tuple[str, str]] | None = None,
    *,
    phase: AttemptPhase = HEAD,
    protocol: Protocol = OPENAI,
    now_wall: float = NOW,
    failure: TransportFailure | None = None,
) -> RetryDecision:
    return classify_outcome(
        UpstreamOutcome(
            phase=phase,
            protocol=protocol,
            now_wall=now_wall,
            status=status,
            headers=headers or [],
            body=body,
            failure=failure,
        )
    )


def summary(decision: RetryDecision) -> tuple[FailureCategory, bool, FailureScope, Penalty]:
    return decision.category, decision.failover, decision.scope, decision.penalty


def openai_error(
    message: str, type_: str | None, code: str | None, param: str | None = None
) -> str:
    return json.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})


def anthropic_error(type_: str, message: str, **extra: object) -> str:
    return json.dumps({"type": "error", "error": {"type": type_, "message": message, **extra}})


def openrouter_error(code: int, message: str, **metadata: object) -> str:
    error: dict[str, object] = {"code": code, "message": message}
    if metadata:
        error["metadata"] = metadata
    return json.dumps({"error": error})


def google_error(code: int, status: str, message: str, *details: object) -> str:
    # The OpenAI-compatible endpoint wraps Google's error in a one-element list.
    return json.dumps([{"error": {"code": code, "message": message, "status": status,
                                  "details": list(details)}}])  # fmt: skip


def quota_failure(quota_id: str) -> dict[str, object]:
    return {
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [
            {"quotaMetric": "generativelanguage.googleapis.com/x", "quotaId": quota_id}
        ],
    }


RETRY_INFO = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "38s"}
GEMINI_QUOTA_TEXT = (
    "You exceeded your current quota, please check your plan and billing details.\n"
    "* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier"
    "_requests, limit: 15, model: gemini-2.0-flash\nPlease retry in 38.92s."
)


class Recorded(NamedTuple):
    name: str
    status: int
    body: str
    headers: list[tuple[str, str]]
    expected: tuple[FailureCategory, bool, FailureScope, Penalty]
    phase: AttemptPhase = HEAD


RATE = (C.RATE_LIMITED, True, S.ACCOUNT, P.NONE)
RATE_MODEL = (C.RATE_LIMITED, True, S.ACCOUNT_MODEL, P.NONE)
QUOTA = (C.QUOTA_EXHAUSTED, True, S.ACCOUNT, P.NONE)
AUTH = (C.AUTH_FAILED, True, S.ACCOUNT, P.FULL)
DENIED = (C.PERMISSION_DENIED, True, S.ACCOUNT, P.FULL)
MODEL = (C.MODEL_UNAVAILABLE, True, S.ACCOUNT_MODEL, P.NONE)
CONTEXT = (C.CONTEXT_TOO_LONG, False, S.NONE, P.NONE)
CLIENT = (C.BAD_REQUEST, False, S.NONE, P.NONE)
OVERLOADED = (C.OVERLOADED, True, S.ACCOUNT, P.LIGHT)
SERVER = (C.SERVER_ERROR, True, S.ACCOUNT, P.LIGHT)
OPENAI_RATE_HEADERS = [
    ("x-ratelimit-limit-tokens", "30000"),
    ("x-ratelimit-remaining-tokens", "0"),
    ("x-ratelimit-reset-tokens", "2.5s"),
    ("x-ratelimit-remaining-requests", "499"),
    ("x-ratelimit-reset-requests", "120ms"),
]

RECORDED: list[Recorded] = [
    # OpenAI
    Recorded("openai 429 rate limit", 429, openai_error(
        "Rate limit reached for gpt-4o in organization org-abc on tokens per min (TPM): Limit "
        "30000, Used 29000, Requested 2000. Please try again in 2.5s.", "tokens",
        "rate_limit_exceeded"), OPENAI_RATE_HEADERS, RATE_MODEL),
    Recorded("openai 429 insufficient_quota", 429, openai_error(
        "You exceeded your current quota, please check your plan and billing details.",
        "insufficient_quota", "insufficient_quota"), [], QUOTA),
    Recorded("openai 429 slow_down", 429, openai_error(
        "Please reduce your request rate.", "rate_limit_error", "slow_down"), [], RATE),
    Recorded("openai 503 slow_down", 503, openai_error(
        "Please reduce your request rate.", "service_unavailable_error", "slow_down"), [],
        RATE),
    Recorded("openai 400 context_length_exceeded", 400, openai_error(
        "This model's maximum context length is 128000 tokens. However, your messages resulted"
        " in 130000 tokens.", "invalid_request_error", "context_length_exceeded", "messages"),
        [], CONTEXT),
    Recorded("openai 400 bad parameter", 400, openai_error(
        "Invalid value for 'temperature': expected a number.", "invalid_request_error", None,
        "temperature"), [], CLIENT),
    Recorded("openai 401 invalid key", 401, openai_error(
        "Incorrect API key provided: sk-abc***xyz.", "invalid_request_error",
        "invalid_api_key"), [], AUTH),
    Recorded("openai 403 region", 403, openai_error(
        "Country, region, or territory not supported", "request_forbidden",
        "unsupported_country_region_territory"), [], DENIED),
    Recorded("openai 403 no access to model", 403, openai_error(
        "Project `proj_abc` does not have access to model `o3`", "invalid_request_error",
        "model_not_found"), [], MODEL),
    Recorded("openai 404 model not found", 404, openai_error(
        "The model `gpt-9` does not exist or you do not have access to it.",
        "invalid_request_error", "model_not_found"), [], MODEL),
    Recorded("openai 404 wrong path", 404, openai_error(
        "Invalid URL (POST /v1/chat/completion)", "invalid_request_error", None), [], CLIENT),
    Recorded("openai 500", 500, openai_error(
        "The server had an error while processing your request. Sorry about that!",
        "server_error", None), [], SERVER),
    Recorded("openai error chunk mid-stream", 200, "data: " + openai_error(
        "The server had an error while processing your request.", "server_error", None)
        + "\n\n", [], (C.SERVER_ERROR, False, S.ACCOUNT, P.LIGHT), MID),
    # Anthropic
    Recorded("anthropic 429 rate_limit_error", 429, anthropic_error(
        "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
        [("retry-after", "17"), ("anthropic-ratelimit-requests-remaining", "0")], RATE),
    Recorded("anthropic 429 spend limit", 429, anthropic_error(
        "rate_limit_error", "You have reached your monthly spend limit.",
        details={"error_code": "enforced_spend_limit_reached"}), [], QUOTA),
    Recorded("anthropic 529 overloaded_error", 529, anthropic_error(
        "overloaded_error", "Overloaded"), [], (C.OVERLOADED, True, S.PROVIDER, P.LIGHT)),
    Recorded("anthropic 400 prompt is too long", 400, anthropic_error(
        "invalid_request_error", "prompt is too long: 208000 tokens > 200000 maximum"), [],
        CONTEXT),
    Recorded("anthropic 400 credit balance", 400, anthropic_error(
        "invalid_request_error", "Your credit balance is too low to access the Anthropic API. "
        "Please go to Plans & Billing to upgrade or purchase credits."), [], QUOTA),
    Recorded("anthropic 400 usage limits", 400, anthropic_error(
        "invalid_request_error", "You have reached your specified API usage limits. You will "
        "regain access on 2023-12-01 at 00:00 UTC."), [], QUOTA),
    Recorded("anthropic 400 bad request", 400, anthropic_error(
        "invalid_request_error", "messages.0.content: Field required"), [], CLIENT),
    Recorded("anthropic 401", 401, anthropic_error(
        "authentication_error", "invalid x-api-key"), [], AUTH),
    Recorded("anthropic 402 billing_error", 402, anthropic_error(
        "billing_error", "Your account has a billing issue."), [], QUOTA),
    Recorded("anthropic 403 permission_error", 403, anthropic_error(
        "permission_error", "Your API key does not have permission to use the specified "
        "resource."), [], DENIED),
    Recorded("anthropic 404 model", 404, anthropic_error(
        "not_found_error", "model: claude-3-5-sonnet-20990101"), [], MODEL),
    Recorded("anthropic 404 count_tokens path", 404, anthropic_error(
        "not_found_error", "Not Found"), [], CLIENT),
    Recorded("anthropic 413 request_too_large", 413, anthropic_error(
        "request_too_large", "Request exceeds the maximum allowed number of bytes."), [],
        CLIENT),
    Recorded("anthropic 500 api_error", 500, anthropic_error(
        "api_error", "Internal server error"), [], SERVER),
    Recorded("anthropic error event mid-stream", 200, "event: error\ndata: " + anthropic_error(
        "overloaded_error", "Overloaded") + "\n\n", [],
        (C.OVERLOADED, False, S.PROVIDER, P.LIGHT), MID),
    # OpenRouter
    Recorded("openrouter 402 credits", 402, openrouter_error(
        402, "Insufficient credits. Add more using https://openrouter.ai/credits"), [], QUOTA),
    Recorded("openrouter 429 free-models-per-min", 429, openrouter_error(
        429, "Rate limit exceeded: free-models-per-min."),
        [("X-RateLimit-Remaining", "0"), ("X-RateLimit-Reset", "1700000042000")], RATE),
    Recorded("openrouter 429 free-models-per-day", 429, openrouter_error(
        429, "Rate limit exceeded: free-models-per-day. Add 10 credits to unlock 1000 free "
        "model requests per day"), [], QUOTA),
    Recorded("openrouter 429 rate-limited upstream", 429, openrouter_error(
        429, "Provider returned error", raw="google/gemini-2.0-flash-exp:free is temporarily "
        "rate-limited upstream. Please retry shortly.", provider_name="Google AI Studio"), [],
        RATE_MODEL),
    Recorded("openrouter 403 moderation", 403, openrouter_error(
        403, "Your chosen model requires moderation and your input was flagged",
        reasons=["harassment"], flagged_input="..."), [], CLIENT),
    Recorded("openrouter 404 data policy", 404, openrouter_error(
        404, "No endpoints found matching your data policy (Free model publication)."), [],
        MODEL),
    Recorded("openrouter 404 tool use", 404, openrouter_error(
        404, "No endpoints found that support tool use."), [], CLIENT),
    Recorded("openrouter error mid-stream", 200, "data: " + openrouter_error(
        502, "Provider returned error") + "\n\n", [],
        (C.SERVER_ERROR, False, S.ACCOUNT, P.LIGHT), MID),
    # DeepSeek
    Recorded("deepseek 402 insufficient balance", 402, openai_error(
        "Insufficient Balance", "unknown_error", "invalid_request_error"), [], QUOTA),
    Recorded("deepseek 401", 401, openai_error(
        "Authentication Fails, Your api key: ****abcd is invalid", "authentication_error",
        "invalid_request_error"), [], AUTH),
    Recorded("deepseek 422 invalid parameters", 422, openai_error(
        "Invalid max_tokens value, the valid range of max_tokens is [1, 8192]",
        "invalid_request_error", "invalid_request_error"), [], CLIENT),
    Recorded("deepseek 503 busy", 503, openai_error(
        "Server overloaded, please try again later.", "server_error", None), [], OVERLOADED),
    # Groq
    Recorded("groq 429 tokens per minute", 429, openai_error(
        "Rate limit reached for model `llama-3.3-70b-versatile` in organization `org_01` "
        "service tier `on_demand` on tokens per minute (TPM): Limit 6000, Used 5000, Requested "
        "2000. Please try again in 7.66s.", "tokens", "rate_limit_exceeded"),
        [("retry-after", "8"), ("x-ratelimit-remaining-tokens", "0"),
         ("x-ratelimit-reset-tokens", "7.66s")], RATE_MODEL),
    Recorded("groq 429 requests per day", 429, openai_error(
        "Rate limit reached for model `llama-3.1-8b-instant` in organization `org_01` service "
        "tier `on_demand` on requests per day (RPD): Limit 14400, Used 14400, Requested 1.",
        "requests", "rate_limit_exceeded"), [], QUOTA),
    Recorded("groq 404 decommissioned", 404, openai_error(
        "The model `mixtral-8x7b-32768` has been decommissioned and is no longer supported.",
        "invalid_request_error", "model_decommissioned"), [], MODEL),
    Recorded("groq 400 context", 400, openai_error(
        "Please reduce the length of the messages or completion.", "invalid_request_error",
        "context_length_exceeded", "messages"), [], CONTEXT),
    # Gemini's OpenAI-compatible endpoint
    Recorded("gemini 429 per-minute quota", 429, google_error(
        429, "RESOURCE_EXHAUSTED", GEMINI_QUOTA_TEXT,
        quota_failure("GenerateRequestsPerMinutePerProjectPerModel-FreeTier"), RETRY_INFO), [],
        RATE),
    Recorded("gemini 429 per-day quota", 429, google_error(
        429, "RESOURCE_EXHAUSTED", GEMINI_QUOTA_TEXT,
        quota_failure("GenerateRequestsPerDayPerProjectPerModel-FreeTier"), RETRY_INFO), [],
        QUOTA),
    Recorded("gemini 429 quota text only", 429, google_error(
        429, "RESOURCE_EXHAUSTED", "You exceeded your current quota, please check your plan "
        "and billing details."), [], QUOTA),
    Recorded("gemini 429 resource exhausted", 429, google_error(
        429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."), [], RATE),
    Recorded("gemini 400 api key invalid", 400, google_error(
        400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.",
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}),
        [], AUTH),
    Recorded("gemini 400 user location", 400, google_error(
        400, "FAILED_PRECONDITION", "User location is not supported for the API use."), [],
        DENIED),
    Recorded("gemini 400 invalid argument", 400, google_error(
        400, "INVALID_ARGUMENT", 'Invalid JSON payload received. Unknown name "foo".'), [],
        CLIENT),
    Recorded("gemini 404 model", 404, google_error(
        404, "NOT_FOUND", "models/gemini-9.0-pro is not found for API version v1main."), [],
        MODEL),
    Recorded("gemini 503 model overloaded", 503, google_error(
        503, "UNAVAILABLE", "The model is overloaded. Please try again later."), [],
        OVERLOADED),
    # Mistral
    Recorded("mistral 429 rate_limited", 429, json.dumps({
        "object": "error", "message": "Rate limit exceeded", "type": "rate_limited",
        "param": None, "code": "1300"}), [], RATE),
    Recorded("mistral 429 bare message", 429, '{"message":"Requests rate limit exceeded"}', [],
        RATE),
    Recorded("mistral 429 capacity", 429, json.dumps({
        "object": "error", "message": "Service tier capacity exceeded for this model.",
        "type": "service_tier_capacity_exceeded", "param": None, "code": "3505"}), [],
        OVERLOADED),
    # Local servers, gateways, CDNs
    Recorded("ollama 404 model", 404, openai_error(
        'model "llama3.3" not found, try pulling it first', "api_error", None), [], MODEL),
    Recorded("ollama 503 queue full", 503, json.dumps(
        {"error": "server busy, please try again.  maximum pending requests exceeded"}), [],
        OVERLOADED),
    Recorded("queue full is not a rate limit", 429, "Too many requests in queue", [],
        OVERLOADED),
    Recorded("cloudflare 403 page", 403, "<!DOCTYPE html><title>Attention Required! | "
        "Cloudflare</title><h1>Sorry, you have been blocked</h1>", [], DENIED),
    Recorded("google 404 page for a wrong path", 404, "<p>The requested URL <code>/v1beta/"
        "models/gemini-pro:streamGenerate</code> was not found on this server.</p>", [], CLIENT),
    Recorded("nginx 502 page", 502, "<html><head><title>502 Bad Gateway</title></head></html>",
        [], SERVER),
    Recorded("plain 403 is not an auth lockout", 403, "Forbidden", [], DENIED),
    Recorded("403 quota", 403, '{"error":{"code":403,"message":"Quota exceeded for this key"}}',
        [], QUOTA),
    Recorded("403 rate limit", 403, '{"error":"Rate limit exceeded, slow down"}', [], RATE),
    Recorded("409 quota", 409, '{"error":{"message":"Monthly quota exhausted"}}', [], QUOTA),
    Recorded("409 conflict", 409, '{"error":{"message":"Conflict"}}', [], CLIENT),
    Recorded("408 request timeout", 408, "", [], (C.TIMEOUT, True, S.ACCOUNT, P.LIGHT)),
    Recorded("301 redirect", 301, "Moved Permanently", [],
        (C.UPSTREAM_PROTOCOL_ERROR, True, S.ACCOUNT, P.LIGHT)),
    Recorded("plain 429", 429, "", [], RATE),
]  # fmt: skip


@pytest.mark.parametrize("case", RECORDED, ids=[case.name for case in RECORDED])
def test_recorded_provider_error_gets_the_expected_decision(case: Recorded) -> None:
    decision = classify(case.status, case.body, case.headers, phase=case.phase)
    assert summary(decision) == case.expected


def test_reason_names_the_status_and_the_body_signal() -> None:
    body = openai_error("You exceeded your current quota.", "insufficient_quota", None)
    assert classify(429, body).reason == "status 429 + body 'insufficient_quota'"


def test_reason_names_a_status_embedded_in_a_stream_error() -> None:
    body = "data: " + openrouter_error(502, "Provider returned error") + "\n\n"
    assert classify(200, body, phase=MID).reason == "status 200 + embedded 502"


def test_penalize_is_true_exactly_when_there_is_a_penalty() -> None:
    assert [classify(s).penalize for s in (400, 500, 401)] == [False, True, True]


def test_protocol_does_not_change_a_decision() -> None:
    body = anthropic_error("overloaded_error", "Overloaded")
    assert classify(529, body, protocol=OPENAI) == classify(529, body, protocol=ANTHROPIC)


# --- cooldown hints ------------------------------------------------------------


class Hint(NamedTuple):
    name: str
    status: int
    headers: list[tuple[str, str]]
    body: str
    expected: tuple[float | None, str | None, bool]


HINTS: list[Hint] = [
    Hint("retry-after seconds", 429, [("Retry-After", "30")], "", (30.0, "retry-after", False)),
    Hint("retry-after decimal seconds", 429, [("retry-after", "1.5")], "",
         (1.5, "retry-after", False)),
    Hint("retry-after http-date", 429, [("retry-after", "Tue, 14 Nov 2023 22:14:20 GMT")], "",
         (60.0, "retry-after", False)),
    Hint("retry-after http-date without zone is UTC", 503,
         [("retry-after", "Tue, 14 Nov 2023 22:14:20 -0000")], "", (60.0, "retry-after", False)),
    Hint("retry-after date in the past is zero", 429,
         [("retry-after", "Tue, 14 Nov 2023 22:00:00 GMT")], "", (0.0, "retry-after", True)),
    Hint("retry-after invalid is ignored", 429, [("retry-after", "soon")], "",
         (None, None, False)),
    Hint("retry-after negative is ignored", 429, [("retry-after", "-5")], "",
         (None, None, False)),
    Hint("retry-after huge is clamped", 429, [("retry-after", "99999999999999999999")], "",
         (MAX_COOLDOWN, "retry-after", True)),
    Hint("retry-after zero", 429, [("retry-after", "0")], "", (0.0, "retry-after", False)),
    Hint("retry-after-ms wins over retry-after", 429,
         [("retry-after", "2"), ("retry-after-ms", "1500")], "", (1.5, "retry-after-ms", False)),
    Hint("header names are case-insensitive", 429, [("RETRY-AFTER", "7")], "",
         (7.0, "retry-after", False)),
    Hint("first of repeated headers wins", 429, [("retry-after", "7"), ("retry-after", "9")],
         "", (7.0, "retry-after", False)),
    Hint("retry-after on a 503", 503, [("retry-after", "120")], "",
         (120.0, "retry-after", False)),
    Hint("go duration minutes", 429,
         [("x-ratelimit-remaining-requests", "0"), ("x-ratelimit-reset-requests", "6m0s")], "",
         (360.0, "x-ratelimit-reset-requests", False)),
    Hint("go duration fractional", 429,
         [("x-ratelimit-remaining-requests", "0"), ("x-ratelimit-reset-requests", "2m59.56s")],
         "", (179.56, "x-ratelimit-reset-requests", False)),
    Hint("go duration milliseconds", 429,
         [("x-ratelimit-remaining-tokens", "0"), ("x-ratelimit-reset-tokens", "500ms")], "",
         (0.5, "x-ratelimit-reset-tokens", False)),
    Hint("groq tokens reset", 429,
         [("x-ratelimit-remaining-tokens", "0"), ("x-ratelimit-reset-tokens", "7.66s")], "",
         (7.66, "x-ratelimit-reset-tokens", False)),
    Hint("exhausted window wins over one with room", 429, OPENAI_RATE_HEADERS, "",
         (2.5, "x-ratelimit-reset-tokens", False)),
    Hint("window with room left is no hint", 429,
         [("x-ratelimit-remaining-requests", "12"), ("x-ratelimit-reset-requests", "20s")], "",
         (None, None, False)),
    Hint("window without a remaining count counts", 429,
         [("x-ratelimit-reset-requests", "20s")], "", (20.0, "x-ratelimit-reset-requests", False)),
    Hint("anthropic rfc 3339 reset", 429,
         [("anthropic-ratelimit-tokens-remaining", "0"),
          ("anthropic-ratelimit-tokens-reset", "2023-11-14T22:14:20Z")], "",
         (60.0, "anthropic-ratelimit-tokens-reset", False)),
    Hint("anthropic latest exhausted window", 429,
         [("anthropic-ratelimit-requests-remaining", "0"),
          ("anthropic-ratelimit-requests-reset", "2023-11-14T22:13:30Z"),
          ("anthropic-ratelimit-input-tokens-remaining", "0"),
          ("anthropic-ratelimit-input-tokens-reset", "2023-11-14T22:14:00Z")], "",
         (40.0, "anthropic-ratelimit-input-tokens-reset", False)),
    Hint("openrouter epoch milliseconds", 429,
         [("X-RateLimit-Remaining", "0"), ("X-RateLimit-Reset", "1700000042000")], "",
         (42.0, "x-ratelimit-reset", False)),
    Hint("epoch seconds", 429, [("x-ratelimit-reset", "1700000100")], "",
         (100.0, "x-ratelimit-reset", False)),
    Hint("retry-after wins over a window", 429,
         [("x-ratelimit-reset-tokens", "9s"), ("retry-after", "3")], "",
         (3.0, "retry-after", False)),
    Hint("gemini retryDelay", 429, [], google_error(
        429, "RESOURCE_EXHAUSTED", "x", {**RETRY_INFO, "retryDelay": "45.837906927s"}),
         (45.837906927, "body:retryDelay", False)),
    Hint("try again in (message)", 429, [], openai_error(
        "Rate limit reached. Please try again in 1m30s.", "tokens", "rate_limit_exceeded"),
         (90.0, "body:try again in", False)),
    Hint("try again in words", 429, [], '{"message": "Please try again in 20 seconds"}',
         (20.0, "body:try again in", False)),
    Hint("regain access on", 400, [], anthropic_error(
        "invalid_request_error", "You have reached your specified API usage limits. You will "
        "regain access on 2023-11-15 at 00:00 UTC."), (6400.0, "body:regain access on", False)),
    Hint("no hint for a client error", 400, [("retry-after", "30")], "", (None, None, False)),
    Hint("window resets are not a server error hint", 500,
         [("x-ratelimit-remaining-tokens", "0"), ("x-ratelimit-reset-tokens", "9s")], "",
         (None, None, False)),
]  # fmt: skip


@pytest.mark.parametrize("case", HINTS, ids=[case.name for case in HINTS])
def test_cooldown_hint_is_read_from_the_provider(case: Hint) -> None:
    decision = classify(case.status, case.body, case.headers)
    assert (decision.cooldown, decision.cooldown_source, decision.cooldown_clamped) == (
        pytest.approx(case.expected[0]) if case.expected[0] is not None else None,
        case.expected[1],
        case.expected[2],
    )


@pytest.mark.parametrize("now_wall", [math.nan, math.inf, -math.inf])
def test_dates_are_ignored_when_now_wall_is_not_finite(now_wall: float) -> None:
    headers = [("retry-after", "Tue, 14 Nov 2023 22:14:20 GMT")]
    assert classify(429, b"", headers, now_wall=now_wall).cooldown is None


def test_delta_seconds_need_no_clock() -> None:
    assert classify(429, b"", [("retry-after", "5")], now_wall=math.nan).cooldown == 5.0


def test_later_hints_apply_when_an_earlier_one_is_invalid() -> None:
    headers = [("retry-after", "garbage"), ("x-ratelimit-reset-tokens", "4s")]
    assert classify(429, b"", headers).cooldown_source == "x-ratelimit-reset-tokens"


# --- phases and transport failures -------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 502, 503, 529, 401, 402, 403, 404, 408, 200])
def test_mid_stream_status_never_fails_over(status: int) -> None:
    assert classify(status, phase=MID).failover is False


@pytest.mark.parametrize("failure", list(TransportFailure))
def test_mid_stream_transport_failure_never_fails_over(failure: TransportFailure) -> None:
    assert classify(200, failure=failure, phase=MID).failover is False


TRANSPORT_TABLE = [
    (TransportFailure.CONNECT_REFUSED, (C.TRANSPORT, True, S.ACCOUNT, P.FULL)),
    (TransportFailure.DNS, (C.TRANSPORT, True, S.NONE, P.NONE)),
    (TransportFailure.TLS, (C.TRANSPORT, True, S.ACCOUNT, P.FULL)),
    (TransportFailure.PROXY, (C.TRANSPORT, True, S.ACCOUNT, P.FULL)),
    (TransportFailure.CONNECT_TIMEOUT, (C.TIMEOUT, True, S.ACCOUNT, P.FULL)),
    (TransportFailure.FIRST_BYTE_TIMEOUT, (C.TIMEOUT, True, S.ACCOUNT, P.LIGHT)),
    (TransportFailure.IDLE_TIMEOUT, (C.TIMEOUT, True, S.ACCOUNT, P.LIGHT)),
    (TransportFailure.RESET, (C.TRANSPORT, True, S.ACCOUNT, P.LIGHT)),
    (TransportFailure.CLOSED, (C.TRANSPORT, True, S.ACCOUNT, P.LIGHT)),
    (TransportFailure.MALFORMED, (C.UPSTREAM_PROTOCOL_ERROR, True, S.ACCOUNT, P.LIGHT)),
    (TransportFailure.LOCAL, (C.INTERNAL, False, S.NONE, P.NONE)),
]


def test_transport_table_covers_every_failure_kind() -> None:
    assert {failure for failure, _ in TRANSPORT_TABLE} == set(TransportFailure)


@pytest.mark.parametrize(("failure", "expected"), TRANSPORT_TABLE, ids=str)
def test_transport_failure_before_the_first_byte(
    failure: TransportFailure, expected: tuple[FailureCategory, bool, FailureScope, Penalty]
) -> None:
    assert summary(classify(None, failure=failure, phase=AttemptPhase.CONNECT)) == expected


def test_transport_failure_wins_over_a_status() -> None:
    decision = classify(429, b"", [("retry-after", "9")], failure=TransportFailure.IDLE_TIMEOUT)
    assert (decision.category, decision.cooldown) == (C.TIMEOUT, None)


def test_local_failure_is_never_blamed_on_the_upstream() -> None:
    decision = classify(500, failure=TransportFailure.LOCAL)
    assert (decision.penalize, decision.scope) == (False, S.NONE)


# --- odd statuses and the body cap ---------------------------------------------------


@pytest.mark.parametrize(
    "status",
    [-1, 0, 99, 600, 999, 10**30, -(10**5000)],
    ids=["-1", "0", "99", "600", "999", "1e30", "minus-1e5000"],
)
def test_status_out_of_range_is_unknown_with_a_light_penalty(status: int) -> None:
    assert summary(classify(status)) == (C.UNKNOWN, True, S.ACCOUNT, P.LIGHT)


def test_no_status_and_no_failure_is_unknown() -> None:
    assert classify(None).category is C.UNKNOWN


def test_signal_past_the_snippet_cap_is_ignored() -> None:
    body = b" " * BODY_SNIPPET_CAP + b'{"error": {"code": "insufficient_quota"}}'
    assert classify(429, body).category is C.RATE_LIMITED


def test_str_body_past_the_cap_is_ignored() -> None:
    body = "é" * BODY_SNIPPET_CAP + "insufficient_quota"
    assert classify(429, body).category is C.RATE_LIMITED


def test_outcome_keeps_only_the_snippet() -> None:
    outcome = UpstreamOutcome(
        phase=HEAD, protocol=OPENAI, now_wall=NOW, status=500, body=b"x" * 10_000_000
    )
    assert len(outcome.body) == BODY_SNIPPET_CAP


def test_str_body_is_kept_as_at_most_cap_bytes() -> None:
    outcome = UpstreamOutcome(
        phase=HEAD, protocol=OPENAI, now_wall=NOW, status=500, body="€" * 5000
    )
    assert len(outcome.body) <= BODY_SNIPPET_CAP


def test_outcome_keeps_only_the_first_header_lines() -> None:
    headers = [("x-filler", "1")] * (MAX_HEADERS + 10)
    outcome = UpstreamOutcome(
        phase=HEAD, protocol=OPENAI, now_wall=NOW, status=500, headers=headers
    )
    assert len(outcome.headers) == MAX_HEADERS


def test_truncated_json_still_yields_its_error_code() -> None:
    body = json.dumps({"error": {"code": "insufficient_quota", "message": "x" * 5000}})
    assert classify(429, body[:100]).category is C.QUOTA_EXHAUSTED


def test_deeply_nested_json_does_not_raise() -> None:
    assert classify(429, "[" * 4000 + "]" * 4000).category is C.RATE_LIMITED


def test_model_output_in_a_cut_stream_is_not_read_as_an_error() -> None:
    body = 'data: {"choices":[{"delta":{"content":"rate limit exceeded"}}]}\n\ndata: {"choi'
    assert classify(200, body, phase=MID).category is C.UPSTREAM_PROTOCOL_ERROR


# --- the signal table itself ---------------------------------------------------------


def test_signal_patterns_are_lower_case() -> None:
    # Messages and tokens are lower-cased before matching (see the module).
    assert [s.label for s in _SIGNALS if s.pattern.pattern.lower() != s.pattern.pattern] == []


def test_signal_labels_are_unique() -> None:
    labels = [s.label for s in _SIGNALS]
    assert len(labels) == len(set(labels))


def test_every_signal_is_heard_by_some_status() -> None:
    rules = [*_STATUS_RULES.values(), *_CLASS_RULES.values()]
    heard = {signal.label for rule in rules for signal in _candidates(rule)}
    assert [s.label for s in _SIGNALS if s.label not in heard] == []


def test_every_signal_names_its_source() -> None:
    assert [s.label for s in _SIGNALS if not s.source] == []


# --- properties ------------------------------------------------------------------------

HEADER_NAMES = [
    "retry-after", "Retry-After", "retry-after-ms", "x-ratelimit-reset", "x-ratelimit-remaining",
    "x-ratelimit-reset-requests", "x-ratelimit-reset-tokens", "x-ratelimit-remaining-tokens",
    "x-ratelimit-remaining-requests", "anthropic-ratelimit-requests-reset",
    "anthropic-ratelimit-requests-remaining", "anthropic-ratelimit-tokens-reset",
]  # fmt: skip
HEADER_VALUES = [
    "", "0", "-1", "1.5", "1e309", "nan", "inf", "99999999999999999999999999999999999999",
    "Wed, 21 Oct 2015 07:28:00 GMT", "Fri, 31 Dec 9999 23:59:59 -2359", "6m0s", "2m59.56s",
    "500ms", ".5s", "1h", "2023-11-14T22:14:20Z", "9999-12-31T23:59:59-23:59",
    "0001-01-01T00:00:00+23:59", "1700000042000", "1700000100", "٣", "\x00",
]  # fmt: skip
headers_strategy = st.lists(
    st.tuples(
        st.sampled_from(HEADER_NAMES) | st.text(max_size=40),
        st.sampled_from(HEADER_VALUES) | st.text(max_size=60),
    ),
    max_size=12,
)
bodies = st.one_of(
    st.binary(max_size=BODY_SNIPPET_CAP + 600),
    st.text(max_size=BODY_SNIPPET_CAP + 600),
    st.sampled_from([case.body for case in RECORDED]),
)
statuses = st.none() | st.integers() | st.sampled_from([400, 401, 402, 403, 404, 429, 503, 529])
walls = st.floats(allow_nan=True, allow_infinity=True)
outcomes = st.builds(
    UpstreamOutcome,
    phase=st.sampled_from(AttemptPhase),
    protocol=st.sampled_from(Protocol),
    now_wall=walls,
    status=statuses,
    headers=headers_strategy,
    body=bodies,
    failure=st.none() | st.sampled_from(TransportFailure),
    provider=st.none() | st.text(max_size=12),
)


@given(outcomes)
def test_classifier_is_total(outcome: UpstreamOutcome) -> None:
    assert isinstance(classify_outcome(outcome), RetryDecision)


@given(outcomes)
def test_cooldown_is_never_negative_nan_or_above_the_cap(outcome: UpstreamOutcome) -> None:
    cooldown = classify_outcome(outcome).cooldown
    assert cooldown is None or 0.0 <= cooldown <= MAX_COOLDOWN


@given(outcomes)
def test_cooldown_and_its_source_come_together(outcome: UpstreamOutcome) -> None:
    decision = classify_outcome(outcome)
    assert (decision.cooldown is None) == (decision.cooldown_source is None)


@given(outcomes)
def test_nothing_set_aside_means_no_cooldown(outcome: UpstreamOutcome) -> None:
    decision = classify_outcome(outcome)
    assert decision.scope is not S.NONE or decision.cooldown is None


@given(outcomes.map(lambda outcome: attrs.evolve(outcome, phase=MID)))
def test_mid_stream_phase_never_fails_over(outcome: UpstreamOutcome) -> None:
    assert classify_outcome(outcome).failover is False


@given(outcomes)
def test_client_fault_categories_never_penalize_fail_over_or_set_aside(
    outcome: UpstreamOutcome,
) -> None:
    decision = classify_outcome(outcome)
    if decision.category in (C.BAD_REQUEST, C.CONTEXT_TOO_LONG):
        assert (decision.failover, decision.scope, decision.penalty) == (False, S.NONE, P.NONE)


@given(st.sampled_from([404, 405, 409, 410, 413, 415, 422, 451]), bodies, headers_strategy)
def test_client_error_statuses_never_penalize(
    status: int, body: bytes | str, headers: list[tuple[str, str]]
) -> None:
    assert classify(status, body, headers).penalize is False


ACCOUNT_FAULT_LABELS = {s.label for s in _SIGNALS if s.account_fault}


@given(bodies, headers_strategy)
def test_400_penalizes_only_for_an_account_fault_signal(
    body: bytes | str, headers: list[tuple[str, str]]
) -> None:
    decision = classify(400, body, headers)
    assert not decision.penalize or decision.reason.split("'")[1] in ACCOUNT_FAULT_LABELS


# A body that fills the snippet exactly (a recorded or random head, padded),
# and anything at all after it: the tail must make no difference.
snippet_heads = st.sampled_from([case.body for case in RECORDED]) | st.text(max_size=300)
tails = st.sampled_from([case.body for case in RECORDED]) | st.text(max_size=300)
cap_statuses = st.sampled_from([400, 403, 404, 429, 200])


def _fill(head: str) -> str:
    return (head + " " * BODY_SNIPPET_CAP)[:BODY_SNIPPET_CAP]


@given(snippet_heads, tails, cap_statuses)
def test_only_the_first_snippet_bytes_matter(head: str, tail: str, status: int) -> None:
    snippet = _fill(head).encode()[:BODY_SNIPPET_CAP]
    assert classify(status, snippet + tail.encode()) == classify(status, snippet)


@given(snippet_heads, tails, cap_statuses)
def test_only_the_first_snippet_characters_matter(head: str, tail: str, status: int) -> None:
    assert classify(status, _fill(head) + tail) == classify(status, _fill(head))


@given(outcomes)
def test_decision_is_deterministic(outcome: UpstreamOutcome) -> None:
    assert classify_outcome(outcome) == classify_outcome(outcome)
