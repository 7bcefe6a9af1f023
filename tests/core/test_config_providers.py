"""parse_config: providers, accounts, proxies, headers, auth, models, overrides, legacy accounts.

Each rejection test asserts the key path a user would be pointed at and a
fragment of the message they would read. The sections outside providers
are covered by test_config.py.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from typing import Any

import attrs
import pytest

from eggpool.core.config import Config, ConfigError, ConfigProblem, parse_config

KEY = "sk-live-0123456789abcdef"


def account(name: str = "main", **fields: Any) -> dict[str, Any]:
    """An account table; an inline key unless the fields give another source."""
    if not {"api_key", "api_key_env"} & fields.keys():
        fields["api_key"] = KEY
    return {"name": name, **fields}


def provider(*accounts: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A valid provider table (one default account unless accounts are given)."""
    return {
        "base_url": "https://api.example.com/v1",
        "accounts": list(accounts) if accounts else [account()],
        **fields,
    }


def parse(mapping: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Config:
    return parse_config(mapping, env or {})


def problems_of(
    mapping: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> tuple[ConfigProblem, ...]:
    with pytest.raises(ConfigError) as caught:
        parse_config(mapping, env or {})
    return caught.value.problems


def only_problem(
    mapping: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> ConfigProblem:
    """The single problem a config has (the test fails if it has more, or none)."""
    found = problems_of(mapping, env)
    assert len(found) == 1, [str(p) for p in found]
    return found[0]


def only_provider_problem(
    env: Mapping[str, str] | None = None, **provider_fields: Any
) -> ConfigProblem:
    """The single problem of a config with one provider `openai` built from the fields."""
    return only_problem({"providers": {"openai": provider(**provider_fields)}}, env)


def only_account_problem(env: Mapping[str, str] | None = None, **fields: Any) -> ConfigProblem:
    """The single problem of a config whose only account is built from the fields."""
    return only_problem({"providers": {"openai": provider(account(**fields))}}, env)


def assert_problem(problem: ConfigProblem, path: str, fragment: str) -> None:
    assert problem.path == path, str(problem)
    assert fragment in problem.message, str(problem)


def warnings_at(config: Config, path: str) -> list[str]:
    return [w.message for w in config.warnings if w.path == path]


# --- a config in the reference's format ----------------------------------------------

REFERENCE_TOML = """
[server]
host = "127.0.0.1"
port = 11300

[limits]
five_hour_microdollars = 12000000
weekly_microdollars = 30000000
monthly_microdollars = 60000000

[proxies.corp]
url = "socks5://alice:proxy-pass-0123456789@10.0.0.5:1080"

[model_overrides."glm-4.6"]
max_context_tokens = 200000
max_output_tokens = 32000
input_price_per_1k = 0.0006

[providers.opencode-go]
base_url = "https://opencode.ai/zen/go/v1"
protocols = ["openai", "anthropic"]
read_timeout_s = 600
connect_timeout_s = "2.5s"

[[providers.opencode-go.accounts]]
name = "go-1"
api_key = "sk-go-inline-0123456789abcdef"
proxy = "corp"

[[providers.opencode-go.accounts]]
name = "go-2"
api_key_env = "OPENCODE_GO_KEY_2"
weight = 2.0
five_hour_offset_microdollars = 1500000
weekly_offset_microdollars = "$2.50"

[providers.openrouter]
base_url = "https://openrouter.ai/api/v1/"
routing_priority = 1

[[providers.openrouter.headers]]
name = "HTTP-Referer"
value = "https://pool.example.com"

[[providers.openrouter.headers]]
name = "X-Title"
value_env = "OPENROUTER_TITLE"

[providers.openrouter.model_overrides."glm-4.6"]
max_output_tokens = 16000
output_price_per_1k = 0.0022

[[providers.openrouter.accounts]]
name = "or-1"
api_key_env = "OPENROUTER_KEY"
proxy_url = "http://proxy.internal:3128"

[providers.anthropic]
base_url = "https://api.anthropic.com/v1"
protocols = ["anthropic"]

[providers.anthropic.auth]
mode = "api_key"
header = "x-api-key"

[[providers.anthropic.headers]]
name = "anthropic-version"
value = "2023-06-01"

[[providers.anthropic.accounts]]
name = "claude"
api_key_env = "ANTHROPIC_KEY"
"""

REFERENCE_ENV = {
    "OPENCODE_GO_KEY_2": "sk-go-env-0123456789abcdef",
    "OPENROUTER_KEY": "sk-or-v1-0123456789abcdef",
    "OPENROUTER_TITLE": "EggPool",
    "ANTHROPIC_KEY": "sk-ant-api03-0123456789abcdef",
}
REFERENCE_SECRETS = [
    "sk-go-inline-0123456789abcdef",
    "proxy-pass-0123456789",
    "sk-go-env-0123456789abcdef",
    "sk-or-v1-0123456789abcdef",
    "sk-ant-api03-0123456789abcdef",
]


@pytest.fixture(scope="module")
def reference() -> Config:
    return parse_config(tomllib.loads(REFERENCE_TOML), REFERENCE_ENV)


def test_reference_format_parses_without_warnings(reference: Config) -> None:
    assert [str(w) for w in reference.warnings] == []


def test_reference_format_keeps_provider_order(reference: Config) -> None:
    assert list(reference.providers) == ["opencode-go", "openrouter", "anthropic"]


def test_reference_format_lists_accounts_in_file_order(reference: Config) -> None:
    assert [(a.provider_id, a.name) for a in reference.accounts] == [
        ("opencode-go", "go-1"),
        ("opencode-go", "go-2"),
        ("openrouter", "or-1"),
        ("anthropic", "claude"),
    ]


def test_reference_format_resolves_inline_and_env_keys(reference: Config) -> None:
    keys = {a.name: (a.api_key.reveal() if a.api_key else None) for a in reference.accounts}
    assert keys == {
        "go-1": "sk-go-inline-0123456789abcdef",
        "go-2": "sk-go-env-0123456789abcdef",
        "or-1": "sk-or-v1-0123456789abcdef",
        "claude": "sk-ant-api03-0123456789abcdef",
    }


def test_reference_format_reports_key_sources(reference: Config) -> None:
    assert [a.key_source for a in reference.accounts] == [
        "inline",
        "env OPENCODE_GO_KEY_2",
        "env OPENROUTER_KEY",
        "env ANTHROPIC_KEY",
    ]


def test_reference_format_never_shows_a_secret_in_repr_or_str(reference: Config) -> None:
    shown = repr(reference) + str(reference) + "".join(str(a) for a in reference.accounts)
    assert [secret for secret in REFERENCE_SECRETS if secret in shown] == []


def test_reference_format_resolves_named_proxy(reference: Config) -> None:
    go_1 = reference.providers["opencode-go"].accounts[0]
    assert go_1.proxy is not None
    assert go_1.proxy.password is not None
    assert (
        go_1.proxy_name,
        go_1.proxy.display(),
        go_1.proxy.password.reveal(),
    ) == ("corp", "socks5://alice:****@10.0.0.5:1080", "proxy-pass-0123456789")


def test_reference_format_parses_inline_proxy_url(reference: Config) -> None:
    or_1 = reference.providers["openrouter"].accounts[0]
    assert or_1.proxy is not None
    assert (or_1.proxy_name, or_1.proxy.display()) == (None, "http://proxy.internal:3128")


def test_reference_format_durations_are_float_seconds(reference: Config) -> None:
    http = reference.providers["opencode-go"].http
    assert (http.read_timeout_s, http.connect_timeout_s) == (600.0, 2.5)
    assert type(http.read_timeout_s) is float


def test_reference_format_money_is_int_microdollars(reference: Config) -> None:
    offsets = reference.providers["opencode-go"].accounts[1].offsets
    assert (offsets.five_hour, offsets.weekly, offsets.monthly) == (1_500_000, 2_500_000, 0)
    assert type(offsets.weekly) is int


def test_reference_format_weights(reference: Config) -> None:
    assert [a.weight for a in reference.accounts] == [1.0, 2.0, 1.0, 1.0]


def test_reference_format_global_model_override(reference: Config) -> None:
    override = reference.model_overrides["glm-4.6"]
    assert (
        override.max_context_tokens,
        override.max_output_tokens,
        override.input_per_million,
    ) == (200_000, 32_000, 600_000)


def test_reference_format_provider_model_override_is_kept_separately(reference: Config) -> None:
    override = reference.providers["openrouter"].model_overrides["glm-4.6"]
    assert (
        override.max_context_tokens,
        override.max_output_tokens,
        override.output_per_million,
    ) == (None, 16_000, 2_200_000)


def test_reference_format_provider_without_overrides_has_none(reference: Config) -> None:
    assert reference.providers["opencode-go"].model_overrides == {}


def test_reference_format_static_headers(reference: Config) -> None:
    headers = reference.providers["openrouter"].headers
    assert [(h.name, h.value.reveal(), h.from_env) for h in headers] == [
        ("HTTP-Referer", "https://pool.example.com", None),
        ("X-Title", "EggPool", "OPENROUTER_TITLE"),
    ]


def test_reference_format_base_url_loses_trailing_slash(reference: Config) -> None:
    assert reference.providers["openrouter"].base_url == "https://openrouter.ai/api/v1"


def test_reference_format_auth_and_protocols(reference: Config) -> None:
    anthropic = reference.providers["anthropic"]
    assert (anthropic.protocols, anthropic.auth.mode, anthropic.auth.header) == (
        ("anthropic",),
        "api_key",
        "x-api-key",
    )


def test_reference_format_routing_priority(reference: Config) -> None:
    assert [p.routing_priority for p in reference.providers.values()] == [0, 1, 0]


# --- provider and account defaults ---------------------------------------------------


def test_provider_defaults_match_reference() -> None:
    openai = parse({"providers": {"openai": provider()}}).providers["openai"]
    declared = attrs.asdict(openai, filter=lambda a, _: a.name not in {"base_url", "accounts"})
    assert declared == {
        "id": "openai",
        "protocols": ("openai",),
        "openai_path": "/chat/completions",
        "anthropic_path": "/messages",
        "http": {
            "connect_timeout_s": 5,
            "read_timeout_s": 300,
            "write_timeout_s": 30,
            "pool_timeout_s": 30,
            "max_connections": 100,
            "max_keepalive": 100,  # the reference keeps 20; ours follows max_connections
            "keepalive_timeout_s": 30,
        },
        "routing_priority": 0,
        "auth": {"mode": "bearer", "header": "Authorization", "scheme": "Bearer"},
        "headers": (),
        "models_endpoint": {
            "method": "GET",
            "path": "/models",
            "body": None,
            "query": {},
            "required": True,
        },
        "static_models": (),
        "verify": {"probe_model": None, "probe_protocol": "openai", "require_models": True},
        "model_overrides": {},
        "legacy": False,
    }


def test_account_defaults_match_reference() -> None:
    main = parse({"providers": {"openai": provider()}}).accounts[0]
    assert attrs.asdict(main, filter=lambda a, _: a.name != "api_key") == {
        "name": "main",
        "provider_id": "openai",
        "key_source": "inline",
        "enabled": True,
        "weight": 1.0,
        "offsets": {"five_hour": 0, "weekly": 0, "monthly": 0},
        "proxy": None,
        "proxy_name": None,
    }


# --- providers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider_id", "path"),
    [
        ("open_ai", "providers.open_ai"),
        ("-openai", "providers.-openai"),
        ("open--ai", "providers.open--ai"),
        ("open ai", 'providers."open ai"'),
        ("open.ai", 'providers."open.ai"'),
    ],
)
def test_provider_id_with_invalid_characters_is_rejected(provider_id: str, path: str) -> None:
    problem = only_problem({"providers": {provider_id: provider()}})
    assert_problem(problem, path, "provider id must be letters and digits")


def test_provider_id_with_inner_hyphens_is_accepted() -> None:
    config = parse({"providers": {"opencode-go-2": provider()}})
    assert list(config.providers) == ["opencode-go-2"]


def test_id_key_different_from_table_name_is_rejected() -> None:
    problem = only_provider_problem(id="oai")
    assert str(problem) == "providers.openai.id: must equal the table name 'openai', got 'oai'"


def test_id_key_equal_to_table_name_is_accepted() -> None:
    config = parse({"providers": {"openai": provider(id="openai")}})
    assert config.providers["openai"].id == "openai"


def test_provider_without_base_url_is_rejected() -> None:
    problem = only_problem({"providers": {"openai": {"accounts": [account()]}}})
    assert str(problem) == "providers.openai.base_url: is required"


@pytest.mark.parametrize(
    ("base_url", "fragment"),
    [
        ("api.example.com/v1", "expected an absolute http:// or https:// URL"),
        ("ftp://api.example.com/v1", "expected an absolute http:// or https:// URL"),
        ("https://user:pw@api.example.com/v1", "must not contain credentials"),
        ("https://api.example.com/v1?key=1", "must not contain a query string or fragment"),
        ("https://api.example.com/v1#top", "must not contain a query string or fragment"),
        ("https://api.example.com/ v1", "must not contain whitespace"),
        ("https://api.example.com:99999/v1", "has an invalid port"),
        ("https://api.example.com:port/v1", "has an invalid port"),
        ("https:///v1", "has no host"),
        ("", "must not be empty"),
    ],
    ids=[
        "no-scheme",
        "ftp",
        "credentials",
        "query",
        "fragment",
        "whitespace",
        "port-out-of-range",
        "port-not-a-number",
        "no-host",
        "empty",
    ],
)
def test_bad_base_url_is_rejected(base_url: str, fragment: str) -> None:
    problems = problems_of({"providers": {"openai": provider(base_url=base_url)}})
    assert [p.path for p in problems if fragment in p.message] == ["providers.openai.base_url"]


def test_base_url_credentials_are_not_echoed() -> None:
    problem = only_provider_problem(base_url="https://user:hunter2pw@api.example.com/v1")
    assert "hunter2pw" not in str(problem)


@pytest.mark.parametrize("base_url", ["http://localhost:11434/v1", "https://[::1]:8443"])
def test_base_url_with_port_is_accepted(base_url: str) -> None:
    assert parse({"providers": {"local": provider(base_url=base_url)}}).providers["local"]


@pytest.mark.parametrize(
    ("protocols", "fragment"),
    [
        (["grpc"], "unknown protocol 'grpc'"),
        ([], "must list at least one"),
        (["openai", "OpenAI"], "lists 'OpenAI' twice"),
        ("openai", "expected an array of strings"),
    ],
    ids=["unknown", "empty", "duplicate", "not-a-list"],
)
def test_bad_protocols_are_rejected(protocols: object, fragment: str) -> None:
    problem = only_provider_problem(protocols=protocols)
    assert_problem(problem, "providers.openai.protocols", fragment)


def test_protocol_names_are_case_insensitive() -> None:
    config = parse({"providers": {"openai": provider(protocols=["Anthropic", "OPENAI"])}})
    assert config.providers["openai"].protocols == ("anthropic", "openai")


def test_provider_keepalive_above_connections_is_rejected() -> None:
    problem = only_provider_problem(max_connections=8, max_keepalive=9)
    assert str(problem) == (
        "providers.openai.max_keepalive: must be at most max_connections (8), got 9"
    )


def test_negative_routing_priority_is_rejected() -> None:
    problem = only_provider_problem(routing_priority=-1)
    assert str(problem) == "providers.openai.routing_priority: must be at least 0, got -1"


# --- paths and version prefixes ------------------------------------------------------


def test_path_repeating_v1_of_base_url_is_rejected() -> None:
    problem = only_provider_problem(openai_path="/v1/chat/completions")
    assert problem.path == "providers.openai.openai_path"
    assert 'repeats the version prefix "/v1" that base_url already ends with' in problem.message


def test_path_repeating_api_v1_of_base_url_is_rejected() -> None:
    problem = only_provider_problem(
        base_url="https://openrouter.ai/api/v1", openai_path="/api/v1/chat/completions"
    )
    assert problem.path == "providers.openai.openai_path"
    assert '"/api/v1"' in problem.message


def test_anthropic_path_repeating_v1_is_rejected() -> None:
    problem = only_provider_problem(protocols=["anthropic"], anthropic_path="/v1/messages")
    assert problem.path == "providers.openai.anthropic_path"


def test_models_endpoint_path_repeating_v1_is_rejected() -> None:
    problem = only_provider_problem(models_endpoint={"path": "/v1/models"})
    assert problem.path == "providers.openai.models_endpoint.path"


def test_v1_path_under_unversioned_base_url_is_accepted() -> None:
    fields = {"base_url": "https://api.example.com", "openai_path": "/v1/chat/completions"}
    openai = parse({"providers": {"openai": provider(**fields)}}).providers["openai"]
    assert openai.openai_path == "/v1/chat/completions"


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("chat/completions", 'must start with "/"'),
        ("/chat completions", "must be a plain path"),
        ("/chat/completions?stream=1", "must be a plain path"),
    ],
    ids=["relative", "whitespace", "query"],
)
def test_malformed_path_is_rejected(path: str, fragment: str) -> None:
    problem = only_provider_problem(openai_path=path)
    assert_problem(problem, "providers.openai.openai_path", fragment)


