"""The command line as a user meets it: exit codes, what is printed, which file is read."""

from __future__ import annotations

import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from eggpool import __version__, build_name
from eggpool.cli import cli

GOOD = textwrap.dedent(
    """
    [server]
    api_key_env = "EGG_SERVER_KEY"

    [providers.openai]
    base_url = "https://api.openai.com/v1"

    [[providers.openai.accounts]]
    name = "personal"
    api_key = "sk-inline-secret-0123456789"

    [[providers.openai.accounts]]
    name = "work"
    api_key_env = "OPENAI_KEY_2"
    """
)
ENV = {"EGG_SERVER_KEY": "server-key-abcdef123456", "OPENAI_KEY_2": "sk-env-secret-9876543210"}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated HOME and working directory, with no config-related variables set."""
    for name in ("EGGPOOL_CONFIG", "XDG_CONFIG_HOME", "XDG_DATA_HOME", *ENV):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    work = tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    return home


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, prog_name="eggpool")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, "utf-8")
    return path


def test_no_arguments_prints_help_listing_commands(home: Path) -> None:
    result = run()
    assert result.exit_code == 0
    for command in ("check-config", "init-config", "version", "help"):
        assert command in result.stdout


def test_version_command_and_flag_print_the_version(home: Path) -> None:
    assert run("version").stdout == f"eggpool {__version__}\nbuild: {build_name()}\n"
    assert run("--version").stdout == f"eggpool {__version__}\n"


def test_help_command_shows_one_commands_help(home: Path) -> None:
    result = run("help", "init-config")
    assert result.exit_code == 0
    assert "--force" in result.stdout


def test_help_for_an_unknown_command_is_a_usage_error(home: Path) -> None:
    result = run("help", "nope")
    assert result.exit_code == 2
    assert "no such command 'nope'" in result.stderr


def test_unknown_option_is_a_usage_error(home: Path) -> None:
    assert run("check-config", "--bogus").exit_code == 2


def test_check_config_accepts_a_valid_file_and_masks_every_key(home: Path) -> None:
    path = write(home / "c.toml", GOOD)
    result = run("--config", str(path), "check-config", env=ENV)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"{path}: valid\n")
    for secret in (*ENV.values(), "sk-inline-secret-0123456789"):
        assert secret not in result.stdout
    assert "sk-i…6789 (inline)" in result.stdout
    assert "sk-e…3210 (from $OPENAI_KEY_2)" in result.stdout
    assert "serv…3456 (from $EGG_SERVER_KEY)" in result.stdout


def test_check_config_names_the_key_path_of_each_problem(home: Path) -> None:
    path = write(home / "c.toml", GOOD)
    result = run("--config", str(path), "check-config", env={"EGG_SERVER_KEY": "short"})
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{path}: invalid configuration, 2 problems:",
        "  server.api_key_env: the key in EGG_SERVER_KEY must be 8 to 512 characters "
        "of A-Z, a-z, 0-9, '_' and '-'",
        "  providers.openai.accounts[1].api_key_env: variable OPENAI_KEY_2 is not set",
    ]


def test_check_config_prints_warnings_but_still_succeeds(home: Path) -> None:
    path = write(home / "c.toml", GOOD.replace("[server]", "[server]\nprot = 1"))
    result = run("--config", str(path), "check-config", env=ENV)
    assert result.exit_code == 0
    assert f"{path}: valid, 1 warning" in result.stdout
    assert 'server.prot: unknown key, ignored (did you mean "port"?)' in result.stdout


def test_check_config_warns_about_a_theme_no_file_provides(home: Path) -> None:
    themes = home / "my-themes"
    themes.mkdir()
    (themes / "Mine.toml").write_text((Path(__file__).parents[2] / "themes" / "Nord.toml")
                                      .read_text("utf-8"), "utf-8")  # fmt: skip
    good = write(
        home / "ok.toml", f'{GOOD}\n[dashboard]\ntheme = "Mine"\nthemes_dir = "{themes}"\n'
    )
    bad = write(home / "bad.toml", f'{GOOD}\n[dashboard]\ntheme = "Nope"\n')
    ok = run("--config", str(good), "check-config", env=ENV)
    warned = run("--config", str(bad), "check-config", env=ENV)
    assert ok.exit_code == 0
    assert "warning" not in ok.stdout
    assert warned.exit_code == 0
    assert (
        "dashboard.theme: no theme named 'Nope' is bundled or in themes_dir; "
        "pages use the built-in 'default'"
    ) in warned.stdout


def test_check_config_reports_malformed_toml_with_line_and_column(home: Path) -> None:
    path = write(home / "c.toml", "[server]\nport = \n")
    result = run("--config", str(path), "check-config")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{path}:2:8: malformed TOML: ")


def test_check_config_reports_a_file_that_is_not_utf8(home: Path) -> None:
    path = home / "c.toml"
    path.write_bytes(b"[server]\nhost = '\xff'\n")
    result = run("--config", str(path), "check-config")
    assert result.exit_code == 1
    assert f"{path}:2: malformed TOML: the file is not valid UTF-8" in result.stderr


def test_check_config_without_any_file_suggests_init_config(home: Path) -> None:
    result = run("check-config")
    assert result.exit_code == 1
    assert "config.toml: config file not found; create one with `eggpool init-config`" in (
        result.stderr
    )


def test_config_option_beats_the_environment_variable(home: Path) -> None:
    chosen = write(home / "chosen.toml", "")
    other = write(home / "other.toml", "")
    result = run("--config", str(chosen), "check-config", env={"EGGPOOL_CONFIG": str(other)})
    assert result.stdout.startswith(f"{chosen}: valid")


def test_environment_variable_beats_the_xdg_file(home: Path) -> None:
    write(home / ".config" / "eggpool" / "config.toml", "")
    chosen = write(home / "env.toml", "")
    result = run("check-config", env={"EGGPOOL_CONFIG": str(chosen)})
    assert result.stdout.startswith(f"{chosen}: valid")


def test_xdg_config_home_file_is_used_when_it_exists(home: Path) -> None:
    xdg = write(home / "xdg" / "eggpool" / "config.toml", "")
    write(Path.cwd() / "config.toml", "")
    result = run("check-config", env={"XDG_CONFIG_HOME": str(home / "xdg")})
    assert result.stdout.startswith(f"{xdg}: valid")


def test_home_config_dir_is_the_default_xdg_location(home: Path) -> None:
    default = write(home / ".config" / "eggpool" / "config.toml", "")
    result = run("check-config")
    assert result.stdout.startswith(f"{default}: valid")


def test_working_directory_config_is_the_last_resort(home: Path) -> None:
    local = write(Path.cwd() / "config.toml", "")
    result = run("check-config")
    assert result.stdout.startswith(f"{local}: valid")


def test_relative_config_option_is_made_absolute(home: Path) -> None:
    write(Path.cwd() / "rel.toml", "")
    result = run("--config", "rel.toml", "check-config")
    assert result.stdout.startswith(f"{Path.cwd() / 'rel.toml'}: valid")


def test_relative_database_path_resolves_next_to_the_config(home: Path) -> None:
    path = write(home / "etc" / "c.toml", '[database]\npath = "usage.sqlite3"\n')
    result = run("--config", str(path), "check-config")
    assert f"database   {home / 'etc' / 'usage.sqlite3'}" in result.stdout


def test_init_config_writes_a_private_example_to_the_working_directory(home: Path) -> None:
    result = run("init-config")
    target = Path.cwd() / "config.toml"
    assert result.exit_code == 0
    assert f"Wrote {target}" in result.stdout
    assert "[server]" in target.read_text("utf-8")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_init_config_never_overwrites_without_force(home: Path) -> None:
    target = write(Path.cwd() / "config.toml", "# mine\n")
    result = run("init-config")
    assert result.exit_code == 1
    assert "already exists; use --force" in result.stderr
    assert target.read_text("utf-8") == "# mine\n"


def test_init_config_force_overwrites(home: Path) -> None:
    target = write(Path.cwd() / "config.toml", "# mine\n")
    assert run("init-config", "--force").exit_code == 0
    assert "[server]" in target.read_text("utf-8")


def test_init_config_into_a_directory_writes_config_toml_inside(home: Path) -> None:
    directory = home / "conf"
    directory.mkdir()
    assert run("init-config", str(directory)).exit_code == 0
    assert (directory / "config.toml").is_file()


def test_init_config_creates_missing_parent_directories(home: Path) -> None:
    target = home / "a" / "b" / "eggpool.toml"
    assert run("init-config", str(target)).exit_code == 0
    assert target.is_file()


def test_python_dash_m_runs_the_cli(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "eggpool", "version"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=tmp_path,  # the installed eggpool, not a checkout's in the working directory
    )
    assert result.returncode == 0
    assert result.stdout == f"eggpool {__version__}\nbuild: {build_name()}\n"
