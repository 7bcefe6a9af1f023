"""`eggpool serve` as a subprocess, for end-to-end tests: start it, wait until ready, talk."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

SERVER_KEY = "server-key-0123456789"


@contextmanager
def serving(
    config: Path, *args: str, env: Mapping[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], str, list[str]]]:
    """`eggpool serve` as a process; yields it, its URL and the stderr lines read so far."""
    process = subprocess.Popen(
        [sys.executable, "-m", "eggpool", "--config", str(config), "serve", "--port", "0", *args],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
    )
    lines: list[str] = []
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                break
            lines.append(line)
            if "listening" in line:
                match = re.search(r"url=(\S+)", line)
                assert match, line
                wait_ready(match.group(1))
                yield process, match.group(1), lines
                return
        raise AssertionError(f"serve did not become ready: {''.join(lines)}")
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        if process.stderr is not None:
            process.stderr.close()


def wait_ready(url: str) -> None:
    """Poll `/v1/readyz` as a deployment's health check would (the first listing runs)."""
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(f"{url}/v1/readyz", timeout=5) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            with exc:  # a 503 holds its connection until closed
                reason = exc.read()
            if time.monotonic() > deadline:
                raise AssertionError(f"never ready: {reason!r}") from None
        time.sleep(0.05)


def post(url: str, body: object, key: str = SERVER_KEY) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def wait_for_models(url: str, models: set[str], key: str = SERVER_KEY) -> None:
    """Poll `/v1/models` until it lists every one of `models` (bare, or as the model part of
    a `model/provider` id). /v1/readyz turns 200 once any account is listed; an account
    behind a slower path (a proxy) may list a moment later."""
    deadline = time.monotonic() + 20
    headers = {"authorization": f"Bearer {key}"}
    request = urllib.request.Request(f"{url}/v1/models", headers=headers)
    while True:
        with urllib.request.urlopen(request, timeout=5) as response:
            ids = [entry["id"] for entry in json.loads(response.read())["data"]]
        listed = {*ids, *(model_id.partition("/")[0] for model_id in ids)}
        if models <= listed:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"models never listed: {sorted(models - listed)}")
        time.sleep(0.05)
