"""EggPool's own benchmark: `make bench` (or `python bench/bench.py [--json FILE] [NAME...]`).

Each benchmark runs a fixed workload several times and reports the best
and the median run (the best is the least disturbed by other work on the
machine; the median shows the spread). Workloads are built in memory and
are the same on every run, so figures compare across commits on one
machine. Figures in docs/performance.md say which machine they came from.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# `--installed`: measure the eggpool installed in this interpreter (the accelerated build
# of `make accel`), not the checkout's (which then comes after it, for tests/helpers).
if "--installed" in sys.argv:
    sys.path.append(str(ROOT))
else:
    sys.path.insert(0, str(ROOT))

from bench_serve import BENCHMARKS as SERVE_BENCHMARKS  # noqa: E402
from bench_stats import BENCHMARKS as STATS_BENCHMARKS  # noqa: E402
from bench_store import BENCHMARKS as STORE_BENCHMARKS  # noqa: E402
from bench_upstream import BENCHMARKS as UPSTREAM_BENCHMARKS  # noqa: E402

from eggpool import build_name  # noqa: E402
from eggpool.core.catalog import Catalog, ModelListFailure, parse_model_list  # noqa: E402
from eggpool.core.config import Protocol, parse_config  # noqa: E402
from eggpool.core.events import (  # noqa: E402
    ClientRequestReceived,
    Event,
    Now,
    StateLoaded,
    UpstreamBodyEnded,
    UpstreamBodyReceived,
    UpstreamResponseStarted,
)
from eggpool.core.health import Health  # noqa: E402
from eggpool.core.ledger import Ledger, account_limits  # noqa: E402
from eggpool.core.pool import Pool  # noqa: E402
from eggpool.core.routing import Router  # noqa: E402
from eggpool.core.sse import SSEDecoder  # noqa: E402
from eggpool.core.usage import AnthropicStreamObserver, OpenAIStreamObserver  # noqa: E402
from eggpool.simulated.scenario import parse_scenario  # noqa: E402
from eggpool.simulated.simulate import run_scenario  # noqa: E402
from tests.helpers.example_config import example_env, uncomment_defaults  # noqa: E402

TCP_SEGMENT = 1448  # what a stream arrives in over a typical LAN/TLS path


def openai_stream(events: int) -> bytes:
    parts = []
    for i in range(events):
        chunk = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1760000000,
            "model": "gpt-4.1-mini",
            "choices": [{"index": 0, "delta": {"content": f"token{i} "}, "finish_reason": None}],
            "usage": None,
        }
        parts.append(b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n")
    usage = {"prompt_tokens": 900, "completion_tokens": events, "total_tokens": 900 + events}
    parts.append(
        b'data: {"id":"chatcmpl-bench","choices":[],"usage":'
        + json.dumps(usage).encode()
        + b"}\n\n"
    )
    parts.append(b"data: [DONE]\n\n")
    return b"".join(parts)


def anthropic_stream(events: int) -> bytes:
    def ev(name: str, obj: object) -> bytes:
        return f"event: {name}\ndata: {json.dumps(obj, separators=(',', ':'))}\n\n".encode()

    parts = [
        ev(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_b",
                    "model": "claude",
                    "usage": {"input_tokens": 900, "output_tokens": 1},
                },
            },
        ),
        ev(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
    ]
    for i in range(events):
        parts.append(
            ev(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": f"token{i} "},
                },
            )
        )
    parts += [
        ev("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ev(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": events},
            },
        ),
        ev("message_stop", {"type": "message_stop"}),
    ]
    return b"".join(parts)


def segments(data: bytes) -> list[bytes]:
    return [data[i : i + TCP_SEGMENT] for i in range(0, len(data), TCP_SEGMENT)]


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    fn()  # warm up
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return runs


def bench_sse_decode(raw: bool) -> dict[str, object]:
    data = openai_stream(2000)
    pieces = segments(data)

    def work() -> None:
        decoder = SSEDecoder(keep_raw=raw)
        for piece in pieces:
            decoder.feed(piece)
        decoder.feed_eof()

    runs = timed(work, 30)
    mb = len(data) / 1e6
    return {
        "unit": "MB/s",
        "best": mb / min(runs),
        "median": mb / statistics.median(runs),
        "detail": f"{len(data):,} bytes, 2,001 events, {TCP_SEGMENT}-byte segments",
    }


def bench_observer(
    make: Callable[[], OpenAIStreamObserver | AnthropicStreamObserver], data: bytes, events: int
) -> dict[str, object]:
    pieces = segments(data)

    def work() -> None:
        observer = make()
        for piece in pieces:
            observer.feed(piece)
        observer.feed_eof()
        observer.result()

    runs = timed(work, 30)
    return {
        "unit": "µs/event",
        "best": min(runs) / events * 1e6,
        "median": statistics.median(runs) / events * 1e6,
        "detail": f"{events:,} events, decode + observe, {TCP_SEGMENT}-byte segments",
    }


def bench_config_parse() -> dict[str, object]:
    text = (ROOT / "eggpool" / "config.example.toml").read_text("utf-8")
    document = tomllib.loads(uncomment_defaults(text))
    env = example_env(text)
    runs = timed(lambda: parse_config(document, env), 200)
    return {
        "unit": "ms",
        "best": min(runs) * 1e3,
        "median": statistics.median(runs) * 1e3,
        "detail": "the example config with every default uncommented (parse_config only)",
    }


def bench_routing() -> dict[str, object]:
    """One routing decision: 100 accounts (5 providers x 20) all serving the model, 300 models."""
    providers = {
        f"p{p}": {
            "base_url": f"https://p{p}.example.com/v1",
            "routing_priority": p % 2,
            "accounts": [
                {"name": f"p{p}-a{a}", "api_key": "sk-bench-0123456789"} for a in range(20)
            ],
        }
        for p in range(5)
    }
    config = parse_config({"providers": providers}, {})
    now = 1_800_000_000.0
    catalog = Catalog(config, now=now)
    page = parse_model_list(
        json.dumps({"data": [{"id": f"model-{i}"} for i in range(300)]}).encode()
    )
    assert not isinstance(page, ModelListFailure)
    for account in config.accounts:
        catalog.refresh(account.name, page, now=now)
    ledger = Ledger(account_limits(config))
    health = Health({a.name: a.provider_id for a in config.accounts})
    for i, account in enumerate(config.accounts):
        ledger.commit(account.name, 10_000 * i, now)
    router = Router(config)
    inflight = {a.name: i % 3 for i, a in enumerate(config.accounts)}
    rounds = 2000

    def work() -> None:
        for i in range(rounds):
            router.decide(
                catalog=catalog, health=health, ledger=ledger, inflight=inflight,
                model="model-150", protocol=Protocol.OPENAI, pinned=None, estimate=20_000,
                now=now, entropy=i, session=f"s{i % 50}",
            )  # fmt: skip

    runs = timed(work, 10)
    return {
        "unit": "µs/decision",
        "best": min(runs) / rounds * 1e6,
        "median": statistics.median(runs) / rounds * 1e6,
        "detail": "100 accounts (all candidates), 300 models, session affinity on",
    }


def _pool_setup() -> tuple[Pool, Callable[[float], Now]]:
    providers = {
        f"p{p}": {
            "base_url": f"https://p{p}.example.com/v1",
            "models_endpoint": {"method": "DISABLED"},
            "static_models": [{"id": "gpt-4.1-mini"}],
            "accounts": [
                {"name": f"p{p}-a{a}", "api_key": "sk-bench-0123456789"} for a in range(5)
            ],
        }
        for p in range(2)
    }
    config = parse_config(
        {"server": {"api_key": "bench-server-key-0123"}, "providers": providers}, {}
    )

    def clock(mono: float) -> Now:
        return Now(mono, 1_800_000_000.0 + mono)

    pool = Pool(config, now=clock(0.0))
    pool.handle(StateLoaded(now=clock(0.0)))
    return pool, clock


def bench_pool(chunks: int) -> dict[str, object]:
    """The Pool's own cost for whole requests, no I/O: events in, effects out."""
    pool, clock = _pool_setup()
    body = json.dumps(
        {
            "model": "gpt-4.1-mini",
            "stream": chunks > 0,
            "messages": [{"role": "user", "content": "Say hello in five words." * 20}],
        }
    ).encode()
    headers = (
        ("authorization", "Bearer bench-server-key-0123"),
        ("content-type", "application/json"),
    )
    plain = json.dumps(
        {
            "id": "chatcmpl-b",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}}],
            "usage": {"prompt_tokens": 120, "completion_tokens": 6},
        }
    ).encode()
    stream = openai_stream(chunks)
    pieces = [stream[i : i + 256] for i in range(0, len(stream), 256)] if chunks else [plain]
    rounds = 2000 if chunks == 0 else 500
    counter = [0]

    def requests() -> list[list[Event]]:
        """Every event of `rounds` requests, built before the clock starts: making events
        is the shell's work, handling them the Pool's."""
        batch = []
        for _ in range(rounds):
            counter[0] += 1
            i = counter[0]
            now = clock(float(i))
            attempt = f"b{i}#1"
            batch.append(
                [
                    ClientRequestReceived(
                        now=now, request_id=f"b{i}", entropy=i, method="POST",
                        path="/v1/chat/completions", headers=headers, body=body,
                    ),
                    UpstreamResponseStarted(now=now, attempt_id=attempt, status=200, headers=()),
                    *(UpstreamBodyReceived(now=now, attempt_id=attempt, data=p) for p in pieces),
                    UpstreamBodyEnded(now=now, attempt_id=attempt),
                ]
            )  # fmt: skip
        return batch

    handle = pool.handle
    batches = [requests() for _ in range(9)]

    def work() -> None:
        for events in batches.pop():
            for event in events:
                handle(event)

    runs = timed(work, 8)
    return {
        "unit": "µs/request",
        "best": min(runs) / rounds * 1e6,
        "median": statistics.median(runs) / rounds * 1e6,
        "detail": (
            "non-streaming: receive, route, dispatch, relay, finalize (target < 100 µs)"
            if chunks == 0
            else f"a {chunks}-chunk stream, relayed in 256-byte pieces"
        ),
    }


