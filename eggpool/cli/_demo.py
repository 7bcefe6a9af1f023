"""`eggpool demo`: the real proxy in front of simulated providers, nothing to configure.

Theory of operation. The simulated providers (`eggpool.simulated.demo`) are
served on a loopback port from a background thread; a config pointing at
them, with a fresh server key and a database, is written to a temporary
directory; then the same `Server` as `eggpool serve` runs on the main
thread until Ctrl-C, and the directory is removed. `--traffic` adds a task
that sends a request every second or so through the proxy itself, the way
a client would, so the access log shows routing, failover and cooldowns.
"""

from __future__ import annotations

import http.client
import json
import secrets
import socket
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable
from itertools import cycle
from pathlib import Path

import anyio
from anyio.abc import TaskStatus

from eggpool.core.config import parse_config
from eggpool.shells._runtime import default_store, default_upstream
from eggpool.shells.asyncio_shell.app import Server
from eggpool.simulated import DEMO_PORT
from eggpool.simulated.demo import DemoScenario, demo_config_text, demo_scenario
from eggpool.simulated.server import served_provider

__all__ = ["DEFAULT_PORT", "instructions", "run_demo"]

DEFAULT_PORT = DEMO_PORT
DEMO_EXCHANGES = 1000
"""What the demo's provider remembers of its exchanges: a demo may run for days."""


def run_demo(*, port: int | None, traffic: bool, backend: str, say: Callable[[str], None]) -> None:
    """Run until SIGINT/SIGTERM; `say` prints the instructions once the proxy listens."""
    scenario = demo_scenario()
    key = f"demo-{secrets.token_hex(12)}"
    with (
        tempfile.TemporaryDirectory(prefix="eggpool-demo-") as tmp,
        served_provider(scenario.provider, scenario.keys, keep=DEMO_EXCHANGES) as upstream,
    ):
        path = Path(tmp) / "config.toml"
        text = demo_config_text(
            scenario,
            upstream_url=upstream.url,
            port=_free_or_any(DEFAULT_PORT) if port is None else port,
            server_key=key,
            db=str(Path(tmp) / "usage.sqlite3"),
        )
        path.write_text(text, encoding="utf-8")
        config = parse_config(tomllib.loads(text), {}, base_dir=tmp)
        server = Server(
            config, config.server.host, config.server.port, default_store, default_upstream
        )

        async def main() -> None:
            async with anyio.create_task_group() as group:

                async def serve(*, task_status: TaskStatus[int]) -> None:
                    await server.run(task_status=task_status)
                    group.cancel_scope.cancel()  # the traffic generator ends with the server

                bound: int = await group.start(serve)
                url = f"http://127.0.0.1:{bound}"
                await anyio.to_thread.run_sync(_wait_ready, url)
                say(instructions(url, key, path, scenario, traffic=traffic))
                if traffic:
                    group.start_soon(_traffic, url, key, scenario)

        anyio.run(main, backend=backend)


def instructions(
    url: str, key: str, config: Path, scenario: DemoScenario, *, traffic: bool
) -> str:
    openai_models, anthropic_models = scenario.models.values()
    chat = json.dumps(
        {
            "model": openai_models[0],
            "stream": True,
            "messages": [{"role": "user", "content": "Hello"}],
        }
    )
    message = json.dumps(
        {
            "model": anthropic_models[0],
            "max_tokens": 256,
            "messages": [{"role": "user", "content": "Hello"}],
        }
    )
    accounts = len(scenario.accounts)
    lines = [
        f"EggPool demo: the proxy listens on {url}, in front of {len(scenario.models)} "
        f"simulated providers ({accounts} accounts) on loopback.",
        "",
        f"  API key   {key}",
        f"  config    {config}  (a temporary directory, removed on exit)",
        f"  models    {', '.join(openai_models)} (OpenAI protocol)",
        f"            {', '.join(anthropic_models)} (Anthropic protocol)",
        "",
        "Try it:",
        "",
        f'  curl -s {url}/v1/models -H "Authorization: Bearer {key}"',
        "",
        f'  curl -N {url}/v1/chat/completions -H "Authorization: Bearer {key}" \\',
        f"    -H 'content-type: application/json' -d '{chat}'",
        "",
        f'  curl -s {url}/v1/messages -H "x-api-key: {key}" \\',
        "    -H 'anthropic-version: 2023-06-01' -H 'content-type: application/json' \\",
        f"    -d '{message}'",
        "",
        "From Python (pip install openai anthropic):",
        "",
        "  from openai import OpenAI",
        f'  client = OpenAI(base_url="{url}/v1", api_key="{key}")',
        f'  reply = client.chat.completions.create(model="{openai_models[0]}",',
        '      messages=[{"role": "user", "content": "Hello"}])',
        "  print(reply.choices[0].message.content, reply.usage)",
        "",
        "  from anthropic import Anthropic",
        f'  client = Anthropic(base_url="{url}", api_key="{key}")',
        f'  reply = client.messages.create(model="{anthropic_models[0]}", max_tokens=256,',
        '      messages=[{"role": "user", "content": "Hello"}])',
        "  print(reply.content[0].text, reply.usage)",
        "",
        "openai-2 is rate limited on every 12th call and anthropic-3 answers 503 on every",
        "15th: watch the log (stderr) show EggPool fail over and rest them.",
    ]
    if traffic:
        lines.append("--traffic: a request about every second goes through the proxy.")
    lines += ["", "Press Ctrl-C to stop."]
    return "\n".join(lines)


def _wait_ready(url: str, timeout: float = 10.0) -> None:
    """Until `/v1/readyz` says so: the first model listings are in (or `timeout` passed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/v1/readyz", timeout=2):
                return
        except urllib.error.HTTPError as exc:  # 503 until ready: it holds the connection
            exc.close()
            time.sleep(0.05)
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)


def _free_or_any(port: int) -> int:
    """`port` if nothing listens on it, else 0 (the system picks a free one)."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return 0
    return port


async def _traffic(url: str, key: str, scenario: DemoScenario) -> None:
    openai_models, anthropic_models = scenario.models.values()
    plan = cycle(
        [(model, False) for model in openai_models]
        + [(model, True) for model in anthropic_models]
        + [(openai_models[0], True), (anthropic_models[1], False)]
    )
    for number, (model, stream) in enumerate(plan):
        anthropic = model in anthropic_models
        await anyio.to_thread.run_sync(_send, url, key, model, stream, anthropic)
        await anyio.sleep(0.5 + (number % 3) * 0.4)


def _send(url: str, key: str, model: str, stream: bool, anthropic: bool) -> None:
    body: dict[str, object] = {
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": "Tell me about egg pools."}],
    }
    headers = {"content-type": "application/json"}
    if anthropic:
        body["max_tokens"] = 256
        headers |= {"x-api-key": key, "anthropic-version": "2023-06-01"}
    else:
        headers["authorization"] = f"Bearer {key}"
    path = "/v1/messages" if anthropic else "/v1/chat/completions"
    request = urllib.request.Request(url + path, json.dumps(body).encode(), headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()
    except urllib.error.HTTPError as exc:  # an error answer: read, then let the socket go
        with exc:
            exc.read()
    except (urllib.error.URLError, http.client.HTTPException, OSError):
        # The access log already shows what happened to it; a stream cut by Ctrl-C
        # (IncompleteRead) must not stop the demo with an error.
        pass
