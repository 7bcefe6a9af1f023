"""Why a request cannot be routed, as the error its client gets.

Theory of operation. When routing finds no account for a request, the
reason decides the answer: after a failed attempt, every account throttled
gives 429 with the soonest any comes back, otherwise the last upstream
answer passes through; before any attempt, an unknown model is 404 (or 503
while the first model listing is still in flight), throttling is 429, and
anything else names the reasons accounts were left out.
"""

from __future__ import annotations

from collections.abc import Set

from eggpool.core._services import Services
from eggpool.core.errors import LocalFailure
from eggpool.core.health import VerdictKind
from eggpool.core.retry import FailureCategory, RetryDecision
from eggpool.core.routing import ExclusionReason, RoutingDecision

__all__ = ["refusal_for"]

_THROTTLED = frozenset({ExclusionReason.COOLING, ExclusionReason.PROVIDER_BACKOFF})
_THROTTLING = frozenset(
    {FailureCategory.RATE_LIMITED, FailureCategory.QUOTA_EXHAUSTED, FailureCategory.OVERLOADED}
)


def refusal_for(
    decision: RoutingDecision,
    services: Services,
    *,
    requested_model: str,
    model: str,
    last_failure: RetryDecision | None,
    tried: Set[str],
    now: float,
) -> tuple[LocalFailure, str] | None:
    """The local answer and its outcome for a request `decision` found no account for;
    None when the last attempt's own answer should pass through instead. `last_failure`
    is the classifier's verdict on the last attempt (None: no attempt yet), `tried` the
    accounts tried so far, `now` the wall clock."""
    if last_failure is not None:
        soonest = _soonest_back(decision, services, model, tried, now)
        if soonest is not None and last_failure.category in _THROTTLING:
            # Every account is throttled: the soonest any comes back, not the last one's.
            return LocalFailure.all_throttled(
                requested_model, max(soonest - now, 1.0)
            ), "throttled"
        return None
    if not decision.known_model:
        if services.catalog_loading:  # unknown only because the listing is not in
            return LocalFailure.catalog_not_ready(), "not_ready"
        return LocalFailure.unknown_model(requested_model), "client_error"
    throttled = [e for e in decision.excluded if e.reason in _THROTTLED]
    soonest = decision.soonest_retry()
    if throttled and soonest is not None:
        failure = LocalFailure.all_throttled(requested_model, max(soonest - now, 1.0))
    else:
        reasons = sorted({e.reason.value for e in decision.excluded})
        failure = LocalFailure.no_eligible_account(requested_model, ", ".join(reasons) or None)
    return failure, "no_account"


def _soonest_back(
    decision: RoutingDecision, services: Services, model: str, tried: Set[str], now: float
) -> float | None:
    """When the first account that may serve this request again comes back."""
    ends = [e.until for e in decision.excluded if e.until is not None]
    for account in tried:
        verdict = services.health.verdict(account, model, now)
        if verdict.kind is not VerdictKind.OK and verdict.until is not None:
            ends.append(verdict.until)
    return min(ends) if ends else None
