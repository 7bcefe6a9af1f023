"""The client side of a simulation: requests as a shell reports them, responses as seen.

Theory of operation. `request_event` builds the `ClientRequestReceived` a
shell would report for a body (`chat_body`, `messages_body` or raw bytes);
`entropy_for(seed, n)` gives request `n` its 64 bits of entropy (splitmix64,
deterministic and well mixed). `ClientView` is one client's view of its
response, filled from `RespondHead` / `RespondBody` / `RespondEnd`; it also
records what no HTTP server could send: a body before the head, a second
head, anything after the end. Writes after the client left are dropped and
counted, not treated as violations: the core may not have heard yet.

`START` is the default clock of a simulation (and of `playbook.at`): a
non-zero monotonic reading, since 0 must not mean "unset" anywhere, and
2026-01-01T00:00:00Z on the wall.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs

from eggpool.core.effects import RespondBody, RespondHead
from eggpool.core.events import ClientRequestReceived, Now
from eggpool.core.sse import SSEDecoder, SSEEvent

__all__ = [
    "ANTHROPIC_PATH",
    "DEFAULT_HEADERS",
    "OPENAI_PATH",
    "START",
    "ClientView",
    "chat_body",
    "entropy_for",
    "messages_body",
    "request_event",
]

Headers = tuple[tuple[str, str], ...]

START = Now(mono=1000.0, wall=1_767_225_600.0)
"""Default start: a non-zero monotonic clock (0 must not mean "unset") and 2026-01-01 UTC."""

OPENAI_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/v1/messages"
DEFAULT_HEADERS: Headers = (("content-type", "application/json"),)

_MASK = (1 << 64) - 1


def entropy_for(seed: int, n: int) -> int:
    """The entropy of request `n`: splitmix64 over (seed, n), 64 bits."""
    z = ((seed << 32) + n + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def chat_body(
    model: str, *, stream: bool = False, content: str = "Hello", **extra: object
) -> dict[str, object]:
    """An OpenAI chat-completions request body."""
    return {
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "stream": stream,
        **extra,
    }


def messages_body(
    model: str,
    *,
    stream: bool = False,
    content: str = "Hello",
    max_tokens: int = 256,
    **extra: object,
) -> dict[str, object]:
    """An Anthropic Messages request body."""
    return {
        "model": model,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": content}],
        "stream": stream,
        **extra,
    }


def _encode(body: Mapping[str, object] | bytes) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


def request_event(
    now: Now,
    path: str,
    body: Mapping[str, object] | bytes,
    *,
    request_id: str = "req-0001",
    entropy: int | None = None,
    headers: Headers = DEFAULT_HEADERS,
    method: str = "POST",
    client: str = "127.0.0.1",
) -> ClientRequestReceived:
    """The `ClientRequestReceived` a shell reports (the body dict is JSON-encoded)."""
    return ClientRequestReceived(
        now=now,
        request_id=request_id,
        entropy=entropy_for(0, 1) if entropy is None else entropy,
        method=method,
        path=path,
        headers=headers,
        body=_encode(body),
        client=client,
    )


@attrs.define
class ClientView:
    """One client request as its client saw it. Times are seconds since the start."""

    request_id: str
    path: str
    sent_at: float
    status: int | None = None
    headers: Headers = ()
    chunks: list[bytes] = attrs.field(factory=list)
    ended: bool = False
    gone: bool = False  # the client disconnected (`disconnect`)
    head_at: float | None = None
    first_body_at: float | None = None
    end_at: float | None = None
    gone_at: float | None = None
    writes_after_gone: int = 0  # dropped writes; not a violation (the core may not know yet)
    violations: list[str] = attrs.field(factory=list)

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    @property
    def done(self) -> bool:
        """Nothing more will reach this client: the response ended or the client left."""
        return self.ended or self.gone

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)

    def json(self) -> Any:
        return json.loads(self.body)

    def sse(self) -> list[SSEEvent]:
        """The complete SSE events of the body (an unfinished tail is left out)."""
        decoder = SSEDecoder()
        items = [*decoder.feed(self.body), *decoder.feed_eof()]
        return [item for item in items if isinstance(item, SSEEvent)]

    # -- recording (the simulation calls these) ------------------------------------------

    def _write(self, what: str, at: float) -> bool:
        """Whether a write may land; records a violation when it may not."""
        if self.ended:
            self.violations.append(f"{what} after the end at t={at:g}")
            return False
        if self.gone:
            self.writes_after_gone += 1
            return False
        return True

    def record_head(self, effect: RespondHead, at: float) -> None:
        if not self._write("head", at):
            return
        if self.status is not None:
            self.violations.append(f"second head ({effect.status}) at t={at:g}")
            return
        self.status, self.headers, self.head_at = effect.status, effect.headers, at

    def record_body(self, effect: RespondBody, at: float) -> None:
        if not self._write("body", at):
            return
        if self.status is None:
            self.violations.append(f"body before the head at t={at:g}")
        if self.first_body_at is None and effect.data:
            self.first_body_at = at
        self.chunks.append(effect.data)

    def record_end(self, at: float) -> None:
        if not self._write("end", at):
            return
        if self.status is None:
            self.violations.append(f"end before the head at t={at:g}")
        self.ended, self.end_at = True, at
