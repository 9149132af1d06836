"""Goals and their check history in the funnel store (tables `goals` and `goal_checks`).

Goals arrive here already valid (`scoring.goals.Goal`); the store gives each an integer id and
UTC `created_at` / `updated_at` (naive in the database, aware when read). Removing a goal removes
its checks, on every database.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from scoring import store_schema as schema
from scoring.errors import FunnelcastInputError
from scoring.funnel import LEAD_COLUMNS
from scoring.goals import CHECK_STATUSES, Goal

_CHECK_NUMBERS = ("actual", "forecast_p10", "forecast_p50", "forecast_p90", "probability")


class GoalNotFoundError(FunnelcastInputError):
    """No goal has this id."""

    def __init__(self, goal_id: int) -> None:
        self.goal_id = goal_id
        super().__init__(f"no goal with id {goal_id}; `funnelcast goals list` shows the goals")


@dataclass(frozen=True)
class StoredGoal:
    """A goal as the store holds it: its id and when it was created and last changed (UTC)."""

    id: int
    goal: Goal
    created_at: dt.datetime
    updated_at: dt.datetime

    def as_record(self) -> dict[str, Any]:
        """JSON-ready: the id, the goal's fields, then the times in ISO 8601."""
        return {
            "id": self.id,
            **self.goal.as_record(),
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True)
class GoalCheck:
    """One check of a goal: the actual to date, the forecast of the period's KPI, the chance of
    meeting the target and the status (`scoring.goals.goal_status`); `detail` is free JSON
    (what it would take, the forecast's inputs). Numbers are None when they cannot be known."""

    status: str
    actual: float | None = None
    forecast_p10: float | None = None
    forecast_p50: float | None = None
    forecast_p90: float | None = None
    probability: float | None = None
    detail: Mapping[str, Any] | None = field(default=None, hash=False)
    checked_at: dt.datetime | None = None  # None: now


@dataclass(frozen=True)
class StoredCheck:
    """A recorded check: its id, its goal and what was found (`checked_at` always set, UTC)."""

    id: int
    goal_id: int
    check: GoalCheck


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)  # the store keeps naive UTC


def _naive_utc(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.UTC)


# -- goals ------------------------------------------------------------------------------------


def funnel_segment_keys(engine: sa.Engine) -> frozenset[str]:
    """The lead columns a goal's segment may filter on: those of the funnel in the store.

    Empty when the store holds no funnel yet (`scoring.goals.parse_goal` then refuses segments).
    """
    table = schema.funnel_meta
    with engine.connect() as connection:
        rows = connection.execute(sa.select(table.c.key, table.c.value)).all()
    meta = {row.key: row.value for row in rows}
    if "dataset" not in meta:
        return frozenset()
    return frozenset((*LEAD_COLUMNS, *(meta.get("attributes") or ())))


def _goal_row(goal: Goal) -> dict[str, Any]:
    return {
        "name": goal.name,
        "kpi": goal.kpi,
        "direction": goal.direction,
        "target": goal.target,
        "period_start": goal.period_start,
        "period_end": goal.period_end,
        "segment": json.dumps(goal.segment, ensure_ascii=False, sort_keys=True),
        "owner": goal.owner,
    }


def _stored_goal(row: sa.Row[Any]) -> StoredGoal:
    goal = Goal(
        name=row.name,
        kpi=row.kpi,
        direction=row.direction,
        target=row.target,
        period_start=row.period_start,
        period_end=row.period_end,
        segment=json.loads(row.segment),
        owner=row.owner,
    )
    return StoredGoal(row.id, goal, _aware(row.created_at), _aware(row.updated_at))


def _insert(connection: sa.Connection, goal: Goal) -> StoredGoal:
    now = _now()
    row = {**_goal_row(goal), "created_at": now, "updated_at": now}
    result = connection.execute(schema.goals.insert().values(**row))
    (goal_id,) = result.inserted_primary_key or (None,)
    if goal_id is None:  # every supported database returns the new key
        raise RuntimeError("the database did not return the new goal's id")
    return StoredGoal(int(goal_id), goal, _aware(now), _aware(now))


def add_goal(engine: sa.Engine, goal: Goal) -> StoredGoal:
    """Store a new goal; returns it with its id."""
    with engine.begin() as connection:
        return _insert(connection, goal)


def import_goals(engine: sa.Engine, goals: Sequence[Goal]) -> list[StoredGoal]:
    """Store several goals in one transaction: all of them, or (on any error) none."""
    with engine.begin() as connection:
        return [_insert(connection, goal) for goal in goals]


