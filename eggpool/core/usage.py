"""Usage and terminal observers: what an upstream response says about tokens, cost and its end.

Theory of operation. The proxy relays each upstream response to the client
and keeps an observer beside it. The observer reads the same bytes (through
an `SSEDecoder` for streams, one JSON parse for plain responses) and distils
one `ObservedResponse`: a normalized `Usage`, the model and upstream id,
the finish reason, whether the protocol's terminal event arrived, and an
in-stream error if one came. Per chunk it answers three questions the
request machine acts on at once (`Observation`): did generated content
start here (TTFT), did the terminal event arrive, did an error event come?

Normalization happens exactly once, here (user-needs.md, takeaway 7):

- `Usage.input_tokens` is *uncached* input. OpenAI-shaped `prompt_tokens`
  include cached tokens (`prompt_tokens_details.cached_tokens`, DeepSeek's
  `prompt_cache_hit_tokens`, OpenRouter's `cache_write_tokens`), so those
  are subtracted; Anthropic `input_tokens` already exclude
  `cache_read_input_tokens` and `cache_creation_input_tokens`.
- The **final** usage wins, never a sum: OpenAI-compatible providers that
  repeat cumulative usage in every chunk simply overwrite it. Anthropic
  usage is merged field by field, `message_delta` over `message_start`,
  since newer API versions send the cache fields only in `message_delta`.
- `reasoning_tokens` are part of `output_tokens`, not added to them.
  OpenAI reports them (`completion_tokens_details.reasoning_tokens`);
  Anthropic does not, so they are estimated from the `thinking_delta` text
  (4 characters a token, capped at the output) and flagged as estimated.
- A provider-reported cost (OpenRouter `usage.cost`, dollars) becomes
  integer microdollars.

Terminal events: OpenAI streams end with `data: [DONE]`, Anthropic streams
with `event: message_stop`. A stream that ends without one is a premature
EOF (`terminal_seen` false), never a success, even if a finish reason came.
An Anthropic `event: error` (e.g. `overloaded_error` after a 200) or an
OpenAI chunk with a top-level `error` object is an upstream failure.

Usage-only chunk. For OpenAI streams the proxy asks upstream for
`stream_options.include_usage` even when the client did not, because
without it there is no usage to bill. OpenAI then sends one extra chunk
with `"choices": []` and the usage, before `[DONE]`. With
`strip_usage_chunk=True` the observer forwards the stream event by event
(the decoder's raw mode) and leaves that chunk out, so the client receives
exactly the stream it asked for; OpenAI also adds `"usage": null` to every
other chunk, which is left as sent (absent and null mean the same to every
client we know, and rewriting each chunk would break byte fidelity).

Observers never raise on upstream bytes: malformed JSON is counted and
skipped. Work per chunk is bounded: after the first content, events are
JSON-decoded only when they may carry usage, an error or a finish reason.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

import attrs

from eggpool.core.sse import SSEDecoder, SSEEvent, SSEIncomplete, SSEItem, SSEOversize

__all__ = [
    "AnthropicStreamObserver",
    "Observation",
    "ObservedResponse",
    "OpenAIStreamObserver",
    "StreamError",
    "Usage",
    "observe_anthropic_body",
    "observe_openai_body",
]

MAX_TOKENS = 10**12  # larger counts are clamped: a provider bug must not overflow storage
_CHARS_PER_TOKEN = 4
# Chunks matching none of these are plain content deltas: no JSON decode needed.
# ("usage": null rides on every chunk once include_usage is on, so only an object counts.)
_MAY_MATTER = re.compile(r'"usage"\s*:\s*\{|"error"\s*:|"finish_reason"\s*:\s*"')


@attrs.frozen(kw_only=True, slots=True)
class Usage:
    """Normalized token counts of one response. `input_tokens` excludes cached input."""

    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0  # part of output_tokens
    reasoning_estimated: bool = False
    cost_microdollars: int | None = None  # as reported by the provider

    @property
    def total_input_tokens(self) -> int:
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    @property
    def total_tokens(self) -> int:
        """Input of every kind plus output (reasoning is part of output)."""
        return self.total_input_tokens + self.output_tokens


@attrs.frozen(kw_only=True, slots=True)
class StreamError:
    """An error the upstream reported inside a response it had started with 200."""

    type: str
    message: str


@attrs.frozen(kw_only=True, slots=True)
class Observation:
    """What one chunk told: the bytes to send on, and the events the request machine acts on."""

    forward: bytes
    first_content: bool = False
    terminal: bool = False
    error: StreamError | None = None


@attrs.frozen(kw_only=True, slots=True)
class ObservedResponse:
    usage: Usage | None = None
    model: str | None = None
    upstream_id: str | None = None
    finish_reason: str | None = None
    terminal_seen: bool = False
    error: StreamError | None = None
    content_chars: int = 0  # generated text seen, for estimating output when usage is missing
    malformed_events: int = 0
    oversize_events: int = 0
    incomplete_tail: bool = False  # the stream stopped inside an event


# --- value helpers --------------------------------------------------------------------


def _count(value: object) -> int | None:
    """A token count from untrusted JSON: a non-negative int, clamped; None when unusable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return min(max(value, 0), MAX_TOKENS)
    if isinstance(value, float) and math.isfinite(value):
        return min(max(int(value), 0), MAX_TOKENS)
    return None


