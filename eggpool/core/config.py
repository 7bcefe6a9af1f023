"""The configuration model: a frozen tree built by a pure `parse_config(mapping, env)`.

Theory of operation: the CLI reads `config.toml` (tomllib) and the process
environment, and hands both to `parse_config`, which returns a `Config` or
raises `ConfigError` listing every problem with its key path
(`providers.openai.accounts[1].api_key_env: variable OPENAI_KEY_2 is not
set`). Nothing here reads files or the environment itself: secrets named by
`api_key_env`, `value_env`, `url_env` and `proxy_url_env` are looked up in
the `env` mapping passed in, so tests and `eggpool simulate` can hand in
any environment they like.

The file format, key names and defaults are the reference system's
(`[server]`, `[providers.<id>]`, `[[providers.<id>.accounts]]`, the legacy
flat `[[accounts]]` ...), so an existing file works unchanged. Deliberate
differences, each documented in docs/configuration.md:

- `server.host` defaults to 127.0.0.1: nothing is exposed beyond the machine
  until the operator says so (secure by default).
- Unknown keys are warnings, not errors, each naming the closest known key.
- Durations and money also accept strings (`"5m"`, `"$12.50"`).
- Relative paths (`database.path`, `backup.directory`, `dashboard.themes_dir`)
  resolve against the config file's directory, not the working directory,
  so a service started from anywhere finds the same files.

Simple sections are declared with `setting()` fields (see `_settings.py`);
providers, accounts, proxies and overrides, which carry cross-key rules,
live in `_config_providers.py`.
"""

from __future__ import annotations

import ipaddress
import re
import types
from collections.abc import Iterator, Mapping
from pathlib import PurePosixPath
from typing import TypeVar

import attrs

from eggpool.core._config_accounts import is_placeholder, parse_proxies
from eggpool.core._config_model import (
    AccountConfig,
    AuthConfig,
    AuthMode,
    HttpSettings,
    ModelOverride,
    ModelsEndpoint,
    ModelsMethod,
    Protocol,
    ProviderConfig,
    ProxyConfig,
    ProxyUrl,
    QuotaOffsets,
    StaticHeader,
    StaticModel,
    VerifyConfig,
)
from eggpool.core._config_providers import (
    check_base_url,
    parse_legacy_accounts,
    parse_model_overrides,
    parse_providers,
    read_http_settings,
)
from eggpool.core._config_sections import (
    CATALOG_URLS,
    DEFAULT_UPSTREAM_URL,
    BackupConfig,
    DashboardConfig,
    DatabaseConfig,
    DnsCacheConfig,
    ExposeMode,
    LimitsConfig,
    LocalQuotaMode,
    LogLevel,
    MetricsConfig,
    ModelsConfig,
    NetworkConfig,
    PricingAlias,
    PricingCatalog,
    PricingConfig,
    PricingFallback,
    RoutingConfig,
    RoutingStrategy,
    SecurityConfig,
    ServerConfig,
    Synchronous,
    UpstreamConfig,
    WriteMode,
)
from eggpool.core._settings import (
    MISSING,
    ConfigError,
    ConfigProblem,
    Microdollars,
    Problems,
    Seconds,
    Table,
    describe,
    join_path,
    read_section,
)
from eggpool.core.secret import Secret

__all__ = [
    "AccountConfig",
    "AuthConfig",
    "AuthMode",
    "BackupConfig",
    "Config",
    "ConfigError",
    "ConfigProblem",
    "DashboardConfig",
    "DatabaseConfig",
    "DnsCacheConfig",
    "ExposeMode",
    "HttpSettings",
    "LimitsConfig",
    "LocalQuotaMode",
    "LogLevel",
    "MetricsConfig",
    "Microdollars",
    "ModelOverride",
    "ModelsConfig",
    "ModelsEndpoint",
    "ModelsMethod",
    "NetworkConfig",
    "PricingAlias",
    "PricingCatalog",
    "PricingConfig",
    "PricingFallback",
    "Protocol",
    "ProviderConfig",
    "ProxyConfig",
    "ProxyUrl",
    "QuotaOffsets",
    "RoutingConfig",
    "RoutingStrategy",
    "Seconds",
    "SecurityConfig",
    "ServerConfig",
    "StaticHeader",
    "StaticModel",
    "Synchronous",
    "UpstreamConfig",
    "VerifyConfig",
    "WriteMode",
    "is_loopback",
    "parse_config",
    "read_config",
]

