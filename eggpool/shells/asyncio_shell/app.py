"""Running the anyio shell: store, Pool, Driver and listener, from startup to a clean exit.

Theory of operation. `Server.run` is the whole life of a process:

1. refuse to start an unauthenticated listener beyond loopback (unless the
   config says `server.allow_unauthenticated = true`), and say why;
2. open the store in a worker thread (migrations included) and load what
   recovery needs, then start its writer thread;
3. bind the listener (a port already in use is a clear error, which is how
   a second instance on the same port is refused);
4. start the Driver, hand the Pool its `StateLoaded` (recovery happens
   there, in the core), and serve connections;
5. on SIGTERM or SIGINT, feed `ShutdownRequested`: the Pool refuses new
   requests and lets streams finish for the grace period; once nothing is
   in flight (or the grace is over) the listener stops and the store is
   flushed and closed, shielded from a second signal.

Nothing here decides anything about requests; it only starts, connects and
stops the parts.
"""

from __future__ import annotations

import errno
import logging
import signal
import time
from collections.abc import Callable, Mapping
from typing import Protocol

import anyio
import attrs
from anyio.abc import SocketStream, TaskStatus

from eggpool.core.config import Config, is_loopback
from eggpool.core.effects import Record
from eggpool.core.events import (
    Now,
    ShutdownRequested,
    StateLoaded,
    StoredBackoff,
    StoredCharge,
    StoredPending,
    TimerFired,
)
from eggpool.core.pool import REFRESH_TIMER, Pool
from eggpool.shells._contract import Driver, UpstreamLike, close_store
from eggpool.shells._store import Store
from eggpool.shells._upstream import UpstreamClient
from eggpool.shells.asyncio_shell.server import serve_connection

__all__ = [
    "GRACE",
    "Loaded",
    "ServeRefused",
    "Server",
    "StoreForServer",
    "default_store",
    "default_upstream",
    "refresh_models",
]

GRACE = 10.0
"""Seconds streams may run after a shutdown signal before they are interrupted."""

_logger = logging.getLogger("eggpool")


class ServeRefused(Exception):
    """The server will not start; the message says why and what to do."""


class Loaded(Protocol):
    """What the store loaded at startup (`_store.LoadedState`)."""

    @property
    def pending(self) -> tuple[StoredPending, ...]: ...
    @property
    def charges(self) -> tuple[StoredCharge, ...]: ...
    @property
    def backoffs(self) -> tuple[StoredBackoff, ...]: ...
    @property
    def catalog(self) -> Mapping[str, object] | None: ...


class StoreForServer(Protocol):
    def open(self) -> int: ...
    def load(self, now_wall: float) -> Loaded: ...
    def start(self) -> None: ...
    def persist(self, record: Record) -> None: ...
    def close(self, timeout: float = 10.0) -> None: ...


StoreFactory = Callable[[Config, Callable[[str, str], None]], StoreForServer]
UpstreamFactory = Callable[[Config], UpstreamLike]


