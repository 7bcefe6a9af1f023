"""Pricing: token counts to integer microdollars, with how sure we are of the figure.

Theory of operation. A request's tokens fall in four categories, each with
its own rate in integer microdollars per million tokens: input (uncached),
output (reasoning included: it is part of `output_tokens`, never added
again), cache read and cache write. `Usage` already separates them
(usage.py subtracts cached tokens from OpenAI's `prompt_tokens`), so cache
reads are priced at the cache-read rate only, never also as input: the
reference's cost inflation on cache-heavy requests cannot happen here.

`resolve_prices` picks each category's rate from the first source that has
one, field by field (reference-features.md 2.10):

1. `[providers.<id>.model_overrides."m"]`, then `[model_overrides."m"]`;
2. upstream model metadata (`metadata_rates`: OpenRouter `pricing`, and the
   other shapes providers list models with);
3. the built-in table of common families (`_price_table.py`, dated);
4. the generic fallback (`FALLBACK_RATES`: $3 / $15 / $0.30 / $3.75 per 1M),
   or nothing when `[pricing].fallback = "off"`: the category costs 0 and
   the exactness label says so.

A provider-reported cost (OpenRouter `usage.cost`, in `Usage.cost_microdollars`)
is the request's whole cost: it wins over everything except an operator who
configured a price for the model (an override is a deliberate statement
that the model costs that much, e.g. a negotiated rate).

`compute_cost` returns the cost, an `Exactness` label and a provenance string
(the sources used, `+`-joined in precedence order, e.g. `metadata+fallback`):

- `exact`: the provider reported the cost;
- `derived`: every non-zero category priced by config, metadata or table;
- `partial`: some priced, some filled by the fallback (or unpriced, fallback off);
- `estimated`: nothing priced, fallback rates used; or no usage at all and the
  reservation estimate stands in;
- `unknown`: no tokens, or nothing priced with the fallback off (cost 0).

Integer arithmetic only: `ceil(sum(tokens * rate) / 1e6)` once per request,
so a cost is never below the true figure and at most 1 µ$ above it. Rates
parsed from metadata are rounded up to whole µ$ per million for the same
reason; negative or non-finite prices are ignored (OpenRouter lists `-1`
for its router models), absurd ones clamped (`MAX_RATE`), and every cost is
clamped to `MAX_MICRODOLLARS` ($1M), so sums stay far inside SQLite's INTEGER.

Reservations (`reservation_estimate`): input tokens at the input rate (as if
uncached) plus the request's output cap (`DEFAULT_OUTPUT_TOKENS` when it has
none) at the output rate, times 1.15 (the reference's safety factor), at
least 1 µ$. With no token estimate or no price at all,
`routing.unknown_request_reservation_microdollars` is reserved instead.
"""

from __future__ import annotations

import enum
import functools
import math
import re
from collections.abc import Mapping
from decimal import ROUND_CEILING, Decimal, InvalidOperation

import attrs

from eggpool.core import _price_table
from eggpool.core.config import Config, ModelOverride, PricingFallback
from eggpool.core.usage import MAX_TOKENS, Usage

__all__ = [
    "DEFAULT_OUTPUT_TOKENS",
    "FALLBACK_RATES",
    "MAX_MICRODOLLARS",
    "MAX_RATE",
    "PRICE_TABLE_AS_OF",
    "Cost",
    "Exactness",
    "PriceSource",
    "Prices",
    "Rates",
    "compute_cost",
    "metadata_rates",
    "prices_for",
    "reservation_estimate",
    "resolve_prices",
    "table_rates",
]

PRICE_TABLE_AS_OF = _price_table.AS_OF
MAX_RATE = 10**10  # µ$ per 1M tokens ($10,000 per 1M): above any real list price
MAX_MICRODOLLARS = 10**12  # $1M: no real request costs more; SQLite sums stay far from 2**63
DEFAULT_OUTPUT_TOKENS = 4096  # output reserved for a request that sets no max_tokens
SAFETY_PERCENT = 115
_PER_MILLION = 1_000_000


class Exactness(enum.StrEnum):
    EXACT = "exact"
    DERIVED = "derived"
    PARTIAL = "partial"
    ESTIMATED = "estimated"
    UNKNOWN = "unknown"


