"""Small charts as inline SVG text: no JavaScript, no network, readable in any mail client.

Every chart carries the numbers it draws as `data-*` attributes, so a test (or a curious
reader) can check them against the API without parsing geometry.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable, Sequence

STATUS_COLOURS = {
    "on_track": "#1a7f37",
    "at_risk": "#b58100",
    "off_track": "#cf222e",
    "met": "#1a7f37",
    "missed": "#cf222e",
}
_GREY = "#8c959f"
_BAND = "#b6d4fe"


def _number(value: float | None) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.6g}"


def interval_chart(
    p10: float | None,
    p50: float | None,
    p90: float | None,
    target: float,
    actual: float | None = None,
    *,
    width: int = 320,
    height: int = 44,
    label: str = "",
) -> str:
    """The forecast's P10-P90 band with its P50, the target line and the actual so far."""
    values = [v for v in (p10, p50, p90, target, actual, 0.0) if v is not None and math.isfinite(v)]
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    pad = 8

    def x(value: float) -> float:
        return pad + (value - low) / span * (width - 2 * pad)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" class="interval-chart" '
        f'aria-label="{html.escape(label)}" data-p10="{_number(p10)}" data-p50="{_number(p50)}" '
        f'data-p90="{_number(p90)}" data-target="{_number(target)}" '
        f'data-actual="{_number(actual)}">',
        f'<line x1="{pad}" y1="{height - 10}" x2="{width - pad}" y2="{height - 10}" '
        f'stroke="{_GREY}" stroke-width="1"/>',
    ]
    if p10 is not None and p90 is not None and math.isfinite(p10) and math.isfinite(p90):
        parts.append(
            f'<rect x="{x(p10):.1f}" y="8" width="{max(x(p90) - x(p10), 1):.1f}" height="16" '
            f'fill="{_BAND}"><title>P10-P90</title></rect>'
        )
    if p50 is not None and math.isfinite(p50):
        parts.append(
            f'<line x1="{x(p50):.1f}" y1="6" x2="{x(p50):.1f}" y2="26" stroke="#0550ae" '
            f'stroke-width="2"><title>P50</title></line>'
        )
    if actual is not None and math.isfinite(actual):
        parts.append(
            f'<circle cx="{x(actual):.1f}" cy="16" r="4" fill="#24292f"><title>actual so far'
            f"</title></circle>"
        )
    parts.append(
        f'<line x1="{x(target):.1f}" y1="2" x2="{x(target):.1f}" y2="{height - 6}" '
        f'stroke="#cf222e" stroke-dasharray="3 2" stroke-width="2"><title>target</title></line>'
    )
    parts.append("</svg>")
    return "".join(parts)


