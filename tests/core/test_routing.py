"""Routing: eligibility with reasons, tiers, scoring, ties, hard_cap, session affinity."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eggpool.core.catalog import Catalog
from eggpool.core.config import Config, Protocol, parse_config
from eggpool.core.health import Health
from eggpool.core.ledger import Ledger, account_limits
from eggpool.core.retry import FailureCategory, FailureScope, Penalty, RetryDecision
from eggpool.core.routing import AFFINITY_TTL, ExclusionReason, Router, session_key

T0 = 1_800_000_000.0
OPENAI, ANTHROPIC = Protocol.OPENAI, Protocol.ANTHROPIC
KEY = "sk-test-0123456789abcdef"
R = ExclusionReason


def provider(
    *names: str, priority: int = 0, models: tuple[str, ...] = ("m",), **extra: Any
) -> dict[str, Any]:
    accounts = [{"name": n, "api_key": KEY} for n in names]
    return {
        "base_url": "https://api.example.com/v1",
        "routing_priority": priority,
        "models_endpoint": {"method": "DISABLED"},
        "static_models": [{"id": m} for m in models],
        "accounts": accounts,
        **extra,
    }


class Pool:
    """The routing inputs, wired the way the Pool will wire them."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.catalog = Catalog(config, now=T0)
        self.health = Health({a.name: a.provider_id for a in config.accounts})
        self.ledger = Ledger(account_limits(config))
        self.router = Router(config)
        self.inflight: Counter[str] = Counter()

    def decide(self, model: str = "m", **kw: Any) -> Any:
        args: dict[str, Any] = {
            "catalog": self.catalog,
            "health": self.health,
            "ledger": self.ledger,
            "inflight": self.inflight,
            "model": model,
            "protocol": OPENAI,
            "pinned": None,
            "estimate": 10_000,
            "now": T0,
            "entropy": 0,
        }
        args.update(kw)
        return self.router.decide(**args)

    def order(self, model: str = "m", **kw: Any) -> list[str]:
        return [c.account for c in self.decide(model, **kw).ordered]

    def reasons(self, model: str = "m", **kw: Any) -> dict[str, ExclusionReason]:
        return {e.account: e.reason for e in self.decide(model, **kw).excluded}

    def spend(self, account: str, amount: int) -> None:
        self.ledger.commit(account, amount, T0)


def pool(routing: dict[str, Any] | None = None, **providers: dict[str, Any]) -> Pool:
    doc: dict[str, Any] = {"providers": providers}
    if routing:
        doc["routing"] = routing
    return Pool(parse_config(doc, {}))


def failure(category: FailureCategory, cooldown: float | None = None, **kw: Any) -> RetryDecision:
    fields: dict[str, Any] = {"scope": FailureScope.ACCOUNT, "penalty": Penalty.NONE}
    fields.update(kw)
    return RetryDecision(category=category, failover=True, cooldown=cooldown, **fields)


# --- eligibility ------------------------------------------------------------------------


def test_the_only_account_is_chosen() -> None:
    assert pool(p=provider("a")).order() == ["a"]


def test_an_unknown_model_has_no_candidates_and_says_so() -> None:
    decision = pool(p=provider("a")).decide("nope")
    assert (decision.ordered, decision.known_model) == ((), False)
    assert {e.reason for e in decision.excluded} == {R.MODEL_MISSING}


def test_a_disabled_account_is_excluded_as_disabled() -> None:
    p = provider("a", "b")
    p["accounts"][1]["enabled"] = False
    assert pool(p=p).reasons() == {"b": R.DISABLED}


def test_a_cooling_account_is_excluded_until_its_retry_after() -> None:
    pl = pool(p=provider("a", "b"))
    pl.health.record_failure("a", "m", failure(FailureCategory.RATE_LIMITED, 30), T0)
    decision = pl.decide()
    assert [c.account for c in decision.ordered] == ["b"]
    (exclusion,) = decision.excluded
    assert (exclusion.reason, exclusion.until) == (R.COOLING, T0 + 30)
    assert pl.order(now=T0 + 30).count("a") == 1


