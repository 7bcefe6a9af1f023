"""The drive loop both shells share: events in, `pool.handle`, effects out. No policy here.

Theory of operation. One `Driver` per Pool. Everything that happens (a client
request, an upstream chunk, a timer, a store failure) becomes one event,
stamped with the clock read once (`Now(mono=<the loop's clock>,
wall=time.time())`: the loop's clock, what `anyio.current_time()` reads,
for deadlines; the wall clock for what is stored), and goes through
`Driver.feed`, which calls `pool.handle` and runs the returned effects in
order, synchronously: nothing awaits between `handle` returning and its
effects being scheduled (STYLE rule 11), so no other event can slip in
between a decision and its execution, and the Pool is never re-entered
from inside `handle`.

Effects that take time are started, not awaited: `OpenUpstream` and
`FetchModelList` start a task in the driver's task group (each attempt in
its own cancel scope, so `AbortUpstream` closes its connection at once);
client writes go into the request's `ClientChannel` (a memory object
stream of our own), which the shell's connection task (or Quart's response
generator) drains; `Persist` enqueues into the store's writer thread;
timers go into a heap served by one task. Every effect that can fail is
answered by an event: upstream trouble by `UpstreamFailed`, a client that
stopped reading by `ClientGone`, a store write failure by `PersistFailed`.

Cancellation is explicit (STYLE rule 12). A client going away, a shutdown
and a deadline are three different events (`ClientGone`,
`ShutdownRequested`, `TimerFired`), never a bare cancellation. The only
awaited finalization, flushing the store at shutdown, runs shielded with a
timeout (`aclose`).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, assert_never

import anyio
import attrs
from anyio.abc import TaskGroup

from eggpool.core.config import Protocol as ApiProtocol
from eggpool.core.effects import (
    AbortUpstream,
    ArmTimer,
    CancelTimer,
    Effect,
    FetchModelList,
    Log,
    Metric,
    OpenUpstream,
    Persist,
    Publish,
    Record,
    RespondBody,
    RespondEnd,
    RespondHead,
)
from eggpool.core.errors import ErrorResponse, LocalFailure, render_error
from eggpool.core.events import (
    ClientGone,
    ClientRequestReceived,
    Event,
    ModelListFailed,
    ModelListReceived,
    Now,
    PersistFailed,
    TimerFired,
    UpstreamBodyEnded,
    UpstreamBodyReceived,
    UpstreamFailed,
    UpstreamResponseStarted,
)
from eggpool.core.retry import TransportFailure
from eggpool.dashboard.api import API_PREFIX, refuse
from eggpool.dashboard.site import is_dashboard_path
from eggpool.shells._upstream import Receiver, UpstreamRequest

if TYPE_CHECKING:
    from eggpool.shells._dashboard import StatsService
    from eggpool.shells._live import LiveHub

__all__ = [
    "CLIENT_BUFFER",
    "KEEPALIVE_TIMEOUT",
    "MAX_BODY_BYTES",
    "MAX_HEADER_BYTES",
    "REQUEST_TIMEOUT",
    "ClientChannel",
    "ClientMessage",
    "Driver",
    "PoolLike",
    "Receiver",
    "StoreLike",
    "UpstreamLike",
    "UpstreamRequest",
    "close_store",
    "local_answer",
]

MAX_HEADER_BYTES = 64 * 1024
"""A request head larger than this is refused (431 from the anyio shell)."""
MAX_BODY_BYTES = 10 * 1024 * 1024
"""A request body larger than this is answered 413 in the endpoint's error shape."""
REQUEST_TIMEOUT = 60.0
"""Seconds a client has to send a whole request (slow clients must not hold a task)."""
KEEPALIVE_TIMEOUT = 75.0
"""Seconds an idle keep-alive connection is kept open waiting for the next request."""

CLIENT_BUFFER = 4096
"""Response pieces queued for one client. A client that leaves this many unread has
stalled: it is treated as gone (bounded memory on a small machine)."""
MAX_MODEL_LIST = 32 * 1024 * 1024

_logger = logging.getLogger("eggpool")
_ids = random.Random()  # seeded from os.urandom: request ids must be unique, not secret
_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING}


class PoolLike(Protocol):
    def handle(self, event: Event) -> list[Effect]: ...


class UpstreamLike(Protocol):
    async def send(self, request: UpstreamRequest, receiver: Receiver) -> None: ...


