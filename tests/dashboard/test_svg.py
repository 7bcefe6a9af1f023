"""The inline-SVG charts: well-formed, escaped, to scale."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from eggpool.dashboard.svg import bar_chart, line_chart, timeline

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
