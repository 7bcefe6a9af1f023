"""The Pool: the one object a shell drives. `pool.handle(event) -> list[Effect]`.

Theory of operation. Like `h11.Connection`, the Pool is mutable,
single-threaded and I/O-free. It owns the catalog, the ledger, health, the
router and every in-flight `RequestMachine`, and routes each event to the
part it concerns:

- a client request is authenticated (the server key, constant-time) and
  routed by path: `/v1/chat/completions` and `/v1/messages` start a request
  machine; `/v1/models`, `/v1/healthz` and `/v1/readyz` are answered from
  state; anything else is a protocol-shaped 404 or 405;
- upstream events and request timers go to the machine that owns the
  attempt (`attempt_request_id`); model-list answers go to the catalog;
- periodic work is driven by timers the Pool arms itself (`pool:refresh`
  re-lists models every `models.refresh_interval_s`);
- startup recovery is a pure function of the rows the shell loaded
  (`StateLoaded`): requests a crashed run left pending become `interrupted`
  (their reservations died with that run: the ledger is rebuilt from
  committed charges only), backoffs are restored, the catalog snapshot is
  reloaded. Requests are refused with 503 until then;
- shutdown stops new requests (503), lets streams run for the grace period,
  then interrupts what is left, each finalized once.

The Pool never reaches into a machine's state: a machine that reports
`done` is dropped, which is how "finalized exactly once" extends to the
Pool (a late event for a finished request finds no machine and is
ignored). Nothing lives in the Pool that a persisted row or a config
cannot rebuild, so there is nothing for a periodic sweep to reclaim: a
healthy long stream is never finalized merely by age (reference bug).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import assert_never
from urllib.parse import urlencode

from eggpool.core.catalog import (
    Catalog,
    ModelListFailure,
    ModelListPage,
    combine_pages,
    next_page_cursor,
    parse_model_list,
)
from eggpool.core.config import Config, ModelsMethod, Protocol
from eggpool.core.effects import (
    ArmTimer,
    CatalogChanged,
    Effect,
    FetchModelList,
    Log,
    OperationalEvent,
    Persist,
    RequestFinalized,
    RespondBody,
    RespondEnd,
    RespondHead,
)
from eggpool.core.errors import LocalFailure, render_error
from eggpool.core.events import (
    ClientGone,
    ClientRequestReceived,
    Event,
    ModelListFailed,
    ModelListReceived,
    Now,
    PersistFailed,
    ShutdownRequested,
    StateLoaded,
    TimerFired,
    UpstreamBodyEnded,
    UpstreamBodyReceived,
    UpstreamFailed,
    UpstreamResponseStarted,
)
from eggpool.core.health import BackoffChange, Health
from eggpool.core.ledger import Ledger, account_limits
from eggpool.core.lifecycle import TIMER_PREFIX, RequestMachine, Services, attempt_request_id
from eggpool.core.requests import parse_request
from eggpool.core.routing import Router, affinity_key, session_header, session_ranks
from eggpool.core.secret import Secret

__all__ = ["REFRESH_TIMER", "Pool", "authenticate"]

_PROTOCOL_PATHS = {"/v1/chat/completions": Protocol.OPENAI, "/v1/messages": Protocol.ANTHROPIC}
_JSON = (("content-type", "application/json"),)
REFRESH_TIMER = _REFRESH = "pool:refresh"
"""Feed `TimerFired(key=REFRESH_TIMER)` to re-list every account's models now."""
_SHUTDOWN = "pool:shutdown"


