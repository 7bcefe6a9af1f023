"""Client request parsing: validation, the suffix rule, include_usage, byte fidelity, the guard."""

from __future__ import annotations

import base64
import json
import re
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eggpool.core._json_spans import object_members, skip_value, splice
from eggpool.core.catalog import EffectiveLimits
from eggpool.core.config import Protocol
from eggpool.core.errors import FailureKind, LocalFailure, render_error
from eggpool.core.requests import (
    MAX_TOKENS_FIELD,
    MEDIA_TOKENS,
    ParsedRequest,
    check_limits,
    estimate_input_tokens,
    guard_input_tokens,
    parse_request,
    split_model,
)

OPENAI = Protocol.OPENAI
ANTHROPIC = Protocol.ANTHROPIC
PROVIDERS = frozenset({"groq", "openai", "anthropic", "open-router"})


def SPLIT(model: str) -> tuple[str, str | None]:
    return split_model(model, PROVIDERS)


IMAGE = base64.b64encode(bytes(range(256)) * 64).decode()  # 16 KiB of "image"
USAGE = b'"stream_options":{"include_usage":true}'


def parse(protocol: Protocol, body: bytes | dict[str, Any], **kwargs: Any) -> ParsedRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    result = parse_request(protocol, raw, split=SPLIT, **kwargs)
    assert isinstance(result, ParsedRequest), result
    return result


def fail(protocol: Protocol, body: bytes, **kwargs: Any) -> LocalFailure:
    result = parse_request(protocol, body, split=SPLIT, **kwargs)
    assert isinstance(result, LocalFailure), result
    return result


# -- realistic bodies -------------------------------------------------------------------

OPENAI_TEXT = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Say hello in French. «Bonjour» — 👋"},
    ],
    "temperature": 0.2,
}
OPENAI_TOOLS = {
    "messages": [
        {"role": "user", "content": "What's the weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 21.5}'},
    ],
    "model": "openai/gpt-oss-20b",
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "Current weather for a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ],
    "tool_choice": "auto",
    "max_completion_tokens": 512,
}
OPENAI_IMAGE = {
    "model": "gpt-4o",
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this image?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{IMAGE}"}},
            ],
        }
    ],
    "max_tokens": 300,
}
OPENAI_JSON_SCHEMA = {
    "model": "gpt-4o-2024-08-06",
    "messages": [{"role": "user", "content": "Extract: Alice is 30."}],
    "response_format": {
        "type": "json_schema",
        "json_schema": {
            "name": "person",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
                "required": ["name", "age"],
                "additionalProperties": False,
            },
        },
    },
    "seed": 1.0e2,
}
ANTHROPIC_THINKING = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 16000,
    "system": [
        {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}
    ],
    "thinking": {"type": "enabled", "budget_tokens": 10000},
    "messages": [
        {
            "role": "user",
            "content": [
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": IMAGE},
                },
                {"type": "text", "text": "Describe the image."},
            ],
        }
    ],
    "tools": [
        {
            "name": "Bash",
            "description": "Run a shell command",
            "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}},
        }
    ],
    "stream": True,
    "metadata": {"user_id": "u-1"},
}


@pytest.mark.parametrize(
    ("protocol", "body", "model", "max_output", "param"),
    [
        (OPENAI, OPENAI_TEXT, "gpt-4o-mini", None, None),
        (OPENAI, OPENAI_TOOLS, "openai/gpt-oss-20b", 512, "max_completion_tokens"),
        (OPENAI, OPENAI_IMAGE, "gpt-4o", 300, "max_tokens"),
        (OPENAI, OPENAI_JSON_SCHEMA, "gpt-4o-2024-08-06", None, None),
        (ANTHROPIC, ANTHROPIC_THINKING, "claude-sonnet-4-5", 16000, "max_tokens"),
    ],
    ids=["openai-text", "openai-tools", "openai-image", "openai-json-schema", "anthropic"],
)
def test_realistic_bodies_are_forwarded_as_the_same_bytes(
    protocol: Protocol, body: dict[str, Any], model: str, max_output: int | None, param: str | None
) -> None:
    raw = json.dumps(body, ensure_ascii=False).encode()
    parsed = parse(protocol, raw)
    assert parsed.body is raw
    assert (parsed.requested_model, parsed.model, parsed.pinned_provider) == (model, model, None)
    assert (parsed.max_output_tokens, parsed.max_output_param) == (max_output, param)
    assert parsed.stream is body.get("stream", False)
    assert parsed.protocol is protocol
    assert parsed.input_tokens_estimate > 0


def test_anthropic_streams_are_never_rewritten_for_usage() -> None:
    parsed = parse(ANTHROPIC, ANTHROPIC_THINKING)
    assert parsed.stream
    assert not parsed.usage_injected
    assert not parsed.client_include_usage