class PriceSource(enum.StrEnum):
    """Where a rate came from, most authoritative first (the order provenance lists them)."""

    PROVIDER_OVERRIDE = "provider_override"
    OVERRIDE = "override"
    METADATA = "metadata"
    TABLE = "table"
    FALLBACK = "fallback"
    UNPRICED = "unpriced"


_KNOWN = frozenset(
    {PriceSource.PROVIDER_OVERRIDE, PriceSource.OVERRIDE, PriceSource.METADATA, PriceSource.TABLE}
)


@attrs.frozen(kw_only=True, slots=True)
class Rates:
    """Rates one source gives, in µ$ per 1M tokens; None where it gives none."""

    input: int | None = None
    output: int | None = None
    cache_read: int | None = None
    cache_write: int | None = None


FALLBACK_RATES = Rates(
    input=3_000_000, output=15_000_000, cache_read=300_000, cache_write=3_750_000
)


@attrs.frozen(kw_only=True, slots=True)
class Prices:
    """Resolved rates (µ$ per 1M tokens; 0 when unpriced) and each one's source."""

    input: int
    output: int
    cache_read: int
    cache_write: int
    input_source: PriceSource
    output_source: PriceSource
    cache_read_source: PriceSource
    cache_write_source: PriceSource
    configured: bool = False  # an override sets a price: it beats a reported cost


@attrs.frozen(kw_only=True, slots=True)
class Cost:
    microdollars: int
    exactness: Exactness
    provenance: str


def _clamp_rate(rate: int | None) -> int | None:
    return None if rate is None or rate < 0 else min(rate, MAX_RATE)


def _override_rates(override: ModelOverride | None) -> Rates | None:
    if override is None:
        return None
    return Rates(
        input=override.input_per_million,
        output=override.output_per_million,
        cache_read=override.cache_read_per_million,
        cache_write=override.cache_write_per_million,
    )


def table_rates(model: str) -> Rates | None:
    """The built-in table's rates for `model` (longest family prefix), or None."""
    found = _price_table.lookup(model)
    if found is None:
        return None
    i, o, cr, cw = found[1]
    return Rates(input=i, output=o, cache_read=cr, cache_write=cw)


_CONFIG_SOURCES = (PriceSource.PROVIDER_OVERRIDE, PriceSource.OVERRIDE)


def resolve_prices(
    model: str,
    *,
    provider_override: ModelOverride | None = None,
    global_override: ModelOverride | None = None,
    metadata: Rates | None = None,
    fallback: PricingFallback = PricingFallback.GENERIC_ESTIMATE,
) -> Prices:
    """Each category's rate from the first source that has one (see the module doc)."""
    layers = tuple(
        (rates, source)
        for rates, source in (
            (_override_rates(provider_override), PriceSource.PROVIDER_OVERRIDE),
            (_override_rates(global_override), PriceSource.OVERRIDE),
            (metadata, PriceSource.METADATA),
            (table_rates(model), PriceSource.TABLE),
        )
        if rates is not None
    )
    off = fallback == PricingFallback.OFF

    def pick(field: str) -> tuple[int, PriceSource]:
        for rates, source in layers:
            rate = _clamp_rate(getattr(rates, field))
            if rate is not None:
                return rate, source
        if off:
            return 0, PriceSource.UNPRICED
        return getattr(FALLBACK_RATES, field), PriceSource.FALLBACK

    (i, i_src), (o, o_src) = pick("input"), pick("output")
    (cr, cr_src), (cw, cw_src) = pick("cache_read"), pick("cache_write")
    configured = any(
        getattr(rates, field) is not None
        for rates, source in layers
        if source in _CONFIG_SOURCES
        for field in ("input", "output", "cache_read", "cache_write")
    )
    return Prices(
        input=i,
        output=o,
        cache_read=cr,
        cache_write=cw,
        input_source=i_src,
        output_source=o_src,
        cache_read_source=cr_src,
        cache_write_source=cw_src,
        configured=configured,
    )


