"""Local failures: statuses, both error shapes, headers, in-stream forms, SDK parsing."""

from __future__ import annotations

import json
import math
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eggpool.core.config import Protocol
from eggpool.core.errors import (
    ErrorResponse,
    FailureKind,
    LocalFailure,
    render_error,
    render_stream_error,
)
from eggpool.core.sse import SSEDecoder, SSEEvent

F = LocalFailure
K = FailureKind
IRE = "invalid_request_error"
SRV = "server_error"

# kind: status, OpenAI error.type, OpenAI error.code, Anthropic error.type
EXPECTED: dict[FailureKind, tuple[int, str, str, str]] = {
    K.INVALID_JSON: (400, IRE, "invalid_json", IRE),
    K.NOT_AN_OBJECT: (400, IRE, "invalid_type", IRE),
    K.MISSING_FIELD: (400, IRE, "missing_required_parameter", IRE),
    K.INVALID_TYPE: (400, IRE, "invalid_type", IRE),
    K.INVALID_VALUE: (400, IRE, "invalid_value", IRE),
    K.DUPLICATE_FIELD: (400, IRE, "duplicate_parameter", IRE),
    K.CONTEXT_LENGTH_EXCEEDED: (400, IRE, "context_length_exceeded", IRE),
    K.OUTPUT_LIMIT_EXCEEDED: (400, IRE, "invalid_value", IRE),
    K.MISSING_API_KEY: (401, IRE, "missing_api_key", "authentication_error"),
    K.INVALID_API_KEY: (401, IRE, "invalid_api_key", "authentication_error"),
    K.UNKNOWN_MODEL: (404, IRE, "model_not_found", "not_found_error"),
    K.UNKNOWN_ROUTE: (404, IRE, "unknown_url", "not_found_error"),
    K.NOT_FOUND: (404, IRE, "not_found", "not_found_error"),
    K.METHOD_NOT_ALLOWED: (405, IRE, "method_not_allowed", IRE),
    K.BODY_TOO_LARGE: (413, IRE, "request_too_large", "request_too_large"),
    K.REQUEST_TIMEOUT: (408, IRE, "request_timeout", IRE),
    K.ALL_THROTTLED: (429, "requests", "rate_limit_exceeded", "rate_limit_error"),
    K.INTERNAL_ERROR: (500, SRV, "internal_error", "api_error"),
    K.UPSTREAM_EXHAUSTED: (502, SRV, "upstream_error", "api_error"),
    K.UPSTREAM_INTERRUPTED: (502, SRV, "upstream_interrupted", "api_error"),
    K.NO_ELIGIBLE_ACCOUNT: (503, SRV, "no_eligible_account", "overloaded_error"),
    K.CATALOG_NOT_READY: (503, SRV, "catalog_not_ready", "overloaded_error"),
    K.SHUTTING_DOWN: (503, SRV, "shutting_down", "overloaded_error"),
    K.UPSTREAM_TIMEOUT: (504, SRV, "upstream_timeout", "timeout_error"),
}

# One failure built by each constructor.
FAILURES = [
    F.invalid_json("Expecting value"),
    F.not_an_object("an array"),
    F.missing_field("model"),
    F.invalid_type("stream", "a boolean", "a string"),
    F.invalid_value("max_tokens", "too big"),
    F.duplicate_field("model"),
    F(kind=K.CONTEXT_LENGTH_EXCEEDED, message="too long", param="messages"),
    F(kind=K.OUTPUT_LIMIT_EXCEEDED, message="too many", param="max_tokens"),
    F.missing_api_key(),
    F.invalid_api_key(),
    F.unknown_model("gpt-9"),
    F.unknown_route("POST", "/v1/nope"),
    F.not_found("request with id 'abc'"),
    F.method_not_allowed("GET", "/v1/messages", ("POST",)),
    F.body_too_large(10),
    F.request_timeout(60),
    F.all_throttled("m", 3),
    F.internal_error(),
    F.upstream_exhausted("m", 3),
    F.upstream_interrupted(),
    F.no_eligible_account("m"),
    F.catalog_not_ready(),
    F.shutting_down(),
    F.upstream_timeout(30),
]
IDS = [failure.kind.value for failure in FAILURES]


def body_of(response: ErrorResponse) -> Any:
    return json.loads(response.body)


