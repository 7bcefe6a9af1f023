"""Finding, reading and parsing the config file: the I/O half of `parse_config`.

Resolution order (the reference's, so existing setups keep working):
`--config` > `$EGGPOOL_CONFIG` > `$XDG_CONFIG_HOME/eggpool/config.toml`
(`~/.config/...` when unset; used only if it exists) > `./config.toml`.
The result is always absolute.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path

import attrs

from eggpool.core.config import Config, ConfigError, ConfigProblem, parse_config

__all__ = ["ConfigLocation", "LoadError", "load_config", "resolve_config_path"]

_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")


@attrs.frozen
class ConfigLocation:
    path: Path
    source: str  # how it was chosen, for messages: "--config", "$EGGPOOL_CONFIG", ...


class LoadError(Exception):
    """The config could not be used. `lines` are the messages to print, most important first."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        super().__init__("\n".join(lines))


def resolve_config_path(option: str | None, env: Mapping[str, str], cwd: Path) -> ConfigLocation:
    if option:
        return ConfigLocation(_absolute(Path(option).expanduser(), cwd), "--config")
    if env.get("EGGPOOL_CONFIG"):
        path = Path(env["EGGPOOL_CONFIG"]).expanduser()
        return ConfigLocation(_absolute(path, cwd), "$EGGPOOL_CONFIG")
    xdg = _xdg_config_path(env)
    if xdg is not None and xdg.is_file():
        return ConfigLocation(
            xdg, "$XDG_CONFIG_HOME" if env.get("XDG_CONFIG_HOME") else "~/.config"
        )
    return ConfigLocation(cwd / "config.toml", "./config.toml")


def _xdg_config_path(env: Mapping[str, str]) -> Path | None:
    base = env.get("XDG_CONFIG_HOME", "")
    if not base.startswith("/"):
        home = env.get("HOME", "")
        if not home.startswith("/"):
            return None
        base = str(Path(home) / ".config")
    return Path(base) / "eggpool" / "config.toml"


def _absolute(path: Path, cwd: Path) -> Path:
    return path if path.is_absolute() else cwd / path


def load_config(location: ConfigLocation, env: Mapping[str, str]) -> Config:
    """Read and parse the file; raise `LoadError` with printable lines for any problem."""
    path = location.path
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        hint = (
            "create one with `eggpool init-config`"
            if location.source == "./config.toml"
            else f"(chosen by {location.source})"
        )
        raise LoadError([f"{path}: config file not found; {hint}"]) from None
    except IsADirectoryError:
        raise LoadError([f"{path}: is a directory, not a config file"]) from None
    except OSError as exc:
        raise LoadError([f"{path}: cannot read: {exc.strerror}"]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise LoadError([f"{path}:{line}: malformed TOML: the file is not valid UTF-8"]) from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LoadError([_toml_error(path, str(exc))]) from None
    try:
        config = parse_config(document, env, base_dir=str(path.parent))
    except ConfigError as exc:
        count = len(exc.problems)
        noun = "problem" if count == 1 else "problems"
        lines = [f"{path}: invalid configuration, {count} {noun}:"]
        lines += [f"  {problem}" for problem in exc.problems]
        raise LoadError(lines) from None
    found = dashboard_warnings(config)
    return attrs.evolve(config, warnings=(*config.warnings, *found)) if found else config


def dashboard_warnings(config: Config) -> tuple[ConfigProblem, ...]:
    """What the files say about `[dashboard]`: a themes_dir that is not a directory, a
    default theme that no theme file (nor the built-in `default`) provides."""
    dashboard = config.dashboard
    if not dashboard.enabled:
        return ()
    from eggpool.dashboard.themes import theme_names  # noqa: PLC0415 (only when checking)

    problems = []
    if dashboard.themes_dir is not None and not Path(dashboard.themes_dir).expanduser().is_dir():
        problems.append(
            ConfigProblem("dashboard.themes_dir", f"{dashboard.themes_dir} is not a directory")
        )
    if dashboard.theme not in theme_names(dashboard.themes_dir):
        problems.append(
            ConfigProblem(
                "dashboard.theme",
                f"no theme named {dashboard.theme!r} is bundled or in themes_dir; "
                "pages use the built-in 'default'",
            )
        )
    return tuple(problems)


def _toml_error(path: Path, message: str) -> str:
    """`path:LINE:COL: malformed TOML: ...` from tomllib's `... (at line L, column C)`."""
    match = _TOML_POSITION.search(message)
    if match:
        reason = message[: match.start()]
        return f"{path}:{match.group(1)}:{match.group(2)}: malformed TOML: {reason}"
    return f"{path}: malformed TOML: {message}"
