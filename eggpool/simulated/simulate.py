"""`eggpool simulate run`: a scenario's traffic through the real Pool, and what came of it.

Theory of operation. `run_scenario` draws the whole run from two
generators seeded from the run's seed, so the same scenario and seed give
the same report, byte for byte. One draws the arrivals, generated as the
run reaches them (its time from the arrival process, its model from the
weighted mix, streamed or not, its protocol, its input and output tokens,
its routing entropy); the other, as the `Engine` dispatches attempts, what
each provider does with each one (in dispatch order, which is itself
deterministic): refuse it inside a `down` window, answer 429 with the
window's Retry-After inside a `throttled` window, otherwise a 500 or a 429
at the configured rates, else a complete answer after the account's
latency (with jitter), streamed at its speed, reporting the drawn tokens.

The Pool's own records (`RequestFinalized`, `AttemptEnded`,
`BackoffChanged`) are all the report reads: per account the requests it
served and its share, spend, the most it spent in any rolling 5-hour
window, cooldowns and 429s seen; errors clients saw by status; failovers;
latency and time to first token percentiles.
"""

from __future__ import annotations

import bisect
import json
import math
import random
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import ClassVar

import attrs

from eggpool.core.config import Config
from eggpool.core.effects import (
    AttemptEnded,
    BackoffChanged,
    OpenUpstream,
    Record,
    RequestFinalized,
)
from eggpool.core.events import ClientRequestReceived, Now
from eggpool.core.ledger import WINDOW_SECONDS, account_limits
from eggpool.core.lifecycle import TOTAL_DEADLINE
from eggpool.simulated.engine import START, ClientArrival, Engine
from eggpool.simulated.provider import Reply
from eggpool.simulated.scenario import Arrival, Behaviour, Scenario

__all__ = [
    "AccountReport",
    "Planned",
    "Report",
    "answer",
    "compare_table",
    "complete",
    "run_plans",
    "run_scenario",
]

_FIVE_HOURS = float(WINDOW_SECONDS[0])
_WINDOWS = ("five_hour", "weekly", "monthly")  # the ledger's windows, in its order
_CHUNKS = 4
"""Body events per answer, at least. A provider sends a few tokens per event; a simulation
needs the first token's time, the answer's length and its usage, not every event (each
costs the Pool an event), so an answer's tokens come in a few pieces."""


@attrs.define
class AccountReport:
    requests: int = 0
    attempts: int = 0
    spend_microdollars: int = 0
    peaks: tuple[int, int, int] = (0, 0, 0)  # most spent in any 5 h / 7 d / 30 d window
    caps: tuple[int, int, int] = (0, 0, 0)  # the account's capacity in those windows
    cooldowns: int = 0
    rate_limited: int = 0  # 429s this account answered
    charges: list[tuple[float, int]] = attrs.Factory(list)  # (t, microdollars), in order

    def as_json(self, total: int) -> dict[str, object]:
        return {
            "requests": self.requests,
            "share": round(self.requests / total, 4) if total else 0.0,
            "attempts": self.attempts,
            "spend_usd": round(self.spend_microdollars / 1e6, 6),
            "peak_spend_usd": {
                name: round(peak / 1e6, 6) for name, peak in zip(_WINDOWS, self.peaks, strict=True)
            },
            "peak_window_use": {
                name: round(peak / cap, 4) if cap else None
                for name, peak, cap in zip(_WINDOWS, self.peaks, self.caps, strict=True)
            },
            "cooldowns": self.cooldowns,
            "rate_limited": self.rate_limited,
        }


