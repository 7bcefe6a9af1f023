"""The human summary `eggpool check-config` prints: what will run, with every secret masked."""

from __future__ import annotations

from pathlib import Path

from eggpool.core.config import AccountConfig, Config, ProviderConfig, is_loopback

__all__ = ["render_summary"]


def render_summary(path: Path, config: Config) -> str:
    accounts = config.accounts
    enabled = sum(1 for account in accounts if account.enabled)
    count = len(config.warnings)
    verdict = "valid" if not count else f"valid, {count} warning{'s' if count != 1 else ''}"
    lines = [f"{path}: {verdict}", ""]
    server = config.server
    lines.append(f"server     {_url(server.host, server.port)}")
    if server.api_key is not None:
        lines.append(f"  auth     key {server.api_key.masked()} ({_source(server.key_source)})")
    elif is_loopback(server.host):
        lines.append("  auth     none (no server key; listening on loopback only)")
    else:
        lines.append("  auth     none (no server key)")
    lines.append(f"database   {config.database.path}")
    lines.append(
        f"providers  {len(config.providers)}, accounts {len(accounts)} ({enabled} enabled)"
    )
    for provider in config.providers.values():
        lines.append("")
        lines.extend(_provider_lines(provider))
    if config.proxies:
        lines.append("")
        lines.append("proxies")
        for proxy in config.proxies.values():
            shown = proxy.url.display() if proxy.url else f"${proxy.url_env} (unset)"
            lines.append(f"  {proxy.name}  {shown}")
    if config.warnings:
        lines.append("")
        lines.append("warnings")
        lines.extend(f"  {warning}" for warning in config.warnings)
    return "\n".join(lines)


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def _source(source: str) -> str:
    return source.replace("env ", "from $", 1) if source.startswith("env ") else source


def _provider_lines(provider: ProviderConfig) -> list[str]:
    legacy = "  (legacy [[accounts]])" if provider.legacy else ""
    lines = [
        f"{provider.id}  {provider.base_url}{legacy}",
        f"  protocols {', '.join(provider.protocols)}; priority {provider.routing_priority}; "
        f"auth {provider.auth.mode}",
    ]
    width = max((len(account.name) for account in provider.accounts), default=0)
    lines.extend(_account_line(account, width) for account in provider.accounts)
    return lines


def _account_line(account: AccountConfig, width: int) -> str:
    state = "enabled " if account.enabled else "disabled"
    if account.api_key is not None:
        key = f"key {account.api_key.masked()} ({_source(account.key_source)})"
    elif account.key_source == "none":
        key = "no key"
    else:
        key = f"key unresolved ({_source(account.key_source)})"
    parts = [f"  - {account.name.ljust(width)}  {state}  {key}"]
    if account.weight != 1.0:
        parts.append(f"weight {account.weight:g}")
    if account.proxy is not None:
        via = f"{account.proxy_name} " if account.proxy_name else ""
        parts.append(f"proxy {via}{account.proxy.display()}")
    return "  ".join(parts)
