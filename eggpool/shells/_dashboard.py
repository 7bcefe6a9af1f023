"""The stats API and the dashboard as both shells serve them: routing and access from
eggpool/dashboard/ (api.py, site.py), numbers from the store (`_stats.Stats`) read off the
event loop, pages drawn by eggpool/dashboard/pages.py.

Theory of operation. The `Driver` hands every request under `/api/` and
every dashboard path (`site.is_dashboard_path`) to `StatsService.answer`
instead of the Pool (the Pool never reads the database). `answer` routes
the request (pure), then runs the query in a worker thread through a
one-slot limiter: one read connection, one query
at a time, so a burst of dashboard requests queues rather than piling
threads onto SQLite (and never blocks the loop, where the proxy's requests
run). The connection opens on first use and closes with the service.

`runtime` is answered from the process itself: its id, uptime, Python,
memory (RSS), threads, requests in flight, and the database files' sizes.

A page reads what it shows (the same queries as the API) and renders it;
a refused page is a small HTML page with the reason (and, for a missing
key, `WWW-Authenticate: Basic`, so a browser asks for it). Themes are
listed once, when the service starts, and each theme's CSS is made once:
a theme file added later needs a restart.
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
import attrs

from eggpool import __version__
from eggpool.core.config import Config
from eggpool.core.errors import LocalFailure
from eggpool.dashboard import api, pages, site, themes
from eggpool.dashboard.params import Bucket, GroupBy
from eggpool.shells._stats import Stats

__all__ = ["Answer", "StatsService"]

Answer = tuple[int, tuple[tuple[str, str], ...], bytes]

_STARTED = time.time()


class StatsService:
    """Answers `/api/` and dashboard requests for one serving process."""

    def __init__(
        self,
        config: Config,
        *,
        connect: Callable[[], sqlite3.Connection],
        database_file: Path | None = None,
        loop_state: Callable[[], dict[str, object]] | None = None,
        prices: Callable[[], list[dict[str, object]]] | None = None,
    ) -> None:
        """`connect()` opens a read-only sqlite3 connection to the store (called in a
        worker thread, once); `loop_state()` describes the serving loop (requests in
        flight, tasks, dispatch overhead) and `prices()` the Pool's price table: both are
        called on the event loop, where the Pool lives."""
        self.config = config
        self._connect = connect
        self._file = database_file
        self._loop_state = loop_state
        self._prices = prices
        self._stats: Stats | None = None
        self._limiter = anyio.CapacityLimiter(1)
        self._themes: list[str] | None = None
        self._theme_css: dict[str, bytes] = {}

    async def answer(
        self, method: str, target: str, headers: tuple[tuple[str, str], ...]
    ) -> Answer:
        """The whole response (status, headers, body) to a request for `target`."""
        now = time.time()
        if not target.startswith(api.API_PREFIX):
            return await self._page(method, target, headers, now)
        call = api.route(method, target, headers, self.config, now=now)
        if isinstance(call, LocalFailure):
            return api.refuse(call)
        if call.endpoint.name == "pricing-provenance":
            return api.respond({"prices": self._prices() if self._prices is not None else []})
        state = self._state()
        return await anyio.to_thread.run_sync(self.run, call, now, state, limiter=self._limiter)

    def _state(self) -> dict[str, object]:
        """What only the event loop may read (the Pool, the Driver): read it there."""
        return self._loop_state() if self._loop_state is not None else {}

    async def _page(
        self, method: str, target: str, headers: tuple[tuple[str, str], ...], now: float
    ) -> Answer:
        routed = site.route(
            method, target, headers, self.config, now=now, default_theme=self._default_theme()
        )
        if isinstance(routed, LocalFailure):
            return _refused_page(routed)
        if isinstance(routed, site.StaticFile):
            return await anyio.to_thread.run_sync(self._static, routed)
        if routed.theme not in self._theme_names():
            return _refused_page(
                LocalFailure.invalid_value("theme", f"there is no theme named {routed.theme!r}")
            )
        state = self._state()
        return await anyio.to_thread.run_sync(
            self.render, routed, now, state, limiter=self._limiter
        )

    def render(
        self, call: site.PageCall, now: float, state: dict[str, object] | None = None
    ) -> Answer:
        """A page, read and drawn (blocking: in a worker thread, one at a time)."""
        data = self._page_data(call, now, state or {})
        if data is None:
            return _refused_page(LocalFailure.not_found(f"request with id {call.request_id!r}"))
        context = pages.Context(
            call=call,
            themes=self._theme_names(),
            now=now,
            refresh_s=float(self.config.dashboard.refresh_interval_s),
        )
        body = pages.render(context, data).encode("utf-8")
        return 200, site.page_headers(), body

    def _page_data(
        self, call: site.PageCall, now: float, state: dict[str, object]
    ) -> dict[str, object] | None:
        name, q = call.page.name, call.query
        if name == "runtime":
            return {"runtime": self._runtime(state)}
        stats = self._open()
        if name == "overview":
            grouped = attrs.evolve(q, group_by=GroupBy.ACCOUNT, limit=8)
            daily = attrs.evolve(q, start=now - 90 * 86400, end=now, bucket=Bucket.DAY)
            return {
                "summary": stats.summary(q),
                "pending": self._pending(stats, now, state),
                "operational": stats.operational(q),
                "accounts": stats.accounts(q, now),
                "series": stats.timeseries(grouped),
                "daily": stats.timeseries(daily),
            }
        if name == "accounts":
            return {"accounts": stats.accounts(q, now)}
        if name == "models":
            return {"models": stats.models(q)}
        if name == "latency":
            return {"latency": _with_overhead(stats.latency(q), state)}
        if name == "timeseries":
            grouped = q if q.group_by is not None else attrs.evolve(q, group_by=GroupBy.ACCOUNT)
            return {"series": stats.timeseries(grouped)}
        if name == "reliability":
            return {
                "attempts": stats.attempts(q),
                "retries": stats.retries(q),
                "errors": stats.errors(q),
                "pending": self._pending(stats, now, state),
                "backoffs": stats.backoffs(now),
            }
        if name == "routing":
            return {"routing": stats.routing(q)}
        if name == "events":
            return {"accounts": stats.account_events(q), "operational": stats.operational(q)}
        if name == "traces":
            return {"recent": stats.recent_requests(q)}
        if name == "trace":
            assert call.request_id is not None
            trace = stats.trace(call.request_id)
            return None if trace is None else {"trace": trace}
        raise AssertionError(f"no data for page {name!r}")

    @staticmethod
    def _pending(stats: Stats, now: float, state: dict[str, object]) -> dict[str, object]:
        """Pending requests (the database) and the quota reserved for them (the Pool)."""
        return {**stats.pending_health(now), "reservations": state.get("reservations")}

    def _static(self, file: site.StaticFile) -> Answer:
        if file.theme is not None:
            if file.theme not in self._theme_names():
                return _refused_page(LocalFailure.not_found(f"theme named {file.theme!r}"))
            body = self._theme_css.get(file.theme)
            if body is None:
                theme = themes.load_theme(file.theme, self.config.dashboard.themes_dir)
                body = self._theme_css[file.theme] = themes.css(theme).encode("utf-8")
        else:
            body = site.static_body(file.name)
        headers = tuple(
            (name, "public, max-age=300" if name == "cache-control" else value)
            for name, value in site.page_headers(file.content_type)
        )
        return 200, headers, body

    def _default_theme(self) -> str:
        """`[dashboard].theme`, or the built-in `default` when no file provides it
        (`eggpool check-config` warns about that)."""
        configured = self.config.dashboard.theme
        return configured if configured in self._theme_names() else themes.DEFAULT_THEME.name

    def _theme_names(self) -> list[str]:
        if self._themes is None:
            self._themes = themes.theme_names(self.config.dashboard.themes_dir)
        return self._themes

    def run(self, call: api.ApiCall, now: float, state: dict[str, object] | None = None) -> Answer:
        """Answer a routed call (blocking: in a worker thread, one at a time); `state` is
        what `loop_state` said on the loop."""
        if call.endpoint.name == "runtime":
            return api.respond(self._runtime(state or {}))
        payload = self._query(call, now, state or {})
        if payload is None:
            return api.refuse(LocalFailure.not_found(f"request with id {call.request_id!r}"))
        return api.respond(payload)

    def close(self) -> None:
        """Close the read connection (blocking; call it from a worker thread or at exit)."""
        stats, self._stats = self._stats, None
        if stats is not None:
            stats.close()

    # -- in the worker thread ----------------------------------------------------------

    def _open(self) -> Stats:
        stats = self._stats
        if stats is None:
            stats = self._stats = Stats(self._connect(), self.config)
        return stats

    def _query(self, call: api.ApiCall, now: float, state: dict[str, object]) -> object:
        stats = self._open()
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
                return _with_overhead(stats.latency(q), state)
            case "routing":
                return stats.routing(q)
            case "attempts":
                return stats.attempts(q)
            case "retries":
                return stats.retries(q)
            case "backoffs":
                return stats.backoffs(now)
            case "events":
                return stats.account_events(q)
            case "operational":
                return stats.operational(q)
            case "pending-health":
                return self._pending(stats, now, state)
            case "recent-requests":
                return stats.recent_requests(q)
            case "recent":
                assert call.request_id is not None
                return stats.trace(call.request_id)
        raise AssertionError(f"no query for endpoint {call.endpoint.name!r}")

    def _runtime(self, state: dict[str, object]) -> dict[str, object]:
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
            "requests_in_flight": state.get("requests_in_flight"),
            "serving": {k: v for k, v in state.items() if k != "requests_in_flight"},
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


def _refused_page(failure: LocalFailure) -> Answer:
    """A refused dashboard request as a small HTML page (a browser is reading)."""
    status = failure.kind.status
    headers = list(site.page_headers())
    if status == 401:
        headers.append(("www-authenticate", 'Basic realm="EggPool dashboard", charset="UTF-8"'))
    if failure.allow:
        headers.append(("allow", ", ".join(failure.allow)))
    return status, tuple(headers), pages.error_page(status, failure.message).encode("utf-8")


def _with_overhead(latency: dict[str, object], state: dict[str, object]) -> dict[str, object]:
    """The latency answer with the proxy's own dispatch overhead (from the Driver)."""
    phases = latency.get("phases")
    if isinstance(phases, dict):
        phases = {**phases, "proxy_overhead_us": state.get("dispatch_overhead_us")}
    return {**latency, "phases": phases}
