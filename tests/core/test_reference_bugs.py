"""One playbook per known bug of the reference system (reference-features.md section 12).

Each test names the bug it guards against. The same behaviours are covered in
depth by each module's own tests; this file is the checklist that the fixes
hold together.
"""

from __future__ import annotations

import json
from typing import Any

from eggpool.core.catalog import Catalog, parse_model_list
from eggpool.core.config import Config, Protocol, parse_config
from eggpool.core.health import DEFAULT_LADDERS, Health, VerdictKind
from eggpool.core.ledger import Ledger, account_limits
from eggpool.core.pricing import compute_cost, prices_for, reservation_estimate
from eggpool.core.retry import (
    AttemptPhase,
    FailureCategory,
    Penalty,
    TransportFailure,
    UpstreamOutcome,
    classify_outcome,
)
from eggpool.core.routing import ExclusionReason, Router
from eggpool.core.usage import AnthropicStreamObserver, OpenAIStreamObserver, Usage

T0 = 1_800_000_000.0
KEY = "sk-test-0123456789abcdef"


def config(**providers: Any) -> Config:
    return parse_config({"providers": providers}, {})


def two_accounts() -> Config:
    return config(
        p={
            "base_url": "https://api.example.com/v1",
            "accounts": [{"name": "a", "api_key": KEY}, {"name": "b", "api_key": KEY}],
        }
    )


def listing(*ids: str) -> Any:
    return parse_model_list(json.dumps({"data": [{"id": i} for i in ids]}).encode())


def outcome(status: int, body: str = "", **kw: Any) -> UpstreamOutcome:
    return UpstreamOutcome(
        phase=AttemptPhase.RESPONSE_HEAD,
        protocol=Protocol.OPENAI,
        now_wall=T0,
        status=status,
        body=body.encode(),
        **kw,
    )


def test_near_tie_epsilon_no_longer_makes_routing_random() -> None:
    # Reference: accounts within 10 % of capacity were picked at random.
    cfg = two_accounts()
    catalog = Catalog(cfg, now=T0)
    catalog.refresh("a", listing("m"), now=T0)
    catalog.refresh("b", listing("m"), now=T0)
    ledger = Ledger(account_limits(cfg))
    ledger.commit("a", 600_000, T0)  # 5 % of the five-hour capacity
    router, health = Router(cfg), Health({"a": "p", "b": "p"})
    firsts = {
        router.decide(
            catalog=catalog,
            health=health,
            ledger=ledger,
            inflight={},
            model="m",
            protocol=Protocol.OPENAI,
            pinned=None,
            estimate=10_000,
            now=T0,
            entropy=e,
        )
        .ordered[0]
        .account
        for e in range(50)
    }
    assert firsts == {"b"}


def test_a_plain_403_is_no_year_long_auth_lockout() -> None:
    decision = classify_outcome(outcome(403, '{"error": {"message": "Forbidden"}}'))
    assert decision.category is FailureCategory.PERMISSION_DENIED
    assert DEFAULT_LADDERS[decision.category].cap <= 1800


def test_a_model_404_quarantines_for_a_bounded_time_and_never_withdraws() -> None:
    body = '{"error": {"message": "The model `m` does not exist", "code": "model_not_found"}}'
    decision = classify_outcome(outcome(404, body))
    health = Health({"a": "p"})
    health.record_failure("a", "m", decision, T0)
    assert health.verdict("a", "m", T0 + 1).kind is VerdictKind.MODEL_QUARANTINED
    assert health.verdict("a", "m", T0 + DEFAULT_LADDERS[decision.category].cap).routable


def test_an_account_whose_listing_keeps_failing_stays_routable() -> None:
    # Reference: unroutable once its listing was older than stale_after_s.
    catalog = Catalog(two_accounts(), now=T0)
    catalog.refresh("a", listing("m"), now=T0)
    for hour in range(1, 25):
        catalog.refresh("a", parse_model_list(b"<html>502</html>"), now=T0 + 3600 * hour)
    names = [c.account_name for c in catalog.route("m", Protocol.OPENAI).candidates]
    assert "a" in names


def test_one_accounts_failed_refresh_never_de_pools_its_siblings() -> None:
    catalog = Catalog(two_accounts(), now=T0)
    catalog.refresh("a", listing("m"), now=T0)
    catalog.refresh("b", listing("m"), now=T0)
    catalog.refresh("a", listing(), now=T0 + 1)  # empty
    catalog.refresh("a", parse_model_list(b"{}"), now=T0 + 2)  # malformed
    names = [c.account_name for c in catalog.route("m", Protocol.OPENAI).candidates]
    assert names == ["a", "b"]


