"""Charts as inline SVG, drawn on the server: they work offline, print, and need no JavaScript.

Three kinds, enough for the reports: `line_chart` (series over time, optionally filled as
areas), `bar_chart` (grouped or stacked columns) and `hbar_chart` (one horizontal bar per item,
e.g. members per tier). Each returns a `Chart`: the SVG markup plus the same numbers as rows, so
the template puts a data table under the chart (for screen readers, print and copy-paste).

The CSP forbids `style=` attributes, so colours come from CSS classes: every series carries a
`key` and its shapes get the class `c-<key>` (static/reports.css colours them). Axis labels are
already formatted by the caller (`fmt` for numbers, `labels` for the x axis) in the user's
language. The charts compute nothing but coordinates: the figures come from the services.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from itertools import count
from typing import Any

from markupsafe import Markup, escape

from patron import formats

Number = int | float | Decimal
Format = Callable[[Any], str]

WIDTH = 640
HEIGHT = 260
# Room for the y-axis labels (left), the x-axis labels (bottom) and breathing space.
MARGIN_LEFT = 64
MARGIN_RIGHT = 12
MARGIN_TOP = 12
MARGIN_BOTTOM = 36
MAX_X_LABELS = 12

_ids = count(1)
_KEY = re.compile(r"[^a-z0-9_-]+")


@dataclass(frozen=True)
class Series:
    key: str  # for the CSS class c-<key>: earned, redeemed, expired, ...
    name: str  # shown in the legend and the table header, already translated
    values: Sequence[Number]


@dataclass
class Chart:
    svg: Markup
    title: str
    labels: list[str]
    series: list[Series]
    fmt: Format
    empty: bool = False
    kind: str = "line"
    legend: list[tuple[str, str]] = field(default_factory=list)  # (css class, name)

    @property
    def rows(self) -> list[tuple[str, list[str]]]:
        """(label, formatted values per series): the table under the chart."""
        return [
            (label, [self.fmt(s.values[i]) for s in self.series])
            for i, label in enumerate(self.labels)
        ]


def _num(value: Number) -> float:
    return float(value)


def _r(value: float) -> str:
    """A coordinate with at most 2 decimals and no trailing zeros: stable, short markup."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def css_key(key: str) -> str:
    return _KEY.sub("-", key.lower()) or "x"


def nice_step(span: float, ticks: int = 4) -> float:
    """A round step (1, 2, 2.5 or 5 × 10ⁿ) that cuts `span` into about `ticks` parts."""
    if span <= 0:
        return 1.0
    raw = span / max(ticks, 1)
    power = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * power + 1e-12:
            return m * power
    return 10 * power  # pragma: no cover - the loop always returns


def nice_domain(values: Sequence[Number], ticks: int = 4) -> tuple[float, float, list[float]]:
    """(low, high, tick values) covering the values and always zero; [0, 1] when all are 0."""
    lo = min([0.0, *(_num(v) for v in values)])
    hi = max([0.0, *(_num(v) for v in values)])
    if lo == hi:
        hi = 1.0
    step = nice_step(hi - lo, ticks)
    lo = math.floor(lo / step + 1e-9) * step
    hi = math.ceil(hi / step - 1e-9) * step
    n = round((hi - lo) / step)
    return lo, hi, [lo + i * step for i in range(n + 1)]


@dataclass(frozen=True)
class Scale:
    """A linear map from a domain [d0, d1] to a pixel range [p0, p1] (p1 < p0 for a y axis)."""

    d0: float
    d1: float
    p0: float
    p1: float

    def __call__(self, value: Number) -> float:
        if self.d1 == self.d0:
            return (self.p0 + self.p1) / 2
        return self.p0 + (_num(value) - self.d0) * (self.p1 - self.p0) / (self.d1 - self.d0)


@dataclass(frozen=True)
class Frame:
    width: int = WIDTH
    height: int = HEIGHT
    left: int = MARGIN_LEFT
    right: int = MARGIN_RIGHT
    top: int = MARGIN_TOP
    bottom: int = MARGIN_BOTTOM

    @property
    def x0(self) -> float:
        return float(self.left)

    @property
    def x1(self) -> float:
        return float(self.width - self.right)

    @property
    def y0(self) -> float:  # the bottom of the plot
        return float(self.height - self.bottom)

    @property
    def y1(self) -> float:  # the top of the plot
        return float(self.top)


# For a chart that spans the page rather than half of it: more room, same text size.
WIDE = Frame(width=960, height=280)


def x_positions(n: int, frame: Frame = Frame()) -> list[float]:
    """Where n points go along the x axis: the ends of the plot, or its middle for one."""
    if n <= 0:
        return []
    if n == 1:
        return [(frame.x0 + frame.x1) / 2]
    step = (frame.x1 - frame.x0) / (n - 1)
    return [frame.x0 + i * step for i in range(n)]


def label_every(n: int, most: int = MAX_X_LABELS) -> int:
    """Show every k-th x label so at most `most` appear."""
    return max(1, math.ceil(n / max(most, 1)))


