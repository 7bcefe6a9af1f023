"""A scriptable fake upstream: the events a provider would cause for one `OpenUpstream`.

Theory of operation. A test scripts, per account (or per account and
model), the `Reply` each call gets: `Reply.ok(chunks=5)`, `Reply.status(429,
retry_after=30)`, `Reply.cut_after(3)`, `Reply.refused()`, ... Given an
`OpenUpstream` effect, `FakeProvider.respond` picks the reply for that call
and returns what a real provider (plus the shell's HTTP client) would report
back: a list of `Step`s, each a delay (seconds after the previous step; the
first counts from the dispatch) and an upstream event naming the attempt.
No sockets, no clock: the events carry the placeholder `UNSTAMPED` time, and
whoever delivers them (the `Simulation` in `harness.py`) stamps the real
`Now` with `Step.stamp(now)`.

What the fake reads from the effect: `account`, `attempt_id`, the URL path
(ending with the provider's `anthropic_path`, default `/messages`, means the
Anthropic Messages API; `openai_path`, default `/chat/completions`, means
OpenAI chat completions) and the JSON body (`model`, `stream`, OpenAI
`stream_options.include_usage`). A body that is not a JSON object is
answered with a 400, as a real provider would, whatever the script says.

The wire shapes (heads, error bodies, SSE streams as real providers send
them) live in `provider_wire.py`; this module is the scripting API.

Usage is deterministic, so tests can assert ledger totals:
`input_tokens = len(effect.body) // 4` (or the scripted `input_tokens`),
`cache_read_tokens = cached_tokens`, `output_tokens = chunks *
tokens_per_chunk`. `Reply.usage(body)` computes it; every `Call` records the
usage the response actually reported (None when the reply never reports a
final usage: cut, reset, stalled, errored, or an OpenAI stream without
`include_usage`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import attrs

from eggpool.core.config import Protocol
from eggpool.core.effects import FetchModelList, OpenUpstream
from eggpool.core.events import ModelListFailed, ModelListReceived
from eggpool.core.retry import TransportFailure
from eggpool.core.usage import Usage
from eggpool.simulated.wire import (
    UNSTAMPED,
    Answer,
    Headers,
    ProviderEvent,
    ReplyKind,
    RequestShape,
    Step,
    UpstreamEvent,
    error_body,
    model_list_body,
    wants_usage,
)

__all__ = [
    "DEFAULT_REPLY",
    "UNSTAMPED",
    "Call",
    "FakeProvider",
    "ModelList",
    "Reply",
    "ReplyKind",
    "Script",
    "Step",
    "UpstreamEvent",
    "error_body",
    "protocol_of",
]


def _retry_after(value: float | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else str(value)


@attrs.frozen(kw_only=True, slots=True)
class Reply:
    """What one call gets. Build with the class methods; fields are the knobs they set."""

    kind: ReplyKind = ReplyKind.OK
    code: int = 200
    chunks: int = 3  # content chunks of a complete answer
    after: int = 0  # content chunks sent before a cut / failure / stall / bad or error event
    latency: float | None = 0.05  # dispatch -> head (None: the effect's connect_timeout)
    interval: float = 0.01  # between body events
    opening_interval: float | None = None  # between those before a stream's first token
    retry_after: str | None = None
    headers: Headers = ()  # extra response headers
    body: bytes | None = None  # replaces the default error / malformed bytes
    failure: TransportFailure = TransportFailure.RESET
    error_type: str | None = None  # in-stream error type (default per protocol)
    complete: bool = True  # MALFORMED: the rest of the stream follows the bad event
    tokens_per_chunk: int = 5
    input_tokens: int | None = None  # None: len(request body) // 4
    cached_tokens: int = 0
    include_usage: bool | None = None  # OpenAI streams; None: as the request asks
    piece: int = 0  # > 0: body events are split into pieces of this many bytes

    # -- constructors --------------------------------------------------------------

    @classmethod
    def ok(
        cls, chunks: int = 3, *, latency: float = 0.05, interval: float = 0.01, **knobs: Any
    ) -> Reply:
        """A complete answer: `chunks` content chunks (streamed, or joined in one JSON body)."""
        return cls(chunks=chunks, latency=latency, interval=interval, **knobs)

    @classmethod
    def status(
        cls,
        code: int,
        *,
        retry_after: float | str | None = None,
        body: bytes | None = None,
        latency: float = 0.05,
        **knobs: Any,
    ) -> Reply:
        """A non-2xx answer with the provider's error body (`error_body`) or `body`."""
        return cls(
            kind=ReplyKind.STATUS,
            code=code,
            retry_after=_retry_after(retry_after),
            body=body,
            latency=latency,
            **knobs,
        )

    @classmethod
    def rate_limited(cls, retry_after: float | str | None = None, **knobs: Any) -> Reply:
        return cls.status(429, retry_after=retry_after, **knobs)

    @classmethod
    def model_not_found(cls, **knobs: Any) -> Reply:
        return cls.status(404, **knobs)

    @classmethod
    def overloaded(cls, **knobs: Any) -> Reply:
        """Anthropic's 529 `overloaded_error`."""
        return cls.status(529, **knobs)

    @classmethod
    def cut_after(cls, after: int, **knobs: Any) -> Reply:
        """200, `after` content chunks, then a clean EOF: no usage, no terminal event."""
        return cls(kind=ReplyKind.CUT, after=after, **knobs)

    @classmethod
    def reset_after(cls, after: int, **knobs: Any) -> Reply:
        """200, `after` content chunks, then the connection is reset."""
        return cls.fails_after(after, TransportFailure.RESET, **knobs)

    @classmethod
    def fails_after(cls, after: int, failure: TransportFailure, **knobs: Any) -> Reply:
        return cls(kind=ReplyKind.FAIL_MID, after=after, failure=failure, **knobs)

    @classmethod
    def stall_after(cls, after: int, **knobs: Any) -> Reply:
        """200, `after` content chunks, then silence (for idle timeouts)."""
        return cls(kind=ReplyKind.STALL, after=after, **knobs)

    @classmethod
    def malformed(
        cls, after: int = 1, *, body: bytes | None = None, complete: bool = True, **knobs: Any
    ) -> Reply:
        """200 with one undecodable event (a truncated usage chunk, unless `body`) after
        `after` chunks; then the rest of the stream, or (`complete=False`) EOF."""
        return cls(kind=ReplyKind.MALFORMED, after=after, body=body, complete=complete, **knobs)

    @classmethod
    def stream_error(cls, after: int = 1, *, error_type: str | None = None, **knobs: Any) -> Reply:
        """200, `after` chunks, then Anthropic `event: error` / an OpenAI error chunk, EOF.

        A non-streaming request gets a 200 whose JSON body is the error (as
        OpenRouter answers)."""
        return cls(kind=ReplyKind.STREAM_ERROR, after=after, error_type=error_type, **knobs)

    @classmethod
    def slow_first_byte(cls, seconds: float, **knobs: Any) -> Reply:
        """A complete answer whose head arrives only after `seconds`."""
        return cls(latency=seconds, **knobs)

    @classmethod
    def refused(cls) -> Reply:
        """`UpstreamFailed(CONNECT_REFUSED)`, at once."""
        return cls.failed(TransportFailure.CONNECT_REFUSED)

    @classmethod
    def unreachable(cls) -> Reply:
        """`UpstreamFailed(CONNECT_TIMEOUT)` after the effect's `connect_timeout`."""
        return cls(kind=ReplyKind.FAIL, failure=TransportFailure.CONNECT_TIMEOUT, latency=None)

    @classmethod
    def failed(cls, failure: TransportFailure, *, latency: float = 0.0) -> Reply:
        """A transport failure before any head (DNS, TLS, proxy, refused, ...)."""
        return cls(kind=ReplyKind.FAIL, failure=failure, latency=latency)

    @classmethod
    def hang(cls) -> Reply:
        """Connected, request written, and no answer ever: only a core timer ends it."""
        return cls(kind=ReplyKind.HANG)

    # -- what it produces ----------------------------------------------------------

    def usage(self, body: bytes) -> Usage:
        """The usage a complete answer to a request with this body reports."""
        uncached, cached, output = self.usage_numbers(body)
        return Usage(input_tokens=uncached, cache_read_tokens=cached, output_tokens=output)

    def usage_numbers(self, body: bytes) -> tuple[int, int, int]:
        """`usage(body)` as (uncached input, cached input, output) tokens."""
        uncached = len(body) // 4 if self.input_tokens is None else self.input_tokens
        return uncached, self.cached_tokens, self.chunks * self.tokens_per_chunk

    def steps(
        self,
        effect: OpenUpstream,
        *,
        openai_path: str = "/chat/completions",
        anthropic_path: str = "/messages",
        merge: bool = False,
    ) -> list[Step]:
        """The events this reply causes for `effect` (pure: same effect, same steps).

        `merge` joins the body pieces after the first into one step (see `Answer`)."""
        protocol = protocol_of(effect.url, openai_path, anthropic_path)
        return Answer(self, effect, protocol, merge=merge).steps()

    def reported_usage(self, effect: OpenUpstream, protocol: Protocol) -> Usage | None:
        """The final usage the response carries, if it carries one."""
        request = RequestShape.parse(effect.body)
        if request is None:
            return None
        if self.kind is ReplyKind.OK or (self.kind is ReplyKind.MALFORMED and self.complete):
            if request.stream and protocol is Protocol.OPENAI and not wants_usage(self, request):
                return None
            return self.usage(effect.body)
        return None


