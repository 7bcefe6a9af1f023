"""What the catalog hands out: candidates and lookups, diffs, status, `/v1/models` entries.

Theory of operation. These are the catalog's plain values (frozen attrs
classes, data only). The catalog's index holds one `Served` per (model,
provider) that at least one enabled account supports, with its resolved
protocol and limits and one `Candidate` per account, all computed when the
catalog changes. `/v1/models` entries are built from `Served` values:

- collapse off: one `model/provider` entry per pair;
- collapse on: one bare entry per model over its visible providers, with
  the smallest known value of each limit (a client that respects it fits
  every provider; an unknown limit on one provider does not hide the known
  limit of another) and the highest `routing_priority`.

The JSON follows the reference (feature list section 1): `id`, `object`,
`created` (the first time EggPool saw the model, integer seconds),
`owned_by` (the provider; "eggpool" for a collapsed entry with several),
`name`, and a namespaced `eggpool` object. We add `protocols` to it, so a
client can tell which endpoint (`/v1/chat/completions` or `/v1/messages`)
serves the model.
"""

from __future__ import annotations

import json
import types
from collections.abc import Iterable, Mapping, Sequence

import attrs

from eggpool.core._catalog_rules import EffectiveLimits, ResolvedProtocol
from eggpool.core._config_model import Protocol
from eggpool.core._model_lists import TokenLimits

__all__ = [
    "AccountCatalogStatus",
    "Candidate",
    "CatalogDiff",
    "CatalogStatus",
    "ExposedModel",
    "RouteLookup",
    "Served",
    "collapsed",
    "render_model_list",
    "suffixed",
]


@attrs.frozen(kw_only=True, slots=True)
class Candidate:
    """One account that can serve `model_id` through `provider_id` with `protocol`."""

    model_id: str
    provider_id: str
    account_name: str
    protocol: Protocol
    routing_priority: int
    limits: EffectiveLimits


@attrs.frozen(kw_only=True, slots=True)
class Served:
    """One (model, provider) with at least one enabled supporting account."""

    model_id: str
    provider_id: str
    priority: int
    accounts: frozenset[str]
    protocol: ResolvedProtocol
    limits: EffectiveLimits
    name: str
    first_seen: float
    candidates: tuple[Candidate, ...]  # empty when the protocol is unresolved


@attrs.frozen(kw_only=True, slots=True)
class ExposedModel:
    """One `/v1/models` entry: `model/provider` (collapse off) or the bare id (on)."""

    id: str
    base_model_id: str
    providers: tuple[str, ...]
    collapsed: bool
    routing_priority: int  # the provider's, or the highest of them when collapsed
    protocols: tuple[Protocol, ...]
    limits: TokenLimits
    created: int
    owned_by: str
    name: str

    def to_json(self) -> dict[str, object]:
        namespace: dict[str, object] = {"base_model_id": self.base_model_id}
        if self.collapsed:
            namespace["providers"] = list(self.providers)
            namespace["routing_priority_max"] = self.routing_priority
        else:
            namespace["provider_id"] = self.providers[0]
            namespace["routing_priority"] = self.routing_priority
        namespace["protocols"] = [str(protocol) for protocol in self.protocols]
        namespace["limits"] = {
            "context": self.limits.context,
            "input": self.limits.input,
            "output": self.limits.output,
        }
        return {
            "id": self.id,
            "object": "model",
            "created": self.created,
            "owned_by": self.owned_by,
            "name": self.name,
            "eggpool": namespace,
        }


@attrs.frozen(kw_only=True, slots=True)
class RouteLookup:
    """What the catalog says about a requested model on one endpoint protocol.

    `known`: some enabled account (of the pinned provider, if pinned) serves
    the model. `served_protocols`: the protocols it is served with (empty:
    known but unresolved). `candidates` match the endpoint protocol, highest
    `routing_priority` first, then provider id, then config order. For the
    request pipeline: unknown -> 404; nothing served -> 503; endpoint
    protocol not served -> 400 protocol mismatch.
    """

    candidates: tuple[Candidate, ...] = ()
    known: bool = False
    served_protocols: frozenset[Protocol] = frozenset()


@attrs.frozen(kw_only=True, slots=True)
class CatalogDiff:
    """What one refresh changed, for the caller to persist and publish.

    `added` / `removed`: per account, the model ids it newly supports / no
    longer supports. `updated`: (provider id, model id) rows whose upstream
    metadata is new or changed. `withdrawn`: (provider id, model id) pairs no
    account of the provider lists any more; their shared metadata and
    first-seen time are dropped, so the store should relink their history
    rather than delete it.
    """

    added: Mapping[str, tuple[str, ...]] = attrs.field(factory=lambda: types.MappingProxyType({}))
    removed: Mapping[str, tuple[str, ...]] = attrs.field(
        factory=lambda: types.MappingProxyType({})
    )
    updated: tuple[tuple[str, str], ...] = ()
    withdrawn: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.updated or self.withdrawn)


@attrs.frozen(kw_only=True, slots=True)
class AccountCatalogStatus:
    account_name: str
    provider_id: str
    enabled: bool
    lists_models: bool  # false when the provider's models endpoint is DISABLED
    model_count: int  # models the account supports (static + listed)
    last_success: float | None
    last_failure: float | None
    last_error: str | None
    consecutive_failures: int
    last_skipped: int  # malformed rows in the last successful listing
    stale: bool  # lists models, and none succeeded within stale_after_s


@attrs.frozen(kw_only=True, slots=True)
class CatalogStatus:
    """`usable`: some model is routable. `stale`: no enabled listing account has a
    successful listing younger than `stale_after_s`. Routing ignores both."""

    usable: bool
    stale: bool
    stale_accounts: tuple[str, ...]
    accounts: tuple[AccountCatalogStatus, ...]


def suffixed(pair: Served) -> ExposedModel:
    protocols = () if pair.protocol.protocol is None else (pair.protocol.protocol,)
    return ExposedModel(
        id=f"{pair.model_id}/{pair.provider_id}",
        base_model_id=pair.model_id,
        providers=(pair.provider_id,),
        collapsed=False,
        routing_priority=pair.priority,
        protocols=protocols,
        limits=TokenLimits(
            context=pair.limits.context, input=pair.limits.input, output=pair.limits.output
        ),
        created=int(pair.first_seen),
        owned_by=pair.provider_id,
        name=pair.name,
    )


def collapsed(model_id: str, pairs: Sequence[Served]) -> ExposedModel:
    """One bare entry for a model; `pairs` are non-empty, highest priority first."""
    providers = tuple(sorted(pair.provider_id for pair in pairs))
    protocols = {pair.protocol.protocol for pair in pairs if pair.protocol.protocol is not None}
    return ExposedModel(
        id=model_id,
        base_model_id=model_id,
        providers=providers,
        collapsed=True,
        routing_priority=max(pair.priority for pair in pairs),
        protocols=tuple(sorted(protocols)),
        limits=TokenLimits(
            context=_min_known(pair.limits.context for pair in pairs),
            input=_min_known(pair.limits.input for pair in pairs),
            output=_min_known(pair.limits.output for pair in pairs),
        ),
        created=int(min(pair.first_seen for pair in pairs)),
        owned_by=providers[0] if len(providers) == 1 else "eggpool",
        name=pairs[0].name,
    )


def render_model_list(entries: Iterable[ExposedModel]) -> bytes:
    document = {"object": "list", "data": [entry.to_json() for entry in entries]}
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def _min_known(values: Iterable[int | None]) -> int | None:
    return min((value for value in values if value is not None), default=None)
