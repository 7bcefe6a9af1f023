"""The dashboard's pages and files: which exist, who may see them, how answers look. Pure.

Theory of operation. `route(method, target, headers, config, now=...)`
answers for a path that is not the proxy's or the stats API's: a
`PageCall` (the page and its validated query, with the theme and
period), a `StaticFile` (the stylesheet, the script, a theme's CSS), or a
`LocalFailure` to show (404, 405, 401, a named 400). `is_dashboard_path`
tells the shells which paths are ours.

Access is the stats API's (eggpool/dashboard/api.py): with
`[dashboard].public = true` the pages are open except `traces` and
`runtime`, which always need the server key; with `public = false` all
do. A browser cannot send a bearer token when following a link, so pages
also take HTTP Basic authentication with the key as the password (any
user name): a refused page answers `WWW-Authenticate: Basic`, and the
browser asks. Static files are always open (they hold no data).

Pages carry the period and the theme in their query (`?period=7d&theme=Nord`)
rather than in a cookie: every page is a plain link, shareable, and the
server keeps no state per visitor. Answers carry a CSP that allows our own
stylesheet and script and nothing else (no inline script, no third-party
anything), frame denial and `nosniff`.
"""

from __future__ import annotations

import base64
import binascii
import urllib.parse
from collections.abc import Iterable
from importlib import resources

import attrs

from eggpool.core.config import Config
from eggpool.core.errors import LocalFailure
from eggpool.core.pool import authenticate
from eggpool.core.secret import Secret
from eggpool.dashboard.api import Access
from eggpool.dashboard.params import StatsQuery, parse_query
from eggpool.dashboard.themes import ThemeError, validate_name

__all__ = [
    "PAGES",
    "Page",
    "PageCall",
    "StaticFile",
    "is_dashboard_path",
    "page_headers",
    "route",
    "static_body",
]

PAGE_CSP = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


@attrs.frozen(kw_only=True)
class Page:
    name: str
    path: str
    title: str
    params: frozenset[str] = frozenset({"period"})
    access: Access = Access.DASHBOARD
    limits: tuple[int, int, int] = (1, 100, 20)
    in_nav: bool = True


PAGES: dict[str, Page] = {
    page.path: page
    for page in (
        Page(name="overview", path="/", title="Overview"),
        Page(name="accounts", path="/accounts", title="Accounts"),
        Page(name="models", path="/models", title="Models"),
        Page(name="latency", path="/latency", title="Latency"),
        Page(
            name="timeseries",
            path="/timeseries",
            title="Timeseries",
            params=frozenset({"period", "bucket", "group_by", "limit"}),
            limits=(1, 25, 8),
        ),
        Page(name="reliability", path="/reliability", title="Reliability"),
        Page(name="routing", path="/routing", title="Routing"),
        Page(
            name="events",
            path="/events",
            title="Events",
            params=frozenset({"period", "account", "provider", "limit"}),
            limits=(1, 200, 50),
        ),
        Page(
            name="traces",
            path="/traces",
            title="Traces",
            params=frozenset({"period", "limit", "account", "provider", "model", "status"}),
            access=Access.KEY,
            limits=(10, 500, 50),
        ),
        Page(
            name="runtime", path="/runtime", title="Runtime", params=frozenset(), access=Access.KEY
        ),
        Page(
            name="trace",
            path="/traces/",
            title="Trace",
            params=frozenset(),
            access=Access.KEY,
            in_nav=False,
        ),
    )
}
"""Every page by path (`/traces/` is the prefix of one request's trace)."""

_STATIC = {
    "/static/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
    "/static/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    "/static/favicon.svg": ("favicon.svg", "image/svg+xml"),
}
_THEME_CSS = "/static/theme.css"
_MAX_ID = 200


@attrs.frozen(kw_only=True)
class PageCall:
    page: Page
    query: StatsQuery
    theme: str
    request_id: str | None = None  # the trace page's request


@attrs.frozen(kw_only=True)
class StaticFile:
    name: str  # a file of eggpool/dashboard/static, or "theme.css"
    content_type: str
    theme: str | None = None


