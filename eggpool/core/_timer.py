"""A request's one timer: armed for its earliest deadline, never re-armed for a later one.

Theory of operation. A request has deadlines (its total, and its open attempt's
first byte or silence between chunks) but one timer, `req:<request id>`.
Activity only moves deadlines later, so a chunk arms nothing: the timer may
fire early, and the machine then finds no deadline reached and arms it again
for the earliest one in force. Only an earlier deadline (a failover to a
provider with a shorter `read_timeout_s`) re-arms it before it fires.
"""

from __future__ import annotations

from eggpool.core.effects import ArmTimer, CancelTimer, Effect

__all__ = ["TIMER_PREFIX", "RequestTimer"]

TIMER_PREFIX = "req:"
"""A request's timer key is this and its id (`Pool` hands the firing to the machine)."""


class RequestTimer:
    __slots__ = ("_at", "key")

    def __init__(self, request_id: str) -> None:
        self.key = TIMER_PREFIX + request_id
        self._at: float | None = None  # when it is armed to fire; None: not armed

    def arm(self, at: float) -> list[Effect]:
        """Fire by `at` (monotonic seconds): arm it unless it already fires by then."""
        if self._at is not None and self._at <= at:
            return []
        self._at = at
        return [ArmTimer(key=self.key, at=at)]

    def fired(self) -> None:
        self._at = None

    def cancel(self) -> list[Effect]:
        """Disarm it, if it is armed."""
        if self._at is None:
            return []
        self._at = None
        return [CancelTimer(key=self.key)]
