"""The upstream HTTP/1.1 client: h11 on anyio streams, with a keep-alive pool and proxies.

Theory of operation. The core decides *what* to send and *what a failure
means*; this client only moves bytes and describes what happened, in the
core's vocabulary. So `send` never raises for upstream trouble: every
outcome is reported to a `Receiver` as `head` (at most once), `chunk`s,
then exactly one of `end` or `failed(TransportFailure, detail)`, which the
drive loop turns into `UpstreamResponseStarted`, `UpstreamBodyReceived`,
`UpstreamBodyEnded` and `UpstreamFailed`. Cancellation is the one
exception, because it is not upstream trouble: it is the core aborting the
attempt (`AbortUpstream`), so the connection is closed at once, nothing is
reported and the cancellation propagates (docs: anyio "cancellation").

Failure mapping (which failure goes where matters to the retry classifier,
which cools accounts down differently for each; `_upstream_connect.py`
names the connect stages):

    name resolution fails                       DNS
    TCP refused / unreachable                   CONNECT_REFUSED
    TLS handshake or certificate                TLS
    anything about the proxy (socks5, CONNECT)  PROXY
    connect_timeout passes while connecting     CONNECT_TIMEOUT
    write_timeout passes while sending, or      FIRST_BYTE_TIMEOUT
      first_byte_timeout before the head
    idle_timeout passes between body reads      IDLE_TIMEOUT
    peer reset / broken pipe                    RESET
    EOF before the response was complete        CLOSED
    bytes h11 rejects as HTTP                   MALFORMED
    our own bug, bad URL, no free slot          LOCAL

Three modules: this one (the API, the pool, the limit), `_upstream_http.py`
(one exchange on one connection: framing, streaming, timeouts, the stale
retry) and `_upstream_connect.py` (TCP, proxies, TLS).

- *The pool.* Connections are kept per (scheme, host, port, proxy), at
  most `max_keepalive` idle per key, for `keepalive_expiry` seconds. A
  connection returns to the pool only when h11 says both sides are DONE
  (the whole response was read and nobody asked to close). The newest idle
  connection is reused first (the one least likely to have been closed by
  the server), and expired ones are closed lazily, oldest first, whenever
  the pool is touched (there is no background task: the client can be
  used from any task on one event loop).
- *Groups.* A request may name a `group` (the shells use the provider id)
  with a limit of its own (`group_limits`: the provider's
  `max_connections`). Connections are pooled per group, and a group's open
  connections, active and idle, stay within its limit the same way the
  whole client's stay within `max_connections` (below): a slot of the group
  as well, and the group's oldest idle connection closed to make room.
- *The limit.* `max_connections` bounds open connections, active and idle
  together. A request takes a slot first (FIFO); when none is free it waits
  up to its own `pool_timeout` (`pool_timeout_s`) for one, then fails with
  `LOCAL`. Not
  `CONNECT_TIMEOUT`: a full pool is our own back-pressure, and blaming the
  account would cool every account down exactly when we are busiest. The
  wait is a separate budget, so a request that waited still gets its whole
  `connect_timeout` to connect. When a new connection is needed and the
  limit is reached through idle connections, the oldest idle one is closed.
- *Bookkeeping before awaits.* Every cleanup path (a failure, a
  cancellation) settles the slot and the open-connection count
  synchronously, then closes sockets shielded: in a cancelled task any
  other await would raise again and leak both.
- *Secrets.* `detail` strings name `host:port` and the stage, never a
  header, a body, a URL or an exception message that could quote them.

The client is bound to the event loop that first uses it and is not
thread-safe, like any anyio object.
"""

from __future__ import annotations

import functools
import ssl
from collections import deque
from collections.abc import Mapping
from typing import Protocol
from urllib.parse import urlsplit

import anyio
import attrs
from anyio.abc import ByteStream

from eggpool.core.config import ProxyUrl
from eggpool.core.retry import TransportFailure
from eggpool.core.secret import Secret
from eggpool.shells._upstream_connect import (
    Target,
    TransportError,
    close_quietly,
    default_ssl_context,
    open_stream,
)
from eggpool.shells._upstream_http import Connection, Key, Stale, exchange

__all__ = ["Receiver", "UpstreamClient", "UpstreamRequest"]

_F = TransportFailure


@attrs.frozen(kw_only=True)
class UpstreamRequest:
    """One HTTP request to send upstream, with its proxy and time limits (seconds)."""

    method: str
    url: str  # absolute http:// or https:// URL
    headers: tuple[tuple[str, str | Secret], ...] = attrs.field(repr=False)
    body: bytes | None = attrs.field(default=None, repr=False)
    proxy: ProxyUrl | None = None
    connect_timeout: float = 5.0  # TCP + proxy handshake + TLS
    write_timeout: float = 30.0
    pool_timeout: float = 30.0  # waiting for a free connection slot (max_connections)
    group: str = ""  # whose connections these are (the provider): its own limit, if any
    first_byte_timeout: float | None = None  # None: no limit (the core has its own timers)
    idle_timeout: float | None = None  # between body reads; None: no limit


