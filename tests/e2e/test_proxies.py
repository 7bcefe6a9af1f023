"""Per-account outbound proxies end to end: `eggpool serve` as a process, three providers on
loopback, one reached through a SOCKS5 proxy, one through an HTTP CONNECT proxy (both with
credentials), one directly. Each proxy must carry its account's traffic and nobody else's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import pytest

from tests.helpers.http_origin import Origin, origin
from tests.helpers.subprocess_server import SERVER_KEY, post, serving, wait_for_models
from tests.shells.upstream_servers import ProxyLog, connect_proxy, socks5_proxy

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def config_text(origins: list[Origin]) -> str:
    text = f"""
[server]
api_key = "{SERVER_KEY}"

[database]
path = "usage.sqlite3"

[proxies.tunnel]
url_env = "EGG_SOCKS_URL"
"""
    for name, url, proxy in (
        ("viasocks", origins[0].url, 'proxy = "tunnel"'),
        ("viaconnect", origins[1].url, 'proxy_url_env = "EGG_CONNECT_URL"'),
        ("direct", origins[2].url, ""),
    ):
        text += f"""
[providers.{name}]
base_url = "{url}"

[[providers.{name}.accounts]]
name = "{name}-account"
api_key = "sk-{name}-0123456789abcdef"
{proxy}
"""
    return text


@asynccontextmanager
async def proxies() -> AsyncIterator[tuple[ProxyLog, ProxyLog]]:
    async with (
        socks5_proxy(credentials=("sockuser", "sock-pass")) as socks,
        connect_proxy(credentials=("connuser", "conn-pass")) as connect,
    ):
        yield socks, connect


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
async def test_each_account_goes_through_its_own_proxy_and_only_its_own(
    tmp_path: Path, backend: str
) -> None:
    with ExitStack() as stack:
        origins = [stack.enter_context(origin(model)) for model in ("m-socks", "m-conn", "m-dir")]
        async with proxies() as (socks, connect):
            config = tmp_path / "config.toml"
            config.write_text(config_text(origins))
            env = {
                "EGG_SOCKS_URL": f"socks5://sockuser:sock-pass@127.0.0.1:{socks.port}",
                "EGG_CONNECT_URL": f"http://connuser:conn-pass@127.0.0.1:{connect.port}",
            }
            server = serving(config, "--backend", backend, env=env)
            _, url, _ = await anyio.to_thread.run_sync(server.__enter__)
            try:
                await anyio.to_thread.run_sync(
                    wait_for_models, url, {"m-socks", "m-conn", "m-dir"}
                )
                for model in ("m-socks", "m-conn", "m-dir"):
                    chat = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
                    status, body = await anyio.to_thread.run_sync(
                        post, f"{url}/v1/chat/completions", chat
                    )
                    assert (status, body.get("model")) == (200, model), body
            finally:
                await anyio.to_thread.run_sync(server.__exit__, None, None, None)
    socks_origin, connect_origin, direct_origin = (urlsplit(o.url).port for o in origins)
    # The SOCKS proxy carried the first provider's listing and request, nothing else.
    assert {port for _, _, port in socks.tunnels} == {socks_origin}
    assert set(socks.credentials) == {("sockuser", "sock-pass")}
    assert {port for _, _, port in connect.tunnels} == {connect_origin}
    assert set(connect.credentials) == {("connuser", "conn-pass")}
    # Every provider saw its chat request, with its own account's key.
    for provider, name in zip(origins, ("viasocks", "viaconnect", "direct"), strict=True):
        posts = [h for method, _, h in provider.seen if method == "POST"]
        assert [h.get("Authorization") for h in posts] == [f"Bearer sk-{name}-0123456789abcdef"]
    assert direct_origin not in {port for _, _, port in socks.tunnels + connect.tunnels}