def test_every_kind_has_an_expected_shape_and_a_constructor() -> None:
    assert set(EXPECTED) == set(FailureKind)
    assert {failure.kind for failure in FAILURES} == set(FailureKind)


@pytest.mark.parametrize("failure", FAILURES, ids=IDS)
def test_openai_shape_and_status(failure: LocalFailure) -> None:
    status, error_type, code, _ = EXPECTED[failure.kind]
    response = render_error(Protocol.OPENAI, failure)
    assert (response.status, failure.status) == (status, status)
    assert body_of(response) == {
        "error": {
            "message": failure.message,
            "type": error_type,
            "param": failure.param,
            "code": code,
        }
    }


@pytest.mark.parametrize("failure", FAILURES, ids=IDS)
def test_anthropic_shape_and_status(failure: LocalFailure) -> None:
    status, _, _, error_type = EXPECTED[failure.kind]
    response = render_error(Protocol.ANTHROPIC, failure)
    assert response.status == status
    assert body_of(response) == {
        "type": "error",
        "error": {"type": error_type, "message": failure.message},
    }


@pytest.mark.parametrize("failure", FAILURES[:6] + FAILURES[8:], ids=IDS[:6] + IDS[8:])
def test_every_constructed_message_is_a_sentence(failure: LocalFailure) -> None:
    # (The context guard's messages copy the providers' own wording instead: test_requests.py.)
    assert failure.message[:1].isupper()
    assert failure.message.endswith(".")


@pytest.mark.parametrize("protocol", list(Protocol))
def test_body_is_compact_json_with_a_json_content_type(protocol: Protocol) -> None:
    response = render_error(protocol, F.missing_field("model"))
    assert response.headers[0] == ("content-type", "application/json")
    assert response.body == json.dumps(body_of(response), separators=(",", ":")).encode()


def test_field_errors_carry_the_field_as_param() -> None:
    response = render_error(
        Protocol.OPENAI, F.invalid_type("max_tokens", "an integer", "a string")
    )
    error = body_of(response)["error"]
    assert error["param"] == "max_tokens"
    assert "'max_tokens'" in error["message"]


@pytest.mark.parametrize(
    ("seconds", "header"),
    [(0, "1"), (0.2, "1"), (1.0, "1"), (1.01, "2"), (12.5, "13"), (3600, "3600")],
)
def test_retry_after_is_whole_seconds_rounded_up_and_at_least_one(
    seconds: float, header: str
) -> None:
    response = render_error(Protocol.ANTHROPIC, F.all_throttled("m", seconds))
    assert ("retry-after", header) in response.headers


@given(st.floats(min_value=0, max_value=1e9))
def test_retry_after_header_never_undershoots(seconds: float) -> None:
    headers = dict(render_error(Protocol.OPENAI, F.all_throttled("m", seconds)).headers)
    assert int(headers["retry-after"]) >= max(1.0, seconds)
    assert int(headers["retry-after"]) == max(1, math.ceil(seconds))


def test_throttled_message_gives_the_same_wait_as_the_header() -> None:
    failure = F.all_throttled("gpt-5", 7.2)
    assert "`gpt-5`" in failure.message
    assert "try again in 8s" in failure.message
    assert ("retry-after", "8") in render_error(Protocol.OPENAI, failure).headers


def test_no_retry_after_header_without_a_wait() -> None:
    names = [
        name for name, _ in render_error(Protocol.OPENAI, F.upstream_exhausted("m", 2)).headers
    ]
    assert names == ["content-type"]


def test_a_503_may_carry_a_retry_after() -> None:
    failure = F.no_eligible_account("m", "every account is cooling down", retry_after=30)
    assert ("retry-after", "30") in render_error(Protocol.OPENAI, failure).headers
    assert "every account is cooling down" in failure.message


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_retry_after_must_be_finite_and_non_negative(bad: float) -> None:
    with pytest.raises(ValueError, match="retry_after"):
        F.all_throttled("m", bad)


def test_method_not_allowed_sends_an_allow_header() -> None:
    response = render_error(
        Protocol.OPENAI, F.method_not_allowed("GET", "/v1/messages", ("POST",))
    )
    assert ("allow", "POST") in response.headers
    assert response.status == 405


