"""SMART goals: anyone with a key may read them (`viewer`), managers set them (`manager`)."""

from __future__ import annotations

from typing import Annotated, Any, NoReturn

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.concurrency import run_in_threadpool

from scoring.goal_store import (
    GoalNotFoundError,
    StoredGoal,
    add_goal,
    funnel_segment_keys,
    get_goal,
    list_goals,
    remove_goal,
    update_goal,
)
from scoring.goals import MAX_TEXT_LENGTH, GoalError, parse_goal
from serve.auth import Manager, Viewer
from serve.deps import Engine, single_valued
from serve.errors import ApiError, ErrorDetail, ErrorResponse, error_responses
from serve.goal_schemas import GoalIn, GoalList, GoalOut

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No goal with this id"}
}
_INVALID: dict[int | str, dict[str, Any]] = {
    422: {
        "model": ErrorResponse,
        "description": "A field is missing or has the wrong type, or the goal is not valid "
        "(unknown KPI, rate outside 0-1, end before start, unknown segment key, ...)",
    }
}
_WRITE_ERRORS = {**error_responses(400, 413), **_INVALID}

router = APIRouter(
    prefix="/v1/goals",
    tags=["goals"],
    responses=error_responses(401, 403, 422),
    dependencies=[Depends(single_valued())],
)

GoalId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The goal's id")]


def _invalid(error: GoalError) -> ApiError:
    details = [
        ErrorDetail(location=["body", p.field] if p.field else ["body"], message=p.message)
        for p in error.problems
    ]
    return ApiError(422, "invalid_goal", str(error), details=details)


def _not_found(error: GoalNotFoundError) -> ApiError:
    return ApiError(404, "goal_not_found", f"no goal with id {error.goal_id}")


def _create(engine: sa.Engine, fields: dict[str, Any]) -> StoredGoal:
    return add_goal(engine, parse_goal(fields, funnel_segment_keys(engine)))


def _replace(engine: sa.Engine, goal_id: int, fields: dict[str, Any]) -> StoredGoal:
    return update_goal(engine, goal_id, parse_goal(fields, funnel_segment_keys(engine)))


@router.post(
    "",
    response_model=GoalOut,
    status_code=201,
    summary="Set a goal",
    responses=_WRITE_ERRORS,
)
async def create_goal(goal: GoalIn, caller: Manager, engine: Engine) -> GoalOut:
    try:
        stored = await run_in_threadpool(_create, engine, goal.model_dump())
    except GoalError as error:
        raise _invalid(error) from None
    return GoalOut.of(stored)


@router.get("", response_model=GoalList, summary="Every goal (of one owner), by id")
async def read_goals(
    caller: Viewer,
    engine: Engine,
    owner: Annotated[
        str | None, Query(max_length=MAX_TEXT_LENGTH, description="Only this owner's goals")
    ] = None,
) -> GoalList:
    goals = await run_in_threadpool(list_goals, engine, owner)
    return GoalList(goals=[GoalOut.of(stored) for stored in goals])


@router.get("/{goal_id}", response_model=GoalOut, summary="One goal", responses=_NOT_FOUND)
async def read_goal(goal_id: GoalId, caller: Viewer, engine: Engine) -> GoalOut:
    try:
        stored = await run_in_threadpool(get_goal, engine, goal_id)
    except GoalNotFoundError as error:
        raise _not_found(error) from None
    return GoalOut.of(stored)


@router.put(
    "/{goal_id}",
    response_model=GoalOut,
    summary="Replace a goal (every field; its id, creation time and checks stay)",
    responses={**_WRITE_ERRORS, **_NOT_FOUND},
)
async def replace_goal(goal_id: GoalId, goal: GoalIn, caller: Manager, engine: Engine) -> GoalOut:
    try:
        stored = await run_in_threadpool(_replace, engine, goal_id, goal.model_dump())
    except GoalError as error:
        raise _invalid(error) from None
    except GoalNotFoundError as error:
        raise _not_found(error) from None
    return GoalOut.of(stored)


@router.delete(
    "/{goal_id}",
    status_code=204,
    response_class=Response,
    summary="Remove a goal and its check history",
    responses=_NOT_FOUND,
)
async def delete_goal(goal_id: GoalId, caller: Manager, engine: Engine) -> Response:
    try:
        await run_in_threadpool(remove_goal, engine, goal_id)
    except GoalNotFoundError as error:
        raise _not_found(error) from None
    return Response(status_code=204)


# Starlette answers a method no route of a path takes with 405 from the path's first route, so
# `Allow` would name that route's method alone; these answer for the whole path instead.
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")


def _answer_other_methods(path: str, allowed: tuple[str, ...]) -> None:
    async def method_not_allowed() -> NoReturn:
        raise ApiError(
            405, "method_not_allowed", "Method Not Allowed", headers={"Allow": ", ".join(allowed)}
        )

    others = [method for method in _METHODS if method not in allowed]
    router.add_api_route(
        path, method_not_allowed, methods=others, response_model=None, include_in_schema=False
    )


_answer_other_methods("", ("GET", "POST"))
_answer_other_methods("/{goal_id}", ("GET", "PUT", "DELETE"))
