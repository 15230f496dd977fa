"""The dashboard's SVG charts (whistle/charts.py): well-formed, accessible, escaped, and
honest about empty data."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from markupsafe import Markup

from whistle.charts import Bar, count_bar, count_bars, percent, rate_bar, rate_bars, text_width

SVG = "{http://www.w3.org/2000/svg}"


def parse(markup: Markup) -> ET.Element:
    return ET.fromstring(str(markup))


def bar_widths(svg: ET.Element) -> list[float]:
    return [float(r.get("width", 0)) for r in svg.iter(f"{SVG}rect")
            if r.get("class") == "chart-bar"]


def texts(svg: ET.Element, cls: str) -> list[str]:
    return [t.text or "" for t in svg.iter(f"{SVG}text") if t.get("class") == cls]


def test_rate_chart_has_title_desc_and_a_labelled_value_per_bar() -> None:
    svg = parse(rate_bars("ri", "按时报到率", [rate_bar("信访办", 3, 4),
                                              rate_bar("国土所", 1, 4)]))
    assert svg.get("role") == "img"
    assert svg.get("aria-labelledby") == "ri-title ri-desc"
    assert svg.find(f"{SVG}title").text == "按时报到率"  # type: ignore[union-attr]
    assert "信访办: 75% (3/4)" in svg.find(f"{SVG}desc").text  # type: ignore[union-attr,operator]
    assert texts(svg, "chart-label") == ["信访办", "国土所"]
    assert texts(svg, "chart-value") == ["75% (3/4)", "25% (1/4)"]
    full, quarter = bar_widths(svg)
    assert abs(full / quarter - 3) < 0.01


def test_labels_and_titles_are_escaped() -> None:
    evil = '<script>alert("x")</script>&'
    markup = rate_bars('a"><script>', evil, [rate_bar(evil, 1, 2)])
    assert "<script>" not in str(markup)
    svg = parse(markup)  # still well-formed XML
    assert svg.find(f"{SVG}title").text == evil  # type: ignore[union-attr]
    assert svg.get("id") == "a---script-"


def test_a_rate_with_nothing_to_count_draws_no_bar_and_says_so() -> None:
    svg = parse(rate_bars("x", "t", [rate_bar("A", 0, 0), rate_bar("B", 0, 3)]))
    assert bar_widths(svg) == []  # 0/0 and 0/3 both draw nothing
    assert texts(svg, "chart-value") == ["—", "0% (0/3)"]
    assert percent(0, 0).value is None


def test_an_empty_chart_is_valid_and_shows_the_empty_text() -> None:
    svg = parse(count_bars("c", "by category", [], empty="No cases"))
    assert texts(svg, "chart-none") == ["No cases"]
    assert svg.find(f"{SVG}desc").text == "No cases"  # type: ignore[union-attr]


def test_count_chart_scales_to_the_largest() -> None:
    svg = parse(count_bars("c", "t", [count_bar("land", 4), count_bar("family", 1),
                                      count_bar("none", 0)]))
    widths = bar_widths(svg)
    assert len(widths) == 2 and abs(widths[0] / widths[1] - 4) < 0.01
    assert texts(svg, "chart-value") == ["4", "1", "0"]


def test_values_outside_the_track_are_clamped() -> None:
    svg = parse(rate_bars("x", "t", [Bar("over", 1.5, "150%")]))
    track = next(r for r in svg.iter(f"{SVG}rect") if r.get("class") == "chart-track")
    assert bar_widths(svg) == [float(track.get("width", 0))]


def test_long_labels_are_cut_but_kept_whole_in_the_row_title() -> None:
    long = "惠州市惠城区小金口街道九龙村土地使用权转让纠纷联合调解工作专班" * 2
    svg = parse(rate_bars("x", "t", [rate_bar(long, 1, 1)]))
    (label,) = texts(svg, "chart-label")
    assert label.endswith("…") and text_width(label) <= 220
    row_title = next(g.find(f"{SVG}title") for g in svg.iter(f"{SVG}g"))
    assert row_title is not None and row_title.text == f"{long}: 100% (1/1)"


def test_no_inline_style_or_script() -> None:
    markup = str(rate_bars("x", "t", [rate_bar("A", 1, 2)]) +
                 count_bars("y", "t", [count_bar("B", 2)]))
    assert "style=" not in markup and "<script" not in markup and "href" not in markup
