"""The upstream client against real loopback servers, on asyncio and on trio.

Every test owns its servers (`upstream_servers.py`), so each failure mode
is produced by a peer that really behaves that way on a socket: a reset is
a TCP RST, a stall is a server that does not write, a proxy is a proxy.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import attrs
import pytest
import trustme

from eggpool.core.config import ProxyUrl
from eggpool.core.retry import TransportFailure
from eggpool.core.secret import Secret
from eggpool.shells._upstream import UpstreamClient, UpstreamRequest
from tests.shells.upstream_servers import (
    CHUNKED_END,
    CHUNKED_HEAD,
    Peer,
    chunk,
    closed_port,
    connect_proxy,
    keepalive,
    response,
    serve,
    silent_server,
    socks5_proxy,
)

pytestmark = pytest.mark.anyio

F = TransportFailure
API_KEY = "sk-test-0123456789abcdef"
PROXY_PASSWORD = "pr0xy-pa55word"
CREDENTIALS = ("eve", PROXY_PASSWORD)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture(scope="module")
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@attrs.define(eq=False)
class Recorder:
    """A Receiver that keeps everything, and can act when a chunk arrives."""

    events: list[tuple[object, ...]] = attrs.Factory(list)
    chunks: list[bytes] = attrs.Factory(list)
    on_chunk: Callable[[bytes], None] | None = None
    connects: list[float] = attrs.Factory(list)

    def connected(self, seconds: float) -> None:
        self.connects.append(seconds)

    def head(self, status: int, headers: tuple[tuple[str, str], ...]) -> None:
        self.events.append(("head", status, headers))

    def chunk(self, data: bytes) -> None:
        assert isinstance(data, bytes)
        self.events.append(("chunk", data))
        self.chunks.append(data)
        if self.on_chunk is not None:
            self.on_chunk(data)

    def end(self) -> None:
        self.events.append(("end",))

    def failed(self, failure: TransportFailure, detail: str) -> None:
        self.events.append(("failed", failure, detail))

    @property
    def kinds(self) -> list[object]:
        return [event[0] for event in self.events]

    @property
    def status(self) -> object:
        return next(event[1] for event in self.events if event[0] == "head")

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    @property
    def failure(self) -> object:
        assert self.kinds[-1] == "failed", self.events
        return self.events[-1][1]

    @property
    def detail(self) -> str:
        assert self.kinds[-1] == "failed", self.events
        return str(self.events[-1][2])

    def assert_ok(self, body: bytes = b"hello") -> None:
        assert self.kinds[0] == "head", self.events
        assert self.kinds[-1] == "end", self.events
        assert self.body == body


def get(port: int, *, scheme: str = "http", host: str = "127.0.0.1", **kw: Any) -> UpstreamRequest:
    """A GET of `/`; `kw` sets the other UpstreamRequest fields (proxy, timeouts)."""
    return UpstreamRequest(method="GET", url=f"{scheme}://{host}:{port}/", headers=(), **kw)


@pytest.fixture
async def client() -> AsyncIterator[UpstreamClient]:
    upstream = UpstreamClient()
    yield upstream
    await upstream.aclose()


async def fetch(client: UpstreamClient, request: UpstreamRequest) -> Recorder:
    recorder = Recorder()
    with anyio.fail_after(10):  # a hang is a failure, not a stuck test run
        await client.send(request, recorder)
    return recorder


# --- a normal exchange -----------------------------------------------------------------


async def test_post_is_framed_and_answered(client: UpstreamClient) -> None:
    async with serve(keepalive) as server:
        request = UpstreamRequest(
            method="POST",
            url=f"http://127.0.0.1:{server.port}/v1/chat/completions?x=1",
            headers=(("Authorization", Secret(f"Bearer {API_KEY}")), ("X-Extra", "yes")),
            body=b'{"model":"m"}',
        )
        recorder = await fetch(client, request)
    recorder.assert_ok()
    assert recorder.status == 200
    seen = server.requests[0]
    assert (seen.method, seen.target) == ("POST", "/v1/chat/completions?x=1")
    assert seen.body == b'{"model":"m"}'
    assert seen.header("host") == [f"127.0.0.1:{server.port}"]
    assert seen.header("content-length") == ["13"]
    assert seen.header("authorization") == [f"Bearer {API_KEY}"]
    assert seen.header("accept-encoding") == ["identity"]
    assert seen.header("x-extra") == ["yes"]


async def test_caller_accept_encoding_is_not_overridden(client: UpstreamClient) -> None:
    async with serve(keepalive) as server:
        request = UpstreamRequest(
            method="GET",
            url=f"http://127.0.0.1:{server.port}/",
            headers=(("Accept-Encoding", "gzip"),),
        )
        (await fetch(client, request)).assert_ok()
    assert server.requests[0].header("accept-encoding") == ["gzip"]


async def test_response_headers_reach_the_receiver(client: UpstreamClient) -> None:
    async def handler(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(response(b"{}", status=429, headers=("Retry-After: 7",)))

    async with serve(handler) as server:
        recorder = await fetch(client, get(server.port))
    assert recorder.events[0] == ("head", 429, (("content-length", "2"), ("retry-after", "7")))
    assert recorder.kinds[-1] == "end"


async def test_informational_responses_are_skipped(client: UpstreamClient) -> None:
    async def handler(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + response())

    async with serve(handler) as server:
        recorder = await fetch(client, get(server.port))
    recorder.assert_ok()
    assert recorder.kinds.count("head") == 1
    assert recorder.status == 200


# --- keep-alive --------------------------------------------------------------------------


async def test_keepalive_reuses_the_connection(client: UpstreamClient) -> None:
    async with serve(keepalive) as server:
        for _ in range(3):
            (await fetch(client, get(server.port))).assert_ok()
    assert server.connections == 1
    assert len(server.requests) == 3


async def test_the_receiver_hears_how_long_the_connection_took(client: UpstreamClient) -> None:
    async with serve(keepalive) as server:
        first = await fetch(client, get(server.port))
        second = await fetch(client, get(server.port))
    assert len(first.connects) == len(second.connects) == 1
    assert 0 <= first.connects[0] < 5
    assert 0 <= second.connects[0] < 0.05  # the pooled one: no handshake


async def test_connection_close_is_not_reused(client: UpstreamClient) -> None:
    async def handler(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(response(headers=("Connection: close",)))

    async with serve(handler) as server:
        (await fetch(client, get(server.port))).assert_ok()
        (await fetch(client, get(server.port))).assert_ok()
    assert server.connections == 2


async def test_expired_idle_connection_is_not_reused() -> None:
    client = UpstreamClient(keepalive_expiry=0.05)
    async with serve(keepalive) as server:
        (await fetch(client, get(server.port))).assert_ok()
        await anyio.sleep(0.1)
        (await fetch(client, get(server.port))).assert_ok()
    await client.aclose()
    assert server.connections == 2


async def test_idle_connections_beyond_max_keepalive_are_closed() -> None:
    client = UpstreamClient(max_keepalive=1)
    both_in = anyio.Event()

    async def handler(peer: Peer) -> None:
        await peer.read_request()
        if server.connections == 2:
            both_in.set()
        await both_in.wait()  # two connections at once, then both go idle
        await peer.send(response())
        await keepalive(peer)

    async with serve(handler) as server:
        async with anyio.create_task_group() as group:
            for _ in range(2):
                group.start_soon(client.send, get(server.port), Recorder())
        with anyio.fail_after(5):
            while server.open > 1:
                await anyio.sleep(0.01)
        (await fetch(client, get(server.port))).assert_ok()
    await client.aclose()
    assert server.connections == 2  # the third request reused the one kept


async def test_stale_pooled_connection_is_retried_once_on_a_fresh_one(
    client: UpstreamClient,
) -> None:
    closed = anyio.Event()

    async def handler(peer: Peer) -> None:  # answers once, then closes while idle
        await peer.read_request()
        await peer.send(response())
        if server.connections == 1:
            await peer.stream.aclose()
            closed.set()
            return
        await keepalive(peer)

    async with serve(handler) as server:
        (await fetch(client, get(server.port))).assert_ok()
        await closed.wait()
        await anyio.sleep(0.05)  # let the FIN reach the client's socket
        second = await fetch(client, get(server.port))
    second.assert_ok()
    assert server.connections == 2


async def test_aclose_closes_idle_connections() -> None:
    client = UpstreamClient()
    gone = anyio.Event()

    async def handler(peer: Peer) -> None:
        await keepalive(peer)
        gone.set()

    async with serve(handler) as server:
        (await fetch(client, get(server.port))).assert_ok()
        await client.aclose()
        with anyio.fail_after(5):
            await gone.wait()
        recorder = await fetch(client, get(server.port))
    assert recorder.failure == F.LOCAL


# --- streaming ---------------------------------------------------------------------------


async def test_chunks_are_delivered_as_they_arrive(client: UpstreamClient) -> None:
    first_seen = anyio.Event()

    async def handler(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(CHUNKED_HEAD + chunk(b"data: one\n\n"))
        await first_seen.wait()  # the client must report this chunk before the rest exists
        await peer.send(chunk(b"data: two\n\n") + CHUNKED_END)

    recorder = Recorder(on_chunk=lambda _: first_seen.set())
    async with serve(handler) as server:
        with anyio.fail_after(10):
            await client.send(get(server.port), recorder)
    assert recorder.kinds == ["head", "chunk", "chunk", "end"]
    assert recorder.body == b"data: one\n\ndata: two\n\n"


async def test_many_small_chunks_in_one_read_are_joined(client: UpstreamClient) -> None:
    pieces = [b"x" * 10] * 500

    async def handler(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(CHUNKED_HEAD + b"".join(chunk(p) for p in pieces) + CHUNKED_END)

    async with serve(handler) as server:
        recorder = await fetch(client, get(server.port))
    recorder.assert_ok(b"".join(pieces))
    assert recorder.kinds.count("chunk") < 50


# --- timeouts ----------------------------------------------------------------------------


async def test_silent_server_is_a_first_byte_timeout(client: UpstreamClient) -> None:
    async def handler(peer: Peer) -> None:
        await peer.read_request()
        await peer.wait_closed()

    async with serve(handler) as server:
        recorder = await fetch(client, get(server.port, first_byte_timeout=0.2))
    assert recorder.kinds == ["failed"]
    assert recorder.failure == F.FIRST_BYTE_TIMEOUT


async def test_stall_mid_body_is_an_idle_timeout(client: UpstreamClient) -> None:
    async def handler(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(CHUNKED_HEAD + chunk(b"data: one\n\n"))
        await peer.wait_closed()

    async with serve(handler) as server:
        recorder = await fetch(client, get(server.port, idle_timeout=0.2))
    assert recorder.kinds == ["head", "chunk", "failed"]
    assert recorder.failure == F.IDLE_TIMEOUT


async def test_idle_timeout_restarts_with_each_read(client: UpstreamClient) -> None:
    async def handler(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(CHUNKED_HEAD)
        for _ in range(4):  # 4 x 0.1 s > the 0.25 s idle limit, but no gap reaches it
            await anyio.sleep(0.1)
            await peer.send(chunk(b"tick"))
        await peer.send(CHUNKED_END)

    async with serve(handler) as server:
        recorder = await fetch(client, get(server.port, idle_timeout=0.25))
    recorder.assert_ok(b"tick" * 4)


async def test_server_not_reading_is_a_write_timeout(client: UpstreamClient) -> None:
    async def handler(peer: Peer) -> None:
        await peer.stream.receive(1)  # read a byte, then stop reading
        await anyio.sleep_forever()

    async with serve(handler) as server:
        request = UpstreamRequest(
            method="POST",
            url=f"http://127.0.0.1:{server.port}/",
            headers=(),
            body=b"x" * (64 << 20),  # more than any loopback socket buffer holds
            write_timeout=0.3,
        )
        recorder = await fetch(client, request)
    assert recorder.failure == F.FIRST_BYTE_TIMEOUT
    assert "not written" in recorder.detail


async def test_tls_handshake_stall_is_a_connect_timeout(client: UpstreamClient) -> None:
    async with silent_server() as port:
        recorder = await fetch(client, get(port, scheme="https", connect_timeout=0.2))
    assert recorder.failure == F.CONNECT_TIMEOUT


# --- broken peers ------------------------------------------------------------------------


async def test_reset_before_the_head_is_reset(client: UpstreamClient) -> None:
    async def handler(peer: Peer) -> None:
        await peer.read_request()
        peer.reset()

    async with serve(handler) as server:
        recorder = await fetch(client, get(server.port))
    assert recorder.kinds == ["failed"]
    assert recorder.failure == F.RESET


async def test_reset_mid_body_is_reset(client: UpstreamClient) -> None:
    delivered = anyio.Event()

    async def handler(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(CHUNKED_HEAD + chunk(b"data: one\n\n"))
        await delivered.wait()
        peer.reset()

    recorder = Recorder(on_chunk=lambda _: delivered.set())
    async with serve(handler) as server:
        with anyio.fail_after(10):
            await client.send(get(server.port), recorder)
    assert recorder.kinds == ["head", "chunk", "failed"]
    assert recorder.failure == F.RESET


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(b"", id="nothing"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Le", id="half-a-head"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", id="content-length"),
        pytest.param(CHUNKED_HEAD + chunk(b"data: one\n\n"), id="chunked"),
    ],
)
async def test_close_before_the_end_is_closed(client: UpstreamClient, answer: bytes) -> None:
    async def handler(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(answer)

    async with serve(handler) as server:
        recorder = await fetch(client, get(server.port))
    assert recorder.failure == F.CLOSED
    assert "end" not in recorder.kinds


async def test_body_until_close_without_framing_is_complete(client: UpstreamClient) -> None:
    async def handler(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")

    async with serve(handler) as server:
        (await fetch(client, get(server.port))).assert_ok(b"all of it")


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(b"SSH-2.0-OpenSSH_9.6\r\n\r\n", id="not-http"),
        pytest.param(b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", id="bad-header"),
        pytest.param(CHUNKED_HEAD + b"zz\r\nhello\r\n", id="bad-chunk-size"),
        pytest.param(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 300_000 + b"\r\n\r\n", id="huge-head"),
    ],
)
async def test_invalid_http_is_malformed(client: UpstreamClient, answer: bytes) -> None:
    async def handler(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(answer)
        await peer.wait_closed()

    async with serve(handler) as server:
        recorder = await fetch(client, get(server.port))
    assert recorder.failure == F.MALFORMED


async def test_connect_refused(client: UpstreamClient) -> None:
    recorder = await fetch(client, get(closed_port()))
    assert recorder.kinds == ["failed"]
    assert recorder.failure == F.CONNECT_REFUSED


# A 64-byte label cannot be encoded in a DNS query, so the resolver fails it
# locally (EAI_NONAME) without a packet leaving the machine.
UNRESOLVABLE = "a" * 64 + ".invalid"


async def test_unresolvable_host_is_dns(client: UpstreamClient) -> None:
    recorder = await fetch(client, get(443, host=UNRESOLVABLE))
    assert recorder.failure == F.DNS


# --- TLS ---------------------------------------------------------------------------------


async def test_https_with_a_trusted_certificate(
    server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    client = UpstreamClient(ssl_context=client_tls)
    async with serve(keepalive, tls=server_tls) as server:
        (await fetch(client, get(server.port, scheme="https"))).assert_ok()
        (await fetch(client, get(server.port, scheme="https", host="localhost"))).assert_ok()
        (await fetch(client, get(server.port, scheme="https", host="localhost"))).assert_ok()
    await client.aclose()
    assert server.connections == 2  # one per host name: the pool key includes it


async def test_untrusted_certificate_is_tls(server_tls: ssl.SSLContext) -> None:
    other = ssl.create_default_context()
    trustme.CA().configure_trust(other)
    client = UpstreamClient(ssl_context=other)
    async with serve(keepalive, tls=server_tls) as server:
        recorder = await fetch(client, get(server.port, scheme="https"))
    await client.aclose()
    assert recorder.failure == F.TLS
    assert "certificate" in recorder.detail


async def test_certificate_for_another_host_is_tls(
    ca: trustme.CA, client_tls: ssl.SSLContext
) -> None:
    wrong = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("api.example.com").configure_cert(wrong)
    client = UpstreamClient(ssl_context=client_tls)
    async with serve(keepalive, tls=wrong) as server:
        recorder = await fetch(client, get(server.port, scheme="https"))
    await client.aclose()
    assert recorder.failure == F.TLS


async def test_plain_http_on_an_https_url_is_tls(client: UpstreamClient) -> None:
    async def handler(peer: Peer) -> None:
        await peer.stream.receive()  # a ClientHello it cannot read
        await peer.send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    async with serve(handler) as server:
        recorder = await fetch(client, get(server.port, scheme="https"))
    assert recorder.failure == F.TLS


async def test_default_context_rejects_a_private_ca(server_tls: ssl.SSLContext) -> None:
    client = UpstreamClient()  # the system trust store knows nothing of the test CA
    async with serve(keepalive, tls=server_tls) as server:
        recorder = await fetch(client, get(server.port, scheme="https"))
    await client.aclose()
    assert recorder.failure == F.TLS


# --- proxies -----------------------------------------------------------------------------


def socks(
    port: int, scheme: str = "socks5h", user: str | None = None, password: str | None = None
) -> ProxyUrl:
    secret = None if password is None else Secret(password)
    return ProxyUrl(scheme=scheme, host="127.0.0.1", port=port, username=user, password=secret)


async def test_socks5h_sends_the_host_name(client: UpstreamClient) -> None:
    async with serve(keepalive) as server, socks5_proxy() as proxy:
        request = get(server.port, host="localhost", proxy=socks(proxy.port))
        (await fetch(client, request)).assert_ok()
        (await fetch(client, request)).assert_ok()
    assert proxy.tunnels == [("domain", "localhost", server.port)]  # kept alive: one tunnel
    assert server.connections == 1


async def test_socks5_resolves_locally(client: UpstreamClient) -> None:
    async with serve(keepalive) as server, socks5_proxy() as proxy:
        request = get(server.port, host="localhost", proxy=socks(proxy.port, "socks5"))
        (await fetch(client, request)).assert_ok()
    [(kind, host, port)] = proxy.tunnels
    assert (kind, port) in {("ipv4", server.port), ("ipv6", server.port)}
    assert host in {"127.0.0.1", "::1"}


async def test_socks5_resolves_before_the_proxy_and_reports_dns(client: UpstreamClient) -> None:
    async with socks5_proxy() as proxy:
        request = get(443, host=UNRESOLVABLE, proxy=socks(proxy.port, "socks5"))
        recorder = await fetch(client, request)
    assert recorder.failure == F.DNS
    assert proxy.connections == 0


async def test_socks5_with_credentials(client: UpstreamClient) -> None:
    async with serve(keepalive) as server, socks5_proxy(credentials=CREDENTIALS) as proxy:
        proxy_url = socks(proxy.port, user="eve", password=PROXY_PASSWORD)
        (await fetch(client, get(server.port, proxy=proxy_url))).assert_ok()
    assert proxy.credentials == [("eve", PROXY_PASSWORD)]
    assert proxy.relayed == 1


async def test_socks5_wrong_credentials_is_proxy(client: UpstreamClient) -> None:
    async with serve(keepalive) as server, socks5_proxy(credentials=CREDENTIALS) as proxy:
        proxy_url = socks(proxy.port, user="eve", password="wrong-password-123")
        recorder = await fetch(client, get(server.port, proxy=proxy_url))
    assert recorder.failure == F.PROXY
    assert "wrong-password" not in recorder.detail
    assert server.connections == 0


async def test_socks5_credentials_required_but_missing_is_proxy(client: UpstreamClient) -> None:
    async with serve(keepalive) as server, socks5_proxy(credentials=CREDENTIALS) as proxy:
        recorder = await fetch(client, get(server.port, proxy=socks(proxy.port)))
    assert recorder.failure == F.PROXY


async def test_socks5_error_reply_is_proxy(client: UpstreamClient) -> None:
    async with socks5_proxy(reply=5) as proxy:  # 5: connection refused (RFC 1928)
        recorder = await fetch(client, get(closed_port(), proxy=socks(proxy.port)))
    assert recorder.failure == F.PROXY
    assert "connection refused" in recorder.detail


async def test_unreachable_proxy_is_proxy(client: UpstreamClient) -> None:
    async with serve(keepalive) as server:
        recorder = await fetch(client, get(server.port, proxy=socks(closed_port())))
    assert recorder.failure == F.PROXY
    assert server.connections == 0


async def test_silent_proxy_is_a_connect_timeout(client: UpstreamClient) -> None:
    async with serve(keepalive) as server, socks5_proxy(stall=True) as proxy:
        request = get(server.port, proxy=socks(proxy.port), connect_timeout=0.2)
        recorder = await fetch(client, request)
    assert recorder.failure == F.CONNECT_TIMEOUT


@pytest.mark.parametrize(
    ("greeting_reply", "command_reply"),
    [
        pytest.param(b"", b"", id="closes-at-once"),
        pytest.param(b"\x05\x07", b"", id="unknown-auth-method"),
        pytest.param(b"\x05\x00", b"\x05\x00\x00\x09", id="unknown-address-type"),
        pytest.param(b"\x05\x00", b"\x04\x00\x00\x01" + bytes(6), id="wrong-version"),
    ],
)
async def test_socks5_proxy_speaking_nonsense_is_proxy(
    client: UpstreamClient, greeting_reply: bytes, command_reply: bytes
) -> None:
    async def handler(peer: Peer) -> None:
        await peer.stream.receive()
        if greeting_reply:
            await peer.send(greeting_reply)
            await peer.stream.receive()
            await peer.send(command_reply)

    async with serve(handler) as proxy:
        recorder = await fetch(client, get(closed_port(), proxy=socks(proxy.port)))
    assert recorder.failure == F.PROXY


async def test_socks5_reply_with_a_bound_host_name_is_accepted(client: UpstreamClient) -> None:
    async def handler(peer: Peer) -> None:  # the proxy and the origin in one
        await peer.stream.receive()
        await peer.send(b"\x05\x00")
        await peer.stream.receive()
        await peer.send(b"\x05\x00\x00\x03\x09localhost\x01\xbb")
        await keepalive(peer)

    async with serve(handler) as proxy:
        (await fetch(client, get(443, host="example.com", proxy=socks(proxy.port)))).assert_ok()


async def test_https_through_socks5(
    server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    client = UpstreamClient(ssl_context=client_tls)
    async with serve(keepalive, tls=server_tls) as server, socks5_proxy() as proxy:
        request = get(server.port, scheme="https", host="localhost", proxy=socks(proxy.port))
        (await fetch(client, request)).assert_ok()
    await client.aclose()
    assert proxy.tunnels == [("domain", "localhost", server.port)]


def http_proxy(port: int, user: str | None = None, password: str | None = None) -> ProxyUrl:
    secret = None if password is None else Secret(password)
    return ProxyUrl(scheme="http", host="127.0.0.1", port=port, username=user, password=secret)


async def test_connect_proxy_tunnels(client: UpstreamClient) -> None:
    async with serve(keepalive) as server, connect_proxy() as proxy:
        (await fetch(client, get(server.port, proxy=http_proxy(proxy.port)))).assert_ok()
    assert proxy.tunnels == [("CONNECT", "127.0.0.1", server.port)]
    assert proxy.credentials == []
    assert server.requests[0].target == "/"  # origin-form: the proxy only tunnels


async def test_connect_proxy_with_credentials(client: UpstreamClient) -> None:
    async with serve(keepalive) as server, connect_proxy(credentials=CREDENTIALS) as proxy:
        request = get(server.port, proxy=http_proxy(proxy.port, "eve", PROXY_PASSWORD))
        (await fetch(client, request)).assert_ok()
    assert proxy.credentials == [("eve", PROXY_PASSWORD)]
    assert proxy.relayed == 1


async def test_connect_proxy_rejecting_credentials_is_proxy(client: UpstreamClient) -> None:
    async with serve(keepalive) as server, connect_proxy(credentials=CREDENTIALS) as proxy:
        request = get(server.port, proxy=http_proxy(proxy.port, "eve", "wrong-password-123"))
        recorder = await fetch(client, request)
    assert recorder.failure == F.PROXY
    assert "407" in recorder.detail
    assert "wrong-password" not in recorder.detail
    assert server.connections == 0


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(b"", id="closes"),
        pytest.param(b"SOCKS? never heard of it\r\n\r\n", id="not-http"),
        pytest.param(b"HTTP/1.1 200 OK\r\n\r\nHTTP/1.1 200 OK\r\n", id="bytes-after-reply"),
        pytest.param(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n", id="502"),
    ],
)
async def test_connect_proxy_misbehaving_is_proxy(client: UpstreamClient, answer: bytes) -> None:
    async def handler(peer: Peer) -> None:
        await peer.stream.receive()
        await peer.send(answer)

    async with serve(handler) as proxy:
        recorder = await fetch(client, get(closed_port(), proxy=http_proxy(proxy.port)))
    assert recorder.failure == F.PROXY


async def test_https_through_connect_proxy(
    server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    client = UpstreamClient(ssl_context=client_tls)
    async with serve(keepalive, tls=server_tls) as server, connect_proxy() as proxy:
        request = get(server.port, scheme="https", proxy=http_proxy(proxy.port))
        (await fetch(client, request)).assert_ok()
    await client.aclose()
    assert proxy.relayed == 1


# --- cancellation ------------------------------------------------------------------------


async def test_cancellation_closes_the_connection_and_reports_nothing(
    client: UpstreamClient,
) -> None:
    saw_eof = anyio.Event()

    async def handler(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(CHUNKED_HEAD + chunk(b"data: one\n\n"))
        await peer.wait_closed()
        saw_eof.set()

    async with serve(handler) as server:
        with anyio.CancelScope() as scope:
            recorder = Recorder(on_chunk=lambda _: scope.cancel())
            await client.send(get(server.port), recorder)
        with anyio.fail_after(5):
            await saw_eof.wait()
    assert scope.cancelled_caught  # the cancellation reached us: send did not swallow it
    assert recorder.kinds == ["head", "chunk"]


async def test_a_groups_connections_stay_within_its_own_limit() -> None:
    # A provider's max_connections: its group never has more than 2 open, while another
    # group on the same client is not held back by it.
    client = UpstreamClient(max_connections=50, group_limits={"small": 2, "big": 20})
    open_now = {"small": 0, "big": 0}
    most = {"small": 0, "big": 0}

    def serve_group(name: str) -> Any:
        async def handler(peer: Peer) -> None:
            open_now[name] += 1
            most[name] = max(most[name], open_now[name])
            try:
                while await peer.read_request() is not None:
                    await anyio.sleep(0.02)
                    await peer.send(response())
            finally:
                open_now[name] -= 1

        return handler

    small = [Recorder() for _ in range(12)]
    big = [Recorder() for _ in range(12)]
    async with serve(serve_group("small")) as one, serve(serve_group("big")) as two:
        with anyio.fail_after(20):
            async with anyio.create_task_group() as group:
                for recorder in small:
                    group.start_soon(client.send, get(one.port, group="small"), recorder)
                for recorder in big:
                    group.start_soon(client.send, get(two.port, group="big"), recorder)
    await client.aclose()
    for recorder in (*small, *big):
        recorder.assert_ok()
    assert most["small"] == 2
    assert most["big"] > 2  # not queued behind the small group


async def test_a_full_group_says_whose_limit_it_is() -> None:
    client = UpstreamClient(max_connections=10, group_limits={"groq": 1})

    async def handler(peer: Peer) -> None:
        await peer.read_request()
        await peer.wait_closed()

    async with serve(handler) as server:
        async with anyio.create_task_group() as group:
            group.start_soon(client.send, get(server.port, group="groq"), Recorder())
            await anyio.sleep(0.05)
            second = Recorder()
            await client.send(get(server.port, group="groq", pool_timeout=0.1), second)
            group.cancel_scope.cancel()
    await client.aclose()
    assert "no free connection slot within 0.1s (groq's max_connections=1)" in second.detail


async def test_cancelled_request_frees_its_slot() -> None:
    client = UpstreamClient(max_connections=1)

    async def handler(peer: Peer) -> None:
        if server.connections == 1:
            await peer.read_request()
            await peer.wait_closed()
        else:
            await keepalive(peer)

    async with serve(handler) as server:
        with anyio.move_on_after(0.1):
            await client.send(get(server.port), Recorder())
        (await fetch(client, get(server.port, connect_timeout=1.0))).assert_ok()
    await client.aclose()


# --- limits and concurrency --------------------------------------------------------------


async def test_200_concurrent_streams() -> None:
    client = UpstreamClient(max_connections=200)
    everyone_connected = anyio.Event()

    async def handler(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(CHUNKED_HEAD + chunk(b"data: one\n\n"))
        if server.connections == 200:
            everyone_connected.set()
        await everyone_connected.wait()  # all 200 streams are open at once
        await peer.send(chunk(b"data: two\n\n") + CHUNKED_END)
        await keepalive(peer)

    recorders = [Recorder() for _ in range(200)]
    async with serve(handler) as server:
        with anyio.fail_after(20):
            async with anyio.create_task_group() as group:
                for recorder in recorders:
                    group.start_soon(client.send, get(server.port), recorder)
    await client.aclose()
    for recorder in recorders:
        recorder.assert_ok(b"data: one\n\ndata: two\n\n")
    assert server.max_open == 200


async def test_max_connections_is_never_exceeded() -> None:
    client = UpstreamClient(max_connections=5)

    async def handler(peer: Peer) -> None:
        while await peer.read_request() is not None:
            await anyio.sleep(0.01)
            await peer.send(response())

    recorders = [Recorder() for _ in range(40)]
    async with serve(handler) as server:
        with anyio.fail_after(20):
            async with anyio.create_task_group() as group:
                for recorder in recorders:
                    group.start_soon(client.send, get(server.port), recorder)
    await client.aclose()
    for recorder in recorders:
        recorder.assert_ok()
    assert server.max_open == 5
    assert server.connections == 5  # and every connection was kept alive and reused


async def test_no_free_slot_within_pool_timeout_is_local() -> None:
    client = UpstreamClient(max_connections=1)
    release = anyio.Event()

    async def handler(peer: Peer) -> None:
        await peer.read_request()
        await release.wait()
        await peer.send(response())
        await keepalive(peer)

    first = Recorder()
    async with serve(handler) as server, anyio.create_task_group() as group:
        group.start_soon(client.send, get(server.port), first)
        await anyio.sleep(0.05)
        second = await fetch(client, get(server.port, pool_timeout=0.1, connect_timeout=5))
        release.set()
    await client.aclose()
    assert second.failure == F.LOCAL
    assert "no free connection slot within 0.1s (max_connections=1)" in second.detail
    first.assert_ok()


async def test_limit_reached_through_idle_connections_evicts_the_oldest() -> None:
    client = UpstreamClient(max_connections=1)
    async with serve(keepalive) as one, serve(keepalive) as two:
        (await fetch(client, get(one.port))).assert_ok()
        (await fetch(client, get(two.port, connect_timeout=0.5))).assert_ok()
        (await fetch(client, get(one.port, connect_timeout=0.5))).assert_ok()
    await client.aclose()
    assert (one.connections, two.connections) == (2, 1)


# --- our own mistakes --------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/", "/relative", "http://", "http://h:99999/", "http://u:sk-secret@h/"],
)
async def test_unusable_url_is_local_and_not_quoted(client: UpstreamClient, url: str) -> None:
    request = UpstreamRequest(method="GET", url=url, headers=())
    recorder = await fetch(client, request)
    assert recorder.failure == F.LOCAL
    assert url not in recorder.detail
    assert "sk-secret" not in recorder.detail


def test_impossible_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="max_connections"):
        UpstreamClient(max_connections=0)


async def test_invalid_header_value_is_local_and_not_quoted(client: UpstreamClient) -> None:
    async with serve(keepalive) as server:
        request = UpstreamRequest(
            method="GET",
            url=f"http://127.0.0.1:{server.port}/",
            headers=(("Authorization", Secret(f"Bearer {API_KEY}\r\nX-Injected: 1")),),
        )
        recorder = await fetch(client, request)
    assert recorder.failure == F.LOCAL
    assert API_KEY not in recorder.detail
    assert server.requests == []


async def test_receiver_error_is_local_and_closes_the_connection(client: UpstreamClient) -> None:
    closed = anyio.Event()

    async def handler(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(CHUNKED_HEAD + chunk(b"data: one\n\n"))
        await peer.wait_closed()
        closed.set()

    def explode(_: bytes) -> None:
        raise RuntimeError("a bug in the drive loop")

    recorder = Recorder(on_chunk=explode)
    async with serve(handler) as server:
        with anyio.fail_after(10):
            await client.send(get(server.port), recorder)
            await closed.wait()
    assert recorder.failure == F.LOCAL
    assert "RuntimeError" in recorder.detail


async def test_receiver_end_raising_propagates_after_end(client: UpstreamClient) -> None:
    class Broken(Recorder):
        def end(self) -> None:
            super().end()
            raise RuntimeError("a bug in the drive loop")

    recorder = Broken()
    async with serve(keepalive) as server:
        with pytest.raises(RuntimeError, match="drive loop"):
            await client.send(get(server.port), recorder)
    assert recorder.kinds == ["head", "chunk", "end"]  # and no failed() after the end


# --- chunked bodies (decoded by ChunkedDecoder, not h11) ---------------------------------


async def test_chunked_bodies_keep_the_connection_alive(client: UpstreamClient) -> None:
    async def handler(peer: Peer) -> None:
        while await peer.read_request() is not None:
            # Extensions, upper-case sizes, a trailer; one write per chunk.
            await peer.send(CHUNKED_HEAD + b"5;ext=1\r\nhello\r\n")
            await peer.send(b"6 \r\n world\r\n")
            await peer.send(b"0\r\nX-Trailer: yes\r\n\r\n")

    async with serve(handler) as server:
        for _ in range(3):
            (await fetch(client, get(server.port))).assert_ok(b"hello world")
    assert server.connections == 1


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            + chunk(b"hello")
            + CHUNKED_END,
            id="connection-close",
        ),
        pytest.param(CHUNKED_HEAD + chunk(b"hello") + CHUNKED_END + b"junk", id="bytes-after"),
    ],
)
async def test_a_chunked_answer_that_forbids_reuse_is_not_reused(
    client: UpstreamClient, answer: bytes
) -> None:
    async def handler(peer: Peer) -> None:
        if await peer.read_request() is not None:
            await peer.send(answer)
            await peer.wait_closed()

    async with serve(handler) as server:
        (await fetch(client, get(server.port))).assert_ok()
        (await fetch(client, get(server.port))).assert_ok()
    assert server.connections == 2


async def test_bad_chunk_framing_after_good_chunks_delivers_them_then_is_malformed(
    client: UpstreamClient,
) -> None:
    async def handler(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(CHUNKED_HEAD + chunk(b"data: one\n\n") + b"5\r\nhelloXX")
        await peer.wait_closed()

    async with serve(handler) as server:
        recorder = await fetch(client, get(server.port))
    assert recorder.body == b"data: one\n\nhello"
    assert recorder.failure == F.MALFORMED
    assert "CRLF" in recorder.detail


async def test_a_head_request_with_chunked_headers_has_no_body(client: UpstreamClient) -> None:
    async def handler(peer: Peer) -> None:
        while await peer.read_request() is not None:
            await peer.send(CHUNKED_HEAD)

    async with serve(handler) as server:
        request = UpstreamRequest(
            method="HEAD", url=f"http://127.0.0.1:{server.port}/", headers=()
        )
        for _ in range(2):
            (await fetch(client, request)).assert_ok(b"")
    assert server.connections == 1
