"""Local failures and the error shapes the two client protocols expect.

Theory of operation. When the proxy itself refuses or gives up on a request
(bad body, wrong key, unknown model, every account throttled...), the client
must get an error in the dialect of the endpoint it called, because that is
what its SDK parses into an exception:

- OpenAI (`/v1/chat/completions`): `{"error": {"message", "type", "param",
  "code"}}`, where `param` and `code` are strings or null. The openai SDK
  picks its exception class from the HTTP status alone and copies `message`,
  `type`, `param` and `code` onto it
  (https://platform.openai.com/docs/guides/error-codes).
- Anthropic (`/v1/messages`): `{"type": "error", "error": {"type",
  "message"}}`; the anthropic SDK also dispatches on the status and exposes
  `error.type` (https://docs.anthropic.com/en/api/errors).

A failure is a `LocalFailure`: a `FailureKind` (which fixes the HTTP status
and the per-protocol type and code, in the `_SHAPES` table below) plus a
message written for the client. Messages name the problem (the field, the
model, the limit) and never carry a secret: API keys are never echoed, URLs
lose their query string, and client-supplied strings are shortened.

Where OpenAI has an established type or code we use it, because clients
match on them: an unknown model is `invalid_request_error` with code
`model_not_found` (OpenAI uses no `not_found_error` type), a bad key is
`invalid_request_error` / `invalid_api_key`, a rate limit is type
`requests` / code `rate_limit_exceeded`, and server-side failures are
`server_error`. Elsewhere the code is ours and says what happened
(`no_eligible_account`, `upstream_timeout`, ...).

Anthropic has no types for 502 and 503, so: 502 (every attempt failed) is
`api_error`, Anthropic's generic server-side type; 503 (no account can
serve the request right now) is `overloaded_error`, Anthropic's "cannot
serve now, retry later" type, which clients such as Claude Code retry;
504 is `timeout_error`, as Anthropic itself sends.

Errors after the stream started. Once the first byte of a stream reached the
client the status line is gone, so a failure is reported inside the stream
(`render_stream_error`): for OpenAI one `data:` chunk holding `{"error":
{...}}`, which the openai SDK raises as `APIError` (its stream loop checks
each decoded chunk for an `"error"` member); for Anthropic an `event: error`
with the usual error body, which the anthropic SDK raises as a status error.
Mid-stream Anthropic errors are `overloaded_error` for the 503 family (try
again later) and `api_error` for everything else, timeouts included: once
the 200 is sent, a status-specific type has no status to go with.

No `data: [DONE]` follows the OpenAI error chunk. `[DONE]` is OpenAI's
"completed normally" sentinel: the openai SDK stops reading at the error
chunk and never sees it, the Vercel AI SDK (OpenCode) ignores it, and a
client that skips chunks it does not understand would take a `[DONE]` after
the error for a clean, complete answer. Without it such a client sees a
stream that ended early, which is the truth (docs/architecture.md: a failed
stream ends with an error, never a clean close).
"""

from __future__ import annotations

import enum
import json
import math
import types
from collections.abc import Mapping

import attrs

from eggpool.core.config import Protocol
from eggpool.core.sse import encode_event

__all__ = [
    "ErrorResponse",
    "FailureKind",
    "LocalFailure",
    "render_error",
    "render_stream_error",
]

_SHOWN_MAX = 200  # characters of a client-supplied string quoted back in a message


class FailureKind(enum.StrEnum):
    """What went wrong locally. The value is a stable name for logs and stored rows."""

    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_FIELD = "missing_field"
    INVALID_TYPE = "invalid_type"
    INVALID_VALUE = "invalid_value"
    DUPLICATE_FIELD = "duplicate_field"
    CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"
    OUTPUT_LIMIT_EXCEEDED = "output_limit_exceeded"
    MISSING_API_KEY = "missing_api_key"
    INVALID_API_KEY = "invalid_api_key"
    UNKNOWN_MODEL = "unknown_model"
    UNKNOWN_ROUTE = "unknown_route"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    BODY_TOO_LARGE = "body_too_large"
    REQUEST_TIMEOUT = "request_timeout"
    ALL_THROTTLED = "all_throttled"
    INTERNAL_ERROR = "internal_error"
    UPSTREAM_EXHAUSTED = "upstream_exhausted"
    UPSTREAM_INTERRUPTED = "upstream_interrupted"
    NO_ELIGIBLE_ACCOUNT = "no_eligible_account"
    CATALOG_NOT_READY = "catalog_not_ready"
    SHUTTING_DOWN = "shutting_down"
    UPSTREAM_TIMEOUT = "upstream_timeout"

    @property
    def status(self) -> int:
        """The HTTP status this failure is answered with."""
        return _SHAPES[self].status


