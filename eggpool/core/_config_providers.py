"""Providers and model overrides: the parts of the config with cross-key rules.

Theory of operation: each value is checked the way the upstream will see
it. A base URL must be a plain absolute http(s) URL (credentials, query
strings and fragments belong elsewhere); a request path must not repeat the
version prefix the base URL already ends with (`.../v1` + `/v1/chat/...`);
static headers must be legal HTTP tokens that neither the proxy manages
(`Host`, `Content-Length`, hop-by-hop) nor collide with the auth header.
What is legal but probably a mistake (a path for a protocol the provider
does not declare, a DISABLED models endpoint with no static models) is a
warning. Accounts and proxies are parsed by `_config_accounts`.
"""

from __future__ import annotations

import re
import types
from collections.abc import Mapping
from decimal import Decimal
from urllib.parse import urlsplit

import attrs

from eggpool.core._config_accounts import parse_account
from eggpool.core._config_model import (
    AuthConfig,
    AuthMode,
    HttpSettings,
    ModelOverride,
    ModelsEndpoint,
    ModelsMethod,
    Protocol,
    ProviderConfig,
    ProxyConfig,
    StaticHeader,
    StaticModel,
    VerifyConfig,
)
from eggpool.core._settings import (
    MISSING,
    Microdollars,
    Table,
    describe,
    duplicates,
    join_path,
    read_section,
    value_range,
)
from eggpool.core.secret import Secret

__all__ = [
    "check_base_url",
    "parse_legacy_accounts",
    "parse_model_overrides",
    "parse_providers",
    "read_http_settings",
]

_PROVIDER_ID = re.compile(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_USERINFO = re.compile(r"//.*@")  # greedy: a password may itself hold "/" or "@"
_VERSION_PREFIXES = ("/v1", "/api/v1", "/compatible-mode/v1")
_MANAGED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
        "proxy-authorization",
        "proxy-authenticate",
        "expect",
    }
)


def read_http_settings(table: Table) -> HttpSettings:
    settings = read_section(HttpSettings, table)
    if "max_keepalive" not in table:
        # Every connection stays reusable until idle for keepalive_timeout_s: closing one
        # only to open another (a TLS handshake with the provider) is pure cost, and a
        # lower max_connections alone must not make the default invalid.
        return attrs.evolve(settings, max_keepalive=settings.max_connections)
    if settings.max_keepalive > settings.max_connections:
        table.error(
            "max_keepalive",
            f"must be at most max_connections ({settings.max_connections}), "
            f"got {settings.max_keepalive}",
        )
    return settings


# --- value checks -------------------------------------------------------------------


def check_base_url(table: Table, key: str, raw: str) -> str | None:
    """Validate an absolute http(s) base URL; return it without a trailing slash."""
    problem = _base_url_problem(raw)
    if problem:
        table.error(key, problem)
        return None
    return raw.rstrip("/")


def _base_url_problem(raw: str) -> str | None:
    shown = _USERINFO.sub("//***@", raw)  # never echo credentials, whatever else is wrong
    if not raw.strip():
        return "must not be empty"
    if any(ch.isspace() for ch in raw):
        return f"must not contain whitespace: {shown!r}"
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https"):
        return f"expected an absolute http:// or https:// URL, got {shown!r}"
    if not parts.hostname:
        return f"has no host: {shown!r}"
    if parts.username is not None or parts.password is not None:
        return "must not contain credentials; put the key in the account's api_key_env"
    if parts.query or parts.fragment or "?" in raw or "#" in raw:
        return f"must not contain a query string or fragment: {shown!r}"
    try:
        parts.port  # noqa: B018 (parsing the port is the check)
    except ValueError:
        return f"has an invalid port: {shown!r}"
    return None


def _path_problem(path: str) -> str | None:
    if not path.startswith("/"):
        return f'must start with "/", got {path!r}'
    if any(ch.isspace() for ch in path) or "?" in path or "#" in path:
        return f"must be a plain path without whitespace, query or fragment, got {path!r}"
    return None