# --- accounts: keys ------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["your-api-key", "sk-your-key", "changeme", "YOUR_API_KEY", "xxxx", "<key>", "..."]
)
def test_placeholder_account_key_is_rejected(key: str) -> None:
    problem = only_account_problem(api_key=key)
    assert str(problem) == (
        "providers.openai.accounts[0].api_key: the key is a placeholder from an example, "
        "not a real key"
    )


def test_placeholder_account_key_from_env_is_rejected() -> None:
    problem = only_account_problem({"OPENAI_KEY": "your-api-key"}, api_key_env="OPENAI_KEY")
    assert problem.path == "providers.openai.accounts[0].api_key_env"
    assert problem.message.startswith("the key in OPENAI_KEY is a placeholder")


def test_unset_account_key_env_is_reported_with_its_key_path() -> None:
    doc = {
        "providers": {
            "openai": provider(
                account("first", api_key_env="OPENAI_KEY_1"),
                account("second", api_key_env="OPENAI_KEY_2"),
            )
        }
    }
    problem = only_problem(doc, {"OPENAI_KEY_1": KEY})
    assert (
        str(problem)
        == "providers.openai.accounts[1].api_key_env: variable OPENAI_KEY_2 is not set"
    )


@pytest.mark.parametrize(
    ("key", "fragment"),
    [
        ("   ", "is blank"),
        ("sk-abc\n0123456789", "contains a line break or NUL character"),
        ("sk-abc0123456789\x00", "contains a line break or NUL character"),
        (" sk-abc0123456789", "has leading or trailing whitespace"),
    ],
    ids=["blank", "newline", "nul", "leading-space"],
)
def test_malformed_account_key_is_rejected(key: str, fragment: str) -> None:
    problem = only_account_problem(api_key=key)
    assert_problem(problem, "providers.openai.accounts[0].api_key", fragment)


