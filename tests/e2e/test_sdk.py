"""The official `openai` and `anthropic` SDKs against `eggpool serve` (a subprocess: the anyio
shell on both anyio backends, and the Quart shell) in front of the scripted fake provider
served on loopback.

Each test asserts what a user of the SDK would notice: the models listed, the text and usage
returned, when the first token arrives, which errors (and error shapes) come back, and that a
failing account is invisible. The fake provider's records (`served.exchanges`,
`provider.calls`) say what happened upstream; the proxy's database says what it left behind.

Most tests share one proxy per shell and backend, whose scripts cover their cases by model.
Tests that change an account's state (rate limits, revoked keys) start their own proxy, in
which the preferred account sits in a higher `routing_priority` tier, so it is always tried
first.

A client whose connection is reset (TCP RST) while a response is written once took the
whole proxy down; `test_a_client_resetting_its_connection_mid_stream_...` keeps it from
coming back. Streams that end in an error get a proxy of their own all the same, so one
test's broken stream cannot disturb another's.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import sqlite3
import struct
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import anthropic
import attrs
import openai
import pytest
from openai.types.chat import ChatCompletionChunk

from eggpool.simulated.provider import FakeProvider, Reply
from eggpool.simulated.server import Ending, ServedProvider, served_provider
from tests.helpers.subprocess_server import SERVER_KEY, serving

BACKENDS = ["asyncio", "trio", "quart"]
"""The anyio shell on each anyio backend, and the Quart shell (asyncio only)."""
HI: Any = [{"role": "user", "content": "hi"}]  # both SDKs accept it; their TypedDicts differ
TIMEOUT = 20.0  # seconds any one SDK call may take before the test fails


def key_of(account: str) -> str:
    return f"sk-{account}-0123456789abcdef"


@attrs.frozen
class Upstream:
    """One `[providers.<id>]` table: its protocol, tier and account names."""

    id: str
    protocol: str
    accounts: tuple[str, ...]
    priority: int = 0


def config_text(base_url: str, upstreams: Sequence[Upstream]) -> str:
    text = f"""
[server]
api_key = "{SERVER_KEY}"

[database]
path = "usage.sqlite3"
"""
    for upstream in upstreams:
        text += f"""
[providers.{upstream.id}]
base_url = "{base_url}"
protocols = ["{upstream.protocol}"]
routing_priority = {upstream.priority}
"""
        for account in upstream.accounts:
            text += f"""
