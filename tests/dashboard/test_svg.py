"""The inline-SVG charts: well-formed, escaped, to scale, themeable, self-contained."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from datetime import date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eggpool.dashboard.svg import bar_chart, heatmap, line_chart, stacked_bar_chart, timeline

NS = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # raises on anything malformed


def test_a_line_chart_draws_each_series_and_its_guides() -> None:
    svg = line_chart(
        "Spend <per> account",
        [("a&b", [(0, 0.0), (1, 2.0), (2, 3.0)]), ("c", [(0, 1.0), (2, 1.5)])],
        guides=[("cap $4", 4.0)],
    )
    root = parse(svg)
    assert root.find(f"{NS}title").text == "Spend <per> account"  # escaped in the source
    lines = root.findall(f"{NS}polyline")
    assert [line.find(f"{NS}title").text for line in lines] == ["a&b", "c"]
    assert len(lines[0].get("points").split()) == 3
    assert any(t.text == "cap $4" for t in root.iter(f"{NS}text"))


def test_bars_are_to_scale_and_empty_charts_say_so() -> None:
    root = parse(bar_chart("Share", [("x", 50.0), ("y", 25.0)], unit="%"))
    widths = [float(r.get("width")) for r in root.iter(f"{NS}rect")]
    assert widths[0] == 2 * widths[1]
    for empty in (line_chart("t", []), bar_chart("t", []), timeline("t", [], start=0, end=1)):
        assert any(t.text == "no data" for t in parse(empty).iter(f"{NS}text"))


def test_a_timeline_clips_spans_to_the_run() -> None:
    root = parse(timeline("Cooling", [("a", [(-5.0, 1.0), (8.0, 20.0)])], start=0, end=10))
    rects = list(root.iter(f"{NS}rect"))
    assert len(rects) == 2
    first, last = (float(r.get("x")) for r in rects)
    assert first < last


# The stacked bar chart, the calendar heatmap, and what every chart promises.

HOSTILE = '<script>alert(1)</script>" onload="x'
BUCKETS = ["00:00", "01:00", "02:00"]
SERIES = [("a", [1, 0, 3]), ("b", [2, 5, 0]), ("Other", [0, 1, 1])]
MAY_1 = date(2024, 5, 1)  # a Wednesday


def bars(root: ET.Element) -> list[tuple[str, float, list[ET.Element]]]:
    """(bucket label, stated total, segments bottom to top) per bucket, in order."""
    return [
        (g.get("data-bucket", ""), float(g.get("data-total", "nan")), g.findall(f"{NS}rect"))
        for g in root.iter(f"{NS}g")
        if g.get("data-bucket") is not None
    ]


def texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{NS}text")]


def title(element: ET.Element) -> str:
    found = element.find(f"{NS}title")
    assert found is not None
    return found.text or ""


def group(root: ET.Element, name: str) -> ET.Element:
    found = root.find(f"{NS}g[@class='{name}']")
    assert found is not None
    return found


def cells(root: ET.Element) -> list[ET.Element]:
    return root.findall(f"{NS}g[@class='days']/{NS}rect")


def every_chart(name: str) -> list[str]:
    """One of each chart, with `name` wherever a chart shows a name."""
    return [
        line_chart(name, [(name, [(0, 1.0), (1, 2.0)])], x_label=name, guides=[(name, 1.5)]),
        bar_chart(name, [(name, 3.0), ("b", 1.0)], unit=name),
        timeline(name, [(name, [(0.0, 1.0)])], start=0, end=2),
        stacked_bar_chart(name, [name, "b"], [(name, [1, 2]), ("Other", [3, 0])], unit=name),
        heatmap(name, {MAY_1: 5}, end=MAY_1, unit=name),
    ]


def test_stacked_segments_add_up_to_each_bucket_total() -> None:
    root = parse(stacked_bar_chart("Requests per hour", BUCKETS, SERIES, unit=" req"))
    found = bars(root)
    assert [(label, total) for label, total, _ in found] == [
        ("00:00", 3),
        ("01:00", 6),
        ("02:00", 4),
    ]
    for _, total, segments in found:
        assert sum(float(s.get("data-value", "nan")) for s in segments) == total


def test_a_stacked_segment_tooltip_names_series_bucket_value_and_total() -> None:
    root = parse(stacked_bar_chart("Requests per hour", BUCKETS, SERIES, unit=" req"))
    first, second, _ = bars(root)
    assert [title(s) for s in first[2]] == ["a, 00:00: 1 req of 3 req", "b, 00:00: 2 req of 3 req"]
    # A zero draws nothing: 01:00 has b and Other, not a.
    assert [title(s) for s in second[2]] == [
        "b, 01:00: 5 req of 6 req",
        "Other, 01:00: 1 req of 6 req",
    ]


def test_stacked_segments_sit_on_each_other_to_scale() -> None:
    root = parse(stacked_bar_chart("t", BUCKETS, SERIES))
    _, _, segments = bars(root)[1]  # b = 5 below Other = 1
    lower, upper = ((float(s.get("y", "nan")), float(s.get("height", "nan"))) for s in segments)
    assert upper[0] + upper[1] == lower[0]  # no gap, no overlap
    assert lower[1] == pytest.approx(5 * upper[1], abs=5)  # hundredths of a pixel


@pytest.mark.parametrize(
    ("peak", "top_tick"),
    [(42, "50"), (3_400, "4k"), (3_400_000, "4M"), (7.2e9, "8G"), (0.3, "0.3")],
)
def test_the_stacked_y_axis_ends_on_a_compact_round_tick(peak: float, top_tick: str) -> None:
    root = parse(stacked_bar_chart("t", ["x"], [("a", [peak])]))
    labels = texts(group(root, "y-axis"))
    assert labels[0] == "0"
    assert labels[-1] == top_tick


def test_the_stacked_legend_names_every_series_in_its_colour() -> None:
    root = parse(stacked_bar_chart("t", BUCKETS, SERIES))
    legend = group(root, "legend")
    assert texts(legend) == ["a", "b", "Other"]
    swatches = [swatch.get("fill") for swatch in legend.iter(f"{NS}rect")]
    segment = {s.get("data-series"): s.get("fill") for _, _, ss in bars(root) for s in ss}
    assert swatches == [segment["0"], segment["1"], segment["2"]]


def test_a_long_series_name_is_cut_in_the_legend_but_whole_in_its_tooltip() -> None:
    name = "provider/a-model-with-a-remarkably-long-name"
    (entry,) = list(group(parse(stacked_bar_chart("t", ["x"], [(name, [1])])), "legend"))
    assert title(entry) == name
    shown = texts(entry)[0]
    assert shown.endswith("\u2026")
    assert name.startswith(shown[:-1])


@pytest.mark.parametrize(
    ("buckets", "series"),
    [([], []), ([], [("a", [])]), (BUCKETS, []), (BUCKETS, [("a", [0, 0, 0]), ("b", [0.0] * 3)])],
    ids=["nothing", "no-buckets", "no-series", "all-zero"],
)
def test_an_empty_stacked_chart_says_no_data(
    buckets: list[str], series: list[tuple[str, list[float]]]
) -> None:
    root = parse(stacked_bar_chart("t", buckets, series))
    assert "no data" in texts(root)
    assert not [s for _, _, ss in bars(root) for s in ss]


@pytest.mark.parametrize(
    "values", [[1, 2], [1, 2, 3, 4], [1, -1, 0], [1, math.nan, 0], [math.inf, 0, 0]]
)
def test_a_stacked_chart_refuses_values_it_cannot_draw_honestly(values: list[float]) -> None:
    with pytest.raises(ValueError, match="'a'"):
        stacked_bar_chart("t", BUCKETS, [("a", values)])


@st.composite
def stacks(draw: st.DrawFn) -> tuple[list[str], list[tuple[str, list[float]]]]:
    count = draw(st.integers(0, 24))
    buckets = draw(st.lists(st.text(max_size=8), min_size=count, max_size=count))
    value = st.one_of(
        st.integers(0, 10**12),
        st.floats(0, 1e300, allow_nan=False, allow_infinity=False),
    )
    names = draw(st.lists(st.text(max_size=8), max_size=6))
    return buckets, [
        (name, draw(st.lists(value, min_size=count, max_size=count))) for name in names
    ]


@given(stacks())
def test_any_non_negative_data_stacks_to_its_bucket_totals(
    data: tuple[list[str], list[tuple[str, list[float]]]],
) -> None:
    buckets, series = data
    root = parse(stacked_bar_chart("t", buckets, series))
    found = bars(root)
    if not any(v for _, values in series for v in values):
        assert "no data" in texts(root)
        return
    assert [label for label, _, _ in found] == [_sanitised(label) for label in buckets]
    for b, (_, total, segments) in enumerate(found):
        drawn = [float(s.get("data-value", "nan")) for s in segments]
        assert drawn == [values[b] for _, values in series if values[b]]
        assert total == pytest.approx(math.fsum(drawn))
        for segment in segments:  # inside the plot, which is drawn in hundredths of a pixel
            y, height = float(segment.get("y", "nan")), float(segment.get("height", "nan"))
            assert 2400 <= y <= y + height <= 20000


def _sanitised(text: str) -> str:
    """What a label reads back as: XML can carry neither C0 controls nor U+FFFE/U+FFFF."""
    return "".join(
        "\ufffd" if (c < " " and c not in "\t\n\r") or c in "\ufffe\uffff" else c for c in text
    )


def test_a_heatmap_draws_one_cell_per_day_of_the_span() -> None:
    days = {MAY_1: 7, date(2024, 2, 2): 1, date(2024, 2, 1): 99, date(2024, 5, 2): 99}
    found = cells(parse(heatmap("Tokens per day", days, end=MAY_1)))
    assert len(found) == 90
    assert [c.get("data-date") for c in found] == [
        (MAY_1 - timedelta(days=89 - i)).isoformat() for i in range(90)
    ]
    # The first and last days count; the days either side of the span do not.
    assert [c.get("data-value") for c in found if c.get("data-value") != "0"] == ["1", "7"]


def test_heatmap_levels_are_quartiles_of_the_active_days() -> None:
    days = {MAY_1 - timedelta(days=i): i for i in range(9)}  # 0 (on May 1) to 8
    found = cells(parse(heatmap("t", days, end=MAY_1, span_days=9)))
    assert "".join(c.get("data-level", "") for c in reversed(found)) == "011223344"


def test_equal_days_share_a_level_and_busier_days_never_look_lighter() -> None:
    # Active days 1 2 4 4 6 8 9: the quartile bounds are 2, 4 and 8.
    days = {MAY_1 - timedelta(days=i): v for i, v in enumerate([4, 4, 1, 9, 0, 6, 2, 8])}
    found = {c.get("data-date"): c for c in cells(parse(heatmap("t", days, end=MAY_1)))}
    levels = {v: found[d.isoformat()].get("data-level") for d, v in days.items()}
    assert levels == {0: "0", 1: "1", 2: "1", 4: "2", 6: "3", 8: "3", 9: "4"}


def test_a_heatmap_has_weeks_as_columns_and_weekdays_as_rows() -> None:
    found = cells(parse(heatmap("t", {}, end=MAY_1, span_days=21)))
    at = {date.fromisoformat(c.get("data-date", "")): c for c in found}
    monday, next_monday = date(2024, 4, 22), date(2024, 4, 29)
    week = [at[monday + timedelta(days=i)] for i in range(7)]
    assert len({c.get("x") for c in week}) == 1  # a week is a column
    assert [float(c.get("y", "nan")) for c in week] == sorted(
        float(c.get("y", "nan")) for c in week
    )  # Monday at the top
    assert at[next_monday].get("y") == at[monday].get("y")  # a weekday is a row
    assert float(at[next_monday].get("x", "nan")) > float(at[monday].get("x", "nan"))


def test_a_heatmap_cell_tooltip_gives_the_date_and_value() -> None:
    root = parse(heatmap("t", {MAY_1: 1234}, end=MAY_1, unit=" tokens"))
    assert title(cells(root)[-1]) == "Wed 2024-05-01: 1,234 tokens"


def test_a_heatmap_labels_the_months_it_shows() -> None:
    shown = parse(heatmap("t", {}, end=MAY_1))
    assert texts(group(shown, "months")) == ["Feb", "Mar", "Apr", "May"]
    # A span from 28 April: "Apr" over its first column would run into "May".
    late = parse(heatmap("t", {}, end=date(2024, 5, 27), span_days=30))
    assert texts(group(late, "months")) == ["May"]


def test_a_heatmap_legend_runs_from_less_to_more_through_five_levels() -> None:
    legend = group(parse(heatmap("t", {MAY_1: 3}, end=MAY_1)), "legend")
    assert texts(legend) == ["Less", "More"]
    fills = [r.get("fill", "") for r in legend.iter(f"{NS}rect")]
    assert [f.split(",")[0] for f in fills] == [f"var(--heatmap-{n}" for n in range(5)]


def test_an_empty_heatmap_draws_empty_days_and_says_no_data() -> None:
    root = parse(heatmap("t", {}, end=MAY_1))
    assert {c.get("data-level") for c in cells(root)} == {"0"}
    assert len(cells(root)) == 90
    assert "no data" in texts(root)


def test_a_heatmap_refuses_what_it_cannot_draw() -> None:
    with pytest.raises(ValueError, match="2024-05-01"):
        heatmap("t", {MAY_1: -1}, end=MAY_1)
    with pytest.raises(ValueError, match="span_days"):
        heatmap("t", {}, end=MAY_1, span_days=0)
    with pytest.raises(TypeError, match="datetime"):
        heatmap("t", {}, end=datetime(2024, 5, 1, 12))


@given(
    st.dictionaries(
        st.dates(date(2024, 1, 1), date(2024, 5, 10)), st.integers(0, 10**9), max_size=60
    )
)
def test_any_heatmap_ranks_busier_days_at_least_as_dark(days: dict[date, int]) -> None:
    found = cells(parse(heatmap("t", days, end=MAY_1)))
    assert len(found) == 90
    ranked = sorted((int(c.get("data-value", "")), int(c.get("data-level", ""))) for c in found)
    assert [level for _, level in ranked] == sorted(level for _, level in ranked)
    assert all((value == 0) == (level == 0) for value, level in ranked)


@pytest.mark.parametrize("index", range(5))
def test_hostile_names_come_out_as_text(index: int) -> None:
    svg = every_chart(HOSTILE)[index]
    assert "<script" not in svg
    assert 'onload="' not in svg
    root = parse(svg)
    assert root.get("aria-label") == HOSTILE
    assert title(root) == HOSTILE
    assert not list(root.iter(f"{NS}script"))


def test_characters_xml_cannot_carry_do_not_break_the_chart() -> None:
    root = parse(stacked_bar_chart("t", ["x"], [("bad\x00name\x1b[31m\ud800", [1])]))
    assert texts(group(root, "legend")) == ["bad\ufffdname\ufffd[31m\ufffd"]


@pytest.mark.parametrize("index", range(5))
def test_every_colour_comes_from_a_theme_variable(index: int) -> None:
    root = parse(every_chart("n")[index])
    colours = [
        element.get(attr, "")
        for element in root.iter()
        for attr in ("fill", "stroke")
        if element.get(attr) not in (None, "none")
    ]
    assert colours
    assert all(c.startswith("var(--") for c in colours)
    names = {c[len("var(") :].split(",")[0] for c in colours}
    assert names <= {
        *(f"--series-{n}" for n in range(8)),
        *(f"--heatmap-{n}" for n in range(5)),
        "--heatmap-label-text",
        "--page-text",
        "--text-muted",
        "--table-border",
    }


def test_series_colours_cycle_through_eight_and_then_fade() -> None:
    series = [(f"s{n}", [1]) for n in range(10)]
    root = parse(stacked_bar_chart("t", ["x"], series))
    _, _, segments = bars(root)[0]
    assert [s.get("fill", "").split(",")[0] for s in segments] == [
        f"var(--series-{n % 8}" for n in range(10)
    ]
    assert [s.get("fill-opacity") for s in segments[7:]] == [None, "0.6", "0.6"]


def test_the_simulate_report_palette_still_colours_text_and_rules() -> None:
    # The report defines --fg and --grid (light and dark), not the dashboard's names.
    svg = line_chart("t", [("a", [(0, 1.0), (1, 2.0)])])
    assert "var(--page-text, var(--fg, " in svg
    assert "var(--table-border, var(--grid, " in svg


@pytest.mark.parametrize("index", range(5))
def test_every_chart_is_a_named_image_that_refers_to_nothing_outside(index: int) -> None:
    root = parse(every_chart("Usage")[index])
    assert root.get("role") == "img"
    assert root.get("aria-label") == "Usage"
    assert root[0].tag == f"{NS}title"
    for element in root.iter():
        assert element.tag.removeprefix(NS) not in {"script", "a", "image", "use", "foreignObject"}
        for attr, value in element.attrib.items():
            assert "href" not in attr
            assert not attr.startswith("on")
            assert "url(" not in value


def test_the_same_input_gives_the_same_bytes() -> None:
    assert every_chart("n") == every_chart("n")
    days = {MAY_1 - timedelta(days=i): i for i in range(30)}
    assert heatmap("t", days, end=MAY_1) == heatmap("t", dict(reversed(days.items())), end=MAY_1)