def _text_width(text: str) -> float:
    """Roughly how wide an 11px axis label is; CJK characters are about twice as wide."""
    return sum(11.0 if ord(ch) > 0x2E80 else 6.5 for ch in text)


def labels_that_fit(labels: Sequence[str], frame: Frame) -> int:
    """How many x labels fit side by side (at most MAX_X_LABELS)."""
    widest = max((_text_width(label) for label in labels), default=0.0) + 12
    return max(2, min(MAX_X_LABELS, int((frame.x1 - frame.x0) // widest)))


def _open(frame: Frame, title: str, desc: str, kind: str) -> tuple[str, list[str]]:
    uid = f"chart-{next(_ids)}"
    head = [
        f'<svg class="chart-svg chart-{kind}" viewBox="0 0 {frame.width} {frame.height}" '
        f'role="img" aria-labelledby="{uid}-t {uid}-d" xmlns="http://www.w3.org/2000/svg" '
        f'preserveAspectRatio="xMidYMid meet">',
        f'<title id="{uid}-t">{escape(title)}</title>',
        f'<desc id="{uid}-d">{escape(desc)}</desc>',
    ]
    return uid, head


def _y_axis(frame: Frame, y: Scale, ticks: list[float], fmt: Format) -> list[str]:
    out = ['<g class="axis axis-y">']
    for tick in ticks:
        py = _r(y(tick))
        zero = " zero" if tick == 0 else ""
        out.append(
            f'<line class="grid{zero}" x1="{_r(frame.x0)}" x2="{_r(frame.x1)}" '
            f'y1="{py}" y2="{py}"/>'
        )
        value: Any = int(tick) if float(tick).is_integer() else tick
        out.append(
            f'<text class="tick" x="{_r(frame.x0 - 6)}" y="{py}" text-anchor="end" '
            f'dominant-baseline="middle">{escape(fmt(value))}</text>'
        )
    out.append("</g>")
    return out


def _x_axis(frame: Frame, xs: list[float], labels: list[str]) -> list[str]:
    every = label_every(len(labels), labels_that_fit(labels, frame))
    out = ['<g class="axis axis-x">']
    for i, (px, label) in enumerate(zip(xs, labels, strict=True)):
        if i % every:
            continue
        out.append(
            f'<text class="tick" x="{_r(px)}" y="{_r(frame.y0 + 18)}" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
    out.append("</g>")
    return out


def _empty(frame: Frame, head: list[str], message: str) -> Markup:
    return Markup(
        "".join(
            [
                *head,
                f'<text class="chart-empty" x="{frame.width // 2}" y="{frame.height // 2}" '
                f'text-anchor="middle">{escape(message)}</text>',
                "</svg>",
            ]
        )
    )


def _check(labels: Sequence[str], series: Sequence[Series]) -> None:
    for s in series:
        if len(s.values) != len(labels):
            raise ValueError(
                f"series {s.key!r} has {len(s.values)} values for {len(labels)} labels"
            )


def line_chart(
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    desc: str = "",
    fmt: Format = str,
    empty_message: str = "",
    area: bool = False,
    frame: Frame = Frame(),
) -> Chart:
    """One line per series over the labels (oldest first); `area` fills down to zero."""
    labels, series = list(labels), list(series)
    _check(labels, series)
    _uid, head = _open(frame, title, desc, "line")
    legend = [(f"c-{css_key(s.key)}", s.name) for s in series]
    if not labels or not series:
        return Chart(_empty(frame, head, empty_message), title, labels, series, fmt, True, "line")
    lo, hi, ticks = nice_domain([v for s in series for v in s.values])
    y = Scale(lo, hi, frame.y0, frame.y1)
    xs = x_positions(len(labels), frame)
    parts = [*head, *_y_axis(frame, y, ticks, fmt), *_x_axis(frame, xs, labels)]
    base = _r(y(0))
    for s in series:
        cls = f"c-{css_key(s.key)}"
        points = [(xs[i], y(v)) for i, v in enumerate(s.values)]
        line = " ".join(f"{_r(px)},{_r(py)}" for px, py in points)
        parts.append(f'<g class="series {cls}">')
        if area and len(points) > 1:
            poly = f"{_r(points[0][0])},{base} {line} {_r(points[-1][0])},{base}"
            parts.append(f'<polygon class="area" points="{poly}"/>')
        if len(points) > 1:
            parts.append(f'<polyline class="line" points="{line}"/>')
        for (px, py), label, v in zip(points, labels, s.values, strict=True):
            parts.append(
                f'<circle class="dot" cx="{_r(px)}" cy="{_r(py)}" r="3">'
                f"<title>{escape(label)}: {escape(s.name)} {escape(fmt(v))}</title></circle>"
            )
        parts.append("</g>")
    parts.append("</svg>")
    return Chart(Markup("".join(parts)), title, labels, series, fmt, False, "line", legend)


def bar_chart(
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    desc: str = "",
    fmt: Format = str,
    empty_message: str = "",
    stacked: bool = False,
    frame: Frame = Frame(),
) -> Chart:
    """Columns per label: side by side per series, or stacked (positives up, negatives down)."""
    labels, series = list(labels), list(series)
    _check(labels, series)
    _uid, head = _open(frame, title, desc, "bar")
    legend = [(f"c-{css_key(s.key)}", s.name) for s in series]
    if not labels or not series:
        return Chart(_empty(frame, head, empty_message), title, labels, series, fmt, True, "bar")
    if stacked:
        extents: list[float] = []
        for i in range(len(labels)):
            extents.append(sum(max(_num(s.values[i]), 0.0) for s in series))
            extents.append(sum(min(_num(s.values[i]), 0.0) for s in series))
        lo, hi, ticks = nice_domain(extents)
    else:
        lo, hi, ticks = nice_domain([v for s in series for v in s.values])
    y = Scale(lo, hi, frame.y0, frame.y1)
    band = (frame.x1 - frame.x0) / len(labels)
    centers = [frame.x0 + band * (i + 0.5) for i in range(len(labels))]
    inner = band * 0.8
    bar_w = inner if stacked else inner / len(series)
    parts = [*head, *_y_axis(frame, y, ticks, fmt), *_x_axis(frame, centers, labels)]
    up = [0.0] * len(labels)
    down = [0.0] * len(labels)
    for n, s in enumerate(series):
        cls = f"c-{css_key(s.key)}"
        parts.append(f'<g class="series {cls}">')
        for i, v in enumerate(s.values):
            value = _num(v)
            if stacked:
                start = up[i] if value >= 0 else down[i]
                end = start + value
                if value >= 0:
                    up[i] = end
                else:
                    down[i] = end
                left = centers[i] - inner / 2
            else:
                start, end = 0.0, value
                left = centers[i] - inner / 2 + n * bar_w
            top, bottom = sorted((y(start), y(end)))
            parts.append(
                f'<rect class="bar" x="{_r(left)}" y="{_r(top)}" width="{_r(bar_w)}" '
                f'height="{_r(bottom - top)}"><title>{escape(labels[i])}: {escape(s.name)} '
                f"{escape(fmt(v))}</title></rect>"
            )
        parts.append("</g>")
    parts.append("</svg>")
    kind = "stacked" if stacked else "bar"
    return Chart(Markup("".join(parts)), title, labels, series, fmt, False, kind, legend)


def hbar_chart(
    items: Sequence[tuple[str, Number]],
    *,
    title: str,
    desc: str = "",
    name: str = "",
    key: str = "bar",
    fmt: Format = str,
    empty_message: str = "",
    width: int = WIDTH,
    row_height: int = 30,
    label_width: int = 150,
) -> Chart:
    """One horizontal bar per (label, value), the value written after it; negatives go left."""
    labels = [label for label, _ in items]
    values = [v for _, v in items]
    series = [Series(key, name, values)]
    height = max(row_height * len(items) + 24, 60)
    frame = Frame(width=width, height=height, left=label_width, right=80, top=12, bottom=12)
    _uid, head = _open(frame, title, desc, "hbar")
    legend = [(f"c-{css_key(key)}", name)] if name else []
    if not items:
        return Chart(_empty(frame, head, empty_message), title, labels, series, fmt, True, "hbar")
    lo = min([0.0, *(_num(v) for v in values)])
    hi = max([0.0, *(_num(v) for v in values)])
    if lo == hi:
        hi = 1.0
    x = Scale(lo, hi, frame.x0, frame.x1)
    zero = x(0)
    parts = [*head, f'<g class="series c-{css_key(key)}">']
    for i, (label, v) in enumerate(items):
        top = frame.y1 + i * row_height
        mid = top + row_height / 2
        left, right = sorted((zero, x(v)))
        parts.append(
            f'<text class="tick label" x="{_r(frame.x0 - 8)}" y="{_r(mid)}" text-anchor="end" '
            f'dominant-baseline="middle">{escape(label)}</text>'
        )
        parts.append(
            f'<rect class="bar" x="{_r(left)}" y="{_r(top + 5)}" width="{_r(right - left)}" '
            f'height="{_r(row_height - 10)}"><title>{escape(label)}: {escape(fmt(v))}</title></rect>'
        )
        parts.append(
            f'<text class="value" x="{_r(right + 6)}" y="{_r(mid)}" '
            f'dominant-baseline="middle">{escape(fmt(v))}</text>'
        )
    parts.append(
        f'<line class="grid zero" x1="{_r(zero)}" x2="{_r(zero)}" y1="{_r(frame.y1)}" '
        f'y2="{_r(frame.y1 + row_height * len(items))}"/>'
    )
    parts.append("</g></svg>")
    return Chart(Markup("".join(parts)), title, labels, series, fmt, False, "hbar", legend)


# --- axis labels in the user's language -----------------------------------------------------


def month_label(day: date, lang: str) -> str:
    """en "Mar 2026", ko "2026년 3월", zh "2026年3月" (patron.formats, CLDR)."""
    return formats.short_month(day, lang)


def day_label(day: date, lang: str) -> str:
    """en "Mar 2", ko "3월 2일", zh "3月2日": short, for an axis (patron.formats, CLDR)."""
    return formats.short_day(day, lang)
