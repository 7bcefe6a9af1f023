"""The retry classifier: what an upstream failure means, and what to do about it.

Theory of operation. Every failed attempt (a non-2xx head, an error event in a
stream, a transport failure, a timeout) is described once by the shell as an
`UpstreamOutcome` and turned by `classify_outcome` into one `RetryDecision`:
a category, whether another account may be tried (`failover`), what should
be set aside and for how long (`scope`, `cooldown`), and whether the outcome
counts as a fault against that scope (`penalty`). The health module applies
the decision; the request machine acts on `failover`. Nothing else in the
core looks at statuses or error bodies, so classification and its health
consequences cannot drift apart (the reference computed them in two layers).

The function is total: any status (negative, huge), any headers, any body
bytes and any `now_wall` (nan, inf) give a decision, never an exception.
Upstream trouble is data (docs/architecture.md, "The one rule").

How a decision is made, in order:

1. A transport failure (`failure`) wins over any status: `_TRANSPORT`.
2. Otherwise the status picks a `_Rule` (`_STATUS_RULES`, then the status
   class): a default category and the few categories the body may refine
   it to. A 2xx outcome (an error event inside a 200 stream) first looks
   for a status embedded in the body (OpenRouter's numeric `error.code`).
3. The body snippet (at most `BODY_SNIPPET_CAP` bytes, the rest is never
   read) is reduced to structured tokens (`code`, `type`, `status`,
   `reason`, Gemini `quotaId`) and messages, from JSON (the snippet, or the
   `data:` lines of an SSE frame) when it parses, else by lenient regexes
   (a snippet cut in the middle of a JSON document).
4. `_SIGNALS` is scanned in order; the first signal the rule accepts decides
   the category (and may narrow the scope). Order is precedence: context
   and model signals first, then per-day/per-minute windows, quota, auth,
   permission, overload, rate limit, and generic types last.
5. `_CATEGORY_DEFAULTS` gives failover, scope and penalty; `mid_stream`
   forces `failover=False` (bytes already reached the client).
6. If something is set aside, the cooldown hint is read from headers and
   body (`_cooldown`), clamped to [0, MAX_COOLDOWN].

Client errors never hurt an account: a 400, a 413, a 409/422 without a
quota signal and any context-length error are `bad_request` or
`context_too_long`, with no failover, no scope and no penalty.
The one exception is a short list of *account-fault* signals that a 400 can
carry but that no request content can cause (Anthropic "credit balance is
too low", Gemini `API_KEY_INVALID`, "User location is not supported"):
passing those through would serve a billing error while other accounts are
fine. A plain 403 is `permission_denied`, never a long auth lockout, and a
plain 404 is `bad_request` (a client on a wrong path must not cool keys).
"""

from __future__ import annotations

import enum
import functools
import itertools
import re
from collections.abc import Iterable, Mapping

import attrs

from eggpool.core._retry_body import Body, read_body
from eggpool.core._retry_hints import MAX_COOLDOWN, cooldown_hint, header_map
from eggpool.core.config import Protocol

__all__ = [
    "BODY_SNIPPET_CAP",
    "MAX_COOLDOWN",
    "MAX_HEADERS",
    "AttemptPhase",
    "FailureCategory",
    "FailureScope",
    "Penalty",
    "RetryDecision",
    "TransportFailure",
    "UpstreamOutcome",
    "classify_outcome",
]

BODY_SNIPPET_CAP = 4096
"""Bytes of an error body the classifier reads; anything after is ignored."""

MAX_HEADERS = 256
"""Header lines kept from a response; a real provider sends a few dozen."""


class AttemptPhase(enum.StrEnum):
    """How far the attempt got when it failed."""

    CONNECT = "connect"  # no response head yet (connecting, sending, waiting)
    RESPONSE_HEAD = "response_head"  # status known, nothing sent to the client yet
    MID_STREAM = "mid_stream"  # the first byte went to the client: no failover