@attrs.frozen
class _Shape:
    status: int
    openai_type: str
    openai_code: str | None
    anthropic_type: str


_INVALID = "invalid_request_error"
_AUTH = "authentication_error"
_NOT_FOUND = "not_found_error"
_TOO_LARGE = "request_too_large"
_SERVER = "server_error"
_OVERLOADED = "overloaded_error"
_K = FailureKind
# fmt: off
_SHAPES: Mapping[FailureKind, _Shape] = types.MappingProxyType({
    #                                  status  OpenAI type  OpenAI code     Anthropic type
    _K.INVALID_JSON:            _Shape(400, _INVALID, "invalid_json", _INVALID),
    _K.NOT_AN_OBJECT:           _Shape(400, _INVALID, "invalid_type", _INVALID),
    _K.MISSING_FIELD:           _Shape(400, _INVALID, "missing_required_parameter", _INVALID),
    _K.INVALID_TYPE:            _Shape(400, _INVALID, "invalid_type", _INVALID),
    _K.INVALID_VALUE:           _Shape(400, _INVALID, "invalid_value", _INVALID),
    _K.DUPLICATE_FIELD:         _Shape(400, _INVALID, "duplicate_parameter", _INVALID),
    _K.CONTEXT_LENGTH_EXCEEDED: _Shape(400, _INVALID, "context_length_exceeded", _INVALID),
    _K.OUTPUT_LIMIT_EXCEEDED:   _Shape(400, _INVALID, "invalid_value", _INVALID),
    _K.MISSING_API_KEY:         _Shape(401, _INVALID, "missing_api_key", _AUTH),
    _K.INVALID_API_KEY:         _Shape(401, _INVALID, "invalid_api_key", _AUTH),
    _K.UNKNOWN_MODEL:           _Shape(404, _INVALID, "model_not_found", _NOT_FOUND),
    _K.UNKNOWN_ROUTE:           _Shape(404, _INVALID, "unknown_url", _NOT_FOUND),
    _K.NOT_FOUND:               _Shape(404, _INVALID, "not_found", _NOT_FOUND),
    _K.METHOD_NOT_ALLOWED:      _Shape(405, _INVALID, "method_not_allowed", _INVALID),
    _K.BODY_TOO_LARGE:          _Shape(413, _INVALID, "request_too_large", _TOO_LARGE),
    _K.REQUEST_TIMEOUT:         _Shape(408, _INVALID, "request_timeout", _INVALID),
    _K.ALL_THROTTLED:           _Shape(429, "requests", "rate_limit_exceeded", "rate_limit_error"),
    _K.INTERNAL_ERROR:          _Shape(500, _SERVER, "internal_error", "api_error"),
    _K.UPSTREAM_EXHAUSTED:      _Shape(502, _SERVER, "upstream_error", "api_error"),
    _K.UPSTREAM_INTERRUPTED:    _Shape(502, _SERVER, "upstream_interrupted", "api_error"),
    _K.NO_ELIGIBLE_ACCOUNT:     _Shape(503, _SERVER, "no_eligible_account", _OVERLOADED),
    _K.CATALOG_NOT_READY:       _Shape(503, _SERVER, "catalog_not_ready", _OVERLOADED),
    _K.SHUTTING_DOWN:           _Shape(503, _SERVER, "shutting_down", _OVERLOADED),
    _K.UPSTREAM_TIMEOUT:        _Shape(504, _SERVER, "upstream_timeout", "timeout_error"),
})
# fmt: on