class Receiver(Protocol):
    """Where `send` reports; every method is called synchronously from the event loop."""

    def connected(self, seconds: float) -> None:
        """How long getting a connection took (a free slot, then TCP, TLS and proxy
        handshakes; about 0 for a pooled one): before `head`, again after a retry."""

    def head(self, status: int, headers: tuple[tuple[str, str], ...]) -> None: ...

    def chunk(self, data: bytes) -> None: ...

    def end(self) -> None: ...

    def failed(self, failure: TransportFailure, detail: str) -> None: ...


class UpstreamClient:
    """Sends `UpstreamRequest`s over pooled HTTP/1.1 connections (see the module docstring)."""

    def __init__(
        self,
        *,
        max_connections: int = 100,
        max_keepalive: int = 100,
        keepalive_expiry: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        group_limits: Mapping[str, int] | None = None,
    ) -> None:
        if max_connections < 1 or max_keepalive < 0 or keepalive_expiry < 0:
            raise ValueError("max_connections >= 1, max_keepalive >= 0, keepalive_expiry >= 0")
        if any(limit < 1 for limit in (group_limits or {}).values()):
            raise ValueError("every group limit must be at least 1")
        self._max_connections = max_connections
        self._group_limits = dict(group_limits or {})
        self._group_slots = {group: _Slots(n) for group, n in self._group_limits.items()}
        self._group_open: dict[str, int] = {}  # open connections per limited group
        self._max_keepalive = max_keepalive
        self._keepalive_expiry = keepalive_expiry
        self._ssl_context = ssl_context or default_ssl_context()
        self._slots = _Slots(max_connections)
        self._idle: dict[Key, list[Connection]] = {}  # per key, newest last
        self._idle_order: dict[Connection, None] = {}  # every idle connection, oldest first
        self._open = 0  # connections open, active and idle
        self._closed = False

    async def send(self, request: UpstreamRequest, receiver: Receiver) -> None:
        """Send `request`; report to `receiver`. Raises only cancellation (see module docs)."""
        report = _Report(receiver)
        try:
            await self._send(request, report)
        except TransportError as exc:
            report.failed(exc.failure, exc.detail)
        except Exception as exc:
            if report.done:  # receiver.end() itself raised: reporting again would lie
                raise
            # Our bug (or the receiver's): the request must still be finalized
            # once, and the provider must not be blamed.
            report.failed(_F.LOCAL, f"internal error: {type(exc).__name__}")

    async def aclose(self) -> None:
        """Close idle connections; requests in flight finish, then close theirs."""
        self._closed = True
        idle = list(self._idle_order)
        self._idle.clear()
        self._idle_order.clear()
        await self._close_all(idle)

    # -- one request -----------------------------------------------------------------

    async def _send(self, request: UpstreamRequest, report: _Report) -> None:
        if self._closed:
            raise TransportError(_F.LOCAL, "the upstream client is closed")
        target = _parse_url(request.url)
        key: Key = (target.scheme, target.host, target.port, request.proxy, request.group)
        began = anyio.current_time()
        group_slots = self._group_slots.get(request.group)
        deadline = began + request.pool_timeout
        await self._take(self._slots, deadline, request, self._max_connections)
        if group_slots is not None:
            try:
                limit = self._group_limits[request.group]
                await self._take(group_slots, deadline, request, limit)
            except BaseException:
                self._slots.release()
                raise
        connection: Connection | None = None
        try:
            connection, expired = self._checkout(key)
            await self._close_all(expired)
            reused = connection is not None
            if connection is None:
                connection = await self._connect(key, target, request)
            report.receiver.connected(anyio.current_time() - began)
            try:
                reusable = await exchange(
                    connection, request, target, report.receiver, reused=reused
                )
            except Stale:
                stale, connection = connection, None
                await self._close_all([stale])
                connection = await self._connect(key, target, request)
                report.receiver.connected(anyio.current_time() - began)
                reusable = await exchange(
                    connection, request, target, report.receiver, reused=False
                )
            done, connection = connection, None
            to_close = self._checkin(done) if reusable else [done]
            try:
                report.end()  # before any await: the answer's end goes out with its body
            finally:
                await self._close_all(to_close)
        finally:
            self._slots.release()
            if group_slots is not None:
                group_slots.release()
            if connection is not None:  # failed or cancelled mid-exchange: never reused
                await self._close_all([connection])

    async def _take(
        self, slots: _Slots, deadline: float, request: UpstreamRequest, limit: int
    ) -> None:
        """A slot of `slots`, waiting until `deadline` at most (then LOCAL: our back-pressure)."""
        if slots.try_acquire():
            return
        with anyio.move_on_after(max(deadline - anyio.current_time(), 0.0)):
            await slots.acquire()
            return
        which = f"{request.group}'s " if slots is not self._slots else ""
        raise TransportError(
            _F.LOCAL,
            f"no free connection slot within {request.pool_timeout:g}s "
            f"({which}max_connections={limit})",
        )

    async def _connect(self, key: Key, target: Target, request: UpstreamRequest) -> Connection:
        evicted: list[Connection] = []
        while self._open >= self._max_connections and self._idle_order:
            oldest = next(iter(self._idle_order))
            self._forget_idle(oldest)
            evicted.append(oldest)
        group = key[4]
        limit = self._group_limits.get(group)
        if limit is not None:
            while self._group_open.get(group, 0) >= limit:
                mine = next((c for c in self._idle_order if c.key[4] == group), None)
                if mine is None:
                    break
                self._forget_idle(mine)
                evicted.append(mine)
        await self._close_all(evicted)
        self._count(key, +1)
        stream: ByteStream | None = None
        try:
            with anyio.move_on_after(request.connect_timeout):
                stream = await open_stream(target, request.proxy, self._ssl_context)
        finally:
            if stream is None:
                self._count(key, -1)
        if stream is None:
            via = "" if request.proxy is None else " (through the proxy)"
            raise TransportError(
                _F.CONNECT_TIMEOUT,
                f"{target.authority}: not connected within {request.connect_timeout:g}s{via}",
            )
        return Connection(stream, key)

    # -- the pool: synchronous bookkeeping, closes happen after ------------------------

    def _checkout(self, key: Key) -> tuple[Connection | None, list[Connection]]:
        expired = self._expire()
        stack = self._idle.get(key)
        if not stack:
            return None, expired
        connection = stack[-1]
        self._forget_idle(connection)
        return connection, expired

    def _checkin(self, connection: Connection) -> list[Connection]:
        if self._closed or self._max_keepalive == 0:
            return [connection]
        stack = self._idle.setdefault(connection.key, [])
        if len(stack) >= self._max_keepalive:
            return [connection]
        connection.idle_since = anyio.current_time()
        stack.append(connection)
        self._idle_order[connection] = None
        return self._expire()

    def _expire(self) -> list[Connection]:
        deadline = anyio.current_time() - self._keepalive_expiry
        expired = []
        for connection in self._idle_order:
            if connection.idle_since > deadline:
                break
            expired.append(connection)
        for connection in expired:
            self._forget_idle(connection)
        return expired

    def _forget_idle(self, connection: Connection) -> None:
        del self._idle_order[connection]
        stack = self._idle[connection.key]
        stack.remove(connection)
        if not stack:
            del self._idle[connection.key]

    async def _close_all(self, connections: list[Connection]) -> None:
        for connection in connections:  # before any await: this runs in cancelled tasks too
            self._count(connection.key, -1)
        for connection in connections:
            await close_quietly(connection.stream)

    def _count(self, key: Key, change: int) -> None:
        """Open connections, in all and per limited group."""
        self._open += change
        group = key[4]
        if group in self._group_limits:
            self._group_open[group] = self._group_open.get(group, 0) + change


