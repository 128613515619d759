"""Small server-rendered SVG charts for the admin's usage page: bars (stacked) and lines, no JavaScript.

Every text goes through format_html, so a model's name or an error code can never become markup.
"""

import math
from dataclasses import dataclass

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 52, 12, 14, 30
PALETTE = ["#417690", "#e0a030", "#8a8a8a", "#ba2121", "#5b9a4f", "#7a5aa6"]


@dataclass(frozen=True)
class Chart:
    title: str
    svg: SafeString

    def __str__(self) -> str:
        return self.svg

    def __html__(self) -> str:
        return self.svg


@dataclass
class Series:
    name: str
    values: list[float | None]
    color: str = ""


def nice_ceiling(value: float) -> float:
    """The top of the y axis: 1, 2, 2.5 or 5 times a power of ten, at least the value."""
    if value <= 0:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


def _f(value: float) -> str:
    """A coordinate (format_html escapes its arguments first, so numbers are formatted before)."""
    return f"{value:.1f}"


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def _frame(
    kind: str, title: str, labels: list[str], top: float, unit: str, body: SafeString, legend: list[Series]
) -> "Chart":
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    grid = []
    for i in range(3):
        value = top * i / 2
        y = TOP + plot_h - plot_h * i / 2
        grid.append((LEFT, _f(y), WIDTH - RIGHT, _f(y), LEFT - 6, _f(y + 4), f"{_number(value)}{unit}"))
    grid_svg = format_html_join(
        "",
        '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#ddd"/>'
        '<text x="{}" y="{}" text-anchor="end" font-size="11" fill="#666">{}</text>',
        grid,
    )
    slot = plot_w / max(len(labels), 1)
    every = max(1, math.ceil(len(labels) / 10))  # at most about ten dates under the axis
    ticks = [
        (_f(LEFT + slot * (i + 0.5)), HEIGHT - BOTTOM + 16, label)
        for i, label in enumerate(labels)
        if i % every == 0 or i == len(labels) - 1
    ]
    ticks_svg = format_html_join(
        "", '<text x="{}" y="{}" text-anchor="middle" font-size="11" fill="#666">{}</text>', ticks
    )
    first = WIDTH - RIGHT - 110 * len(legend)
    legend_svg = format_html_join(
        "",
        '<rect x="{}" y="2" width="10" height="10" fill="{}"/><text x="{}" y="11" font-size="11" fill="#333">{}</text>',
        [(first + 110 * i, s.color, first + 110 * i + 14, s.name) for i, s in enumerate(legend)],
    )
    svg = format_html(
        '<svg class="usage-chart" data-chart="{}" role="img" aria-label="{}" viewBox="0 0 {} {}" width="100%"'
        ' xmlns="http://www.w3.org/2000/svg"><title>{}</title>{}{}{}{}</svg>',
        kind,
        title,
        WIDTH,
        HEIGHT,
        title,
        grid_svg,
        body,
        ticks_svg,
        legend_svg,
    )
    return Chart(title, svg)


def _colored(series: list[Series]) -> list[Series]:
    return [Series(s.name, s.values, s.color or PALETTE[i % len(PALETTE)]) for i, s in enumerate(series)]


def bar_chart(*, name: str, title: str, labels: list[str], series: list[Series], unit: str = "") -> Chart:
    """Stacked bars, one per label; each series a colour."""
    series = _colored(series)
    totals = [sum(s.values[i] or 0 for s in series) for i in range(len(labels))]
    top = nice_ceiling(max(totals, default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(labels), 1)
    bars = []
    for i, label in enumerate(labels):
        base = 0.0
        for s in series:
            value = s.values[i] or 0
            if value <= 0:
                continue
            h = plot_h * value / top
            y = TOP + plot_h - plot_h * base / top - h
            bars.append(
                (
                    _f(LEFT + slot * i + slot * 0.15),
                    _f(y),
                    _f(slot * 0.7),
                    _f(h),
                    s.color,
                    label,
                    s.name,
                    _number(value),
                )
            )
            base += value
    body = format_html_join(
        "",
        '<rect class="bar" x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}: {} {}</title></rect>',
        bars,
    )
    legend = series if len(series) > 1 else []
    return _frame(name, title, labels, top, unit, body, legend)


def line_chart(*, name: str, title: str, labels: list[str], series: list[Series], unit: str = "") -> Chart:
    """One line per series; a missing value (None) breaks the line, a lone point shows as a dot."""
    series = _colored(series)
    values = [v for s in series for v in s.values if v is not None]
    top = nice_ceiling(max(values, default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(labels), 1)
    parts = []
    for s in series:
        points = []
        runs: list[list[tuple[float, float]]] = [[]]
        for i, value in enumerate(s.values):
            if value is None:
                runs.append([])
                continue
            xy = (LEFT + slot * (i + 0.5), TOP + plot_h - plot_h * value / top)
            runs[-1].append(xy)
            points.append((_f(xy[0]), _f(xy[1]), s.color, labels[i], s.name, _number(value)))
        for run in runs:
            if len(run) > 1:
                path = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
                parts.append(
                    format_html('<polyline class="line" points="{}" fill="none" stroke="{}" stroke-width="2"/>', path,
                                s.color)
                )  # fmt: skip
        parts.append(
            format_html_join(
                "",
                '<circle class="point" cx="{}" cy="{}" r="3" fill="{}"><title>{}: {} {}</title></circle>',
                points,
            )
        )
    return _frame(name, title, labels, top, unit, mark_safe("".join(parts)), series)
