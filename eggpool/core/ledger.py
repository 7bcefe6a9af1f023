"""The quota ledger: rolling spend windows, reservations and offsets per account.

Theory of operation. Every account has three rolling windows of spend in
integer microdollars: five hours, seven days and thirty days. Each window is
a run of fixed-size buckets (`BUCKET_SECONDS`: one minute, one hour, six
hours) kept in time order with a running total, so committing a cost adds to
the newest bucket and expiry pops whole buckets off the old end: O(1)
amortized per update, never a rescan of charges. A bucket keyed `k` holds
the charges dated in `[k * size, (k + 1) * size)` and leaves the window once
the clock reaches `(k + span + 1) * size`: a charge counts for at least the
full window and leaves it at most one bucket late (1 minute in 5 h, 1 hour
in 7 d, 6 hours in 30 d: under 1 % of each window, always towards counting
spend for longer, never shorter). Six-hour buckets keep the monthly window
at 121 buckets an account instead of 720 hourly ones (memory on a Pi).

Time is an input: every method that can expire spend takes `now`, wall-clock
Unix seconds read by the shell. Expiry happens when an account is *touched*
(any method given that account, or its attempt, and a `now`): its windows
drop the buckets that have left them at `now`. Dropped spend never comes
back. Consequences, all deliberate:

- The clock going backwards (NTP step, a Pi booting on a saved clock)
  expires nothing. Charges committed meanwhile are dated by the clock as it
  is, and spend dated in the future keeps counting until the clock passes
  its date plus the window. Sums never go negative and nothing raises.
- A jump forwards expires what is older than the window at the new time; if
  the clock is then set back, that spend stays gone (like time really
  passed). A restart rebuilds from stored charges (`from_charges`), which
  puts back whatever the stored rows still date inside the windows.

Reservations cover attempts in flight. `reserve` is taken when an attempt is
dispatched; `settle` drops it and commits the real cost at its own `now`;
`release` drops it on failure or cancel. A reservation counts in full
against every window until then. `settle` and `release` of an attempt that
is not reserved (already settled or released, or never seen) return False
and change nothing, so a finalizer can run twice; the ledger keeps no
memory of finished attempts (it would grow without bound), so it cannot
tell "finished" from "never reserved". Reserving an attempt id that is
already reserved, an unknown account, negative money or a non-finite time
are caller mistakes and raise `LedgerError` (STYLE rule 4).

Utilization, as the router scores it (reference-features.md 2.3):
`p_w = max(0, committed_w + reserved + extra + offset_w) / capacity_w`,
0 when the capacity is 0 (a window with capacity 0 has no limit). Capacity
is `int([limits] * weight)`, at least 1 when the limit is not 0, so a tiny
weight never turns a limited account into an unlimited one.

Config reloads (`reconfigure`) change capacities and offsets in place.
Accounts that leave the config are kept, retired, with their spend and
reservations (their attempts still settle); if they come back they find
their spend again. A retired account is dropped once it has neither.
"""

from __future__ import annotations

import enum
import math
from bisect import bisect_left
from collections import deque
from collections.abc import Iterable, Mapping, Sequence

import attrs

from eggpool.core.config import Config

__all__ = [
    "BUCKET_SECONDS",
    "WINDOW_SECONDS",
    "AccountLimits",
    "AccountSpend",
    "Ledger",
    "LedgerError",
    "LedgerSnapshot",
    "Reservation",
    "Window",
    "account_limits",
]


class Window(enum.IntEnum):
    """A rolling window; its value indexes the per-window tuples of this module."""

    FIVE_HOUR = 0
    WEEKLY = 1
    MONTHLY = 2


