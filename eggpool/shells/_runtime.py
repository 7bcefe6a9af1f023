"""What every shell runs besides its listener: store, Pool and Driver, from start to clean stop.

Theory of operation. A shell (the anyio server, the Quart app) owns how
clients connect; everything else about a serving process is here, so the
shells share it instead of copying it:

1. `check_listen` refuses an unauthenticated listener beyond loopback
   (unless `server.allow_unauthenticated = true`), with the reason;
2. `Runtime.run` opens the store in a worker thread (migrations included),
   loads what recovery needs, starts its writer thread, starts the Driver
   and hands the Pool its `StateLoaded` (recovery happens there, in the
   core); with `[dashboard].enabled`, the Driver also gets the stats API's
   service, reading the store on a connection of its own, and the live
   updates' hub, fed by the Pool's `Publish` effects;
   `task_status.started(driver)` then tells the shell to serve;
3. `Runtime.drain`, on a shutdown signal, feeds `ShutdownRequested`: the
   Pool refuses new requests and lets streams finish for the grace period;
   it returns once nothing is in flight (or the grace is over);
4. `Runtime.stop`, once the shell's connections are gone, ends `run`: the
   Driver stops first (a model listing that lands now must find the loop
   gone, not a closed store), then the upstream client's idle connections
   and the store close, shielded from a second signal.

Nothing here decides anything about requests; it starts, connects and stops
the parts. `refresh_models` is the same start for `eggpool models refresh`,
which lists every account once and stops.
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
from anyio.abc import TaskStatus

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
from eggpool.shells._contract import Driver, UpstreamLike, close_store, loop_clock
from eggpool.shells._dashboard import StatsService
from eggpool.shells._live import LiveHub
from eggpool.shells._store import Store
from eggpool.shells._upstream import UpstreamClient

__all__ = [
    "GRACE",
    "Loaded",
    "Runtime",
    "ServeRefused",
    "StoreFactory",
    "StoreForServer",
    "UpstreamFactory",
    "check_listen",
    "default_store",
    "default_upstream",
    "listen_refused",
    "refresh_models",
    "until_signalled",
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


def check_listen(config: Config, host: str) -> None:
    """Refuse an unauthenticated listener beyond loopback (docs/deployment.md)."""
    server = config.server
    if server.api_key is None and not server.allow_unauthenticated and not is_loopback(host):
        raise ServeRefused(
            f"refusing to listen on {host} without a server key: anyone on the network "
            f"could spend your accounts. Set server.api_key (or ${server.api_key_env}), "
            "listen on 127.0.0.1, or set server.allow_unauthenticated = true."
        )


def listen_refused(host: str, port: int, error: OSError) -> ServeRefused:
    """Why a shell could not bind its port, said the same way by every shell."""
    if error.errno == errno.EADDRINUSE:
        return ServeRefused(
            f"{host}:{port} is already in use: is another EggPool (or another program) "
            "running there? Stop it, or choose another port with --port."
        )
    return ServeRefused(f"cannot listen on {host}:{port}: {error.strerror}")


def default_store(config: Config, report: Callable[[str, str], None]) -> StoreForServer:
    """The SQLite store of `[database]` (docs/storage.md)."""
    return Store(config, report=report)


def default_upstream(config: Config) -> UpstreamLike:
    """One client for every provider: each provider's connections stay within its own
    `max_connections` (a group of the client), the whole within their sum; the idle limit,
    which the client applies per destination, is the largest provider's."""
    settings = [provider.http for provider in config.providers.values()]
    return UpstreamClient(
        max_connections=sum(s.max_connections for s in settings) or 1,
        max_keepalive=max((s.max_keepalive for s in settings), default=0),
        keepalive_expiry=max((float(s.keepalive_timeout_s) for s in settings), default=30.0),
        group_limits={
            provider_id: provider.http.max_connections
            for provider_id, provider in config.providers.items()
        },
    )


