"""The anyio shell's process life: refusing unsafe listeners, startup recovery, clean shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import attrs
import pytest

from eggpool.core.effects import Record, RequestFinalized
from eggpool.core.events import StoredBackoff, StoredCharge, StoredPending
from eggpool.shells._runtime import Runtime, ServeRefused
from eggpool.shells.asyncio_shell.app import Server
from tests.helpers.loopback import CHAT, KEY, PLAIN, Upstream, client, one_account_config

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@attrs.frozen
class Loaded:
    pending: tuple[StoredPending, ...] = ()
    charges: tuple[StoredCharge, ...] = ()
    backoffs: tuple[StoredBackoff, ...] = ()
    catalog: Mapping[str, object] | None = None


class MemoryStore:
    """Records what the server asks of its store, in order."""

    def __init__(self, loaded: Loaded = Loaded()) -> None:
        self.loaded = loaded
        self.calls: list[str] = []
        self.records: list[Record] = []

    def open(self) -> int:
        self.calls.append("open")
        return 1

    def load(self, now_wall: float) -> Loaded:
        self.calls.append("load")
        return self.loaded

    def start(self) -> None:
        self.calls.append("start")

    def persist(self, record: Record) -> None:
        self.records.append(record)

    def close(self, timeout: float = 10.0) -> None:
        self.calls.append("close")

    def finals(self) -> list[RequestFinalized]:
        return [r for r in self.records if isinstance(r, RequestFinalized)]


def make_server(
    store: MemoryStore,
    upstream: Upstream,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    grace: float = 5.0,
    **server: Any,
) -> Server:
    factory: Callable[..., MemoryStore] = lambda config, report: store  # noqa: E731
    return Server(
        one_account_config(api_key=KEY, **server),
        host,
        port,
        store_factory=factory,
        upstream_factory=lambda config: upstream,
        grace=grace,
    )


@asynccontextmanager
async def running(server: Server) -> AsyncIterator[int]:
    async with anyio.create_task_group() as group:
        port: int = await group.start(server.run)
        try:
            yield port
        finally:
            server.stop()


ANSWER = (("head", 200), ("chunk", PLAIN), ("end", None))
FIRST, LAST = b'data: {"choices":[]}\n\n', b"data: [DONE]\n\n"
HELD_STREAM = (("head", 200), ("chunk", FIRST), ("gate", None), ("chunk", LAST), ("end", None))


def test_an_unauthenticated_listener_beyond_loopback_is_refused() -> None:
    server = Server(
        one_account_config(), "0.0.0.0", 8080, store_factory=MemoryStore, upstream_factory=Upstream
    )
    with pytest.raises(ServeRefused, match=r"0\.0\.0\.0 without a server key.*server\.api_key"):
        server.check()


@pytest.mark.parametrize(
    ("host", "server"),
    [
        ("127.0.0.1", {}),
        ("::1", {}),
        ("localhost", {}),
        ("0.0.0.0", {"api_key": KEY}),
        ("0.0.0.0", {"allow_unauthenticated": True}),
    ],
)
def test_loopback_a_key_or_an_explicit_opt_out_may_listen(host: str, server: Any) -> None:
    Server(
        one_account_config(**server),
        host,
        8080,
        store_factory=MemoryStore,
        upstream_factory=Upstream,
    ).check()


async def test_a_request_is_served_and_recorded_then_shutdown_closes_the_store() -> None:
    store = MemoryStore()
    server = make_server(store, Upstream(*ANSWER))
    async with running(server) as port, client(port) as c:
        await c.request("/v1/chat/completions", CHAT)
        status, _, chunks = await c.response()
        assert (status, b"".join(chunks)) == (200, PLAIN)
    assert store.calls == ["open", "load", "start", "close"]
    assert [f.outcome for f in store.finals()] == ["completed"]


async def test_requests_the_previous_run_left_pending_are_finalized_at_startup() -> None:
    left = StoredPending(request_id="old-1", account="p/a", started_at=1.0)
    store = MemoryStore(Loaded(pending=(left,)))
    async with running(make_server(store, Upstream(*ANSWER))):
        pass
    finals = store.finals()
    assert [f.request_id for f in finals] == ["old-1"]
    assert finals[0].outcome == "interrupted"


async def test_a_port_in_use_is_refused_with_a_clear_message_before_the_store_opens() -> None:
    async with await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0) as taken:
        port = taken.extra(anyio.abc.SocketAttribute.local_port)
        store = MemoryStore()
        with pytest.raises(ServeRefused, match=rf"127\.0\.0\.1:{port} is already in use"):
            await make_server(store, Upstream(), port=port).run()
    assert store.calls == []  # the port is tried first: no migration for a server that won't run


async def test_shutdown_lets_a_running_stream_finish() -> None:
    upstream = Upstream(*HELD_STREAM)
    store = MemoryStore()
    server = make_server(store, upstream)
    async with running(server) as port, client(port) as c:
        await c.request("/v1/chat/completions", {**CHAT, "stream": True})
        while not store.records:
            await anyio.sleep(0.01)
        server.stop()
        await anyio.sleep(0.05)
        upstream.gate.set()
        status, _, chunks = await c.response()
        assert (status, b"".join(chunks)) == (200, FIRST + LAST)
    assert [f.outcome for f in store.finals()] == ["completed"]
    assert store.calls[-1] == "close"


async def test_new_requests_during_shutdown_get_503() -> None:
    upstream = Upstream(*HELD_STREAM)
    server = make_server(MemoryStore(), upstream)
    async with running(server) as port:
        async with client(port) as first:
            await first.request("/v1/chat/completions", {**CHAT, "stream": True})
            await anyio.sleep(0.05)
            server.stop()
            await anyio.sleep(0.05)
            async with client(port) as second:
                await second.request("/v1/chat/completions", CHAT)
                status, _, _ = await second.response()
                assert status == 503
            upstream.gate.set()
            await first.response()


async def test_a_stream_that_outlives_the_grace_period_is_interrupted() -> None:
    upstream = Upstream(*HELD_STREAM)
    store = MemoryStore()
    server = make_server(store, upstream, grace=0.2)
    with anyio.fail_after(5):
        async with running(server) as port, client(port) as c:
            await c.request("/v1/chat/completions", {**CHAT, "stream": True})
            await anyio.sleep(0.05)
            server.stop()
            while "close" not in store.calls:
                await anyio.sleep(0.02)
    assert [f.outcome for f in store.finals()] == ["interrupted"]
    assert len(store.finals()) == 1


async def test_shutdown_waits_for_an_answer_still_being_written_out() -> None:
    # The Pool is done with a request once its end is queued for the client; the shell may
    # not have written it yet. drain() returns only once the shell has read the answer out,
    # so closing the connections cannot cut its last bytes off.
    store = MemoryStore()
    runtime = Runtime(
        one_account_config(api_key=KEY),
        lambda config, report: store,
        lambda config: Upstream(*ANSWER),
        grace=0.1,
    )
    drained = anyio.Event()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            driver = await group.start(runtime.run)
            channel = driver.open_client("written-later")  # an ended answer, still queued

            async def drain() -> None:
                await runtime.drain()
                drained.set()

            group.start_soon(drain)
            await anyio.sleep(0.5)  # past the grace (0.1 s); drain gives up only at grace + 2 s
            assert runtime.pool is not None
            assert runtime.pool.in_flight == 0
            assert not drained.is_set()
            channel.close()  # the shell wrote it out
            await drained.wait()
            runtime.stop()
