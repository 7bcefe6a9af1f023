"""Fuzzing the client request parser from realistic bodies outwards.

Three layers: arbitrary bytes; byte-level edits of realistic OpenAI and
Anthropic bodies (so mutations land inside strings, escapes, numbers and
nesting rather than being rejected at the first byte); and value swaps in
the decoded document, re-serialized in several styles, aimed at the fields
the parser interprets (`model`, `stream`, `stream_options`, the output-token
fields). The invariants: `parse_request` returns a `ParsedRequest` or a
`LocalFailure`, never raises; a failure renders in both protocols' shapes;
and an accepted body reaches the upstream as JSON equal to the client's,
with only the intended changes (the provider suffix gone from `model`,
`stream_options.include_usage` turned on for OpenAI streams).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import event, given
from hypothesis import strategies as st

from eggpool.core.catalog import EffectiveLimits
from eggpool.core.config import Protocol
from eggpool.core.errors import LocalFailure, render_error, render_stream_error
from eggpool.core.requests import ParsedRequest, parse_request, split_model
from tests.helpers.documents import leaves

PROVIDERS = frozenset({"groq", "openai", "open-router"})
IMAGE = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="  # noqa: E501
SEEDS: list[tuple[Protocol, dict[str, Any]]] = [
    (Protocol.OPENAI, {
        "messages": [
            {"role": "system", "content": "Be brief. \"Quotes\", \\backslashes\\ and caf\u00e9."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is this? \U0001f600"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{IMAGE}"}},
            ]},
        ],
        "model": "openai/gpt-oss-20b/groq",
        "stream": True,
        "stream_options": {"include_usage": False},
        "max_completion_tokens": 256,
        "temperature": 1.0,
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {
            "type": "object", "properties": {"x": {"type": "number", "minimum": 1e-3}}}}}],
        "response_format": {"type": "json_object"},
    }),
    (Protocol.OPENAI, {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
                       "stream": True}),
    (Protocol.ANTHROPIC, {
        "model": "claude-sonnet-4-5/open-router",
        "max_tokens": 4096,
        "system": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": IMAGE}},
            {"type": "text", "text": "Describe it. \u2028 line separator inside"},
        ]}],
        "stream": True,
    }),
]  # fmt: skip
STYLES: list[dict[str, Any]] = [
    {},
    {"separators": (",", ":")},
    {"indent": 2},
    {"ensure_ascii": False},
    {"indent": "\t", "ensure_ascii": False, "separators": (", ", " : ")},
]
SEED_BYTES = [
    (protocol, json.dumps(doc, **style).encode()) for protocol, doc in SEEDS for style in STYLES
]
TOKENS = [
    b'"', b"\\", b"\\u00", b"{", b"}", b"[", b"]", b",", b":", b" ", b"\n", b"\xff", b"\xc3",
    b"null", b"true", b"-0", b"1e2", b"NaN", b'"model":"x/groq",', b'"stream":true,',
    b'"stream_options":{},', b'"stream_options":null,', b'"max_tokens":-1,', b'"mod\\u0065l":"m",',
    b'"include_usage":true,', b"/groq", b"/nowhere", b'"\\/"',
]  # fmt: skip
FIELD_VALUES: st.SearchStrategy[Any] = st.sampled_from(
    [None, True, False, 0, -1, 1.0, 1e2, 2**31, 2**64, "", "x", "x/groq", "/groq", "a/b/openai",
     "\ud800", [], {}, {"include_usage": True}, {"include_usage": None}, {"include_usage": "y"}]
)  # fmt: skip
INTERPRETED = ["model", "stream", "stream_options", "max_tokens", "max_completion_tokens"]


def check(protocol: Protocol, raw: bytes, limits: EffectiveLimits | None = None) -> None:
    """The invariants, for any input."""
    result = parse_request(protocol, raw, split=lambda m: split_model(m, PROVIDERS), limits=limits)
    if isinstance(result, LocalFailure):
        event(f"failure: {result.kind}")
        assert 400 <= result.status < 500
        assert result.message
        for dialect in Protocol:
            json.loads(render_error(dialect, result).body)
            render_stream_error(dialect, result)
        return
    assert isinstance(result, ParsedRequest)
    event(f"parsed: pinned={result.pinned_provider is not None}, usage={result.usage_injected}")
    original = json.loads(raw)
    expected = dict(original)
    expected["model"] = result.model
    assert split_model(result.requested_model, PROVIDERS) == (result.model, result.pinned_provider)
    assert result.requested_model == original["model"]
    if result.usage_injected:
        assert protocol is Protocol.OPENAI
        assert result.stream
        assert not result.client_include_usage
        expected["stream_options"] = {
            **(original.get("stream_options") or {}),
            "include_usage": True,
        }
    assert json.loads(result.body) == expected
    if result.pinned_provider is None and not result.usage_injected:
        assert result.body is raw
    assert result.input_tokens_estimate >= 0


@given(st.binary(max_size=600), st.sampled_from(list(Protocol)))
def test_any_bytes_parse_or_fail_cleanly(raw: bytes, protocol: Protocol) -> None:
    check(protocol, raw)


byte_edits = st.lists(
    st.tuples(
        st.sampled_from(["insert", "delete", "replace", "duplicate", "truncate"]),
        st.integers(min_value=0, max_value=1 << 16),
        st.integers(min_value=1, max_value=40),
        st.sampled_from(TOKENS),
    ),
    min_size=1,
    max_size=4,
)


@given(st.sampled_from(SEED_BYTES), byte_edits, st.sampled_from(list(Protocol)))
def test_byte_edits_of_realistic_bodies_parse_or_fail_cleanly(
    seed: tuple[Protocol, bytes], edits: list[tuple[str, int, int, bytes]], other: Protocol
) -> None:
    protocol, raw = seed
    data = bytearray(raw)
    for op, position, length, token in edits:
        at = position % (len(data) + 1)
        if op == "insert":
            data[at:at] = token
        elif op == "delete":
            del data[at : at + length]
        elif op == "replace":
            data[at : at + len(token)] = token
        elif op == "duplicate":
            data[at:at] = data[at : at + length]
        else:
            del data[at:]
    check(protocol, bytes(data))
    check(other, bytes(data))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)
limits = st.none() | st.builds(
    EffectiveLimits,
    context=st.none() | st.integers(1, 10**6),
    input=st.none() | st.integers(1, 10**6),
    output=st.none() | st.integers(1, 10**6),
    enforce=st.booleans(),
)


@given(
    st.sampled_from(range(len(SEEDS))),
    st.lists(st.tuples(st.sampled_from(INTERPRETED), FIELD_VALUES | json_values), max_size=2),
    st.lists(st.tuples(st.integers(min_value=0), json_values), max_size=3),
    st.sampled_from(STYLES),
    limits,
)
def test_value_swaps_reach_the_upstream_as_intended(
    seed: int,
    fields: list[tuple[str, Any]],
    deep: list[tuple[int, Any]],
    style: dict[str, Any],
    model_limits: EffectiveLimits | None,
) -> None:
    protocol, document = SEEDS[seed]
    document = copy.deepcopy(document)
    for key, value in fields:
        if value is None and key == "model":
            document.pop(key, None)
        else:
            document[key] = value
    paths = list(leaves(document))
    for index, value in deep:
        if not paths:
            break
        *parents, last = paths[index % len(paths)]
        parent: Any = document
        try:
            for key in parents:
                parent = parent[key]
            parent[last] = value
        except (KeyError, IndexError, TypeError):
            continue
    try:
        raw = json.dumps(document, **style).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate with ensure_ascii=False: not sendable as UTF-8
        raw = json.dumps(document).encode("ascii")
    check(protocol, raw, model_limits)
