"""Benchmarks of the upstream client (`eggpool/shells/_upstream.py`): its own cost per request
and per streamed chunk. `python bench/bench_upstream.py [NAME...]` runs them alone; `BENCHMARKS`
has the same shape as `bench/bench.py`'s so `make bench` can merge them.

Theory of operation. What we want is the *client's* overhead, not the speed
of a loopback server, so the origin runs in a separate process (this file
with `--serve`, a bare asyncio protocol that answers from canned bytes)
and the figures are the benchmark process's CPU time (`time.process_time`)
divided by the work done: h11 parsing, pool bookkeeping, anyio and event
loop costs, the receiver calls, and the client side of the syscalls. Wall
time per unit is given in `detail` for reference; it also holds the
server's share and the loopback latency. The client runs on asyncio, the
backend the shells use by default.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # bench.py --installed put it last, after the installed eggpool
    sys.path.insert(0, str(ROOT))

from eggpool.core.retry import TransportFailure  # noqa: E402
from eggpool.shells._upstream import UpstreamClient, UpstreamRequest  # noqa: E402

SMALL_BODY = b'{"id":"chatcmpl-b","choices":[{"index":0,"message":{"content":"Hi"}}]}'
SMALL_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
    % (len(SMALL_BODY), SMALL_BODY)
)
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
)
SSE_EVENT = b'data: {"choices":[{"index":0,"delta":{"content":"token "}}]}\n\n'
STREAM_CHUNK = b"%x\r\n%s\r\n" % (len(SSE_EVENT), SSE_EVENT)
REQUESTS = 2000
CHUNKS = 20000
RUNS = 7


class _Origin(asyncio.Protocol):
    """Answers `GET /` with a small JSON body and `GET /stream/N` with N SSE events, chunked."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:  # the benchmarks send no request bodies
            head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            target = head.split(b" ", 2)[1]
            if target.startswith(b"/stream/"):
                self.transport.write(STREAM_HEAD)
                for _ in range(int(target.rsplit(b"/", 1)[1])):
                    self.transport.write(STREAM_CHUNK)  # one write per event, as a provider does
                self.transport.write(b"0\r\n\r\n")
            else:
                self.transport.write(SMALL_RESPONSE)


async def _serve() -> None:
    server = await asyncio.get_running_loop().create_server(_Origin, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


@contextmanager
def _origin() -> Iterator[int]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        yield int(process.stdout.readline())
    finally:
        process.terminate()
        process.wait()


class _Count:
    """A receiver that keeps nothing: the benchmark measures the client, not a recorder."""

    def __init__(self) -> None:
        self.chunks = 0
        self.bytes = 0
        self.ends = 0

    def head(self, status: int, headers: tuple[tuple[str, str], ...]) -> None:
        pass

    def chunk(self, data: bytes) -> None:
        self.chunks += 1
        self.bytes += len(data)

    def end(self) -> None:
        self.ends += 1

    def failed(self, failure: TransportFailure, detail: str) -> None:
        raise AssertionError(f"benchmark request failed: {failure} {detail}")


def _measure(port: int, path: str, count: int) -> tuple[float, float, _Count]:
    """(CPU seconds, wall seconds, receiver) for `count` GETs of `path` on one client."""
    receiver = _Count()

    async def main() -> tuple[float, float]:
        client = UpstreamClient()
        request = UpstreamRequest(
            method="GET",
            url=f"http://127.0.0.1:{port}{path}",
            headers=(("Accept", "application/json"),),
        )
        await client.send(request, receiver)  # connect outside the measurement
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(count):
            await client.send(request, receiver)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        await client.aclose()
        return cpu, wall

    cpu, wall = anyio.run(main, backend="asyncio")
    assert receiver.ends == count + 1
    return cpu, wall, receiver


def bench_request() -> dict[str, object]:
    with _origin() as port:
        runs = [_measure(port, "/", REQUESTS) for _ in range(RUNS)]
    cpu = [run[0] / REQUESTS * 1e6 for run in runs]
    wall = statistics.median(run[1] for run in runs) / REQUESTS * 1e6
    return {
        "unit": "µs/request",
        "best": min(cpu),
        "median": statistics.median(cpu),
        "detail": (
            f"client CPU, {REQUESTS:,} keep-alive GETs, {len(SMALL_BODY)}-byte JSON body "
            f"(wall {wall:.0f} µs with the server)"
        ),
    }


def bench_stream_chunk() -> dict[str, object]:
    with _origin() as port:
        runs = [_measure(port, f"/stream/{CHUNKS}", 1) for _ in range(RUNS)]
    cpu = [run[0] / CHUNKS * 1e6 for run in runs]
    wall = statistics.median(run[1] for run in runs) / CHUNKS * 1e6
    reads = statistics.median(run[2].chunks / 2 for run in runs)  # two streams per run
    return {
        "unit": "µs/chunk",
        "best": min(cpu),
        "median": statistics.median(cpu),
        "detail": (
            f"client CPU, one chunked stream of {CHUNKS:,} {len(SSE_EVENT)}-byte SSE events "
            f"arriving in ~{reads:,.0f} reads/chunk() calls (wall {wall:.2f} µs)"
        ),
    }


BENCHMARKS: dict[str, Callable[[], dict[str, object]]] = {
    "upstream_request": bench_request,
    "upstream_stream_chunk": bench_stream_chunk,
}


def main() -> None:
    if sys.argv[1:] == ["--serve"]:
        asyncio.run(_serve())
        return
    for name in sys.argv[1:] or BENCHMARKS:
        result = BENCHMARKS[name]()
        best, median, unit = result["best"], result["median"], result["unit"]
        print(f"{name:22} best {best:9.2f} {unit:10} median {median:9.2f}   {result['detail']}")


if __name__ == "__main__":
    main()
