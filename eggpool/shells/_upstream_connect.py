"""Opening one upstream byte stream: TCP, an optional SOCKS5 / HTTP CONNECT tunnel, then TLS.

Theory of operation. The retry classifier in `eggpool/core/retry.py` treats
each `TransportFailure` differently (a DNS failure says nothing about the
account, a refused connection or a TLS failure cools it down, a proxy
failure blames the account's own proxy), so the one job of this module
besides connecting is to say *which stage* failed. That is why the stages
run as separate steps instead of one `connect_tcp(..., tls=True)`: an
`OSError` raised while talking to the proxy is `PROXY`, the same error
raised while reaching the provider directly is `CONNECT_REFUSED`, and
anything raised inside the TLS handshake is `TLS`, whichever transport
carries it.

Every failure leaves as a `TransportError` whose `detail` names the stage
and `host:port` only: proxy credentials, header values and URLs never
appear in it. Proxy credentials (`Secret`) are revealed in the one
expression that builds the bytes to send.

The proxy handshakes read exact message sizes (SOCKS5) or at most one
response head (CONNECT), so no byte that belongs to the tunnelled
connection is consumed here: the TLS handshake or the HTTP exchange that
follows starts on a clean stream. Both run under the caller's connect
deadline; a timeout is the caller's to report (`CONNECT_TIMEOUT`).

References: RFC 1928 (SOCKS5), RFC 1929 (its username/password auth),
RFC 9110 section 9.3.6 (CONNECT), RFC 7617 (Basic auth).
"""

from __future__ import annotations

import base64
import socket
import ssl

import anyio
import attrs
import h11
from anyio.abc import ByteStream
from anyio.streams.tls import TLSStream
from socksio import ProtocolError as SocksProtocolError
from socksio import socks5

from eggpool.core.config import ProxyUrl
from eggpool.core.retry import TransportFailure

__all__ = ["Target", "TransportError", "close_quietly", "default_ssl_context", "open_stream"]

_F = TransportFailure
_SOCKS_MAX_FIELD = 255  # RFC 1929: username and password are length-prefixed with one byte
_CONNECT_HEAD_CAP = 16 * 1024  # a CONNECT reply is a few lines; more is not a proxy talking


class TransportError(Exception):
    """A failure below HTTP, already classified; `detail` is safe to log."""

    def __init__(self, failure: TransportFailure, detail: str) -> None:
        super().__init__(f"{failure}: {detail}")
        self.failure = failure
        self.detail = detail


@attrs.frozen(kw_only=True)
class Target:
    """Where a request goes: the parts of its URL the connection depends on."""

    scheme: str  # "http" or "https"
    host: str  # without IPv6 brackets, lower case
    port: int
    path: str  # origin-form request target: path and query

    @property
    def authority(self) -> str:
        """`host:port` as it appears on the wire (Host header, CONNECT, details)."""
        return join_host_port(self.host, self.port)

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def default_ssl_context() -> ssl.SSLContext:
    """The system trust store with hostname checks, offering only HTTP/1.1 by ALPN.

    ALPN matters because a server that negotiates h2 by default would then
    speak a protocol this client does not; saying `http/1.1` makes that
    impossible rather than unlikely.
    """
    context = ssl.create_default_context()
    context.set_alpn_protocols(["http/1.1"])
    return context


async def open_stream(
    target: Target, proxy: ProxyUrl | None, ssl_context: ssl.SSLContext
) -> ByteStream:
    """Connect to `target` (through `proxy`), with TLS for https. The caller sets the deadline."""
    if proxy is None:
        stream: ByteStream = await _connect(target.host, target.port, proxy=False)
    else:
        stream = await _tunnel(proxy, target)
    if target.scheme != "https":
        return stream
    try:
        # standard_compatible=False: HTTP frames its own messages, so a peer that
        # closes without a TLS close_notify (most servers) is an ordinary EOF,
        # and h11 still detects a truncated body from its framing.
        return await TLSStream.wrap(
            stream,
            server_side=False,
            hostname=target.host,
            ssl_context=ssl_context,
            standard_compatible=False,
        )
    except BaseException as exc:
        await close_quietly(stream)
        if isinstance(exc, Exception):
            raise _tls_error(exc, target) from None
        raise


async def close_quietly(stream: ByteStream) -> None:
    """Close now, even inside a cancelled scope (where an unshielded await raises again
    and would leak the socket); a forceful close never waits on the peer."""
    with anyio.CancelScope(shield=True):
        await anyio.aclose_forcefully(stream)