[[providers.{upstream.id}.accounts]]
name = "{account}"
api_key = "{key_of(account)}"
"""
    return text


@attrs.frozen
class Pool:
    """A running proxy and the fake provider behind it."""

    url: str  # the proxy's origin
    served: ServedProvider
    db: Path
    process: subprocess.Popen[str]

    @property
    def provider(self) -> FakeProvider:
        return self.served.provider

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def openai(self, key: str = SERVER_KEY) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{self.url}/v1", api_key=key, max_retries=0, timeout=TIMEOUT
        )

    def anthropic(self, key: str = SERVER_KEY) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.url, api_key=key, max_retries=0, timeout=TIMEOUT)

    def chats(self, model: str | None = None) -> list[tuple[str | None, int | None]]:
        """(account, status) of each upstream request for a completion, in arrival order."""
        return [
            (e.account, e.status)
            for e in self.served.exchanges
            if e.method == "POST" and (model is None or json.loads(e.body)["model"] == model)
        ]

    def pending(self) -> int:
        with closing(sqlite3.connect(self.db)) as db:
            (count,) = db.execute(
                "SELECT count(*) FROM requests WHERE status = 'pending'"
            ).fetchone()
        return int(count)


@contextmanager
def running_pool(
    directory: Path,
    backend: str,
    provider: FakeProvider,
    upstreams: Sequence[Upstream],
) -> Iterator[Pool]:
    accounts = [account for upstream in upstreams for account in upstream.accounts]
    with served_provider(provider, {key_of(a): a for a in accounts}) as served:
        config = directory / "config.toml"
        config.write_text(config_text(served.url, upstreams))
        shell = ("--shell", "quart") if backend == "quart" else ("--backend", backend)
        with serving(config, *shell) as (process, url, _):
            yield Pool(url=url, served=served, db=directory / "usage.sqlite3", process=process)


def openai_async(pool: Pool) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{pool.url}/v1", api_key=SERVER_KEY, max_retries=0, timeout=TIMEOUT
    )


def run_async(pool: Pool, use: Callable[[openai.AsyncOpenAI], Awaitable[Any]]) -> Any:
    """`use(client)` with an `AsyncOpenAI` for `pool`, on a fresh event loop."""

    async def main() -> Any:
        async with openai_async(pool) as client:
            return await use(client)

    return asyncio.run(main())


def raw_post(pool: Pool, path: str, body: bytes) -> tuple[int, bytes]:
    """POST bytes no SDK would send; the status and body the proxy answers with."""
    connection = http.client.HTTPConnection("127.0.0.1", pool.port, timeout=TIMEOUT)
    try:
        headers = {"authorization": f"Bearer {SERVER_KEY}", "content-type": "application/json"}
        connection.request("POST", path, body, headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def wait_until(condition: Any, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.02)


# --- the shared proxy -------------------------------------------------------------------------

OPENAI_MODELS = ["gpt-test", "gpt-slow", "gpt-bad", "gpt-stall", "gpt-many"]
ANTHROPIC_MODELS = ["claude-test", "claude-slow", "claude-bad"]
SHARED = [
    Upstream("oai", "openai", ("o1", "o2")),
    Upstream("ant", "anthropic", ("n1", "n2")),
]
SLOW = Reply.ok(chunks=4, latency=0.0, interval=0.25)  # the whole stream takes 1.5 s+
OPENAI_BAD = (
    b'{"error":{"message":"messages: bad role \\"robot\\"","type":"invalid_request_error"}}'
)
ANTHROPIC_BAD = (
    b'{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: too big"}}'
)


def shared_provider() -> FakeProvider:
    scripts: dict[Any, Reply] = {}
    for account in ("o1", "o2"):
        scripts[account, "gpt-slow"] = SLOW
        scripts[account, "gpt-bad"] = Reply.status(400, body=OPENAI_BAD)
        scripts[account, "gpt-stall"] = Reply.stall_after(1, latency=0.0)
        scripts[account, "gpt-many"] = Reply.ok(chunks=5, latency=0.05, interval=0.1)
    for account in ("n1", "n2"):
        scripts[account, "claude-slow"] = SLOW
        scripts[account, "claude-bad"] = Reply.status(400, body=ANTHROPIC_BAD)
    listings = {"o1": OPENAI_MODELS, "o2": OPENAI_MODELS}
    listings |= {"n1": ANTHROPIC_MODELS, "n2": ANTHROPIC_MODELS}
    return FakeProvider(scripts, models=listings)


@pytest.fixture(scope="module", params=BACKENDS)
def shared(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pool]:
    backend: str = request.param
    directory = tmp_path_factory.mktemp(f"shared-{backend}")
    with running_pool(directory, backend, shared_provider(), SHARED) as pool:
        yield pool


def test_openai_sdk_lists_every_served_model(shared: Pool) -> None:
    with shared.openai() as client:
        listed = {model.id for model in client.models.list()}
    expected = {f"{m}/oai" for m in OPENAI_MODELS} | {f"{m}/ant" for m in ANTHROPIC_MODELS}
    assert listed == expected


def test_anthropic_sdk_lists_every_served_model(shared: Pool) -> None:
    with shared.anthropic() as client:
        listed = {model.id for model in client.models.list()}
    assert {f"{m}/ant" for m in ANTHROPIC_MODELS} <= listed


def test_openai_chat_returns_the_text_and_the_provider_usage(shared: Pool) -> None:
    with shared.openai() as client:
        reply = client.chat.completions.create(model="gpt-test", messages=HI)
    call = shared.provider.calls[-1]
    assert (call.model, call.stream) == ("gpt-test", False)
    assert call.usage is not None
    assert reply.choices[0].message.content == "Hello from a"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (
        call.usage.input_tokens,
        call.usage.output_tokens,
    )


def test_openai_stream_returns_the_text_and_the_provider_usage(shared: Pool) -> None:
    async def read(client: openai.AsyncOpenAI) -> list[ChatCompletionChunk]:
        stream = await client.chat.completions.create(
            model="gpt-test", messages=HI, stream=True, stream_options={"include_usage": True}
        )
        return [chunk async for chunk in stream]

    chunks: list[ChatCompletionChunk] = run_async(shared, read)
    call = shared.provider.calls[-1]
    assert (call.model, call.stream) == ("gpt-test", True)
    assert call.usage is not None
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from a"
    usage = chunks[-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        call.usage.input_tokens,
        call.usage.output_tokens,
    )


def test_openai_stream_without_usage_request_has_no_usage_chunk_but_is_counted(
    shared: Pool,
) -> None:
    async def read(client: openai.AsyncOpenAI) -> tuple[str, list[ChatCompletionChunk]]:
        async with client.chat.completions.with_streaming_response.create(
            model="gpt-test", messages=HI, stream=True
        ) as response:
            stream = await response.parse()
            return response.headers["x-eggpool-request-id"], [c async for c in stream]

    request_id, chunks = run_async(shared, read)
    assert [c.usage for c in chunks] == [None] * len(chunks)
    assert all(c.choices for c in chunks)  # not even a usage-only chunk
    call = shared.provider.calls[-1]
    assert call.usage is not None  # the proxy asked the provider for it anyway
    expected = (call.usage.input_tokens, call.usage.output_tokens)

    def counted() -> tuple[int, int] | None:
        with closing(sqlite3.connect(shared.db)) as db:
            return db.execute(  # type: ignore[no-any-return]
                "SELECT input_tokens, output_tokens FROM requests"
                " WHERE request_id = ? AND status = 'finalized'",
                (request_id,),
            ).fetchone()

    wait_until(lambda: counted() == expected, f"the ledger counts {expected} for {request_id}")


def test_a_model_id_copied_from_the_listing_is_served(shared: Pool) -> None:
    with shared.openai() as client:
        listed = sorted(m.id for m in client.models.list() if m.id.startswith("gpt-test/"))
        reply = client.chat.completions.create(model=listed[0], messages=HI)
    assert reply.choices[0].message.content == "Hello from a"
    assert shared.provider.calls[-1].model == "gpt-test"  # the provider gets its own name


def test_anthropic_message_returns_the_text_and_the_provider_usage(shared: Pool) -> None:
    with shared.anthropic() as client:
        message = client.messages.create(model="claude-test", max_tokens=64, messages=HI)
    call = shared.provider.calls[-1]
    assert (call.model, call.stream) == ("claude-test", False)
    assert call.usage is not None
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == "Hello from a"  # type: ignore[union-attr]
    assert (message.usage.input_tokens, message.usage.output_tokens) == (
        call.usage.input_tokens,
        call.usage.output_tokens,
    )


def test_anthropic_stream_returns_the_text_and_the_provider_usage(shared: Pool) -> None:
    with (
        shared.anthropic() as client,
        client.messages.stream(model="claude-test", max_tokens=64, messages=HI) as stream,
    ):
        text = "".join(stream.text_stream)
        message = stream.get_final_message()
    call = shared.provider.calls[-1]
    assert (call.model, call.stream) == ("claude-test", True)
    assert call.usage is not None
    assert text == "Hello from a"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (
        call.usage.input_tokens,
        call.usage.output_tokens,
    )


def test_openai_first_token_arrives_long_before_the_provider_finishes(shared: Pool) -> None:
    async def read(client: openai.AsyncOpenAI) -> tuple[list[float], float]:
        start = time.monotonic()
        stream = await client.chat.completions.create(model="gpt-slow", messages=HI, stream=True)
        arrivals = [
            time.monotonic() - start
            async for chunk in stream
            if chunk.choices and chunk.choices[0].delta.content
        ]
        return arrivals, time.monotonic() - start

    arrivals, total = run_async(shared, read)
    assert len(arrivals) == 4
    # Four deltas 0.25 s apart: a proxy that buffered would deliver them all at the end.
    assert total - arrivals[0] > 0.6, (arrivals, total)


def test_anthropic_first_token_arrives_long_before_the_provider_finishes(shared: Pool) -> None:
    with shared.anthropic() as client:
        start = time.monotonic()
        with client.messages.stream(model="claude-slow", max_tokens=64, messages=HI) as stream:
            arrivals = [time.monotonic() - start for _ in stream.text_stream]
        total = time.monotonic() - start
    assert len(arrivals) == 4
    assert total - arrivals[0] > 0.6, (arrivals, total)


def test_openai_wrong_server_key_is_a_401_in_openai_shape(shared: Pool) -> None:
    calls = len(shared.provider.calls)
    with shared.openai(key="not-the-server-key") as client:
        with pytest.raises(openai.AuthenticationError) as caught:
            client.chat.completions.create(model="gpt-test", messages=HI)
    assert caught.value.status_code == 401
    error = caught.value.response.json()["error"]
    assert error["code"] == "invalid_api_key"
    assert len(shared.provider.calls) == calls  # no upstream request


def test_anthropic_wrong_server_key_is_a_401_in_anthropic_shape(shared: Pool) -> None:
    with shared.anthropic(key="not-the-server-key") as client:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            client.messages.create(model="claude-test", max_tokens=64, messages=HI)
    assert caught.value.status_code == 401
    body = caught.value.response.json()
    assert (body["type"], body["error"]["type"]) == ("error", "authentication_error")


@pytest.mark.parametrize(
    ("path", "shape"),
    [("/v1/chat/completions", "openai"), ("/v1/messages", "anthropic")],
    ids=["openai", "anthropic"],
)
def test_malformed_json_is_a_400_in_the_endpoint_shape(
    shared: Pool, path: str, shape: str
) -> None:
    status, body = raw_post(shared, path, b'{"model": "gpt-test", "messages": [')
    assert status == 400
    error = json.loads(body)
    if shape == "openai":
        assert error["error"]["type"] == "invalid_request_error"
    else:
        assert (error["type"], error["error"]["type"]) == ("error", "invalid_request_error")


def test_openai_body_over_10_mib_is_a_413(shared: Pool) -> None:
    calls = len(shared.provider.calls)
    huge: Any = [{"role": "user", "content": "x" * (10 * 1024 * 1024 + 1)}]
    with shared.openai() as client, pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="gpt-test", messages=huge)
    assert caught.value.status_code == 413
    assert len(shared.provider.calls) == calls


def test_anthropic_body_over_10_mib_is_a_413(shared: Pool) -> None:
    huge: Any = [{"role": "user", "content": "x" * (10 * 1024 * 1024 + 1)}]
    with shared.anthropic() as client, pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(model="claude-test", max_tokens=64, messages=huge)
    assert caught.value.status_code == 413
    assert caught.value.response.json()["type"] == "error"


def test_openai_unknown_model_is_a_404(shared: Pool) -> None:
    calls = len(shared.provider.calls)
    with shared.openai() as client, pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-nobody-serves", messages=HI)
    assert caught.value.response.json()["error"]["code"] == "model_not_found"
    assert len(shared.provider.calls) == calls


def test_anthropic_unknown_model_is_a_404(shared: Pool) -> None:
    with shared.anthropic() as client, pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.create(model="claude-nobody-serves", max_tokens=64, messages=HI)
    assert caught.value.response.json()["type"] == "error"


@pytest.mark.parametrize(
    ("path", "model", "scripted"),
    [
        ("/v1/chat/completions", "gpt-bad", OPENAI_BAD),
        ("/v1/messages", "claude-bad", ANTHROPIC_BAD),
    ],
    ids=["openai", "anthropic"],
)
def test_upstream_400_reaches_the_client_unchanged_without_failover(
    shared: Pool, path: str, model: str, scripted: bytes
) -> None:
    before = len(shared.chats(model))
    request = {"model": model, "max_tokens": 64, "messages": HI}
    status, body = raw_post(shared, path, json.dumps(request).encode())
    assert (status, body) == (400, scripted)
    # Both accounts would answer 400: a second attempt would show here.
    assert len(shared.chats(model)) == before + 1


def test_expect_100_continue_is_answered_before_the_body_is_sent(shared: Pool) -> None:
    # RFC 9110 section 10.1.1: a server that will read the content MUST send 100 (Continue)
    # at once. curl asks for it on bodies over 1 MiB, then waits a second for it.
    body = json.dumps({"model": "gpt-test", "messages": HI}).encode()
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n"
        f"authorization: Bearer {SERVER_KEY}\r\ncontent-type: application/json\r\n"
        f"expect: 100-continue\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", shared.port), timeout=TIMEOUT) as sock:
        sock.sendall(head.encode())
        sock.settimeout(0.5)
        try:
            interim = sock.recv(65536)
        except TimeoutError:
            interim = b""
        sock.settimeout(TIMEOUT)
        sock.sendall(body)  # let the request finish either way, and read it to the end
        rest = b""
        while data := sock.recv(65536):
            rest += data
    assert interim.startswith(b"HTTP/1.1 100"), (interim, rest[:40])


def test_50_concurrent_streams_all_complete(shared: Pool) -> None:
    async def one(client: openai.AsyncOpenAI) -> tuple[str, int | None]:
        stream = await client.chat.completions.create(
            model="gpt-many", messages=HI, stream=True, stream_options={"include_usage": True}
        )
        text, output = "", None
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
            if chunk.usage is not None:
                output = chunk.usage.completion_tokens
        return text, output

    async def all_of_them(client: openai.AsyncOpenAI) -> list[tuple[str, int | None]]:
        return await asyncio.gather(*(one(client) for _ in range(50)))

    start = time.monotonic()
    results = run_async(shared, all_of_them)
    elapsed = time.monotonic() - start
    assert results == [("Hello from a fake provider", 25)] * 50  # five chunks of five tokens each
    assert [status for _, status in shared.chats("gpt-many")] == [200] * 50
    assert elapsed < 15, elapsed  # one after another would take 50 x 0.8 s


def test_client_gone_mid_stream_leaves_nothing_pending_and_closes_upstream(
    shared: Pool,
) -> None:
    before = len(shared.chats("gpt-stall"))
    with shared.openai() as client:
        stream = client.chat.completions.create(model="gpt-stall", messages=HI, stream=True)
        for chunk in stream:  # the provider sends one delta, then nothing
            if chunk.choices and chunk.choices[0].delta.content:
                break
        wait_until(lambda: shared.pending() == 1, "the request is recorded as pending")
        stream.close()  # the user gives up: everything sent was read, so this is a clean FIN
    wait_until(lambda: shared.pending() == 0, "no request left pending")
    (exchange,) = [
        e
        for e in shared.served.exchanges
        if e.method == "POST" and json.loads(e.body)["model"] == "gpt-stall"
    ][before:]
    wait_until(lambda: exchange.ending is not None, "the upstream exchange ends")
    assert exchange.ending is Ending.CLIENT_GONE


# --- proxies of their own ---------------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def open_stream(pool: Pool, model: str) -> socket.socket:
    """A streamed chat completion on a raw socket, returned once its first event arrived."""
    body = json.dumps({"model": model, "stream": True, "messages": HI}).encode()
    sock = socket.create_connection(("127.0.0.1", pool.port), timeout=TIMEOUT)
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        + f"authorization: Bearer {SERVER_KEY}\r\ncontent-length: {len(body)}\r\n\r\n".encode()
        + body
    )
    seen = b""
    while b"data: " not in seen:
        data = sock.recv(65536)
        assert data, f"the stream closed before its first event: {seen!r}"
        seen += data
    return sock


def answer(pool: Pool) -> str:
    """The text of one chat completion, or why there was none."""
    try:
        with pool.openai() as client:
            reply = client.chat.completions.create(model="gpt-test", messages=HI)
    except openai.APIConnectionError as exc:
        return f"no answer: {exc.__cause__!r}"
    return reply.choices[0].message.content or ""


def test_a_client_resetting_its_connection_mid_stream_does_not_take_the_proxy_down(
    tmp_path: Path, backend: str
) -> None:
    provider = FakeProvider(
        {"o1": Reply.ok(), ("o1", "gpt-stall"): Reply.stall_after(1, latency=0.0)},
        models={"o1": ["gpt-test", "gpt-stall"]},
    )
    upstreams = [Upstream("oai", "openai", ("o1",))]
    with running_pool(tmp_path, backend, provider, upstreams) as pool:
        sock = open_stream(pool, "gpt-stall")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # a reset, as from a client killed with data unread
        wait_until(
            lambda: (
                [e.ending for e in pool.served.exchanges if e.method == "POST"]
                == [Ending.CLIENT_GONE]
            ),
            "the upstream stream is closed",
        )
        after = answer(pool)
        exit_code = pool.process.poll()
    assert (exit_code, after) == (None, "Hello from a")


def cut_provider() -> FakeProvider:
    """Every stream breaks off after two chunks, on every account."""
    return FakeProvider(
        {account: Reply.reset_after(2) for account in ("o1", "o2", "n1", "n2")},
        models={
            "o1": ["gpt-test"],
            "o2": ["gpt-test"],
            "n1": ["claude-test"],
            "n2": ["claude-test"],
        },
    )


def test_openai_stream_broken_upstream_mid_way_raises_instead_of_truncating(
    tmp_path: Path, backend: str
) -> None:
    texts: list[str] = []

    def read(stream: openai.Stream[Any]) -> None:
        for chunk in stream:
            texts.extend(choice.delta.content or "" for choice in chunk.choices)

    with running_pool(tmp_path, backend, cut_provider(), SHARED) as pool, pool.openai() as client:
        stream = client.chat.completions.create(model="gpt-test", messages=HI, stream=True)
        with pytest.raises(openai.APIError) as caught:
            read(stream)
        assert len(pool.chats()) == 1  # too late to fail over to the other account
    assert "".join(texts) == "Hello from"  # the two chunks sent before the reset
    assert "broke off" in caught.value.message


def test_anthropic_stream_broken_upstream_mid_way_raises_instead_of_truncating(
    tmp_path: Path, backend: str
) -> None:
    texts: list[str] = []
    with (
        running_pool(tmp_path, backend, cut_provider(), SHARED) as pool,
        pool.anthropic() as client,
    ):
        with (
            pytest.raises(anthropic.APIStatusError) as caught,
            client.messages.stream(model="claude-test", max_tokens=64, messages=HI) as stream,
        ):
            texts.extend(stream.text_stream)
        assert len(pool.chats()) == 1
    assert "".join(texts) == "Hello from"
    assert caught.value.body["error"]["type"] == "api_error"  # type: ignore[index]


# `primary` (tier 1) is always tried first; `secondary` (tier 0) only when it cannot serve.
TIERS = [
    Upstream("primary", "openai", ("p1",), priority=1),
    Upstream("secondary", "openai", ("s1",)),
]
TIER_MODELS = {"p1": ["gpt-test"], "s1": ["gpt-test"]}


def test_429_fails_over_invisibly_and_the_account_then_rests(tmp_path: Path, backend: str) -> None:
    provider = FakeProvider({"p1": Reply.rate_limited(retry_after=30)}, models=TIER_MODELS)
    with running_pool(tmp_path, backend, provider, TIERS) as pool, pool.openai() as client:
        replies = [client.chat.completions.create(model="gpt-test", messages=HI) for _ in range(5)]
        assert [r.choices[0].message.content for r in replies] == ["Hello from a"] * 5
        # One 429, then p1 rests for its Retry-After: nothing more is sent to it.
        assert pool.chats() == [("p1", 429)] + [("s1", 200)] * 5


def test_every_account_throttled_is_a_429_with_retry_after(tmp_path: Path, backend: str) -> None:
    provider = FakeProvider(
        {"p1": Reply.rate_limited(retry_after=30), "s1": Reply.rate_limited(retry_after=20)},
        models=TIER_MODELS,
    )
    with running_pool(tmp_path, backend, provider, TIERS) as pool, pool.openai() as client:
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model="gpt-test", messages=HI)
        assert pool.chats() == [("p1", 429), ("s1", 429)]
    retry_after = caught.value.response.headers.get("retry-after")
    assert retry_after is not None
    assert 10 <= int(retry_after) <= 20  # when the sooner account (s1, 20 s) is back


def test_upstream_401_on_one_account_is_invisible(tmp_path: Path, backend: str) -> None:
    provider = FakeProvider({"p1": Reply.status(401)}, models=TIER_MODELS)
    with running_pool(tmp_path, backend, provider, TIERS) as pool, pool.openai() as client:
        replies = [client.chat.completions.create(model="gpt-test", messages=HI) for _ in range(3)]
        assert [r.choices[0].message.content for r in replies] == ["Hello from a"] * 3
        # p1's key is refused once; it is not offered another request.
        assert pool.chats() == [("p1", 401)] + [("s1", 200)] * 3


def test_anthropic_sdk_sees_failover_on_429_too(tmp_path: Path, backend: str) -> None:
    upstreams = [
        Upstream("primary", "anthropic", ("p1",), priority=1),
        Upstream("secondary", "anthropic", ("s1",)),
    ]
    provider = FakeProvider(
        {"p1": Reply.rate_limited(retry_after=30)},
        models={"p1": ["claude-test"], "s1": ["claude-test"]},
    )
    with running_pool(tmp_path, backend, provider, upstreams) as pool, pool.anthropic() as client:
        message = client.messages.create(model="claude-test", max_tokens=64, messages=HI)
        assert message.content[0].text == "Hello from a"  # type: ignore[union-attr]
        assert pool.chats() == [("p1", 429), ("s1", 200)]
