"""The drive loop, with a scripted fake Pool and fake upstreams, on asyncio and trio."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from eggpool.core.effects import (
    AbortUpstream,
    ArmTimer,
    CancelTimer,
    Effect,
    FetchModelList,
    OpenUpstream,
    OperationalEvent,
    Persist,
    Record,
    RespondBody,
    RespondEnd,
    RespondHead,
)
from eggpool.core.events import (
    ClientGone,
    Event,
    ModelListFailed,
    ModelListReceived,
    Now,
    PersistFailed,
    TimerFired,
    UpstreamBodyEnded,
    UpstreamBodyReceived,
    UpstreamFailed,
    UpstreamResponseStarted,
)
from eggpool.core.retry import TransportFailure
from eggpool.shells._contract import (
    CLIENT_BUFFER,
    ClientChannel,
    Driver,
    Receiver,
    UpstreamRequest,
    close_store,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class ScriptedPool:
    """Answers each event type with scripted effects; records every event it saw."""

    def __init__(self) -> None:
        self.seen: list[Event] = []
        self.script: dict[type, Callable[[Event], list[Effect]]] = {}

    def handle(self, event: Event) -> list[Effect]:
        self.seen.append(event)
        answer = self.script.get(type(event))
        return answer(event) if answer is not None else []

    def kinds(self) -> list[str]:
        return [type(e).__name__ for e in self.seen]


class ScriptedUpstream:
    """Plays `steps` into the receiver; a step is ("head", status) / ("chunk", b"") / ("end",) /
    ("fail", TransportFailure) / ("wait",) (block until cancelled)."""

    def __init__(self, *steps: tuple[Any, ...]) -> None:
        self.steps = steps
        self.requests: list[UpstreamRequest] = []
        self.cancelled = 0

    async def send(self, request: UpstreamRequest, receiver: Receiver) -> None:
        self.requests.append(request)
        try:
            for step in self.steps:
                await anyio.sleep(0)
                if step[0] == "head":
                    receiver.head(step[1], ())
                elif step[0] == "chunk":
                    receiver.chunk(step[1])
                elif step[0] == "end":
                    receiver.end()
                elif step[0] == "fail":
                    receiver.failed(step[1], "scripted")
                elif step[0] == "wait":
                    await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            raise


class ListStore:
    def __init__(self) -> None:
        self.records: list[Record] = []
        self.closed = False

    def persist(self, record: Record) -> None:
        self.records.append(record)

    def close(self, timeout: float = 10.0) -> None:
        import time

        time.sleep(0.05)  # a flush that takes a moment
        self.closed = True


def open_upstream(attempt: str = "r#1") -> OpenUpstream:
    return OpenUpstream(
        attempt_id=attempt, request_id="r", account="a", url="https://x.test/v1/chat/completions",
        method="POST", headers=(("content-type", "application/json"),), body=b"{}",
    )  # fmt: skip


def tick(now: Now) -> TimerFired:
    return TimerFired(now=now, key="go")


async def test_effects_reach_the_client_in_order() -> None:
    pool = ScriptedPool()
    pool.script[TimerFired] = lambda e: [
        RespondHead(request_id="r", status=200, headers=(("a", "b"),)),
        RespondBody(request_id="r", data=b"one"),
        RespondBody(request_id="r", data=b"two"),
        RespondEnd(request_id="r"),
    ]
    driver = Driver(pool, upstream=ScriptedUpstream())
    async with anyio.create_task_group() as group:
        await group.start(driver.run)
        with driver.open_client("r") as stream:
            driver.feed(tick(driver.now()))
            got = [message async for message in stream]
        group.cancel_scope.cancel()
    assert [type(m).__name__ for m in got] == [
        "RespondHead",
        "RespondBody",
        "RespondBody",
        "RespondEnd",
    ]
    assert b"".join(m.data for m in got if isinstance(m, RespondBody)) == b"onetwo"


async def test_an_answer_stays_open_until_the_shell_has_read_it_out() -> None:
    # Shutdown waits for `answers_open`: an ended answer still queued is not yet written.
    pool = ScriptedPool()
    pool.script[TimerFired] = lambda e: [
        RespondHead(request_id="r", status=200, headers=()),
        RespondEnd(request_id="r"),
    ]
    driver = Driver(pool, upstream=ScriptedUpstream())
    async with anyio.create_task_group() as group:
        await group.start(driver.run)
        with driver.open_client("r") as stream:
            driver.feed(tick(driver.now()))
            assert driver.answers_open == 1  # the Pool is done; the shell has not written it
            got = [message async for message in stream]
            assert driver.answers_open == 1
        assert driver.answers_open == 0
        stream.close()  # a second close counts nothing
        assert driver.answers_open == 0
        group.cancel_scope.cancel()
    assert len(got) == 2


async def test_upstream_completions_come_back_as_events_in_order() -> None:
    pool = ScriptedPool()
    pool.script[TimerFired] = lambda e: [open_upstream()]
    upstream = ScriptedUpstream(("head", 200), ("chunk", b"a"), ("chunk", b"b"), ("end",))
    driver = Driver(pool, upstream=upstream)
    async with anyio.create_task_group() as group:
        await group.start(driver.run)
        driver.feed(tick(driver.now()))
        with anyio.fail_after(5):
            while "UpstreamBodyEnded" not in pool.kinds():
                await anyio.sleep(0.01)
        group.cancel_scope.cancel()
    assert pool.kinds() == [
        "TimerFired",
        "UpstreamResponseStarted",
        "UpstreamBodyReceived",
        "UpstreamBodyReceived",
        "UpstreamBodyEnded",
    ]
    assert all(e.attempt_id == "r#1" for e in pool.seen[1:])  # type: ignore[attr-defined]
    assert upstream.requests[0].headers == (("content-type", "application/json"),)


async def test_a_transport_failure_is_reported_once() -> None:
    pool = ScriptedPool()
    pool.script[TimerFired] = lambda e: [open_upstream()]
    driver = Driver(pool, upstream=ScriptedUpstream(("fail", TransportFailure.RESET)))
    async with anyio.create_task_group() as group:
        await group.start(driver.run)
        driver.feed(tick(driver.now()))
        with anyio.fail_after(5):
            while "UpstreamFailed" not in pool.kinds():
                await anyio.sleep(0.01)
        group.cancel_scope.cancel()
    failures = [e for e in pool.seen if isinstance(e, UpstreamFailed)]
    assert [f.failure for f in failures] == [TransportFailure.RESET]


async def test_our_own_exception_in_the_upstream_client_is_local_not_the_providers() -> None:
    class Broken:
        async def send(self, request: UpstreamRequest, receiver: Receiver) -> None:
            raise ValueError("bug")

    pool = ScriptedPool()
    pool.script[TimerFired] = lambda e: [open_upstream()]
    driver = Driver(pool, upstream=Broken())
    async with anyio.create_task_group() as group:
        await group.start(driver.run)
        driver.feed(tick(driver.now()))
        await anyio.sleep(0.05)
        group.cancel_scope.cancel()
    (failure,) = [e for e in pool.seen if isinstance(e, UpstreamFailed)]
    assert failure.failure is TransportFailure.LOCAL


async def test_abort_cancels_the_attempt_and_nothing_more_comes_from_it() -> None:
    pool = ScriptedPool()
    pool.script[TimerFired] = lambda e: [open_upstream()]
    pool.script[UpstreamResponseStarted] = lambda e: [AbortUpstream(attempt_id="r#1")]
    upstream = ScriptedUpstream(("head", 200), ("wait",), ("chunk", b"late"))
    driver = Driver(pool, upstream=upstream)
    async with anyio.create_task_group() as group:
        await group.start(driver.run)
        driver.feed(tick(driver.now()))
        await anyio.sleep(0.1)
        group.cancel_scope.cancel()
    assert upstream.cancelled == 1
    assert pool.kinds() == ["TimerFired", "UpstreamResponseStarted"]


async def test_timers_fire_once_at_their_time() -> None:
    pool = ScriptedPool()
    driver = Driver(pool, upstream=ScriptedUpstream())
    async with anyio.create_task_group() as group:
        await group.start(driver.run)
        start = anyio.current_time()
        driver._execute(ArmTimer(key="t", at=start + 0.05))
        await anyio.sleep(0.2)
        group.cancel_scope.cancel()
    fired = [e for e in pool.seen if isinstance(e, TimerFired)]
    assert [e.key for e in fired] == ["t"]
    assert fired[0].now.mono >= start + 0.05
    assert driver.armed == {}


async def test_a_cancelled_timer_never_fires_and_a_rearmed_one_fires_at_its_new_time() -> None:
    pool = ScriptedPool()
    driver = Driver(pool, upstream=ScriptedUpstream())
    async with anyio.create_task_group() as group:
        await group.start(driver.run)
        start = anyio.current_time()
        driver._execute(ArmTimer(key="gone", at=start + 0.05))
        driver._execute(CancelTimer(key="gone"))
        driver._execute(ArmTimer(key="moved", at=start + 0.02))
        driver._execute(ArmTimer(key="moved", at=start + 0.1))
        await anyio.sleep(0.06)
        assert [e for e in pool.seen if isinstance(e, TimerFired)] == []
        await anyio.sleep(0.1)
        group.cancel_scope.cancel()
    assert [e.key for e in pool.seen if isinstance(e, TimerFired)] == ["moved"]  # type: ignore[attr-defined]


async def test_an_earlier_timer_armed_later_wakes_the_timer_task() -> None:
    pool = ScriptedPool()
    driver = Driver(pool, upstream=ScriptedUpstream())
    async with anyio.create_task_group() as group:
        await group.start(driver.run)
        start = anyio.current_time()
        driver._execute(ArmTimer(key="late", at=start + 10))
        await anyio.sleep(0.01)
        driver._execute(ArmTimer(key="soon", at=start + 0.03))
        await anyio.sleep(0.1)
        group.cancel_scope.cancel()
    assert [e.key for e in pool.seen if isinstance(e, TimerFired)] == ["soon"]  # type: ignore[attr-defined]


async def test_a_client_that_left_becomes_client_gone() -> None:
    pool = ScriptedPool()
    pool.script[TimerFired] = lambda e: [RespondHead(request_id="r", status=200, headers=())]
    driver = Driver(pool, upstream=ScriptedUpstream())
    async with anyio.create_task_group() as group:
        await group.start(driver.run)
        stream = driver.open_client("r")
        await stream.aclose()
        driver.feed(tick(driver.now()))
        group.cancel_scope.cancel()
    assert [e.request_id for e in pool.seen if isinstance(e, ClientGone)] == ["r"]  # type: ignore[attr-defined]


async def test_a_stalled_client_is_treated_as_gone_with_bounded_memory() -> None:
    pool = ScriptedPool()
    pool.script[TimerFired] = lambda e: [
        RespondBody(request_id="r", data=b"x") for _ in range(CLIENT_BUFFER + 1)
    ]
    driver = Driver(pool, upstream=ScriptedUpstream())
    async with anyio.create_task_group() as group:
        await group.start(driver.run)
        with driver.open_client("r"):  # nobody reads it
            driver.feed(tick(driver.now()))
        group.cancel_scope.cancel()
    assert sum(isinstance(e, ClientGone) for e in pool.seen) == 1


async def test_client_gone_from_the_shell_reaches_the_pool_once() -> None:
    pool = ScriptedPool()
    driver = Driver(pool, upstream=ScriptedUpstream())
    async with anyio.create_task_group() as group:
        await group.start(driver.run)
        with driver.open_client("r"):
            driver.client_gone("r")
            driver.client_gone("r")
        group.cancel_scope.cancel()
    assert pool.kinds() == ["ClientGone"]


async def test_model_lists_come_back_whole_or_failed() -> None:
    pool = ScriptedPool()
    fetch = FetchModelList(account="a", url="https://x.test/v1/models", method="GET", headers=())
    pool.script[TimerFired] = lambda e: [fetch]
    upstream = ScriptedUpstream(
        ("head", 200), ("chunk", b'{"data"'), ("chunk", b": []}"), ("end",)
    )
    driver = Driver(pool, upstream=upstream)
    async with anyio.create_task_group() as group:
        await group.start(driver.run)
        driver.feed(tick(driver.now()))
        with anyio.fail_after(5):
            while not any(isinstance(e, ModelListReceived) for e in pool.seen):
                await anyio.sleep(0.01)
        driver.upstream = ScriptedUpstream(("fail", TransportFailure.DNS))
        driver.feed(tick(driver.now()))
        with anyio.fail_after(5):
            while not any(isinstance(e, ModelListFailed) for e in pool.seen):
                await anyio.sleep(0.01)
        group.cancel_scope.cancel()
    (received,) = [e for e in pool.seen if isinstance(e, ModelListReceived)]
    assert (received.status, received.body) == (200, b'{"data": []}')
    (failed,) = [e for e in pool.seen if isinstance(e, ModelListFailed)]
    assert failed.reason == "dns: scripted"


async def test_a_store_failure_from_the_writer_thread_becomes_persist_failed() -> None:
    pool = ScriptedPool()
    driver = Driver(pool, upstream=ScriptedUpstream())
    async with anyio.create_task_group() as group:
        await group.start(driver.run)
        await anyio.to_thread.run_sync(driver.persist_failed, "RequestFinalized", "disk full")
        thread = threading.Thread(target=driver.persist_failed, args=("AttemptEnded", "locked"))
        thread.start()
        with anyio.fail_after(5):
            while len([e for e in pool.seen if isinstance(e, PersistFailed)]) < 2:
                await anyio.sleep(0.01)
        thread.join()
        group.cancel_scope.cancel()
    failed = [(e.what, e.error) for e in pool.seen if isinstance(e, PersistFailed)]
    assert sorted(failed) == [("AttemptEnded", "locked"), ("RequestFinalized", "disk full")]


async def test_finalization_records_survive_the_shell_being_cancelled() -> None:
    record = OperationalEvent(at=0.0, kind="shutdown", detail="x")
    pool = ScriptedPool()
    pool.script[TimerFired] = lambda e: [open_upstream()]
    pool.script[UpstreamBodyEnded] = lambda e: [Persist(record=record)]
    store = ListStore()
    driver = Driver(pool, upstream=ScriptedUpstream(("head", 200), ("end",)), store=store)
    async with anyio.create_task_group() as group:
        await group.start(driver.run)
        driver.feed(tick(driver.now()))
        with anyio.fail_after(5):
            while not store.records:
                await anyio.sleep(0.001)
        group.cancel_scope.cancel()
    assert store.records == [record]


async def test_closing_the_store_is_shielded_from_cancellation() -> None:
    store = ListStore()
    async with anyio.create_task_group() as group:

        async def shutdown() -> None:
            await close_store(store, timeout=1.0)

        group.start_soon(shutdown)
        await anyio.sleep(0.01)
        group.cancel_scope.cancel()  # e.g. a second SIGINT while flushing
    assert store.closed


def test_the_driver_needs_its_run_loop_for_upstream_work() -> None:
    driver = Driver(ScriptedPool(), upstream=ScriptedUpstream())
    with pytest.raises(RuntimeError, match="not running"):
        driver._execute(open_upstream())


def test_now_reads_the_loop_clock_and_the_wall_clock() -> None:
    async def read() -> tuple[Now, float]:
        return Driver(ScriptedPool(), upstream=ScriptedUpstream()).now(), anyio.current_time()

    now, loop = anyio.run(read)
    assert abs(now.mono - loop) < 1.0
    assert now.wall > 1_700_000_000
    assert isinstance(UpstreamBodyReceived, type)


async def test_a_real_pool_serves_a_request_through_the_driver() -> None:
    import json

    from eggpool.core.effects import RequestFinalized
    from eggpool.core.events import ClientRequestReceived, StateLoaded
    from eggpool.core.pool import Pool
    from tests.helpers.loopback import one_account_config

    config = one_account_config()
    answer = json.dumps(
        {"choices": [{"message": {"content": "hi"}}], "usage": {"prompt_tokens": 3}}
    ).encode()
    upstream = ScriptedUpstream(("head", 200), ("chunk", answer), ("end",))
    store = ListStore()
    async with anyio.create_task_group() as group:
        driver = Driver(Pool(config, now=_now()), upstream=upstream, store=store)
        await group.start(driver.run)
        driver.feed(StateLoaded(now=driver.now()))
        with driver.open_client("r1") as stream:
            driver.feed(
                ClientRequestReceived(
                    now=driver.now(), request_id="r1", entropy=1, method="POST",
                    path="/v1/chat/completions", headers=(),
                    body=json.dumps({"model": "m", "messages": []}).encode(),
                )
            )  # fmt: skip
            with anyio.fail_after(5):
                got = [message async for message in stream]
        group.cancel_scope.cancel()
    assert [type(m).__name__ for m in got] == ["RespondHead", "RespondBody", "RespondEnd"]
    assert got[1].data == answer  # type: ignore[union-attr]
    assert upstream.requests[0].url == "https://api.example.test/v1/chat/completions"
    finals = [r for r in store.records if isinstance(r, RequestFinalized)]
    assert [(f.outcome, f.status) for f in finals] == [("completed", 200)]
    assert driver.armed.keys() == {"pool:refresh"}  # no request timer left behind


def _now() -> Now:
    import time

    return Now(anyio.current_time(), time.time())


async def test_a_client_channel_delivers_in_order_then_ends_and_refuses_when_full() -> None:
    channel = ClientChannel(capacity=2)
    head = RespondHead(request_id="r", status=200, headers=())
    body = RespondBody(request_id="r", data=b"x")
    with pytest.raises(anyio.WouldBlock):
        channel.receive_nowait()
    assert channel.put(head)
    assert channel.put(body)
    assert not channel.put(body)  # full: the Driver treats the client as stalled
    assert await channel.receive() is head
    assert channel.receive_nowait() is body
    channel.end()
    with pytest.raises(anyio.EndOfStream):
        channel.receive_nowait()
    assert [m async for m in channel] == []
    assert not channel.put(body)  # nothing after the end


async def test_a_waiting_receiver_wakes_for_a_message_and_for_the_end() -> None:
    channel = ClientChannel(capacity=8)
    got: list[object] = []

    async def receive_one() -> None:
        got.append(await channel.receive())

    async def receive_end() -> None:
        with pytest.raises(anyio.EndOfStream):
            await channel.receive()
        got.append("end")

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(receive_one)
            await anyio.sleep(0.01)  # it waits: nothing queued
            assert got == []
            channel.put(RespondEnd(request_id="r"))
        async with anyio.create_task_group() as group:
            group.start_soon(receive_end)
            await anyio.sleep(0.01)
            channel.end()
    assert got == [RespondEnd(request_id="r"), "end"]


async def test_a_closed_client_channel_drops_what_is_queued_and_refuses_more() -> None:
    channel = ClientChannel(capacity=8)
    channel.put(RespondBody(request_id="r", data=b"x"))
    with channel:
        pass
    assert not channel.put(RespondEnd(request_id="r"))
    with pytest.raises(anyio.EndOfStream):
        await channel.receive()