@pytest.mark.parametrize("key", ["Bearer sk-abc0123456789", "bearer sk-abc0123456789"])
def test_bearer_key_already_prefixed_with_scheme_is_rejected(key: str) -> None:
    problem = only_account_problem(api_key=key)
    assert problem.path == "providers.openai.accounts[0].api_key"
    assert 'already starts with "Bearer "; give the bare key' in problem.message


def test_key_starting_with_scheme_is_accepted_in_api_key_mode() -> None:
    fields = {"auth": {"mode": "api_key", "header": "x-api-key"}}
    config = parse(
        {"providers": {"k": provider(account(api_key="Bearer sk-1234567890"), **fields)}}
    )
    assert config.accounts[0].api_key is not None


def test_both_api_key_and_api_key_env_are_rejected() -> None:
    problem = only_account_problem({"OPENAI_KEY": KEY}, api_key=KEY, api_key_env="OPENAI_KEY")
    assert str(problem) == (
        "providers.openai.accounts[0].api_key: set either api_key or api_key_env, not both"
    )


def test_enabled_account_without_any_key_is_rejected() -> None:
    doc = {"providers": {"openai": provider({"name": "main"})}}
    problem = only_problem(doc)
    assert problem.path == "providers.openai.accounts[0]"
    assert "needs api_key or api_key_env" in problem.message


