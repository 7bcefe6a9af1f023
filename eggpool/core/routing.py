"""Routing: which accounts may serve a request, in which order, and why the others may not.

Theory of operation. For one attempt of one request, `Router.decide` takes the
catalog's candidates for (model, endpoint protocol), filters them by health,
local quota (in `hard_cap` mode) and the accounts the request already tried,
and orders the rest:

1. **Tiers.** `[providers.<id>].routing_priority`, highest first. A lower
   tier is tried only once every account of the tiers above is excluded or
   tried (reference-features.md 2.4).
2. **Score inside a tier**, lower is better (reference 2.3): quota pressure
   `max(p5h, p7d, p30d) + 0.15 * mean(...)`, where each `p` is the window's
   spend plus reservations in flight plus this request's estimate, over
   the account's capacity; plus `inflight_penalty / five_hour_limit` per
   request in flight; plus `health_penalty / five_hour_limit` for an
   account that is only admitted as a probe. `weight` enters through the
   capacity, so long-run spend is proportional to weight.
3. **Near ties** are broken with the request's entropy, deterministically
   (replaying the same events gives the same choice): the group tied with
   the best is rotated by it, so every member is equally likely to go first
   (a failover decides again, rotating its own leading group). The tie band is one
   in-flight request's penalty, capped by `near_tie_epsilon`: two accounts
   are tied only when one more request in flight would swap them. The
   reference used `near_tie_epsilon` (0.1, a tenth of the five-hour
   capacity) as the band itself: about twelve in-flight penalties and a
   hundred typical requests wide, so routing stayed random until accounts
   drifted 10 % apart and bursts piled onto whichever account the dice
   chose. `randomize_near_ties = false` gives a band of zero (a stable
   order by score, then name).
4. **Session affinity.** A request carrying a session key (a client session
   header, else a fingerprint of its system prompt and first message) goes
   first to the account that served its session, while that account is
   eligible, in the best tier, and within `AFFINITY_SLACK` of the best
   score: provider prompt caches are per account, and cache reads cost a
   tenth of fresh input. An unhealthy or exhausted account loses the
   session, which binds to the new choice.

Every account that is not a candidate gets a named reason
(`ExclusionReason`), which the stats and `accounts explain` show.
`local_quota_mode = "score_only"` (the default) never excludes on local
estimates; `"hard_cap"` excludes an account whose windows this request
would overflow.

The router holds only the affinity table; catalog, health and ledger are
passed in, so it never reaches sideways (STYLE rule 8).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Iterable, Mapping, Sequence

import attrs

from eggpool.core._decision import (
    STATIC_EXCLUSIONS,
    Choice,
    Exclusion,
    ExclusionReason,
    RoutingDecision,
    _Row,
)
from eggpool.core.catalog import Catalog
from eggpool.core.config import Config, LocalQuotaMode, Protocol
from eggpool.core.health import Health, VerdictKind
from eggpool.core.ledger import Ledger

__all__ = [
    "AFFINITY_SLACK",
    "AFFINITY_TTL",
    "STATIC_EXCLUSIONS",
    "Choice",
    "Exclusion",
    "ExclusionReason",
    "Router",
    "RoutingDecision",
    "affinity_key",
    "session_header",
    "session_key",
    "session_ranks",
]

AFFINITY_SLACK = 0.25
"""How much worse (in quota-pressure units) a session's account may score and keep it."""
AFFINITY_TTL = 3600.0
"""Seconds a session binding lives without a request."""
AFFINITY_MAX = 10_000
"""Bindings kept; the least recently used goes first."""
MAX_SESSION_ID = 200
"""Longer session header values are ignored (a client id is a UUID or so)."""
_MASK = (1 << 64) - 1


_FROM_VERDICT = {
    VerdictKind.COOLING: ExclusionReason.COOLING,
    VerdictKind.CIRCUIT_OPEN: ExclusionReason.CIRCUIT_OPEN,
    VerdictKind.MODEL_QUARANTINED: ExclusionReason.MODEL_QUARANTINED,
    VerdictKind.PROVIDER_BACKOFF: ExclusionReason.PROVIDER_BACKOFF,
}


@attrs.define(slots=True)
class _Binding:
    account: str
    used: float