def test_unknown_model_names_the_model() -> None:
    error = body_of(render_error(Protocol.OPENAI, F.unknown_model("gpt-9/nowhere")))["error"]
    assert "`gpt-9/nowhere`" in error["message"]
    assert (error["code"], error["param"]) == ("model_not_found", "model")


def test_client_strings_are_shortened_in_messages() -> None:
    failure = F.unknown_model("m" * 10_000)
    assert len(failure.message) < 400
    assert "..." in failure.message


def test_routes_are_shown_without_their_query_string() -> None:
    failure = F.unknown_route("POST", "/v1/foo?key=sk-secret-value")
    assert "sk-secret-value" not in failure.message
    assert "/v1/foo" in failure.message


@pytest.mark.parametrize("protocol", list(Protocol))
def test_key_errors_never_echo_a_key(protocol: Protocol) -> None:
    for failure in (F.missing_api_key(), F.invalid_api_key()):
        assert b"sk-" not in render_error(protocol, failure).body


def test_upstream_exhausted_names_attempts_and_last_status_only() -> None:
    failure = F.upstream_exhausted("claude-x", 3, last_status=529)
    assert (
        failure.message
        == "All 3 attempts to serve `claude-x` upstream failed (last upstream status: 529)."
    )


def test_lone_surrogates_in_client_strings_still_serialize() -> None:
    response = render_error(Protocol.OPENAI, F.unknown_model("bad\ud800model"))
    assert response.body.isascii()
    assert "bad\ud800model" in body_of(response)["error"]["message"]


# -- in-stream errors --------------------------------------------------------------------


def stream_events(data: bytes) -> list[SSEEvent]:
    decoder = SSEDecoder()
    items = decoder.feed(data) + decoder.feed_eof()
    assert all(isinstance(item, SSEEvent) for item in items)
    return [item for item in items if isinstance(item, SSEEvent)]


def test_openai_stream_error_is_one_data_chunk_without_done() -> None:
    failure = F.upstream_interrupted()
    data = render_stream_error(Protocol.OPENAI, failure)
    (event,) = stream_events(data)
    assert event.event == "message"
    assert json.loads(event.data) == {
        "error": {
            "message": failure.message,
            "type": "server_error",
            "param": None,
            "code": "upstream_interrupted",
        }
    }
    assert b"[DONE]" not in data
    assert data.startswith(b"data: {")
    assert data.endswith(b"}\n\n")


@pytest.mark.parametrize(
    ("failure", "error_type"),
    [
        (F.upstream_interrupted(), "api_error"),
        (F.upstream_timeout(60), "api_error"),
        (F.internal_error(), "api_error"),
        (F.shutting_down(), "overloaded_error"),
        (F.no_eligible_account("m"), "overloaded_error"),
    ],
)
def test_anthropic_stream_error_is_an_error_event(failure: LocalFailure, error_type: str) -> None:
    data = render_stream_error(Protocol.ANTHROPIC, failure)
    (event,) = stream_events(data)
    assert event.event == "error"
    assert json.loads(event.data) == {
        "type": "error",
        "error": {"type": error_type, "message": failure.message},
    }


# -- the official SDKs read our errors -------------------------------------------------------
# The SDKs run for real (their public methods, their response and stream handling); only the
# network is replaced, by an httpx transport that answers with our bytes. An end-to-end test
# against a served proxy comes with the server.

CHUNK = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
         "choices": [{"index": 0, "delta": {"content": "Hel"}}]}  # fmt: skip
MESSAGE_START = {"type": "message_start", "message": {
    "id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": "claude-x",
    "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 1},
}}  # fmt: skip
SSE_HEADERS = [("content-type", "text/event-stream")]


def answering(status: int, headers: list[tuple[str, str]], body: bytes) -> Any:
    """An httpx client whose every request gets this response."""
    response = lambda request: httpx2.Response(status, headers=headers, content=body)  # noqa: E731
    return httpx2.Client(transport=httpx2.MockTransport(response))


def openai_client(status: int, headers: list[tuple[str, str]], body: bytes) -> Any:
    return openai.OpenAI(
        api_key="sk-test",
        base_url="http://proxy.test/v1",
        max_retries=0,
        http_client=answering(status, headers, body),
    )


def anthropic_client(status: int, headers: list[tuple[str, str]], body: bytes) -> Any:
    return anthropic.Anthropic(
        api_key="sk-test",
        base_url="http://proxy.test",
        max_retries=0,
        http_client=answering(status, headers, body),
    )