@attrs.define
class Report:
    seed: int
    duration: float
    requests: int = 0
    outcomes: Counter[str] = attrs.Factory(Counter)
    errors: Counter[int] = attrs.Factory(Counter)  # client-visible status >= 400
    failovers: int = 0
    accounts: dict[str, AccountReport] = attrs.Factory(dict)
    # Seconds per request, as doubles: a day of traffic is hundreds of thousands.
    latencies: array[float] = attrs.Factory(lambda: array("d"))
    ttfts: array[float] = attrs.Factory(lambda: array("d"))
    start_wall: float = 0.0  # the run's wall clock at t = 0 (backoffs end at wall times)
    recorded: dict[str, str | None] = attrs.Factory(dict)  # a replay: request -> its account
    compared: int = 0
    matched: int = 0  # replayed requests that ended on the account they were recorded on
    _cooling: dict[tuple[str, str | None], float] = attrs.Factory(dict)
    cooldowns: dict[str, list[list[float]]] = attrs.Factory(dict)  # account -> [[from, to]]

    def as_json(self) -> dict[str, object]:
        return {
            "seed": self.seed,
            "duration_s": self.duration,
            "requests": self.requests,
            "outcomes": dict(sorted(self.outcomes.items())),
            "errors_by_status": {str(k): v for k, v in sorted(self.errors.items())},
            "failovers": self.failovers,
            "latency_ms": _percentiles(self.latencies),
            "ttft_ms": _percentiles(self.ttfts),
            "accounts": {
                name: report.as_json(self.requests)
                for name, report in sorted(self.accounts.items())
            },
            **(
                {"routed_as_recorded": {"requests": self.compared, "same_account": self.matched}}
                if self.recorded
                else {}
            ),
        }

    def to_json(self) -> str:
        return json.dumps(self.as_json(), indent=2, sort_keys=False) + "\n"

    ACCOUNT_COLUMNS: ClassVar[tuple[str, ...]] = (
        "account",
        "requests",
        "share",
        "spend $",
        "peak 5h $",
        "of 5h cap",
        "cooldowns",
        "429s",
    )

    def account_rows(self) -> list[tuple[str, ...]]:
        """One row per account, as `ACCOUNT_COLUMNS` name them (the table and the HTML)."""
        rows: list[tuple[str, ...]] = []
        for name, a in sorted(self.accounts.items()):
            share = a.requests / self.requests if self.requests else 0.0
            rows.append(
                (
                    name,
                    f"{a.requests:,}",
                    f"{share:.1%}",
                    f"{a.spend_microdollars / 1e6:,.4f}",
                    f"{a.peaks[0] / 1e6:,.4f}",
                    f"{a.peaks[0] / a.caps[0]:.1%}" if a.caps[0] else "-",
                    f"{a.cooldowns}",
                    f"{a.rate_limited}",
                )
            )
        return rows

    def table(self) -> str:
        """The summary a person reads: one line per account, then what clients saw."""
        rows = [self.ACCOUNT_COLUMNS, *self.account_rows()]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = [
            "  ".join(
                cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                for i, cell in enumerate(row)
            )
            for row in rows
        ]
        lines.insert(1, "-" * len(lines[0]))
        latency, ttft = _percentiles(self.latencies), _percentiles(self.ttfts)
        errors = ", ".join(f"{status}: {n:,}" for status, n in sorted(self.errors.items()))
        outcomes = ", ".join(f"{name}: {n:,}" for name, n in sorted(self.outcomes.items()))
        lines += [
            "",
            f"requests: {self.requests:,} in {self.duration:g}s (seed {self.seed})",
            *(
                [
                    f"routed as recorded: {self.matched:,} of {self.compared:,} "
                    f"({self.matched / self.compared:.1%}) on the same account"
                ]
                if self.compared
                else []
            ),
            f"outcomes: {outcomes or '-'}",
            f"errors clients saw: {errors or 'none'}",
            f"failovers: {self.failovers:,}",
            f"latency p50/p99: {latency['p50']:g} / {latency['p99']:g} ms; "
            f"first token p50/p99: {ttft['p50']:g} / {ttft['p99']:g} ms",
        ]
        return "\n".join(lines) + "\n"

    # -- aggregation ---------------------------------------------------------------------

    def add(self, record: Record, t: float) -> None:
        if isinstance(record, RequestFinalized):
            self.requests += 1
            self.outcomes[record.outcome] += 1
            if record.status >= 400:
                self.errors[record.status] += 1
            self.failovers += max(record.attempts - 1, 0)
            self.latencies.append(record.latency)
            if record.ttft is not None:
                self.ttfts.append(record.ttft)
            if record.request_id in self.recorded:
                self.compared += 1
                self.matched += self.recorded[record.request_id] == record.account
            if record.account is not None:
                account = self._account(record.account)
                account.requests += 1
                account.spend_microdollars += record.cost_microdollars
                account.charges.append((t, record.cost_microdollars))
        elif isinstance(record, AttemptEnded):
            account = self._account(record.account)
            account.attempts += 1
            if record.status == 429:
                account.rate_limited += 1
        elif isinstance(record, BackoffChanged) and record.account:
            # A cooldown starts when the account was not already cooling down; later
            # changes of the same backoff (longer, a probe planned) are not new ones.
            scope = (record.account, record.model)
            previous = self._cooling.get(scope)
            spans = self.cooldowns.setdefault(record.account, [])
            if record.until is None:
                self._cooling.pop(scope, None)
                if spans and spans[-1][1] > t:
                    spans[-1][1] = t  # ended early (a probe succeeded)
            else:
                end = record.until - self.start_wall
                if previous is None or previous <= self._wall(t):
                    self._account(record.account).cooldowns += 1
                    spans.append([t, end])
                elif spans:
                    spans[-1][1] = max(spans[-1][1], end)
                self._cooling[scope] = record.until

    def add_account(self, name: str) -> None:
        self._account(name)

    def _wall(self, t: float) -> float:
        return self.start_wall + t

    def _account(self, name: str) -> AccountReport:
        found = self.accounts.get(name)
        if found is None:
            found = self.accounts[name] = AccountReport()
        return found

    def finish(self, accounts: list[str], caps: Mapping[str, tuple[int, int, int]]) -> None:
        for name in accounts:
            self._account(name)
        for name, account in self.accounts.items():
            five_hour, weekly, monthly = (
                _peak_window(account.charges, float(width)) for width in WINDOW_SECONDS
            )
            account.peaks = (five_hour, weekly, monthly)
            account.caps = caps.get(name, (0, 0, 0))