def _repeated_prefix(base_url: str, path: str) -> str | None:
    base_path = urlsplit(base_url).path.rstrip("/")
    for prefix in _VERSION_PREFIXES:
        if base_path.endswith(prefix) and (path.startswith((prefix + "/", "/v1/"))):
            return (
                f'{path!r} repeats the version prefix "{prefix}" that base_url already ends '
                f"with (requests would go to {base_url}{path})"
            )
    return None


# --- tables -------------------------------------------------------------------------


def parse_providers(
    root: Table,
    env: Mapping[str, str],
    proxies: Mapping[str, ProxyConfig],
    account_names: dict[str, str],
) -> dict[str, ProviderConfig]:
    providers: dict[str, ProviderConfig] = {}
    for provider_id, table in root.named_tables("providers"):
        provider = _parse_provider(provider_id, table, env, proxies, account_names)
        table.finish()
        if provider is not None:
            providers[provider_id] = provider
    return providers


def parse_legacy_accounts(
    root: Table,
    *,
    env: Mapping[str, str],
    proxies: Mapping[str, ProxyConfig],
    account_names: dict[str, str],
    base_url: str,
    http: HttpSettings,
) -> ProviderConfig:
    """The flat `[[accounts]]` form: accounts of provider `opencode-go` at `upstream.base_url`."""
    provider_id = "opencode-go"
    auth = AuthConfig()
    accounts = tuple(
        account
        for table in root.tables("accounts")
        if (
            account := parse_account(
                table,
                provider_id,
                auth=auth,
                env=env,
                proxies=proxies,
                account_names=account_names,
            )
        )
    )
    return ProviderConfig(
        id=provider_id,
        base_url=base_url,
        protocols=(Protocol.OPENAI, Protocol.ANTHROPIC),
        http=http,
        accounts=accounts,
        legacy=True,
    )


def _parse_provider(
    provider_id: str,
    table: Table,
    env: Mapping[str, str],
    proxies: Mapping[str, ProxyConfig],
    account_names: dict[str, str],
) -> ProviderConfig | None:
    ok = True
    if not _PROVIDER_ID.fullmatch(provider_id):
        table.error(
            None,
            "provider id must be letters and digits, optionally joined by single hyphens "
            '(like "opencode-go")',
        )
        ok = False
    declared_id = table.str_("id")
    if declared_id is not None and declared_id != provider_id:
        table.error("id", f"must equal the table name {provider_id!r}, got {declared_id!r}")
    raw_base = table.str_("base_url")
    base_url = None
    if raw_base is None:
        if "base_url" not in table:
            table.error("base_url", "is required")
    else:
        base_url = check_base_url(table, "base_url", raw_base)
    protocols = _parse_protocols(table)
    paths = {}
    explicit_paths = {}
    for protocol, key, default in (
        (Protocol.OPENAI, "openai_path", "/chat/completions"),
        (Protocol.ANTHROPIC, "anthropic_path", "/messages"),
    ):
        explicit_paths[protocol] = table.has(key)
        paths[protocol] = _read_path(table, key, default, base_url)
        if explicit_paths[protocol] and protocol not in protocols:
            table.warn(key, f'is set but "{protocol}" is not in protocols, so it is never used')
    http = read_http_settings(table)
    priority = table.read("routing_priority", int, 0, value_range(lo=0))
    auth = _parse_auth(table.table("auth"))
    if (
        Protocol.ANTHROPIC in protocols
        and auth.mode is AuthMode.API_KEY
        and auth.header.lower() == "authorization"
    ):
        # Nested keys go through join_path: `table.warn("auth.header")` would print the
        # path as one quoted key, `providers.p."auth.header"`.
        table.problems.warn(
            join_path(table.at("auth"), "header"),
            'sends the key in Authorization, but Anthropic-style APIs expect it in "x-api-key"',
        )
    headers = _parse_headers(table, auth, env)
    models_endpoint = _parse_models_endpoint(table, base_url)
    static_models = _parse_static_models(table, protocols)
    verify = _parse_verify(table.table("verify"), protocols)
    overrides = parse_model_overrides(table, protocols)
    accounts = tuple(
        account
        for account_table in table.tables("accounts")
        if (
            account := parse_account(
                account_table,
                provider_id,
                auth=auth,
                env=env,
                proxies=proxies,
                account_names=account_names,
            )
        )
    )
    if models_endpoint.method is ModelsMethod.DISABLED:
        if not static_models:
            table.problems.warn(
                join_path(table.at("models_endpoint"), "method"),
                "is DISABLED and there are no static_models: this provider exposes no models",
            )
        if verify.require_models:
            table.problems.warn(
                join_path(table.at("verify"), "require_models"),
                "is true but the models endpoint is DISABLED; set it to false",
            )
    if not accounts:
        table.warn("accounts", "this provider has no accounts, so nothing is routed to it")
    if not ok or base_url is None:
        return None
    return ProviderConfig(
        id=provider_id,
        base_url=base_url,
        protocols=protocols,
        openai_path=paths[Protocol.OPENAI],
        anthropic_path=paths[Protocol.ANTHROPIC],
        http=http,
        routing_priority=priority,
        auth=auth,
        headers=headers,
        models_endpoint=models_endpoint,
        static_models=static_models,
        verify=verify,
        model_overrides=types.MappingProxyType(overrides),
        accounts=accounts,
    )


