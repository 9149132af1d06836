"""Goals on the dashboard: each goal's check, as `GET /v1/goals/{id}/attainment` makes it
(same engine, draws, seed and status thresholds; recorded in the goal's history when it is
computed), and the goal form's fields, parsed by `scoring.goals.parse_goal` like every goal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import pandas as pd
import sqlalchemy as sa
from markupsafe import Markup

from scoring.attainment import Attainment, check_goal
from scoring.errors import FunnelcastInputError
from scoring.forecast import ForecastModels
from scoring.forecast_kpis import FORECAST_KPIS
from scoring.funnel import Funnel
from scoring.goal_store import StoredCheck, StoredGoal, check_history, record_check
from scoring.goals import GOAL_FIELDS, Goal, GoalError, GoalProblem, parse_goal
from scoring.goals_report import figure
from scoring.settings import Settings
from scoring.svg_charts import interval_chart, line_chart
from serve.dashboard.cache import ResultCache
from serve.dashboard.panels import SEED, segment_text
from serve.deps import NO_FORECAST_MODELS
from serve.errors import ApiError
from serve.forecast_schemas import DEFAULT_DRAWS, check_budget

HISTORY_CHECKS = 30


class GoalNotCheckableError(Exception):
    """Why a goal cannot be checked now (its KPI is not forecast, no models, too long)."""


@dataclass(frozen=True)
class GoalCard:
    stored: StoredGoal
    attainment: Attainment | None
    problem: str
    history: list[StoredCheck]
    forecast_chart: Markup = field(default_factory=Markup)
    history_chart: Markup = field(default_factory=Markup)

    @property
    def goal(self) -> Goal:
        return self.stored.goal

    def shown(self, value: float | None) -> str:
        return figure(self.goal.kpi, value)

    def forecast_figure(self, name: str) -> float | None:
        if self.attainment is None or self.attainment.forecast is None:
            return None
        return self.attainment.forecast.get(name)


def _months(first: date, last: date) -> int:
    return (last.year - first.year) * 12 + last.month - first.month + 1


def attainment(
    stored: StoredGoal, funnel: Funnel, models: ForecastModels | None, settings: Settings
) -> Attainment:
    """The goal's check as of the end of the data (the API's defaults).

    Raises:
        GoalNotCheckableError: the message says why.
    """
    goal = stored.goal
    if goal.kpi not in FORECAST_KPIS:
        raise GoalNotCheckableError(
            f"{goal.kpi} is not forecast; attainment covers {', '.join(FORECAST_KPIS)}"
        )
    last_known = pd.Timestamp(funnel.observed_until or funnel.leads["created_at"].max()).date()
    if goal.period_end > last_known:
        try:
            check_budget(
                DEFAULT_DRAWS,
                _months(last_known + timedelta(days=1), goal.period_end),
                f"goal {stored.id}, to {goal.period_end},",
                span=("path", "goal_id"),
            )
        except ApiError as error:
            raise GoalNotCheckableError(error.message) from None
        if models is None:
            raise GoalNotCheckableError(NO_FORECAST_MODELS)
    try:
        return check_goal(
            goal,
            funnel,
            models,
            draws=DEFAULT_DRAWS,
            seed=SEED,
            on_track=settings.goal_on_track,
            at_risk=settings.goal_at_risk,
        )
    except FunnelcastInputError as error:  # a segment key the stored data no longer has
        raise GoalNotCheckableError(str(error)) from None


def goal_cards(
    engine: sa.Engine,
    goals: list[StoredGoal],
    funnel: Funnel | None,
    models: ForecastModels | None,
    settings: Settings,
    cache: ResultCache,
    inputs: tuple[object, ...],
) -> list[GoalCard]:
    """Every goal with its check; a check is computed (and recorded) once per goal version and
    `inputs` (the funnel's revision, the champion versions)."""
    cards = []
    for stored in goals:
        key = ("goal", stored.id, stored.updated_at, settings.goal_on_track, settings.goal_at_risk)
        found, kept = cache.get((*key, *inputs))
        if found:
            checked, problem = kept
        elif funnel is None:
            checked, problem = None, "the store holds no funnel yet"
        else:
            try:
                checked, problem = attainment(stored, funnel, models, settings), ""
            except GoalNotCheckableError as error:
                checked, problem = None, str(error)
            cache.put((*key, *inputs), (checked, problem))
            if checked is not None:
                record_check(engine, stored.id, checked.as_check())
        cards.append(_card(stored, checked, problem, check_history(engine, stored.id)))
    return cards


def _card(
    stored: StoredGoal, checked: Attainment | None, problem: str, history: list[StoredCheck]
) -> GoalCard:
    goal = stored.goal
    points = [
        (f"{c.check.checked_at:%Y-%m-%d %H:%M}", c.check.probability)
        for c in history[-HISTORY_CHECKS:]
        if c.check.checked_at is not None
    ]
    history_chart = line_chart(points, width=280, label=f"{goal.name}: probability over checks")
    if checked is None:
        return GoalCard(stored, None, problem, history, Markup(""), Markup(history_chart))  # noqa: S704
    figures = checked.forecast or {}
    chart = interval_chart(
        figures.get("p10"),
        figures.get("p50"),
        figures.get("p90"),
        goal.target,
        checked.actual,
        width=280,
        label=f"{goal.name}: forecast P10-P90 against the target",
    )
    return GoalCard(stored, checked, "", history, Markup(chart), Markup(history_chart))  # noqa: S704


# -- the goal form ------------------------------------------------------------------------------


def parse_segment_text(text: str) -> dict[str, str]:
    """`region=Nordics, source=Web` as a segment; ValueError saying what is wrong."""
    segment: dict[str, str] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{part.strip()!r} must look like column=value, e.g. region=Nordics")
        if key.strip() in segment:
            raise ValueError(f"{key.strip()!r} is given twice")
        segment[key.strip()] = value.strip()
    return segment


def goal_from_form(fields: dict[str, str], segment_keys: frozenset[str]) -> Goal:
    """A goal from the form's text fields.

    Raises:
        GoalError: every problem, each with the field it belongs to.
    """
    raw: dict[str, object] = {name: fields.get(name, "").strip() or None for name in GOAL_FIELDS}
    raw.pop("segment")
    problems: list[GoalProblem] = []
    try:
        raw["segment"] = parse_segment_text(fields.get("segment", ""))
    except ValueError as error:
        problems.append(GoalProblem(None, "segment", str(error)))
    try:
        goal = parse_goal(raw, segment_keys)
    except GoalError as error:
        raise GoalError([*error.problems, *problems]) from None
    if problems:
        raise GoalError(problems)
    return goal


def field_messages(error: GoalError) -> dict[str, list[str]]:
    """Problems by form field ("" for the goal as a whole)."""
    messages: dict[str, list[str]] = {}
    for problem in error.problems:
        messages.setdefault(problem.field or "", []).append(problem.message)
    return messages


def form_values(goal: Goal | None) -> dict[str, str]:
    """A goal's fields as the form shows them (empty for a new goal)."""
    if goal is None:
        return {name: "" for name in GOAL_FIELDS} | {"direction": "at_least"}
    return {
        "name": goal.name,
        "kpi": goal.kpi,
        "direction": goal.direction,
        "target": format(goal.target, ".15g"),
        "period_start": goal.period_start.isoformat(),
        "period_end": goal.period_end.isoformat(),
        "segment": segment_text(goal.segment),
        "owner": goal.owner or "",
    }
