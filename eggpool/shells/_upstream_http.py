"""One HTTP/1.1 exchange on one connection: write the request, report the response as it arrives.

Theory of operation. h11 keeps the protocol state of each connection; this
module only feeds it bytes and turns what it says (or raises) into the
`Receiver` calls and `TransportError`s of `_upstream.py`. The choices that
are not h11's:

- *Bodies are streamed, never accumulated.* Each network read (at most
  64 KiB) becomes at most one `chunk()`, because every `chunk()` costs the
  core an event. A chunked body (what providers stream SSE in) is decoded
  by `ChunkedDecoder` (`_upstream_chunked.py`) straight from the reads: h11
  would cut a read into one `Data` event per chunk, at several times the
  cost, and its state machine is replaced by a fresh one when the
  connection is reused. Other bodies go through h11, their `Data` events
  joined per read. Nothing ever waits for more bytes before delivering
  what it has, and what arrived intact before a failure is delivered
  before the failure is reported.
- *Stale connections.* A pooled connection the server closed while idle
  fails with EOF or a reset before any byte of the response. That raises
  `Stale` (only for reused connections) and the caller sends the request
  once more on a fresh one: nothing was reported, so the core cannot
  notice, and the server never saw a whole request on a socket it had
  already closed. A fresh connection is never retried.
- *Timeouts.* `first_byte_timeout` runs from the moment the request was
  written to the end of the response head; `idle_timeout` restarts after
  every read of the body (one cancel scope whose deadline moves, cheaper
  than a scope per read). A write that stalls for `write_timeout` means
  the server is not reading us, which is as good as not answering, hence
  `FIRST_BYTE_TIMEOUT`.
- *Early answers.* If writing the request fails on a fresh connection the
  server may still have answered (a 413 before reading a large body), so
  the head is read anyway; such a connection is never reused.
- *EOF or garbage.* h11 raises `RemoteProtocolError` for both a truncated
  message and invalid bytes; whether the peer had closed the stream when
  it did tells `CLOSED` from `MALFORMED`.
- *Secrets.* `Secret` header values are revealed only while building the
  bytes to write, and no h11 message is repeated in a `detail` (they can
  quote the offending header).

References: RFC 9112 (HTTP/1.1 message syntax), RFC 9110 section 15.2 (1xx).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import h11
from anyio.abc import ByteStream

from eggpool.core.config import ProxyUrl
from eggpool.core.retry import TransportFailure
from eggpool.core.secret import Secret
from eggpool.shells._upstream_chunked import ChunkedDecoder
from eggpool.shells._upstream_connect import Target, TransportError

if TYPE_CHECKING:  # the public types live in _upstream.py, which imports this module
    from eggpool.shells._upstream import Receiver, UpstreamRequest

__all__ = ["Connection", "Key", "Stale", "exchange"]

_F = TransportFailure
_READ_SIZE = 65536
_SMALL_BODY = 64 * 1024  # up to this, head and body leave in one write (one syscall)
_FRAMING = frozenset({"content-length", "transfer-encoding"})  # the client frames the body
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})  # get Content-Length: 0 without a body
# A response head (or chunk header) larger than this is MALFORMED. Providers send a
# few KiB of rate-limit and tracing headers; h11's 16 KiB default is closer to that
# than we like, and the cap only exists to bound memory per connection.
_MAX_HEAD = 64 * 1024

Key = tuple[str, str, int, ProxyUrl | None, str]
"""(scheme, host, port, proxy, group): a connection is reused only within its group."""
"""What a pooled connection can serve: (scheme, host, port, proxy)."""


class Connection:
    """A byte stream, its h11 state, and what the pool needs to know about it."""

    __slots__ = ("broken", "h11", "idle_since", "key", "stream")

    def __init__(self, stream: ByteStream, key: Key) -> None:
        self.stream = stream
        self.key = key
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEAD)
        self.idle_since = 0.0
        self.broken = False  # a write failed: bytes may be missing, so never reuse it


class Stale(Exception):
    """A reused connection died before answering; the request may go again, once."""


class _Wire:
    """Feeds h11 from the stream; remembers whether the peer sent anything and closed."""

    __slots__ = ("connection", "eof", "received")

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.received = False
        self.eof = False

    async def fill(self) -> None:
        self.connection.h11.receive_data(await self.read())

    async def read(self) -> bytes:
        """The next bytes from the server; b"" at EOF."""
        try:
            data = await self.connection.stream.receive(_READ_SIZE)
        except anyio.EndOfStream:
            self.eof = True
            return b""
        self.received = True
        return data


# Errors a read can raise for reasons of the peer's; everything else is ours.
_READ_ERRORS = (h11.RemoteProtocolError, anyio.BrokenResourceError, OSError)


async def exchange(
    connection: Connection,
    request: UpstreamRequest,
    target: Target,
    receiver: Receiver,
    *,
    reused: bool,
) -> bool:
    """Write the request, report the response; True if the connection may be reused."""
    pieces = _request_bytes(connection.h11, request, target)
    write_failed = False
    written = False
    with anyio.move_on_after(request.write_timeout):
        try:
            for piece in pieces:
                await connection.stream.send(piece)
        except (anyio.BrokenResourceError, OSError):
            if reused:
                raise Stale from None
            write_failed = connection.broken = True
        written = True
    if not written:
        raise TransportError(
            _F.FIRST_BYTE_TIMEOUT,
            f"{target.authority}: request not written within {request.write_timeout:g}s",
        )

    wire = _Wire(connection)
    response: h11.Response | None = None
    try:
        # No cancel scope without a limit: on a keep-alive request each costs
        # about as much as h11's parsing of the response head.
        if request.first_byte_timeout is None:
            response = await _read_head(wire)
        else:
            with anyio.move_on_after(request.first_byte_timeout):
                response = await _read_head(wire)
    except _READ_ERRORS as exc:
        if reused and not wire.received:
            raise Stale from None
        if write_failed:
            raise TransportError(_F.RESET, f"{target.authority}: reset while sending") from None
        raise _read_failure(exc, wire, target, "response head") from None
    if response is None:
        if write_failed:
            raise TransportError(_F.RESET, f"{target.authority}: reset while sending")
        raise TransportError(
            _F.FIRST_BYTE_TIMEOUT,
            f"{target.authority}: no response head within {request.first_byte_timeout:g}s",
        )
    receiver.head(
        response.status_code,  # names arrive lower-cased from h11
        tuple((name.decode("ascii"), value.decode("latin-1")) for name, value in response.headers),
    )

    state = connection.h11
    chunked = _is_chunked(request.method, response)
    # h11 has made its keep-alive decision on the head: DONE now means "may be reused".
    keep_alive = state.our_state is h11.DONE
    read_body = _read_chunked if chunked else _read_body
    finished = clean = False
    try:
        if request.idle_timeout is None:
            clean = await read_body(wire, receiver, None, 0.0)
            finished = True
        else:
            with anyio.move_on_after(request.idle_timeout) as scope:
                clean = await read_body(wire, receiver, scope, request.idle_timeout)
                finished = True
    except _READ_ERRORS as exc:
        raise _read_failure(exc, wire, target, "response body") from None
    except _ChunkedFailure as exc:
        failure = _F.CLOSED if wire.eof else _F.MALFORMED
        raise TransportError(failure, f"{target.authority}: {exc} in the response body") from None
    if not finished:
        raise TransportError(
            _F.IDLE_TIMEOUT,
            f"{target.authority}: no body data for {request.idle_timeout:g}s",
        )
    if connection.broken or not clean:
        return False
    if chunked:  # h11 never saw this body: a fresh state machine serves the next request
        if not keep_alive:
            return False
        connection.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEAD)
        return True
    if state.our_state is h11.DONE and state.their_state is h11.DONE:
        state.start_next_cycle()
        return True
    return False


def _is_chunked(method: str, response: h11.Response) -> bool:
    """Whether h11 would read this response's body as chunked (RFC 9112 section 6.3);
    h11 has already refused any transfer-coding but chunked."""
    status = response.status_code
    if method == "HEAD" or status in (204, 304) or (method == "CONNECT" and status < 300):
        return False
    return any(name == b"transfer-encoding" for name, _ in response.headers)


class _ChunkedFailure(Exception):
    pass


async def _read_chunked(
    wire: _Wire, receiver: Receiver, scope: anyio.CancelScope | None, idle: float
) -> bool:
    """Report a chunked body, decoded by `ChunkedDecoder` from the bytes h11 holds past the
    head and every later read; True unless bytes followed the body."""
    decoder = ChunkedDecoder(_MAX_HEAD)
    data = wire.connection.h11.trailing_data[0]
    while True:
        body = decoder.feed(data)
        if body:  # what did arrive intact is delivered before any failure
            receiver.chunk(body)
        if decoder.error is not None:
            raise _ChunkedFailure(decoder.error)
        if decoder.done:
            return not decoder.extra
        data = await wire.read()
        if not data:
            raise _ChunkedFailure("closed before the end")
        if scope is not None:
            scope.deadline = anyio.current_time() + idle


async def _read_head(wire: _Wire) -> h11.Response:
    state = wire.connection.h11
    while True:
        event = state.next_event()
        if event is h11.NEED_DATA:
            await wire.fill()
        elif isinstance(event, h11.Response):
            return event
        elif not isinstance(event, h11.InformationalResponse):  # 1xx are hints: skip them
            raise h11.RemoteProtocolError("no response head")


async def _read_body(
    wire: _Wire, receiver: Receiver, scope: anyio.CancelScope | None, idle: float
) -> bool:
    """Report the body; `scope` (if any) gets a deadline `idle` seconds after each read."""
    state = wire.connection.h11
    pending: list[bytes] = []
    while True:
        try:
            event = state.next_event()
        except h11.RemoteProtocolError:
            if pending:  # what did arrive intact is delivered before the failure
                receiver.chunk(b"".join(pending))
            raise
        if type(event) is h11.Data:
            pending.append(event.data)
            continue
        if pending:
            receiver.chunk(b"".join(pending))  # join also turns h11's bytearrays into bytes
            pending.clear()
        if event is h11.NEED_DATA:
            await wire.fill()
            if scope is not None:
                scope.deadline = anyio.current_time() + idle
        elif type(event) is h11.EndOfMessage:
            return True
        else:
            raise h11.RemoteProtocolError("response ended without its end")


def _read_failure(exc: Exception, wire: _Wire, target: Target, stage: str) -> TransportError:
    # h11's messages can quote the offending bytes (headers), so they are not repeated.
    if isinstance(exc, h11.RemoteProtocolError):
        if wire.eof:
            return TransportError(
                _F.CLOSED, f"{target.authority}: closed before the {stage} was complete"
            )
        return TransportError(_F.MALFORMED, f"{target.authority}: invalid HTTP in the {stage}")
    return TransportError(_F.RESET, f"{target.authority}: connection reset during the {stage}")


def _request_bytes(state: h11.Connection, request: UpstreamRequest, target: Target) -> list[bytes]:
    body = request.body
    names = {name.lower() for name, _ in request.headers}
    headers: list[tuple[bytes, bytes]] = []
    try:
        if "host" not in names:
            headers.append((b"Host", target.host_header.encode("ascii")))
        for name, value in request.headers:
            if name.lower() in _FRAMING:
                continue
            text = value.reveal() if isinstance(value, Secret) else value
            headers.append((name.encode("ascii"), text.encode("latin-1")))
        if body is not None or request.method in _BODY_METHODS:
            headers.append((b"Content-Length", str(len(body or b"")).encode("ascii")))
        if "accept-encoding" not in names:
            # Compressed bodies would hide the SSE stream from the core's observers.
            headers.append((b"Accept-Encoding", b"identity"))
        head = state.send(h11.Request(method=request.method, target=target.path, headers=headers))
    except (h11.LocalProtocolError, UnicodeError):
        # Never quote the error: it may contain a header value (a key).
        raise TransportError(
            _F.LOCAL, "request rejected before sending: invalid method, target or header"
        ) from None
    if not body:
        return [head + state.send(h11.EndOfMessage())]
    data = state.send_with_data_passthrough(h11.Data(data=body)) or []
    state.send(h11.EndOfMessage())  # b"" with Content-Length; keeps h11's state right
    if len(body) <= _SMALL_BODY:
        return [b"".join([head, *data])]
    return [head, *data]