@attrs.define
class Server:
    config: Config
    host: str
    port: int
    store_factory: StoreFactory
    upstream_factory: UpstreamFactory
    grace: float = GRACE
    driver: Driver | None = None
    _stop: anyio.Event | None = None

    def check(self) -> None:
        """Refuse an unauthenticated listener beyond loopback (docs/deployment.md)."""
        server = self.config.server
        if (
            server.api_key is None
            and not server.allow_unauthenticated
            and not is_loopback(self.host)
        ):
            raise ServeRefused(
                f"refusing to listen on {self.host} without a server key: anyone on the network "
                f"could spend your accounts. Set server.api_key (or ${server.api_key_env}), "
                "listen on 127.0.0.1, or set server.allow_unauthenticated = true."
            )

    async def run(self, *, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve until a signal (or `stop()`); `task_status` gets the bound port."""
        self.check()
        self._stop = anyio.Event()
        config = self.config
        pool = Pool(config, now=_now())
        driver = Driver(pool, upstream=self.upstream_factory(config))
        self.driver = driver
        store = self.store_factory(config, driver.persist_failed)
        await anyio.to_thread.run_sync(store.open)
        loaded = await anyio.to_thread.run_sync(store.load, time.time())
        store.start()
        driver.store = store
        try:
            listener = await _bind(self.host, self.port)
        except BaseException:
            await close_store(store)
            raise
        try:
            async with listener, anyio.create_task_group() as group:
                await group.start(driver.run)
                driver.feed(_state_loaded(driver, loaded))

                async def handle(stream: SocketStream) -> None:
                    peer = stream.extra(anyio.abc.SocketAttribute.remote_address, "")
                    try:
                        await serve_connection(stream, driver, peer=str(peer[0]) if peer else "")
                    except Exception:  # one connection's bug must not stop the server
                        _logger.exception("a client connection failed")

                group.start_soon(listener.serve, handle)
                group.start_soon(self._signals)
                task_status.started(listener.extra(anyio.abc.SocketAttribute.local_port))
                await self._stop.wait()
                _logger.info("shutting down: waiting up to %ss for streams to finish", self.grace)
                driver.feed(ShutdownRequested(now=driver.now(), grace=self.grace))
                with anyio.move_on_after(self.grace + 2.0):
                    while pool.in_flight:
                        await anyio.sleep(0.05)
                # Everything stops before the store closes: a model listing that lands now
                # must find the loop gone, not a closed store.
                group.cancel_scope.cancel()
        finally:
            await _aclose(driver.upstream)
            await close_store(store)
        _logger.info("stopped")

    def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    async def _signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                self.stop()
                return


def default_store(config: Config, report: Callable[[str, str], None]) -> StoreForServer:
    """The SQLite store of `[database]` (docs/storage.md)."""
    return Store(config, report=report)


def default_upstream(config: Config) -> UpstreamLike:
    """One client for every provider: the connection cap is the providers' caps summed; the
    idle limit, which the client applies per destination, is the largest provider's."""
    settings = [provider.http for provider in config.providers.values()]
    return UpstreamClient(
        max_connections=sum(s.max_connections for s in settings) or 1,
        max_keepalive=max((s.max_keepalive for s in settings), default=0),
        keepalive_expiry=max((float(s.keepalive_timeout_s) for s in settings), default=30.0),
    )


async def refresh_models(
    config: Config,
    store_factory: StoreFactory = default_store,
    upstream_factory: UpstreamFactory = default_upstream,
    *,
    timeout: float = 60.0,
) -> Pool:
    """List every enabled account's models now, store the catalog, and return the Pool
    whose catalog holds the result (`eggpool models refresh`)."""
    pool = Pool(config, now=_now())
    driver = Driver(pool, upstream=upstream_factory(config))
    store = store_factory(config, driver.persist_failed)
    await anyio.to_thread.run_sync(store.open)
    loaded = await anyio.to_thread.run_sync(store.load, time.time())
    store.start()
    driver.store = store
    try:
        async with anyio.create_task_group() as group:
            await group.start(driver.run)
            driver.feed(_state_loaded(driver, loaded))
            if not pool.refreshing:  # startup_refresh is off: ask for one explicitly
                driver.feed(TimerFired(now=driver.now(), key=REFRESH_TIMER))
            with anyio.move_on_after(timeout):
                while pool.refreshing:
                    await anyio.sleep(0.02)
            group.cancel_scope.cancel()
    finally:
        await _aclose(driver.upstream)
        await close_store(store)
    return pool


async def _aclose(upstream: UpstreamLike) -> None:
    """Close the upstream client's idle connections, if it keeps any (test fakes do not)."""
    aclose = getattr(upstream, "aclose", None)
    if aclose is not None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await aclose()


async def _bind(host: str, port: int) -> anyio.abc.Listener[anyio.abc.SocketStream]:
    try:
        return await anyio.create_tcp_listener(local_host=host, local_port=port, reuse_port=False)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ServeRefused(
                f"{host}:{port} is already in use: is another EggPool (or another program) "
                "running there? Stop it, or choose another port with --port."
            ) from None
        raise ServeRefused(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def _state_loaded(driver: Driver, loaded: Loaded) -> StateLoaded:
    return StateLoaded(
        now=driver.now(),
        pending=loaded.pending,
        charges=loaded.charges,
        backoffs=loaded.backoffs,
        catalog=loaded.catalog,
    )


def _now() -> Now:
    return Now(anyio.current_time(), time.time())