def prices_for(
    config: Config, provider_id: str, model: str, metadata: Mapping[str, object] | None = None
) -> Prices:
    """`resolve_prices` with the overrides and fallback mode `config` gives for `model`."""
    provider = config.providers.get(provider_id)
    return resolve_prices(
        model,
        provider_override=None if provider is None else provider.model_overrides.get(model),
        global_override=config.model_overrides.get(model),
        metadata=None if metadata is None else metadata_rates(metadata),
        fallback=config.pricing.fallback,
    )


# --- upstream metadata ----------------------------------------------------------------

_TOKEN, _THOUSAND, _MILLION, _AMBIGUOUS = 10**12, 10**9, 10**6, 0  # µ$/1M per $/unit
_UNITS = {
    "token": _TOKEN,
    "tok": _TOKEN,
    "1token": _TOKEN,
    "k": _THOUSAND,
    "1k": _THOUSAND,
    "ktok": _THOUSAND,
    "1000": _THOUSAND,
    "thousand": _THOUSAND,
    "m": _MILLION,
    "1m": _MILLION,
    "mtok": _MILLION,
    "1000000": _MILLION,
    "million": _MILLION,
}
_UNIT_SPLIT = re.compile(r"\s*(?:/|\bper\b)\s*")
_UNIT_TAIL = re.compile(r"(?:input|output)?tokens?$|tok(?:en)?s$")

# (path, category, unit). Earlier shapes win; a category keeps its first price.
_SHAPES: tuple[tuple[tuple[str, ...], str, int], ...] = (
    (("pricing", "prompt"), "input", _TOKEN),  # OpenRouter: $ per token, as strings
    (("pricing", "completion"), "output", _TOKEN),
    (("pricing", "input_cache_read"), "cache_read", _TOKEN),
    (("pricing", "input_cache_write"), "cache_write", _TOKEN),
    (("pricing", "input"), "input", _AMBIGUOUS),  # Together: $ per 1M, others: per token
    (("pricing", "output"), "output", _AMBIGUOUS),
    (("pricing", "cache_read"), "cache_read", _AMBIGUOUS),
    (("pricing", "cache_write"), "cache_write", _AMBIGUOUS),
    (("cost", "input"), "input", _MILLION),  # models.dev: $ per 1M
    (("cost", "output"), "output", _MILLION),
    (("cost", "cache_read"), "cache_read", _MILLION),
    (("cost", "cache_write"), "cache_write", _MILLION),
    (("input_price_per_1k",), "input", _THOUSAND),
    (("output_price_per_1k",), "output", _THOUSAND),
    (("input_price",), "input", _MILLION),
    (("output_price",), "output", _MILLION),
    (("input_cost_per_token",), "input", _TOKEN),  # LiteLLM's price list
    (("output_cost_per_token",), "output", _TOKEN),
    (("cache_read_input_token_cost",), "cache_read", _TOKEN),
    (("cache_creation_input_token_cost",), "cache_write", _TOKEN),
)


def metadata_rates(raw: Mapping[str, object]) -> Rates | None:
    """Rates from a model-list entry's raw metadata, or None when it lists no price."""
    found: dict[str, int] = {}
    for path, category, unit in _SHAPES:
        if category in found:
            continue
        value: object = raw
        for key in path:
            value = value.get(key) if isinstance(value, Mapping) else None
        rate = parse_price(value, unit)
        if rate is not None:
            found[category] = rate
    return Rates(**found) if found else None


