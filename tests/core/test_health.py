"""Account health: cooldowns, circuit breaker, quarantine, correlated 429s, persistence."""

from __future__ import annotations

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from eggpool.core.health import DEFAULT_LADDERS, Health, HealthPolicy, VerdictKind
from eggpool.core.retry import FailureCategory, FailureScope, Penalty, RetryDecision

C, S, P = FailureCategory, FailureScope, Penalty
T0 = 1_800_000_000.0


def decision(
    category: FailureCategory = C.RATE_LIMITED,
    *,
    scope: FailureScope = S.ACCOUNT,
    penalty: Penalty = P.NONE,
    cooldown: float | None = None,
) -> RetryDecision:
    return RetryDecision(
        category=category, failover=True, scope=scope, penalty=penalty, cooldown=cooldown
    )


RATE_LIMIT = decision()
SERVER_ERROR = decision(C.SERVER_ERROR, penalty=P.LIGHT)
REFUSED = decision(C.TRANSPORT, penalty=P.FULL)
MODEL_404 = decision(C.MODEL_UNAVAILABLE, scope=S.ACCOUNT_MODEL)


@pytest.fixture
def health() -> Health:
    return Health({"a1": "p", "a2": "p", "a3": "p", "a4": "p", "b1": "q"})


def kind(health: Health, account: str, at: float, model: str | None = "m") -> VerdictKind:
    return health.verdict(account, model, at).kind


def test_fresh_accounts_are_ok(health: Health) -> None:
    assert kind(health, "a1", T0) is VerdictKind.OK


def test_retry_after_hint_is_honoured_to_the_second(health: Health) -> None:
    health.record_failure("a1", "m", decision(cooldown=30), T0)
    assert kind(health, "a1", T0 + 29.9) is VerdictKind.COOLING
    assert kind(health, "a1", T0 + 30) is VerdictKind.OK


def test_rate_limits_without_hint_climb_the_ladder(health: Health) -> None:
    ends = []
    for step in range(3):
        now = T0 + 1000 * step
        (change,) = health.record_failure("b1", "m", RATE_LIMIT, now)
        assert change.until is not None
        ends.append(change.until - now)
    assert ends == [10, 20, 40]


def test_ladder_is_capped() -> None:
    assert DEFAULT_LADDERS[C.RATE_LIMITED].step(50) == 600


def test_success_clears_cooldown_and_streak(health: Health) -> None:
    health.record_failure("b1", "m", RATE_LIMIT, T0)
    health.record_failure("b1", "m", RATE_LIMIT, T0 + 100)
    changes = health.record_success("b1", "m", T0 + 101)
    assert [c.until for c in changes] == [None]
    assert kind(health, "b1", T0 + 101) is VerdictKind.OK
    (change,) = health.record_failure("b1", "m", RATE_LIMIT, T0 + 200)
    assert change.until == T0 + 210  # back to the first rung


def test_one_server_error_only_fails_over(health: Health) -> None:
    assert health.record_failure("a1", "m", SERVER_ERROR, T0) == []
    assert kind(health, "a1", T0) is VerdictKind.OK


def test_second_server_error_in_a_row_cools_briefly(health: Health) -> None:
    health.record_failure("a1", "m", SERVER_ERROR, T0)
    (change,) = health.record_failure("a1", "m", SERVER_ERROR, T0 + 1)
    assert change.until == T0 + 1 + 5


def test_circuit_opens_after_five_faults_and_needs_three_probe_successes(health: Health) -> None:
    now = T0
    for _ in range(5):
        health.record_failure("b1", "m", REFUSED, now)
        now += 10_000  # well past each cooldown
    assert kind(health, "b1", now - 10_000 + 1) is VerdictKind.CIRCUIT_OPEN
    for n in range(3):
        assert kind(health, "b1", now) is VerdictKind.PROBE, n
        health.begin_probe("b1", "m", f"probe-{n}")
        assert kind(health, "b1", now) is VerdictKind.CIRCUIT_OPEN  # one probe at a time
        health.record_success("b1", "m", now)
    assert kind(health, "b1", now) is VerdictKind.OK


def test_failed_probe_reopens_the_circuit_for_longer(health: Health) -> None:
    for i in range(5):
        health.record_failure("b1", "m", REFUSED, T0 + i)
    reopened_at = T0 + 10_000
    health.begin_probe("b1", "m", "probe")
    (change,) = health.record_failure("b1", "m", REFUSED, reopened_at)
    assert change.reason == "circuit_open:transport"
    assert change.until is not None
    assert change.until - reopened_at >= 60  # open_seconds doubled


def test_rate_limits_never_open_the_circuit(health: Health) -> None:
    for i in range(20):
        health.record_failure("b1", "m", RATE_LIMIT, T0 + 10_000 * i)
    assert kind(health, "b1", T0 + 10_000 * 20) is VerdictKind.OK


