"""Benchmark of the served proxy: `eggpool serve` as a process, against a fast fake provider,
beside the same calls made to the provider directly. `python bench/bench_serve.py` prints a
side-by-side table; `BENCHMARKS` has the same shape as `bench/bench.py`'s so `make bench` can
merge it (one entry, "serve": the added p50 latency, with every other figure in `detail`).

Theory of operation. The figures are what a deployment sees: the latency the proxy adds to a
plain chat completion at concurrency 1 (proxy p50/p99 minus direct p50/p99), requests per
second at concurrency 64 for plain answers and for 20-chunk SSE streams, the proxy's CPU time
per request, its resident memory when idle and after the load, and the time from launch to
`/v1/readyz` answering 200. Three kinds of process take part, so that each figure belongs to
one of them: the provider (this file with `--provider`, a bare asyncio protocol answering
canned bytes, so it is never the bottleneck and its CPU is not counted as the proxy's); the
proxy (`python -m eggpool serve`, whose utime+stime and VmRSS are read from
/proc/<pid>/stat and /proc/<pid>/status around each load); and a load client per phase (this
file with `--client`: raw asyncio streams, one keep-alive connection per concurrent worker, h11
to parse answers), which reports its own CPU time so a saturated client shows up. Each phase
warms its connections first, then waits for a go on stdin, so the proxy's CPU is sampled around
the measured requests only. On a small machine the three compete for cores; the table says how
busy each was (CPU seconds / wall seconds), so a figure limited by the client or the provider
is visible as such, and the proxy's CPU is split into its event-loop thread and the rest (the
store writer): the event loop is one thread, so when it is busy 100% of the time the proxy is
the bottleneck and requests/s at c=64 is about 1 / (its CPU per request). The proxy runs with
`access_log = false` unless stated: one log line per request is a cost of its own, measured
separately at the end (`--no-access-log` skips that run). `--profile FILE` runs the proxy under
cProfile (main thread only; the figures are then slower) to see where its time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import h11

SERVER_KEY = "bench-key-0123456789"
MODEL = "bench-model"
ACCOUNTS = 4
STREAM_CHUNKS = 20
LATENCY_WARMUP = 50
LATENCY_REQUESTS = 300
LOAD_CONCURRENCY = 64
LOAD_REQUESTS = 3000
CLK_TCK = os.sysconf("SC_CLK_TCK")
TARGET_ADDED_P50_MS = 1.0
TARGET_RPS = 1500.0
TARGET_IDLE_RSS_MB = 40.0
TARGET_READY_S = 1.5

# --- the fake provider (`--provider`) -------------------------------------------------------

_MODELS_BODY = json.dumps(
    {"object": "list", "data": [{"id": MODEL, "object": "model"}]}, separators=(",", ":")
).encode()
_CHAT_BODY = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1760000000,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello from the bench."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18},
    },
    separators=(",", ":"),
).encode()


def _json_answer(body: bytes) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    return head % len(body) + body


def _stream_answer() -> bytes:
    events = []
    for i in range(STREAM_CHUNKS):
        chunk = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1760000000,
            "model": MODEL,
            "choices": [{"index": 0, "delta": {"content": f"token{i} "}, "finish_reason": None}],
        }
        events.append(b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n")
    usage = {"prompt_tokens": 12, "completion_tokens": STREAM_CHUNKS, "total_tokens": 32}
    events.append(
        b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","model":"%s",'
        b'"choices":[],"usage":%s}\n\n' % (MODEL.encode(), json.dumps(usage).encode())
    )
    events.append(b"data: [DONE]\n\n")
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    # One HTTP chunk per event, as a provider sends them, but all in one write: a fast provider.
    return head + b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events) + b"0\r\n\r\n"


MODELS_ANSWER = _json_answer(_MODELS_BODY)
CHAT_ANSWER = _json_answer(_CHAT_BODY)
STREAM_ANSWER = _stream_answer()


def _content_length(head: bytes) -> int:
    at = head.lower().find(b"\r\ncontent-length:")
    if at < 0:
        return 0
    start = at + len(b"\r\ncontent-length:")
    end = head.find(b"\r\n", start)
    return int(head[start : end if end >= 0 else len(head)])


class _Provider(asyncio.Protocol):
    """Answers `GET .../models` and `POST .../chat/completions` (plain or streamed), keep-alive.

    Parses just enough HTTP/1.1: a head up to the blank line, then a content-length body.
    """

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end]
            size = _content_length(head)
            if len(self.buffer) < end + 4 + size:
                return
            body = self.buffer[end + 4 : end + 4 + size]
            self.buffer = self.buffer[end + 4 + size :]
            if head.startswith(b"GET ") and b"/models" in head.split(b" ", 2)[1]:
                self.transport.write(MODELS_ANSWER)
            elif b'"stream": true' in body or b'"stream":true' in body:
                self.transport.write(STREAM_ANSWER)
            else:
                self.transport.write(CHAT_ANSWER)


async def _serve_provider() -> None:
    server = await asyncio.get_running_loop().create_server(_Provider, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


# --- the load client (`--client PORT MODE CONCURRENCY REQUESTS WARMUP`) ----------------------


def _request_events(port: int, stream: bool) -> tuple[h11.Request, h11.Data]:
    payload: dict[str, object] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say hello."}],
    }
    if stream:
        payload["stream"] = True
    body = json.dumps(payload).encode()
    request = h11.Request(
        method="POST",
        target="/v1/chat/completions",
        headers=[
            ("host", f"127.0.0.1:{port}"),
            ("authorization", f"Bearer {SERVER_KEY}"),
            ("content-type", "application/json"),
            ("content-length", str(len(body))),
        ],
    )
    return request, h11.Data(data=body)


class _Worker:
    """One keep-alive connection sending requests one after another and reading each fully."""

    def __init__(self, port: int, stream: bool) -> None:
        self.port = port
        self.request, self.body = _request_events(port, stream)
        self.failures = 0
        self.latencies: list[float] = []

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.connection = h11.Connection(h11.CLIENT)

    async def one(self) -> None:
        connection = self.connection
        started = time.perf_counter()
        for outgoing in (self.request, self.body, h11.EndOfMessage()):
            self.writer.write(connection.send(outgoing) or b"")
        status = 0
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                data = await self.reader.read(65536)
                if not data:
                    raise ConnectionError("the server closed the connection")
                connection.receive_data(data)
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("the server closed the connection")
        self.latencies.append(time.perf_counter() - started)
        if status != 200:
            self.failures += 1
        connection.start_next_cycle()


async def _client(port: int, stream: bool, concurrency: int, count: int, warmup: int) -> None:
    workers = [_Worker(port, stream) for _ in range(concurrency)]
    await asyncio.gather(*(w.connect() for w in workers))
    remaining = [warmup]

    async def drain(worker: _Worker) -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            await worker.one()

    await asyncio.gather(*(drain(w) for w in workers))
    warm_failures = sum(w.failures for w in workers)
    for worker in workers:
        worker.latencies.clear()
        worker.failures = 0
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    remaining[0] = count
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(drain(w) for w in workers))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    latencies = sorted(x for w in workers for x in w.latencies)
    cuts = statistics.quantiles(latencies, n=100)
    result = {
        "requests": len(latencies),
        "failures": sum(w.failures for w in workers) + warm_failures,
        "wall": wall,
        "cpu": cpu,
        "p50_ms": statistics.median(latencies) * 1e3,
        "p99_ms": cuts[98] * 1e3,
    }
    print(json.dumps(result), flush=True)
    for worker in workers:
        worker.writer.close()


# --- the orchestration -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Load:
    """One measured phase: the client's view and the server process's CPU during it."""

    requests: int
    failures: int
    wall: float
    client_cpu: float
    p50_ms: float
    p99_ms: float
    server_cpu: float  # the proxy's, or the provider's for a direct phase
    server_main_cpu: float  # of it, the event loop's thread (the rest: the store writer, ...)

    @property
    def rps(self) -> float:
        return self.requests / self.wall

    @property
    def server_cpu_us(self) -> float:
        return self.server_cpu / self.requests * 1e6

    def busy(self) -> str:
        """Server and client CPU as a share of one core over the phase."""
        return f"{self.server_cpu / self.wall:4.0%} / {self.client_cpu / self.wall:4.0%}"


@dataclass(frozen=True, kw_only=True)
class Pair:
    direct: Load
    proxy: Load


@dataclass(frozen=True, kw_only=True)
class ShellRun:
    """The figures of one more shell, measured the same way (`--shell quart`)."""

    shell: str
    ready_s: float
    idle_rss_mb: float
    loaded_rss_mb: float
    latency: Load
    plain: Load
    stream: Load


@dataclass(frozen=True, kw_only=True)
class Report:
    listening_s: float
    ready_s: float
    idle_rss_mb: float
    loaded_rss_mb: float
    peak_rss_mb: float
    latency: Pair
    plain: Pair
    stream: Pair
    logged_latency: Load | None  # the proxy with access_log on
    logged_plain: Load | None
    quart: ShellRun | None  # the same proxy as a Quart app on Hypercorn

    @property
    def added_p50_ms(self) -> float:
        return self.latency.proxy.p50_ms - self.latency.direct.p50_ms

    @property
    def added_p99_ms(self) -> float:
        return self.latency.proxy.p99_ms - self.latency.direct.p99_ms


def _cpu_seconds(pid: int, thread: bool = False) -> float:
    """A process's CPU seconds, or with `thread` those of its main thread only (proc(5))."""
    path = f"/proc/{pid}/task/{pid}/stat" if thread else f"/proc/{pid}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime: fields 14 and 15


