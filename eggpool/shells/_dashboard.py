"""The stats API as both shells serve it: routing and access from eggpool/dashboard/api.py,
numbers from the store (`_stats.Stats`), read off the event loop.

Theory of operation. The `Driver` hands every request under `/api/` to
`StatsService.answer` instead of the Pool (the Pool never reads the
database). `answer` routes the request (pure), then runs the query in a
worker thread through a one-slot limiter: one read connection, one query
at a time, so a burst of dashboard requests queues rather than piling
threads onto SQLite (and never blocks the loop, where the proxy's requests
run). The connection opens on first use and closes with the service.

`runtime` is answered from the process itself: its id, uptime, Python,
memory (RSS), threads, requests in flight, and the database files' sizes.
"""

from __future__ import annotations

import os
import platform
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import anyio

from eggpool import __version__
from eggpool.core.config import Config
from eggpool.core.errors import LocalFailure
from eggpool.dashboard import api
from eggpool.shells._stats import Stats

__all__ = ["Answer", "StatsService"]

Answer = tuple[int, tuple[tuple[str, str], ...], bytes]

_STARTED = time.time()


class StatsService:
    """Answers `/api/` requests for one serving process."""

    def __init__(
        self,
        config: Config,
        *,
        connect: Callable[[], sqlite3.Connection],
        database_file: Path | None = None,
        in_flight: Callable[[], int] | None = None,
    ) -> None:
        """`connect()` opens a read-only sqlite3 connection to the store (called in a
        worker thread, once); `in_flight()` counts the Pool's requests."""
        self.config = config
        self._connect = connect
        self._file = database_file
        self._in_flight = in_flight
        self._stats: Stats | None = None
        self._limiter = anyio.CapacityLimiter(1)

    async def answer(
        self, method: str, target: str, headers: tuple[tuple[str, str], ...]
    ) -> Answer:
        """The whole response (status, headers, body) to a request for `target`."""
        now = time.time()
        call = api.route(method, target, headers, self.config, now=now)
        if isinstance(call, LocalFailure):
            return api.refuse(call)
        return await anyio.to_thread.run_sync(self.run, call, now, limiter=self._limiter)

    def run(self, call: api.ApiCall, now: float) -> Answer:
        """Answer a routed call (blocking: in a worker thread, one at a time)."""
        if call.endpoint.name == "runtime":
            return api.respond(self._runtime())
        payload = self._query(call, now)
        if payload is None:
            return api.refuse(LocalFailure.not_found(f"request with id {call.request_id!r}"))
        return api.respond(payload)

    def close(self) -> None:
        """Close the read connection (blocking; call it from a worker thread or at exit)."""
        stats, self._stats = self._stats, None
        if stats is not None:
            stats.close()

    # -- in the worker thread ----------------------------------------------------------

    def _query(self, call: api.ApiCall, now: float) -> object:
        stats = self._stats
        if stats is None:
            stats = self._stats = Stats(self._connect(), self.config)
        q = call.query
        match call.endpoint.name:
            case "summary":
                return stats.summary(q)
            case "accounts":
                return stats.accounts(q, now)
            case "models":
                return stats.models(q)
            case "timeseries":
                return stats.timeseries(q)
            case "errors":
                return stats.errors(q)
            case "latency":
                return stats.latency(q)
            case "backoffs":
                return stats.backoffs(now)
            case "operational":
                return stats.operational(q)
            case "pending-health":
                return stats.pending_health(now)
            case "recent-requests":
                return stats.recent_requests(q)
            case "recent":
                assert call.request_id is not None
                return stats.trace(call.request_id)
        raise AssertionError(f"no query for endpoint {call.endpoint.name!r}")

    def _runtime(self) -> dict[str, object]:
        files: dict[str, int | None] = {}
        if self._file is not None:
            for suffix in ("", "-wal", "-shm"):
                path = self._file.with_name(self._file.name + suffix)
                try:
                    files[path.name] = path.stat().st_size
                except OSError:
                    files[path.name] = None
        return {
            "version": __version__,
            "process": {
                "pid": os.getpid(),
                "uptime_s": round(time.time() - _STARTED, 3),
                "python": platform.python_version(),
                "implementation": sys.implementation.name,
                "threads": threading.active_count(),
                "rss_bytes": _rss(),
            },
            "requests_in_flight": self._in_flight() if self._in_flight is not None else None,
            "database": {"in_memory": self._file is None, "files": files},
        }


def _rss() -> int | None:
    """Resident memory of this process in bytes (Linux: /proc; elsewhere unknown)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")
