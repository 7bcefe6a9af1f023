"""Built-in list prices of common model families: the last source before the fallback.

Prices are US dollars per million tokens as published by each vendor on its
pricing page, as of `AS_OF`; they go stale, which is why configured prices
and upstream metadata come first (see pricing.py). Sources:

- OpenAI: https://platform.openai.com/docs/pricing (standard tier; cache
  writes are not billed by OpenAI, so they are priced as plain input).
- Anthropic: https://docs.anthropic.com/en/docs/about-claude/pricing (cache
  read 0.1x input, 5-minute cache write 1.25x input).
- Google: https://ai.google.dev/gemini-api/docs/pricing (prompts up to 200k
  tokens; context-cache storage is billed per hour, not per request).
- DeepSeek: https://api-docs.deepseek.com/quick_start/pricing (V3.2 prices).
- Open-weight models: https://groq.com/pricing, https://www.together.ai/pricing,
  https://docs.z.ai (GLM), https://www.minimax.io (MiniMax). Where hosts
  differ, the higher list price is used: an estimate should not under-count.

Not modelled: long-context surcharges (Sonnet 4.x and Gemini 2.5 Pro above
200k input tokens cost more), batch and priority tiers, 1-hour cache writes.
Configure a `model_overrides` price where that matters.

Matching (`lookup`): the id is normalized (lower case, the part after the
last `/`, `.` and `_` read as `-`), then the longest key that equals it or
is followed in it by `-`, `:` or `@` wins. So `claude-sonnet-4-5-20250929`
finds `claude-sonnet-4`, `gpt-4o-mini` finds `gpt-4o-mini` and never
`gpt-4o`, and `gpt-4o` never matches `gpt-4`. Nothing fuzzy: an id that
starts with no key is unpriced here.
"""

from __future__ import annotations

__all__ = ["AS_OF", "lookup", "normalize_model_id"]

AS_OF = "2025-12-01"

# key, input, output, cache read (None: input), cache write (None: input); $ per 1M tokens
_ROWS: tuple[tuple[str, float, float, float | None, float | None], ...] = (
    # OpenAI
    ("gpt-5", 1.25, 10.0, 0.125, None),
    ("gpt-5-mini", 0.25, 2.0, 0.025, None),
    ("gpt-5-nano", 0.05, 0.40, 0.005, None),
    ("gpt-5-pro", 15.0, 120.0, None, None),
    ("gpt-5-2", 1.75, 14.0, 0.175, None),
    ("gpt-4-1", 2.0, 8.0, 0.50, None),
    ("gpt-4-1-mini", 0.40, 1.60, 0.10, None),
    ("gpt-4-1-nano", 0.10, 0.40, 0.025, None),
    ("gpt-4o", 2.50, 10.0, 1.25, None),
    ("gpt-4o-mini", 0.15, 0.60, 0.075, None),
    ("gpt-4-turbo", 10.0, 30.0, None, None),
    ("gpt-4", 30.0, 60.0, None, None),
    ("gpt-3-5-turbo", 0.50, 1.50, None, None),
    ("o1", 15.0, 60.0, 7.50, None),
    ("o1-mini", 1.10, 4.40, 0.55, None),
    ("o1-pro", 150.0, 600.0, None, None),
    ("o3", 2.0, 8.0, 0.50, None),
    ("o3-mini", 1.10, 4.40, 0.55, None),
    ("o3-pro", 20.0, 80.0, None, None),
    ("o4-mini", 1.10, 4.40, 0.275, None),
    # Anthropic
    ("claude-opus-4", 15.0, 75.0, 1.50, 18.75),  # Opus 4 and 4.1
    ("claude-opus-4-5", 5.0, 25.0, 0.50, 6.25),
    ("claude-opus-4-6", 5.0, 25.0, 0.50, 6.25),
    ("claude-sonnet-4", 3.0, 15.0, 0.30, 3.75),  # Sonnet 4 and 4.5
    ("claude-haiku-4", 1.0, 5.0, 0.10, 1.25),  # Haiku 4.5
    ("claude-3-7-sonnet", 3.0, 15.0, 0.30, 3.75),
    ("claude-3-5-sonnet", 3.0, 15.0, 0.30, 3.75),
    ("claude-3-sonnet", 3.0, 15.0, 0.30, 3.75),
    ("claude-3-5-haiku", 0.80, 4.0, 0.08, 1.0),
    ("claude-3-opus", 15.0, 75.0, 1.50, 18.75),
    ("claude-3-haiku", 0.25, 1.25, 0.03, 0.30),
    # Google
    ("gemini-3-pro", 2.0, 12.0, 0.20, None),
    ("gemini-2-5-pro", 1.25, 10.0, 0.125, None),
    ("gemini-2-5-flash", 0.30, 2.50, 0.03, None),
    ("gemini-2-5-flash-lite", 0.10, 0.40, 0.01, None),
    ("gemini-2-0-flash", 0.10, 0.40, 0.025, None),
    ("gemini-2-0-flash-lite", 0.075, 0.30, None, None),
    # DeepSeek (both endpoints serve V3.2 at one price)
    ("deepseek-chat", 0.28, 0.42, 0.028, None),
    ("deepseek-reasoner", 0.28, 0.42, 0.028, None),
    # Open-weight models as hosted by Groq / Together / their makers
    ("llama-3-3-70b", 0.88, 0.88, None, None),
    ("llama-3-1-70b", 0.88, 0.88, None, None),
    ("meta-llama-3-1-70b", 0.88, 0.88, None, None),
    ("llama-3-1-8b", 0.18, 0.18, None, None),
    ("meta-llama-3-1-8b", 0.18, 0.18, None, None),
    ("gpt-oss-120b", 0.15, 0.60, None, None),
    ("gpt-oss-20b", 0.10, 0.50, None, None),
    ("qwen3-32b", 0.29, 0.59, None, None),
    ("qwen3-235b-a22b", 0.65, 3.0, None, None),
    ("qwen3-coder", 2.0, 2.0, None, None),
    ("glm-4", 0.60, 2.20, 0.11, None),  # GLM-4.5 / 4.6
    ("glm-4-5-air", 0.20, 1.10, 0.03, None),
    ("kimi-k2", 1.0, 3.0, None, None),
    ("minimax-m2", 0.30, 1.20, 0.03, 0.375),
    ("minimax-m1", 0.40, 2.20, None, None),
)


def _micro(dollars: float) -> int:
    return round(dollars * 1_000_000)


_TABLE: dict[str, tuple[int, int, int, int]] = {
    key: (
        _micro(i),
        _micro(o),
        _micro(i if cr is None else cr),
        _micro(i if cw is None else cw),
    )
    for key, i, o, cr, cw in _ROWS
}
_BOUNDARIES = frozenset("-:@")


def normalize_model_id(model: str) -> str:
    """`anthropic/Claude-3.5-Sonnet` -> `claude-3-5-sonnet` (the form table keys use)."""
    return model.rsplit("/", 1)[-1].strip().lower().replace(".", "-").replace("_", "-")


def lookup(model: str) -> tuple[str, tuple[int, int, int, int]] | None:
    """The matching key and its (input, output, cache read, cache write) µ$ per 1M tokens."""
    name = normalize_model_id(model)
    for end in range(len(name), 0, -1):
        if end == len(name) or name[end] in _BOUNDARIES:
            found = _TABLE.get(name[:end])
            if found is not None:
                return name[:end], found
    return None
