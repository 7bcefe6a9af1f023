"""The served fake provider, as a plain HTTP/1.1 client on loopback sees it."""

from __future__ import annotations

import http.client
import json
import socket
import time
from typing import Any

import attrs
import h11
import pytest

from eggpool.core.retry import TransportFailure
from eggpool.simulated.provider import FakeProvider, Reply
from eggpool.simulated.server import Ending, ServedProvider, served_provider

KEYS = {"sk-alpha-0123456789": "alpha", "sk-beta-0123456789": "beta"}
ALPHA = "sk-alpha-0123456789"
CHAT = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
MESSAGES = {"model": "claude-test", "max_tokens": 64, "messages": CHAT["messages"]}


@attrs.frozen
class Seen:
    """What the client got: the head, each body piece with its arrival time, how it ended."""

    status: int
    headers: dict[str, str]
    pieces: list[tuple[float, bytes]]
    ending: str  # "complete", "reset" or "closed" (EOF before the message was complete)

    @property
    def body(self) -> bytes:
        return b"".join(data for _, data in self.pieces)

    def json(self) -> Any:
        return json.loads(self.body)

    def sse_data(self) -> list[str]:
        return [
            line.removeprefix("data: ")
            for line in self.body.decode().split("\n")
            if line.startswith("data: ")
        ]


