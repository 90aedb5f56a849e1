"""Charts as inline SVG, built on the server from ``Operations.history``.

No chart library and no script: a line chart of a sensor's recent readings is a polyline,
its device thresholds are horizontal lines, and the result is part of the page (so the
strict Content-Security-Policy needs no exception, and the chart prints and works with
scripts off). Pure functions; colours come from CSS classes.

The vertical scale covers the data and the thresholds that matter (:func:`in_scale`), so
the distance to the critical line is visible at a glance. Long histories are reduced to
at most two points per pixel column (the lowest and the highest, in time order), so a
one-second spike still shows on a day's chart and a page never carries more than a few
hundred points per chart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from markupsafe import Markup, escape

Point = tuple[float, float | None]  # (epoch seconds, value; None = no reading)


@dataclass(frozen=True, slots=True)
class Threshold:
    """A device threshold drawn across the chart: ``kind`` is warning or critical."""

    value: float
    kind: str
    low: bool = False  # a lower threshold (fans: too slow)

    @property
    def label(self) -> str:
        return f"{self.kind} {'≤' if self.low else '≥'} {_fmt(self.value)}"


def thresholds_of(warn: float | None, crit: float | None, warn_low: float | None = None,
                  crit_low: float | None = None) -> list[Threshold]:
    """The thresholds a reading defines (``Reading`` fields), in drawing order."""
    pairs = [(warn, "warning", False), (crit, "critical", False),
             (warn_low, "warning", True), (crit_low, "critical", True)]
    return [Threshold(v, kind, low) for v, kind, low in pairs if v is not None]


def in_scale(thresholds: Sequence[Threshold]) -> list[Threshold]:
    """The thresholds the vertical scale stretches to: the upper ones (a temperature's
    lower limit near 0 °C would squash the line), or the lower ones when there are no
    upper ones (a fan's minimum speed). The others are drawn only if the data reach
    them."""
    upper = [t for t in thresholds if not t.low]
    return upper or list(thresholds)


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.2f}".rstrip("0").rstrip(".")


def downsample(points: Sequence[Point], start: float, end: float, columns: int,
               ) -> list[Point]:
    """At most two points per column of the time axis: its minimum and maximum, in time
    order. A gap (``None``) in a column is kept once, so the line still breaks there."""
    if len(points) <= 2 * columns or end <= start:
        return list(points)
    width = (end - start) / columns
    out: list[Point] = []
    bucket: list[Point] = []
    current = None
    for p in points:
        col = min(columns - 1, max(0, int((p[0] - start) / width)))
        if col != current and bucket:
            out.extend(_extremes(bucket))
            bucket = []
        current = col
        bucket.append(p)
    if bucket:
        out.extend(_extremes(bucket))
    return out


def _extremes(bucket: list[Point]) -> list[Point]:
    valued = [p for p in bucket if p[1] is not None]
    gap = [next(p for p in bucket if p[1] is None)] if len(valued) < len(bucket) else []
    if not valued:
        return gap
    lo = min(valued, key=lambda p: p[1] or 0.0)
    hi = max(valued, key=lambda p: p[1] or 0.0)
    return sorted({lo, hi, *gap}, key=lambda p: p[0])


def _svg(parts: list[str]) -> Markup:
    """The finished element. Safe: every text that did not come from this module (titles,
    units, labels) went through :func:`markupsafe.escape`; the rest are numbers."""
    return Markup("".join([*parts, "</svg>"]))  # noqa: S704


def _hhmm(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M")


def _summary(title: str, values: list[float], unit: str,
             thresholds: Sequence[Threshold]) -> str:
    u = f" {unit}" if unit else ""
    if not values:
        text = f"{title}: no readings in this period"
    else:
        text = (f"{title}: {len(values)} readings from {_fmt(min(values))} to "
                f"{_fmt(max(values))}{u}, latest {_fmt(values[-1])}{u}")
    if thresholds:
        text += "; " + ", ".join(t.label for t in thresholds)
    return text


def line_chart(points: Sequence[Point], *, start: float, end: float,
               thresholds: Sequence[Threshold] = (), unit: str = "", title: str = "",
               width: int = 640, height: int = 160, compact: bool = False) -> Markup:
    """An SVG line chart of ``points`` between ``start`` and ``end`` with ``thresholds``
    as dashed lines. ``compact``: a sparkline (no axes, no labels) for table rows."""
    left, right, top, bottom = (1, 1, 2, 2) if compact else (48, 8, 8, 20)
    plot_w, plot_h = width - left - right, height - top - bottom
    inside = [p for p in points if start <= p[0] <= end]
    pts = downsample(inside, start, end, max(1, plot_w))
    values = [v for _, v in pts if v is not None]
    label = _summary(title or "readings", [v for _, v in inside if v is not None], unit,
                     thresholds)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart'
             f'{" spark" if compact else ""}" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" role="img" aria-label="{escape(label)}">',
             f"<title>{escape(label)}</title>"]
    if not compact:
        parts.append(f'<rect class="frame" x="{left}" y="{top}" width="{plot_w}" '
                     f'height="{plot_h}"/>')
    if not values:
        if not compact:
            parts.append(f'<text class="empty" x="{left + plot_w / 2:.1f}" '
                         f'y="{top + plot_h / 2:.1f}" text-anchor="middle">no readings</text>')
        return _svg(parts)
    lo, hi = min(values + [t.value for t in in_scale(thresholds)]), \
        max(values + [t.value for t in in_scale(thresholds)])
    pad = (hi - lo) * 0.06 or max(1.0, abs(hi) * 0.05)
    lo, hi = lo - pad, hi + pad
    span_t = max(end - start, 1e-9)

    def x(t: float) -> float:
        return left + (t - start) / span_t * plot_w

    def y(v: float) -> float:
        return top + (hi - v) / (hi - lo) * plot_h

    for t in thresholds:
        if not lo <= t.value <= hi:  # off the scale: named in the title, not drawn
            continue
        parts.append(f'<line class="thr thr-{t.kind}" x1="{left}" x2="{left + plot_w}" '
                     f'y1="{y(t.value):.1f}" y2="{y(t.value):.1f}"/>')
        if not compact:
            parts.append(f'<text class="thr-label thr-{t.kind}" x="{left + plot_w - 2}" '
                         f'y="{y(t.value) - 3:.1f}" text-anchor="end">{escape(t.label)}</text>')
    path, pen_down = [], False
    for t_, v in pts:
        if v is None:
            pen_down = False
            continue
        path.append(f"{'L' if pen_down else 'M'}{x(t_):.1f},{y(v):.1f}")
        pen_down = True
    parts.append(f'<path class="series" d="{" ".join(path)}"/>')
    last_t, last_v = next((t_, v) for t_, v in reversed(pts) if v is not None)
    parts.append(f'<circle class="last" cx="{x(last_t):.1f}" cy="{y(last_v):.1f}" '
                 f'r="{1.5 if compact else 2.5}"/>')
    if not compact:
        u = f" {escape(unit)}" if unit else ""
        parts += [
            f'<text class="axis" x="{left - 4}" y="{top + 8}" text-anchor="end">'
            f"{_fmt(round(hi, 2))}{u}</text>",
            f'<text class="axis" x="{left - 4}" y="{top + plot_h}" text-anchor="end">'
            f"{_fmt(round(lo, 2))}{u}</text>",
            f'<text class="axis" x="{left}" y="{height - 5}">{_hhmm(start)}</text>',
            f'<text class="axis" x="{left + plot_w}" y="{height - 5}" text-anchor="end">'
            f"{_hhmm(end)} UTC</text>",
        ]
    return _svg(parts)


__all__ = ["Point", "Threshold", "downsample", "in_scale", "line_chart", "thresholds_of"]