def list_goals(engine: sa.Engine, owner: str | None = None) -> list[StoredGoal]:
    """Every goal (of `owner`, when given), by id."""
    if owner is not None and "\x00" in owner:
        return []  # goals refuse NUL characters, and PostgreSQL refuses to compare one
    query = sa.select(schema.goals).order_by(schema.goals.c.id)
    if owner is not None:
        query = query.where(schema.goals.c.owner == owner)
    with engine.connect() as connection:
        return [_stored_goal(row) for row in connection.execute(query)]


def _get(connection: sa.Connection, goal_id: int) -> StoredGoal:
    row = connection.execute(sa.select(schema.goals).where(schema.goals.c.id == goal_id)).first()
    if row is None:
        raise GoalNotFoundError(goal_id)
    return _stored_goal(row)


def get_goal(engine: sa.Engine, goal_id: int) -> StoredGoal:
    """The goal with this id; `GoalNotFoundError` if there is none."""
    with engine.connect() as connection:
        return _get(connection, goal_id)


def update_goal(engine: sa.Engine, goal_id: int, goal: Goal) -> StoredGoal:
    """Replace every field of a goal (its id, created_at and checks stay)."""
    now = _now()
    with engine.begin() as connection:
        result = connection.execute(
            schema.goals.update()
            .where(schema.goals.c.id == goal_id)
            .values(**_goal_row(goal), updated_at=now)
        )
        if result.rowcount == 0:
            raise GoalNotFoundError(goal_id)
        return _get(connection, goal_id)


def remove_goal(engine: sa.Engine, goal_id: int) -> StoredGoal:
    """Remove a goal and its check history; returns what was removed."""
    with engine.begin() as connection:
        removed = _get(connection, goal_id)
        # The foreign key cascades, but only where it is enforced (SQLite: a per-connection
        # pragma): delete the checks explicitly so no engine leaves orphans behind.
        connection.execute(
            schema.goal_checks.delete().where(schema.goal_checks.c.goal_id == goal_id)
        )
        connection.execute(schema.goals.delete().where(schema.goals.c.id == goal_id))
    return removed


# -- checks -----------------------------------------------------------------------------------


def _check_row(check: GoalCheck) -> dict[str, Any]:
    if check.status not in CHECK_STATUSES:
        raise ValueError(f"unknown goal status {check.status!r}; one of {CHECK_STATUSES}")
    numbers = {name: getattr(check, name) for name in _CHECK_NUMBERS}
    for name, value in numbers.items():
        if value is not None and not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number or None, got {value}")
    return {
        **{name: None if value is None else float(value) for name, value in numbers.items()},
        "status": check.status,
        "detail": None if check.detail is None else json.dumps(check.detail, allow_nan=False),
        "checked_at": _naive_utc(check.checked_at) if check.checked_at else _now(),
    }


def record_check(engine: sa.Engine, goal_id: int, check: GoalCheck) -> StoredCheck:
    """Add a check to a goal's history; `GoalNotFoundError` if the goal is gone."""
    row = _check_row(check)
    with engine.begin() as connection:
        _get(connection, goal_id)
        result = connection.execute(schema.goal_checks.insert().values(goal_id=goal_id, **row))
        (check_id,) = result.inserted_primary_key or (None,)
    if check_id is None:
        raise RuntimeError("the database did not return the new check's id")
    stored = GoalCheck(
        status=row["status"],
        **{name: row[name] for name in _CHECK_NUMBERS},
        detail=check.detail,
        checked_at=_aware(row["checked_at"]),
    )
    return StoredCheck(int(check_id), goal_id, stored)


def check_history(engine: sa.Engine, goal_id: int, limit: int = 100) -> list[StoredCheck]:
    """The goal's latest `limit` checks, oldest first."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    table = schema.goal_checks
    latest = (
        sa.select(table)
        .where(table.c.goal_id == goal_id)
        .order_by(table.c.checked_at.desc(), table.c.id.desc())
        .limit(limit)
    )
    with engine.connect() as connection:
        _get(connection, goal_id)
        rows = connection.execute(latest).all()
    return [
        StoredCheck(
            row.id,
            row.goal_id,
            GoalCheck(
                status=row.status,
                **{name: getattr(row, name) for name in _CHECK_NUMBERS},
                detail=None if row.detail is None else json.loads(row.detail),
                checked_at=_aware(row.checked_at),
            ),
        )
        for row in reversed(rows)
    ]
