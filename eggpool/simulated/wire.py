"""What providers put on the wire: response heads, bodies and SSE streams, as `Step`s.

Theory of operation. This is the fake provider's recorded knowledge of real
providers, kept apart from the scripting API (`fake_provider.py`). `Answer`
turns one `Reply` and one `OpenUpstream` into `Step`s: a delay (seconds after
the previous step; the first counts from the dispatch) and an upstream
event stamped `UNSTAMPED`, which the deliverer re-stamps with `Step.stamp`.

Shapes follow what providers really send (see tests/core/test_usage.py and
tests/core/test_retry.py): OpenAI streams open with a role chunk, carry one
content delta per chunk, a finish chunk, the usage-only chunk (when
`stream_options.include_usage` asks for it) and `data: [DONE]`; Anthropic
streams go `message_start`, `content_block_start`, `ping`, deltas,
`content_block_stop`, `message_delta` (final usage), `message_stop`. Each SSE
event is one `UpstreamBodyReceived`, unless `Reply.piece` splits the bytes
further. Error bodies are recorded shapes per status and protocol
(`error_body`); a 502 is the HTML page of a proxy in front of the API.
Header names are lower case, as h11 reports them.
"""

from __future__ import annotations

import enum
import functools
import json
from json.encoder import encode_basestring_ascii
from typing import TYPE_CHECKING

import attrs

from eggpool.core.config import Protocol
from eggpool.core.effects import OpenUpstream
from eggpool.core.events import (
    ModelListFailed,
    ModelListReceived,
    Now,
    UpstreamBodyEnded,
    UpstreamBodyReceived,
    UpstreamFailed,
    UpstreamResponseStarted,
)
from eggpool.core.retry import TransportFailure
from eggpool.core.sse import encode_event

if TYPE_CHECKING:
    from eggpool.simulated.provider import Reply

__all__ = [
    "CREATED",
    "UNSTAMPED",
    "Answer",
    "Headers",
    "ProviderEvent",
    "ReplyKind",
    "RequestShape",
    "Step",
    "UpstreamEvent",
    "error_body",
    "model_list_body",
    "wants_usage",
]

UNSTAMPED = Now(mono=0.0, wall=0.0)
"""The `now` of events in a `Step` before delivery stamps the real one."""

Headers = tuple[tuple[str, str], ...]
UpstreamEvent = UpstreamResponseStarted | UpstreamBodyReceived | UpstreamBodyEnded | UpstreamFailed
ProviderEvent = UpstreamEvent | ModelListReceived | ModelListFailed

CREATED = 1_767_225_600  # the `created` stamp in bodies: fixed, the fake has no clock
_WORDS = ("Hello", " from", " a", " fake", " provider", ".")


@attrs.frozen(kw_only=True, slots=True)
class Step:
    """One thing the provider does: `delay` seconds after the previous step, `event` happens."""

    delay: float
    event: ProviderEvent

    def stamp(self, now: Now) -> ProviderEvent:
        """The event as delivered at `now`."""
        return attrs.evolve(self.event, now=now)


class ReplyKind(enum.Enum):
    OK = "ok"  # a complete answer (stream or JSON)
    STATUS = "status"  # a non-2xx head and its error body
    CUT = "cut"  # 200, `after` chunks, then a clean EOF without the terminal event
    FAIL_MID = "fail_mid"  # 200, `after` chunks, then `UpstreamFailed(failure)`
    STALL = "stall"  # 200, `after` chunks, then nothing ever again
    MALFORMED = "malformed"  # 200, a bad event after `after` chunks, then (maybe) the rest
    STREAM_ERROR = "stream_error"  # 200, `after` chunks, then an in-stream error event, EOF
    FAIL = "fail"  # `UpstreamFailed(failure)` before any head
    HANG = "hang"  # connected, request sent, no answer ever


# --- error bodies -------------------------------------------------------------------------