def compare_table(first: Report, second: Report, names: tuple[str, str]) -> str:
    """Two runs side by side: per account share, spend, cooldowns and 429s, then what
    clients saw. An account only one pool has shows `-` for the other."""
    a_name, b_name = names
    rows = [("", a_name, b_name)]
    for account in sorted(set(first.accounts) | set(second.accounts)):
        cells = []
        for report in (first, second):
            found = report.accounts.get(account)
            if found is None:
                cells.append("-")
                continue
            share = found.requests / report.requests if report.requests else 0.0
            cells.append(
                f"{share:6.1%}  ${found.spend_microdollars / 1e6:,.4f}"
                f"  {found.cooldowns} cd  {found.rate_limited} 429"
            )
        rows.append((account, cells[0], cells[1]))
    rows.append(("", "", ""))
    labels = (
        "requests",
        "completed",
        "errors clients saw",
        "failovers",
        "latency p50 / p99 ms",
        "first token p50 / p99 ms",
    )
    for label, a, b in zip(labels, _summary(first), _summary(second), strict=True):
        rows.append((label, a, b))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"{a:{widths[0]}}  {b:>{widths[1]}}  {c:>{widths[2]}}".rstrip() for a, b, c in rows]
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines) + "\n"


def _summary(report: Report) -> tuple[str, ...]:
    latency, ttft = _percentiles(report.latencies), _percentiles(report.ttfts)
    return (
        f"{report.requests:,}",
        f"{report.outcomes.get('completed', 0):,}",
        f"{sum(report.errors.values()):,}",
        f"{report.failovers:,}",
        f"{latency['p50']:g} / {latency['p99']:g}",
        f"{ttft['p50']:g} / {ttft['p99']:g}",
    )


def _peak_window(charges: list[tuple[float, int]], width: float) -> int:
    """The most spent within any `width` seconds (charges in time order)."""
    best = total = start = 0
    for t, amount in charges:
        total += amount
        while charges[start][0] <= t - width:
            total -= charges[start][1]
            start += 1
        best = max(best, total)
    return best


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p99": 0.0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)

    return {"p50": at(0.50), "p99": at(0.99)}


@attrs.frozen
class Planned:
    at: float
    model: str
    stream: bool
    anthropic: bool
    input_tokens: int
    output_tokens: int
    entropy: int
    session: int  # requests of one session share their conversation's opening


