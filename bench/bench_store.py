"""Benchmark of the store (`eggpool/shells/_store.py`) as the serving loop feels it.
`make bench` runs it with the others (`BENCHMARKS` has the shape of `bench/bench.py`'s);
`python bench/bench.py store_loop_lag` runs it alone.

Theory of operation. The store writes on its own thread so that the event
loop never waits for SQLite (tests/shells/test_store.py checks that no
statement runs on the caller's thread). What is left to measure is how much
the loop still feels a heavy write load: the GIL the writer holds while it
builds and commits batches. An anyio (asyncio) loop persists 5,100
records/s (17 requests x 3 records every 10 ms) for 2 s while a watcher
task sleeps 1 ms at a time; the loop's lag is the overshoot of those
sleeps. The figure is its 99th percentile.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # bench.py --installed put it last, after the installed eggpool
    sys.path.insert(0, str(ROOT))

from eggpool.core.config import parse_config  # noqa: E402
from eggpool.core.effects import AttemptEnded, RequestFinalized, RequestStarted  # noqa: E402
from eggpool.shells._store import Store  # noqa: E402

TICKS, PER_TICK, TICK = 200, 17, 0.01


def _records(request_id: str, at: float) -> tuple[object, ...]:
    return (
        RequestStarted(
            request_id=request_id, at=at, protocol="openai", model="m", streamed=False,
            client="127.0.0.1",
        ),
        AttemptEnded(
            request_id=request_id, attempt_id=f"{request_id}#1", account="a", provider="p",
            at=at, status=200, category=None, failover=False, latency=0.2,
        ),
        RequestFinalized(
            request_id=request_id, at=at, outcome="completed", status=200, model="m",
            account="a", provider="p", attempts=1, usage=None, cost_microdollars=10,
            exactness="exact", latency=0.2, ttft=0.1, streamed=False,
        ),
    )  # fmt: skip


def _run(path: Path) -> tuple[list[float], float]:
    """One run: the loop's lags, and the seconds `flush` took after the last record."""
    config = parse_config({"database": {"path": str(path)}}, {})
    store = Store(config, report=lambda what, error: print(f"not stored: {what}: {error}"))
    store.open()
    store.start()
    lags: list[float] = []
    flushed: list[float] = []

    async def main() -> None:
        done = anyio.Event()

        async def watch() -> None:
            while not done.is_set():
                began = time.perf_counter()
                await anyio.sleep(0.001)
                lags.append(time.perf_counter() - began - 0.001)

        async def produce() -> None:
            began = time.time()
            for tick in range(TICKS):
                for n in range(PER_TICK):
                    for record in _records(f"r{tick}-{n}", began + tick * TICK):
                        store.persist(record)  # type: ignore[arg-type]
                await anyio.sleep(max(began + (tick + 1) * TICK - time.time(), 0))
            last = time.perf_counter()
            if not await anyio.to_thread.run_sync(store.flush, 30.0):
                raise RuntimeError("the writer did not keep up")
            flushed.append(time.perf_counter() - last)
            done.set()

        async with anyio.create_task_group() as group:
            group.start_soon(watch)
            group.start_soon(produce)

    try:
        anyio.run(main, backend="asyncio")
    finally:
        store.close()
    return lags, flushed[0]


def bench_store_loop_lag() -> dict[str, object]:
    p99s, maxima, flushes = [], [], []
    for run in range(3):
        with tempfile.TemporaryDirectory() as tmp:
            lags, flush = _run(Path(tmp) / f"usage-{run}.sqlite3")
        ordered = sorted(lags)
        p99s.append(ordered[int(len(ordered) * 0.99)] * 1000)
        maxima.append(ordered[-1] * 1000)
        flushes.append(flush * 1000)
    return {
        "unit": "ms p99",
        "best": min(p99s),
        "median": statistics.median(p99s),
        "detail": (
            f"event-loop lag while persisting {TICKS * PER_TICK * 3 / (TICKS * TICK):,.0f} "
            f"records/s for {TICKS * TICK:.0f} s (max {statistics.median(maxima):.1f} ms; the "
            f"backlog is written {statistics.median(flushes):.0f} ms after the last record)"
        ),
    }


BENCHMARKS: dict[str, Callable[[], dict[str, object]]] = {
    "store_loop_lag": bench_store_loop_lag,
}