def test_anthropic_without_max_tokens_is_left_for_the_upstream() -> None:
    parsed = parse(ANTHROPIC, {"model": "claude-x", "messages": []})
    assert parsed.max_output_tokens is None


def test_openai_prefers_max_completion_tokens_over_legacy_max_tokens() -> None:
    parsed = parse(OPENAI, {"model": "m", "max_tokens": 100, "max_completion_tokens": 50})
    assert (parsed.max_output_tokens, parsed.max_output_param) == (50, "max_completion_tokens")


def test_anthropic_ignores_openai_only_fields() -> None:
    body = b'{"model":"m","max_completion_tokens":"x","stream_options":1,"stream_options":2}'
    assert parse(ANTHROPIC, body).max_output_tokens is None


@pytest.mark.parametrize("body", [b'{"model":"m"}', b'{"model":"m","stream":null}'])
def test_absent_or_null_stream_means_not_streaming(body: bytes) -> None:
    parsed = parse(OPENAI, body)
    assert parsed.stream is False
    assert parsed.body is body


def test_null_output_tokens_mean_absent() -> None:
    parsed = parse(OPENAI, {"model": "m", "max_tokens": None, "max_completion_tokens": None})
    assert parsed.max_output_tokens is None


def test_the_body_stays_out_of_the_repr() -> None:
    parsed = parse(OPENAI, {"model": "m", "messages": [{"role": "user", "content": "secret"}]})
    assert "secret" not in repr(parsed)


# -- rejections -------------------------------------------------------------------------

REJECTIONS: list[tuple[str, bytes, FailureKind, str | None]] = [
    ("empty", b"", FailureKind.INVALID_JSON, None),
    ("whitespace", b" \n\t", FailureKind.INVALID_JSON, None),
    ("not utf-8", b'{"model":"\xff"}', FailureKind.INVALID_JSON, None),
    ("truncated", b'{"model":"m"', FailureKind.INVALID_JSON, None),
    ("trailing data", b'{"model":"m"} {}', FailureKind.INVALID_JSON, None),
    ("bom", b'\xef\xbb\xbf{"model":"m"}', FailureKind.INVALID_JSON, None),
    ("nan", b'{"model":"m","temperature":NaN}', FailureKind.INVALID_JSON, None),
    ("infinity", b'{"model":"m","temperature":-Infinity}', FailureKind.INVALID_JSON, None),
    ("control char", b'{"model":"a\x01b"}', FailureKind.INVALID_JSON, None),
    ("single quotes", b"{'model':'m'}", FailureKind.INVALID_JSON, None),
    ("deep nesting", b'{"model":"m","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
     FailureKind.INVALID_JSON, None),
    ("huge integer", b'{"model":"m","seed":' + b"9" * 5000 + b"}", FailureKind.INVALID_JSON, None),
    ("array", b'[{"model":"m"}]', FailureKind.NOT_AN_OBJECT, None),
    ("string", b'"m"', FailureKind.NOT_AN_OBJECT, None),
    ("null", b"null", FailureKind.NOT_AN_OBJECT, None),
    ("no model", b'{"messages":[]}', FailureKind.MISSING_FIELD, "model"),
    ("null model", b'{"model":null}', FailureKind.MISSING_FIELD, "model"),
    ("number model", b'{"model":4}', FailureKind.INVALID_TYPE, "model"),
    ("array model", b'{"model":["m"]}', FailureKind.INVALID_TYPE, "model"),
    ("empty model", b'{"model":""}', FailureKind.INVALID_VALUE, "model"),
    ("surrogate model", b'{"model":"a\\ud800"}', FailureKind.INVALID_VALUE, "model"),
    ("string stream", b'{"model":"m","stream":"true"}', FailureKind.INVALID_TYPE, "stream"),
    ("number stream", b'{"model":"m","stream":1}', FailureKind.INVALID_TYPE, "stream"),
    ("bool tokens", b'{"model":"m","max_tokens":true}', FailureKind.INVALID_TYPE, "max_tokens"),
    ("float tokens", b'{"model":"m","max_tokens":1.5}', FailureKind.INVALID_TYPE, "max_tokens"),
    ("1.0 tokens", b'{"model":"m","max_tokens":1.0}', FailureKind.INVALID_TYPE, "max_tokens"),
    ("1e2 tokens", b'{"model":"m","max_tokens":1e2}', FailureKind.INVALID_TYPE, "max_tokens"),
    ("string tokens", b'{"model":"m","max_tokens":"5"}', FailureKind.INVALID_TYPE, "max_tokens"),
    ("negative tokens", b'{"model":"m","max_tokens":-1}', FailureKind.INVALID_VALUE, "max_tokens"),
    ("huge tokens", b'{"model":"m","max_tokens":%d}' % (MAX_TOKENS_FIELD + 1),
     FailureKind.INVALID_VALUE, "max_tokens"),
    ("duplicate model", b'{"model":"a","x":1,"model":"b"}', FailureKind.DUPLICATE_FIELD, "model"),
    ("escaped duplicate", b'{"model":"a","mod\\u0065l":"a"}', FailureKind.DUPLICATE_FIELD,
     "model"),
    ("duplicate stream", b'{"stream":true,"model":"a","stream":true}',
     FailureKind.DUPLICATE_FIELD, "stream"),
    ("duplicate max_tokens", b'{"model":"a","max_tokens":1,"max_tokens":1}',
     FailureKind.DUPLICATE_FIELD, "max_tokens"),
]  # fmt: skip
OPENAI_REJECTIONS: list[tuple[str, bytes, FailureKind, str | None]] = [
    ("float completion tokens", b'{"model":"m","max_completion_tokens":2.0}',
     FailureKind.INVALID_TYPE, "max_completion_tokens"),
    ("bad legacy tokens beside good", b'{"model":"m","max_completion_tokens":2,"max_tokens":-2}',
     FailureKind.INVALID_VALUE, "max_tokens"),
    ("duplicate stream_options", b'{"model":"a","stream_options":{},"stream_options":{}}',
     FailureKind.DUPLICATE_FIELD, "stream_options"),
    ("duplicate include_usage",
     b'{"model":"a","stream":true,"stream_options":{"include_usage":true,"include_usage":false}}',
     FailureKind.DUPLICATE_FIELD, "stream_options.include_usage"),
]  # fmt: skip


