"""`funnelcast goals check`: every goal checked, printed and recorded; bad input exits 2.

The champions come from a small funnel fitted once in this module and handed to the command in
place of the registry's (training and registering them would take far longer than the checks).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import scoring.champions
from funnelcast.cli import app
from scoring.attainment import check_goal
from scoring.champions import ChampionRecord, Champions, LoadedModel
from scoring.forecast import forecast_models
from scoring.funnel import Funnel
from scoring.goal_store import add_goal, check_history
from scoring.goals import DEFAULT_AT_RISK, DEFAULT_ON_TRACK, Goal
from scoring.settings import Settings
from scoring.store import FunnelStore
from scoring.synthetic import generate_funnel
from training.pipeline import fit_models

DRAWS = "200"
# The synthetic data end on 2026-06-30.
CURRENT = Goal(
    name="Summer win rate",
    kpi="win_rate",
    direction="at_least",
    target=0.25,  # about the median forecast: neither sure nor hopeless
    period_start=date(2026, 6, 1),
    period_end=date(2026, 8, 31),
    owner="team-a",
)
PAST = Goal(
    name="Q1 deals",
    kpi="won_deals",
    direction="at_least",
    target=1,
    period_start=date(2026, 1, 1),
    period_end=date(2026, 3, 31),
    owner="team-b",
)


@dataclass(frozen=True)
class Fitted:
    funnel: Funnel
    models: dict[str, Any]


@pytest.fixture(scope="module")
def fitted() -> Fitted:
    funnel = generate_funnel(2_000, seed=7).as_funnel()
    models, skipped = fit_models(funnel, ("lead-conversion", "deal-cycle"), seed=0, threads=1)
    assert not skipped, skipped
    return Fitted(funnel, models)


def _champions(models: dict[str, Any]) -> Champions:
    return Champions(
        models={
            name: LoadedModel(ChampionRecord(name, "1", None), model, "registry")
            for name, model in models.items()
        }
    )


@pytest.fixture
def goals_home(home: Path, fitted: Fitted, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """A home holding the fitted funnel and two goals; the command gets the fitted champions."""
    store = FunnelStore.open(Settings().store_url)
    store.ingest(fitted.funnel, source="test")
    ids = {"current": add_goal(store.engine, CURRENT).id, "past": add_goal(store.engine, PAST).id}
    store.close()
    monkeypatch.setattr(scoring.champions, "load_champions", lambda *_: _champions(fitted.models))
    return ids


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["goals", "check", *args])
    return result.exit_code, result.stdout, result.stderr


def _history(goal_id: int) -> list[Any]:
    store = FunnelStore.open(Settings().store_url)
    try:
        return check_history(store.engine, goal_id)
    finally:
        store.close()


def test_check_prints_every_goal_and_records_it(goals_home: dict[str, int]) -> None:
    code, out, err = run("--draws", DRAWS)

    assert code == 0, err
    for text in ("1  Summer win rate (owner team-a)", "win_rate ≥ 25.0%, 2026-06-01 to 2026-08-31"):
        assert text in out, text
    assert "actual so far" in out and "forecast P10" in out and "chance" in out
    assert "what it would take: the rest of the period needs a win rate" in out
    assert "2  Q1 deals" in out and ": met" in out
    assert "recorded 2 checks" in err
    assert [len(_history(goal_id)) for goal_id in goals_home.values()] == [1, 1]


def test_json_gives_the_attainment_of_each_goal_by_id(
    goals_home: dict[str, int], fitted: Fitted
) -> None:
    code, out, err = run("--id", str(goals_home["current"]), "--draws", DRAWS, "--format", "json")

    assert code == 0, err
    (record,) = json.loads(out)
    assert record["goal_id"] == goals_home["current"]
    models = forecast_models(fitted.models, {name: "1" for name in fitted.models})
    expected = check_goal(CURRENT, fitted.funnel, models, draws=int(DRAWS)).as_record()
    assert {k: record[k] for k in expected} == expected
    (stored,) = _history(goals_home["current"])
    assert stored.id == record["check_id"]
    assert stored.check.probability == expected["probability"]
    assert stored.check.status == expected["status"]


def test_owner_narrows_the_goals(goals_home: dict[str, int]) -> None:
    code, out, err = run("--owner", "team-b", "--format", "json")

    assert code == 0, err
    assert [r["goal_id"] for r in json.loads(out)] == [goals_home["past"]]
    assert _history(goals_home["current"]) == []


def test_an_unknown_id_exits_2_and_records_nothing(goals_home: dict[str, int]) -> None:
    code, _, err = run("--id", str(goals_home["past"]), "--id", "999")

    assert code == 2
    assert "no goal with id 999" in err
    assert _history(goals_home["past"]) == []


def test_without_models_only_periods_over_are_checked(
    goals_home: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scoring.champions, "load_champions", lambda *_: Champions())

    code, _, err = run("--draws", DRAWS)

    assert code == 2
    assert "train and promote first" in err and "Summer win rate" in err
    assert [len(_history(goal_id)) for goal_id in goals_home.values()] == [0, 0]
    code, out, err = run("--id", str(goals_home["past"]))
    assert code == 0, err
    assert "met" in out


def test_status_thresholds_are_the_settings(
    goals_home: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (Settings().goal_on_track, Settings().goal_at_risk) == (
        DEFAULT_ON_TRACK,
        DEFAULT_AT_RISK,
    )
    monkeypatch.setenv("FUNNELCAST_GOAL_ON_TRACK", "0")
    monkeypatch.setenv("FUNNELCAST_GOAL_AT_RISK", "0")
    code, out, err = run("--id", str(goals_home["current"]), "--draws", DRAWS, "--format", "json")
    assert code == 0, err
    assert json.loads(out)[0]["status"] == "on_track"

    monkeypatch.setenv("FUNNELCAST_GOAL_AT_RISK", "0.5")  # above on-track: refused
    code, _, err = run("--id", str(goals_home["current"]))
    assert code == 2
    assert "FUNNELCAST_GOAL_AT_RISK" in err