WINDOW_SECONDS = (5 * 3600, 7 * 86400, 30 * 86400)
"""Length of each window, in `Window` order."""
BUCKET_SECONDS = (60, 3600, 6 * 3600)
"""Bucket size of each window: the most a charge can stay past its window."""
_SPANS = tuple(w // b for w, b in zip(WINDOW_SECONDS, BUCKET_SECONDS, strict=True))
_INF = math.inf


class LedgerError(Exception):
    """The caller broke the ledger's contract (a programming error, never upstream data)."""


@attrs.frozen(kw_only=True, slots=True)
class AccountLimits:
    """Capacity and offset (spend outside the proxy) of one account, per `Window`."""

    capacity: tuple[int, int, int]
    offset: tuple[int, int, int] = (0, 0, 0)


def _scaled(limit: int, weight: float) -> int:
    if limit <= 0:
        return 0
    return max(1, int(limit * weight))


def account_limits(config: Config) -> dict[str, AccountLimits]:
    """Every configured account's limits (enabled or not), by name: `[limits]` x weight."""
    limits = config.limits
    return {
        account.name: AccountLimits(
            capacity=(
                _scaled(limits.five_hour_microdollars, account.weight),
                _scaled(limits.weekly_microdollars, account.weight),
                _scaled(limits.monthly_microdollars, account.weight),
            ),
            offset=(account.offsets.five_hour, account.offsets.weekly, account.offsets.monthly),
        )
        for account in config.accounts
    }


@attrs.frozen(kw_only=True, slots=True)
class Reservation:
    attempt_id: str
    account: str
    microdollars: int
    reserved_at: float


@attrs.frozen(kw_only=True, slots=True)
class AccountSpend:
    """One account's buckets, per `Window`: `(bucket index, microdollars)`, oldest first."""

    account: str
    buckets: tuple[tuple[tuple[int, int], ...], ...]


@attrs.frozen(kw_only=True, slots=True)
class LedgerSnapshot:
    """Everything a ledger holds, as primitives; `Ledger.restore` rebuilds it exactly."""

    accounts: tuple[AccountSpend, ...]
    reservations: tuple[Reservation, ...]

    def to_json(self) -> dict[str, object]:
        """Plain JSON data (bucket sizes included, so a change of them is detected)."""
        return {
            "bucket_seconds": list(BUCKET_SECONDS),
            "accounts": {
                a.account: [[list(b) for b in w] for w in a.buckets] for a in self.accounts
            },
            "reservations": [
                [r.attempt_id, r.account, r.microdollars, r.reserved_at] for r in self.reservations
            ],
        }

    @classmethod
    def from_json(cls, data: object) -> LedgerSnapshot:
        """Read `to_json` output back; raises `LedgerError` on anything else."""
        if not isinstance(data, Mapping):
            raise LedgerError("malformed ledger snapshot: expected an object")
        try:
            if list(data["bucket_seconds"]) != list(BUCKET_SECONDS):
                raise LedgerError("snapshot was taken with other bucket sizes")
            accounts = tuple(
                AccountSpend(
                    account=str(name),
                    buckets=tuple(
                        tuple((_int(k), _int(v)) for k, v in window) for window in windows
                    ),
                )
                for name, windows in data["accounts"].items()
            )
            reservations = tuple(
                Reservation(
                    attempt_id=str(a), account=str(n), microdollars=_int(m), reserved_at=float(t)
                )
                for a, n, m, t in data["reservations"]
            )
        except LedgerError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise LedgerError(f"malformed ledger snapshot: {exc!r}") from None
        return cls(accounts=accounts, reservations=reservations)


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


class _Window:
    """Buckets of one window in key order, their total, and when the oldest leaves."""

    __slots__ = ("amounts", "expiry", "keys", "size", "span", "total")

    def __init__(self, size: int, span: int) -> None:
        self.size = size
        self.span = span
        self.keys: deque[int] = deque()
        self.amounts: deque[int] = deque()
        self.total = 0
        self.expiry = _INF  # the time the oldest bucket leaves the window

    def prune(self, now: float) -> None:
        if now < self.expiry:
            return  # the common case: one comparison
        keys, amounts = self.keys, self.amounts
        oldest = int(now // self.size) - self.span
        total = self.total
        while keys and keys[0] < oldest:
            keys.popleft()
            total -= amounts.popleft()
        self.total = total
        self._set_expiry()

    def add(self, key: int, amount: int) -> None:
        keys, amounts = self.keys, self.amounts
        if keys and keys[-1] == key:
            amounts[-1] += amount
        elif not keys or keys[-1] < key:
            keys.append(key)
            amounts.append(amount)
        else:  # dated before the newest bucket: the clock went back (rare)
            i = bisect_left(keys, key)
            if keys[i] == key:
                amounts[i] += amount
            else:
                keys.insert(i, key)
                amounts.insert(i, amount)
        self.total += amount
        self._set_expiry()

    def _set_expiry(self) -> None:
        keys = self.keys
        self.expiry = (keys[0] + self.span + 1) * self.size if keys else _INF


class _Account:
    __slots__ = ("active", "capacity", "holds", "offset", "reserved", "windows")

    def __init__(self, limits: AccountLimits | None) -> None:
        self.windows = tuple(_Window(b, s) for b, s in zip(BUCKET_SECONDS, _SPANS, strict=True))
        self.reserved = 0
        self.holds = 0  # reservations in flight (a reservation may be of 0 microdollars)
        self.active = limits is not None
        self.capacity = (0, 0, 0) if limits is None else limits.capacity
        self.offset = (0, 0, 0) if limits is None else limits.offset

    def touch(self, now: float) -> None:
        w5, w7, w30 = self.windows
        if now >= w5.expiry:
            w5.prune(now)
        if now >= w7.expiry:
            w7.prune(now)
        if now >= w30.expiry:
            w30.prune(now)

    def commit(self, amount: int, at: float) -> None:
        if amount:
            for window in self.windows:
                window.add(int(at // window.size), amount)

    def empty(self) -> bool:
        return not self.holds and not any(w.keys for w in self.windows)


def _check_now(now: float) -> None:
    if not math.isfinite(now):
        raise LedgerError(f"time must be a finite number of seconds, got {now!r}")


def _check_money(what: str, amount: int) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
        raise LedgerError(f"{what} must be a non-negative integer of microdollars, got {amount!r}")


class Ledger:
    """Spend windows and reservations of every account. Mutable, single-threaded, pure."""

    __slots__ = ("_accounts", "_dirty", "_levels", "_reservations", "_valid_until")

    def __init__(self, limits: Mapping[str, AccountLimits]) -> None:
        self._accounts: dict[str, _Account] = {}
        self._reservations: dict[str, Reservation] = {}
        # The router's cache: per active account (level5, level7, level30, 1/c5, 1/c7, 1/c30),
        # level = committed + reserved + offset. Changed accounts are `_dirty`; time changes a
        # level only when a bucket leaves a window, at the earliest `_valid_until`.
        self._levels: dict[str, tuple[float, float, float, float, float, float]] = {}
        self._dirty: set[str] = set()
        self._valid_until = -_INF
        self.reconfigure(limits)

    # --- configuration and persistence ------------------------------------------------

    def reconfigure(self, limits: Mapping[str, AccountLimits]) -> None:
        """Apply new capacities and offsets; spend and reservations are kept (see module doc)."""
        for name, new in limits.items():
            if any(c < 0 for c in new.capacity + new.offset):
                raise LedgerError(f"account {name!r}: capacities and offsets must be >= 0")
        for name, old in list(self._accounts.items()):
            if name not in limits:
                old.active = False
                old.capacity = old.offset = (0, 0, 0)
                if old.empty():
                    del self._accounts[name]
        for name, new in limits.items():
            found = self._accounts.get(name)
            if found is None:
                self._accounts[name] = _Account(new)
            else:
                found.active = True
                found.capacity, found.offset = new.capacity, new.offset
        self._levels.clear()
        self._valid_until = -_INF  # every level is recomputed on the next query

    def snapshot(self) -> LedgerSnapshot:
        """Everything held, retired accounts included; touches nothing."""
        return LedgerSnapshot(
            accounts=tuple(
                AccountSpend(
                    account=name,
                    buckets=tuple(
                        tuple(zip(w.keys, w.amounts, strict=True)) for w in account.windows
                    ),
                )
                for name, account in self._accounts.items()
            ),
            reservations=tuple(self._reservations.values()),
        )

    @classmethod
    def restore(cls, limits: Mapping[str, AccountLimits], snapshot: LedgerSnapshot) -> Ledger:
        """The ledger `snapshot` was taken of, under (possibly new) `limits`."""
        ledger = cls(limits)
        for spend in snapshot.accounts:
            if len(spend.buckets) != len(Window):
                raise LedgerError(f"account {spend.account!r}: expected {len(Window)} windows")
            account = ledger._account_or_retired(spend.account)
            for window, buckets in zip(account.windows, spend.buckets, strict=True):
                if window.keys:
                    raise LedgerError(f"account {spend.account!r} appears twice")
                previous = None
                for key, amount in buckets:
                    if (previous is not None and key <= previous) or amount <= 0:
                        raise LedgerError(f"account {spend.account!r}: malformed buckets")
                    window.keys.append(key)
                    window.amounts.append(amount)
                    window.total += amount
                    previous = key
                window._set_expiry()
        for reservation in snapshot.reservations:
            ledger._add_reservation(reservation)
        return ledger

    @classmethod
    def from_charges(
        cls,
        limits: Mapping[str, AccountLimits],
        charges: Iterable[tuple[str, float, int]],
        now: float,
        reservations: Iterable[Reservation] = (),
    ) -> Ledger:
        """Rebuild from stored `(account, committed_at, microdollars)` rows, as of `now`.

        Rows older than the monthly window are skipped; rows dated after `now`
        count (see the module doc). Accounts no longer configured are kept retired.
        """
        _check_now(now)
        ledger = cls(limits)
        for name, at, cost in sorted(charges, key=lambda row: row[1]):
            _check_now(at)
            _check_money("a stored charge", cost)
            ledger._account_or_retired(name).commit(cost, at)
        for account in ledger._accounts.values():
            account.touch(now)
        for reservation in reservations:
            ledger._add_reservation(reservation)
        return ledger

    def _account_or_retired(self, name: str) -> _Account:
        account = self._accounts.get(name)
        if account is None:
            account = self._accounts[name] = _Account(None)
        return account

    def _add_reservation(self, reservation: Reservation) -> None:
        _check_money("a reservation", reservation.microdollars)
        _check_now(reservation.reserved_at)
        if reservation.attempt_id in self._reservations:
            raise LedgerError(f"attempt {reservation.attempt_id!r} is already reserved")
        account = self._account_or_retired(reservation.account)
        account.reserved += reservation.microdollars
        account.holds += 1
        self._reservations[reservation.attempt_id] = reservation
        self._dirty.add(reservation.account)

    # --- updates ------------------------------------------------------------------------

    def _active(self, name: str) -> _Account:
        account = self._accounts.get(name)
        if account is None or not account.active:
            raise LedgerError(f"unknown account {name!r}")
        return account

    def reserve(self, attempt_id: str, account: str, amount: int, now: float) -> None:
        """Hold `amount` against `account` while attempt `attempt_id` is in flight."""
        _check_now(now)
        _check_money("a reservation", amount)
        target = self._active(account)
        if attempt_id in self._reservations:
            raise LedgerError(f"attempt {attempt_id!r} is already reserved")
        target.touch(now)
        target.reserved += amount
        target.holds += 1
        self._dirty.add(account)
        self._reservations[attempt_id] = Reservation(
            attempt_id=attempt_id, account=account, microdollars=amount, reserved_at=now
        )

    def settle(self, attempt_id: str, cost: int, now: float) -> bool:
        """Drop the reservation and commit `cost` at `now`; False (no-op) if not reserved."""
        _check_now(now)
        _check_money("a cost", cost)
        reservation = self._reservations.pop(attempt_id, None)
        if reservation is None:
            return False
        account = self._accounts[reservation.account]
        account.reserved -= reservation.microdollars
        account.holds -= 1
        account.touch(now)
        account.commit(cost, now)
        self._dirty.add(reservation.account)
        return True

    def held(self, now: float) -> tuple[int, int, float | None]:
        """Reservations in flight: how many, their microdollars, the oldest one's age (s)."""
        reservations = self._reservations.values()
        oldest = min((r.reserved_at for r in reservations), default=None)
        return (
            len(self._reservations),
            sum(r.microdollars for r in reservations),
            None if oldest is None else max(now - oldest, 0.0),
        )

    def release(self, attempt_id: str) -> bool:
        """Drop the reservation without a cost; False (no-op) if not reserved."""
        reservation = self._reservations.pop(attempt_id, None)
        if reservation is None:
            return False
        account = self._accounts[reservation.account]
        account.reserved -= reservation.microdollars
        account.holds -= 1
        self._dirty.add(reservation.account)
        return True

    def commit(self, account: str, cost: int, now: float) -> None:
        """Commit `cost` at `now` with no reservation (e.g. usage reported after a release)."""
        _check_now(now)
        _check_money("a cost", cost)
        target = self._active(account)
        target.touch(now)
        target.commit(cost, now)
        self._dirty.add(account)

    # --- queries (each touches the account) -----------------------------------------

    def utilization(self, account: str, now: float, extra: int = 0) -> tuple[float, float, float]:
        """`p_w` for each `Window`, counting `extra` microdollars more (the request's estimate)."""
        _check_now(now)
        target = self._active(account)
        target.touch(now)
        w5, w7, w30 = target.windows
        c5, c7, c30 = target.capacity
        o5, o7, o30 = target.offset
        base = target.reserved + extra
        return (
            max(0, w5.total + base + o5) / c5 if c5 else 0.0,
            max(0, w7.total + base + o7) / c7 if c7 else 0.0,
            max(0, w30.total + base + o30) / c30 if c30 else 0.0,
        )

    def utilizations(
        self, accounts: Sequence[str], now: float, extra: int = 0
    ) -> list[tuple[float, float, float]]:
        """`utilization` of many accounts at once, from `levels`."""
        return [
            ((l5 + extra) * i5, (l7 + extra) * i7, (l30 + extra) * i30)
            for l5, l7, l30, i5, i7, i30 in self.levels(accounts, now)
        ]

    def levels(
        self, accounts: Sequence[str], now: float
    ) -> list[tuple[float, float, float, float, float, float]]:
        """Per account `(level5, level7, level30, 1/cap5, 1/cap7, 1/cap30)`, where a level is
        committed + reserved + offset: utilization is `(level + extra) * (1/cap)`.

        The router's hot path, one call a decision, served from a cache: only
        accounts that changed since the last call are recomputed, and all of
        them once a bucket has left some window by `now`.
        """
        _check_now(now)
        if now >= self._valid_until:
            self._relevel_expired(now)
        elif self._dirty:
            self._relevel(self._dirty, now)
        try:
            return list(map(self._levels.__getitem__, accounts))
        except KeyError as exc:
            raise LedgerError(f"unknown account {exc.args[0]!r}") from None

    def _relevel_expired(self, now: float) -> None:
        """A bucket left some window: recompute every level (a few times a minute at most,
        and other queries may have pruned windows meanwhile, so none is trusted)."""
        self._levels.clear()
        self._valid_until = _INF
        self._relevel([n for n, a in self._accounts.items() if a.active], now)

    def _relevel(self, names: Iterable[str], now: float) -> None:
        for name in list(names):
            account = self._accounts.get(name)
            if account is None or not account.active:
                self._levels.pop(name, None)
                continue
            account.touch(now)
            w5, w7, w30 = account.windows
            c5, c7, c30 = account.capacity
            o5, o7, o30 = account.offset
            held = account.reserved
            self._levels[name] = (
                w5.total + held + o5,
                w7.total + held + o7,
                w30.total + held + o30,
                1.0 / c5 if c5 else 0.0,
                1.0 / c7 if c7 else 0.0,
                1.0 / c30 if c30 else 0.0,
            )
            self._valid_until = min(self._valid_until, w5.expiry, w7.expiry, w30.expiry)
        self._dirty.clear()  # every caller has releveled (at least) the dirty accounts

    def over_capacity(self, account: str, now: float, extra: int = 0) -> bool:
        """Whether spending `extra` more would take any limited window past its capacity."""
        _check_now(now)
        target = self._active(account)
        target.touch(now)
        base = target.reserved + extra
        for window, capacity, offset in zip(
            target.windows, target.capacity, target.offset, strict=True
        ):
            if capacity and window.total + base + offset > capacity:
                return True
        return False

    def committed(self, account: str, window: Window, now: float) -> int:
        """Spend committed in `window` at `now` (offsets and reservations not included)."""
        _check_now(now)
        target = self._active(account)
        target.touch(now)
        return target.windows[window].total

    def reserved(self, account: str) -> int:
        """Total of the account's reservations in flight."""
        return self._active(account).reserved

    def capacity(self, account: str, window: Window) -> int:
        return self._active(account).capacity[window]

    def offset(self, account: str, window: Window) -> int:
        return self._active(account).offset[window]

    def reservation(self, attempt_id: str) -> Reservation | None:
        return self._reservations.get(attempt_id)

    def __contains__(self, account: object) -> bool:
        """Whether `account` is configured (retired accounts are not)."""
        found = self._accounts.get(account) if isinstance(account, str) else None
        return found is not None and found.active
