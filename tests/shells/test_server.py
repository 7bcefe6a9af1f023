"""The anyio + h11 server on a loopback socket, with the real Pool and a scripted upstream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import anyio
import h11
import pytest
from anyio.abc import SocketStream

from eggpool.core.events import StateLoaded
from eggpool.core.pool import Pool
from eggpool.shells._contract import Driver
from eggpool.shells.asyncio_shell import server
from eggpool.shells.asyncio_shell.server import MAX_BODY_BYTES, MAX_HEADER_BYTES, serve_connection
from tests.helpers.loopback import (
    CHAT,
    KEY,
    PLAIN,
    Records,
    Upstream,
    client,
    one_account_config,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@asynccontextmanager
async def served(upstream: Upstream, store: Records) -> AsyncIterator[int]:
    config = one_account_config(api_key=KEY)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    async with listener, anyio.create_task_group() as group:
        driver = Driver(Pool(config, now=_now()), upstream=upstream, store=store)
        await group.start(driver.run)
        driver.feed(StateLoaded(now=driver.now()))

        async def handle(stream: SocketStream) -> None:
            await serve_connection(stream, driver, peer="127.0.0.1")

        group.start_soon(listener.serve, handle)
        try:
            yield listener.extra(anyio.abc.SocketAttribute.local_port)
        finally:
            group.cancel_scope.cancel()


def _now() -> Any:
    import time

    from eggpool.core.events import Now

    return Now(anyio.current_time(), time.time())


async def test_a_request_is_proxied_and_the_connection_is_reused() -> None:
    store = Records()
    async with served(Upstream(("head", 200), ("chunk", PLAIN), ("end", None)), store) as port:
        async with client(port) as c:
            for _ in range(2):
                await c.request("/v1/chat/completions", CHAT)
                status, headers, chunks = await c.response()
                assert (status, b"".join(chunks)) == (200, PLAIN)
                assert "x-eggpool-request-id" in headers
    assert [f.outcome for f in store.finals()] == ["completed", "completed"]


async def test_a_stream_reaches_the_client_before_the_upstream_finishes() -> None:
    upstream = Upstream(("head", 200), ("chunk", b"data: {}\n\n"), ("gate", None), ("end", None))
    async with served(upstream, Records()) as port, client(port) as c:
        await c.request("/v1/chat/completions", {**CHAT, "stream": True})
        # The first chunk arrives while the upstream is still held at its gate.
        while True:
            event = c.h11.next_event()
            if event is h11.NEED_DATA:
                c.h11.receive_data(await c.stream.receive())
            elif isinstance(event, h11.Data):
                break
        upstream.gate.set()


async def test_an_oversize_body_is_refused_with_413_in_the_protocol_shape() -> None:
    async with served(Upstream(), Records()) as port:
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            head = (
                b"POST /v1/messages HTTP/1.1\r\nhost: x\r\n"
                + f"content-length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode()
            )
            await stream.send(head)
            reply = b""
            with anyio.fail_after(5):
                while b"}}" not in reply:
                    reply += await stream.receive()
    assert reply.startswith(b"HTTP/1.1 413")
    assert b'"type":"error"' in reply


async def test_malformed_http_gets_400_and_the_pool_never_sees_it() -> None:
    store = Records()
    async with served(Upstream(), store) as port:
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(b"THIS IS NOT HTTP\r\n\r\n")
            with anyio.fail_after(5):
                reply = await stream.receive()
    assert reply.startswith(b"HTTP/1.1 400")
    assert store.records == []


async def test_a_wrong_key_is_401_and_healthz_needs_none() -> None:
    async with served(Upstream(), Records()) as port, client(port) as c:
        await c.request("/v1/chat/completions", CHAT, key="wrong-key-000000")
        assert (await c.response())[0] == 401
        await c.request("/v1/healthz", None, key="")
        assert (await c.response())[0] == 200


async def test_a_client_that_hangs_up_mid_stream_aborts_the_upstream() -> None:
    store = Records()
    upstream = Upstream(("head", 200), ("chunk", b"data: {}\n\n"), ("gate", None), ("end", None))
    async with served(upstream, store) as port:
        async with client(port) as c:
            await c.request("/v1/chat/completions", {**CHAT, "stream": True})
            with anyio.fail_after(5):
                await c.first_data()
        with anyio.fail_after(5):
            while not store.finals():
                await anyio.sleep(0.01)
    assert [f.outcome for f in store.finals()] == ["cancelled"]
    assert upstream.cancelled == 1


async def test_an_oversize_chunked_body_without_content_length_is_413_too() -> None:
    store = Records()
    async with served(Upstream(), store) as port:
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(
                b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                b"transfer-encoding: chunked\r\n\r\n"
            )
            piece = b"x" * 65536
            reply = b""
            with anyio.fail_after(10):
                try:
                    for _ in range(MAX_BODY_BYTES // len(piece) + 2):
                        await stream.send(b"%x\r\n%s\r\n" % (len(piece), piece))
                except (anyio.BrokenResourceError, OSError):
                    pass  # the server answered and closed while we were still sending
                while b"}}" not in reply:
                    data = await stream.receive()
                    reply += data
    assert reply.startswith(b"HTTP/1.1 413")
    assert b'"code":"request_too_large"' in reply
    assert store.records == []


async def test_oversize_headers_are_431_and_the_pool_never_sees_them() -> None:
    store = Records()
    async with served(Upstream(), store) as port:
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            huge = b"x-filler: " + b"a" * (MAX_HEADER_BYTES * 2) + b"\r\n"
            with suppress(anyio.BrokenResourceError, OSError):
                await stream.send(b"GET /v1/models HTTP/1.1\r\nhost: x\r\n" + huge + b"\r\n")
            with anyio.fail_after(5):
                reply = await stream.receive()
    assert reply.startswith(b"HTTP/1.1 431")
    assert store.records == []


async def test_pipelined_requests_are_answered_in_order_on_one_connection() -> None:
    store = Records()
    upstream = Upstream(("gate", None), ("head", 200), ("chunk", PLAIN), ("end", None))
    async with served(upstream, store) as port:
        async with client(port) as c:
            body = json.dumps(CHAT).encode()
            one = (
                b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                + f"authorization: Bearer {KEY}\r\ncontent-length: {len(body)}\r\n\r\n".encode()
                + body
            )
            # The second request arrives while the first waits for its upstream.
            await c.stream.send(one)
            await anyio.sleep(0.05)
            await c.stream.send(one)
            await anyio.sleep(0.05)
            upstream.gate.set()
            answers = []
            leftover = b""
            with anyio.fail_after(5):
                for _ in range(2):
                    c.h11 = h11.Connection(h11.CLIENT)  # a parser per answer: h11 won't pipeline
                    c.h11.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
                    c.h11.send(h11.EndOfMessage())
                    if leftover:  # b"" would mean EOF to h11
                        c.h11.receive_data(leftover)
                    status, headers, chunks = await c.response()
                    leftover = c.h11.trailing_data[0]
                    answers.append((status, b"".join(chunks), headers["x-eggpool-request-id"]))
    assert [(status, body) for status, body, _ in answers] == [(200, PLAIN), (200, PLAIN)]
    assert answers[0][2] != answers[1][2]
    assert [f.outcome for f in store.finals()] == ["completed", "completed"]


async def test_a_client_that_hangs_up_before_any_answer_aborts_the_upstream() -> None:
    store = Records()
    upstream = Upstream(("gate", None), ("head", 200), ("chunk", PLAIN), ("end", None))
    async with served(upstream, store) as port:
        async with client(port) as c:
            await c.request("/v1/chat/completions", CHAT)
            await anyio.sleep(0.05)  # the attempt is waiting upstream when the client leaves
        with anyio.fail_after(5):
            while not store.finals():
                await anyio.sleep(0.01)
    assert [f.outcome for f in store.finals()] == ["cancelled"]
    assert upstream.cancelled == 1


async def test_idle_and_slow_clients_are_disconnected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "KEEPALIVE_TIMEOUT", 0.2)
    monkeypatch.setattr(server, "REQUEST_TIMEOUT", 0.3)
    store = Records()
    async with served(Upstream(("head", 200), ("chunk", PLAIN), ("end", None)), store) as port:
        # Idle after one answered request: closed after the keep-alive timeout.
        async with client(port) as c:
            await c.request("/v1/chat/completions", CHAT)
            assert (await c.response())[0] == 200
            with anyio.fail_after(5):
                assert await _until_closed(c.stream) == b""
        # A head that never ends: closed after the request timeout, unanswered.
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
            start = anyio.current_time()
            with anyio.fail_after(5):
                assert await _until_closed(stream) == b""
            assert anyio.current_time() - start >= 0.15
    assert [f.outcome for f in store.finals()] == ["completed"]


async def _until_closed(stream: SocketStream) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    while True:
        try:
            received += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            return received
