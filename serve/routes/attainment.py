"""Goal attainment (DESIGN §5) for anyone with a key (`viewer`): one goal, or every goal (of an
owner) with a roll-up per owner.

A check runs the forecast engine now, on a worker thread (about a second, several for a volume
goal whose "what it would take" is searched with the engine), and is recorded: every goal builds
an attainment history. Status thresholds are the app's settings (FUNNELCAST_GOAL_ON_TRACK,
FUNNELCAST_GOAL_AT_RISK).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool

from scoring.attainment import Attainment, check_goal
from scoring.errors import FunnelcastInputError
from scoring.forecast import ForecastModels
from scoring.forecast_kpis import FORECAST_KPIS
from scoring.funnel import Funnel
from scoring.goal_store import (
    GoalNotFoundError,
    StoredGoal,
    check_history,
    get_goal,
    list_goals,
    record_check,
)
from scoring.goals import MAX_TEXT_LENGTH
from scoring.settings import Settings
from serve.auth import Viewer
from serve.deps import (
    NO_FORECAST_MODELS,
    AppSettings,
    Engine,
    ForecastChampions,
    FunnelCache,
    Funnels,
    single_valued,
)
from serve.errors import ApiError, ErrorDetail, ErrorResponse, error_responses
from serve.forecast_schemas import (
    DEFAULT_DRAWS,
    AsOfQuery,
    DrawsQuery,
    SeedQuery,
    check_as_of,
    check_budget,
    parse_as_of,
)
from serve.goal_schemas import (
    AttainmentOut,
    AttainmentReport,
    CheckOut,
    GoalAttainment,
    GoalAttainmentItem,
    GoalOut,
    OwnerRollup,
)
from serve.routes.goals import GoalId

_STATUSES = ("on_track", "at_risk", "off_track", "met", "missed")
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No goal with this id"}
}
_CHECK_ERRORS: dict[int | str, dict[str, Any]] = {
    422: {
        "model": ErrorResponse,
        "description": "A parameter is out of range or malformed, as_of is outside the data, "
        "the run is over the API's limits (forecast_too_large), or the goal cannot be checked "
        "(goal_not_checkable: its KPI is not forecast, its segment key is not in the data)",
    },
    503: {
        "model": ErrorResponse,
        "description": "No lead-conversion or deal-cycle champion for a period not over "
        "(no_model), or no dated funnel in the store (no_data); the message says how to train",
    },
}

router = APIRouter(
    prefix="/v1",
    tags=["goals"],
    responses=error_responses(401, 403),
    dependencies=[Depends(single_valued())],
)


@dataclass(frozen=True)
class _Checks:
    """What the checks of one request share."""

    funnels: FunnelCache
    models: ForecastModels | None
    day: date | None
    draws: int
    seed: int
    on_track: float
    at_risk: float

    @classmethod
    def of(
        cls,
        funnels: FunnelCache,
        models: ForecastModels | None,
        settings: Settings,
        as_of: str | None,
        draws: int,
        seed: int,
    ) -> _Checks:
        day = parse_as_of(as_of)
        return cls(funnels, models, day, draws, seed, settings.goal_on_track, settings.goal_at_risk)


def _not_checkable(goal_id: int, message: str) -> ApiError:
    return ApiError(
        422,
        "goal_not_checkable",
        f"goal {goal_id}: {message}",
        details=[ErrorDetail(location=["path", "goal_id"], message=message)],
    )


def _months(first: date, last: date) -> int:
    """Calendar months from `first`'s to `last`'s, both counted."""
    return (last.year - first.year) * 12 + last.month - first.month + 1


def _attainment(stored: StoredGoal, funnel: Funnel, checks: _Checks) -> Attainment:
    """Check one goal; an ApiError says why it cannot be (422) or not yet (503)."""
    goal = stored.goal
    if goal.kpi not in FORECAST_KPIS:
        raise _not_checkable(
            stored.id, f"{goal.kpi} is not forecast; attainment covers {', '.join(FORECAST_KPIS)}"
        )
    moment = check_as_of(funnel, checks.day)
    last_known = (moment or funnel.observed_until or funnel.leads["created_at"].max()).date()
    if goal.period_end > last_known:  # the engine runs, from the next day to the period's end
        check_budget(
            checks.draws,
            _months(last_known + timedelta(days=1), goal.period_end),
            f"goal {stored.id}, to {goal.period_end},",
            span=("path", "goal_id"),
        )
        if checks.models is None:
            raise ApiError(503, "no_model", NO_FORECAST_MODELS)
    try:
        return check_goal(
            goal,
            funnel,
            checks.models,
            as_of=moment,
            draws=checks.draws,
            seed=checks.seed,
            on_track=checks.on_track,
            at_risk=checks.at_risk,
        )
    except FunnelcastInputError as error:  # a segment key the stored data no longer has
        raise _not_checkable(stored.id, str(error)) from None


def _recorded(engine: sa.Engine, stored: StoredGoal, funnel: Funnel, checks: _Checks) -> Attainment:
    """Check one goal and add the check to its history."""
    attainment = _attainment(stored, funnel, checks)
    record_check(engine, stored.id, attainment.as_check())
    return attainment


def _check_one(engine: sa.Engine, goal_id: int, checks: _Checks) -> GoalAttainment:
    stored = get_goal(engine, goal_id)
    attainment = _recorded(engine, stored, checks.funnels.dated(), checks)
    return GoalAttainment(
        goal=GoalOut.of(stored),
        attainment=AttainmentOut.of(attainment),
        history=[CheckOut.of(check) for check in check_history(engine, goal_id)],
    )


def _check_all(engine: sa.Engine, owner: str | None, checks: _Checks) -> AttainmentReport:
    goals = list_goals(engine, owner)
    if not goals:
        return AttainmentReport(goals=[], owners=[])
    funnel = checks.funnels.dated()
    check_as_of(funnel, checks.day)  # a bad as_of is the request's fault, not each goal's
    items = []
    for stored in goals:
        try:
            attainment = _recorded(engine, stored, funnel, checks)
        except ApiError as error:
            if error.status != 422:  # no models, no data: no goal can be checked
                raise
            items.append(
                GoalAttainmentItem(goal=GoalOut.of(stored), attainment=None, problem=error.message)
            )
        except GoalNotFoundError:  # removed while the others were being checked
            continue
        else:
            items.append(
                GoalAttainmentItem(goal=GoalOut.of(stored), attainment=AttainmentOut.of(attainment))
            )
    return AttainmentReport(goals=items, owners=_rollup(items))


def _rollup(items: list[GoalAttainmentItem]) -> list[OwnerRollup]:
    """Per owner (the goals without one last): goals by status, mean probability."""
    by_owner: dict[str | None, list[GoalAttainmentItem]] = defaultdict(list)
    for item in items:
        by_owner[item.goal.owner].append(item)
    rollups = []
    for owner in sorted(by_owner, key=lambda name: (name is None, name or "")):
        checked = [item.attainment for item in by_owner[owner] if item.attainment is not None]
        counts = {status: sum(a.status == status for a in checked) for status in _STATUSES}
        probabilities = [a.probability for a in checked]
        rollups.append(
            OwnerRollup(
                owner=owner,
                goals=len(by_owner[owner]),
                **counts,
                not_checked=len(by_owner[owner]) - len(checked),
                mean_probability=sum(probabilities) / len(probabilities) if checked else None,
            )
        )
    return rollups


@router.get(
    "/goals/{goal_id}/attainment",
    response_model=GoalAttainment,
    summary="Check a goal now (recorded): actual to date, forecast, probability, status and what "
    "it would take, with its check history",
    responses={**_NOT_FOUND, **_CHECK_ERRORS},
)
async def read_goal_attainment(
    goal_id: GoalId,
    caller: Viewer,
    engine: Engine,
    funnels: Funnels,
    models: ForecastChampions,
    settings: AppSettings,
    as_of: AsOfQuery = None,
    draws: DrawsQuery = DEFAULT_DRAWS,
    seed: SeedQuery = 0,
) -> GoalAttainment:
    checks = _Checks.of(funnels, models, settings, as_of, draws, seed)
    try:
        return await run_in_threadpool(_check_one, engine, goal_id, checks)
    except GoalNotFoundError as error:
        raise ApiError(404, "goal_not_found", f"no goal with id {error.goal_id}") from None


@router.get(
    "/attainment",
    response_model=AttainmentReport,
    summary="Check every goal (of one owner) now (recorded), with a roll-up per owner",
    responses=_CHECK_ERRORS,
)
async def read_attainment(
    caller: Viewer,
    engine: Engine,
    funnels: Funnels,
    models: ForecastChampions,
    settings: AppSettings,
    owner: Annotated[
        str | None, Query(max_length=MAX_TEXT_LENGTH, description="Only this owner's goals")
    ] = None,
    as_of: AsOfQuery = None,
    draws: DrawsQuery = DEFAULT_DRAWS,
    seed: SeedQuery = 0,
) -> AttainmentReport:
    checks = _Checks.of(funnels, models, settings, as_of, draws, seed)
    return await run_in_threadpool(_check_all, engine, owner, checks)
