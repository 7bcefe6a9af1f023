"""The scriptable fake provider, served over real HTTP/1.1 on 127.0.0.1 from a thread.

Theory of operation. `served_provider(provider, keys)` starts an event loop
in a background thread (anyio's blocking portal), listens on an ephemeral
loopback port and yields a `ServedProvider` whose `url` (for example
`http://127.0.0.1:PORT/v1`) a test hands to `eggpool serve` or to an SDK.
Synchronous tests and subprocesses can use it; leaving the block cancels
every connection and joins the thread.

Each request is read with `h11`, recorded as an `Exchange` and answered by
the same `FakeProvider` the Sans-IO tests script, so there is one source of
truth for what a provider says. The request becomes the effect the core
would have emitted (`OpenUpstream` for a POST whose path ends with the
provider's `openai_path` / `anthropic_path`, `FetchModelList` for a path
ending with `models_path`), the provider returns its `Step`s, and each step
is played on the socket after its delay (a real sleep):

- `UpstreamResponseStarted`: the status line and the scripted headers (an
  SSE stream has no content-length, so h11 frames it chunked);
- `UpstreamBodyReceived`: the bytes, as one write;
- `UpstreamBodyEnded`: the end of the message; the connection stays open
  for the next request (keep-alive), as providers' do;
- `UpstreamFailed`: what the client would have seen to report that failure:
  `RESET` (and the pre-head failures a listening server cannot reproduce:
  refused, DNS, TLS, proxy, local) abort the socket with a TCP RST;
  `CLOSED` closes it cleanly mid-message; `MALFORMED` writes bytes that are
  not HTTP, then closes; the timeouts go silent and leave the timer to the
  client;
- a reply with no further step (`Reply.hang()`, `Reply.stall_after(n)`)
  stays silent until the client hangs up or the server stops;
- `ModelListReceived` is a whole JSON (or HTML) response; `ModelListFailed`
  a reset.

The account is the one whose key the request presents (`Authorization:
Bearer <key>` or `x-api-key: <key>`, looked up in `keys`); an unknown or
missing key gets the provider's 401 without consulting the script. A
scripting mistake the provider raises for (no script and no default reply)
is answered with a 500 and re-raised when the block exits.

Connections are watched while a response is being played: a client that
hangs up (as `eggpool` does when it aborts an attempt) ends the exchange at
once with `Ending.CLIENT_GONE`, which tests can wait for.
"""

from __future__ import annotations

import enum
import http
import itertools
import socket
import struct
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import assert_never

import anyio
import attrs
import h11
from anyio.abc import SocketAttribute, SocketStream
from anyio.from_thread import start_blocking_portal

from eggpool.core.config import Protocol
from eggpool.core.effects import FetchModelList, OpenUpstream
from eggpool.core.events import (
    ModelListFailed,
    ModelListReceived,
    UpstreamBodyEnded,
    UpstreamBodyReceived,
    UpstreamFailed,
    UpstreamResponseStarted,
)
from eggpool.core.retry import TransportFailure
from eggpool.simulated.provider import (
    UNSTAMPED,
    FakeProvider,
    Step,
    error_body,
    protocol_of,
)

__all__ = ["Ending", "Exchange", "ServedProvider", "served_provider"]

# What a peer that hung up (or that we hung up on) raises on our side.
_PEER_ERRORS = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError)

_GARBAGE = b"\x00\x01 this is not HTTP \xff\r\n\r\n"

# Failures a client sees as a TCP reset from a server that already accepted the connection.
_RESETS = frozenset({
    TransportFailure.RESET,
    TransportFailure.CONNECT_REFUSED,
    TransportFailure.DNS,
    TransportFailure.TLS,
    TransportFailure.PROXY,
    TransportFailure.LOCAL,
})  # fmt: skip
# Failures the client's own timer reports: the server just goes quiet.
_SILENCES = frozenset({
    TransportFailure.CONNECT_TIMEOUT,
    TransportFailure.FIRST_BYTE_TIMEOUT,
    TransportFailure.IDLE_TIMEOUT,
})  # fmt: skip