class StoreLike(Protocol):
    def persist(self, record: Record) -> None: ...


class ClosableStore(StoreLike, Protocol):
    def close(self, timeout: float = 10.0) -> None: ...


async def close_store(store: ClosableStore, timeout: float = 10.0) -> None:
    """Flush and close the store at shutdown, shielded: a second Ctrl-C, or the shell's
    own cancellation, must not cut the last records off (docs/architecture.md, section 3)."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(timeout + 1.0):
        await anyio.to_thread.run_sync(store.close, timeout)


ClientMessage = RespondHead | RespondBody | RespondEnd
"""What a shell's connection task receives for its request, in order."""


class ClientChannel:
    """What the Pool says to one client, in order: the Driver puts (never waits), the shell
    receives. A memory object stream cut to that use: `receive` returns a queued message
    without yielding to the event loop first (anyio's does, about two extra loop turns
    per request), and the Driver learns a full or closed channel from `put`'s result.

    Receiving: `async for`, `receive()`, `receive_nowait()` (`anyio.WouldBlock` when
    nothing is queued, `anyio.EndOfStream` after the end). `close()` (or leaving a
    `with`) says the shell stopped reading: what is queued is dropped, later puts fail,
    and `on_close` (if given) is called, once."""

    __slots__ = ("_capacity", "_ended", "_items", "_on_close", "_reading", "_waiter")

    def __init__(self, capacity: int, on_close: Callable[[], None] | None = None) -> None:
        self._capacity = capacity
        self._on_close = on_close
        self._items: deque[ClientMessage] = deque()
        self._ended = False  # the Driver will put nothing more
        self._reading = True  # the shell still reads
        self._waiter: anyio.Event | None = None

    # -- the Driver's side ---------------------------------------------------------------

    def put(self, message: ClientMessage) -> bool:
        """Queue `message`; False if the shell stopped reading or `capacity` are queued."""
        if not self._reading or self._ended or len(self._items) >= self._capacity:
            return False
        self._items.append(message)
        self._wake()
        return True

    def end(self) -> None:
        """Nothing more will come: the shell's receive ends once the queue is drained."""
        self._ended = True
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.set()

    # -- the shell's side ----------------------------------------------------------------

    def receive_nowait(self) -> ClientMessage:
        if self._items:
            return self._items.popleft()
        if self._ended or not self._reading:
            raise anyio.EndOfStream
        raise anyio.WouldBlock

    async def receive(self) -> ClientMessage:
        while not self._items:
            if self._ended or not self._reading:
                raise anyio.EndOfStream
            self._waiter = waiter = anyio.Event()
            await waiter.wait()
        return self._items.popleft()

    def __aiter__(self) -> ClientChannel:
        return self

    async def __anext__(self) -> ClientMessage:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    def close(self) -> None:
        if not self._reading:
            return
        self._reading = False
        self._items.clear()
        self._wake()
        if self._on_close is not None:
            self._on_close()

    async def aclose(self) -> None:
        self.close()

    def __enter__(self) -> ClientChannel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Driver:
    """Feeds one Pool and runs its effects. Use inside `async with anyio.create_task_group()`."""

    def __init__(
        self,
        pool: PoolLike,
        *,
        upstream: UpstreamLike,
        store: StoreLike | None = None,
        clock: Callable[[], Now] | None = None,
        on_publish: Callable[[Publish], None] | None = None,
        on_metric: Callable[[Metric], None] | None = None,
    ) -> None:
        self.pool = pool
        self.upstream = upstream
        self.store = store
        self.stats: StatsService | None = None  # answers /api/ (the stats API) when set
        self.live: LiveHub | None = None  # the dashboard's live updates, when set
        # Seconds the Pool took over each of the latest client requests (receive, parse,
        # route, dispatch): the proxy's own overhead, for the runtime page.
        self.dispatch_times: deque[float] = deque(maxlen=1024)
        self._clock = clock or self._system_clock
        self._mono: Callable[[], float] | None = None  # the loop's clock, found on first use
        self._on_publish = on_publish
        self._on_metric = on_metric
        self._task_group: TaskGroup | None = None
        self._clients: dict[str, ClientChannel] = {}
        # Channels a shell still reads: a finished answer can sit queued there, unwritten,
        # after the Pool is done with its request (shutdown waits for them too).
        self.answers_open = 0
        self._attempts: dict[str, anyio.CancelScope] = {}
        self._timers: dict[str, tuple[float, int]] = {}  # key -> (at, generation)
        self._heap: list[tuple[float, int, str]] = []
        self._generation = 0
        self._wake = anyio.Event()
        self._portal_token: anyio.lowlevel.EventLoopToken | None = None
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------------

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve timers and own the tasks of upstream attempts until cancelled."""
        try:
            async with anyio.create_task_group() as group:
                self._task_group = group
                self._portal_token = anyio.lowlevel.current_token()
                task_status.started()
                await self._serve_timers()
        finally:
            self._closed = True
            for channel in self._clients.values():  # their connections end with the loop
                channel.end()
            self._clients.clear()

    def now(self) -> Now:
        return self._clock()

    def _system_clock(self) -> Now:
        return Now(mono=self._monotonic(), wall=time.time())

    def _monotonic(self) -> float:
        mono = self._mono
        if mono is None:
            mono = self._mono = loop_clock()
        return mono()

    # -- input -------------------------------------------------------------------------

    def feed(self, event: Event) -> None:
        """Hand one event to the Pool and run its effects, in order, without awaiting."""
        for effect in self.pool.handle(event):
            self._execute(effect)

    def open_client(self, request_id: str) -> ClientChannel:
        """A stream of what the Pool will say to this request's client. Call before feeding
        the request's `ClientRequestReceived`."""
        channel = ClientChannel(CLIENT_BUFFER, self._answer_closed)
        self._clients[request_id] = channel
        self.answers_open += 1
        return channel

    def _answer_closed(self) -> None:
        self.answers_open -= 1

    def client_request(
        self,
        *,
        method: str,
        path: str,
        headers: tuple[tuple[str, str], ...],
        body: bytes,
        client: str,
        query: str = "",
    ) -> tuple[str, ClientChannel]:
        """A whole request a shell has read: it gets an id (unique, not secret) and routing
        entropy, a channel for the answer, and goes to the Pool; one for the stats API
        (under `/api/`) or the dashboard goes to `stats` instead (when set), which reads
        the store.
        Returns (id, channel)."""
        request_id = f"{_ids.getrandbits(64):016x}"
        channel = self.open_client(request_id)
        if self.stats is not None and (path.startswith(API_PREFIX) or is_dashboard_path(path)):
            target = f"{path}?{query}" if query else path
            self._spawn(self._answer_stats, request_id, method, target, headers)
            return request_id, channel
        started = time.perf_counter()
        self.feed(
            ClientRequestReceived(
                now=self.now(),
                request_id=request_id,
                entropy=_ids.getrandbits(64),
                method=method,
                path=path,
                headers=headers,
                body=body,
                client=client,
            )
        )
        self.dispatch_times.append(time.perf_counter() - started)
        return request_id, channel

    def loop_state(self) -> dict[str, object]:
        """The serving loop as the runtime page shows it (call it on the loop)."""
        times = sorted(self.dispatch_times)

        def at(q: float) -> float | None:
            return (
                round(times[min(len(times) - 1, int(q * len(times)))] * 1e6, 1) if times else None
            )

        return {
            "tasks": {
                "upstream_attempts": len(self._attempts),
                "client_answers": len(self._clients),
                "timers": len(self._timers),
                "live_subscribers": self.live.subscribers if self.live is not None else 0,
            },
            "dispatch_overhead_us": {
                "samples": len(times),
                "p50": at(0.50),
                "p95": at(0.95),
                "max": round(times[-1] * 1e6, 1) if times else None,
            },
        }

    async def _answer_stats(
        self, request_id: str, method: str, target: str, headers: tuple[tuple[str, str], ...]
    ) -> None:
        assert self.stats is not None
        try:
            status, head, body = await self.stats.answer(method, target, headers)
        except Exception:  # a database error: the client gets a 500, the log the details
            _logger.exception(
                "a stats request failed: %s %s", method, target.split("?", maxsplit=1)[0]
            )
            status, head, body = refuse(LocalFailure.internal_error())
        for message in (
            RespondHead(request_id=request_id, status=status, headers=head),
            RespondBody(request_id=request_id, data=body),
            RespondEnd(request_id=request_id),
        ):
            self._respond(message)

    def client_gone(self, request_id: str) -> None:
        """The shell saw the client disconnect (or a write to it fail)."""
        channel = self._clients.pop(request_id, None)
        if channel is not None:
            channel.end()
            self.feed(ClientGone(now=self.now(), request_id=request_id))

    def persist_failed(self, what: str, error: str) -> None:
        """The store's `report` callback: thread-safe (the writer thread calls it)."""
        token = self._portal_token
        if token is None or self._closed:
            _logger.error("a %s record could not be stored: %s", what, error)
            return
        try:
            anyio.from_thread.run_sync(
                lambda: self.feed(PersistFailed(now=self.now(), what=what, error=error)),
                token=token,
            )
        except RuntimeError:  # the loop is gone (shutting down): nothing left to tell
            _logger.error("a %s record could not be stored: %s", what, error)

    # -- effects -----------------------------------------------------------------------

    def _execute(self, effect: Effect) -> None:
        match effect:
            case OpenUpstream():
                self._start_attempt(effect)
            case AbortUpstream():
                scope = self._attempts.pop(effect.attempt_id, None)
                if scope is not None:
                    scope.cancel()
            case RespondHead() | RespondBody() | RespondEnd():
                self._respond(effect)
            case ArmTimer():
                self._arm(effect.key, effect.at)
            case CancelTimer():
                self._timers.pop(effect.key, None)
            case FetchModelList():
                self._spawn(self._fetch_models, effect)
            case Persist():
                if self.store is not None:
                    self.store.persist(effect.record)
            case Log():
                _logger.log(
                    _LEVELS.get(effect.level, logging.ERROR),
                    effect.message,
                    extra={"fields": effect.fields},
                )
            case Metric():
                if self._on_metric is not None:
                    self._on_metric(effect)
            case Publish():
                if self._on_publish is not None:
                    self._on_publish(effect)
            case _:
                assert_never(effect)

    def _respond(self, effect: ClientMessage) -> None:
        channel = self._clients.get(effect.request_id)
        if channel is None:
            return  # the client left; its ClientGone is already with the Pool
        if not channel.put(effect):
            # Stalled (CLIENT_BUFFER full) or closed: the client is gone either way.
            self._clients.pop(effect.request_id, None)
            channel.end()
            self.feed(ClientGone(now=self.now(), request_id=effect.request_id))
            return
        if isinstance(effect, RespondEnd):
            self._clients.pop(effect.request_id, None)
            channel.end()

    def _spawn(self, func: Callable[..., object], *args: object) -> None:
        group = self._task_group
        if group is None:
            raise RuntimeError("Driver.run() is not running")
        group.start_soon(func, *args)  # type: ignore[arg-type]

    # -- upstream attempts -------------------------------------------------------------

    def _start_attempt(self, effect: OpenUpstream) -> None:
        if self._task_group is None:
            raise RuntimeError("Driver.run() is not running")
        scope = anyio.CancelScope()
        self._attempts[effect.attempt_id] = scope
        self._spawn(self._attempt, effect, scope)

    async def _attempt(self, effect: OpenUpstream, scope: anyio.CancelScope) -> None:
        request = UpstreamRequest(
            method=effect.method,
            url=effect.url,
            headers=effect.headers,
            body=effect.body,
            proxy=effect.proxy,
            connect_timeout=effect.connect_timeout,
            write_timeout=effect.write_timeout,
            pool_timeout=effect.pool_timeout,
            group=effect.provider,
        )
        receiver = _AttemptReceiver(self, effect.attempt_id)
        with scope:
            try:
                await self.upstream.send(request, receiver)
            except Exception as exc:  # our own bug, never blamed on the provider
                if not receiver.done:
                    receiver.failed(TransportFailure.LOCAL, type(exc).__name__)
        self._attempts.pop(effect.attempt_id, None)

    async def _fetch_models(self, effect: FetchModelList) -> None:
        request = UpstreamRequest(
            method=effect.method,
            url=effect.url,
            headers=effect.headers,
            body=effect.body,
            proxy=effect.proxy,
            connect_timeout=effect.connect_timeout,
            write_timeout=effect.write_timeout,
            pool_timeout=effect.pool_timeout,
            group=effect.provider,
            first_byte_timeout=effect.timeout,
            idle_timeout=effect.timeout,
        )
        listing = _ModelListReceiver()
        try:
            with anyio.fail_after(effect.timeout * 2):
                await self.upstream.send(request, listing)
        except TimeoutError:
            listing.failure = "timed out"
        except Exception as exc:
            listing.failure = f"local error: {type(exc).__name__}"
        now = self.now()
        if listing.failure is not None or listing.status is None:
            reason = listing.failure or "no response"
            self.feed(ModelListFailed(now=now, account=effect.account, reason=reason))
        else:
            self.feed(
                ModelListReceived(
                    now=now,
                    account=effect.account,
                    status=listing.status,
                    body=bytes(listing.body),
                )
            )

    # -- timers ------------------------------------------------------------------------

    def _arm(self, key: str, at: float) -> None:
        self._generation += 1
        self._timers[key] = (at, self._generation)
        heapq.heappush(self._heap, (at, self._generation, key))
        if self._heap[0][1] == self._generation:  # the new timer is the earliest: wake up
            self._wake.set()

    async def _serve_timers(self) -> None:
        while True:
            delay = math.inf
            while self._heap:
                at, generation, key = self._heap[0]
                if self._timers.get(key) != (at, generation):
                    heapq.heappop(self._heap)  # cancelled or re-armed since
                    continue
                delay = at - self._monotonic()
                if delay > 0:
                    break
                heapq.heappop(self._heap)
                del self._timers[key]
                self.feed(TimerFired(now=self.now(), key=key))
                delay = math.inf
            with anyio.move_on_after(delay):
                await self._wake.wait()
            self._wake = anyio.Event()

    @property
    def armed(self) -> dict[str, float]:
        """Timers armed now, by key (for tests and diagnostics)."""
        return {key: at for key, (at, _) in self._timers.items()}


