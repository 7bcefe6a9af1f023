"""Records and log lines built from what a request machine decided (pure: values in, effects out).

Theory of operation. A finished request writes one access-log line
(`server.access_log`) and one live update, a health change one backoff record, a routing
decision one routing record; all are plain functions of what was decided,
kept apart from the request machine so that it holds only its own logic.
"""

from __future__ import annotations

from eggpool.core.effects import (
    BackoffChanged,
    Log,
    Persist,
    Publish,
    RequestFinalized,
    RoutingDecided,
)
from eggpool.core.health import BackoffChange
from eggpool.core.routing import STATIC_EXCLUSIONS, RoutingDecision

__all__ = ["access_log", "backoff_record", "published", "routing_record"]


def access_log(record: RequestFinalized) -> Log:
    """One line per request (`server.access_log`): what was asked, who served it, how it
    went. Never the prompt, the answer or a key."""
    usage, ttft = record.usage, record.ttft
    tokens_in = tokens_out = "-"
    if usage is not None:
        tokens_in = f"{usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens}"
        tokens_out = f"{usage.output_tokens}"
    return Log(
        level="INFO",
        message="request",
        fields=(
            ("request", record.request_id),
            ("model", record.model),
            ("stream", "yes" if record.streamed else "no"),
            ("outcome", record.outcome),
            ("status", f"{record.status}"),
            ("account", record.account or "-"),
            ("attempts", f"{record.attempts}"),
            ("ms", f"{record.latency * 1000:.0f}"),
            ("ttft_ms", "-" if ttft is None else f"{ttft * 1000:.0f}"),
            ("in", tokens_in),
            ("out", tokens_out),
            ("cost_usd", f"{record.cost_microdollars / 1e6:.6f}"),
        ),
    )


def published(record: RequestFinalized) -> Publish:
    """What live dashboards hear of a finished request: no prompt, key or client address."""
    usage = record.usage
    return Publish(
        topic="request",
        payload={
            "request_id": record.request_id,
            "outcome": record.outcome,
            "status": record.status,
            "account": record.account,
            "model": record.model,
            "cost_microdollars": record.cost_microdollars,
            "tokens": 0 if usage is None else usage.total_tokens,
            "streamed": record.streamed,
        },
    )


def backoff_record(change: BackoffChange, at: float) -> Persist:
    """The record of a cooldown that started, changed or ended at `at` (wall clock)."""
    return Persist(
        record=BackoffChanged(
            provider=change.provider,
            account=change.account,
            model=change.model,
            reason=change.reason,
            until=change.until,
            probe_at=change.probe_at,
            at=at,
        )
    )


def routing_record(
    decision_id: str,
    *,
    request_id: str,
    model: str,
    decision: RoutingDecision,
    account: str | None,
    at: float,
) -> Persist:
    """The record of one routing decision: the account chosen (or none), how many were
    eligible, whether the session's account was kept, and who was left out for a reason
    that changes with time (configuration-only reasons hold for every request alike)."""
    return Persist(
        record=RoutingDecided(
            decision_id=decision_id,
            request_id=request_id,
            at=at,
            model=model,
            account=account,
            candidates=len(decision.rows),
            affinity=decision.affinity is not None and decision.affinity == account,
            excluded=tuple(
                (e.account, e.reason.value)
                for e in decision.excluded
                if e.reason not in STATIC_EXCLUSIONS
            ),
        )
    )