def test_exclusion_reasons_are_named_after_health_verdicts() -> None:
    # Reference: the written name ("circuit_breaker") and the read one ("circuit_open")
    # drifted apart, so every exclusion read back as "unknown".
    for kind in (VerdictKind.COOLING, VerdictKind.CIRCUIT_OPEN, VerdictKind.PROVIDER_BACKOFF):
        assert ExclusionReason(kind.value).value == kind.value


def test_cumulative_stream_usage_is_not_summed() -> None:
    observer = OpenAIStreamObserver()
    for completion in (1, 2, 3):
        chunk = {"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": completion}}
        observer.feed(f"data: {json.dumps(chunk)}\n\n".encode())
    observer.feed(b"data: [DONE]\n\n")
    assert observer.result().usage == Usage(input_tokens=10, output_tokens=3)


def test_cached_prompt_tokens_are_billed_once_at_the_cache_rate() -> None:
    # Reference: OpenAI prompt_tokens (which include cached ones) billed as input AND
    # cache read, inflating cache-heavy models' costs.
    usage_wire = {
        "prompt_tokens": 100_000,
        "completion_tokens": 0,
        "prompt_tokens_details": {"cached_tokens": 90_000},
    }
    observer = OpenAIStreamObserver()
    observer.feed(f"data: {json.dumps({'choices': [], 'usage': usage_wire})}\n\n".encode())
    usage = observer.result().usage
    assert usage == Usage(input_tokens=10_000, cache_read_tokens=90_000)
    prices = prices_for(two_accounts(), "p", "unpriced-model")
    cost = compute_cost(usage, prices)
    assert cost.microdollars == (10_000 * prices.input + 90_000 * prices.cache_read) // 10**6


def test_anthropic_thinking_is_read_from_thinking_delta_events() -> None:
    observer = AnthropicStreamObserver()
    start = {"type": "message_start", "message": {"usage": {"input_tokens": 1}}}
    delta = {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "thinking_delta", "thinking": "x" * 40},
    }
    end = {"type": "message_delta", "delta": {}, "usage": {"output_tokens": 50}}
    for name, event in (("message_start", start), ("content_block_delta", delta)):
        observer.feed(f"event: {name}\ndata: {json.dumps(event)}\n\n".encode())
    observer.feed(f"event: message_delta\ndata: {json.dumps(end)}\n\n".encode())
    usage = observer.result().usage
    assert usage is not None
    assert usage.reasoning_tokens == 10


def test_a_clean_eof_before_the_terminal_event_is_no_success() -> None:
    observer = OpenAIStreamObserver()
    observer.feed(b'data: {"choices": [{"delta": {"content": "partial"}}]}\n\n')
    observer.feed_eof()
    assert not observer.result().terminal_seen


def test_our_own_failures_are_never_blamed_on_the_provider() -> None:
    decision = classify_outcome(
        UpstreamOutcome(
            phase=AttemptPhase.CONNECT,
            protocol=Protocol.OPENAI,
            now_wall=T0,
            failure=TransportFailure.LOCAL,
        )
    )
    assert (decision.penalty, decision.failover) == (Penalty.NONE, False)


def test_one_failure_counts_once_towards_the_circuit_breaker() -> None:
    health = Health({"a": "p"})
    refused = classify_outcome(
        UpstreamOutcome(
            phase=AttemptPhase.CONNECT,
            protocol=Protocol.OPENAI,
            now_wall=T0,
            failure=TransportFailure.CONNECT_REFUSED,
        )
    )
    for i in range(4):  # one short of the threshold
        health.record_failure("a", "m", refused, T0 + 10_000 * i)
    assert health.verdict("a", "m", T0 + 40_000).kind is VerdictKind.OK


def test_unknown_request_reservation_is_used_not_dead_config() -> None:
    prices = prices_for(two_accounts(), "p", "m")
    assert reservation_estimate(prices, None, unknown_microdollars=1_234_567) == 1_234_567


def test_an_unauthenticated_lan_listener_is_flagged() -> None:
    cfg = parse_config({"server": {"host": "0.0.0.0"}}, {})
    assert any(w.path == "server.host" for w in cfg.warnings)


def test_anthropic_path_is_not_warned_for_openai_only_providers() -> None:
    cfg = two_accounts()
    assert not [w for w in cfg.warnings if "anthropic_path" in w.path]
