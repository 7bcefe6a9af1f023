"""The simulator's answers: merged body pieces keep their bytes and their moments."""

from __future__ import annotations

import json

import pytest

from eggpool.core.effects import OpenUpstream
from eggpool.core.events import UpstreamBodyReceived
from eggpool.core.usage import AnthropicStreamObserver, OpenAIStreamObserver
from eggpool.simulated.provider import Reply
from eggpool.simulated.wire import Step

OPENAI = "https://x.test/v1/chat/completions"
ANTHROPIC = "https://x.test/v1/messages"


def _effect(url: str, stream: bool, model: str = "m", include_usage: bool = False) -> OpenUpstream:
    request = {"model": model, "stream": stream, "messages": []}
    if include_usage:
        request["stream_options"] = {"include_usage": True}
    body = json.dumps(request).encode()
    return OpenUpstream(
        attempt_id="r#1", request_id="r", account="a", url=url, method="POST", headers=(),
        body=body,
    )  # fmt: skip


def _timeline(steps: list[Step]) -> list[tuple[float, type]]:
    t, out = 0.0, []
    for step in steps:
        t += step.delay
        out.append((round(t, 6), type(step.event)))
    return out


def _body(steps: list[Step]) -> bytes:
    return b"".join(s.event.data for s in steps if isinstance(s.event, UpstreamBodyReceived))


def _first_token(steps: list[Step], url: str, stream: bool) -> float | None:
    """When the Pool sees the first token: the first content in a stream (as its observer
    finds it), or the first body piece of a whole answer."""
    observer = AnthropicStreamObserver() if url == ANTHROPIC else OpenAIStreamObserver()
    t = 0.0
    for step in steps:
        t += step.delay
        if isinstance(step.event, UpstreamBodyReceived) and (
            not stream or observer.feed(step.event.data).first_content
        ):
            return round(t, 6)
    return None


@pytest.mark.parametrize("url", [OPENAI, ANTHROPIC])
@pytest.mark.parametrize(
    "reply",
    [
        Reply.ok(8, latency=0.5, interval=0.25),
        Reply.ok(3, interval=0.1, piece=7),
        Reply.ok(5, latency=0.2, interval=0.1, opening_interval=0.0),
        Reply.reset_after(2, interval=0.2),
        Reply.stall_after(1, interval=0.2),
        Reply.cut_after(3),
        Reply.status(429, retry_after=3),
    ],
    ids=["ok", "pieces", "opening-at-once", "reset", "stall", "cut", "429"],
)
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_merged_steps_keep_the_bytes_the_first_piece_and_the_end(
    reply: Reply, url: str, stream: bool
) -> None:
    effect = _effect(url, stream)
    steps = reply.steps(effect)
    merged = reply.steps(effect, merge=True)

    assert _body(merged) == _body(steps)
    first = _first_token(merged, url, stream)
    assert first == _first_token(steps, url, stream)
    before, after = _timeline(steps), _timeline(merged)
    bodies = [t for t, kind in after if kind is UpstreamBodyReceived]
    assert len([t for t in bodies if first is not None and t > first]) <= 1  # the rest at once
    assert after[-1] == before[-1]  # the same last event at the same moment
    if len(bodies) < len([s for s in steps if isinstance(s.event, UpstreamBodyReceived)]):
        assert len(merged) < len(steps)


@pytest.mark.parametrize("url", [OPENAI, ANTHROPIC])
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize("include_usage", [True, False], ids=["usage", "no-usage"])
@pytest.mark.parametrize("model", ["m", 'odd "100%" \u00e9\u2603/x'])
@pytest.mark.parametrize(
    "reply",
    [
        Reply.ok(0),
        Reply.ok(1, latency=0.3, interval=0.05, input_tokens=1234, cached_tokens=34),
        Reply.ok(9, latency=None, interval=0.125, opening_interval=0.01, tokens_per_chunk=7),
        Reply.ok(4, headers=(("x-extra", "1"),), include_usage=True),
    ],
    ids=["empty", "one", "nine", "extra-header"],
)
def test_a_merged_complete_answer_is_the_unmerged_one_joined(
    reply: Reply, url: str, stream: bool, include_usage: bool, model: str
) -> None:
    """Merged complete answers are put together from a cached shape: the same heads, the
    same bytes, and each merged body at the moment of the last piece it joins."""
    effect = _effect(url, stream, model, include_usage)
    steps = reply.steps(effect)
    merged = reply.steps(effect, merge=True)
    assert [s.event for s in merged if not isinstance(s.event, UpstreamBodyReceived)] == [
        s.event for s in steps if not isinstance(s.event, UpstreamBodyReceived)
    ]
    assert _body(merged) == _body(steps)
    t, ends = 0.0, {}  # unmerged: when each byte offset of the body has arrived
    size = 0
    for step in steps:
        t += step.delay
        if isinstance(step.event, UpstreamBodyReceived):
            size += len(step.event.data)
            ends[size] = t
    t, size = 0.0, 0
    for step in merged:
        t += step.delay
        if isinstance(step.event, UpstreamBodyReceived):
            size += len(step.event.data)
            assert t == pytest.approx(ends[size], abs=1e-9)
    assert _timeline(merged)[-1] == _timeline(steps)[-1]
