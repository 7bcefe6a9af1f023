"""The simulator's answers: merged body pieces keep their bytes and their moments."""

from __future__ import annotations

import pytest

from eggpool.core.effects import OpenUpstream
from eggpool.core.events import UpstreamBodyReceived
from eggpool.core.usage import AnthropicStreamObserver, OpenAIStreamObserver
from eggpool.simulated.provider import Reply
from eggpool.simulated.wire import Step

OPENAI = "https://x.test/v1/chat/completions"
ANTHROPIC = "https://x.test/v1/messages"


def _effect(url: str, stream: bool) -> OpenUpstream:
    body = b'{"model": "m", "stream": %s, "messages": []}' % (b"true" if stream else b"false")
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