class TransportFailure(enum.StrEnum):
    """A failure with no (complete) HTTP answer behind it."""

    CONNECT_REFUSED = "connect_refused"
    DNS = "dns"
    TLS = "tls"
    PROXY = "proxy"  # the account's outbound SOCKS5 / HTTP CONNECT proxy failed
    CONNECT_TIMEOUT = "connect_timeout"
    FIRST_BYTE_TIMEOUT = "first_byte_timeout"
    IDLE_TIMEOUT = "idle_timeout"
    RESET = "reset"
    CLOSED = "closed"  # clean close before the response (or stream) was complete
    MALFORMED = "malformed"  # bytes that are not valid HTTP / SSE / JSON
    LOCAL = "local"  # our own code failed: never blamed on the upstream


class FailureCategory(enum.StrEnum):
    RATE_LIMITED = "rate_limited"
    QUOTA_EXHAUSTED = "quota_exhausted"
    AUTH_FAILED = "auth_failed"
    PERMISSION_DENIED = "permission_denied"
    MODEL_UNAVAILABLE = "model_unavailable"
    CONTEXT_TOO_LONG = "context_too_long"
    BAD_REQUEST = "bad_request"
    OVERLOADED = "overloaded"
    SERVER_ERROR = "server_error"
    TRANSPORT = "transport"
    TIMEOUT = "timeout"
    UPSTREAM_PROTOCOL_ERROR = "upstream_protocol_error"
    INTERNAL = "internal"
    UNKNOWN = "unknown"


class FailureScope(enum.StrEnum):
    """What the outcome says something about, and so what may be set aside."""

    ACCOUNT = "account"
    ACCOUNT_MODEL = "account_model"
    PROVIDER = "provider"
    NONE = "none"


class Penalty(enum.StrEnum):
    """How much the outcome counts as a fault of its scope (error rate, breaker)."""

    NONE = "none"
    LIGHT = "light"
    FULL = "full"


def _snippet(body: bytes | bytearray | str) -> bytes:
    if isinstance(body, str):
        # A character is at least one byte, so this prefix holds the first CAP bytes.
        return body[:BODY_SNIPPET_CAP].encode("utf-8", "replace")[:BODY_SNIPPET_CAP]
    return bytes(body[:BODY_SNIPPET_CAP])


def _header_lines(headers: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple(itertools.islice(headers, MAX_HEADERS))


@attrs.frozen(kw_only=True, slots=True)
class UpstreamOutcome:
    """One failed attempt, as the shell saw it. `now_wall` is Unix seconds."""

    phase: AttemptPhase
    protocol: Protocol
    now_wall: float
    status: int | None = None
    headers: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_header_lines)
    body: bytes = attrs.field(default=b"", converter=_snippet)
    failure: TransportFailure | None = None
    provider: str | None = None


@attrs.frozen(kw_only=True, slots=True)
class RetryDecision:
    """What an outcome means. `cooldown` is the provider's hint in seconds, or None."""

    category: FailureCategory
    failover: bool
    scope: FailureScope
    penalty: Penalty
    cooldown: float | None = None
    cooldown_source: str | None = None
    cooldown_clamped: bool = False
    reason: str = ""

    @property
    def penalize(self) -> bool:
        return self.penalty is not Penalty.NONE


_C = FailureCategory
_S = FailureScope
_P = Penalty

# category -> (failover, scope, penalty) when nothing more specific applies.
# Rate limits, quotas and missing models set the account (or account x model)
# aside but are not faults: a busy account is healthy, and counting 429s
# towards the circuit breaker empties pools (user-needs, gpt-load #143).
_CATEGORY_DEFAULTS: Mapping[FailureCategory, tuple[bool, FailureScope, Penalty]] = {
    _C.RATE_LIMITED: (True, _S.ACCOUNT, _P.NONE),
    _C.QUOTA_EXHAUSTED: (True, _S.ACCOUNT, _P.NONE),
    _C.AUTH_FAILED: (True, _S.ACCOUNT, _P.FULL),
    _C.PERMISSION_DENIED: (True, _S.ACCOUNT, _P.FULL),
    _C.MODEL_UNAVAILABLE: (True, _S.ACCOUNT_MODEL, _P.NONE),
    _C.CONTEXT_TOO_LONG: (False, _S.NONE, _P.NONE),
    _C.BAD_REQUEST: (False, _S.NONE, _P.NONE),
    _C.OVERLOADED: (True, _S.ACCOUNT, _P.LIGHT),
    _C.SERVER_ERROR: (True, _S.ACCOUNT, _P.LIGHT),
    _C.TRANSPORT: (True, _S.ACCOUNT, _P.FULL),
    _C.TIMEOUT: (True, _S.ACCOUNT, _P.LIGHT),
    _C.UPSTREAM_PROTOCOL_ERROR: (True, _S.ACCOUNT, _P.LIGHT),
    _C.INTERNAL: (False, _S.NONE, _P.NONE),
    _C.UNKNOWN: (True, _S.ACCOUNT, _P.LIGHT),
}