def line_chart(
    points: Sequence[tuple[str, float | None]],
    *,
    width: int = 320,
    height: int = 60,
    low: float | None = 0.0,
    high: float | None = 1.0,
    label: str = "",
) -> str:
    """A line through (label, value) points in order, e.g. a goal's probability over checks."""
    values = [v for _, v in points if v is not None and math.isfinite(v)]
    bottom = low if low is not None else (min(values) if values else 0.0)
    top = high if high is not None else (max(values) if values else 1.0)
    span = (top - bottom) or 1.0
    pad = 6
    step = (width - 2 * pad) / max(len(points) - 1, 1)
    coordinates = [
        (pad + i * step, height - pad - (v - bottom) / span * (height - 2 * pad))
        for i, (_, v) in enumerate(points)
        if v is not None and math.isfinite(v)
    ]
    data = ",".join(_number(v) for _, v in points)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" class="line-chart" '
        f'aria-label="{html.escape(label)}" data-values="{data}">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="none" stroke="{_GREY}" '
        f'stroke-width="0.5"/>',
    ]
    if len(coordinates) > 1:
        path = " ".join(f"{cx:.1f},{cy:.1f}" for cx, cy in coordinates)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#0550ae" stroke-width="2"/>')
    for (cx, cy), (name, value) in zip(coordinates, points, strict=False):
        parts.append(
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="2.5" fill="#0550ae">'
            f"<title>{html.escape(name)}: {_number(value)}</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)


# -- dashboard charts: history with a forecast fan, bars with intervals, calibration ----------

Formatter = Callable[[float], str]


def short_number(value: float) -> str:
    """Axis labels: 1.2k, 3.4M, 0.35."""
    size = abs(value)
    if size >= 1e6:
        return f"{value / 1e6:.3g}M"
    if size >= 1e3:
        return f"{value / 1e3:.3g}k"
    return f"{value:.3g}"


def _series(values: Sequence[float | None]) -> str:
    return ",".join(_number(v) for v in values)


def _finite(values: Sequence[float | None]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def _text(x: float, y: float, text: str, anchor: str = "start", size: int = 11) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" fill="#57606a" '
        f'text-anchor="{anchor}">{html.escape(text)}</text>'
    )


def fan_chart(
    history: Sequence[tuple[str, float | None]],
    forecast: Sequence[tuple[str, float | None, float | None, float | None]],
    *,
    width: int = 560,
    height: int = 180,
    label: str = "",
    formatter: Formatter = short_number,
) -> str:
    """A KPI's history (a line over (period, value)) followed by its forecast (period, P10,
    P50, P90) as a fan: the P10-P90 band and the P50, dashed."""
    p10s: list[float | None] = [row[1] for row in forecast]
    p50s: list[float | None] = [row[2] for row in forecast]
    p90s: list[float | None] = [row[3] for row in forecast]
    values = _finite([v for _, v in history] + p10s + p50s + p90s)
    top = max([*values, 0.0]) * 1.05 or 1.0
    bottom = min([*values, 0.0])
    left, right, upper, lower = 48, 10, 10, 22
    count = len(history) + len(forecast)
    step = (width - left - right) / max(count - 1, 1)

    def x(index: int) -> float:
        return left + index * step

    def y(value: float) -> float:
        return upper + (top - value) / ((top - bottom) or 1.0) * (height - upper - lower)

    periods = [name for name, _ in history] + [row[0] for row in forecast]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" class="fan-chart" '
        f'aria-label="{html.escape(label)}" '
        f'data-history-periods="{html.escape(",".join(n for n, _ in history))}" '
        f'data-history="{_series([v for _, v in history])}" '
        f'data-forecast-periods="{html.escape(",".join(row[0] for row in forecast))}" '
        f'data-p10="{_series(p10s)}" data-p50="{_series(p50s)}" data-p90="{_series(p90s)}">',
        f'<line x1="{left}" y1="{y(bottom):.1f}" x2="{width - right}" y2="{y(bottom):.1f}" '
        f'stroke="{_GREY}" stroke-width="1"/>',
        _text(left - 4, y(top) + 4, formatter(top), "end"),
        _text(left - 4, y(bottom) + 4, formatter(bottom), "end"),
    ]
    if periods:
        parts.append(_text(x(0), height - 6, periods[0]))
        parts.append(_text(x(count - 1), height - 6, periods[-1], "end"))
    # The fan starts at the last actual, so band and line join the history.
    anchor = next(((len(history) - 1, v) for _, v in reversed(history[-1:]) if v is not None), None)
    band = [
        (len(history) + i, lo, hi)
        for i, (lo, hi) in enumerate(zip(p10s, p90s, strict=True))
        if lo is not None and hi is not None
    ]
    if band:
        start = [(anchor[0], anchor[1], anchor[1])] if anchor else []
        edge = start + band
        points = [f"{x(i):.1f},{y(hi):.1f}" for i, _, hi in edge]
        points += [f"{x(i):.1f},{y(lo):.1f}" for i, lo, _ in reversed(edge)]
        parts.append(
            f'<polygon points="{" ".join(points)}" fill="{_BAND}" fill-opacity="0.8">'
            "<title>forecast P10-P90</title></polygon>"
        )
        parts.append(
            f'<line x1="{x(len(history)):.1f}" y1="{upper}" x2="{x(len(history)):.1f}" '
            f'y2="{height - lower}" stroke="{_GREY}" stroke-dasharray="2 3"/>'
        )
    line = [(i, v) for i, (_, v) in enumerate(history) if v is not None and math.isfinite(v)]
    if len(line) > 1:
        path = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in line)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#24292f" stroke-width="2"/>')
    for i, v in line:
        parts.append(
            f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="2.5" fill="#24292f">'
            f"<title>{html.escape(history[i][0])}: {html.escape(formatter(v))}</title></circle>"
        )
    median = [(len(history) + i, v) for i, v in enumerate(p50s) if v is not None]
    if median:
        joined = ([anchor] if anchor else []) + median
        path = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in joined)
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="#0550ae" stroke-width="2" '
            f'stroke-dasharray="5 3"><title>forecast P50</title></polyline>'
        )
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(
    labels: Sequence[str],
    values: Sequence[float | None],
    *,
    low: Sequence[float | None] | None = None,
    high: Sequence[float | None] | None = None,
    notes: Sequence[str] | None = None,
    width: int = 560,
    bar_height: int = 20,
    label_width: int = 200,
    label: str = "",
    formatter: Formatter = short_number,
) -> str:
    """Horizontal bars, one per label, with optional P10-P90 whiskers (`low`, `high`) and a
    note after each bar (say a conversion rate)."""
    gap = 6
    height = len(labels) * (bar_height + gap) + gap
    bounds = _finite(list(values) + list(high or []))
    top = max([*bounds, 0.0]) or 1.0
    note_width = 52 if notes else 0
    span = width - label_width - note_width - 56

    def x(value: float) -> float:
        return label_width + max(value, 0.0) / top * span

    attributes = (
        f'data-labels="{html.escape(json.dumps(list(labels)))}" data-values="{_series(values)}"'
    )
    if low is not None and high is not None:
        attributes += f' data-low="{_series(low)}" data-high="{_series(high)}"'
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" class="bar-chart" '
        f'aria-label="{html.escape(label)}" {attributes}>'
    ]
    for index, (name, value) in enumerate(zip(labels, values, strict=True)):
        top_y = gap + index * (bar_height + gap)
        middle = top_y + bar_height / 2 + 4
        fits = max(8, (label_width - 10) // 6)  # characters of 11 px text in the label room
        shown = name if len(name) <= fits else name[: fits - 1] + "…"
        parts.append(_text(label_width - 6, middle, shown, "end"))
        if value is None or not math.isfinite(value):
            parts.append(_text(label_width + 4, middle, "–"))
            continue
        parts.append(
            f'<rect x="{label_width}" y="{top_y}" width="{max(x(value) - label_width, 1):.1f}" '
            f'height="{bar_height}" fill="#6e9fd8"><title>{html.escape(name)}: '
            f"{html.escape(formatter(value))}</title></rect>"
        )
        whisker_end = x(value)
        if low is not None and high is not None:
            lo, hi = low[index], high[index]
            if lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi):
                parts.append(
                    f'<line x1="{x(lo):.1f}" y1="{top_y + bar_height / 2}" x2="{x(hi):.1f}" '
                    f'y2="{top_y + bar_height / 2}" stroke="#24292f" stroke-width="1.5">'
                    "<title>P10-P90</title></line>"
                )
                whisker_end = max(whisker_end, x(hi))
        parts.append(_text(whisker_end + 4, middle, formatter(value)))
        if notes:
            parts.append(_text(width - 4, middle, notes[index], "end"))
    parts.append("</svg>")
    return "".join(parts)


