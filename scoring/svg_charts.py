"""Small charts as inline SVG text: no JavaScript, no network, readable in any mail client.

Every chart carries the numbers it draws as `data-*` attributes, so a test (or a curious
reader) can check them against the API without parsing geometry.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

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