@functools.lru_cache(maxsize=1024)
@functools.lru_cache(maxsize=256)  # a pool has a few providers, each one URL per API
def protocol_of(
    url: str, openai_path: str = "/chat/completions", anthropic_path: str = "/messages"
) -> Protocol:
    """The API an upstream URL speaks, from the end of its path."""
    path = urlsplit(url).path.rstrip("/")
    if path.endswith(anthropic_path.rstrip("/")):
        return Protocol.ANTHROPIC
    if path.endswith(openai_path.rstrip("/")):
        return Protocol.OPENAI
    raise ValueError(f"the fake provider serves no API at {url!r}")


# --- model lists --------------------------------------------------------------------------


@attrs.frozen(kw_only=True, slots=True)
class ModelList:
    """The answer to a `FetchModelList`: an OpenAI-shaped list, an error status, or a failure."""

    models: tuple[str, ...] = ()
    code: int = 200
    failure: str | None = None
    delay: float = 0.05
    body: bytes | None = None

    @classmethod
    def of(cls, *models: str, delay: float = 0.05) -> ModelList:
        return cls(models=models, delay=delay)

    @classmethod
    def status(cls, code: int, *, body: bytes | None = None, delay: float = 0.05) -> ModelList:
        return cls(code=code, body=body, delay=delay)

    @classmethod
    def failed(cls, reason: str, *, delay: float = 0.05) -> ModelList:
        return cls(failure=reason, delay=delay)

    def steps(self, account: str) -> list[Step]:
        if self.failure is not None:
            event: ProviderEvent = ModelListFailed(
                now=UNSTAMPED, account=account, reason=self.failure
            )
        else:
            event = ModelListReceived(now=UNSTAMPED, account=account, status=self.code,
                                      body=self._body())  # fmt: skip
        return [Step(delay=self.delay, event=event)]

    def _body(self) -> bytes:
        if self.body is not None:
            return self.body
        if self.code != 200:
            return error_body(Protocol.OPENAI, self.code)[0]
        return model_list_body(self.models)


