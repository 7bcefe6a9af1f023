"""The model catalog: which account serves which model, how, and what `/v1/models` shows.

Theory of operation. A `Catalog` is built from the `Config` (providers,
accounts, static models, overrides) and fed model-list results per account
(`refresh(account, page_or_failure, now=...)`, pages parsed by
`parse_model_list`). It answers, without I/O:

- `route(model, protocol, provider=None)`: the (model, provider, account,
  protocol) candidates for a request, in priority order, from an index
  built once per change (a lookup is one dict access, O(candidates));
- `limits` / `protocol` / `metadata` per (model, provider);
- `exposed_models` / `render_models`: the `/v1/models` list and its bytes;
- `status(now)`: per-account listing bookkeeping and staleness;
- `snapshot()` / `Catalog.restore(config, snapshot, now=...)`: plain JSON
  data for the shell to persist and to rebuild from at startup.

An account supports its provider's static models, plus (unless the
provider's `models_endpoint.method` is DISABLED) the models its own listings
named. Refresh is non-destructive (reference feature list section 12):

- a failed, empty, incomplete (`has_more` still set) or partly malformed
  listing never removes anything; the account keeps its previous list;
- a model leaves an account only after `WITHDRAW_AFTER` (two) consecutive
  authoritative listings omit it (failures in between neither count nor
  reset the count); a request error such as a 404 never withdraws a model
  here (that is the health module's bounded quarantine);
- per-(model, provider) metadata (limits, protocol hint, prices) is shared
  by the provider's accounts and replaced only by a newer successful row
  for that model; results are applied in arrival order, so a wall clock
  that jumps back cannot freeze metadata;
- one account's refresh never touches another account's list;
- staleness never removes routability: an account whose listing keeps
  failing serves its last known list for as long as chat works;
  `stale_after_s` only feeds `status()` (readiness detail, startup gate).

Every change comes back as a `CatalogDiff` (models added to / removed from
each account, (provider, model) rows whose metadata changed) for the caller
to persist and publish. Only the (provider, model) pairs a refresh touched
are re-indexed, so one account's refresh costs O(its models x its
provider's accounts), never a rebuild of the pool.

`now` is wall-clock seconds read by the shell. It stamps first-seen times
(the `created` field of `/v1/models`) and listing bookkeeping.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable, Mapping

import attrs

from eggpool.core._catalog_rules import (
    EffectiveLimits,
    LimitSource,
    ProtocolSource,
    ResolvedProtocol,
    family_protocol,
    resolve_limits,
    resolve_protocol,
    static_limits,
)
from eggpool.core._catalog_state import WITHDRAW_AFTER, AccountListing, plain, time_or_none
from eggpool.core._catalog_views import (
    AccountCatalogStatus,
    Candidate,
    CatalogDiff,
    CatalogStatus,
    ExposedModel,
    RouteLookup,
    Served,
    collapsed,
    render_model_list,
    suffixed,
)
from eggpool.core._config_model import Protocol, StaticModel
from eggpool.core._config_sections import ExposeMode
from eggpool.core._model_lists import (
    ListedModel,
    ModelListFailure,
    ModelListPage,
    TokenLimits,
    combine_pages,
    display_name,
    extract_limits,
    listed_model,
    next_page_cursor,
    parse_model_list,
    sanitize_metadata,
)
from eggpool.core.config import Config
from eggpool.core.requests import split_model

__all__ = [
    "WITHDRAW_AFTER",
    "AccountCatalogStatus",
    "Candidate",
    "Catalog",
    "CatalogDiff",
    "CatalogStatus",
    "EffectiveLimits",
    "ExposedModel",
    "HealthPredicate",
    "LimitSource",
    "ListedModel",
    "ModelListFailure",
    "ModelListPage",
    "ProtocolSource",
    "ResolvedProtocol",
    "RouteLookup",
    "TokenLimits",
    "combine_pages",
    "family_protocol",
    "next_page_cursor",
    "parse_model_list",
]

SNAPSHOT_VERSION = 1

HealthPredicate = Callable[[str, str], bool]
"""`healthy(account_name, model_id)`: the health module's view, for `healthy_union`."""


@attrs.frozen(kw_only=True, slots=True)
class _Static:
    metadata: Mapping[str, object]
    limits: TokenLimits
    protocol: Protocol | None
    display_name: str | None