def _check_retry_after(_: object, __: object, value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise ValueError(f"retry_after must be a finite number of seconds >= 0, got {value!r}")


@attrs.frozen(kw_only=True)
class LocalFailure:
    """A request the proxy answers itself, with an error. Build one with the classmethods.

    `param` names the offending request field (OpenAI's `error.param`);
    `retry_after` (seconds) becomes a `retry-after` header; `allow` lists the
    methods of a 405's `allow` header.
    """

    kind: FailureKind
    message: str
    param: str | None = None
    retry_after: float | None = attrs.field(default=None, validator=_check_retry_after)
    allow: tuple[str, ...] = ()

    @property
    def status(self) -> int:
        return self.kind.status

    # -- the request body ---------------------------------------------------------

    @classmethod
    def invalid_json(cls, detail: str) -> LocalFailure:
        return cls(
            kind=FailureKind.INVALID_JSON,
            message=f"Request body is not valid JSON: {detail.rstrip('.')}.",
        )

    @classmethod
    def not_an_object(cls, found: str) -> LocalFailure:
        return cls(
            kind=FailureKind.NOT_AN_OBJECT,
            message=f"Request body must be a JSON object, but got {found} instead.",
        )

    @classmethod
    def missing_field(cls, field: str) -> LocalFailure:
        return cls(
            kind=FailureKind.MISSING_FIELD,
            message=f"Missing required parameter: '{field}'.",
            param=field,
        )

    @classmethod
    def invalid_type(cls, field: str, expected: str, found: str) -> LocalFailure:
        return cls(
            kind=FailureKind.INVALID_TYPE,
            message=f"Invalid type for '{field}': expected {expected}, but got {found} instead.",
            param=field,
        )

    @classmethod
    def invalid_value(cls, field: str, problem: str) -> LocalFailure:
        return cls(
            kind=FailureKind.INVALID_VALUE, message=f"Invalid '{field}': {problem}.", param=field
        )

    @classmethod
    def duplicate_field(cls, field: str) -> LocalFailure:
        return cls(
            kind=FailureKind.DUPLICATE_FIELD,
            message=(
                f"Duplicate key '{field}' in the request body: it is ambiguous which one "
                "applies, so the request is refused; send the key once."
            ),
            param=field,
        )

    @classmethod
    def body_too_large(cls, limit_bytes: int) -> LocalFailure:
        return cls(
            kind=FailureKind.BODY_TOO_LARGE,
            message=f"Request body is larger than the proxy's limit of {limit_bytes} bytes.",
        )

    @classmethod
    def request_timeout(cls, seconds: float) -> LocalFailure:
        return cls(
            kind=FailureKind.REQUEST_TIMEOUT,
            message=f"The request body did not arrive within {seconds:g}s.",
        )

    # -- who and where ------------------------------------------------------------

    @classmethod
    def missing_api_key(cls) -> LocalFailure:
        return cls(
            kind=FailureKind.MISSING_API_KEY,
            message=(
                "No API key provided. Send the proxy's key as 'Authorization: Bearer <key>' "
                "or in the 'x-api-key' header."
            ),
        )

    @classmethod
    def invalid_api_key(cls) -> LocalFailure:
        # The key is never echoed, not even masked: it may be a real provider key sent by mistake.
        return cls(kind=FailureKind.INVALID_API_KEY, message="Invalid API key provided.")

    @classmethod
    def unknown_model(cls, model: str) -> LocalFailure:
        return cls(
            kind=FailureKind.UNKNOWN_MODEL,
            message=f"The model `{_shown(model)}` does not exist or is not served by this proxy.",
            param="model",
        )

    @classmethod
    def not_found(cls, what: str) -> LocalFailure:
        """Something a request names (a stored request, by id) does not exist."""
        return cls(kind=FailureKind.NOT_FOUND, message=f"No {what} was found.")

    @classmethod
    def unknown_route(cls, method: str, path: str) -> LocalFailure:
        return cls(
            kind=FailureKind.UNKNOWN_ROUTE,
            message=f"Invalid URL ({_shown(method)} {_path_only(path)}).",
        )

    @classmethod
    def method_not_allowed(cls, method: str, path: str, allow: tuple[str, ...]) -> LocalFailure:
        return cls(
            kind=FailureKind.METHOD_NOT_ALLOWED,
            message=(
                f"Method {_shown(method)} is not allowed for {_path_only(path)}; "
                f"use {', '.join(allow)}."
            ),
            allow=allow,
        )

    # -- routing and upstreams ----------------------------------------------------

    @classmethod
    def all_throttled(cls, model: str, retry_after: float) -> LocalFailure:
        _check_retry_after(cls, None, retry_after)
        wait = _whole_seconds(retry_after)
        return cls(
            kind=FailureKind.ALL_THROTTLED,
            message=(
                f"Every account serving `{_shown(model)}` is rate limited. "
                f"Please try again in {wait}s."
            ),
            retry_after=retry_after,
        )

    @classmethod
    def no_eligible_account(
        cls, model: str, reason: str | None = None, *, retry_after: float | None = None
    ) -> LocalFailure:
        why = f": {reason}" if reason else ""
        return cls(
            kind=FailureKind.NO_ELIGIBLE_ACCOUNT,
            message=f"No account can serve `{_shown(model)}` right now{why}.",
            retry_after=retry_after,
        )

    @classmethod
    def catalog_not_ready(cls) -> LocalFailure:
        return cls(
            kind=FailureKind.CATALOG_NOT_READY,
            message="The model catalog is not loaded yet; try again shortly.",
            retry_after=1.0,
        )

    @classmethod
    def shutting_down(cls) -> LocalFailure:
        return cls(
            kind=FailureKind.SHUTTING_DOWN,
            message="The proxy is shutting down; retry the request.",
        )

    @classmethod
    def upstream_exhausted(
        cls, model: str, attempts: int, last_status: int | None = None
    ) -> LocalFailure:
        # Only the status of the last failure is shown: upstream error bodies can echo keys.
        last = f" (last upstream status: {last_status})" if last_status is not None else ""
        tries = "attempt" if attempts == 1 else "attempts"
        return cls(
            kind=FailureKind.UPSTREAM_EXHAUSTED,
            message=f"All {attempts} {tries} to serve `{_shown(model)}` upstream failed{last}.",
        )

    @classmethod
    def upstream_interrupted(cls, detail: str = "the upstream stream broke off") -> LocalFailure:
        return cls(
            kind=FailureKind.UPSTREAM_INTERRUPTED,
            message=f"The response could not be completed: {detail}.",
        )

    @classmethod
    def upstream_timeout(cls, seconds: float | None = None) -> LocalFailure:
        after = f" after {seconds:g}s" if seconds is not None else ""
        return cls(
            kind=FailureKind.UPSTREAM_TIMEOUT,
            message=f"The upstream provider did not respond in time{after}.",
        )

    @classmethod
    def internal_error(cls) -> LocalFailure:
        return cls(kind=FailureKind.INTERNAL_ERROR, message="Internal error in the proxy.")


@attrs.frozen(kw_only=True)
class ErrorResponse:
    """A complete error response: status line, headers (lower-case names), JSON body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


def render_error(protocol: Protocol, failure: LocalFailure) -> ErrorResponse:
    """The HTTP error response for `failure`, shaped for the endpoint's `protocol`."""
    shape = _SHAPES[failure.kind]
    headers = [("content-type", "application/json")]
    if failure.retry_after is not None:
        headers.append(("retry-after", str(_whole_seconds(failure.retry_after))))
    if failure.allow:
        headers.append(("allow", ", ".join(failure.allow)))
    return ErrorResponse(
        status=shape.status,
        headers=tuple(headers),
        body=_dumps(_payload(protocol, failure, shape.anthropic_type)),
    )


def render_stream_error(protocol: Protocol, failure: LocalFailure) -> bytes:
    """One SSE event reporting `failure` inside a stream that already started.

    The caller closes the stream after writing it; no `[DONE]` follows (see
    the module docstring).
    """
    anthropic_type = _SHAPES[failure.kind].anthropic_type
    if anthropic_type != _OVERLOADED:
        anthropic_type = "api_error"
    data = _dumps(_payload(protocol, failure, anthropic_type)).decode("ascii")
    if protocol is Protocol.ANTHROPIC:
        return encode_event(data, event="error")
    return encode_event(data)


def _payload(protocol: Protocol, failure: LocalFailure, anthropic_type: str) -> object:
    if protocol is Protocol.ANTHROPIC:
        return {"type": "error", "error": {"type": anthropic_type, "message": failure.message}}
    shape = _SHAPES[failure.kind]
    return {
        "error": {
            "message": failure.message,
            "type": shape.openai_type,
            "param": failure.param,
            "code": shape.openai_code,
        }
    }


def _dumps(value: object) -> bytes:
    # ASCII output: a client-supplied string with a lone surrogate still serializes.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _whole_seconds(seconds: float) -> int:
    """A `retry-after` value: whole seconds, rounded up, at least 1 (0 invites a busy loop)."""
    return max(1, math.ceil(seconds))


def _shown(value: str) -> str:
    """A client-supplied string, shortened so that an error never balloons."""
    return value if len(value) <= _SHOWN_MAX else value[:_SHOWN_MAX] + "..."


def _path_only(path: str) -> str:
    # Some clients put keys in the query string (`?key=...`): never echo it.
    return _shown(path.split("?", 1)[0])