async def _connect(host: str, port: int, *, proxy: bool) -> anyio.abc.SocketStream:
    where = f"{'proxy ' if proxy else ''}{join_host_port(host, port)}"
    try:
        return await anyio.connect_tcp(host, port)
    except OSError as exc:
        raise _connect_error(exc, where, proxy=proxy) from None
    except UnicodeError:  # anyio's IDNA 2008 encoding rejected the name
        failure = _F.PROXY if proxy else _F.DNS
        raise TransportError(failure, f"{where}: invalid host name") from None


def _connect_error(exc: OSError, where: str, *, proxy: bool) -> TransportError:
    """Map a `connect_tcp` failure: DNS, refused, or another socket error."""
    causes = _causes(exc)
    if any(isinstance(c, socket.gaierror) for c in causes):
        return TransportError(_F.PROXY if proxy else _F.DNS, f"{where}: name resolution failed")
    reason = next((c.strerror for c in causes if isinstance(c, OSError) and c.strerror), None)
    reason = reason or "connection failed"
    # No TransportFailure means "unreachable"; a host or network that cannot
    # be reached fails the connection like a refusal does, and the retry
    # classifier weighs both alike.
    return TransportError(_F.PROXY if proxy else _F.CONNECT_REFUSED, f"{where}: {reason}")


def _causes(exc: BaseException) -> list[BaseException]:
    """`exc` and everything it was raised from, groups flattened (anyio wraps the real errors)."""
    seen: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if any(current is s for s in seen):
            continue
        seen.append(current)
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
        if current.__cause__ is not None:
            todo.append(current.__cause__)
        elif current.__context__ is not None and not current.__suppress_context__:
            todo.append(current.__context__)
    return seen


def _tls_error(exc: Exception, target: Target) -> TransportError:
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or "certificate verification failed"
    elif isinstance(exc, ssl.SSLError):
        reason = exc.reason or type(exc).__name__
    elif isinstance(exc, anyio.EndOfStream):
        reason = "peer closed the connection during the handshake"
    elif isinstance(exc, anyio.BrokenResourceError | OSError):
        reason = "connection reset during the handshake"
    else:
        raise exc  # not a TLS failure: let the caller call it ours (LOCAL)
    return TransportError(_F.TLS, f"TLS with {target.authority}: {reason}")


# --- proxies --------------------------------------------------------------------------


async def _tunnel(proxy: ProxyUrl, target: Target) -> ByteStream:
    # socks5 resolves the target here, before the proxy is contacted, so a bad
    # provider name is reported as DNS (the account's fault) and not as PROXY.
    address = target.host
    if proxy.scheme == "socks5":
        address = await _resolve(target.host, target.port)
    stream = await _connect(proxy.host, proxy.port, proxy=True)
    where = f"proxy {join_host_port(proxy.host, proxy.port)}"
    try:
        if proxy.scheme in ("socks5", "socks5h"):
            await _socks5_handshake(stream, proxy, address, target.port, where)
        elif proxy.scheme == "http":
            await _connect_handshake(stream, proxy, target, where)
        else:
            raise TransportError(_F.PROXY, f"{where}: unsupported scheme {proxy.scheme!r}")
    except BaseException as exc:
        await close_quietly(stream)
        if isinstance(exc, anyio.EndOfStream):
            raise TransportError(_F.PROXY, f"{where}: closed during the handshake") from None
        if isinstance(exc, anyio.BrokenResourceError | OSError):
            raise TransportError(_F.PROXY, f"{where}: reset during the handshake") from None
        raise
    return stream


async def _resolve(host: str, port: int) -> str:
    """The first address the system resolver gives, as the socks5 scheme asks."""
    try:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        infos = []
    if not infos:
        raise TransportError(_F.DNS, f"{join_host_port(host, port)}: name resolution failed")
    return str(infos[0][4][0])


async def _receive_exactly(stream: ByteStream, size: int) -> bytes:
    """Read exactly `size` bytes, never more: what follows belongs to the tunnel."""
    data = b""
    while len(data) < size:
        data += await stream.receive(size - len(data))
    return data