def bench_simulate() -> dict[str, object]:
    """`eggpool simulate run` on docs/examples' pool shape: 3 simulated hours at 2 requests/s."""
    document = {
        "pool": {
            "server": {"api_key": "sk-bench-server-0123"},
            "providers": {
                "p": {
                    "base_url": "https://p.example/v1",
                    "accounts": [
                        {"name": f"a{n}", "api_key": f"sk-bench-a{n}-0123456789"} for n in (1, 2)
                    ],
                }
            },
        },
        "traffic": {
            "duration": 3 * 3600,
            "rate": 2,
            "arrival": "constant",
            "models": [{"name": "gpt-4o-mini"}],
        },
    }
    scenario = parse_scenario(document, base_dir=ROOT)
    runs = timed(lambda: run_scenario(scenario), 3)
    requests = 3 * 3600 * 2
    return {
        "unit": "requests/s",
        "best": requests / min(runs),
        "median": requests / statistics.median(runs),
        "detail": f"{requests:,} simulated requests (half streamed), 2 accounts; a 24 h day "
        f"at 2 requests/s (172,800) takes about {172_800 * min(runs) / requests:.0f} s at best",
    }


BENCHMARKS: dict[str, Callable[[], dict[str, object]]] = {
    "sse_decode": lambda: bench_sse_decode(raw=False),
    "sse_decode_raw": lambda: bench_sse_decode(raw=True),
    "openai_observer": lambda: bench_observer(OpenAIStreamObserver, openai_stream(2000), 2001),
    "openai_observer_strip": lambda: bench_observer(
        lambda: OpenAIStreamObserver(strip_usage_chunk=True), openai_stream(2000), 2001
    ),
    "anthropic_observer": lambda: bench_observer(
        AnthropicStreamObserver, anthropic_stream(2000), 2005
    ),
    "config_parse": bench_config_parse,
    "routing_decision": bench_routing,
    "pool_request": lambda: bench_pool(0),
    "pool_stream_20": lambda: bench_pool(20),
    "simulate": bench_simulate,
    **UPSTREAM_BENCHMARKS,
    **SERVE_BENCHMARKS,
    **STORE_BENCHMARKS,
    **STATS_BENCHMARKS,
}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown cpu"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "names", nargs="*", help=f"benchmarks to run (default all: {', '.join(BENCHMARKS)})"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument(
        "--installed",
        action="store_true",
        help="measure the installed eggpool (e.g. the accelerated build), not this checkout",
    )
    args = parser.parse_args()
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    print(
        f"python {platform.python_version()} on {platform.machine()}, {cpu_name()}; "
        f"eggpool {build_name()}"
    )
    results = {}
    for name in args.names or BENCHMARKS:
        result = BENCHMARKS[name]()
        results[name] = result
        best, median, unit = result["best"], result["median"], result["unit"]
        print(f"{name:22} best {best:9.2f} {unit:9} median {median:9.2f}   {result['detail']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", "utf-8")


if __name__ == "__main__":
    main()
