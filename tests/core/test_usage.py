"""Usage and terminal observers, on streams shaped like what providers really send."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eggpool.core.usage import (
    AnthropicStreamObserver,
    ObservedResponse,
    OpenAIStreamObserver,
    StreamError,
    Usage,
    observe_anthropic_body,
    observe_openai_body,
)


def sse(obj: object, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    data = obj if isinstance(obj, str) else json.dumps(obj, separators=(",", ":"))
    return f"{head}data: {data}\n\n".encode()


def chunk(delta: dict[str, Any], *, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-abc",
        "object": "chat.completion.chunk",
        "model": "gpt-4.1-mini",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }


def run(observer: OpenAIStreamObserver | AnthropicStreamObserver, data: bytes, size: int = 0):  # type: ignore[no-untyped-def]
    """Feed `data` in pieces of `size` bytes (0: whole); return (observations, result)."""
    pieces = [data[i : i + size] for i in range(0, len(data), size)] if size else [data]
    observations = [observer.feed(piece) for piece in pieces]
    observations.append(observer.feed_eof())
    return observations, observer.result()


OPENAI_TEXT = b"".join(
    [
        sse(chunk({"role": "assistant", "content": ""}, usage=None)),
        sse(chunk({"content": "Hel"}, usage=None)),
        sse(chunk({"content": "lo"}, usage=None)),
        sse(chunk({}, finish="stop", usage=None)),
        sse(
            {
                "id": "chatcmpl-abc",
                "object": "chat.completion.chunk",
                "model": "gpt-4.1-mini",
                "choices": [],
                "usage": {
                    "prompt_tokens": 1200,
                    "completion_tokens": 40,
                    "total_tokens": 1240,
                    "prompt_tokens_details": {"cached_tokens": 1024},
                    "completion_tokens_details": {"reasoning_tokens": 0},
                },
            }
        ),
        b"data: [DONE]\n\n",
    ]
)


def test_openai_stream_yields_normalized_final_usage() -> None:
    _, result = run(OpenAIStreamObserver(), OPENAI_TEXT)
    assert result.usage == Usage(input_tokens=176, cache_read_tokens=1024, output_tokens=40)
    assert (result.model, result.upstream_id, result.finish_reason) == (
        "gpt-4.1-mini",
        "chatcmpl-abc",
        "stop",
    )
    assert result.terminal_seen


def test_openai_first_content_is_the_first_non_empty_delta() -> None:
    observer = OpenAIStreamObserver()
    first = observer.feed(sse(chunk({"role": "assistant", "content": ""})))
    second = observer.feed(sse(chunk({"content": "Hi"})))
    assert (first.first_content, second.first_content) == (False, True)


def test_openai_tool_call_counts_as_first_content() -> None:
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f"}}
    observation = OpenAIStreamObserver().feed(sse(chunk({"tool_calls": [call]})))
    assert observation.first_content


def test_openai_done_marks_the_terminal_event() -> None:
    observer = OpenAIStreamObserver()
    assert not observer.feed(sse(chunk({"content": "x"}))).terminal
    assert observer.feed(b"data: [DONE]\n\n").terminal


def test_openai_stream_without_done_is_a_premature_end() -> None:
    cut = OPENAI_TEXT[: OPENAI_TEXT.index(b"data: [DONE]")]
    _, result = run(OpenAIStreamObserver(), cut)
    assert not result.terminal_seen
    assert result.finish_reason == "stop"


def test_stream_cut_inside_an_event_is_flagged() -> None:
    _, result = run(OpenAIStreamObserver(), OPENAI_TEXT[:-5])
    assert result.incomplete_tail
    assert not result.terminal_seen


def test_cumulative_usage_in_every_chunk_is_not_summed() -> None:
    data = b"".join(
        sse(chunk({"content": "x"}, usage={"prompt_tokens": 10, "completion_tokens": n}))
        for n in range(1, 6)
    )
    _, result = run(OpenAIStreamObserver(), data + b"data: [DONE]\n\n")
    assert result.usage == Usage(input_tokens=10, output_tokens=5)


def test_deepseek_cache_hit_tokens_are_cache_reads() -> None:
    usage = {
        "prompt_tokens": 100,
        "completion_tokens": 7,
        "prompt_cache_hit_tokens": 64,
        "prompt_cache_miss_tokens": 36,
    }
    result = observe_openai_body(json.dumps({"choices": [], "usage": usage}).encode())
    assert result.usage == Usage(input_tokens=36, cache_read_tokens=64, output_tokens=7)


def test_openrouter_cost_and_cache_writes_are_kept() -> None:
    usage = {
        "prompt_tokens": 2000,
        "completion_tokens": 10,
        "cost": 0.0012345,
        "prompt_tokens_details": {"cached_tokens": 500, "cache_write_tokens": 1000},
    }
    result = observe_openai_body(json.dumps({"choices": [], "usage": usage}).encode())
    assert result.usage == Usage(
        input_tokens=500,
        cache_read_tokens=500,
        cache_write_tokens=1000,
        output_tokens=10,
        cost_microdollars=1235,
    )


def test_openai_reasoning_tokens_are_part_of_output() -> None:
    usage = {
        "prompt_tokens": 5,
        "completion_tokens": 300,
        "completion_tokens_details": {"reasoning_tokens": 256},
    }
    result = observe_openai_body(json.dumps({"choices": [], "usage": usage}).encode())
    assert result.usage is not None
    assert (result.usage.output_tokens, result.usage.reasoning_tokens) == (300, 256)
    assert not result.usage.reasoning_estimated


def test_openai_error_chunk_mid_stream_is_an_upstream_failure() -> None:
    error = {"error": {"message": "Provider returned error", "code": 502}}
    observer = OpenAIStreamObserver()
    observer.feed(sse(chunk({"content": "partial"})))
    observation = observer.feed(sse(error))
    assert observation.error == StreamError(type="502", message="Provider returned error")
    assert observer.result().error == observation.error


def test_strip_mode_forwards_everything_but_the_usage_only_chunk() -> None:
    observations, result = run(OpenAIStreamObserver(strip_usage_chunk=True), OPENAI_TEXT, 7)
    forwarded = b"".join(o.forward for o in observations)
    usage_chunk = OPENAI_TEXT.split(b"\n\n")[4] + b"\n\n"
    assert forwarded == OPENAI_TEXT.replace(usage_chunk, b"")
    assert result.usage is not None
    assert result.usage.output_tokens == 40


def test_without_strip_mode_chunks_are_forwarded_as_received() -> None:
    observer = OpenAIStreamObserver()
    assert observer.feed(OPENAI_TEXT[:13]).forward == OPENAI_TEXT[:13]


def test_strip_mode_keeps_usage_attached_to_a_content_chunk() -> None:
    data = sse(chunk({"content": "x"}, finish="stop", usage={"prompt_tokens": 3})) + (
        b"data: [DONE]\n\n"
    )
    observations, _ = run(OpenAIStreamObserver(strip_usage_chunk=True), data)
    assert b"".join(o.forward for o in observations) == data


def test_malformed_json_events_are_counted_and_skipped() -> None:
    data = b"data: {not json\n\n" + OPENAI_TEXT
    _, result = run(OpenAIStreamObserver(), data)
    assert result.malformed_events == 1
    assert result.usage is not None


def test_absurd_token_counts_are_clamped_and_junk_ignored() -> None:
    usage = {"prompt_tokens": 10**30, "completion_tokens": "lots", "cost": "NaN"}
    result = observe_openai_body(json.dumps({"usage": usage}).encode())
    assert result.usage == Usage(input_tokens=10**12)


# --- Anthropic ------------------------------------------------------------------------

ANTHROPIC_MESSAGE_START = {
    "type": "message_start",
    "message": {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [],
        "stop_reason": None,
        "usage": {
            "input_tokens": 25,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 1,
        },
    },
}


def anthropic_stream(*middle: bytes, final_usage: dict[str, int], stop: bool = True) -> bytes:
    parts = [
        sse(ANTHROPIC_MESSAGE_START, "message_start"),
        sse({"type": "ping"}, "ping"),
        *middle,
        sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": final_usage,
            },
            "message_delta",
        ),
    ]
    if stop:
        parts.append(sse({"type": "message_stop"}, "message_stop"))
    return b"".join(parts)


def text_block(text: str, index: int = 0) -> bytes:
    return b"".join(
        [
            sse(
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "text", "text": ""},
                },
                "content_block_start",
            ),
            sse(
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "text_delta", "text": text},
                },
                "content_block_delta",
            ),
            sse({"type": "content_block_stop", "index": index}, "content_block_stop"),
        ]
    )


def test_anthropic_usage_merges_message_start_and_delta() -> None:
    data = anthropic_stream(text_block("Hello"), final_usage={"output_tokens": 15})
    _, result = run(AnthropicStreamObserver(), data)
    assert result.usage == Usage(input_tokens=25, output_tokens=15)
    assert (result.model, result.upstream_id, result.finish_reason) == (
        "claude-sonnet-4-5",
        "msg_01",
        "end_turn",
    )
    assert result.terminal_seen


def test_anthropic_cache_fields_sent_only_in_message_delta_are_counted_once() -> None:
    final = {
        "input_tokens": 25,
        "cache_read_input_tokens": 4000,
        "cache_creation_input_tokens": 120,
        "output_tokens": 15,
    }
    _, result = run(
        AnthropicStreamObserver(), anthropic_stream(text_block("x"), final_usage=final)
    )
    assert result.usage == Usage(
        input_tokens=25, cache_read_tokens=4000, cache_write_tokens=120, output_tokens=15
    )


def test_anthropic_thinking_deltas_estimate_reasoning_tokens() -> None:
    thinking = b"".join(
        [
            sse(
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "thinking", "thinking": ""},
                },
                "content_block_start",
            ),
            sse(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "thinking_delta", "thinking": "a" * 400},
                },
                "content_block_delta",
            ),
            sse(
                {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta"}},
                "content_block_delta",
            ),
            sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        ]
    )
    data = anthropic_stream(thinking, text_block("ok", 1), final_usage={"output_tokens": 150})
    _, result = run(AnthropicStreamObserver(), data)
    assert result.usage is not None
    assert (result.usage.reasoning_tokens, result.usage.reasoning_estimated) == (100, True)


def test_anthropic_tool_use_start_counts_as_first_content() -> None:
    observer = AnthropicStreamObserver()
    observer.feed(sse(ANTHROPIC_MESSAGE_START, "message_start"))
    start = {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get", "input": {}},
    }
    assert observer.feed(sse(start, "content_block_start")).first_content


def test_anthropic_error_event_after_200_is_an_upstream_failure() -> None:
    observer = AnthropicStreamObserver()
    observer.feed(sse(ANTHROPIC_MESSAGE_START, "message_start") + text_block("par"))
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    observation = observer.feed(sse(error, "error"))
    assert observation.error == StreamError(type="overloaded_error", message="Overloaded")
    assert not observer.result().terminal_seen


def test_anthropic_stream_without_message_stop_is_a_premature_end() -> None:
    data = anthropic_stream(text_block("x"), final_usage={"output_tokens": 3}, stop=False)
    _, result = run(AnthropicStreamObserver(), data)
    assert not result.terminal_seen
    assert result.usage is not None


def test_anthropic_non_streaming_body() -> None:
    body = {
        "id": "msg_02",
        "type": "message",
        "model": "claude-haiku-4-5",
        "content": [{"type": "thinking", "thinking": "hmm" * 4}, {"type": "text", "text": "Hi"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 9, "cache_read_input_tokens": 90, "output_tokens": 20},
    }
    result = observe_anthropic_body(json.dumps(body).encode())
    assert result == ObservedResponse(
        usage=Usage(
            input_tokens=9,
            cache_read_tokens=90,
            output_tokens=20,
            reasoning_tokens=3,
            reasoning_estimated=True,
        ),
        model="claude-haiku-4-5",
        upstream_id="msg_02",
        finish_reason="end_turn",
        terminal_seen=True,
        content_chars=14,
    )


def test_non_json_bodies_are_malformed_not_errors() -> None:
    assert observe_openai_body(b"<html>").malformed_events == 1
    assert observe_anthropic_body(b"\xff").malformed_events == 1


# --- properties -----------------------------------------------------------------------

counts = st.integers(min_value=0, max_value=10**9)


@st.composite
def usages(draw: st.DrawFn, *, cache_write: bool = True) -> Usage:
    output = draw(counts)
    return Usage(
        input_tokens=draw(counts),
        cache_read_tokens=draw(counts),
        cache_write_tokens=draw(counts) if cache_write else 0,
        output_tokens=output,
        reasoning_tokens=draw(st.integers(min_value=0, max_value=output)),
    )


def openai_stream_for(usage: Usage, texts: list[str], cumulative: bool) -> bytes:
    wire = {
        "prompt_tokens": usage.total_input_tokens,
        "completion_tokens": usage.output_tokens,
        "prompt_tokens_details": {
            "cached_tokens": usage.cache_read_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
        },
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }
    parts = []
    for i, text in enumerate(texts):
        partial = dict(wire, completion_tokens=min(i, usage.output_tokens))
        parts.append(sse(chunk({"content": text}, usage=partial if cumulative else None)))
    parts.append(sse({"id": "x", "choices": [], "usage": wire}))
    parts.append(b"data: [DONE]\n\n")
    return b"".join(parts)


@given(usages(), st.lists(st.text(max_size=20), max_size=8), st.booleans(), st.integers(0, 50))
def test_openai_usage_round_trips_through_any_stream(
    usage: Usage, texts: list[str], cumulative: bool, size: int
) -> None:
    data = openai_stream_for(usage, texts, cumulative)
    _, result = run(OpenAIStreamObserver(), data, size)
    assert result.usage == usage
    assert result.terminal_seen


@given(usages(), st.integers(0, 50), st.booleans())
def test_anthropic_usage_round_trips_through_any_stream(
    usage: Usage, size: int, cache_in_delta: bool
) -> None:
    cache = {
        "cache_read_input_tokens": usage.cache_read_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
    }
    start = json.loads(json.dumps(ANTHROPIC_MESSAGE_START))
    start["message"]["usage"] = {"input_tokens": usage.input_tokens, "output_tokens": 1}
    if not cache_in_delta:
        start["message"]["usage"].update(cache)
    final = {"output_tokens": usage.output_tokens, **(cache if cache_in_delta else {})}
    data = anthropic_stream(text_block("hi"), final_usage=final).replace(
        sse(ANTHROPIC_MESSAGE_START, "message_start"), sse(start, "message_start")
    )
    _, result = run(AnthropicStreamObserver(), data, size)
    assert result.usage == attrs_replace(usage, reasoning_tokens=0)


def attrs_replace(usage: Usage, **changes: Any) -> Usage:
    return attrs.evolve(usage, **changes)


@given(st.binary(max_size=500), st.integers(0, 30))
def test_observers_never_raise_on_arbitrary_bytes(data: bytes, size: int) -> None:
    run(OpenAIStreamObserver(strip_usage_chunk=True), data, size)
    run(AnthropicStreamObserver(), data, size)
    observe_openai_body(data)
    observe_anthropic_body(data)


@given(st.integers(1, 60))
@pytest.mark.parametrize("strip", [False, True])
def test_any_chunking_gives_the_same_result(strip: bool, size: int) -> None:
    _, whole = run(OpenAIStreamObserver(strip_usage_chunk=strip), OPENAI_TEXT)
    _, split = run(OpenAIStreamObserver(strip_usage_chunk=strip), OPENAI_TEXT, size)
    assert split == whole
