"""Dashboard themes: Halloy theme files in, a `:root { --name: value }` block out.

Theory of operation. A theme is a TOML file in the format of the Halloy IRC
client (https://halloy.chat, "Themes"): tables `[general]`, `[text]`,
`[buttons.primary]`, `[buttons.secondary]` and `[buffer]` of hex colours.
`load_theme` reads exactly the keys in `_KEYS` (anything else in the file is
ignored, so a theme written for Halloy works unchanged), checks each is a
`#rgb` or `#rrggbb` colour, or one with an alpha channel (`#rgba`,
`#rrggbbaa`: blended onto the page background; the two background keys
themselves are taken as opaque), and maps them onto the CSS custom properties the
dashboard's stylesheet and charts use (`_variables`, following the reference
product's mapping). A theme is dark when its `general.background` has an HLS
lightness below one half; dark themes put the page on `buffer.background`,
light ones on `general.background`. Derived colours (tag backgrounds, the
heatmap ramp) are straight sRGB mixes, so they are reproducible by hand.

Themes come from three places, later ones overriding earlier ones by name:
the built-in "default" (a Primer-like light palette defined here, so the
dashboard can always render even with no theme files at all), the bundled
directory and the operator's `dashboard.themes_dir`. The bundled directory is
`themes/` at the repository root; the wheel build copies it into the package
as `eggpool/themes/` (hatch `force-include` in pyproject.toml), so
`bundled_themes_dir` looks beside the package first and at the checkout root
second. A theme name becomes a file name, so names are restricted to a small
alphabet and the resolved path must stay inside its directory: a symlink
that points elsewhere is refused, never followed.

Nothing here holds state or reads anything but the directories and files it
is pointed at; the shell decides when to call it and may cache the result.
Contrast helpers follow WCAG 2.2, "relative luminance" and "contrast ratio"
(https://www.w3.org/TR/WCAG22/#dfn-relative-luminance); tests use them to
hold every bundled theme to AA for body text.
"""

from __future__ import annotations

import colorsys
import json
import re
import tomllib
import types
from collections.abc import Mapping
from pathlib import Path

import attrs

__all__ = [
    "DEFAULT_THEME",
    "MAX_NAME_CHARS",
    "VARIABLES",
    "Theme",
    "ThemeError",
    "bundled_themes_dir",
    "contrast_ratio",
    "css",
    "load_theme",
    "relative_luminance",
    "theme_from_mapping",
    "theme_names",
    "validate_name",
]

MAX_NAME_CHARS = 64
_NAME = re.compile(r"[A-Za-z0-9 _.()-]+")
_COLOUR = re.compile(r"#(?:[0-9a-fA-F]{3}){1,2}")
# What a theme file may hold: the above, or with an alpha channel (#rgba, #rrggbbaa).
_FILE_COLOUR = re.compile(r"#(?:[0-9a-fA-F]{3,4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})")
_BACKGROUNDS = ("general.background", "buffer.background")
_CSS_NAME = re.compile(r"--[a-z0-9-]+")
_CANONICAL = re.compile(r"#[0-9a-f]{6}")

# The Halloy keys this loader reads, by table; every one is required.
_BUTTON_KEYS = (
    "background",
    "background_hover",
    "background_selected",
    "background_selected_hover",
)
_KEYS: dict[str, tuple[str, ...]] = {
    "general": ("background", "border", "horizontal_rule", "unread_indicator"),
    "text": ("primary", "secondary", "tertiary", "success", "error"),
    "buttons.primary": _BUTTON_KEYS,
    "buttons.secondary": _BUTTON_KEYS,
    "buffer": (
        "action", "background", "background_text_input", "background_title_bar", "border",
        "border_selected", "code", "highlight", "nickname", "selection", "timestamp", "topic",
        "url",
    ),
}  # fmt: skip

_SERIES = 8
_STATUSES = ("success", "error", "warning", "info")
# Every variable a theme defines, in the order `css` writes them.
VARIABLES: tuple[str, ...] = (
    "--page-bg", "--page-text", "--topbar-bg", "--topbar-border", "--topbar-text",
    "--nav-text", "--nav-hover-bg", "--nav-active-bg", "--card-bg", "--card-border",
    "--table-header-bg", "--table-header-text", "--table-border", "--text-muted",
    "--color-success", "--color-error", "--color-warning", "--color-info",
    "--button-primary-bg",
    *(f"--tag-{s}-{part}" for s in _STATUSES for part in ("bg", "text")),
    *(f"--heatmap-{i}" for i in range(5)), "--heatmap-label-text",
    *(f"--series-{i}" for i in range(_SERIES)),
)  # fmt: skip
_ORDER = {name: index for index, name in enumerate(VARIABLES)}


