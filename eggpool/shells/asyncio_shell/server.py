"""The anyio + h11 server: client bytes in, the Driver's answers out. No policy here.

Theory of operation. One task per client connection owns one
`h11.Connection`. It reads a whole request (headers within `MAX_HEADER_BYTES`,
a body within `MAX_BODY_BYTES`, both before `REQUEST_TIMEOUT`; the limits are
shared with the Quart shell in `_contract.py`), hands it to the `Driver`
(`client_request`: an id, routing entropy, a channel for the answer), and
writes what that channel delivers:
`RespondHead` becomes an `h11.Response` (chunked unless the body is
complete), each `RespondBody` an `h11.Data` sent at once (streams flow
through with no added buffering), `RespondEnd` the end of the message.
Then the connection serves its next request (keep-alive) or closes.

One reading task per connection (`_Reader`) receives the client's bytes for
the whole life of the connection and keeps them until the request loop
takes them, so a client that hangs up while its answer is being written is
noticed at once: the Driver learns it as `client_gone` (and the Pool aborts
the upstream). A write that fails means the same. Bytes that arrive early
(a pipelined next request) wait for the next cycle; the reader stops
reading once `_READ_AHEAD` bytes wait, so a client cannot make it buffer
more. A long-lived reader instead of a watcher per request saves a task,
a task group and an epoll registration on every request.

A body over the limit is answered 413 in the endpoint's error shape, read
or not: by its Content-Length before reading, or as soon as the count
passes the limit while reading (chunked uploads). Malformed HTTP gets a
plain 400 and the connection closes; the Pool never sees it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import anyio
import attrs
import h11
from anyio.abc import ByteStream

from eggpool.core.effects import RespondBody, RespondEnd, RespondHead
from eggpool.core.errors import LocalFailure
from eggpool.dashboard.api import refuse
from eggpool.shells import _live as live
from eggpool.shells._contract import (
    KEEPALIVE_TIMEOUT,
    MAX_BODY_BYTES,
    MAX_HEADER_BYTES,
    REQUEST_TIMEOUT,
    ClientChannel,
    ClientMessage,
    Driver,
    local_answer,
)
from eggpool.shells._live import LIVE_PATH, handshake_headers

__all__ = ["MAX_BODY_BYTES", "MAX_HEADER_BYTES", "REQUEST_TIMEOUT", "serve_connection"]
_READ = 65536
_READ_AHEAD = 65536
"""Bytes of a pipelined next request kept while an answer is written; then reading stops."""
_FRAMING = frozenset({"content-length", "transfer-encoding"})


class _ClientLeft(Exception):
    pass


async def serve_connection(
    stream: ByteStream,
    driver: Driver,
    *,
    peer: str = "",
) -> None:
    """Serve every request of one client connection, then close it."""
    connection = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
    reader = _Reader(stream)
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(reader.run)
            with contextlib.suppress(
                _ClientLeft, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError
            ):
                await _serve(stream, connection, reader, driver, peer=peer)
            group.cancel_scope.cancel()
    finally:
        await _close(stream)


async def _serve(
    stream: ByteStream,
    connection: h11.Connection,
    reader: _Reader,
    driver: Driver,
    *,
    peer: str,
) -> None:
    while True:
        request = await _read_request(stream, connection, reader)
        if request is None:
            return
        if request.target.partition("?")[0] == LIVE_PATH and driver.live is not None:
            await _live_socket(stream, connection, reader, driver, request)
            return  # a socket is the connection's last exchange
        await _proxy(stream, connection, reader, driver, request, peer=peer)
        if connection.our_state is h11.MUST_CLOSE or connection.their_state is h11.MUST_CLOSE:
            return
        if connection.our_state is not h11.DONE or connection.their_state is not h11.DONE:
            return
        connection.start_next_cycle()


class _Reader:
    """The connection's reading task: the client's bytes, kept until `take` asks for them.

    `on_eof` (set while an answer is written) is called when the client hangs up or
    resets the connection."""

    __slots__ = ("_arrived", "_room", "eof", "on_eof", "pending", "size", "stream")

    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream
        self.pending: list[bytes] = []
        self.size = 0
        self.eof = False
        self.on_eof: Callable[[], None] | None = None
        self._arrived = anyio.Event()
        self._room = anyio.Event()

    async def run(self) -> None:
        while True:
            if self.size >= _READ_AHEAD:
                self._room = anyio.Event()
                await self._room.wait()
                continue
            data = await _receive(self.stream)
            if not data:
                self.eof = True
                self._arrived.set()
                if self.on_eof is not None:
                    self.on_eof()
                return
            self.pending.append(data)
            self.size += len(data)
            self._arrived.set()

    async def take(self) -> bytes:
        """Every byte that arrived since the last call, after waiting for one if none did;
        b"" once the client closed."""
        while not self.pending:
            if self.eof:
                return b""
            self._arrived = anyio.Event()
            await self._arrived.wait()
        data = self.pending[0] if len(self.pending) == 1 else b"".join(self.pending)
        self.pending.clear()
        self.size = 0
        self._room.set()
        return data


async def _close(stream: ByteStream) -> None:
    with (
        anyio.CancelScope(shield=True),
        anyio.move_on_after(1.0),
        contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError),
    ):
        await stream.aclose()


@attrs.frozen
class _Request:
    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes | LocalFailure  # a failure: answered locally (413) without the Pool


async def _read_request(
    stream: ByteStream, connection: h11.Connection, reader: _Reader
) -> _Request | None:
    """The next whole request, or None when the client closed between requests."""
    first = True
    method = target = ""
    headers: tuple[tuple[str, str], ...] = ()
    body = bytearray()
    # One scope for the whole request: idle keep-alive first, then the request's own limit.
    with anyio.move_on_after(KEEPALIVE_TIMEOUT) as waited:
        while True:
            try:
                event = connection.next_event()
            except h11.RemoteProtocolError as exc:
                await _reject(stream, connection, exc.error_status_hint)
                return None
            if event is h11.NEED_DATA:
                data = await reader.take()
                connection.receive_data(data)
                if not data and first:
                    return None
                continue
            if isinstance(event, h11.Request):
                first = False
                waited.deadline = anyio.current_time() + REQUEST_TIMEOUT
                method = event.method.decode("ascii", "replace")
                target = event.target.decode("ascii", "replace")
                headers = tuple(
                    (name.decode("latin-1"), value.decode("latin-1"))
                    for name, value in event.headers
                )
                length = _content_length(headers)
                if length is not None and length > MAX_BODY_BYTES:
                    # Answer without reading: the client is told at once (and h11 closes after).
                    return _Request(
                        method, target, headers, LocalFailure.body_too_large(MAX_BODY_BYTES)
                    )
                if connection.they_are_waiting_for_100_continue:  # curl, bodies over 1 MiB
                    await stream.send(
                        connection.send(h11.InformationalResponse(status_code=100, headers=[]))
                    )
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY_BYTES:
                    return _Request(
                        method, target, headers, LocalFailure.body_too_large(MAX_BODY_BYTES)
                    )
            elif isinstance(event, h11.EndOfMessage):
                return _Request(method, target, headers, bytes(body))
            elif isinstance(event, h11.ConnectionClosed):
                return None
    if first:
        return None  # idle between requests, or a head that never ended: close quietly
    # The head arrived but not the whole body: say so (then close, as for a 413).
    return _Request(method, target, headers, LocalFailure.request_timeout(REQUEST_TIMEOUT))


async def _live_socket(
    stream: ByteStream,
    connection: h11.Connection,
    reader: _Reader,
    driver: Driver,
    request: _Request,
) -> None:
    """`/api/live`: switch to WebSocket and stream the dashboard's updates."""
    assert driver.live is not None
    accepted = handshake_headers(request.headers)
    failure = live.accept(request.method, request.headers, driver.live.config)
    if accepted is None and failure is None:
        failure = LocalFailure.invalid_value("upgrade", "this path only speaks WebSocket")
    if failure is not None:
        status, headers, body = refuse(failure)
        await _send_whole(stream, connection, status, headers, body)
        return
    assert accepted is not None
    await stream.send(
        connection.send(h11.InformationalResponse(status_code=101, headers=accepted)) or b""
    )
    trailing, _ = connection.trailing_data
    await live.serve_socket(driver.live, stream.send, reader.take, trailing=bytes(trailing))