class Router:
    """Eligibility and ordering. Holds the session-affinity table; nothing else."""

    def __init__(self, config: Config) -> None:
        self._configure(config)
        self._affinity: OrderedDict[str, _Binding] = OrderedDict()

    def reconfigure(self, config: Config) -> None:
        self._configure(config)
        for session in [s for s, b in self._affinity.items() if b.account not in self._provider]:
            del self._affinity[session]

    def _configure(self, config: Config) -> None:
        routing, limits = config.routing, config.limits
        five_hour = limits.five_hour_microdollars
        self._inflight_unit = routing.inflight_penalty / five_hour if five_hour else 0.0
        self._health_unit = routing.health_penalty / five_hour if five_hour else 0.0
        self._band = (
            min(routing.near_tie_epsilon, self._inflight_unit)
            if routing.randomize_near_ties
            else 0.0
        )
        self._hard_cap = routing.local_quota_mode is LocalQuotaMode.HARD_CAP
        self._accounts = [a for p in config.providers.values() for a in p.accounts]
        self._provider = {a.name: a.provider_id for a in self._accounts}

    # -- the decision ------------------------------------------------------------------

    def decide(
        self,
        *,
        catalog: Catalog,
        health: Health,
        ledger: Ledger,
        inflight: Mapping[str, int],
        model: str,
        protocol: Protocol,
        pinned: str | None,
        estimate: int,
        now: float,
        entropy: int,
        tried: Collection[str] = (),
        session: str | None = None,
    ) -> RoutingDecision:
        lookup = catalog.route(model, protocol, pinned)
        candidates = lookup.candidates
        names = [c.account_name for c in candidates]
        excluded: list[Exclusion] = []
        rows: list[_Row] = []
        unit, health_unit, hard_cap = self._inflight_unit, self._health_unit, self._hard_cap
        ok, probe_kind = VerdictKind.OK, VerdictKind.PROBE
        # One pass: health, local quota, score. Utilization of window w is
        # (level_w + estimate) / capacity_w (`Ledger.levels`).
        for candidate, verdict, (l5, l7, l30, i5, i7, i30) in zip(
            candidates,
            health.verdicts(names, model, now),
            ledger.levels(names, now),
            strict=True,
        ):
            name = candidate.account_name
            if name in tried:
                excluded.append(self._out(name, ExclusionReason.ALREADY_TRIED))
                continue
            kind = verdict.kind
            if kind is not ok and kind is not probe_kind:
                excluded.append(self._out(name, _FROM_VERDICT[kind], verdict.until))
                continue
            p5, p7, p30 = (l5 + estimate) * i5, (l7 + estimate) * i7, (l30 + estimate) * i30
            pressure = p5 if p5 >= p7 else p7
            if p30 > pressure:  # noqa: PLR1730 (a max() call per candidate costs here)
                pressure = p30
            if hard_cap and pressure > 1.0:  # a limited window would overflow
                excluded.append(self._out(name, ExclusionReason.OVER_LOCAL_QUOTA))
                continue
            busy = inflight.get(name, 0)
            # max + 0.15 * mean; an account admitted only as a probe carries the health penalty.
            score = pressure + 0.05 * (p5 + p7 + p30) + busy * unit
            probe = kind is probe_kind
            if probe:
                score += health_unit
            rows.append(
                (-candidate.routing_priority, score, name, candidate, (p5, p7, p30), busy, probe)
            )
        seen = set(names)
        excluded += self._explain_others(
            catalog, model=model, protocol=protocol, pinned=pinned, known=lookup.known, seen=seen
        )
        self._order(rows, entropy)
        affinity = None
        if session is not None:
            affinity = self._apply_affinity(session, rows, now)
        return RoutingDecision(
            model=model,
            protocol=protocol,
            rows=tuple(rows),
            excluded=tuple(excluded),
            known_model=lookup.known,
            tie_band=self._band,
            session=session,
            affinity=affinity,
        )

    def _out(self, account: str, reason: ExclusionReason, until: float | None = None) -> Exclusion:
        return Exclusion(
            account=account, provider=self._provider.get(account, ""), reason=reason, until=until
        )

    def _explain_others(
        self,
        catalog: Catalog,
        *,
        model: str,
        protocol: Protocol,
        pinned: str | None,
        known: bool,
        seen: set[str],
    ) -> list[Exclusion]:
        """A named reason for every account that was not even a candidate."""
        excluded: list[Exclusion] = []
        if len(seen) == len(self._accounts):
            return excluded  # every account was a candidate
        pinned_out: set[str] = set()
        if pinned is not None:
            pinned_out = {c.account_name for c in catalog.route(model, protocol).candidates}
        other_protocol: set[str] = set()
        if known or pinned is not None:
            for other in Protocol:
                if other is not protocol:
                    other_protocol.update(
                        c.account_name for c in catalog.route(model, other, pinned).candidates
                    )
        for account in self._accounts:
            name = account.name
            if name in seen:
                continue
            if not account.enabled:
                reason = ExclusionReason.DISABLED
            elif pinned is not None and account.provider_id != pinned and name in pinned_out:
                reason = ExclusionReason.PROVIDER_PINNED
            elif name in other_protocol:
                reason = ExclusionReason.PROTOCOL_MISMATCH
            else:
                reason = ExclusionReason.MODEL_MISSING
            excluded.append(self._out(name, reason))
        return excluded

    def _order(self, rows: list[_Row], entropy: int) -> None:
        """Sort in place: tiers highest first, then by score; rotate the leading near tie.

        Only the group tied with the best needs the entropy: it decides the
        first choice, and a failover decides afresh (with the tried account
        excluded), so its own leading group is rotated then. Beyond it the
        order is by score, then name.
        """
        rows.sort()  # (-priority, score, name): names are unique, so tuples never tie
        band = self._band
        if band <= 0 or len(rows) < 2:
            return
        tier, floor = rows[0][0], rows[0][1] + band
        end = 1
        while end < len(rows) and rows[end][0] == tier and rows[end][1] <= floor:
            end += 1
        if end > 1:
            turn = _mix(entropy) % end
            rows[:end] = rows[turn:end] + rows[:turn]

    # -- session affinity ----------------------------------------------------------------

    def _apply_affinity(self, session: str, rows: list[_Row], now: float) -> str | None:
        """Move the session's account to the front if it may keep the session; rebind."""
        self._expire(now)
        if not rows:
            return None
        binding = self._affinity.get(session)
        kept = None
        if binding is not None:
            best = rows[0]
            for index, row in enumerate(rows):
                if row[2] != binding.account:
                    continue
                # Same tier, not a probe, and not much busier than the best: keep it.
                if row[0] == best[0] and not row[6] and row[1] <= best[1] + AFFINITY_SLACK:
                    rows.insert(0, rows.pop(index))
                    kept = row[2]
                break
        self._bind(session, rows[0][2], now)
        return kept

    def confirm(self, session: str | None, account: str, now: float) -> None:
        """The session's request was served by `account` (after a failover too): keep it there."""
        if session is not None:
            self._bind(session, account, now)

    def _bind(self, session: str, account: str, now: float) -> None:
        binding = self._affinity.get(session)
        if binding is None:
            self._affinity[session] = _Binding(account, now)
            if len(self._affinity) > AFFINITY_MAX:
                self._affinity.popitem(last=False)
        else:
            binding.account, binding.used = account, now
            self._affinity.move_to_end(session)

    def _expire(self, now: float) -> None:
        while self._affinity:
            session, binding = next(iter(self._affinity.items()))
            if now - binding.used <= AFFINITY_TTL:
                return
            del self._affinity[session]

    def bound_account(self, session: str) -> str | None:
        binding = self._affinity.get(session)
        return binding.account if binding is not None else None


