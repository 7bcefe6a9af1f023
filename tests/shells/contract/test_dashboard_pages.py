"""The dashboard pages served by every shell: the same pages, the same guards.

Each test runs against the anyio shell (asyncio and trio) and the Quart
shell with the real store: every page renders with its security headers,
per-request pages need the key (a browser is asked for it with HTTP
Basic), data from the database is escaped, and bad input is refused by
name.
"""

from __future__ import annotations

import base64
import re
import sqlite3
import time
from pathlib import Path

import attrs
import pytest

from eggpool.core.effects import RequestFinalized, RequestStarted
from eggpool.shells._store_schema import migrate, prepare_batch
from tests.helpers.loopback import client
from tests.helpers.shells import KEY, Provider, serving, two_provider_config

pytestmark = pytest.mark.anyio

HOSTILE = '<script>alert("x")</script>'
OPEN_PAGES = (
    "/",
    "/accounts",
    "/models",
    "/latency",
    "/timeseries",
    "/reliability",
    "/routing",
    "/events",
)
KEYED_PAGES = ("/traces", "/runtime")


async def get(
    port: int, target: str, *, key: str = KEY, headers: tuple[tuple[str, str], ...] = ()
) -> tuple[int, dict[str, str], str]:
    async with client(port) as c:
        if headers:
            await c.raw_get(target, headers)
        else:
            await c.request(target, None, key=key)
        status, got, chunks = await c.response()
    return status, got, b"".join(chunks).decode("utf-8")


def seed(db: Path, model: str = HOSTILE) -> None:
    """A finalized request whose model name is markup, as a hostile model list could give."""
    conn = sqlite3.connect(db, isolation_level=None)
    migrate(conn)
    now = time.time()
    batch = prepare_batch(
        [
            RequestStarted(
                request_id="r-1",
                at=now - 60,
                protocol="openai",
                model=model,
                streamed=False,
                client="10.1.2.3",
            ),
            RequestFinalized(
                request_id="r-1",
                at=now - 59,
                outcome="completed",
                status=200,
                model=model,
                account="a1",
                provider="one",
                attempts=1,
                usage=None,
                cost_microdollars=5,
                exactness="exact",
                latency=0.5,
                ttft=None,
                streamed=False,
            ),
        ],
        None,
        None,
    )
    conn.execute("BEGIN")
    batch.apply(conn)
    conn.execute("COMMIT")
    conn.close()


async def test_every_page_renders_with_its_security_headers(shell: str, db: Path) -> None:
    async with serving(shell, two_provider_config(db), Provider({})) as port:
        answers = [await get(port, page) for page in (*OPEN_PAGES, *KEYED_PAGES)]
    for status, headers, body in answers:
        assert status == 200
        assert headers["content-type"] == "text/html; charset=utf-8"
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "default-src 'none'" in csp
        assert "frame-ancestors 'none'" in csp
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        assert body.startswith("<!doctype html>")
        assert "<script>" not in body  # only <script src="/static/dashboard.js" defer>
        assert 'href="/static/theme.css?theme=Cyber+Red"' in body


async def test_open_pages_need_no_key_and_per_request_pages_do(shell: str, db: Path) -> None:
    basic = base64.b64encode(f"anyone:{KEY}".encode()).decode()
    async with serving(shell, two_provider_config(db), Provider({})) as port:
        open_statuses = [(await get(port, page, key=""))[0] for page in OPEN_PAGES]
        refused = [await get(port, page, key="") for page in KEYED_PAGES]
        with_basic = [
            (await get(port, page, headers=(("authorization", f"Basic {basic}"),)))[0]
            for page in KEYED_PAGES
        ]
    assert open_statuses == [200] * len(OPEN_PAGES)
    for status, headers, _ in refused:
        assert status == 401
        assert headers["www-authenticate"].startswith('Basic realm="EggPool dashboard"')
    assert with_basic == [200, 200]


async def test_names_from_the_database_are_escaped(shell: str, db: Path) -> None:
    seed(db)
    async with serving(shell, two_provider_config(db), Provider({})) as port:
        pages = [(await get(port, page))[2] for page in ("/models", "/latency", "/traces")]
        _, _, trace = await get(port, "/traces/r-1")
    for body in (*pages, trace):
        assert HOSTILE not in body
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in body
    assert "10.1.2.3" not in trace  # the client's address is never shown


async def test_bad_input_is_refused_by_name(shell: str, db: Path) -> None:
    async with serving(shell, two_provider_config(db), Provider({})) as port:
        theme = await get(port, "/?theme=No+Such+Theme")
        traversal = await get(port, "/static/theme.css?theme=../../etc/passwd")
        period = await get(port, "/accounts?period=fortnight")
        unknown = await get(port, "/accounts?colour=red")
        missing = await get(port, "/traces/no-such-request")
        async with client(port) as c:
            await c.request("/", {"x": 1})
            posted, allow, _ = await c.response()
    assert (theme[0], traversal[0], period[0], unknown[0], missing[0]) == (400, 400, 400, 400, 404)
    assert "no theme named" in theme[2]
    assert "period" in period[2]
    assert "colour" in unknown[2]
    assert posted == 405
    assert allow["allow"] == "GET"


async def test_the_stylesheets_and_script_are_served(shell: str, db: Path) -> None:
    async with serving(shell, two_provider_config(db), Provider({})) as port:
        css = await get(port, "/static/dashboard.css", key="")
        script = await get(port, "/static/dashboard.js", key="")
        theme = await get(port, "/static/theme.css?theme=Nord", key="")
        nothing = await get(port, "/static/nothing.js", key="")
    assert css[1]["content-type"].startswith("text/css")
    assert script[1]["content-type"].startswith("text/javascript")
    assert "DOMParser" in script[2]
    assert re.search(r"--page-bg:\s*#[0-9a-f]{6}", theme[2])
    assert nothing[0] == 404


async def test_a_chosen_theme_is_kept_in_every_link(shell: str, db: Path) -> None:
    async with serving(shell, two_provider_config(db), Provider({})) as port:
        _, _, body = await get(port, "/accounts?period=7d&theme=Nord")
    assert 'href="/static/theme.css?theme=Nord"' in body
    assert 'href="/models?period=7d&amp;theme=Nord"' in body
    assert "<option selected>Nord</option>" in body


async def test_a_missing_default_theme_falls_back_to_the_built_in_one(
    shell: str, db: Path
) -> None:
    config = two_provider_config(db)
    config = attrs.evolve(config, dashboard=attrs.evolve(config.dashboard, theme="Gone"))
    async with serving(shell, config, Provider({})) as port:
        status, _, body = await get(port, "/")
    assert status == 200
    assert 'href="/static/theme.css?theme=default"' in body