def calibration_chart(
    predicted: Sequence[float],
    observed: Sequence[float],
    leads: Sequence[int],
    *,
    size: int = 220,
    label: str = "",
) -> str:
    """Mean prediction against observed rate per bin, with the diagonal of perfect calibration."""
    top = max([*predicted, *observed, 0.05]) * 1.1
    pad = 30

    def at(value: float) -> float:
        return pad + value / top * (size - 2 * pad)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" '
        f'viewBox="0 0 {size} {size}" role="img" class="calibration-chart" '
        f'aria-label="{html.escape(label)}" data-predicted="{_series(predicted)}" '
        f'data-observed="{_series(observed)}" data-leads="{",".join(map(str, leads))}">',
        f'<rect x="{pad}" y="{pad}" width="{size - 2 * pad}" height="{size - 2 * pad}" '
        f'fill="none" stroke="{_GREY}" stroke-width="0.5"/>',
        f'<line x1="{pad}" y1="{size - pad}" x2="{size - pad}" y2="{pad}" stroke="{_GREY}" '
        f'stroke-dasharray="3 3"><title>perfect calibration</title></line>',
        _text(pad, size - pad + 14, "0"),
        _text(size - pad, size - pad + 14, f"{top:.0%}", "end"),
        _text(size / 2, size - 4, "mean prediction", "middle"),
        _text(pad - 4, pad + 4, f"{top:.0%}", "end"),
        _text(6, pad - 12, "observed rate"),
    ]
    for p, o, n in zip(predicted, observed, leads, strict=True):
        parts.append(
            f'<circle cx="{at(p):.1f}" cy="{size - at(o):.1f}" r="3.5" fill="#0550ae">'
            f"<title>predicted {p:.1%}, observed {o:.1%} ({n} leads)</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)