@pytest.mark.parametrize("protocol", list(Protocol))
@pytest.mark.parametrize(
    ("name", "body", "kind", "param"), REJECTIONS, ids=[r[0] for r in REJECTIONS]
)
def test_rejections_name_the_field(
    protocol: Protocol, name: str, body: bytes, kind: FailureKind, param: str | None
) -> None:
    failure = fail(protocol, body)
    assert (failure.kind, failure.param, failure.status) == (kind, param, 400)
    if param is not None:
        assert f"'{param}'" in failure.message


@pytest.mark.parametrize(
    ("name", "body", "kind", "param"), OPENAI_REJECTIONS, ids=[r[0] for r in OPENAI_REJECTIONS]
)
def test_openai_only_rejections(name: str, body: bytes, kind: FailureKind, param: str) -> None:
    failure = fail(OPENAI, body)
    assert (failure.kind, failure.param) == (kind, param)
    assert f"'{param}'" in failure.message


@pytest.mark.parametrize(
    ("protocol", "expected"),
    [
        (OPENAI, {"error": {"message": "Invalid type for 'stream': expected a boolean, but got a "
                  "string instead.", "type": "invalid_request_error", "param": "stream",
                  "code": "invalid_type"}}),
        (ANTHROPIC, {"type": "error", "error": {"type": "invalid_request_error", "message":
                     "Invalid type for 'stream': expected a boolean, but got a string instead."}}),
    ],
)  # fmt: skip
def test_a_rejection_renders_in_the_endpoints_shape(
    protocol: Protocol, expected: dict[str, Any]
) -> None:
    response = render_error(protocol, fail(protocol, b'{"model":"m","stream":"yes"}'))
    assert response.status == 400
    assert json.loads(response.body) == expected


def test_json_errors_say_where() -> None:
    failure = fail(OPENAI, b'{\n  "model": "m",\n  "stream": tru\n}')
    assert "line 3" in failure.message


def test_bad_utf8_names_the_offset() -> None:
    assert "offset 10" in fail(OPENAI, b'{"model":"\xc3\x28"}').message


def test_huge_token_values_are_not_echoed() -> None:
    failure = fail(OPENAI, b'{"model":"m","max_tokens":-' + b"9" * 400 + b"}")
    assert "9" * 20 not in failure.message


# -- the model/provider suffix ----------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("openai/gpt-oss-20b", ("openai/gpt-oss-20b", None)),
        ("openai/gpt-oss-20b/groq", ("openai/gpt-oss-20b", "groq")),
        ("x/groq", ("x", "groq")),
        ("llama/open-router", ("llama", "open-router")),
        ("gpt-4o/openai", ("gpt-4o", "openai")),
        ("groq", ("groq", None)),
        ("/groq", ("/groq", None)),
        ("x/groq/", ("x/groq/", None)),
        ("x/GROQ", ("x/GROQ", None)),
        ("x/groq /", ("x/groq /", None)),
        ("a/b/c", ("a/b/c", None)),
    ],
)
def test_suffix_rule(model: str, expected: tuple[str, str | None]) -> None:
    assert split_model(model, PROVIDERS) == expected


def test_a_slash_model_matching_a_provider_prefix_stays_whole() -> None:
    raw = b'{"model":"openai/gpt-oss-20b","messages":[]}'
    parsed = parse(OPENAI, raw)
    assert (parsed.model, parsed.pinned_provider) == ("openai/gpt-oss-20b", None)
    assert parsed.body is raw


