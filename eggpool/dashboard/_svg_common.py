"""What every chart in `eggpool.dashboard.svg` shares: escaping, numbers, colours, frame.

Theory of operation. A chart is a list of SVG element strings wrapped by
`frame` in one `<svg role="img">` sized by `viewBox`. Three rules hold for
every chart and live here so no chart can forget them:

- Text from data goes through `esc`, which also replaces the characters
  XML 1.0 forbids even when escaped (C0 controls, lone surrogates, U+FFFE/F)
  with U+FFFD, so a hostile account name can neither inject markup nor make
  the document ill-formed (https://www.w3.org/TR/xml/#charsets).
- Colours are CSS custom properties with a fallback: `--series-0..7` for
  series (cycling; later cycles are drawn fainter so two series never look
  identical), `--heatmap-0..4` (and `--heatmap-label-text`), and
  `--page-text`, `--text-muted`, `--table-border` for text and rules. The
  text and rule fallbacks go through the older `--fg` and `--grid`, which
  the simulate report defines for its light and dark schemes.
- Numbers on axes are compact (`1.2k`, `3.4M`); in tooltips they are exact
  with thousands separators; in `data-*` attributes they round-trip.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

W, H = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 16, 40

TEXT = "var(--page-text, var(--fg, #333))"
MUTED = "var(--text-muted, var(--fg, #666))"
RULE = "var(--table-border, var(--grid, #ddd))"
HEAT_LABEL = f"var(--heatmap-label-text, {MUTED})"

# Tableau 10's first eight: distinct in hue and lightness, readable on white and black.
_SERIES = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7")
_FAINTER = ("", ' {attr}-opacity="0.6"', ' {attr}-opacity="0.35"')
# GitHub's contribution greens, none to most.
HEAT = tuple(
    f"var(--heatmap-{level}, {fallback})"
    for level, fallback in enumerate(("#ebedf0", "#9be9a8", "#40c463", "#30a14e", "#216e39"))
)

# Markup characters as references; tab, newline and carriage return too, which a parser
# would otherwise turn into spaces in attributes (https://www.w3.org/TR/xml/#AVNormalize)
# and fold from \r\n to \n in text; characters XML cannot carry at all become U+FFFD.
_ESCAPES: dict[int, str] = {
    **dict.fromkeys((*range(0x20), *range(0xD800, 0xE000), 0xFFFE, 0xFFFF), "\ufffd"),
    **{ord(c): f"&#{ord(c)};" for c in "\t\n\r\"'"},
    ord("&"): "&amp;",
    ord("<"): "&lt;",
    ord(">"): "&gt;",
}


def esc(text: str) -> str:
    """`text` safe as XML character data or a quoted attribute value; reads back the same."""
    return text.translate(_ESCAPES)


def paint(index: int, attr: str = "fill") -> str:
    """The `fill` (or `stroke`) attributes of series `index`: eight colours, then fainter."""
    slot = index % len(_SERIES)
    cycle = min(index // len(_SERIES), len(_FAINTER) - 1)
    return f'{attr}="var(--series-{slot}, {_SERIES[slot]})"' + _FAINTER[cycle].format(attr=attr)


def compact(value: float) -> str:
    """Three significant digits with an SI prefix: 950, 1.2k, 3.4M, 5G."""
    if value == 0:
        return "0"
    sign, magnitude = ("-" if value < 0 else ""), abs(value)
    for prefix in ("", "k", "M", "G"):
        text = f"{magnitude:.3g}"
        if float(text) < 1000:
            return f"{sign}{text}{prefix}"
        magnitude /= 1000
    return f"{sign}{magnitude:.3g}T"


def figures(value: float) -> tuple[str, str]:
    """`value` for a `data-*` attribute (`float(data) == value`) and as a person reads it in
    a tooltip (1,234 or 1,234.5 or 0.00123). One function, as charts need both per mark."""
    if type(value) is int:  # counts, the common case
        return str(value), f"{value:,}"
    number = float(value)
    if number.is_integer():
        return str(int(number)), f"{int(number):,}"
    if abs(number) >= 1:
        return repr(number), f"{number:,.2f}".rstrip("0").rstrip(".")
    return repr(number), f"{number:.3g}"


def exact(value: float) -> str:
    return figures(value)[1]


def nice_step(span: float, ticks: int = 5) -> float:
    """A 1, 2, 2.5 or 5 times a power of ten step giving about `ticks` steps over `span`."""
    raw_step = span / ticks
    if not raw_step > 0 or not math.isfinite(raw_step):
        return 1.0
    magnitude = 10.0 ** math.floor(math.log10(raw_step))
    for factor in (1, 2, 2.5, 5):
        if raw_step <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def frame(
    title: str, body: Sequence[str], *, width: float = W, height: float = H, desc: str = ""
) -> str:
    """The `<svg>` element: named for assistive technology by `aria-label` and `<title>`."""
    name = esc(title)
    about = f"<desc>{esc(desc)}</desc>" if desc else ""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:g} {height:g}" '
        f'role="img" aria-label="{name}" class="chart"><title>{name}</title>{about}'
        f"{''.join(body)}</svg>"
    )


def text(x: float, y: float, content: str, *, anchor: str = "start", fill: str = TEXT) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="11" text-anchor="{anchor}" '
        f'fill="{fill}">{esc(content)}</text>'
    )


def no_data(x: float, y: float) -> str:
    return text(x, y, "no data", anchor="middle", fill=MUTED)


def shorten(name: str, limit: int) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "\u2026"


def legend(names: Sequence[str], *, x: float, y: float, width: float) -> tuple[list[str], float]:
    """A swatch and name per series, wrapping into rows within `width` from (x, y); the
    elements and the height they take. Long names are cut; the `<title>` keeps them whole."""
    body = ['<g class="legend">']
    left, row = x, 0
    for index, name in enumerate(names):
        label = shorten(name, 24)
        step = 24 + 7 * len(label)
        if left > x and left + step > x + width:
            left, row = x, row + 1
        top = y + row * 16
        body.append(
            f"<g><title>{esc(name)}</title>"
            f'<rect x="{left:.1f}" y="{top:.1f}" width="10" height="10" {paint(index)}/>'
            f"{text(left + 14, top + 9, label)}</g>"
        )
        left += step
    body.append("</g>")
    return body, (row + 1) * 16 if names else 0
