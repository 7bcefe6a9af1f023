"""Pricing: sources and their precedence, exactness, metadata shapes, the table, rounding."""

from __future__ import annotations

import math
from decimal import Decimal

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eggpool.core._price_table import lookup
from eggpool.core.config import ModelOverride, PricingFallback, parse_config
from eggpool.core.pricing import (
    DEFAULT_OUTPUT_TOKENS,
    FALLBACK_RATES,
    MAX_MICRODOLLARS,
    MAX_RATE,
    Exactness,
    Prices,
    PriceSource,
    Rates,
    compute_cost,
    metadata_rates,
    parse_price,
    prices_for,
    reservation_estimate,
    resolve_prices,
    table_rates,
)
from eggpool.core.usage import MAX_TOKENS, Usage

M = 1_000_000  # microdollars in a dollar


def usd(dollars: str) -> int:
    """Dollars per 1M tokens as µ$ per 1M tokens."""
    return int(Decimal(dollars) * M)


def override(**prices: int) -> ModelOverride:
    return ModelOverride(**{f"{k}_per_million": v for k, v in prices.items()})  # type: ignore[arg-type]


def flat(rate: int, source: PriceSource = PriceSource.TABLE, **extra: object) -> Prices:
    fields = ("input", "output", "cache_read", "cache_write")
    return Prices(
        **dict.fromkeys(fields, rate),
        **{f"{f}_source": source for f in fields},
        **extra,  # type: ignore[arg-type]
    )


# --- sources and precedence ------------------------------------------------------------


def test_each_category_comes_from_the_first_source_that_prices_it() -> None:
    prices = resolve_prices(
        "claude-sonnet-4-5",
        provider_override=override(input=1),
        global_override=override(input=2, output=3),
        metadata=Rates(input=4, output=5, cache_read=6),
    )
    assert (prices.input, prices.output, prices.cache_read, prices.cache_write) == (
        1,
        3,
        6,
        usd("3.75"),
    )
    assert (
        prices.input_source,
        prices.output_source,
        prices.cache_read_source,
        prices.cache_write_source,
    ) == (
        PriceSource.PROVIDER_OVERRIDE,
        PriceSource.OVERRIDE,
        PriceSource.METADATA,
        PriceSource.TABLE,
    )


def test_fallback_fills_what_no_source_prices() -> None:
    prices = resolve_prices("unheard-of-model", metadata=Rates(input=7))
    assert (prices.input, prices.output, prices.cache_read, prices.cache_write) == (
        7,
        FALLBACK_RATES.output,
        FALLBACK_RATES.cache_read,
        FALLBACK_RATES.cache_write,
    )
    assert prices.output_source is PriceSource.FALLBACK
    assert (
        Rates(input=usd("3"), output=usd("15"), cache_read=usd("0.30"), cache_write=usd("3.75"))
        == FALLBACK_RATES
    )


def test_fallback_off_leaves_categories_unpriced_at_zero() -> None:
    prices = resolve_prices("unheard-of-model", fallback=PricingFallback.OFF)
    assert prices == flat(0, PriceSource.UNPRICED)


def test_an_override_without_prices_does_not_count_as_configured() -> None:
    prices = resolve_prices("gpt-4o", global_override=ModelOverride(max_output_tokens=100))
    assert prices.configured is False
    assert prices.input_source is PriceSource.TABLE


def config(**extra: object) -> dict[str, object]:
    return {
        "providers": {
            "p": {
                "base_url": "https://api.example.com/v1",
                "accounts": [{"name": "x", "api_key": "sk-test-0123456789"}],
                "model_overrides": {"m": {"input_price_per_1k": 0.001}},
            }
        },
        "model_overrides": {
            "m": {"input_price_per_1k": 0.002, "cache_read_per_million_microdollars": "$0.10"}
        },
        **extra,
    }


def test_prices_for_reads_provider_then_global_overrides_from_the_config() -> None:
    cfg = parse_config(config(), {})
    prices = prices_for(cfg, "p", "m", {"pricing": {"completion": "0.000002"}})
    assert (prices.input, prices.output, prices.cache_read) == (usd("1"), usd("2"), usd("0.10"))
    assert prices.input_source is PriceSource.PROVIDER_OVERRIDE
    assert prices.cache_read_source is PriceSource.OVERRIDE
    assert prices.output_source is PriceSource.METADATA
    assert prices.configured


def test_prices_for_another_provider_skips_the_provider_override() -> None:
    cfg = parse_config(config(), {})
    assert prices_for(cfg, "other", "m").input == usd("2")