def test_bad_account_key_is_not_echoed() -> None:
    problem = only_account_problem(api_key="Bearer hunter2-secret-value")
    assert "hunter2" not in str(problem)


# --- accounts: enabled / disabled ----------------------------------------------------


def test_disabled_account_with_unset_env_is_accepted() -> None:
    config = parse(
        {
            "providers": {
                "openai": provider(
                    account(), account("spare", api_key_env="SPARE_KEY", enabled=False)
                )
            }
        }
    )
    spare = config.accounts[1]
    assert (spare.enabled, spare.api_key, spare.key_source) == (False, None, "env SPARE_KEY")


def test_disabled_account_with_placeholder_key_is_accepted() -> None:
    doc = {
        "providers": {
            "openai": provider(account(), account("old", api_key="your-api-key", enabled=False))
        }
    }
    assert parse(doc).accounts[1].api_key is None


def test_disabled_account_without_any_key_is_accepted() -> None:
    doc = {"providers": {"openai": provider(account(), {"name": "old", "enabled": False})}}
    assert [a.name for a in parse(doc).accounts] == ["main", "old"]


def test_only_disabled_accounts_warns_nothing_to_route_to() -> None:
    config = parse({"providers": {"openai": provider(account(enabled=False))}})
    assert warnings_at(config, "providers") == [
        "no account is enabled: there is nothing to route to"
    ]


# --- accounts: names, weights, offsets -----------------------------------------------


def test_duplicate_account_name_in_one_provider_is_rejected() -> None:
    problem = only_problem({"providers": {"openai": provider(account("main"), account("main"))}})
    assert str(problem) == (
        "providers.openai.accounts[1].name: account name 'main' is already used by "
        "providers.openai.accounts[0]"
    )


def test_duplicate_account_name_across_providers_is_rejected() -> None:
    doc = {"providers": {"a": provider(account("main")), "b": provider(account("main"))}}
    problem = only_problem(doc)
    assert str(problem) == (
        "providers.b.accounts[0].name: account name 'main' is already used by "
        "providers.a.accounts[0]"
    )


def test_duplicate_account_name_differing_in_case_is_rejected() -> None:
    doc = {"providers": {"a": provider(account("Main")), "b": provider(account("MAIN"))}}
    problem = only_problem(doc)
    assert problem.path == "providers.b.accounts[0].name"
    assert "already used by providers.a.accounts[0]" in problem.message


def test_account_without_name_is_rejected() -> None:
    problem = only_problem({"providers": {"openai": provider({"api_key": KEY})}})
    assert str(problem) == "providers.openai.accounts[0].name: is required"


@pytest.mark.parametrize("name", [" main", "main ", "ma\tin", "main\n"])
def test_account_name_with_edge_spaces_or_line_breaks_is_rejected(name: str) -> None:
    problem = only_account_problem(name=name)
    assert problem.path == "providers.openai.accounts[0].name"


def test_account_name_with_inner_space_is_accepted() -> None:
    config = parse({"providers": {"o": provider(account("work laptop"))}})
    assert config.accounts[0].name == "work laptop"


@pytest.mark.parametrize("weight", [0, -1.0])
def test_non_positive_weight_is_rejected(weight: float) -> None:
    problem = only_account_problem(weight=weight)
    assert_problem(problem, "providers.openai.accounts[0].weight", "must be greater than 0")


def test_bool_weight_is_rejected() -> None:
    problem = only_account_problem(weight=True)
    assert str(problem) == (
        "providers.openai.accounts[0].weight: expected a number, got boolean true"
    )


def test_integer_weight_is_accepted_as_float() -> None:
    weight = parse({"providers": {"o": provider(account(weight=3))}}).accounts[0].weight
    assert (weight, type(weight)) == (3.0, float)


def test_negative_quota_offset_is_rejected() -> None:
    problem = only_account_problem(monthly_offset_microdollars=-1)
    assert str(problem) == (
        "providers.openai.accounts[0].monthly_offset_microdollars: must be at least 0, got -1"
    )


def test_string_enabled_flag_is_rejected() -> None:
    problem = only_account_problem(enabled="false")
    assert problem.path == "providers.openai.accounts[0].enabled"


def test_accounts_not_an_array_of_tables_is_rejected() -> None:
    problem = only_provider_problem(accounts={"name": "main", "api_key": KEY})
    assert str(problem) == "providers.openai.accounts: expected an array of tables, got a table"


def test_unknown_account_key_warns_with_did_you_mean() -> None:
    config = parse({"providers": {"openai": provider(account(wieght=2.0))}})
    assert warnings_at(config, "providers.openai.accounts[0].wieght") == [
        'unknown key, ignored (did you mean "weight"?)'
    ]


# --- proxies -------------------------------------------------------------------------


def test_named_proxy_from_env_is_resolved() -> None:
    doc = {
        "proxies": {"corp": {"url_env": "CORP_PROXY"}},
        "providers": {"openai": provider(account(proxy="corp"))},
    }
    config = parse(doc, {"CORP_PROXY": "http://proxy.corp:3128"})
    assert config.accounts[0].proxy is not None
    assert config.accounts[0].proxy.display() == "http://proxy.corp:3128"


def test_pproxy_fragment_credentials_are_parsed() -> None:
    config = parse(
        {"providers": {"o": provider(account(proxy_url="socks5://10.0.0.5:1080#bob:s3cretpw"))}}
    )
    proxy = config.accounts[0].proxy
    assert proxy is not None
    assert proxy.password is not None
    assert (proxy.username, proxy.password.reveal()) == ("bob", "s3cretpw")


@pytest.mark.parametrize(
    ("url", "port"), [("socks5://h", 1080), ("socks5h://h", 1080), ("http://h", 8080)]
)
def test_proxy_default_port_by_scheme(url: str, port: int) -> None:
    config = parse({"providers": {"o": provider(account(proxy_url=url))}})
    assert config.accounts[0].proxy is not None
    assert config.accounts[0].proxy.port == port


def test_proxy_password_is_masked_in_display_and_repr() -> None:
    config = parse(
        {"providers": {"o": provider(account(proxy_url="socks5://u:hunter2pass@h:1080"))}}
    )
    proxy = config.accounts[0].proxy
    assert proxy is not None
    assert "hunter2pass" not in proxy.display() + repr(proxy) + repr(config)


def test_unknown_proxy_reference_is_rejected() -> None:
    problem = only_account_problem(proxy="corp")
    assert str(problem) == (
        "providers.openai.accounts[0].proxy: unknown proxy 'corp' (defined: none are defined)"
    )


def test_unknown_proxy_reference_lists_defined_proxies() -> None:
    doc = {
        "proxies": {"home": {"url": "http://h:1"}, "office": {"url": "http://o:1"}},
        "providers": {
            "openai": provider(
                account(proxy="corp"), account("b", proxy="home"), account("c", proxy="office")
            )
        },
    }
    problem = only_problem(doc)
    assert problem.message == "unknown proxy 'corp' (defined: home, office)"