def test_an_open_circuit_is_its_own_reason() -> None:
    pl = pool(p=provider("a", "b"))
    refused = failure(FailureCategory.TRANSPORT, penalty=Penalty.FULL)
    for i in range(5):
        pl.health.record_failure("a", "m", refused, T0 + i)
    assert pl.reasons(now=T0 + 5) == {"a": R.CIRCUIT_OPEN}


def test_a_quarantined_model_excludes_only_that_model() -> None:
    pl = pool(p=provider("a", "b", models=("m", "n")))
    gone = failure(FailureCategory.MODEL_UNAVAILABLE, scope=FailureScope.ACCOUNT_MODEL)
    pl.health.record_failure("a", "m", gone, T0)
    assert pl.reasons("m") == {"a": R.MODEL_QUARANTINED}
    assert pl.order("n") == ["a", "b"] or pl.order("n") == ["b", "a"]


def test_a_provider_backoff_excludes_all_its_accounts() -> None:
    pl = pool(p=provider("a", "b"), q=provider("c"))
    overloaded = failure(FailureCategory.OVERLOADED, scope=FailureScope.PROVIDER)
    pl.health.record_failure("a", "m", overloaded, T0)
    assert pl.reasons() == {"a": R.PROVIDER_BACKOFF, "b": R.PROVIDER_BACKOFF}


def test_accounts_without_the_model_are_model_missing() -> None:
    pl = pool(p=provider("a"), q=provider("b", models=("other",)))
    assert pl.reasons() == {"b": R.MODEL_MISSING}


def test_a_model_served_on_the_other_protocol_is_a_protocol_mismatch() -> None:
    pl = pool(p=provider("a"), q=provider("b", protocols=["anthropic"]))
    assert pl.reasons() == {"b": R.PROTOCOL_MISMATCH}
    assert pl.order(protocol=ANTHROPIC) == ["b"]


def test_tried_accounts_are_excluded_as_already_tried() -> None:
    pl = pool(p=provider("a", "b"))
    assert pl.reasons(tried={"a"}) == {"a": R.ALREADY_TRIED}


def test_a_pinned_provider_excludes_the_others_as_provider_pinned() -> None:
    pl = pool(p=provider("a"), q=provider("b"))
    assert pl.order(pinned="q") == ["b"]
    assert pl.reasons(pinned="q") == {"a": R.PROVIDER_PINNED}


def test_every_account_gets_exactly_one_place() -> None:
    pl = pool(p=provider("a", "b", "c"), q=provider("d", models=("x",)))
    decision = pl.decide(tried={"b"})
    placed = [c.account for c in decision.ordered] + [e.account for e in decision.excluded]
    assert sorted(placed) == ["a", "b", "c", "d"]


# --- local quota ------------------------------------------------------------------------


def test_hard_cap_excludes_an_account_this_request_would_overflow() -> None:
    pl = pool({"local_quota_mode": "hard_cap"}, p=provider("a", "b"))
    pl.spend("a", 11_995_000)
    assert pl.reasons() == {"a": R.OVER_LOCAL_QUOTA}


def test_score_only_keeps_an_over_quota_account_but_ranks_it_last() -> None:
    pl = pool(p=provider("a", "b"))
    pl.spend("a", 13_000_000)
    assert pl.order() == ["b", "a"]
    assert pl.reasons() == {}


# --- ordering ---------------------------------------------------------------------------


def test_higher_priority_tiers_come_first() -> None:
    pl = pool(low=provider("a"), high=provider("b", priority=2), mid=provider("c", priority=1))
    assert pl.order() == ["b", "c", "a"]


def test_a_lower_tier_is_used_when_the_higher_is_excluded() -> None:
    pl = pool(low=provider("a"), high=provider("b", priority=1))
    pl.health.record_failure("b", "m", failure(FailureCategory.RATE_LIMITED, 60), T0)
    assert pl.order() == ["a"]


def test_the_less_used_account_is_preferred() -> None:
    pl = pool(p=provider("a", "b"))
    pl.spend("a", 600_000)  # 5 % of the five-hour capacity
    assert [pl.order(entropy=e)[0] for e in range(20)] == ["b"] * 20