def test_prices_for_honours_fallback_off() -> None:
    cfg = parse_config(config(pricing={"fallback": "off"}), {})
    assert prices_for(cfg, "p", "m").output_source is PriceSource.UNPRICED


# --- costs and exactness ---------------------------------------------------------------

SONNET = resolve_prices("claude-sonnet-4-5-20250929")


def test_provider_reported_cost_is_the_cost() -> None:
    cost = compute_cost(Usage(input_tokens=10**6, cost_microdollars=1234), SONNET)
    assert (cost.microdollars, cost.exactness, cost.provenance) == (
        1234,
        Exactness.EXACT,
        "reported",
    )


def test_configured_prices_win_over_a_reported_cost() -> None:
    prices = resolve_prices("m", global_override=override(input=usd("1"), output=usd("1")))
    cost = compute_cost(Usage(input_tokens=10**6, cost_microdollars=5), prices)
    assert (cost.microdollars, cost.exactness, cost.provenance) == (
        M,
        Exactness.DERIVED,
        "override",
    )


def test_reported_cost_still_counts_when_configured_prices_have_no_tokens_to_price() -> None:
    prices = resolve_prices("m", global_override=override(input=1))
    cost = compute_cost(Usage(cost_microdollars=77), prices)
    assert (cost.microdollars, cost.exactness) == (77, Exactness.EXACT)


def test_every_category_priced_is_derived() -> None:
    usage = Usage(input_tokens=1000, output_tokens=500, cache_read_tokens=10_000)
    cost = compute_cost(usage, SONNET)
    assert cost.microdollars == 1000 * 3 + 500 * 15 + 10_000 * 3 // 10
    assert (cost.exactness, cost.provenance) == (Exactness.DERIVED, "table")


def test_some_categories_from_the_fallback_is_partial() -> None:
    prices = resolve_prices("unheard-of", metadata=Rates(input=usd("1"), output=usd("2")))
    cost = compute_cost(Usage(input_tokens=10, cache_write_tokens=10), prices)
    assert (cost.exactness, cost.provenance) == (Exactness.PARTIAL, "metadata+fallback")
    assert cost.microdollars == 10 + math.ceil(10 * 3.75)


def test_unpriced_categories_with_fallback_off_are_partial_and_free() -> None:
    prices = resolve_prices(
        "unheard-of", metadata=Rates(input=usd("1")), fallback=PricingFallback.OFF
    )
    cost = compute_cost(Usage(input_tokens=10, output_tokens=10**6), prices)
    assert (cost.microdollars, cost.exactness, cost.provenance) == (
        10,
        Exactness.PARTIAL,
        "metadata+unpriced",
    )


def test_no_price_at_all_uses_fallback_rates_and_is_estimated() -> None:
    cost = compute_cost(Usage(input_tokens=10**6, output_tokens=10**6), resolve_prices("zzz"))
    assert (cost.microdollars, cost.exactness, cost.provenance) == (
        18 * M,
        Exactness.ESTIMATED,
        "fallback",
    )


def test_no_usage_bills_the_reservation_estimate_as_estimated() -> None:
    cost = compute_cost(None, SONNET, estimate=4321)
    assert (cost.microdollars, cost.exactness, cost.provenance) == (
        4321,
        Exactness.ESTIMATED,
        "reservation",
    )


@pytest.mark.parametrize("usage", [None, Usage()])
def test_no_tokens_is_unknown(usage: Usage | None) -> None:
    cost = compute_cost(usage, SONNET)
    assert (cost.microdollars, cost.exactness) == (0, Exactness.UNKNOWN)


def test_nothing_priced_with_fallback_off_is_unknown() -> None:
    prices = resolve_prices("zzz", fallback=PricingFallback.OFF)
    cost = compute_cost(Usage(input_tokens=100), prices)
    assert (cost.microdollars, cost.exactness, cost.provenance) == (
        0,
        Exactness.UNKNOWN,
        "unpriced",
    )


def test_cache_reads_are_priced_only_at_the_cache_read_rate() -> None:
    # The reference billed OpenAI's cache-inclusive prompt_tokens as input too.
    usage = Usage(input_tokens=100, cache_read_tokens=1_000_000, output_tokens=10)
    cost = compute_cost(usage, resolve_prices("gpt-4o"))
    assert cost.microdollars == math.ceil(100 * 2.5 + 1_250_000 + 10 * 10)


def test_reasoning_tokens_are_part_of_output_not_added() -> None:
    usage = Usage(output_tokens=1000, reasoning_tokens=800)
    assert compute_cost(usage, resolve_prices("o3")).microdollars == 1000 * 8