def send(
    served: ServedProvider,
    path: str,
    body: dict[str, Any] | None = None,
    *,
    key: str | None = ALPHA,
    anthropic: bool = False,
) -> Seen:
    """One request on a fresh connection, read with h11 until the response ends."""
    data = json.dumps(body).encode() if body is not None else b""
    headers = [("host", "127.0.0.1"), ("content-length", str(len(data)))]
    if key is not None:
        headers.append(("x-api-key", key) if anthropic else ("authorization", f"Bearer {key}"))
    conn = h11.Connection(h11.CLIENT)
    method = "POST" if body is not None else "GET"
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
        sock.sendall(conn.send(h11.Request(method=method, target=path, headers=headers)) or b"")
        sock.sendall(conn.send(h11.Data(data=data)) or b"")
        sock.sendall(conn.send(h11.EndOfMessage()) or b"")
        start = time.monotonic()
        status, head = 0, dict[str, str]()
        pieces: list[tuple[float, bytes]] = []
        while True:
            try:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(sock.recv(65536))
                    continue
            except ConnectionResetError:
                return Seen(status, head, pieces, "reset")
            except h11.RemoteProtocolError:
                return Seen(status, head, pieces, "closed")
            if isinstance(event, h11.Response):
                status = event.status_code
                head = {k.decode(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                pieces.append((time.monotonic() - start, bytes(event.data)))
            elif isinstance(event, h11.EndOfMessage):
                return Seen(status, head, pieces, "complete")


def stream_of(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "stream": True}


def test_openai_json_reply_has_the_scripted_text_and_usage() -> None:
    provider = FakeProvider({"alpha": Reply.ok(chunks=3, tokens_per_chunk=4)})
    with served_provider(provider, KEYS) as served:
        seen = send(served, "/v1/chat/completions", CHAT)
    reply = seen.json()
    assert seen.status == 200
    assert reply["choices"][0]["message"]["content"] == "Hello from a"
    sent = len(json.dumps(CHAT).encode())
    assert reply["usage"]["prompt_tokens"] == sent // 4
    assert reply["usage"]["completion_tokens"] == 12


def test_openai_stream_chunks_arrive_while_the_stream_is_still_playing() -> None:
    provider = FakeProvider({"alpha": Reply.ok(chunks=3, latency=0.0, interval=0.1)})
    with served_provider(provider, KEYS) as served:
        seen = send(served, "/v1/chat/completions", stream_of(CHAT))
    assert seen.headers["content-type"].startswith("text/event-stream")
    assert seen.sse_data()[-1] == "[DONE]"
    first, last = seen.pieces[0][0], seen.pieces[-1][0]
    assert first < last - 0.3  # six events 0.1 s apart: the first did not wait for the rest


def test_rate_limited_answer_has_429_retry_after_and_the_error_body() -> None:
    provider = FakeProvider({"alpha": Reply.rate_limited(retry_after=30)})
    with served_provider(provider, KEYS) as served:
        seen = send(served, "/v1/chat/completions", CHAT)
    assert seen.status == 429
    assert seen.headers["retry-after"] == "30"
    assert seen.json()["error"]["code"] == "rate_limit_exceeded"


def test_reset_stream_breaks_the_connection_after_the_scripted_chunks() -> None:
    provider = FakeProvider({"alpha": Reply.reset_after(2)})
    with served_provider(provider, KEYS) as served:
        seen = send(served, "/v1/chat/completions", stream_of(CHAT))
        exchange = served.wait_for(1, ended=True)[0]
    assert seen.ending == "reset"
    contents = [json.loads(d)["choices"][0]["delta"].get("content") for d in seen.sse_data()]
    assert contents == ["", "Hello", " from"]  # the role chunk, then two content chunks
    assert exchange.ending is Ending.RESET


def test_closed_stream_ends_mid_body_without_the_chunked_terminator() -> None:
    provider = FakeProvider({"alpha": Reply.fails_after(1, TransportFailure.CLOSED)})
    with served_provider(provider, KEYS) as served:
        seen = send(served, "/v1/chat/completions", stream_of(CHAT))
    assert seen.ending == "closed"
    assert len(seen.sse_data()) == 2


def test_cut_stream_is_a_complete_message_without_done() -> None:
    provider = FakeProvider({"alpha": Reply.cut_after(2)})
    with served_provider(provider, KEYS) as served:
        seen = send(served, "/v1/chat/completions", stream_of(CHAT))
    assert seen.ending == "complete"
    assert "[DONE]" not in seen.sse_data()


def test_model_list_is_the_accounts_scripted_models() -> None:
    provider = FakeProvider(models={"alpha": ["gpt-test", "gpt-mini"]})
    with served_provider(provider, KEYS) as served:
        seen = send(served, "/v1/models")
    assert seen.status == 200
    assert [row["id"] for row in seen.json()["data"]] == ["gpt-test", "gpt-mini"]


def test_anthropic_stream_has_the_message_events_and_final_usage() -> None:
    provider = FakeProvider({"alpha": Reply.ok(chunks=2, tokens_per_chunk=5)})
    with served_provider(provider, KEYS) as served:
        seen = send(served, "/v1/messages", stream_of(MESSAGES), anthropic=True)
    events = [json.loads(data) for data in seen.sse_data()]
    assert [e["type"] for e in events] == [
        "message_start", "content_block_start", "ping", "content_block_delta",
        "content_block_delta", "content_block_stop", "message_delta", "message_stop",
    ]  # fmt: skip
    assert events[-2]["usage"] == {"output_tokens": 10}


def test_anthropic_json_reply_has_a_text_block() -> None:
    provider = FakeProvider({"alpha": Reply.ok(chunks=2)})
    with served_provider(provider, KEYS) as served:
        seen = send(served, "/v1/messages", MESSAGES, anthropic=True)
    reply = seen.json()
    assert seen.headers["request-id"].startswith("req_")
    assert reply["content"] == [{"type": "text", "text": "Hello from"}]


def test_unknown_key_gets_401_and_never_reaches_the_script() -> None:
    provider = FakeProvider()
    with served_provider(provider, KEYS) as served:
        seen = send(served, "/v1/messages", MESSAGES, key="sk-nobody", anthropic=True)
    assert seen.status == 401
    assert seen.json()["error"]["type"] == "authentication_error"
    assert provider.calls == []


def test_each_key_gets_its_accounts_script() -> None:
    provider = FakeProvider({"alpha": Reply.ok(), "beta": Reply.status(503)})
    with served_provider(provider, KEYS) as served:
        statuses = [send(served, "/v1/chat/completions", CHAT, key=key).status for key in KEYS]
        accounts = [exchange.account for exchange in served.exchanges]
    assert statuses == [200, 503]
    assert accounts == ["alpha", "beta"]


def test_a_kept_alive_connection_serves_two_requests() -> None:
    provider = FakeProvider({"alpha": Reply.ok(latency=0.0, interval=0.0)})
    with served_provider(provider, KEYS) as served:
        conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=5)
        try:
            for _ in range(2):
                conn.request("POST", "/v1/chat/completions", json.dumps(CHAT),
                             {"authorization": f"Bearer {ALPHA}"})  # fmt: skip
                assert conn.getresponse().read()
        finally:
            conn.close()
    assert [call.number for call in provider.calls] == [1, 2]


def test_a_client_hanging_up_on_a_stall_ends_the_exchange() -> None:
    provider = FakeProvider({"alpha": Reply.stall_after(1, latency=0.0)})
    with served_provider(provider, KEYS) as served:
        data = json.dumps(stream_of(CHAT)).encode()
        with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
            sock.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                + f"authorization: Bearer {ALPHA}\r\ncontent-length: {len(data)}\r\n\r\n".encode()
                + data
            )
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        exchange = served.wait_for(1, ended=True)[0]
    assert exchange.ending is Ending.CLIENT_GONE


def test_leaving_the_block_ends_a_hung_exchange() -> None:
    provider = FakeProvider({"alpha": Reply.hang()})
    with socket.socket() as sock:
        with served_provider(provider, KEYS) as served:
            data = json.dumps(CHAT).encode()
            sock.connect(("127.0.0.1", served.port))
            sock.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                + f"authorization: Bearer {ALPHA}\r\ncontent-length: {len(data)}\r\n\r\n".encode()
                + data
            )
            served.wait_for(1)
        sock.settimeout(5)
        assert sock.recv(1) == b""
    assert served.exchanges[0].ending is Ending.SHUTDOWN


def test_a_call_the_script_cannot_answer_fails_the_block() -> None:
    provider = FakeProvider(default=None)
    with pytest.raises(KeyError, match="no script for account 'alpha'"):
        with served_provider(provider, KEYS) as served:
            assert send(served, "/v1/chat/completions", CHAT).status == 500
