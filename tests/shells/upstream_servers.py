"""Loopback servers for the upstream client tests: an HTTP origin, a SOCKS5 proxy, a CONNECT proxy.

Theory of operation. Each server is an async context manager that listens
on 127.0.0.1 (an ephemeral port), runs a handler per accepted connection
in its own task group and cancels everything on exit, so a test owns its
servers' whole lifetime. The origin reads requests with its own
`h11.Connection` (so every request the client writes is also checked by an
independent parser) but writes responses as raw bytes: the tests need to
send exactly the broken, stalled or cut-short answers a real provider
sometimes sends, which a well-behaved HTTP library would refuse to write.

The proxies relay bytes after their handshake and log what the client asked
for (address type, host, port, credentials). They always connect to
127.0.0.1 at the requested port, whatever host was asked for, so a test can
check that a `socks5h` client sent the name `localhost` without depending
on how this machine resolves it.
"""

from __future__ import annotations

import base64
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import attrs
import h11
from anyio.abc import ByteStream, SocketStream
from anyio.abc import SocketAttribute as Attr
from anyio.streams.tls import TLSStream

# What a peer's misbehaviour (or ours, in the tests that provoke it) raises on the server side.
PEER_ERRORS = (anyio.BrokenResourceError, anyio.EndOfStream, anyio.ClosedResourceError, OSError)


@attrs.define(eq=False)
class Seen:
    """One request as the origin parsed it."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]


@attrs.define(eq=False)
class Server:
    """What a running server saw; `port` is where to reach it."""

    port: int
    connections: int = 0  # accepted so far
    open: int = 0  # open right now
    max_open: int = 0
    requests: list[Seen] = attrs.Factory(list)


class Peer:
    """The server's side of one accepted connection."""

    def __init__(self, stream: ByteStream, server: Server) -> None:
        self.stream = stream
        self.server = server
        self.raw_socket: socket.socket = stream.extra(Attr.raw_socket)

    async def read_request(self) -> Seen | None:
        """The next request, or None when the client closed the connection between requests."""
        # A fresh parser per request: the client never pipelines, so nothing is left
        # over, and the responses are written raw (h11 would not know they were sent).
        parser = h11.Connection(h11.SERVER)
        request: h11.Request | None = None
        body = b""
        while True:
            event = parser.next_event()
            if event is h11.NEED_DATA:
                try:
                    parser.receive_data(await self.stream.receive())
                except anyio.EndOfStream:
                    parser.receive_data(b"")
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert request is not None
                seen = Seen(
                    method=request.method.decode(),
                    target=request.target.decode(),
                    headers=[(k.decode(), v.decode("latin-1")) for k, v in request.headers],
                    body=body,
                )
                self.server.requests.append(seen)
                return seen
            else:
                assert isinstance(event, h11.ConnectionClosed), event
                return None

    async def send(self, data: bytes) -> None:
        await self.stream.send(data)

    async def wait_closed(self) -> None:
        """Return once the client closed the connection (EOF or reset), discarding any data."""
        try:
            while await self.stream.receive():
                pass
        except PEER_ERRORS:
            return

    def reset(self) -> None:
        """Make the coming close a TCP reset (RST) instead of an orderly FIN."""
        self.raw_socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def response(body: bytes = b"hello", *, status: int = 200, headers: tuple[str, ...] = ()) -> bytes:
    lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


CHUNKED_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
)
CHUNKED_END = b"0\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


Handler = Callable[[Peer], Awaitable[None]]


async def keepalive(peer: Peer) -> None:
    """Answer every request on the connection with `hello` until the client closes."""
    while await peer.read_request() is not None:
        await peer.send(response())