_T = TransportFailure
# DNS says nothing about the account (no packet reached the provider); a local
# failure is ours. Resets and late timeouts are often the network's, so light.
_TRANSPORT: Mapping[TransportFailure, tuple[FailureCategory, FailureScope, Penalty]] = {
    _T.CONNECT_REFUSED: (_C.TRANSPORT, _S.ACCOUNT, _P.FULL),
    _T.DNS: (_C.TRANSPORT, _S.NONE, _P.NONE),
    _T.TLS: (_C.TRANSPORT, _S.ACCOUNT, _P.FULL),
    _T.PROXY: (_C.TRANSPORT, _S.ACCOUNT, _P.FULL),
    _T.CONNECT_TIMEOUT: (_C.TIMEOUT, _S.ACCOUNT, _P.FULL),
    _T.FIRST_BYTE_TIMEOUT: (_C.TIMEOUT, _S.ACCOUNT, _P.LIGHT),
    _T.IDLE_TIMEOUT: (_C.TIMEOUT, _S.ACCOUNT, _P.LIGHT),
    _T.RESET: (_C.TRANSPORT, _S.ACCOUNT, _P.LIGHT),
    _T.CLOSED: (_C.TRANSPORT, _S.ACCOUNT, _P.LIGHT),
    _T.MALFORMED: (_C.UPSTREAM_PROTOCOL_ERROR, _S.ACCOUNT, _P.LIGHT),
    _T.LOCAL: (_C.INTERNAL, _S.NONE, _P.NONE),
}


@attrs.frozen
class _Rule:
    """A status's default category and what body signals may turn it into."""

    category: FailureCategory
    refine: frozenset[FailureCategory] = frozenset()
    scope: FailureScope | None = None
    account_faults: bool = False  # trust account-fault signals despite a 4xx
    generic: bool = False  # a 2xx has no class of its own: broad types count too
    raw_text: bool = True  # search the whole snippet when no message was found


