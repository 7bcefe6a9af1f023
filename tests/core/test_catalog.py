"""The model catalog: list parsing, routing lookups, exposure, limits, protocol, refresh rules.

Bodies are shaped like what the providers really send (OpenAI, Anthropic
with pagination, OpenRouter, Groq `org/model` ids, Ollama). The refresh
tests are playbooks: listings in, supported models and diffs out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eggpool.core._model_lists import (
    MAX_ID_CHARS,
    MAX_LIST_ITEMS,
    MAX_METADATA_KEYS,
    MAX_STR_CHARS,
    ListShape,
    ModelListFailure,
    ModelListPage,
    TokenLimits,
    combine_pages,
    next_page_cursor,
    parse_model_list,
)
from eggpool.core.catalog import (
    Catalog,
    CatalogDiff,
    LimitSource,
    ProtocolSource,
    family_protocol,
)
from eggpool.core.config import Config, ExposeMode, Protocol, parse_config

KEY = "sk-live-0123456789abcdef"
T0 = 1_750_000_000.0
OPENAI = Protocol.OPENAI
ANTHROPIC = Protocol.ANTHROPIC


# --- realistic bodies -----------------------------------------------------------------


def body(document: object) -> bytes:
    return json.dumps(document).encode()


def openai_row(model_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": model_id,
        "object": "model",
        "created": 1715367049,
        "owned_by": "system",
        **extra,
    }


def anthropic_row(model_id: str, name: str) -> dict[str, Any]:
    return {
        "type": "model",
        "id": model_id,
        "display_name": name,
        "created_at": "2025-05-22T00:00:00Z",
    }


# Trimmed from real responses (ids, shapes and key names as the providers send them).
OPENAI_LIST = b"""{"object": "list", "data": [
  {"id": "gpt-4o", "object": "model", "created": 1715367049, "owned_by": "system"},
  {"id": "gpt-4o-mini", "object": "model", "created": 1721172741, "owned_by": "system"},
  {"id": "o3-mini", "object": "model", "created": 1737146383, "owned_by": "system"},
  {"id": "text-embedding-3-small", "object": "model", "created": 1705948997, "owned_by": "system"}
]}"""

ANTHROPIC_PAGE_1 = b"""{"data": [
  {"type": "model", "id": "claude-sonnet-4-20250514", "display_name": "Claude Sonnet 4",
   "created_at": "2025-05-22T00:00:00Z"},
  {"type": "model", "id": "claude-opus-4-20250514", "display_name": "Claude Opus 4",
   "created_at": "2025-05-22T00:00:00Z"}
], "has_more": true, "first_id": "claude-sonnet-4-20250514",
   "last_id": "claude-opus-4-20250514"}"""

ANTHROPIC_PAGE_2 = b"""{"data": [
  {"type": "model", "id": "claude-3-5-haiku-20241022", "display_name": "Claude Haiku 3.5",
   "created_at": "2024-10-22T00:00:00Z"}
], "has_more": false, "first_id": "claude-3-5-haiku-20241022",
   "last_id": "claude-3-5-haiku-20241022"}"""

OPENROUTER_LIST = b"""{"data": [
  {"id": "anthropic/claude-sonnet-4", "canonical_slug": "anthropic/claude-4-sonnet-20250522",
   "name": "Anthropic: Claude Sonnet 4", "created": 1747930371,
   "description": "Claude Sonnet 4 significantly enhances the capabilities of its predecessor...",
   "context_length": 200000,
   "architecture": {"modality": "text+image->text", "input_modalities": ["image", "text", "file"],
                    "output_modalities": ["text"], "tokenizer": "Claude", "instruct_type": null},
   "pricing": {"prompt": "0.000003", "completion": "0.000015", "request": "0", "image": "0.0048",
               "input_cache_read": "0.0000003", "input_cache_write": "0.00000375"},
   "top_provider": {"context_length": 200000, "max_completion_tokens": 64000,
                    "is_moderated": true},
   "per_request_limits": null,
   "supported_parameters": ["max_tokens", "temperature", "tools", "tool_choice"]},
  {"id": "deepseek/deepseek-chat-v3-0324", "name": "DeepSeek: DeepSeek V3 0324",
   "created": 1742824755, "context_length": 163840,
   "pricing": {"prompt": "0.00000028", "completion": "0.00000088"},
   "top_provider": {"context_length": 163840, "max_completion_tokens": null,
                    "is_moderated": false}}
]}"""

GROQ_LIST = b"""{"object": "list", "data": [
  {"id": "meta-llama/llama-4-scout-17b-16e-instruct", "object": "model", "created": 1743874824,
   "owned_by": "Meta", "active": true, "context_window": 131072, "public_apps": null,
   "max_completion_tokens": 8192},
  {"id": "openai/gpt-oss-20b", "object": "model", "created": 1754407957, "owned_by": "OpenAI",
   "active": true, "context_window": 131072, "public_apps": null, "max_completion_tokens": 65536},
  {"id": "llama-3.1-8b-instant", "object": "model", "created": 1693721698, "owned_by": "Meta",
   "active": true, "context_window": 131072, "public_apps": null, "max_completion_tokens": 131072},
  {"id": "distil-whisper-large-v3-en", "object": "model", "created": 1693721698,
   "owned_by": "Hugging Face", "active": false, "context_window": 448, "public_apps": null}
]}"""

OLLAMA_LIST = b"""{"object": "list", "data": [
  {"id": "llama3.2:latest", "object": "model", "created": 1733159130, "owned_by": "library"},
  {"id": "qwen2.5-coder:7b", "object": "model", "created": 1733000000, "owned_by": "library"}
]}"""


def page(*model_ids: str, **extra: Any) -> ModelListPage:
    result = parse_model_list(body({"object": "list", "data": [openai_row(m) for m in model_ids]}))
    assert isinstance(result, ModelListPage)
    return attrs.evolve(result, **extra)


def parsed(data: bytes) -> ModelListPage:
    result = parse_model_list(data)
    assert isinstance(result, ModelListPage), result
    return result


def ids(result: ModelListPage) -> list[str]:
    return [model.id for model in result.models]


# --- configs ------------------------------------------------------------------------


def account(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "api_key": KEY, **fields}


def provider(*accounts: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"base_url": "https://api.example.com/v1", "accounts": list(accounts), **fields}


def make_config(providers: Mapping[str, Any], **sections: Any) -> Config:
    return parse_config({"providers": dict(providers), **sections}, {})


def two_openai_accounts(**sections: Any) -> Config:
    return make_config({"openai": provider(account("a"), account("b"))}, **sections)


def catalog_of(config: Config, **listings: ModelListPage) -> Catalog:
    catalog = Catalog(config, now=T0)
    for name, listing in listings.items():
        catalog.refresh(name, listing, now=T0)
    return catalog


def accounts_for(catalog: Catalog, model: str, protocol: Protocol = OPENAI) -> list[str]:
    return [c.account_name for c in catalog.route(model, protocol).candidates]


def exposed_ids(catalog: Catalog, **options: Any) -> list[str]:
    return [entry.id for entry in catalog.exposed_models(**options)]


FAILED = ModelListFailure(reason="HTTP 500")


# --- parsing: shapes ----------------------------------------------------------------


def test_openai_list_gives_every_row_in_order() -> None:
    result = parsed(OPENAI_LIST)
    assert ids(result) == ["gpt-4o", "gpt-4o-mini", "o3-mini", "text-embedding-3-small"]
    assert result.shape is ListShape.OPENAI
    assert result.complete
    assert result.authoritative


def test_openai_row_keeps_its_original_keys_as_metadata() -> None:
    model = parsed(OPENAI_LIST).models[0]
    assert dict(model.metadata) == openai_row("gpt-4o")


def test_anthropic_first_page_reports_the_cursor_for_the_next() -> None:
    first = parsed(ANTHROPIC_PAGE_1)
    assert first.shape is ListShape.ANTHROPIC
    assert first.has_more
    assert not first.complete
    assert next_page_cursor([first]) == "claude-opus-4-20250514"


def test_anthropic_pages_combine_in_order_into_a_complete_listing() -> None:
    pages = [parsed(ANTHROPIC_PAGE_1), parsed(ANTHROPIC_PAGE_2)]
    assert next_page_cursor(pages) is None
    combined = combine_pages(pages)
    assert ids(combined) == [
        "claude-sonnet-4-20250514",
        "claude-opus-4-20250514",
        "claude-3-5-haiku-20241022",
    ]
    assert combined.complete
    assert combined.pages == 2
    assert combined.models[0].display_name == "Claude Sonnet 4"


def test_listing_stopped_before_the_last_page_is_incomplete() -> None:
    combined = combine_pages([parsed(ANTHROPIC_PAGE_1)])
    assert not combined.complete
    assert not combined.authoritative


def test_cursor_falls_back_to_the_last_row_without_last_id() -> None:
    first = parsed(body({"data": [anthropic_row("claude-x", "X")], "has_more": True}))
    assert next_page_cursor([first]) == "claude-x"


def test_a_repeated_cursor_stops_pagination() -> None:
    first = parsed(ANTHROPIC_PAGE_1)
    assert next_page_cursor([first, first]) is None


def test_pagination_stops_at_the_page_cap() -> None:
    first = parsed(ANTHROPIC_PAGE_1)
    assert next_page_cursor([first], max_pages=1) is None


def test_pages_repeating_a_model_keep_its_first_row() -> None:
    first = parsed(body({"data": [anthropic_row("claude-x", "First")], "has_more": True}))
    second = parsed(body({"data": [anthropic_row("claude-x", "Second")], "has_more": False}))
    combined = combine_pages([first, second])
    assert [m.display_name for m in combined.models] == ["First"]
    assert combined.duplicates == 1


def test_openrouter_row_keeps_pricing_and_architecture_under_their_keys() -> None:
    model = parsed(OPENROUTER_LIST).models[0]
    pricing = model.metadata["pricing"]
    assert isinstance(pricing, Mapping)
    assert pricing["prompt"] == "0.000003"
    assert pricing["input_cache_read"] == "0.0000003"
    architecture = model.metadata["architecture"]
    assert isinstance(architecture, Mapping)
    assert architecture["input_modalities"] == ("image", "text", "file")
    assert model.metadata["context_length"] == 200000
    assert model.display_name == "Anthropic: Claude Sonnet 4"


def test_openrouter_limits_come_from_context_length_and_top_provider() -> None:
    sonnet, deepseek = parsed(OPENROUTER_LIST).models
    assert sonnet.limits == TokenLimits(context=200000, input=None, output=64000)
    assert deepseek.limits == TokenLimits(context=163840, input=None, output=None)


def test_groq_ids_keep_their_slashes_and_limits() -> None:
    result = parsed(GROQ_LIST)
    scout = result.models[0]
    assert scout.id == "meta-llama/llama-4-scout-17b-16e-instruct"
    assert scout.limits == TokenLimits(context=131072, input=None, output=8192)
    assert "openai/gpt-oss-20b" in ids(result)


def test_groq_inactive_models_are_left_out_without_counting_as_malformed() -> None:
    result = parsed(GROQ_LIST)
    assert "distil-whisper-large-v3-en" not in ids(result)
    assert result.skipped == 0


def test_ollama_tags_style_ids_parse() -> None:
    assert ids(parsed(OLLAMA_LIST)) == ["llama3.2:latest", "qwen2.5-coder:7b"]


# --- parsing: malformed input -------------------------------------------------------


@pytest.mark.parametrize(
    "row",
    [
        "gpt-4o",
        None,
        42,
        ["gpt-4o"],
        {"object": "model"},
        {"id": 7},
        {"id": ""},
        {"id": " padded "},
        {"id": "line\nbreak"},
        {"id": "x" * (MAX_ID_CHARS + 1)},
        {"id": "\ud800"},
    ],
    ids=repr,
)
def test_malformed_rows_are_skipped_and_counted(row: object) -> None:
    result = parsed(body({"object": "list", "data": [openai_row("gpt-4o"), row]}))
    assert ids(result) == ["gpt-4o"]
    assert result.skipped == 1
    assert not result.authoritative


def test_a_repeated_id_keeps_the_first_row_and_is_not_malformed() -> None:
    rows = [openai_row("gpt-4o", owned_by="first"), openai_row("gpt-4o", owned_by="second")]
    result = parsed(body({"data": rows}))
    assert [m.metadata["owned_by"] for m in result.models] == ["first"]
    assert (result.skipped, result.duplicates) == (0, 1)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "not JSON"),
        (b"<html>502 Bad Gateway</html>", "not JSON"),
        (b"\xff\xfe\xfa", "not JSON"),
        (b'"models"', "expected a JSON object, got a string"),
        (b"{}", 'no "data" list'),
        (b'{"data": {"id": "gpt-4o"}}', '"data" is an object'),
        (b'{"error": {"message": "invalid key", "type": "auth"}}', "error object"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
        (b'{"data": [' + b"1" * 5000 + b"]}", "not JSON"),
    ],
    ids=[
        "empty",
        "html",
        "bad-utf8",
        "string",
        "no-data",
        "data-object",
        "error",
        "deep-nesting",
        "huge-integer",
    ],
)
def test_a_body_that_is_not_a_model_list_fails_with_a_reason(data: bytes, fragment: str) -> None:
    result = parse_model_list(data)
    assert isinstance(result, ModelListFailure)
    assert fragment in result.reason


def test_a_failure_reason_never_quotes_the_body() -> None:
    result = parse_model_list(b'{"data": "sk-secret-value"}')
    assert isinstance(result, ModelListFailure)
    assert "sk-secret" not in result.reason


def test_an_oversized_body_fails_without_parsing() -> None:
    from eggpool.core._model_lists import MAX_BODY_BYTES

    result = parse_model_list(b" " * (MAX_BODY_BYTES + 1))
    assert isinstance(result, ModelListFailure)
    assert "larger than" in result.reason


def test_a_bare_array_of_models_is_a_page() -> None:
    # Together AI answers /v1/models with a bare JSON array.
    together = b'[{"id": "meta-llama/Llama-3.3-70B-Instruct-Turbo", "object": "model",'
    together += b' "context_length": 131072, "type": "chat"}]'
    result = parsed(together)
    assert [m.id for m in result.models] == ["meta-llama/Llama-3.3-70B-Instruct-Turbo"]


def test_an_empty_data_list_is_a_page_with_no_models() -> None:
    assert parsed(b'{"object": "list", "data": []}').models == ()


# --- parsing: metadata bounds and extraction ----------------------------------------


def metadata_of(**row: Any) -> Mapping[str, object]:
    return parsed(body({"data": [{"id": "m", **row}]})).models[0].metadata


def test_metadata_drops_overlong_strings() -> None:
    metadata = metadata_of(description="d" * (MAX_STR_CHARS + 1), owned_by="me")
    assert "description" not in metadata
    assert metadata["owned_by"] == "me"


def test_metadata_drops_objects_outside_the_known_nested_keys() -> None:
    metadata = metadata_of(endpoint={"url": "https://x"}, pricing={"prompt": "0.1"})
    assert "endpoint" not in metadata
    assert "pricing" in metadata


def test_metadata_keeps_the_price_objects_the_pricing_module_reads() -> None:
    metadata = metadata_of(pricing={"prompt": "0.000003"}, cost={"input": 3, "output": 15})
    assert dict(metadata["pricing"]) == {"prompt": "0.000003"}  # type: ignore[call-overload]
    assert dict(metadata["cost"]) == {"input": 3, "output": 15}  # type: ignore[call-overload]


def test_metadata_keeps_nesting_one_level_deep_only() -> None:
    pricing = metadata_of(pricing={"prompt": "0.1", "tiers": {"a": 1}})["pricing"]
    assert dict(pricing) == {"prompt": "0.1"}  # type: ignore[call-overload]


def test_metadata_drops_integers_that_do_not_fit_sqlite() -> None:
    metadata = metadata_of(created=2**63, context_length=2**62)
    assert "created" not in metadata
    assert metadata["context_length"] == 2**62


def test_metadata_drops_non_finite_numbers() -> None:
    data = b'{"data": [{"id": "m", "a": NaN, "b": Infinity, "c": 1e999, "d": 1.5}]}'
    metadata = parsed(data).models[0].metadata
    assert dict(metadata) == {"id": "m", "d": 1.5}


def test_metadata_caps_lists_and_keeps_only_their_scalars() -> None:
    items = [*range(MAX_LIST_ITEMS + 10)]
    metadata = metadata_of(supported_parameters=items, mixed=["a", {"b": 1}, ["c"], 2])
    assert len(metadata["supported_parameters"]) == MAX_LIST_ITEMS  # type: ignore[arg-type]
    assert metadata["mixed"] == ("a", 2)


def test_metadata_caps_its_key_count_but_keeps_the_keys_eggpool_reads() -> None:
    noise = {f"k{i:03}": i for i in range(MAX_METADATA_KEYS * 2)}
    metadata = metadata_of(**noise, context_length=4096, pricing={"prompt": "1"})
    assert len(metadata) == MAX_METADATA_KEYS
    assert metadata["context_length"] == 4096
    assert "pricing" in metadata


def test_metadata_is_read_only() -> None:
    metadata = metadata_of(owned_by="me")
    with pytest.raises(TypeError):
        metadata["owned_by"] = "you"  # type: ignore[index]


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"max_context_tokens": 1000, "context_window": 2000}, TokenLimits(context=1000)),
        ({"context_window": 2000, "context_length": 3000}, TokenLimits(context=2000)),
        ({"max_position_embeddings": 4096}, TokenLimits(context=4096)),
        ({"input_token_limit": 1048576}, TokenLimits(input=1048576)),  # Gemini style
        ({"output_token_limit": 8192, "max_completion_tokens": 4096}, TokenLimits(output=8192)),
        ({"context_length": "32768"}, TokenLimits(context=32768)),
        ({"context_length": 32768.0}, TokenLimits(context=32768)),
        ({"context_length": 0, "context_window": -5}, TokenLimits()),
        ({"context_length": True}, TokenLimits()),
        ({"context_length": 10**12}, TokenLimits()),
        ({"context_length": "128k"}, TokenLimits()),
    ],
    ids=repr,
)
def test_limits_come_from_the_first_usable_key(row: dict[str, Any], expected: TokenLimits) -> None:
    assert parsed(body({"data": [{"id": "m", **row}]})).models[0].limits == expected


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"api_type": "anthropic"}, ANTHROPIC),
        ({"protocol": "OpenAI"}, OPENAI),
        ({"api_type": "responses", "protocol": "anthropic"}, ANTHROPIC),
        ({"api_type": "gemini"}, None),
        ({}, None),
    ],
    ids=repr,
)
def test_protocol_hint_from_api_type_or_protocol(
    row: dict[str, Any], expected: Protocol | None
) -> None:
    assert parsed(body({"data": [{"id": "m", **row}]})).models[0].protocol_hint is expected


# --- parsing: properties ------------------------------------------------------------


@given(st.binary(max_size=2000))
def test_parsing_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    assert isinstance(parse_model_list(data), ModelListPage | ModelListFailure)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=20,
)


@given(st.lists(json_values, max_size=6), st.dictionaries(st.text(max_size=10), json_values))
def test_parsing_never_raises_on_arbitrary_rows(rows: list[Any], top: dict[str, Any]) -> None:
    document = {**top, "data": rows}
    result = parse_model_list(json.dumps(document).encode())
    assert isinstance(result, ModelListPage)
    assert len(result.models) + result.skipped + result.duplicates <= len(rows)


# --- routing ------------------------------------------------------------------------


def test_an_unknown_model_is_not_known() -> None:
    lookup = catalog_of(two_openai_accounts(), a=page("gpt-4o")).route("gpt-5", OPENAI)
    assert not lookup.known
    assert lookup.candidates == ()


def test_each_supporting_account_is_a_candidate_in_config_order() -> None:
    catalog = catalog_of(two_openai_accounts(), b=page("gpt-4o"), a=page("gpt-4o"))
    assert accounts_for(catalog, "gpt-4o") == ["a", "b"]
    candidate = catalog.route("gpt-4o", OPENAI).candidates[0]
    assert (candidate.model_id, candidate.provider_id, candidate.protocol) == (
        "gpt-4o",
        "openai",
        OPENAI,
    )


def test_only_accounts_whose_list_has_the_model_are_candidates() -> None:
    catalog = catalog_of(two_openai_accounts(), a=page("gpt-4o", "o3"), b=page("gpt-4o"))
    assert accounts_for(catalog, "o3") == ["a"]


def test_candidates_come_highest_routing_priority_first() -> None:
    config = make_config(
        {
            "cheap": provider(account("c1"), routing_priority=0),
            "main": provider(account("m1"), routing_priority=5),
            "also": provider(account("a1"), routing_priority=5),
        }
    )
    listing = page("deepseek-chat")
    catalog = catalog_of(config, c1=listing, m1=listing, a1=listing)
    assert accounts_for(catalog, "deepseek-chat") == ["a1", "m1", "c1"]
    assert [c.routing_priority for c in catalog.route("deepseek-chat", OPENAI).candidates] == [
        5,
        5,
        0,
    ]


def test_a_pinned_provider_limits_candidates_to_it() -> None:
    config = make_config({"openai": provider(account("o")), "openrouter": provider(account("r"))})
    catalog = catalog_of(config, o=page("gpt-4o"), r=page("gpt-4o"))
    assert [c.account_name for c in catalog.route("gpt-4o", OPENAI, "openrouter").candidates] == [
        "r"
    ]


def test_a_pinned_provider_that_lacks_the_model_makes_it_unknown() -> None:
    config = make_config({"openai": provider(account("o")), "groq": provider(account("g"))})
    catalog = catalog_of(config, o=page("gpt-4o"), g=page("llama-3.1-8b-instant"))
    assert not catalog.route("gpt-4o", OPENAI, "groq").known


def test_a_protocol_mismatch_is_known_with_no_candidates() -> None:
    catalog = catalog_of(two_openai_accounts(), a=page("gpt-4o"))
    lookup = catalog.route("gpt-4o", ANTHROPIC)
    assert lookup.known
    assert lookup.candidates == ()
    assert lookup.served_protocols == frozenset({OPENAI})


def test_a_disabled_account_is_never_a_candidate() -> None:
    config = make_config({"openai": provider(account("a"), account("b", enabled=False))})
    catalog = catalog_of(config, a=page("gpt-4o"), b=page("gpt-4o", "o3"))
    assert accounts_for(catalog, "gpt-4o") == ["a"]
    assert not catalog.route("o3", OPENAI).known


def test_lookups_hand_out_precomputed_candidates() -> None:
    catalog = catalog_of(two_openai_accounts(), a=page("gpt-4o"), b=page("gpt-4o"))
    first = catalog.route("gpt-4o", OPENAI).candidates
    assert catalog.route("gpt-4o", OPENAI).candidates is first


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        ("gpt-4o", ("gpt-4o", None)),
        ("gpt-4o/openai", ("gpt-4o", "openai")),
        ("openai/gpt-oss-20b", ("openai/gpt-oss-20b", None)),
        ("openai/gpt-oss-20b/groq", ("openai/gpt-oss-20b", "groq")),
        ("meta-llama/llama-4-scout/unknown", ("meta-llama/llama-4-scout/unknown", None)),
        ("/groq", ("/groq", None)),
    ],
)
def test_split_model_id_strips_only_a_configured_provider(
    requested: str, expected: tuple[str, str | None]
) -> None:
    config = make_config({"openai": provider(account("o")), "groq": provider(account("g"))})
    catalog = catalog_of(config, g=parsed(GROQ_LIST), o=page("gpt-4o"))
    assert catalog.split_model_id(requested) == expected


def test_split_model_id_keeps_a_served_id_that_ends_like_a_provider() -> None:
    config = make_config({"groq": provider(account("g")), "llama": provider(account("l"))})
    catalog = catalog_of(config, g=page("meta/llama"))
    assert catalog.split_model_id("meta/llama") == ("meta/llama", None)


# --- protocol -----------------------------------------------------------------------

BOTH = ["openai", "anthropic"]


def dual_config(**fields: Any) -> Config:
    return make_config({"go": provider(account("g"), protocols=BOTH, **fields)})


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("claude-sonnet-4-5", ANTHROPIC),
        ("minimax-m2.5", ANTHROPIC),
        ("MiniMax-M2.7", ANTHROPIC),
        ("qwen3-coder", ANTHROPIC),
        ("qwen3.5-plus", ANTHROPIC),
        ("qwen2.5-coder:7b", OPENAI),
        ("gpt-5", OPENAI),
        ("o1", OPENAI),
        ("o3-mini", OPENAI),
        ("o4-mini", OPENAI),
        ("glm-5", OPENAI),
        ("kimi-k2.5", OPENAI),
        ("mimo-v2.5-pro", OPENAI),
        ("deepseek-v4-flash", OPENAI),
        ("Pro/deepseek-ai/DeepSeek-V3", OPENAI),
        ("llama3.2:latest", OPENAI),
        ("omni-moderation-latest", None),
        ("o1x", None),
        ("big-pickle", None),
    ],
)
def test_family_rules(model: str, expected: Protocol | None) -> None:
    assert family_protocol(model) is expected


def test_a_single_protocol_provider_serves_every_model_with_it() -> None:
    config = make_config({"openrouter": provider(account("r"))})
    catalog = catalog_of(config, r=page("claude-sonnet-4", "big-pickle"))
    for model in ("claude-sonnet-4", "big-pickle"):
        resolved = catalog.protocol(model, "openrouter")
        assert resolved is not None
        assert (resolved.protocol, resolved.source) == (OPENAI, ProtocolSource.ONLY_PROTOCOL)


def test_a_two_protocol_provider_uses_family_rules() -> None:
    catalog = catalog_of(dual_config(), g=page("glm-5", "minimax-m2.5"))
    assert accounts_for(catalog, "glm-5", OPENAI) == ["g"]
    assert accounts_for(catalog, "minimax-m2.5", ANTHROPIC) == ["g"]
    resolved = catalog.protocol("glm-5", "go")
    assert resolved is not None
    assert resolved.source is ProtocolSource.FAMILY


def test_an_unresolved_protocol_is_known_but_unroutable_and_hidden() -> None:
    catalog = catalog_of(dual_config(), g=page("big-pickle", "glm-5"))
    lookup = catalog.route("big-pickle", OPENAI)
    assert lookup.known
    assert lookup.served_protocols == frozenset()
    assert catalog.route("big-pickle", ANTHROPIC).candidates == ()
    assert exposed_ids(catalog) == ["glm-5/go"]


def test_static_protocol_beats_family_rules() -> None:
    config = dual_config(static_models=[{"id": "glm-5", "protocol": "anthropic"}])
    resolved = catalog_of(config).protocol("glm-5", "go")
    assert resolved is not None
    assert (resolved.protocol, resolved.source) == (ANTHROPIC, ProtocolSource.STATIC)


def test_upstream_hint_beats_static_protocol() -> None:
    config = dual_config(static_models=[{"id": "glm-5", "protocol": "anthropic"}])
    listing = parsed(body({"data": [openai_row("glm-5", api_type="openai")]}))
    resolved = catalog_of(config, g=listing).protocol("glm-5", "go")
    assert resolved is not None
    assert (resolved.protocol, resolved.source) == (OPENAI, ProtocolSource.UPSTREAM)


def test_global_protocol_override_beats_upstream_hint() -> None:
    config = make_config(
        {"go": provider(account("g"), protocols=BOTH)},
        model_overrides={"glm-5": {"protocol": "anthropic"}},
    )
    listing = parsed(body({"data": [openai_row("glm-5", api_type="openai")]}))
    resolved = catalog_of(config, g=listing).protocol("glm-5", "go")
    assert resolved is not None
    assert (resolved.protocol, resolved.source) == (ANTHROPIC, ProtocolSource.GLOBAL_OVERRIDE)


def test_provider_protocol_override_beats_global_override() -> None:
    config = make_config(
        {
            "go": provider(
                account("g"), protocols=BOTH, model_overrides={"glm-5": {"protocol": "openai"}}
            )
        },
        model_overrides={"glm-5": {"protocol": "anthropic"}},
    )
    resolved = catalog_of(config, g=page("glm-5")).protocol("glm-5", "go")
    assert resolved is not None
    assert (resolved.protocol, resolved.source) == (OPENAI, ProtocolSource.PROVIDER_OVERRIDE)


def test_a_protocol_the_provider_does_not_list_is_not_used() -> None:
    config = make_config(
        {"openai": provider(account("o"))}, model_overrides={"gpt-4o": {"protocol": "anthropic"}}
    )
    catalog = catalog_of(config, o=page("gpt-4o"))
    assert accounts_for(catalog, "gpt-4o", OPENAI) == ["o"]
    assert catalog.route("gpt-4o", ANTHROPIC).candidates == ()


def test_protocols_are_resolved_per_provider() -> None:
    config = make_config(
        {
            "go": provider(account("g"), protocols=BOTH),
            "mm": provider(account("m"), protocols=["anthropic"]),
        }
    )
    catalog = catalog_of(config, g=page("glm-5"), m=page("glm-5"))
    assert catalog.route("glm-5", OPENAI).served_protocols == frozenset({OPENAI, ANTHROPIC})
    assert accounts_for(catalog, "glm-5", ANTHROPIC) == ["m"]
    assert accounts_for(catalog, "glm-5", OPENAI) == ["g"]


# --- limits -------------------------------------------------------------------------


def limits_config(
    *,
    provider_override: dict[str, Any] | None = None,
    global_override: dict[str, Any] | None = None,
) -> Config:
    fields: dict[str, Any] = {
        "static_models": [
            {
                "id": "m",
                "max_context_tokens": 1000,
                "max_input_tokens": 900,
                "max_output_tokens": 100,
            }
        ]
    }
    if provider_override is not None:
        fields["model_overrides"] = {"m": provider_override}
    sections = {"model_overrides": {"m": global_override}} if global_override is not None else {}
    return make_config({"p": provider(account("a"), **fields)}, **sections)


UPSTREAM_M = parsed(
    body({"data": [{"id": "m", "context_length": 2000, "max_completion_tokens": 200}]})
)


def test_static_limits_apply_when_nothing_else_is_known() -> None:
    limits = catalog_of(limits_config()).limits("m", "p")
    assert limits is not None
    assert (limits.context, limits.input, limits.output) == (1000, 900, 100)
    assert limits.context_source is LimitSource.STATIC
    assert limits.enforce


def test_upstream_metadata_beats_static_limits_field_by_field() -> None:
    limits = catalog_of(limits_config(), a=UPSTREAM_M).limits("m", "p")
    assert limits is not None
    assert (limits.context, limits.input, limits.output) == (2000, 900, 200)
    assert (limits.context_source, limits.input_source) == (
        LimitSource.UPSTREAM,
        LimitSource.STATIC,
    )


def test_global_limit_override_beats_upstream_metadata() -> None:
    config = limits_config(global_override={"max_context_tokens": 3000})
    limits = catalog_of(config, a=UPSTREAM_M).limits("m", "p")
    assert limits is not None
    assert (limits.context, limits.output) == (3000, 200)
    assert limits.context_source is LimitSource.GLOBAL_OVERRIDE


def test_provider_limit_override_beats_global_override() -> None:
    config = limits_config(
        provider_override={"max_context_tokens": 4000},
        global_override={"max_context_tokens": 3000, "max_output_tokens": 300},
    )
    limits = catalog_of(config, a=UPSTREAM_M).limits("m", "p")
    assert limits is not None
    assert (limits.context, limits.output) == (4000, 300)
    assert limits.context_source is LimitSource.PROVIDER_OVERRIDE


def test_limits_are_unknown_without_any_source() -> None:
    catalog = catalog_of(two_openai_accounts(), a=page("gpt-4o"))
    limits = catalog.limits("gpt-4o", "openai")
    assert limits is not None
    assert (limits.context, limits.input, limits.output) == (None, None, None)
    assert limits.context_source is LimitSource.UNKNOWN


@pytest.mark.parametrize(
    ("provider_enforce", "global_enforce", "expected"),
    [(None, None, True), (None, False, False), (True, False, True), (False, None, False)],
)
def test_enforce_comes_from_the_provider_then_the_global_override(
    provider_enforce: bool | None, global_enforce: bool | None, expected: bool
) -> None:
    def override(value: bool | None) -> dict[str, Any]:
        return {} if value is None else {"enforce_context_limit": value}

    config = limits_config(
        provider_override=override(provider_enforce), global_override=override(global_enforce)
    )
    limits = catalog_of(config).limits("m", "p")
    assert limits is not None
    assert limits.enforce is expected


def test_candidates_carry_the_effective_limits() -> None:
    catalog = catalog_of(limits_config(), a=UPSTREAM_M)
    assert catalog.route("m", OPENAI).candidates[0].limits == catalog.limits("m", "p")


def test_static_source_metadata_limits_fill_unset_static_fields() -> None:
    config = make_config(
        {
            "p": provider(
                account("a"),
                static_models=[{"id": "m", "source_metadata": {"context_length": 5000}}],
            )
        }
    )
    limits = catalog_of(config).limits("m", "p")
    assert limits is not None
    assert limits.context == 5000


# --- exposure -----------------------------------------------------------------------


def openai_and_router_config(**sections: Any) -> Config:
    return make_config(
        {
            "openai": provider(account("o1"), account("o2"), routing_priority=1),
            "openrouter": provider(account("r1")),
        },
        **sections,
    )


def openai_and_router(**sections: Any) -> Catalog:
    return catalog_of(
        openai_and_router_config(**sections),
        o1=page("gpt-4o", "o3"),
        o2=page("gpt-4o"),
        r1=page("gpt-4o", "deepseek-chat"),
    )


def test_uncollapsed_exposure_lists_one_suffixed_id_per_model_and_provider() -> None:
    assert exposed_ids(openai_and_router()) == [
        "deepseek-chat/openrouter",
        "gpt-4o/openai",
        "gpt-4o/openrouter",
        "o3/openai",
    ]


def test_collapsed_exposure_lists_one_bare_id_per_model() -> None:
    catalog = openai_and_router(models={"collapse_models": True})
    assert exposed_ids(catalog) == ["deepseek-chat", "gpt-4o", "o3"]
    gpt = catalog.exposed_models()[1]
    assert gpt.providers == ("openai", "openrouter")
    assert gpt.routing_priority == 1


def test_union_lists_what_any_enabled_account_serves() -> None:
    assert "o3/openai" in exposed_ids(openai_and_router(), mode=ExposeMode.UNION)


def test_intersection_lists_what_every_listing_account_of_the_provider_serves() -> None:
    ids_ = exposed_ids(openai_and_router(), mode=ExposeMode.INTERSECTION)
    assert ids_ == ["deepseek-chat/openrouter", "gpt-4o/openai", "gpt-4o/openrouter"]


def test_intersection_ignores_accounts_that_never_listed() -> None:
    catalog = catalog_of(two_openai_accounts(), a=page("gpt-4o", "o3"))
    catalog.refresh("b", FAILED, now=T0)
    assert exposed_ids(catalog, mode=ExposeMode.INTERSECTION) == ["gpt-4o/openai", "o3/openai"]


def test_intersection_collapsed_keeps_a_model_any_provider_fully_serves() -> None:
    catalog = openai_and_router()
    entries = catalog.exposed_models(mode=ExposeMode.INTERSECTION, collapse=True)
    assert [e.id for e in entries] == ["deepseek-chat", "gpt-4o"]


def test_healthy_union_lists_only_models_of_healthy_accounts() -> None:
    def healthy(account: str, model: str) -> bool:
        return account != "o1"

    ids_ = exposed_ids(openai_and_router(), mode=ExposeMode.HEALTHY_UNION, healthy=healthy)
    assert "o3/openai" not in ids_
    assert "gpt-4o/openai" in ids_


def test_healthy_union_asks_about_the_model_too() -> None:
    def healthy(account: str, model: str) -> bool:
        return model != "deepseek-chat"

    ids_ = exposed_ids(openai_and_router(), mode=ExposeMode.HEALTHY_UNION, healthy=healthy)
    assert "deepseek-chat/openrouter" not in ids_


def test_healthy_union_without_a_predicate_is_union() -> None:
    catalog = openai_and_router()
    assert exposed_ids(catalog, mode=ExposeMode.HEALTHY_UNION) == exposed_ids(catalog)


def test_exposure_mode_and_collapse_default_to_the_config() -> None:
    catalog = openai_and_router(models={"expose_mode": "intersection", "collapse_models": True})
    assert exposed_ids(catalog) == ["deepseek-chat", "gpt-4o"]


def test_exposure_does_not_change_routing() -> None:
    catalog = openai_and_router(models={"expose_mode": "intersection"})
    assert accounts_for(catalog, "o3") == ["o1"]


def test_collapsed_limits_are_the_smallest_known_per_field() -> None:
    config = make_config(
        {
            "a": provider(
                account("a1"),
                static_models=[{"id": "m", "max_context_tokens": 8000, "max_output_tokens": 1000}],
            ),
            "b": provider(account("b1"), static_models=[{"id": "m", "max_context_tokens": 4000}]),
        },
        models={"collapse_models": True},
    )
    (entry,) = catalog_of(config).exposed_models()
    assert entry.limits == TokenLimits(context=4000, input=None, output=1000)


# --- /v1/models JSON ----------------------------------------------------------------


def rendered(catalog: Catalog, **options: Any) -> dict[str, Any]:
    document = json.loads(catalog.render_models(**options))
    assert isinstance(document, dict)
    return document


def test_models_json_suffixed_entry_shape() -> None:
    catalog = catalog_of(limits_config(), a=UPSTREAM_M)
    document = rendered(catalog)
    assert document["object"] == "list"
    (entry,) = document["data"]
    assert entry == {
        "id": "m/p",
        "object": "model",
        "created": int(T0),
        "owned_by": "p",
        "name": "m",
        "eggpool": {
            "base_model_id": "m",
            "provider_id": "p",
            "routing_priority": 0,
            "protocols": ["openai"],
            "limits": {"context": 2000, "input": 900, "output": 200},
        },
    }


def test_models_json_collapsed_entry_shape() -> None:
    document = rendered(openai_and_router(), collapse=True)
    gpt = next(entry for entry in document["data"] if entry["id"] == "gpt-4o")
    assert gpt["object"] == "model"
    assert gpt["owned_by"] == "eggpool"
    assert gpt["eggpool"] == {
        "base_model_id": "gpt-4o",
        "providers": ["openai", "openrouter"],
        "routing_priority_max": 1,
        "protocols": ["openai"],
        "limits": {"context": None, "input": None, "output": None},
    }


def test_models_json_is_sorted_by_id() -> None:
    data = rendered(openai_and_router())["data"]
    assert [e["id"] for e in data] == sorted(e["id"] for e in data)


def test_models_json_uses_the_upstream_display_name() -> None:
    config = make_config({"anthropic": provider(account("a"), protocols=["anthropic"])})
    catalog = catalog_of(config, a=parsed(ANTHROPIC_PAGE_2))
    (entry,) = rendered(catalog)["data"]
    assert entry["name"] == "Claude Haiku 3.5"


def test_models_json_keeps_non_ascii_names_readable() -> None:
    config = make_config({"p": provider(account("a"))})
    listing = parsed(body({"data": [{"id": "m", "display_name": "Modèle 模型"}]}))
    assert "Modèle 模型".encode() in catalog_of(config, a=listing).render_models()


def test_created_is_the_first_time_the_model_was_seen() -> None:
    catalog = catalog_of(two_openai_accounts(), a=page("gpt-4o"))
    catalog.refresh("b", page("gpt-4o", "o3"), now=T0 + 500)
    catalog.refresh("a", page("gpt-4o", "o3"), now=T0 + 900)
    created = {e["id"]: e["created"] for e in rendered(catalog)["data"]}
    assert created == {"gpt-4o/openai": int(T0), "o3/openai": int(T0 + 500)}


def test_collapsed_created_is_the_earliest_provider_sighting() -> None:
    catalog = openai_and_router(models={"collapse_models": True})
    catalog.refresh("r1", page("gpt-4o", "deepseek-chat", "o3"), now=T0 + 60)
    o3 = next(e for e in rendered(catalog)["data"] if e["id"] == "o3")
    assert o3["created"] == int(T0)


def test_rendering_is_cached_until_the_catalog_changes() -> None:
    catalog = catalog_of(two_openai_accounts(), a=page("gpt-4o"))
    first = catalog.render_models()
    catalog.refresh("a", page("gpt-4o"), now=T0 + 1)
    assert catalog.render_models() is first
    catalog.refresh("b", page("o3"), now=T0 + 2)
    assert b"o3/openai" in catalog.render_models()


def test_an_empty_catalog_renders_an_empty_list() -> None:
    assert rendered(Catalog(two_openai_accounts(), now=T0)) == {"object": "list", "data": []}


# --- refresh: non-destructive ---------------------------------------------------------


def test_a_failed_refresh_keeps_the_previous_list() -> None:
    catalog = catalog_of(two_openai_accounts(), a=page("gpt-4o", "o3"))
    diff = catalog.refresh("a", FAILED, now=T0 + 300)
    assert not diff
    assert catalog.account_models("a") == {"gpt-4o", "o3"}


def test_an_empty_refresh_keeps_the_previous_list() -> None:
    catalog = catalog_of(two_openai_accounts(), a=page("gpt-4o", "o3"))
    for step in range(3):
        assert not catalog.refresh("a", page(), now=T0 + step)
    assert catalog.account_models("a") == {"gpt-4o", "o3"}


def test_a_failed_refresh_is_recorded_in_the_status() -> None:
    catalog = catalog_of(two_openai_accounts(), a=page("gpt-4o"))
    catalog.refresh("a", FAILED, now=T0 + 300)
    catalog.refresh("a", page(), now=T0 + 600)
    status = {s.account_name: s for s in catalog.status(now=T0 + 600).accounts}["a"]
    assert status.last_success == T0
    assert status.last_failure == T0 + 600
    assert status.consecutive_failures == 2
    assert status.last_error == "the provider listed no models"


def test_one_omission_does_not_withdraw_a_model() -> None:
    catalog = catalog_of(two_openai_accounts(), a=page("gpt-4o", "o3"))
    diff = catalog.refresh("a", page("gpt-4o"), now=T0 + 1)
    assert not diff.removed
    assert "o3" in catalog.account_models("a")


def test_two_consecutive_omissions_withdraw_a_model() -> None:
    catalog = catalog_of(two_openai_accounts(), a=page("gpt-4o", "o3"))
    catalog.refresh("a", page("gpt-4o"), now=T0 + 1)
    diff = catalog.refresh("a", page("gpt-4o"), now=T0 + 2)
    assert diff.removed == {"a": ("o3",)}
    assert diff.withdrawn == (("openai", "o3"),)
    assert not catalog.route("o3", OPENAI).known


def test_a_listing_that_names_the_model_again_resets_the_count() -> None:
    catalog = catalog_of(two_openai_accounts(), a=page("gpt-4o", "o3"))
    catalog.refresh("a", page("gpt-4o"), now=T0 + 1)
    catalog.refresh("a", page("gpt-4o", "o3"), now=T0 + 2)
    catalog.refresh("a", page("gpt-4o"), now=T0 + 3)
    assert "o3" in catalog.account_models("a")


def test_failures_between_omissions_neither_count_nor_reset() -> None:
    catalog = catalog_of(two_openai_accounts(), a=page("gpt-4o", "o3"))
    catalog.refresh("a", page("gpt-4o"), now=T0 + 1)
    catalog.refresh("a", FAILED, now=T0 + 2)
    catalog.refresh("a", page(), now=T0 + 3)
    assert "o3" in catalog.account_models("a")
    catalog.refresh("a", page("gpt-4o"), now=T0 + 4)
    assert "o3" not in catalog.account_models("a")


def test_an_incomplete_listing_never_withdraws() -> None:
    catalog = catalog_of(two_openai_accounts(), a=page("gpt-4o", "o3"))
    for step in range(3):
        catalog.refresh("a", page("gpt-4o", has_more=True), now=T0 + step)
    assert "o3" in catalog.account_models("a")


def test_an_incomplete_listing_still_adds_models() -> None:
    catalog = catalog_of(two_openai_accounts(), a=page("gpt-4o"))
    diff = catalog.refresh("a", page("o3", has_more=True), now=T0 + 1)
    assert diff.added == {"a": ("o3",)}


def test_a_listing_with_malformed_rows_never_withdraws() -> None:
    catalog = catalog_of(two_openai_accounts(), a=page("gpt-4o", "o3"))
    broken = parsed(body({"data": [openai_row("gpt-4o"), {"id": None}]}))
    for step in range(3):
        catalog.refresh("a", broken, now=T0 + step)
    assert "o3" in catalog.account_models("a")


def test_a_withdrawn_model_that_returns_gets_a_new_first_seen() -> None:
    catalog = catalog_of(two_openai_accounts(), a=page("gpt-4o", "o3"))
    catalog.refresh("a", page("gpt-4o"), now=T0 + 1)
    catalog.refresh("a", page("gpt-4o"), now=T0 + 2)
    catalog.refresh("a", page("gpt-4o", "o3"), now=T0 + 3)
    created = {e["id"]: e["created"] for e in rendered(catalog)["data"]}
    assert created["o3/openai"] == int(T0 + 3)


# --- refresh: siblings --------------------------------------------------------------


def test_one_accounts_failure_leaves_its_siblings_alone() -> None:
    catalog = catalog_of(two_openai_accounts(), a=page("gpt-4o"), b=page("gpt-4o", "o3"))
    catalog.refresh("a", FAILED, now=T0 + 1)
    assert accounts_for(catalog, "gpt-4o") == ["a", "b"]
    assert accounts_for(catalog, "o3") == ["b"]


def test_one_accounts_withdrawal_leaves_its_siblings_alone() -> None:
    catalog = catalog_of(two_openai_accounts(), a=page("gpt-4o", "o3"), b=page("gpt-4o", "o3"))
    catalog.refresh("a", page("gpt-4o"), now=T0 + 1)
    diff = catalog.refresh("a", page("gpt-4o"), now=T0 + 2)
    assert diff.removed == {"a": ("o3",)}
    assert diff.withdrawn == ()
    assert accounts_for(catalog, "o3") == ["b"]


def test_shared_metadata_survives_a_siblings_failure_and_omission() -> None:
    catalog = catalog_of(limits_config_two_accounts(), a=UPSTREAM_M, b=UPSTREAM_M)
    catalog.refresh("b", FAILED, now=T0 + 1)
    catalog.refresh("b", page("other"), now=T0 + 2)
    limits = catalog.limits("m", "p")
    assert limits is not None
    assert limits.context == 2000
    assert catalog.metadata("m", "p")["context_length"] == 2000


def test_a_newer_successful_row_replaces_the_shared_metadata() -> None:
    catalog = catalog_of(limits_config_two_accounts(), a=UPSTREAM_M)
    newer = parsed(body({"data": [{"id": "m", "context_length": 64000}]}))
    diff = catalog.refresh("b", newer, now=T0 + 1)
    assert diff.updated == (("p", "m"),)
    limits = catalog.limits("m", "p")
    assert limits is not None
    assert limits.context == 64000


def test_an_unchanged_listing_changes_nothing() -> None:
    catalog = catalog_of(limits_config_two_accounts(), a=UPSTREAM_M)
    assert catalog.refresh("a", UPSTREAM_M, now=T0 + 1) == CatalogDiff()


def limits_config_two_accounts() -> Config:
    return make_config({"p": provider(account("a"), account("b"))})


def test_an_account_with_a_failing_listing_stays_routable_when_stale() -> None:
    config = two_openai_accounts(models={"stale_after_s": 600})
    catalog = catalog_of(config, a=page("gpt-4o"), b=page("gpt-4o"))
    later = T0 + 10 * 3600
    catalog.refresh("a", FAILED, now=later)
    assert accounts_for(catalog, "gpt-4o") == ["a", "b"]
    assert catalog.status(now=later).stale_accounts == ("a", "b")


# --- refresh: diffs and odd inputs --------------------------------------------------


def test_the_first_listing_reports_every_model_added_and_updated() -> None:
    catalog = Catalog(two_openai_accounts(), now=T0)
    diff = catalog.refresh("a", page("gpt-4o", "o3"), now=T0)
    assert diff.added == {"a": ("gpt-4o", "o3")}
    assert diff.removed == {}
    assert diff.updated == (("openai", "gpt-4o"), ("openai", "o3"))


def test_a_first_listing_replaces_what_the_account_inherited() -> None:
    catalog = catalog_of(two_openai_accounts(), a=page("gpt-4o", "o3"))
    diff = catalog.refresh("b", page("gpt-4o"), now=T0 + 1)
    assert diff == CatalogDiff(removed={"b": ("o3",)})
    assert accounts_for(catalog, "o3") == ["a"]


def test_an_account_that_never_listed_serves_what_its_siblings_list() -> None:
    catalog = catalog_of(two_openai_accounts(), a=page("gpt-4o"))
    catalog.refresh("b", FAILED, now=T0 + 1)
    assert accounts_for(catalog, "gpt-4o") == ["a", "b"]


def test_an_account_that_listed_once_keeps_its_own_list_when_listing_fails() -> None:
    catalog = catalog_of(two_openai_accounts(), a=page("gpt-4o", "o3"), b=page("gpt-4o"))
    catalog.refresh("b", FAILED, now=T0 + 1)
    assert accounts_for(catalog, "o3") == ["a"]


def test_a_result_for_an_unknown_account_is_ignored() -> None:
    catalog = Catalog(two_openai_accounts(), now=T0)
    assert not catalog.refresh("gone", page("gpt-4o"), now=T0)
    assert not catalog.route("gpt-4o", OPENAI).known


def test_now_must_be_finite() -> None:
    catalog = Catalog(two_openai_accounts(), now=T0)
    with pytest.raises(ValueError, match="finite"):
        catalog.refresh("a", page("gpt-4o"), now=float("nan"))


# --- static models and DISABLED endpoints -------------------------------------------


NO_LISTING: dict[str, Any] = {
    "models_endpoint": {"method": "DISABLED"},
    "verify": {"require_models": False},
}


def static_config(**fields: Any) -> Config:
    return make_config(
        {
            "mm": provider(
                account("x"), account("y"), static_models=[{"id": "MiniMax-M2.5"}], **fields
            )
        }
    )


def test_static_models_are_served_before_any_listing() -> None:
    assert accounts_for(Catalog(static_config(), now=T0), "MiniMax-M2.5") == ["x", "y"]


def test_static_models_survive_listings_that_omit_them() -> None:
    catalog = catalog_of(static_config(), x=page("other"))
    catalog.refresh("x", page("other"), now=T0 + 1)
    catalog.refresh("x", page("other"), now=T0 + 2)
    assert accounts_for(catalog, "MiniMax-M2.5") == ["x", "y"]


def test_a_disabled_models_endpoint_serves_only_static_models() -> None:
    config = static_config(**NO_LISTING)
    catalog = Catalog(config, now=T0)
    assert not catalog.refresh("x", page("other"), now=T0)
    assert catalog.account_models("x") == {"MiniMax-M2.5"}
    assert not catalog.route("other", OPENAI).known


def test_a_disabled_models_endpoint_is_never_stale() -> None:
    config = static_config(**NO_LISTING)
    status = Catalog(config, now=T0).status(now=T0 + 10**6)
    assert not status.stale
    assert status.usable


# --- status ----------------------------------------------------------------------------


def test_a_fresh_catalog_is_not_stale() -> None:
    catalog = catalog_of(two_openai_accounts(), a=page("gpt-4o"))
    status = catalog.status(now=T0 + 60)
    assert status.usable
    assert not status.stale
    assert status.stale_accounts == ("b",)


def test_the_catalog_is_stale_when_no_listing_is_recent() -> None:
    catalog = catalog_of(two_openai_accounts(), a=page("gpt-4o"), b=page("gpt-4o"))
    assert catalog.status(now=T0 + 7200 + 1).stale


def test_a_catalog_with_nothing_routable_is_not_usable() -> None:
    assert not Catalog(two_openai_accounts(), now=T0).status(now=T0).usable


def test_status_counts_each_accounts_models() -> None:
    catalog = catalog_of(two_openai_accounts(), a=page("gpt-4o", "o3"))
    counts = {s.account_name: s.model_count for s in catalog.status(now=T0).accounts}
    assert counts == {"a": 2, "b": 2}  # b has not listed yet: it serves a's list


# --- snapshot / restore ---------------------------------------------------------------


def busy_catalog() -> Catalog:
    catalog = openai_and_router()
    catalog.refresh("r1", parsed(OPENROUTER_LIST), now=T0 + 10)
    catalog.refresh("o1", page("gpt-4o"), now=T0 + 20)  # o3 has one omission
    catalog.refresh("o2", FAILED, now=T0 + 30)
    return catalog


def test_a_snapshot_is_plain_json() -> None:
    snapshot = busy_catalog().snapshot()
    assert json.loads(json.dumps(snapshot)) == snapshot


def test_restore_rebuilds_the_same_catalog() -> None:
    original = busy_catalog()
    config = openai_and_router_config()
    restored = Catalog.restore(config, json.loads(json.dumps(original.snapshot())), now=T0 + 999)
    assert restored.render_models() == original.render_models()
    assert restored.snapshot() == original.snapshot()
    assert restored.metadata("anthropic/claude-sonnet-4", "openrouter") == original.metadata(
        "anthropic/claude-sonnet-4", "openrouter"
    )


def test_restore_keeps_the_omission_count() -> None:
    original = busy_catalog()
    restored = Catalog.restore(openai_and_router_config(), original.snapshot(), now=T0 + 999)
    diff = restored.refresh("o1", page("gpt-4o"), now=T0 + 1000)
    assert diff.removed == {"o1": ("o3",)}


def test_restore_drops_accounts_the_config_no_longer_has() -> None:
    snapshot = catalog_of(two_openai_accounts(), a=page("gpt-4o"), b=page("o3")).snapshot()
    config = make_config({"openai": provider(account("a"))})
    restored = Catalog.restore(config, snapshot, now=T0)
    assert not restored.route("o3", OPENAI).known
    assert accounts_for(restored, "gpt-4o") == ["a"]


def test_restore_drops_an_account_that_moved_provider() -> None:
    snapshot = catalog_of(two_openai_accounts(), a=page("gpt-4o")).snapshot()
    config = make_config({"other": provider(account("a"))})
    assert not Catalog.restore(config, snapshot, now=T0).route("gpt-4o", OPENAI).known


def test_restore_ignores_listed_models_once_the_endpoint_is_disabled() -> None:
    snapshot = catalog_of(static_config(), x=page("other")).snapshot()
    config = static_config(**NO_LISTING)
    assert Catalog.restore(config, snapshot, now=T0).account_models("x") == {"MiniMax-M2.5"}


@pytest.mark.parametrize(
    "snapshot",
    [
        {},
        {"version": 99, "accounts": {"a": {"provider_id": "openai", "models": {"x": 0}}}},
        {"version": 1, "accounts": [], "models": {}},
        {"version": 1, "models": [{"provider_id": ["openai"], "model_id": {"x": 1}}]},
        {"version": 1, "accounts": {"a": "junk", "b": {"provider_id": "openai", "models": [1]}}},
        {
            "version": 1,
            "accounts": {
                "a": {"provider_id": "openai", "models": {"": 0, "x": 7, "y": True, "z": -1}}
            },
        },
        {
            "version": 1,
            "models": [
                None,
                {"provider_id": 1},
                {"provider_id": "openai", "model_id": "q", "metadata": "x"},
            ],
        },
        {
            "version": 1,
            "accounts": {
                "a": {
                    "provider_id": "openai",
                    "last_success": "yesterday",
                    "consecutive_failures": -3,
                }
            },
        },
    ],
)
def test_restore_survives_malformed_snapshots(snapshot: dict[str, Any]) -> None:
    restored = Catalog.restore(two_openai_accounts(), snapshot, now=T0)
    assert rendered(restored) == {"object": "list", "data": []}


def test_restore_keeps_first_seen_times() -> None:
    original = catalog_of(two_openai_accounts(), a=page("gpt-4o"))
    restored = Catalog.restore(two_openai_accounts(), original.snapshot(), now=T0 + 10**6)
    (entry,) = rendered(restored)["data"]
    assert entry["created"] == int(T0)


# --- properties -----------------------------------------------------------------------

UNIVERSE = ["m0", "m1", "glm-2", "claude-x"]  # the last two resolve on a two-protocol provider
Step = tuple[str, frozenset[str], bool]  # ("list", models, complete) | ("fail" | "empty", ...)
steps: st.SearchStrategy[list[Step]] = st.lists(
    st.one_of(
        st.tuples(
            st.just("list"), st.frozensets(st.sampled_from(UNIVERSE), min_size=1), st.booleans()
        ),
        st.tuples(st.sampled_from(["fail", "empty"]), st.just(frozenset[str]()), st.just(True)),
    ),
    max_size=12,
)


def apply_step(catalog: Catalog, account: str, step: Step, now: float) -> None:
    kind, models, complete = step
    if kind == "fail":
        catalog.refresh(account, FAILED, now=now)
    elif kind == "empty":
        catalog.refresh(account, page(), now=now)
    else:
        catalog.refresh(account, page(*sorted(models), has_more=not complete), now=now)


def naive_supported(history: Sequence[Step]) -> set[str]:
    """The two-strikes rule, spelled out: omissions since the last listing naming it."""
    omissions: dict[str, int] = {}
    for kind, models, complete in history:
        if kind != "list":
            continue
        for model in models:
            omissions[model] = 0
        if complete:
            for model in [m for m in omissions if m not in models]:
                omissions[model] += 1
                if omissions[model] >= 2:
                    del omissions[model]
    return set(omissions)


@given(steps)
def test_refresh_sequences_follow_the_two_strikes_rule(history: list[Step]) -> None:
    catalog = Catalog(two_openai_accounts(), now=T0)
    for index, step in enumerate(history):
        apply_step(catalog, "a", step, T0 + index)
        assert catalog.account_models("a") == naive_supported(history[: index + 1])


@given(steps)
def test_a_model_never_vanishes_after_a_single_omission(history: list[Step]) -> None:
    catalog = Catalog(two_openai_accounts(), now=T0)
    before: frozenset[str] = frozenset()
    for index, step in enumerate(history):
        apply_step(catalog, "a", step, T0 + index)
        after = catalog.account_models("a")
        for model in before - after:
            listings = [s for s in history[: index + 1] if s[0] == "list"]
            last_named = max(i for i, s in enumerate(listings) if model in s[1])
            omitted_by = [s for s in listings[last_named + 1 :] if s[2]]
            assert len(omitted_by) >= 2
        before = after


@given(steps)
def test_one_accounts_refreshes_never_change_a_siblings_models(history: list[Step]) -> None:
    catalog = catalog_of(two_openai_accounts(), b=page("m0", "m1"))
    for index, step in enumerate(history):
        apply_step(catalog, "a", step, T0 + index)
        assert catalog.account_models("b") == {"m0", "m1"}
        assert set(accounts_for(catalog, "m0")) >= {"b"}


MIXED_POOL = make_config(
    {
        "openai": provider(account("a"), account("b"), static_models=[{"id": "m1"}]),
        "go": provider(account("c"), protocols=BOTH, routing_priority=2),
    },
)
pool_steps = st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), steps), max_size=4)


@given(pool_steps)
def test_incremental_indexes_match_a_full_rebuild(history: list[tuple[str, list[Step]]]) -> None:
    catalog = Catalog(MIXED_POOL, now=T0)
    for index, (name, account_steps) in enumerate(history):
        for step in account_steps:
            apply_step(catalog, name, step, T0 + index)
        rebuilt = Catalog.restore(MIXED_POOL, catalog.snapshot(), now=T0 + index)
        for mode in ExposeMode:
            assert catalog.render_models(mode=mode) == rebuilt.render_models(mode=mode)
        for model in UNIVERSE:
            for protocol in Protocol:
                assert catalog.route(model, protocol) == rebuilt.route(model, protocol)


limit_values = st.none() | st.integers(min_value=1, max_value=2_000_000)


@given(st.lists(st.tuples(limit_values, limit_values, limit_values), min_size=1, max_size=4))
def test_collapsed_limits_are_the_minimum_of_the_providers_limits(
    per_provider: list[tuple[int | None, int | None, int | None]],
) -> None:
    providers = {}
    for index, (context, max_in, max_out) in enumerate(per_provider):
        static: dict[str, Any] = {"id": "m"}
        if context is not None:
            static["max_context_tokens"] = context
        if max_in is not None:
            static["max_input_tokens"] = min(max_in, context or max_in)
        if max_out is not None:
            static["max_output_tokens"] = min(max_out, context or max_out)
        providers[f"p{index}"] = provider(account(f"a{index}"), static_models=[static])
    catalog = Catalog(make_config(providers), now=T0)
    (entry,) = catalog.exposed_models(collapse=True)

    def smallest(field: str) -> int | None:
        known = [getattr(catalog.limits("m", p), field) for p in providers]
        values = [v for v in known if v is not None]
        return min(values) if values else None

    assert entry.limits == TokenLimits(
        context=smallest("context"), input=smallest("input"), output=smallest("output")
    )


# --- performance shape ------------------------------------------------------------------


def test_a_large_pool_builds_and_answers_lookups() -> None:
    models = [f"model-{i}" for i in range(300)]
    providers = {
        f"p{p}": provider(*(account(f"acct-{p}-{a}") for a in range(10))) for p in range(10)
    }
    catalog = Catalog(make_config(providers), now=T0)
    listing = page(*models)
    for p in range(10):
        for a in range(10):
            catalog.refresh(f"acct-{p}-{a}", listing, now=T0)
    lookup = catalog.route("model-150", OPENAI)
    assert len(lookup.candidates) == 100
    assert len(catalog.exposed_models()) == 3000
    assert len(catalog.exposed_models(collapse=True)) == 300