class Pool:
    """Every decision of a running EggPool. Feed it events; run the effects it returns."""

    def __init__(self, config: Config, *, now: Now) -> None:
        self.config = config
        self.services = Services(
            config=config,
            catalog=Catalog(config, now=now.wall),
            health=Health({a.name: a.provider_id for a in config.accounts}),
            ledger=Ledger(account_limits(config)),
            router=Router(config),
        )
        self._machines: dict[str, RequestMachine] = {}
        self._pages: dict[str, list[ModelListPage]] = {}
        self._loaded = False
        self._shutting_down = False
        self._session_ranks = session_ranks(config.routing.session_headers)

    # -- the one entry point -------------------------------------------------------------

    def handle(self, event: Event) -> list[Effect]:
        match event:
            case ClientRequestReceived():
                return self._client_request(event)
            case (
                UpstreamResponseStarted()
                | UpstreamBodyReceived()
                | UpstreamBodyEnded()
                | UpstreamFailed()
            ):
                return self._to_machine(attempt_request_id(event.attempt_id), event)
            case ClientGone():
                return self._to_machine(event.request_id, event)
            case TimerFired():
                return self._timer(event)
            case ModelListReceived():
                return self._model_list(event)
            case ModelListFailed():
                return self._refresh(
                    event.account, ModelListFailure(reason=event.reason), event.now
                )
            case StateLoaded():
                return self._state_loaded(event)
            case PersistFailed():
                return [
                    Log(
                        level="ERROR",
                        message="a record could not be stored",
                        fields=(("record", event.what), ("error", event.error)),
                    )
                ]
            case ShutdownRequested():
                return self._shutdown(event)
            case _:
                assert_never(event)

    @property
    def refreshing(self) -> bool:
        """A model-list refresh is still waiting for some account's answer."""
        return bool(self._pages)

    @property
    def in_flight(self) -> int:
        return len(self._machines)

    def _to_machine(self, request_id: str, event: Event) -> list[Effect]:
        machine = self._machines.get(request_id)
        if machine is None:
            return []  # a late event of a finished request
        effects = machine.handle(event)
        if machine.done:
            del self._machines[request_id]
            if self._shutting_down and not self._machines:
                effects += self._shutdown_complete(event.now)
        return effects

    # -- client requests -----------------------------------------------------------------

    def _client_request(self, event: ClientRequestReceived) -> list[Effect]:
        path, method = event.path, event.method.upper()
        protocol = _PROTOCOL_PATHS.get(path)
        # Errors speak the caller's protocol: Anthropic's under /v1/messages/ (count_tokens...).
        anthropic_family = path.startswith("/v1/messages/")
        shape = protocol or (Protocol.ANTHROPIC if anthropic_family else Protocol.OPENAI)
        if path == "/v1/healthz":
            return _json(event.request_id, 200, {"status": "ok"})
        if path == "/v1/readyz":
            reason = self.not_ready_reason(event.now)
            if reason is None:
                return _json(event.request_id, 200, {"status": "ok"})
            return _json(event.request_id, 503, {"status": "degraded", "reason": reason})
        failure = self._authenticate(event.headers)
        if failure is not None:
            return self._refuse(event, shape, failure)
        if path == "/v1/models":
            if method != "GET":
                return self._refuse(
                    event, shape, LocalFailure.method_not_allowed(method, path, ("GET",))
                )
            body = self.services.catalog.render_models(
                healthy=lambda account, _model: self.services.health.is_healthy(
                    account, event.now.wall
                )
            )
            effects: list[Effect] = [
                RespondHead(request_id=event.request_id, status=200, headers=_JSON),
                RespondBody(request_id=event.request_id, data=body),
                RespondEnd(request_id=event.request_id),
            ]
            if self.config.server.access_log:
                effects.append(_answered_log(event, 200, "ok"))
            return effects
        if protocol is None:
            return self._refuse(event, shape, LocalFailure.unknown_route(method, path))
        if method != "POST":
            return self._refuse(
                event, shape, LocalFailure.method_not_allowed(method, path, ("POST",))
            )
        if self._shutting_down:
            return self._refuse(event, protocol, LocalFailure.shutting_down())
        if not self._loaded:
            return self._refuse(event, protocol, LocalFailure.catalog_not_ready())
        affinity = self.config.routing.session_affinity
        header = session_header(event.headers, self._session_ranks) if affinity else None
        parsed = parse_request(
            protocol,
            event.body,
            split=self.services.catalog.split_model_id,
            fingerprint=affinity and header is None,
        )
        if isinstance(parsed, LocalFailure):
            return self._refuse(event, protocol, parsed)
        session = None
        if affinity:
            session = affinity_key(
                model=parsed.model, header=header, fingerprint=parsed.fingerprint
            )
        machine = RequestMachine(self.services, event, protocol, parsed, session)
        effects = machine.start()
        if not machine.done:
            self._machines[event.request_id] = machine
        return effects

    def _refuse(
        self, event: ClientRequestReceived, protocol: Protocol, failure: LocalFailure
    ) -> list[Effect]:
        """A request answered with an error before any machine was made (auth, route, parse)."""
        effects = _local(event.request_id, protocol, failure)
        if self.config.server.access_log:
            effects.append(_answered_log(event, failure.status, "rejected"))
        return effects

    def _authenticate(self, headers: tuple[tuple[str, str], ...]) -> LocalFailure | None:
        return authenticate(self.config.server.api_key, headers)

    def reservations(self, now: float) -> dict[str, object]:
        """The quota held for attempts in flight (the dashboard's system health)."""
        count, microdollars, oldest = self.services.ledger.held(now)
        return {
            "active": count,
            "reserved_usd": round(microdollars / 1e6, 6),
            "oldest_age_s": None if oldest is None else round(oldest, 3),
        }

    def price_provenance(self) -> list[dict[str, object]]:
        """The rates each served (model, provider) is billed at, and where each rate came
        from (override, provider metadata, the bundled table, the fallback...)."""
        out: list[dict[str, object]] = []
        for model, provider in self.services.catalog.served_pairs():
            prices = self.services.prices(provider, model)
            out.append(
                {
                    "model": model,
                    "provider": provider,
                    "usd_per_million": {
                        "input": prices.input / 1e6,
                        "output": prices.output / 1e6,
                        "cache_read": prices.cache_read / 1e6,
                        "cache_write": prices.cache_write / 1e6,
                    },
                    "sources": {
                        "input": prices.input_source.value,
                        "output": prices.output_source.value,
                        "cache_read": prices.cache_read_source.value,
                        "cache_write": prices.cache_write_source.value,
                    },
                    "configured": prices.configured,
                }
            )
        return out

    def not_ready_reason(self, now: Now) -> str | None:
        """Why the pool cannot serve yet (None: ready), for `/v1/readyz`."""
        if self._shutting_down:
            return "shutting down"
        if not self._loaded:
            return "state not loaded"
        accounts = self.config.accounts
        if not accounts:
            return "no accounts configured"
        if not any(account.enabled for account in accounts):
            return "no enabled accounts"
        if not self.services.catalog.status(now=now.wall).usable:
            return "no usable model catalog"
        return None

    # -- timers --------------------------------------------------------------------------

    def _timer(self, event: TimerFired) -> list[Effect]:
        if event.key.startswith(TIMER_PREFIX):
            return self._to_machine(event.key.removeprefix(TIMER_PREFIX), event)
        if event.key == _REFRESH:
            return self._fetch_all(event.now) + self._arm_refresh(event.now)
        if event.key == _SHUTDOWN:
            return self._interrupt_all(event.now)
        return [Log(level="WARNING", message="unknown timer", fields=(("key", event.key),))]

    # -- model catalog -------------------------------------------------------------------

    def _fetch_all(self, now: Now) -> list[Effect]:
        effects: list[Effect] = []
        for provider in self.config.providers.values():
            if provider.models_endpoint.method is ModelsMethod.DISABLED:
                continue
            for account in provider.accounts:
                if account.enabled:
                    self._pages[account.name] = []
                    effects.append(self._fetch(account.name, None))
        self._note_loading(now)
        return effects

    def _note_loading(self, now: Now) -> None:
        """While some account's first listing is in flight (it never listed before, and no
        snapshot says what it serves), a model the catalog does not know may be that
        account's: the answer is 503 "not ready" (retry), not a definitive 404."""
        pages = self._pages
        self.services.catalog_loading = bool(pages) and any(
            status.last_success is None and status.account_name in pages
            for status in self.services.catalog.status(now=now.wall).accounts
        )

    def _fetch(self, account_name: str, after_id: str | None) -> FetchModelList:
        identity = self.services.identity(account_name)
        provider = identity.provider
        endpoint = provider.models_endpoint
        query = dict(endpoint.query)
        if after_id is not None:
            query["after_id"] = after_id
        url = provider.base_url + endpoint.path + (f"?{urlencode(query)}" if query else "")
        headers = list(identity.headers)
        body = None
        if endpoint.method is ModelsMethod.POST:
            body = json.dumps(dict(endpoint.body or {})).encode()
            headers.append(("content-type", "application/json"))
        return FetchModelList(
            account=account_name,
            url=url,
            method=endpoint.method.value,
            headers=tuple(headers),
            body=body,
            proxy=identity.account.proxy,
            timeout=provider.http.read_timeout_s,
            connect_timeout=provider.http.connect_timeout_s,
            write_timeout=provider.http.write_timeout_s,
            pool_timeout=provider.http.pool_timeout_s,
            provider=provider.id,
        )

    def _model_list(self, event: ModelListReceived) -> list[Effect]:
        if not 200 <= event.status < 300:
            failure = ModelListFailure(reason=f"the models endpoint answered {event.status}")
            return self._refresh(event.account, failure, event.now)
        result = parse_model_list(event.body)
        if isinstance(result, ModelListFailure):
            return self._refresh(event.account, result, event.now)
        pages = self._pages.setdefault(event.account, [])
        pages.append(result)
        cursor = next_page_cursor(pages)
        if cursor is not None:
            return [self._fetch(event.account, cursor)]
        return self._refresh(event.account, combine_pages(pages), event.now)

    def _refresh(
        self, account: str, result: ModelListPage | ModelListFailure, now: Now
    ) -> list[Effect]:
        self._pages.pop(account, None)
        catalog = self.services.catalog
        diff = catalog.refresh(account, result, now=now.wall)
        if self.services.catalog_loading:
            self._note_loading(now)
        if not diff:
            return []
        return [Persist(record=CatalogChanged(snapshot=catalog.snapshot()))]

    def _arm_refresh(self, now: Now) -> list[Effect]:
        interval = self.config.models.refresh_interval_s
        return [ArmTimer(key=_REFRESH, at=now.mono + interval)] if interval > 0 else []

    # -- startup and shutdown ------------------------------------------------------------

    def _state_loaded(self, event: StateLoaded) -> list[Effect]:
        now = event.now
        config, services = self.config, self.services
        if event.catalog is not None:
            services.catalog = Catalog.restore(config, event.catalog, now=now.wall)
        services.ledger = Ledger.from_charges(
            account_limits(config),
            ((c.account, c.at, c.microdollars) for c in event.charges),
            now.wall,
        )
        services.health.restore(
            (
                BackoffChange(
                    provider=b.provider,
                    account=b.account,
                    model=b.model,
                    reason=b.reason,
                    until=b.until,
                    probe_at=b.probe_at,
                )
                for b in event.backoffs
            ),
            now.wall,
        )
        effects: list[Effect] = []
        for pending in event.pending:
            effects.append(
                Persist(
                    record=RequestFinalized(
                        request_id=pending.request_id,
                        at=now.wall,
                        outcome="interrupted",
                        status=0,
                        model="",
                        account=pending.account,
                        provider=None,
                        attempts=0,
                        usage=None,
                        cost_microdollars=0,
                        exactness="unknown",
                        latency=max(now.wall - pending.started_at, 0.0),
                        ttft=None,
                        streamed=False,
                    )
                )
            )
        if event.pending:
            effects.append(
                Persist(
                    record=OperationalEvent(
                        at=now.wall,
                        kind="crash_recovery",
                        detail=f"{len(event.pending)} pending request(s) marked interrupted",
                    )
                )
            )
        self._loaded = True
        if config.models.startup_refresh:
            effects += self._fetch_all(now)
        return effects + self._arm_refresh(now)

    def _shutdown(self, event: ShutdownRequested) -> list[Effect]:
        self._shutting_down = True
        if not self._machines:
            return self._shutdown_complete(event.now)
        return [ArmTimer(key=_SHUTDOWN, at=event.now.mono + event.grace)]

    def _interrupt_all(self, now: Now) -> list[Effect]:
        effects: list[Effect] = []
        for request_id, machine in list(self._machines.items()):
            effects += machine.interrupt(now)
            del self._machines[request_id]
        return effects + self._shutdown_complete(now)

    def _shutdown_complete(self, now: Now) -> list[Effect]:
        return [
            Persist(
                record=OperationalEvent(at=now.wall, kind="shutdown", detail="all requests ended")
            )
        ]