class Ending(enum.Enum):
    """How the server's side of one exchange ended."""

    COMPLETE = "complete"  # the whole response was sent
    RESET = "reset"  # aborted with a TCP RST
    CLOSED = "closed"  # closed cleanly before the response was complete
    GARBAGE = "garbage"  # bytes that are not HTTP were sent, then the connection closed
    CLIENT_GONE = "client_gone"  # the client hung up first
    SHUTDOWN = "shutdown"  # the server stopped while the exchange was still open


@attrs.define(kw_only=True, eq=False)
class Exchange:
    """One request the server read. `status` and `ending` are filled in as it is answered."""

    number: int  # 1-based, in arrival order
    method: str
    path: str  # the request target, query included
    headers: tuple[tuple[str, str], ...]  # names in lower case, as h11 reports them
    body: bytes = attrs.field(repr=False)
    account: str | None  # None: the key was missing or unknown
    status: int | None = None  # the status line sent, if one was
    ending: Ending | None = None  # None while the exchange is still open

    def header(self, name: str) -> str | None:
        values = [value for key, value in self.headers if key == name.lower()]
        return values[-1] if values else None


class ServedProvider:
    """A running server: where to reach it and what it was asked (safe to read from any thread)."""

    def __init__(
        self, provider: FakeProvider, port: int, base_path: str, keep: int | None = None
    ) -> None:
        """`keep`: how many of the latest exchanges to remember (None: all of them)."""
        self.provider = provider
        self.port = port
        self.origin = f"http://127.0.0.1:{port}"
        self.url = self.origin + base_path
        self._exchanges: deque[Exchange] = deque(maxlen=keep)
        self._count = 0  # exchanges ever opened (they are numbered from 1)
        self._changed = threading.Condition()
        self._errors: list[Exception] = []

    @property
    def exchanges(self) -> tuple[Exchange, ...]:
        with self._changed:
            return tuple(self._exchanges)

    def wait_for(
        self, count: int, *, ended: bool = False, timeout: float = 5.0
    ) -> tuple[Exchange, ...]:
        """Block until `count` requests arrived (and, with `ended`, all of them ended)."""

        def ready() -> bool:
            seen = list(itertools.islice(self._exchanges, count))
            return len(seen) == count and (not ended or all(e.ending for e in seen))

        with self._changed:
            if not self._changed.wait_for(ready, timeout):
                raise TimeoutError(f"{count} exchanges within {timeout}s: {self._exchanges}")
            return tuple(self._exchanges)

    # -- the server thread's side ------------------------------------------------------

    def _open(self, make: Callable[[int], Exchange]) -> Exchange:
        with self._changed:
            self._count += 1
            exchange = make(self._count)
            self._exchanges.append(exchange)
            self._changed.notify_all()
            return exchange

    def _update(self, exchange: Exchange, *, status: int | None = None,
                ending: Ending | None = None) -> None:  # fmt: skip
        with self._changed:
            if status is not None:
                exchange.status = status
            if ending is not None and exchange.ending is None:
                exchange.ending = ending
            self._changed.notify_all()


@contextmanager
def served_provider(
    provider: FakeProvider,
    keys: Mapping[str, str],
    *,
    base_path: str = "/v1",
    models_path: str = "/models",
    backend: str = "asyncio",
    keep: int | None = None,
) -> Iterator[ServedProvider]:
    """Serve `provider` on 127.0.0.1 until the block exits; `keys` maps API key -> account.
    `keep` bounds the exchanges remembered (a long-running demo); None keeps them all."""
    with start_blocking_portal(backend) as portal:
        serving = _serve(provider, dict(keys), base_path.rstrip("/"), models_path, keep)
        with portal.wrap_async_context_manager(serving) as served:
            yield served
    if served._errors:
        raise served._errors[0]


