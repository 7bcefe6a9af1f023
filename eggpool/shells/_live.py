"""Live updates for the dashboard: the core's `Publish` effects, fanned out to WebSockets.

Theory of operation. The Driver hands every `Publish` to `LiveHub.publish`
(on the event loop, never blocking). The hub turns it into one JSON text
message and offers it to each subscriber's bounded queue; a subscriber
whose queue is full (a stalled browser) is dropped rather than slowing the
proxy, and its page falls back to refreshing. What goes out is what a
public dashboard may show: a finalized request's outcome, status, account,
model, cost, tokens and whether it streamed; never its id (per-request
metadata needs the key), a prompt, a secret or a client address.

`/api/live` is the socket. `accept(method, path, headers, config)` decides
whether a WebSocket handshake may proceed (the same access as the stats
API's aggregates, and the page's own origin only: a page elsewhere cannot
read a private dashboard through its visitor's browser); the anyio shell
speaks the protocol with wsproto (`serve_socket`), the Quart shell with
Quart's websocket. Both send a `hello` message first, then every update;
incoming messages are read and ignored (pings are answered).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Awaitable, Callable, Iterable

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from eggpool.core.config import Config
from eggpool.core.effects import Publish
from eggpool.core.errors import LocalFailure
from eggpool.dashboard.site import authenticate_page

__all__ = ["LIVE_PATH", "LiveHub", "accept", "handshake_headers", "serve_socket"]

LIVE_PATH = "/api/live"
QUEUE = 256  # messages a subscriber may fall behind before it is dropped
_PUBLIC = ("outcome", "status", "account", "model", "cost_microdollars", "tokens", "streamed")
_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3


class LiveHub:
    """The subscribers of one serving process, and what is published to them."""

    def __init__(self, config: Config) -> None:
        self.config = config  # whose [dashboard] and server key guard the socket
        self._subscribers: set[MemoryObjectSendStream[str]] = set()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def publish(self, effect: Publish) -> None:
        """Offer one update to every subscriber (on the event loop; never blocks)."""
        payload = {k: effect.payload[k] for k in _PUBLIC if k in effect.payload}
        message = json.dumps({"topic": effect.topic, **payload}, separators=(",", ":"))
        for subscriber in list(self._subscribers):
            try:
                subscriber.send_nowait(message)
            except anyio.WouldBlock:  # stalled: let it go, its page refreshes instead
                self._drop(subscriber)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._drop(subscriber)

    def subscribe(self) -> MemoryObjectReceiveStream[str]:
        """A stream of updates; close it to unsubscribe."""
        send, receive = anyio.create_memory_object_stream[str](QUEUE)
        self._subscribers.add(send)
        return receive

    def _drop(self, subscriber: MemoryObjectSendStream[str]) -> None:
        self._subscribers.discard(subscriber)
        subscriber.close()

    def close(self) -> None:
        """End every subscription (shutdown)."""
        for subscriber in list(self._subscribers):
            self._drop(subscriber)


def accept(method: str, headers: Iterable[tuple[str, str]], config: Config) -> LocalFailure | None:
    """Why a WebSocket handshake to `/api/live` may not proceed (None: it may)."""
    headers = tuple(headers)
    if method.upper() != "GET":
        return LocalFailure.method_not_allowed(method, LIVE_PATH, ("GET",))
    if not config.dashboard.public:
        failure = authenticate_page(config.server.api_key, headers)
        if failure is not None:
            return failure
    values = {name.lower(): value for name, value in headers}
    origin, host = values.get("origin"), values.get("host")
    if origin is not None and host is not None and origin.split("://", 1)[-1] != host:
        return LocalFailure.invalid_value(
            "origin", "a live socket is for the dashboard's own pages"
        )
    return None


def handshake_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]] | None:
    """The 101 answer's headers for a WebSocket upgrade request, or None if it is not one."""
    values = {name.lower(): value.strip() for name, value in headers}
    if values.get("upgrade", "").lower() != "websocket":
        return None
    key = values.get("sec-websocket-key")
    if not key or values.get("sec-websocket-version") != "13":
        return None
    accept_key = base64.b64encode(hashlib.sha1((key + _GUID).encode("ascii")).digest())
    return [
        ("upgrade", "websocket"),
        ("connection", "Upgrade"),
        ("sec-websocket-accept", accept_key.decode("ascii")),
    ]


async def serve_socket(
    hub: LiveHub,
    send: Callable[[bytes], Awaitable[None]],
    receive: Callable[[], Awaitable[bytes]],
    *,
    trailing: bytes = b"",
) -> None:
    """Speak WebSocket (wsproto) after a 101: send `hello` and every update until either
    side closes. `receive()` returns b"" once the client is gone."""
    from wsproto.connection import Connection, ConnectionType  # noqa: PLC0415
    from wsproto.events import CloseConnection, Ping, TextMessage  # noqa: PLC0415

    ws = Connection(ConnectionType.SERVER, trailing_data=trailing)
    updates = hub.subscribe()

    async def read() -> None:
        while True:
            for event in ws.events():
                if isinstance(event, Ping):
                    await send(ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    await send(ws.send(event.response()))
                    return
            data = await receive()
            if not data:
                return
            ws.receive_data(data)

    async with anyio.create_task_group() as group:

        async def write() -> None:
            await send(ws.send(TextMessage(data=json.dumps({"topic": "hello"}))))
            async with updates:
                async for message in updates:
                    await send(ws.send(TextMessage(data=message)))
            # The hub dropped us (stalled) or is shutting down: "try again later".
            await send(ws.send(CloseConnection(code=1013)))
            group.cancel_scope.cancel()

        group.start_soon(write)
        await read()
        group.cancel_scope.cancel()