# --- the provider -------------------------------------------------------------------------

DEFAULT_REPLY = Reply.ok()
"""What an account without a script gets, unless `FakeProvider(default=...)` says otherwise."""

Key = str | tuple[str, str]
"""A script key: an account, or (account, model) for one model of an account."""


@attrs.frozen(slots=True)
class Script:
    """Replies in call order; after the last, the last repeats (or, with `cycle`, all do)."""

    replies: tuple[Reply, ...]
    cycle: bool = False

    @classmethod
    def of(cls, *replies: Reply, cycle: bool = False) -> Script:
        if not replies:
            raise ValueError("a script needs at least one reply")
        return cls(replies, cycle)

    def pick(self, number: int) -> Reply:
        """The reply to call `number` (1-based)."""
        index = number - 1
        if self.cycle:
            return self.replies[index % len(self.replies)]
        return self.replies[min(index, len(self.replies) - 1)]


ScriptLike = Reply | Sequence[Reply] | Script


def _as_script(value: ScriptLike) -> Script:
    if isinstance(value, Script):
        return value
    if isinstance(value, Reply):
        return Script.of(value)
    return Script.of(*value)


@attrs.frozen(kw_only=True, slots=True)
class Call:
    """One `OpenUpstream` the provider answered."""

    number: int  # 1-based, counted per script key (restarts when the key is re-scripted)
    account: str
    model: str
    attempt_id: str
    request_id: str
    protocol: Protocol
    stream: bool
    reply: Reply
    usage: Usage | None  # the final usage the response reports, if it reports one


