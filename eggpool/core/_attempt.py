"""One attempt of a request at an account: its state as the request machine sees it.

Theory of operation. The request machine dispatches a request to an account
as an attempt (`<request id>#<n>`), follows its response head and body,
and ends it with one `AttemptEnded` record whichever way it goes.
"""

from __future__ import annotations

import attrs

from eggpool.core.config import Protocol, ProviderConfig
from eggpool.core.effects import AbortUpstream, AttemptEnded, Effect, Persist
from eggpool.core.events import Now
from eggpool.core.retry import AttemptPhase, RetryDecision, TransportFailure, UpstreamOutcome
from eggpool.core.usage import AnthropicStreamObserver, OpenAIStreamObserver

__all__ = ["Attempt", "attempt_request_id"]


def attempt_request_id(attempt_id: str) -> str:
    """Attempt ids are `<request id>#<n>`: the Pool finds the machine without an index."""
    return attempt_id.rpartition("#")[0]


@attrs.define(slots=True)
class Attempt:
    """One try of a request at one account: what the machine knows of it so far."""

    attempt_id: str
    account: str
    provider: ProviderConfig
    dispatched: float  # mono
    reserved: int
    probe: bool
    observer: OpenAIStreamObserver | AnthropicStreamObserver | None
    status: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    body: bytearray = attrs.Factory(bytearray)  # an error body, or a plain success body
    body_bytes: int = 0
    last_activity: float = 0.0
    open: bool = True  # the upstream connection is live
    head: float | None = None  # seconds from dispatch to the response head
    connect: float | None = None  # of which getting a connection (as the shell measured)

    def deadline(self) -> float:
        """When it times out unless something arrives (mono): the first byte is due the
        provider's `read_timeout_s` after dispatch, then each chunk within that of the last."""
        since = self.dispatched if self.status is None else self.last_activity
        return since + self.provider.http.read_timeout_s

    def timed_out(self, now: float) -> TransportFailure | None:
        """The timeout it ran into by `now` (mono), if any. The same sum as `deadline`: a
        timer armed for it finds it due."""
        if now < self.deadline():
            return None
        if self.status is None:
            return TransportFailure.FIRST_BYTE_TIMEOUT
        return TransportFailure.IDLE_TIMEOUT

    def abort(self) -> list[Effect]:
        """Give up the upstream connection if it is still live: the effect that does it."""
        if not self.open:
            return []
        self.open = False
        return [AbortUpstream(attempt_id=self.attempt_id)]

    def outcome(
        self,
        protocol: Protocol,
        now_wall: float,
        *,
        phase: AttemptPhase = AttemptPhase.RESPONSE_HEAD,
        body: bytes = b"",
        failure: TransportFailure | None = None,
    ) -> UpstreamOutcome:
        """The attempt's failure as the retry classifier takes it: after its response head
        (with `body`, an error's first bytes) unless `phase` says otherwise, or `failure`
        of the transport."""
        return UpstreamOutcome(
            phase=phase,
            protocol=protocol,
            now_wall=now_wall,
            status=self.status,
            headers=self.headers if failure is None else (),
            body=body,
            failure=failure,
            provider=self.provider.id,
        )

    def record(self, request_id: str, now: Now, decision: RetryDecision | None) -> Persist:
        """The attempt's `AttemptEnded` record, as it ends `now` (`decision`: the
        classifier's verdict on a failure, None for a success)."""
        return Persist(
            record=AttemptEnded(
                request_id=request_id,
                attempt_id=self.attempt_id,
                account=self.account,
                provider=self.provider.id,
                at=now.wall,
                status=self.status,
                category=None if decision is None else decision.category.value,
                failover=decision is not None and decision.failover,
                latency=now.mono - self.dispatched,
                connect=self.connect,
                head=self.head,
                retry_after=None if decision is None else decision.cooldown,
            )
        )
