"""The Quart shell: the same proxy as a Quart app on Hypercorn. No policy here.

Theory of operation. `create_app(config)` returns a Quart app whose one
route takes every path and method: it reads the request (Quart gives the
body, within `MAX_BODY_BYTES` and `REQUEST_TIMEOUT`, the limits the anyio
shell applies too), hands it to the shared `Driver` (`client_request`) and
answers from the request's `ClientChannel`. The first message is the head.
If the whole answer is already queued behind it (a plain answer, an error)
it goes out with a content-length, as the anyio shell does; otherwise the
body is an async generator that only pulls from the channel, so no cancel
scope is ever held across a `yield`, and streams flow with no buffering.
A client that disconnects makes Quart cancel the handler or close the
generator; either way the Driver hears `client_gone`.

The app's lifespan runs the shared `Runtime` (store, Pool, Driver) as a
Quart background task: `before_serving` waits until it is ready, and it
stops when Quart shuts down, after Hypercorn has closed every connection.
`serve` runs the app on Hypercorn for `eggpool serve --shell quart`: it
binds the port itself (a port in use is the same clear error as the anyio
shell's), and on SIGTERM or SIGINT drains the runtime before Hypercorn
stops accepting connections, so streams finish within the grace period.
Quart runs on asyncio only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator

import anyio
from anyio.abc import TaskStatus
from hypercorn.asyncio.run import worker_serve
from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets
from hypercorn.utils import wrap_app
from quart import Quart, Response, request, websocket
from werkzeug.datastructures import Headers
from werkzeug.exceptions import RequestEntityTooLarge, RequestTimeout

from eggpool.core.config import Config
from eggpool.core.effects import RespondBody, RespondEnd, RespondHead
from eggpool.core.errors import LocalFailure
from eggpool.dashboard.api import refuse
from eggpool.shells._contract import (
    KEEPALIVE_TIMEOUT,
    MAX_BODY_BYTES,
    MAX_HEADER_BYTES,
    REQUEST_TIMEOUT,
    ClientChannel,
    Driver,
    local_answer,
)
from eggpool.shells._live import LIVE_PATH, LiveHub
from eggpool.shells._live import accept as accept_live
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

__all__ = ["create_app", "serve"]

_logger = logging.getLogger("eggpool")
_hypercorn_log = logging.getLogger("eggpool.hypercorn")
_hypercorn_log.setLevel(logging.WARNING)  # its "Running on" line repeats our banner
_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class _Response(Response):
    default_mimetype = None  # type: ignore[assignment]  # the Pool's headers say what it is


def _response(body: object, status: int, headers: tuple[tuple[str, str], ...]) -> Response:
    return _Response(body, status=status, headers=Headers(list(headers)))  # type: ignore[arg-type]


class _Started(TaskStatus[Driver]):
    """`Runtime.run`'s report, for a task Quart starts (not an anyio task group)."""

    def __init__(self) -> None:
        self.driver: Driver | None = None
        self.failed: BaseException | None = None
        self.event = anyio.Event()

    def started(self, value: Driver | None = None) -> None:
        self.driver = value
        self.event.set()


def create_app(
    config: Config,
    *,
    store_factory: StoreFactory = default_store,
    upstream_factory: UpstreamFactory = default_upstream,
    grace: float = GRACE,
) -> Quart:
    """The proxy as a Quart app; its lifespan starts and stops the shared runtime."""
    app = Quart("eggpool", static_folder=None)  # the dashboard serves its own files
    app.config.update(
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        BODY_TIMEOUT=REQUEST_TIMEOUT,
        RESPONSE_TIMEOUT=None,  # a stream lasts as long as the provider sends
        PROVIDE_AUTOMATIC_OPTIONS=False,
    )
    app.url_map.merge_slashes = False  # "//v1/models" is the core's to answer, not a redirect
    runtime = Runtime(config, store_factory, upstream_factory, grace)
    app.extensions["eggpool.runtime"] = runtime
    status = _Started()

    async def run_runtime() -> None:
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(_stop_when, app, runtime)
                await runtime.run(task_status=status)
                group.cancel_scope.cancel()
        except BaseException as exc:
            status.failed = exc
            status.event.set()
            raise

    @app.before_serving
    async def start() -> None:
        app.add_background_task(run_runtime)
        await status.event.wait()
        if status.failed is not None:
            raise status.failed

    @app.errorhandler(RequestEntityTooLarge)
    async def too_large(_: RequestEntityTooLarge) -> Response:
        return _local(LocalFailure.body_too_large(MAX_BODY_BYTES))

    @app.errorhandler(RequestTimeout)
    async def too_slow(_: RequestTimeout) -> Response:
        return _local(LocalFailure.request_timeout(REQUEST_TIMEOUT))

    @app.websocket(LIVE_PATH)
    async def live_updates() -> Response | None:
        driver = status.driver
        hub = driver.live if driver is not None else None
        if hub is None:
            return _local(LocalFailure.unknown_route("GET", LIVE_PATH))
        headers = tuple(websocket.headers.items())
        failure = accept_live("GET", headers, hub.config)
        if failure is not None:
            code, head, body = refuse(failure)
            return _response(body, code, head)
        await websocket.accept()
        await _serve_live(hub)
        return None

    @app.route("/", defaults={"path": ""}, methods=_METHODS)
    @app.route("/<path:path>", methods=_METHODS, strict_slashes=False)
    async def proxy(path: str) -> Response:
        driver = status.driver
        if driver is None:
            raise RuntimeError("the runtime is not running")
        return await _answer(driver)

    return app


