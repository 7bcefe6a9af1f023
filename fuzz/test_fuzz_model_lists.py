"""Fuzzing the model-list parser (and the catalog behind it) from realistic bodies outwards.

Four layers, each starting from bodies shaped like what providers send
(OpenAI, Anthropic pages, OpenRouter, Groq, Ollama), so mutations land
inside rows rather than being rejected at the top: byte edits, JSON token
splices (huge numbers, NaN, lone surrogates, long strings), value swaps
deep in the parsed document, and random page sequences for pagination.
The invariant everywhere: `parse_model_list` gives a `ModelListPage` or a
`ModelListFailure`, never an exception; what it gives is bounded and
JSON-safe; and a catalog fed with it still renders `/v1/models` and
survives a snapshot round trip.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from eggpool.core._catalog_state import plain
from eggpool.core._model_lists import (
    MAX_METADATA_KEYS,
    MAX_PAGES,
    MAX_TOKEN_LIMIT,
    ModelListFailure,
    ModelListPage,
    combine_pages,
    next_page_cursor,
    parse_model_list,
    valid_model_id,
)
from eggpool.core.catalog import Catalog
from eggpool.core.config import parse_config
from tests.helpers.documents import leaves

SEEDS = [
    b'{"object":"list","data":[{"id":"gpt-4o","object":"model","created":1715367049,'
    b'"owned_by":"system"},{"id":"o3-mini","object":"model","created":1737146383,'
    b'"owned_by":"system"}]}',
    b'{"data":[{"type":"model","id":"claude-sonnet-4-20250514","display_name":"Claude Sonnet 4",'
    b'"created_at":"2025-05-22T00:00:00Z"}],"has_more":true,'
    b'"first_id":"claude-sonnet-4-20250514","last_id":"claude-sonnet-4-20250514"}',
    b'{"data":[{"id":"anthropic/claude-sonnet-4","name":"Anthropic: Claude Sonnet 4",'
    b'"created":1747930371,"context_length":200000,"architecture":{"modality":"text->text",'
    b'"input_modalities":["text","image"],"tokenizer":"Claude","instruct_type":null},'
    b'"pricing":{"prompt":"0.000003","completion":"0.000015","input_cache_read":"0.0000003"},'
    b'"top_provider":{"context_length":200000,"max_completion_tokens":64000,'
    b'"is_moderated":true},"per_request_limits":null,'
    b'"supported_parameters":["tools","max_tokens"]}]}',
    b'{"object":"list","data":[{"id":"meta-llama/llama-4-scout-17b-16e-instruct",'
    b'"object":"model","created":1743874824,"owned_by":"Meta","active":true,'
    b'"context_window":131072,"public_apps":null,"max_completion_tokens":8192},'
    b'{"id":"whisper-large-v3","object":"model","active":false,"context_window":448}]}',
    b'{"object":"list","data":[{"id":"llama3.2:latest","object":"model","created":1733159130,'
    b'"owned_by":"library"},{"id":"glm-5","object":"model","api_type":"openai"}]}',
]
TOKENS = [
    b"null", b"true", b"0", b"-1", b"1e309", b"-1e309", b"NaN", b"Infinity", b"1.5",
    b"99999999999999999999999", b"[]", b"{}", b'""', b'"\\ud800"', b'"\\u0000"',
    b'"' + b"x" * 3000 + b'"', b'[{"id":"x"}]', b'{"id":"y"}', b'"anthropic"', b'"128000"',
    b'"\xc3\xa9\xe6\xa8\xa1"', b"\xff",
]  # fmt: skip
CONFIG = parse_config(
    {
        "providers": {
            "openai": {
                "base_url": "https://api.example.com/v1",
                "accounts": [{"name": "a", "api_key": "sk-live-0123456789abcdef"}],
            },
            "go": {
                "base_url": "https://opencode.example.com/v1",
                "protocols": ["openai", "anthropic"],
                "accounts": [{"name": "b", "api_key": "sk-live-0123456789abcdef"}],
            },
        },
        "models": {"collapse_models": True},
    },
    {},
)


def _check(data: bytes) -> None:
    result = parse_model_list(data)
    if isinstance(result, ModelListFailure):
        assert result.reason
        return
    assert isinstance(result, ModelListPage)
    model_ids = [model.id for model in result.models]
    assert len(set(model_ids)) == len(model_ids)
    for model in result.models:
        assert valid_model_id(model.id)
        assert len(model.metadata) <= MAX_METADATA_KEYS
        json.dumps(plain(model.metadata), ensure_ascii=False, allow_nan=False).encode()
        for limit in (model.limits.context, model.limits.input, model.limits.output):
            assert limit is None or 0 < limit <= MAX_TOKEN_LIMIT
    _through_the_catalog(result)


def _through_the_catalog(result: ModelListPage) -> None:
    catalog = Catalog(CONFIG, now=1.0)
    catalog.refresh("a", result, now=2.0)
    catalog.refresh("b", result, now=3.0)
    for collapse in (False, True):
        document = json.loads(catalog.render_models(collapse=collapse))
        assert isinstance(document["data"], list)
    snapshot = json.loads(json.dumps(catalog.snapshot(), allow_nan=False))
    restored = Catalog.restore(CONFIG, snapshot, now=4.0)
    assert restored.render_models() == catalog.render_models()


edits = st.lists(
    st.tuples(
        st.sampled_from(["flip", "insert", "delete", "truncate"]),
        st.integers(min_value=0, max_value=10_000),
        st.integers(min_value=0, max_value=255),
    ),
    max_size=8,
)


@given(st.sampled_from(SEEDS), edits)
def test_byte_edits_of_real_bodies_parse_or_fail_cleanly(
    seed: bytes, ops: list[tuple[str, int, int]]
) -> None:
    data = bytearray(seed)
    for op, position, value in ops:
        index = position % (len(data) or 1)
        if op == "flip" and data:
            data[index] ^= 1 << (value % 8)
        elif op == "insert":
            data.insert(index, value)
        elif op == "delete" and data:
            del data[index]
        elif op == "truncate":
            del data[index:]
    _check(bytes(data))


@given(
    st.sampled_from(SEEDS),
    st.lists(st.tuples(st.integers(min_value=0), st.sampled_from(TOKENS)), min_size=1, max_size=4),
)
def test_token_splices_into_real_bodies_parse_or_fail_cleanly(
    seed: bytes, splices: list[tuple[int, bytes]]
) -> None:
    data = seed
    for position, token in splices:
        # Replace the value after a random ':' or inside a random '[' with the token.
        marks = [i for i, byte in enumerate(data) if byte in b":[,"]
        if not marks:
            break
        start = marks[position % len(marks)] + 1
        end = start
        while end < len(data) and data[end] not in b",}]":
            end += 1
        data = data[:start] + token + data[end:]
    _check(data)


DOCUMENTS = [json.loads(seed) for seed in SEEDS]
PATHS = [(n, path) for n, document in enumerate(DOCUMENTS) for path in leaves(document)]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)


@given(st.lists(st.tuples(st.sampled_from(PATHS), json_values), min_size=1, max_size=5))
def test_value_swaps_deep_in_real_bodies_parse_or_fail_cleanly(
    swaps: list[tuple[tuple[int, tuple[Any, ...]], Any]],
) -> None:
    documents = copy.deepcopy(DOCUMENTS)
    (first, _), _ = swaps[0]
    for (n, path), value in swaps:
        parent: Any = documents[n]
        try:
            for key in path[:-1]:
                parent = parent[key]
            parent[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue
    _check(json.dumps(documents[first]).encode())


cursor_ids = st.sampled_from(["m1", "m2", "m3", None])
pages = st.builds(
    lambda more, last, first: ModelListPage(has_more=more, last_id=last, first_id=first),
    st.booleans(),
    cursor_ids,
    cursor_ids,
)


@given(st.lists(pages, min_size=1, max_size=8))
def test_following_cursors_always_terminates(provider_pages: list[ModelListPage]) -> None:
    """A provider answering with `provider_pages` over and over cannot keep the shell paging."""
    fetched: list[ModelListPage] = []
    for index in range(2 * MAX_PAGES):
        fetched.append(provider_pages[index % len(provider_pages)])
        if next_page_cursor(fetched) is None:
            break
    assert len(fetched) <= MAX_PAGES
    combined = combine_pages(fetched)
    assert combined.has_more == fetched[-1].has_more
