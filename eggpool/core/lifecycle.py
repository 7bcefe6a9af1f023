"""The request machine: one client request, its attempts upstream, and its one finalization.

Theory of operation. The `Pool` creates a `RequestMachine` for each proxied
request it accepted (parsed, authenticated) and feeds it the events that
concern it; the machine answers with effects. Its states and the events
each accepts are the table `TRANSITIONS`; an event a state does not accept
is a programming error, which moves the machine to `FAILED` (a finalized
state: the request still ends once, with a 500, and its reservation is
released). docs/lifecycle.md draws the table, generated from this module.

    RECEIVED --route--> ROUTED --dispatch--> CONNECTING --first byte--> STREAMING
        |                                        |  ^ failover               |
        +----------------------------------------+--+------------> FINALIZING --> DONE

Rules, in the order they matter:

- **Failover only before the first byte reaches the client**, and at most
  `routing.max_retries_before_stream` times. Until then the machine holds
  the response: an error status's body is read (bounded) and classified;
  a 200 is committed to the client only when its first forwardable bytes
  arrive, so a 200 followed at once by an error event (Anthropic's
  `overloaded_error`) still fails over. After the first byte, an upstream
  failure ends the stream with the protocol's in-stream error, never a
  clean close.
- **Deadlines share one timer** per request (`req:<request>`), armed for
  the earliest of the total, the open attempt's first byte (the provider's
  `read_timeout_s` from dispatch to the response head) and its silence
  between chunks (the same, from the latest chunk). Activity only moves a
  deadline later, so chunks arm nothing; a timer that fires early re-arms.
  An attempt deadline aborts the attempt and counts as a timeout; before
  the first byte it may fail over.
- **Client gone** aborts the upstream at once and finalizes as cancelled,
  billing the usage seen so far, else the reservation estimate if the
  provider had started answering, else nothing.
- **Exactly one finalization.** `_finalize` runs once whatever the path;
  it settles the last reservation with the real cost (failed attempts
  released theirs as they ended), records success with health, and emits
  the one `RequestFinalized` record.

Accounting of failed attempts (health, reservation release, the attempt
record) happens as each attempt ends, because the next routing decision
must see it; the request's own accounting happens once, in finalization.
"""

from __future__ import annotations

from collections.abc import Callable

from eggpool.core._attempt import Attempt, attempt_request_id
from eggpool.core._records import access_log, backoff_record, published, routing_record
from eggpool.core._refusals import refusal_for
from eggpool.core._services import Identity, Services
from eggpool.core._states import ALLOWED, State
from eggpool.core._states import state_diagram as draw_states
from eggpool.core._timer import TIMER_PREFIX, RequestTimer
from eggpool.core.config import Protocol
from eggpool.core.effects import (
    Effect,
    Log,
    OpenUpstream,
    Persist,
    RequestFinalized,
    RequestStarted,
    RespondBody,
    RespondEnd,
    RespondHead,
)
from eggpool.core.errors import LocalFailure, render_error, render_stream_error
from eggpool.core.events import (
    ClientGone,
    ClientRequestReceived,
    Now,
    TimerFired,
    UpstreamBodyEnded,
    UpstreamBodyReceived,
    UpstreamFailed,
    UpstreamResponseStarted,
)
from eggpool.core.pricing import compute_cost, reservation_estimate
from eggpool.core.requests import ParsedRequest, check_limits
from eggpool.core.retry import (
    BODY_SNIPPET_CAP,
    AttemptPhase,
    FailureCategory,
    RetryDecision,
    TransportFailure,
    classify_outcome,
)
from eggpool.core.routing import RoutingDecision
from eggpool.core.usage import (
    AnthropicStreamObserver,
    ObservedResponse,
    OpenAIStreamObserver,
    observe_anthropic_body,
    observe_openai_body,
)

__all__ = [
    "ALLOWED",
    "TIMER_PREFIX",
    "TRANSITIONS",
    "Identity",
    "RequestMachine",
    "Services",
    "State",
    "attempt_request_id",
]

TOTAL_DEADLINE = 3600.0
"""Seconds a request may take in all, attempts included."""
MAX_ERROR_BODY = 64 * 1024
"""Bytes of an upstream error body kept (to classify it, and to pass it through)."""
MAX_PLAIN_BODY = 32 * 1024 * 1024
"""Bytes of a non-streaming success body kept to read its usage (it is relayed whole anyway)."""

