"""The dashboard's live socket (`/api/live`) on every shell: updates as requests finish.

Each test runs against the anyio shell (asyncio and trio, wsproto) and the
Quart shell (its websocket), with the real store: a finished request
reaches an open socket within a second, without its id; a private
dashboard's socket needs the key; a page of another origin cannot open it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, RejectConnection, Request, TextMessage

from tests.helpers.loopback import client
from tests.helpers.shells import CHAT, KEY, Provider, plain_answer, serving, two_provider_config

pytestmark = pytest.mark.anyio

PLAIN = plain_answer(2, 1)


class Refused(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


@attrs.define
class Socket:
    stream: anyio.abc.SocketStream
    ws: WSConnection

    async def message(self) -> dict[str, Any]:
        with anyio.fail_after(2):
            while True:
                for event in self.ws.events():
                    if isinstance(event, TextMessage):
                        return dict(json.loads(event.data))
                self.ws.receive_data(await self.stream.receive())


@asynccontextmanager
async def live(port: int, **headers: str) -> AsyncIterator[Socket]:
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        ws = WSConnection(ConnectionType.CLIENT)
        extra = [(name.replace("_", "-"), value) for name, value in headers.items()]
        await stream.send(ws.send(Request(host=f"127.0.0.1:{port}", target="/api/live",
                                          extra_headers=extra)))  # fmt: skip
        with anyio.fail_after(2):
            while True:
                ws.receive_data(await stream.receive())
                for event in ws.events():
                    if isinstance(event, AcceptConnection):
                        yield Socket(stream, ws)
                        return
                    if isinstance(event, RejectConnection):
                        raise Refused(event.status_code)


async def test_a_finished_request_reaches_an_open_socket(shell: str, db: Path) -> None:
    provider = Provider({"one.test": [("head", 200), ("chunk", PLAIN), ("end",)]})
    async with serving(shell, two_provider_config(db), provider) as port:
        async with live(port) as socket:
            assert (await socket.message()) == {"topic": "hello"}
            async with client(port) as c:
                await c.request("/v1/chat/completions", CHAT)
                status, _, _ = await c.response()
            update = await socket.message()
    assert status == 200
    assert update == {
        "topic": "request", "outcome": "completed", "status": 200, "account": "a1",
        "model": "m", "cost_microdollars": update["cost_microdollars"], "tokens": 3,
        "streamed": False,
    }  # fmt: skip
    assert "request_id" not in update  # per-request metadata needs the key


async def test_a_private_dashboards_socket_needs_the_key(shell: str, db: Path) -> None:
    config = two_provider_config(db)
    config = attrs.evolve(config, dashboard=attrs.evolve(config.dashboard, public=False))
    async with serving(shell, config, Provider({})) as port:
        with pytest.raises(Refused) as refused:
            async with live(port):
                pass
        async with live(port, authorization=f"Bearer {KEY}") as socket:
            hello = await socket.message()
    assert refused.value.status == 401
    assert hello == {"topic": "hello"}


async def test_a_page_elsewhere_cannot_open_the_socket(shell: str, db: Path) -> None:
    async with serving(shell, two_provider_config(db), Provider({})) as port:
        with pytest.raises(Refused) as refused:
            async with live(port, origin="https://evil.example"):
                pass
        async with live(port, origin=f"http://127.0.0.1:{port}") as socket:
            hello = await socket.message()
    assert refused.value.status == 400
    assert hello == {"topic": "hello"}