@attrs.define
class Runtime:
    """The Pool, its Driver and the store of one serving process (see the module docs)."""

    config: Config
    store_factory: StoreFactory = default_store
    upstream_factory: UpstreamFactory = default_upstream
    grace: float = GRACE
    pool: Pool | None = None
    driver: Driver | None = None
    _stop: anyio.Event | None = None
    _stopped: bool = False

    async def run(self, *, task_status: TaskStatus[Driver] = anyio.TASK_STATUS_IGNORED) -> None:
        """Start everything, report the Driver to `task_status`, run until `stop()`."""
        self._stop = anyio.Event()
        if self._stopped:  # stop() came before run() got this far
            self._stop.set()
        config = self.config
        pool = self.pool = Pool(config, now=_now())
        live = LiveHub(config) if config.dashboard.enabled else None
        driver = self.driver = Driver(
            pool,
            upstream=self.upstream_factory(config),
            on_publish=live.publish if live is not None else None,
        )
        driver.live = live
        store = self.store_factory(config, driver.persist_failed)
        try:
            await anyio.to_thread.run_sync(store.open)
            loaded = await anyio.to_thread.run_sync(store.load, time.time())
            store.start()
            driver.store = store
            driver.stats = _stats_service(config, store, pool, driver)
            async with anyio.create_task_group() as group:
                await group.start(driver.run)
                driver.feed(_state_loaded(driver, loaded))
                task_status.started(driver)
                await self._stop.wait()
                group.cancel_scope.cancel()
        finally:
            if live is not None:
                live.close()
            await _aclose(driver.upstream)
            if driver.stats is not None:
                await anyio.to_thread.run_sync(driver.stats.close)
            await close_store(store)

    async def drain(self) -> None:
        """Refuse new requests, let streams finish for the grace period, return once nothing
        is in flight and every answer is written out (or the grace is over)."""
        pool, driver = self.pool, self.driver
        if pool is None or driver is None:
            return
        _logger.info("shutting down: waiting up to %ss for streams to finish", self.grace)
        driver.feed(ShutdownRequested(now=driver.now(), grace=self.grace))
        with anyio.move_on_after(self.grace + 2.0):
            while pool.in_flight or driver.answers_open:
                await anyio.sleep(0.05)

    def stop(self) -> None:
        """End `run`: the Driver stops, then the upstream client and the store close. Call it
        once the shell's own connections are gone."""
        self._stopped = True
        if self._stop is not None:
            self._stop.set()


def _stats_service(
    config: Config, store: object, pool: Pool, driver: Driver
) -> StatsService | None:
    """The stats API's service, when the dashboard is on and the store can be read."""
    if not config.dashboard.enabled or not isinstance(store, Store):
        return None
    return StatsService(
        config,
        connect=store.read_connection,
        database_file=store.file,
        loop_state=lambda: {
            "requests_in_flight": pool.in_flight,
            "reservations": pool.reservations(time.time()),
            **driver.loop_state(),
        },
        prices=pool.price_provenance,
    )


async def until_signalled() -> None:
    """Return at the first SIGTERM or SIGINT: every shell's cue to shut down gracefully."""
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            return


async def refresh_models(
    config: Config,
    store_factory: StoreFactory = default_store,
    upstream_factory: UpstreamFactory = default_upstream,
    *,
    timeout: float = 60.0,
) -> Pool:
    """List every enabled account's models now, store the catalog, and return the Pool
    whose catalog holds the result (`eggpool models refresh`)."""
    runtime = Runtime(config, store_factory, upstream_factory)
    async with anyio.create_task_group() as group:
        driver: Driver = await group.start(runtime.run)
        pool = runtime.pool
        assert pool is not None  # made before run() reports the Driver
        if not pool.refreshing:  # startup_refresh is off: ask for one explicitly
            driver.feed(TimerFired(now=driver.now(), key=REFRESH_TIMER))
        with anyio.move_on_after(timeout):
            while pool.refreshing:
                await anyio.sleep(0.02)
        runtime.stop()
    assert runtime.pool is not None
    return runtime.pool


async def _aclose(upstream: UpstreamLike) -> None:
    """Close the upstream client's idle connections, if it keeps any (test fakes do not)."""
    aclose = getattr(upstream, "aclose", None)
    if aclose is not None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await aclose()


def _state_loaded(driver: Driver, loaded: Loaded) -> StateLoaded:
    return StateLoaded(
        now=driver.now(),
        pending=loaded.pending,
        charges=loaded.charges,
        backoffs=loaded.backoffs,
        catalog=loaded.catalog,
    )


def _now() -> Now:
    return Now(loop_clock()(), time.time())