_QUOTA_OR_CLIENT = frozenset({_C.QUOTA_EXHAUSTED, _C.CONTEXT_TOO_LONG})
_STATUS_RULES: Mapping[int, _Rule] = {
    400: _Rule(_C.BAD_REQUEST, frozenset({_C.CONTEXT_TOO_LONG}), account_faults=True),
    401: _Rule(_C.AUTH_FAILED),
    402: _Rule(_C.QUOTA_EXHAUSTED),
    403: _Rule(
        _C.PERMISSION_DENIED,
        frozenset(
            {
                _C.AUTH_FAILED,
                _C.QUOTA_EXHAUSTED,
                _C.RATE_LIMITED,
                _C.MODEL_UNAVAILABLE,
                _C.BAD_REQUEST,
            }
        ),
    ),
    404: _Rule(_C.BAD_REQUEST, frozenset({_C.MODEL_UNAVAILABLE})),
    408: _Rule(_C.TIMEOUT),
    409: _Rule(_C.BAD_REQUEST, _QUOTA_OR_CLIENT),
    413: _Rule(_C.BAD_REQUEST, frozenset({_C.CONTEXT_TOO_LONG})),
    422: _Rule(_C.BAD_REQUEST, _QUOTA_OR_CLIENT),
    429: _Rule(_C.RATE_LIMITED, frozenset({_C.QUOTA_EXHAUSTED, _C.OVERLOADED})),
    500: _Rule(_C.SERVER_ERROR, frozenset({_C.OVERLOADED})),
    502: _Rule(_C.SERVER_ERROR, frozenset({_C.OVERLOADED})),
    503: _Rule(_C.OVERLOADED, frozenset({_C.RATE_LIMITED})),  # OpenAI's former 503 slow_down
    504: _Rule(_C.SERVER_ERROR, frozenset({_C.OVERLOADED})),
    529: _Rule(_C.OVERLOADED, scope=_S.PROVIDER),  # Anthropic: overloaded for everyone
}
_CLASS_RULES: Mapping[int, _Rule] = {
    1: _Rule(_C.UPSTREAM_PROTOCOL_ERROR),
    2: _Rule(_C.UPSTREAM_PROTOCOL_ERROR, frozenset(_C), generic=True, raw_text=False),
    3: _Rule(_C.UPSTREAM_PROTOCOL_ERROR),  # redirects are not followed: a wrong base URL
    4: _Rule(_C.BAD_REQUEST, frozenset({_C.CONTEXT_TOO_LONG})),
    5: _Rule(_C.SERVER_ERROR, frozenset({_C.OVERLOADED})),
}
_UNRECOGNIZED = _Rule(_C.UNKNOWN)


@attrs.frozen
class _Signal:
    """One recognisable thing in an error body, and the provider that sends it."""

    label: str  # shown in `reason`; stable, so it can be counted
    category: FailureCategory
    code: bool  # True: fullmatch a structured token; False: search the messages
    pattern: re.Pattern[str]
    source: str
    scope: FailureScope | None = None
    account_fault: bool = False  # only the account can cause it, even on a 400
    generic: bool = False  # a broad error type: decides only a 2xx outcome


def _sig(
    label: str,
    category: FailureCategory,
    where: str,
    pattern: str,
    source: str,
    *,
    scope: FailureScope | None = None,
    account_fault: bool = False,
    generic: bool = False,
) -> _Signal:
    flags = re.MULTILINE if where == "text" else 0  # `^` starts each message
    return _Signal(
        label,
        category,
        where == "code",
        re.compile(pattern, flags),
        source,
        scope,
        account_fault,
        generic,
    )


