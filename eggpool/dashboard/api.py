"""The stats API: which endpoints exist, who may read them, how answers look. Pure.

Theory of operation. A shell asks `route(method, target, headers, config,
now)` about a request under `/api/`; the answer is an `ApiCall` (the
endpoint and its validated `StatsQuery`) to run against the store, or a
`LocalFailure` to send as is (404 unknown endpoint or request, 405 not
`GET`, 401 no or wrong key, 400 a bad parameter, named). `respond` and
`refuse` turn a result into the status, headers and body a shell writes.

Access follows `[dashboard].public` (reference-features.md section 1):
with `public = true` (the default) the aggregate endpoints are open, and
everything that is per request or per process (`recent-requests`,
`recent/<id>`, `runtime`) always needs the server key, whatever `public`
says; with `public = false` every endpoint needs the key. None of them
ever shows a prompt, a secret or a client address. With no server key
configured nothing can be checked, so everything is open (the listener is
then loopback only unless configured otherwise).

Every answer is JSON, never cached, with `nosniff`, frame denial and a CSP
that allows nothing: an API answer is data, not a page.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable

import attrs

from eggpool.core.config import Config, Protocol
from eggpool.core.errors import LocalFailure, render_error
from eggpool.core.pool import authenticate
from eggpool.dashboard.params import StatsQuery, parse_query

__all__ = [
    "API_PREFIX",
    "ENDPOINTS",
    "Access",
    "ApiCall",
    "Endpoint",
    "refuse",
    "respond",
    "route",
]

API_PREFIX = "/api/"

SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("cache-control", "no-store"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("content-security-policy", "default-src 'none'; frame-ancestors 'none'"),
)


class Access(enum.Enum):
    DASHBOARD = "dashboard"  # the key only when [dashboard].public is false
    KEY = "key"  # always the key


@attrs.frozen(kw_only=True)
class Endpoint:
    name: str
    params: frozenset[str]
    access: Access = Access.DASHBOARD
    limits: tuple[int, int, int] = (1, 100, 20)  # least, most, default `limit`


_FILTERS = frozenset({"period", "account", "provider", "model"})

ENDPOINTS: dict[str, Endpoint] = {
    e.name: e
    for e in (
        Endpoint(name="summary", params=_FILTERS),
        Endpoint(name="accounts", params=frozenset({"period"})),
        Endpoint(name="models", params=_FILTERS - {"model"}),
        Endpoint(
            name="timeseries",
            params=_FILTERS | {"bucket", "group_by", "limit"},
            limits=(1, 25, 12),
        ),
        Endpoint(name="errors", params=_FILTERS | {"limit"}),
        Endpoint(name="latency", params=_FILTERS | {"limit"}),
        Endpoint(name="attempts", params=frozenset({"period", "account", "provider", "limit"})),
        Endpoint(name="retries", params=frozenset({"period", "account", "provider", "limit"})),
        Endpoint(name="routing", params=frozenset({"period", "account", "model", "limit"})),
        Endpoint(name="backoffs", params=frozenset()),
        Endpoint(name="pricing-provenance", params=frozenset()),
        Endpoint(
            name="events",
            params=frozenset({"period", "account", "provider", "kind", "limit"}),
            limits=(1, 200, 50),
        ),
        Endpoint(
            name="operational", params=frozenset({"period", "kind", "limit"}), limits=(1, 200, 50)
        ),
        Endpoint(name="pending-health", params=frozenset()),
        Endpoint(
            name="recent-requests",
            params=_FILTERS | {"status", "limit"},
            access=Access.KEY,
            limits=(1, 500, 50),
        ),
        Endpoint(name="recent", params=frozenset(), access=Access.KEY),
        Endpoint(name="runtime", params=frozenset(), access=Access.KEY),
    )
}
"""Every endpoint, by the name after `/api/stats/` (`recent` takes `/<request id>`)."""

_MAX_ID = 200


@attrs.frozen(kw_only=True)
class ApiCall:
    endpoint: Endpoint
    query: StatsQuery
    request_id: str | None = None  # `recent/<id>`


def route(
    method: str,
    target: str,
    headers: Iterable[tuple[str, str]],
    config: Config,
    *,
    now: float,
) -> ApiCall | LocalFailure:
    """What to do with a request for `target` (a path under `/api/`, query included)."""
    path, _, query = target.partition("?")
    name, request_id = _endpoint_name(path)
    endpoint = ENDPOINTS.get(name) if name is not None else None
    if endpoint is None or (endpoint.name == "recent") != (request_id is not None):
        return LocalFailure.unknown_route(method, path)
    if method.upper() not in ("GET", "HEAD"):
        return LocalFailure.method_not_allowed(method, path, ("GET",))
    if endpoint.access is Access.KEY or not config.dashboard.public:
        failure = authenticate(config.server.api_key, headers)
        if failure is not None:
            return failure
    if request_id is not None and not 0 < len(request_id) <= _MAX_ID:
        return LocalFailure.invalid_value("request_id", f"expected 1 to {_MAX_ID} characters")
    parsed = parse_query(query, endpoint.params, now=now, limits=endpoint.limits)
    if isinstance(parsed, LocalFailure):
        return parsed
    return ApiCall(endpoint=endpoint, query=parsed, request_id=request_id)


def _endpoint_name(path: str) -> tuple[str | None, str | None]:
    """(`summary`, None) for `/api/stats/summary`; (`recent`, id) for `/api/stats/recent/id`."""
    prefix = "/api/stats/"
    if not path.startswith(prefix):
        return None, None
    rest = path[len(prefix) :]
    head, slash, tail = rest.partition("/")
    if slash:
        return (head, tail) if head == "recent" and tail and "/" not in tail else (None, None)
    return head, None


def respond(
    payload: object, *, status: int = 200
) -> tuple[int, tuple[tuple[str, str], ...], bytes]:
    """A JSON answer with the API's headers."""
    body = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode("utf-8")
    headers = (("content-type", "application/json"), *SECURITY_HEADERS)
    return status, headers, body


def refuse(failure: LocalFailure) -> tuple[int, tuple[tuple[str, str], ...], bytes]:
    """An error answer: OpenAI's error shape (`error.message`, `type`, `param`, `code`)."""
    rendered = render_error(Protocol.OPENAI, failure)
    return rendered.status, (*rendered.headers, *SECURITY_HEADERS), rendered.body


def not_found(what: str) -> LocalFailure:
    """A 404 for something the endpoint looked for and did not find (a request id)."""
    return LocalFailure.not_found(what)
