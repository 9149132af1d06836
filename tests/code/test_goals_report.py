"""The goals report: self-contained HTML with the figures it draws, and Markdown."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import pandas as pd

from scoring.attainment import Attainment, WhatItTakes
from scoring.goal_store import GoalCheck, StoredCheck, StoredGoal
from scoring.goals import Goal
from scoring.goals_report import ReportItem, report_html, report_markdown

NOW = datetime(2026, 6, 20, 12, 0, tzinfo=UTC)


def _item(goal_id: int, kpi: str, target: float, status: str, probability: float) -> ReportItem:
    goal = Goal(
        name=f"goal {goal_id} <b>",
        kpi=kpi,
        direction="at_least",
        target=target,
        period_start=date(2026, 7, 1),
        period_end=date(2026, 9, 30),
        owner="nordics" if goal_id % 2 else None,
    )
    attainment = Attainment(
        goal=goal,
        as_of=pd.Timestamp("2026-06-20"),
        state="future",
        actual=None,
        forecast={"mean": target, "p10": target * 0.8, "p50": target * 0.95, "p90": target * 1.1},
        probability=probability,
        status=status,
        takes=WhatItTakes("extra_leads_per_week", 12.0, "about 12 more new leads a week"),
    )
    history = [
        StoredCheck(i, goal_id, GoalCheck(status=status, probability=p, checked_at=NOW))
        for i, p in enumerate((0.2, 0.4, probability))
    ]
    return ReportItem(StoredGoal(goal_id, goal, NOW, NOW), attainment, history)


def test_the_html_report_is_self_contained_and_carries_its_figures() -> None:
    items = [
        _item(1, "won_revenue", 500_000, "at_risk", 0.45),
        _item(2, "win_rate", 0.25, "on_track", 0.8),
    ]

    page = report_html(items, "Goals", NOW)

    assert "<script" not in page
    assert not re.search(r"(src|href)=['\"]?https?:", page)  # nothing fetched from elsewhere
    sections = re.findall(r"<section class='goal' ([^>]*)>", page)
    assert len(sections) == 2
    first = dict(re.findall(r'data-([a-z0-9-]+)="([^"]*)"', sections[0]))
    assert first == {
        "goal-id": "1",
        "status": "at_risk",
        "probability": "0.45",
        "p10": "400000",
        "p50": "475000",
        "p90": "550000",
    }
    assert "goal 1 &lt;b&gt;" in page  # names are escaped
    assert "25.0%" in page and "500,000" in page  # rates in percent, money with separators
    assert page.count("<svg") == 4  # an interval and a history chart per goal


def test_the_markdown_report_lists_every_goal_and_the_owner_roll_up() -> None:
    items = [_item(1, "won_revenue", 500_000, "at_risk", 0.45), _item(2, "lead_count", 900,
             "off_track", 0.1)]  # fmt: skip

    text = report_markdown(items, "Goals", NOW)

    assert "| nordics | 1 | 0 | 1 | 0 | 0 | 0 |" in text
    assert "| (no owner) | 1 | 0 | 0 | 1 | 0 | 0 |" in text
    assert "**at risk** (45% likely)" in text
    assert "400,000 / 475,000 / 550,000" in text
    assert "20% → 40% → 45%" in text
