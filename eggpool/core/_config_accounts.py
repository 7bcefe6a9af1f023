"""Accounts and outbound proxies: where credentials are resolved and checked.

Theory of operation: a credential is looked up in the environment only for
an enabled account (a disabled account may keep a stale `api_key_env`), and
is rejected when it is blank, a copied placeholder (`your-api-key`), holds a
line break, or already carries the auth scheme (`Bearer sk-...`). Account
names are unique across the whole file, case-insensitively: the dashboard,
the database and the CLI address accounts by name.

Proxy URLs follow the pproxy URI form the reference accepts
(`socks5://user:pass@host:port`, or pproxy's `socks5://host:port#user:pass`);
only the schemes our upstream client speaks are accepted (`http`, `socks5`,
`socks5h`). A `[proxies.<name>]` whose variable is unset is an error only
where an enabled account uses it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

from eggpool.core._config_model import (
    AccountConfig,
    AuthConfig,
    AuthMode,
    ProxyConfig,
    ProxyUrl,
    QuotaOffsets,
)
from eggpool.core._settings import Microdollars, Table, join_path, value_range
from eggpool.core.secret import Secret

__all__ = ["is_placeholder", "parse_account", "parse_proxies", "parse_proxy_url"]

_PLACEHOLDER = re.compile(
    r"(sk-)?your[-_].*|change-?me|replace-?me|placeholder|todo|x{3,}|\.{3}|<.*>", re.IGNORECASE
)
_PROXY_SCHEMES = ("http", "socks5", "socks5h")
_PROXY_DEFAULT_PORTS = {"http": 8080, "socks5": 1080, "socks5h": 1080}


def is_placeholder(value: str) -> bool:
    """Whether a credential looks copied from an example (`your-api-key`, `changeme`, `xxx`)."""
    return _PLACEHOLDER.fullmatch(value.strip()) is not None


def parse_proxy_url(raw: str) -> ProxyUrl | str:
    """A `ProxyUrl`, or a message saying what is wrong (never the password)."""
    text = raw.strip()
    auth_fragment = None
    if "#" in text:  # pproxy form: scheme://host:port#user:pass
        text, auth_fragment = text.split("#", 1)
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in _PROXY_SCHEMES:
        shown = parts.scheme or "(none)"
        return f"unsupported proxy scheme {shown!r}; expected one of " + ", ".join(
            f"{s}://" for s in _PROXY_SCHEMES
        )
    if not parts.hostname:
        return "proxy URL has no host"
    if parts.path not in ("", "/") or parts.query:
        return "proxy URL must be scheme://[user:pass@]host:port with no path or query"
    try:
        port = parts.port or _PROXY_DEFAULT_PORTS[scheme]
    except ValueError:
        return "proxy URL has an invalid port"
    username, password = parts.username, parts.password
    if auth_fragment is not None:
        username, _, pw = auth_fragment.partition(":")
        password = pw or None
    return ProxyUrl(
        scheme=scheme,
        host=parts.hostname,
        port=port,
        username=unquote(username) if username else None,
        password=Secret(unquote(password)) if password else None,
    )


def _secret_problem(value: str, auth: AuthConfig) -> str | None:
    if not value.strip():
        return "is blank"
    if any(ch in value for ch in "\r\n\0"):
        return "contains a line break or NUL character"
    if is_placeholder(value):
        return "is a placeholder from an example, not a real key"
    if value != value.strip():
        return "has leading or trailing whitespace"
    if (
        auth.mode is AuthMode.BEARER
        and auth.scheme
        and value.lower().startswith(auth.scheme.lower() + " ")
    ):
        return (
            f'already starts with "{auth.scheme} "; give the bare key '
            f"(the scheme comes from auth.scheme)"
        )
    return None


def parse_proxies(root: Table, env: Mapping[str, str]) -> dict[str, ProxyConfig]:
    """`[proxies.<name>]`. An invalid or unresolved entry stays listed with `url=None`, so
    accounts naming it are not told it does not exist."""
    proxies: dict[str, ProxyConfig] = {}
    for name, table in root.named_tables("proxies"):
        url = table.str_("url")
        url_env = table.str_("url_env")
        table.finish()
        proxies[name] = ProxyConfig(name=name, url=None)
        if (url is None) == (url_env is None):
            table.error(None, "set exactly one of url or url_env")
            continue
        if url_env is not None:
            raw = env.get(url_env)
            if raw is None:
                # Reported where an enabled account uses it: an unused proxy is no error.
                proxies[name] = ProxyConfig(name=name, url=None, url_env=url_env)
                continue
            key, prefix = "url_env", f"variable {url_env}: "
        else:
            assert url is not None
            raw, key, prefix = url, "url", ""
        result = parse_proxy_url(raw)
        if isinstance(result, str):
            table.error(key, prefix + result)
            continue
        proxies[name] = ProxyConfig(name=name, url=result, url_env=url_env)
    return proxies


def parse_account(
    table: Table,
    provider_id: str,
    *,
    auth: AuthConfig,
    env: Mapping[str, str],
    proxies: Mapping[str, ProxyConfig],
    account_names: dict[str, str],
) -> AccountConfig | None:
    name = table.str_("name")
    enabled = table.read("enabled", bool, True)
    weight = table.read("weight", float, 1.0, value_range(lo=0, excl=True))
    offsets = QuotaOffsets(
        five_hour=table.read("five_hour_offset_microdollars", Microdollars, Microdollars(0)),
        weekly=table.read("weekly_offset_microdollars", Microdollars, Microdollars(0)),
        monthly=table.read("monthly_offset_microdollars", Microdollars, Microdollars(0)),
    )
    api_key, key_source = _account_key(table, auth, env, enabled=enabled)
    proxy, proxy_name = _account_proxy(table, env, proxies, enabled=enabled)
    table.finish()
    if name is None:
        if "name" not in table:
            table.error("name", "is required")
        return None
    if any(ch.isspace() and ch != " " for ch in name) or name != name.strip():
        table.error("name", f"{name!r} must not have leading or trailing spaces or line breaks")
        return None
    previous = account_names.get(name.lower())
    if previous is not None:
        table.error("name", f"account name {name!r} is already used by {previous}")
        return None
    account_names[name.lower()] = table.path
    return AccountConfig(
        name=name,
        provider_id=provider_id,
        api_key=api_key,
        key_source=key_source,
        enabled=enabled,
        weight=weight,
        offsets=offsets,
        proxy=proxy,
        proxy_name=proxy_name,
    )


def _account_key(
    table: Table, auth: AuthConfig, env: Mapping[str, str], *, enabled: bool
) -> tuple[Secret | None, str]:
    inline = table.read("api_key", str | None, None)
    env_name = table.str_("api_key_env")
    if inline is not None and env_name is not None:
        table.error("api_key", "set either api_key or api_key_env, not both")
        return None, "none"
    if auth.mode is AuthMode.NONE:
        if inline is not None or env_name is not None:
            table.warn(
                "api_key" if inline is not None else "api_key_env",
                "is ignored: this provider's auth.mode is none",
            )
        return None, "none"
    if inline is None and env_name is None:
        if enabled:
            table.error(
                None, f"needs api_key or api_key_env (the provider's auth.mode is {auth.mode})"
            )
        return None, "none"
    if env_name is not None:
        key, source, value = "api_key_env", f"env {env_name}", env.get(env_name)
        if value is None:
            if enabled:
                table.error(key, f"variable {env_name} is not set")
            return None, source
    else:
        key, source, value = "api_key", "inline", inline
    assert value is not None
    problem = _secret_problem(value, auth)
    if problem:
        if enabled:
            where = f"the key in {env_name} " if env_name else "the key "
            table.error(key, where + problem)
        return None, source
    return Secret(value), source


def _account_proxy(
    table: Table, env: Mapping[str, str], proxies: Mapping[str, ProxyConfig], *, enabled: bool
) -> tuple[ProxyUrl | None, str | None]:
    ref = table.str_("proxy")
    inline = table.str_("proxy_url")
    env_name = table.str_("proxy_url_env")
    given = [
        k
        for k, v in (("proxy", ref), ("proxy_url", inline), ("proxy_url_env", env_name))
        if v is not None
    ]
    if len(given) > 1:
        table.error(
            given[1],
            f"set at most one of proxy, proxy_url, proxy_url_env (got {', '.join(given)})",
        )
        return None, None
    if ref is not None:
        proxy = proxies.get(ref)
        if proxy is None:
            known = ", ".join(sorted(proxies)) or "none are defined"
            table.error("proxy", f"unknown proxy {ref!r} (defined: {known})")
            return None, None
        if proxy.url is None and proxy.url_env is not None and enabled:
            table.problems.error(
                join_path(join_path("proxies", ref), "url_env"),
                f"variable {proxy.url_env} is not set (used by {table.path})",
            )
        return proxy.url, ref
    if inline is None and env_name is None:
        return None, None
    if env_name is not None:
        raw = env.get(env_name)
        if raw is None:
            if enabled:
                table.error("proxy_url_env", f"variable {env_name} is not set")
            return None, None
        key, prefix = "proxy_url_env", f"variable {env_name}: "
    else:
        assert inline is not None
        raw, key, prefix = inline, "proxy_url", ""
    parsed = parse_proxy_url(raw)
    if isinstance(parsed, str):
        table.error(key, prefix + parsed)
        return None, None
    return parsed, None