@attrs.define
class _AttemptReceiver:
    """Turns the upstream client's callbacks into events for one attempt."""

    driver: Driver
    attempt_id: str
    done: bool = False
    connect_s: float | None = None

    def connected(self, seconds: float) -> None:
        self.connect_s = seconds

    def head(self, status: int, headers: tuple[tuple[str, str], ...]) -> None:
        driver = self.driver
        driver.feed(
            UpstreamResponseStarted(
                now=driver.now(),
                attempt_id=self.attempt_id,
                status=status,
                headers=headers,
                connect_s=self.connect_s,
            )
        )

    def chunk(self, data: bytes) -> None:
        driver = self.driver
        driver.feed(UpstreamBodyReceived(now=driver.now(), attempt_id=self.attempt_id, data=data))

    def end(self) -> None:
        self.done = True
        driver = self.driver
        driver.feed(UpstreamBodyEnded(now=driver.now(), attempt_id=self.attempt_id))

    def failed(self, failure: TransportFailure, detail: str) -> None:
        self.done = True
        driver = self.driver
        driver.feed(
            UpstreamFailed(
                now=driver.now(), attempt_id=self.attempt_id, failure=failure, detail=detail
            )
        )


@attrs.define
class _ModelListReceiver:
    status: int | None = None
    body: bytearray = attrs.Factory(bytearray)
    failure: str | None = None

    def connected(self, seconds: float) -> None:
        pass  # a model list's timing is not recorded

    def head(self, status: int, headers: tuple[tuple[str, str], ...]) -> None:
        self.status = status

    def chunk(self, data: bytes) -> None:
        if len(self.body) + len(data) > MAX_MODEL_LIST:
            self.failure = "the model list is too large"
            return
        self.body += data

    def end(self) -> None:
        pass

    def failed(self, failure: TransportFailure, detail: str) -> None:
        self.failure = f"{failure.value}: {detail}" if detail else failure.value


def local_answer(path: str, failure: LocalFailure) -> ErrorResponse:
    """What a shell answers itself, without the Pool (a body over `MAX_BODY_BYTES`): the
    error in the shape of the endpoint the path names."""
    protocol = ApiProtocol.ANTHROPIC if path.startswith("/v1/messages") else ApiProtocol.OPENAI
    return render_error(protocol, failure)


def loop_clock() -> Callable[[], float]:
    """The running event loop's clock, the one `anyio.current_time()` reads. anyio finds the
    backend anew on every call (a few µs, several times per request); this finds it once."""
    try:
        return asyncio.get_running_loop().time
    except RuntimeError:  # not asyncio: the only other backend anyio runs on
        import trio  # noqa: PLC0415

        return trio.current_time