async def _receive(stream: ByteStream) -> bytes:
    """The next bytes from the client; b"" once it closed, reset or the stream broke."""
    try:
        return await stream.receive(_READ)
    except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        return b""


async def _reject(stream: ByteStream, connection: h11.Connection, status: int) -> None:
    if connection.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    try:
        data = connection.send(
            h11.Response(
                status_code=status, headers=[("content-length", "0"), ("connection", "close")]
            )
        )
        data += connection.send(h11.EndOfMessage()) or b""
        await stream.send(data or b"")
    except (h11.LocalProtocolError, anyio.BrokenResourceError, OSError):
        pass


def _content_length(headers: tuple[tuple[str, str], ...]) -> int | None:
    for name, value in headers:
        if name.lower() == "content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _proxy(
    stream: ByteStream,
    connection: h11.Connection,
    reader: _Reader,
    driver: Driver,
    request: _Request,
    *,
    peer: str,
) -> None:
    path, _, query = request.target.partition("?")
    body = request.body
    if isinstance(body, LocalFailure):
        response = local_answer(path, body)
        await _send_whole(stream, connection, response.status, response.headers, response.body)
        return
    request_id, messages = driver.client_request(
        method=request.method,
        path=path,
        headers=request.headers,
        body=body,
        client=peer,
        query=query,
    )

    def gone() -> None:  # ends the loop below: the Driver closes this request's stream
        driver.client_gone(request_id)

    if reader.eof:
        gone()
    reader.on_eof = gone
    try:
        with messages:
            async for message in messages:
                await _write(stream, connection, _with_queued(message, messages))
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        gone()
        raise _ClientLeft from None
    finally:
        reader.on_eof = None
    if reader.eof and connection.our_state is not h11.DONE:
        raise _ClientLeft