@asynccontextmanager
async def _serve(
    provider: FakeProvider,
    keys: dict[str, str],
    base_path: str,
    models_path: str,
    keep: int | None,
) -> AsyncIterator[ServedProvider]:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(SocketAttribute.local_port)
    served = ServedProvider(provider, port, base_path, keep)

    async def accept(stream: SocketStream) -> None:
        await _Connection(stream, served, keys, models_path).run()

    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, accept)
        try:
            yield served
        finally:
            group.cancel_scope.cancel()


class _Connection:
    """The server's side of one accepted connection: read a request, play its steps, repeat."""

    def __init__(
        self, stream: SocketStream, served: ServedProvider, keys: dict[str, str], models_path: str
    ) -> None:
        self.stream = stream
        self.served = served
        self.keys = keys
        self.models_path = models_path.rstrip("/")
        self.h11 = h11.Connection(h11.SERVER)
        self.current: Exchange | None = None

    async def run(self) -> None:
        try:
            while await self._exchange():
                self.h11.start_next_cycle()
        except (*_PEER_ERRORS, h11.RemoteProtocolError):
            self._end(Ending.CLIENT_GONE)
        except anyio.get_cancelled_exc_class():
            self._end(Ending.SHUTDOWN)
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.aclose_forcefully(self.stream)

    def _end(self, ending: Ending) -> None:
        if self.current is not None:
            self.served._update(self.current, ending=ending)

    # -- one request ---------------------------------------------------------------------

    async def _exchange(self) -> bool:
        """Answer one request; False when the connection is done."""
        request = await self._read_request()
        if request is None:
            return False
        head, body = request
        steps = self._answer(head, body)
        ending = await self._play_watched(steps)
        self._end(ending)
        return ending is Ending.COMPLETE and self.h11.our_state is h11.DONE

    async def _read_request(self) -> tuple[h11.Request, bytes] | None:
        head: h11.Request | None = None
        body = b""
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                try:
                    data = await self.stream.receive()
                except (anyio.EndOfStream, *_PEER_ERRORS):
                    data = b""
                self.h11.receive_data(data)
            elif isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                return head, body
            else:  # ConnectionClosed between requests (or PAUSED, which cannot happen here)
                return None

    def _answer(self, head: h11.Request, body: bytes) -> list[Step]:
        """The provider's steps for this request, recording it as an exchange."""
        method = head.method.decode()
        target = head.target.decode("latin-1")
        headers = tuple((k.decode(), v.decode("latin-1")) for k, v in head.headers)
        account = self.keys.get(_presented_key(headers) or "")
        self.current = self.served._open(
            lambda number: Exchange(number=number, method=method, path=target, headers=headers,
                                    body=body, account=account)
        )  # fmt: skip
        path = target.partition("?")[0].rstrip("/")
        url = self.served.origin + target
        provider = self.served.provider
        if path.endswith(self.models_path):
            if account is None:
                return _error_steps(401, Protocol.OPENAI)
            fetch = FetchModelList(account=account, url=url, method=method, headers=headers)
            return provider.model_list(fetch)
        try:
            protocol = protocol_of(url, provider.openai_path, provider.anthropic_path)
        except ValueError:
            return _error_steps(404, Protocol.OPENAI)
        if method != "POST":
            return _error_steps(405, protocol)
        if account is None:
            return _error_steps(401, protocol)
        number = self.current.number
        effect = OpenUpstream(attempt_id=f"att{number}", request_id=f"req{number}",
                              account=account, url=url, method=method, headers=headers,
                              body=body)  # fmt: skip
        try:
            return provider.respond(effect)
        except Exception as error:  # a scripting mistake: fail the test at exit, not here
            self.served._errors.append(error)
            return _error_steps(500, protocol)

    # -- playing the steps -------------------------------------------------------------

    async def _play_watched(self, steps: list[Step]) -> Ending:
        """Play `steps`, but stop at once if the client hangs up meanwhile."""
        ending = Ending.CLIENT_GONE
        async with anyio.create_task_group() as group:

            async def play() -> None:
                nonlocal ending
                ending = await self._play(steps)
                group.cancel_scope.cancel()

            async def watch() -> None:
                # The client never pipelines, but keep whatever it sends for the next cycle.
                try:
                    while True:
                        self.h11.receive_data(await self.stream.receive())
                except (anyio.EndOfStream, *_PEER_ERRORS):
                    group.cancel_scope.cancel()

            group.start_soon(play)
            group.start_soon(watch)
        return ending

    async def _play(self, steps: list[Step]) -> Ending:
        for step in steps:
            await anyio.sleep(step.delay)
            event = step.event
            match event:
                case UpstreamResponseStarted():
                    await self._head(event.status, event.headers)
                case UpstreamBodyReceived():
                    await self._send(h11.Data(data=event.data))
                case UpstreamBodyEnded():
                    await self._send(h11.EndOfMessage())
                    return Ending.COMPLETE
                case UpstreamFailed():
                    return await self._fail(event.failure)
                case ModelListReceived():
                    is_html = event.body.lstrip().startswith(b"<")
                    content_type = "text/html" if is_html else "application/json"
                    length = str(len(event.body))
                    headers = (("content-type", content_type), ("content-length", length))
                    await self._head(event.status, headers)
                    await self._send(h11.Data(data=event.body))
                    await self._send(h11.EndOfMessage())
                    return Ending.COMPLETE
                case ModelListFailed():
                    return await self._fail(TransportFailure.RESET)
                case _:
                    assert_never(event)
        await anyio.sleep_forever()  # a hang or a stall: only the client (or shutdown) ends it
        raise AssertionError("unreachable")

    async def _head(self, status: int, headers: tuple[tuple[str, str], ...]) -> None:
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = ""
        await self._send(h11.Response(status_code=status, headers=list(headers), reason=reason))
        assert self.current is not None
        self.served._update(self.current, status=status)

    async def _send(self, event: h11.Event) -> None:
        data = self.h11.send(event)
        if data:
            await self.stream.send(data)

    async def _fail(self, failure: TransportFailure) -> Ending:
        """Make the coming close of the connection look like `failure` to the client."""
        if failure in _SILENCES:
            await anyio.sleep_forever()
        if failure in _RESETS:
            raw: socket.socket = self.stream.extra(SocketAttribute.raw_socket)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return Ending.RESET
        if failure is TransportFailure.MALFORMED:
            await self.stream.send(_GARBAGE)
            return Ending.GARBAGE
        return Ending.CLOSED


def _presented_key(headers: tuple[tuple[str, str], ...]) -> str | None:
    """The key from `Authorization: Bearer <key>` or, failing that, `x-api-key`."""
    found = dict(headers)
    authorization = found.get("authorization", "").strip()
    if authorization:
        scheme, _, rest = authorization.partition(" ")
        return rest.strip() if rest and scheme.lower() == "bearer" else authorization
    return found.get("x-api-key", "").strip() or None


def _error_steps(code: int, protocol: Protocol) -> list[Step]:
    """A provider's error answer that the script is not consulted for (auth, routing)."""
    body, content_type = error_body(protocol, code)
    headers = (("content-type", content_type), ("content-length", str(len(body))))
    return [
        Step(delay=0.0, event=UpstreamResponseStarted(now=UNSTAMPED, attempt_id="", status=code,
                                                       headers=headers)),
        Step(delay=0.0, event=UpstreamBodyReceived(now=UNSTAMPED, attempt_id="", data=body)),
        Step(delay=0.0, event=UpstreamBodyEnded(now=UNSTAMPED, attempt_id="")),
    ]  # fmt: skip