def _parse_protocols(table: Table) -> tuple[Protocol, ...]:
    raw = table.read("protocols", tuple[str, ...], ("openai",))
    protocols: list[Protocol] = []
    for item in raw:
        try:
            protocol = Protocol(item.strip().lower())
        except ValueError:
            table.error(
                "protocols", f'unknown protocol {item!r}; expected "openai" and/or "anthropic"'
            )
            continue
        if protocol in protocols:
            table.error("protocols", f"lists {item!r} twice")
            continue
        protocols.append(protocol)
    if not raw:
        table.error("protocols", 'must list at least one of "openai", "anthropic"')
    return tuple(protocols) or (Protocol.OPENAI,)


def _read_path(table: Table, key: str, default: str, base_url: str | None) -> str:
    path: str = table.str_(key, default)
    problem = _path_problem(path) or (base_url and _repeated_prefix(base_url, path))
    if problem:
        table.error(key, problem)
        return default
    return path


def _parse_auth(table: Table) -> AuthConfig:
    mode = table.read("mode", AuthMode, AuthMode.BEARER)
    header = table.str_("header", "Authorization")
    scheme = table.read("scheme", str, "Bearer")
    table.finish()
    if not _TOKEN.fullmatch(header):
        table.error("header", f"{header!r} is not a valid HTTP header name")
        header = "Authorization"
    if header.lower() in _MANAGED_HEADERS:
        table.error("header", f"{header!r} is managed by the proxy and cannot carry the key")
        header = "Authorization"
    if mode is AuthMode.BEARER and (not scheme.strip() or any(c.isspace() for c in scheme)):
        table.error("scheme", f"must be one word such as Bearer, got {scheme!r}")
        scheme = "Bearer"
    return AuthConfig(mode=mode, header=header, scheme=scheme)