class _Slots:
    """A FIFO counting semaphore whose uncontended acquire does not yield.

    anyio's `CapacityLimiter` yields to the event loop even when a token is
    free; on a keep-alive request that costs more than the rest of the pool
    bookkeeping together.
    """

    def __init__(self, total: int) -> None:
        self._free = total
        self._waiters: deque[anyio.Event] = deque()

    def try_acquire(self) -> bool:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return True
        return False

    async def acquire(self) -> None:
        if self.try_acquire():
            return
        event = anyio.Event()
        self._waiters.append(event)
        try:
            await event.wait()
        except BaseException:
            if event.is_set():  # handed a slot while being cancelled: pass it on
                self.release()
            else:
                self._waiters.remove(event)
            raise

    def release(self) -> None:
        if self._waiters:
            self._waiters.popleft().set()  # the slot goes straight to the next in line
        else:
            self._free += 1


class _Report:
    """The receiver, plus the memory of whether the exchange was already concluded."""

    __slots__ = ("done", "receiver")

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.done = False

    def end(self) -> None:
        self.done = True
        self.receiver.end()

    def failed(self, failure: TransportFailure, detail: str) -> None:
        if not self.done:
            self.done = True
            self.receiver.failed(failure, detail)


@functools.lru_cache(maxsize=1024)  # a few base URLs, parsed on every request otherwise
def _parse_url(url: str) -> Target:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise TransportError(_F.LOCAL, "invalid upstream URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise TransportError(_F.LOCAL, "the upstream URL must be an absolute http(s) URL")
    if parts.username is not None or parts.password is not None:
        raise TransportError(_F.LOCAL, "credentials in the upstream URL are not supported")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    default = 443 if scheme == "https" else 80
    return Target(scheme=scheme, host=parts.hostname, port=port or default, path=path)