def test_named_proxy_with_unsupported_scheme_is_rejected() -> None:
    doc = {
        "proxies": {"corp": {"url": "ftp://u:pw@proxy.corp:21"}},
        "providers": {"openai": provider()},
    }
    problem = only_problem(doc)
    assert problem.path == "proxies.corp.url"
    assert problem.message.startswith("unsupported proxy scheme 'ftp'; expected one of http://")


def test_inline_proxy_url_with_unsupported_scheme_is_rejected() -> None:
    problem = only_account_problem(proxy_url="https://proxy.corp:443")
    assert problem.path == "providers.openai.accounts[0].proxy_url"
    assert "unsupported proxy scheme 'https'" in problem.message


def test_proxy_url_with_path_is_rejected() -> None:
    problem = only_account_problem(proxy_url="http://proxy.corp:3128/x")
    assert problem.path == "providers.openai.accounts[0].proxy_url"
    assert "no path or query" in problem.message


def test_proxy_url_with_bad_port_is_rejected() -> None:
    problem = only_account_problem(proxy_url="http://proxy.corp:99999")
    assert str(problem) == "providers.openai.accounts[0].proxy_url: proxy URL has an invalid port"


def test_proxy_error_does_not_echo_its_password() -> None:
    problem = only_account_problem(proxy_url="gopher://u:hunter2pass@h:1")
    assert "hunter2pass" not in str(problem)


def test_bad_proxy_url_from_env_names_the_variable() -> None:
    problem = only_account_problem({"MY_PROXY": "ftp://h:1"}, proxy_url_env="MY_PROXY")
    assert problem.path == "providers.openai.accounts[0].proxy_url_env"
    assert problem.message.startswith("variable MY_PROXY: unsupported proxy scheme")


def test_unset_proxy_url_env_of_enabled_account_is_rejected() -> None:
    problem = only_account_problem(proxy_url_env="MY_PROXY")
    assert str(problem) == (
        "providers.openai.accounts[0].proxy_url_env: variable MY_PROXY is not set"
    )


def test_both_proxy_and_proxy_url_are_rejected() -> None:
    doc = {
        "proxies": {"corp": {"url": "http://proxy.corp:3128"}},
        "providers": {"openai": provider(account(proxy="corp", proxy_url="http://h:1"))},
    }
    problem = only_problem(doc)
    assert str(problem) == (
        "providers.openai.accounts[0].proxy_url: set at most one of proxy, proxy_url, "
        "proxy_url_env (got proxy, proxy_url)"
    )


def test_proxy_with_both_url_and_url_env_is_rejected() -> None:
    doc = {
        "proxies": {"corp": {"url": "http://h:1", "url_env": "CORP_PROXY"}},
        "providers": {"openai": provider()},
    }
    assert str(only_problem(doc)) == "proxies.corp: set exactly one of url or url_env"


def test_unset_proxy_url_env_used_by_enabled_account_is_rejected() -> None:
    doc = {
        "proxies": {"corp": {"url_env": "CORP_PROXY"}},
        "providers": {"openai": provider(account(proxy="corp"))},
    }
    assert str(only_problem(doc)) == (
        "proxies.corp.url_env: variable CORP_PROXY is not set "
        "(used by providers.openai.accounts[0])"
    )


def test_unset_proxy_url_env_used_only_by_disabled_account_is_accepted() -> None:
    doc = {
        "proxies": {"corp": {"url_env": "CORP_PROXY"}},
        "providers": {"openai": provider(account(), account("old", proxy="corp", enabled=False))},
    }
    config = parse(doc)
    assert (config.accounts[1].proxy_name, config.accounts[1].proxy) == ("corp", None)


def test_unset_proxy_url_env_of_unused_proxy_is_not_an_error() -> None:
    doc = {"proxies": {"corp": {"url_env": "CORP_PROXY"}}, "providers": {"openai": provider()}}
    assert parse(doc).proxies["corp"].url is None


def test_unused_proxy_warns() -> None:
    doc = {"proxies": {"corp": {"url": "http://h:1"}}, "providers": {"openai": provider()}}
    assert warnings_at(parse(doc), "proxies.corp") == ["is not used by any account"]


# --- auth ----------------------------------------------------------------------------


def test_auth_mode_none_needs_no_key() -> None:
    doc = {"providers": {"ollama": provider({"name": "local"}, auth={"mode": "none"})}}
    local = parse(doc).accounts[0]
    assert (local.api_key, local.key_source) == (None, "none")


def test_key_given_with_auth_mode_none_warns_ignored() -> None:
    doc = {"providers": {"ollama": provider(account(), auth={"mode": "none"})}}
    assert warnings_at(parse(doc), "providers.ollama.accounts[0].api_key") == [
        "is ignored: this provider's auth.mode is none"
    ]


def test_bad_auth_mode_names_allowed_values() -> None:
    problem = only_provider_problem(auth={"mode": "oauth"})
    assert str(problem) == (
        'providers.openai.auth.mode: expected one of "bearer", "api_key", '
        '"raw_authorization", "none", got string "oauth"'
    )


def test_invalid_auth_header_name_is_rejected() -> None:
    problem = only_provider_problem(auth={"mode": "api_key", "header": "x api key"})
    assert problem.path == "providers.openai.auth.header"
    assert "is not a valid HTTP header name" in problem.message


def test_managed_auth_header_is_rejected() -> None:
    problem = only_provider_problem(auth={"mode": "api_key", "header": "Host"})
    assert problem.path == "providers.openai.auth.header"
    assert "managed by the proxy" in problem.message


def test_multi_word_bearer_scheme_is_rejected() -> None:
    problem = only_provider_problem(auth={"scheme": "Bearer Token"})
    assert problem.path == "providers.openai.auth.scheme"


def test_custom_bearer_scheme_is_kept() -> None:
    doc = {"providers": {"gh": provider(auth={"scheme": "token"})}}
    assert parse(doc).providers["gh"].auth.scheme == "token"


def test_anthropic_provider_with_api_key_on_authorization_warns() -> None:
    doc = {"providers": {"claude": provider(protocols=["anthropic"], auth={"mode": "api_key"})}}
    (message,) = warnings_at(parse(doc), "providers.claude.auth.header")
    assert 'expect it in "x-api-key"' in message


def test_anthropic_provider_with_api_key_on_x_api_key_does_not_warn() -> None:
    auth = {"mode": "api_key", "header": "x-api-key"}
    doc = {"providers": {"claude": provider(protocols=["anthropic"], auth=auth)}}
    assert parse(doc).warnings == ()


def test_openai_provider_with_api_key_on_authorization_does_not_warn() -> None:
    doc = {"providers": {"azure": provider(auth={"mode": "api_key"})}}
    assert parse(doc).warnings == ()


# --- static headers ------------------------------------------------------------------


