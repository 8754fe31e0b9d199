"""The SVG chart module: scales, coordinates, empty and one-point series, negatives, markup."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import date
from decimal import Decimal

import pytest

from patron.admin import charts
from patron.admin.charts import Frame, Scale, Series

SVG = "{http://www.w3.org/2000/svg}"


def parse(chart: charts.Chart) -> ET.Element:
    return ET.fromstring(str(chart.svg))


def polyline_points(root: ET.Element, key: str) -> list[tuple[float, float]]:
    for g in root.iter(f"{SVG}g"):
        if f"c-{key}" in g.get("class", "").split():
            line = g.find(f"{SVG}polyline")
            assert line is not None
            return [tuple(map(float, p.split(","))) for p in line.get("points", "").split()]  # type: ignore[misc]
    raise AssertionError(f"no series {key}")


def test_scale_maps_the_domain_onto_pixels_both_ways():
    y = Scale(0, 100, 200, 0)  # a y axis: 0 at the bottom (200 px), 100 at the top
    assert y(0) == 200 and y(100) == 0 and y(25) == 150
    assert y(-50) == 300  # outside the domain extrapolates
    assert Scale(5, 5, 10, 20)(5) == 15  # a flat domain sits in the middle


@pytest.mark.parametrize(
    ("values", "lo", "hi"),
    [
        ([0, 0], 0, 1),
        ([3, 97], 0, 100),
        ([-30, 80], -50, 100),
        ([Decimal("0.4")], 0, 0.4),
        ([1234567], 0, 1500000),
        ([-5, -20], -20, 0),
    ],
)
def test_nice_domain_covers_zero_and_the_values_with_round_ticks(values, lo, hi):
    d0, d1, ticks = charts.nice_domain(values)
    assert d0 == pytest.approx(lo) and d1 == pytest.approx(hi)
    assert ticks[0] == pytest.approx(d0) and ticks[-1] == pytest.approx(d1)
    assert 2 <= len(ticks) <= 7
    assert any(t == pytest.approx(0) for t in ticks)


def test_line_points_map_to_the_right_coordinates():
    frame = Frame(width=500, height=300, left=50, right=50, top=0, bottom=100)
    chart = charts.line_chart(
        ["Jan", "Feb", "Mar"],
        [Series("earned", "Earned", [0, 50, 100])],
        title="Points",
        frame=frame,
    )
    points = polyline_points(parse(chart), "earned")
    # x: 50..450 in two steps; y: 0 at 200 (the plot's bottom), 100 at 0 (its top).
    assert points == [(50, 200), (250, 100), (450, 0)]
    assert chart.rows == [("Jan", ["0"]), ("Feb", ["50"]), ("Mar", ["100"])]


def test_one_point_sits_in_the_middle_without_a_line():
    frame = Frame(width=400, height=200, left=0, right=0, top=0, bottom=0)
    chart = charts.line_chart(["Mar"], [Series("earned", "Earned", [10])], title="t", frame=frame)
    root = parse(chart)
    assert root.find(f".//{SVG}polyline") is None
    dot = root.find(f".//{SVG}circle")
    assert dot is not None and float(dot.get("cx", "")) == 200
    assert float(dot.get("cy", "")) == 0  # 10 is the top of the domain [0, 10]


def test_empty_series_say_so_and_stay_valid_svg():
    for chart in (
        charts.line_chart([], [Series("a", "A", [])], title="t", empty_message="Nothing"),
        charts.bar_chart([], [], title="t", empty_message="Nothing"),
        charts.hbar_chart([], title="t", empty_message="Nothing"),
    ):
        root = parse(chart)
        assert chart.empty
        assert "Nothing" in "".join(root.itertext())
        assert chart.rows == []


def test_negative_values_go_below_the_zero_line():
    frame = Frame(width=300, height=220, left=0, right=0, top=10, bottom=10)
    chart = charts.bar_chart(
        ["a", "b"], [Series("net", "Net", [100, -100])], title="t", frame=frame
    )
    root = parse(chart)
    rects = root.findall(f".//{SVG}rect")
    zero = next(ln for ln in root.iter(f"{SVG}line") if "zero" in ln.get("class", ""))
    zero_y = float(zero.get("y1", ""))
    assert zero_y == 110  # domain -100..100 over 10..210
    up, down = rects
    assert float(up.get("y", "")) + float(up.get("height", "")) == pytest.approx(zero_y)
    assert float(down.get("y", "")) == pytest.approx(zero_y)
    assert float(down.get("height", "")) == pytest.approx(100)


def test_stacked_bars_sit_on_each_other():
    frame = Frame(width=200, height=120, left=0, right=0, top=10, bottom=10)
    chart = charts.bar_chart(
        ["w1"],
        [Series("g0", "A", [40]), Series("g1", "B", [60])],
        title="t",
        stacked=True,
        frame=frame,
    )
    a, b = parse(chart).findall(f".//{SVG}rect")
    # 0..100 over 110..10: A spans 110..70, B spans 70..10.
    assert float(a.get("y", "")) == pytest.approx(70) and float(a.get("height", "")) == 40
    assert float(b.get("y", "")) == pytest.approx(10) and float(b.get("height", "")) == 60
    assert a.get("width") == b.get("width")


def test_grouped_bars_stand_side_by_side():
    chart = charts.bar_chart(
        ["m"], [Series("earned", "E", [1]), Series("expired", "X", [1])], title="t"
    )
    a, b = parse(chart).findall(f".//{SVG}rect")
    assert float(b.get("x", "")) == pytest.approx(float(a.get("x", "")) + float(a.get("width", "")))


def test_hbar_lengths_are_proportional_and_labelled():
    chart = charts.hbar_chart(
        [("Gold", 5), ("Silver", 10), ("No tier", 0)], title="Tiers", fmt=lambda v: f"{v} m"
    )
    root = parse(chart)
    widths = [float(r.get("width", "")) for r in root.findall(f".//{SVG}rect")]
    assert widths[1] == pytest.approx(2 * widths[0]) and widths[2] == 0
    text = "".join(root.itertext())
    assert "Gold" in text and "10 m" in text


def test_accessible_markup_no_style_attributes_and_escaped_text():
    chart = charts.line_chart(
        ["<b>"],
        [Series("Earned Points!", "Earned & more", [3])],
        title='Points "earned"',
        desc="per day",
        fmt=lambda v: f"{v:,}",
    )
    svg = str(chart.svg)
    root = parse(chart)  # well-formed despite the markup in labels
    assert root.get("role") == "img"
    title, desc = root.find(f"{SVG}title"), root.find(f"{SVG}desc")
    assert title is not None and title.text == 'Points "earned"'
    assert desc is not None and desc.text == "per day"
    assert root.get("aria-labelledby") == f"{title.get('id')} {desc.get('id')}"
    assert "style=" not in svg and "<b>" not in svg
    assert "c-earned-points-" in svg  # the key becomes a safe class name


def test_x_labels_are_thinned_to_at_most_twelve():
    labels = [f"d{i}" for i in range(30)]
    chart = charts.line_chart(labels, [Series("a", "A", list(range(30)))], title="t")
    axis = next(g for g in parse(chart).iter(f"{SVG}g") if "axis-x" in g.get("class", ""))
    shown = [t.text for t in axis.iter(f"{SVG}text")]
    assert 2 <= len(shown) <= 12 and shown[0] == "d0"


def test_mismatched_series_are_a_programming_error():
    with pytest.raises(ValueError, match="2 values for 3 labels"):
        charts.bar_chart(["a", "b", "c"], [Series("x", "X", [1, 2])], title="t")


@pytest.mark.parametrize(
    ("lang", "month", "day"),
    [("en", "Mar 2026", "Mar 2"), ("ko", "2026년 3월", "3월 2일"), ("zh", "2026年3月", "3月2日")],
)
def test_axis_dates_in_each_language(lang, month, day):
    assert charts.month_label(date(2026, 3, 2), lang) == month
    assert charts.day_label(date(2026, 3, 2), lang) == day


def test_coordinates_are_short_and_stable():
    chart = charts.line_chart(["a", "b", "c"], [Series("a", "A", [1, 2, 3])], title="t")
    numbers = re.findall(r'(?:x|y|cx|cy)="(-?[0-9.]+)"', str(chart.svg))
    assert numbers and all(len(n.split(".")[-1]) <= 2 or "." not in n for n in numbers)