@pytest.mark.parametrize("protocol", list(Protocol))
def test_a_provider_suffix_is_removed_from_the_upstream_body(protocol: Protocol) -> None:
    raw = b'{"messages": [], "model" : "openai/gpt-oss-20b/groq" , "max_tokens": 10}'
    parsed = parse(protocol, raw)
    assert parsed.requested_model == "openai/gpt-oss-20b/groq"
    assert (parsed.model, parsed.pinned_provider) == ("openai/gpt-oss-20b", "groq")
    assert parsed.body == raw.replace(b"/groq", b"")


def test_suffix_removal_keeps_everything_else_byte_for_byte() -> None:
    raw = (
        b'{"messages":[{"role":"user","content":"caf\\u00e9 \\"q\\" \\\\ /"}],\n'
        b'  "temperature": 1.0, "top_p": 1e0,  "model": "gpt-4o/openai",\n'
        b'  "n": 1 }'
    )
    parsed = parse(OPENAI, raw)
    assert parsed.body == raw.replace(b'"gpt-4o/openai"', b'"gpt-4o"')


@pytest.mark.parametrize(
    ("token", "written"),
    [
        (rb'"caf\u00e9/groq"', rb'"caf\u00e9"'),  # the client's escaping is kept
        ('"café/groq"'.encode(), '"café"'.encode()),
        (rb'"a\/b/groq"', rb'"a\/b"'),
        (rb'"a\/b\/groq"', rb'"a/b"'),  # the cut lands in an escape: re-encoded
        (rb'"x/gro\u0071"', rb'"x"'),
        (rb'"tab\there/groq"', rb'"tab\there"'),
    ],
)
def test_the_model_token_keeps_the_clients_escaping_when_it_can(
    token: bytes, written: bytes
) -> None:
    parsed = parse(ANTHROPIC, b'{"model":' + token + b',"max_tokens":5}')
    assert parsed.pinned_provider == "groq"
    assert parsed.body == b'{"model":' + written + b',"max_tokens":5}'
    assert json.loads(parsed.body)["model"] == parsed.model


# -- include_usage -----------------------------------------------------------------------

USAGE_CASES = [
    ("absent", b'{"model":"m","stream":true}',
     b'{"model":"m","stream":true,' + USAGE + b"}", True, False),
    ("absent, model last", b'{"stream":true, "model":"m"\n}',
     b'{"stream":true, "model":"m",' + USAGE + b"\n}", True, False),
    ("null", b'{"model":"m","stream":true,"stream_options":null}',
     b'{"model":"m","stream":true,' + USAGE + b"}", True, False),
    ("empty object", b'{"model":"m","stream":true,"stream_options":{ }}',
     b'{"model":"m","stream":true,"stream_options":{"include_usage":true }}', True, False),
    ("other options", b'{"model":"m","stream":true,"stream_options":{"x": 1}}',
     b'{"model":"m","stream":true,"stream_options":{"include_usage":true,"x": 1}}', True, False),
    ("false", b'{"model":"m","stream":true,"stream_options":{"include_usage" : false}}',
     b'{"model":"m","stream":true,"stream_options":{"include_usage" : true}}', True, False),
    ("include_usage null", b'{"model":"m","stream":true,"stream_options":{"include_usage":null}}',
     b'{"model":"m","stream":true,"stream_options":{"include_usage":true}}', True, False),
    ("true", b'{"model":"m","stream":true,"stream_options":{"include_usage":true}}',
     None, False, True),
    ("not an object", b'{"model":"m","stream":true,"stream_options":"yes"}', None, False, False),
    ("an array", b'{"model":"m","stream":true,"stream_options":[]}', None, False, False),
    ("not a boolean", b'{"model":"m","stream":true,"stream_options":{"include_usage":1}}',
     None, False, False),
    ("not streaming", b'{"model":"m","stream":false}', None, False, False),
    ("not streaming, options", b'{"model":"m","stream_options":{"include_usage":false}}',
     None, False, False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "raw", "expected", "injected", "client"), USAGE_CASES, ids=[c[0] for c in USAGE_CASES]
)
def test_openai_streams_ask_for_usage(
    name: str, raw: bytes, expected: bytes | None, injected: bool, client: bool
) -> None:
    parsed = parse(OPENAI, raw)
    assert (parsed.usage_injected, parsed.client_include_usage) == (injected, client)
    if expected is None:
        assert parsed.body is raw
    else:
        assert parsed.body == expected
        assert json.loads(parsed.body)["stream_options"]["include_usage"] is True


def test_suffix_and_usage_edits_combine() -> None:
    raw = b'{"messages":[],"stream":true,"model":"x/groq"}'
    parsed = parse(OPENAI, raw)
    assert parsed.body == b'{"messages":[],"stream":true,"model":"x",' + USAGE + b"}"


# -- byte fidelity, for any body -----------------------------------------------------------