def _parse_headers(
    provider: Table, auth: AuthConfig, env: Mapping[str, str]
) -> tuple[StaticHeader, ...]:
    headers: list[StaticHeader] = []
    tables = provider.tables("headers")
    for table in tables:
        name = table.str_("name")
        value = table.read("value", str | None, None)
        value_env = table.str_("value_env")
        table.finish()
        if name is None:
            if "name" not in table:
                table.error("name", "is required")
            continue
        if not _TOKEN.fullmatch(name):
            table.error("name", f"{name!r} is not a valid HTTP header name")
            continue
        if name.lower() in _MANAGED_HEADERS:
            table.error("name", f"{name!r} is managed by the proxy and cannot be set")
            continue
        if auth.mode is not AuthMode.NONE and name.lower() == auth.header.lower():
            table.error("name", f"{name!r} collides with the auth header ({auth.mode} mode)")
            continue
        if (value is None) == (value_env is None):
            table.error(None, "set exactly one of value or value_env")
            continue
        if value_env is not None:
            value = env.get(value_env)
            if value is None:
                table.error("value_env", f"variable {value_env} is not set")
                continue
        assert value is not None
        if any(ch in value for ch in "\r\n\0"):
            table.error("value_env" if value_env else "value", "contains CR, LF or NUL")
            continue
        if auth.mode is not AuthMode.NONE and name.lower() == "authorization":
            table.warn(
                "name",
                f"a static Authorization header is sent next to the account key in {auth.header}",
            )
        headers.append(StaticHeader(name=name, value=Secret(value), from_env=value_env))
    for name in duplicates(h.name for h in headers):
        provider.error("headers", f"header {name!r} is set more than once")
    return tuple(headers)


def _parse_models_endpoint(provider: Table, base_url: str | None) -> ModelsEndpoint:
    legacy_method = provider.read("models_method", ModelsMethod | None, None)
    uses_legacy = provider.has("models_path") or legacy_method is not None
    if "models_endpoint" in provider:
        if uses_legacy:
            provider.warn(
                "models_method",
                "models_method / models_path are ignored because models_endpoint is set",
            )
        table = provider.table("models_endpoint")
        method = table.read("method", ModelsMethod, ModelsMethod.GET)
        path = _read_path(table, "path", "/models", base_url)
        raw_body = table.take("body")
        body: Mapping[str, object] | None = None
        if isinstance(raw_body, Mapping):
            body = types.MappingProxyType(dict(raw_body))
        elif raw_body is not MISSING:
            table.error("body", f"expected a table (the JSON body), got {describe(raw_body)}")
        query = _parse_query(table)
        required = table.read("required", bool, True)
        table.finish()
        if body is not None and method is not ModelsMethod.POST:
            table.warn("body", f"is only sent with method POST, not {method}")
        return ModelsEndpoint(method=method, path=path, body=body, query=query, required=required)
    if uses_legacy:
        provider.warn(
            "models_method" if legacy_method is not None else "models_path",
            "is the legacy form; prefer [providers.<id>.models_endpoint] method/path",
        )
    path = _read_path(provider, "models_path", "/models", base_url)
    return ModelsEndpoint(method=legacy_method or ModelsMethod.GET, path=path)


def _parse_query(table: Table) -> Mapping[str, str]:
    raw = table.take("query")
    query: dict[str, str] = {}
    if raw is MISSING:
        return types.MappingProxyType(query)
    if not isinstance(raw, Mapping):
        table.error("query", f"expected a table of query parameters, got {describe(raw)}")
        return types.MappingProxyType(query)
    for key, value in raw.items():
        if isinstance(value, bool):
            query[key] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            query[key] = str(value)
        else:
            table.error("query", f"parameter {key!r}: expected a string or number")
    return types.MappingProxyType(query)


def _parse_static_models(
    provider: Table, protocols: tuple[Protocol, ...]
) -> tuple[StaticModel, ...]:
    models: list[StaticModel] = []
    for table in provider.tables("static_models"):
        model_id = table.str_("id")
        display_name = table.str_("display_name")
        protocol = _model_protocol(table, protocols)
        limits = _read_limits(table)
        supports_tools = table.read("supports_tools", bool | None, None)
        supports_vision = table.read("supports_vision", bool | None, None)
        # Free-form upstream-style metadata: kept as given, never checked for unknown keys.
        metadata_table = table.table("source_metadata")
        raw_metadata = {key: metadata_table.take(key) for key in metadata_table.keys()}  # noqa: SIM118
        table.finish()
        if model_id is None:
            if "id" not in table:
                table.error("id", "is required")
            continue
        models.append(
            StaticModel(
                id=model_id,
                display_name=display_name,
                protocol=protocol,
                max_context_tokens=limits[0],
                max_input_tokens=limits[1],
                max_output_tokens=limits[2],
                supports_tools=supports_tools,
                supports_vision=supports_vision,
                source_metadata=types.MappingProxyType(raw_metadata),
            )
        )
    seen: set[str] = set()
    for model in models:
        if model.id in seen:
            provider.error("static_models", f"model id {model.id!r} is listed more than once")
        seen.add(model.id)
    return tuple(models)


