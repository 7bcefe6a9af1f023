"""Small HTML pieces of the dashboard pages: escaping, figures, cards, tables. Pure.

Everything taken from data goes through `e` (HTML escaping, quotes too) before
it reaches markup; `table` takes cells that are already HTML, so its callers
escape what they put in them.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import UTC, datetime

__all__ = [
    "card",
    "chart",
    "count",
    "e",
    "money",
    "reservations",
    "seconds",
    "share",
    "table",
    "tag",
    "when",
]


def e(value: object) -> str:
    return html.escape(str(value), quote=True)


def money(usd: float) -> str:
    return f"${usd:,.2f}" if usd >= 1 else f"${usd:,.4f}"


def count(value: float) -> str:
    return f"{value:,.0f}"


def share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:,.0f} ms" if value < 10 else f"{value:,.1f} s"


def when(at: float | None) -> str:
    if at is None:
        return "-"
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def card(title: str, value: str, detail: str = "", live: str = "") -> str:
    attr = f' data-live="{e(live)}"' if live else ""
    note = f'<p class="detail">{detail}</p>' if detail else ""
    return (
        f'<section class="card"><h2>{e(title)}</h2>'
        f'<p class="figure"{attr}>{e(value)}</p>{note}</section>'
    )


def table(caption: str, headings: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A table; cells are already HTML (escape what came from data before)."""
    head = "".join(f'<th scope="col">{e(h)}</th>' for h in headings)
    if rows:
        body = "".join(
            "<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows
        )
    else:
        body = f'<tr><td colspan="{len(headings)}" class="empty">Nothing in this period.</td></tr>'
    return (
        f'<section class="panel"><table><caption>{e(caption)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></section>"
    )


def tag(text: str, kind: str) -> str:
    return f'<span class="tag tag-{kind}">{e(text)}</span>'


def chart(markup: str, kind: str = "") -> str:
    """A panel holding one SVG chart; `kind` adds a class (`heatmap` is drawn smaller)."""
    return f'<section class="panel chart {kind}">{markup}</section>'


def reservations(held: object) -> str:
    """A card of the quota reserved for attempts in flight (from the Pool), if known."""
    if not isinstance(held, dict):
        return ""
    oldest = held.get("oldest_age_s")
    detail = f"{money(held['reserved_usd'])} held" + (
        f", oldest {seconds(oldest)}" if oldest is not None else ""
    )
    return card("Reservations", count(held["active"]), detail)