_SERVER_KEY = re.compile(r"[A-Za-z0-9_-]{8,512}")


@attrs.frozen(kw_only=True)
class Config:
    """The whole configuration. `warnings` lists what was accepted but looks wrong."""

    server: ServerConfig = ServerConfig()
    upstream: UpstreamConfig = UpstreamConfig()
    database: DatabaseConfig = DatabaseConfig()
    models: ModelsConfig = ModelsConfig()
    routing: RoutingConfig = RoutingConfig()
    limits: LimitsConfig = LimitsConfig()
    pricing: PricingConfig = PricingConfig()
    dashboard: DashboardConfig = DashboardConfig()
    security: SecurityConfig = SecurityConfig()
    metrics: MetricsConfig = MetricsConfig()
    backup: BackupConfig = BackupConfig()
    network: NetworkConfig = NetworkConfig()
    proxies: Mapping[str, ProxyConfig] = attrs.field(factory=lambda: types.MappingProxyType({}))
    providers: Mapping[str, ProviderConfig] = attrs.field(
        factory=lambda: types.MappingProxyType({})
    )
    model_overrides: Mapping[str, ModelOverride] = attrs.field(
        factory=lambda: types.MappingProxyType({})
    )
    warnings: tuple[ConfigProblem, ...] = ()

    @property
    def accounts(self) -> tuple[AccountConfig, ...]:
        """Every account of every provider, in file order."""
        return tuple(self._iter_accounts())

    def _iter_accounts(self) -> Iterator[AccountConfig]:
        for provider in self.providers.values():
            yield from provider.accounts


# --- parsing ------------------------------------------------------------------------


def parse_config(
    mapping: Mapping[str, object], env: Mapping[str, str], *, base_dir: str | None = None
) -> Config:
    """Build a `Config` from a parsed TOML document and an environment.

    `base_dir` is the config file's directory; relative paths resolve against
    it. Raises `ConfigError` listing every problem; anything else raised is a
    bug.
    """
    problems = Problems()
    config = read_config(mapping, env, problems, base_dir=base_dir)
    if problems.errors:
        raise ConfigError(problems.errors)
    return config


def read_config(
    mapping: Mapping[str, object],
    env: Mapping[str, str],
    problems: Problems,
    *,
    base_dir: str | None = None,
) -> Config:
    """Like `parse_config`, but record errors in `problems` instead of raising.

    Where a value is bad the result holds its default. `problems.asked` ends
    up holding every key path the parser looked for, which is how the tests
    check that the example config and docs cover every key.
    """
    root = Table(mapping, "", problems)
    server = _parse_server(root.table("server"), env)
    upstream_table = root.table("upstream")
    upstream_url = check_base_url(
        upstream_table,
        "base_url",
        upstream_table.str_("base_url", DEFAULT_UPSTREAM_URL),
    )
    upstream = UpstreamConfig(
        base_url=upstream_url or DEFAULT_UPSTREAM_URL,
        http=read_http_settings(upstream_table),
    )
    upstream_table.finish()
    database = _parse_database(root.table("database"), env, base_dir)
    models = _section(ModelsConfig, root, "models")
    routing = _section(RoutingConfig, root, "routing")
    limits = _section(LimitsConfig, root, "limits")
    pricing = _parse_pricing(root.table("pricing"), env)
    dashboard = _parse_dashboard(root.table("dashboard"), env, base_dir)
    security = _section(SecurityConfig, root, "security")
    metrics = _section(MetricsConfig, root, "metrics")
    backup_table = root.table("backup")
    backup = read_section(BackupConfig, backup_table)
    if backup.directory is not None:
        directory = _resolve_path(backup_table, "directory", backup.directory, env, base_dir)
        backup = attrs.evolve(backup, directory=directory)
    backup_table.finish()
    network = _parse_network(root)
    proxies = parse_proxies(root, env)
    account_names: dict[str, str] = {}
    providers = parse_providers(root, env, proxies, account_names)
    if "accounts" in root:
        if providers or "providers" in root:
            root.error(
                "accounts",
                "the legacy flat [[accounts]] list cannot be combined with [providers]; "
                "move these accounts under [[providers.<id>.accounts]]",
            )
        else:
            legacy = parse_legacy_accounts(
                root,
                env=env,
                proxies=proxies,
                account_names=account_names,
                base_url=upstream.base_url,
                http=upstream.http,
            )
            providers = {legacy.id: legacy}
    overrides = parse_model_overrides(root, None)
    root.finish()
    _cross_checks(problems, server, providers, proxies, routing)
    return Config(
        server=server,
        upstream=upstream,
        database=database,
        models=models,
        routing=routing,
        limits=limits,
        pricing=pricing,
        dashboard=dashboard,
        security=security,
        metrics=metrics,
        backup=backup,
        network=network,
        proxies=types.MappingProxyType(proxies),
        providers=types.MappingProxyType(providers),
        model_overrides=types.MappingProxyType(overrides),
        warnings=tuple(problems.warnings),
    )