NUMBERS = [
    ("1.0", 1.0), ("1e2", 100.0), ("-0", 0), ("1E+2", 100.0), ("0.5e-3", 0.0005), ("100", 100),
    ("-12.50", -12.5), ("123456789012345678901234567890", 123456789012345678901234567890),
]  # fmt: skip
LITERALS = [("true", True), ("false", False), ("null", None)]
WHITESPACE = st.sampled_from(["", " ", "\n  ", "\t", "\r\n"])
INTERPRETED = {"model", "stream", "stream_options", "max_tokens", "max_completion_tokens"}


@st.composite
def encoded(draw: st.DrawFn, value: str) -> str:
    """`value` as a JSON string, ASCII-escaped or not, with `/` escaped or not."""
    text = json.dumps(value, ensure_ascii=draw(st.booleans()))
    return text.replace("/", "\\/") if draw(st.booleans()) else text


@st.composite
def fragments(draw: st.DrawFn, depth: int = 0) -> tuple[str, Any]:
    """JSON text in a random style, and the value it stands for."""
    kinds = ["number", "literal", "string"] + (["array", "object"] if depth < 3 else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "number":
        return draw(st.sampled_from(NUMBERS))
    if kind == "literal":
        return draw(st.sampled_from(LITERALS))
    if kind == "string":
        value = draw(st.text(max_size=12))
        return draw(encoded(value)), value
    ws = draw(WHITESPACE)
    items = draw(st.lists(fragments(depth + 1), max_size=3))
    if kind == "array":
        return "[" + ws + ("," + ws).join(t for t, _ in items) + ws + "]", [v for _, v in items]
    keys = draw(
        st.lists(st.text(max_size=6), min_size=len(items), max_size=len(items), unique=True)
    )
    pairs = [
        f"{draw(encoded(k))}{ws}:{ws}{text}" for k, (text, _) in zip(keys, items, strict=True)
    ]
    members = {k: v for k, (_, v) in zip(keys, items, strict=True)}
    return "{" + ws + ("," + ws).join(pairs) + ws + "}", members


# stream_options text -> the edit inside it (relative to its start), or None if left alone
STREAM_OPTIONS: list[tuple[str, tuple[int, int, bytes] | None]] = [
    ("null", (0, 4, b'{"include_usage":true}')),
    ("{}", (1, 1, b'"include_usage":true')),
    ('{ "x" : [1] }', (1, 1, b'"include_usage":true,')),
    ('{"include_usage":false}', (17, 22, b"true")),
    ('{"include_usage": true}', None),
    ('"no"', None),
    ("[true]", None),
]


@given(st.data(), st.sampled_from(list(Protocol)))
def test_rewrites_change_only_the_edited_spans(data: st.DataObject, protocol: Protocol) -> None:
    draw = data.draw
    members: list[tuple[str, str]] = []  # (key, value text)
    expected: dict[str, Any] = {}
    for key, (text, value) in draw(
        st.lists(
            st.tuples(st.text(max_size=8).filter(lambda k: k not in INTERPRETED), fragments()),
            max_size=5,
            unique_by=lambda member: member[0],
        )
    ):
        members.append((key, text))
        expected[key] = value

    base = draw(
        st.text(min_size=1, max_size=10).filter(lambda b: b.rpartition("/")[2] not in PROVIDERS)
    )
    pin = draw(st.sampled_from([None, "groq", "open-router"]))
    model = base if pin is None else f"{base}/{pin}"
    model_ascii, model_slashes = draw(st.booleans()), draw(st.booleans())
    model_text = json.dumps(model, ensure_ascii=model_ascii)
    if model_slashes:
        model_text = model_text.replace("/", "\\/")
    members.insert(draw(st.integers(0, len(members))), ("model", model_text))
    expected["model"] = base
    stream = draw(st.sampled_from([None, "true", "false"]))
    if stream is not None:
        members.insert(draw(st.integers(0, len(members))), ("stream", stream))
        expected["stream"] = stream == "true"
    options = draw(st.sampled_from([None, *STREAM_OPTIONS])) if protocol is OPENAI else None
    if options is not None:
        members.insert(draw(st.integers(0, len(members))), ("stream_options", options[0]))
        expected["stream_options"] = json.loads(options[0])

    # Render the body, remembering where each value sits.
    ws, colon = draw(WHITESPACE), draw(st.sampled_from([":", ": ", " : "]))
    raw = b"{" + ws.encode()
    spans: dict[str, tuple[int, int]] = {}
    for index, (key, text) in enumerate(members):
        if index:
            raw += b"," + ws.encode()
        raw += (draw(encoded(key)) + colon).encode()
        spans[key] = (len(raw), len(raw) + len(text.encode()))
        raw += text.encode()
    last_end = len(raw)
    raw += ws.encode() + b"}"

    edits: list[tuple[int, int, bytes]] = []
    if pin is not None:
        written = json.dumps(base, ensure_ascii=model_ascii and not model_slashes)
        edits.append((*spans["model"], written.encode()))
    if protocol is OPENAI and stream == "true":
        if options is None:
            edits.append((last_end, last_end, b"," + USAGE))
            expected["stream_options"] = {"include_usage": True}
        elif options[1] is not None:
            start = spans["stream_options"][0]
            offset, end, text = options[1]
            edits.append((start + offset, start + end, text))
            expected["stream_options"] = {
                **(expected["stream_options"] or {}),
                "include_usage": True,
            }

    parsed = parse(protocol, raw)
    assert parsed.body == splice(raw, edits)
    assert json.loads(parsed.body) == expected
    if not edits:
        assert parsed.body is raw
    assert (parsed.model, parsed.pinned_provider) == (base, pin)


@st.composite
def spelled(draw: st.DrawFn, key: str) -> str:
    """`key` as a JSON string with any of its characters written as `\\u00XX` escapes."""
    out = []
    for char in key:
        if draw(st.booleans()):
            escape = f"\\u{ord(char):04x}"
            out.append(escape.upper().replace("\\U", "\\u") if draw(st.booleans()) else escape)
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


@given(st.data(), st.sampled_from(list(Protocol)))
def test_a_repeated_interpreted_key_is_refused_however_it_is_written(
    data: st.DataObject, protocol: Protocol
) -> None:
    draw = data.draw
    keys = sorted(INTERPRETED if protocol is OPENAI else {"model", "stream", "max_tokens"})
    key = draw(st.sampled_from(keys))
    values = {"model": '"m"', "stream": "false", "stream_options": "null"}
    value = values.get(key, "1")
    # Other members, whose values may hold interpreted keys of their own (tool schemas do).
    others = [
        f'"x{n}":{text}' for n, (text, _) in enumerate(draw(st.lists(fragments(), max_size=3)))
    ]
    others.append('"tools":[{"model":"inner","stream":true}]')
    members = [f"{draw(spelled(key))}:{value}", f"{draw(spelled(key))}:{value}", *others]
    if key != "model":
        members.append('"model":"m"')
    order = draw(st.permutations(members))
    body = ("{" + ",".join(order) + "}").encode()

    failure = fail(protocol, body)
    assert failure.kind is FailureKind.DUPLICATE_FIELD
    assert failure.param == key


@given(st.data(), st.sampled_from(list(Protocol)))
def test_interpreted_keys_nested_elsewhere_are_not_repeats(
    data: st.DataObject, protocol: Protocol
) -> None:
    nested = data.draw(st.sampled_from(sorted(INTERPRETED)))
    tools = f'[{{"{nested}":1}},{{"{nested}":{{"{nested}":2}}}}]'
    body = f'{{"model":"m","tools":{tools},"note":"\\u006d{nested}"}}'.encode()
    assert parse(protocol, body).body is body


# -- the input estimate ------------------------------------------------------------------


def test_the_estimate_is_a_quarter_token_per_byte_of_plain_text() -> None:
    prose = "The quick brown fox jumps over the lazy dog. " * 100
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": prose}]})
    assert estimate_input_tokens(body.encode()) == -(-len(body) // 4)


def test_media_count_as_a_flat_amount_whatever_their_size() -> None:
    def body(size: int) -> bytes:
        data = base64.b64encode(bytes(range(256)) * (size // 256)).decode()
        part = {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{data}"}}
        return json.dumps(
            {"model": "m", "messages": [{"role": "user", "content": [part]}]}
        ).encode()

    small, large = estimate_input_tokens(body(8_192)), estimate_input_tokens(body(1 << 20))
    assert small == large
    assert MEDIA_TOKENS < small < MEDIA_TOKENS + 100


def test_long_text_without_spaces_is_not_mistaken_for_media() -> None:
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "a" * 8000}]})
    assert estimate_input_tokens(body.encode()) == -(-len(body) // 4)


def test_anthropic_base64_sources_count_as_media() -> None:
    raw = json.dumps(ANTHROPIC_THINKING).encode()
    without = json.dumps({**ANTHROPIC_THINKING, "messages": []}).encode()
    assert (
        MEDIA_TOKENS
        <= estimate_input_tokens(raw) - estimate_input_tokens(without)
        < 2 * MEDIA_TOKENS
    )


def test_ascii_escapes_count_like_the_utf8_they_stand_for() -> None:
    text = "日本語のテキスト" * 200
    escaped = json.dumps({"model": "m", "content": text}, ensure_ascii=True).encode()
    raw = json.dumps({"model": "m", "content": text}, ensure_ascii=False).encode()
    assert estimate_input_tokens(escaped) == estimate_input_tokens(raw)


@given(st.binary(max_size=2000))
def test_the_estimate_is_deterministic_and_never_negative(body: bytes) -> None:
    assert estimate_input_tokens(body) == estimate_input_tokens(bytes(body)) >= 0


def test_parsing_a_large_body_is_fast() -> None:
    block = {"type": "text", "text": "The quick brown fox jumps over the lazy dog. " * 20}
    tool = {"type": "tool_use", "id": "toolu_01", "name": "Bash", "input": {"command": "ls -la"}}
    messages = [{"role": "user", "content": [block, tool]} for _ in range(5000)]
    raw = json.dumps({"messages": messages, "model": "m/groq", "stream": True}).encode()
    assert len(raw) > 5_000_000
    started = time.perf_counter()
    parsed = parse(OPENAI, raw)
    assert time.perf_counter() - started < 2.0  # about 0.05 s on a laptop; generous for CI
    assert parsed.body.endswith(b',"stream_options":{"include_usage":true}}')


# -- the context guard -------------------------------------------------------------------


def sized(protocol: Protocol, tokens: int, max_output: int | None = None) -> ParsedRequest:
    """A request whose input estimate is `tokens` (give or take one)."""
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": ""}]}
    if max_output is not None:
        body["max_tokens"] = max_output
    overhead = len(json.dumps(body))
    body["messages"][0]["content"] = "x" * max(0, tokens * 4 - overhead)
    parsed = parse(protocol, body)
    assert abs(parsed.input_tokens_estimate - tokens) <= 1
    return parsed


def test_the_guard_allows_the_estimate_to_run_25_percent_high() -> None:
    assert guard_input_tokens(125_000) == 100_000
    limits = EffectiveLimits(context=100_000)
    assert check_limits(sized(OPENAI, 124_000), limits) is None
    assert check_limits(sized(OPENAI, 126_000), limits) is not None


def test_the_guard_is_off_without_limits_or_when_not_enforced() -> None:
    request = sized(OPENAI, 200_000, max_output=10**6)
    off = EffectiveLimits(context=1000, output=10, enforce=False)
    assert check_limits(request, off) is None
    assert check_limits(request, EffectiveLimits()) is None


@pytest.mark.parametrize("protocol", list(Protocol))
def test_parse_request_runs_the_guard_when_given_limits(protocol: Protocol) -> None:
    raw = b'{"model":"m","max_tokens":9000}'
    failure = fail(protocol, raw, limits=EffectiveLimits(output=8192))
    assert failure.kind is FailureKind.OUTPUT_LIMIT_EXCEEDED
    assert isinstance(parse_request(protocol, raw, split=SPLIT), ParsedRequest)


def test_openai_input_too_long_reads_like_openai() -> None:
    failure = check_limits(sized(OPENAI, 200_000), EffectiveLimits(context=128_000))
    assert failure is not None
    assert failure.kind is FailureKind.CONTEXT_LENGTH_EXCEEDED
    assert (failure.param, failure.status) == ("messages", 400)
    assert "maximum context length is 128000 tokens" in failure.message
    assert "about 160000 tokens" in failure.message
    assert "reduce the length of the messages" in failure.message
    error = json.loads(render_error(OPENAI, failure).body)["error"]
    assert error["code"] == "context_length_exceeded"


def test_anthropic_input_too_long_reads_like_anthropic() -> None:
    failure = check_limits(sized(ANTHROPIC, 300_000), EffectiveLimits(context=200_000))
    assert failure is not None
    assert re.match(r"prompt is too long: 240000 tokens > 200000 maximum", failure.message)


def test_a_separate_input_limit_is_checked_too() -> None:
    limits = EffectiveLimits(context=400_000, input=100_000)
    failure = check_limits(sized(OPENAI, 150_000), limits)
    assert failure is not None
    assert "maximum input length is 100000 tokens" in failure.message


@pytest.mark.parametrize(
    ("protocol", "field", "message"),
    [
        (OPENAI, "max_completion_tokens", "max_completion_tokens is too large: 70000. This "
         "model supports at most 64000 completion tokens, whereas you provided 70000."),
        (OPENAI, "max_tokens", "max_tokens is too large: 70000. This model supports at most "
         "64000 completion tokens, whereas you provided 70000."),
        (ANTHROPIC, "max_tokens", "max_tokens: 70000 > 64000, which is the maximum allowed "
         "number of output tokens for claude-x"),
    ],
)  # fmt: skip
def test_output_over_the_model_limit_names_the_field(
    protocol: Protocol, field: str, message: str
) -> None:
    request = parse(protocol, {"model": "claude-x", field: 70_000})
    failure = check_limits(request, EffectiveLimits(output=64_000))
    assert failure is not None
    assert failure.kind is FailureKind.OUTPUT_LIMIT_EXCEEDED
    assert (failure.param, failure.message) == (field, message)


def test_output_exactly_at_the_limit_is_fine() -> None:
    request = parse(ANTHROPIC, {"model": "m", "max_tokens": 64_000})
    assert check_limits(request, EffectiveLimits(output=64_000)) is None


CLAUDE_CODE = re.compile(
    r"input length and `max_tokens` exceed context limit: (\d+) \+ (\d+) > (\d+)"
)


def test_input_plus_output_matches_what_claude_code_parses_and_its_retry_passes() -> None:
    limits = EffectiveLimits(context=200_000, output=64_000)
    failure = check_limits(sized(ANTHROPIC, 200_000, max_output=64_000), limits)
    assert failure is not None
    match = CLAUDE_CODE.match(failure.message)
    assert match is not None
    given_input, given_output, limit = map(int, match.groups())
    assert (given_input, given_output, limit) == (160_000, 64_000, 200_000)
    # Claude Code retries with max_tokens = limit - input - buffer: that request passes.
    retry = sized(ANTHROPIC, 200_000, max_output=limit - given_input - 1000)
    assert check_limits(retry, limits) is None


def test_openai_input_plus_output_reads_like_openai() -> None:
    request = sized(OPENAI, 100_000, max_output=60_000)
    failure = check_limits(request, EffectiveLimits(context=128_000))
    assert failure is not None
    assert failure.message.startswith(
        "This model's maximum context length is 128000 tokens. However, you requested about "
        "140000 tokens (80000 in the messages"
    )


def test_without_requested_output_only_the_input_is_checked() -> None:
    limits = EffectiveLimits(context=100_000, output=10)
    assert check_limits(sized(OPENAI, 120_000), limits) is None


# -- the span scanner --------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        b'"plain"',
        b'"quote \\" inside"',
        b'"backslash at end \\\\"',
        b'"brackets [{ in }] a string"',
        b'"unicode \\u0022 \\ud83d\\ude00 caf\xc3\xa9"',
        b"-12.5e+3",
        b"true",
        b"null",
        b'[1, "]", {"a": ["}"]}, []]',
        b'{"k": {"k": {"k": [[["\\"]"]]]}}}',
        b"[" * 40 + b"]" * 40,  # deeper than the one-match regex: the bracket count takes over
        b"[" * 40 + b'"x"' + b"]" * 40 + b"",
    ],
)
def test_the_scanner_finds_the_end_of_any_value(value: bytes) -> None:
    data = b" \n" + value + b" ,"
    assert skip_value(data, 2) == 2 + len(value)


