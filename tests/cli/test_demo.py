"""`eggpool demo` as a newcomer runs it: nothing to configure, examples that work as printed."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anthropic
import openai

from eggpool.core.config import parse_config
from eggpool.simulated.demo import demo_config_text, demo_scenario
from eggpool.simulated.wire import ReplyKind


def test_the_demo_config_is_valid_and_has_two_providers_of_three_accounts() -> None:
    scenario = demo_scenario()
    text = demo_config_text(
        scenario,
        upstream_url="http://127.0.0.1:9/v1",
        port=0,
        server_key="demo-0123456789",
        db=":memory:",
    )
    config = parse_config(tomllib.loads(text), {})
    assert config.warnings == ()
    assert {p: len(c.accounts) for p, c in config.providers.items()} == {
        "sim-openai": 3,
        "sim-anthropic": 3,
    }
    assert [c.protocols for c in config.providers.values()] == [("openai",), ("anthropic",)]


def test_the_demo_scripts_an_occasional_429_and_503() -> None:
    script = demo_scenario().scripts
    throttled = [script["openai-2"].pick(n).code for n in range(1, 25)]
    assert throttled.count(429) == 2
    failing = [script["anthropic-3"].pick(n) for n in range(1, 31)]
    assert [r.code for r in failing if r.kind is ReplyKind.STATUS] == [503, 503]


@contextmanager
def demo(*args: str) -> Iterator[tuple[subprocess.Popen[str], str, str, Path]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "eggpool", "demo", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        printed = ""
        deadline = time.monotonic() + 20
        while "Press Ctrl-C" not in printed and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            printed += line
        url = re.search(r"listens on (http://\S+),", printed)
        key = re.search(r"API key\s+(\S+)", printed)
        config = re.search(r"config\s+(\S+)", printed)
        assert url, printed
        assert key, printed
        assert config, printed
        yield process, url.group(1), key.group(1), Path(config.group(1))
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def test_the_printed_sdk_examples_work_and_ctrl_c_cleans_up() -> None:
    with demo() as (process, url, key, config):
        assert config.is_file()
        # Closed when done: an SDK client left open leaks its pooled socket to the GC.
        with (
            openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=3) as client,
            anthropic.Anthropic(base_url=url, api_key=key, max_retries=3) as claude,
        ):
            reply = client.chat.completions.create(
                model="sim-gpt-mini", messages=[{"role": "user", "content": "Hello"}]
            )
            assert reply.choices[0].message.content
            assert reply.usage is not None
            assert reply.usage.completion_tokens > 0
            message = claude.messages.create(
                model="sim-claude-haiku",
                max_tokens=256,
                messages=[{"role": "user", "content": "Hi"}],
            )
            assert message.content[0].type == "text"
            assert message.usage.output_tokens > 0
            models = {m.id for m in client.models.list()}
        assert {"sim-gpt-mini/sim-openai", "sim-claude-haiku/sim-anthropic"} <= models
        process.send_signal(signal.SIGINT)
        process.wait(20)
        assert process.returncode == 0
    assert not config.parent.exists()


def test_traffic_sends_requests_through_the_proxy() -> None:
    with demo("--traffic") as (process, _, _, _):
        time.sleep(3)
        process.send_signal(signal.SIGINT)
        _, log = process.communicate(timeout=20)
    assert process.returncode == 0, log[-3000:]
    assert re.search(r"msg=request .* outcome=completed status=200", log)


def test_the_demo_provider_remembers_a_bounded_number_of_exchanges() -> None:
    # `eggpool demo` may run for days: its provider keeps only the latest exchanges.
    from eggpool.cli._demo import DEMO_EXCHANGES
    from eggpool.simulated.demo import demo_scenario
    from eggpool.simulated.server import served_provider

    scenario = demo_scenario()
    with served_provider(scenario.provider, scenario.keys, keep=3) as served:
        key = next(iter(scenario.keys))
        for _ in range(5):
            request = urllib.request.Request(
                f"{served.url}/models", headers={"authorization": f"Bearer {key}"}
            )
            with urllib.request.urlopen(request, timeout=5) as answer:
                answer.read()
        kept = served.exchanges
    assert [e.number for e in kept] == [3, 4, 5]
    assert DEMO_EXCHANGES >= 100