def test_a_busy_account_yields_to_an_idle_one() -> None:
    pl = pool(p=provider("a", "b"))
    pl.inflight["a"] = 2
    assert [pl.order(entropy=e)[0] for e in range(20)] == ["b"] * 20


def test_weight_scales_capacity() -> None:
    p = provider("light", "heavy")
    p["accounts"][1]["weight"] = 3.0
    pl = pool(p=p)
    pl.spend("light", 1_000_000)
    pl.spend("heavy", 2_000_000)  # more spend, but less of its (3x) capacity
    assert pl.order()[0] == "heavy"


def test_near_ties_are_broken_by_entropy() -> None:
    pl = pool(p=provider("a", "b", "c"))
    firsts = {pl.order(entropy=e)[0] for e in range(64)}
    assert firsts == {"a", "b", "c"}


def test_the_same_entropy_gives_the_same_order() -> None:
    pl = pool(p=provider("a", "b", "c", "d"))
    assert all(pl.order(entropy=e) == pl.order(entropy=e) for e in range(32))


def test_without_tie_randomization_the_order_is_by_score_then_name() -> None:
    pl = pool({"randomize_near_ties": False}, p=provider("c", "a", "b"))
    assert {tuple(pl.order(entropy=e)) for e in range(16)} == {("a", "b", "c")}


def test_the_tie_band_is_one_inflight_penalty_not_a_tenth_of_capacity() -> None:
    decision = pool(p=provider("a")).decide()
    assert decision.tie_band == pytest.approx(100_000 / 12_000_000)


def test_a_probe_candidate_ranks_behind_a_healthy_one() -> None:
    pl = pool(p=provider("a", "b"))
    pl.health.record_failure("a", "m", failure(FailureCategory.QUOTA_EXHAUSTED, 86_400), T0)
    decision = pl.decide(now=T0 + 900)
    assert [(c.account, c.probe) for c in decision.ordered] == [("b", False), ("a", True)]


def test_soonest_retry_names_the_first_account_to_come_back() -> None:
    pl = pool(p=provider("a", "b"))
    pl.health.record_failure("a", "m", failure(FailureCategory.RATE_LIMITED, 40), T0)
    pl.health.record_failure("b", "m", failure(FailureCategory.RATE_LIMITED, 25), T0)
    decision = pl.decide(now=T0 + 1)
    assert decision.ordered == ()
    assert decision.soonest_retry() == T0 + 25


# --- session affinity -------------------------------------------------------------------


def test_a_session_sticks_to_its_account() -> None:
    pl = pool(p=provider("a", "b", "c"))
    first = pl.order(session="s", entropy=1)[0]
    assert all(pl.order(session="s", entropy=e)[0] == first for e in range(32))


def test_a_session_moves_when_its_account_cools_down() -> None:
    pl = pool(p=provider("a", "b"))
    first = pl.order(session="s")[0]
    pl.health.record_failure(first, "m", failure(FailureCategory.RATE_LIMITED, 60), T0)
    moved = pl.order(session="s")[0]
    assert moved != first
    assert pl.order(session="s", now=T0 + 61)[0] == moved  # it stays on the new one


def test_a_session_moves_when_its_account_is_much_busier() -> None:
    pl = pool(p=provider("a", "b"))
    first = pl.order(session="s")[0]
    pl.spend(first, 4_000_000)  # a third of the five-hour capacity: beyond the slack
    assert pl.order(session="s")[0] != first


def test_a_session_binding_expires() -> None:
    pl = pool(p=provider("a", "b"))
    pl.order(session="s")
    pl.decide(session="other", now=T0 + AFFINITY_TTL + 1)
    assert pl.router.bound_account("s") is None


def test_session_key_prefers_the_first_listed_header() -> None:
    names = ("x-claude-code-session-id", "session-id")
    headers = [("Session-Id", "codex"), ("X-Claude-Code-Session-Id", "claude")]
    key = session_key(headers, names, model="m", fingerprint="f")
    assert key == "m\x00h\x00claude"


