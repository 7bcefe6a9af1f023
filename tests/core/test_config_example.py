"""The bundled example config and docs/configuration.md say what the parser does.

The example documents defaults as commented lines (`# port = 11300`).
Uncommenting every such line must give a valid file with the very same
configuration, so a documented default can never drift from the code. And
every key the parser can read must appear in the example and in the docs.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import attrs
import pytest

from eggpool.cli._template import example_config_text
from eggpool.core._settings import Problems
from eggpool.core.config import Config, parse_config, read_config
from tests.helpers.example_config import example_env, uncomment_defaults

ROOT = Path(__file__).resolve().parents[2]
DOCS = (ROOT / "docs" / "configuration.md").read_text("utf-8")
EXAMPLE = example_config_text()


def normalized_asked_paths(document: dict[str, Any], env: dict[str, str]) -> set[str]:
    problems = Problems()
    read_config(document, env, problems)
    paths = set()
    for asked in problems.asked:
        path = re.sub(r"\[\d+\]", "[]", asked)
        path = re.sub(r'^(providers|proxies|model_overrides)\.("[^"]*"|[^.]+)', r"\1.*", path)
        path = re.sub(r'\.model_overrides\.("[^"]*"|[^.]+)', ".model_overrides.*", path)
        paths.add(path)
    return paths


# One of every structure the parser reads, so that it asks for every key it knows.
KITCHEN_SINK: dict[str, Any] = {
    "proxies": {"p": {"url": "socks5://127.0.0.1:1080"}},
    "pricing": {"aliases": [{"model": "m", "external_id": "x/m"}]},
    "model_overrides": {"m": {"max_context_tokens": 10}},
    "network": {"dns_cache": {}},
    "providers": {
        "x": {
            "base_url": "https://api.example.com/v1",
            "headers": [{"name": "x-a", "value": "b"}],
            "models_endpoint": {"method": "POST", "body": {}, "query": {}},
            "static_models": [{"id": "m", "source_metadata": {}}],
            "verify": {},
            "auth": {},
            "model_overrides": {"m": {}},
            "accounts": [{"name": "a", "api_key": "sk-0123456789abcdef", "proxy": "p"}],
        }
    },
}
LEGACY: dict[str, Any] = {"accounts": [{"name": "a", "api_key": "sk-0123456789abcdef"}]}
ALL_PATHS = normalized_asked_paths(KITCHEN_SINK, {}) | normalized_asked_paths(LEGACY, {})
ALL_KEYS = sorted({re.split(r"[.\[\]]+", path.rstrip("[]"))[-1] for path in ALL_PATHS} - {"*"})


def sections(config: Config) -> dict[str, object]:
    return {f.name: getattr(config, f.name) for f in attrs.fields(Config) if f.name != "warnings"}


def test_example_is_valid_without_warnings() -> None:
    config = parse_config(tomllib.loads(EXAMPLE), example_env(EXAMPLE))
    assert [str(w) for w in config.warnings] == []


def test_example_uses_no_inline_account_keys() -> None:
    assert not re.search(r"^\s*api_key\s*=", EXAMPLE, re.M)


def test_uncommented_defaults_change_nothing() -> None:
    env = example_env(EXAMPLE)
    plain = parse_config(tomllib.loads(EXAMPLE), env)
    expanded_text = uncomment_defaults(EXAMPLE)
    assert expanded_text != EXAMPLE + "\n", "the example documents no defaults"
    expanded = parse_config(tomllib.loads(expanded_text), env)
    assert [str(w) for w in expanded.warnings] == []
    assert sections(expanded) == sections(plain)


def test_the_parser_asks_for_a_plausible_number_of_keys() -> None:
    assert len(ALL_KEYS) > 120


@pytest.mark.parametrize("key", ALL_KEYS)
def test_every_key_appears_in_the_example(key: str) -> None:
    k = re.escape(key)
    shown = rf'^[#\s]*"?{k}"?\s*=|[{{,]\s*{k}\s*=|[\[.]{k}[\].]'
    assert re.search(shown, EXAMPLE, re.M), f"{key} is not shown in config.example.toml"


@pytest.mark.parametrize("key", ALL_KEYS)
def test_every_key_is_documented(key: str) -> None:
    assert f"`{key}`" in DOCS, f"{key} is not documented in docs/configuration.md"