_S = TypeVar("_S")


def _section(cls: type[_S], root: Table, key: str) -> _S:
    table = root.table(key)
    section = read_section(cls, table)
    table.finish()
    return section


def _parse_server(table: Table, env: Mapping[str, str]) -> ServerConfig:
    inline = table.read("api_key", str | None, None)
    server = read_section(ServerConfig, table, api_key=None, key_source="none")
    table.finish()
    if "://" in server.host or any(ch.isspace() for ch in server.host):
        table.error("host", f"expected a host name or IP address, got {server.host!r}")
    if server.threads != 1:
        table.warn("threads", "is ignored: EggPool serves every request from one event loop")
    if inline is not None:
        key, value, source = "api_key", inline, "inline"
    elif server.api_key_env in env:
        key, value, source = "api_key_env", env[server.api_key_env], f"env {server.api_key_env}"
    else:
        return server
    where = "" if key == "api_key" else f"the key in {server.api_key_env} "
    if not value.strip():
        table.error(key, where + "is blank; remove it to run without a server key")
    elif is_placeholder(value):
        table.error(key, where + "is a placeholder from an example, not a real key")
    elif not _SERVER_KEY.fullmatch(value):
        table.error(key, where + "must be 8 to 512 characters of A-Z, a-z, 0-9, '_' and '-'")
    else:
        return attrs.evolve(server, api_key=Secret(value), key_source=source)
    return server


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _parse_database(table: Table, env: Mapping[str, str], base_dir: str | None) -> DatabaseConfig:
    raw_path = table.str_("path")
    database = read_section(DatabaseConfig, table, path="")
    table.finish()
    if raw_path is None:
        return attrs.evolve(database, path=_default_db_path(env, base_dir))
    path = _resolve_path(table, "path", raw_path, env, base_dir)
    return attrs.evolve(database, path=path)


def _default_db_path(env: Mapping[str, str], base_dir: str | None) -> str:
    data_home = env.get("XDG_DATA_HOME", "")
    if not data_home.startswith("/"):
        home = env.get("HOME", "")
        if not home.startswith("/"):
            return str(PurePosixPath(base_dir or ".") / "usage.sqlite3")
        data_home = str(PurePosixPath(home) / ".local" / "share")
    return str(PurePosixPath(data_home) / "eggpool" / "usage.sqlite3")


def _resolve_path(
    table: Table, key: str, raw: str, env: Mapping[str, str], base_dir: str | None
) -> str:
    """Expand `~` from `HOME` and anchor relative paths at the config file's directory."""
    if raw == ":memory:":
        return raw
    text = raw
    if text == "~" or text.startswith("~/"):
        home = env.get("HOME")
        if not home:
            table.error(key, f"cannot expand {raw!r}: HOME is not set")
            return raw
        text = home + text[1:]
    path = PurePosixPath(text)
    if not path.is_absolute() and base_dir is not None:
        path = PurePosixPath(base_dir) / path
    return str(path)