@asynccontextmanager
async def serve(handler: Handler, *, tls: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    """Run an origin on 127.0.0.1: `handler(peer)` for each connection, TLS when `tls` is given."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    server = Server(port=listener.extra(Attr.local_port))

    async def accept(stream: SocketStream) -> None:
        server.connections += 1
        server.open += 1
        server.max_open = max(server.max_open, server.open)
        wrapped: ByteStream = stream
        try:
            if tls is not None:
                wrapped = await TLSStream.wrap(
                    stream, server_side=True, ssl_context=tls, standard_compatible=False
                )
            await handler(Peer(wrapped, server))
        except PEER_ERRORS:
            pass  # the client hung up, or failed the handshake on purpose
        finally:
            server.open -= 1
            with anyio.CancelScope(shield=True):
                await anyio.aclose_forcefully(wrapped)

    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, accept)
        try:
            yield server
        finally:
            group.cancel_scope.cancel()


async def _relay(one: ByteStream, other: ByteStream) -> None:
    async with anyio.create_task_group() as group:

        async def pipe(source: ByteStream, sink: ByteStream) -> None:
            try:
                async for data in source:
                    await sink.send(data)
            except PEER_ERRORS:
                pass
            group.cancel_scope.cancel()  # one side is done: tear the tunnel down

        group.start_soon(pipe, one, other)
        group.start_soon(pipe, other, one)


@attrs.define(eq=False)
class ProxyLog:
    port: int
    connections: int = 0
    tunnels: list[tuple[str, str, int]] = attrs.Factory(list)  # (address type, host, port)
    credentials: list[tuple[str, str]] = attrs.Factory(list)
    relayed: int = 0  # tunnels that were opened to the origin


async def _exactly(stream: ByteStream, size: int) -> bytes:
    data = b""
    while len(data) < size:
        data += await stream.receive(size - len(data))
    return data


@asynccontextmanager
async def socks5_proxy(
    *, credentials: tuple[str, str] | None = None, reply: int = 0, stall: bool = False
) -> AsyncIterator[ProxyLog]:
    """A SOCKS5 proxy (RFC 1928/1929): `reply` != 0 refuses every CONNECT with that code."""

    async def handle(client: SocketStream) -> None:
        greeting = await _exactly(client, 2)
        methods = await _exactly(client, greeting[1])
        if stall:
            await anyio.sleep_forever()
        wanted = 2 if credentials is not None else 0
        if wanted not in methods:
            await client.send(b"\x05\xff")
            return
        await client.send(bytes([5, wanted]))
        if credentials is not None:
            user = await _exactly(client, (await _exactly(client, 2))[1])
            password = await _exactly(client, (await _exactly(client, 1))[0])
            log.credentials.append((user.decode(), password.decode()))
            ok = (user.decode(), password.decode()) == credentials
            await client.send(b"\x01\x00" if ok else b"\x01\x01")
            if not ok:
                return
        _version, _command, _reserved, atype = await _exactly(client, 4)
        if atype == 1:
            kind, host = "ipv4", socket.inet_ntop(socket.AF_INET, await _exactly(client, 4))
        elif atype == 4:
            kind, host = "ipv6", socket.inet_ntop(socket.AF_INET6, await _exactly(client, 16))
        else:
            kind, host = (
                "domain",
                (await _exactly(client, (await _exactly(client, 1))[0])).decode(),
            )
        port = int.from_bytes(await _exactly(client, 2), "big")
        log.tunnels.append((kind, host, port))
        if reply:
            await client.send(bytes([5, reply, 0, 1, 0, 0, 0, 0, 0, 0]))
            return
        async with await anyio.connect_tcp("127.0.0.1", port) as origin:
            log.relayed += 1
            await client.send(b"\x05\x00\x00\x01\x7f\x00\x00\x01" + port.to_bytes(2, "big"))
            await _relay(client, origin)

    async with _listen(handle) as log:
        yield log


@asynccontextmanager
async def connect_proxy(*, credentials: tuple[str, str] | None = None) -> AsyncIterator[ProxyLog]:
    """An HTTP proxy that only does CONNECT (RFC 9110 9.3.6), with Basic auth when asked."""

    async def handle(client: SocketStream) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            head += await client.receive()
        lines = head.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
        method, authority, _version = lines[0].split(" ")
        fields = dict(line.split(": ", 1) for line in lines[1:])
        host, _, port = authority.rpartition(":")
        log.tunnels.append((method, host, int(port)))
        auth = fields.get("Proxy-Authorization")
        if auth is not None:
            user, _, password = (
                base64.b64decode(auth.removeprefix("Basic ")).decode().partition(":")
            )
            log.credentials.append((user, password))
        if credentials is not None and (auth is None or log.credentials[-1] != credentials):
            await client.send(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                b'Proxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n\r\n'
            )
            return
        async with await anyio.connect_tcp("127.0.0.1", int(port)) as origin:
            log.relayed += 1
            await client.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await _relay(client, origin)

    async with _listen(handle) as log:
        yield log


@asynccontextmanager
async def _listen(handle: Callable[[SocketStream], Awaitable[None]]) -> AsyncIterator[ProxyLog]:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    log = ProxyLog(port=listener.extra(Attr.local_port))

    async def accept(client: SocketStream) -> None:
        log.connections += 1
        try:
            await handle(client)
        except PEER_ERRORS:
            pass
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.aclose_forcefully(client)

    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, accept)
        try:
            yield log
        finally:
            group.cancel_scope.cancel()


@asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """Accepts connections and never says a word: a TLS handshake or SOCKS greeting stalls."""

    async def hold(peer: Peer) -> None:
        await peer.wait_closed()

    async with serve(hold) as server:
        yield server.port


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
