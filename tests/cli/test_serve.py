"""`eggpool serve`, `migrate` and `models refresh` as a user runs them, on loopback."""

from __future__ import annotations

import re
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from eggpool.cli import cli
from tests.helpers.http_origin import origin
from tests.helpers.subprocess_server import SERVER_KEY, post, serving

ACCOUNT_KEY = "sk-test-secret-0123456789"


def write_config(tmp_path: Path, base_url: str, *, server: str = "", models: str = "") -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f"""
[server]
api_key = "{SERVER_KEY}"
{server}

[database]
path = "usage.sqlite3"

[models]
{models}

[providers.fake]
base_url = "{base_url}"

[[providers.fake.accounts]]
name = "one"
api_key = "{ACCOUNT_KEY}"

[[providers.fake.accounts]]
name = "two"
api_key = "{ACCOUNT_KEY}-2"
"""
    )
    return path


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


# --- migrate --------------------------------------------------------------------------------


def test_migrate_creates_the_database_then_reports_it_up_to_date(tmp_path: Path) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9/v1")
    code, out, _ = run("--config", str(config), "migrate")
    assert code == 0
    assert re.search(r"usage\.sqlite3: migrated from schema version 0 to \d+", out)
    with sqlite3.connect(tmp_path / "usage.sqlite3") as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert {"requests", "attempts", "schema_migrations"} <= tables
    code, out, _ = run("--config", str(config), "migrate")
    assert (code, "up to date" in out) == (0, True)


def test_migrate_refuses_a_database_from_a_newer_eggpool(tmp_path: Path) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9/v1")
    assert run("--config", str(config), "migrate")[0] == 0
    with sqlite3.connect(tmp_path / "usage.sqlite3") as db:
        db.execute("INSERT INTO schema_migrations VALUES (999, 'future', 0)")
    code, _, err = run("--config", str(config), "migrate")
    assert code == 1
    assert "schema version 999, newer than this EggPool" in err


# --- models refresh ---------------------------------------------------------------------------


def test_models_refresh_prints_each_account_and_the_models_it_found(tmp_path: Path) -> None:
    with origin("gpt-a", "gpt-b") as provider:
        config = write_config(tmp_path, provider.url, models="startup_refresh = false")
        code, out, _ = run("--config", str(config), "models", "refresh")
    assert code == 0
    assert "  one: 2 models" in out
    assert "  two: 2 models" in out
    assert re.search(r"models \(2\):\n\s+gpt-a  \[openai\]\n\s+gpt-b  \[openai\]", out)
    assert {path for _, path, _ in provider.seen} == {"/v1/models"}
    with sqlite3.connect(tmp_path / "usage.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM catalog_snapshots").fetchone()[0] >= 1


def test_models_refresh_fails_when_no_account_could_list(tmp_path: Path) -> None:
    with origin(status=401) as provider:
        config = write_config(tmp_path, provider.url)
        code, out, _ = run("--config", str(config), "models", "refresh")
    assert code == 1
    assert "listing failed: the models endpoint answered 401" in out
    assert ACCOUNT_KEY not in out


# --- serve ------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_serve_proxies_logs_and_exits_cleanly_on_sigterm(tmp_path: Path, backend: str) -> None:
    with origin() as provider:
        config = write_config(tmp_path, provider.url)
        with serving(config, "--backend", backend) as (process, url, lines):
            assert f"backend={backend}" in lines[-1]
            assert "accounts=2" in lines[-1]
            chat = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
            status, body = post(f"{url}/v1/chat/completions", chat)
            assert (status, body.get("model")) == (200, "gpt-test"), body
            status, body = post(f"{url}/v1/chat/completions", chat, key="wrong-key-0000000")
            assert status == 401
            assert "error" in body
            process.send_signal(signal.SIGTERM)
            _, rest = process.communicate(timeout=20)
            assert process.returncode == 0
    log = "".join(lines) + rest
    assert re.search(r"msg=request .*outcome=completed status=200 account=(one|two) ", log)
    assert SERVER_KEY not in log
    assert ACCOUNT_KEY not in log
    with sqlite3.connect(tmp_path / "usage.sqlite3") as db:
        statuses = [row[0] for row in db.execute("SELECT status FROM requests")]
    assert statuses
    assert set(statuses) == {"finalized"}


def test_a_second_instance_on_the_same_port_is_refused(tmp_path: Path) -> None:
    with origin() as provider:
        config = write_config(tmp_path, provider.url)
        with serving(config) as (_, url, _):
            port = url.rsplit(":", 1)[1]
            second = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "eggpool",
                    "--config",
                    str(config),
                    "serve",
                    "--port",
                    port,
                ],
                check=False,
                capture_output=True,
                text=True,
                timeout=30,
            )
    assert second.returncode == 1
    assert f"127.0.0.1:{port} is already in use" in second.stderr


def test_serve_refuses_an_open_listener_without_a_key(tmp_path: Path, provider_url: str) -> None:
    config = write_config(tmp_path, provider_url)
    config.write_text(config.read_text().replace(f'api_key = "{SERVER_KEY}"', "", 1))
    code, _, err = run("--config", str(config), "serve", "--host", "0.0.0.0", "--port", "0")
    assert code == 1
    assert "refusing to listen on 0.0.0.0 without a server key" in err


@pytest.fixture
def provider_url() -> Iterator[str]:
    with origin() as provider:
        yield provider.url


def test_eggpool_alone_serves_when_a_config_is_found(tmp_path: Path, provider_url: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = write_config(tmp_path, provider_url, server=f"port = {port}")
    process = subprocess.Popen(
        [sys.executable, "-m", "eggpool", "--config", str(config)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        first = process.stderr.readline()
        assert f"url=http://127.0.0.1:{port}" in first
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=20)
        assert process.returncode == 0, rest
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)


def test_the_anyio_shell_never_loads_quart() -> None:
    # `eggpool serve` imports the Quart shell only for --shell quart: its memory (Quart,
    # Hypercorn, Flask, Werkzeug) is no part of an anyio-shell process.
    probe = (
        "import sys, eggpool.cli, eggpool.cli._serve, eggpool.shells.asyncio_shell.app;"
        "print(sorted(m for m in ('quart', 'hypercorn', 'flask') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_the_quart_shell_refuses_the_trio_backend(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[server]\napi_key = "server-key-0123456789"\n')
    result = subprocess.run(
        [sys.executable, "-m", "eggpool", "--config", str(config), "serve", "--shell", "quart",
         "--backend", "trio", "--port", "0"],
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "the Quart shell runs on asyncio only" in result.stderr