def _json(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _openai_error(message: str, type_: str, code: str | int | None) -> dict[str, object]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def _anthropic_error(type_: str, message: str) -> dict[str, object]:
    return {"type": "error", "error": {"type": type_, "message": message}}


_BAD_GATEWAY_HTML = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


def error_body(protocol: Protocol, code: int, model: str = "") -> tuple[bytes, str]:
    """A provider's error body for `code` and its content type (recorded shapes)."""
    if code == 502:
        return _BAD_GATEWAY_HTML, "text/html"  # a proxy in front of the API answered
    if protocol is Protocol.ANTHROPIC:
        anthropic = {
            400: ("invalid_request_error", "messages.0.content: Field required"),
            401: ("authentication_error", "invalid x-api-key"),
            402: ("billing_error", "Your account has a billing issue."),
            403: ("permission_error", "Your API key does not have permission to use the "
                  "specified resource."),
            404: ("not_found_error", f"model: {model}"),
            413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
            429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute "
                  "rate limit"),
            529: ("overloaded_error", "Overloaded"),
        }  # fmt: skip
        type_, message = anthropic.get(code, ("api_error", "Internal server error"))
        return _json(_anthropic_error(type_, message)), "application/json"
    openai: dict[int, tuple[str, str, str | None]] = {
        400: ("Invalid value for 'temperature': expected a number.",
              "invalid_request_error", None),
        401: ("Incorrect API key provided: sk-abc***xyz.", "invalid_request_error",
              "invalid_api_key"),
        402: ("Insufficient Balance", "insufficient_quota", "insufficient_quota"),
        403: ("Country, region, or territory not supported", "request_forbidden",
              "unsupported_country_region_territory"),
        404: (f"The model `{model}` does not exist or you do not have access to it.",
              "invalid_request_error", "model_not_found"),
        429: (f"Rate limit reached for {model} on requests per min (RPM).", "requests",
              "rate_limit_exceeded"),
        503: ("The engine is currently overloaded, please try again later.",
              "server_error", None),
    }  # fmt: skip
    message, type_, error_code = openai.get(
        code,
        ("The server had an error while processing your request. Sorry about that!",
         "server_error", None),
    )  # fmt: skip
    return _json(_openai_error(message, type_, error_code)), "application/json"


@attrs.frozen(slots=True)
class RequestShape:
    model: str
    stream: bool
    include_usage: bool

    @classmethod
    @functools.lru_cache(maxsize=4096)  # a simulation sends the same bodies again and again
    def parse(cls, body: bytes) -> RequestShape | None:
        try:
            obj = json.loads(body.decode())  # JSON on the wire is UTF-8 (RFC 8259)
        except ValueError:  # UnicodeDecodeError included
            return None
        if not isinstance(obj, dict):
            return None
        options = obj.get("stream_options")
        include = isinstance(options, dict) and options.get("include_usage") is True
        model = obj.get("model")
        return cls(str(model) if model is not None else "", obj.get("stream") is True, include)


def wants_usage(reply: Reply, request: RequestShape) -> bool:
    return request.include_usage if reply.include_usage is None else reply.include_usage


_STREAM_HEAD = (
    ("content-type", "text/event-stream; charset=utf-8"),
    ("cache-control", "no-cache"),
)

# A usage chunk cut inside its JSON: observers decode usage-bearing events even after
# content started (plain content deltas take a fast path and are never decoded).
_BAD_EVENT = b'data: {"choices":[],"usage":{"prompt_tokens":\n\n'


