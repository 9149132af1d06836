"""The goals report shows, for every goal, the API's own probability, status and forecast."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from funnelcast.cli import app as cli
from tests.api.conftest import Api

DRAWS = 200
GOALS: list[dict[str, Any]] = [
    {"name": "Q3 revenue", "kpi": "won_revenue", "direction": "at_least", "target": 2_000_000,
     "period_start": "2026-07-01", "period_end": "2026-09-30", "owner": "emea"},
    {"name": "Summer win rate", "kpi": "win_rate", "direction": "at_least", "target": 0.2,
     "period_start": "2026-06-01", "period_end": "2026-08-31", "owner": "emea"},
    {"name": "Q1 deals", "kpi": "won_deals", "direction": "at_least", "target": 1,
     "period_start": "2026-01-01", "period_end": "2026-03-31"},
]  # fmt: skip


def _sections(page: str) -> dict[str, dict[str, str]]:
    sections = {}
    for attributes in re.findall(r"<section class='goal' ([^>]*)>", page):
        values = dict(re.findall(r'data-([a-z0-9-]+)="([^"]*)"', attributes))
        sections[values["goal-id"]] = values
    return sections


def _number(text: str) -> float | None:
    return float(text) if text else None


def test_the_report_carries_the_apis_figures_for_every_goal(
    full_api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The HTML report (the Markdown one is rendered from the same checks: test_goals_report
    in tests/code holds its layout)."""
    output_format = "html"
    manager = full_api.headers("manager")
    ids = []
    for goal in GOALS:
        response = full_api.client.post("/v1/goals", json=goal, headers=manager)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    monkeypatch.setenv("FUNNELCAST_HOME", str(full_api.settings.home))
    monkeypatch.setenv("FUNNELCAST_MLFLOW_TRACKING_URI", full_api.settings.tracking_uri)
    out = tmp_path / f"report.{output_format}"

    result = CliRunner().invoke(
        cli,
        [
            "goals",
            "report",
            "--out",
            str(out),
            "--format",
            output_format,
            "--draws",
            str(DRAWS),
        ],
    )

    assert result.exit_code == 0, result.stderr
    text = out.read_text(encoding="utf-8")
    sections = _sections(text)
    for goal_id in ids:
        answer = full_api.client.get(
            f"/v1/goals/{goal_id}/attainment?draws={DRAWS}", headers=full_api.headers("viewer")
        )
        assert answer.status_code == 200, answer.text
        attainment = answer.json()["attainment"]
        forecast = attainment["forecast"] or {}
        shown = sections[str(goal_id)]
        assert shown["status"] == attainment["status"]
        assert float(shown["probability"]) == pytest.approx(attainment["probability"], rel=1e-5)
        for name in ("p10", "p50", "p90"):
            expected = forecast.get(name)
            value = _number(shown[name])
            if expected is None:
                assert value is None
            else:
                assert value == pytest.approx(expected, rel=1e-5), name
