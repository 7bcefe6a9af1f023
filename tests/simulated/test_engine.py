"""The simulator's event loop: answers keep their bytes and their moments when coalesced."""

from __future__ import annotations

from eggpool.core.effects import OpenUpstream
from eggpool.core.events import UpstreamBodyReceived
from eggpool.simulated.engine import _coalesce
from eggpool.simulated.provider import Reply


def test_coalescing_keeps_the_bytes_the_first_piece_and_the_end() -> None:
    effect = OpenUpstream(
        attempt_id="r#1", request_id="r", account="a", url="https://x.test/v1/chat/completions",
        method="POST", headers=(), body=b'{"model": "m", "stream": true, "messages": []}',
    )  # fmt: skip
    steps = Reply.ok(8, latency=0.5, interval=0.25).steps(effect)
    merged = _coalesce(steps)

    def timeline(steps: list) -> list[tuple[float, type]]:
        t, out = 0.0, []
        for step in steps:
            t += step.delay
            out.append((round(t, 6), type(step.event)))
        return out

    def body(steps: list) -> bytes:
        return b"".join(s.event.data for s in steps if isinstance(s.event, UpstreamBodyReceived))

    assert body(merged) == body(steps)
    assert len(merged) < len(steps)
    before, after = timeline(steps), timeline(merged)
    first = next(p for p in before if p[1] is UpstreamBodyReceived)
    assert first in after  # the first token at the same moment
    assert after[-1] == before[-1]  # and the end
