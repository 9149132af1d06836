"""The goals report a manager gets by e-mail (HTML, charts inline) or in a chat tool (Markdown).

One section per goal: target, actual so far, forecast P10/P50/P90 against the target (a chart),
the probability of meeting it with its status, the attainment history (a line), and what it
would take; then a roll-up per owner. The HTML is one file with no external resources; each
goal's figures are also in `data-*` attributes, so the numbers can be checked mechanically.
"""

from __future__ import annotations

import html
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from scoring.attainment import Attainment
from scoring.goal_store import StoredCheck, StoredGoal
from scoring.svg_charts import STATUS_COLOURS, interval_chart, line_chart


@dataclass(frozen=True)
class ReportItem:
    """A goal, its check now, and its history of checks (oldest first)."""

    stored: StoredGoal
    attainment: Attainment
    history: Sequence[StoredCheck]


def figure(kpi: str, value: float | None) -> str:
    """A KPI value as people read it: rates in percent, days with one decimal, else thousands."""
    if value is None or not math.isfinite(value):
        return "–"
    if kpi.endswith("_rate") or kpi.startswith("stage_conversion."):
        return f"{value:.1%}"
    if kpi.endswith("_days"):
        return f"{value:.1f}"
    return f"{value:,.0f}"


def _status_text(status: str) -> str:
    return status.replace("_", " ")


def _forecast(attainment: Attainment, name: str) -> float | None:
    return (attainment.forecast or {}).get(name)


def _owners(items: Sequence[ReportItem]) -> dict[str, list[ReportItem]]:
    groups: dict[str, list[ReportItem]] = defaultdict(list)
    for item in items:
        groups[item.stored.goal.owner or "(no owner)"].append(item)
    return dict(sorted(groups.items()))


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;color:#24292f;margin:16px;
max-width:860px}
h1{font-size:22px}h2{font-size:17px;margin:0 0 4px}
.goal{border:1px solid #d0d7de;border-radius:8px;padding:12px;margin:12px 0}
.pill{display:inline-block;color:#fff;border-radius:10px;padding:1px 9px;font-size:13px}
.meta{color:#57606a;font-size:13px}table{border-collapse:collapse}
td,th{padding:3px 10px;text-align:left;border-bottom:1px solid #eaeef2;font-size:14px}
.charts{display:flex;flex-wrap:wrap;gap:16px;margin-top:8px}
"""


def report_html(items: Sequence[ReportItem], title: str, generated_at: datetime) -> str:
    """The report as one self-contained HTML page."""
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='meta'>Generated {generated_at:%Y-%m-%d %H:%M} UTC. Probabilities come from "
        "Monte Carlo draws of the champion models; P10-P90 holds the period's value in 8 of 10 "
        "draws.</p>",
        _owner_table_html(items),
    ]
    for item in items:
        parts.append(_goal_html(item))
    parts.append("</body></html>")
    return "\n".join(parts)


def _owner_table_html(items: Sequence[ReportItem]) -> str:
    rows = ["<table><tr><th>owner</th><th>goals</th><th>on track</th><th>at risk</th>"
            "<th>off track</th><th>met</th><th>missed</th></tr>"]  # fmt: skip
    for owner, group in _owners(items).items():
        counts = {s: sum(i.attainment.status == s for i in group) for s in STATUS_COLOURS}
        cells = "".join(f"<td>{counts[s]}</td>" for s in STATUS_COLOURS)
        rows.append(f"<tr><td>{html.escape(owner)}</td><td>{len(group)}</td>{cells}</tr>")
    rows.append("</table>")
    return "".join(rows)


def _goal_html(item: ReportItem) -> str:
    goal, attainment = item.stored.goal, item.attainment
    colour = STATUS_COLOURS.get(attainment.status, "#57606a")
    p10, p50, p90 = (_forecast(attainment, n) for n in ("p10", "p50", "p90"))
    segment = ", ".join(f"{k}={v}" for k, v in goal.segment.items()) or "all leads"
    direction = "at least" if goal.direction == "at_least" else "at most"
    history = [
        (f"{check.check.checked_at:%Y-%m-%d %H:%M}", check.check.probability)
        for check in item.history
        if check.check.checked_at is not None
    ]
    attributes = (
        f'data-goal-id="{item.stored.id}" data-status="{attainment.status}" '
        f'data-probability="{attainment.probability:.6g}" '
        f'data-p10="{"" if p10 is None else f"{p10:.6g}"}" '
        f'data-p50="{"" if p50 is None else f"{p50:.6g}"}" '
        f'data-p90="{"" if p90 is None else f"{p90:.6g}"}"'
    )
    return (
        f"<section class='goal' {attributes}>"
        f"<h2>{html.escape(goal.name)} "
        f"<span class='pill' style='background:{colour}'>{_status_text(attainment.status)}</span>"
        f"</h2><div class='meta'>{html.escape(goal.kpi)} {direction} "
        f"{figure(goal.kpi, goal.target)}, {goal.period_start} to {goal.period_end}, "
        f"{html.escape(segment)}; owner {html.escape(goal.owner or '–')}</div>"
        f"<table><tr><td>probability of meeting it</td><td><b>{attainment.probability:.0%}</b>"
        f"</td></tr><tr><td>actual so far</td><td>{figure(goal.kpi, attainment.actual)}</td></tr>"
        f"<tr><td>forecast for the period (P10 / P50 / P90)</td><td>{figure(goal.kpi, p10)} / "
        f"{figure(goal.kpi, p50)} / {figure(goal.kpi, p90)}</td></tr>"
        f"<tr><td>what it would take</td><td>{html.escape(attainment.takes.message)}</td></tr>"
        "</table><div class='charts'>"
        + interval_chart(
            p10, p50, p90, goal.target, attainment.actual, label=f"{goal.name}: forecast vs target"
        )
        + line_chart(history, label=f"{goal.name}: probability over time")
        + "</div></section>"
    )


def report_markdown(items: Sequence[ReportItem], title: str, generated_at: datetime) -> str:
    """The report as Markdown for chat tools (numbers only, no charts)."""
    lines = [f"# {title}", "", f"_Generated {generated_at:%Y-%m-%d %H:%M} UTC._", ""]
    lines += ["| owner | goals | on track | at risk | off track | met | missed |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for owner, group in _owners(items).items():
        counts = [sum(i.attainment.status == s for i in group) for s in STATUS_COLOURS]
        lines.append(f"| {owner} | {len(group)} | " + " | ".join(map(str, counts)) + " |")
    lines.append("")
    for item in items:
        goal, attainment = item.stored.goal, item.attainment
        p10, p50, p90 = (_forecast(attainment, n) for n in ("p10", "p50", "p90"))
        direction = "at least" if goal.direction == "at_least" else "at most"
        trend = " → ".join(
            f"{c.check.probability:.0%}"
            for c in item.history[-6:]
            if c.check.probability is not None
        )
        lines += [
            f"## {goal.name}: **{_status_text(attainment.status)}** "
            f"({attainment.probability:.0%} likely)",
            f"- {goal.kpi} {direction} {figure(goal.kpi, goal.target)}, "
            f"{goal.period_start} to {goal.period_end}; owner {goal.owner or '–'}",
            f"- actual so far: {figure(goal.kpi, attainment.actual)}; forecast P10 / P50 / P90: "
            f"{figure(goal.kpi, p10)} / {figure(goal.kpi, p50)} / {figure(goal.kpi, p90)}",
            f"- what it would take: {attainment.takes.message}",
        ]
        if trend:
            lines.append(f"- probability over the last checks: {trend}")
        lines.append("")
    return "\n".join(lines)
