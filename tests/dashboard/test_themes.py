"""Dashboard themes: every bundled theme loads and reads well; names cannot escape a directory."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eggpool.dashboard.themes import (
    DEFAULT_THEME,
    VARIABLES,
    Theme,
    ThemeError,
    bundled_themes_dir,
    contrast_ratio,
    css,
    load_theme,
    relative_luminance,
    theme_names,
    validate_name,
)

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = sorted(p.stem for p in (ROOT / "themes").glob("*.toml"))
STATUSES = ("success", "error", "warning", "info")

# A complete Halloy theme; `{page}`, `{card}` and `{error}` are filled in per test.
TEMPLATE = """\
[general]
background = "{page}"
border = "#444444"
horizontal_rule = "#333333"
unread_indicator = "#ff8800"

[text]
primary = "#eeeeee"
secondary = "#cccccc"
tertiary = "#ff88cc"
success = "#00cc66"
error = "{error}"

[buttons.primary]
background = "#222222"
background_hover = "#2a2a2a"
background_selected = "#333366"
background_selected_hover = "#444477"

[buttons.secondary]
background = "#111111"
background_hover = "#222222"
background_selected = "#2a2a2a"
background_selected_hover = "#333333"

[buffer]
action = "#ffcc00"
background = "{card}"
background_text_input = "#1a1a1a"
background_title_bar = "#1c1c1c"
border = "#444444"
border_selected = "#ff8800"
code = "#cc88ff"
highlight = "#2a2a2a"
nickname = "#66ccff"
selection = "#333366"
timestamp = "#888888"
topic = "#999999"
url = "#3399ff"
"""


def write_theme(
    directory: Path,
    name: str,
    *,
    page: str = "#101010",
    card: str = "#000000",
    error: str = "#ff0000",
) -> Path:
    path = directory / f"{name}.toml"
    path.write_text(TEMPLATE.format(page=page, card=card, error=error), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("user-themes")
    write_theme(directory, "Mine")
    return directory


# --- the bundled set ---------------------------------------------------------------------


def test_the_loader_finds_the_bundled_themes_of_a_checkout() -> None:
    assert bundled_themes_dir() == ROOT / "themes"
    assert set(BUNDLED) <= set(theme_names())


def test_there_are_at_least_fifty_bundled_themes_besides_the_builtin_default() -> None:
    assert len(BUNDLED) >= 50
    assert "default" not in BUNDLED
    assert "default" in theme_names()


def test_the_configured_default_theme_cyber_red_is_bundled_and_dark() -> None:
    theme = load_theme("Cyber Red")
    assert theme.name == "Cyber Red"
    assert theme.dark


@pytest.mark.parametrize("name", [*BUNDLED, "default"])
def test_every_theme_defines_every_variable(name: str) -> None:
    theme = load_theme(name)
    assert set(theme.variables) == set(VARIABLES)
    assert all(re.fullmatch(r"#[0-9a-f]{6}", value) for value in theme.variables.values())


@pytest.mark.parametrize("name", [*BUNDLED, "default"])
def test_every_theme_has_eight_distinct_chart_series(name: str) -> None:
    variables = load_theme(name).variables
    assert len({variables[f"--series-{i}"] for i in range(8)}) == 8


# WCAG 2.x success criterion 1.4.3 (AA): 4.5:1 for body text, 3:1 for large or bold text
# (status tags are bold, short labels). Muted text (captions, timestamps, heatmap labels)
# is small body-size text, so it is held to 4.5:1 on both backgrounds too.
BODY_TEXT_PAIRS = [
    ("--page-text", "--page-bg"),
    ("--page-text", "--card-bg"),
    ("--table-header-text", "--table-header-bg"),
    ("--nav-text", "--topbar-bg"),
    ("--text-muted", "--card-bg"),
    ("--text-muted", "--page-bg"),
]


@pytest.mark.parametrize("name", [*BUNDLED, "default"])
@pytest.mark.parametrize(("text", "background"), BODY_TEXT_PAIRS)
def test_body_text_meets_wcag_aa(name: str, text: str, background: str) -> None:
    v = load_theme(name).variables
    assert contrast_ratio(v[text], v[background]) >= 4.5


@pytest.mark.parametrize("name", [*BUNDLED, "default"])
@pytest.mark.parametrize("status", STATUSES)
def test_status_tag_text_meets_wcag_aa_for_bold_text(name: str, status: str) -> None:
    v = load_theme(name).variables
    assert contrast_ratio(v[f"--tag-{status}-text"], v[f"--tag-{status}-bg"]) >= 3.0


@pytest.mark.parametrize("name", BUNDLED)
def test_every_bundled_file_says_which_palette_it_is_drawn_from(name: str) -> None:
    first = (ROOT / "themes" / f"{name}.toml").read_text("utf-8").splitlines()[0]
    assert first.startswith(f"# {name}: ")


# --- mapping -----------------------------------------------------------------------------


def test_a_dark_theme_puts_the_page_on_the_buffer_background(tmp_path: Path) -> None:
    write_theme(tmp_path, "Night", page="#101010", card="#000000")
    theme = load_theme("Night", tmp_path)
    assert theme.dark
    assert theme.variables["--page-bg"] == "#000000"
    assert theme.variables["--topbar-bg"] == "#101010"


def test_a_light_theme_puts_the_page_on_the_general_background(tmp_path: Path) -> None:
    write_theme(tmp_path, "Day", page="#fafafa", card="#ffffff")
    theme = load_theme("Day", tmp_path)
    assert not theme.dark
    assert theme.variables["--page-bg"] == "#fafafa"
    assert theme.variables["--card-bg"] == "#ffffff"


def test_tags_are_a_fifteen_percent_tint_of_the_page_toward_their_colour(tmp_path: Path) -> None:
    write_theme(tmp_path, "Tint", card="#000000", error="#ff0000")
    v = load_theme("Tint", tmp_path).variables
    assert v["--tag-error-text"] == "#ff0000"
    assert v["--tag-error-bg"] == "#260000"  # 15% of 255 is 38.25


def test_the_heatmap_runs_from_almost_page_to_dark_success(tmp_path: Path) -> None:
    write_theme(tmp_path, "Heat", card="#000000")
    v = load_theme("Heat", tmp_path).variables
    assert v["--heatmap-0"] == "#0e0e0e"  # 6% toward #eeeeee
    assert v["--heatmap-1"] == "#004724"  # 35% toward #00cc66
    assert v["--heatmap-2"] == "#00cc66"
    levels = [relative_luminance(v[f"--heatmap-{i}"]) for i in (2, 3, 4)]
    assert levels == sorted(levels, reverse=True)


def test_short_hex_colours_are_accepted_and_expanded(tmp_path: Path) -> None:
    write_theme(tmp_path, "Short", error="#F00")
    assert load_theme("Short", tmp_path).variables["--color-error"] == "#ff0000"


def test_a_colour_with_alpha_is_blended_onto_the_page(tmp_path: Path) -> None:
    # Dark (page on buffer.background #000000): half-opaque red is half way to black.
    write_theme(tmp_path, "Alpha", error="#ff000080")
    assert load_theme("Alpha", tmp_path).variables["--color-error"] == "#800000"
    write_theme(tmp_path, "Short", error="#f008")  # #rgba: alpha 0x88
    assert load_theme("Short", tmp_path).variables["--color-error"] == "#880000"
    write_theme(tmp_path, "Opaque", error="#FF0000ff")
    assert load_theme("Opaque", tmp_path).variables["--color-error"] == "#ff0000"


def test_the_backgrounds_are_taken_as_opaque(tmp_path: Path) -> None:
    write_theme(tmp_path, "Glass", card="#12345600")
    assert load_theme("Glass", tmp_path).variables["--page-bg"] == "#123456"


def test_keys_halloy_has_and_the_loader_does_not_read_are_ignored(tmp_path: Path) -> None:
    path = write_theme(tmp_path, "Extra")
    extra = (
        '\n[buffer.server_messages]\ndefault = "#123456"\n[general.extra]\nalpha = "#11223344"\n'
    )
    path.write_text(path.read_text("utf-8") + extra, encoding="utf-8")
    assert load_theme("Extra", tmp_path).variables["--page-bg"] == "#000000"


# --- css ---------------------------------------------------------------------------------


def test_css_is_one_root_rule_with_the_colour_scheme_first() -> None:
    out = css(load_theme("Cyber Red"))
    lines = out.splitlines()
    assert lines[0] == ":root {"
    assert lines[1] == "  color-scheme: dark;"
    assert lines[-1] == "}"
    assert "  --page-bg: #" in out
    assert "color-scheme: light;" in css(DEFAULT_THEME)


def test_css_does_not_depend_on_the_order_variables_were_given_in() -> None:
    theme = load_theme("Dracula")
    shuffled = Theme(
        name=theme.name, dark=theme.dark, variables=dict(reversed(theme.variables.items()))
    )
    assert css(shuffled) == css(theme) == css(load_theme("Dracula"))


def test_a_theme_refuses_variables_that_are_not_plain_colours() -> None:
    with pytest.raises(ThemeError, match="not a CSS variable"):
        Theme(name="x", dark=True, variables={"--page-bg": "#000000; } body { color: red"})


# --- user themes -------------------------------------------------------------------------


def test_a_user_theme_is_listed_alongside_the_bundled_ones(user_dir: Path) -> None:
    names = theme_names(user_dir)
    assert "Mine" in names
    assert "Cyber Red" in names
    assert names == sorted(names, key=str.casefold)


def test_a_user_theme_overrides_a_bundled_one_of_the_same_name(tmp_path: Path) -> None:
    write_theme(tmp_path, "Dracula", card="#123456")
    assert load_theme("Dracula", tmp_path).variables["--page-bg"] == "#123456"
    assert load_theme("Dracula").variables["--page-bg"] != "#123456"
    assert theme_names(tmp_path).count("Dracula") == 1


def test_a_missing_user_directory_leaves_the_bundled_themes(tmp_path: Path) -> None:
    assert theme_names(tmp_path / "absent") == theme_names()


def test_an_unknown_theme_is_an_error_naming_it(user_dir: Path) -> None:
    with pytest.raises(ThemeError, match=r"no theme named 'Nope'"):
        load_theme("Nope", user_dir)


def test_a_bad_colour_names_the_file_and_key_path(tmp_path: Path) -> None:
    path = write_theme(tmp_path, "Foo")
    path.write_text(
        path.read_text("utf-8").replace('background = "#000000"', 'background = "blue"')
    )
    with pytest.raises(ThemeError) as caught:
        load_theme("Foo", tmp_path)
    assert str(caught.value) == (
        f'{path}: buffer.background: expected a colour like "#1e1e2e", got "blue"'
    )


def test_a_missing_key_names_the_file_and_key_path(tmp_path: Path) -> None:
    path = write_theme(tmp_path, "Foo")
    path.write_text(path.read_text("utf-8").replace('url = "#3399ff"\n', ""), encoding="utf-8")
    with pytest.raises(ThemeError, match=rf"^{re.escape(str(path))}: buffer\.url: missing$"):
        load_theme("Foo", tmp_path)


def test_a_scalar_where_a_table_belongs_names_the_key_path(tmp_path: Path) -> None:
    path = write_theme(tmp_path, "Foo")
    without_buttons = re.sub(r"\[buttons\.\w+\][^\[]*", "", path.read_text("utf-8"))
    path.write_text('buttons = "red"\n' + without_buttons, encoding="utf-8")
    with pytest.raises(ThemeError, match=r"Foo\.toml: buttons: expected a table$"):
        load_theme("Foo", tmp_path)


def test_a_number_where_a_colour_belongs_is_reported_as_such(tmp_path: Path) -> None:
    path = write_theme(tmp_path, "Foo")
    path.write_text(path.read_text("utf-8").replace('primary = "#eeeeee"', "primary = 12"))
    with pytest.raises(ThemeError, match=r"text\.primary: expected a colour .*, got 12$"):
        load_theme("Foo", tmp_path)


@pytest.mark.parametrize("colour", ["#12345", "#1234567", "#123456789", "#ggg"])
def test_colours_of_other_lengths_are_refused(tmp_path: Path, colour: str) -> None:
    write_theme(tmp_path, "Odd", error=colour)
    with pytest.raises(ThemeError, match=r"text\.error: expected a colour"):
        load_theme("Odd", tmp_path)


@pytest.mark.parametrize("content", [b"[general\n", b"\xff\xfe not utf-8"])
def test_a_file_that_is_not_toml_names_the_file(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "Foo.toml").write_bytes(content)
    with pytest.raises(ThemeError, match=r"Foo\.toml: not a readable TOML file"):
        load_theme("Foo", tmp_path)


# --- names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("../x", "contains '/'"),
        ("a/b", "contains '/'"),
        ("a\\b", "contains '\\\\\\\\'"),
        ("nul\x00byte", "contains '\\\\x00'"),
        ("semi;colon", "contains ';'"),
        ("caf\u00e9", "contains '\u00e9'"),
        ("", "empty"),
        ("x" * 65, "longer than 64"),
    ],
)
def test_bad_names_are_refused_saying_why(user_dir: Path, name: str, problem: str) -> None:
    with pytest.raises(ThemeError, match=problem):
        load_theme(name, user_dir)


def test_names_of_up_to_sixty_four_allowed_characters_are_accepted() -> None:
    name = "Aa0 _.()-" + "x" * 55
    assert validate_name(name) == name


def test_a_symlink_pointing_outside_the_directory_is_refused(tmp_path: Path) -> None:
    outside = write_theme(tmp_path, "Secret")
    themes = tmp_path / "themes"
    themes.mkdir()
    (themes / "Evil.toml").symlink_to(outside)
    with pytest.raises(ThemeError, match="resolves outside"):
        load_theme("Evil", themes)
    assert "Evil" not in theme_names(themes)


def test_a_symlink_within_the_directory_is_followed(tmp_path: Path) -> None:
    write_theme(tmp_path, "Real", card="#abcdef")
    (tmp_path / "Alias.toml").symlink_to(tmp_path / "Real.toml")
    assert load_theme("Alias", tmp_path).variables["--page-bg"] == "#abcdef"
    assert "Alias" in theme_names(tmp_path)


def test_files_with_unusable_names_are_left_out_of_the_list(tmp_path: Path) -> None:
    write_theme(tmp_path, "bad;name")
    (tmp_path / "notes.txt").write_text("not a theme", encoding="utf-8")
    assert theme_names(tmp_path) == theme_names()


@given(st.text(max_size=80))
def test_any_name_either_loads_or_is_refused_with_a_theme_error(user_dir: Path, name: str) -> None:
    try:
        theme = load_theme(name, user_dir)
    except ThemeError:
        return
    assert theme.name == name
    assert name in theme_names(user_dir)


@given(st.from_regex(r"[A-Za-z0-9 _.()-]{1,64}", fullmatch=True))
def test_any_name_of_allowed_characters_is_valid(name: str) -> None:
    assert validate_name(name) == name


# --- contrast helpers --------------------------------------------------------------------


def test_contrast_ratio_matches_the_wcag_reference_points() -> None:
    assert relative_luminance("#ffffff") == 1.0
    assert relative_luminance("#000") == 0.0
    assert contrast_ratio("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast_ratio("#ffffff", "#000000") == pytest.approx(21.0)
    assert contrast_ratio("#777777", "#777777") == 1.0
    # #767676 is the lightest grey that passes AA on white; #777777 just fails.
    assert contrast_ratio("#767676", "#ffffff") >= 4.5 > contrast_ratio("#777777", "#ffffff")


# --- the wheel layout --------------------------------------------------------------------


def test_an_installed_package_finds_the_themes_shipped_inside_it(tmp_path: Path) -> None:
    # The wheel puts themes/ at eggpool/themes/ (pyproject force-include); mimic that
    # layout without building a wheel and check the loader looks there.
    shutil.copytree(ROOT / "eggpool", tmp_path / "eggpool", ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copytree(ROOT / "themes", tmp_path / "eggpool" / "themes")
    code = (
        "from eggpool.dashboard.themes import bundled_themes_dir, load_theme\n"
        "print(bundled_themes_dir()); print(load_theme('Cyber Red').dark)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
        check=True, timeout=60,
    ).stdout.split()  # fmt: skip
    assert out == [str(tmp_path / "eggpool" / "themes"), "True"]
