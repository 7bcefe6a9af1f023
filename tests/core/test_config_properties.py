"""Properties of parse_config that must hold for every input, not just the ones we thought of."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eggpool.core.config import Config, ConfigError, parse_config

# Key names the parser knows, so generated documents reach past the top level.
KNOWN_KEYS = [
    "server", "host", "port", "api_key", "api_key_env", "upstream", "base_url", "database",
    "path", "models", "routing", "limits", "five_hour_microdollars", "pricing", "catalogs",
    "openrouter", "aliases", "model", "external_id", "dashboard", "security", "metrics",
    "backup", "network", "dns_cache", "proxies", "url", "url_env", "providers", "accounts",
    "name", "enabled", "weight", "proxy", "proxy_url", "proxy_url_env", "protocols",
    "openai_path", "auth", "mode", "header", "scheme", "headers", "value", "value_env",
    "models_endpoint", "method", "body", "query", "static_models", "id", "protocol",
    "verify", "model_overrides", "max_context_tokens", "input_price_per_1k",
    "routing_priority", "max_keepalive", "max_connections", "flush_interval_s",
]  # fmt: skip

scalars = st.one_of(
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=24),
    st.sampled_from(["openai", "anthropic", "http://h:1", "socks5://u:p@h:1", "5m", "$1.5"]),
    st.datetimes(),
    st.dates(),
    st.times(),
    st.none(),
)
keys = st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=10))
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=40,
)
documents = st.dictionaries(keys, values, max_size=8)
environments = st.dictionaries(
    st.sampled_from(["HOME", "SERVER_API_KEY", "K", "XDG_DATA_HOME"]), st.text(max_size=20)
)


@given(documents, environments)
def test_any_mapping_parses_or_raises_config_error(
    doc: Mapping[str, Any], env: dict[str, str]
) -> None:
    try:
        result: Config | ConfigError = parse_config(doc, env)
    except ConfigError as exc:
        result = exc
    if isinstance(result, ConfigError):
        assert result.problems, "a ConfigError always names at least one problem"
    else:
        assert isinstance(result, Config)


def _provider(**account: Any) -> dict[str, Any]:
    return {
        "providers": {
            "p": {
                "base_url": "https://api.example.com/v1",
                "accounts": [{"name": "a", **account}],
            }
        }
    }


secret_values = st.from_regex(r"[A-Za-z0-9]{16,32}", fullmatch=True)


@given(secret_values, st.sampled_from(["bad url", 70000, "x"]))
def test_problems_never_echo_an_account_key(secret: str, bad_port: object) -> None:
    doc = _provider(api_key=secret) | {"server": {"port": bad_port}}
    with pytest.raises(ConfigError) as caught:
        parse_config(doc, {})
    assert secret not in str(caught.value)


@given(secret_values)
def test_a_config_never_shows_its_secrets(secret: str) -> None:
    doc = _provider(api_key=secret, proxy_url=f"socks5://user:{secret}@127.0.0.1:1080")
    doc["server"] = {"api_key": secret}
    config = parse_config(doc, {})
    assert config.server.api_key is not None
    assert config.server.api_key.reveal() == secret
    assert secret not in repr(config)
    assert secret not in str(config.accounts[0].proxy)


@given(secret_values)
def test_invalid_secret_shapes_are_reported_without_the_secret(secret: str) -> None:
    doc = _provider(api_key=f"Bearer {secret}", proxy_url=f"gopher://u:{secret}@h:1")
    doc["server"] = {"api_key": secret + "!"}
    with pytest.raises(ConfigError) as caught:
        parse_config(doc, {})
    assert secret not in str(caught.value)
    assert {p.path for p in caught.value.problems} == {
        "providers.p.accounts[0].api_key",
        "providers.p.accounts[0].proxy_url",
        "server.api_key",
    }


@given(st.integers(min_value=0, max_value=10**9), st.integers(min_value=0, max_value=99))
def test_dollar_strings_convert_exactly_to_microdollars(dollars: int, cents: int) -> None:
    doc = {"limits": {"weekly_microdollars": f"${dollars}.{cents:02d}"}}
    assert parse_config(doc, {}).limits.weekly_microdollars == dollars * 1_000_000 + cents * 10_000


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["s", "m", "h", "d", "w"]))
def test_duration_strings_scale_by_their_unit(amount: int, unit: str) -> None:
    factor = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]
    doc = {"models": {"refresh_interval_s": f"{amount}{unit}"}}
    assert parse_config(doc, {}).models.refresh_interval_s == amount * factor


@given(st.datetimes() | st.dates() | st.times())
def test_toml_dates_where_a_number_belongs_are_rejected_by_key(value: dt.date | dt.time) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"server": {"port": value}}, {})
    assert [p.path for p in caught.value.problems] == ["server.port"]