# The signal table. Order is precedence: the first entry the status rule
# accepts wins. `code` entries fullmatch structured tokens (error.code,
# error.type, status, reason, quotaId); `text` entries search the messages.
# Tokens and messages are lower-cased once, so patterns are written in lower
# case (a test checks) and compiled without IGNORECASE, which lets `re` skip
# ahead on a literal prefix: about 2.5x faster on a 4 KiB body.
_SIGNALS: tuple[_Signal, ...] = (
    # Context length: the client's request is too big for the model.
    _sig("context_length_exceeded", _C.CONTEXT_TOO_LONG, "code", r"context_length_exceeded",
         "OpenAI, Groq, OpenRouter"),
    _sig("prompt is too long", _C.CONTEXT_TOO_LONG, "text", r"prompt is too long", "Anthropic"),
    _sig("maximum context length", _C.CONTEXT_TOO_LONG, "text", r"maximum context length",
         "OpenAI, DeepSeek, Mistral, vLLM"),
    _sig("context window", _C.CONTEXT_TOO_LONG, "text", r"context[ _-](?:length|window)\b",
         "generic"),
    _sig("input token count exceeds", _C.CONTEXT_TOO_LONG, "text",
         r"input token count\b.{0,60}\bexceeds|exceeds the maximum number of tokens", "Gemini"),
    _sig("reduce the length", _C.CONTEXT_TOO_LONG, "text",
         r"reduce the length of the (?:messages|prompt|input)", "OpenAI, Groq"),
    _sig("input too long", _C.CONTEXT_TOO_LONG, "text", r"input (?:is )?too long",
         "Bedrock-style gateways, TGI"),
    # Requests that no endpoint of the model can serve (tools, images): the
    # client's doing, even on an OpenRouter 404. Before the model signals.
    _sig("no endpoints support", _C.BAD_REQUEST, "text", r"no endpoints found that",
         "OpenRouter"),
    # A web server's page for a path it does not have, even one under /models/.
    _sig("requested url not found", _C.BAD_REQUEST, "text",
         r"requested url\b[^\n]{0,200}?not found", "Apache, Google front end (HTML 404 pages)"),
    # Model missing for this account (does not exist, no access, withdrawn).
    # Every text names the model, so "404 Not Found" for a wrong path never matches.
    _sig("model_not_found", _C.MODEL_UNAVAILABLE, "code", r"model_not_found", "OpenAI, Groq"),
    _sig("model not found", _C.MODEL_UNAVAILABLE, "text",
         r"models?\b[^\n]{0,120}?(?:does not exist|not found|no longer available"
         r"|has been deprecated|been decommissioned)",
         "OpenAI, Groq, Gemini, Ollama"),
    _sig("no access to model", _C.MODEL_UNAVAILABLE, "text",
         r"(?:does not have|do not have|has no) access to (?:the )?model", "OpenAI (403)"),
    _sig("unknown model", _C.MODEL_UNAVAILABLE, "text", r"(?:no such|unknown|invalid) model\b",
         "Mistral, vLLM, generic"),
    _sig("model: <id>", _C.MODEL_UNAVAILABLE, "text", r"^model: [^\s]",
         "Anthropic not_found_error"),
    _sig("no endpoints found", _C.MODEL_UNAVAILABLE, "text", r"no endpoints found",
         "OpenRouter (e.g. data-policy filter)"),
    # Moderation: the client's input was refused (OpenRouter sends a 403).
    _sig("input flagged", _C.BAD_REQUEST, "text",
         r"requires moderation|(?:input|prompt|content|message) (?:was |has been )?flagged",
         "OpenRouter"),
    # Daily windows behave like quotas, per-minute quotas like rate limits;
    # both come before the plain quota text that Gemini uses for either.
    _sig("quota per day", _C.QUOTA_EXHAUSTED, "code", r".*per_?day.*", "Gemini quotaId"),
    _sig("free-models-per-day", _C.QUOTA_EXHAUSTED, "text", r"free-models-per-day",
         "OpenRouter"),
    _sig("per day (RPD/TPD)", _C.QUOTA_EXHAUSTED, "text", r"per day\b|\(rpd\)|\(tpd\)",
         "OpenAI, Groq"),
    _sig("quota per minute", _C.RATE_LIMITED, "code", r".*per_?minute.*", "Gemini quotaId"),
    _sig("free-models-per-min", _C.RATE_LIMITED, "text", r"free-models-per-min", "OpenRouter"),
    # Quota, credits, billing: nothing to do until the operator pays or it resets.
    _sig("insufficient_quota", _C.QUOTA_EXHAUSTED, "code", r"insufficient_quota", "OpenAI"),
    _sig("billing code", _C.QUOTA_EXHAUSTED, "code",
         r"credit_balance_exhausted|billing_hard_limit_reached|billing_not_active"
         r"|enforced_spend_limit_reached|billing_error|payment_required"
         r"|insufficient_(?:balance|credits)",
         "OpenAI, Anthropic (402, 429 details), OpenRouter", account_fault=True),
    _sig("credit balance is too low", _C.QUOTA_EXHAUSTED, "text", r"credit balance is too low",
         "Anthropic (400)", account_fault=True),
    _sig("usage limits reached", _C.QUOTA_EXHAUSTED, "text",
         r"reached your specified api usage limits", "Anthropic (400)", account_fault=True),
    _sig("insufficient balance", _C.QUOTA_EXHAUSTED, "text",
         r"insufficient[ _](?:quota|credits?|balance|funds)", "OpenAI, OpenRouter, DeepSeek"),
    _sig("quota exceeded", _C.QUOTA_EXHAUSTED, "text",
         r"exceeded your current quota|quota\b[^\n]{0,20}\b(?:exhausted|exceeded)"
         r"|(?:exceeded|exhausted) (?:the |your )?quota|out of (?:credits|quota|tokens)",
         "OpenAI, Gemini, generic"),
    _sig("more credits", _C.QUOTA_EXHAUSTED, "text",
         r"requires more credits|add more credits|billing hard limit|payment required",
         "OpenRouter, OpenAI"),
    # Authentication: the key itself is bad.
    _sig("invalid api key code", _C.AUTH_FAILED, "code",
         r"invalid_api_key|authentication_error|api_key_invalid|unauthenticated"
         r"|invalid_authentication|account_deactivated",
         "OpenAI, Anthropic, Gemini", account_fault=True),
    _sig("invalid api key", _C.AUTH_FAILED, "text",
         r"api[ _-]?key (?:not valid|expired|is invalid|is disabled|has been disabled)"
         r"|(?:incorrect|invalid|expired|revoked) api[ _-]?key|invalid x-api-key"
         r"|authentication fails",
         "OpenAI, Anthropic, Gemini, DeepSeek, OpenRouter", account_fault=True),
    # Permission: the account may not do this from here (region, suspension).
    _sig("permission code", _C.PERMISSION_DENIED, "code",
         r"permission_error|permission_denied|unsupported_country_region_territory"
         r"|request_forbidden",
         "Anthropic, Gemini, OpenAI", account_fault=True),
    _sig("region not supported", _C.PERMISSION_DENIED, "text",
         r"(?:country|region|territory|location) (?:is )?not supported"
         r"|not available in your (?:country|region)",
         "OpenAI, Gemini", account_fault=True),
    _sig("account suspended", _C.PERMISSION_DENIED, "text",
         r"(?:account|organization) (?:is |has been )?(?:suspended|deactivated|disabled|banned)",
         "OpenAI, generic", account_fault=True),
    # OpenAI's ramp-up limit comes with type service_unavailable_error on a
    # 503 (429 today): the account's own traffic, so before the overload codes.
    _sig("slow_down", _C.RATE_LIMITED, "code", r"slow_down", "OpenAI (429, formerly 503)"),
    # Overload: the provider is short of capacity, not the account.
    _sig("overloaded_error", _C.OVERLOADED, "code", r"overloaded_error", "Anthropic (529)",
         scope=_S.PROVIDER),
    _sig("overloaded code", _C.OVERLOADED, "code",
         r"server_is_overloaded|service_unavailable_error|unavailable|overloaded",
         "OpenAI, Gemini"),
    # The reference's finding: a full queue is overload, not a rate limit.
    _sig("requests in queue", _C.OVERLOADED, "text",
         r"too many requests in (?:the )?queue|queue is full|maximum pending requests",
         "reference catalog, Ollama"),
    _sig("overloaded", _C.OVERLOADED, "text",
         r"overloaded\b|(?:over|at|no) capacity|capacity exceeded|server (?:is )?busy"
         r"|high demand",
         "Anthropic, OpenAI, Gemini, Mistral, DeepSeek, Azure"),
    # Rate limits. A limit named per model (OpenAI, Groq) or upstream of
    # OpenRouter for one model is set aside for that model only.
    _sig("rate limit for model", _C.RATE_LIMITED, "text",
         r"rate limit reached for (?:model )?[^\s]+ in organization", "OpenAI, Groq",
         scope=_S.ACCOUNT_MODEL),
    _sig("rate-limited upstream", _C.RATE_LIMITED, "text", r"rate-limited upstream",
         "OpenRouter", scope=_S.ACCOUNT_MODEL),
    _sig("rate limit code", _C.RATE_LIMITED, "code",
         r"rate_limit_exceeded|rate_limit_error|rate_limited|ratelimitexceeded"
         r"|too_many_requests",
         "OpenAI, Groq, Anthropic, Mistral, Gemini"),
    _sig("rate limit", _C.RATE_LIMITED, "text",
         r"rate[ _-]?limit|too many requests(?! in (?:the )?queue)|slow down|throttl"
         r"|too many concurrent|concurrency limit",
         "generic"),
    # Broad error types: they decide only an error event inside a 2xx stream.
    _sig("server error type", _C.SERVER_ERROR, "code",
         r"api_error|server_error|internal(?:_error)?", "Anthropic, OpenAI, Gemini",
         generic=True),
    _sig("timeout type", _C.TIMEOUT, "code", r"deadline_exceeded|timeout", "Gemini",
         generic=True),
    _sig("invalid request type", _C.BAD_REQUEST, "code",
         r"invalid_request_error|invalid_argument|bad_request|invalid_request",
         "OpenAI, Anthropic, Gemini", generic=True),
)  # fmt: skip


