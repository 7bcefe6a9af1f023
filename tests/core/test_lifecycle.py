"""Playbooks for the Pool and its request machines: event in, expected effects out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from eggpool.core.config import Config, parse_config
from eggpool.core.effects import (
    AbortUpstream,
    ArmTimer,
    AttemptEnded,
    BackoffChanged,
    CancelTimer,
    Effect,
    FetchModelList,
    Log,
    OpenUpstream,
    OperationalEvent,
    Persist,
    RequestFinalized,
    RespondBody,
    RespondEnd,
    RespondHead,
)
from eggpool.core.events import (
    ClientGone,
    ClientRequestReceived,
    Event,
    ModelListReceived,
    Now,
    ShutdownRequested,
    StateLoaded,
    StoredPending,
    TimerFired,
    UpstreamBodyEnded,
    UpstreamBodyReceived,
    UpstreamFailed,
    UpstreamResponseStarted,
)
from eggpool.core.lifecycle import ALLOWED, TOTAL_DEADLINE, state_diagram
from eggpool.core.pool import REFRESH_TIMER, Pool
from eggpool.core.retry import TransportFailure

KEY = "sk-test-0123456789abcdef"
SERVER_KEY = "server-key-0123456789"
WALL0 = 1_800_000_000.0
CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"


def config(*accounts: str, **extra: Any) -> Config:
    doc: dict[str, Any] = {
        "server": {"api_key": SERVER_KEY},
        "providers": {
            "p": {
                "base_url": "https://api.example.com/v1",
                "protocols": ["openai", "anthropic"],
                "models_endpoint": {"method": "DISABLED"},
                "static_models": [
                    {"id": "m", "protocol": "openai"},
                    {"id": "c", "protocol": "anthropic"},
                ],
                "accounts": [{"name": a, "api_key": KEY} for a in accounts or ("a", "b")],
            }
        },
    }
    doc.update(extra)
    return parse_config(doc, {})


class Driver:
    """A pool on a virtual clock; every effect it returns is kept in order."""

    def __init__(self, cfg: Config | None = None, *, loaded: bool = True) -> None:
        self.mono = 100.0
        self.config = cfg or config()
        self.start = self.now()
        self.pool = Pool(self.config, now=self.start)
        self.effects: list[Effect] = []
        self.timers: dict[str, float] = {}  # armed: key -> monotonic time it fires
        self.log: list[tuple[Event, list[Effect]]] = []
        if loaded:
            self.send(StateLoaded(now=self.now()))
        self.counter = 0

    def now(self) -> Now:
        return Now(self.mono, WALL0 + self.mono)

    def tick(self, seconds: float) -> None:
        self.mono += seconds

    def send(self, event: Event) -> list[Effect]:
        if isinstance(event, TimerFired):
            self.timers.pop(event.key, None)  # a timer fires once
        out = self.pool.handle(event)
        self.effects += out
        self.log.append((event, out))
        for effect in out:
            if isinstance(effect, ArmTimer):
                self.timers[effect.key] = effect.at
            elif isinstance(effect, CancelTimer):
                self.timers.pop(effect.key, None)
        return out

    def advance(self, seconds: float) -> None:
        """Move the clock on, firing each armed timer when its time comes (a timer service)."""
        end = self.mono + seconds
        while due := sorted((at, key) for key, at in self.timers.items() if at <= end):
            at, key = due[0]
            self.mono = max(self.mono, at)
            self.send(TimerFired(now=self.now(), key=key))
        self.mono = end

    def request(
        self,
        body: dict[str, Any],
        *,
        path: str = CHAT,
        method: str = "POST",
        key: str | None = SERVER_KEY,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> tuple[str, list[Effect]]:
        self.counter += 1
        request_id = f"r{self.counter}"
        auth = (("authorization", f"Bearer {key}"),) if key else ()
        event = ClientRequestReceived(
            now=self.now(),
            request_id=request_id,
            entropy=self.counter,
            method=method,
            path=path,
            headers=(("content-type", "application/json"), *auth, *headers),
            body=json.dumps(body).encode(),
        )
        return request_id, self.send(event)

    def head(self, attempt: str, status: int, *headers: tuple[str, str]) -> list[Effect]:
        return self.send(
            UpstreamResponseStarted(
                now=self.now(), attempt_id=attempt, status=status, headers=headers
            )
        )

    def body(self, attempt: str, data: bytes) -> list[Effect]:
        return self.send(UpstreamBodyReceived(now=self.now(), attempt_id=attempt, data=data))

    def end(self, attempt: str) -> list[Effect]:
        return self.send(UpstreamBodyEnded(now=self.now(), attempt_id=attempt))

    def answer(
        self, attempt: str, status: int, data: bytes, *headers: tuple[str, str]
    ) -> list[Effect]:
        return self.head(attempt, status, *headers) + self.body(attempt, data) + self.end(attempt)

    def finals(self) -> list[RequestFinalized]:
        return [
            e.record
            for e in self.effects
            if isinstance(e, Persist) and isinstance(e.record, RequestFinalized)
        ]

    def client(self, request_id: str) -> tuple[int | None, bytes, bool]:
        status, data, ended = None, b"", False
        for effect in self.effects:
            if isinstance(effect, RespondHead) and effect.request_id == request_id:
                status = effect.status
            elif isinstance(effect, RespondBody) and effect.request_id == request_id:
                data += effect.data
            elif isinstance(effect, RespondEnd) and effect.request_id == request_id:
                ended = True
        return status, data, ended


def opened(effects: list[Effect]) -> list[OpenUpstream]:
    return [e for e in effects if isinstance(e, OpenUpstream)]


def chat(stream: bool = False, **extra: Any) -> dict[str, Any]:
    return {
        "model": "m",
        "stream": stream,
        "messages": [{"role": "user", "content": "hi"}],
        **extra,
    }


def sse(obj: object) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


CONTENT = sse({"id": "x", "choices": [{"index": 0, "delta": {"content": "Hello"}}], "usage": None})
USAGE_ONLY = sse({"id": "x", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3}})
DONE = b"data: [DONE]\n\n"
PLAIN = json.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 4},
    }
).encode()
RATE_LIMITED = json.dumps(
    {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}
).encode()


# --- success ------------------------------------------------------------------------------


def test_plain_success_is_relayed_and_finalized_once() -> None:
    d = Driver()
    request_id, effects = d.request(chat())
    (upstream,) = opened(effects)
    assert upstream.url == "https://api.example.com/v1/chat/completions"
    d.tick(0.4)
    d.answer(upstream.attempt_id, 200, PLAIN, ("content-type", "application/json"))
    assert d.client(request_id) == (200, PLAIN, True)
    (final,) = d.finals()
    assert (final.outcome, final.status, final.attempts, final.account) == (
        "completed",
        200,
        1,
        upstream.account,
    )
    assert final.usage is not None
    assert final.usage.output_tokens == 4
    assert final.cost_microdollars > 0
    ledger = d.pool.services.ledger
    assert ledger.reserved(upstream.account) == 0
    assert d.pool.in_flight == 0


def test_each_finished_request_writes_one_access_log_line_without_the_key() -> None:
    d = Driver()
    request_id, effects = d.request(chat())
    (upstream,) = opened(effects)
    d.tick(0.25)
    d.answer(upstream.attempt_id, 200, PLAIN, ("content-type", "application/json"))
    (line,) = [e for e in d.effects if isinstance(e, Log) and e.message == "request"]
    fields = dict(line.fields)
    assert fields["request"] == request_id
    assert (fields["outcome"], fields["status"], fields["account"]) == (
        "completed",
        "200",
        upstream.account,
    )
    assert (fields["ms"], fields["in"], fields["out"]) == ("250", "12", "4")
    assert KEY not in repr(line)
    assert SERVER_KEY not in repr(line)


def test_a_request_refused_before_routing_is_logged_too() -> None:
    d = Driver()
    d.request(chat(), key="wrong-key-0000000")
    (line,) = [e for e in d.effects if isinstance(e, Log) and e.message == "request"]
    fields = dict(line.fields)
    assert (fields["path"], fields["outcome"], fields["status"]) == (
        "POST /v1/chat/completions",
        "rejected",
        "401",
    )
    assert "wrong-key" not in repr(line)


def test_an_unknown_path_under_messages_gets_an_anthropic_shaped_404() -> None:
    d = Driver()
    d.request({"model": "c", "messages": []}, path="/v1/messages/count_tokens")
    status, body, ended = d.client("r1")
    assert (status, ended) == (404, True)
    assert json.loads(body)["type"] == "error"  # Anthropic's envelope, not OpenAI's


def test_access_log_off_writes_no_line() -> None:
    d = Driver(config(server={"api_key": SERVER_KEY, "access_log": False}))
    _, effects = d.request(chat())
    (upstream,) = opened(effects)
    d.answer(upstream.attempt_id, 200, PLAIN, ("content-type", "application/json"))
    assert d.finals()
    assert not [e for e in d.effects if isinstance(e, Log) and e.message == "request"]


def test_an_unknown_model_while_a_first_listing_runs_is_503_retry_not_404() -> None:
    accounts = [{"name": name, "api_key": KEY} for name in ("a", "b")]
    d = Driver(
        config(providers={"p": {"base_url": "https://api.example.com/v1", "accounts": accounts}})
    )
    _, effects = d.request(chat())
    assert d.client("r1")[0] == 503
    (head,) = [e for e in effects if isinstance(e, RespondHead)]
    assert dict(head.headers)["retry-after"] == "1"
    models = json.dumps({"object": "list", "data": [{"id": "other", "object": "model"}]})
    d.send(ModelListReceived(now=d.now(), account="a", status=200, body=models.encode()))
    d.request(chat())
    assert d.client("r2")[0] == 503  # "m" may still be b's: its first listing is out
    d.send(ModelListReceived(now=d.now(), account="b", status=200, body=models.encode()))
    d.request(chat())
    assert d.client("r3")[0] == 404  # every listing is in: now it is definitive


def test_upstream_credentials_replace_the_clients() -> None:
    d = Driver()
    _, effects = d.request(chat())
    (upstream,) = opened(effects)
    names = {name.lower(): value for name, value in upstream.headers}
    assert str(names["authorization"]) != f"Bearer {SERVER_KEY}"
    assert names["authorization"].reveal() == f"Bearer {KEY}"  # type: ignore[union-attr]
    assert names["accept-encoding"] == "identity"


def test_client_headers_are_forwarded_except_credentials_and_hop_by_hop() -> None:
    d = Driver()
    _, effects = d.request(
        chat(),
        headers=(
            ("anthropic-beta", "prompt-caching-2024-07-31"),
            ("user-agent", "OpenAI/Python 1.0"),
            ("cookie", "session=secret"),
            ("connection", "keep-alive, x-private"),
            ("x-private", "hop"),
            ("transfer-encoding", "chunked"),
        ),
    )
    (upstream,) = opened(effects)
    names = [name.lower() for name, _ in upstream.headers]
    assert {"anthropic-beta", "user-agent"} <= set(names)
    assert not {"cookie", "connection", "x-private", "transfer-encoding"} & set(names)
    assert names.count("authorization") == 1  # the account's, not the client's


def test_stream_success_strips_the_usage_chunk_the_client_did_not_ask_for() -> None:
    d = Driver()
    request_id, effects = d.request(chat(stream=True))
    (upstream,) = opened(effects)
    assert b'"include_usage":true' in upstream.body
    d.head(upstream.attempt_id, 200, ("content-type", "text/event-stream"))
    assert d.client(request_id)[0] is None  # nothing goes out before the first bytes
    d.body(upstream.attempt_id, CONTENT)
    assert d.client(request_id)[0] == 200
    d.body(upstream.attempt_id, USAGE_ONLY + DONE)
    d.end(upstream.attempt_id)
    assert d.client(request_id) == (200, CONTENT + DONE, True)
    (final,) = d.finals()
    assert final.usage is not None
    assert final.usage.input_tokens == 9
    assert final.ttft is not None


def test_a_client_that_asked_for_usage_gets_the_usage_chunk() -> None:
    d = Driver()
    request_id, effects = d.request(chat(stream=True, stream_options={"include_usage": True}))
    (upstream,) = opened(effects)
    d.answer(upstream.attempt_id, 200, CONTENT + USAGE_ONLY + DONE)
    assert d.client(request_id)[1] == CONTENT + USAGE_ONLY + DONE


# --- failover -----------------------------------------------------------------------------


def test_429_then_failover_to_the_other_account() -> None:
    d = Driver()
    request_id, effects = d.request(chat())
    (first,) = opened(effects)
    effects = d.answer(first.attempt_id, 429, RATE_LIMITED, ("retry-after", "30"))
    (second,) = opened(effects)
    assert second.account != first.account
    ended = [
        e.record for e in effects if isinstance(e, Persist) and isinstance(e.record, AttemptEnded)
    ]
    assert [(r.status, r.category, r.failover) for r in ended] == [(429, "rate_limited", True)]
    assert any(isinstance(e, Persist) and isinstance(e.record, BackoffChanged) for e in effects)
    d.answer(second.attempt_id, 200, PLAIN)
    assert d.client(request_id) == (200, PLAIN, True)
    (final,) = d.finals()
    assert final.attempts == 2


def test_all_accounts_throttled_answers_429_with_the_soonest_retry_after() -> None:
    d = Driver()
    request_id, effects = d.request(chat())
    (first,) = opened(effects)
    (second,) = opened(d.answer(first.attempt_id, 429, RATE_LIMITED, ("retry-after", "30")))
    d.answer(second.attempt_id, 429, RATE_LIMITED, ("retry-after", "12"))
    status, body, ended = d.client(request_id)
    assert (status, ended) == (429, True)
    heads = [e for e in d.effects if isinstance(e, RespondHead) and e.request_id == request_id]
    assert ("retry-after", "12") in heads[0].headers
    assert json.loads(body)["error"]["code"] == "rate_limit_exceeded"


def test_a_new_request_while_all_are_cooling_gets_429_without_an_attempt() -> None:
    d = Driver()
    _, effects = d.request(chat())
    (first,) = opened(effects)
    (second,) = opened(d.answer(first.attempt_id, 429, RATE_LIMITED, ("retry-after", "30")))
    d.answer(second.attempt_id, 429, RATE_LIMITED, ("retry-after", "20"))
    d.tick(5)
    request_id, effects = d.request(chat())
    assert opened(effects) == []
    assert d.client(request_id)[0] == 429


def test_upstream_auth_failure_fails_over() -> None:
    d = Driver()
    request_id, effects = d.request(chat())
    (first,) = opened(effects)
    (second,) = opened(
        d.answer(first.attempt_id, 401, b'{"error": {"message": "Invalid API key"}}')
    )
    d.answer(second.attempt_id, 200, PLAIN)
    assert d.client(request_id)[0] == 200


def test_a_client_error_is_passed_through_without_failover() -> None:
    d = Driver()
    request_id, effects = d.request(chat())
    (first,) = opened(effects)
    error = (
        b'{"error": {"message": "Unsupported parameter: foo", "type": "invalid_request_error"}}'
    )
    effects = d.answer(first.attempt_id, 400, error)
    assert opened(effects) == []
    assert d.client(request_id) == (400, error, True)
    assert d.finals()[0].outcome == "client_error"


def test_first_byte_timeout_aborts_and_fails_over() -> None:
    d = Driver()
    request_id, effects = d.request(chat())
    (first,) = opened(effects)
    (timer,) = [e for e in effects if isinstance(e, ArmTimer) and e.key.startswith("req:")]
    d.mono = timer.at
    effects = d.send(TimerFired(now=d.now(), key=timer.key))
    assert AbortUpstream(attempt_id=first.attempt_id) in effects
    (second,) = opened(effects)
    d.answer(second.attempt_id, 200, PLAIN)
    assert d.client(request_id)[0] == 200


READ_TIMEOUT = config().providers["p"].http.read_timeout_s


def timer_effects(effects: list[Effect]) -> list[Effect]:
    return [e for e in effects if isinstance(e, ArmTimer | CancelTimer) and e.key != REFRESH_TIMER]


def request_timers(d: Driver) -> dict[str, float]:
    return {key: at for key, at in d.timers.items() if key != REFRESH_TIMER}


def test_one_timer_watches_a_request_and_chunks_arm_nothing() -> None:
    d = Driver()
    request_id, effects = d.request(chat(stream=True))
    (first,) = opened(effects)
    (arm,) = timer_effects(effects)
    assert isinstance(arm, ArmTimer)
    assert arm.at == d.mono + READ_TIMEOUT  # the provider's read_timeout_s: the first byte
    quiet = d.head(first.attempt_id, 200) + d.body(first.attempt_id, CONTENT)
    quiet += d.body(first.attempt_id, CONTENT + USAGE_ONLY + DONE)
    assert timer_effects(quiet) == []
    assert timer_effects(d.end(first.attempt_id)) == [CancelTimer(key=arm.key)]
    assert d.client(request_id)[0] == 200
    assert request_timers(d) == {}


def test_a_stream_times_out_after_read_timeout_of_silence_not_of_its_length() -> None:
    d = Driver()
    request_id, effects = d.request(chat(stream=True))
    (first,) = opened(effects)
    d.advance(10)
    d.head(first.attempt_id, 200)
    for _ in range(3):  # chunks apart by 2/3 of the timeout: twice the timeout in all
        d.advance(READ_TIMEOUT * 2 / 3)
        d.body(first.attempt_id, CONTENT)
    last_chunk = d.mono
    assert AbortUpstream(attempt_id=first.attempt_id) not in d.effects
    d.advance(READ_TIMEOUT - 0.1)
    assert AbortUpstream(attempt_id=first.attempt_id) not in d.effects
    d.advance(0.1)
    assert d.mono == pytest.approx(last_chunk + READ_TIMEOUT)
    assert AbortUpstream(attempt_id=first.attempt_id) in d.effects
    status, data, ended = d.client(request_id)
    assert (status, ended) == (200, True)
    assert b"upstream_interrupted" in data
    assert d.finals()[0].outcome == "upstream_error"
    assert d.pool.in_flight == 0
    assert request_timers(d) == {}


def test_a_stream_that_never_goes_quiet_ends_at_the_total_deadline() -> None:
    d = Driver()
    start = d.mono
    request_id, effects = d.request(chat(stream=True))
    (first,) = opened(effects)
    d.head(first.attempt_id, 200)
    while not d.finals():
        d.body(first.attempt_id, CONTENT)
        d.advance(READ_TIMEOUT / 2)
    (final,) = d.finals()
    assert (final.outcome, final.status, final.latency) == ("timeout", 504, TOTAL_DEADLINE)
    assert d.mono - start < TOTAL_DEADLINE + READ_TIMEOUT
    assert AbortUpstream(attempt_id=first.attempt_id) in d.effects
    assert d.client(request_id)[2] is True
    assert request_timers(d) == {}


def test_a_failover_to_a_quicker_provider_arms_the_timer_earlier() -> None:
    fast = config(
        "a",
        providers={
            "p": {
                "base_url": "https://api.example.com/v1",
                "models_endpoint": {"method": "DISABLED"},
                "static_models": [{"id": "m", "protocol": "openai"}],
                "read_timeout_s": 60,
                "routing_priority": 1,
                "accounts": [{"name": "a", "api_key": KEY}],
            },
            "q": {
                "base_url": "https://api.example.org/v1",
                "models_endpoint": {"method": "DISABLED"},
                "static_models": [{"id": "m", "protocol": "openai"}],
                "read_timeout_s": 5,
                "accounts": [{"name": "b", "api_key": KEY}],
            },
        },
    )
    d = Driver(fast)
    request_id, effects = d.request(chat())
    (first,) = opened(effects)
    assert first.account == "a"
    d.advance(1)
    (second,) = opened(d.answer(first.attempt_id, 429, RATE_LIMITED))
    assert second.account == "b"
    assert request_timers(d) == {f"req:{request_id}": d.mono + 5}
    d.advance(5)
    assert AbortUpstream(attempt_id=second.attempt_id) in d.effects
    assert d.client(request_id)[0] == 504


def test_connect_refused_fails_over_and_a_late_event_is_ignored() -> None:
    d = Driver()
    request_id, effects = d.request(chat())
    (first,) = opened(effects)
    effects = d.send(
        UpstreamFailed(
            now=d.now(), attempt_id=first.attempt_id, failure=TransportFailure.CONNECT_REFUSED
        )
    )
    (second,) = opened(effects)
    assert d.head(first.attempt_id, 200) == []  # the abandoned attempt
    d.answer(second.attempt_id, 200, PLAIN)
    assert d.client(request_id) == (200, PLAIN, True)


def test_every_attempt_failing_ends_with_the_last_answer() -> None:
    d = Driver(config("a", "b", "c", "d", "e"))
    request_id, effects = d.request(chat())
    upstream = opened(effects)[0]
    for _ in range(3):
        upstream = opened(d.answer(upstream.attempt_id, 503, b'{"error": {"message": "busy"}}'))[0]
    effects = d.answer(upstream.attempt_id, 502, b"bad gateway")
    assert opened(effects) == []  # 1 + max_retries_before_stream attempts
    assert d.client(request_id) == (502, b"bad gateway", True)
    assert d.finals()[0].attempts == 4


# --- after the first byte -----------------------------------------------------------------


def test_a_stream_cut_after_the_first_byte_ends_with_an_error_chunk() -> None:
    d = Driver()
    request_id, effects = d.request(chat(stream=True))
    (first,) = opened(effects)
    d.head(first.attempt_id, 200)
    d.body(first.attempt_id, CONTENT)
    effects = d.end(first.attempt_id)  # no [DONE]
    assert opened(effects) == []
    status, data, ended = d.client(request_id)
    assert (status, ended) == (200, True)
    assert data.startswith(CONTENT)
    error = json.loads(data[len(CONTENT) :].removeprefix(b"data: "))
    assert error["error"]["code"] == "upstream_interrupted"
    assert d.finals()[0].outcome == "upstream_error"


def two_providers() -> Config:
    account = {"name": "q1", "api_key": KEY}
    second = {
        "base_url": "https://other.example.com/v1",
        "protocols": ["anthropic"],
        "models_endpoint": {"method": "DISABLED"},
        "static_models": [{"id": "c"}],
        "accounts": [account],
    }
    return parse_config(
        {
            "server": {"api_key": SERVER_KEY},
            "providers": {
                "p": {
                    "base_url": "https://api.example.com/v1",
                    "protocols": ["anthropic"],
                    "models_endpoint": {"method": "DISABLED"},
                    "static_models": [{"id": "c"}],
                    "accounts": [{"name": "a", "api_key": KEY}],
                },
                "q": second,
            },
        },
        {},
    )


def test_an_error_event_before_the_first_byte_still_fails_over() -> None:
    # Anthropic's overloaded_error backs off the whole provider: the other one takes it.
    d = Driver(two_providers())
    request_id, effects = d.request(
        {"model": "c", "max_tokens": 10, "stream": True, "messages": []}, path=MESSAGES
    )
    (first,) = opened(effects)
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    overloaded = b"event: error\n" + sse(error)
    d.head(first.attempt_id, 200)
    effects = d.body(first.attempt_id, overloaded)
    (second,) = opened(effects)
    assert d.client(request_id)[0] is None
    assert second.account != first.account


def test_client_disconnect_mid_stream_aborts_and_bills_the_estimate() -> None:
    d = Driver()
    request_id, effects = d.request(chat(stream=True))
    (first,) = opened(effects)
    d.head(first.attempt_id, 200)
    d.body(first.attempt_id, CONTENT)
    effects = d.send(ClientGone(now=d.now(), request_id=request_id))
    assert AbortUpstream(attempt_id=first.attempt_id) in effects
    (final,) = d.finals()
    assert (final.outcome, final.status) == ("cancelled", 499)
    assert final.cost_microdollars > 0  # the provider had started answering
    assert d.pool.services.ledger.reserved(first.account) == 0
    assert d.body(first.attempt_id, DONE) == []  # nothing after the end


def test_client_gone_before_any_answer_bills_nothing() -> None:
    d = Driver()
    request_id, _ = d.request(chat())
    d.send(ClientGone(now=d.now(), request_id=request_id))
    assert d.finals()[0].cost_microdollars == 0


# --- local answers ------------------------------------------------------------------------


def test_missing_server_key_is_a_401_in_the_endpoints_shape() -> None:
    d = Driver()
    request_id, effects = d.request(chat(), path=MESSAGES, key=None)
    status, body, _ = d.client(request_id)
    assert status == 401
    assert json.loads(body)["type"] == "error"
    assert opened(effects) == []


def test_a_wrong_server_key_is_a_401() -> None:
    d = Driver()
    request_id, _ = d.request(chat(), key="wrong-key-0000000")
    assert d.client(request_id)[0] == 401


def test_an_unknown_model_is_a_404_without_an_attempt() -> None:
    d = Driver()
    request_id, effects = d.request({"model": "nope", "messages": []})
    assert (d.client(request_id)[0], opened(effects)) == (404, [])


def test_bad_json_is_a_400_naming_the_problem() -> None:
    d = Driver()
    event = ClientRequestReceived(
        now=d.now(), request_id="bad", entropy=1, method="POST", path=CHAT,
        headers=(("authorization", f"Bearer {SERVER_KEY}"),), body=b"{nope",
    )  # fmt: skip
    d.send(event)
    assert d.client("bad")[0] == 400


@pytest.mark.parametrize(
    ("method", "path", "status"), [("GET", CHAT, 405), ("POST", "/v1/nope", 404)]
)
def test_wrong_method_or_route_is_answered_locally(method: str, path: str, status: int) -> None:
    d = Driver()
    request_id, _ = d.request(chat(), method=method, path=path)
    assert d.client(request_id)[0] == status


def test_models_healthz_and_readyz() -> None:
    d = Driver(loaded=False)
    for path, status in (("/v1/healthz", 200), ("/v1/readyz", 503)):
        request_id, _ = d.request({}, method="GET", path=path, key=None)
        assert d.client(request_id)[0] == status
    d.send(StateLoaded(now=d.now()))
    request_id, _ = d.request({}, method="GET", path="/v1/readyz", key=None)
    assert d.client(request_id)[0] == 200
    request_id, _ = d.request({}, method="GET", path="/v1/models")
    ids = [entry["id"] for entry in json.loads(d.client(request_id)[1])["data"]]
    assert ids == ["c/p", "m/p"]


def test_requests_before_state_is_loaded_get_503() -> None:
    d = Driver(loaded=False)
    request_id, effects = d.request(chat())
    assert (d.client(request_id)[0], opened(effects)) == (503, [])


# --- recovery and shutdown ----------------------------------------------------------------


def test_crash_recovery_finalizes_pending_requests_as_interrupted() -> None:
    d = Driver(loaded=False)
    pending = (StoredPending(request_id="old-1", account="a", started_at=WALL0),)
    effects = d.send(StateLoaded(now=d.now(), pending=pending))
    records = [e.record for e in effects if isinstance(e, Persist)]
    assert [(r.request_id, r.outcome) for r in records if isinstance(r, RequestFinalized)] == [
        ("old-1", "interrupted")
    ]
    assert [r.kind for r in records if isinstance(r, OperationalEvent)] == ["crash_recovery"]


def test_shutdown_refuses_new_requests_and_interrupts_streams_after_the_grace() -> None:
    d = Driver()
    request_id, effects = d.request(chat(stream=True))
    (first,) = opened(effects)
    d.head(first.attempt_id, 200)
    d.body(first.attempt_id, CONTENT)
    (arm,) = d.send(ShutdownRequested(now=d.now(), grace=5))
    assert isinstance(arm, ArmTimer)
    late_id, _ = d.request(chat())
    assert d.client(late_id)[0] == 503
    d.mono = arm.at
    d.send(TimerFired(now=d.now(), key=arm.key))
    assert d.client(request_id)[2] is True
    assert [f.outcome for f in d.finals() if f.request_id == request_id] == ["interrupted"]
    assert d.pool.in_flight == 0


# --- determinism --------------------------------------------------------------------------


def test_replaying_the_event_log_gives_identical_effects() -> None:
    d = Driver(config("a", "b", "c"))
    _, effects = d.request(chat(stream=True))
    (first,) = opened(effects)
    (second,) = opened(d.answer(first.attempt_id, 429, RATE_LIMITED, ("retry-after", "30")))
    d.head(second.attempt_id, 200)
    d.body(second.attempt_id, CONTENT)
    other, effects = d.request(chat())
    (third,) = opened(effects)
    d.tick(2)
    d.body(second.attempt_id, USAGE_ONLY + DONE)
    d.end(second.attempt_id)
    d.send(ClientGone(now=d.now(), request_id=other))
    replay = Pool(d.config, now=d.start)
    for event, effects in d.log:
        assert replay.handle(event) == effects, type(event).__name__
    assert third.account not in (None, "")


# --- the state table ----------------------------------------------------------------------


def test_terminal_states_allow_nothing() -> None:
    assert not ALLOWED[max(ALLOWED, key=lambda s: s == "done")]


def test_the_lifecycle_doc_embeds_the_current_diagram() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "lifecycle.md").read_text("utf-8")
    assert state_diagram() in doc, "run `make docs` to regenerate docs/lifecycle.md"


def test_a_truncated_json_answer_fails_over_instead_of_reaching_the_client() -> None:
    d = Driver()
    request_id, effects = d.request(chat())
    (first,) = opened(effects)
    effects = d.answer(first.attempt_id, 200, PLAIN[: len(PLAIN) // 2])
    (second,) = opened(effects)
    assert d.client(request_id)[0] is None
    d.answer(second.attempt_id, 200, PLAIN)
    assert d.client(request_id) == (200, PLAIN, True)


def test_upstream_requests_carry_the_providers_connection_timeouts() -> None:
    timeouts = {"connect_timeout_s": 2, "write_timeout_s": 3, "pool_timeout_s": 4}
    cfg = parse_config(
        {
            "server": {"api_key": SERVER_KEY},
            "providers": {
                "p": {
                    "base_url": "https://api.example.com/v1",
                    "read_timeout_s": 7,
                    **timeouts,
                    "accounts": [{"name": "a", "api_key": KEY}],
                }
            },
        },
        {},
    )
    drive = Driver(cfg, loaded=False)
    listing = [
        e for e in drive.send(StateLoaded(now=drive.now())) if isinstance(e, FetchModelList)
    ]
    assert [(f.timeout, f.connect_timeout, f.write_timeout, f.pool_timeout) for f in listing] == [
        (7.0, 2.0, 3.0, 4.0)
    ]
    drive.send(
        ModelListReceived(
            now=drive.now(), account="a", status=200, body=b'{"data": [{"id": "m"}]}'
        )
    )
    _, effects = drive.request({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    [attempt] = opened(effects)
    assert (attempt.connect_timeout, attempt.write_timeout, attempt.pool_timeout) == (
        2.0,
        3.0,
        4.0,
    )
