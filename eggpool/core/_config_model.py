"""The value classes of the provider part of the config tree (data only, no parsing).

Providers own accounts; accounts may name an outbound proxy. Everything is
frozen; mappings are read-only views. Credentials are `Secret`s.
"""

from __future__ import annotations

import enum
import types
from collections.abc import Mapping

import attrs

from eggpool.core._settings import Microdollars, Seconds, setting
from eggpool.core.secret import Secret

__all__ = [
    "AccountConfig",
    "AuthConfig",
    "AuthMode",
    "HttpSettings",
    "ModelOverride",
    "ModelsEndpoint",
    "ModelsMethod",
    "Protocol",
    "ProviderConfig",
    "ProxyConfig",
    "ProxyUrl",
    "QuotaOffsets",
    "StaticHeader",
    "StaticModel",
    "VerifyConfig",
]


class Protocol(enum.StrEnum):
    """The client-facing API dialect a model is served with."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"


class AuthMode(enum.StrEnum):
    """How an account's key is presented upstream."""

    BEARER = "bearer"  # `<header>: <scheme> <key>` (Authorization: Bearer sk-...)
    API_KEY = "api_key"  # `<header>: <key>` (x-api-key: sk-ant-...)
    RAW_AUTHORIZATION = "raw_authorization"  # `<header>: <key>`, key used verbatim
    NONE = "none"  # no credentials (local Ollama)


class ModelsMethod(enum.StrEnum):
    GET = "GET"
    POST = "POST"
    DISABLED = "DISABLED"


@attrs.frozen(kw_only=True)
class HttpSettings:
    """Timeouts and connection-pool limits of one outbound HTTP client."""

    connect_timeout_s: Seconds = setting(Seconds(5.0), "TCP + TLS connect timeout.")
    read_timeout_s: Seconds = setting(
        Seconds(300.0), "Longest silence while reading a response (first byte and between chunks)."
    )
    write_timeout_s: Seconds = setting(Seconds(30.0), "Longest wait while sending a request.")
    pool_timeout_s: Seconds = setting(
        Seconds(30.0), "Longest wait for a free connection from the pool."
    )
    max_connections: int = setting(100, "Most open connections at once.", lo=1)
    max_keepalive: int = setting(
        100,
        "Most idle connections kept open for reuse (at most max_connections; unset, "
        "max_connections: a connection is closed only once idle keepalive_timeout_s).",
        lo=0,
    )
    keepalive_timeout_s: Seconds = setting(
        Seconds(30.0), "How long an idle connection is kept for reuse."
    )


@attrs.frozen(kw_only=True)
class ProxyUrl:
    """A parsed outbound proxy URL. `display()` masks the password."""

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: Secret | None = None

    def display(self) -> str:
        auth = ""
        if self.username is not None:
            auth = self.username + (":****" if self.password is not None else "") + "@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{auth}{host}:{self.port}"


@attrs.frozen(kw_only=True)
class ProxyConfig:
    """A named `[proxies.<name>]` entry. `url` is None when its variable is unset."""

    name: str
    url: ProxyUrl | None
    url_env: str | None = None


@attrs.frozen(kw_only=True)
class AuthConfig:
    mode: AuthMode = AuthMode.BEARER
    header: str = "Authorization"
    scheme: str = "Bearer"


@attrs.frozen(kw_only=True)
class StaticHeader:
    """A header sent on every upstream request of a provider; `value_env` values are secret."""

    name: str
    value: Secret
    from_env: str | None = None


@attrs.frozen(kw_only=True)
class ModelsEndpoint:
    """How a provider lists its models (`DISABLED`: rely on `static_models`)."""

    method: ModelsMethod = ModelsMethod.GET
    path: str = "/models"
    body: Mapping[str, object] | None = None
    query: Mapping[str, str] = attrs.field(factory=lambda: types.MappingProxyType({}))
    required: bool = True


@attrs.frozen(kw_only=True)
class StaticModel:
    id: str
    display_name: str | None = None
    protocol: Protocol | None = None
    max_context_tokens: int | None = None
    max_input_tokens: int | None = None
    max_output_tokens: int | None = None
    supports_tools: bool | None = None
    supports_vision: bool | None = None
    source_metadata: Mapping[str, object] = attrs.field(factory=lambda: types.MappingProxyType({}))


@attrs.frozen(kw_only=True)
class VerifyConfig:
    probe_model: str | None = None
    probe_protocol: Protocol = Protocol.OPENAI
    require_models: bool = True


@attrs.frozen(kw_only=True)
class ModelOverride:
    """Per-model limits, protocol and prices; unset fields (None) defer to the next source.

    Prices are integer microdollars per million tokens; the `*_price_per_1k`
    keys (dollars per thousand tokens) are converted exactly.
    """

    max_context_tokens: int | None = None
    max_input_tokens: int | None = None
    max_output_tokens: int | None = None
    enforce_context_limit: bool | None = None
    protocol: Protocol | None = None
    input_per_million: Microdollars | None = None
    output_per_million: Microdollars | None = None
    cache_read_per_million: Microdollars | None = None
    cache_write_per_million: Microdollars | None = None


@attrs.frozen(kw_only=True)
class QuotaOffsets:
    """Spend made outside the proxy, counted against each quota window."""

    five_hour: Microdollars = Microdollars(0)
    weekly: Microdollars = Microdollars(0)
    monthly: Microdollars = Microdollars(0)


@attrs.frozen(kw_only=True)
class AccountConfig:
    """One provider account. `api_key` is None for auth mode none and for disabled accounts
    whose key could not be resolved."""

    name: str
    provider_id: str
    api_key: Secret | None
    key_source: str  # "inline", "env NAME" or "none": shown by check-config
    enabled: bool = True
    weight: float = 1.0
    offsets: QuotaOffsets = QuotaOffsets()
    proxy: ProxyUrl | None = None
    proxy_name: str | None = None


@attrs.frozen(kw_only=True)
class ProviderConfig:
    id: str
    base_url: str
    protocols: tuple[Protocol, ...]
    openai_path: str = "/chat/completions"
    anthropic_path: str = "/messages"
    http: HttpSettings = HttpSettings()
    routing_priority: int = 0
    auth: AuthConfig = AuthConfig()
    headers: tuple[StaticHeader, ...] = ()
    models_endpoint: ModelsEndpoint = ModelsEndpoint()
    static_models: tuple[StaticModel, ...] = ()
    verify: VerifyConfig = VerifyConfig()
    model_overrides: Mapping[str, ModelOverride] = attrs.field(
        factory=lambda: types.MappingProxyType({})
    )
    accounts: tuple[AccountConfig, ...] = ()
    legacy: bool = False  # built from the flat `[[accounts]]` form
