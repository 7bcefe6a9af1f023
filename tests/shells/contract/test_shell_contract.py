"""One contract for every shell: the same requests give the same answers and the same rows.

Each test runs against the anyio shell on asyncio and on trio and against
the Quart shell on Hypercorn (`tests/helpers/shells.py`), with the real
store and a scripted provider, and asserts concrete bytes and rows: a shell
that answers or stores anything differently fails here.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import TaskStatus

from eggpool.core.config import Config
from eggpool.shells._contract import MAX_BODY_BYTES
from eggpool.shells._runtime import ServeRefused
from tests.helpers.loopback import Client, client
from tests.helpers.shells import (
    KEY,
    Provider,
    answer,
    attempts,
    rows,
    serving,
    two_provider_config,
)

pytestmark = pytest.mark.anyio

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
PLAIN = json.dumps(
    {
        "choices": [{"message": {"content": "hi"}}],
        "usage": {"prompt_tokens": 2, "completion_tokens": 1},
    }
).encode()
SSE = (("content-type", "text/event-stream"),)
EVENT = b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'
USAGE = b'data: {"choices":[],"usage":{"prompt_tokens":2,"completion_tokens":1}}\n\n'
DONE = b"data: [DONE]\n\n"
THROTTLED = (("content-type", "application/json"), ("retry-after", "30"))
RATE_LIMITED = b'{"error":{"message":"slow down","type":"rate_limit_error"}}'


@asynccontextmanager
async def client_and_server(
    shell: str, db: Path, provider: Provider
) -> AsyncIterator[tuple[Client, Callable[[], None]]]:
    """A client of `shell`, and a way to stop the server under it (as SIGTERM would)."""
    async with anyio.create_task_group() as group:
        stop = anyio.Event()

        async def run(*, task_status: TaskStatus[int]) -> None:
            async with serving(shell, two_provider_config(db), provider, grace=0.3) as port:
                task_status.started(port)
                await stop.wait()

        port: int = await group.start(run)
        async with client(port) as c:
            yield c, stop.set


def plain(host: str = "one.test") -> dict[str, list[tuple[object, ...]]]:
    return {host: [("head", 200), ("chunk", PLAIN), ("end",)]}


async def test_happy_path(shell: str, db: Path) -> None:
    async with serving(shell, two_provider_config(db), Provider(plain())) as port:
        async with client(port) as c:
            await c.request("/v1/chat/completions", CHAT)
            got = answer(*await c.response())
    assert got == (
        200,
        {"content-type": "application/json", "x-eggpool-attempts": "1"},
        PLAIN,
    )
    assert rows(db) == [("finalized", "completed", 200, "a1", 1, 0, 2, 1)]


async def test_a_stream_flows_before_the_provider_finishes(shell: str, db: Path) -> None:
    script = {
        "one.test": [
            ("head", 200, SSE),
            ("chunk", EVENT),
            ("gate",),
            ("chunk", USAGE + DONE),
            ("end",),
        ]
    }
    provider = Provider(script)
    async with serving(shell, two_provider_config(db), provider) as port:
        async with client(port) as c:
            await c.request("/v1/chat/completions", {**CHAT, "stream": True})
            with anyio.fail_after(5):
                status, headers, first = await c.head_and_first_data()  # provider held
            provider.gate.set()
            _, _, chunks = await c.response()
    assert first == EVENT
    assert answer(status, headers, [first, *chunks]) == (
        200,
        {"content-type": "text/event-stream", "x-eggpool-attempts": "1"},
        EVENT + DONE,  # the usage chunk the proxy asked for is not the client's
    )
    assert rows(db) == [("finalized", "completed", 200, "a1", 1, 1, 2, 1)]


async def test_a_429_fails_over_invisibly_and_the_account_rests(shell: str, db: Path) -> None:
    script = {
        "one.test": [("head", 429, THROTTLED), ("chunk", RATE_LIMITED), ("end",)],
        **plain("two.test"),
    }
    provider = Provider(script)
    async with serving(shell, two_provider_config(db), provider) as port:
        async with client(port) as c:
            await c.request("/v1/chat/completions", CHAT)
            first = answer(*await c.response())
            await c.request("/v1/chat/completions", CHAT)  # a1 rests: straight to a2
            second = answer(*await c.response())
    assert first == (200, {"content-type": "application/json", "x-eggpool-attempts": "2"}, PLAIN)
    assert second == (200, {"content-type": "application/json", "x-eggpool-attempts": "1"}, PLAIN)
    assert provider.calls == ["one.test", "two.test", "two.test"]
    assert rows(db) == [
        ("finalized", "completed", 200, "a2", 2, 0, 2, 1),
        ("finalized", "completed", 200, "a2", 1, 0, 2, 1),
    ]
    assert attempts(db)[0] == ("a1", 429, "rate_limited", 1)


async def test_all_accounts_throttled_is_429_with_retry_after(shell: str, db: Path) -> None:
    throttled = [("head", 429, THROTTLED), ("chunk", RATE_LIMITED), ("end",)]
    provider = Provider({"one.test": throttled, "two.test": throttled})
    async with serving(shell, two_provider_config(db), provider) as port:
        async with client(port) as c:
            await c.request("/v1/chat/completions", CHAT)
            got = answer(*await c.response())
    assert got == (
        429,
        {"content-type": "application/json", "retry-after": "30"},
        b'{"error":{"message":"Every account serving `m` is rate limited. Please try again'
        b' in 30s.","type":"requests","param":null,"code":"rate_limit_exceeded"}}',
    )
    assert rows(db) == [("finalized", "throttled", 429, None, 2, 0, 0, 0)]


async def test_a_stream_cut_after_its_first_byte_ends_with_an_error_event(
    shell: str, db: Path
) -> None:
    script = {"one.test": [("head", 200, SSE), ("chunk", EVENT), ("fail",)]}
    async with serving(shell, two_provider_config(db), Provider(script)) as port:
        async with client(port) as c:
            await c.request("/v1/chat/completions", {**CHAT, "stream": True})
            status, _, body = answer(*await c.response())
    assert status == 200
    assert body.startswith(EVENT)
    error = json.loads(body[len(EVENT) :].removeprefix(b"data: "))
    assert error["error"]["type"] == "server_error"
    assert [r[:4] for r in rows(db)] == [("finalized", "upstream_error", 502, "a1")]


async def test_a_client_gone_mid_stream_cancels_the_upstream(shell: str, db: Path) -> None:
    script = {"one.test": [("head", 200, SSE), ("chunk", EVENT), ("gate",), ("end",)]}
    provider = Provider(script)
    async with serving(shell, two_provider_config(db), provider) as port:
        async with client(port) as c:
            await c.request("/v1/chat/completions", {**CHAT, "stream": True})
            with anyio.fail_after(5):
                await c.first_data()
        with anyio.fail_after(5):
            while provider.cancelled == 0:
                await anyio.sleep(0.01)
    assert provider.cancelled == 1
    assert [r[:4] for r in rows(db)] == [("finalized", "cancelled", 499, "a1")]


async def test_no_first_byte_in_time_fails_over_then_times_out(shell: str, db: Path) -> None:
    silent = [("gate",), ("head", 200), ("end",)]
    provider = Provider({"one.test": silent, "two.test": silent})
    config = two_provider_config(db, read_timeout=0.5)
    async with serving(shell, config, provider) as port:
        async with client(port) as c:
            await c.request("/v1/chat/completions", CHAT)
            with anyio.fail_after(10):
                status, _, body = answer(*await c.response())
    assert status == 504
    assert json.loads(body)["error"]["code"] == "upstream_timeout"
    assert provider.calls == ["one.test", "two.test"]
    assert [r[1:5] for r in rows(db)] == [("upstream_error", 504, None, 2)]


async def test_shutdown_during_a_stream_interrupts_it_after_the_grace(
    shell: str, db: Path
) -> None:
    script = {"one.test": [("head", 200, SSE), ("chunk", EVENT), ("gate",), ("end",)]}
    async with client_and_server(shell, db, Provider(script)) as (c, stop):
        await c.request("/v1/chat/completions", {**CHAT, "stream": True})
        with anyio.fail_after(5):
            status, _, first = await c.head_and_first_data()
        stop()
        with anyio.fail_after(10):
            _, _, rest = await c.response()
    assert (status, first) == (200, EVENT)
    assert json.loads(b"".join(rest).removeprefix(b"data: "))["error"]["type"] == "server_error"
    assert [r[:4] for r in rows(db)] == [("finalized", "interrupted", 503, "a1")]


async def test_malformed_json_is_400_in_the_protocol_shape(shell: str, db: Path) -> None:
    async with serving(shell, two_provider_config(db), Provider({})) as port:
        async with client(port) as c:
            await c.request("/v1/chat/completions", b"{not json")
            openai = answer(*await c.response())
            await c.request("/v1/messages", b"{not json")
            anthropic = answer(*await c.response())
    assert openai[0] == anthropic[0] == 400
    assert json.loads(openai[2])["error"]["type"] == "invalid_request_error"
    assert json.loads(anthropic[2])["type"] == "error"


async def test_an_oversize_body_is_413_in_the_protocol_shape(shell: str, db: Path) -> None:
    async with serving(shell, two_provider_config(db), Provider({})) as port:
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(
                b"POST /v1/messages HTTP/1.1\r\nhost: x\r\n"
                + f"authorization: Bearer {KEY}\r\n".encode()
                + f"content-length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode()
            )
            reply = b""
            with anyio.fail_after(5):
                while b"}}" not in reply:
                    reply += await stream.receive()
    assert reply.startswith(b"HTTP/1.1 413")
    body = json.loads(reply[reply.index(b"\r\n\r\n") + 4 :])
    assert body["type"] == "error"
    assert body["error"]["type"] == "request_too_large"
    assert rows(db) == []


async def test_a_missing_key_is_401_in_the_protocol_shape(shell: str, db: Path) -> None:
    async with serving(shell, two_provider_config(db), Provider({})) as port:
        async with client(port) as c:
            await c.request("/v1/chat/completions", CHAT, key="")
            got = answer(*await c.response())
    assert got == (
        401,
        {"content-type": "application/json"},
        b'{"error":{"message":"No API key provided. Send the proxy\'s key as \'Authorization:'
        b' Bearer <key>\' or in the \'x-api-key\' header.","type":"invalid_request_error",'
        b'"param":null,"code":"missing_api_key"}}',
    )


async def test_an_unknown_model_is_404(shell: str, db: Path) -> None:
    async with serving(shell, two_provider_config(db), Provider({})) as port:
        async with client(port) as c:
            await c.request("/v1/chat/completions", {**CHAT, "model": "nope"})
            status, _, body = answer(*await c.response())
    assert status == 404
    assert json.loads(body)["error"]["code"] == "model_not_found"


async def test_keep_alive_serves_several_requests_on_one_connection(shell: str, db: Path) -> None:
    async with serving(shell, two_provider_config(db), Provider(plain())) as port:
        async with client(port) as c:
            got = []
            for _ in range(3):
                await c.request("/v1/chat/completions", CHAT)
                got.append(answer(*await c.response()))
    assert [g[0] for g in got] == [200, 200, 200]
    assert [r[1] for r in rows(db)] == ["completed"] * 3


async def refusal(shell: str, config: Config, **where: Any) -> str:
    """Why `shell` would not start (the ServeRefused message, out of any exception group)."""
    try:
        async with serving(shell, config, Provider({}), **where):
            pass
    except ServeRefused as exc:
        return str(exc)
    except BaseExceptionGroup as group:
        match = group.subgroup(ServeRefused)
        if match is None:
            raise
        while isinstance(match, BaseExceptionGroup):
            match = match.exceptions[0]
        return str(match)
    raise AssertionError("it started")


async def test_a_port_in_use_is_refused_with_the_same_message(shell: str, db: Path) -> None:
    async with await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0) as taken:
        port = taken.extra(anyio.abc.SocketAttribute.local_port)
        message = await refusal(shell, two_provider_config(db), port=port)
    assert message == (
        f"127.0.0.1:{port} is already in use: is another EggPool (or another program) "
        "running there? Stop it, or choose another port with --port."
    )
    assert not db.exists()  # refused before the store opened


async def test_an_open_listener_without_a_key_is_refused(shell: str, db: Path) -> None:
    message = await refusal(shell, two_provider_config(db, api_key=None), host="0.0.0.0")
    assert message.startswith("refusing to listen on 0.0.0.0 without a server key")
    assert not db.exists()


async def test_a_client_gone_before_any_answer_cancels_the_upstream(shell: str, db: Path) -> None:
    provider = Provider({"one.test": [("gate",), ("head", 200), ("chunk", PLAIN), ("end",)]})
    async with serving(shell, two_provider_config(db), provider) as port:
        async with client(port) as c:
            await c.request("/v1/chat/completions", CHAT)
            await anyio.sleep(0.05)  # the attempt waits upstream when the client leaves
        with anyio.fail_after(5):
            while provider.cancelled == 0:
                await anyio.sleep(0.01)
    assert [r[:4] for r in rows(db)] == [("finalized", "cancelled", 499, "a1")]


async def test_a_doubled_slash_is_the_cores_404_not_a_redirect(shell: str, db: Path) -> None:
    async with serving(shell, two_provider_config(db), Provider({})) as port:
        async with client(port) as c:
            await c.request("//v1/models", None)
            status, _, body = answer(*await c.response())
    assert status == 404
    assert json.loads(body)["error"]["type"] == "invalid_request_error"


async def test_a_body_that_never_arrives_is_408_in_the_protocol_shape(
    shell: str, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("eggpool.shells.asyncio_shell.server.REQUEST_TIMEOUT", 0.3)
    monkeypatch.setattr("eggpool.shells.quart_app.REQUEST_TIMEOUT", 0.3)
    async with serving(shell, two_provider_config(db), Provider({})) as port:
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(
                b"POST /v1/messages HTTP/1.1\r\nhost: x\r\n"
                + f"authorization: Bearer {KEY}\r\ncontent-length: 100\r\n\r\n".encode()
                + b'{"model":'  # and nothing more
            )
            reply = b""
            with anyio.fail_after(5):
                while b"}}" not in reply:
                    reply += await stream.receive()
    assert reply.startswith(b"HTTP/1.1 408")
    body = json.loads(reply[reply.index(b"\r\n\r\n") + 4 :])
    assert body == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "The request body did not arrive within 0.3s.",
        },
    }
    assert rows(db) == []