def session_ranks(names: Sequence[str]) -> dict[str, int]:
    """`routing.session_headers` as a lookup table: lower-case name -> preference."""
    return {name.lower(): rank for rank, name in enumerate(names)}


def session_header(headers: Iterable[tuple[str, str]], ranks: Mapping[str, int]) -> str | None:
    """The client session a request names: the most preferred header of `ranks`
    (`session_ranks`) that it carries with a usable value."""
    found: tuple[int, str] | None = None
    for name, raw in headers:
        rank = ranks.get(name.lower())
        if rank is None or (found is not None and rank >= found[0]):
            continue
        value = raw.strip()
        if value and len(value) <= MAX_SESSION_ID:
            found = (rank, value)
    return found[1] if found is not None else None


def affinity_key(*, model: str, header: str | None, fingerprint: str | None) -> str | None:
    """The affinity key: the client session, else the conversation fingerprint, per model
    (a session that uses two models may be served by two accounts, and prompt caches are
    per model anyway)."""
    if header is not None:
        return f"{model}\x00h\x00{header}"
    if fingerprint is not None:
        return f"{model}\x00f\x00{fingerprint}"
    return None


def session_key(
    headers: Iterable[tuple[str, str]],
    names: Sequence[str],
    *,
    model: str,
    fingerprint: str | None,
) -> str | None:
    """`affinity_key` of a request, from its headers and `routing.session_headers`."""
    header = session_header(headers, session_ranks(names))
    return affinity_key(model=model, header=header, fingerprint=fingerprint)


def _mix(value: int) -> int:
    """splitmix64: a cheap, well-spread hash of an integer (deterministic, unlike `hash`)."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK
    return value ^ (value >> 31)