def _status_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise KeyError(key)


@contextmanager
def _provider() -> Iterator[tuple[int, int]]:
    """The fake provider as a process: yields its pid and port."""
    process = subprocess.Popen(
        [sys.executable, __file__, "--provider"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        yield process.pid, int(process.stdout.readline())
    finally:
        process.terminate()
        process.wait()


def _config(directory: Path, provider_port: int, access_log: bool) -> Path:
    accounts = "".join(
        f'\n[[providers.bench.accounts]]\nname = "a{n}"\n'
        f'api_key = "sk-bench-a{n}-0123456789abcdef"\n'
        for n in range(1, ACCOUNTS + 1)
    )
    path = directory / f"config-{'log' if access_log else 'quiet'}.toml"
    path.write_text(
        f"""[server]
api_key = "{SERVER_KEY}"
access_log = {"true" if access_log else "false"}

[database]
path = "{directory / ("usage-log.sqlite3" if access_log else "usage.sqlite3")}"

[providers.bench]
base_url = "http://127.0.0.1:{provider_port}/v1"
{accounts}"""
    )
    return path


def _ready(url: str, deadline: float) -> None:
    while True:
        try:
            with urllib.request.urlopen(f"{url}/v1/readyz", timeout=5) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            exc.close()  # a 503 holds its connection until closed
            if time.monotonic() > deadline:
                raise
        time.sleep(0.005)


@contextmanager
def _proxy(
    config: Path, profile: str | None = None, shell: str = "anyio"
) -> Iterator[tuple[subprocess.Popen[str], int, float, float]]:
    """`eggpool serve` as a process: yields it, its port, and seconds from launch to its
    "listening" log line and to `/v1/readyz` answering 200 (after the first model listing)."""
    profiler = ["-m", "cProfile", "-o", str(Path(profile).resolve())] if profile else []
    started = time.perf_counter()
    command = [sys.executable, *profiler, "-m", "eggpool", "--config", str(config)]
    process = subprocess.Popen(
        [*command, "serve", "--port", "0", "--shell", shell],
        stderr=subprocess.PIPE,
        text=True,
        cwd=config.parent,  # not the checkout: `-m eggpool` runs the installed build
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stderr is not None
    stderr = process.stderr
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 20
        url = None
        while url is None and time.monotonic() < deadline:
            line = stderr.readline()
            if not line:
                break
            lines.append(line)
            if "listening" in line:
                match = re.search(r"url=(\S+)", line)
                assert match, line
                url = match.group(1)
                listening = time.perf_counter() - started
        if url is None:
            raise RuntimeError(f"eggpool serve did not start:\n{''.join(lines)}")
        _ready(url, deadline)
        ready = time.perf_counter() - started
        # The access log goes to stderr: keep the pipe drained so the proxy never blocks on it.
        threading.Thread(target=stderr.read, daemon=True).start()
        yield process, int(url.rsplit(":", 1)[1]), listening, ready
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        process.wait(20)


def _load(
    port: int, server_pid: int, *, stream: bool, concurrency: int, count: int, warmup: int
) -> Load:
    """One client process: warm up, then `count` requests, the server's CPU sampled around them."""
    args = [str(port), "stream" if stream else "plain", str(concurrency), str(count), str(warmup)]
    client = subprocess.Popen(
        [sys.executable, __file__, "--client", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert client.stdin is not None
    assert client.stdout is not None
    try:
        if client.stdout.readline().strip() != "ready":
            raise RuntimeError("the load client failed while warming up")
        before, before_main = _cpu_seconds(server_pid), _cpu_seconds(server_pid, thread=True)
        client.stdin.write("go\n")
        client.stdin.flush()
        line = client.stdout.readline()
        time.sleep(0.2)  # let the proxy's store writer finish what the load queued
        server_cpu = _cpu_seconds(server_pid) - before
        server_main_cpu = _cpu_seconds(server_pid, thread=True) - before_main
        if not line:
            raise RuntimeError("the load client failed during the load")
        result = json.loads(line)
    finally:
        client.stdin.close()
        client.wait(20)
    return Load(
        requests=result["requests"],
        failures=result["failures"],
        wall=result["wall"],
        client_cpu=result["cpu"],
        p50_ms=result["p50_ms"],
        p99_ms=result["p99_ms"],
        server_cpu=server_cpu,
        server_main_cpu=server_main_cpu,
    )


def _latency(port: int, pid: int) -> Load:
    return _load(
        port, pid, stream=False, concurrency=1, count=LATENCY_REQUESTS, warmup=LATENCY_WARMUP
    )


def _throughput(port: int, pid: int, stream: bool) -> Load:
    warmup = 2 * LOAD_CONCURRENCY
    return _load(
        port, pid, stream=stream, concurrency=LOAD_CONCURRENCY, count=LOAD_REQUESTS, warmup=warmup
    )


@functools.cache
def run(access_log_run: bool = True, profile: str | None = None, quart_run: bool = True) -> Report:
    """Everything, once: the table and the `BENCHMARKS` entry read the same run."""
    with tempfile.TemporaryDirectory() as tmp, _provider() as (provider_pid, provider_port):
        directory = Path(tmp)
        direct_latency = _latency(provider_port, provider_pid)
        direct_plain = _throughput(provider_port, provider_pid, stream=False)
        direct_stream = _throughput(provider_port, provider_pid, stream=True)
        quiet = _config(directory, provider_port, access_log=False)
        with _proxy(quiet, profile) as (proxy, port, listening, ready):
            idle_rss = _status_mb(proxy.pid, "VmRSS")
            latency = _latency(port, proxy.pid)
            plain = _throughput(port, proxy.pid, stream=False)
            stream = _throughput(port, proxy.pid, stream=True)
            loaded_rss = _status_mb(proxy.pid, "VmRSS")
            peak_rss = _status_mb(proxy.pid, "VmHWM")
        logged_latency = logged_plain = None
        if access_log_run:
            logged = _config(directory, provider_port, access_log=True)
            with _proxy(logged) as (proxy, port, _, _):
                logged_latency = _latency(port, proxy.pid)
                logged_plain = _throughput(port, proxy.pid, stream=False)
        quart = None
        if quart_run:
            with _proxy(quiet, shell="quart") as (proxy, port, _, quart_ready):
                quart_idle = _status_mb(proxy.pid, "VmRSS")
                quart = ShellRun(
                    shell="quart",
                    ready_s=quart_ready,
                    idle_rss_mb=quart_idle,
                    latency=_latency(port, proxy.pid),
                    plain=_throughput(port, proxy.pid, stream=False),
                    stream=_throughput(port, proxy.pid, stream=True),
                    loaded_rss_mb=_status_mb(proxy.pid, "VmRSS"),
                )
    return Report(
        listening_s=listening,
        ready_s=ready,
        idle_rss_mb=idle_rss,
        loaded_rss_mb=loaded_rss,
        peak_rss_mb=peak_rss,
        latency=Pair(direct=direct_latency, proxy=latency),
        plain=Pair(direct=direct_plain, proxy=plain),
        stream=Pair(direct=direct_stream, proxy=stream),
        logged_latency=logged_latency,
        logged_plain=logged_plain,
        quart=quart,
    )


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def table(report: Report) -> str:
    """The side-by-side table `python bench/bench_serve.py` prints."""
    r = report
    rows: list[tuple[str, str, str, str]] = [
        ("figure", "direct", "proxy", "target"),
        (
            "latency p50, c=1 (ms)",
            f"{r.latency.direct.p50_ms:.3f}",
            f"{r.latency.proxy.p50_ms:.3f}",
            "",
        ),
        (
            "latency p99, c=1 (ms)",
            f"{r.latency.direct.p99_ms:.3f}",
            f"{r.latency.proxy.p99_ms:.3f}",
            "",
        ),
        (
            "added p50, c=1 (ms)",
            "",
            f"{r.added_p50_ms:.3f}",
            f"< {TARGET_ADDED_P50_MS:g} ms  {_met(r.added_p50_ms < TARGET_ADDED_P50_MS)}",
        ),
        ("added p99, c=1 (ms)", "", f"{r.added_p99_ms:.3f}", ""),
    ]
    for label, pair in (("plain", r.plain), ("stream", r.stream)):
        ok = pair.proxy.rps >= TARGET_RPS
        rows += [
            (
                f"{label} req/s, c={LOAD_CONCURRENCY}",
                f"{pair.direct.rps:,.0f}",
                f"{pair.proxy.rps:,.0f}",
                f">= {TARGET_RPS:,.0f}  {_met(ok)}",
            ),
            (
                f"{label} p50 / p99, c={LOAD_CONCURRENCY} (ms)",
                f"{pair.direct.p50_ms:.1f} / {pair.direct.p99_ms:.1f}",
                f"{pair.proxy.p50_ms:.1f} / {pair.proxy.p99_ms:.1f}",
                "",
            ),
            (
                f"{label} server CPU (µs/req)",
                f"{pair.direct.server_cpu_us:.0f}",
                f"{pair.proxy.server_cpu_us:.0f}",
                "",
            ),
            (
                f"{label} of which main thread",
                f"{pair.direct.server_main_cpu / pair.direct.server_cpu:.0%}",
                f"{pair.proxy.server_main_cpu / pair.proxy.server_cpu:.0%}",
                "",
            ),
            (
                f"{label} client CPU (µs/req)",
                f"{pair.direct.client_cpu / pair.direct.requests * 1e6:.0f}",
                f"{pair.proxy.client_cpu / pair.proxy.requests * 1e6:.0f}",
                "",
            ),
            (f"{label} busy server / client", pair.direct.busy(), pair.proxy.busy(), ""),
        ]
    latency_cpu = r.latency.proxy.server_cpu_us
    rows += [
        ("plain server CPU, c=1 (µs/req)", "", f"{latency_cpu:.0f}", ""),
        (
            "idle RSS after ready (MB)",
            "",
            f"{r.idle_rss_mb:.1f}",
            f"< {TARGET_IDLE_RSS_MB:g} MB  {_met(r.idle_rss_mb < TARGET_IDLE_RSS_MB)}",
        ),
        ("RSS after load / peak (MB)", "", f"{r.loaded_rss_mb:.1f} / {r.peak_rss_mb:.1f}", ""),
        (
            "launch to ready (s)",
            "",
            f"{r.ready_s:.2f}",
            f"< {TARGET_READY_S:g} s  {_met(r.ready_s < TARGET_READY_S)}",
        ),
        ("launch to 'listening' log (s)", "", f"{r.listening_s:.2f}", ""),
    ]
    if r.logged_latency is not None and r.logged_plain is not None:
        added = r.logged_latency.p50_ms - r.latency.direct.p50_ms
        rows += [
            ("access_log on: added p50 (ms)", "", f"{added:.3f}", ""),
            (
                f"access_log on: plain req/s, c={LOAD_CONCURRENCY}",
                "",
                f"{r.logged_plain.rps:,.0f}",
                f"(CPU {r.logged_plain.server_cpu_us:.0f} µs/req)",
            ),
        ]
    failures = sum(
        load.failures
        for pair in (r.latency, r.plain, r.stream)
        for load in (pair.direct, pair.proxy)
    )
    if r.quart is not None:
        q = r.quart
        added = q.latency.p50_ms - r.latency.direct.p50_ms
        rows += [
            ("--shell quart (Quart on Hypercorn):", "", "", ""),
            ("  added p50, c=1 (ms)", "", f"{added:.3f}", ""),
            (
                f"  plain req/s, c={LOAD_CONCURRENCY}",
                f"{r.plain.direct.rps:,.0f}",
                f"{q.plain.rps:,.0f}",
                f"(CPU {q.plain.server_cpu_us:.0f} µs/req)",
            ),
            (
                f"  stream req/s, c={LOAD_CONCURRENCY}",
                f"{r.stream.direct.rps:,.0f}",
                f"{q.stream.rps:,.0f}",
                f"(CPU {q.stream.server_cpu_us:.0f} µs/req)",
            ),
            ("  idle RSS after ready (MB)", "", f"{q.idle_rss_mb:.1f}", ""),
            ("  RSS after load (MB)", "", f"{q.loaded_rss_mb:.1f}", ""),
            ("  launch to ready (s)", "", f"{q.ready_s:.2f}", ""),
        ]
        failures += sum(load.failures for load in (q.latency, q.plain, q.stream))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        f"{a:{widths[0]}}  {b:>{widths[1]}}  {c:>{widths[2]}}  {d}".rstrip() for a, b, c, d in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    lines += [
        "",
        f"proxy: access_log = false unless stated, {ACCOUNTS} accounts, one fake provider in its"
        " own process; 'server' is the proxy, or the provider for the direct column.",
        f"c=1: {LATENCY_REQUESTS} requests after {LATENCY_WARMUP} warm-up; c={LOAD_CONCURRENCY}:"
        f" {LOAD_REQUESTS:,} requests per phase, {STREAM_CHUNKS}-chunk SSE streams; "
        f"busy = CPU seconds / wall seconds (100% = one core of {os.cpu_count()}).",
        f"non-200 answers: {failures}",
    ]
    return "\n".join(lines)


def bench_serve() -> dict[str, object]:
    r = run()
    detail = (
        f"proxy-direct at c=1 (p99 {r.added_p99_ms:.2f} ms); c={LOAD_CONCURRENCY} req/s plain "
        f"{r.plain.proxy.rps:,.0f} (direct {r.plain.direct.rps:,.0f}), stream "
        f"{r.stream.proxy.rps:,.0f} (direct {r.stream.direct.rps:,.0f}); proxy CPU "
        f"{r.plain.proxy.server_cpu_us:.0f}/{r.stream.proxy.server_cpu_us:.0f} µs/req "
        f"plain/stream; RSS idle {r.idle_rss_mb:.1f} MB, loaded {r.loaded_rss_mb:.1f} MB; "
        f"ready {r.ready_s:.2f} s; access_log off"
    )
    return {"unit": "ms added", "best": r.added_p50_ms, "median": r.added_p50_ms, "detail": detail}


def bench_serve_quart() -> dict[str, object]:
    r = run()
    q = r.quart
    assert q is not None
    added = q.latency.p50_ms - r.latency.direct.p50_ms
    detail = (
        f"--shell quart, same run as serve: c={LOAD_CONCURRENCY} req/s plain {q.plain.rps:,.0f}, "
        f"stream {q.stream.rps:,.0f}; proxy CPU {q.plain.server_cpu_us:.0f}/"
        f"{q.stream.server_cpu_us:.0f} µs/req plain/stream; RSS idle {q.idle_rss_mb:.1f} MB, "
        f"loaded {q.loaded_rss_mb:.1f} MB; ready {q.ready_s:.2f} s"
    )
    return {"unit": "ms added", "best": added, "median": added, "detail": detail}


BENCHMARKS: dict[str, Callable[[], dict[str, object]]] = {
    "serve": bench_serve,
    "serve_quart": bench_serve_quart,
}


def main() -> None:
    if sys.argv[1:2] == ["--provider"]:
        asyncio.run(_serve_provider())
        return
    if sys.argv[1:2] == ["--client"]:
        port, mode, concurrency, count, warmup = sys.argv[2:]
        asyncio.run(
            _client(int(port), mode == "stream", int(concurrency), int(count), int(warmup))
        )
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--no-access-log", action="store_true", help="skip the extra run with access_log on"
    )
    parser.add_argument(
        "--profile", metavar="FILE", help="run the proxy under cProfile, writing FILE (slower)"
    )
    parser.add_argument("--no-quart", action="store_true", help="skip the Quart shell's run")
    args = parser.parse_args()
    started = time.perf_counter()
    report = run(
        access_log_run=not args.no_access_log, profile=args.profile, quart_run=not args.no_quart
    )
    print(table(report))
    print(f"(benchmark took {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