def test_the_total_is_rounded_up_once() -> None:
    prices = resolve_prices("gpt-4o-mini")  # $0.15 in, $0.60 out per 1M
    assert compute_cost(Usage(input_tokens=1), prices).microdollars == 1  # 0.15 µ$
    assert compute_cost(Usage(input_tokens=1, output_tokens=1), prices).microdollars == 1
    assert compute_cost(Usage(input_tokens=20, output_tokens=1), prices).microdollars == 4


def test_free_model_costs_nothing_and_is_derived() -> None:
    prices = resolve_prices("x", metadata=metadata_rates(OPENROUTER_FREE))
    cost = compute_cost(Usage(input_tokens=10**6, output_tokens=10**6), prices)
    assert (cost.microdollars, cost.exactness) == (0, Exactness.DERIVED)


def test_extreme_values_are_clamped() -> None:
    prices = flat(MAX_RATE)
    usage = Usage(input_tokens=MAX_TOKENS, output_tokens=MAX_TOKENS, cost_microdollars=None)
    assert compute_cost(usage, prices).microdollars == MAX_MICRODOLLARS
    assert compute_cost(Usage(cost_microdollars=10**30), prices).microdollars == MAX_MICRODOLLARS
    assert compute_cost(Usage(cost_microdollars=-5), prices).microdollars == 0


# --- upstream metadata -----------------------------------------------------------------

OPENROUTER_SONNET = {
    "id": "anthropic/claude-sonnet-4.5",
    "name": "Anthropic: Claude Sonnet 4.5",
    "context_length": 1000000,
    "pricing": {
        "prompt": "0.000003",
        "completion": "0.000015",
        "request": "0",
        "image": "0.0048",
        "web_search": "0",
        "internal_reasoning": "0",
        "input_cache_read": "0.0000003",
        "input_cache_write": "0.00000375",
    },
    "top_provider": {"context_length": 1000000, "max_completion_tokens": 64000},
}
OPENROUTER_AUTO = {"id": "openrouter/auto", "pricing": {"prompt": "-1", "completion": "-1"}}
OPENROUTER_FREE = {
    "id": "deepseek/deepseek-chat-v3.1:free",
    "pricing": {"prompt": "0", "completion": "0", "request": "0", "image": "0"},
}


def test_openrouter_entry_gives_all_four_rates() -> None:
    assert metadata_rates(OPENROUTER_SONNET) == Rates(
        input=usd("3"), output=usd("15"), cache_read=usd("0.30"), cache_write=usd("3.75")
    )


def test_openrouter_negative_router_prices_are_ignored() -> None:
    assert metadata_rates(OPENROUTER_AUTO) is None


def test_openrouter_free_model_is_priced_at_zero() -> None:
    assert metadata_rates(OPENROUTER_FREE) == Rates(input=0, output=0)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # Together: numbers in dollars per 1M tokens under pricing.input / output
        (
            {"pricing": {"input": 0.88, "output": 0.88, "hourly": 0}},
            Rates(input=880_000, output=880_000),
        ),
        # ... the same keys in dollars per token elsewhere
        (
            {"pricing": {"input": "0.0000025", "output": 1e-05}},
            Rates(input=2_500_000, output=10_000_000),
        ),
        # models.dev: cost in dollars per 1M
        (
            {"cost": {"input": 1.25, "output": 10, "cache_read": 0.125}},
            Rates(input=1_250_000, output=10_000_000, cache_read=125_000),
        ),
        # dollars per 1k tokens
        (
            {"input_price_per_1k": "0.0025", "output_price_per_1k": 0.01},
            Rates(input=2_500_000, output=10_000_000),
        ),
        # input_price / output_price per 1M, strings with $ and commas
        (
            {"input_price": "$1,000", "output_price": "$3"},
            Rates(input=1_000_000_000, output=3_000_000),
        ),
        # LiteLLM's price list
        (
            {
                "input_cost_per_token": 3e-06,
                "output_cost_per_token": 1.5e-05,
                "cache_read_input_token_cost": 3e-07,
                "cache_creation_input_token_cost": 3.75e-06,
            },
            Rates(input=3_000_000, output=15_000_000, cache_read=300_000, cache_write=3_750_000),
        ),
        # an explicit unit in the string wins over the key's
        (
            {"input_price": "$0.003/1K", "output_price": "0.000015 / token"},
            Rates(input=3_000_000, output=15_000_000),
        ),
        (
            {"input_price": "3 per 1M tokens", "output_price": "$15/MTok"},
            Rates(input=3_000_000, output=15_000_000),
        ),
        # nothing usable
        ({"pricing": "free"}, None),
        ({"pricing": {"prompt": True, "completion": None}}, None),
        ({}, None),
    ],
)
def test_metadata_shapes(raw: dict[str, object], expected: Rates | None) -> None:
    assert metadata_rates(raw) == expected


