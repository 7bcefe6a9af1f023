"""The simulator's answers: merged body pieces keep their bytes and their moments."""

from __future__ import annotations

import pytest

from eggpool.core.effects import OpenUpstream
from eggpool.core.events import UpstreamBodyReceived
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


@pytest.mark.parametrize("url", [OPENAI, ANTHROPIC])
@pytest.mark.parametrize(
    "reply",
    [
        Reply.ok(8, latency=0.5, interval=0.25),
        Reply.ok(3, interval=0.1, piece=7),
        Reply.reset_after(2, interval=0.2),
        Reply.stall_after(1, interval=0.2),
        Reply.cut_after(3),
        Reply.status(429, retry_after=3),
    ],
    ids=["ok", "pieces", "reset", "stall", "cut", "429"],
)
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_merged_steps_keep_the_bytes_the_first_piece_and_the_end(
    reply: Reply, url: str, stream: bool
) -> None:
    effect = _effect(url, stream)
    steps = reply.steps(effect)
    merged = reply.steps(effect, merge=True)

    assert _body(merged) == _body(steps)
    bodies = [s for s in merged if isinstance(s.event, UpstreamBodyReceived)]
    assert len(bodies) <= 2  # the first piece, then everything else at once
    before, after = _timeline(steps), _timeline(merged)
    first = next((p for p in before if p[1] is UpstreamBodyReceived), None)
    if first is not None:
        assert first in after  # the first token at the same moment
    assert after[-1] == before[-1]  # and the last event
    if len(bodies) < len([s for s in steps if isinstance(s.event, UpstreamBodyReceived)]):
        assert len(merged) < len(steps)
