"""The declared sections of the config: `[server]`, `[database]`, `[routing]` and the rest.

Each class is one TOML table; each `setting()` field is one key with its
default, range and one line of documentation (see `_settings.py`). Fields
without `setting()` are computed by `parse_config` (resolved secrets and
paths) and are not keys.
"""

from __future__ import annotations

import enum
import types
from collections.abc import Mapping

import attrs

from eggpool.core._config_model import HttpSettings
from eggpool.core._settings import Microdollars, Seconds, setting
from eggpool.core.secret import Secret

__all__ = [
    "CATALOG_URLS",
    "DEFAULT_UPSTREAM_URL",
    "BackupConfig",
    "DashboardConfig",
    "DatabaseConfig",
    "DnsCacheConfig",
    "ExposeMode",
    "LimitsConfig",
    "LocalQuotaMode",
    "LogLevel",
    "MetricsConfig",
    "ModelsConfig",
    "NetworkConfig",
    "PricingAlias",
    "PricingCatalog",
    "PricingConfig",
    "PricingFallback",
    "RoutingConfig",
    "RoutingStrategy",
    "SecurityConfig",
    "ServerConfig",
    "Synchronous",
    "UpstreamConfig",
    "WriteMode",
]

DEFAULT_UPSTREAM_URL = "https://opencode.ai/zen/go/v1"
CATALOG_URLS = {
    "openrouter": "https://openrouter.ai/api/v1",
    "opencode_zen": "https://opencode.ai/zen/v1",
}


