"""The SVG chart builder: well-formed, thresholds drawn, gaps kept, spikes kept, escaped."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from poolwarden.api.web.charts import (
    Threshold,
    downsample,
    in_scale,
    line_chart,
    thresholds_of,
)

NS = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # raises on malformed markup


def test_chart_has_the_series_and_the_thresholds_as_lines() -> None:
    points = [(float(t), 40.0 + t / 10) for t in range(0, 600, 10)]
    svg = line_chart(points, start=0, end=600, thresholds=thresholds_of(85.0, 98.0),
                     unit="°C", title="CPU1 Temp")
    root = parse(svg)
    assert root.tag == f"{NS}svg"
    assert root.get("role") == "img"
    label = root.get("aria-label") or ""
    assert "60 readings from 40 to 99 °C" in label
    assert "warning ≥ 85, critical ≥ 98" in label
    lines = root.findall(f"{NS}line")
    assert [ln.get("class") for ln in lines] == ["thr thr-warning", "thr thr-critical"]
    warn_y, crit_y = (float(ln.get("y1") or 0) for ln in lines)
    assert crit_y < warn_y  # higher values are drawn higher
    [path] = root.findall(f"{NS}path")
    d = path.get("d") or ""
    assert d.startswith("M")
    assert d.count("L") == 59
    texts = [t.text for t in root.findall(f"{NS}text")]
    assert "critical ≥ 98" in texts
    assert any(t and t.endswith("UTC") for t in texts)


def test_points_scale_into_the_plot_area() -> None:
    svg = line_chart([(0.0, 10.0), (100.0, 20.0)], start=0, end=100, width=200, height=100)
    d = parse(svg).find(f"{NS}path").get("d")  # type: ignore[union-attr]
    coords = [tuple(map(float, c.split(","))) for c in re.findall(r"[\d.]+,[\d.]+", d or "")]
    (x0, y0), (x1, y1) = coords
    assert 48 <= x0 < x1 <= 200 - 8  # inside the margins
    assert 8 <= y1 < y0 <= 100 - 20


def test_gaps_break_the_line() -> None:
    svg = line_chart([(0.0, 1.0), (1.0, 2.0), (2.0, None), (3.0, 3.0), (4.0, 4.0)],
                     start=0, end=4)
    d = parse(svg).find(f"{NS}path").get("d") or ""  # type: ignore[union-attr]
    assert d.count("M") == 2
    assert d.count("L") == 2


def test_no_readings_says_so() -> None:
    root = parse(line_chart([], start=0, end=60, title="Fan1"))
    assert "no readings" in (root.get("aria-label") or "")
    assert root.find(f"{NS}path") is None
    assert parse(line_chart([(5.0, None)], start=0, end=60)).find(f"{NS}path") is None


def test_sparkline_has_no_axes() -> None:
    root = parse(line_chart([(0.0, 1.0), (1.0, 2.0)], start=0, end=1, width=120, height=24,
                            compact=True, thresholds=[Threshold(5.0, "critical")]))
    assert "spark" in (root.get("class") or "")
    assert root.findall(f"{NS}text") == []
    assert len(root.findall(f"{NS}line")) == 1


def test_text_is_escaped() -> None:
    svg = line_chart([(0.0, 1.0)], start=0, end=1, unit="<b>", title='x"><script>')
    assert "<script>" not in svg
    assert "<b>" not in svg
    parse(svg)


def test_lower_thresholds_do_not_squash_a_temperature() -> None:
    limits = thresholds_of(None, 98.0, None, 3.0)
    assert [t.value for t in in_scale(limits)] == [98.0]
    root = parse(line_chart([(0.0, 50.0), (1.0, 55.0)], start=0, end=1, thresholds=limits))
    assert [ln.get("class") for ln in root.findall(f"{NS}line")] == ["thr thr-critical"]
    fan = thresholds_of(None, None, None, 480.0)  # a fan: only a minimum speed
    assert in_scale(fan) == fan
    root = parse(line_chart([(0.0, 4000.0)], start=0, end=1, thresholds=fan))
    assert len(root.findall(f"{NS}line")) == 1


def test_downsample_keeps_extremes_and_order() -> None:
    points = [(float(t), 50.0) for t in range(10_000)]
    points[5_000] = (5_000.0, 99.0)  # a one-second spike
    points[7_000] = (7_000.0, None)  # a gap
    reduced = downsample(points, 0, 10_000, columns=100)
    assert len(reduced) <= 3 * 100
    assert (5_000.0, 99.0) in reduced
    assert (7_000.0, None) in reduced
    assert [t for t, _ in reduced] == sorted(t for t, _ in reduced)
    assert downsample(points[:50], 0, 50, columns=100) == points[:50]