def _model_protocol(table: Table, protocols: tuple[Protocol, ...]) -> Protocol | None:
    protocol: Protocol | None = table.read("protocol", Protocol | None, None)
    if protocol is not None and protocol not in protocols:
        table.error(
            "protocol",
            f'"{protocol}" is not one of this provider\'s protocols ({", ".join(protocols)})',
        )
        return None
    return protocol


def _read_limits(table: Table) -> tuple[int | None, int | None, int | None]:
    spec = value_range(lo=1)
    context = table.read("max_context_tokens", int | None, None, spec)
    max_in = table.read("max_input_tokens", int | None, None, spec)
    max_out = table.read("max_output_tokens", int | None, None, spec)
    if context is not None:
        for key, value in (("max_input_tokens", max_in), ("max_output_tokens", max_out)):
            if value is not None and value > context:
                table.error(key, f"must be at most max_context_tokens ({context}), got {value}")
    return context, max_in, max_out


def _parse_verify(table: Table, protocols: tuple[Protocol, ...]) -> VerifyConfig:
    probe_model = table.str_("probe_model")
    probe_protocol = table.read("probe_protocol", Protocol, Protocol.OPENAI)
    require_models = table.read("require_models", bool, True)
    table.finish()
    if probe_model is not None and probe_protocol not in protocols:
        table.warn("probe_protocol", f'"{probe_protocol}" is not in this provider\'s protocols')
    return VerifyConfig(
        probe_model=probe_model, probe_protocol=probe_protocol, require_models=require_models
    )


def parse_model_overrides(
    parent: Table, protocols: tuple[Protocol, ...] | None
) -> dict[str, ModelOverride]:
    """`[model_overrides."<model>"]` under the root (protocols None) or under a provider."""
    overrides: dict[str, ModelOverride] = {}
    for model_id, table in parent.named_tables("model_overrides"):
        if not model_id.strip():
            table.error(None, "model id must not be empty")
        context, max_in, max_out = _read_limits(table)
        enforce = table.read("enforce_context_limit", bool | None, None)
        if protocols is None:
            protocol = table.read("protocol", Protocol | None, None)
        else:
            protocol = _model_protocol(table, protocols)
        prices = {
            "input_per_million": _price_per_1k(table, "input_price_per_1k"),
            "output_per_million": _price_per_1k(table, "output_price_per_1k"),
            # `Microdollars | None` would be a typing.Optional (Microdollars is a NewType),
            # which `read` cannot coerce; the None default already covers an absent key.
            "cache_read_per_million": table.read(
                "cache_read_per_million_microdollars", Microdollars, None
            ),
            "cache_write_per_million": table.read(
                "cache_write_per_million_microdollars", Microdollars, None
            ),
        }
        table.finish()
        overrides[model_id] = ModelOverride(
            max_context_tokens=context,
            max_input_tokens=max_in,
            max_output_tokens=max_out,
            enforce_context_limit=enforce,
            protocol=protocol,
            **prices,
        )
    return overrides


def _price_per_1k(table: Table, key: str) -> Microdollars | None:
    """Dollars per 1,000 tokens -> integer microdollars per million tokens.

    The decimal digits as written are converted (0.00015 -> 150,000, with no
    binary-float error); a non-zero price below one microdollar per million
    tokens cannot be represented and is rejected rather than silently zeroed.
    """
    value: float | None = table.read(key, float | None, None, value_range(lo=0))
    if value is None:
        return None
    per_million = int((Decimal(repr(value)) * 1_000_000_000).to_integral_value())
    if value > 0 and per_million == 0:
        table.error(key, f"{value!r} is below one microdollar per million tokens")
        return None
    return Microdollars(per_million)
