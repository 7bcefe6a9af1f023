"""Records and log lines built from what a request machine decided (pure: values in, effects out).

Theory of operation. A finished request writes one access-log line
(`server.access_log`), and a health change writes one backoff record; both
are plain functions of the record or the change, kept apart from the
request machine so that it holds only its own logic.
"""

from __future__ import annotations

from eggpool.core.effects import BackoffChanged, Log, Persist, RequestFinalized
from eggpool.core.health import BackoffChange

__all__ = ["access_log", "backoff_record"]


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