@pytest.mark.parametrize(
    "value",
    ["-0.5", -1, "nan", math.nan, math.inf, "Infinity", "", "abc", "3/fortnight", [1], None],
)
def test_unusable_prices_are_ignored(value: object) -> None:
    assert parse_price(value) is None


def test_extreme_prices_are_clamped() -> None:
    assert parse_price("1e400", 10**12) == MAX_RATE
    assert parse_price(1e300) == MAX_RATE


def test_sub_microdollar_prices_round_up() -> None:
    assert parse_price("0.0000000000001/token") == 1  # 0.1 µ$ per 1M tokens


@given(st.decimals(min_value=0, max_value=10_000, places=6, allow_nan=False))
def test_dollars_per_million_with_six_decimals_convert_exactly(dollars: Decimal) -> None:
    assert parse_price(f"${dollars}/1M") == int(dollars * M)


@given(st.one_of(st.text(max_size=30), st.floats(), st.integers()))
def test_parse_price_is_total_and_bounded(value: object) -> None:
    rate = parse_price(value)
    assert rate is None or 0 <= rate <= MAX_RATE


# --- the built-in table ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "key"),
    [
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4"),
        ("anthropic/claude-sonnet-4.5", "claude-sonnet-4"),
        ("claude-opus-4-1-20250805", "claude-opus-4"),
        ("claude-opus-4-5-20251101", "claude-opus-4-5"),
        ("claude-haiku-4-5", "claude-haiku-4"),
        ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
        ("anthropic/claude-3.7-sonnet:thinking", "claude-3-7-sonnet"),
        ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
        ("claude-sonnet-4-5@20250929", "claude-sonnet-4"),
        ("gpt-4o-mini", "gpt-4o-mini"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4o", "gpt-4o"),
        ("openai/gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4-0613", "gpt-4"),
        ("gpt-4-turbo-2024-04-09", "gpt-4-turbo"),
        ("gpt-4.1-mini", "gpt-4-1-mini"),
        ("gpt-5", "gpt-5"),
        ("gpt-5.1-codex", "gpt-5"),
        ("gpt-5-mini-2025-08-07", "gpt-5-mini"),
        ("o3", "o3"),
        ("o3-mini-2025-01-31", "o3-mini"),
        ("o4-mini", "o4-mini"),
        ("models/gemini-2.5-flash", "gemini-2-5-flash"),
        ("gemini-2.5-flash-lite", "gemini-2-5-flash-lite"),
        ("gemini-2.5-pro-preview-06-05", "gemini-2-5-pro"),
        ("deepseek-reasoner", "deepseek-reasoner"),
        ("llama-3.3-70b-versatile", "llama-3-3-70b"),
        ("meta-llama/Llama-3.3-70B-Instruct-Turbo", "llama-3-3-70b"),
        ("meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo", "meta-llama-3-1-8b"),
        ("openai/gpt-oss-120b", "gpt-oss-120b"),
        ("qwen/qwen3-32b", "qwen3-32b"),
        ("Qwen/Qwen3-Coder-480B-A35B-Instruct-FP8", "qwen3-coder"),
        ("moonshotai/kimi-k2-instruct-0905", "kimi-k2"),
        ("zai-org/GLM-4.6", "glm-4"),
        ("z-ai/glm-4.5-air", "glm-4-5-air"),
        ("MiniMax-M2", "minimax-m2"),
    ],
)
def test_table_matches_by_longest_family_prefix(model: str, key: str) -> None:
    found = lookup(model)
    assert found is not None
    assert found[0] == key


@pytest.mark.parametrize(
    "model",
    ["gpt-4omni", "my-gpt-4o", "o3x", "claude", "llama-3.3-8b", "text-embedding-3-small", ""],
)
def test_table_never_guesses(model: str) -> None:
    assert lookup(model) is None
    assert table_rates(model) is None