class ThemeError(ValueError):
    """A theme name or theme file the loader refuses; the message names the problem."""


def _freeze(variables: Mapping[str, str]) -> Mapping[str, str]:
    return types.MappingProxyType(dict(variables))


def _check_variables(_: object, __: object, variables: Mapping[str, str]) -> None:
    # css() pastes names and values into a stylesheet: only plain names and colours get there.
    for name, value in variables.items():
        if not _CSS_NAME.fullmatch(name) or not _CANONICAL.fullmatch(value):
            raise ThemeError(f"not a CSS variable and #rrggbb colour: {name!r}: {value!r}")


@attrs.frozen(kw_only=True)
class Theme:
    """A named theme: whether it is dark, and its CSS custom properties (`--name` -> `#rrggbb`)."""

    name: str
    dark: bool
    variables: Mapping[str, str] = attrs.field(
        converter=_freeze, validator=_check_variables, hash=False
    )


# --- colours ---------------------------------------------------------------------------

RGB = tuple[int, int, int]


def _rgb(colour: str) -> RGB:
    digits = colour[1:]
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


def _hex(rgb: RGB) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _parse_colour(colour: str) -> str:
    """`#rgb` or `#rrggbb` (any case) -> canonical `#rrggbb`; ThemeError otherwise."""
    if not _COLOUR.fullmatch(colour):
        raise ThemeError(f'expected a colour like "#1e1e2e", got {colour!r}')
    return _hex(_rgb(colour))


def _split_alpha(colour: str) -> tuple[str, float]:
    """A theme file's colour -> (canonical `#rrggbb`, opacity from 0 to 1)."""
    digits = colour[1:]
    if len(digits) in (4, 8):
        alpha = digits[3:] * 2 if len(digits) == 4 else digits[6:]
        opaque = colour[:4] if len(digits) == 4 else colour[:7]
        return _parse_colour(opaque), int(alpha, 16) / 255
    return _parse_colour(colour), 1.0


def _mix(base: str, toward: str, amount: float) -> str:
    """`amount` of the way from `base` to `toward`, per sRGB channel."""
    pairs = zip(_rgb(base), _rgb(toward), strict=True)
    r, g, b = (round(a + (z - a) * amount) for a, z in pairs)
    return _hex((r, g, b))


def _hls(colour: str) -> tuple[float, float, float]:
    r, g, b = (c / 255 for c in _rgb(colour))
    return colorsys.rgb_to_hls(r, g, b)


def _scale_lightness(colour: str, factor: float) -> str:
    h, lightness, s = _hls(colour)
    r, g, b = (round(c * 255) for c in colorsys.hls_to_rgb(h, lightness * factor, s))
    return _hex((r, g, b))


def relative_luminance(colour: str) -> float:
    """WCAG 2.x relative luminance of `#rgb`/`#rrggbb`, from 0 (black) to 1 (white)."""

    def linear(channel: int) -> float:
        c = channel / 255
        # WCAG 2.2 corrected the historic 0.03928 threshold to the sRGB standard's 0.04045;
        # no 8-bit channel value falls between the two, so results are identical.
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in _rgb(_parse_colour(colour)))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(first: str, second: str) -> float:
    """WCAG 2.x contrast ratio, 1 (identical) to 21 (black on white); order does not matter."""
    lighter, darker = sorted((relative_luminance(first), relative_luminance(second)))[::-1]
    return (lighter + 0.05) / (darker + 0.05)


# --- mapping ---------------------------------------------------------------------------


def _series(c: Mapping[str, str], card_bg: str) -> list[str]:
    # Distinct colours the theme already uses for accents, most semantic first. One that
    # barely shows on a card is skipped; if the theme runs out, mixes toward the text fill in.
    candidates = [c[k] for k in (
        "buffer.url", "text.success", "buffer.action", "text.error", "buffer.nickname",
        "buffer.code", "text.tertiary", "general.unread_indicator", "buffer.border_selected",
        "buffer.timestamp", "text.secondary",
    )]  # fmt: skip
    chosen: list[str] = []
    for colour in candidates:
        if colour not in chosen and contrast_ratio(colour, card_bg) >= 1.5:
            chosen.append(colour)
    for amount in (0.5, 0.25, 0.75):
        for colour in list(chosen):
            mixed = _mix(colour, c["text.primary"], amount)
            if mixed not in chosen:
                chosen.append(mixed)
    return chosen[:_SERIES]


