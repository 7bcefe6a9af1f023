"""What every request machine consults, and how an account presents itself upstream.

Theory of operation. The `Pool` owns one `Services` (the catalog, health,
ledger and router, the in-flight counts) and hands it to each
`RequestMachine`, which never reaches for anything else. Two things are
built once and cached here: an account's `Identity` (the provider's static
headers and the credential header, which a client's own copies must not
override) and the prices of a (provider, model) pair, until the catalog's
metadata for it changes. The header sets say what never crosses the proxy:
hop-by-hop headers (RFC 9110 section 7.6.1) and the client's credentials.
"""

from __future__ import annotations

from collections import Counter

import attrs

from eggpool.core.catalog import Catalog
from eggpool.core.config import AccountConfig, AuthMode, Config, ProviderConfig
from eggpool.core.health import Health
from eggpool.core.ledger import Ledger
from eggpool.core.pricing import Prices, prices_for
from eggpool.core.routing import Router
from eggpool.core.secret import Secret

__all__ = [
    "CLIENT_CREDENTIALS",
    "HOP_BY_HOP",
    "NOT_FORWARDED",
    "Identity",
    "Services",
    "identity_of",
]

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "content-encoding",
    }
)
CLIENT_CREDENTIALS = frozenset({"authorization", "x-api-key", "proxy-authorization", "cookie"})
NOT_FORWARDED = HOP_BY_HOP | CLIENT_CREDENTIALS | {"accept-encoding"}


@attrs.frozen(kw_only=True, slots=True)
class Identity:
    """An account's upstream credentials: the provider's static headers, then the auth header;
    `replaces` are the header names (lower-case) a client's own copies of must not pass."""

    account: AccountConfig
    provider: ProviderConfig
    headers: tuple[tuple[str, str | Secret], ...]
    replaces: frozenset[str]

    def upstream_headers(
        self, headers: tuple[tuple[str, str], ...]
    ) -> tuple[tuple[str, str | Secret], ...]:
        """The client's `headers` minus credentials and hop-by-hop ones, then the account's
        identity: provider static headers and credentials (reference-features.md section 9)."""
        listed = {
            token.strip().lower()
            for name, value in headers
            if name.lower() == "connection"
            for token in value.split(",")
        }
        dropped = NOT_FORWARDED | self.replaces | listed
        out: list[tuple[str, str | Secret]] = [
            (name, value) for name, value in headers if name.lower() not in dropped
        ]
        out.append(("accept-encoding", "identity"))
        out.extend(self.headers)
        return tuple(out)


def identity_of(config: Config, name: str) -> Identity:
    """How account `name` presents itself upstream (see `Identity`)."""
    account = next(a for a in config.accounts if a.name == name)
    provider = config.providers[account.provider_id]
    auth = provider.auth
    headers: list[tuple[str, str | Secret]] = [(h.name, h.value) for h in provider.headers]
    if auth.mode is not AuthMode.NONE and account.api_key is not None:
        if auth.mode is AuthMode.BEARER:
            headers.append((auth.header, Secret(f"{auth.scheme} {account.api_key.reveal()}")))
        else:
            headers.append((auth.header, account.api_key))
    replaces = frozenset({h.name.lower() for h in provider.headers} | {auth.header.lower()})
    return Identity(account=account, provider=provider, headers=tuple(headers), replaces=replaces)


@attrs.define(slots=True)
class Services:
    """What every machine consults; owned by the Pool and handed in, never reached for."""

    config: Config
    catalog: Catalog
    health: Health
    ledger: Ledger
    router: Router
    inflight: Counter[str] = attrs.Factory(Counter)
    catalog_loading: bool = False  # the first listing is in flight and nothing routes yet
    _prices: dict[tuple[str | None, str], tuple[object, Prices]] = attrs.Factory(dict)
    _identities: dict[str, Identity] = attrs.Factory(dict)
    response_dropped: frozenset[str] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        # Upstream response headers never relayed: hop-by-hop ones and `[security]`'s list.
        redact = {name.lower() for name in self.config.security.redact_headers}
        self.response_dropped = HOP_BY_HOP | redact

    def client_headers(
        self, upstream: tuple[tuple[str, str], ...], request_id: str, attempts: int
    ) -> tuple[tuple[str, str], ...]:
        """An upstream answer's headers as the client gets them: hop-by-hop and redacted
        ones dropped, the request's id and attempt count added."""
        dropped = self.response_dropped
        kept = [(name, value) for name, value in upstream if name.lower() not in dropped]
        kept.append(("x-eggpool-request-id", request_id))
        kept.append(("x-eggpool-attempts", str(attempts)))
        return tuple(kept)

    def identity(self, account: str) -> Identity:
        """How `account` presents itself upstream (cached: the config does not change)."""
        found = self._identities.get(account)
        if found is None:
            found = self._identities[account] = identity_of(self.config, account)
        return found

    def prices(self, provider: str | None, model: str) -> Prices:
        """`prices_for`, cached per (provider, model) until the catalog's metadata for it
        changes (a refresh replaces the metadata object, which the cache compares)."""
        metadata = self.catalog.metadata(model, provider) if provider else None
        cached = self._prices.get((provider, model))
        if cached is not None and cached[0] is metadata:
            return cached[1]
        prices = prices_for(self.config, provider or "", model, metadata)
        self._prices[(provider, model)] = (metadata, prices)
        return prices