async def _socks5_handshake(
    stream: ByteStream, proxy: ProxyUrl, host: str, port: int, where: str
) -> None:
    connection = socks5.SOCKS5Connection()
    methods = [socks5.SOCKS5AuthMethod.NO_AUTH_REQUIRED]
    if proxy.username is not None:
        # Offer both: a proxy that needs no credentials still lets us in, one
        # that needs them picks username/password.
        methods.append(socks5.SOCKS5AuthMethod.USERNAME_PASSWORD)
    connection.send(socks5.SOCKS5AuthMethodsRequest(methods))
    await stream.send(connection.data_to_send())
    try:
        reply = connection.receive_data(await _receive_exactly(stream, 2))
    except SocksProtocolError:
        raise TransportError(_F.PROXY, f"{where}: malformed SOCKS5 reply") from None
    assert isinstance(reply, socks5.SOCKS5AuthReply)
    if reply.method == socks5.SOCKS5AuthMethod.USERNAME_PASSWORD:
        if proxy.username is None:
            raise TransportError(_F.PROXY, f"{where}: SOCKS5 proxy requires credentials")
        username = proxy.username.encode()
        password = b"" if proxy.password is None else proxy.password.reveal().encode()
        if len(username) > _SOCKS_MAX_FIELD or len(password) > _SOCKS_MAX_FIELD:
            raise TransportError(_F.PROXY, f"{where}: SOCKS5 credentials over 255 bytes")
        connection.send(socks5.SOCKS5UsernamePasswordRequest(username, password))
        await stream.send(connection.data_to_send())
        auth = connection.receive_data(await _receive_exactly(stream, 2))
        assert isinstance(auth, socks5.SOCKS5UsernamePasswordReply)
        if not auth.success:
            raise TransportError(_F.PROXY, f"{where}: SOCKS5 credentials rejected")
    elif reply.method != socks5.SOCKS5AuthMethod.NO_AUTH_REQUIRED:
        raise TransportError(_F.PROXY, f"{where}: no acceptable SOCKS5 auth method")

    connection.send(
        socks5.SOCKS5CommandRequest.from_address(socks5.SOCKS5Command.CONNECT, (host, port))
    )
    await stream.send(connection.data_to_send())
    head = await _receive_exactly(stream, 4)  # VER REP RSV ATYP, then BND.ADDR BND.PORT
    if head[3] == 3:  # a domain name, length-prefixed
        await _receive_exactly(stream, (await _receive_exactly(stream, 1))[0])
        port_bytes = await _receive_exactly(stream, 2)
        # The bound address is never used; socksio would decode the name with its
        # length byte attached (a false "malformed" for long names), so it gets
        # an all-zero IPv4 address instead.
        message = head[:3] + b"\x01\x00\x00\x00\x00" + port_bytes
    elif head[3] in (1, 4):
        message = head + await _receive_exactly(stream, (4 if head[3] == 1 else 16) + 2)
    else:
        raise TransportError(_F.PROXY, f"{where}: malformed SOCKS5 reply")
    try:
        command = connection.receive_data(message)
    except SocksProtocolError:
        raise TransportError(_F.PROXY, f"{where}: malformed SOCKS5 reply") from None
    assert isinstance(command, socks5.SOCKS5Reply)
    if command.reply_code != socks5.SOCKS5ReplyCode.SUCCEEDED:
        reason = command.reply_code.name.lower().replace("_", " ")
        target = join_host_port(host, port)
        raise TransportError(_F.PROXY, f"{where}: SOCKS5 CONNECT to {target} failed: {reason}")


async def _connect_handshake(
    stream: ByteStream, proxy: ProxyUrl, target: Target, where: str
) -> None:
    # CONNECT even for http:// targets: one tunnel code path for both schemes,
    # and the proxy never sees (or could log) the request line and headers.
    connection = h11.Connection(h11.CLIENT, max_incomplete_event_size=_CONNECT_HEAD_CAP)
    headers = [("Host", target.authority)]
    if proxy.username is not None:
        secret = "" if proxy.password is None else proxy.password.reveal()
        token = base64.b64encode(f"{proxy.username}:{secret}".encode()).decode("ascii")
        headers.append(("Proxy-Authorization", f"Basic {token}"))
    try:
        data = connection.send(
            h11.Request(method="CONNECT", target=target.authority, headers=headers)
        )
    except h11.LocalProtocolError:  # the message could name a header value: never echo it
        raise TransportError(_F.PROXY, f"{where}: invalid proxy credentials") from None
    await stream.send(data + connection.send(h11.EndOfMessage()))
    while True:
        try:
            event = connection.next_event()
        except h11.RemoteProtocolError:
            raise TransportError(_F.PROXY, f"{where}: malformed CONNECT reply") from None
        if event is h11.NEED_DATA:
            try:
                chunk = await stream.receive()
            except anyio.EndOfStream:
                chunk = b""
            connection.receive_data(chunk)
            continue
        if isinstance(event, h11.InformationalResponse):
            continue
        if isinstance(event, h11.Response):
            break
        raise TransportError(_F.PROXY, f"{where}: closed during the handshake")
    if not 200 <= event.status_code < 300:
        raise TransportError(_F.PROXY, f"{where}: CONNECT answered {event.status_code}")
    if connection.trailing_data[0]:
        # The origin speaks only after we do, so bytes here are the proxy's, not the tunnel's.
        raise TransportError(_F.PROXY, f"{where}: unexpected bytes after the CONNECT reply")
