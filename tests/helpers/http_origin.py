"""A tiny OpenAI-style provider on 127.0.0.1, in a thread: for tests that run `eggpool`
as a process (or through `anyio.run`) and need a real socket to talk to."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import attrs


@attrs.define
class Origin:
    url: str
    models: tuple[str, ...]
    seen: list[tuple[str, str, dict[str, str]]] = attrs.field(factory=list)
    status: int = 200


def _handler(origin: Origin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _reply(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _record(self) -> bytes:
            size = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(size) if size else b""
            origin.seen.append((self.command, self.path, dict(self.headers.items())))
            return body

        def do_GET(self) -> None:
            self._record()
            if origin.status != 200:
                self._reply(origin.status, {"error": {"message": "no", "type": "auth"}})
                return
            data = [{"id": model, "object": "model"} for model in origin.models]
            self._reply(200, {"object": "list", "data": data})

        def do_POST(self) -> None:
            request = json.loads(self._record() or b"{}")
            self._reply(
                200,
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "model": request.get("model"),
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "hello"},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
                },
            )

    return Handler


@contextmanager
def origin(*models: str, status: int = 200) -> Iterator[Origin]:
    box = Origin(url="", models=models or ("gpt-test",), status=status)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(box))
    server.daemon_threads = True
    box.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield box
    finally:
        server.shutdown()
        server.server_close()
