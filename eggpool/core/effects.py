"""Effects: what the `Pool` asks a shell to do. Imperative, data only.

Theory of operation. `Pool.handle(event)` returns a list of these, in the
order they must run; the shell runs them without awaiting in between
(STYLE rule 11). Every effect that can fail is answered by an event
(docs/effects.md lists who executes each one and what answers it):

- `OpenUpstream` by `UpstreamResponseStarted`, then `UpstreamBodyReceived`
  ... `UpstreamBodyEnded`, or by `UpstreamFailed` at any point;
- `RespondHead` / `RespondBody` / `RespondEnd` by `ClientGone` when the
  client is no longer there;
- `Persist` by `PersistFailed` when the store refuses it;
- `ArmTimer` by `TimerFired` (unless cancelled first);
- `FetchModelList` by `ModelListReceived` or `ModelListFailed`.

`AbortUpstream`, `CancelTimer`, `Log`, `Metric` and `Publish` cannot fail
in a way the core must hear about. Credentials travel inside `OpenUpstream`
and `FetchModelList` headers as `Secret` values; the shell reveals them
only on the wire.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from eggpool.core.config import ProxyUrl
from eggpool.core.secret import Secret
from eggpool.core.usage import Usage

__all__ = [
    "AbortUpstream",
    "ArmTimer",
    "AttemptEnded",
    "BackoffChanged",
    "CancelTimer",
    "CatalogChanged",
    "Effect",
    "FetchModelList",
    "Log",
    "Metric",
    "OpenUpstream",
    "OperationalEvent",
    "Persist",
    "Publish",
    "Record",
    "RequestFinalized",
    "RequestStarted",
    "RespondBody",
    "RespondEnd",
    "RespondHead",
    "RoutingDecided",
]

Headers = tuple[tuple[str, str], ...]
UpstreamHeaders = tuple[tuple[str, str | Secret], ...]


@attrs.frozen(kw_only=True, slots=True)
class OpenUpstream:
    """Send one attempt's request upstream and stream the answer back as events."""

    attempt_id: str
    request_id: str
    account: str
    url: str
    method: str
    headers: UpstreamHeaders
    body: bytes = attrs.field(repr=False)
    proxy: ProxyUrl | None = None
    connect_timeout: float = 5.0
    write_timeout: float = 30.0
    pool_timeout: float = 30.0  # longest wait for a free connection slot
    provider: str = ""  # whose connection limit (`max_connections`) it counts against


@attrs.frozen(kw_only=True, slots=True)
class AbortUpstream:
    """Close the attempt's connection now (no event answers it)."""

    attempt_id: str


@attrs.frozen(kw_only=True, slots=True)
class RespondHead:
    request_id: str
    status: int
    headers: Headers


@attrs.frozen(kw_only=True, slots=True)
class RespondBody:
    request_id: str
    data: bytes = attrs.field(repr=False)


@attrs.frozen(kw_only=True, slots=True)
class RespondEnd:
    """The response is complete; the client connection may be reused."""

    request_id: str


@attrs.frozen(kw_only=True, slots=True)
class ArmTimer:
    """Fire `TimerFired(key)` at monotonic time `at` (re-arming a key replaces it)."""

    key: str
    at: float


@attrs.frozen(kw_only=True, slots=True)
class CancelTimer:
    key: str


@attrs.frozen(kw_only=True, slots=True)
class FetchModelList:
    account: str
    url: str
    method: str
    headers: UpstreamHeaders
    body: bytes | None = None
    proxy: ProxyUrl | None = None
    timeout: float = 30.0  # for the answer: first byte, and silence between reads
    connect_timeout: float = 5.0
    write_timeout: float = 30.0
    pool_timeout: float = 30.0
    provider: str = ""  # whose connection limit (`max_connections`) it counts against


# --- persisted records ------------------------------------------------------------------


@attrs.frozen(kw_only=True, slots=True)
class RequestStarted:
    request_id: str
    at: float  # wall
    protocol: str
    model: str
    streamed: bool
    client: str
    entropy: int = 0  # the request's routing entropy (a replay routes it the same way)
    session: str | None = None  # its session-affinity key, if any


@attrs.frozen(kw_only=True, slots=True)
class AttemptEnded:
    request_id: str
    attempt_id: str
    account: str
    provider: str
    at: float
    status: int | None
    category: str | None  # the classifier's, None for a success
    failover: bool
    latency: float  # seconds from dispatch
    connect: float | None = None  # of which getting a connection (if the shell said)
    head: float | None = None  # seconds from dispatch to the response head (None: no head)
    retry_after: float | None = None  # the provider's cooldown hint (Retry-After...), seconds


@attrs.frozen(kw_only=True, slots=True)
class RequestFinalized:
    """The one and only final record of a request (docs/architecture.md, section 3)."""

    request_id: str
    at: float
    outcome: str  # completed / client_error / upstream_error / cancelled / interrupted ...
    status: int
    model: str
    account: str | None
    provider: str | None
    attempts: int
    usage: Usage | None
    cost_microdollars: int
    exactness: str
    latency: float
    ttft: float | None
    streamed: bool


@attrs.frozen(kw_only=True, slots=True)
class BackoffChanged:
    provider: str
    account: str | None
    model: str | None
    reason: str
    until: float | None  # None: the backoff ended
    probe_at: float | None = None
    at: float  # when it changed (wall clock): the account events' time


@attrs.frozen(kw_only=True, slots=True)
class CatalogChanged:
    snapshot: Mapping[str, object]


@attrs.frozen(kw_only=True, slots=True)
class OperationalEvent:
    at: float
    kind: str  # crash_recovery, shutdown, ...
    detail: str


@attrs.frozen(kw_only=True, slots=True)
class RoutingDecided:
    """One routing decision: which account a request's attempt went to, among how many, and
    which accounts were left out for a reason that changes (cooling down, circuit open,
    over quota, already tried...). Reasons that only follow the configuration (model not
    served, other protocol, disabled, pinned elsewhere) are not listed: they hold for every
    request alike."""

    decision_id: str  # "<request id>@<n>": the n-th decision of the request
    request_id: str
    at: float
    model: str
    account: str | None  # None: no account could take it
    candidates: int  # eligible accounts
    affinity: bool  # the session's account was kept
    excluded: tuple[tuple[str, str], ...]  # (account, reason)


Record = (
    RequestStarted
    | AttemptEnded
    | RequestFinalized
    | BackoffChanged
    | CatalogChanged
    | OperationalEvent
    | RoutingDecided
)


@attrs.frozen(kw_only=True, slots=True)
class Persist:
    record: Record


@attrs.frozen(kw_only=True, slots=True)
class Log:
    level: str  # DEBUG / INFO / WARNING / ERROR
    message: str
    fields: tuple[tuple[str, str], ...] = ()


@attrs.frozen(kw_only=True, slots=True)
class Metric:
    name: str
    value: float
    labels: tuple[tuple[str, str], ...] = ()


@attrs.frozen(kw_only=True, slots=True)
class Publish:
    """A change live dashboards may show (never a prompt or a secret)."""

    topic: str
    payload: Mapping[str, object]


Effect = (
    OpenUpstream
    | AbortUpstream
    | RespondHead
    | RespondBody
    | RespondEnd
    | ArmTimer
    | CancelTimer
    | FetchModelList
    | Persist
    | Log
    | Metric
    | Publish
)