def header_problem(
    *headers: dict[str, Any],
    env: Mapping[str, str] | None = None,
    auth: dict[str, Any] | None = None,
) -> ConfigProblem:
    fields: dict[str, Any] = {"headers": list(headers)}
    if auth is not None:
        fields["auth"] = auth
    return only_provider_problem(env, **fields)


@pytest.mark.parametrize("name", ["Authorization", "authorization"])
def test_header_colliding_with_bearer_auth_header_is_rejected(name: str) -> None:
    problem = header_problem({"name": name, "value": "x"})
    assert problem.path == "providers.openai.headers[0].name"
    assert "collides with the auth header (bearer mode)" in problem.message


def test_header_colliding_with_api_key_auth_header_is_rejected() -> None:
    problem = header_problem(
        {"name": "X-Api-Key", "value": "x"}, auth={"mode": "api_key", "header": "x-api-key"}
    )
    assert problem.path == "providers.openai.headers[0].name"
    assert "collides with the auth header (api_key mode)" in problem.message


def test_authorization_header_with_auth_mode_none_is_accepted() -> None:
    doc = {
        "providers": {
            "local": provider(
                {"name": "local"},
                auth={"mode": "none"},
                headers=[{"name": "Authorization", "value": "Basic abc"}],
            )
        }
    }
    assert [h.name for h in parse(doc).providers["local"].headers] == ["Authorization"]


def test_authorization_header_next_to_api_key_auth_warns() -> None:
    doc = {
        "providers": {
            "p": provider(
                auth={"mode": "api_key", "header": "x-api-key"},
                headers=[{"name": "Authorization", "value": "Basic abc"}],
            )
        }
    }
    (message,) = warnings_at(parse(doc), "providers.p.headers[0].name")
    assert "static Authorization header is sent next to the account key" in message


@pytest.mark.parametrize("name", ["Host", "Content-Length", "connection", "Transfer-Encoding"])
def test_proxy_managed_header_is_rejected(name: str) -> None:
    problem = header_problem({"name": name, "value": "x"})
    assert str(problem) == (
        f"providers.openai.headers[0].name: {name!r} is managed by the proxy and cannot be set"
    )


def test_header_with_invalid_name_is_rejected() -> None:
    problem = header_problem({"name": "X Client", "value": "x"})
    assert str(problem) == (
        "providers.openai.headers[0].name: 'X Client' is not a valid HTTP header name"
    )


def test_duplicate_header_is_rejected() -> None:
    problem = header_problem(
        {"name": "X-Client", "value": "a"}, {"name": "x-client", "value": "b"}
    )
    assert str(problem) == "providers.openai.headers: header 'x-client' is set more than once"


@pytest.mark.parametrize("value", ["a\r\nX-Evil: 1", "a\nb", "a\x00"], ids=["crlf", "lf", "nul"])
def test_header_value_with_line_break_is_rejected(value: str) -> None:
    problem = header_problem({"name": "X-Client", "value": value})
    assert str(problem) == "providers.openai.headers[0].value: contains CR, LF or NUL"


def test_header_value_from_env_with_line_break_is_rejected() -> None:
    problem = header_problem({"name": "X-Client", "value_env": "CLIENT"}, env={"CLIENT": "a\nb"})
    assert str(problem) == "providers.openai.headers[0].value_env: contains CR, LF or NUL"


def test_header_with_value_and_value_env_is_rejected() -> None:
    problem = header_problem(
        {"name": "X-Client", "value": "a", "value_env": "CLIENT"}, env={"CLIENT": "b"}
    )
    assert str(problem) == "providers.openai.headers[0]: set exactly one of value or value_env"


def test_header_without_value_is_rejected() -> None:
    problem = header_problem({"name": "X-Client"})
    assert str(problem) == "providers.openai.headers[0]: set exactly one of value or value_env"


def test_header_without_name_is_rejected() -> None:
    problem = header_problem({"value": "x"})
    assert str(problem) == "providers.openai.headers[0].name: is required"


def test_header_value_env_unset_is_rejected() -> None:
    problem = header_problem({"name": "X-Client", "value_env": "CLIENT"})
    assert str(problem) == "providers.openai.headers[0].value_env: variable CLIENT is not set"


def test_header_value_from_env_is_masked() -> None:
    doc = {"providers": {"p": provider(headers=[{"name": "X-Token", "value_env": "TOKEN"}])}}
    config = parse(doc, {"TOKEN": "tok-0123456789abcdef"})
    assert "tok-0123456789abcdef" not in repr(config)


# --- models endpoint -----------------------------------------------------------------


def test_models_endpoint_table_is_parsed() -> None:
    endpoint = {
        "method": "post",
        "path": "/models/list",
        "body": {"page_size": 100},
        "query": {"detail": True, "limit": 50, "kind": "chat"},
        "required": False,
    }
    doc = {"providers": {"p": provider(models_endpoint=endpoint)}}
    parsed = parse(doc).providers["p"].models_endpoint
    assert attrs.asdict(parsed) == {
        "method": "POST",
        "path": "/models/list",
        "body": {"page_size": 100},
        "query": {"detail": "true", "limit": "50", "kind": "chat"},
        "required": False,
    }


def test_models_endpoint_bad_method_is_rejected() -> None:
    problem = only_provider_problem(models_endpoint={"method": "PUT"})
    assert problem.path == "providers.openai.models_endpoint.method"
    assert '"GET", "POST", "DISABLED"' in problem.message


def test_models_endpoint_body_with_get_warns() -> None:
    doc = {"providers": {"p": provider(models_endpoint={"body": {"a": 1}})}}
    assert warnings_at(parse(doc), "providers.p.models_endpoint.body") == [
        "is only sent with method POST, not GET"
    ]


def test_models_endpoint_body_not_a_table_is_rejected() -> None:
    problem = only_provider_problem(models_endpoint={"method": "POST", "body": "{}"})
    assert problem.path == "providers.openai.models_endpoint.body"


def test_models_endpoint_query_with_table_value_is_rejected() -> None:
    problem = only_provider_problem(models_endpoint={"query": {"filter": {"a": 1}}})
    assert str(problem) == (
        "providers.openai.models_endpoint.query: parameter 'filter': expected a string or number"
    )


def test_disabled_models_endpoint_without_static_models_warns() -> None:
    doc = {"providers": {"p": provider(models_endpoint={"method": "DISABLED"})}}
    assert warnings_at(parse(doc), "providers.p.models_endpoint.method") == [
        "is DISABLED and there are no static_models: this provider exposes no models"
    ]


def test_disabled_models_endpoint_with_require_models_warns() -> None:
    doc = {"providers": {"p": provider(models_endpoint={"method": "DISABLED"})}}
    assert warnings_at(parse(doc), "providers.p.verify.require_models") == [
        "is true but the models endpoint is DISABLED; set it to false"
    ]


