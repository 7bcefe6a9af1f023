"""Account health: cooldowns, circuit breakers, model quarantine and provider-wide backoff.

Theory of operation. The retry classifier turns each failed attempt into a
`RetryDecision` (category, scope, penalty, the provider's cooldown hint).
`Health` applies it to one of three scopes and answers, for a candidate
(account, model) at time `now`, whether it may be routed to (`verdict`).

- **Cooldowns.** A provider hint (Retry-After, reset headers) is honoured as
  given. Otherwise an escalating ladder per category: base x 2^(n-1) for
  the n-th consecutive failure of that category, capped (rate limits short,
  quota and auth longer, server errors short; see `DEFAULT_LADDERS`).
  A `light` penalty (a 5xx, a timeout) sets no cooldown on its first
  occurrence: one blip only fails over. Client errors never reach here
  with a scope.
- **Nothing is permanent.** Every cooldown ends, and a long one (a
  provider saying "retry in 18 days") admits one probe request every
  `probe_interval` so that a quota refilled early is noticed
  (user-needs.md, takeaway 4). A probe's success clears the state.
- **Circuit breaker** per account: `failure_threshold` consecutive
  penalized failures open it for `open_seconds` (doubling on each re-open,
  capped); then it is half-open: one probe in flight at a time, and
  `close_after` probe successes close it. Rate limits, quota and missing
  models are not faults and do not count (a busy account is healthy).
- **Model quarantine**: a model-not-found answer sets that (account, model)
  aside on its own ladder; other models of the account stay routable.
- **Correlated 429s.** When `correlation_accounts` distinct accounts of one
  provider are rate-limited within `correlation_window` seconds, the limit
  is the provider's (or the source IP's), not the keys'
  (user-needs.md, takeaway 3): a short provider-wide backoff replaces the
  accounts' own rate-limit cooldowns, so the pool does not collapse key by
  key.
- **Success clears** the account's transient cooldowns and failure
  streaks, the (account, model) quarantine and any provider backoff.

Time is the wall clock (Unix seconds) passed in, because cooldowns are
persisted and outlive a restart. Every change that should be persisted is
returned as a `BackoffChange`; `snapshot()` and `restore()` carry the
state across restarts (expired entries are dropped on restore).
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence

import attrs

from eggpool.core.retry import FailureCategory, FailureScope, Penalty, RetryDecision

__all__ = [
    "DEFAULT_LADDERS",
    "BackoffChange",
    "Health",
    "HealthPolicy",
    "Ladder",
    "Verdict",
    "VerdictKind",
]

_C = FailureCategory


@attrs.frozen(kw_only=True, slots=True)
class Ladder:
    """Cooldown of the n-th consecutive failure: `base * 2**(n-1)`, at most `cap` seconds."""

    base: float
    cap: float

    def step(self, n: int) -> float:
        return min(self.base * 2.0 ** min(max(n - 1, 0), 30), self.cap)


DEFAULT_LADDERS: Mapping[FailureCategory, Ladder] = {
    _C.RATE_LIMITED: Ladder(base=10, cap=600),
    _C.QUOTA_EXHAUSTED: Ladder(base=300, cap=1800),  # base from routing config
    _C.AUTH_FAILED: Ladder(base=300, cap=1800),
    _C.PERMISSION_DENIED: Ladder(base=120, cap=1800),
    _C.MODEL_UNAVAILABLE: Ladder(base=600, cap=1800),
    _C.OVERLOADED: Ladder(base=5, cap=120),
    _C.SERVER_ERROR: Ladder(base=5, cap=300),
    _C.TRANSPORT: Ladder(base=10, cap=600),
    _C.TIMEOUT: Ladder(base=10, cap=600),
    _C.UPSTREAM_PROTOCOL_ERROR: Ladder(base=10, cap=300),
    _C.UNKNOWN: Ladder(base=10, cap=300),
}


@attrs.frozen(kw_only=True, slots=True)
class HealthPolicy:
    ladders: Mapping[FailureCategory, Ladder] = DEFAULT_LADDERS
    probe_interval: float = 900.0  # a cooldown longer than this admits periodic probes
    failure_threshold: int = 5
    open_seconds: float = 30.0
    open_cap: float = 1800.0
    close_after: int = 3
    correlation_window: float = 10.0
    correlation_accounts: int = 3  # or half the provider's accounts, whichever is fewer (min 2)
    provider_backoff: Ladder = Ladder(base=10, cap=120)


class VerdictKind(enum.StrEnum):
    OK = "ok"
    PROBE = "probe"  # may take one request, as a probe
    COOLING = "cooling"
    CIRCUIT_OPEN = "circuit_open"
    MODEL_QUARANTINED = "model_quarantined"
    PROVIDER_BACKOFF = "provider_backoff"


@attrs.frozen(kw_only=True, slots=True)
class Verdict:
    kind: VerdictKind
    until: float | None = None
    reason: str = ""

    @property
    def routable(self) -> bool:
        return self.kind in (VerdictKind.OK, VerdictKind.PROBE)


_OK = Verdict(kind=VerdictKind.OK)


@attrs.frozen(kw_only=True, slots=True)
class BackoffChange:
    """A persisted backoff row to write (`until` set) or delete (`until` None).

    `model` is None for account-wide entries; `account` is None for a provider's.
    """

    provider: str
    account: str | None
    model: str | None
    reason: str
    until: float | None
    probe_at: float | None = None


@attrs.define(slots=True)
class _Cooldown:
    until: float
    reason: str
    probe_at: float | None = None  # a probe is allowed from then on, if the cooldown is long
    probing: str | None = None  # the attempt probing it
    # The latest end a provider's own hint demanded (restored cooldowns: all of it). Correlated
    # 429s may cut our own ladder short, never this.
    hint_until: float = -math.inf


@attrs.define(slots=True)
class _Account:
    provider: str
    cooldown: _Cooldown | None = None
    streaks: dict[FailureCategory, int] = attrs.field(factory=dict)
    faults: int = 0  # consecutive penalized failures (circuit breaker)
    circuit: str = "closed"  # closed / open / half_open
    opened: int = 0  # how many times it opened in a row
    probe_successes: int = 0
    models: dict[str, _Cooldown] = attrs.field(factory=dict)
    model_streaks: dict[str, int] = attrs.field(factory=dict)


class Health:
    """Health of every account. `provider_of` maps account name to provider id."""

    def __init__(self, provider_of: Mapping[str, str], policy: HealthPolicy | None = None) -> None:
        self._policy = policy or HealthPolicy()
        self._accounts = {name: _Account(provider) for name, provider in provider_of.items()}
        self._provider_size: dict[str, int] = {}
        for provider in provider_of.values():
            self._provider_size[provider] = self._provider_size.get(provider, 0) + 1
        self._provider_cooldown: dict[str, _Cooldown] = {}
        self._provider_streak: dict[str, int] = {}
        self._recent_429: dict[str, deque[tuple[float, str]]] = {}
        self._marked: set[str] = set()  # accounts that may hold state: the others are OK

    # -- queries -------------------------------------------------------------------------

    def verdict(self, account: str, model: str | None, now: float) -> Verdict:
        """May `account` serve `model` now? Never changes state."""
        state = self._accounts[account]
        if (
            state.cooldown is None
            and not state.models
            and state.circuit == "closed"
            and not self._provider_cooldown
        ):
            return _OK  # the common case, kept cheap: routing asks this per candidate
        backoff = self._provider_cooldown.get(state.provider)
        if backoff is not None and now < backoff.until:
            return Verdict(
                kind=VerdictKind.PROVIDER_BACKOFF, until=backoff.until, reason=backoff.reason
            )
        quarantine = state.models.get(model) if model is not None else None
        if quarantine is not None and now < quarantine.until:
            if _probe_due(quarantine, now):
                return Verdict(
                    kind=VerdictKind.PROBE, until=quarantine.until, reason=quarantine.reason
                )
            return Verdict(
                kind=VerdictKind.MODEL_QUARANTINED,
                until=quarantine.until,
                reason=quarantine.reason,
            )
        cooldown = state.cooldown
        if cooldown is not None and now < cooldown.until:
            if state.circuit == "open":
                return Verdict(
                    kind=VerdictKind.CIRCUIT_OPEN, until=cooldown.until, reason=cooldown.reason
                )
            if _probe_due(cooldown, now):
                return Verdict(
                    kind=VerdictKind.PROBE, until=cooldown.until, reason=cooldown.reason
                )
            return Verdict(kind=VerdictKind.COOLING, until=cooldown.until, reason=cooldown.reason)
        if state.circuit != "closed":  # open and expired, or half-open: one probe at a time
            if cooldown is not None and cooldown.probing is not None:
                return Verdict(kind=VerdictKind.CIRCUIT_OPEN, reason="probe in flight")
            return Verdict(kind=VerdictKind.PROBE, reason="circuit half-open")
        return _OK

    def verdicts(self, accounts: Sequence[str], model: str | None, now: float) -> list[Verdict]:
        """`verdict` of many accounts: the router's hot path, one call a decision.

        Accounts that never held any state (`_marked`) are OK without a look.
        """
        marked = self._marked
        if not self._provider_cooldown:
            if not marked:
                return [_OK] * len(accounts)
            return [self.verdict(name, model, now) if name in marked else _OK for name in accounts]
        return [self.verdict(name, model, now) for name in accounts]

    def _mark(self, account: str) -> None:
        self._marked.add(account)

    def _unmark_if_clean(self, account: str, state: _Account) -> None:
        if state.cooldown is None and not state.models and state.circuit == "closed":
            self._marked.discard(account)

    def is_healthy(self, account: str, now: float) -> bool:
        """Account-wide health (no model), for `expose_mode = healthy_union`."""
        return self.verdict(account, None, now).kind is VerdictKind.OK

    # -- probes --------------------------------------------------------------------------

    def begin_probe(self, account: str, model: str | None, attempt: str) -> None:
        """Call when dispatching to a candidate whose verdict was PROBE."""
        state = self._accounts[account]
        self._mark(account)
        # Close every gate of this (account, model): whichever granted the probe, no second
        # probe may pass another while this one runs.
        quarantine = state.models.get(model) if model is not None else None
        if quarantine is not None:
            quarantine.probing = attempt
        if state.cooldown is None:
            state.cooldown = _Cooldown(until=-math.inf, reason="circuit half-open")
        state.cooldown.probing = attempt
        if state.circuit == "open":
            state.circuit = "half_open"

    def end_probe(self, account: str, attempt: str) -> None:
        """The probe ended without telling anything (cancelled, client error): free the slot."""
        state = self._accounts[account]
        for cooldown in (state.cooldown, *state.models.values()):
            if cooldown is not None and cooldown.probing == attempt:
                cooldown.probing = None

    # -- outcomes ------------------------------------------------------------------------

    def record_success(self, account: str, model: str | None, now: float) -> list[BackoffChange]:
        state = self._accounts[account]
        changes: list[BackoffChange] = []
        state.streaks.clear()
        state.faults = 0
        if state.circuit != "closed":
            state.probe_successes += 1
            if state.probe_successes >= self._policy.close_after:
                state.circuit, state.opened, state.probe_successes = "closed", 0, 0
        if state.cooldown is not None:
            if state.circuit == "closed":
                changes.append(_row(state.provider, account, None, state.cooldown.reason))
                state.cooldown = None
            else:
                state.cooldown.probing = None
        if model is not None:
            state.model_streaks.pop(model, None)
            quarantine = state.models.pop(model, None)
            if quarantine is not None:
                changes.append(_row(state.provider, account, model, quarantine.reason))
        self._unmark_if_clean(account, state)
        backoff = self._provider_cooldown.pop(state.provider, None)
        self._provider_streak.pop(state.provider, None)
        if backoff is not None:
            changes.append(_row(state.provider, None, None, backoff.reason))
        return changes

    def record_failure(
        self,
        account: str,
        model: str | None,
        decision: RetryDecision,
        now: float,
        attempt: str | None = None,
    ) -> list[BackoffChange]:
        """Apply a failed attempt. If `attempt` was a probe, its slot is released: no other
        failure (another request in flight on the account) ends a probe."""
        state = self._accounts[account]
        if attempt is not None:
            self.end_probe(account, attempt)
        if decision.scope is FailureScope.NONE:
            return []
        self._mark(account)
        if decision.scope is FailureScope.PROVIDER:
            return self._provider_failure(state.provider, decision, now)
        if decision.scope is FailureScope.ACCOUNT_MODEL and model is not None:
            return self._model_failure(state, account, model, decision, now)
        return self._account_failure(state, account, decision, now)

    def _model_failure(
        self, state: _Account, account: str, model: str, decision: RetryDecision, now: float
    ) -> list[BackoffChange]:
        streak = state.model_streaks[model] = state.model_streaks.get(model, 0) + 1
        seconds = decision.cooldown
        if seconds is None:
            seconds = self._ladder(decision.category).step(streak)
        previous = state.models.get(model)
        quarantine = state.models[model] = self._cooldown(now, seconds, str(decision.category))
        if previous is not None:
            quarantine.probing = previous.probing  # a probe still in flight keeps its slot
        return [_row(state.provider, account, model, quarantine.reason, quarantine)]

    def _account_failure(
        self, state: _Account, account: str, decision: RetryDecision, now: float
    ) -> list[BackoffChange]:
        category, penalized = decision.category, decision.penalty is not Penalty.NONE
        reason = str(category)
        streak = state.streaks[category] = state.streaks.get(category, 0) + 1
        # A light fault (one 5xx, one timeout) only fails over; from the second in a row on,
        # the ladder starts. Anything else steps the ladder from the first.
        rung = streak - 1 if decision.penalty is Penalty.LIGHT else streak
        seconds = decision.cooldown
        if seconds is None and rung > 0:
            seconds = self._ladder(category).step(rung)
        if penalized:
            state.faults += 1
            if state.circuit == "half_open" or (
                state.circuit == "closed" and state.faults >= self._policy.failure_threshold
            ):
                state.opened += 1
                state.circuit, state.probe_successes = "open", 0
                policy = self._policy
                open_for = min(policy.open_seconds * 2.0 ** (state.opened - 1), policy.open_cap)
                seconds, reason = max(seconds or 0.0, open_for), f"circuit_open:{category}"
        changes: list[BackoffChange] = []
        if seconds is not None:
            # A late failure (an attempt dispatched before the circuit opened) never
            # shortens a cooldown already running.
            hint_end = now + decision.cooldown if decision.cooldown is not None else -math.inf
            cooldown = state.cooldown
            if cooldown is None or now + seconds >= cooldown.until:
                previous = cooldown
                cooldown = state.cooldown = self._cooldown(now, seconds, reason)
                if previous is not None:
                    cooldown.hint_until = max(previous.hint_until, hint_end)
                    cooldown.probing = previous.probing  # a probe in flight keeps its slot
                else:
                    cooldown.hint_until = hint_end
            else:
                cooldown.hint_until = max(cooldown.hint_until, hint_end)
            changes.append(_row(state.provider, account, None, cooldown.reason, cooldown))
        if category is _C.RATE_LIMITED:
            changes += self._correlate(state.provider, account, decision, now)
        return changes

    # -- internals -----------------------------------------------------------------------

    def _ladder(self, category: FailureCategory) -> Ladder:
        return self._policy.ladders.get(category) or self._policy.ladders[_C.UNKNOWN]

    def _cooldown(self, now: float, seconds: float, reason: str) -> _Cooldown:
        seconds = max(seconds, 0.0)
        probe_at = (
            now + self._policy.probe_interval if seconds > self._policy.probe_interval else None
        )
        return _Cooldown(until=now + seconds, reason=reason, probe_at=probe_at)

    def _provider_failure(
        self, provider: str, decision: RetryDecision, now: float
    ) -> list[BackoffChange]:
        streak = self._provider_streak[provider] = self._provider_streak.get(provider, 0) + 1
        ladder = self._policy.ladders.get(decision.category, self._policy.provider_backoff)
        seconds = decision.cooldown if decision.cooldown is not None else ladder.step(streak)
        backoff = self._provider_cooldown[provider] = self._cooldown(
            now, seconds, str(decision.category)
        )
        return [_row(provider, None, None, backoff.reason, backoff)]

    def _correlate(
        self, provider: str, account: str, decision: RetryDecision, now: float
    ) -> list[BackoffChange]:
        """Many keys of one provider rate-limited at once: a provider limit, not the keys'."""
        recent = self._recent_429.setdefault(provider, deque())
        recent.append((now, account))
        window = self._policy.correlation_window
        while recent and (recent[0][0] < now - window or recent[0][0] > now):
            recent.popleft()
        accounts = {name for _, name in recent}
        size = self._provider_size.get(provider, 1)
        needed = max(2, min(self._policy.correlation_accounts, math.ceil(size / 2)))
        if size < 2 or len(accounts) < needed:
            return []
        recent.clear()
        changes: list[BackoffChange] = []
        for name in sorted(accounts):
            state = self._accounts[name]
            cooldown = state.cooldown
            if cooldown is None or cooldown.reason != str(_C.RATE_LIMITED):
                continue
            # Our own ladder gives way to the provider backoff; what a provider's
            # Retry-After demanded is honoured to its end.
            state.streaks.pop(_C.RATE_LIMITED, None)
            if cooldown.hint_until > now:
                cooldown.until = cooldown.hint_until
                changes.append(_row(state.provider, name, None, cooldown.reason, cooldown))
            else:
                state.cooldown = None
                changes.append(_row(state.provider, name, None, str(_C.RATE_LIMITED)))
        streak = self._provider_streak[provider] = self._provider_streak.get(provider, 0) + 1
        seconds = decision.cooldown
        if seconds is None:
            seconds = self._policy.provider_backoff.step(streak)
        backoff = self._provider_cooldown[provider] = self._cooldown(
            now, seconds, "provider_rate_limited"
        )
        changes.append(_row(provider, None, None, backoff.reason, backoff))
        return changes

    # -- persistence ---------------------------------------------------------------------

    def snapshot(self) -> list[BackoffChange]:
        """Every active backoff, for persisting in one go."""
        rows: list[BackoffChange] = []
        for provider, backoff in sorted(self._provider_cooldown.items()):
            rows.append(_row(provider, None, None, backoff.reason, backoff))
        for name, state in sorted(self._accounts.items()):
            if state.cooldown is not None and math.isfinite(state.cooldown.until):
                rows.append(
                    _row(state.provider, name, None, state.cooldown.reason, state.cooldown)
                )
            for model, quarantine in sorted(state.models.items()):
                rows.append(_row(state.provider, name, model, quarantine.reason, quarantine))
        return rows

    def restore(self, rows: Iterable[BackoffChange], now: float) -> None:
        """Rebuild from persisted rows; expired rows and unknown accounts are skipped."""
        for row in rows:
            if row.until is None or row.until <= now:
                continue
            cooldown = _Cooldown(
                until=row.until, reason=row.reason, probe_at=row.probe_at, hint_until=row.until
            )
            if row.account is None:
                if row.provider in self._provider_size:
                    self._provider_cooldown[row.provider] = cooldown
                continue
            state = self._accounts.get(row.account)
            if state is None:
                continue
            self._mark(row.account)
            if row.model is None:
                state.cooldown = cooldown
                if row.reason.startswith("circuit_open"):
                    state.circuit, state.opened = "open", 1
            else:
                state.models[row.model] = cooldown


def _probe_due(cooldown: _Cooldown, now: float) -> bool:
    return cooldown.probe_at is not None and now >= cooldown.probe_at and cooldown.probing is None


def _row(
    provider: str,
    account: str | None,
    model: str | None,
    reason: str,
    cooldown: _Cooldown | None = None,
) -> BackoffChange:
    """The persisted form of a cooldown (or, with none, of its removal)."""
    if cooldown is None:
        return BackoffChange(
            provider=provider, account=account, model=model, reason=reason, until=None
        )
    return BackoffChange(
        provider=provider,
        account=account,
        model=model,
        reason=reason,
        until=cooldown.until,
        probe_at=cooldown.probe_at,
    )