def parse_price(value: object, unit: int = _MILLION) -> int | None:
    """A price in dollars (`unit`: µ$/1M per dollar of it) as µ$ per 1M tokens, rounded up.

    Accepts numbers and strings such as `"0.000003"`, `"$3"`, `"$1,250"`,
    `"$3 / 1M tokens"`, `"0.5/1k"`, `"3e-06/token"`; a unit in the string wins
    over `unit`. None for negative, non-finite or unreadable values. With
    `unit=0` (a key whose unit providers disagree on) a value below 0.001 is
    read as dollars per token, anything else as dollars per million: no real
    model costs $1,000 per million tokens, none $0.001 per million.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        if not math.isfinite(value):
            return None
        text = repr(value)
    elif isinstance(value, str):
        text = value
    else:
        return None
    parts = _UNIT_SPLIT.split(text.strip().lower(), maxsplit=1)
    number = parts[0].replace("$", "").replace(",", "").replace("usd", "").strip()
    if len(parts) == 2:
        unit_text = _UNIT_TAIL.sub("", parts[1].replace(" ", "")) or "token"
        if unit_text not in _UNITS:
            return None
        unit = _UNITS[unit_text]
    try:
        dollars = Decimal(number)
    except InvalidOperation:
        return None
    if not dollars.is_finite() or dollars < 0:
        return None
    if unit == _AMBIGUOUS:
        unit = _TOKEN if dollars < Decimal("0.001") else _MILLION
    dollars = min(dollars, Decimal(MAX_RATE))  # bound the exponent before scaling
    rate = (dollars * unit).to_integral_value(rounding=ROUND_CEILING)
    return min(int(rate), MAX_RATE)


# --- costs ------------------------------------------------------------------------------


def _clamp_money(amount: int) -> int:
    return min(max(amount, 0), MAX_MICRODOLLARS)


def compute_cost(usage: Usage | None, prices: Prices, *, estimate: int | None = None) -> Cost:
    """The cost of one request from its usage (None: no usage; `estimate` then stands in)."""
    if usage is None:
        if estimate is not None:
            return Cost(
                microdollars=_clamp_money(estimate),
                exactness=Exactness.ESTIMATED,
                provenance="reservation",
            )
        return Cost(microdollars=0, exactness=Exactness.UNKNOWN, provenance="none")
    reported = usage.cost_microdollars
    if reported is not None and not prices.configured:
        return Cost(
            microdollars=_clamp_money(reported), exactness=Exactness.EXACT, provenance="reported"
        )
    total = 0
    used: set[PriceSource] = set()
    for tokens, rate, source in (
        (usage.input_tokens, prices.input, prices.input_source),
        (usage.output_tokens, prices.output, prices.output_source),
        (usage.cache_read_tokens, prices.cache_read, prices.cache_read_source),
        (usage.cache_write_tokens, prices.cache_write, prices.cache_write_source),
    ):
        if tokens > 0:
            total += min(tokens, MAX_TOKENS) * rate
            used.add(source)
    if not used:
        if reported is not None:  # configured prices, but nothing to price them on
            return Cost(
                microdollars=_clamp_money(reported),
                exactness=Exactness.EXACT,
                provenance="reported",
            )
        return Cost(microdollars=0, exactness=Exactness.UNKNOWN, provenance="none")
    known = used & _KNOWN
    if known == used:
        exactness = Exactness.DERIVED
    elif known:
        exactness = Exactness.PARTIAL
    elif PriceSource.FALLBACK in used:
        exactness = Exactness.ESTIMATED
    else:
        exactness = Exactness.UNKNOWN
    return Cost(
        microdollars=_clamp_money(-(-total // _PER_MILLION)),
        exactness=exactness,
        provenance=_provenance(frozenset(used)),
    )


@functools.cache
def _provenance(used: frozenset[PriceSource]) -> str:
    """The price sources used, in declaration order: `"configured+fallback"`. (Cached:
    iterating an enum costs more than the rest of `compute_cost`.)"""
    return "+".join(source.value for source in PriceSource if source in used)


def reservation_estimate(
    prices: Prices,
    input_tokens: int | None,
    max_output_tokens: int | None = None,
    *,
    unknown_microdollars: int,
) -> int:
    """Microdollars to reserve for a request (see the module doc). O(1): runs per candidate."""
    if input_tokens is None or (
        prices.input_source is PriceSource.UNPRICED
        and prices.output_source is PriceSource.UNPRICED
    ):
        return _clamp_money(unknown_microdollars)
    output = DEFAULT_OUTPUT_TOKENS if max_output_tokens is None else max_output_tokens
    inp = min(max(input_tokens, 0), MAX_TOKENS)
    out = min(max(output, 0), MAX_TOKENS)
    scaled = (inp * prices.input + out * prices.output) * SAFETY_PERCENT
    return _clamp_money(max(1, -(-scaled // (100 * _PER_MILLION))))