def test_disabled_models_endpoint_with_static_models_does_not_warn() -> None:
    doc = {
        "providers": {
            "p": provider(
                models_endpoint={"method": "DISABLED"},
                static_models=[{"id": "llama3"}],
                verify={"require_models": False},
            )
        }
    }
    assert parse(doc).warnings == ()


def test_legacy_models_method_warns_and_is_used() -> None:
    config = parse({"providers": {"p": provider(models_method="POST")}})
    assert (
        warnings_at(config, "providers.p.models_method"),
        config.providers["p"].models_endpoint.method,
    ) == (["is the legacy form; prefer [providers.<id>.models_endpoint] method/path"], "POST")


def test_legacy_models_path_warns_and_is_used() -> None:
    config = parse({"providers": {"p": provider(models_path="/catalog")}})
    assert (
        warnings_at(config, "providers.p.models_path"),
        config.providers["p"].models_endpoint.path,
    ) == (["is the legacy form; prefer [providers.<id>.models_endpoint] method/path"], "/catalog")


def test_legacy_models_keys_next_to_models_endpoint_warn_ignored() -> None:
    doc = {"providers": {"p": provider(models_method="POST", models_endpoint={"method": "GET"})}}
    config = parse(doc)
    assert (
        warnings_at(config, "providers.p.models_method"),
        config.providers["p"].models_endpoint.method,
    ) == (["models_method / models_path are ignored because models_endpoint is set"], "GET")


# --- undeclared-protocol paths -------------------------------------------------------


def test_anthropic_path_on_openai_only_provider_warns() -> None:
    config = parse({"providers": {"p": provider(anthropic_path="/messages")}})
    assert warnings_at(config, "providers.p.anthropic_path") == [
        'is set but "anthropic" is not in protocols, so it is never used'
    ]


def test_openai_path_on_anthropic_only_provider_warns() -> None:
    doc = {"providers": {"p": provider(protocols=["anthropic"], openai_path="/chat")}}
    assert warnings_at(parse(doc), "providers.p.openai_path") == [
        'is set but "openai" is not in protocols, so it is never used'
    ]


def test_openai_only_provider_without_anthropic_path_does_not_warn() -> None:
    # The reference warned here for every OpenAI-only provider (default paths are truthy).
    assert parse({"providers": {"p": provider()}}).warnings == ()


# --- static models -------------------------------------------------------------------


def test_static_models_are_parsed() -> None:
    config = parse(
        tomllib.loads(
            """
            [providers.local]
            base_url = "http://127.0.0.1:11434/v1"
            protocols = ["openai", "anthropic"]
            models_endpoint = { method = "DISABLED" }
            verify = { require_models = false, probe_model = "llama3" }
            [[providers.local.static_models]]
            id = "llama3"
            display_name = "Llama 3"
            protocol = "anthropic"
            max_context_tokens = 8192
            max_input_tokens = 6000
            max_output_tokens = 2048
            supports_tools = true
            supports_vision = false
            source_metadata = { family = "llama", anything = [1, 2] }
            [[providers.local.accounts]]
            name = "box"
            api_key = "sk-local-0123456789"
            """
        )
    )
    (model,) = config.providers["local"].static_models
    assert attrs.asdict(model, recurse=False) | {
        "source_metadata": dict(model.source_metadata)
    } == {
        "id": "llama3",
        "display_name": "Llama 3",
        "protocol": "anthropic",
        "max_context_tokens": 8192,
        "max_input_tokens": 6000,
        "max_output_tokens": 2048,
        "supports_tools": True,
        "supports_vision": False,
        "source_metadata": {"family": "llama", "anything": [1, 2]},
    }


def test_static_model_metadata_keys_are_not_warned_unknown() -> None:
    models = [{"id": "m", "source_metadata": {"whatever": 1}}]
    assert parse({"providers": {"p": provider(static_models=models)}}).warnings == ()


def test_static_model_protocol_outside_provider_protocols_is_rejected() -> None:
    problem = only_provider_problem(static_models=[{"id": "m", "protocol": "anthropic"}])
    assert str(problem) == (
        'providers.openai.static_models[0].protocol: "anthropic" is not one of this '
        "provider's protocols (openai)"
    )


def test_duplicate_static_model_ids_are_rejected() -> None:
    problem = only_provider_problem(static_models=[{"id": "m"}, {"id": "m"}])
    assert str(problem) == "providers.openai.static_models: model id 'm' is listed more than once"


def test_static_model_without_id_is_rejected() -> None:
    problem = only_provider_problem(static_models=[{"display_name": "M"}])
    assert str(problem) == "providers.openai.static_models[0].id: is required"


def test_static_model_output_above_context_is_rejected() -> None:
    models = [{"id": "m", "max_context_tokens": 8000, "max_output_tokens": 9000}]
    problem = only_provider_problem(static_models=models)
    assert str(problem) == (
        "providers.openai.static_models[0].max_output_tokens: must be at most "
        "max_context_tokens (8000), got 9000"
    )


def test_static_model_zero_context_is_rejected() -> None:
    problem = only_provider_problem(static_models=[{"id": "m", "max_context_tokens": 0}])
    assert str(problem) == (
        "providers.openai.static_models[0].max_context_tokens: must be at least 1, got 0"
    )


# --- verify --------------------------------------------------------------------------


def test_verify_probe_protocol_outside_provider_protocols_warns() -> None:
    verify = {"probe_model": "m", "probe_protocol": "anthropic"}
    config = parse({"providers": {"p": provider(verify=verify)}})
    assert warnings_at(config, "providers.p.verify.probe_protocol") == [
        '"anthropic" is not in this provider\'s protocols'
    ]


def test_verify_settings_are_parsed() -> None:
    verify = {"probe_model": "gpt-4o-mini", "require_models": False}
    parsed = parse({"providers": {"p": provider(verify=verify)}}).providers["p"].verify
    assert attrs.asdict(parsed) == {
        "probe_model": "gpt-4o-mini",
        "probe_protocol": "openai",
        "require_models": False,
    }


# --- model overrides -----------------------------------------------------------------


def test_global_override_output_above_context_is_rejected() -> None:
    doc = {"model_overrides": {"gpt-4.1": {"max_context_tokens": 1000, "max_output_tokens": 2000}}}
    problem = only_problem(doc)
    assert str(problem) == (
        'model_overrides."gpt-4.1".max_output_tokens: must be at most max_context_tokens '
        "(1000), got 2000"
    )


def test_global_override_input_above_context_is_rejected() -> None:
    doc = {"model_overrides": {"m": {"max_context_tokens": 1000, "max_input_tokens": 1001}}}
    assert only_problem(doc).path == "model_overrides.m.max_input_tokens"


def test_provider_override_protocol_outside_provider_protocols_is_rejected() -> None:
    problem = only_provider_problem(model_overrides={"m": {"protocol": "anthropic"}})
    assert problem.path == "providers.openai.model_overrides.m.protocol"