def _with_queued(first: ClientMessage, messages: ClientChannel) -> list[ClientMessage]:
    """`first` and every message already queued behind it: written with one send."""
    batch = [first]
    while True:
        try:
            batch.append(messages.receive_nowait())
        except (anyio.WouldBlock, anyio.EndOfStream):
            return batch


async def _write(
    stream: ByteStream, connection: h11.Connection, batch: list[ClientMessage]
) -> None:
    """Frame `batch` with h11 and send it at once. A whole response in one batch (a plain
    answer, a local error) gets a content-length instead of chunked framing."""
    whole = isinstance(batch[0], RespondHead) and isinstance(batch[-1], RespondEnd)
    data = bytearray()
    for message in batch:
        if isinstance(message, RespondHead):
            headers = list(message.headers)
            if whole and not any(name.lower() in _FRAMING for name, _ in headers):
                size = sum(len(m.data) for m in batch if isinstance(m, RespondBody))
                headers.append(("content-length", str(size)))
            data += connection.send(h11.Response(status_code=message.status, headers=headers))
        elif isinstance(message, RespondBody):
            data += connection.send(h11.Data(data=message.data)) or b""
        elif isinstance(message, RespondEnd):
            data += connection.send(h11.EndOfMessage()) or b""
    if data:
        await stream.send(bytes(data))


async def _send_whole(
    stream: ByteStream,
    connection: h11.Connection,
    status: int,
    headers: tuple[tuple[str, str], ...],
    body: bytes,
) -> None:
    response = h11.Response(
        status_code=status,
        headers=[*headers, ("content-length", str(len(body))), ("connection", "close")],
    )
    data = connection.send(response) or b""
    data += connection.send(h11.Data(data=body)) or b""
    data += connection.send(h11.EndOfMessage()) or b""
    await stream.send(data)
