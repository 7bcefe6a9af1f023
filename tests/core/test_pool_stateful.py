"""The Pool under random load: many requests, random upstream failures, disconnects, clock moves.

A `RuleBasedStateMachine` drives a real `Pool` through the virtual-clock
`Simulation` and the scriptable `FakeProvider`, and after every step checks
what must always hold (issue "Core lifecycle", done-when):

- each request is finalized at most once, and exactly once when its client
  got its end or left;
- no reservation outlives its request, and in-flight counts return to zero;
- the ledger holds exactly the sum of finalized costs;
- no effect targets an unknown attempt or request, and nothing is written to
  a client after its end (the harness records such violations);
- no failover happens after the first byte reached the client;
- no attempt goes to an account that was excluded (cooling, circuit open,
  quarantined, provider backoff) unless it is that account's probe.
"""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from eggpool.core.config import Config, parse_config
from eggpool.core.effects import OpenUpstream, RequestFinalized
from eggpool.core.events import Event, Now
from eggpool.core.health import VerdictKind
from eggpool.core.ledger import Window
from eggpool.core.pool import Pool
from eggpool.core.retry import TransportFailure
from eggpool.simulated.provider import FakeProvider, Reply
from tests.helpers.harness import Simulation

SERVER_KEY = "server-key-0123456789"
ACCOUNTS = {"p": ("p1", "p2", "p3"), "q": ("q1", "q2")}
REPLIES = [
    Reply.ok(chunks=3),
    Reply.ok(chunks=1),
    Reply.rate_limited(retry_after=20),
    Reply.rate_limited(),
    Reply.status(401),
    Reply.status(402),
    Reply.status(500),
    Reply.status(503),
    Reply.overloaded(),
    Reply.model_not_found(),
    Reply.cut_after(1),
    Reply.reset_after(2),
    Reply.stream_error(1),
    Reply.malformed(1),
    Reply.slow_first_byte(400),
    Reply.refused(),
    Reply.unreachable(),
    Reply.failed(TransportFailure.TLS),
]
EXCLUDED = {
    VerdictKind.COOLING,
    VerdictKind.CIRCUIT_OPEN,
    VerdictKind.MODEL_QUARANTINED,
    VerdictKind.PROVIDER_BACKOFF,
}


def pool_config() -> Config:
    providers: dict[str, Any] = {
        provider: {
            "base_url": f"https://{provider}.example.com/v1",
            "protocols": ["openai", "anthropic"],
            "models_endpoint": {"method": "DISABLED"},
            "static_models": [
                {"id": "m", "protocol": "openai"},
                {"id": "c", "protocol": "anthropic"},
            ],
            "read_timeout_s": 300,
            "accounts": [{"name": name, "api_key": "sk-test-0123456789abcdef"} for name in names],
        }
        for provider, names in ACCOUNTS.items()
    }
    return parse_config({"server": {"api_key": SERVER_KEY}, "providers": providers}, {})


class CheckedPool:
    """A Pool that remembers, for every attempt it opens, whether the account was excluded.
    (It wraps one: the accelerated build's compiled Pool cannot be subclassed here.)"""

    def __init__(self, config: Config, *, now: Now) -> None:
        self.wrapped = Pool(config, now=now)
        self.services = self.wrapped.services
        self.bad_dispatches: list[str] = []

    @property
    def in_flight(self) -> int:
        return self.wrapped.in_flight

    def handle(self, event: Event) -> list[Any]:
        effects = self.wrapped.handle(event)
        health = self.services.health
        for effect in effects:
            if not isinstance(effect, OpenUpstream):
                continue
            model = "m" if effect.url.endswith("/chat/completions") else "c"
            verdict = health.verdict(effect.account, model, event.now.wall)
            if verdict.kind in EXCLUDED and not _probing(self, effect):
                self.bad_dispatches.append(f"{effect.attempt_id} -> {verdict}")
        return effects


def _probing(pool: CheckedPool, effect: OpenUpstream) -> bool:
    state = pool.services.health._accounts[effect.account]  # test-only peek
    gates = [state.cooldown, *state.models.values()]
    return any(gate is not None and gate.probing == effect.attempt_id for gate in gates)


class PoolMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        config = pool_config()
        self.provider = FakeProvider({}, default=Reply.ok(chunks=2))
        self.sim = Simulation(
            lambda now: CheckedPool(config, now=now),
            self.provider,
            headers=(
                ("content-type", "application/json"),
                ("authorization", f"Bearer {SERVER_KEY}"),
            ),
        )
        self.sim.run(until=0.0)
        self.requests: list[str] = []

    @property
    def pool(self) -> CheckedPool:
        pool = self.sim.pool
        assert isinstance(pool, CheckedPool)
        return pool

    @rule(
        account=st.sampled_from([a for names in ACCOUNTS.values() for a in names]),
        replies=st.lists(st.sampled_from(REPLIES), min_size=1, max_size=3),
    )
    def script(self, account: str, replies: list[Reply]) -> None:
        self.provider.script(account, *replies, Reply.ok(chunks=2))

    @rule(stream=st.booleans(), anthropic=st.booleans(), pinned=st.sampled_from([None, "q"]))
    def request(self, stream: bool, anthropic: bool, pinned: str | None) -> None:
        if anthropic:
            model = "c" if pinned is None else f"c/{pinned}"
            rid = self.sim.messages(model, stream=stream)
        else:
            model = "m" if pinned is None else f"m/{pinned}"
            rid = self.sim.chat(model, stream=stream)
        self.requests.append(rid)

    @rule(data=st.data())
    def disconnect(self, data: st.DataObject) -> None:
        live = [r for r in self.requests if not self.sim.clients[r].ended]
        if live:
            self.sim.disconnect(data.draw(st.sampled_from(live)))

    @rule(seconds=st.sampled_from([0.01, 0.05, 0.2, 1.0, 5.0, 30.0, 301.0]))
    def advance(self, seconds: float) -> None:
        self.sim.advance(seconds)

    @rule(seconds=st.sampled_from([-600.0, -5.0, 5.0, 3600.0]))
    def wall_clock_jumps(self, seconds: float) -> None:
        self.sim.jump(seconds)

    # -- invariants --------------------------------------------------------------------

    @invariant()
    def nothing_impossible_happened(self) -> None:
        assert self.sim.all_violations() == []
        assert self.pool.bad_dispatches == []

    @invariant()
    def each_request_is_finalized_at_most_once_and_once_when_over(self) -> None:
        for rid in self.requests:
            finals = self.sim.finalized(rid)
            assert len(finals) <= 1, rid
            client = self.sim.clients[rid]
            if client.ended or client.gone:
                assert len(finals) == 1, f"{rid}: over but not finalized"

    @invariant()
    def no_reservation_outlives_its_request(self) -> None:
        ledger = self.pool.services.ledger
        finished = {f.request_id for f in self.sim.records(RequestFinalized)}
        for attempt in self.sim.attempts.values():
            if attempt.request_id in finished:
                assert ledger.reservation(attempt.attempt_id) is None, attempt.attempt_id

    @invariant()
    def the_ledger_holds_exactly_the_finalized_costs(self) -> None:
        ledger, now = self.pool.services.ledger, self.sim.now.wall
        held = sum(
            ledger.committed(account, Window.MONTHLY, now)
            for names in ACCOUNTS.values()
            for account in names
        )
        charged = sum(f.cost_microdollars for f in self.sim.records(RequestFinalized))
        # Charges leave the 30-day window only after 30 days; wall jumps stay far below that.
        assert held == charged

    @invariant()
    def no_failover_after_the_first_byte(self) -> None:
        for rid in self.requests:
            client = self.sim.clients[rid]
            if client.first_body_at is None:
                continue
            late = [
                a.attempt_id
                for a in self.sim.attempts_for(rid)
                if a.opened_at > client.first_body_at
            ]
            assert late == [], rid

    def teardown(self) -> None:
        # Let everything finish: then every request is over, nothing is held.
        self.sim.settle(limit=7200.0)
        for rid in self.requests:
            assert len(self.sim.finalized(rid)) == 1, rid
        assert self.pool.in_flight == 0
        services = self.pool.services
        assert all(count == 0 for count in services.inflight.values())
        for names in ACCOUNTS.values():
            for account in names:
                assert services.ledger.reserved(account) == 0
        self.the_ledger_holds_exactly_the_finalized_costs()
        self.nothing_impossible_happened()


PoolMachine.TestCase.settings = settings(PoolMachine.TestCase.settings, stateful_step_count=30)
TestPoolMachine = PoolMachine.TestCase


def test_a_simulated_run_replays_identically() -> None:
    machine = PoolMachine()
    machine.provider.script("p1", Reply.rate_limited(retry_after=5), Reply.ok(chunks=3))
    for stream in (True, False, True):
        machine.request(stream=stream, anthropic=False, pinned=None)
    machine.request(stream=True, anthropic=True, pinned="q")
    machine.sim.settle()
    machine.sim.assert_deterministic()
