"""The stats API and the dashboard on a large database: answer and page times with a million
requests.

`stats_api` fills a database with `EGGPOOL_BENCH_STATS_ROWS` generated
requests (default 1,000,000, spread over 30 days, through the store's own
schema and triggers: tests/helpers/stats_db.py), or reuses the one at
`EGGPOOL_BENCH_STATS_DB` when that names an existing file, then answers
each question the dashboard asks, as the server would: route, query, JSON.
`stats_api` reports the slowest endpoint (best and median of its runs) and
each endpoint's median; `dashboard_pages` the same for every page, read
and rendered to HTML (target: under 100 ms each). Both share one database;
filling a million rows takes about two minutes and 0.5 GB of disk, in a
temporary directory removed when the process ends.
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
if str(ROOT) not in sys.path:  # bench.py --installed put it last, after the installed eggpool
    sys.path.insert(0, str(ROOT))

from eggpool.core.config import Config, parse_config  # noqa: E402
from eggpool.dashboard import api, site  # noqa: E402
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
    "/api/stats/attempts?period=30d",
    "/api/stats/retries?period=30d",
    "/api/stats/routing?period=30d",
    "/api/stats/events?period=30d",
)
PAGES = (
    "/", "/?period=30d", "/accounts?period=30d", "/models?period=30d", "/latency?period=30d",
    "/timeseries?period=7d&bucket=hour", "/timeseries?period=30d&group_by=model",
    "/reliability?period=30d", "/routing?period=30d", "/events?period=30d", "/traces",
    "/runtime",
)  # fmt: skip


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


def _timings(runs: int, answer: object) -> list[float]:
    assert callable(answer)
    answer()  # warm up
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        status, _, _ = answer()
        out.append(time.perf_counter() - start)
        assert status == 200, status
    return out


def _measure(path: Path, rows: int, filled: float | None, *, pages: bool) -> dict[str, object]:
    config = _config()
    service = StatsService(
        config, connect=lambda: sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    )
    now = time.time()
    runs: dict[str, list[float]] = {}
    try:
        for target in PAGES if pages else TARGETS:
            if pages:
                call = site.route("GET", target, (), config, now=now)
                assert isinstance(call, site.PageCall), call
                runs[target] = _timings(5, lambda c=call: service.render(c, now))
            else:
                routed = api.route("GET", target, (), config, now=now)
                assert isinstance(routed, api.ApiCall), routed
                runs[target] = _timings(7, lambda c=routed: service.run(c, now))
    finally:
        service.close()
    medians = {t: statistics.median(r) for t, r in runs.items()}
    worst = max(medians, key=lambda t: medians[t])
    detail = f"{rows:,} requests over 30 days; slowest: {worst.removeprefix('/api/stats/')}"
    if filled is not None:
        detail += f" (filled in {filled:.0f} s)"
    return {
        "unit": "ms",
        "best": min(runs[worst]) * 1000,
        "median": medians[worst] * 1000,
        "detail": detail,
        "each_ms": {t: round(m * 1000, 2) for t, m in medians.items()},
    }


_FILLED: dict[int, tuple[Path, float]] = {}
_DIRECTORY: list[tempfile.TemporaryDirectory[str]] = []  # made on first use


def _database(rows: int) -> tuple[Path, float | None]:
    """The benchmark database: the one named by the environment, or one filled once per run
    (removed when the process ends)."""
    given = os.environ.get("EGGPOOL_BENCH_STATS_DB")
    if given and Path(given).is_file():
        return Path(given), None
    if rows not in _FILLED:
        if not _DIRECTORY:
            _DIRECTORY.append(tempfile.TemporaryDirectory(prefix="eggpool-bench-"))
        path = Path(_DIRECTORY[0].name) / f"usage-{rows}.sqlite3"
        started = time.perf_counter()
        fill(path, rows, end=time.time(), days=30)
        _FILLED[rows] = (path, time.perf_counter() - started)
        return path, _FILLED[rows][1]
    return _FILLED[rows][0], None


def _rows() -> int:
    return int(os.environ.get("EGGPOOL_BENCH_STATS_ROWS", "1000000"))


def bench_stats_api() -> dict[str, object]:
    path, filled = _database(_rows())
    return _measure(path, _rows(), filled, pages=False)


def bench_dashboard_pages() -> dict[str, object]:
    path, filled = _database(_rows())
    return _measure(path, _rows(), filled, pages=True)


BENCHMARKS = {"stats_api": bench_stats_api, "dashboard_pages": bench_dashboard_pages}

if __name__ == "__main__":
    for name, bench in BENCHMARKS.items():
        result = bench()
        for target, ms in result["each_ms"].items():  # type: ignore[attr-defined]
            print(f"{ms:8.2f} ms  {target}")
        print(f"{name}: slowest best {result['best']:.2f} ms, median {result['median']:.2f} ms")
