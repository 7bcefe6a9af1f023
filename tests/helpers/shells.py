"""Every shell served in-process the same way, for the contract suite (tests/shells/contract/).

`SHELLS` names the variants: the anyio shell on asyncio and on trio, and the
Quart shell on Hypercorn. `serving(shell, config, provider)` runs one on a
free loopback port with the real SQLite store and a scripted `Provider`
instead of the network, and stops it (gracefully, as a signal would) when
the block ends. `answer()` is what a client saw with what differs by nature
between shells taken out (dates, server names, framing, request ids);
`rows()` is what the store kept, ids and times left out.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import attrs

from eggpool.core.config import Config, parse_config
from eggpool.core.retry import TransportFailure
from eggpool.shells._contract import Receiver, UpstreamRequest
from eggpool.shells._runtime import default_store
from eggpool.shells.asyncio_shell.app import Server

SHELLS = ("anyio-asyncio", "anyio-trio", "quart")
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def plain_answer(prompt_tokens: int = 2, completion_tokens: int = 1) -> bytes:
    """A provider's whole JSON answer saying "hi", with its usage."""
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
    return json.dumps({"choices": [{"message": {"content": "hi"}}], "usage": usage}).encode()


KEY = "server-key-0123456789"
# Headers that differ between HTTP servers by nature, not by what the proxy decided.
_TRANSPORT = frozenset(
    {"date", "server", "content-length", "transfer-encoding", "connection", "keep-alive"}
)


def backend_of(shell: str) -> str:
    return "trio" if shell == "anyio-trio" else "asyncio"


def two_provider_config(database: Path, *, read_timeout: float = 30.0, **server: Any) -> Config:
    """Model `m` from provider `one` (account `a1`, preferred tier) and `two` (account `a2`),
    each with `read_timeout_s = read_timeout`; `[server]` keys from `server` (None leaves a
    key out)."""
    providers = {
        name: {
            "base_url": f"https://{name}.test/v1",
            "routing_priority": priority,
            "read_timeout_s": read_timeout,
            "models_endpoint": {"method": "DISABLED"},
            "static_models": [{"id": "m"}],
            "accounts": [{"name": account, "api_key": f"sk-{account}-0123456789abcdef"}],
        }
        for name, account, priority in (("one", "a1", 1), ("two", "a2", 0))
    }
    settings = {"api_key": KEY, "access_log": False, **server}
    settings = {key: value for key, value in settings.items() if value is not None}
    return parse_config(
        {"server": settings, "database": {"path": str(database)}, "providers": providers}, {}
    )


Step = tuple[Any, ...]


@attrs.define
class Provider:
    """Answers each attempt from the steps scripted for its host (`one.test`, `two.test`):
    ("head", status, headers), ("chunk", bytes), ("gate",), ("end",), ("fail",)."""

    scripts: dict[str, list[Step]]
    gate: anyio.Event = attrs.Factory(anyio.Event)
    calls: list[str] = attrs.Factory(list)
    cancelled: int = 0

    async def send(self, request: UpstreamRequest, receiver: Receiver) -> None:
        host = request.url.split("/")[2]
        self.calls.append(host)
        try:
            for step in self.scripts[host]:
                await anyio.sleep(0.001)
                kind = step[0]
                if kind == "head":
                    receiver.head(step[1], step[2] if len(step) > 2 else _JSON)
                elif kind == "chunk":
                    receiver.chunk(step[1])
                elif kind == "gate":
                    await self.gate.wait()
                elif kind == "end":
                    receiver.end()
                elif kind == "fail":
                    receiver.failed(TransportFailure.RESET, "reset by the test")
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            raise


_JSON = (("content-type", "application/json"),)


@asynccontextmanager
async def serving(
    shell: str,
    config: Config,
    provider: Provider,
    *,
    grace: float = 5.0,
    host: str = "127.0.0.1",
    port: int = 0,
) -> AsyncIterator[int]:
    """`shell` serving `config` on a free loopback port; yields the port. Leaving the block
    shuts it down as SIGTERM would (drain for `grace`, then stop) and closes the store."""
    upstream_factory: Callable[[Config], Provider] = lambda _: provider  # noqa: E731
    async with anyio.create_task_group() as group:
        if shell == "quart":
            from eggpool.shells import quart_app

            stop = anyio.Event()
            serve = partial(
                quart_app.serve,
                config,
                host,
                port,
                store_factory=default_store,
                upstream_factory=upstream_factory,
                grace=grace,
                stop=stop,
            )
            bound: int = await group.start(serve)
            stopper = stop.set
        else:
            server = Server(config, host, port, default_store, upstream_factory, grace)
            bound = await group.start(server.run)
            stopper = server.stop
        try:
            yield bound
        finally:
            stopper()


def answer(
    status: int, headers: dict[str, str], chunks: list[bytes]
) -> tuple[int, dict[str, str], bytes]:
    """What the client saw, without what differs between HTTP servers by nature."""
    kept = {
        name.lower(): value
        for name, value in headers.items()
        if name.lower() not in _TRANSPORT and name.lower() != "x-eggpool-request-id"
    }
    return status, kept, b"".join(chunks)


def rows(database: Path) -> list[tuple[object, ...]]:
    """The stored requests, oldest first: what a shell must store the same way."""
    with sqlite3.connect(database) as conn:
        return conn.execute(
            "SELECT status, outcome, http_status, account, attempts, streamed,"
            " input_tokens, output_tokens FROM requests ORDER BY started_at"
        ).fetchall()


def attempts(database: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(database) as conn:
        return conn.execute(
            "SELECT account, http_status, category, failover FROM attempts ORDER BY ended_at"
        ).fetchall()