class LogLevel(enum.StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


class Synchronous(enum.StrEnum):
    OFF = "OFF"
    NORMAL = "NORMAL"
    FULL = "FULL"
    EXTRA = "EXTRA"


class ExposeMode(enum.StrEnum):
    UNION = "union"
    INTERSECTION = "intersection"
    HEALTHY_UNION = "healthy_union"


class RoutingStrategy(enum.StrEnum):
    QUOTA_FAIR = "quota_fair"


class LocalQuotaMode(enum.StrEnum):
    SCORE_ONLY = "score_only"
    HARD_CAP = "hard_cap"


class PricingFallback(enum.StrEnum):
    GENERIC_ESTIMATE = "generic_estimate"
    OFF = "off"


class WriteMode(enum.StrEnum):
    IMMEDIATE = "immediate"
    BALANCED = "balanced"
    LOW_WEAR = "low_wear"


# --- sections -----------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ServerConfig:
    """`[server]`. `api_key` is resolved: inline `api_key`, else `$<api_key_env>`, else None."""

    host: str = setting("127.0.0.1", "Address to listen on.", nonempty=True)
    port: int = setting(11300, "TCP port to listen on.", lo=0, hi=65535)
    api_key: Secret | None = None
    api_key_env: str = setting(
        "SERVER_API_KEY", "Environment variable holding the server key.", nonempty=True
    )
    key_source: str = "none"
    log_level: LogLevel = setting(LogLevel.INFO, "Least severe log level written.")
    access_log: bool = setting(True, "Write one log line per request.")
    threads: int = setting(1, "Accepted for compatibility; EggPool runs one loop.", lo=1, hi=64)
    allow_unauthenticated: bool = setting(
        False, "Allow listening beyond loopback without a server key."
    )


@attrs.frozen(kw_only=True)
class UpstreamConfig:
    """`[upstream]`: the legacy flat accounts' provider, and its HTTP client settings."""

    base_url: str = DEFAULT_UPSTREAM_URL
    http: HttpSettings = HttpSettings()


@attrs.frozen(kw_only=True)
class DatabaseConfig:
    path: str = "usage.sqlite3"  # resolved by parse_config, see _default_db_path
    busy_timeout_ms: int = setting(5000, "How long a writer waits for a lock (ms).", lo=0)
    wal: bool = setting(True, "Use SQLite's write-ahead log.")
    synchronous: Synchronous = setting(Synchronous.NORMAL, "SQLite synchronous pragma.")
    worker_threads: int = setting(1, "Database worker threads.", lo=1, hi=2)


@attrs.frozen(kw_only=True)
class ModelsConfig:
    refresh_interval_s: Seconds = setting(
        Seconds(300.0), "Seconds between model-list refreshes (0: never)."
    )
    expose_mode: ExposeMode = setting(ExposeMode.UNION, "Which models /v1/models lists.")
    startup_refresh: bool = setting(True, "Refresh the catalog at startup.")
    stale_after_s: Seconds = setting(Seconds(7200.0), "Age after which a catalog counts as stale.")
    allow_stale_catalog: bool = setting(True, "Start even when the stored catalog is stale.")
    ping_retain_days: int = setting(7, "Days of model-list pings kept.", lo=1)
    collapse_models: bool = setting(
        False, "Expose one unsuffixed id per model instead of model/provider ids."
    )


@attrs.frozen(kw_only=True)
class RoutingConfig:
    strategy: RoutingStrategy = setting(RoutingStrategy.QUOTA_FAIR, "Routing strategy.")
    near_tie_epsilon: float = setting(
        0.1, "Score difference under which accounts count as tied.", lo=0, hi=1
    )
    max_retries_before_stream: int = setting(
        3, "Failovers allowed before the first byte reaches the client.", lo=0, hi=20
    )
    unknown_request_reservation_microdollars: Microdollars = setting(
        Microdollars(1_000_000), "Reservation for a request whose cost cannot be estimated."
    )
    inflight_penalty: int = setting(100_000, "Score penalty per in-flight request.", lo=0)
    health_penalty: int = setting(500_000, "Score penalty for a degraded account.", lo=0)
    randomize_near_ties: bool = setting(True, "Break near ties with request entropy.")
    quota_exhausted_cooldown_seconds: Seconds = setting(
        Seconds(300.0), "Cooldown after a quota-exhausted answer without Retry-After."
    )
    local_quota_mode: LocalQuotaMode = setting(
        LocalQuotaMode.SCORE_ONLY, "Whether local over-quota estimates exclude an account."
    )
    session_affinity: bool = setting(
        True, "Keep a conversation on one account so its provider prompt cache keeps hitting."
    )
    session_headers: tuple[str, ...] = setting(
        (
            "x-claude-code-session-id",
            "x-opencode-session",
            "session-id",
            "session_id",
            "x-session-id",
            "x-session-affinity",
        ),
        "Request headers naming a client session, first match wins.",
    )


@attrs.frozen(kw_only=True)
class LimitsConfig:
    """Per-account spend capacity of each rolling window (times the account's weight)."""

    five_hour_microdollars: Microdollars = setting(
        Microdollars(12_000_000), "Rolling 5-hour capacity."
    )
    weekly_microdollars: Microdollars = setting(
        Microdollars(30_000_000), "Rolling 7-day capacity."
    )
    monthly_microdollars: Microdollars = setting(
        Microdollars(60_000_000), "Rolling 30-day capacity."
    )


@attrs.frozen(kw_only=True)
class PricingCatalog:
    """An external price catalog (`[pricing.catalogs.<name>]`)."""

    name: str
    enabled: bool = setting(True, "Use this catalog for models without configured prices.")
    priority: int = setting(100, "Lower numbers are consulted first.", lo=0)
    ttl_seconds: Seconds = setting(Seconds(86400.0), "How long a fetched catalog is reused.")
    base_url: str = ""
    api_key: Secret | None = None
    options: Mapping[str, object] = attrs.field(factory=lambda: types.MappingProxyType({}))


@attrs.frozen(kw_only=True)
class PricingAlias:
    """Maps a (provider, model) to a price catalog's model id (`[[pricing.aliases]]`)."""

    model: str
    external_id: str
    catalog: str = "openrouter"
    provider: str | None = None


@attrs.frozen(kw_only=True)
class PricingConfig:
    fallback: PricingFallback = PricingFallback.GENERIC_ESTIMATE
    catalogs: Mapping[str, PricingCatalog] = attrs.field(
        factory=lambda: types.MappingProxyType(
            {name: PricingCatalog(name=name, base_url=url) for name, url in CATALOG_URLS.items()}
        )
    )
    aliases: tuple[PricingAlias, ...] = ()


@attrs.frozen(kw_only=True)
class DashboardConfig:
    enabled: bool = setting(True, "Serve the dashboard and stats API.")
    public: bool = setting(True, "Serve dashboard pages without the server key.")
    theme: str = setting("Cyber Red", "Default theme name.", nonempty=True)
    themes_dir: str | None = setting(None, "Extra directory of theme files.")
    retain_request_stats_days: int = setting(30, "Days of per-request rows kept.", lo=1)
    retain_event_days: int = setting(90, "Days of account events kept.", lo=1)
    store_request_content: bool = setting(False, "Must stay false: content is never stored.")
    refresh_interval_s: Seconds = setting(Seconds(60.0), "Fallback page refresh interval.")


@attrs.frozen(kw_only=True)
class SecurityConfig:
    allowed_hosts: tuple[str, ...] = setting((), "Accepted Host headers (empty: any).")
    cors_origins: tuple[str, ...] = setting((), "Origins allowed by CORS (empty: none).")
    redact_headers: tuple[str, ...] = setting(
        ("authorization", "x-api-key"), "Headers removed from responses and logs."
    )
    persist_redacted_error_detail: bool = setting(
        False, "Store redacted upstream error bodies (bounded to 2 KiB)."
    )


@attrs.frozen(kw_only=True)
class MetricsConfig:
    write_mode: WriteMode = setting(WriteMode.BALANCED, "Analytics write buffering.")
    flush_interval_s: Seconds = setting(
        Seconds(30.0), "How often buffered analytics are written.", lo=1, hi=600
    )
    max_buffered_events: int = setting(500, "Buffered analytics rows before a flush.", lo=1)
    timeseries_bucket_s: Seconds = setting(
        Seconds(60.0), "Width of one timeseries bucket.", lo=10, hi=3600
    )
    trace_sample_rate: float = setting(1.0, "Share of routing traces stored.", lo=0, hi=1)
    aggregate_only: bool = setting(False, "Store rollups only, not per-request analytics.")
    rollup_retain_days: int = setting(90, "Days of rollups kept.", lo=1)
    cleanup_interval_s: Seconds = setting(
        Seconds(86400.0), "How often retention cleanup runs.", lo=60
    )
    cleanup_max_rows_per_pass: int = setting(5000, "Rows deleted per cleanup pass.", lo=1)


@attrs.frozen(kw_only=True)
class BackupConfig:
    enabled: bool = setting(True, "Take automatic backups.")
    interval_s: Seconds = setting(Seconds(86400.0), "Time between backups.", lo=60)
    retain_count: int = setting(14, "Backups kept.", lo=1)
    startup_delay_s: Seconds = setting(Seconds(300.0), "Delay before the first backup.")
    directory: str | None = setting(None, "Backup directory (default ~/backups/eggpool).")
    include_env: bool = setting(True, "Include the environment file in backups.")


@attrs.frozen(kw_only=True)
class DnsCacheConfig:
    enabled: bool = setting(True, "Cache DNS answers in memory.")
    max_entries: int = setting(50, "Most cached host names.", lo=1)
    positive_ttl_seconds: Seconds = setting(Seconds(300.0), "How long an answer is reused.")
    negative_ttl_seconds: Seconds = setting(Seconds(30.0), "How long a failure is remembered.")
    stale_if_error_seconds: Seconds = setting(
        Seconds(3600.0), "How long an expired answer serves while lookups fail."
    )
    prefer_ipv6: bool = setting(False, "Try IPv6 addresses first.")
    lookup_timeout_seconds: Seconds = setting(Seconds(5.0), "Timeout of one lookup.")


@attrs.frozen(kw_only=True)
class NetworkConfig:
    """`[network]`: the shared client for side traffic (price catalogs, update checks)."""

    connect_timeout_s: Seconds = setting(Seconds(10.0), "Connect timeout.")
    read_timeout_s: Seconds = setting(Seconds(30.0), "Read timeout.")
    max_connections: int = setting(10, "Most open connections.", lo=1)
    max_keepalive: int = setting(4, "Most idle connections kept.", lo=0)
    keepalive_expiry_s: Seconds = setting(Seconds(90.0), "Idle connection lifetime.")
    dns_cache: DnsCacheConfig = DnsCacheConfig()