def _cost(value: object) -> int | None:
    """Dollars (number or numeric string) -> microdollars; negatives and junk are ignored."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        amount = Decimal(str(value)) * 1_000_000
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount < 0:
        return None
    return min(int(amount.to_integral_value(rounding=ROUND_HALF_UP)), MAX_TOKENS * 1_000_000)


def _dict(value: object) -> Mapping[str, object]:
    return value if isinstance(value, Mapping) else {}


def _dicts(value: object) -> list[Mapping[str, object]]:
    """The objects of a JSON array (anything else: none)."""
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _load(text: str | bytes) -> object:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return _MALFORMED


_MALFORMED = object()


def _error_of(obj: Mapping[str, object], default_type: str) -> StreamError | None:
    error = obj.get("error")
    if isinstance(error, Mapping):
        kind = _str(error.get("type")) or _str(str(error.get("code") or "")) or default_type
        message = _str(error.get("message")) or "upstream reported an error"
        return StreamError(type=kind, message=message[:500])
    if isinstance(error, str) and error:
        return StreamError(type=default_type, message=error[:500])
    return None


# --- OpenAI ---------------------------------------------------------------------------


def _openai_usage(usage: Mapping[str, object], reasoning_chars: int) -> Usage:
    prompt = _count(usage.get("prompt_tokens")) or 0
    details = _dict(usage.get("prompt_tokens_details"))
    cache_read = _count(details.get("cached_tokens"))
    if cache_read is None:  # DeepSeek reports hits and misses instead
        cache_read = _count(usage.get("prompt_cache_hit_tokens"))
    cache_write = _count(details.get("cache_write_tokens"))
    cache_read = min(cache_read or 0, prompt)
    cache_write = min(cache_write or 0, prompt - cache_read)
    output = _count(usage.get("completion_tokens")) or 0
    reasoning = _count(_dict(usage.get("completion_tokens_details")).get("reasoning_tokens"))
    estimated = False
    if reasoning is None and reasoning_chars:
        reasoning, estimated = _estimate(reasoning_chars, output), True
    return Usage(
        input_tokens=prompt - cache_read - cache_write,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        output_tokens=output,
        reasoning_tokens=min(reasoning or 0, output),
        reasoning_estimated=estimated,
        cost_microdollars=_cost(usage.get("cost")),
    )


def _estimate(chars: int, cap: int) -> int:
    return min(-(-chars // _CHARS_PER_TOKEN), cap)


_OPENAI_CONTENT_KEYS = ("content", "reasoning_content", "reasoning", "refusal")


class _Stream:
    """Shared plumbing: decoding, forwarding (with optional event dropping), bookkeeping."""

    _protocol_error_type = "api_error"

    def __init__(self, *, strip_usage_chunk: bool = False, max_event: int = 1 << 20) -> None:
        self._strip = strip_usage_chunk
        self._decoder = SSEDecoder(
            max_line=max_event, max_event=max_event, keep_raw=strip_usage_chunk
        )
        self._content_started = False
        self._model: str | None = None
        self._upstream_id: str | None = None
        self._finish: str | None = None
        self._terminal = False
        self._error: StreamError | None = None
        self._content_chars = 0
        self._reasoning_chars = 0
        self._malformed = 0
        self._oversize = 0
        self._incomplete = False

    def feed(self, chunk: bytes) -> Observation:
        return self._observe(self._decoder.feed(chunk), chunk)

    def feed_eof(self) -> Observation:
        return self._observe(self._decoder.feed_eof(), b"")

    def _observe(self, items: list[SSEItem], chunk: bytes) -> Observation:
        first = terminal = False
        error = None
        forward = bytearray() if self._strip else None
        for item in items:
            keep = True
            if isinstance(item, SSEEvent):
                was_started, was_terminal = self._content_started, self._terminal
                keep = self._on_event(item)
                first |= self._content_started and not was_started
                terminal |= self._terminal and not was_terminal
                if self._error is not None and error is None:
                    error = self._error
            elif isinstance(item, SSEOversize):
                self._oversize += 1
            elif isinstance(item, SSEIncomplete):
                self._incomplete = True
            if forward is not None and keep:
                forward += item.raw
        return Observation(
            forward=chunk if forward is None else bytes(forward),
            first_content=first,
            terminal=terminal,
            error=error,
        )

    def _on_event(self, event: SSEEvent) -> bool:
        """Update state from one event; return False to leave it out of what is forwarded."""
        raise NotImplementedError

    def _decode(self, data: str) -> Mapping[str, object] | None:
        obj = _load(data)
        if obj is _MALFORMED:
            self._malformed += 1
            return None
        return obj if isinstance(obj, Mapping) else None


class OpenAIStreamObserver(_Stream):
    """Chat-completion chunks (`data: {...}` ... `data: [DONE]`)."""

    def __init__(self, *, strip_usage_chunk: bool = False, max_event: int = 1 << 20) -> None:
        super().__init__(strip_usage_chunk=strip_usage_chunk, max_event=max_event)
        self._usage: Mapping[str, object] | None = None
        self._overhead = 0  # JSON bytes around the content of one chunk

    def _on_event(self, event: SSEEvent) -> bool:
        data = event.data
        if data == "[DONE]":
            self._terminal = True
            return True
        if event.event == "error":
            decoded = self._decode(data)
            obj: Mapping[str, object] = decoded if decoded is not None else {}
            self._error = _error_of(obj, "error") or StreamError(type="error", message=data[:500])
            return True
        if self._content_started and not _MAY_MATTER.search(data):
            # Fast path: a plain content chunk. Its content length is its size less the
            # chunk's fixed JSON overhead, learnt from the first decoded content chunk.
            self._content_chars += max(len(data) - self._overhead, 0)
            return True
        parsed = self._decode(data)
        if parsed is None:
            return True
        obj = parsed
        if self._model is None:
            self._model = _str(obj.get("model"))
            self._upstream_id = _str(obj.get("id"))
        error = _error_of(obj, "error")
        if error is not None:
            self._error = error
        usage = obj.get("usage")
        if isinstance(usage, Mapping):
            self._usage = usage  # the final report wins; never a sum
        choices = obj.get("choices")
        if isinstance(choices, list):
            before, started = self._content_chars + self._reasoning_chars, self._content_started
            for choice in choices:
                self._on_choice(_dict(choice))
            if self._content_started and not started:
                added = self._content_chars + self._reasoning_chars - before
                self._overhead = len(data) - added
            if self._strip and not choices and isinstance(usage, Mapping) and error is None:
                return False  # the usage-only chunk the client did not ask for
        return True

    def _on_choice(self, choice: Mapping[str, object]) -> None:
        finish = _str(choice.get("finish_reason"))
        if finish:
            self._finish = finish
        delta = _dict(choice.get("delta"))
        for key in _OPENAI_CONTENT_KEYS:
            text = delta.get(key)
            if isinstance(text, str) and text:
                self._content_started = True
                if key in ("reasoning_content", "reasoning"):
                    self._reasoning_chars += len(text)
                else:
                    self._content_chars += len(text)
        if delta.get("tool_calls") or delta.get("function_call"):
            self._content_started = True
            self._content_chars += len(
                json.dumps(delta.get("tool_calls") or delta["function_call"])
            )

    def result(self) -> ObservedResponse:
        usage = None if self._usage is None else _openai_usage(self._usage, self._reasoning_chars)
        return ObservedResponse(
            usage=usage,
            model=self._model,
            upstream_id=self._upstream_id,
            finish_reason=self._finish,
            terminal_seen=self._terminal,
            error=self._error,
            content_chars=self._content_chars + self._reasoning_chars,
            malformed_events=self._malformed,
            oversize_events=self._oversize,
            incomplete_tail=self._incomplete,
        )


# --- Anthropic ------------------------------------------------------------------------

_ANTHROPIC_FIELDS = (
    ("input_tokens", "input_tokens"),
    ("cache_read_input_tokens", "cache_read_tokens"),
    ("cache_creation_input_tokens", "cache_write_tokens"),
    ("output_tokens", "output_tokens"),
)


def _merge_anthropic(merged: dict[str, int], usage: Mapping[str, object]) -> None:
    for source, target in _ANTHROPIC_FIELDS:
        value = _count(usage.get(source))
        if value is not None:
            merged[target] = value


def _anthropic_usage(merged: Mapping[str, int], thinking_chars: int) -> Usage:
    output = merged.get("output_tokens", 0)
    return Usage(
        input_tokens=merged.get("input_tokens", 0),
        cache_read_tokens=merged.get("cache_read_tokens", 0),
        cache_write_tokens=merged.get("cache_write_tokens", 0),
        output_tokens=output,
        reasoning_tokens=_estimate(thinking_chars, output) if thinking_chars else 0,
        reasoning_estimated=bool(thinking_chars),
    )


class AnthropicStreamObserver(_Stream):
    """Messages API events (`message_start` ... `message_stop`)."""

    def __init__(self, *, max_event: int = 1 << 20) -> None:
        super().__init__(max_event=max_event)
        self._merged: dict[str, int] = {}
        self._saw_usage = False

    def _on_event(self, event: SSEEvent) -> bool:
        kind = event.event
        if kind == "ping":
            return True
        obj = self._decode(event.data)
        if obj is None:
            return True
        kind = kind if kind != "message" else (_str(obj.get("type")) or kind)
        if kind == "content_block_delta":
            self._content_started = True
            delta = _dict(obj.get("delta"))
            for key in ("text", "partial_json"):
                text = delta.get(key)
                if isinstance(text, str):
                    self._content_chars += len(text)
            thinking = delta.get("thinking")
            if delta.get("type") == "thinking_delta" and isinstance(thinking, str):
                self._reasoning_chars += len(thinking)
        elif kind == "content_block_start":
            block = _dict(obj.get("content_block"))
            if block.get("type") not in ("text", "thinking", "redacted_thinking", None):
                self._content_started = True  # a tool call starts: that is generated content
        elif kind == "message_start":
            message = _dict(obj.get("message"))
            self._model = _str(message.get("model"))
            self._upstream_id = _str(message.get("id"))
            self._take_usage(message.get("usage"))
        elif kind == "message_delta":
            stop = _str(_dict(obj.get("delta")).get("stop_reason"))
            if stop:
                self._finish = stop
            self._take_usage(obj.get("usage"))
        elif kind == "message_stop":
            self._terminal = True
        elif kind == "error":
            self._error = _error_of(obj, "api_error") or StreamError(
                type="api_error", message=event.data[:500]
            )
        return True

    def _take_usage(self, usage: object) -> None:
        if isinstance(usage, Mapping):
            self._saw_usage = True
            _merge_anthropic(self._merged, usage)

    def result(self) -> ObservedResponse:
        usage = _anthropic_usage(self._merged, self._reasoning_chars) if self._saw_usage else None
        return ObservedResponse(
            usage=usage,
            model=self._model,
            upstream_id=self._upstream_id,
            finish_reason=self._finish,
            terminal_seen=self._terminal,
            error=self._error,
            content_chars=self._content_chars + self._reasoning_chars,
            malformed_events=self._malformed,
            oversize_events=self._oversize,
            incomplete_tail=self._incomplete,
        )


# --- whole (non-streaming) responses --------------------------------------------------


def observe_openai_body(body: bytes) -> ObservedResponse:
    """A non-streaming chat completion. A complete JSON body counts as its own terminal."""
    obj = _load(body)
    if not isinstance(obj, Mapping):
        return ObservedResponse(malformed_events=1)
    chars = reasoning = 0
    finish = None
    for choice in _dicts(obj.get("choices")):
        finish = finish or _str(choice.get("finish_reason"))
        message = _dict(choice.get("message"))
        for key in _OPENAI_CONTENT_KEYS:
            text = message.get(key)
            if isinstance(text, str):
                if key in ("reasoning_content", "reasoning"):
                    reasoning += len(text)
                else:
                    chars += len(text)
    usage = obj.get("usage")
    error = _error_of(obj, "error")
    return ObservedResponse(
        usage=_openai_usage(usage, reasoning) if isinstance(usage, Mapping) else None,
        model=_str(obj.get("model")),
        upstream_id=_str(obj.get("id")),
        finish_reason=finish,
        terminal_seen=error is None,
        error=error,
        content_chars=chars + reasoning,
    )


def observe_anthropic_body(body: bytes) -> ObservedResponse:
    """A non-streaming Messages API response."""
    obj = _load(body)
    if not isinstance(obj, Mapping):
        return ObservedResponse(malformed_events=1)
    if obj.get("type") == "error":
        error = _error_of(obj, "api_error")
        return ObservedResponse(error=error)
    chars = thinking = 0
    for block in _dicts(obj.get("content")):
        text, thought = block.get("text"), block.get("thinking")
        if isinstance(text, str):
            chars += len(text)
        if block.get("type") == "thinking" and isinstance(thought, str):
            thinking += len(thought)
        if block.get("type") == "tool_use":
            chars += len(json.dumps(block.get("input")))
    merged: dict[str, int] = {}
    usage = obj.get("usage")
    if isinstance(usage, Mapping):
        _merge_anthropic(merged, usage)
    return ObservedResponse(
        usage=_anthropic_usage(merged, thinking) if isinstance(usage, Mapping) else None,
        model=_str(obj.get("model")),
        upstream_id=_str(obj.get("id")),
        finish_reason=_str(obj.get("stop_reason")),
        terminal_seen=True,
        content_chars=chars + thinking,
    )