async def _serve_live(hub: LiveHub) -> None:
    """Send `hello`, then every update, until the browser leaves or the hub lets go."""
    updates = hub.subscribe()
    async with anyio.create_task_group() as group:

        async def drain() -> None:  # read (and ignore) what the browser sends, to see it go
            with contextlib.suppress(Exception):
                while True:
                    await websocket.receive()
            group.cancel_scope.cancel()

        group.start_soon(drain)
        await websocket.send(json.dumps({"topic": "hello"}))
        async with updates:
            async for message in updates:
                await websocket.send(message)
        await websocket.close(1013)  # dropped (stalled) or shutting down: try again later
        group.cancel_scope.cancel()


async def _stop_when(app: Quart, runtime: Runtime) -> None:
    """Stop the runtime once Quart shuts down (every connection is closed by then)."""
    await app.shutdown_event.wait()  # type: ignore[attr-defined]  # an asyncio.Event
    runtime.stop()


def _local(failure: LocalFailure) -> Response:
    answer = local_answer(_path(), failure)
    return _response(answer.body, answer.status, answer.headers)


def _path() -> str:
    scope = request.scope
    raw = scope.get("raw_path") or scope["path"].encode()
    return bytes(raw).decode("ascii", "replace").split("?", 1)[0]


async def _answer(driver: Driver) -> Response:
    scope = request.scope
    headers = tuple(
        (name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]
    )
    body = await request.get_data(cache=False, as_text=False)
    assert isinstance(body, bytes)
    client = scope.get("client") or ("", 0)
    request_id, channel = driver.client_request(
        method=request.method,
        path=_path(),
        headers=headers,
        body=body,
        client=str(client[0]),
        query=bytes(scope.get("query_string", b"")).decode("ascii", "replace"),
    )
    try:
        head = await channel.receive()
    except anyio.EndOfStream:  # the runtime stopped under us
        channel.close()
        raise RuntimeError("the proxy is shutting down") from None
    except BaseException:  # cancelled: the client went away while the Pool was working
        driver.client_gone(request_id)
        channel.close()
        raise
    if not isinstance(head, RespondHead):
        raise RuntimeError(f"an answer must start with its head, got {type(head).__name__}")
    pieces: list[bytes] = []
    while True:  # what is already queued: maybe the whole answer
        try:
            message = channel.receive_nowait()
        except (anyio.WouldBlock, anyio.EndOfStream):
            break
        if isinstance(message, RespondEnd):
            channel.close()
            return _response(b"".join(pieces), head.status, head.headers)
        if isinstance(message, RespondBody):
            pieces.append(message.data)
    return _response(_stream(driver, request_id, channel, pieces), head.status, head.headers)


async def _stream(
    driver: Driver, request_id: str, channel: ClientChannel, first: list[bytes]
) -> AsyncIterator[bytes]:
    """The body of a streamed answer, straight from the channel."""
    ended = False
    try:
        for piece in first:
            yield piece
        async for message in channel:
            if isinstance(message, RespondBody):
                yield message.data
            elif isinstance(message, RespondEnd):
                ended = True
                return
    finally:
        if not ended:  # the client left (Quart closed us) or the runtime stopped
            driver.client_gone(request_id)
        channel.close()
    # The channel ended without the answer's end: the runtime stopped. An error here makes
    # Hypercorn drop the connection, so the client sees a cut answer, not a complete one.
    raise RuntimeError("the answer was cut: the proxy stopped")


async def serve(
    config: Config,
    host: str,
    port: int,
    *,
    store_factory: StoreFactory = default_store,
    upstream_factory: UpstreamFactory = default_upstream,
    grace: float = GRACE,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
    stop: anyio.Event | None = None,
) -> None:
    """Serve `create_app(config)` on Hypercorn until SIGTERM/SIGINT (or `stop` is set)."""
    check_listen(config, host)
    sock = _bind(host, port)
    app = create_app(
        config, store_factory=store_factory, upstream_factory=upstream_factory, grace=grace
    )
    runtime: Runtime = app.extensions["eggpool.runtime"]
    settings = HypercornConfig()
    settings.include_server_header = False
    settings.h11_max_incomplete_size = MAX_HEADER_BYTES
    settings.keep_alive_timeout = KEEPALIVE_TIMEOUT
    settings.graceful_timeout = 5.0
    settings.accesslog = None  # the Pool's access log says more
    settings.errorlog = _hypercorn_log
    stopping = stop or anyio.Event()

    async def shutdown_trigger() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(_on_signal, stopping)
            await stopping.wait()
            group.cancel_scope.cancel()
        await runtime.drain()

    ready = anyio.Event()

    @app.before_serving
    async def serving() -> None:  # runs after `start`: the runtime is up
        ready.set()

    async def run_hypercorn() -> None:
        # hypercorn.asyncio.serve, given our socket (bound above, so a port in use is our
        # clear error); Hypercorn closes it when it stops.
        wrapped = wrap_app(app, settings.wsgi_max_body_size, "asgi")
        await worker_serve(
            wrapped, settings, sockets=Sockets([], [sock], []), shutdown_trigger=shutdown_trigger
        )

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(run_hypercorn)
            await ready.wait()
            task_status.started(sock.getsockname()[1])
    finally:
        sock.close()
    _logger.info("stopped")


async def _on_signal(stopping: anyio.Event) -> None:
    await until_signalled()
    stopping.set()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets that say
    # they are TCP, and accepted sockets inherit it. Without it Hypercorn's separate head
    # and body writes wait ~40 ms for the client's delayed ACK on every keep-alive request.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(socket.SOMAXCONN)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise listen_refused(host, port, exc) from None
    return sock