def chat(client: Any, **options: Any) -> Any:
    return client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], **options
    )


def message(client: Any) -> Any:
    return client.messages.create(
        model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
    )


@pytest.mark.parametrize(
    ("failure", "exception"),
    [
        (F.invalid_type("max_tokens", "an integer", "a string"), "BadRequestError"),
        (F.invalid_api_key(), "AuthenticationError"),
        (F.unknown_model("gpt-9"), "NotFoundError"),
        (F.all_throttled("m", 3), "RateLimitError"),
        (F.upstream_exhausted("m", 3), "InternalServerError"),
        (F.no_eligible_account("m"), "InternalServerError"),
        (F.upstream_timeout(5), "InternalServerError"),
    ],
    ids=lambda value: value.kind.value if isinstance(value, LocalFailure) else value,
)
def test_openai_sdk_raises_its_class_with_our_fields(
    failure: LocalFailure, exception: str
) -> None:
    rendered = render_error(Protocol.OPENAI, failure)
    client = openai_client(rendered.status, list(rendered.headers), rendered.body)
    with pytest.raises(openai.APIStatusError) as raised:
        chat(client)
    error = raised.value
    assert type(error) is getattr(openai, exception)
    assert error.message.endswith(failure.message)
    _, error_type, code, _ = EXPECTED[failure.kind]
    assert (error.type, error.code, error.param) == (error_type, code, failure.param)


def test_openai_sdk_reads_our_retry_after() -> None:
    rendered = render_error(Protocol.OPENAI, F.all_throttled("m", 4.5))
    client = openai_client(rendered.status, list(rendered.headers), rendered.body)
    with pytest.raises(openai.RateLimitError) as raised:
        chat(client)
    assert client._parse_retry_after_header(raised.value.response.headers) == 5.0


@pytest.mark.parametrize(
    ("failure", "exception"),
    [
        (F.missing_field("model"), "BadRequestError"),
        (F.missing_api_key(), "AuthenticationError"),
        (F.unknown_model("claude-9"), "NotFoundError"),
        (F.body_too_large(1024), "APIStatusError"),
        (F.all_throttled("m", 3), "RateLimitError"),
        (F.upstream_exhausted("m", 3), "InternalServerError"),
        (F.catalog_not_ready(), "InternalServerError"),
        (F.upstream_timeout(5), "InternalServerError"),
    ],
    ids=lambda value: value.kind.value if isinstance(value, LocalFailure) else value,
)
def test_anthropic_sdk_raises_its_class_with_our_fields(
    failure: LocalFailure, exception: str
) -> None:
    rendered = render_error(Protocol.ANTHROPIC, failure)
    client = anthropic_client(rendered.status, list(rendered.headers), rendered.body)
    with pytest.raises(anthropic.APIStatusError) as raised:
        message(client)
    error = raised.value
    assert isinstance(error, getattr(anthropic, exception))
    assert (error.api_message, error.type) == (failure.message, EXPECTED[failure.kind][3])


def test_openai_sdk_raises_on_our_stream_error_chunk() -> None:
    failure = F.upstream_interrupted("the provider closed the connection")
    body = b"data: " + json.dumps(CHUNK).encode() + b"\n\n"
    client = openai_client(200, SSE_HEADERS, body + render_stream_error(Protocol.OPENAI, failure))
    received: list[str] = []
    with pytest.raises(openai.APIError) as raised:
        received.extend(chunk.choices[0].delta.content for chunk in chat(client, stream=True))
    assert received == ["Hel"]
    assert raised.value.message == failure.message
    assert raised.value.code == "upstream_interrupted"


def test_anthropic_sdk_raises_on_our_error_event() -> None:
    failure = F.shutting_down()
    body = b"event: message_start\ndata: " + json.dumps(MESSAGE_START).encode() + b"\n\n"
    client = anthropic_client(
        200, SSE_HEADERS, body + render_stream_error(Protocol.ANTHROPIC, failure)
    )
    with (
        pytest.raises(anthropic.APIStatusError) as raised,
        client.messages.stream(
            model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        ) as stream,
    ):
        list(stream.text_stream)
    assert raised.value.type == "overloaded_error"
    assert raised.value.api_message == failure.message