def run_scenario(
    scenario: Scenario, *, seed: int | None = None, progress: Callable[[float], None] | None = None
) -> Report:
    """Simulate `scenario` (its own seed unless `seed` is given) and report what happened."""
    chosen = scenario.seed if seed is None else seed
    rng = random.Random(f"{chosen}/providers")
    config = scenario.config
    provider_of = {a.name: a.provider_id for a in config.accounts}
    report = Report(seed=chosen, duration=float(scenario.traffic.duration), start_wall=START.wall)

    def reply(effect: OpenUpstream, plan: Planned, t: float) -> Reply:
        behaviour = scenario.behaviour_of(effect.account, provider_of[effect.account])
        spent = report.accounts[effect.account].spend_microdollars
        return answer(behaviour, plan, t, rng, spent)

    def models(account: str, t: float) -> list[str]:
        behaviour = scenario.behaviour_of(account, provider_of[account])
        return [
            model
            for model in scenario.models[provider_of[account]]
            if not any(w.covers(model, t) for w in behaviour.withdrawn)
        ]

    # Arrivals and provider behaviour draw from separate generators: either may be consumed
    # at its own pace without changing the other.
    arrivals = random.Random(f"{chosen}/arrivals")
    plans = ((f"sim-{n:07d}", plan) for n, plan in enumerate(_arrivals(scenario, arrivals), 1))
    return run_plans(config, plans, report, reply=reply, models=models, progress=progress)


def run_plans(
    config: Config,
    plans: Iterable[tuple[str, Planned]],
    report: Report,
    *,
    reply: Callable[[OpenUpstream, Planned, float], Reply],
    models: Callable[[str, float], Sequence[str]],
    progress: Callable[[float], None] | None = None,
) -> Report:
    """Feed the planned requests (id, plan; in time order, taken as the run reaches them)
    to `config`'s Pool; `reply` says what a provider does with each attempt. Returns
    `report`, filled."""
    key = config.server.api_key
    auth = (("authorization", f"Bearer {key.reveal()}"),) if key is not None else ()
    headers = (("content-type", "application/json"), *auth)
    planned: dict[str, Planned] = {}  # requests in flight

    def attempt(effect: OpenUpstream, t: float) -> Reply:
        return reply(effect, planned[effect.request_id], t)

    def record(record: Record, t: float) -> None:
        report.add(record, t)
        if isinstance(record, RequestFinalized):
            planned.pop(record.request_id, None)

    def arrivals() -> Iterator[ClientArrival]:
        for request_id, plan in plans:
            planned[request_id] = plan
            yield plan.at, _event(request_id, plan, headers)

    for account in config.accounts:
        report.add_account(account.name)
    # Logs go nowhere in a simulation: the Pool need not write an access line per request.
    config = attrs.evolve(config, server=attrs.evolve(config.server, access_log=False))
    engine = Engine(config, reply=attempt, models=models, on_record=record)
    engine.feed(arrivals())
    duration = report.duration
    if progress is not None:
        for step in range(1, 101):
            engine.run(until=duration * step / 100)
            progress(step / 100)
    # Every request ends within the core's total deadline; stop as soon as the last has.
    engine.run(
        duration + TOTAL_DEADLINE + 60,
        done=lambda: not engine.requests_pending and report.requests >= engine.requests_sent,
    )
    limits = account_limits(config)
    report.finish(
        [a.name for a in config.accounts], {n: lim.capacity for n, lim in limits.items()}
    )
    return report


