"""parse_config: sections, defaults, value types, durations, money, server key, paths, warnings.

Providers, accounts, proxies and overrides live in test_config_providers.py.
Each rejection test asserts the key path a user would be pointed at and a
fragment of the message they would read.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from typing import Any

import attrs
import pytest

from eggpool.core.config import Config, ConfigError, ConfigProblem, parse_config

ACCOUNT_KEY = "sk-live-0123456789abcdef"
SERVER_KEY = "srv-key-0123456789"


def provider(**overrides: Any) -> dict[str, Any]:
    """A minimal valid provider table with one account."""
    table: dict[str, Any] = {
        "base_url": "https://api.example.com/v1",
        "accounts": [{"name": "main", "api_key": ACCOUNT_KEY}],
    }
    table.update(overrides)
    return table


def with_provider(**sections: Any) -> dict[str, Any]:
    """A valid config holding one provider, plus the given sections."""
    return {"providers": {"openai": provider()}, **sections}


def parse(mapping: Mapping[str, Any], env: Mapping[str, str] | None = None, **kw: Any) -> Config:
    return parse_config(mapping, env or {}, **kw)


def problems_of(
    mapping: Mapping[str, Any], env: Mapping[str, str] | None = None, **kw: Any
) -> tuple[ConfigProblem, ...]:
    with pytest.raises(ConfigError) as caught:
        parse_config(mapping, env or {}, **kw)
    return caught.value.problems


def only_problem(
    mapping: Mapping[str, Any], env: Mapping[str, str] | None = None, **kw: Any
) -> ConfigProblem:
    """The single problem a config has (the test fails if it has more, or none)."""
    found = problems_of(mapping, env, **kw)
    assert len(found) == 1, [str(p) for p in found]
    return found[0]


def warnings_at(config: Config, path: str) -> list[str]:
    return [w.message for w in config.warnings if w.path == path]


# --- defaults: the reference's values (reference-features.md section 5) ----------------


@pytest.fixture(scope="module")
def defaults() -> Config:
    return parse_config({}, {})


def test_default_server_matches_reference_except_loopback_host(defaults: Config) -> None:
    assert attrs.asdict(defaults.server, recurse=False) == {
        "host": "127.0.0.1",  # reference: 0.0.0.0; loopback by design
        "port": 11300,
        "api_key": None,
        "api_key_env": "SERVER_API_KEY",
        "key_source": "none",
        "log_level": "INFO",
        "access_log": True,
        "threads": 1,
        "allow_unauthenticated": False,
    }


def test_default_upstream_matches_reference(defaults: Config) -> None:
    assert defaults.upstream.base_url == "https://opencode.ai/zen/go/v1"
    assert attrs.asdict(defaults.upstream.http) == {
        "connect_timeout_s": 5,
        "read_timeout_s": 300,
        "write_timeout_s": 30,
        "pool_timeout_s": 30,
        "max_connections": 100,
        "max_keepalive": 100,  # the reference keeps 20; ours follows max_connections
        "keepalive_timeout_s": 30,
    }


def test_default_database_matches_reference(defaults: Config) -> None:
    assert attrs.asdict(defaults.database) == {
        "path": "usage.sqlite3",  # no HOME, no XDG_DATA_HOME, no base_dir
        "busy_timeout_ms": 5000,
        "wal": True,
        "synchronous": "NORMAL",
        "worker_threads": 1,
    }


def test_default_models_matches_reference(defaults: Config) -> None:
    assert attrs.asdict(defaults.models) == {
        "refresh_interval_s": 300,
        "expose_mode": "union",
        "startup_refresh": True,
        "stale_after_s": 7200,
        "allow_stale_catalog": True,
        "ping_retain_days": 7,
        "collapse_models": False,
    }


def test_default_routing_matches_reference(defaults: Config) -> None:
    routing = attrs.asdict(defaults.routing)
    # Ours, not the reference's: session affinity (docs/routing.md).
    assert routing.pop("session_affinity") is True
    assert routing.pop("session_headers")[0] == "x-claude-code-session-id"
    assert routing == {
        "strategy": "quota_fair",
        "near_tie_epsilon": 0.1,
        "max_retries_before_stream": 3,
        "unknown_request_reservation_microdollars": 1_000_000,
        "inflight_penalty": 100_000,
        "health_penalty": 500_000,
        "randomize_near_ties": True,
        "quota_exhausted_cooldown_seconds": 300,
        "local_quota_mode": "score_only",
    }


def test_default_limits_match_reference(defaults: Config) -> None:
    assert attrs.asdict(defaults.limits) == {
        "five_hour_microdollars": 12_000_000,
        "weekly_microdollars": 30_000_000,
        "monthly_microdollars": 60_000_000,
    }


def test_default_pricing_matches_reference(defaults: Config) -> None:
    pricing = defaults.pricing
    assert (pricing.fallback, pricing.aliases) == ("generic_estimate", ())
    assert {
        name: attrs.asdict(catalog, recurse=False) for name, catalog in pricing.catalogs.items()
    } == {
        "openrouter": {
            "name": "openrouter",
            "enabled": True,
            "priority": 100,
            "ttl_seconds": 86400,
            "base_url": "https://openrouter.ai/api/v1",
            "api_key": None,
            "options": {},
        },
        "opencode_zen": {
            "name": "opencode_zen",
            "enabled": True,
            "priority": 100,
            "ttl_seconds": 86400,
            "base_url": "https://opencode.ai/zen/v1",
            "api_key": None,
            "options": {},
        },
    }


def test_default_dashboard_matches_reference(defaults: Config) -> None:
    assert attrs.asdict(defaults.dashboard) == {
        "enabled": True,
        "public": True,
        "theme": "Cyber Red",
        "themes_dir": None,
        "retain_request_stats_days": 30,
        "retain_event_days": 90,
        "store_request_content": False,
        "refresh_interval_s": 60,
    }


def test_default_security_matches_reference(defaults: Config) -> None:
    assert attrs.asdict(defaults.security, recurse=False) == {
        "allowed_hosts": (),
        "cors_origins": (),
        "redact_headers": ("authorization", "x-api-key"),
        "persist_redacted_error_detail": False,
    }


def test_default_metrics_match_reference(defaults: Config) -> None:
    assert attrs.asdict(defaults.metrics) == {
        "write_mode": "balanced",
        "flush_interval_s": 30,
        "max_buffered_events": 500,
        "timeseries_bucket_s": 60,
        "trace_sample_rate": 1.0,
        "aggregate_only": False,
        "rollup_retain_days": 90,
        "cleanup_interval_s": 86400,
        "cleanup_max_rows_per_pass": 5000,
    }


def test_default_backup_matches_reference(defaults: Config) -> None:
    assert attrs.asdict(defaults.backup) == {
        "enabled": True,
        "interval_s": 86400,
        "retain_count": 14,
        "startup_delay_s": 300,
        "directory": None,
        "include_env": True,
    }


def test_default_network_matches_reference(defaults: Config) -> None:
    assert attrs.asdict(defaults.network, recurse=False) | {"dns_cache": None} == {
        "connect_timeout_s": 10,
        "read_timeout_s": 30,
        "max_connections": 10,
        "max_keepalive": 4,
        "keepalive_expiry_s": 90,
        "dns_cache": None,
    }


def test_default_dns_cache_matches_reference(defaults: Config) -> None:
    assert attrs.asdict(defaults.network.dns_cache) == {
        "enabled": True,
        "max_entries": 50,
        "positive_ttl_seconds": 300,
        "negative_ttl_seconds": 30,
        "stale_if_error_seconds": 3600,
        "prefer_ipv6": False,
        "lookup_timeout_seconds": 5,
    }


def test_empty_config_has_no_providers_proxies_or_overrides(defaults: Config) -> None:
    assert (defaults.providers, defaults.proxies, defaults.model_overrides) == ({}, {}, {})


def test_empty_config_warns_that_there_is_nothing_to_route_to(defaults: Config) -> None:
    assert [str(w) for w in defaults.warnings] == [
        "providers: no providers are configured: there is nothing to route to"
    ]


def test_minimal_provider_config_has_no_warnings() -> None:
    assert parse(with_provider()).warnings == ()


def test_default_durations_are_floats(defaults: Config) -> None:
    assert all(
        type(value) is float
        for value in (
            defaults.models.refresh_interval_s,
            defaults.upstream.http.read_timeout_s,
            defaults.routing.quota_exhausted_cooldown_seconds,
            defaults.network.dns_cache.positive_ttl_seconds,
        )
    )


# --- sections are read ---------------------------------------------------------------


def test_section_values_from_toml_are_used() -> None:
    config = parse(
        tomllib.loads(
            """
            [server]
            port = 8080
            log_level = "debug"
            access_log = false
            [database]
            synchronous = "full"
            worker_threads = 2
            [models]
            expose_mode = "healthy_union"
            collapse_models = true
            [routing]
            near_tie_epsilon = 0
            max_retries_before_stream = 5
            [metrics]
            write_mode = "low_wear"
            [security]
            allowed_hosts = ["pool.example.com"]
            """
        )
    )
    assert {
        "server.port": config.server.port,
        "server.log_level": config.server.log_level,
        "server.access_log": config.server.access_log,
        "database.synchronous": config.database.synchronous,
        "database.worker_threads": config.database.worker_threads,
        "models.expose_mode": config.models.expose_mode,
        "models.collapse_models": config.models.collapse_models,
        "routing.near_tie_epsilon": config.routing.near_tie_epsilon,
        "routing.max_retries_before_stream": config.routing.max_retries_before_stream,
        "metrics.write_mode": config.metrics.write_mode,
        "security.allowed_hosts": config.security.allowed_hosts,
    } == {
        "server.port": 8080,
        "server.log_level": "DEBUG",
        "server.access_log": False,
        "database.synchronous": "FULL",
        "database.worker_threads": 2,
        "models.expose_mode": "healthy_union",
        "models.collapse_models": True,
        "routing.near_tie_epsilon": 0.0,
        "routing.max_retries_before_stream": 5,
        "metrics.write_mode": "low_wear",
        "security.allowed_hosts": ("pool.example.com",),
    }


def test_enum_values_are_case_insensitive() -> None:
    assert parse({"server": {"log_level": "warning"}}).server.log_level == "WARNING"


# --- wrong types ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("8080", 'expected an integer, got string "8080"'),
        (True, "expected an integer, got boolean true"),
        (8080.0, "expected an integer, got float 8080.0"),
        ([8080], "expected an integer, got an array"),
    ],
    ids=["string", "bool", "float", "array"],
)
def test_port_of_wrong_type_is_rejected(value: object, fragment: str) -> None:
    problem = only_problem({"server": {"port": value}})
    assert str(problem) == f"server.port: {fragment}"


def test_bool_where_float_expected_is_rejected() -> None:
    problem = only_problem({"routing": {"near_tie_epsilon": True}})
    assert str(problem) == "routing.near_tie_epsilon: expected a number, got boolean true"


def test_string_where_bool_expected_is_rejected() -> None:
    problem = only_problem({"server": {"access_log": "yes"}})
    assert str(problem) == 'server.access_log: expected true or false, got string "yes"'


def test_string_where_string_list_expected_is_rejected() -> None:
    problem = only_problem({"security": {"cors_origins": "https://app.example.com"}})
    assert problem.path == "security.cors_origins"
    assert "expected an array of strings" in problem.message


def test_non_string_item_in_string_list_is_rejected() -> None:
    problem = only_problem({"security": {"allowed_hosts": ["ok.example.com", 7]}})
    assert str(problem) == "security.allowed_hosts: item 1: expected a string, got integer 7"


def test_section_that_is_not_a_table_is_rejected() -> None:
    problem = only_problem({"server": "0.0.0.0"})
    assert str(problem) == 'server: expected a table, got string "0.0.0.0"'


def test_empty_string_for_required_string_is_rejected() -> None:
    problem = only_problem({"dashboard": {"theme": "  "}})
    assert str(problem) == "dashboard.theme: must not be empty"


def test_url_as_server_host_is_rejected() -> None:
    problem = only_problem({"server": {"host": "http://0.0.0.0"}})
    assert problem.path == "server.host"
    assert "expected a host name or IP address" in problem.message


# --- ranges and enums ----------------------------------------------------------------


def test_port_above_65535_is_rejected() -> None:
    problem = only_problem({"server": {"port": 70000}})
    assert str(problem) == "server.port: must be between 0 and 65535, got 70000"


def test_near_tie_epsilon_above_one_is_rejected() -> None:
    problem = only_problem({"routing": {"near_tie_epsilon": 2}})
    assert str(problem) == "routing.near_tie_epsilon: must be between 0 and 1, got 2"


def test_zero_metrics_flush_interval_is_rejected() -> None:
    problem = only_problem({"metrics": {"flush_interval_s": 0}})
    assert str(problem) == "metrics.flush_interval_s: must be between 1 and 600, got 0 seconds"


def test_three_database_worker_threads_are_rejected() -> None:
    problem = only_problem({"database": {"worker_threads": 3}})
    assert str(problem) == "database.worker_threads: must be between 1 and 2, got 3"


def test_negative_limit_is_rejected() -> None:
    problem = only_problem({"limits": {"five_hour_microdollars": -1}})
    assert str(problem) == "limits.five_hour_microdollars: must be at least 0, got -1"


def test_bad_enum_value_names_every_allowed_value() -> None:
    problem = only_problem({"server": {"log_level": "verbose"}})
    assert str(problem) == (
        'server.log_level: expected one of "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", '
        'got string "verbose"'
    )


def test_routing_strategy_other_than_quota_fair_is_rejected() -> None:
    problem = only_problem({"routing": {"strategy": "round_robin"}})
    assert problem.path == "routing.strategy"
    assert '"quota_fair"' in problem.message


def test_upstream_keepalive_above_connections_is_rejected() -> None:
    problem = only_problem({"upstream": {"max_connections": 10, "max_keepalive": 20}})
    assert str(problem) == "upstream.max_keepalive: must be at most max_connections (10), got 20"


def test_network_keepalive_above_connections_is_rejected() -> None:
    problem = only_problem({"network": {"max_keepalive": 11}})
    assert str(problem) == "network.max_keepalive: must be at most max_connections (10), got 11"


def test_max_connections_alone_takes_the_unset_max_keepalive_with_it() -> None:
    config = parse(
        {
            "upstream": {"max_connections": 10},
            "network": {"max_connections": 2},
            "providers": {"p": {"base_url": "https://p.test/v1", "max_connections": 5}},
        }
    )
    assert config.upstream.http.max_keepalive == 10
    assert config.network.max_keepalive == 2
    assert config.providers["p"].http.max_keepalive == 5


def test_keepalive_equal_to_connections_is_accepted() -> None:
    config = parse({"network": {"max_connections": 4, "max_keepalive": 4}})
    assert config.network.max_keepalive == 4


def test_storing_request_content_is_rejected() -> None:
    problem = only_problem({"dashboard": {"store_request_content": True}})
    assert problem.path == "dashboard.store_request_content"
    assert "must be false" in problem.message


def test_bad_upstream_base_url_is_rejected() -> None:
    problem = only_problem({"upstream": {"base_url": "opencode.ai/zen/go/v1"}})
    assert problem.path == "upstream.base_url"
    assert "expected an absolute http:// or https:// URL" in problem.message


def test_upstream_base_url_loses_its_trailing_slash() -> None:
    config = parse({"upstream": {"base_url": "https://gw.example.com/v1/"}})
    assert config.upstream.base_url == "https://gw.example.com/v1"


# --- every problem at once -----------------------------------------------------------


def test_every_problem_is_reported_in_one_error() -> None:
    doc = with_provider(
        server={"port": "eighty"},
        limits={"weekly_microdollars": -5},
    )
    doc["providers"]["openai"]["accounts"][0]["api_key"] = "your-api-key"
    assert sorted(p.path for p in problems_of(doc)) == [
        "limits.weekly_microdollars",
        "providers.openai.accounts[0].api_key",
        "server.port",
    ]


def test_config_error_message_lists_every_problem_one_per_line() -> None:
    with pytest.raises(ConfigError) as caught:
        parse({"server": {"port": -1}, "database": {"wal": 1}})
    assert str(caught.value).splitlines() == [
        "server.port: must be between 0 and 65535, got -1",
        "database.wal: expected true or false, got integer 1",
    ]


# --- durations -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (30, 30.0),
        (2.5, 2.5),
        ("90s", 90.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("2d", 172800.0),
        ("500ms", 0.5),
        ("1w", 604800.0),
        (" 1h 30m ", 5400.0),
        (0, 0.0),
    ],
)
def test_duration_is_accepted_as_seconds(value: object, seconds: float) -> None:
    assert parse({"models": {"refresh_interval_s": value}}).models.refresh_interval_s == seconds


@pytest.mark.parametrize("value", [30, "90s"])
def test_duration_is_stored_as_float(value: object) -> None:
    config = parse({"models": {"refresh_interval_s": value}})
    assert type(config.models.refresh_interval_s) is float


@pytest.mark.parametrize(
    "value",
    ["5 minutes", "", "-5s", "5", "1h30", True, []],
    ids=[
        "words",
        "empty",
        "negative-string",
        "unitless-string",
        "trailing-number",
        "bool",
        "array",
    ],
)
def test_malformed_duration_is_rejected_naming_the_key(value: object) -> None:
    problem = only_problem({"models": {"refresh_interval_s": value}})
    assert problem.path == "models.refresh_interval_s"
    assert 'expected seconds or a duration such as "90s"' in problem.message


def test_negative_duration_number_is_rejected() -> None:
    problem = only_problem({"models": {"refresh_interval_s": -5}})
    assert str(problem) == "models.refresh_interval_s: must be at least 0, got -5 seconds"


def test_infinite_duration_is_rejected() -> None:
    problem = only_problem({"models": {"stale_after_s": float("inf")}})
    assert problem.path == "models.stale_after_s"


# --- money ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "microdollars"),
    [
        (12000000, 12_000_000),
        ("$12", 12_000_000),
        ("$12.50", 12_500_000),
        ("$1,000", 1_000_000_000),
        ("$0.000001", 1),
        (0, 0),
    ],
)
def test_money_is_accepted_as_microdollars(value: object, microdollars: int) -> None:
    config = parse({"limits": {"five_hour_microdollars": value}})
    assert config.limits.five_hour_microdollars == microdollars


@pytest.mark.parametrize("value", [12000000, "$12.50"])
def test_money_is_stored_as_int(value: object) -> None:
    config = parse({"limits": {"five_hour_microdollars": value}})
    assert type(config.limits.five_hour_microdollars) is int


def test_money_finer_than_a_microdollar_is_rejected() -> None:
    problem = only_problem({"limits": {"five_hour_microdollars": "$0.0000001"}})
    assert str(problem) == (
        "limits.five_hour_microdollars: '$0.0000001' is finer than one microdollar"
    )


@pytest.mark.parametrize(
    "value", ["12", 1.5, True, "12 dollars"], ids=["no-dollar-sign", "float", "bool", "words"]
)
def test_malformed_money_is_rejected(value: object) -> None:
    problem = only_problem({"limits": {"five_hour_microdollars": value}})
    assert problem.path == "limits.five_hour_microdollars"
    assert "expected integer microdollars or a dollar amount" in problem.message


def test_negative_money_is_rejected() -> None:
    problem = only_problem({"limits": {"monthly_microdollars": -1}})
    assert str(problem) == "limits.monthly_microdollars: must be at least 0, got -1"


# --- server key ----------------------------------------------------------------------


def test_inline_server_key_wins_over_env() -> None:
    config = parse({"server": {"api_key": SERVER_KEY}}, {"SERVER_API_KEY": "env-key-0123456789"})
    assert config.server.api_key is not None
    assert (config.server.api_key.reveal(), config.server.key_source) == (SERVER_KEY, "inline")


def test_server_key_is_read_from_server_api_key_by_default() -> None:
    config = parse({}, {"SERVER_API_KEY": SERVER_KEY})
    assert config.server.api_key is not None
    assert (config.server.api_key.reveal(), config.server.key_source) == (
        SERVER_KEY,
        "env SERVER_API_KEY",
    )


def test_server_key_is_read_from_custom_api_key_env() -> None:
    env = {"EGGPOOL_KEY": SERVER_KEY, "SERVER_API_KEY": "other-key-0123456789"}
    config = parse({"server": {"api_key_env": "EGGPOOL_KEY"}}, env)
    assert config.server.api_key is not None
    assert (config.server.api_key.reveal(), config.server.key_source) == (
        SERVER_KEY,
        "env EGGPOOL_KEY",
    )


def test_no_server_key_means_key_source_none() -> None:
    config = parse({})
    assert (config.server.api_key, config.server.key_source) == (None, "none")


def test_server_key_is_masked_in_repr_and_str() -> None:
    config = parse({"server": {"api_key": SERVER_KEY}})
    assert SERVER_KEY not in repr(config) + str(config) + str(config.server.api_key)


@pytest.mark.parametrize(
    "key",
    ["abc1234", "a" * 513, "has space1", "key!with#symbols", "ключ-ключ-ключ"],
    ids=["7-chars", "513-chars", "space", "symbols", "non-ascii"],
)
def test_server_key_of_bad_shape_is_rejected(key: str) -> None:
    problem = only_problem({"server": {"api_key": key}})
    assert problem.path == "server.api_key"
    assert "must be 8 to 512 characters of A-Z, a-z, 0-9, '_' and '-'" in problem.message


@pytest.mark.parametrize("key", ["a" * 8, "A_b-" * 128], ids=["8-chars", "512-chars"])
def test_server_key_at_length_bounds_is_accepted(key: str) -> None:
    config = parse({"server": {"api_key": key}})
    assert config.server.api_key is not None
    assert config.server.api_key.reveal() == key


@pytest.mark.parametrize(
    "key", ["your-proxy-api-key", "your-api-key-here", "changeme", "your-local-api-key-here"]
)
def test_placeholder_server_key_is_rejected(key: str) -> None:
    problem = only_problem({"server": {"api_key": key}})
    assert problem.path == "server.api_key"
    assert "placeholder" in problem.message


@pytest.mark.parametrize("key", ["", "   "], ids=["empty", "spaces"])
def test_blank_server_key_is_rejected(key: str) -> None:
    problem = only_problem({"server": {"api_key": key}})
    assert str(problem) == "server.api_key: is blank; remove it to run without a server key"


def test_bad_server_key_from_env_is_reported_at_api_key_env() -> None:
    problem = only_problem({}, {"SERVER_API_KEY": "short"})
    assert problem.path == "server.api_key_env"
    assert problem.message.startswith("the key in SERVER_API_KEY must be 8 to 512 characters")


def test_bad_server_key_is_not_echoed() -> None:
    problem = only_problem({"server": {"api_key": "hunter2-is-my-password!"}})
    assert "hunter2" not in str(problem)


# --- paths ---------------------------------------------------------------------------


def test_database_path_defaults_under_xdg_data_home() -> None:
    config = parse({}, {"XDG_DATA_HOME": "/data", "HOME": "/home/ada"})
    assert config.database.path == "/data/eggpool/usage.sqlite3"


def test_database_path_defaults_under_home_without_xdg_data_home() -> None:
    config = parse({}, {"HOME": "/home/ada"})
    assert config.database.path == "/home/ada/.local/share/eggpool/usage.sqlite3"


def test_relative_xdg_data_home_is_ignored() -> None:
    config = parse({}, {"XDG_DATA_HOME": "data", "HOME": "/home/ada"})
    assert config.database.path == "/home/ada/.local/share/eggpool/usage.sqlite3"


def test_database_path_defaults_next_to_config_without_home() -> None:
    config = parse({}, {}, base_dir="/etc/eggpool")
    assert config.database.path == "/etc/eggpool/usage.sqlite3"


def test_relative_database_path_resolves_against_base_dir() -> None:
    config = parse({"database": {"path": "data/usage.sqlite3"}}, base_dir="/etc/eggpool")
    assert config.database.path == "/etc/eggpool/data/usage.sqlite3"


def test_absolute_database_path_ignores_base_dir() -> None:
    config = parse({"database": {"path": "/var/lib/eggpool/db"}}, base_dir="/etc/eggpool")
    assert config.database.path == "/var/lib/eggpool/db"


def test_database_path_expands_tilde_from_home() -> None:
    config = parse({"database": {"path": "~/pool/usage.sqlite3"}}, {"HOME": "/home/ada"})
    assert config.database.path == "/home/ada/pool/usage.sqlite3"


def test_in_memory_database_path_is_kept() -> None:
    config = parse({"database": {"path": ":memory:"}}, base_dir="/etc/eggpool")
    assert config.database.path == ":memory:"


def test_tilde_database_path_without_home_is_rejected() -> None:
    problem = only_problem({"database": {"path": "~/usage.sqlite3"}})
    assert str(problem) == "database.path: cannot expand '~/usage.sqlite3': HOME is not set"


def test_relative_backup_directory_resolves_against_base_dir() -> None:
    config = parse({"backup": {"directory": "backups"}}, base_dir="/etc/eggpool")
    assert config.backup.directory == "/etc/eggpool/backups"


def test_themes_dir_expands_tilde_from_home() -> None:
    config = parse({"dashboard": {"themes_dir": "~/themes"}}, {"HOME": "/home/ada"})
    assert config.dashboard.themes_dir == "/home/ada/themes"


def test_tilde_backup_directory_without_home_is_rejected() -> None:
    problem = only_problem({"backup": {"directory": "~"}})
    assert problem.path == "backup.directory"
    assert "HOME is not set" in problem.message


# --- pricing -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("per_1k", "per_million"),
    [(0.002, 2_000_000), (0.00015, 150_000), (0, 0), (15, 15_000_000_000)],
)
def test_price_per_1k_converts_exactly_to_microdollars_per_million(
    per_1k: float, per_million: int
) -> None:
    config = parse({"model_overrides": {"m": {"input_price_per_1k": per_1k}}})
    assert config.model_overrides["m"].input_per_million == per_million


def test_output_price_per_1k_is_converted() -> None:
    config = parse({"model_overrides": {"m": {"output_price_per_1k": 0.0006}}})
    assert config.model_overrides["m"].output_per_million == 600_000


def test_cache_prices_are_microdollars_per_million() -> None:
    doc = {
        "model_overrides": {
            "m": {
                "cache_read_per_million_microdollars": 30_000,
                "cache_write_per_million_microdollars": "$3.75",
            }
        }
    }
    override = parse(doc).model_overrides["m"]
    assert (override.cache_read_per_million, override.cache_write_per_million) == (
        30_000,
        3_750_000,
    )


def test_negative_price_is_rejected() -> None:
    problem = only_problem({"model_overrides": {"m": {"input_price_per_1k": -0.001}}})
    assert str(problem) == "model_overrides.m.input_price_per_1k: must be at least 0, got -0.001"


def test_pricing_aliases_are_parsed() -> None:
    config = parse(
        tomllib.loads(
            """
            [[pricing.aliases]]
            model = "glm-4.6"
            external_id = "z-ai/glm-4.6"

            [[pricing.aliases]]
            model = "kimi-k2"
            external_id = "moonshot/kimi-k2"
            catalog = "opencode_zen"
            provider = "opencode-go"
            """
        )
    )
    assert [attrs.asdict(a) for a in config.pricing.aliases] == [
        {
            "model": "glm-4.6",
            "external_id": "z-ai/glm-4.6",
            "catalog": "openrouter",
            "provider": None,
        },
        {
            "model": "kimi-k2",
            "external_id": "moonshot/kimi-k2",
            "catalog": "opencode_zen",
            "provider": "opencode-go",
        },
    ]


def test_pricing_alias_with_unknown_catalog_is_rejected() -> None:
    doc = {"pricing": {"aliases": [{"model": "m", "external_id": "x/m", "catalog": "litellm"}]}}
    problem = only_problem(doc)
    assert str(problem) == "pricing.aliases[0].catalog: unknown catalog 'litellm'"


def test_pricing_alias_without_external_id_is_rejected() -> None:
    problem = only_problem({"pricing": {"aliases": [{"model": "m"}]}})
    assert str(problem) == "pricing.aliases[0]: needs both model and external_id"


def test_pricing_catalog_settings_are_read() -> None:
    config = parse(
        tomllib.loads(
            """
            [pricing]
            fallback = "off"
            [pricing.catalogs.openrouter]
            enabled = false
            priority = 5
            ttl_seconds = "12h"
            api_key = "sk-or-0123456789abcdef"
            options = { region = "eu" }
            """
        )
    )
    catalog = config.pricing.catalogs["openrouter"]
    assert catalog.api_key is not None
    assert (
        config.pricing.fallback,
        catalog.enabled,
        catalog.priority,
        catalog.ttl_seconds,
        catalog.api_key.reveal(),
        dict(catalog.options),
    ) == ("off", False, 5, 43200.0, "sk-or-0123456789abcdef", {"region": "eu"})


def test_pricing_catalog_options_must_be_a_table() -> None:
    problem = only_problem({"pricing": {"catalogs": {"openrouter": {"options": "eu"}}}})
    assert str(problem) == 'pricing.catalogs.openrouter.options: expected a table, got string "eu"'


# --- warnings ------------------------------------------------------------------------


def test_unknown_key_warns_with_did_you_mean() -> None:
    config = parse(with_provider(server={"prot": 8080}))
    assert warnings_at(config, "server.prot") == ['unknown key, ignored (did you mean "port"?)']


def test_unknown_key_keeps_the_default() -> None:
    assert parse(with_provider(server={"prot": 8080})).server.port == 11300


def test_unknown_section_warns() -> None:
    config = parse(with_provider(telemetry={"enabled": True}))
    assert warnings_at(config, "telemetry") == ["unknown key, ignored"]


def test_unknown_key_with_no_close_match_has_no_hint() -> None:
    config = parse(with_provider(routing={"zzz": 1}))
    assert warnings_at(config, "routing.zzz") == ["unknown key, ignored"]


def test_non_loopback_host_without_server_key_warns() -> None:
    config = parse(with_provider(server={"host": "0.0.0.0"}))
    (message,) = warnings_at(config, "server.host")
    assert message.startswith("0.0.0.0 is reachable from the network but no server key is set")


@pytest.mark.parametrize(
    ("server", "env"),
    [
        ({"host": "0.0.0.0", "api_key": SERVER_KEY}, {}),
        ({"host": "0.0.0.0"}, {"SERVER_API_KEY": SERVER_KEY}),
        ({"host": "0.0.0.0", "allow_unauthenticated": True}, {}),
        ({"host": "127.0.0.1"}, {}),
        ({"host": "127.0.0.2"}, {}),
        ({"host": "localhost"}, {}),
        ({"host": "::1"}, {}),
        ({"host": "[::1]"}, {}),
    ],
    ids=[
        "inline-key",
        "env-key",
        "allow-unauthenticated",
        "loopback",
        "loopback-127/8",
        "localhost",
        "ipv6-loopback",
        "bracketed-ipv6-loopback",
    ],
)
def test_exposure_warning_absent_when_keyed_or_loopback(
    server: dict[str, Any], env: dict[str, str]
) -> None:
    assert warnings_at(parse(with_provider(server=server), env), "server.host") == []


def test_threads_other_than_one_warns() -> None:
    config = parse(with_provider(server={"threads": 4}))
    assert warnings_at(config, "server.threads") == [
        "is ignored: EggPool serves every request from one event loop"
    ]


def test_threads_equal_to_one_does_not_warn() -> None:
    assert parse(with_provider(server={"threads": 1})).warnings == ()


def test_hard_cap_local_quota_mode_warns() -> None:
    config = parse(with_provider(routing={"local_quota_mode": "hard_cap"}))
    (message,) = warnings_at(config, "routing.local_quota_mode")
    assert "can refuse requests the provider would have served" in message


def test_top_level_dns_cache_warns_as_legacy_location() -> None:
    config = parse(with_provider(dns_cache={"max_entries": 7}))
    assert warnings_at(config, "dns_cache") == [
        "is the legacy location; move it to [network.dns_cache]"
    ]


def test_top_level_dns_cache_values_are_used() -> None:
    config = parse(with_provider(dns_cache={"max_entries": 7}))
    assert config.network.dns_cache.max_entries == 7


def test_network_dns_cache_wins_over_top_level_dns_cache() -> None:
    config = parse(
        with_provider(dns_cache={"max_entries": 7}, network={"dns_cache": {"max_entries": 9}})
    )
    assert config.network.dns_cache.max_entries == 9


def test_top_level_dns_cache_next_to_network_dns_cache_warns_ignored() -> None:
    config = parse(
        with_provider(dns_cache={"max_entries": 7}, network={"dns_cache": {"max_entries": 9}})
    )
    assert warnings_at(config, "dns_cache") == ["is ignored: [network.dns_cache] is also set"]


def test_warnings_do_not_fail_the_parse() -> None:
    config = parse(with_provider(server={"threads": 2, "prot": 1}, bogus={}))
    assert {w.path for w in config.warnings} == {"server.threads", "server.prot", "bogus"}


# --- follow-ups ---------------------------------------------------------------------


def test_money_beyond_float_precision_is_kept_exactly() -> None:
    config = parse({"limits": {"monthly_microdollars": 9_007_199_254_740_993}})
    assert config.limits.monthly_microdollars == 9_007_199_254_740_993


def test_pricing_catalog_key_can_come_from_the_environment() -> None:
    doc = {"pricing": {"catalogs": {"openrouter": {"api_key_env": "OR_KEY"}}}}
    key = parse(doc, {"OR_KEY": "sk-or-0123456789"}).pricing.catalogs["openrouter"].api_key
    assert key is not None
    assert key.reveal() == "sk-or-0123456789"


def test_pricing_catalog_key_variable_must_be_set() -> None:
    doc = {"pricing": {"catalogs": {"openrouter": {"api_key_env": "OR_KEY"}}}}
    assert str(only_problem(doc)) == (
        "pricing.catalogs.openrouter.api_key_env: variable OR_KEY is not set"
    )


def test_pricing_catalog_key_takes_one_source() -> None:
    doc = {"pricing": {"catalogs": {"openrouter": {"api_key": "a", "api_key_env": "B"}}}}
    assert only_problem(doc).path == "pricing.catalogs.openrouter.api_key"