def _page(c: Mapping[str, str]) -> tuple[bool, str]:
    """Whether the theme is dark, and the page's background colour."""
    dark = _hls(c["general.background"])[1] < 0.5
    return dark, c["buffer.background"] if dark else c["general.background"]


def _variables(c: Mapping[str, str]) -> tuple[bool, dict[str, str]]:
    dark, page_bg = _page(c)
    status = {
        "success": c["text.success"],
        "error": c["text.error"],
        "warning": c["buffer.action"],
        "info": c["buffer.url"],
    }
    success = status["success"]
    v = {
        "--page-bg": page_bg,
        "--page-text": c["text.primary"],
        "--topbar-bg": c["general.background"],
        "--topbar-border": c["general.border"],
        "--topbar-text": c["text.primary"],
        "--nav-text": c["text.secondary"],
        "--nav-hover-bg": c["buffer.highlight"],
        "--nav-active-bg": c["buttons.primary.background_selected"],
        "--card-bg": c["buffer.background"],
        "--card-border": c["general.border"],
        "--table-header-bg": c["buffer.background_title_bar"],
        "--table-header-text": c["text.secondary"],
        "--table-border": c["general.horizontal_rule"],
        "--text-muted": c["buffer.topic"],
        **{f"--color-{name}": colour for name, colour in status.items()},
        "--button-primary-bg": c["buttons.primary.background"],
    }
    for name, colour in status.items():
        v[f"--tag-{name}-bg"] = _mix(page_bg, colour, 0.15)
        v[f"--tag-{name}-text"] = colour
    heatmap = (
        _mix(page_bg, c["text.primary"], 0.06),
        _mix(page_bg, success, 0.35),
        success,
        _scale_lightness(success, 0.7),
        _scale_lightness(success, 0.45),
    )
    v.update({f"--heatmap-{i}": colour for i, colour in enumerate(heatmap)})
    v["--heatmap-label-text"] = c["buffer.topic"]
    v.update(
        {f"--series-{i}": colour for i, colour in enumerate(_series(c, c["buffer.background"]))}
    )
    return dark, v


def theme_from_mapping(name: str, document: Mapping[str, object], *, source: str) -> Theme:
    """A theme from a parsed Halloy document; errors read `source: key.path: problem`."""
    translucent: dict[str, tuple[str, float]] = {}
    for table_path, keys in _KEYS.items():
        table: Mapping[str, object] = document
        walked: list[str] = []
        for part in table_path.split("."):
            walked.append(part)
            inner = table.get(part, {})
            if not isinstance(inner, Mapping):
                raise ThemeError(f"{source}: {'.'.join(walked)}: expected a table")
            table = inner
        for key in keys:
            path = f"{table_path}.{key}"
            value = table.get(key)
            if value is None:
                raise ThemeError(f"{source}: {path}: missing")
            if not isinstance(value, str) or not _FILE_COLOUR.fullmatch(value):
                shown = json.dumps(value) if isinstance(value, str) else repr(value)
                raise ThemeError(
                    f'{source}: {path}: expected a colour like "#1e1e2e", got {shown}'
                )
            translucent[path] = _split_alpha(value)
    # A colour with an alpha channel is drawn over the page: the stylesheet and the
    # contrast checks get the blend. The two backgrounds are the page, so opaque.
    colours = {key: translucent[key][0] for key in _BACKGROUNDS}
    _, page_bg = _page(colours)
    for path, (colour, alpha) in translucent.items():
        if path not in colours:
            colours[path] = colour if alpha >= 1.0 else _mix(page_bg, colour, alpha)
    dark, variables = _variables(colours)
    return Theme(name=name, dark=dark, variables=variables)


