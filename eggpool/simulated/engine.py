"""A lean discrete-event loop: the real `Pool`, simulated providers, a virtual clock.

Theory of operation. `Engine` plays the shell for `eggpool simulate`. Client
requests come from an iterable in arrival order, taken one at a time as
the run reaches them (`feed`); one heap holds everything else
that will happen (a provider step, a timer fires, a model list comes back),
ordered by virtual time and, for equal times, by the order it was scheduled;
a request goes before heap entries of the same time. So the same inputs
always give the same run. `run` takes the earliest, moves the clock to it,
builds the event with `now` read once, feeds it to `pool.handle` and executes the
effects in order, as a shell must (STYLE rule 10):

- `OpenUpstream`: `reply(effect, t)` says what the provider does (a
  `provider.Reply`); its steps are scheduled from now, the body pieces after
  the first joined into one (`Reply.steps(merge=True)`: the Pool sees the
  same bytes at the first token and at the end, in a fraction of the
  events); `AbortUpstream` drops the attempt's remaining steps;
- `FetchModelList`: `models(account, t)` lists what the account serves then;
- `ArmTimer` / `CancelTimer`: a timer entry (re-arming replaces it; the heap
  is rebuilt without dead entries once they are most of it);
- `Persist`: handed to `on_record`, which aggregates (nothing is kept here:
  a day of traffic is hundreds of thousands of requests);
- client-facing effects and logs are dropped: a simulation has no clients
  to write to, and what they would see is in the records.

No sockets, no sleeping, no wall clock: time is `start + elapsed`, both
virtual. Entries scheduled "now" run after the current effects, never
inside them (no re-entrancy, STYLE rule 11).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import attrs

from eggpool.core.config import Config
from eggpool.core.effects import (
    AbortUpstream,
    ArmTimer,
    CancelTimer,
    FetchModelList,
    OpenUpstream,
    Persist,
    Record,
)
from eggpool.core.events import (
    ClientRequestReceived,
    Event,
    Now,
    StateLoaded,
    TimerFired,
    UpstreamBodyEnded,
    UpstreamBodyReceived,
    UpstreamFailed,
    UpstreamResponseStarted,
)
from eggpool.core.pool import Pool
from eggpool.simulated.provider import ModelList, Reply
from eggpool.simulated.wire import ProviderEvent

__all__ = ["START", "ClientArrival", "Engine"]

START = Now(mono=1000.0, wall=1_767_225_600.0)
"""Where a simulation's clock starts: 2026-01-01T00:00:00Z."""

ClientArrival = tuple[float, Callable[[Now], ClientRequestReceived]]
"""A client request: when it arrives (seconds into the run) and how to build it then."""

ReplyFor = Callable[[OpenUpstream, float], Reply]
"""What the provider does for an attempt dispatched at `t` seconds into the run."""

_STEP, _TIMER, _LISTING = range(3)
_COMPACT_AT = 512  # dead timer entries tolerated before the heap is rebuilt
_STAMPED = (UpstreamResponseStarted, UpstreamBodyReceived, UpstreamBodyEnded, UpstreamFailed)


