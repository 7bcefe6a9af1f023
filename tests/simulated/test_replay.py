"""`eggpool simulate replay`: a database the real server wrote, routed again offline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from eggpool.core.config import Config, parse_config
from eggpool.simulated.replay import ReplayError, read_recording, replay
from tests.helpers.loopback import client
from tests.helpers.shells import KEY, Provider, serving, two_provider_config

pytestmark = pytest.mark.anyio

PLAIN = json.dumps(
    {
        "choices": [{"message": {"content": "hi"}}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4},
    }
).encode()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def three_accounts(db: Path, accounts: int = 3) -> Config:
    return parse_config(
        {
            "server": {"api_key": KEY, "access_log": False},
            "database": {"path": str(db)},
            "providers": {
                "one": {
                    "base_url": "https://one.test/v1",
                    "models_endpoint": {"method": "DISABLED"},
                    "static_models": [{"id": "m"}],
                    "accounts": [
                        {"name": f"a{n}", "api_key": f"sk-a{n}-0123456789abcdef"}
                        for n in range(1, accounts + 1)
                    ],
                }
            },
        },
        {},
    )


async def record(db: Path, requests: int) -> None:
    """`requests` chat completions through the real anyio server, one after another, each
    its own conversation, every third of a conversation seen before."""
    provider = Provider({"one.test": [("head", 200), ("chunk", PLAIN), ("end",)]})
    async with serving("anyio-asyncio", three_accounts(db), provider) as port:
        async with client(port) as c:
            for n in range(requests):
                topic = n - 1 if n % 3 == 2 else n  # a second turn of the last conversation
                body = {"model": "m", "messages": [{"role": "user", "content": f"topic {topic}"}]}
                await c.request("/v1/chat/completions", body)
                status, _, _ = await c.response()
                assert status == 200
                await anyio.sleep(0.01)


async def test_an_unchanged_pool_routes_every_recorded_request_the_same_way(
    tmp_path: Path,
) -> None:
    db = tmp_path / "usage.sqlite3"
    await record(db, 30)
    recorded = read_recording(db)
    assert len(recorded) == 30
    assert len({r.account for r in recorded}) > 1  # the traffic was spread, not trivial
    report = replay(three_accounts(db), recorded)
    assert (report.compared, report.matched) == (30, 30)
    assert report.outcomes == {"completed": 30}
    routed = json.loads(report.to_json())["routed_as_recorded"]
    assert routed == {"requests": 30, "same_account": 30}


async def test_a_fourth_account_takes_a_share_of_the_same_traffic(tmp_path: Path) -> None:
    db = tmp_path / "usage.sqlite3"
    await record(db, 30)
    report = replay(three_accounts(db, accounts=4), read_recording(db))
    assert report.requests == 30
    assert report.accounts["a4"].requests > 0  # it never saw a request; its model answered
    assert report.matched < 30


async def test_a_recorded_429_replays_with_the_retry_after_it_came_with(tmp_path: Path) -> None:
    db = tmp_path / "usage.sqlite3"
    throttled = (("content-type", "application/json"), ("retry-after", "45"))
    provider = Provider(
        {
            "one.test": [("head", 429, throttled), ("chunk", b"{}"), ("end",)],
            "two.test": [("head", 200), ("chunk", PLAIN), ("end",)],
        }
    )
    config = two_provider_config(db)  # a1 of `one` first, then a2 of `two`
    async with serving("anyio-asyncio", config, provider) as port:
        async with client(port) as c:
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
            await c.request("/v1/chat/completions", body)
            status, _, _ = await c.response()
    assert status == 200
    (recorded,) = read_recording(db)
    first, second = recorded.attempts
    assert (first.status, first.retry_after) == (429, 45.0)
    assert (second.status, second.retry_after) == (200, None)
    report = replay(config, [recorded])
    assert (report.compared, report.matched) == (1, 1)
    ((start, end),) = report.cooldowns[first.account]
    assert end - start == pytest.approx(45.0, abs=1.0)  # the provider's hint, not a default


def test_replaying_something_that_is_not_a_database_says_so(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match="no such database"):
        read_recording(tmp_path / "missing.sqlite3")
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(ReplayError, match="cannot read it as an EggPool database"):
        read_recording(junk)


async def test_the_command_replays_with_the_current_or_another_config(tmp_path: Path) -> None:
    db = tmp_path / "usage.sqlite3"
    await record(db, 12)
    config = tmp_path / "config.toml"
    config.write_text(
        f'[server]\napi_key = "{KEY}"\n[database]\npath = "{db}"\n'
        '[providers.one]\nbase_url = "https://one.test/v1"\n'
        'models_endpoint = { method = "DISABLED" }\nstatic_models = [{ id = "m" }]\n'
        + "".join(
            f'[[providers.one.accounts]]\nname = "a{n}"\napi_key = "sk-a{n}-0123456789abcdef"\n'
            for n in (1, 2, 3)
        )
    )
    command = [sys.executable, "-m", "eggpool", "--config", str(config), "simulate", "replay"]
    shown = subprocess.run(
        [*command, "--db", str(db), "--json"], capture_output=True, text=True, check=True
    )
    assert json.loads(shown.stdout)["routed_as_recorded"] == {"requests": 12, "same_account": 12}
    since = subprocess.run(
        [*command, "--db", str(db), "--since", "forever"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert since.returncode == 2
    assert "--since" in since.stderr
