"""The stats API served by every shell: the same answers, the same access rules.

Each test runs against the anyio shell (asyncio and trio) and the Quart
shell with the real store: requests go through the proxy, then the API
must count them; access follows `[dashboard].public`; bad input gets a 400
naming the parameter; answers carry the API's security headers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest

from tests.helpers.loopback import client
from tests.helpers.shells import CHAT, KEY, Provider, plain_answer, serving, two_provider_config

pytestmark = pytest.mark.anyio

PLAIN = plain_answer(20, 10)


def provider(times: int = 3) -> Provider:
    return Provider({"one.test": [("head", 200), ("chunk", PLAIN), ("end",)] * times})


async def get(port: int, target: str, *, key: str = KEY) -> tuple[int, dict[str, str], Any]:
    async with client(port) as c:
        await c.request(target, None, key=key)
        status, headers, chunks = await c.response()
    return status, headers, json.loads(b"".join(chunks))


async def send_requests(port: int, count: int) -> None:
    async with client(port) as c:
        for _ in range(count):
            await c.request("/v1/chat/completions", CHAT)
            status, _, _ = await c.response()
            assert status == 200


async def until_counted(port: int, count: int) -> dict[str, Any]:
    """The summary once the store has the requests (the writer commits within ~50 ms)."""
    with anyio.fail_after(5):
        while True:
            status, _, body = await get(port, "/api/stats/summary?period=1h")
            assert status == 200
            if body["requests"] >= count:
                return dict(body)
            await anyio.sleep(0.05)


async def test_requests_through_the_proxy_show_in_the_stats(shell: str, db: Path) -> None:
    async with serving(shell, two_provider_config(db), provider()) as port:
        await send_requests(port, 3)
        summary = await until_counted(port, 3)
        _, _, accounts = await get(port, "/api/stats/accounts?period=1h")
        _, _, series = await get(port, "/api/stats/timeseries?period=1h&group_by=account")
    assert summary["requests"] == 3
    assert summary["errors"] == 0
    assert summary["tokens"]["input"] == 60
    assert summary["tokens"]["output"] == 30
    assert summary["outcomes"] == {"completed": 3}
    assert summary["latency"]["p50_s"] is not None
    by_name = {a["account"]: a for a in accounts["accounts"]}
    assert by_name["a1"]["requests"] == 3
    assert by_name["a2"]["requests"] == 0  # configured, unused: still listed
    assert [s["name"] for s in series["series"]] == ["a1"]
    assert sum(series["bucket_totals"]) == 3


async def test_answers_are_json_with_the_security_headers(shell: str, db: Path) -> None:
    async with serving(shell, two_provider_config(db), provider(0)) as port:
        status, headers, body = await get(port, "/api/stats/pending-health")
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["cache-control"] == "no-store"
    assert "default-src 'none'" in headers["content-security-policy"]
    assert body["pending"] == 0
    assert body["reservations"] == {"active": 0, "reserved_usd": 0.0, "oldest_age_s": None}


async def test_a_public_dashboard_still_guards_per_request_data(shell: str, db: Path) -> None:
    async with serving(shell, two_provider_config(db), provider(0)) as port:
        open_status, _, _ = await get(port, "/api/stats/summary", key="")
        guarded = [
            (await get(port, target, key=""))[0]
            for target in (
                "/api/stats/recent-requests",
                "/api/stats/recent/abc",
                "/api/stats/runtime",
            )
        ]
        wrong, _, body = await get(port, "/api/stats/runtime", key="wrong-key-0000000000")
        status, _, runtime = await get(port, "/api/stats/runtime")
    assert open_status == 200
    assert guarded == [401, 401, 401]
    assert wrong == 401
    assert body["error"]["code"] == "invalid_api_key"
    assert status == 200
    assert runtime["process"]["pid"] > 0
    assert runtime["requests_in_flight"] == 0
    assert set(runtime["serving"]["tasks"]) == {
        "upstream_attempts", "client_answers", "timers", "live_subscribers",
    }  # fmt: skip
    assert runtime["serving"]["dispatch_overhead_us"]["samples"] == 0


async def test_a_private_dashboard_needs_the_key_everywhere(shell: str, db: Path) -> None:
    config = two_provider_config(db)
    config = attrs.evolve(config, dashboard=attrs.evolve(config.dashboard, public=False))
    async with serving(shell, config, provider(0)) as port:
        refused, _, _ = await get(port, "/api/stats/summary", key="")
        allowed, _, _ = await get(port, "/api/stats/summary")
    assert (refused, allowed) == (401, 200)


@pytest.mark.parametrize(
    ("target", "param"),
    [
        ("/api/stats/summary?period=forever", "period"),
        ("/api/stats/summary?period=2026-01-02..2026-01-01", "period"),
        ("/api/stats/timeseries?bucket=minute", "bucket"),
        ("/api/stats/timeseries?group_by=colour", "group_by"),
        ("/api/stats/timeseries?limit=0", "limit"),
        ("/api/stats/errors?limit=many", "limit"),
        ("/api/stats/summary?colour=red", "colour"),
        ("/api/stats/summary?period=1h&period=2h", "period"),
        ("/api/stats/recent-requests?status=99", "status"),
        ("/api/stats/attempts?model=m", "model"),
    ],
)
async def test_bad_parameters_get_a_400_naming_them(
    shell: str, db: Path, target: str, param: str
) -> None:
    async with serving(shell, two_provider_config(db), provider(0)) as port:
        status, _, body = await get(port, target)
    assert status == 400
    assert body["error"]["param"] == param
    assert body["error"]["type"] == "invalid_request_error"


async def test_unknown_things_are_404_and_only_get_is_served(shell: str, db: Path) -> None:
    async with serving(shell, two_provider_config(db), provider(0)) as port:
        unknown, _, _ = await get(port, "/api/stats/nope")
        missing, _, body = await get(port, "/api/stats/recent/no-such-request")
        async with client(port) as c:
            await c.request("/api/stats/summary", {"x": 1})  # a POST
            posted, headers, _ = await c.response()
    assert (unknown, missing, posted) == (404, 404, 405)
    assert body["error"]["code"] == "not_found"
    assert headers["allow"] == "GET"


async def test_one_requests_trace_has_its_attempt_chain(shell: str, db: Path) -> None:
    script = Provider(
        {
            "one.test": [("head", 429, (("retry-after", "30"),)), ("chunk", b"{}"), ("end",)],
            "two.test": [("head", 200), ("chunk", PLAIN), ("end",)],
        }
    )
    async with serving(shell, two_provider_config(db), script) as port:
        await send_requests(port, 1)
        await until_counted(port, 1)
        _, _, recent = await get(port, "/api/stats/recent-requests?limit=5")
        request_id = recent["requests"][0]["request_id"]
        status, _, trace = await get(port, f"/api/stats/recent/{request_id}")
        _, _, attempts = await get(port, "/api/stats/attempts?period=1h")
        _, _, retries = await get(port, "/api/stats/retries?period=1h")
        _, _, events = await get(port, "/api/stats/events?period=1h")
        _, _, routing = await get(port, "/api/stats/routing?period=1h")
        _, _, latency = await get(port, "/api/stats/latency?period=1h")
        _, _, runtime = await get(port, "/api/stats/runtime")
        _, _, prices = await get(port, "/api/stats/pricing-provenance")
    assert status == 200
    assert trace["request"]["account"] == "a2"
    assert runtime["serving"]["dispatch_overhead_us"]["samples"] == 1
    assert runtime["serving"]["dispatch_overhead_us"]["p50"] > 0
    assert {(p["model"], p["provider"]) for p in prices["prices"]} == {("m", "one"), ("m", "two")}
    assert set(prices["prices"][0]["sources"]) == {"input", "output", "cache_read", "cache_write"}
    assert [(a["account"], a["status"]) for a in trace["attempts"]] == [("a1", 429), ("a2", 200)]
    assert "client" not in trace["request"]  # never the client's address
    assert (attempts["attempts"], attempts["failovers"], attempts["failed"]) == (2, 1, 1)
    assert attempts["by_status"] == {"200": 1, "429": 1}
    assert [(d["account"], d["candidates"]) for d in trace["routing"]] == [("a1", 2), ("a2", 1)]
    assert {"account": "a1", "reason": "already_tried"} in trace["routing"][1]["excluded"]
    assert (routing["decisions"], routing["no_account"]) == (2, 0)
    phases = latency["phases"]
    assert phases["attempts_measured"] == 2  # both attempts had a head
    assert phases["after_head_s"] >= 0
    assert phases["proxy_overhead_us"]["samples"] == 1
    assert {s["account"]: s["decisions"] for s in routing["selections"]} == {"a1": 1, "a2": 1}
    assert "already_tried" in {r["reason"] for r in routing["exclusions_by_reason"]}
    cooldown = events["events"][0]
    assert (cooldown["account"], cooldown["kind"]) == ("a1", "cooldown")
    assert cooldown["until"] > cooldown["at"]  # the provider asked for 30 s
    assert [(c["category"], c["attempts"]) for c in retries["categories"]] == [("rate_limited", 1)]


EXPECTED_KEYS = {
    "summary": {"requests", "errors", "tokens", "cost_usd", "latency", "ttft", "outcomes"},
    "accounts": {"accounts"},
    "models": {"models"},
    "timeseries": {"points", "bucket"},
    "errors": {"requests", "errors", "by_outcome_and_status"},
    "latency": {"latency", "ttft", "models", "phases"},
    "attempts": {"attempts", "failed", "failovers", "accounts", "by_status"},
    "retries": {"failed_attempts", "categories"},
    "routing": {"decisions", "selections", "exclusions_by_reason"},
    "backoffs": {"now", "backoffs"},
    "events": {"counts", "events"},
    "operational": {"counts", "events"},
    "pending-health": {"pending", "stale_pending", "reservations"},
    "recent-requests": {"requests"},
    "runtime": {"process", "serving", "database"},
    "pricing-provenance": {"prices"},
}


async def test_every_endpoint_answers_with_its_fields(shell: str, db: Path) -> None:
    from eggpool.dashboard.api import ENDPOINTS

    assert set(EXPECTED_KEYS) | {"recent"} == set(ENDPOINTS)  # a new endpoint needs a line here
    async with serving(shell, two_provider_config(db), provider(1)) as port:
        await send_requests(port, 1)
        await until_counted(port, 1)
        answers = {name: await get(port, f"/api/stats/{name}") for name in EXPECTED_KEYS}
    for name, (status, headers, body) in answers.items():
        assert status == 200, name
        assert headers["content-type"] == "application/json", name
        assert EXPECTED_KEYS[name] <= set(body), (name, set(body))
