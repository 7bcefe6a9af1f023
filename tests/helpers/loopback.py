"""A loopback HTTP/1.1 client and a scripted upstream, for tests of the shells' servers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import h11
from anyio.abc import SocketStream

from eggpool.core.config import Config, parse_config
from eggpool.core.effects import Record, RequestFinalized
from eggpool.core.retry import TransportFailure
from eggpool.shells._contract import Receiver, UpstreamRequest

KEY = "server-key-0123456789"
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def one_account_config(**server: Any) -> Config:
    """Provider `p` with the static model `m` and one account `a`; `[server]` from `server`."""
    return parse_config(
        {
            "server": server,
            "providers": {
                "p": {
                    "base_url": "https://api.example.test/v1",
                    "models_endpoint": {"method": "DISABLED"},
                    "static_models": [{"id": "m"}],
                    "accounts": [{"name": "a", "api_key": "sk-test-0123456789abcdef"}],
                }
            },
        },
        {},
    )


PLAIN = json.dumps(
    {"choices": [{"message": {"content": "hi"}}], "usage": {"prompt_tokens": 2}}
).encode()


class Upstream:
    """A provider that answers every attempt from a list of (kind, value) steps."""

    def __init__(self, *steps: tuple[str, Any]) -> None:
        self.steps = steps
        self.gate = anyio.Event()
        self.cancelled = 0

    async def send(self, request: UpstreamRequest, receiver: Receiver) -> None:
        try:
            for kind, value in self.steps:
                await anyio.sleep(0.001)
                if kind == "head":
                    receiver.head(value, (("content-type", "application/json"),))
                elif kind == "chunk":
                    receiver.chunk(value)
                elif kind == "gate":
                    await self.gate.wait()
                elif kind == "end":
                    receiver.end()
                elif kind == "fail":
                    receiver.failed(TransportFailure.RESET, "x")
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            raise


class Records:
    def __init__(self) -> None:
        self.records: list[Record] = []

    def persist(self, record: Record) -> None:
        self.records.append(record)

    def finals(self) -> list[RequestFinalized]:
        return [r for r in self.records if isinstance(r, RequestFinalized)]


class Client:
    def __init__(self, stream: SocketStream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT)

    async def request(
        self, path: str, body: dict[str, Any] | bytes | None = None, *, key: str = KEY
    ) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body or {}).encode()
        headers = [("host", "x"), ("content-length", str(len(data)))]
        if key:
            headers.append(("authorization", f"Bearer {key}"))
        method = "GET" if body is None else "POST"
        out = self.h11.send(h11.Request(method=method, target=path, headers=headers)) or b""
        out += self.h11.send(h11.Data(data=data)) or b""
        out += self.h11.send(h11.EndOfMessage()) or b""
        await self.stream.send(out)

    async def raw_get(self, path: str, headers: tuple[tuple[str, str], ...]) -> None:
        """A GET with exactly these headers (and `host`): no bearer key added."""
        request = h11.Request(method="GET", target=path, headers=[("host", "x"), *headers])
        await self.stream.send(
            (self.h11.send(request) or b"") + (self.h11.send(h11.EndOfMessage()) or b"")
        )

    async def first_data(self) -> bytes:
        """Read until the response's first body bytes arrive (a stream's first event)."""
        return (await self.head_and_first_data())[2]

    async def head_and_first_data(self) -> tuple[int, dict[str, str], bytes]:
        """The response head and its first body bytes; `response()` reads the rest."""
        status, headers = 0, {}
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                self.h11.receive_data(await self.stream.receive())
            elif isinstance(event, h11.Response):
                status = event.status_code
                headers = {k.decode(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                return status, headers, bytes(event.data)

    async def response(self) -> tuple[int, dict[str, str], list[bytes]]:
        status, headers, chunks = 0, {}, []
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                self.h11.receive_data(await self.stream.receive())
            elif isinstance(event, h11.Response):
                status = event.status_code
                headers = {k.decode(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                self.h11.start_next_cycle()
                return status, headers, chunks


@asynccontextmanager
async def client(port: int) -> AsyncIterator[Client]:
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        yield Client(stream)
