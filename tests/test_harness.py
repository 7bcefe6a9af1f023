"""The test helpers: the fake provider, the simulation harness and the playbook matchers.

The real `Pool` is not used here: a small stand-in (`RelayPool`) relays one
attempt at a time and fails over before the head, which is enough to drive
every path of the harness.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import attrs
import pytest

from eggpool.core.config import Protocol
from eggpool.core.effects import (
    AbortUpstream,
    ArmTimer,
    AttemptEnded,
    CancelTimer,
    Effect,
    FetchModelList,
    Log,
    Metric,
    OpenUpstream,
    Persist,
    Publish,
    RequestStarted,
    RespondBody,
    RespondEnd,
    RespondHead,
)
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
from eggpool.core.retry import (
    AttemptPhase,
    FailureCategory,
    TransportFailure,
    UpstreamOutcome,
    classify_outcome,
)
from eggpool.core.sse import SSEDecoder, SSEEvent
from eggpool.core.usage import (
    AnthropicStreamObserver,
    ObservedResponse,
    OpenAIStreamObserver,
    StreamError,
    Usage,
    observe_anthropic_body,
    observe_openai_body,
)
from eggpool.simulated.provider import (
    UNSTAMPED,
    FakeProvider,
    ModelList,
    Reply,
    Script,
    Step,
    protocol_of,
)
from tests.helpers.harness import (
    ANTHROPIC_PATH,
    OPENAI_PATH,
    START,
    Simulation,
    SimulationStuck,
    chat_body,
    entropy_for,
    messages_body,
    request_event,
)
from tests.helpers.playbook import (
    ANY,
    Placeholder,
    Playbook,
    Satisfies,
    at,
    expect,
    like,
    matches,
    with_headers,
)

OPENAI_URL = "https://api.fake.test/v1/chat/completions"
ANTHROPIC_URL = "https://api.fake.test/v1/messages"


def upstream(
    url: str = OPENAI_URL,
    *,
    stream: bool = False,
    include_usage: bool = False,
    account: str = "acct-a",
    model: str = "m-1",
    attempt_id: str = "req-0001/1",
) -> OpenUpstream:
    body: dict[str, object] = {"model": model, "messages": [{"role": "user", "content": "Hi"}]}
    if stream:
        body["stream"] = True
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    return OpenUpstream(
        attempt_id=attempt_id,
        request_id=attempt_id.partition("/")[0],
        account=account,
        url=url,
        method="POST",
        headers=(),
        body=json.dumps(body).encode(),
    )


def events(steps: list[Step]) -> list[object]:
    return [step.event for step in steps]


def body_of(steps: list[Step]) -> bytes:
    return b"".join(s.event.data for s in steps if isinstance(s.event, UpstreamBodyReceived))


def sse_of(steps: list[Step]) -> list[SSEEvent]:
    decoder = SSEDecoder()
    items = [*decoder.feed(body_of(steps)), *decoder.feed_eof()]
    return [item for item in items if isinstance(item, SSEEvent)]


def observe(
    observer: OpenAIStreamObserver | AnthropicStreamObserver, steps: list[Step]
) -> ObservedResponse:
    for step in steps:
        if isinstance(step.event, UpstreamBodyReceived):
            observer.feed(step.event.data)
    observer.feed_eof()
    return observer.result()


def head(steps: list[Step]) -> UpstreamResponseStarted:
    first = steps[0].event
    assert isinstance(first, UpstreamResponseStarted)
    return first


# --- the fake provider: successful replies -------------------------------------------------


def test_openai_json_reply_is_head_body_end_with_the_scripted_usage() -> None:
    effect = upstream()
    reply = Reply.ok(chunks=4)
    steps = reply.steps(effect)
    assert [type(e) for e in events(steps)] == [
        UpstreamResponseStarted,
        UpstreamBodyReceived,
        UpstreamBodyEnded,
    ]
    assert head(steps).status == 200
    result = observe_openai_body(body_of(steps))
    assert result.usage == reply.usage(effect.body)
    assert result.usage == Usage(input_tokens=len(effect.body) // 4, output_tokens=20)


def test_steps_name_the_attempt_and_wait_for_the_stamp() -> None:
    steps = Reply.ok().steps(upstream(attempt_id="req-0042/3"))
    assert {step.event.attempt_id for step in steps} == {"req-0042/3"}  # type: ignore[union-attr]
    assert all(step.event.now == UNSTAMPED for step in steps)
    assert steps[0].stamp(at(5)).now == at(5)


def test_latency_and_interval_set_the_delays() -> None:
    steps = Reply.ok(chunks=2, latency=0.7, interval=0.1).steps(upstream(stream=True))
    assert [step.delay for step in steps] == [0.7, 0.1, 0.1, 0.1, 0.1, 0.1, 0.0]


@pytest.mark.parametrize("url", [OPENAI_URL, ANTHROPIC_URL], ids=["openai", "anthropic"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("model", ["m-1", 'odd "model" \u00e9\u2603/x'])
def test_bodies_are_compact_json_as_providers_write_it(url: str, stream: bool, model: str) -> None:
    # The fake writes its JSON from pieces of text for speed: it must be exactly what
    # json.dumps(..., separators=(",", ":")) makes of the same objects.
    effect = upstream(url, stream=stream, include_usage=True, model=model)
    steps = Reply.ok(chunks=8, input_tokens=1234, cached_tokens=34).steps(effect)
    texts = (
        [e.data for e in sse_of(steps) if e.data != "[DONE]"]
        if stream
        else [body_of(steps).decode()]
    )
    assert len(texts) == (1 if not stream else 8 + (3 if url == OPENAI_URL else 6))
    decoded = [json.loads(text) for text in texts]
    for text, obj in zip(texts, decoded, strict=True):
        assert json.dumps(obj, separators=(",", ":")) == text
    named = {obj.get("model") or obj.get("message", {}).get("model") for obj in decoded}
    assert named - {None} == {model}


def test_openai_stream_has_role_content_finish_usage_and_done() -> None:
    effect = upstream(stream=True, include_usage=True)
    reply = Reply.ok(chunks=5)
    steps = reply.steps(effect)
    assert head(steps).headers[0] == ("content-type", "text/event-stream; charset=utf-8")
    decoded = sse_of(steps)
    assert len(decoded) == 5 + 4  # role chunk, 5 content chunks, finish, usage, [DONE]
    assert decoded[-1].data == "[DONE]"
    result = observe(OpenAIStreamObserver(), steps)
    assert result.terminal_seen
    assert result.usage == reply.usage(effect.body)


def test_openai_stream_without_include_usage_reports_no_usage() -> None:
    effect = upstream(stream=True)
    steps = Reply.ok(chunks=2).steps(effect)
    assert len(sse_of(steps)) == 2 + 3
    assert observe(OpenAIStreamObserver(), steps).usage is None
    assert Reply.ok().reported_usage(effect, Protocol.OPENAI) is None


def test_include_usage_can_be_forced_on_a_provider_that_ignores_the_request() -> None:
    effect = upstream(stream=True, include_usage=True)
    steps = Reply.ok(include_usage=False).steps(effect)
    assert observe(OpenAIStreamObserver(), steps).usage is None


def test_anthropic_stream_runs_message_start_to_message_stop() -> None:
    effect = upstream(ANTHROPIC_URL, stream=True)
    reply = Reply.ok(chunks=3, cached_tokens=100)
    steps = reply.steps(effect)
    kinds = [event.event for event in sse_of(steps)]
    assert kinds == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 3,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    result = observe(AnthropicStreamObserver(), steps)
    assert result.terminal_seen
    assert result.usage == Usage(
        input_tokens=len(effect.body) // 4, cache_read_tokens=100, output_tokens=15
    )


def test_anthropic_json_reply_carries_the_scripted_usage() -> None:
    effect = upstream(ANTHROPIC_URL)
    reply = Reply.ok(chunks=2, input_tokens=1000, tokens_per_chunk=7)
    result = observe_anthropic_body(body_of(reply.steps(effect)))
    assert result.usage == Usage(input_tokens=1000, output_tokens=14)
    assert result.model == "m-1"


def test_cached_tokens_are_normalized_out_of_openai_prompt_tokens() -> None:
    effect = upstream(stream=True, include_usage=True)
    reply = Reply.ok(cached_tokens=64, input_tokens=10)
    result = observe(OpenAIStreamObserver(), reply.steps(effect))
    assert result.usage == Usage(input_tokens=10, cache_read_tokens=64, output_tokens=15)


def test_slow_first_byte_delays_the_head() -> None:
    steps = Reply.slow_first_byte(600).steps(upstream())
    assert steps[0].delay == 600
    assert head(steps).status == 200


@pytest.mark.parametrize("size", [1, 7, 50])
def test_pieces_split_body_events_without_changing_the_bytes(size: int) -> None:
    effect = upstream(stream=True, include_usage=True)
    whole = Reply.ok(chunks=3).steps(effect)
    split = Reply.ok(chunks=3, piece=size).steps(effect)
    assert body_of(split) == body_of(whole)
    assert sum(step.delay for step in split) == pytest.approx(sum(step.delay for step in whole))
    assert len(split) > len(whole)


# --- the fake provider: failures -------------------------------------------------------------


def classify(steps: list[Step], protocol: Protocol) -> FailureCategory:
    started = head(steps)
    outcome = UpstreamOutcome(
        phase=AttemptPhase.RESPONSE_HEAD,
        protocol=protocol,
        now_wall=START.wall,
        status=started.status,
        headers=started.headers,
        body=body_of(steps),
    )
    return classify_outcome(outcome).category


@pytest.mark.parametrize(
    ("code", "protocol", "category"),
    [
        (429, Protocol.OPENAI, FailureCategory.RATE_LIMITED),
        (429, Protocol.ANTHROPIC, FailureCategory.RATE_LIMITED),
        (402, Protocol.OPENAI, FailureCategory.QUOTA_EXHAUSTED),
        (402, Protocol.ANTHROPIC, FailureCategory.QUOTA_EXHAUSTED),
        (401, Protocol.OPENAI, FailureCategory.AUTH_FAILED),
        (401, Protocol.ANTHROPIC, FailureCategory.AUTH_FAILED),
        (403, Protocol.OPENAI, FailureCategory.PERMISSION_DENIED),
        (403, Protocol.ANTHROPIC, FailureCategory.PERMISSION_DENIED),
        (404, Protocol.OPENAI, FailureCategory.MODEL_UNAVAILABLE),
        (404, Protocol.ANTHROPIC, FailureCategory.MODEL_UNAVAILABLE),
        (500, Protocol.OPENAI, FailureCategory.SERVER_ERROR),
        (500, Protocol.ANTHROPIC, FailureCategory.SERVER_ERROR),
        (502, Protocol.OPENAI, FailureCategory.SERVER_ERROR),
        (503, Protocol.OPENAI, FailureCategory.OVERLOADED),
        (529, Protocol.ANTHROPIC, FailureCategory.OVERLOADED),
    ],
)
def test_error_bodies_classify_as_the_status_they_stand_for(
    code: int, protocol: Protocol, category: FailureCategory
) -> None:
    url = OPENAI_URL if protocol is Protocol.OPENAI else ANTHROPIC_URL
    steps = Reply.status(code).steps(upstream(url, stream=True))
    assert [type(e) for e in events(steps)] == [
        UpstreamResponseStarted,
        UpstreamBodyReceived,
        UpstreamBodyEnded,
    ]
    assert head(steps).status == code
    assert classify(steps, protocol) is category


def test_rate_limit_carries_retry_after() -> None:
    steps = Reply.status(429, retry_after=30).steps(upstream())
    assert ("retry-after", "30") in head(steps).headers


def test_model_not_found_names_the_model() -> None:
    steps = Reply.model_not_found().steps(upstream(model="gpt-9"))
    error = json.loads(body_of(steps))["error"]
    assert (error["code"], "`gpt-9`" in error["message"]) == ("model_not_found", True)


def test_overloaded_is_anthropic_529_overloaded_error() -> None:
    steps = Reply.overloaded().steps(upstream(ANTHROPIC_URL))
    assert head(steps).status == 529
    assert json.loads(body_of(steps))["error"]["type"] == "overloaded_error"


def test_scripted_error_body_and_headers_replace_the_defaults() -> None:
    reply = Reply.status(400, body=b'{"error": "custom"}', headers=(("x-extra", "1"),))
    steps = reply.steps(upstream())
    assert body_of(steps) == b'{"error": "custom"}'
    assert ("x-extra", "1") in head(steps).headers


def test_cut_stream_ends_cleanly_without_usage_or_terminal() -> None:
    steps = Reply.cut_after(3).steps(upstream(stream=True, include_usage=True))
    assert isinstance(steps[-1].event, UpstreamBodyEnded)
    result = observe(OpenAIStreamObserver(), steps)
    assert (result.terminal_seen, result.usage, result.incomplete_tail) == (False, None, False)
    assert len(sse_of(steps)) == 1 + 3  # role chunk and three content chunks


def test_cut_json_body_is_a_complete_http_message_with_half_the_json() -> None:
    steps = Reply.cut_after(0).steps(upstream())
    length = dict(head(steps).headers)["content-length"]
    assert int(length) == len(body_of(steps))
    assert observe_openai_body(body_of(steps)).malformed_events == 1


def test_reset_mid_stream_is_a_transport_failure_after_the_chunks() -> None:
    steps = Reply.reset_after(2).steps(upstream(ANTHROPIC_URL, stream=True))
    last = steps[-1].event
    assert isinstance(last, UpstreamFailed)
    assert last.failure is TransportFailure.RESET
    assert not any(isinstance(e, UpstreamBodyEnded) for e in events(steps))
    assert [e.event for e in sse_of(steps)].count("content_block_delta") == 2


def test_stall_sends_some_chunks_then_nothing() -> None:
    steps = Reply.stall_after(1).steps(upstream(stream=True))
    assert isinstance(steps[-1].event, UpstreamBodyReceived)
    assert len(sse_of(steps)) == 2


def test_malformed_event_is_counted_and_the_stream_still_completes() -> None:
    effect = upstream(stream=True, include_usage=True)
    reply = Reply.malformed(after=1)
    result = observe(OpenAIStreamObserver(), reply.steps(effect))
    assert (result.malformed_events, result.terminal_seen) == (1, True)
    assert result.usage == reply.usage(effect.body)


def test_malformed_incomplete_stream_stops_after_the_bad_event() -> None:
    steps = Reply.malformed(after=0, complete=False).steps(upstream(stream=True))
    result = observe(OpenAIStreamObserver(), steps)
    assert (result.malformed_events, result.terminal_seen) == (1, False)
    assert isinstance(steps[-1].event, UpstreamBodyEnded)


def test_anthropic_error_event_after_200_is_overloaded_error() -> None:
    steps = Reply.stream_error(after=2).steps(upstream(ANTHROPIC_URL, stream=True))
    assert head(steps).status == 200
    result = observe(AnthropicStreamObserver(), steps)
    assert result.error == StreamError(type="overloaded_error", message="Overloaded")
    assert not result.terminal_seen
    assert isinstance(steps[-1].event, UpstreamBodyEnded)


def test_openai_error_chunk_after_200_is_a_stream_error() -> None:
    steps = Reply.stream_error(after=1).steps(upstream(stream=True))
    result = observe(OpenAIStreamObserver(), steps)
    assert result.error is not None
    assert result.error.type == "server_error"


def test_refused_fails_at_once() -> None:
    steps = Reply.refused().steps(upstream())
    assert len(steps) == 1
    assert steps[0].delay == 0.0
    assert isinstance(steps[0].event, UpstreamFailed)
    assert steps[0].event.failure is TransportFailure.CONNECT_REFUSED


def test_unreachable_fails_after_the_effects_connect_timeout() -> None:
    effect = attrs.evolve(upstream(), connect_timeout=3.5)
    steps = Reply.unreachable().steps(effect)
    assert steps[0].delay == 3.5
    assert steps[0].event.failure is TransportFailure.CONNECT_TIMEOUT  # type: ignore[union-attr]


def test_hang_produces_no_event() -> None:
    assert Reply.hang().steps(upstream()) == []


def test_a_body_that_is_not_json_gets_a_400_whatever_the_script() -> None:
    effect = attrs.evolve(upstream(), body=b"{nope")
    assert head(Reply.ok().steps(effect)).status == 400


def test_unknown_upstream_path_is_refused() -> None:
    with pytest.raises(ValueError, match="no API"):
        protocol_of("https://api.fake.test/v1/embeddings")


# --- the fake provider: scripts and bookkeeping ----------------------------------------------


def statuses(provider: FakeProvider, effect: OpenUpstream, calls: int) -> list[int | None]:
    out: list[int | None] = []
    for _ in range(calls):
        steps = provider.respond(effect)
        first = steps[0].event if steps else None
        out.append(first.status if isinstance(first, UpstreamResponseStarted) else None)
    return out


def test_script_replies_in_order_then_repeats_the_last() -> None:
    provider = FakeProvider({"acct-a": [Reply.status(429, retry_after=30), Reply.ok()]})
    assert statuses(provider, upstream(), 3) == [429, 200, 200]
    assert [call.number for call in provider.calls] == [1, 2, 3]


def test_cycling_script_starts_over() -> None:
    provider = FakeProvider({"acct-a": Script.of(Reply.status(500), Reply.ok(), cycle=True)})
    assert statuses(provider, upstream(), 4) == [500, 200, 500, 200]


def test_account_and_model_script_wins_over_the_account_script() -> None:
    provider = FakeProvider({"acct-a": Reply.ok(), ("acct-a", "m-2"): Reply.model_not_found()})
    assert statuses(provider, upstream(model="m-2"), 1) == [404]
    assert statuses(provider, upstream(model="m-1"), 1) == [200]
    assert (provider.count("acct-a"), provider.count("acct-a", "m-2")) == (2, 1)


def test_rescripting_restarts_the_call_numbers() -> None:
    provider = FakeProvider({"acct-a": [Reply.status(503), Reply.ok()]})
    statuses(provider, upstream(), 2)
    provider.script("acct-a", Reply.refused(), Reply.ok())
    assert statuses(provider, upstream(), 2) == [None, 200]


def test_unscripted_account_gets_the_default_or_an_error() -> None:
    assert statuses(FakeProvider(), upstream(), 1) == [200]
    with pytest.raises(KeyError, match="acct-a"):
        FakeProvider(default=None).respond(upstream())


def test_calls_record_what_was_asked_and_the_usage_reported() -> None:
    provider = FakeProvider({"acct-a": [Reply.cut_after(1), Reply.ok(chunks=2)]})
    effect = upstream(ANTHROPIC_URL, stream=True)
    provider.respond(effect)
    provider.respond(effect)
    first, second = provider.calls
    assert (first.protocol, first.stream, first.model) == (Protocol.ANTHROPIC, True, "m-1")
    assert first.usage is None
    assert second.usage == Reply.ok(chunks=2).usage(effect.body)
    assert provider.reported_usage("acct-a") == second.usage


def test_model_list_is_openai_shaped() -> None:
    provider = FakeProvider(models={"acct-a": ["m-1", "m-2"]})
    fetch = FetchModelList(account="acct-a", url="https://api.fake.test/v1/models", method="GET",
                           headers=())  # fmt: skip
    (step,) = provider.model_list(fetch)
    assert isinstance(step.event, ModelListReceived)
    listing = json.loads(step.event.body)
    assert listing["object"] == "list"
    assert [row["id"] for row in listing["data"]] == ["m-1", "m-2"]


def test_model_list_can_fail_or_be_refused() -> None:
    assert isinstance(ModelList.failed("dns").steps("a")[0].event, ModelListFailed)
    refused = ModelList.status(401).steps("a")[0].event
    assert isinstance(refused, ModelListReceived)
    assert refused.status == 401


# --- a stand-in pool ---------------------------------------------------------------------------

UPSTREAM_URLS = {OPENAI_PATH: OPENAI_URL, ANTHROPIC_PATH: ANTHROPIC_URL}


@attrs.define
class _Request:
    event: ClientRequestReceived
    attempts: int = 0
    attempt_id: str = ""
    headed: bool = False
    done: bool = False


class RelayPool:
    """One attempt at a time; before the head, a status >= 400 fails over to the next account."""

    def __init__(
        self, now: Now, *, accounts: tuple[str, ...] = ("acct-a", "acct-b"), deadline: float = 30
    ) -> None:
        self.accounts = accounts
        self.deadline = deadline
        self.requests: dict[str, _Request] = {}
        self.by_attempt: dict[str, _Request] = {}

    def _open(self, request: _Request) -> list[Effect]:
        request.attempts += 1
        event = request.event
        request.attempt_id = f"{event.request_id}/{request.attempts}"
        self.by_attempt[request.attempt_id] = request
        account = self.accounts[(request.attempts - 1) % len(self.accounts)]
        return [
            OpenUpstream(attempt_id=request.attempt_id, request_id=event.request_id,
                         account=account, url=UPSTREAM_URLS[event.path], method="POST",
                         headers=(), body=event.body),
        ]  # fmt: skip

    def _finish(self, request: _Request, now: Now, status: int | None) -> list[Effect]:
        request.done = True
        rid = request.event.request_id
        return [
            RespondEnd(request_id=rid),
            CancelTimer(key=f"{rid}/deadline"),
            Persist(record=AttemptEnded(
                request_id=rid, attempt_id=request.attempt_id, account="", provider="fake",
                at=now.wall, status=status, category=None, failover=False, latency=0.0)),
        ]  # fmt: skip

    def handle(self, event: Event) -> list[Effect]:
        match event:
            case ClientRequestReceived():
                return self._start(event)
            case TimerFired(key=key) if key.endswith("/deadline"):
                return self._expire(self.requests[key.removesuffix("/deadline")], event.now)
            case ClientGone(request_id=rid):
                request = self.requests[rid]
                request.done = True
                return [AbortUpstream(attempt_id=request.attempt_id),
                        CancelTimer(key=f"{rid}/deadline")]  # fmt: skip
            case (
                UpstreamResponseStarted()
                | UpstreamBodyReceived()
                | UpstreamBodyEnded()
                | UpstreamFailed()
            ):
                request = self.by_attempt[event.attempt_id]
                if request.done or event.attempt_id != request.attempt_id:
                    return []  # a stale attempt
                return self._relay(request, event)
        return []

    def _start(self, event: ClientRequestReceived) -> list[Effect]:
        rid = event.request_id
        request = self.requests[rid] = _Request(event)
        body = json.loads(event.body)
        started = RequestStarted(request_id=rid, at=event.now.wall, protocol="openai",
                                 model=body["model"], streamed=bool(body.get("stream")),
                                 client=event.client)  # fmt: skip
        return [
            Persist(record=started),
            ArmTimer(key=f"{rid}/deadline", at=event.now.mono + self.deadline),
            *self._open(request),
        ]

    def _expire(self, request: _Request, now: Now) -> list[Effect]:
        abort: list[Effect] = [AbortUpstream(attempt_id=request.attempt_id)]
        if request.headed:
            return [*abort, *self._finish(request, now, None)]
        head = RespondHead(request_id=request.event.request_id, status=504, headers=())
        return [*abort, head, *self._finish(request, now, None)]

    def _relay(
        self,
        request: _Request,
        event: UpstreamResponseStarted | UpstreamBodyReceived | UpstreamBodyEnded | UpstreamFailed,
    ) -> list[Effect]:
        rid = request.event.request_id
        match event:
            case UpstreamResponseStarted(status=status, headers=headers):
                if status >= 400 and request.attempts < len(self.accounts):
                    return [AbortUpstream(attempt_id=request.attempt_id), *self._open(request)]
                request.headed = True
                return [RespondHead(request_id=rid, status=status, headers=headers)]
            case UpstreamBodyReceived(data=data):
                return [RespondBody(request_id=rid, data=data)]
            case UpstreamBodyEnded():
                return self._finish(request, event.now, 200)
            case UpstreamFailed():
                if request.headed:
                    return self._finish(request, event.now, None)
                request.headed = True
                head = RespondHead(request_id=rid, status=502, headers=())
                return [head, *self._finish(request, event.now, None)]


class Puppet:
    """A pool whose answer to each event is whatever `react` returns; it records the events."""

    def __init__(self, react: Callable[[Event], list[Effect]]) -> None:
        self.react = react
        self.seen: list[Event] = []

    def handle(self, event: Event) -> list[Effect]:
        self.seen.append(event)
        return self.react(event)


def puppet_sim(react: Callable[[Event], list[Effect]], *, seed: int = 0) -> Simulation:
    return Simulation(lambda now: Puppet(react), FakeProvider(), boot=False, seed=seed)


def relay_sim(
    provider: FakeProvider, *, accounts: tuple[str, ...] = ("acct-a", "acct-b")
) -> Simulation:
    return Simulation(lambda now: RelayPool(now, accounts=accounts), provider)


# --- the harness: flow, clock, timers ---------------------------------------------------------


def test_streamed_request_reaches_the_client_whole_and_on_time() -> None:
    sim = relay_sim(FakeProvider({"acct-a": Reply.ok(chunks=3, latency=0.2, interval=0.1)}))
    rid = sim.chat("m-1", stream=True, at=1.0, stream_options={"include_usage": True})
    sim.run()
    client = sim.clients[rid]
    assert (client.status, client.ended, sim.all_violations()) == (200, True, [])
    assert client.header("Content-Type") == "text/event-stream; charset=utf-8"
    assert client.sse()[-1].data == "[DONE]"
    assert client.head_at == pytest.approx(1.2)
    assert client.end_at == pytest.approx(1.2 + 7 * 0.1)  # role + 3 + finish + usage + done


def test_json_request_reaches_the_client_as_json() -> None:
    sim = relay_sim(FakeProvider())
    rid = sim.messages("claude-x")
    sim.run()
    assert sim.clients[rid].json()["type"] == "message"


def test_boot_sends_state_loaded_first() -> None:
    sim = relay_sim(FakeProvider())
    sim.chat("m-1")
    sim.run()
    assert isinstance(sim.events[0], StateLoaded)


def test_events_arrive_in_time_order_and_carry_the_clock() -> None:
    provider = FakeProvider({"acct-a": Reply.ok(latency=5.0), "acct-b": Reply.ok(latency=0.1)})
    sim = relay_sim(provider, accounts=("acct-a",))
    slow = sim.chat("m-1", at=0.0)
    sim.run()
    sim2 = relay_sim(provider, accounts=("acct-b",))
    sim2.chat("m-1", at=0.0)
    sim2.run()
    for run in (sim, sim2):
        monos = [event.now.mono for event in run.events]
        assert monos == sorted(monos)
        assert all(e.now.wall - e.now.mono == START.wall - START.mono for e in run.events)
    assert sim.clients[slow].head_at == pytest.approx(5.0)


def test_simultaneous_entries_run_in_the_order_they_were_scheduled() -> None:
    sim = relay_sim(FakeProvider())
    first, second = sim.chat("m-1", at=2.0), sim.chat("m-1", at=2.0)
    sim.run()
    arrivals = [e.request_id for e in sim.events if isinstance(e, ClientRequestReceived)]
    assert arrivals == [first, second]


def test_timer_fires_at_its_monotonic_time() -> None:
    sim = puppet_sim(lambda e: [ArmTimer(key="t", at=e.now.mono + 5)] if isinstance(
        e, ShutdownRequested) else [])  # fmt: skip
    sim.shutdown(at=1.0)
    sim.run()
    fired = [e for e in sim.events if isinstance(e, TimerFired)]
    assert [(f.key, f.now.mono) for f in fired] == [("t", START.mono + 6)]


def test_rearming_a_timer_replaces_it() -> None:
    def react(event: Event) -> list[Effect]:
        if isinstance(event, ShutdownRequested):
            return [ArmTimer(key="t", at=event.now.mono + event.grace)]
        return []

    sim = puppet_sim(react)
    sim.shutdown(grace=10, at=0)
    sim.shutdown(grace=2, at=1)  # re-armed for t=3, replacing t=10
    sim.run()
    fired = [e.now.mono - START.mono for e in sim.events if isinstance(e, TimerFired)]
    assert fired == [3]


def test_cancelled_timer_never_fires() -> None:
    def react(event: Event) -> list[Effect]:
        if isinstance(event, ShutdownRequested):
            return [ArmTimer(key="t", at=event.now.mono + 5), CancelTimer(key="t")]
        return []

    sim = puppet_sim(react)
    sim.shutdown()
    sim.run()
    assert not any(isinstance(e, TimerFired) for e in sim.events)
    assert sim.timers == {}


def test_past_timer_fires_after_the_current_effects() -> None:
    def react(event: Event) -> list[Effect]:
        if isinstance(event, ShutdownRequested):
            return [ArmTimer(key="late", at=event.now.mono - 100), Log(level="INFO", message="x")]
        return []

    sim = puppet_sim(react)
    sim.shutdown(at=4)
    sim.run()
    fired = [e for e in sim.events if isinstance(e, TimerFired)]
    assert [f.now.mono for f in fired] == [START.mono + 4]
    assert sim.logs == [Log(level="INFO", message="x")]


def test_deadline_aborts_a_slow_first_byte_and_drops_its_events() -> None:
    sim = relay_sim(FakeProvider({"acct-a": Reply.slow_first_byte(600)}), accounts=("acct-a",))
    rid = sim.chat("m-1")
    sim.run()
    (attempt,) = sim.attempts.values()
    assert (sim.clients[rid].status, attempt.aborted_at, attempt.events) == (504, 30.0, [])
    assert sim.elapsed == 30.0  # the dropped head never moved the clock


def test_abort_stops_an_attempt_mid_stream() -> None:
    sim = relay_sim(FakeProvider({"acct-a": Reply.ok(chunks=50, interval=1.0)}))
    rid = sim.chat("m-1", stream=True)
    sim.disconnect(rid, at=10.0)
    sim.run()
    (attempt,) = sim.attempts.values()
    assert attempt.aborted_at == 10.0
    assert max(e.now.mono for e in attempt.events) < START.mono + 10.0
    assert sim.clients[rid].gone
    assert not sim.clients[rid].ended
    assert sim.open_attempts() == []


def test_failover_aborts_the_failed_attempt_and_counts_calls() -> None:
    provider = FakeProvider({"acct-a": Reply.status(429, retry_after=30)})
    sim = relay_sim(provider)
    rid = sim.chat("m-1")
    sim.run()
    first, second = sim.attempts_for(rid)
    assert ([first.account, second.account], sim.clients[rid].status) == (
        ["acct-a", "acct-b"],
        200,
    )
    assert [type(e) for e in first.events] == [UpstreamResponseStarted]  # body dropped
    assert (provider.count("acct-a"), provider.count("acct-b")) == (1, 1)


def test_disconnect_after_the_end_delivers_nothing() -> None:
    sim = relay_sim(FakeProvider())
    rid = sim.chat("m-1")
    sim.disconnect(rid, at=100)
    sim.run()
    assert not any(isinstance(e, ClientGone) for e in sim.events)
    assert not sim.clients[rid].gone


def test_reset_before_the_head_becomes_a_502_for_the_client() -> None:
    sim = relay_sim(FakeProvider({"acct-a": Reply.refused()}), accounts=("acct-a",))
    rid = sim.chat("m-1")
    sim.run()
    assert (sim.clients[rid].status, sim.clients[rid].ended) == (502, True)


def test_wall_clock_can_jump_backwards_alone() -> None:
    sim = relay_sim(FakeProvider())
    sim.jump(-3600, at=1.0)
    sim.chat("m-1", at=2.0)
    sim.run()
    request = next(e for e in sim.events if isinstance(e, ClientRequestReceived))
    assert request.now == Now(mono=START.mono + 2, wall=START.wall + 2 - 3600)


def test_monotonic_jump_delivers_what_fell_due_at_the_new_time_in_order() -> None:
    sim = relay_sim(FakeProvider({"acct-a": Reply.ok(chunks=3, interval=1.0)}))
    rid = sim.chat("m-1", stream=True)
    sim.run(until=0.5)
    sim.jump(100, mono=True)
    sim.run()
    late = [e for e in sim.attempts[f"{rid}/1"].events if e.now.mono > START.mono + 0.5]
    assert {e.now.mono for e in late} == {START.mono + 100.5}
    assert isinstance(late[-1], UpstreamBodyEnded)
    assert sim.clients[rid].body.endswith(b"data: [DONE]\n\n")


def test_run_until_stops_there_and_sets_the_clock() -> None:
    sim = relay_sim(FakeProvider({"acct-a": Reply.ok(latency=5)}))
    rid = sim.chat("m-1")
    sim.run(until=2)
    assert (sim.elapsed, sim.clients[rid].status) == (2, None)
    sim.advance(10)
    assert (sim.elapsed, sim.clients[rid].status) == (12, 200)


def test_a_pool_that_never_stops_arming_timers_is_reported() -> None:
    def react(event: Event) -> list[Effect]:
        return [ArmTimer(key="tick", at=event.now.mono + 1)]

    sim = puppet_sim(react)
    sim.shutdown()
    with pytest.raises(SimulationStuck, match="more than 50 events"):
        sim.run(max_events=50)


def test_settle_ignores_periodic_timers_once_clients_are_done() -> None:
    def react(event: Event) -> list[Effect]:
        effects: list[Effect] = [ArmTimer(key="tick", at=event.now.mono + 60)]
        if isinstance(event, ClientRequestReceived):
            rid = event.request_id
            effects += [RespondHead(request_id=rid, status=200, headers=()),
                        RespondEnd(request_id=rid)]  # fmt: skip
        return effects

    sim = puppet_sim(react)
    rid = sim.chat("m-1", at=1)
    sim.settle()
    assert sim.clients[rid].ended
    assert "tick" in sim.timers


def test_settle_reports_a_client_left_waiting_with_nothing_scheduled() -> None:
    def react(event: Event) -> list[Effect]:
        if isinstance(event, ClientRequestReceived):
            return [OpenUpstream(attempt_id="a1", request_id=event.request_id,
                                 account="acct-a", url=OPENAI_URL, method="POST", headers=(),
                                 body=event.body)]  # fmt: skip
        return []

    sim = Simulation(lambda now: Puppet(react), FakeProvider(default=Reply.hang()), boot=False)
    sim.chat("m-1")
    with pytest.raises(SimulationStuck, match="req-0001"):
        sim.settle()
    assert [attempt.attempt_id for attempt in sim.open_attempts()] == ["a1"]


# --- the harness: other effects ------------------------------------------------------------------


def test_persisted_records_land_in_the_store() -> None:
    sim = relay_sim(FakeProvider())
    rid = sim.chat("m-1")
    sim.run()
    (started,) = sim.records(RequestStarted)
    assert (started.request_id, started.at) == (rid, START.wall)
    assert len(sim.records(AttemptEnded)) == 1


def test_failed_persist_comes_back_as_an_event() -> None:
    sim = relay_sim(FakeProvider())
    sim.fail_persist(RequestStarted, error="disk full")
    sim.chat("m-1")
    sim.run()
    failed = [e for e in sim.events if isinstance(e, PersistFailed)]
    assert [(f.what, f.error) for f in failed] == [("RequestStarted", "disk full")]
    assert sim.records(RequestStarted) == []
    assert len(sim.failed_persists) == 1
    assert len(sim.records(AttemptEnded)) == 1


def test_model_list_fetch_is_answered_after_its_delay() -> None:
    def react(event: Event) -> list[Effect]:
        if isinstance(event, StateLoaded):
            return [FetchModelList(account="acct-a", url="https://api.fake.test/v1/models",
                                   method="GET", headers=())]  # fmt: skip
        return []

    provider = FakeProvider(models={"acct-a": ModelList.of("m-1", delay=2.5)})
    sim = Simulation(lambda now: Puppet(react), provider)
    sim.run()
    listed = [e for e in sim.events if isinstance(e, ModelListReceived)]
    assert [(e.account, e.now.mono) for e in listed] == [("acct-a", START.mono + 2.5)]


def test_logs_metrics_and_publishes_are_recorded() -> None:
    effects: list[Effect] = [
        Log(level="INFO", message="hi"),
        Metric(name="n", value=1.0),
        Publish(topic="stats", payload={"n": 1}),
    ]
    sim = puppet_sim(lambda e: effects)
    sim.shutdown()
    sim.run()
    assert (sim.logs, sim.metrics, sim.published) == ([effects[0]], [effects[1]], [effects[2]])


# --- the harness: violations ---------------------------------------------------------------


def writes(rid: str, *effects: Effect) -> Callable[[Event], list[Effect]]:
    def react(event: Event) -> list[Effect]:
        return list(effects) if isinstance(event, ClientRequestReceived) else []

    return react


def violations_of(*effects: Effect) -> list[str]:
    sim = puppet_sim(writes("req-0001", *effects))
    sim.chat("m-1")
    sim.run()
    return sim.clients["req-0001"].violations


HEAD = RespondHead(request_id="req-0001", status=200, headers=())
BODY = RespondBody(request_id="req-0001", data=b"x")
END = RespondEnd(request_id="req-0001")


def test_body_before_head_is_a_violation() -> None:
    assert violations_of(BODY, HEAD, END) == ["body before the head at t=0"]


def test_second_head_is_a_violation() -> None:
    assert violations_of(HEAD, HEAD, END) == ["second head (200) at t=0"]


def test_writes_after_the_end_are_violations() -> None:
    assert violations_of(HEAD, END, BODY, END) == [
        "body after the end at t=0",
        "end after the end at t=0",
    ]


def test_a_clean_response_has_no_violation() -> None:
    assert violations_of(HEAD, BODY, END) == []


def test_effects_no_shell_could_run_are_simulation_violations() -> None:
    effect = OpenUpstream(attempt_id="a", request_id="req-0001", account="acct-a",
                          url=OPENAI_URL, method="POST", headers=(), body=b"{}")  # fmt: skip
    sim = puppet_sim(writes("req-0001", effect, effect, AbortUpstream(attempt_id="zz"),
                            RespondEnd(request_id="nobody")))  # fmt: skip
    sim.chat("m-1")
    sim.run()
    assert sim.violations == [
        "attempt 'a' opened twice",
        "abort of unknown attempt 'zz'",
        "end for unknown request 'nobody'",
    ]


def test_writes_to_a_client_that_left_are_counted_not_recorded() -> None:
    def react(event: Event) -> list[Effect]:
        if isinstance(event, ClientGone):
            return [HEAD, BODY]
        return []

    sim = puppet_sim(react)
    rid = sim.chat("m-1")
    sim.disconnect(rid, at=1)
    sim.run()
    view = sim.clients[rid]
    assert (view.writes_after_gone, view.status, view.violations) == (2, None, [])


# --- the harness: ids, entropy, determinism ------------------------------------------------------


def test_request_ids_and_entropy_are_deterministic() -> None:
    sim = puppet_sim(lambda e: [], seed=7)
    ids = [sim.chat("m-1"), sim.chat("m-1"), sim.chat("m-1", at=1)]
    sim.run()
    received = [e for e in sim.events if isinstance(e, ClientRequestReceived)]
    assert ids == ["req-0001", "req-0002", "req-0003"]
    assert [e.entropy for e in received] == [entropy_for(7, n) for n in (1, 2, 3)]
    assert len({e.entropy for e in received}) == 3
    assert entropy_for(7, 1) != entropy_for(8, 1)
    assert all(0 <= e.entropy < 2**64 for e in received)


def test_request_id_and_entropy_can_be_chosen() -> None:
    sim = puppet_sim(lambda e: [])
    sim.request(OPENAI_PATH, chat_body("m-1"), request_id="mine", entropy=5)
    sim.run()
    (received,) = sim.events
    assert isinstance(received, ClientRequestReceived)
    assert (received.request_id, received.entropy) == ("mine", 5)
    with pytest.raises(ValueError, match="already used"):
        sim.request(OPENAI_PATH, chat_body("m-1"), request_id="mine")


def test_scheduling_in_the_past_is_refused() -> None:
    sim = puppet_sim(lambda e: [])
    sim.run(until=5)
    with pytest.raises(ValueError, match="past"):
        sim.chat("m-1", at=1)


def scenario() -> Simulation:
    provider = FakeProvider({
        "acct-a": [Reply.status(429, retry_after=1), Reply.reset_after(2), Reply.ok()],
        "acct-b": [Reply.ok(chunks=4), Reply.slow_first_byte(100)],
    })  # fmt: skip
    sim = relay_sim(provider)
    for n in range(6):
        rid = sim.chat("m-1", stream=n % 2 == 0, at=n * 0.5)
        if n == 4:
            sim.disconnect(rid, at=n * 0.5 + 0.07)
    sim.jump(-50, at=1.0)
    sim.run()
    return sim


def test_same_inputs_give_the_same_run() -> None:
    assert scenario().effects_log == scenario().effects_log


def test_replaying_the_recorded_events_gives_the_same_effects() -> None:
    scenario().assert_deterministic()


class Leaky(RelayPool):
    """Takes a hidden input: a counter shared by every instance."""

    counter = 0

    def handle(self, event: Event) -> list[Effect]:
        Leaky.counter += 1
        return [*super().handle(event), Metric(name="handled", value=Leaky.counter)]


def test_a_pool_with_hidden_state_fails_the_replay_check() -> None:
    sim = Simulation(Leaky, FakeProvider())
    sim.chat("m-1")
    sim.run()
    with pytest.raises(AssertionError, match="replay diverged at event #0"):
        sim.assert_deterministic()


def test_an_exception_in_the_pool_names_the_event() -> None:
    def react(event: Event) -> list[Effect]:
        raise RuntimeError("boom")

    sim = puppet_sim(react)
    sim.chat("m-1", at=2)
    with pytest.raises(RuntimeError, match="boom") as info:
        sim.run()
    assert any("ClientRequestReceived" in note and "t=2" in note for note in info.value.__notes__)


# --- playbooks -----------------------------------------------------------------------------------


def test_playbook_reads_as_events_in_effects_out() -> None:
    pool = RelayPool(START)
    attempt = Placeholder(str)
    assert (
        Playbook(pool)
        >> request_event(at(0), OPENAI_PATH, chat_body("m-1"))
        << like(Persist, record=like(RequestStarted, model="m-1", streamed=False))
        << like(ArmTimer, key="req-0001/deadline", at=START.mono + 30)
        << like(OpenUpstream, account="acct-a", attempt_id=attempt)
        >> UpstreamResponseStarted(now=at(0.1), attempt_id=attempt(), status=429, headers=())
        << AbortUpstream(attempt_id=attempt())
        << like(OpenUpstream, account="acct-b", attempt_id="req-0001/2")
        >> UpstreamResponseStarted(now=at(0.2), attempt_id="req-0001/2", status=200,
                                   headers=(("Content-Type", "application/json"),))
        << like(RespondHead, status=200, headers=with_headers(("content-type", ANY)))
        >> UpstreamBodyReceived(now=at(0.3), attempt_id=attempt(), data=b"late")
        << None
    )  # fmt: skip


def test_playbook_reports_a_mismatch_with_the_transcript() -> None:
    playbook = Playbook(RelayPool(START)) >> request_event(at(0), OPENAI_PATH, chat_body("m"))
    with pytest.raises(AssertionError, match=r"(?s)expected RespondHead\(status=200.*>> Client"):
        playbook << like(RespondHead, status=200)


def test_playbook_refuses_unasserted_effects() -> None:
    playbook = Playbook(RelayPool(START)) >> request_event(at(0), OPENAI_PATH, chat_body("m"))
    with pytest.raises(AssertionError, match="2 effect\\(s\\) left unasserted at the end"):
        bool(playbook << like(Persist))
    with pytest.raises(AssertionError, match="left unasserted before ClientGone"):
        playbook >> ClientGone(now=at(1), request_id="req-0001")


def test_playbook_skips_logs_unless_told_not_to() -> None:
    pool = Puppet(lambda e: [Log(level="INFO", message="m"), END])
    assert Playbook(pool) >> ShutdownRequested(now=at(0)) << END
    strict = Playbook(pool, ignore=()) >> ShutdownRequested(now=at(0))
    assert strict << like(Log) << END


EFFECTS: list[Effect] = [
    Persist(record=RequestStarted(request_id="r", at=1.0, protocol="openai", model="m",
                                  streamed=True, client="c")),
    RespondHead(request_id="r", status=429, headers=(("Retry-After", "30"),)),
    RespondBody(request_id="r", data=b'{"error": "slow down"}'),
    RespondEnd(request_id="r"),
]  # fmt: skip


def test_expect_contains_in_any_order_and_in_order() -> None:
    expect(EFFECTS).contains(like(RespondEnd), like(RespondHead, status=429))
    expect(EFFECTS).in_order(like(Persist), like(RespondEnd))
    with pytest.raises(AssertionError, match="in order"):
        expect(EFFECTS).in_order(like(RespondEnd), like(Persist))


def test_expect_contains_needs_a_distinct_effect_per_pattern() -> None:
    with pytest.raises(AssertionError, match="no \\(unclaimed\\) effect"):
        expect(EFFECTS).contains(like(RespondEnd), like(RespondEnd))


def test_expect_exactly_and_lacks() -> None:
    expect(EFFECTS).ignoring(Persist).exactly(like(RespondHead), like(RespondBody), END_R)
    with pytest.raises(AssertionError, match="expected 2 effects"):
        expect(EFFECTS).exactly(like(RespondHead), END_R)
    expect(EFFECTS).lacks(like(OpenUpstream), like(RespondHead, status=200))
    with pytest.raises(AssertionError, match="must not come"):
        expect(EFFECTS).lacks(like(RespondEnd))


END_R = RespondEnd(request_id="r")


def test_one_returns_the_single_match() -> None:
    head = expect(EFFECTS).one(like(RespondHead))
    assert head.status == 429
    with pytest.raises(AssertionError, match="0 effects match"):
        expect(EFFECTS).one(like(OpenUpstream))


def test_patterns_match_regexes_predicates_headers_and_nested_records() -> None:
    assert matches(like(RespondBody, data=re.compile(rb"slow")), EFFECTS[2])
    assert matches(like(RespondHead, status=Satisfies(lambda s: s >= 400, "an error")), EFFECTS[1])
    assert matches(like(RespondHead, headers=with_headers(("retry-after", "30"))), EFFECTS[1])
    assert not matches(like(RespondHead, headers=with_headers(("retry-after", "31"))), EFFECTS[1])
    assert matches(like(Persist, record=like(RequestStarted, streamed=True)), EFFECTS[0])
    assert matches(RespondHead(request_id=ANY, status=429, headers=ANY), EFFECTS[1])
    assert not matches(like(RespondHead, status=429), EFFECTS[2])


def test_placeholder_binds_only_when_the_whole_pattern_matches() -> None:
    rid = Placeholder(str)
    assert not matches(like(RespondHead, request_id=rid, status=200), EFFECTS[1])
    assert not rid.bound
    assert matches(like(RespondHead, request_id=rid, status=429), EFFECTS[1])
    assert rid() == "r"
    assert not matches(like(RespondEnd, request_id=rid), RespondEnd(request_id="other"))


def test_like_refuses_a_field_the_class_does_not_have() -> None:
    with pytest.raises(TypeError, match="stauts"):
        like(RespondHead, stauts=200)


def test_request_event_builds_what_a_shell_reports() -> None:
    event = request_event(at(3), ANTHROPIC_PATH, messages_body("c", stream=True), entropy=9)
    assert (event.method, event.path, event.entropy, event.now) == (
        "POST",
        ANTHROPIC_PATH,
        9,
        at(3),
    )
    assert json.loads(event.body)["max_tokens"] == 256