def is_dashboard_path(path: str) -> bool:
    """Whether `path` is a dashboard page or file (the shells send it here)."""
    return path in PAGES or path.startswith(("/traces/", "/static/"))


def route(
    method: str,
    target: str,
    headers: Iterable[tuple[str, str]],
    config: Config,
    *,
    now: float,
    default_theme: str | None = None,
) -> PageCall | StaticFile | LocalFailure:
    """What to do with a request for a dashboard `target` (path and query); a page without
    `theme` gets `default_theme` (by default `[dashboard].theme`)."""
    path, _, query = target.partition("?")
    default = default_theme or config.dashboard.theme
    if path.startswith("/static/"):
        return _static(method, path, query, default)
    page, request_id = PAGES.get(path), None
    if page is None and path.startswith("/traces/"):
        page, request_id = PAGES["/traces/"], path.removeprefix("/traces/")
        if not 0 < len(request_id) <= _MAX_ID or "/" in request_id:
            return LocalFailure.unknown_route(method, path)
    if page is None or path == "/traces/":
        return LocalFailure.unknown_route(method, path)
    if method.upper() != "GET":
        return LocalFailure.method_not_allowed(method, path, ("GET",))
    if page.access is Access.KEY or not config.dashboard.public:
        failure = authenticate_page(config.server.api_key, headers)
        if failure is not None:
            return failure
    pairs, theme = _split_theme(query, default)
    if isinstance(theme, LocalFailure):
        return theme
    parsed = parse_query(pairs, page.params, now=now, limits=page.limits)
    if isinstance(parsed, LocalFailure):
        return parsed
    return PageCall(page=page, query=parsed, theme=theme, request_id=request_id)


def authenticate_page(
    expected: Secret | None, headers: Iterable[tuple[str, str]]
) -> LocalFailure | None:
    """`authenticate`, also taking HTTP Basic credentials whose password is the key."""
    kept = []
    for name, value in headers:
        scheme, _, token = value.strip().partition(" ")
        if name.lower() == "authorization" and scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                continue
            _, _, password = decoded.partition(":")
            kept.append(("authorization", f"Bearer {password}"))
        else:
            kept.append((name, value))
    return authenticate(expected, kept)


def page_headers(content_type: str = "text/html; charset=utf-8") -> tuple[tuple[str, str], ...]:
    """The headers of every page and file answer."""
    return (
        ("content-type", content_type),
        ("cache-control", "no-store"),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("content-security-policy", PAGE_CSP),
    )


def static_body(name: str) -> bytes:
    """A file shipped in eggpool/dashboard/static."""
    return resources.files("eggpool.dashboard").joinpath("static", name).read_bytes()


def _static(method: str, path: str, query: str, default: str) -> StaticFile | LocalFailure:
    if method.upper() != "GET":
        return LocalFailure.method_not_allowed(method, path, ("GET",))
    if path == _THEME_CSS:
        pairs, theme = _split_theme(query, default)
        if isinstance(theme, LocalFailure):
            return theme
        if pairs:
            return LocalFailure.invalid_value("query", "the theme stylesheet takes only 'theme'")
        return StaticFile(name="theme.css", content_type="text/css; charset=utf-8", theme=theme)
    known = _STATIC.get(path)
    if known is None:
        return LocalFailure.unknown_route(method, path)
    return StaticFile(name=known[0], content_type=known[1])


def _split_theme(query: str, default: str) -> tuple[str, str | LocalFailure]:
    """The query without its `theme` parameter, and the theme it names (or `default`)."""
    kept, theme = [], None
    for name, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        if name != "theme":
            kept.append((name, value))
            continue
        if theme is not None:
            return "", LocalFailure.invalid_value("theme", "it is given more than once")
        theme = value
    chosen = default if theme is None else theme
    try:
        validate_name(chosen)
    except ThemeError as exc:
        return "", LocalFailure.invalid_value("theme", str(exc).rstrip("."))
    return urllib.parse.urlencode(kept), chosen
