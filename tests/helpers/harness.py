"""A discrete-event driver: a Pool-like object, the fake provider and a virtual clock.

Theory of operation. `Simulation` plays the shell. It keeps one priority
queue of things that will happen (a client request arrives, an upstream
step from `FakeProvider`, a timer fires, a model list comes back, a client
disconnects, the clock jumps), ordered by monotonic due time and, for equal
times, by the order they were scheduled, so the same inputs always give the
same event order. `run` pops the next entry, moves the clock to it, builds
the event with `now` read once, feeds it to `pool.handle(event)` and runs
the returned effects in order, exactly as a shell must (STYLE rule 10):

- `OpenUpstream`: the provider's steps are scheduled (the first step's
  delay counts from now); `AbortUpstream` drops what the attempt had still
  pending, so an aborted attempt produces no further event;
- `RespondHead` / `RespondBody` / `RespondEnd`: recorded in the request's
  `ClientView`, which also records protocol violations (a body before the
  head, a second head, anything after the end);
- `ArmTimer(key, at)`: `TimerFired(key)` at monotonic `at` (at once if `at`
  is past); re-arming a key replaces it, `CancelTimer` removes it;
- `FetchModelList`: the provider's scripted listing, after its delay;
- `Persist`: appended to `store`, or answered by `PersistFailed` when a
  failure was ordered with `fail_persist`;
- `Log` / `Metric` / `Publish`: recorded.

Entries scheduled "now" (a zero delay, a past timer) run after the current
effects, never inside them: no re-entrancy (STYLE rule 11).

Clock convention. `Now(mono, wall)`; the simulation starts at `start`
(default mono 1000.0, wall 2026-01-01T00:00:00Z) and `wall = mono +
offset`. Times given to the API (`at=`, `run(until=)`) are seconds since
the start (`elapsed`), not raw `mono`. `jump(s)` steps the wall clock alone
(NTP; `s` may be negative); `jump(s, mono=True)` moves both forward, like a
process that was suspended: whatever fell due meanwhile is delivered at the
new time, in order. `ArmTimer.at` is raw monotonic time, as the core sees it.

Identity and entropy. Request n (1-based) gets id `req-0001`, ... and
entropy `entropy_for(seed, n)` (splitmix64 of the seed and n: 64 bits,
deterministic, well mixed). Both can be overridden per request. Client-side
helpers (`ClientView`, `request_event`, `chat_body`, `START`, ...) live in
`client.py` and are re-exported here.

Determinism. `effects_log` holds every (event, effects) pair in delivery
order; `assert_deterministic()` replays the events into a fresh pool from
`pool_factory` and checks that every answer is identical.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, TypeVar, assert_never

import attrs

from eggpool.core.effects import (
    AbortUpstream,
    ArmTimer,
    CancelTimer,
    Effect,
    FetchModelList,
    Log,
    Metric,
    OpenUpstream,
    Persist,
    Publish,
    Record,
    RequestFinalized,
    RespondBody,
    RespondEnd,
    RespondHead,
)
from eggpool.core.events import (
    ClientGone,
    Event,
    ModelListFailed,
    ModelListReceived,
    Now,
    PersistFailed,
    ShutdownRequested,
    StateLoaded,
    TimerFired,
    UpstreamBodyEnded,
    UpstreamFailed,
)
from eggpool.simulated.provider import FakeProvider, Step, UpstreamEvent
from tests.helpers.client import (
    ANTHROPIC_PATH,
    DEFAULT_HEADERS,
    OPENAI_PATH,
    START,
    ClientView,
    chat_body,
    entropy_for,
    messages_body,
    request_event,
)

__all__ = [
    "ANTHROPIC_PATH",
    "DEFAULT_HEADERS",
    "OPENAI_PATH",
    "START",
    "AttemptView",
    "ClientView",
    "PoolLike",
    "Simulation",
    "SimulationStuck",
    "chat_body",
    "entropy_for",
    "messages_body",
    "request_event",
]

Headers = tuple[tuple[str, str], ...]
E = TypeVar("E")
R = TypeVar("R")


class PoolLike(Protocol):
    def handle(self, event: Event) -> Iterable[Effect]: ...


class SimulationStuck(AssertionError):
    """The simulation cannot make progress (or would not stop) as asked."""


# --- what the upstream saw ------------------------------------------------------------------


@attrs.define
class AttemptView:
    """One `OpenUpstream` and what became of it. Times are seconds since the start."""

    effect: OpenUpstream
    opened_at: float
    pending: int  # scripted steps not delivered yet
    events: list[UpstreamEvent] = attrs.field(factory=list)
    aborted_at: float | None = None

    @property
    def attempt_id(self) -> str:
        return self.effect.attempt_id

    @property
    def account(self) -> str:
        return self.effect.account

    @property
    def request_id(self) -> str:
        return self.effect.request_id

    @property
    def finished(self) -> bool:
        """The upstream side ended: body ended or transport failure delivered."""
        last = self.events[-1] if self.events else None
        return isinstance(last, UpstreamBodyEnded | UpstreamFailed)

    @property
    def open(self) -> bool:
        """A connection the core still holds: neither finished nor aborted."""
        return self.aborted_at is None and not self.finished


# --- queue entries ------------------------------------------------------------------------


@attrs.frozen(slots=True)
class _Deliver:
    make: Callable[[Now], Event]


@attrs.frozen(slots=True)
class _Disconnect:
    request_id: str


@attrs.frozen(slots=True)
class _Upstream:
    attempt_id: str
    step: Step


@attrs.frozen(slots=True)
class _Listing:
    step: Step


@attrs.frozen(slots=True)
class _Timer:
    key: str


@attrs.frozen(slots=True)
class _Jump:
    seconds: float
    mono: bool


_Entry = _Deliver | _Disconnect | _Upstream | _Listing | _Timer | _Jump


@attrs.define
class _PersistFailure:
    kind: type[Record] | None
    remaining: int
    error: str


# --- the simulation -----------------------------------------------------------------------


class Simulation:
    """Drive `pool_factory(start)` with scripted clients, a fake provider and virtual time."""

    def __init__(
        self,
        pool_factory: Callable[[Now], PoolLike],
        provider: FakeProvider | None = None,
        *,
        start: Now = START,
        seed: int = 0,
        headers: Headers = DEFAULT_HEADERS,
        boot: bool = True,
    ) -> None:
        self.pool_factory = pool_factory
        self.provider = provider if provider is not None else FakeProvider()
        self.start = start
        self.seed = seed
        self.headers = headers
        self._mono = start.mono
        self._offset = start.wall - start.mono
        self._queue: list[tuple[float, int, _Entry]] = []
        self._seq = 0
        self._requests = 0
        self._timers: dict[str, tuple[int, float]] = {}  # key -> (seq of the live entry, at)
        self._persist_failures: list[_PersistFailure] = []
        self.pool = pool_factory(start)
        self.clients: dict[str, ClientView] = {}
        self.attempts: dict[str, AttemptView] = {}
        self.store: list[Record] = []
        self.failed_persists: list[Record] = []
        self.logs: list[Log] = []
        self.metrics: list[Metric] = []
        self.published: list[Publish] = []
        self.effects_log: list[tuple[Event, list[Effect]]] = []
        self.violations: list[str] = []  # effects no shell could execute
        if boot:
            self.inject(lambda now: StateLoaded(now=now))

    # -- the clock -------------------------------------------------------------------

    @property
    def now(self) -> Now:
        return Now(mono=self._mono, wall=self._mono + self._offset)

    @property
    def elapsed(self) -> float:
        return self._mono - self.start.mono

    def _due(self, at: float | None) -> float:
        if at is None:
            return self._mono
        if at < self.elapsed:
            raise ValueError(f"t={at:g} is in the past (now t={self.elapsed:g})")
        return self.start.mono + at

    def jump(self, seconds: float, *, mono: bool = False, at: float | None = None) -> None:
        """Step the wall clock alone (either way), or with `mono` both forward; now or at `at`."""
        if mono and seconds < 0:
            raise ValueError("the monotonic clock never goes backwards")
        if at is None:
            self._jump(seconds, mono)
        else:
            self._push(self._due(at), _Jump(seconds, mono))

    def _jump(self, seconds: float, mono: bool) -> None:
        if mono:
            self._mono += seconds
        else:
            self._offset += seconds

    # -- scheduling inputs -----------------------------------------------------------

    def _push(self, due: float, entry: _Entry) -> int:
        self._seq += 1
        heapq.heappush(self._queue, (due, self._seq, entry))
        return self._seq

    def request(
        self,
        path: str,
        body: Mapping[str, object] | bytes,
        *,
        headers: Headers | None = None,
        at: float | None = None,
        request_id: str | None = None,
        entropy: int | None = None,
        client: str = "127.0.0.1",
    ) -> str:
        """Schedule a client request; returns its id (its `ClientView` exists at once)."""
        self._requests += 1
        n = self._requests
        rid = request_id if request_id is not None else f"req-{n:04d}"
        if rid in self.clients:
            raise ValueError(f"request id {rid!r} is already used")
        due = self._due(at)
        noise = entropy_for(self.seed, n) if entropy is None else entropy
        sent = headers if headers is not None else self.headers
        self.clients[rid] = ClientView(request_id=rid, path=path, sent_at=due - self.start.mono)
        self._push(due, _Deliver(lambda now: request_event(
            now, path, body, request_id=rid, entropy=noise, headers=sent, client=client
        )))  # fmt: skip
        return rid

    def chat(
        self,
        model: str,
        *,
        stream: bool = False,
        at: float | None = None,
        headers: Headers | None = None,
        **extra: Any,
    ) -> str:
        """Schedule `POST /v1/chat/completions`."""
        body = chat_body(model, stream=stream, **extra)
        return self.request(OPENAI_PATH, body, headers=headers, at=at)

    def messages(
        self,
        model: str,
        *,
        stream: bool = False,
        at: float | None = None,
        headers: Headers | None = None,
        **extra: Any,
    ) -> str:
        """Schedule `POST /v1/messages`."""
        body = messages_body(model, stream=stream, **extra)
        return self.request(ANTHROPIC_PATH, body, headers=headers, at=at)

    def disconnect(self, request_id: str, *, at: float | None = None) -> None:
        """The client goes away: `ClientGone` then, unless its response already ended."""
        if request_id not in self.clients:
            raise KeyError(request_id)
        self._push(self._due(at), _Disconnect(request_id))

    def inject(self, make: Callable[[Now], Event], *, at: float | None = None) -> None:
        """Schedule any event; `make(now)` builds it at delivery."""
        self._push(self._due(at), _Deliver(make))

    def shutdown(self, grace: float = 10.0, *, at: float | None = None) -> None:
        self.inject(lambda now: ShutdownRequested(now=now, grace=grace), at=at)

    def fail_persist(
        self,
        kind: type[Record] | None = None,
        *,
        times: int = 1,
        error: str = "database is locked",
    ) -> None:
        """The next `times` `Persist` effects of `kind` (any, if None) fail: `PersistFailed`
        (`what` is the record's class name) instead of landing in `store`."""
        self._persist_failures.append(_PersistFailure(kind, times, error))

    # -- running ---------------------------------------------------------------------

    def _live(self, seq: int, entry: _Entry) -> bool:
        match entry:
            case _Timer(key):
                live = self._timers.get(key)
                return live is not None and live[0] == seq
            case _Upstream(attempt_id, _):
                return self.attempts[attempt_id].aborted_at is None
            case _Disconnect(request_id):
                return not self.clients[request_id].done
            case _:
                return True

    def _peek(self) -> tuple[float, int, _Entry] | None:
        """The next live entry, dropping stale ones (cancelled timers, aborted attempts)."""
        while self._queue:
            _, seq, entry = self._queue[0]
            if self._live(seq, entry):
                return self._queue[0]
            heapq.heappop(self._queue)
        return None

    def step(self) -> bool:
        """Run the next live entry; False if there is none."""
        head = self._peek()
        if head is None:
            return False
        due, _, entry = heapq.heappop(self._queue)
        self._mono = max(self._mono, due)
        now = self.now
        match entry:
            case _Deliver(make):
                self.deliver(make(now))
            case _Disconnect(request_id):
                view = self.clients[request_id]
                view.gone, view.gone_at = True, self.elapsed
                self.deliver(ClientGone(now=now, request_id=request_id))
            case _Upstream(attempt_id, step):
                attempt = self.attempts[attempt_id]
                attempt.pending -= 1
                event = step.stamp(now)
                if isinstance(event, ModelListReceived | ModelListFailed):
                    raise TypeError(f"a model-list event in an upstream script: {event!r}")
                attempt.events.append(event)
                self.deliver(event)
            case _Listing(step):
                self.deliver(step.stamp(now))
            case _Timer(key):
                del self._timers[key]
                self.deliver(TimerFired(now=now, key=key))
            case _Jump(seconds, mono):
                self._jump(seconds, mono)
            case _:
                assert_never(entry)
        return True

    def run(self, until: float | None = None, *, max_events: int = 100_000) -> int:
        """Run until nothing is scheduled, or up to t=`until` (the clock then reads `until`).

        Returns the number of entries run. A pool that re-arms a periodic timer never
        runs dry: give `until`, or use `settle`."""
        limit = None if until is None else self.start.mono + until
        count = 0
        while (head := self._peek()) is not None:
            if limit is not None and head[0] > limit:
                break
            if count >= max_events:
                raise SimulationStuck(f"more than {max_events} events by t={self.elapsed:g}")
            self.step()
            count += 1
        if limit is not None:
            self._mono = max(self._mono, limit)
        return count

    def advance(self, seconds: float) -> int:
        """Run the next `seconds` of virtual time."""
        return self.run(until=self.elapsed + seconds)

    def settle(self, *, limit: float = 3600.0, max_events: int = 100_000) -> int:
        """Run until every client is done and no upstream / listing / client input is pending.

        Timers still armed are left alone (periodic work). Raises `SimulationStuck` when a
        client is still waiting but nothing is scheduled, or after `limit` virtual seconds."""
        deadline = self._mono + limit
        count = 0
        while self._busy():
            head = self._peek()
            if head is None:
                waiting = [rid for rid, view in self.clients.items() if not view.done]
                raise SimulationStuck(f"nothing scheduled, but clients still wait: {waiting}")
            if head[0] > deadline or count >= max_events:
                raise SimulationStuck(
                    f"not settled after {limit:g}s / {count} events (t={self.elapsed:g})"
                )
            self.step()
            count += 1
        return count

    def _busy(self) -> bool:
        if any(not view.done for view in self.clients.values()):
            return True
        return any(
            not isinstance(entry, _Timer) and self._live(seq, entry)
            for _, seq, entry in self._queue
        )

    # -- delivering and executing --------------------------------------------------------

    def deliver(self, event: Event) -> list[Effect]:
        """Feed one event to the pool now and execute its effects (bypasses the queue)."""
        try:
            effects = list(self.pool.handle(event))
        except Exception as exc:
            exc.add_note(f"while the pool handled {event!r} at t={self.elapsed:g}")
            raise
        self.effects_log.append((event, effects))
        for effect in effects:
            self._execute(effect)
        return effects

    def _execute(self, effect: Effect) -> None:
        at = self.elapsed
        match effect:
            case OpenUpstream():
                self._open(effect)
            case AbortUpstream(attempt_id=attempt_id):
                attempt = self.attempts.get(attempt_id)
                if attempt is None:
                    self.violations.append(f"abort of unknown attempt {attempt_id!r}")
                elif attempt.aborted_at is None and not attempt.finished:
                    attempt.aborted_at = at
            case RespondHead():
                if (view := self._client(effect.request_id, "head")) is not None:
                    view.record_head(effect, at)
            case RespondBody():
                if (view := self._client(effect.request_id, "body")) is not None:
                    view.record_body(effect, at)
            case RespondEnd():
                if (view := self._client(effect.request_id, "end")) is not None:
                    view.record_end(at)
            case ArmTimer(key=key, at=due):
                seq = self._push(max(due, self._mono), _Timer(key))
                self._timers[key] = (seq, due)
            case CancelTimer(key=key):
                self._timers.pop(key, None)
            case FetchModelList():
                self._schedule(self.provider.model_list(effect), _Listing)
            case Persist(record=record):
                self._persist(record)
            case Log():
                self.logs.append(effect)
            case Metric():
                self.metrics.append(effect)
            case Publish():
                self.published.append(effect)
            case _:
                assert_never(effect)

    def _open(self, effect: OpenUpstream) -> None:
        if effect.attempt_id in self.attempts:
            self.violations.append(f"attempt {effect.attempt_id!r} opened twice")
            return
        steps = self.provider.respond(effect)
        self.attempts[effect.attempt_id] = AttemptView(
            effect=effect, opened_at=self.elapsed, pending=len(steps)
        )
        self._schedule(steps, lambda step: _Upstream(effect.attempt_id, step))

    def _schedule(self, steps: list[Step], entry: Callable[[Step], _Entry]) -> None:
        due = self._mono
        for step in steps:
            due += step.delay
            self._push(due, entry(step))

    def _client(self, request_id: str, what: str) -> ClientView | None:
        view = self.clients.get(request_id)
        if view is None:
            self.violations.append(f"{what} for unknown request {request_id!r}")
        return view

    def _persist(self, record: Record) -> None:
        for rule in self._persist_failures:
            if rule.remaining > 0 and (rule.kind is None or isinstance(record, rule.kind)):
                rule.remaining -= 1
                self.failed_persists.append(record)
                self._refuse(type(record).__name__, rule.error)
                return
        self.store.append(record)

    def _refuse(self, what: str, error: str) -> None:
        self.inject(lambda now: PersistFailed(now=now, what=what, error=error))

    # -- looking at the outcome ----------------------------------------------------------

    @property
    def timers(self) -> dict[str, float]:
        """Armed timers: key -> monotonic due time."""
        return {key: at for key, (_, at) in self._timers.items()}

    @property
    def events(self) -> list[Event]:
        return [event for event, _ in self.effects_log]

    def effects(self, kind: type[E]) -> list[E]:
        """Every effect of one type, in execution order."""
        return [e for _, effects in self.effects_log for e in effects if isinstance(e, kind)]

    def records(self, kind: type[R]) -> list[R]:
        """Persisted records of one type, in order."""
        return [record for record in self.store if isinstance(record, kind)]

    def finalized(self, request_id: str) -> list[RequestFinalized]:
        return [r for r in self.records(RequestFinalized) if r.request_id == request_id]

    def attempts_for(self, request_id: str) -> list[AttemptView]:
        return [a for a in self.attempts.values() if a.request_id == request_id]

    def open_attempts(self) -> list[AttemptView]:
        """Upstream connections neither finished nor aborted (a leak, once settled)."""
        return [attempt for attempt in self.attempts.values() if attempt.open]

    def all_violations(self) -> list[str]:
        """Simulation-level violations plus every client's, prefixed with its request id."""
        return [
            *self.violations,
            *(f"{rid}: {v}" for rid, view in self.clients.items() for v in view.violations),
        ]

    # -- determinism -----------------------------------------------------------------

    def replay(
        self, pool_factory: Callable[[Now], PoolLike] | None = None
    ) -> list[tuple[Event, list[Effect]]]:
        """Feed the recorded events into a fresh pool; return its (event, effects) pairs."""
        pool = (pool_factory or self.pool_factory)(self.start)
        return [(event, list(pool.handle(event))) for event, _ in self.effects_log]

    def assert_deterministic(self, pool_factory: Callable[[Now], PoolLike] | None = None) -> None:
        """Replaying the recorded events gives the very same effects, event by event."""
        for index, ((event, want), (_, got)) in enumerate(
            zip(self.effects_log, self.replay(pool_factory), strict=True)
        ):
            if got != want:
                raise AssertionError(
                    f"replay diverged at event #{index} {event!r}:\n"
                    f"  recorded: {want!r}\n  replayed: {got!r}"
                )
