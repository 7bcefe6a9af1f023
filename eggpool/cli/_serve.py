"""What `eggpool serve`, `eggpool migrate` and `eggpool models refresh` do, given a Config.

The click commands (in `eggpool.cli`) load the config and turn the return
values here into exit codes; everything that runs an event loop or opens the
database is here, so the commands stay one screen each.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

import anyio
from anyio.abc import TaskStatus

from eggpool import __version__
from eggpool.core.catalog import Catalog
from eggpool.core.config import Config, ExposeMode
from eggpool.shells._runtime import (
    ServeRefused,
    StoreFactory,
    UpstreamFactory,
    check_listen,
    default_store,
    default_upstream,
    refresh_models,
)
from eggpool.shells._store import Store, StoreError
from eggpool.shells._store_schema import schema_version
from eggpool.shells.asyncio_shell.app import Server

__all__ = ["migrate", "refresh_and_render", "render_catalog", "serve"]

_logger = logging.getLogger("eggpool")


SHELLS = ("anyio", "quart")


def serve(
    config: Config,
    *,
    host: str,
    port: int,
    backend: str,
    shell: str = "anyio",
    store_factory: StoreFactory = default_store,
    upstream_factory: UpstreamFactory = default_upstream,
) -> str | None:
    """Serve until SIGTERM/SIGINT; None after a clean shutdown, else why it could not start."""
    try:
        check_listen(config, host)
    except ServeRefused as exc:
        return str(exc)
    if shell == "quart" and backend != "asyncio":
        return "the Quart shell runs on asyncio only: drop --backend trio, or use --shell anyio"

    async def run(*, task_status: TaskStatus[int]) -> None:
        if shell == "quart":
            # Imported here: an anyio-shell process never loads Quart, Hypercorn or Flask.
            from eggpool.shells import quart_app  # noqa: PLC0415

            await quart_app.serve(
                config,
                host,
                port,
                store_factory=store_factory,
                upstream_factory=upstream_factory,
                task_status=task_status,
            )
        else:
            server = Server(config, host, port, store_factory, upstream_factory)
            await server.run(task_status=task_status)

    async def main() -> None:
        async with anyio.create_task_group() as group:
            bound = await group.start(run)
            shown = f"[{host}]" if ":" in host else host
            accounts = config.accounts
            _logger.info(
                "eggpool %s listening",
                __version__,
                extra={
                    "fields": (
                        ("url", f"http://{shown}:{bound}"),
                        ("shell", shell),
                        ("backend", backend),
                        ("providers", len(config.providers)),
                        ("accounts", sum(1 for a in accounts if a.enabled)),
                        ("db", config.database.path),
                    )
                },
            )

    try:
        anyio.run(main, backend=backend)
    except (ServeRefused, StoreError) as exc:
        return str(exc)
    except BaseExceptionGroup as group:
        refused = group.subgroup((ServeRefused, StoreError))
        if refused is None:
            raise
        return str(_first(refused))
    return None


def migrate(config: Config) -> tuple[int, int]:
    """Bring the database to the current schema: (version before, version after)."""
    before = _schema_version(config.database.path)
    store = Store(config, report=_report)
    try:
        after = store.open()
    finally:
        store.close()
    return before, after


def refresh_and_render(
    config: Config,
    *,
    backend: str = "asyncio",
    store_factory: StoreFactory = default_store,
    upstream_factory: UpstreamFactory = default_upstream,
) -> tuple[str, bool]:
    """List every account's models now and store them: (report, whether any listing worked)."""
    pool = anyio.run(
        lambda: refresh_models(config, store_factory, upstream_factory), backend=backend
    )
    return render_catalog(config, pool.services.catalog, now=time.time())


def render_catalog(config: Config, catalog: Catalog, *, now: float) -> tuple[str, bool]:
    status = {a.account_name: a for a in catalog.status(now=now).accounts}
    models = catalog.exposed_models(mode=ExposeMode.UNION, collapse=False)
    lines: list[str] = []
    listed = wanted = 0
    for provider in config.providers.values():
        if lines:
            lines.append("")
        lines.append(f"{provider.id}  {provider.base_url}")
        for account in provider.accounts:
            state = status.get(account.name)
            if not account.enabled:
                lines.append(f"  {account.name}: disabled")
            elif state is None or not state.lists_models:
                lines.append(f"  {account.name}: static models only")
            elif state.last_error is not None and state.consecutive_failures:
                wanted += 1
                lines.append(f"  {account.name}: listing failed: {state.last_error}")
            else:
                wanted += 1
                listed += 1
                skipped = f" ({state.last_skipped} malformed rows skipped)" * bool(
                    state.last_skipped
                )
                lines.append(f"  {account.name}: {state.model_count} models{skipped}")
        served = [m for m in models if provider.id in m.providers]
        lines.append(f"  models ({len(served)}):")
        for model in served:
            protocols = ", ".join(p.value for p in model.protocols)
            lines.append(f"    {model.base_model_id}  [{protocols}]")
    return "\n".join(lines), listed > 0 or wanted == 0


def _schema_version(path: str) -> int:
    if path == ":memory:" or not Path(path).exists():
        return 0
    conn = sqlite3.connect(f"{Path(path).as_uri()}?mode=ro", uri=True)
    try:
        return schema_version(conn)
    finally:
        conn.close()


def _report(what: str, error: str) -> None:
    _logger.error("a %s record could not be stored: %s", what, error)


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first: BaseException = group
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first