def test_global_override_protocol_is_accepted() -> None:
    config = parse({"model_overrides": {"m": {"protocol": "anthropic"}}})
    assert config.model_overrides["m"].protocol == "anthropic"


def test_override_fields_not_set_stay_none() -> None:
    override = parse({"model_overrides": {"m": {"max_context_tokens": 4096}}}).model_overrides["m"]
    assert attrs.asdict(override) == {
        "max_context_tokens": 4096,
        "max_input_tokens": None,
        "max_output_tokens": None,
        "enforce_context_limit": None,
        "protocol": None,
        "input_per_million": None,
        "output_per_million": None,
        "cache_read_per_million": None,
        "cache_write_per_million": None,
    }


def test_empty_override_model_id_is_rejected() -> None:
    problem = only_problem({"model_overrides": {" ": {"max_context_tokens": 1}}})
    assert str(problem) == 'model_overrides." ": model id must not be empty'


def test_string_override_limit_is_rejected() -> None:
    problem = only_problem({"model_overrides": {"m": {"max_context_tokens": "128k"}}})
    assert str(problem) == (
        'model_overrides.m.max_context_tokens: expected an integer, got string "128k"'
    )


def test_float_override_limit_is_rejected() -> None:
    problem = only_problem({"model_overrides": {"m": {"max_output_tokens": 4096.0}}})
    assert problem.path == "model_overrides.m.max_output_tokens"


# --- warnings about providers --------------------------------------------------------


def test_provider_without_accounts_warns() -> None:
    config = parse({"providers": {"a": provider(), "b": provider(accounts=[])}})
    assert warnings_at(config, "providers.b.accounts") == [
        "this provider has no accounts, so nothing is routed to it"
    ]


def test_unknown_provider_key_warns_with_did_you_mean() -> None:
    config = parse({"providers": {"p": provider(base_ulr="https://x.example.com")}})
    assert warnings_at(config, "providers.p.base_ulr") == [
        'unknown key, ignored (did you mean "base_url"?)'
    ]


# --- legacy flat [[accounts]] --------------------------------------------------------

LEGACY_TOML = """
[upstream]
base_url = "https://gateway.example.com/zen/go/v1"
read_timeout_s = 120

[[accounts]]
name = "go-1"
api_key = "sk-go-0123456789abcdef"

[[accounts]]
name = "go-2"
api_key_env = "GO_KEY_2"
"""


@pytest.fixture(scope="module")
def legacy() -> Config:
    return parse_config(tomllib.loads(LEGACY_TOML), {"GO_KEY_2": "sk-go2-0123456789abcdef"})


def test_legacy_accounts_become_provider_opencode_go(legacy: Config) -> None:
    assert list(legacy.providers) == ["opencode-go"]


def test_legacy_provider_uses_upstream_base_url_and_both_protocols(legacy: Config) -> None:
    go = legacy.providers["opencode-go"]
    assert (go.base_url, go.protocols, go.legacy) == (
        "https://gateway.example.com/zen/go/v1",
        ("openai", "anthropic"),
        True,
    )


def test_legacy_provider_uses_upstream_http_settings(legacy: Config) -> None:
    assert legacy.providers["opencode-go"].http.read_timeout_s == 120.0


def test_legacy_accounts_keep_order_and_keys(legacy: Config) -> None:
    assert [
        (a.name, a.provider_id, a.api_key.reveal() if a.api_key else None) for a in legacy.accounts
    ] == [
        ("go-1", "opencode-go", "sk-go-0123456789abcdef"),
        ("go-2", "opencode-go", "sk-go2-0123456789abcdef"),
    ]


def test_legacy_accounts_default_to_the_reference_upstream() -> None:
    config = parse({"accounts": [account()]})
    assert config.providers["opencode-go"].base_url == "https://opencode.ai/zen/go/v1"


def test_legacy_account_error_path_is_flat() -> None:
    problem = only_problem({"accounts": [account(), account("b", api_key_env="GO_KEY")]})
    assert str(problem) == "accounts[1].api_key_env: variable GO_KEY is not set"


def test_legacy_account_error_path_of_first_account() -> None:
    problem = only_problem({"accounts": [account(api_key_env="GO_KEY")]})
    assert problem.path == "accounts[0].api_key_env"


def test_legacy_accounts_combined_with_providers_are_rejected() -> None:
    doc = {"accounts": [account("flat")], "providers": {"openai": provider()}}
    problem = only_problem(doc)
    assert problem.path == "accounts"
    assert "cannot be combined with [providers]" in problem.message


def test_legacy_accounts_combined_with_empty_providers_table_are_rejected() -> None:
    problem = only_problem({"accounts": [account()], "providers": {}})
    assert problem.path == "accounts"


# --- follow-ups: messages that must stay exact and secret-free ----------------------


def test_account_using_an_invalid_proxy_is_not_told_it_is_undefined() -> None:
    doc = {
        "proxies": {"corp": {"url": "gopher://127.0.0.1:70"}},
        "providers": {"openai": provider(account(proxy="corp"))},
    }
    assert_problem(only_problem(doc), "proxies.corp.url", "unsupported proxy scheme 'gopher'")


def test_empty_account_name_is_one_problem() -> None:
    assert_problem(only_account_problem(name=""), "providers.openai.accounts[0].name", "empty")


def test_empty_base_url_is_one_problem() -> None:
    problem = only_provider_problem(base_url="")
    assert_problem(problem, "providers.openai.base_url", "must not be empty")


@pytest.mark.parametrize(
    "url",
    [
        "ftp://user:hunter2@api.example.com/v1",
        "https://user:hunter2@api.example.com/v1?x=1",
        "https://user:hun ter2@api.example.com/v1",
        "https://user:hunter2/x@api.example.com:99999/v1",
    ],
)
def test_base_url_problems_never_show_the_password(url: str) -> None:
    problem = only_provider_problem(base_url=url)
    assert problem.path == "providers.openai.base_url"
    assert "hunter" not in str(problem)


def test_proxy_name_needing_quotes_is_quoted_in_error_paths() -> None:
    doc = {
        "proxies": {"my proxy": {"url_env": "NOPE"}},
        "providers": {"openai": provider(account(proxy="my proxy"))},
    }
    assert only_problem(doc).path == 'proxies."my proxy".url_env'


def test_price_below_a_microdollar_per_million_is_rejected_not_zeroed() -> None:
    doc = {
        "providers": {"openai": provider()},
        "model_overrides": {"m": {"input_price_per_1k": 1e-10}},
    }
    assert_problem(
        only_problem(doc),
        "model_overrides.m.input_price_per_1k",
        "below one microdollar per million tokens",
    )


def test_free_model_price_of_zero_is_kept() -> None:
    doc = {
        "providers": {"openai": provider()},
        "model_overrides": {"m": {"input_price_per_1k": 0.0}},
    }
    assert parse(doc).model_overrides["m"].input_per_million == 0