Handler = Callable[["RequestMachine", object], list[Effect]]


class RequestMachine:
    """One request. Mutable, single-threaded, I/O-free."""

    def __init__(
        self,
        services: Services,
        event: ClientRequestReceived,
        protocol: Protocol,
        request: ParsedRequest,
        session: str | None,
    ) -> None:
        self.services = services
        self.request_id = event.request_id
        self.protocol = protocol
        self.request = request
        self.session = session
        self.state = State.RECEIVED
        self._event = event
        self._started = event.now
        self._entropy = event.entropy
        self._attempts: list[Attempt] = []
        self._tried: set[str] = set()
        self._attempt: Attempt | None = None
        self._timer = RequestTimer(event.request_id)  # for the earliest deadline (_timer.py)
        self._ttft: float | None = None
        self._committed = False  # the response head went to the client
        self._last_failure: tuple[Attempt, RetryDecision] | None = None
        self._result: ObservedResponse | None = None

    # -- driving -------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.state in (State.DONE, State.FAILED)

    @property
    def current_attempt(self) -> str | None:
        return self._attempt.attempt_id if self._attempt is not None else None

    def start(self) -> list[Effect]:
        """Record the request and send its first attempt (or answer it locally)."""
        now = self._started
        effects: list[Effect] = [
            Persist(
                record=RequestStarted(
                    request_id=self.request_id,
                    at=now.wall,
                    protocol=self.protocol.value,
                    model=self.request.requested_model,
                    streamed=self.request.stream,
                    client=self._event.client,
                    entropy=self._event.entropy,
                    session=self.session,
                )
            ),
        ]
        return effects + self._route(now)

    def _goto(self, state: State) -> None:
        if state not in ALLOWED[self.state]:
            raise AssertionError(f"request machine: {self.state} -> {state} is not allowed")
        self.state = state

    def handle(self, event: object) -> list[Effect]:
        handler = TRANSITIONS.get((self.state, type(event)))
        if handler is None:
            return self._impossible(event)
        return handler(self, event)

    # -- routing and dispatch ------------------------------------------------------------

    def _route(self, now: Now) -> list[Effect]:
        if self.state is not State.RECEIVED:
            self._goto(State.RECEIVED)  # a failover: routing again
        services, request = self.services, self.request
        decision = services.router.decide(
            catalog=services.catalog,
            health=services.health,
            ledger=services.ledger,
            inflight=services.inflight,
            model=request.model,
            protocol=self.protocol,
            pinned=request.pinned_provider,
            estimate=self._estimate_for(request.pinned_provider),
            now=now.wall,
            entropy=self._entropy + len(self._attempts),
            tried=self._tried,
            session=self.session,
        )
        best = decision.best
        decided = routing_record(
            f"{self.request_id}@{len(self._attempts) + 1}",
            request_id=self.request_id,
            model=self.request.model,
            decision=decision,
            account=best.account if best else None,
            at=now.wall,
        )
        if best is None:
            return [decided, *self._no_candidate(decision, now)]
        if not self._attempts:
            failure = check_limits(request, best.candidate.limits)
            if failure is not None:
                return self._respond_local(failure, now, outcome="client_error")
        self._goto(State.ROUTED)
        return [decided, *self._dispatch(best.account, best.provider, best.probe, now)]

    def _estimate_for(self, provider: str | None) -> int:
        services, request = self.services, self.request
        config = services.config
        return reservation_estimate(
            services.prices(provider, request.model),
            request.input_tokens_estimate,
            request.max_output_tokens,
            unknown_microdollars=config.routing.unknown_request_reservation_microdollars,
        )

    def _no_candidate(self, decision: RoutingDecision, now: Now) -> list[Effect]:
        last = self._last_failure
        refusal = refusal_for(
            decision,
            self.services,
            requested_model=self.request.requested_model,
            model=self.request.model,
            last_failure=None if last is None else last[1],
            tried=self._tried,
            now=now.wall,
        )
        if refusal is None:
            return self._pass_through_last(now)
        failure, outcome = refusal
        return self._respond_local(failure, now, outcome)

    def _dispatch(self, account: str, provider_id: str, probe: bool, now: Now) -> list[Effect]:
        services, request = self.services, self.request
        identity = services.identity(account)
        provider = identity.provider
        attempt_id = f"{self.request_id}#{len(self._attempts) + 1}"
        reserved = self._estimate_for(provider_id)
        services.ledger.reserve(attempt_id, account, reserved, now.wall)
        services.inflight[account] += 1
        if probe:
            services.health.begin_probe(account, request.model, attempt_id)
        observer: OpenAIStreamObserver | AnthropicStreamObserver | None = None
        if request.stream:
            observer = (
                OpenAIStreamObserver(strip_usage_chunk=request.usage_injected)
                if self.protocol is Protocol.OPENAI
                else AnthropicStreamObserver()
            )
        attempt = Attempt(
            attempt_id=attempt_id,
            account=account,
            provider=provider,
            dispatched=now.mono,
            reserved=reserved,
            probe=probe,
            observer=observer,
            last_activity=now.mono,
        )
        self._attempts.append(attempt)
        self._tried.add(account)
        self._attempt = attempt
        self._goto(State.CONNECTING)
        path = (
            provider.openai_path if self.protocol is Protocol.OPENAI else provider.anthropic_path
        )
        return [
            OpenUpstream(
                attempt_id=attempt_id,
                request_id=self.request_id,
                account=account,
                url=provider.base_url + path,
                method="POST",
                headers=identity.upstream_headers(self._event.headers),
                body=request.body,
                proxy=identity.account.proxy,
                connect_timeout=provider.http.connect_timeout_s,
                write_timeout=provider.http.write_timeout_s,
                pool_timeout=provider.http.pool_timeout_s,
                provider=provider.id,
            ),
            *self._timer.arm(self._deadline_at()),
        ]

    # -- the request's one timer ---------------------------------------------------------

    def _deadline_at(self) -> float:
        """The earliest deadline in force: the total, and the open attempt's first byte
        (from dispatch) or silence (from its latest activity)."""
        at = self._started.mono + TOTAL_DEADLINE
        attempt = self._attempt
        if attempt is not None and attempt.open:
            at = min(at, attempt.deadline())
        return at

    # -- upstream events -----------------------------------------------------------------

    def _own(self, attempt_id: str) -> Attempt | None:
        attempt = self._attempt
        return attempt if attempt is not None and attempt.attempt_id == attempt_id else None

    def _on_head(self, event: object) -> list[Effect]:
        assert isinstance(event, UpstreamResponseStarted)
        attempt = self._own(event.attempt_id)
        if attempt is None:
            return []  # a late answer of an attempt already given up: ignore it
        attempt.status, attempt.headers = event.status, event.headers
        attempt.last_activity = event.now.mono
        attempt.head = event.now.mono - attempt.dispatched
        attempt.connect = event.connect_s
        return []  # the deadline moves from the first byte to silence: later, never earlier

    def _on_body(self, event: object) -> list[Effect]:
        assert isinstance(event, UpstreamBodyReceived)
        attempt = self._own(event.attempt_id)
        if attempt is None or attempt.status is None:
            return []
        attempt.last_activity = event.now.mono
        attempt.body_bytes += len(event.data)
        if not 200 <= attempt.status < 300:
            room = MAX_ERROR_BODY - len(attempt.body)
            if room > 0:
                attempt.body += event.data[:room]
            return []
        if attempt.observer is None:
            # A plain JSON answer is held until it is whole (its client waits for all of it
            # anyway), so that a truncated or error-carrying 200 can still fail over. One
            # larger than MAX_PLAIN_BODY is relayed as it comes from then on.
            if self._committed:
                return self._relay(attempt, event.data, event.now)
            attempt.body += event.data
            if len(attempt.body) <= MAX_PLAIN_BODY:
                return []
            held, attempt.body = bytes(attempt.body), bytearray()
            return self._relay(attempt, held, event.now)
        observation = attempt.observer.feed(event.data)
        if observation.error is not None and not self._committed:
            # An error event before anything reached the client: still a failover.
            outcome = attempt.outcome(self.protocol, event.now.wall, body=event.data)
            return self._attempt_failed(attempt, classify_outcome(outcome), event.now)
        if observation.first_content and self._ttft is None:
            self._ttft = event.now.mono - self._started.mono
        return self._relay(attempt, observation.forward, event.now)

    def _relay(self, attempt: Attempt, data: bytes, now: Now) -> list[Effect]:
        effects: list[Effect] = []
        if not data:
            return effects
        if not self._committed:
            self._committed = True
            self._goto(State.STREAMING)
            if self._ttft is None and attempt.observer is None:
                self._ttft = now.mono - self._started.mono
            assert attempt.status is not None
            effects.append(
                RespondHead(
                    request_id=self.request_id,
                    status=attempt.status,
                    headers=self._client_headers(attempt.headers),
                )
            )
        effects.append(RespondBody(request_id=self.request_id, data=data))
        return effects

    def _client_headers(
        self, upstream: tuple[tuple[str, str], ...]
    ) -> tuple[tuple[str, str], ...]:
        return self.services.client_headers(upstream, self.request_id, len(self._attempts))

    def _on_end(self, event: object) -> list[Effect]:
        assert isinstance(event, UpstreamBodyEnded)
        attempt = self._own(event.attempt_id)
        if attempt is None or attempt.status is None:
            return []
        attempt.open = False
        now = event.now
        effects: list[Effect] = []
        if not 200 <= attempt.status < 300:
            body = bytes(attempt.body[:BODY_SNIPPET_CAP])
            outcome = attempt.outcome(self.protocol, now.wall, body=body)
            return effects + self._attempt_failed(attempt, classify_outcome(outcome), now)
        if attempt.observer is None:
            if self._committed:  # a very large answer, relayed as it came
                return effects + self._succeed(attempt, now)
            body = bytes(attempt.body)
            self._result = (
                observe_openai_body(body)
                if self.protocol is Protocol.OPENAI
                else observe_anthropic_body(body)
            )
            if not self._result.terminal_seen:  # cut short, not JSON, or an error object
                outcome = attempt.outcome(self.protocol, now.wall, body=body[:BODY_SNIPPET_CAP])
                self._result = None
                return effects + self._attempt_failed(attempt, classify_outcome(outcome), now)
            self._committed = True
            self._goto(State.STREAMING)
            self._ttft = now.mono - self._started.mono
            effects.append(
                RespondHead(
                    request_id=self.request_id,
                    status=attempt.status,
                    headers=self._client_headers(attempt.headers),
                )
            )
            if body:
                effects.append(RespondBody(request_id=self.request_id, data=body))
            return effects + self._succeed(attempt, now)
        observation = attempt.observer.feed_eof()
        effects += self._relay(attempt, observation.forward, now)
        self._result = attempt.observer.result()
        if self._result.terminal_seen and self._result.error is None:
            return effects + self._succeed(attempt, now)
        failure = TransportFailure.CLOSED
        return effects + self._transport_failure(attempt, failure, now, cut=True)

    def _on_failed(self, event: object) -> list[Effect]:
        assert isinstance(event, UpstreamFailed)
        attempt = self._own(event.attempt_id)
        if attempt is None:
            return []
        attempt.open = False
        return self._transport_failure(attempt, event.failure, event.now)

    def _transport_failure(
        self, attempt: Attempt, failure: TransportFailure, now: Now, *, cut: bool = False
    ) -> list[Effect]:
        if self._committed:
            phase = AttemptPhase.MID_STREAM
        elif attempt.status is None:
            phase = AttemptPhase.CONNECT
        else:
            phase = AttemptPhase.RESPONSE_HEAD
        outcome = attempt.outcome(self.protocol, now.wall, phase=phase, failure=failure)
        return attempt.abort() + self._attempt_failed(attempt, classify_outcome(outcome), now)

    # -- timers and the client -----------------------------------------------------------

    def _on_timer(self, event: object) -> list[Effect]:
        assert isinstance(event, TimerFired)
        self._timer.fired()
        now = event.now
        if now.mono >= self._started.mono + TOTAL_DEADLINE:
            return self._deadline(now)
        attempt = self._attempt
        if attempt is not None and attempt.open:
            failure = attempt.timed_out(now.mono)
            if failure is not None:
                return self._transport_failure(attempt, failure, now)
        return self._timer.arm(self._deadline_at())  # activity since: the next deadline

    def _deadline(self, now: Now) -> list[Effect]:
        attempt = self._attempt
        effects: list[Effect] = []
        if attempt is not None:
            effects += attempt.abort()
        failure = LocalFailure.upstream_timeout(TOTAL_DEADLINE)
        if self._committed and attempt is not None:
            if attempt.observer is not None:
                self._result = attempt.observer.result()
            effects += self._end_stream_with(failure)
            return effects + self._finalize(now, "timeout", 504, billed=attempt)
        if attempt is not None:
            self._release(attempt)
        return effects + self._respond_local(failure, now, "timeout")

    def interrupt(self, now: Now) -> list[Effect]:
        """Shutdown's grace is over: end the request now, once, as interrupted."""
        if self.done:
            return []
        effects: list[Effect] = []
        attempt = self._attempt
        if attempt is not None and attempt.open:
            effects += attempt.abort()
            if attempt.observer is not None:
                self._result = attempt.observer.result()
        if self._committed and attempt is not None:
            effects += self._end_stream_with(LocalFailure.shutting_down())
            return effects + self._finalize(now, "interrupted", 503, billed=attempt)
        if attempt is not None:
            self._release(attempt)
        return effects + self._respond_local(LocalFailure.shutting_down(), now, "interrupted")

    def _on_client_gone(self, event: object) -> list[Effect]:
        assert isinstance(event, ClientGone)
        effects: list[Effect] = []
        attempt = self._attempt
        if attempt is not None and attempt.open:
            effects += attempt.abort()
            if attempt.observer is not None:
                self._result = attempt.observer.result()
        return effects + self._finalize(event.now, "cancelled", 499, billed=attempt)

    # -- attempt outcomes ----------------------------------------------------------------

    def _attempt_failed(self, attempt: Attempt, decision: RetryDecision, now: Now) -> list[Effect]:
        services = self.services
        effects: list[Effect] = attempt.abort()
        changes = services.health.record_failure(
            attempt.account, self.request.model, decision, now.wall, attempt.attempt_id
        )
        effects += [backoff_record(change, now.wall) for change in changes]
        effects.append(attempt.record(self.request_id, now, decision))
        self._last_failure = (attempt, decision)
        if self._committed:  # bytes reached the client: end the stream with an error
            self._result = attempt.observer.result() if attempt.observer is not None else None
            effects += self._end_stream_with(LocalFailure.upstream_interrupted())
            return effects + self._finalize(now, "upstream_error", 502, billed=attempt)
        self._release(attempt)
        retries = self.services.config.routing.max_retries_before_stream
        if decision.failover and len(self._attempts) <= retries:
            return effects + self._route(now)
        return effects + self._pass_through_last(now)

    def _succeed(self, attempt: Attempt, now: Now) -> list[Effect]:
        services = self.services
        changes = services.health.record_success(attempt.account, self.request.model, now.wall)
        effects: list[Effect] = [backoff_record(change, now.wall) for change in changes]
        effects.append(attempt.record(self.request_id, now, None))
        services.router.confirm(self.session, attempt.account, now.wall)
        effects.append(RespondEnd(request_id=self.request_id))
        assert attempt.status is not None
        return effects + self._finalize(now, "completed", attempt.status, billed=attempt)

    def _pass_through_last(self, now: Now) -> list[Effect]:
        """No (more) failover: the client gets the last upstream answer, or a local 502."""
        assert self._last_failure is not None
        attempt, decision = self._last_failure
        status = attempt.status
        if status is None or 200 <= status < 300:
            failure = (
                LocalFailure.upstream_timeout()
                if decision.category is FailureCategory.TIMEOUT
                else LocalFailure.upstream_exhausted(
                    self.request.requested_model, len(self._attempts), status
                )
            )
            return self._respond_local(failure, now, "upstream_error")
        outcome = (
            "client_error" if 400 <= status < 500 and not decision.failover else "upstream_error"
        )
        self._committed = True
        effects: list[Effect] = [
            RespondHead(
                request_id=self.request_id,
                status=status,
                headers=self._client_headers(attempt.headers),
            ),
            RespondBody(request_id=self.request_id, data=bytes(attempt.body)),
            RespondEnd(request_id=self.request_id),
        ]
        return effects + self._finalize(now, outcome, status)

    def _respond_local(self, failure: LocalFailure, now: Now, outcome: str) -> list[Effect]:
        response = render_error(self.protocol, failure)
        headers = (*response.headers, ("x-eggpool-request-id", self.request_id))
        self._committed = True
        effects: list[Effect] = [
            RespondHead(request_id=self.request_id, status=response.status, headers=headers),
            RespondBody(request_id=self.request_id, data=response.body),
            RespondEnd(request_id=self.request_id),
        ]
        return effects + self._finalize(now, outcome, response.status)

    def _end_stream_with(self, failure: LocalFailure) -> list[Effect]:
        return [
            RespondBody(
                request_id=self.request_id, data=render_stream_error(self.protocol, failure)
            ),
            RespondEnd(request_id=self.request_id),
        ]

    def _release(self, attempt: Attempt) -> None:
        services = self.services
        if services.ledger.release(attempt.attempt_id):
            services.inflight[attempt.account] -= 1
        if attempt.probe:
            services.health.end_probe(attempt.account, attempt.attempt_id)

    # -- the one finalization ------------------------------------------------------------

    def _finalize(
        self, now: Now, outcome: str, status: int, *, billed: Attempt | None = None
    ) -> list[Effect]:
        if self.done or self.state is State.FINALIZING:
            return []
        self._goto(State.FINALIZING)
        services = self.services
        effects = self._timer.cancel()
        usage = self._result.usage if self._result is not None else None
        cost_micro, exactness = 0, "unknown"
        account = provider = None
        if billed is not None:
            account, provider = billed.account, billed.provider.id
            prices = services.prices(provider, self.request.model)
            # No usage: bill the estimate once the provider had started answering.
            estimate = billed.reserved if billed.body_bytes or billed.status else None
            cost = compute_cost(usage, prices, estimate=estimate)
            cost_micro, exactness = cost.microdollars, cost.exactness.value
            if services.ledger.settle(billed.attempt_id, cost_micro, now.wall):
                services.inflight[billed.account] -= 1
            if billed.probe:
                services.health.end_probe(billed.account, billed.attempt_id)
        for attempt in self._attempts:  # anything still held (never more than the last)
            self._release(attempt)
        self._goto(State.DONE)
        record = RequestFinalized(
            request_id=self.request_id,
            at=now.wall,
            outcome=outcome,
            status=status,
            model=self.request.requested_model,
            account=account,
            provider=provider,
            attempts=len(self._attempts),
            usage=usage,
            cost_microdollars=cost_micro,
            exactness=exactness,
            latency=now.mono - self._started.mono,
            ttft=self._ttft,
            streamed=self.request.stream,
        )
        effects.append(Persist(record=record))
        effects.append(published(record))
        if services.config.server.access_log:
            effects.append(access_log(record))
        return effects

    def _impossible(self, event: object) -> list[Effect]:
        """An event this state cannot take: a bug. End the request once, loudly."""
        if self.done:
            return []  # late events for a finished request (a race in the shell): harmless
        now = getattr(event, "now", self._started)
        previous = self.state
        effects: list[Effect] = []
        attempt = self._attempt
        if attempt is not None:
            effects += attempt.abort()
        if not self._committed:
            effects += self._respond_local(LocalFailure.internal_error(), now, "internal_error")
        else:
            effects += self._end_stream_with(LocalFailure.internal_error())
            effects += self._finalize(now, "internal_error", 500)
        self.state = State.FAILED
        effects.append(
            Log(
                level="ERROR",
                message="request machine received an event its state does not accept",
                fields=(("state", previous.value), ("event", type(event).__name__)),
            )
        )
        return effects


_HANDLERS: dict[type, Handler] = {
    UpstreamResponseStarted: RequestMachine._on_head,
    UpstreamBodyReceived: RequestMachine._on_body,
    UpstreamBodyEnded: RequestMachine._on_end,
    UpstreamFailed: RequestMachine._on_failed,
    TimerFired: RequestMachine._on_timer,
    ClientGone: RequestMachine._on_client_gone,
}

TRANSITIONS: dict[tuple[State, type], Handler] = {
    **{(State.CONNECTING, kind): handler for kind, handler in _HANDLERS.items()},
    **{(State.STREAMING, kind): handler for kind, handler in _HANDLERS.items()},
}
"""(state, event type) -> handler. RECEIVED, ROUTED and FINALIZING are passed through within
one call (routing, dispatch, finalization); DONE and FAILED take nothing more."""


def state_diagram() -> str:
    """The request machine as a Mermaid state diagram, generated from `ALLOWED` and
    `TRANSITIONS` (docs/lifecycle.md embeds it; a test keeps the two in step)."""
    return draw_states(TRANSITIONS)