def test_model_not_found_quarantines_only_that_model(health: Health) -> None:
    health.record_failure("a1", "gone", MODEL_404, T0)
    assert kind(health, "a1", T0 + 1, "gone") is VerdictKind.MODEL_QUARANTINED
    assert kind(health, "a1", T0 + 1, "other") is VerdictKind.OK


def test_model_quarantine_is_bounded(health: Health) -> None:
    health.record_failure("a1", "gone", MODEL_404, T0)
    assert kind(health, "a1", T0 + 600, "gone") is VerdictKind.OK


def test_huge_retry_after_admits_a_probe_every_fifteen_minutes(health: Health) -> None:
    health.record_failure("b1", "m", decision(C.QUOTA_EXHAUSTED, cooldown=18 * 86400), T0)
    assert kind(health, "b1", T0 + 899) is VerdictKind.COOLING
    assert kind(health, "b1", T0 + 900) is VerdictKind.PROBE
    health.begin_probe("b1", "m", "probe")
    assert kind(health, "b1", T0 + 901) is VerdictKind.COOLING
    health.record_success("b1", "m", T0 + 902)
    assert kind(health, "b1", T0 + 902) is VerdictKind.OK  # the quota came back early


def test_correlated_rate_limits_become_a_provider_backoff(health: Health) -> None:
    # Provider p has 4 accounts: half of them (2) rate-limited within 10 s is correlated.
    health.record_failure("a1", "m", RATE_LIMIT, T0)
    changes = health.record_failure("a2", "m", RATE_LIMIT, T0 + 1)
    cleared = {c.account for c in changes if c.until is None}
    assert cleared == {"a1", "a2"}
    assert kind(health, "a4", T0 + 2) is VerdictKind.PROVIDER_BACKOFF
    assert kind(health, "b1", T0 + 2) is VerdictKind.OK  # another provider
    assert kind(health, "a1", T0 + 1 + 10) is VerdictKind.OK  # short, then all keys are back


def test_large_providers_need_three_accounts_to_correlate() -> None:
    health = Health({f"k{i}": "big" for i in range(10)})
    health.record_failure("k0", "m", RATE_LIMIT, T0)
    health.record_failure("k1", "m", RATE_LIMIT, T0 + 1)
    assert kind(health, "k9", T0 + 2) is VerdictKind.OK
    health.record_failure("k2", "m", RATE_LIMIT, T0 + 2)
    assert kind(health, "k9", T0 + 3) is VerdictKind.PROVIDER_BACKOFF


def test_a_single_account_provider_never_correlates(health: Health) -> None:
    health.record_failure("b1", "m", RATE_LIMIT, T0)
    health.record_failure("b1", "m", RATE_LIMIT, T0 + 1)
    assert kind(health, "b1", T0 + 2) is VerdictKind.COOLING


def test_rate_limits_spread_over_time_stay_per_account(health: Health) -> None:
    health.record_failure("a1", "m", RATE_LIMIT, T0)
    health.record_failure("a2", "m", RATE_LIMIT, T0 + 30)
    health.record_failure("a3", "m", RATE_LIMIT, T0 + 60)
    assert kind(health, "a4", T0 + 61) is VerdictKind.OK


def test_provider_scope_decision_backs_off_every_account_of_the_provider(
    health: Health,
) -> None:
    health.record_failure("a1", "m", decision(C.OVERLOADED, scope=S.PROVIDER), T0)
    assert {kind(health, a, T0 + 1) for a in ("a1", "a2")} == {VerdictKind.PROVIDER_BACKOFF}
    assert kind(health, "b1", T0 + 1) is VerdictKind.OK


def test_client_errors_change_nothing(health: Health) -> None:
    bad = RetryDecision(category=C.BAD_REQUEST, failover=False, scope=S.NONE, penalty=P.NONE)
    assert health.record_failure("a1", "m", bad, T0) == []
    assert kind(health, "a1", T0) is VerdictKind.OK


def test_a_late_failure_never_shortens_a_running_cooldown(health: Health) -> None:
    health.record_failure("b1", "m", decision(cooldown=300), T0)
    health.record_failure("b1", "m", decision(cooldown=5), T0 + 1)
    assert kind(health, "b1", T0 + 100) is VerdictKind.COOLING


def test_snapshot_and_restore_carry_backoffs_across_a_restart(health: Health) -> None:
    health.record_failure("b1", "m", decision(cooldown=300), T0)
    health.record_failure("a1", "gone", MODEL_404, T0)
    restored = Health({"a1": "p", "a2": "p", "a3": "p", "a4": "p", "b1": "q"})
    restored.restore(health.snapshot(), T0 + 10)
    assert kind(restored, "b1", T0 + 10) is VerdictKind.COOLING
    assert kind(restored, "a1", T0 + 10, "gone") is VerdictKind.MODEL_QUARANTINED
    assert restored.snapshot() == health.snapshot()


def test_restore_drops_expired_rows_and_unknown_accounts(health: Health) -> None:
    health.record_failure("b1", "m", decision(cooldown=300), T0)
    restored = Health({"a1": "p"})
    restored.restore(health.snapshot(), T0 + 1)
    assert restored.snapshot() == []
    again = Health({"b1": "q"})
    again.restore(health.snapshot(), T0 + 301)
    assert again.snapshot() == []


