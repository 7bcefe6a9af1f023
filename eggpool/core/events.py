"""Events: the facts a shell reports to the `Pool`. Past tense, data only.

Theory of operation. A shell turns everything that happens outside the core
(a client request arrives, an upstream answers, a timer fires, the clock
is read) into one of these frozen, keyword-only values and hands it to
`Pool.handle`, which answers with effects (`effects.py`). Every event
carries `now`: the shell reads the clock once per event, so the core never
does, and replaying a recorded event log reproduces every decision
(docs/architecture.md, "The one rule"). Randomness arrives the same way, as
the `entropy` of a client request.

Identifiers are minted by the shell (request ids) or by the core (attempt
ids, derived from the request id), and every event that answers an effect
names the effect's target: `UpstreamResponseStarted.attempt_id` answers
`OpenUpstream.attempt_id`.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from eggpool.core.retry import TransportFailure

__all__ = [
    "ClientGone",
    "ClientRequestReceived",
    "Event",
    "ModelListFailed",
    "ModelListReceived",
    "Now",
    "PersistFailed",
    "ShutdownRequested",
    "StateLoaded",
    "StoredBackoff",
    "StoredCharge",
    "StoredPending",
    "TimerFired",
    "UpstreamBodyEnded",
    "UpstreamBodyReceived",
    "UpstreamFailed",
    "UpstreamResponseStarted",
]

Headers = tuple[tuple[str, str], ...]


@attrs.frozen(slots=True)
class Now:
    """The clock, read once by the shell: `mono` for deadlines, `wall` for what is stored."""

    mono: float
    wall: float


@attrs.frozen(kw_only=True, slots=True)
class ClientRequestReceived:
    """A client sent a whole request (the shell enforces the body size limit first)."""

    now: Now
    request_id: str
    entropy: int  # 64 random bits from the shell: tie-breaks, ids
    method: str
    path: str  # without the query string
    headers: Headers
    body: bytes = attrs.field(repr=False)
    client: str = ""  # the peer address, for stats


@attrs.frozen(kw_only=True, slots=True)
class UpstreamResponseStarted:
    now: Now
    attempt_id: str
    status: int
    headers: Headers
    connect_s: float | None = None  # getting the connection took this long (if the shell knows)


@attrs.frozen(kw_only=True, slots=True)
class UpstreamBodyReceived:
    now: Now
    attempt_id: str
    data: bytes = attrs.field(repr=False)


@attrs.frozen(kw_only=True, slots=True)
class UpstreamBodyEnded:
    """The upstream response ended cleanly at the HTTP level (the SSE may still be cut)."""

    now: Now
    attempt_id: str


@attrs.frozen(kw_only=True, slots=True)
class UpstreamFailed:
    """The attempt failed below HTTP: refused, DNS, TLS, proxy, timeout, reset, ..."""

    now: Now
    attempt_id: str
    failure: TransportFailure
    detail: str = ""  # for logs; never holds a secret


@attrs.frozen(kw_only=True, slots=True)
class ClientGone:
    """The client disconnected, or a write to it failed."""

    now: Now
    request_id: str


@attrs.frozen(kw_only=True, slots=True)
class TimerFired:
    now: Now
    key: str


@attrs.frozen(kw_only=True, slots=True)
class ModelListReceived:
    now: Now
    account: str
    status: int
    body: bytes = attrs.field(repr=False)


@attrs.frozen(kw_only=True, slots=True)
class ModelListFailed:
    now: Now
    account: str
    reason: str


@attrs.frozen(kw_only=True, slots=True)
class StoredPending:
    """A request the store still has as pending: the previous run did not finish it."""

    request_id: str
    account: str | None
    started_at: float  # wall


@attrs.frozen(kw_only=True, slots=True)
class StoredCharge:
    account: str
    at: float  # wall
    microdollars: int


@attrs.frozen(kw_only=True, slots=True)
class StoredBackoff:
    provider: str
    account: str | None
    model: str | None
    reason: str
    until: float
    probe_at: float | None = None


@attrs.frozen(kw_only=True, slots=True)
class StateLoaded:
    """What the shell read from the store at startup, before serving."""

    now: Now
    pending: tuple[StoredPending, ...] = ()
    charges: tuple[StoredCharge, ...] = ()
    backoffs: tuple[StoredBackoff, ...] = ()
    catalog: Mapping[str, object] | None = None  # a `Catalog.snapshot()`


@attrs.frozen(kw_only=True, slots=True)
class PersistFailed:
    """A `Persist` effect could not be written; `what` names the record kind."""

    now: Now
    what: str
    error: str


@attrs.frozen(kw_only=True, slots=True)
class ShutdownRequested:
    """SIGTERM or the like: stop taking requests, let streams end within `grace` seconds."""

    now: Now
    grace: float = 10.0


Event = (
    ClientRequestReceived
    | UpstreamResponseStarted
    | UpstreamBodyReceived
    | UpstreamBodyEnded
    | UpstreamFailed
    | ClientGone
    | TimerFired
    | ModelListReceived
    | ModelListFailed
    | StateLoaded
    | PersistFailed
    | ShutdownRequested
)