def test_the_scanner_reports_members_with_decoded_keys() -> None:
    data = b' { "a" : 1 , "b\\u0022" :{"a":2}, "a":[3] }'
    members, opening, closing = object_members(data)
    assert (opening, closing) == (1, len(data) - 1)
    assert [(m.key, data[m.value_start : m.value_end]) for m in members] == [
        ("a", b"1"),
        ('b"', b'{"a":2}'),
        ("a", b"[3]"),
    ]


def test_the_scanner_handles_an_empty_object() -> None:
    assert object_members(b"{ \n }") == ([], 0, 4)


@given(fragments())
def test_the_scanner_agrees_with_json_on_any_value(fragment: tuple[str, Any]) -> None:
    text, value = fragment
    data = ("[" + text + "]").encode()
    assert skip_value(data, 1) == len(data) - 1
    assert json.loads(data) == [value]


def test_splice_rejects_overlapping_edits() -> None:
    with pytest.raises(ValueError, match="overlapping"):
        splice(b"abcdef", [(1, 3, b"x"), (2, 4, b"y")])


def test_a_served_whole_id_wins_over_an_unserved_split() -> None:
    served = {("openai/gpt-oss-20b", None)}

    def is_served(model: str, provider: str | None) -> bool:
        return (model, provider) in served

    assert split_model("openai/gpt-oss-20b", {"gpt-oss-20b"}, served=is_served) == (
        "openai/gpt-oss-20b",
        None,
    )
    served.add(("openai", "gpt-oss-20b"))
    assert split_model("openai/gpt-oss-20b", {"gpt-oss-20b"}, served=is_served) == (
        "openai",
        "gpt-oss-20b",
    )


def test_fingerprint_is_stable_across_turns_and_differs_between_conversations() -> None:
    opening = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    turn1 = parse(OPENAI, {"model": "m", "messages": opening})
    turn2 = parse(
        OPENAI,
        {"model": "m", "messages": [*opening, {"role": "assistant", "content": "Hello"}]},
    )
    other = parse(
        OPENAI, {"model": "m", "messages": [opening[0], {"role": "user", "content": "Yo"}]}
    )
    assert turn1.fingerprint is not None
    assert turn1.fingerprint == turn2.fingerprint
    assert turn1.fingerprint != other.fingerprint


def test_fingerprint_tolerates_odd_roles_and_empty_conversations() -> None:
    odd = parse(OPENAI, {"model": "m", "messages": [{"role": ["x"]}, "text"]})
    assert odd.fingerprint is not None
    assert parse(OPENAI, {"model": "m", "messages": []}).fingerprint is None
    assert parse(ANTHROPIC, {"model": "m", "max_tokens": 5}).fingerprint is None