def test_table_rates_of_known_families() -> None:
    assert table_rates("claude-sonnet-4-5-20250929") == Rates(
        input=usd("3"), output=usd("15"), cache_read=usd("0.30"), cache_write=usd("3.75")
    )
    assert table_rates("gpt-4o-mini") == Rates(
        input=usd("0.15"), output=usd("0.60"), cache_read=usd("0.075"), cache_write=usd("0.15")
    )
    assert table_rates("claude-3-haiku-20240307") == Rates(
        input=usd("0.25"), output=usd("1.25"), cache_read=usd("0.03"), cache_write=usd("0.30")
    )


# --- reservations ----------------------------------------------------------------------


def test_reservation_is_input_plus_output_cap_with_a_safety_factor() -> None:
    got = reservation_estimate(SONNET, 10_000, 2_000, unknown_microdollars=1)
    assert got == math.ceil((10_000 * 3 + 2_000 * 15) * 1.15)


def test_reservation_without_an_output_cap_uses_the_default() -> None:
    got = reservation_estimate(SONNET, 0, None, unknown_microdollars=1)
    assert got == math.ceil(DEFAULT_OUTPUT_TOKENS * 15 * 1.15)


def test_reservation_is_at_least_one_microdollar() -> None:
    assert reservation_estimate(flat(0), 10**6, 10**6, unknown_microdollars=9) == 1


def test_unestimable_request_reserves_the_configured_amount() -> None:
    assert reservation_estimate(SONNET, None, 100, unknown_microdollars=1_000_000) == 1_000_000
    unpriced = resolve_prices("zzz", fallback=PricingFallback.OFF)
    assert reservation_estimate(unpriced, 100, 100, unknown_microdollars=42) == 42


def test_reservation_is_clamped() -> None:
    assert reservation_estimate(flat(MAX_RATE), 10**20, 10**20, unknown_microdollars=1) == (
        MAX_MICRODOLLARS
    )


# --- properties ----------------------------------------------------------------------------

rates = st.one_of(st.integers(0, 100_000_000), st.integers(0, MAX_RATE))
tokens = st.one_of(st.integers(0, 10_000), st.integers(0, MAX_TOKENS))
prices_st = st.builds(
    Prices,
    input=rates,
    output=rates,
    cache_read=rates,
    cache_write=rates,
    input_source=st.sampled_from(PriceSource),
    output_source=st.sampled_from(PriceSource),
    cache_read_source=st.sampled_from(PriceSource),
    cache_write_source=st.sampled_from(PriceSource),
    configured=st.booleans(),
)
usage_st = st.builds(
    Usage,
    input_tokens=tokens,
    cache_read_tokens=tokens,
    cache_write_tokens=tokens,
    output_tokens=tokens,
)
FIELDS = ["input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens"]


@given(prices=prices_st, usage=usage_st, field=st.sampled_from(FIELDS), more=tokens)
def test_cost_is_monotone_in_every_token_count(
    prices: Prices, usage: Usage, field: str, more: int
) -> None:
    bigger = attrs.evolve(usage, **{field: min(getattr(usage, field) + more, MAX_TOKENS)})
    assert compute_cost(bigger, prices).microdollars >= compute_cost(usage, prices).microdollars


@given(prices=prices_st, usage=usage_st)
def test_cost_is_never_negative_nor_below_the_exact_sum(prices: Prices, usage: Usage) -> None:
    cost = compute_cost(usage, prices).microdollars
    exact = sum(
        Decimal(getattr(usage, f)) * r / M
        for f, r in zip(
            FIELDS,
            (prices.input, prices.cache_read, prices.cache_write, prices.output),
            strict=True,
        )
    )
    assert 0 <= cost <= MAX_MICRODOLLARS
    assert cost >= min(exact, MAX_MICRODOLLARS)
    assert cost < exact + 1 or cost == MAX_MICRODOLLARS


@given(prices=prices_st, usage=usage_st, reported=st.integers(0, MAX_MICRODOLLARS))
def test_reported_cost_is_the_cost_unless_prices_are_configured(
    prices: Prices, usage: Usage, reported: int
) -> None:
    cost = compute_cost(
        attrs.evolve(usage, cost_microdollars=reported), attrs.evolve(prices, configured=False)
    )
    assert (cost.microdollars, cost.exactness) == (reported, Exactness.EXACT)


@given(prices=prices_st, inp=tokens, out=tokens, more=tokens)
def test_reservation_is_monotone_and_positive(
    prices: Prices, inp: int, out: int, more: int
) -> None:
    base = reservation_estimate(prices, inp, out, unknown_microdollars=5)
    assert base >= 1
    assert reservation_estimate(prices, inp + more, out, unknown_microdollars=5) >= base
    assert reservation_estimate(prices, inp, out + more, unknown_microdollars=5) >= base
