"""Running the anyio shell: a listener in front of the shared runtime, start to clean exit.

Theory of operation. `Server.run` is the whole life of a process:

1. refuse an unauthenticated listener beyond loopback (`check_listen`);
2. bind the listener (a port already in use is a clear error, which is how
   a second instance on the same port is refused);
3. start the shared `Runtime` (store, Pool, Driver, recovery: see
   `_runtime.py`) and serve connections once it is ready;
4. on SIGTERM or SIGINT (or `stop()`), drain the runtime (the Pool lets
   streams finish for the grace period), close the listener and every
   connection, then stop the runtime, which closes the store last.

Nothing here decides anything about requests; it only starts, connects and
stops the parts.
"""

from __future__ import annotations

import logging

import anyio
import attrs
from anyio.abc import SocketStream, TaskStatus

from eggpool.core.config import Config
from eggpool.shells._contract import Driver
from eggpool.shells._runtime import (
    GRACE,
    Runtime,
    StoreFactory,
    UpstreamFactory,
    check_listen,
    default_store,
    default_upstream,
    listen_refused,
    until_signalled,
)
from eggpool.shells.asyncio_shell.server import serve_connection

__all__ = ["Server"]

_logger = logging.getLogger("eggpool")


@attrs.define
class Server:
    config: Config
    host: str
    port: int
    store_factory: StoreFactory = default_store
    upstream_factory: UpstreamFactory = default_upstream
    grace: float = GRACE
    driver: Driver | None = None
    _stop: anyio.Event | None = None

    def check(self) -> None:
        """Refuse an unauthenticated listener beyond loopback (docs/deployment.md)."""
        check_listen(self.config, self.host)

    async def run(self, *, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve until a signal (or `stop()`); `task_status` gets the bound port."""
        self.check()
        self._stop = anyio.Event()
        listener = await _bind(self.host, self.port)
        runtime = Runtime(self.config, self.store_factory, self.upstream_factory, self.grace)
        async with listener, anyio.create_task_group() as outer:
            try:
                driver = self.driver = await outer.start(runtime.run)
                async with anyio.create_task_group() as group:

                    async def handle(stream: SocketStream) -> None:
                        peer = stream.extra(anyio.abc.SocketAttribute.remote_address, "")
                        try:
                            await serve_connection(
                                stream, driver, peer=str(peer[0]) if peer else ""
                            )
                        except Exception:  # one connection's bug must not stop the server
                            _logger.exception("a client connection failed")

                    group.start_soon(listener.serve, handle)
                    group.start_soon(self._signals)
                    task_status.started(listener.extra(anyio.abc.SocketAttribute.local_port))
                    await self._stop.wait()
                    await runtime.drain()
                    group.cancel_scope.cancel()  # the listener and every connection
            finally:
                runtime.stop()  # then the Driver, the upstream client and the store
        _logger.info("stopped")

    def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    async def _signals(self) -> None:
        await until_signalled()
        self.stop()


async def _bind(host: str, port: int) -> anyio.abc.Listener[anyio.abc.SocketStream]:
    try:
        return await anyio.create_tcp_listener(local_host=host, local_port=port, reuse_port=False)
    except OSError as exc:
        raise listen_refused(host, port, exc) from None