class FakeProvider:
    """Maps accounts (or account x model) to scripts, answers effects, counts calls."""

    def __init__(
        self,
        scripts: Mapping[Key, ScriptLike] | None = None,
        *,
        default: Reply | None = DEFAULT_REPLY,
        models: Mapping[str, ModelList | Sequence[str]] | None = None,
        default_models: ModelList | None = None,
        openai_path: str = "/chat/completions",
        anthropic_path: str = "/messages",
    ) -> None:
        self._scripts: dict[Key, Script] = {}
        self._numbers: dict[Key, int] = {}
        self.default = default
        self._models: dict[str, ModelList] = {}
        self.default_models = default_models
        self.openai_path = openai_path
        self.anthropic_path = anthropic_path
        self.calls: list[Call] = []
        self.model_list_calls: list[str] = []
        for key, script in (scripts or {}).items():
            self.script(key, script)
        for account, listing in (models or {}).items():
            self.models(account, listing)

    def script(self, key: Key, script: ScriptLike, *more: Reply, cycle: bool = False) -> None:
        """(Re)script an account or (account, model); its call numbering starts over."""
        if more or cycle:
            if not isinstance(script, Reply):
                raise TypeError("pass replies one by one to combine them with `more` / `cycle`")
            self._scripts[key] = Script.of(script, *more, cycle=cycle)
        else:
            self._scripts[key] = _as_script(script)
        self._numbers[key] = 0

    def models(self, account: str, listing: ModelList | Sequence[str]) -> None:
        self._models[account] = (
            listing if isinstance(listing, ModelList) else ModelList.of(*listing)
        )

    # -- answering -------------------------------------------------------------------

    def respond(self, effect: OpenUpstream) -> list[Step]:
        """Pick the reply for this call, record the call, return the reply's steps."""
        protocol = protocol_of(effect.url, self.openai_path, self.anthropic_path)
        request = RequestShape.parse(effect.body)
        model = request.model if request is not None else ""
        key: Key = (effect.account, model)
        if key not in self._scripts:
            key = effect.account
        number = self._numbers.get(key, 0) + 1
        self._numbers[key] = number
        script = self._scripts.get(key)
        if script is not None:
            reply = script.pick(number)
        elif self.default is not None:
            reply = self.default
        else:
            raise KeyError(f"no script for account {effect.account!r} and no default reply")
        self.calls.append(
            Call(
                number=number,
                account=effect.account,
                model=model,
                attempt_id=effect.attempt_id,
                request_id=effect.request_id,
                protocol=protocol,
                stream=request is not None and request.stream,
                reply=reply,
                usage=reply.reported_usage(effect, protocol),
            )
        )
        return reply.steps(
            effect, openai_path=self.openai_path, anthropic_path=self.anthropic_path
        )

    def model_list(self, effect: FetchModelList) -> list[Step]:
        self.model_list_calls.append(effect.account)
        listing = self._models.get(effect.account, self.default_models)
        if listing is None:
            listing = ModelList.failed(f"fake: no model list scripted for {effect.account}")
        return listing.steps(effect.account)

    # -- bookkeeping -----------------------------------------------------------------

    def calls_for(self, account: str, model: str | None = None) -> list[Call]:
        return [
            call
            for call in self.calls
            if call.account == account and (model is None or call.model == model)
        ]

    def count(self, account: str, model: str | None = None) -> int:
        return len(self.calls_for(account, model))

    def reported_usage(self, account: str | None = None) -> Usage:
        """The sum of the usage that complete responses reported (for ledger assertions)."""
        total = Usage()
        for call in self.calls:
            if call.usage is None or (account is not None and call.account != account):
                continue
            total = Usage(
                input_tokens=total.input_tokens + call.usage.input_tokens,
                cache_read_tokens=total.cache_read_tokens + call.usage.cache_read_tokens,
                cache_write_tokens=total.cache_write_tokens + call.usage.cache_write_tokens,
                output_tokens=total.output_tokens + call.usage.output_tokens,
            )
        return total
