"""`kill -9` in the middle of 20 live streams, then a restart on the same database: nothing
is left pending, the crash is recorded, and the proxy serves again."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import time
from pathlib import Path
from urllib.parse import urlsplit

from tests.helpers.http_origin import origin
from tests.helpers.subprocess_server import SERVER_KEY, post, serving

STREAMS = 20


def config_text(base_url: str) -> str:
    accounts = "".join(
        f"""
[[providers.fake.accounts]]
name = "acct{n}"
api_key = "sk-acct{n}-0123456789abcdef"
"""
        for n in range(3)
    )
    return f"""
[server]
api_key = "{SERVER_KEY}"

[database]
path = "usage.sqlite3"

[providers.fake]
base_url = "{base_url}"
{accounts}"""


def open_stream(url: str) -> socket.socket:
    """Start a streamed chat completion and return once its first event has arrived."""
    parts = urlsplit(url)
    assert parts.port is not None
    body = json.dumps(
        {"model": "gpt-test", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    ).encode()
    sock = socket.create_connection(("127.0.0.1", parts.port), timeout=10)
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


def rows(db_path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db_path) as db:
        return list(db.execute(sql))


def test_kill_9_during_20_streams_then_restart_leaves_nothing_pending(tmp_path: Path) -> None:
    db_path = tmp_path / "usage.sqlite3"
    with origin(chunks=400, chunk_delay=0.05) as provider:  # each stream would last 20 s
        config = tmp_path / "config.toml"
        config.write_text(config_text(provider.url))
        with serving(config) as (process, url, _):
            streams = [open_stream(url) for _ in range(STREAMS)]
            time.sleep(0.3)  # past the store's commit delay: the starts are on disk
            process.send_signal(signal.SIGKILL)
            process.wait(10)
            for sock in streams:
                sock.close()
        pending = rows(db_path, "SELECT request_id FROM requests WHERE status = 'pending'")
        assert len(pending) == STREAMS  # what the crash left behind

        with serving(config) as (process, url, _):
            status, body = post(
                f"{url}/v1/chat/completions",
                {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]},
            )
            assert status == 200, body
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=20)
            assert process.returncode == 0

    assert rows(db_path, "SELECT count(*) FROM requests WHERE status = 'pending'") == [(0,)]
    outcomes = rows(
        db_path, "SELECT outcome, count(*) FROM requests GROUP BY outcome ORDER BY outcome"
    )
    assert outcomes == [("completed", 1), ("interrupted", STREAMS)]
    interrupted = rows(
        db_path, "SELECT cost_microdollars FROM requests WHERE outcome = 'interrupted'"
    )
    assert {cost for (cost,) in interrupted} == {0}  # their reservations died with the crash
    events = rows(db_path, "SELECT kind, detail FROM operational_events")
    assert ("crash_recovery", f"{STREAMS} pending request(s) marked interrupted") in events
