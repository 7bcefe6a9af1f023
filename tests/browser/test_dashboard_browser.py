"""The dashboard in a real browser (headless Chromium, driven by Playwright).

Every page renders under three themes without a console error (a CSP
violation is one), with a screenshot of each kept in
`test-artifacts/dashboard/`; and a request sent while the overview is open
shows in its counters through the live socket within 2 seconds.

Chromium is Debian's (`/usr/bin/chromium`, installed by
`tools/ensure-chromium`, which `make test` runs). Without it these tests
are skipped, except under CI, where that is a failure.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from tests.helpers.loopback import client
from tests.helpers.shells import KEY, Provider, serving, two_provider_config
from tests.helpers.stats_db import fill

CHROMIUM = Path(os.environ.get("EGGPOOL_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
THEMES = ("Cyber Red", "Solarized Light", "default")
PAGES = (
    "/", "/accounts", "/models", "/latency", "/timeseries", "/reliability", "/routing", "/events",
    "/traces", "/runtime",
)  # fmt: skip
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
PLAIN = json.dumps(
    {
        "choices": [{"message": {"content": "hi"}}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 5},
    }
).encode()

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]

if not CHROMIUM.exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} is missing: CI must install it (tools/ensure-chromium)")
    pytest.skip(f"no Chromium at {CHROMIUM} (run tools/ensure-chromium)", allow_module_level=True)

playwright_api = pytest.importorskip("playwright.async_api")


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    async with playwright_api.async_playwright() as driver:
        browser = await driver.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield browser
        finally:
            await browser.close()


async def until(page: object, selector: str, text: str, *, within: float) -> None:
    """Wait until the element's text is `text` (fails after `within` seconds)."""
    with anyio.fail_after(within):
        while await page.text_content(selector) != text:  # type: ignore[attr-defined]
            await anyio.sleep(0.02)


async def test_every_page_renders_cleanly_in_three_themes(browser: object, tmp_path: Path) -> None:
    db = tmp_path / "usage.sqlite3"
    fill(db, 3000, end=time.time(), days=20)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    async with serving("anyio-asyncio", two_provider_config(db), Provider({})) as port:
        context = await browser.new_context(  # type: ignore[attr-defined]
            http_credentials={"username": "operator", "password": KEY},
            viewport={"width": 1280, "height": 900},
        )
        page = await context.new_page()
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                if m.type in ("error", "warning") else None)  # fmt: skip
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        for theme in THEMES:
            for path in PAGES:
                url = f"http://127.0.0.1:{port}{path}?theme={theme.replace(' ', '+')}"
                response = await page.goto(url)
                assert response is not None
                assert response.status == 200, (url, response.status)
                assert await page.title() != ""
                name = f"{theme.replace(' ', '-').lower()}{path.replace('/', '-') or '-'}"
                await page.screenshot(path=str(ARTIFACTS / f"{name.rstrip('-')}.png"),
                                      full_page=True)  # fmt: skip
        await context.close()
    assert problems == []


async def test_a_request_shows_on_the_open_overview_within_two_seconds(
    browser: object, tmp_path: Path
) -> None:
    db = tmp_path / "usage.sqlite3"
    provider = Provider({"one.test": [("head", 200), ("chunk", PLAIN), ("end",)]})
    async with serving("anyio-asyncio", two_provider_config(db), provider) as port:
        page = await browser.new_page()  # type: ignore[attr-defined]
        await page.goto(f"http://127.0.0.1:{port}/")
        # Polled from here (the page's CSP rightly forbids evaluating strings in it).
        await until(page, "[data-live-state]", "live", within=5)
        before = await page.text_content('[data-live="requests"]')
        async with client(port) as c:
            await c.request("/v1/chat/completions", CHAT)
            status, _, _ = await c.response()
        assert status == 200
        started = anyio.current_time()
        await until(page, '[data-live="requests"]', "1", within=2)
        took = anyio.current_time() - started
        tokens = await page.text_content('[data-live="tokens"]')
        await page.close()
    assert before == "0"
    assert took < 2
    assert tokens == "12"