@attrs.define(kw_only=True)
class _Index:
    """Derived from the catalog's state; updated pair by pair when a refresh changes it."""

    by_pair: dict[tuple[str, str], Served] = attrs.field(factory=dict)  # (provider, model)
    by_model: dict[str, tuple[Served, ...]] = attrs.field(factory=dict)  # best priority first
    routes: dict[tuple[str, Protocol], tuple[Candidate, ...]] = attrs.field(factory=dict)
    served: dict[str, frozenset[Protocol]] = attrs.field(factory=dict)
    informed: dict[str, frozenset[str]] = attrs.field(factory=dict)  # provider -> accounts


class Catalog:
    """Providers x accounts x models. Mutable, single-threaded, I/O-free."""

    def __init__(self, config: Config, *, now: float) -> None:
        _check_now(now)
        self._config = config
        self._accounts: dict[str, AccountListing] = {
            account.name: AccountListing(config=account, provider=provider)
            for provider in config.providers.values()
            for account in provider.accounts
        }
        self._by_provider: dict[str, tuple[AccountListing, ...]] = {
            provider.id: tuple(self._accounts[account.name] for account in provider.accounts)
            for provider in config.providers.values()
        }
        self._static: dict[str, dict[str, _Static]] = {
            provider.id: {model.id: _static_entry(model) for model in provider.static_models}
            for provider in config.providers.values()
        }
        # Upstream rows and first-seen times, shared by a provider's accounts: (provider, model).
        self._records: dict[tuple[str, str], ListedModel] = {}
        self._first_seen: dict[tuple[str, str], float] = {
            (provider_id, model_id): now
            for provider_id, models in self._static.items()
            for model_id in models
        }
        self._rendered: dict[tuple[ExposeMode, bool], bytes] = {}
        self._index = _Index()
        self._reindex(None)

    # --- refresh ----------------------------------------------------------------

    def refresh(
        self, account_name: str, result: ModelListPage | ModelListFailure, *, now: float
    ) -> CatalogDiff:
        """Apply one account's listing (all its pages, `combine_pages`) or its failure.

        A result for an account the config no longer has (a reload raced the
        fetch) or whose provider's endpoint is DISABLED is ignored.
        """
        _check_now(now)
        account = self._accounts.get(account_name)
        if account is None or not account.lists_models:
            return CatalogDiff()
        if isinstance(result, ModelListFailure):
            account.fail(now, result.reason)
            return CatalogDiff()
        if not result.models:
            note = f" ({result.skipped} malformed rows)" if result.skipped else ""
            account.fail(now, "the provider listed no models" + note)
            return CatalogDiff()
        provider_id = account.provider.id
        before = self._supported(account)
        was_informed = account.last_success is not None
        account.apply(result, now)
        updated = []
        for model in result.models:
            key = (provider_id, model.id)
            if self._records.get(key) != model:
                updated.append(key)
                self._records[key] = model
            self._first_seen.setdefault(key, now)
        after = self._supported(account)
        added, removed = sorted(after - before), sorted(before - after)
        withdrawn = [
            (provider_id, model_id)
            for model_id in removed
            if self._forget_if_unlisted(provider_id, model_id)
        ]
        diff = CatalogDiff(
            added=types.MappingProxyType({account_name: tuple(added)} if added else {}),
            removed=types.MappingProxyType({account_name: tuple(removed)} if removed else {}),
            updated=tuple(sorted(updated)),
            withdrawn=tuple(withdrawn),
        )
        touched = {(provider_id, model_id) for model_id in (*added, *removed)}
        touched.update(updated)
        if touched or not was_informed:
            self._reindex(touched)
        return diff

    # --- routing ----------------------------------------------------------------

    def route(
        self, model_id: str, protocol: Protocol, provider_id: str | None = None
    ) -> RouteLookup:
        """Candidates for a bare model id on an endpoint protocol, optionally pinned."""
        index = self._index
        if provider_id is None:
            served = index.served.get(model_id)
            if served is None:
                return _UNKNOWN
            return RouteLookup(
                candidates=index.routes.get((model_id, protocol), ()),
                known=True,
                served_protocols=served,
            )
        pair = index.by_pair.get((provider_id, model_id))
        if pair is None:
            return _UNKNOWN
        resolved = pair.protocol.protocol
        return RouteLookup(
            candidates=pair.candidates if resolved is protocol else (),
            known=True,
            served_protocols=frozenset() if resolved is None else frozenset((resolved,)),
        )

    def split_model_id(self, requested: str) -> tuple[str, str | None]:
        """`model/provider` -> (model, provider) by `split_model`, knowing what is served."""
        return split_model(requested, self._config.providers, served=self._served)

    def _served(self, model_id: str, provider_id: str | None) -> bool:
        if provider_id is None:
            return model_id in self._index.served
        return (provider_id, model_id) in self._index.by_pair

    def limits(self, model_id: str, provider_id: str) -> EffectiveLimits | None:
        pair = self._index.by_pair.get((provider_id, model_id))
        return pair.limits if pair is not None else None

    def protocol(self, model_id: str, provider_id: str) -> ResolvedProtocol | None:
        pair = self._index.by_pair.get((provider_id, model_id))
        return pair.protocol if pair is not None else None

    def metadata(self, model_id: str, provider_id: str) -> Mapping[str, object]:
        """Upstream metadata of a (model, provider), or the static `source_metadata`.

        Sanitized and bounded, under the original keys (`pricing`, `context_length`...).
        """
        record = self._records.get((provider_id, model_id))
        if record is not None:
            return record.metadata
        static = self._static.get(provider_id, {}).get(model_id)
        return static.metadata if static is not None else _EMPTY

    def served_pairs(self) -> tuple[tuple[str, str], ...]:
        """Every (model id, provider id) an enabled account serves, sorted."""
        return tuple(
            sorted((pair.model_id, pair.provider_id)
                   for pairs in self._index.by_model.values() for pair in pairs)
        )  # fmt: skip

    def account_models(self, account_name: str) -> frozenset[str]:
        """Every model id the account supports, enabled or not."""
        account = self._accounts.get(account_name)
        return frozenset(self._supported(account)) if account is not None else frozenset()

    # --- exposure ---------------------------------------------------------------

    def exposed_models(
        self,
        *,
        mode: ExposeMode | None = None,
        collapse: bool | None = None,
        healthy: HealthPredicate | None = None,
    ) -> tuple[ExposedModel, ...]:
        """The `/v1/models` entries, sorted by id; defaults come from `[models]`.

        union: a (model, provider) is listed when an enabled account serves
        it. intersection: when every enabled account of that provider that
        has a model list serves it (accounts that never listed successfully
        know nothing, so they do not veto); never across providers, whose
        catalogs differ by nature. healthy_union: when an account that
        `healthy(account, model)` accepts serves it (no predicate: union).
        Models whose protocol is unresolved are never listed.
        """
        mode = mode if mode is not None else self._config.models.expose_mode
        collapse = collapse if collapse is not None else self._config.models.collapse_models
        entries: list[ExposedModel] = []
        for model_id, pairs in self._index.by_model.items():
            visible = [pair for pair in pairs if self._visible(pair, mode, healthy)]
            if not visible:
                continue
            if collapse:
                entries.append(collapsed(model_id, visible))
            else:
                entries.extend(suffixed(pair) for pair in visible)
        entries.sort(key=lambda entry: entry.id)
        return tuple(entries)

    def render_models(
        self,
        *,
        mode: ExposeMode | None = None,
        collapse: bool | None = None,
        healthy: HealthPredicate | None = None,
    ) -> bytes:
        """The `/v1/models` body; cached until the catalog changes (unless it
        depends on a health predicate)."""
        mode = mode if mode is not None else self._config.models.expose_mode
        collapse = collapse if collapse is not None else self._config.models.collapse_models
        cacheable = healthy is None or mode is not ExposeMode.HEALTHY_UNION
        cached = self._rendered.get((mode, collapse)) if cacheable else None
        if cached is not None:
            return cached
        body = render_model_list(
            self.exposed_models(mode=mode, collapse=collapse, healthy=healthy)
        )
        if cacheable:
            self._rendered[(mode, collapse)] = body
        return body

    # --- status -----------------------------------------------------------------

    def status(self, *, now: float) -> CatalogStatus:
        _check_now(now)
        stale_after = float(self._config.models.stale_after_s)
        accounts = []
        for name, account in self._accounts.items():
            last = account.last_success
            fresh = last is not None and now - last <= stale_after
            accounts.append(
                AccountCatalogStatus(
                    account_name=name,
                    provider_id=account.provider.id,
                    enabled=account.config.enabled,
                    lists_models=account.lists_models,
                    model_count=len(self._supported(account)),
                    last_success=last,
                    last_failure=account.last_failure,
                    last_error=account.last_error,
                    consecutive_failures=account.consecutive_failures,
                    last_skipped=account.last_skipped,
                    stale=account.lists_models and not fresh,
                )
            )
        listing = [a for a in accounts if a.enabled and a.lists_models]
        stale_accounts = tuple(a.account_name for a in listing if a.stale)
        return CatalogStatus(
            usable=bool(self._index.routes),
            stale=bool(listing) and len(stale_accounts) == len(listing),
            stale_accounts=stale_accounts,
            accounts=tuple(accounts),
        )

    # --- persistence ------------------------------------------------------------

    def snapshot(self) -> dict[str, object]:
        """Plain JSON data: each account's list and bookkeeping; each (provider,
        model) first-seen time and upstream metadata (null for a static model
        never listed)."""
        models = []
        for (provider_id, model_id), first_seen in sorted(self._first_seen.items()):
            record = self._records.get((provider_id, model_id))
            models.append(
                {
                    "provider_id": provider_id,
                    "model_id": model_id,
                    "first_seen": first_seen,
                    "metadata": None if record is None else plain(record.metadata),
                }
            )
        return {
            "version": SNAPSHOT_VERSION,
            "accounts": {name: account.snapshot() for name, account in self._accounts.items()},
            "models": models,
        }

    @classmethod
    def restore(cls, config: Config, snapshot: Mapping[str, object], *, now: float) -> Catalog:
        """A catalog for `config` seeded from `snapshot()` data.

        Lenient: what no longer fits the config (a removed account, an account
        moved to another provider, a provider whose endpoint is now DISABLED)
        or is malformed is left out; another version restores nothing.
        `now` stamps static models and listed models the snapshot has no time for.
        """
        catalog = cls(config, now=now)
        if snapshot.get("version") == SNAPSHOT_VERSION:
            catalog._load(snapshot, now)
            catalog._reindex(None)
        return catalog

    # --- internals --------------------------------------------------------------

    def _load(self, snapshot: Mapping[str, object], now: float) -> None:
        accounts = snapshot.get("accounts")
        if isinstance(accounts, Mapping):
            for name, account in self._accounts.items():
                account.restore(accounts.get(name))
        kept = {
            (account.provider.id, model_id)
            for account in self._accounts.values()
            for model_id in account.listed
        }
        kept.update(self._first_seen)  # static models
        models = snapshot.get("models")
        for row in models if isinstance(models, list) else ():
            if not isinstance(row, Mapping):
                continue
            provider_id, model_id = row.get("provider_id"), row.get("model_id")
            if not isinstance(provider_id, str) or not isinstance(model_id, str):
                continue
            if (provider_id, model_id) not in kept:
                continue
            first_seen = time_or_none(row.get("first_seen"))
            if first_seen is not None:
                self._first_seen[(provider_id, model_id)] = first_seen
            metadata = row.get("metadata")
            if isinstance(metadata, Mapping):
                record = listed_model({**metadata, "id": model_id})
                if record is not None:
                    self._records[(provider_id, model_id)] = record
        for key in kept:
            self._first_seen.setdefault(key, now)

    def _supported(self, account: AccountListing) -> set[str]:
        static = self._static[account.provider.id].keys()
        if not account.lists_models:
            return set(static)
        if account.last_success is None:
            return static | self._inherited(account)
        return static | account.listed.keys()

    def _supports(self, account: AccountListing, model_id: str) -> bool:
        if model_id in self._static[account.provider.id]:
            return True
        if not account.lists_models:
            return False
        if account.last_success is None:
            return any(model_id in sibling.listed for sibling in self._listed_siblings(account))
        return model_id in account.listed

    def _listed_siblings(self, account: AccountListing) -> list[AccountListing]:
        return [
            sibling
            for sibling in self._by_provider[account.provider.id]
            if sibling is not account and sibling.last_success is not None
        ]

    def _inherited(self, account: AccountListing) -> set[str]:
        """An account whose listing never succeeded serves what its siblings list.

        Accounts of one provider serve the same models, so a key whose models
        endpoint fails (while its chat works) stays routable from the start,
        not only after a first listing that may never come.
        """
        models: set[str] = set()
        for sibling in self._listed_siblings(account):
            models.update(sibling.listed)
        return models

    def _forget_if_unlisted(self, provider_id: str, model_id: str) -> bool:
        """Drop a (provider, model)'s shared data once no account of the provider has it."""
        if model_id in self._static[provider_id]:
            return False
        if any(model_id in account.listed for account in self._by_provider[provider_id]):
            return False
        self._records.pop((provider_id, model_id), None)
        self._first_seen.pop((provider_id, model_id), None)
        return True

    def _visible(self, pair: Served, mode: ExposeMode, healthy: HealthPredicate | None) -> bool:
        if pair.protocol.protocol is None:
            return False
        if mode is ExposeMode.INTERSECTION:
            return self._index.informed.get(pair.provider_id, frozenset()) <= pair.accounts
        if mode is ExposeMode.HEALTHY_UNION and healthy is not None:
            return any(healthy(account, pair.model_id) for account in sorted(pair.accounts))
        return True

    def _reindex(self, touched: set[tuple[str, str]] | None) -> None:
        """Recompute the served view of the `touched` (provider, model) pairs (None: all).

        Cost is proportional to the pairs touched times their provider's
        accounts, so one account's refresh never rebuilds the whole pool.
        """
        index = self._index
        if touched is None:
            index.by_pair.clear()
            index.by_model.clear()
            index.routes.clear()
            index.served.clear()
            touched = {
                (account.provider.id, model_id)
                for account in self._accounts.values()
                if account.config.enabled
                for model_id in self._supported(account)
            }
        for provider_id, model_id in touched:
            accounts = [
                account.config.name
                for account in self._by_provider[provider_id]
                if account.config.enabled and self._supports(account, model_id)
            ]
            if accounts:
                index.by_pair[(provider_id, model_id)] = self._serve(
                    model_id, provider_id, accounts
                )
            else:
                index.by_pair.pop((provider_id, model_id), None)
        for model_id in {model_id for _, model_id in touched}:
            self._index_model(model_id)
        index.informed = {
            provider_id: frozenset(
                account.config.name
                for account in members
                if account.config.enabled
                and (not account.lists_models or account.last_success is not None)
            )
            for provider_id, members in self._by_provider.items()
        }
        self._rendered.clear()

    def _index_model(self, model_id: str) -> None:
        """Rebuild one model's provider list, route tuples and served protocols."""
        index = self._index
        pairs = [
            pair
            for provider_id in self._config.providers
            if (pair := index.by_pair.get((provider_id, model_id))) is not None
        ]
        pairs.sort(key=lambda pair: (-pair.priority, pair.provider_id))
        for protocol in Protocol:
            index.routes.pop((model_id, protocol), None)
        if not pairs:
            index.by_model.pop(model_id, None)
            index.served.pop(model_id, None)
            return
        index.by_model[model_id] = tuple(pairs)
        protocols = {p.protocol.protocol for p in pairs if p.protocol.protocol is not None}
        index.served[model_id] = frozenset(protocols)
        for protocol in protocols:
            index.routes[(model_id, protocol)] = tuple(
                candidate
                for pair in pairs
                if pair.protocol.protocol is protocol
                for candidate in pair.candidates
            )

    def _serve(self, model_id: str, provider_id: str, accounts: list[str]) -> Served:
        """Resolve one (model, provider): protocol, limits, name, candidates (config order)."""
        provider = self._config.providers[provider_id]
        record = self._records.get((provider_id, model_id))
        static = self._static[provider_id].get(model_id)
        global_override = self._config.model_overrides.get(model_id)
        protocol = resolve_protocol(
            model_id,
            provider,
            global_override,
            record.protocol_hint if record is not None else None,
            static.protocol if static is not None else None,
        )
        limits = resolve_limits(
            provider.model_overrides.get(model_id),
            global_override,
            record.limits if record is not None else None,
            static.limits if static is not None else None,
        )
        resolved = protocol.protocol
        candidates: tuple[Candidate, ...] = ()
        if resolved is not None:
            candidates = tuple(
                Candidate(
                    model_id=model_id,
                    provider_id=provider_id,
                    account_name=name,
                    protocol=resolved,
                    routing_priority=provider.routing_priority,
                    limits=limits,
                )
                for name in accounts
            )
        name = (record.display_name if record is not None else None) or (
            static.display_name if static is not None else None
        )
        return Served(
            model_id=model_id,
            provider_id=provider_id,
            priority=provider.routing_priority,
            accounts=frozenset(accounts),
            protocol=protocol,
            limits=limits,
            name=name or model_id,
            first_seen=self._first_seen[(provider_id, model_id)],
            candidates=candidates,
        )


_EMPTY: Mapping[str, object] = types.MappingProxyType({})
_UNKNOWN = RouteLookup()


def _static_entry(model: StaticModel) -> _Static:
    metadata = sanitize_metadata(model.source_metadata)
    return _Static(
        metadata=metadata,
        limits=static_limits(model, extract_limits(metadata)),
        protocol=model.protocol,
        display_name=model.display_name or display_name(metadata),
    )


def _check_now(now: float) -> None:
    if not math.isfinite(now):
        raise ValueError(f"now must be a finite wall-clock time, got {now!r}")
