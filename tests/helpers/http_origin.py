"""A tiny OpenAI-style provider on 127.0.0.1, in a thread: for tests that run `eggpool`
as a process (or through `anyio.run`) and need a real socket to talk to."""

from __future__ import annotations

import json
import threading
import time
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
    chunks: int = 3  # content events of a streamed answer
    chunk_delay: float = 0.0  # seconds before each streamed event


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

        def _stream(self, model: str) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for index in range(origin.chunks):
                time.sleep(origin.chunk_delay)
                delta = {"content": f"word{index} "}
                self._chunk({"model": model, "choices": [{"index": 0, "delta": delta}]})
            usage = {"prompt_tokens": 3, "completion_tokens": origin.chunks}
            self._chunk({"model": model, "choices": [], "usage": usage})
            self._write(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")

        def _chunk(self, event: object) -> None:
            self._write(b"data: " + json.dumps(event).encode() + b"\n\n")

        def _write(self, data: bytes) -> None:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def do_POST(self) -> None:
            request = json.loads(self._record() or b"{}")
            if request.get("stream"):
                self._stream(str(request.get("model")))
                return
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


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """A client (the proxy) that went away mid-stream is expected here, not an error."""


@contextmanager
def origin(
    *models: str, status: int = 200, chunks: int = 3, chunk_delay: float = 0.0
) -> Iterator[Origin]:
    box = Origin(
        url="",
        models=models or ("gpt-test",),
        status=status,
        chunks=chunks,
        chunk_delay=chunk_delay,
    )
    server = _Server(("127.0.0.1", 0), _handler(box))
    box.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield box
    finally:
        server.shutdown()
        server.server_close()