# GitHub Primer's light palette (primer/primitives), as a Halloy document, so the
# built-in theme goes through the same mapping as every file.
_DEFAULT_DOCUMENT: dict[str, object] = {
    "general": {
        "background": "#ffffff", "border": "#d0d7de", "horizontal_rule": "#d8dee4",
        "unread_indicator": "#0969da",
    },
    "text": {
        "primary": "#1f2328", "secondary": "#59636e", "tertiary": "#0969da",
        "success": "#1a7f37", "error": "#cf222e",
    },
    "buttons": {
        "primary": {
            "background": "#f6f8fa", "background_hover": "#eff2f5",
            "background_selected": "#ddf4ff", "background_selected_hover": "#b6e3ff",
        },
        "secondary": {
            "background": "#ffffff", "background_hover": "#f6f8fa",
            "background_selected": "#eaeef2", "background_selected_hover": "#d0d7de",
        },
    },
    "buffer": {
        "action": "#9a6700", "background": "#ffffff", "background_text_input": "#f6f8fa",
        "background_title_bar": "#f6f8fa", "border": "#d0d7de", "border_selected": "#0969da",
        "code": "#8250df", "highlight": "#eff2f5", "nickname": "#bc4c00", "selection": "#ddf4ff",
        "timestamp": "#59636e", "topic": "#59636e", "url": "#0969da",
    },
}  # fmt: skip
DEFAULT_THEME = theme_from_mapping("default", _DEFAULT_DOCUMENT, source="built-in default")


def css(theme: Theme) -> str:
    """The theme as one `:root` rule: `color-scheme`, then every variable in a fixed order."""
    known = len(_ORDER)
    items = sorted(theme.variables.items(), key=lambda kv: (_ORDER.get(kv[0], known), kv[0]))
    lines = [f"  color-scheme: {'dark' if theme.dark else 'light'};"]
    lines += [f"  {name}: {value};" for name, value in items]
    return ":root {\n" + "\n".join(lines) + "\n}\n"


# --- files -----------------------------------------------------------------------------


def bundled_themes_dir() -> Path:
    """`eggpool/themes/` in an installed wheel, else `themes/` at the checkout root."""
    package = Path(__file__).resolve().parent.parent
    installed = package / "themes"
    return installed if installed.is_dir() else package.parent / "themes"


def validate_name(name: str) -> str:
    """`name` if it can name a theme file; ThemeError saying why not otherwise."""
    if not name:
        raise ThemeError("theme name is empty")
    if len(name) > MAX_NAME_CHARS:
        raise ThemeError(f"theme name is longer than {MAX_NAME_CHARS} characters")
    if not _NAME.fullmatch(name):
        bad = next(ch for ch in name if not _NAME.fullmatch(ch))
        raise ThemeError(
            f"theme name {name!r} contains {bad!r}; use letters, digits, spaces and _ . ( ) - only"
        )
    return name


def _theme_path(directory: Path, name: str) -> Path:
    path = directory / f"{validate_name(name)}.toml"
    try:
        root, resolved = directory.resolve(), path.resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop: RuntimeError before Python 3.13
        raise ThemeError(f"{path}: cannot resolve: {exc}") from None
    if not resolved.is_relative_to(root) or resolved == root:
        raise ThemeError(f"{path}: resolves outside {directory}")
    return path


def _directories(themes_dir: str | Path | None) -> list[Path]:
    """Where to look, lowest precedence first."""
    dirs = [bundled_themes_dir()]
    if themes_dir is not None:
        dirs.append(Path(themes_dir))
    return dirs


def theme_names(themes_dir: str | Path | None = None) -> list[str]:
    """Every theme `load_theme` may find, sorted case-insensitively for a selector.

    Files whose names are not valid theme names, or which resolve outside their
    directory, are left out: `load_theme` would refuse them.
    """
    names = {DEFAULT_THEME.name}
    for directory in _directories(themes_dir):
        if not directory.is_dir():
            continue
        for entry in directory.iterdir():
            if entry.suffix != ".toml":
                continue
            try:
                names.add(validate_name(entry.stem))
                _theme_path(directory, entry.stem)
            except ThemeError:
                names.discard(entry.stem)
    return sorted(names, key=lambda n: (n.casefold(), n))


def load_theme(name: str, themes_dir: str | Path | None = None) -> Theme:
    """The theme called `name`: from `themes_dir`, else bundled, else the built-in default."""
    validate_name(name)
    for directory in reversed(_directories(themes_dir)):
        path = _theme_path(directory, name)
        if not path.is_file():
            continue
        try:
            document = tomllib.loads(path.read_bytes().decode("utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ThemeError(f"{path}: not a readable TOML file: {exc}") from None
        return theme_from_mapping(name, document, source=str(path))
    if name == DEFAULT_THEME.name:
        return DEFAULT_THEME
    looked = ", ".join(str(d) for d in _directories(themes_dir))
    raise ThemeError(f"no theme named {name!r} (looked in {looked})")