# --- a model of the promises, driven by random failures and clock moves ----------------

ACCOUNTS = ("x1", "x2", "x3", "y1")
MODELS = ("m1", "m2")
SCOPED = [c for c in FailureCategory if c not in (C.BAD_REQUEST, C.CONTEXT_TOO_LONG)]
LONGEST = max(*(ladder.cap for ladder in DEFAULT_LADDERS.values()), 1800.0) + 900.0
MAX_HINT = 30 * 86400.0

decisions = st.builds(
    RetryDecision,
    category=st.sampled_from(SCOPED),
    failover=st.just(True),
    scope=st.sampled_from([S.ACCOUNT, S.ACCOUNT_MODEL, S.PROVIDER, S.NONE]),
    penalty=st.sampled_from(list(Penalty)),
    cooldown=st.none() | st.floats(min_value=0, max_value=MAX_HINT),
)


class HealthMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.health = Health({"x1": "x", "x2": "x", "x3": "x", "y1": "y"})
        self.now = T0
        self.latest = T0  # the latest time the clock has shown
        self.probes: dict[tuple[str, str], str] = {}  # (account, model) -> attempt
        self.hint_until: dict[str, float] = {}  # account -> end of an honoured hint
        self.counter = 0

    @rule(account=st.sampled_from(ACCOUNTS), model=st.sampled_from(MODELS), d=decisions)
    def fail(self, account: str, model: str, d: RetryDecision) -> None:
        attempt = self.probes.pop((account, model), None)  # the probe itself may be failing
        self.health.record_failure(account, model, d, self.now, attempt)
        if d.scope is S.ACCOUNT and d.cooldown is not None:
            self.hint_until[account] = max(self.hint_until.get(account, 0), self.now + d.cooldown)

    @rule(account=st.sampled_from(ACCOUNTS), model=st.sampled_from(MODELS))
    def succeed(self, account: str, model: str) -> None:
        self._end_probe(account, model)
        self.health.record_success(account, model, self.now)
        self.hint_until.pop(account, None)

    @rule(account=st.sampled_from(ACCOUNTS), model=st.sampled_from(MODELS))
    def probe(self, account: str, model: str) -> None:
        if self.health.verdict(account, model, self.now).kind is VerdictKind.PROBE:
            self.counter += 1
            attempt = f"p{self.counter}"
            self.health.begin_probe(account, model, attempt)
            self.probes[(account, model)] = attempt

    @rule(account=st.sampled_from(ACCOUNTS), model=st.sampled_from(MODELS))
    def cancel_probe(self, account: str, model: str) -> None:
        attempt = self.probes.pop((account, model), None)
        if attempt is not None:
            self.health.end_probe(account, attempt)

    @rule(seconds=st.floats(min_value=0, max_value=4000))
    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.latest = max(self.latest, self.now)

    @rule(seconds=st.floats(min_value=0, max_value=600))
    def clock_steps_back(self, seconds: float) -> None:
        # An NTP step or a Pi booting on a saved clock: cooldowns must neither vanish
        # nor become permanent.
        self.now -= seconds

    @precondition(lambda self: not self.probes)
    @rule()
    def restart(self) -> None:
        restored = Health({"x1": "x", "x2": "x", "x3": "x", "y1": "y"})
        restored.restore(self.health.snapshot(), self.now)
        self.health = restored

    def _end_probe(self, account: str, model: str) -> None:
        self.probes.pop((account, model), None)

    @invariant()
    def honoured_hints_are_never_cut_short(self) -> None:
        # Until the clock has passed its end once: an elapsed cooldown may stay gone when
        # the clock then steps back (like spend that left a ledger window).
        for account, until in self.hint_until.items():
            if self.latest < until:
                assert self.health.verdict(account, "m1", self.now).kind is not VerdictKind.OK

    @invariant()
    def nothing_is_permanent(self) -> None:
        later = self.now + LONGEST + 1
        # A cooldown ends at a wall-clock time: one set for MAX_HINT just before the clock
        # stepped back ends MAX_HINT after the latest time the clock showed, not after now.
        bound = self.latest + LONGEST + 1 + MAX_HINT
        for account in ACCOUNTS:
            if any(a == account for a, _ in self.probes):
                continue
            for model in MODELS:
                verdict = self.health.verdict(account, model, later)
                until = self.hint_until.get(account, 0.0)
                assert verdict.routable or (
                    verdict.until is not None and verdict.until <= max(until, bound)
                ), verdict

    @invariant()
    def a_probing_scope_admits_no_second_probe(self) -> None:
        for account, model in self.probes:
            assert self.health.verdict(account, model, self.now).kind is not VerdictKind.PROBE


TestHealthMachine = HealthMachine.TestCase


def test_policy_defaults_are_documented_values() -> None:
    policy = HealthPolicy()
    assert (policy.failure_threshold, policy.close_after, policy.probe_interval) == (5, 3, 900.0)