class Answer:
    """Builds the steps of one reply to one effect.

    With `merge`, a stream's opening frames join its first token, and the body
    pieces after that are joined into one step at the time of the last: the
    same bytes, the same first-token and end times, far fewer events (the
    simulator's choice; a served fake sends every event).
    """

    def __init__(
        self, reply: Reply, effect: OpenUpstream, protocol: Protocol, *, merge: bool = False
    ) -> None:
        self.reply = reply
        self.effect = effect
        self.protocol = protocol
        self.attempt = effect.attempt_id
        self.out: list[Step] = []
        self._merge = merge
        self._body_started = False
        self._leading = False  # merging waits: the frames up to the first token go first
        self._held: list[bytes] = []  # merged body pieces not yet in `out`
        self._held_delay = 0.0

    # -- step helpers ----------------------------------------------------------------

    def _at(self, delay: float, event: UpstreamEvent) -> None:
        if self._held:
            self._flush()
        self.out.append(Step(delay=delay, event=event))

    def _flush(self) -> None:
        data, self._held = b"".join(self._held), []
        delay, self._held_delay = self._held_delay, 0.0
        event = UpstreamBodyReceived(now=UNSTAMPED, attempt_id=self.attempt, data=data)
        self.out.append(Step(delay=delay, event=event))

    def _head(self, status: int, headers: Headers) -> None:
        latency = self.reply.latency
        delay = self.effect.connect_timeout if latency is None else latency
        self._at(delay, UpstreamResponseStarted(now=UNSTAMPED, attempt_id=self.attempt,
                                                status=status, headers=headers))  # fmt: skip

    def _body(self, data: bytes, delay: float | None = None) -> None:
        """One frame, `delay` (default: the reply's interval) after the previous step."""
        size = self.reply.piece
        pieces = [data[i : i + size] for i in range(0, len(data), size)] if size > 0 else [data]
        for index, piece in enumerate(pieces):
            wait = (self.reply.interval if delay is None else delay) if index == 0 else 0.0
            if self._merge and self._body_started and not self._leading:
                self._held.append(piece)
                self._held_delay += wait
                continue
            self._body_started = True
            self._at(wait, UpstreamBodyReceived(now=UNSTAMPED, attempt_id=self.attempt,
                                                data=piece))  # fmt: skip

    def _bodies(self, frames: list[bytes], lead: int = 0) -> None:
        """The frames of a stream whose first `lead` come before the first token (they
        follow each other by the reply's `opening_interval`). Merged: those and the first
        token are one step, at the first token's time; the frames after it are joined into
        one step at the last's time."""
        interval = self.reply.interval
        opening = interval if self.reply.opening_interval is None else self.reply.opening_interval
        delays = [opening if i < lead else interval for i in range(len(frames))]
        if not self._merge or self._body_started:
            for frame, delay in zip(frames, delays, strict=True):
                self._body(frame, delay)
            return
        first, rest = frames[: lead + 1], frames[lead + 1 :]
        if self.reply.piece > 0:  # each piece its own step, up to the first token
            self._leading = True
            for frame, delay in zip(first, delays, strict=False):
                self._body(frame, delay)
            self._leading = False
            for frame in rest:
                self._body(frame)
            return
        if first:
            self._body_started = True
            self._at(sum(delays[: lead + 1]), UpstreamBodyReceived(now=UNSTAMPED,
                     attempt_id=self.attempt, data=b"".join(first)))  # fmt: skip
        self._held.extend(rest)
        self._held_delay += interval * len(rest)

    def _end(self) -> None:
        self._at(0.0, UpstreamBodyEnded(now=UNSTAMPED, attempt_id=self.attempt))

    def _fail(self, failure: TransportFailure, delay: float, detail: str) -> None:
        self._at(delay, UpstreamFailed(now=UNSTAMPED, attempt_id=self.attempt, failure=failure,
                                       detail=detail))  # fmt: skip

    def _id_header(self) -> tuple[str, str]:
        name = "request-id" if self.protocol is Protocol.ANTHROPIC else "x-request-id"
        return name, f"req_{self.attempt}"

    # -- the reply kinds -------------------------------------------------------------

    def steps(self) -> list[Step]:
        reply = self.reply
        request = RequestShape.parse(self.effect.body)
        if request is None:
            self._error(400, "", scripted=False)
            return self.out
        kind = reply.kind
        if kind is ReplyKind.OK and self._merge and reply.piece <= 0:
            self._merged(request)
            return self.out
        if kind is ReplyKind.FAIL:
            latency = self.effect.connect_timeout if reply.latency is None else reply.latency
            self._fail(reply.failure, latency, f"fake: {reply.failure.value}")
        elif kind is ReplyKind.HANG:
            pass
        elif kind is ReplyKind.STATUS:
            self._error(reply.code, request.model)
        elif request.stream:
            self._stream(request)
        else:
            self._whole(request)
        if self._held:
            self._flush()
        return self.out

    def _merged(self, request: RequestShape) -> None:
        """A complete answer, merged: the steps `_whole` or `_stream` and the merging rules
        make of it, put together from the answer's shape (`_answer_shape`), whose frames
        are joined in two pieces in advance. Nearly every answer of a simulation is one;
        tests compare the two ways."""
        reply, attempt = self.reply, self.attempt
        stream = request.stream
        shape, values = self._shape(request)
        interval = reply.interval
        if stream:
            opening = interval if reply.opening_interval is None else reply.opening_interval
            head = self._stream_head()
            bodies = [(sum([opening] * shape.lead + [interval]), (shape.first % values).encode())]
            if shape.rest_frames:
                bodies.append((0.0 + interval * shape.rest_frames, (shape.rest % values).encode()))
        else:
            body = (shape.body % values).encode()
            head = self._json_head(len(body))
            bodies = [(interval, body)]
        latency = self.effect.connect_timeout if reply.latency is None else reply.latency
        out = self.out
        started = UpstreamResponseStarted(now=UNSTAMPED, attempt_id=attempt, status=200,
                                          headers=head)  # fmt: skip
        out.append(Step(delay=latency, event=started))
        for delay, data in bodies:
            event = UpstreamBodyReceived(now=UNSTAMPED, attempt_id=attempt, data=data)
            out.append(Step(delay=delay, event=event))
        out.append(Step(delay=0.0, event=UpstreamBodyEnded(now=UNSTAMPED, attempt_id=attempt)))

    def _error(self, code: int, model: str, *, scripted: bool = True) -> None:
        reply = self.reply
        if scripted and reply.body is not None:
            body, content_type = reply.body, "application/json"
        else:
            body, content_type = error_body(self.protocol, code, model)
        headers: list[tuple[str, str]] = [
            ("content-type", content_type),
            ("content-length", str(len(body))),
            self._id_header(),
        ]
        if scripted and reply.retry_after is not None:
            headers.append(("retry-after", reply.retry_after))
        self._head(code, (*headers, *(reply.headers if scripted else ())))
        self._body(body)
        self._end()

    def _whole(self, request: RequestShape) -> None:
        reply, kind = self.reply, self.reply.kind
        if kind is ReplyKind.STREAM_ERROR:
            body = self._error_object()
        elif kind is ReplyKind.MALFORMED:
            body = reply.body if reply.body is not None else b'{"id":"x","choices":['
        else:
            body = self._whole_body(request)
        # A clean cut is a whole HTTP message (its length says so); a broken connection
        # promised the whole body and delivered half.
        length = len(body)
        if kind in (ReplyKind.CUT, ReplyKind.FAIL_MID, ReplyKind.STALL):
            body = body[: len(body) // 2]
            length = len(body) if kind is ReplyKind.CUT else length
        self._head(200, self._json_head(length))
        self._body(body)
        self._finish(kind)

    def _json_head(self, length: int) -> Headers:
        """A JSON answer's headers (the reply's extra ones last)."""
        json_head = (("content-type", "application/json"), ("content-length", str(length)))
        return (*json_head, self._id_header(), *self.reply.headers)

    def _stream_head(self) -> Headers:
        """An event stream's headers (the reply's extra ones last)."""
        return (*_STREAM_HEAD, self._id_header(), *self.reply.headers)

    def _stream(self, request: RequestShape) -> None:
        reply, kind = self.reply, self.reply.kind
        self._head(200, self._stream_head())
        opening, content, closing = self._frames(request)
        sent = content if kind is ReplyKind.OK else content[: reply.after]
        self._bodies([*opening, *sent, *(closing if kind is ReplyKind.OK else ())], len(opening))
        if kind is ReplyKind.MALFORMED:
            self._body(reply.body if reply.body is not None else _BAD_EVENT)
            if reply.complete:
                for frame in (*content[reply.after :], *closing):
                    self._body(frame)
        elif kind is ReplyKind.STREAM_ERROR:
            event = "error" if self.protocol is Protocol.ANTHROPIC else None
            self._body(encode_event(self._error_object().decode(), event=event))
        self._finish(kind)

    def _finish(self, kind: ReplyKind) -> None:
        if kind is ReplyKind.FAIL_MID:
            self._fail(self.reply.failure, self.reply.interval, "fake: connection reset by peer")
        elif kind is not ReplyKind.STALL:
            self._end()

    def _error_object(self) -> bytes:
        type_ = self.reply.error_type
        if self.protocol is Protocol.ANTHROPIC:
            type_ = type_ or "overloaded_error"
            message = "Overloaded" if type_ == "overloaded_error" else "Internal server error"
            return _json(_anthropic_error(type_, message))
        return _json(_openai_error("The server had an error while processing your request.",
                                   type_ or "server_error", None))  # fmt: skip

    # -- shapes --------------------------------------------------------------------------

    def _shape(self, request: RequestShape) -> tuple[_AnswerShape, dict[str, object]]:
        """The complete answer's shape (`_answer_shape`) and what fills its templates in."""
        protocol, stream = self.protocol, request.stream
        with_usage = stream and protocol is Protocol.OPENAI and wants_usage(self.reply, request)
        shape = _answer_shape(protocol, request.model, self.reply.chunks, stream, with_usage)
        uncached, cached, output = self.reply.usage_numbers(self.effect.body)
        if protocol is Protocol.OPENAI:
            usage = _openai_usage_text(uncached, cached, output)
            return shape, {"id": _text("chatcmpl-" + self.attempt), "usage": usage}
        values: dict[str, object] = {"id": _text("msg_" + self.attempt)}
        if stream:
            values["start_usage"] = _anthropic_usage_text(uncached, cached, 1)
            values["output"] = output
        else:
            values["usage"] = _anthropic_usage_text(uncached, cached, output)
        return shape, values

    def _whole_body(self, request: RequestShape) -> bytes:
        shape, values = self._shape(request)
        return (shape.body % values).encode()

    def _frames(self, request: RequestShape) -> tuple[list[bytes], list[bytes], list[bytes]]:
        """(opening frames, one frame per content chunk, closing frames) of a full stream."""
        shape, values = self._shape(request)
        opening, content, closing = (
            [(frame % values).encode() for frame in frames]
            for frames in (shape.opening, shape.content, shape.closing)
        )
        return opening, content, closing


@functools.lru_cache(maxsize=256)
def _texts(chunks: int) -> list[str]:
    """The content of `chunks` chunks: the words in turn (callers do not change the list)."""
    return [_WORDS[i % len(_WORDS)] for i in range(chunks)]


_text = encode_basestring_ascii
"""`value` as a JSON string, escaped as `json.dumps` does (the function it calls for a
`str`, in C: ids are new in every answer, so a cache would not help)."""


def _openai_usage_text(uncached: int, cached: int, output: int) -> str:
    return (
        f'{{"prompt_tokens":{uncached + cached},"completion_tokens":{output},'
        f'"total_tokens":{uncached + cached + output},'
        f'"prompt_tokens_details":{{"cached_tokens":{cached}}},'
        '"completion_tokens_details":{"reasoning_tokens":0}}'
    )


def _anthropic_usage_text(uncached: int, cached: int, output: int) -> str:
    return (
        f'{{"input_tokens":{uncached},"cache_creation_input_tokens":0,'
        f'"cache_read_input_tokens":{cached},"output_tokens":{output}}}'
    )


@attrs.frozen(slots=True)
class _AnswerShape:
    """A complete answer as `%`-templates: `%(id)s` is the JSON id string, `%(usage)s` the
    usage object, `%(start_usage)s` Anthropic's opening usage, `%(output)d` the output
    tokens. A stream has its frames (`opening`, one per content chunk, `closing`) and the
    same joined in two for merging: `first` (the opening frames and the first content
    frame) and `rest` (the `rest_frames` after it); a whole answer has its `body`."""

    body: str = ""
    opening: tuple[str, ...] = ()
    content: tuple[str, ...] = ()
    closing: tuple[str, ...] = ()
    first: str = ""
    rest: str = ""
    rest_frames: int = 0

    @property
    def lead(self) -> int:
        """Frames before the first token."""
        return len(self.opening)


@functools.lru_cache(maxsize=1024)
def _answer_shape(
    protocol: Protocol, model: str, chunks: int, stream: bool, with_usage: bool
) -> _AnswerShape:
    """How a complete answer is written: the same bytes as `json.dumps(...,
    separators=(",", ":"))` of the objects providers send (tests compare), put together
    from pieces of JSON text once per shape, since a simulated day sends millions."""
    model_text = _literal(_text(model))
    texts = _texts(chunks)
    if not stream:
        text = _literal(_text("".join(texts)))
        if protocol is Protocol.ANTHROPIC:
            return _AnswerShape(
                body='{"id":%(id)s,"type":"message","role":"assistant",'
                f'"model":{model_text},"content":[{{"type":"text","text":{text}}}],'
                '"stop_reason":"end_turn","stop_sequence":null,"usage":%(usage)s}'
            )
        return _AnswerShape(
            body=f'{{"id":%(id)s,"object":"chat.completion","created":{CREATED},'
            f'"model":{model_text},"choices":[{{"index":0,"message":{{"role":"assistant",'
            f'"content":{text},"refusal":null}},"logprobs":null,"finish_reason":"stop"}}],'
            '"usage":%(usage)s,"system_fingerprint":null}'
        )
    if protocol is Protocol.ANTHROPIC:
        message = (
            '{"id":%(id)s,"type":"message","role":"assistant",'
            f'"model":{model_text},"content":[],"stop_reason":null,'
            '"stop_sequence":null,"usage":%(start_usage)s}'
        )
        opening = [
            _sse_text(f'{{"type":"message_start","message":{message}}}', "message_start"),
            _literal(_ANTHROPIC_BLOCK_START.decode()),
            _literal(_ANTHROPIC_PING.decode()),
        ]
        content = [_literal(_ANTHROPIC_DELTAS[text].decode()) for text in texts]
        closing = [
            _literal(_ANTHROPIC_BLOCK_STOP.decode()),
            _sse_text(
                '{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
                '"usage":{"output_tokens":%(output)d}}',
                "message_delta",
            ),
            _literal(_ANTHROPIC_STOP.decode()),
        ]
    else:
        start = _OPENAI_CHUNK_START.format(id="%(id)s", model=model_text)
        end = ',"usage":null}' if with_usage else "}"

        def chunk(delta: str, finish: str = "null") -> str:
            return _sse_text(f'{start}{delta},"logprobs":null,"finish_reason":{finish}}}]{end}')

        by_text = {text: chunk(f'{{"content":{_literal(_text(text))}}}') for text in set(texts)}
        opening = [chunk('{"role":"assistant","content":"","refusal":null}')]
        content = [by_text[text] for text in texts]
        closing = [chunk("{}", '"stop"')]
        if with_usage:
            closing.append(_sse_text(
                f'{{"id":%(id)s,"object":"chat.completion.chunk","created":{CREATED},'
                f'"model":{model_text},"system_fingerprint":null,"choices":[],"usage":%(usage)s}}'
            ))  # fmt: skip
        closing.append(_literal(_DONE.decode()))
    frames = [*opening, *content, *closing]
    lead = len(opening)
    return _AnswerShape(
        opening=tuple(opening),
        content=tuple(content),
        closing=tuple(closing),
        first="".join(frames[: lead + 1]),
        rest="".join(frames[lead + 1 :]),
        rest_frames=len(frames) - lead - 1,
    )


def _literal(text: str) -> str:
    """`text` inside a `%`-template, as itself."""
    return text.replace("%", "%%")


def _sse_text(data: str, event: str | None = None) -> str:
    """`encode_event(data, event=event)` as text, for one line of data (JSON text as
    `json.dumps` writes it has no line breaks)."""
    return f"data: {data}\n\n" if event is None else f"event: {event}\ndata: {data}\n\n"


_OPENAI_CHUNK_START = (
    '{{"id":{id},"object":"chat.completion.chunk","created":' + str(CREATED) + ',"model":{model},'
    '"system_fingerprint":null,"choices":[{{"index":0,"delta":'
)
_DONE = encode_event("[DONE]")


def _anthropic_event(kind: str, **fields: object) -> bytes:
    return encode_event(json.dumps({"type": kind, **fields}, separators=(",", ":")), event=kind)


_ANTHROPIC_BLOCK_START = _anthropic_event(
    "content_block_start", index=0, content_block={"type": "text", "text": ""}
)
_ANTHROPIC_PING = _anthropic_event("ping")
_ANTHROPIC_BLOCK_STOP = _anthropic_event("content_block_stop", index=0)
_ANTHROPIC_STOP = _anthropic_event("message_stop")
_ANTHROPIC_DELTAS = {
    text: _anthropic_event(
        "content_block_delta", index=0, delta={"type": "text_delta", "text": text}
    )
    for text in _WORDS
}


# --- model lists --------------------------------------------------------------------------


def model_list_body(models: tuple[str, ...]) -> bytes:
    """An OpenAI `GET /models` page listing `models`."""
    rows = [
        {"id": model, "object": "model", "created": CREATED, "owned_by": "fake"}
        for model in models
    ]
    return _json({"object": "list", "data": rows})
