"""The `eggpool` command line: `eggpool [--config PATH] COMMAND`.

The CLI is a shell like the servers: it reads files and the environment,
hands them to the pure core and prints what comes back. Exit codes: 0
success, 1 the command failed (an invalid config, a file that exists), 2 a
usage error (click's own).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import attrs
import click

from eggpool import __version__
from eggpool.cli._load import ConfigLocation, LoadError, load_config, resolve_config_path
from eggpool.cli._summary import render_summary
from eggpool.cli._template import write_example_config

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
    """EggPool: one OpenAI- and Anthropic-compatible endpoint in front of many LLM accounts."""
    ctx.obj = _State(config_option)
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


@cli.command()
def version() -> None:
    """Print the installed version."""
    click.echo(f"eggpool {__version__}")


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
    location = state.location()
    try:
        config = load_config(location, os.environ)
    except LoadError as exc:
        for line in exc.lines:
            click.echo(line, err=True)
        sys.exit(1)
    click.echo(render_summary(location.path, config))


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


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="eggpool")