def test_session_key_falls_back_to_the_fingerprint_and_is_per_model() -> None:
    assert session_key([], ("session-id",), model="m", fingerprint="abc") == "m\x00f\x00abc"
    assert session_key([], ("session-id",), model="n", fingerprint="abc") == "n\x00f\x00abc"
    assert session_key([], ("session-id",), model="m", fingerprint=None) is None


def test_overlong_or_blank_session_headers_are_ignored() -> None:
    headers = [("session-id", " "), ("x-session-id", "x" * 500)]
    assert (
        session_key(headers, ("session-id", "x-session-id"), model="m", fingerprint=None) is None
    )


# --- properties -------------------------------------------------------------------------

NAMES = ["a1", "a2", "a3", "b1", "b2", "c1"]


def big_pool(hard_cap: bool) -> Pool:
    routing = {"local_quota_mode": "hard_cap"} if hard_cap else None
    return pool(
        routing,
        a=provider("a1", "a2", "a3", priority=1),
        b=provider("b1", "b2", protocols=["openai", "anthropic"]),
        c=provider("c1", priority=2, models=("m", "other")),
    )


events = st.lists(
    st.tuples(
        st.sampled_from(NAMES),
        st.sampled_from(list(FailureCategory)),
        st.sampled_from(list(FailureScope)),
        st.sampled_from(list(Penalty)),
        st.none() | st.floats(min_value=0, max_value=7200),
    ),
    max_size=12,
)


@given(
    events,
    st.dictionaries(st.sampled_from(NAMES), st.integers(0, 20_000_000)),
    st.sets(st.sampled_from(NAMES)),
    st.booleans(),
    st.integers(0, 2**64 - 1),
    st.floats(min_value=0, max_value=4000),
)
def test_routing_never_offers_an_excluded_account(  # noqa: PLR0917 (Hypothesis arguments)
    failures: list[Any],
    spend: dict[str, int],
    tried: set[str],
    hard_cap: bool,
    entropy: int,
    later: float,
) -> None:
    pl = big_pool(hard_cap)
    for name, category, scope, penalty, cooldown in failures:
        decision = RetryDecision(
            category=category, failover=True, scope=scope, penalty=penalty, cooldown=cooldown
        )
        pl.health.record_failure(name, "m", decision, T0)
    for name, amount in spend.items():
        pl.spend(name, amount)
    now = T0 + later
    decision = pl.decide(tried=tried, entropy=entropy, now=now, estimate=50_000)
    for choice in decision.ordered:
        assert choice.account not in tried
        assert pl.health.verdict(choice.account, "m", now).routable
        if hard_cap:
            assert not pl.ledger.over_capacity(choice.account, now, 50_000)
    tiers = [c.candidate.routing_priority for c in decision.ordered]
    assert tiers == sorted(tiers, reverse=True)
    placed = [c.account for c in decision.ordered] + [e.account for e in decision.excluded]
    assert sorted(placed) == sorted(NAMES)


@settings(max_examples=30)
@given(st.lists(st.integers(1, 4), min_size=2, max_size=5), st.integers(0, 2**32))
def test_long_run_spend_is_proportional_to_weight(weights: list[int], seed: int) -> None:
    names = [f"k{i}" for i in range(len(weights))]
    p = provider(*names)
    for account, weight in zip(p["accounts"], weights, strict=True):
        account["weight"] = float(weight)
    pl = pool(p=p)
    cost, requests = 20_000, 1500
    spent: Counter[str] = Counter()
    band = pl.decide().tie_band
    for i in range(requests):
        account = pl.order(entropy=seed + i, estimate=cost)[0]
        pl.spend(account, cost)
        spent[account] += cost
    total = sum(weights)
    for name, weight in zip(names, weights, strict=True):
        # Utilizations stay within the tie band of each other (plus one request), so
        # an account's spend strays from its weighted share by at most that much.
        capacity = 12_000_000 * weight
        tolerance = (band * capacity + cost) / (cost * requests)
        assert abs(spent[name] / (cost * requests) - weight / total) <= tolerance
