"""What a routing decision is: the order to try candidates in, and why the others are out.

`routing.Router` makes them; this module holds the types alone because the
accelerated build compiles routing.py with mypyc, which cannot compile a module
whose attrs classes declare `attrs.field()` class attributes (`RoutingDecision.rows`
stays out of reprs). Everything here is re-exported by `eggpool.core.routing`.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

import attrs

from eggpool.core._catalog_views import Candidate
from eggpool.core.config import Protocol

__all__ = [
    "STATIC_EXCLUSIONS",
    "Choice",
    "Exclusion",
    "ExclusionReason",
    "RoutingDecision",
]


class ExclusionReason(enum.StrEnum):
    DISABLED = "disabled"
    COOLING = "cooling"
    CIRCUIT_OPEN = "circuit_open"
    MODEL_QUARANTINED = "model_quarantined"
    PROVIDER_BACKOFF = "provider_backoff"
    MODEL_MISSING = "model_missing"
    PROTOCOL_MISMATCH = "protocol_mismatch"
    OVER_LOCAL_QUOTA = "over_local_quota"
    ALREADY_TRIED = "already_tried"
    PROVIDER_PINNED = "provider_pinned"


STATIC_EXCLUSIONS = frozenset(
    {
        ExclusionReason.DISABLED,
        ExclusionReason.MODEL_MISSING,
        ExclusionReason.PROTOCOL_MISMATCH,
        ExclusionReason.PROVIDER_PINNED,
    }
)
"""Reasons that follow from the configuration alone: the same for every request."""


class Choice(NamedTuple):
    """An eligible account, with the numbers that ranked it. (A tuple: a decision makes one
    per candidate, a hundred of them on a large pool.)"""

    candidate: Candidate
    score: float
    utilization: tuple[float, float, float]
    inflight: int
    probe: bool = False
    affinity: bool = False

    @property
    def account(self) -> str:
        return self.candidate.account_name

    @property
    def provider(self) -> str:
        return self.candidate.provider_id


@attrs.frozen(kw_only=True, slots=True)
class Exclusion:
    account: str
    provider: str
    reason: ExclusionReason
    until: float | None = None


_Row = tuple[int, float, str, Candidate, tuple[float, float, float], int, bool]
"""(-priority, score, account, candidate, utilization, inflight, probe): sorts in C."""


@attrs.frozen(kw_only=True, slots=True)
class RoutingDecision:
    """Candidates in the order to try them, and why every other account is out.

    The order is kept as plain rows and turned into `Choice`s only when asked:
    an attempt needs the best one, a failover decides afresh, and only a
    sampled trace reads them all.
    """

    model: str
    protocol: Protocol
    rows: tuple[_Row, ...] = attrs.field(repr=False)
    excluded: tuple[Exclusion, ...]
    known_model: bool
    tie_band: float
    session: str | None = None
    affinity: str | None = None  # the account the session kept, if it did

    @property
    def ordered(self) -> tuple[Choice, ...]:
        return tuple(self._choice(row) for row in self.rows)

    @property
    def best(self) -> Choice | None:
        return self._choice(self.rows[0]) if self.rows else None

    def _choice(self, row: _Row) -> Choice:
        return Choice(row[3], row[1], row[4], row[5], row[6], row[2] == self.affinity)

    def soonest_retry(self) -> float | None:
        """When the first excluded-for-a-while account comes back (for a 429's Retry-After)."""
        ends = [e.until for e in self.excluded if e.until is not None]
        return min(ends) if ends else None