def _parse_pricing(table: Table, env: Mapping[str, str]) -> PricingConfig:
    fallback = table.read("fallback", PricingFallback, PricingFallback.GENERIC_ESTIMATE)
    catalogs_table = table.table("catalogs")
    catalogs = {}
    for name, default_url in CATALOG_URLS.items():
        sub = catalogs_table.table(name)
        raw_url = sub.str_("base_url", default_url)
        base_url = check_base_url(sub, "base_url", raw_url) or default_url
        api_key = _catalog_key(sub, env)
        options = sub.take("options")
        if not isinstance(options, Mapping):
            if options is not MISSING:
                sub.error("options", f"expected a table, got {describe(options)}")
            options = {}
        catalogs[name] = read_section(
            PricingCatalog,
            sub,
            name=name,
            base_url=base_url,
            api_key=api_key,
            options=types.MappingProxyType(dict(options)),
        )
        sub.finish()
    catalogs_table.finish()
    aliases = []
    for alias_table in table.tables("aliases"):
        model = alias_table.str_("model")
        external_id = alias_table.str_("external_id")
        catalog = alias_table.str_("catalog", "openrouter")
        provider = alias_table.str_("provider")
        alias_table.finish()
        if model is None or external_id is None:
            alias_table.error(None, "needs both model and external_id")
            continue
        if catalog not in CATALOG_URLS:
            alias_table.error("catalog", f"unknown catalog {catalog!r}")
            continue
        aliases.append(
            PricingAlias(model=model, external_id=external_id, catalog=catalog, provider=provider)
        )
    table.finish()
    return PricingConfig(
        fallback=fallback, catalogs=types.MappingProxyType(catalogs), aliases=tuple(aliases)
    )


def _catalog_key(table: Table, env: Mapping[str, str]) -> Secret | None:
    """A price catalog's optional key: inline `api_key` or `$<api_key_env>`."""
    inline = table.read("api_key", str | None, None)
    env_name = table.str_("api_key_env")
    if inline is not None and env_name is not None:
        table.error("api_key", "set either api_key or api_key_env, not both")
        return None
    if env_name is not None:
        if env_name not in env:
            table.error("api_key_env", f"variable {env_name} is not set")
            return None
        inline = env[env_name]
    return Secret(inline) if inline else None


def _parse_dashboard(
    table: Table, env: Mapping[str, str], base_dir: str | None
) -> DashboardConfig:
    dashboard = read_section(DashboardConfig, table)
    table.finish()
    if dashboard.store_request_content:
        table.error(
            "store_request_content",
            "must be false: EggPool never stores prompts or completions",
        )
    if dashboard.themes_dir is not None:
        themes_dir = _resolve_path(table, "themes_dir", dashboard.themes_dir, env, base_dir)
        dashboard = attrs.evolve(dashboard, themes_dir=themes_dir)
    return dashboard


def _parse_network(root: Table) -> NetworkConfig:
    table = root.table("network")
    if "dns_cache" in root:
        if "dns_cache" in table:
            root.warn("dns_cache", "is ignored: [network.dns_cache] is also set")
            root.take("dns_cache")
            dns_table = table.table("dns_cache")
        else:
            root.warn("dns_cache", "is the legacy location; move it to [network.dns_cache]")
            dns_table = root.table("dns_cache")
    else:
        dns_table = table.table("dns_cache")
    dns_cache = read_section(DnsCacheConfig, dns_table)
    dns_table.finish()
    network = read_section(NetworkConfig, table, dns_cache=dns_cache)
    unset = "max_keepalive" not in table
    table.finish()
    if unset:  # a lower max_connections alone must not make the default invalid
        return attrs.evolve(
            network, max_keepalive=min(network.max_keepalive, network.max_connections)
        )
    if network.max_keepalive > network.max_connections:
        table.error(
            "max_keepalive",
            f"must be at most max_connections ({network.max_connections}), "
            f"got {network.max_keepalive}",
        )
    return network


def _cross_checks(
    problems: Problems,
    server: ServerConfig,
    providers: Mapping[str, ProviderConfig],
    proxies: Mapping[str, ProxyConfig],
    routing: RoutingConfig,
) -> None:
    if (
        server.api_key is None
        and not server.allow_unauthenticated
        and not is_loopback(server.host)
    ):
        problems.warn(
            "server.host",
            f"{server.host} is reachable from the network but no server key is set: anyone "
            "who can reach it could spend your accounts. Set server.api_key (or "
            f"${server.api_key_env}), bind 127.0.0.1, or set "
            "server.allow_unauthenticated = true to accept the risk",
        )
    if not providers:
        problems.warn("providers", "no providers are configured: there is nothing to route to")
    elif not any(a.enabled for p in providers.values() for a in p.accounts):
        problems.warn("providers", "no account is enabled: there is nothing to route to")
    used = {a.proxy_name for p in providers.values() for a in p.accounts}
    for name in proxies:
        if name not in used:
            problems.warn(join_path("proxies", name), "is not used by any account")
    if routing.local_quota_mode is LocalQuotaMode.HARD_CAP:
        problems.warn(
            "routing.local_quota_mode",
            "hard_cap excludes accounts on local estimates alone and can refuse requests "
            "the provider would have served",
        )