def _arrivals(scenario: Scenario, rng: random.Random) -> Iterator[Planned]:
    """Every request of the run, in time order. Poisson arrivals follow the daily curve
    and bursts by thinning (candidates at the peak rate, each kept with probability
    rate(t) / peak); constant ones are spaced 1 / rate(t) apart."""
    traffic = scenario.traffic
    names = [m.name for m in traffic.models]
    cumulative = list(_accumulate([m.weight for m in traffic.models]))
    peak = traffic.peak_rate
    continue_session = 1.0 - 1.0 / traffic.session_length
    session = 0
    first = True
    t = 0.0
    while True:
        if traffic.arrival is Arrival.POISSON:
            t += rng.expovariate(peak)
            if t < traffic.duration and rng.random() * peak >= traffic.rate_at(t):
                continue  # thinned out: the rate is below its peak now
        else:
            rate = traffic.rate_at(t)
            if rate <= 0:
                t = (t // 3600 + 1) * 3600  # a quiet hour of the curve: skip to the next
                continue
            t += 1.0 / rate
        if t >= traffic.duration:
            return
        if first or rng.random() >= continue_session:
            session += 1
        first = False
        pick = bisect.bisect_right(cumulative, rng.random() * cumulative[-1])
        yield Planned(
            at=t,
            model=names[min(pick, len(names) - 1)],
            stream=rng.random() < traffic.stream_share,
            anthropic=rng.random() < traffic.anthropic_share,
            input_tokens=_around(traffic.input_tokens, rng),
            output_tokens=_around(traffic.output_tokens, rng),
            entropy=rng.getrandbits(64),
            session=session,
        )


def _accumulate(weights: list[float]) -> list[float]:
    total, out = 0.0, []
    for weight in weights:
        total += weight
        out.append(total)
    return out


def _around(mean: int, rng: random.Random) -> int:
    """A token count around `mean`: uniform within half of it either way."""
    return max(1, round(mean * (0.5 + rng.random())))


def _event(
    request_id: str, plan: Planned, headers: tuple[tuple[str, str], ...]
) -> Callable[[Now], ClientRequestReceived]:
    # What `json.dumps` makes of {"model", "stream", "messages"[, "max_tokens"]}, written out:
    # a day of traffic is a lot of bodies. The conversation's opening is what the proxy
    # knows a session by (and session affinity keeps a session on one account): each
    # session gets its own.
    max_tokens = f', "max_tokens": {plan.output_tokens}' if plan.anthropic else ""
    data = (
        f'{{"model": {json.dumps(plan.model)}, "stream": {"true" if plan.stream else "false"}, '
        f'"messages": [{{"role": "user", "content": "Conversation {plan.session}"}}]{max_tokens}}}'
    ).encode()
    path = "/v1/messages" if plan.anthropic else "/v1/chat/completions"

    def make(now: Now) -> ClientRequestReceived:
        return ClientRequestReceived(
            now=now,
            request_id=request_id,
            entropy=plan.entropy,
            method="POST",
            path=path,
            headers=headers,
            body=data,
        )

    return make


def answer(behaviour: Behaviour, plan: Planned, t: float, rng: random.Random, spent: int) -> Reply:
    """What an account with `behaviour` does with `plan`'s attempt at `t` (see the module
    docs for the order); `spent` is what the account has spent so far (microdollars)."""
    for window in behaviour.down:
        if window.covers(t):
            return Reply.refused()
    for withdrawal in behaviour.withdrawn:
        if withdrawal.covers(plan.model, t):
            return Reply.model_not_found()
    cap = behaviour.spend_cap_usd
    if cap is not None and spent >= cap * 1e6:
        return Reply.status(402)  # the account's balance is used up
    for window in behaviour.throttled:
        if window.covers(t):
            return Reply.rate_limited(retry_after=float(window.retry_after))
    latency = behaviour.latency * (1 + behaviour.jitter * (2 * rng.random() - 1))
    draw = rng.random()
    if draw < behaviour.error_rate:
        return Reply.status(500, latency=latency)
    if draw < behaviour.error_rate + behaviour.rate_limit_rate:
        return Reply.rate_limited(retry_after=float(behaviour.retry_after), latency=latency)
    cut = plan.stream and behaviour.cut_rate > 0 and rng.random() < behaviour.cut_rate
    return complete(plan, latency, behaviour.tokens_per_second, cut=cut)


def complete(plan: Planned, ttft: float, tokens_per_second: float, *, cut: bool = False) -> Reply:
    """A complete answer to `plan`: its first token at `ttft`, the rest at the given speed
    (or, with `cut`, reset halfway)."""
    # The first token must arrive at `ttft`: the head comes one interval before it (a
    # stream's opening frames come with the head), so pieces are made small enough for
    # that interval to fit.
    pieces = max(_CHUNKS, math.ceil(plan.output_tokens / tokens_per_second / max(ttft, 1e-3)))
    per_chunk = -(-plan.output_tokens // pieces)  # ceiling: output ~ chunks * per_chunk
    chunks = -(-plan.output_tokens // per_chunk)
    interval = per_chunk / tokens_per_second
    head = max(ttft - interval, 0.0)
    timing = {"latency": head, "interval": interval, "opening_interval": 0.0}
    if cut:
        return Reply.reset_after(max(chunks // 2, 1), tokens_per_chunk=per_chunk, **timing)
    return Reply.ok(chunks, tokens_per_chunk=per_chunk, input_tokens=plan.input_tokens, **timing)