@functools.cache
def _candidates(rule: _Rule) -> tuple[_Signal, ...]:
    """The signals `rule` listens to, in table order (computed once per rule)."""
    allowed = rule.refine | {rule.category}
    return tuple(
        signal
        for signal in _SIGNALS
        if (signal.category in allowed and (rule.generic or not signal.generic))
        or (rule.account_faults and signal.account_fault)
    )


_WINDOW_CATEGORIES = frozenset({_C.RATE_LIMITED, _C.QUOTA_EXHAUSTED})
_BODY_HINT_CATEGORIES = _WINDOW_CATEGORIES | {_C.OVERLOADED}


def _find_signal(rule: _Rule, body: Body) -> _Signal | None:
    texts = body.texts or ([body.raw] if rule.raw_text else [])
    text = "\n".join(texts)[: BODY_SNIPPET_CAP * 2].lower()
    tokens = [token.lower() for token in body.tokens]
    for signal in _candidates(rule):
        if signal.code:
            if any(signal.pattern.fullmatch(token) for token in tokens):
                return signal
        elif text and signal.pattern.search(text):
            return signal
    return None


# --- the classifier -----------------------------------------------------------


def _rule_for(status: int, body: Body) -> tuple[_Rule, str]:
    if not 100 <= status <= 599:
        return _UNRECOGNIZED, "status out of range"
    reason = f"status {status}"
    if 200 <= status < 300 and body.embedded is not None and body.embedded >= 400:
        status = body.embedded
        reason += f" + embedded {status}"
    rule = _STATUS_RULES.get(status) or _CLASS_RULES.get(status // 100, _UNRECOGNIZED)
    return rule, reason


def classify_outcome(outcome: UpstreamOutcome) -> RetryDecision:
    """Turn one failed attempt into a decision. Total: never raises on data."""
    if outcome.failure is not None:
        category, scope, penalty = _TRANSPORT[outcome.failure]
        failover = outcome.failure is not TransportFailure.LOCAL
        return RetryDecision(
            category=category,
            failover=failover and outcome.phase is not AttemptPhase.MID_STREAM,
            scope=scope,
            penalty=penalty,
            reason=f"transport {outcome.failure.value}" if failover else "local failure",
        )
    if outcome.status is None:
        body = Body()
        rule, reason = _UNRECOGNIZED, "no status and no transport failure"
    else:
        body = read_body(outcome.body)
        rule, reason = _rule_for(outcome.status, body)
    signal = _find_signal(rule, body) if rule is not _UNRECOGNIZED else None
    if signal is not None:
        category = signal.category
        reason += f" + body '{signal.label}'"
        scope_override = signal.scope
        if category is rule.category:
            scope_override = scope_override or rule.scope
    else:
        category = rule.category
        scope_override = rule.scope
    failover, scope, penalty = _CATEGORY_DEFAULTS[category]
    scope = scope_override or scope
    cooldown: tuple[float | None, str | None, bool] = (None, None, False)
    if scope is not _S.NONE:
        cooldown = cooldown_hint(
            header_map(outcome.headers),
            body,
            outcome.now_wall,
            windows=category in _WINDOW_CATEGORIES,
            body_hints=category in _BODY_HINT_CATEGORIES,
        )
    return RetryDecision(
        category=category,
        failover=failover and outcome.phase is not AttemptPhase.MID_STREAM,
        scope=scope,
        penalty=penalty,
        cooldown=cooldown[0],
        cooldown_source=cooldown[1],
        cooldown_clamped=cooldown[2],
        reason=reason,
    )
