"""The stats API on a large database: each endpoint's answer time with a million requests.

`stats_api` fills a database with `EGGPOOL_BENCH_STATS_ROWS` generated
requests (default 1,000,000, spread over 30 days, through the store's own
schema and triggers: tests/helpers/stats_db.py), or reuses the one at
`EGGPOOL_BENCH_STATS_DB` when that names an existing file, then answers
each question the dashboard asks, as the server would: route, query, JSON.
It reports the slowest endpoint (best and median of its runs) and each
endpoint's median. Filling a million rows takes about two minutes and
0.5 GB of disk, in a temporary directory removed afterwards.
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eggpool.core.config import Config, parse_config  # noqa: E402
from eggpool.dashboard import api  # noqa: E402
from eggpool.shells._dashboard import StatsService  # noqa: E402
from tests.helpers.stats_db import ACCOUNTS, fill  # noqa: E402

TARGETS = (
    "/api/stats/summary?period=24h",
    "/api/stats/summary?period=30d",
    "/api/stats/accounts?period=30d",
    "/api/stats/models?period=30d",
    "/api/stats/timeseries?period=30d",
    "/api/stats/timeseries?period=7d&bucket=hour&group_by=model&limit=12",
    "/api/stats/errors?period=30d",
    "/api/stats/latency?period=30d",
    "/api/stats/recent-requests?limit=50",
    "/api/stats/recent-requests?limit=50&model=gpt-4o",
    "/api/stats/pending-health",
    "/api/stats/operational?period=30d",
)


def _config() -> Config:
    providers: dict[str, dict[str, object]] = {}
    for account, provider in ACCOUNTS.items():
        entry = providers.setdefault(
            provider, {"base_url": f"https://{provider}.test/v1", "accounts": []}
        )
        accounts = entry["accounts"]
        assert isinstance(accounts, list)
        accounts.append({"name": account, "api_key": f"sk-{account}-0123456789"})
    return parse_config({"providers": providers}, {})


def _measure(path: Path, rows: int, filled: float | None) -> dict[str, object]:
    config = _config()
    service = StatsService(
        config, connect=lambda: sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    )
    now = time.time()
    medians: dict[str, float] = {}
    slowest: list[float] = []
    try:
        for target in TARGETS:
            call = api.route("GET", target, (), config, now=now)
            assert isinstance(call, api.ApiCall), call
            service.run(call, now)  # warm up
            runs = []
            for _ in range(7):
                start = time.perf_counter()
                status, _, _ = service.run(call, now)
                runs.append(time.perf_counter() - start)
                assert status == 200
            medians[target] = statistics.median(runs)
            if medians[target] >= max(medians.values()):
                slowest = runs
    finally:
        service.close()
    worst = max(medians, key=lambda t: medians[t])
    detail = f"{rows:,} requests over 30 days; slowest: {worst.removeprefix('/api/stats/')}"
    if filled is not None:
        detail += f" (filled in {filled:.0f} s)"
    return {
        "unit": "ms",
        "best": min(slowest) * 1000,
        "median": statistics.median(slowest) * 1000,
        "detail": detail,
        "endpoints_ms": {t: round(m * 1000, 2) for t, m in medians.items()},
    }


def bench_stats_api() -> dict[str, object]:
    rows = int(os.environ.get("EGGPOOL_BENCH_STATS_ROWS", "1000000"))
    given = os.environ.get("EGGPOOL_BENCH_STATS_DB")
    if given and Path(given).is_file():
        return _measure(Path(given), rows, None)
    with tempfile.TemporaryDirectory(prefix="eggpool-bench-") as directory:
        path = Path(directory) / "usage.sqlite3"
        started = time.perf_counter()
        fill(path, rows, end=time.time(), days=30)
        return _measure(path, rows, time.perf_counter() - started)


BENCHMARKS = {"stats_api": bench_stats_api}

if __name__ == "__main__":
    result = bench_stats_api()
    for target, ms in result["endpoints_ms"].items():  # type: ignore[attr-defined]
        print(f"{ms:8.2f} ms  {target}")
    print(f"slowest: best {result['best']:.2f} ms, median {result['median']:.2f} ms")