class Engine:
    """Run `config`'s Pool against simulated providers on a virtual clock."""

    def __init__(
        self,
        config: Config,
        *,
        reply: ReplyFor,
        models: Callable[[str, float], Sequence[str]],
        on_record: Callable[[Record, float], None],
        start: Now = START,
    ) -> None:
        self.config = config
        self._reply = reply
        self._models = models
        self._on_record = on_record
        self._start = start
        self._t = 0.0
        self._heap: list[tuple[float, int, int, object]] = []
        self._seq = 0
        self._source: Iterator[ClientArrival] = iter(())
        self._next: ClientArrival | None = None  # the next client request, taken from `_source`
        self._sent = 0
        self._timers: dict[str, int] = {}  # key -> seq of its live entry
        self._dead = 0  # timer entries in the heap that will never fire
        self._attempts: dict[str, int] = {}  # attempt id -> steps still to come
        self._paths = {
            account.name: (
                config.providers[account.provider_id].openai_path,
                config.providers[account.provider_id].anthropic_path,
            )
            for account in config.accounts
        }
        self._handlers: dict[type, Callable[[Any, float], None]] = {
            Persist: self._persist,
            OpenUpstream: self._open,
            ArmTimer: self._arm,
            CancelTimer: self._cancel,
            AbortUpstream: self._abort,
            FetchModelList: self._fetch,
        }
        self.pool = Pool(config, now=self.now)
        self.events = 0
        self._deliver(StateLoaded(now=self.now))

    @property
    def now(self) -> Now:
        return self._clock(self._t)

    @property
    def elapsed(self) -> float:
        return self._t

    def _clock(self, t: float) -> Now:
        return Now(mono=self._start.mono + t, wall=self._start.wall + t)

    def _push(self, at: float, kind: int, item: object) -> int:
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, kind, item))
        return self._seq

    def feed(self, arrivals: Iterable[ClientArrival]) -> None:
        """Client requests: (seconds into the run, `event(now)` building the request), in
        time order. They are taken one at a time as the run reaches them, so a day of
        traffic is never held at once; at equal times they go before heap entries."""
        self._source = iter(arrivals)
        self._next = next(self._source, None)

    @property
    def requests_sent(self) -> int:
        """Client requests delivered so far."""
        return self._sent

    @property
    def requests_pending(self) -> bool:
        """Whether requests are still to arrive."""
        return self._next is not None

    def _take(self) -> ClientArrival:
        taken = self._next
        assert taken is not None
        following = next(self._source, None)
        if following is not None and following[0] < taken[0]:
            raise ValueError("requests must arrive in time order")
        self._next = following
        self._sent += 1
        return taken

    def run(self, until: float, *, done: Callable[[], bool] | None = None) -> None:
        """Deliver everything due up to `until` seconds, or until `done()` says so (checked
        between events). There is always more: the Pool re-arms its periodic timers."""
        heap = self._heap
        while heap or self._next is not None:
            arrival = self._next
            if arrival is not None and (not heap or arrival[0] <= heap[0][0]):
                if arrival[0] > until or (done is not None and done()):
                    break
                at, make = self._take()
                self._t = max(self._t, at)
                self._deliver(make(self.now))
                continue
            at, seq, kind, item = heap[0]
            if at > until or (done is not None and done()):
                break
            heapq.heappop(heap)
            if kind == _TIMER:
                key = item
                assert isinstance(key, str)
                if self._timers.get(key) != seq:
                    self._dead -= 1
                    continue  # cancelled or re-armed since
                del self._timers[key]
                self._t = max(self._t, at)
                self._deliver(TimerFired(now=self.now, key=key))
            elif kind == _STEP:
                # Stamped when scheduled: entries are never due before the clock.
                assert isinstance(item, _STAMPED)
                assert at >= self._t
                attempt_id = item.attempt_id
                left = self._attempts.get(attempt_id)
                if left is None:
                    continue  # aborted
                if left <= 1:
                    del self._attempts[attempt_id]
                else:
                    self._attempts[attempt_id] = left - 1
                self._t = at
                self._deliver(item)
            else:
                self._t = max(self._t, at)
                self._deliver(item.stamp(self.now))  # type: ignore[attr-defined]
        if done is None or not done():
            self._t = max(self._t, until)

    def _deliver(self, event: Event) -> None:
        self.events += 1
        t = self._t
        handlers = self._handlers
        for effect in self.pool.handle(event):
            handler = handlers.get(type(effect))
            if handler is not None:
                handler(effect, t)
            # Responses to clients, logs, metrics, publishes: nobody to show them to.

    def _persist(self, effect: Persist, t: float) -> None:
        self._on_record(effect.record, t)

    def _arm(self, effect: ArmTimer, t: float) -> None:
        at = max(t, effect.at - self._start.mono)
        if self._timers.get(effect.key) is not None:
            self._dead += 1  # re-armed: its earlier entry is dead
        self._timers[effect.key] = self._push(at, _TIMER, effect.key)

    def _cancel(self, effect: CancelTimer, t: float) -> None:
        if self._timers.pop(effect.key, None) is not None:
            self._dead += 1
            if self._dead > _COMPACT_AT and self._dead * 2 > len(self._heap):
                self._compact()

    def _compact(self) -> None:
        """Drop the dead timer entries (cancelled or re-armed): most timers never fire, and
        a heap of dead ones makes every push and pop slower."""
        timers = self._timers
        live = [e for e in self._heap if e[2] != _TIMER or timers.get(e[3]) == e[1]]  # type: ignore[call-overload]
        self._heap[:] = live  # in place: `run` holds the list
        heapq.heapify(self._heap)
        self._dead = 0

    def _abort(self, effect: AbortUpstream, t: float) -> None:
        self._attempts.pop(effect.attempt_id, None)

    def _fetch(self, effect: FetchModelList, t: float) -> None:
        listed = self._models(effect.account, t)
        for step in ModelList.of(*listed).steps(effect.account):
            self._push(t + step.delay, _LISTING, step)

    def _open(self, effect: OpenUpstream, t: float) -> None:
        openai_path, anthropic_path = self._paths[effect.account]
        steps = self._reply(effect, t).steps(
            effect, openai_path=openai_path, anthropic_path=anthropic_path, merge=True
        )
        if not steps:
            return  # a hang: only the core's timer ends it
        self._attempts[effect.attempt_id] = len(steps)
        at = t
        for step in steps:
            at += step.delay
            self._push(at, _STEP, _stamp(step.event, self._clock(at)))


def _stamp(event: ProviderEvent, now: Now) -> ProviderEvent:
    """`event` at `now`: `Step.stamp` without `attrs.evolve` for the frequent kinds."""
    if isinstance(event, UpstreamBodyReceived):
        return UpstreamBodyReceived(now=now, attempt_id=event.attempt_id, data=event.data)
    if isinstance(event, UpstreamResponseStarted):
        return UpstreamResponseStarted(
            now=now, attempt_id=event.attempt_id, status=event.status, headers=event.headers
        )
    if isinstance(event, UpstreamBodyEnded):
        return UpstreamBodyEnded(now=now, attempt_id=event.attempt_id)
    return attrs.evolve(event, now=now)
