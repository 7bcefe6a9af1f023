"""The `eggpool` command line: `eggpool [--config PATH] COMMAND`.

The CLI is a shell like the servers: it reads files and the environment,
hands them to the pure core and prints what comes back. Exit codes: 0
success, 1 the command failed (an invalid config, a file that exists), 2 a
usage error (click's own).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import click

from eggpool import __version__, build_name
from eggpool.cli import _serve
from eggpool.cli._load import ConfigLocation, LoadError, load_config, resolve_config_path
from eggpool.cli._summary import render_summary
from eggpool.cli._template import write_example_config
from eggpool.core.config import Config
from eggpool.shells._logging import configure_logging
from eggpool.shells._store import StoreError
from eggpool.simulated import DEMO_PORT

if TYPE_CHECKING:
    from eggpool.simulated.scenario import Scenario

__all__ = ["cli", "main"]


@attrs.define
class _State:
    config_option: str | None

    def location(self) -> ConfigLocation:
        return resolve_config_path(self.config_option, os.environ, Path.cwd())


@click.group(
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--config",
    "config_option",
    metavar="PATH",
    help="Config file. Default: $EGGPOOL_CONFIG, then ~/.config/eggpool/config.toml "
    "if it exists, then ./config.toml.",
)
@click.version_option(
    __version__, "--version", prog_name="eggpool", message="%(prog)s %(version)s"
)
@click.pass_context
def cli(ctx: click.Context, config_option: str | None) -> None:
    """EggPool: one OpenAI- and Anthropic-compatible endpoint in front of many LLM accounts.

    Without a COMMAND, `eggpool` runs `serve` when it finds a config file and
    prints this help when it does not.
    """
    ctx.obj = state = _State(config_option)
    if ctx.invoked_subcommand is None:
        # As in the reference, `eggpool` alone serves, once there is a config to serve.
        if state.location().path.is_file():
            ctx.invoke(serve, host=None, port=None, backend="asyncio")
            return
        click.echo(ctx.get_help())


@cli.command()
def version() -> None:
    """Print the installed version and build (pure Python, or accelerated)."""
    click.echo(f"eggpool {__version__}\nbuild: {build_name()}")


@cli.command(name="help")
@click.argument("command", required=False)
@click.pass_context
def help_(ctx: click.Context, command: str | None) -> None:
    """Show help for eggpool or for one COMMAND."""
    parent = ctx.parent
    assert parent is not None
    if command is None:
        click.echo(parent.get_help())
        return
    target = cli.get_command(parent, command)
    if target is None:
        raise click.UsageError(f"no such command {command!r}", ctx=parent)
    with click.Context(target, info_name=command, parent=parent) as sub:
        click.echo(target.get_help(sub))


@cli.command(name="check-config")
@click.pass_obj
def check_config(state: _State) -> None:
    """Validate the config file and print a summary with keys masked.

    Exit status: 0 valid (warnings allowed), 1 invalid or unreadable.
    """
    config = _load_or_exit(state)
    click.echo(render_summary(state.location().path, config))


@cli.command(name="init-config")
@click.argument("target", required=False, metavar="[TARGET]")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init_config(target: str | None, force: bool) -> None:
    """Write the example config, which documents every key, to TARGET (default ./config.toml).

    TARGET may be a directory, in which case config.toml is written inside it.
    An existing file is never overwritten without --force.
    """
    path = Path(target).expanduser() if target else Path("config.toml")
    if path.is_dir():
        path = path / "config.toml"
    path = path if path.is_absolute() else Path.cwd() / path
    if path.exists() and not force:
        click.echo(f"{path}: already exists; use --force to overwrite it", err=True)
        sys.exit(1)
    try:
        write_example_config(path)
    except OSError as exc:
        click.echo(f"{path}: cannot write: {exc.strerror}", err=True)
        sys.exit(1)
    click.echo(f"Wrote {path}")
    click.echo(
        f"Next: add your providers and keys, then run `eggpool --config {path} check-config`."
    )


_backend_option = click.option(
    "--backend",
    type=click.Choice(["asyncio", "trio"]),
    default="asyncio",
    show_default=True,
    help="The event loop anyio runs on.",
)


def _load_or_exit(state: _State) -> Config:
    try:
        return load_config(state.location(), os.environ)
    except LoadError as exc:
        for line in exc.lines:
            click.echo(line, err=True)
        sys.exit(1)


@cli.command()
@click.option("--host", help="Listen address. Default: server.host (127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), help="Listen port. Default: server.port.")
@_backend_option
@click.option(
    "--shell",
    type=click.Choice(_serve.SHELLS),
    default="anyio",
    show_default=True,
    help="anyio: the small h11 server; quart: the same proxy as a Quart app on Hypercorn "
    "(asyncio only). See docs/shells.md.",
)
@click.pass_obj
def serve(state: _State, host: str | None, port: int | None, backend: str, shell: str) -> None:
    """Run the proxy until SIGTERM or SIGINT, then shut down gracefully (docs/deployment.md).

    Logs go to stderr, one logfmt line each. Exit status: 0 after a clean
    shutdown, 1 when it cannot start (invalid config, an address in use, an
    unauthenticated listener beyond loopback).
    """
    config = _load_or_exit(state)
    configure_logging(config.server.log_level)
    for warning in config.warnings:
        logging.getLogger("eggpool").warning("config: %s", warning)
    refused = _serve.serve(
        config,
        host=host or config.server.host,
        port=config.server.port if port is None else port,
        backend=backend,
        shell=shell,
    )
    if refused is not None:
        click.echo(f"eggpool serve: {refused}", err=True)
        sys.exit(1)


@cli.command()
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    help=f"Listen port. Default: {DEMO_PORT}, or a free one if that is taken.",
)
@click.option("--traffic", is_flag=True, help="Send a request about every second.")
@_backend_option
def demo(port: int | None, traffic: bool, backend: str) -> None:
    """Run the proxy on loopback in front of two simulated providers: no keys, no network.

    Prints the URL, a fresh API key and ready-to-paste curl and SDK examples;
    Ctrl-C stops it and removes its temporary config and database.
    """
    configure_logging("INFO")
    # Imported here: the simulated providers are no part of a serving process's memory.
    from eggpool.cli import _demo  # noqa: PLC0415

    _demo.run_demo(port=port, traffic=traffic, backend=backend, say=click.echo)


@cli.command()
@click.pass_obj
def migrate(state: _State) -> None:
    """Create the database or bring it to the current schema (serve also does this)."""
    config = _load_or_exit(state)
    configure_logging(config.server.log_level)
    try:
        before, after = _serve.migrate(config)
    except (StoreError, OSError, sqlite3.Error) as exc:
        click.echo(f"{config.database.path}: {exc}", err=True)
        sys.exit(1)
    if before == after:
        click.echo(f"{config.database.path}: up to date (schema version {after})")
    else:
        click.echo(f"{config.database.path}: migrated from schema version {before} to {after}")


@cli.group()
def models() -> None:
    """The model catalog."""


@models.command()
@click.pass_obj
def refresh(state: _State) -> None:
    """List every enabled account's models now, store the catalog and print it per provider.

    Exit status: 1 when every account that lists models failed to.
    """
    config = _load_or_exit(state)
    configure_logging(config.server.log_level)
    try:
        report, worked = _serve.refresh_and_render(config)
    except StoreError as exc:
        click.echo(f"{config.database.path}: {exc}", err=True)
        sys.exit(1)
    click.echo(report)
    if not worked:
        sys.exit(1)


@cli.group()
def simulate() -> None:
    """What your pool would do with a traffic, offline: no request leaves the machine.

    See docs/simulate.md for the scenario file and docs/examples/ for complete ones.
    """


@simulate.command(name="run")
@click.argument("scenario", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("--seed", type=int, help="Random seed. Default: the scenario's `seed` (else 0).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--report",
    "html_report",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write an HTML report with charts to this file.",
)
@click.option(
    "--compare",
    nargs=2,
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="A.toml B.toml",
    help="Run two scenarios (same seed) and print their outcomes side by side.",
)
def simulate_run(
    scenario: Path | None,
    *,
    seed: int | None,
    as_json: bool,
    html_report: Path | None,
    compare: tuple[Path, Path] | None,
) -> None:
    """Drive the real Pool through SCENARIO on a virtual clock and print what happened.

    The same scenario and seed always print the same report. Exit status 1 when
    a scenario is invalid, each problem named by its key path.
    """
    # Imported here: the simulator is no part of a serving process.
    from eggpool.simulated.simulate import compare_table, run_scenario  # noqa: PLC0415

    if (scenario is None) == (compare is None):
        raise click.UsageError("give one SCENARIO, or --compare A.toml B.toml")
    if html_report is not None and compare is not None:
        raise click.UsageError("--report writes one run's report: not with --compare")
    paths = compare if compare is not None else (scenario,)
    loaded = [_load_scenario_or_exit(path) for path in paths if path is not None]
    bar = _progress_bar() if sys.stderr.isatty() else None
    reports = [run_scenario(one, seed=seed, progress=bar) for one in loaded]
    if bar is not None:
        click.echo("\r" + " " * 60 + "\r", nl=False, err=True)
    if html_report is not None:
        from eggpool.simulated.html import render_report  # noqa: PLC0415

        page = render_report(reports[0], loaded[0].config, f"EggPool simulation: {scenario}")
        html_report.write_text(page, encoding="utf-8")
    if compare is None:
        click.echo(reports[0].to_json() if as_json else reports[0].table(), nl=False)
    elif as_json:
        both = {str(path): report.as_json() for path, report in zip(compare, reports, strict=True)}
        click.echo(json.dumps(both, indent=2) + "\n", nl=False)
    else:
        names = (compare[0].name, compare[1].name)
        click.echo(compare_table(reports[0], reports[1], names), nl=False)


@simulate.command(name="replay")
@click.option(
    "--db",
    "database",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The usage database to replay (an EggPool's [database] path).",
)
@click.option("--since", help="Only the requests of the last DURATION (e.g. 24h, 90m).")
@click.option(
    "--config",
    "other",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Replay under this config instead of the current one (e.g. one more account).",
)
@click.option(
    "--scenario",
    type=click.Path(dir_okay=False, path_type=Path),
    help="How accounts that never saw a request answer it: this scenario's [behaviour].",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def simulate_replay(
    state: _State,
    *,
    database: Path,
    since: str | None,
    other: Path | None,
    scenario: Path | None,
    seed: int,
    as_json: bool,
) -> None:
    """Route the requests DATABASE recorded through the pool again, offline.

    Accounts that served a request answer it as recorded; others as the
    scenario's [behaviour] says (its defaults without --scenario). The report
    says how many requests ended on the account they were recorded on.
    """
    from eggpool.core._settings import Problems, Seconds, Table  # noqa: PLC0415
    from eggpool.simulated.replay import ReplayError, read_recording, replay  # noqa: PLC0415

    problems = Problems()  # --since reads like any duration of the config
    given = {} if since is None else {"since": since}
    window = Table(given, "", problems).read("since", Seconds | None, None)
    if problems.errors:
        raise click.BadParameter(problems.errors[0].message, param_hint="--since")
    if other is not None:
        state = _State(config_option=str(other))
    config = _load_or_exit(state)
    behaviour = _load_scenario_or_exit(scenario).behaviour if scenario is not None else None
    try:
        recorded = read_recording(database, since=window)
    except ReplayError as exc:
        click.echo(f"eggpool simulate replay: {exc}", err=True)
        sys.exit(1)
    report = replay(config, recorded, behaviour=behaviour, seed=seed)
    click.echo(report.to_json() if as_json else report.table(), nl=False)


def _load_scenario_or_exit(path: Path) -> Scenario:
    from eggpool.simulated.scenario import ScenarioError, load_scenario  # noqa: PLC0415

    try:
        loaded = load_scenario(path)
    except ScenarioError as exc:
        count = len(exc.problems)
        click.echo(
            f"{path}: invalid scenario, {count} problem{'s' if count != 1 else ''}:", err=True
        )
        for problem in exc.problems:
            click.echo(f"  {problem}", err=True)
        sys.exit(1)
    for warning in loaded.warnings:
        click.echo(f"{path}: warning: {warning}", err=True)
    return loaded


def _progress_bar() -> Callable[[float], None]:
    def show(fraction: float) -> None:
        filled = int(fraction * 40)
        click.echo(f"\r[{'#' * filled}{'.' * (40 - filled)}] {fraction:4.0%}", nl=False, err=True)

    return show


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="eggpool")