def _json(request_id: str, status: int, payload: Mapping[str, object]) -> list[Effect]:
    return [
        RespondHead(request_id=request_id, status=status, headers=_JSON),
        RespondBody(request_id=request_id, data=json.dumps(payload).encode()),
        RespondEnd(request_id=request_id),
    ]


def _answered_log(event: ClientRequestReceived, status: int, outcome: str) -> Log:
    """The access-log line of a request the Pool answered itself (no upstream involved)."""
    return Log(
        level="INFO",
        message="request",
        fields=(
            ("request", event.request_id),
            ("path", f"{event.method} {event.path}"),
            ("outcome", outcome),
            ("status", f"{status}"),
        ),
    )


def _local(request_id: str, protocol: Protocol, failure: LocalFailure) -> list[Effect]:
    """A local error for a request no machine was made for (auth, route, parse)."""
    response = render_error(protocol, failure)
    return [
        RespondHead(
            request_id=request_id,
            status=response.status,
            headers=(*response.headers, ("x-eggpool-request-id", request_id)),
        ),
        RespondBody(request_id=request_id, data=response.body),
        RespondEnd(request_id=request_id),
    ]


def authenticate(
    expected: Secret | None, headers: Iterable[tuple[str, str]]
) -> LocalFailure | None:
    """Why a request may not pass (None: it may): the server key from `Authorization:
    Bearer` or, failing that, `x-api-key`, compared in constant time. No key configured:
    anything passes (the listener is then loopback only, unless configured otherwise)."""
    if expected is None:
        return None
    presented = None
    for name, value in headers:
        lower = name.lower()
        if lower == "authorization":
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                presented = token.strip()
                break
        elif lower == "x-api-key" and presented is None and value.strip():
            presented = value.strip()
    if presented is None:
        return LocalFailure.missing_api_key()
    if Secret(presented) != expected:  # constant-time comparison
        return LocalFailure.invalid_api_key()
    return None
